//! Command line and environment configuration of a node.

use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// chat-node: join the migrating chat. Runs the chat client and a dormant
/// chat server that becomes the live host when the role moves here.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-node",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct NodeConfig {
    /// URI of the relay: `https://HOST:PORT` runs every connection over
    /// TLS (needs --relay-ca); `http://` is plaintext, allowed to loopback
    /// addresses only unless --allow-plaintext. Several addresses of one
    /// replicated relay, comma-separated (one scheme): the node stays on
    /// one and moves to the next when it fails or stands by.
    #[arg(env = "CHAT_RELAY", default_value = "http://127.0.0.1:5000")]
    pub relay_uri: String,

    /// The relay's certificate authority (PEM), e.g. the relay's
    /// `DATA_DIR/ca.pem`: the relay is verified against it alone. Needed
    /// for an `https://` relay URI.
    #[arg(long, env = "CHAT_RELAY_CA", value_name = "FILE")]
    pub relay_ca: Option<PathBuf>,

    /// Allow plaintext (an `http://` relay URI) to addresses that are not
    /// loopback: anyone on the way can then read the chat. Deliberate.
    #[arg(long, env = "CHAT_ALLOW_PLAINTEXT", value_parser = BoolishValueParser::new())]
    pub allow_plaintext: bool,

    /// Your chat name: non-empty, at most 32 characters, no ':' or
    /// whitespace, unique among connected members. Asked for if absent and
    /// stdin is a terminal.
    #[arg(short, long, env = "CHAT_NAME")]
    pub name: Option<String>,

    /// Address this node's chat server and peer endpoint listen on
    /// (default: an ephemeral port on all interfaces).
    #[arg(long, env = "CHAT_LISTEN", default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,

    /// Address other members and the relay use to reach this node,
    /// `host:port` (default: 127.0.0.1 and the bound port).
    #[arg(long, env = "CHAT_ADVERTISE")]
    pub advertise: Option<String>,

    /// Take part as a pure client: open no port and serve nothing, so this
    /// node is never host (for a machine behind a router or firewall).
    /// Private messages to it travel sealed to its key through the host.
    /// --listen and --advertise are then ignored.
    #[arg(long, env = "CHAT_CLIENT_ONLY", value_parser = BoolishValueParser::new())]
    pub client_only: bool,

    /// A room to join at the start, with or without its `#` (repeat the
    /// flag for several; the first is the current room). Default: `lobby`.
    /// In the environment: names separated by commas.
    #[arg(long = "room", env = "CHAT_ROOMS", value_name = "ROOM",
          value_delimiter = ',', value_parser = parse_room)]
    pub rooms: Vec<String>,

    /// User interface: full-screen `tui`, plain `line` text, or `json` (one
    /// object per event). Default: tui in a terminal, line otherwise.
    #[arg(long, env = "CHAT_MODE", value_enum)]
    pub mode: Option<Mode>,

    /// Bot mode: post a message by itself every DURATION (`5s`, `500ms`)
    /// and print events as in `line` mode (`json` if `--mode json`); stdin
    /// is not read, so a closed stdin does not make the node leave.
    #[arg(long, env = "CHAT_BOT_INTERVAL", value_name = "DURATION",
          value_parser = parse_bot_interval)]
    pub bot_interval: Option<Duration>,

    /// The relay's admin secret, needed to `$reset` the chat.
    #[arg(long, env = "CHAT_ADMIN_SECRET", hide_env_values = true)]
    pub admin_secret: Option<String>,

    /// Where this node keeps its key per name (`NAME.key`), the relay keys
    /// it pinned (`known_relays`), its name certificate and the private
    /// messages it saw. Default: `$HOME/.local/share/chat-node`.
    #[arg(long, env = "CHAT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// The key file to use instead of `DATA_DIR/NAME.key` (created if absent).
    #[arg(long, env = "CHAT_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// Accept and pin the key the relay presents even if another key was
    /// pinned for it before (after the relay's key was replaced on purpose).
    #[arg(long)]
    pub accept_relay_key: bool,

    /// Something other than joining the chat.
    #[command(subcommand)]
    pub command: Option<NodeCommand>,
}

impl NodeConfig {
    /// The interface to run: `--mode`, else tui in a terminal, else line.
    pub fn ui_mode(&self) -> Mode {
        self.ui_mode_for(std::io::IsTerminal::is_terminal(&std::io::stdin()))
    }

    /// The interface to run: `--mode`, else tui when a person types at
    /// the terminal (`interactive`), else line.
    pub fn ui_mode_for(&self, interactive: bool) -> Mode {
        self.mode
            .unwrap_or(if interactive { Mode::Tui } else { Mode::Line })
    }

    /// The store of this node's identity, in the data directory.
    pub fn store(&self) -> crate::identity::NodeStore {
        let dir = self.data_dir.clone().or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(PathBuf::from(home).join(".local/share/chat-node"))
        });
        crate::identity::NodeStore::new(dir, self.key_file.clone(), self.accept_relay_key)
    }

    /// TLS or plaintext, as the options ask (reads the `--relay-ca` file).
    pub fn transport(&self) -> Result<crate::dial::TransportOptions, crate::dial::DialError> {
        let relay_ca_pem = self
            .relay_ca
            .as_ref()
            .map(|path| {
                std::fs::read_to_string(path).map_err(|e| crate::dial::DialError::RelayCaFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        Ok(crate::dial::TransportOptions {
            relay_ca_pem,
            allow_plaintext: self.allow_plaintext,
        })
    }

    /// Whether this run takes over the terminal.
    pub fn full_screen(&self) -> bool {
        self.command.is_none() && self.bot_interval.is_none() && self.ui_mode() == Mode::Tui
    }
}

/// What `chat-node` can do besides joining the chat.
#[derive(Debug, Clone, Subcommand)]
pub enum NodeCommand {
    /// Check a running node's health (grpc.health.v1); exit 0 only if SERVING.
    ///
    /// Prints the status. The default service "" is the node process as a
    /// whole, SERVING on a dormant node too; its `chat.v1.ChatService` is
    /// SERVING only while the node hosts the chat. A node's certificate
    /// names `<node_id>.node.invalid`: give --server-name, or --node-key.
    Health(crate::health::NodeHealthArgs),
}

/// Parses a bot interval: a duration that is not zero.
fn parse_bot_interval(text: &str) -> Result<Duration, String> {
    match chat_proto::cli::parse_duration(text)? {
        d if d.is_zero() => Err("the bot interval must be longer than zero".into()),
        d => Ok(d),
    }
}

/// How the node talks to its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Full-screen terminal interface.
    Tui,
    /// One readable line per event; each input line is a message or command.
    Line,
    /// One JSON object per event on stdout; input as in line mode.
    Json,
}

/// A room name as typed (`#ops` or `ops`), checked.
fn parse_room(input: &str) -> Result<String, String> {
    chat_proto::rules::parse_room(input).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_only_is_a_flag_or_a_boolish_env_value() {
        let parse = |args: &[&str]| NodeConfig::try_parse_from(args).map(|c| c.client_only);
        assert_eq!(parse(&["chat-node"]).ok(), Some(false));
        assert_eq!(parse(&["chat-node", "--client-only"]).ok(), Some(true));
        assert!(parse(&["chat-node", "--client-only=maybe"]).is_err());
    }

    #[test]
    fn rooms_repeat_take_a_hash_and_are_checked() {
        let parse = |args: &[&str]| NodeConfig::try_parse_from(args).map(|c| c.rooms);
        assert_eq!(parse(&["chat-node"]).ok(), Some(vec![]));
        let two = parse(&["chat-node", "--room", "#ops", "--room", "random"]).ok();
        assert_eq!(two, Some(vec!["ops".to_string(), "random".to_string()]));
        assert!(parse(&["chat-node", "--room", "a:b"]).is_err());
    }
}
