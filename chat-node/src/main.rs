use chat_node::app::{self, Terminal};
use chat_node::config::NodeCommand;
use chat_node::NodeConfig;
use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
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
