//! chat-bench entry point: parses the command line and runs the benchmark
//! or one of its server processes.

use chat_bench::cli::{Cli, Internal};
use chat_bench::{runner, serve};
use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Internal::Relay {
            migration_interval,
            lease,
            member_grace,
        }) => serve::relay(migration_interval, lease, member_grace).await,
        Some(Internal::Node {
            relay,
            name,
            report,
            count_to,
            probe_base,
        }) => {
            let output = chat_bench::member::Output {
                report,
                count_to,
                probe_base,
            };
            serve::node(&relay, &name, output).await
        }
        Some(Internal::TonicServer { log }) => serve::tonic_server(log).await,
        Some(Internal::TonicJoiner { addr, count_to }) => {
            serve::tonic_joiner(&addr, count_to).await
        }
        None => runner::run(cli.run).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
