//! Command line and environment configuration of a node.

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;

/// chat-node: join the migrating chat. Runs the chat client and a dormant
/// chat server that becomes the live host when the role moves here.
#[derive(Debug, Clone, Parser)]
#[command(name = "chat-node", version)]
pub struct NodeConfig {
    /// URI of the relay.
    #[arg(env = "CHAT_RELAY", default_value = "http://127.0.0.1:5000")]
    pub relay_uri: String,

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

    /// User interface: full-screen `tui`, plain `line` text, or `json` (one
    /// object per event). Default: tui in a terminal, line otherwise.
    #[arg(long, env = "CHAT_MODE", value_enum)]
    pub mode: Option<Mode>,
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
