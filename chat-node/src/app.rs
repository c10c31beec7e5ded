//! The `chat-node` program as a library call: bind, ask for a name until the
//! relay takes one, then run the chosen interface until the user leaves or
//! shutdown is asked. `main.rs` only parses options and sets up logging, so
//! tests drive the same [`run`] in-process through a [`Terminal`] of their own.

use crate::config::Mode;
use crate::node::{BoundNode, Node, StartError};
use crate::{ui, NodeConfig};
use std::future::Future;
use std::io::IsTerminal;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Where the user types and reads: the name prompt's answers come from
/// `input`, which `line` mode then reads for chat lines; the prompt and its
/// refusals go to `output`. The interfaces print events on stdout themselves.
pub struct Terminal<I, O> {
    /// What the user types.
    pub input: I,
    /// Where the name prompt and its refusals are written.
    pub output: O,
    /// Whether a person types at `input`: only then is a name asked for, and
    /// the default interface is full-screen.
    pub interactive: bool,
}

impl Terminal<BufReader<tokio::io::Stdin>, tokio::io::Stdout> {
    /// The process's stdin and stdout.
    pub fn stdio() -> Self {
        Terminal {
            input: BufReader::new(tokio::io::stdin()),
            output: tokio::io::stdout(),
            interactive: std::io::stdin().is_terminal(),
        }
    }
}

/// Runs the node as `chat-node` does: joins the chat under `--name` or a
/// name asked on `terminal`, runs the interface `config` chooses until the
/// user leaves or `shutdown` completes, then leaves the chat.
pub async fn run<I, O>(
    config: NodeConfig,
    mut terminal: Terminal<I, O>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError>
where
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let bound = bind(&config).await?;
    let mut node = join_asking(&config, bound, &mut terminal).await?;
    if let Some(events) = node.take_events() {
        let mode = config.ui_mode_for(terminal.interactive);
        let interface = run_interface(&config, mode, &node, terminal.input, events);
        tokio::select! {
            r = interface => r?,
            _ = shutdown => {}
        }
    }
    node.shutdown().await;
    Ok(())
}

/// Opens the node's port (none for a client-only node) and its store.
async fn bind(config: &NodeConfig) -> Result<BoundNode, StartError> {
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
    Ok(bound
        .with_store(config.store().exclusive())
        .with_history()
        .with_admin_secret(config.admin_secret.clone())
        .with_rooms(config.rooms.clone()))
}

/// Registers under `--name`, or asks on the terminal until the relay takes
/// a name; a name given with `--name` is not asked again when refused.
async fn join_asking<I, O>(
    config: &NodeConfig,
    bound: BoundNode,
    terminal: &mut Terminal<I, O>,
) -> Result<Node, StartError>
where
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    loop {
        let name = match &config.name {
            Some(name) => name.clone(),
            None if terminal.interactive => ask_name(terminal).await?,
            None => {
                return Err(StartError::NameRefused(
                    "--name is required when stdin is not a terminal".into(),
                ))
            }
        };
        match bound.register(&name).await {
            Ok(registration) => return bound.launch(registration).await,
            Err(StartError::NameRefused(why)) if config.name.is_none() => {
                say(&mut terminal.output, &format!("{why}; try another name\n")).await?
            }
            Err(e) => return Err(e),
        }
    }
}

/// Prompts for a name and reads one line; the end of input is no name.
async fn ask_name<I, O>(terminal: &mut Terminal<I, O>) -> Result<String, StartError>
where
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    say(&mut terminal.output, "your name: ").await?;
    let mut name = String::new();
    if terminal.input.read_line(&mut name).await? == 0 {
        return Err(StartError::NameRefused("no name given".into()));
    }
    Ok(name.trim().to_string())
}

async fn say(output: &mut (impl AsyncWrite + Unpin), text: &str) -> std::io::Result<()> {
    output.write_all(text.as_bytes()).await?;
    output.flush().await
}

/// The bot, the full-screen interface, or lines (plain or json) read from
/// `input`, until the user leaves.
async fn run_interface(
    config: &NodeConfig,
    mode: Mode,
    node: &Node,
    input: impl AsyncBufRead + Unpin,
    events: tokio::sync::mpsc::Receiver<crate::client::RoomEvent>,
) -> std::io::Result<()> {
    let name = &node.shared.ctx.identity.name;
    let commands = node.commands.clone();
    match (config.bot_interval, mode) {
        (Some(interval), _) => {
            let rooms = &config.rooms;
            ui::bot::run_bot(name, rooms, interval, mode == Mode::Json, commands, events).await
        }
        (None, Mode::Tui) => ui::tui::run_tui(name, commands, events).await?,
        (None, Mode::Line | Mode::Json) => {
            ui::run_lines(input, commands, events, mode == Mode::Json).await
        }
    }
    Ok(())
}
