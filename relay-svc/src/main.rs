use clap::{Arg, ArgMatches, Command, CommandFactory, FromArgMatches};
use relay_svc::RelayConfig;
use std::process::ExitCode;
use std::time::Duration;

/// The `health` subcommand, for container healthchecks (a `FROM scratch`
/// image has no shell or curl).
fn health_command() -> Command {
    Command::new("health")
        .about(
            "Ask a running relay for its health (grpc.health.v1 Check): prints the \
             status and exits 0 only if SERVING",
        )
        .arg(
            Arg::new("address")
                .value_name("ADDR")
                .default_value("127.0.0.1:5000")
                .help("Address of the relay, `host:port` or `http://host:port`"),
        )
        .arg(
            Arg::new("service")
                .long("service")
                .value_name("NAME")
                .default_value("")
                .help("Service to ask about; \"\" (the default) is the whole server"),
        )
        .arg(
            Arg::new("timeout")
                .long("timeout")
                .value_name("DURATION")
                .default_value("3s")
                .value_parser(chat_proto::parse_duration)
                .help("How long to wait for an answer, connection included"),
        )
}

async fn health(matches: &ArgMatches) -> ExitCode {
    let text = |id: &str| {
        matches
            .get_one::<String>(id)
            .map(String::as_str)
            .unwrap_or("")
    };
    let timeout = matches
        .get_one::<Duration>("timeout")
        .copied()
        .unwrap_or(chat_proto::health_check::DEFAULT_TIMEOUT);
    chat_proto::health_check::run_command("relay-svc", text("address"), text("service"), timeout)
        .await
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = RelayConfig::command()
        .args_conflicts_with_subcommands(true)
        .subcommand(health_command())
        .get_matches();
    if let Some(("health", sub)) = matches.subcommand() {
        return health(sub).await;
    }
    let config = RelayConfig::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    chat_proto::serve::init_tracing();
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("relay-svc: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %config.listen, min_users = config.min_users,
                   migration_interval = ?config.migration_interval, "relay-svc starting");
    match relay_svc::run(listener, config, chat_proto::serve::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-svc: {e}");
            ExitCode::FAILURE
        }
    }
}
