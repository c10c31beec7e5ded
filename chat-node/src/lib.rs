//! chat-node: what each user of the migrating chat runs. One process holds
//! the chat client, a dormant ChatService that becomes the live chat server
//! when the host role moves here, and the PeerService for private messages.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod backoff;
pub mod checked;
pub mod client;
pub mod config;
pub mod context;
pub mod dial;
pub mod directory;
pub mod error;
pub mod health;
pub mod history;
pub mod host;
pub mod identity;
pub mod node;
pub mod peer;
pub mod relay_link;
pub mod replay;
pub mod ui;

pub use config::{Mode, NodeConfig};
pub use node::{BoundNode, Node, StartError};
