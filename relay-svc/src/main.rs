use clap::Parser;
use relay_svc::config::{RelayCli, RelayCommand};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = RelayCli::parse();
    match cli.command {
        Some(RelayCommand::Health(health)) => return health.run("relay-svc").await,
        Some(RelayCommand::InitKeys { dir }) => {
            return match relay_svc::config::init_keys(&dir) {
                Ok(key) => {
                    println!("{key}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("relay-svc init-keys: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    let config = cli.config;
    chat_proto::cli::init_tracing();
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("relay-svc: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %config.listen, min_users = config.min_users,
                   migration_interval = ?config.migration_interval, "relay-svc starting");
    match relay_svc::run(listener, config, chat_proto::cli::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-svc: {e}");
            ExitCode::FAILURE
        }
    }
}
