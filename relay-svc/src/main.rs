use clap::Parser;
use relay_svc::RelayConfig;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    chat_proto::serve::init_tracing();
    let config = RelayConfig::parse();
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("relay-svc: cannot listen on {}: {e}", config.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %config.listen, min_users = config.min_users,
                   migration_interval = ?config.migration_interval, "relay-svc starting");
    match relay_svc::run(listener, config, chat_proto::serve::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-svc: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
