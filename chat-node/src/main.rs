use chat_node::config::NodeCommand;
use chat_node::{ui, BoundNode, Mode, NodeConfig, StartError};
use clap::Parser;
use std::io::{BufRead, IsTerminal, Write};
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
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-node: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: NodeConfig) -> Result<(), StartError> {
    let interactive = std::io::stdin().is_terminal();
    let mode = config.ui_mode();
    let transport = config.transport()?;
    let bound = if config.client_only {
        BoundNode::client_only(&config.relay_uri, transport)?
    } else {
        BoundNode::bind_with(
            &config.relay_uri,
            config.listen,
            config.advertise.clone(),
            transport,
        )
        .await?
    };
    let bound = bound
        .with_store(config.store())
        .with_admin_secret(config.admin_secret.clone());
    let mut node = loop {
        let name = match &config.name {
            Some(name) => name.clone(),
            None if interactive => ask_name()?,
            None => {
                return Err(StartError::NameRefused(
                    "--name is required when stdin is not a terminal".into(),
                ))
            }
        };
        match bound.register(&name).await {
            Ok(registration) => break bound.launch(registration).await?,
            Err(StartError::NameRefused(why)) if config.name.is_none() => {
                eprintln!("{why}; try another name")
            }
            Err(e) => return Err(e),
        }
    };
    let events = node.take_events();
    let commands = node.commands.clone();
    if let Some(events) = events {
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let name = node.shared.identity.name.clone();
        let ui = async {
            match (config.bot_interval, mode) {
                (Some(interval), _) => {
                    ui::bot::run_bot(&name, interval, mode == Mode::Json, commands, events).await
                }
                (None, Mode::Tui) => ui::tui::run_tui(&name, commands, events).await?,
                (None, Mode::Line | Mode::Json) => {
                    ui::run_lines(stdin, commands, events, mode == Mode::Json).await
                }
            }
            Ok::<(), std::io::Error>(())
        };
        tokio::select! {
            r = ui => r?,
            _ = chat_proto::cli::shutdown_signal() => {}
        }
    }
    node.shutdown().await;
    Ok(())
}

fn ask_name() -> Result<String, StartError> {
    print!("your name: ");
    std::io::stdout().flush()?;
    let mut name = String::new();
    if std::io::stdin().lock().read_line(&mut name)? == 0 {
        return Err(StartError::NameRefused("no name given".into()));
    }
    Ok(name.trim().to_string())
}
