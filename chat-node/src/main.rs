use chat_node::app::{self, Terminal};
use chat_node::config::NodeCommand;
use chat_node::NodeConfig;
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

/// How long the runtime waits for its blocking threads at exit. The
/// terminal's input is read by one that cannot be cancelled (a blocking
/// read of stdin): without a bound, a node told to stop by a signal would
/// wait for the next input line before it exits.
const EXIT_GRACE: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chat-node: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

async fn run() -> ExitCode {
    let mut config = NodeConfig::parse();
    if config.full_screen() {
        // Log lines would scribble over the screen: only to a file, on demand.
        chat_proto::cli::init_tracing_to_file("chat-node.log");
    } else {
        chat_proto::cli::init_tracing();
    }
    if let Some(NodeCommand::Health(health)) = config.command.take() {
        return health.run().await;
    }
    let shutdown = chat_proto::cli::shutdown_signal();
    match app::run(config, Terminal::stdio(), shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-node: {e}");
            ExitCode::FAILURE
        }
    }
}
