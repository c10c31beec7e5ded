//! Command line and environment configuration of the relay.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// relay-svc: the stable entry point of the migrating chat. It only knows the
/// member nodes and which of them hosts the chat right now; it never carries
/// chat messages.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "relay-svc",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct RelayCli {
    /// How to serve.
    #[command(flatten)]
    pub config: RelayConfig,

    /// Something other than serving.
    #[command(subcommand)]
    pub command: Option<RelayCommand>,
}

/// What `relay-svc` can do besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum RelayCommand {
    /// Check a running relay's health (grpc.health.v1); exit 0 only if SERVING.
    Health(chat_proto::health_check::HealthArgs),
}

/// How the relay serves.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayConfig {
    /// Address to listen on.
    #[arg(long, env = "RELAY_LISTEN", default_value = "0.0.0.0:5000")]
    pub listen: SocketAddr,

    /// Number of members needed to activate the chat (messages sent before
    /// are held and shown at activation).
    #[arg(short = 'N', long, env = "RELAY_MIN_USERS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub min_users: u32,

    /// How often the host role moves to another member, e.g. `30s`, `250ms`.
    #[arg(long, env = "RELAY_MIGRATION_INTERVAL", default_value = "30s",
          value_parser = chat_proto::parse_duration)]
    pub migration_interval: Duration,

    /// How long a member whose watch stream closed keeps its name before the
    /// relay forgets it, e.g. `3s`.
    #[arg(long, env = "RELAY_MEMBER_GRACE", default_value = "3s",
          value_parser = chat_proto::parse_duration)]
    pub member_grace: Duration,

    /// How long the host's lease lasts without renewal; a host silent for
    /// longer is replaced by its successor, e.g. `500ms`.
    #[arg(long, env = "RELAY_LEASE", default_value = "500ms",
          value_parser = chat_proto::parse_duration)]
    pub lease: Duration,

    /// Secret a member must present to `$reset` the chat. Without it nobody
    /// may reset.
    #[arg(long, env = "RELAY_ADMIN_SECRET", hide_env_values = true)]
    pub admin_secret: Option<String>,

    /// Directory of the relay's persistent key (`relay.key`, created on
    /// first start). Nodes pin this key: keep the directory across restarts.
    #[arg(long, env = "RELAY_DATA_DIR", default_value = "relay-data")]
    pub data_dir: Option<PathBuf>,

    /// Chat messages each member may send per second, sustained (0: no
    /// limit). Hosts refuse faster senders with a retry delay.
    #[arg(long, env = "RELAY_MESSAGES_PER_SECOND", default_value_t = 20)]
    pub messages_per_second: u32,

    /// Messages a member may send at once before the rate applies.
    #[arg(long, env = "RELAY_MESSAGE_BURST", default_value_t = 50)]
    pub message_burst: u32,
}

/// The admin secret of [`RelayConfig::for_tests`].
pub const TEST_ADMIN_SECRET: &str = "test-admin-secret";

impl RelayConfig {
    /// A configuration for tests: listen address comes from the caller's listener.
    pub fn for_tests(min_users: u32, migration_interval: Duration) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            min_users,
            migration_interval,
            member_grace: Duration::from_secs(3),
            lease: Duration::from_millis(500),
            admin_secret: Some(TEST_ADMIN_SECRET.to_string()),
            // An ephemeral key: tests that restart a relay choose a directory.
            data_dir: None,
            messages_per_second: 20,
            message_burst: 50,
        }
    }

    /// The relay's key: kept in the data directory, or ephemeral without one.
    pub fn load_key(&self) -> std::io::Result<chat_proto::trust::Keypair> {
        match &self.data_dir {
            Some(dir) => chat_proto::trust::Keypair::load_or_create(&dir.join("relay.key")),
            None => Ok(chat_proto::trust::Keypair::generate()),
        }
    }
}
