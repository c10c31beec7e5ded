//! Command line: the benchmark run, and the hidden subcommands that run as
//! its server processes.

use crate::report::ScenarioId;
use crate::systems::SystemKind;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// chat-bench: throughput, latency, migration pause, crash failover and
/// memory of the migrating chat, side by side with a bare tonic broadcast
/// server, NATS and Redis pub/sub. Prints a markdown table and writes
/// results.json, results.md and PNG plots.
#[derive(Debug, Parser)]
#[command(name = "chat-bench", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Internal: a server process of a benchmark.
    #[command(subcommand)]
    pub command: Option<Internal>,
    /// The benchmark run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Options of a benchmark run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Run every scenario at a small size (well under a minute in all).
    #[arg(long)]
    pub quick: bool,

    /// Directory for results.json, results.md and the PNG plots.
    #[arg(long, default_value = "docs/bench")]
    pub out: PathBuf,

    /// Scenarios to run.
    #[arg(long, value_delimiter = ',', default_value = "A,B,C,D,E,F,G")]
    pub scenarios: Vec<ScenarioId>,

    /// Systems to run (D, E and F apply to ours only; bare tonic signed
    /// runs in A, B and G, the only peer in G).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ours,tonic,tonic-signed,nats,redis"
    )]
    pub systems: Vec<SystemKind>,

    /// Fail when nats-server or redis-server is missing instead of skipping
    /// that peer (also when the environment has CI=true).
    #[arg(long)]
    pub require_peers: bool,

    /// Do not draw the PNG plots.
    #[arg(long)]
    pub no_plots: bool,

    /// Subscribers in C for every system (default 1000; 50 with --quick).
    #[arg(long)]
    pub c_subs: Option<usize>,

    /// Subscribers in C for ours only (default: as --c-subs).
    #[arg(long)]
    pub c_ours_subs: Option<usize>,

    /// Members registered in F (default 1000; 200 with --quick).
    #[arg(long)]
    pub f_members: Option<usize>,

    /// Rooms in F (default 10000; 1000 with --quick).
    #[arg(long)]
    pub f_rooms: Option<usize>,

    /// TrueType font for the plots' text (Debian: fonts-dejavu-core).
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    pub font: PathBuf,
}

/// Server processes the benchmark starts (hidden from `--help`).
#[derive(Debug, Clone, Subcommand)]
pub enum Internal {
    /// Our relay on an ephemeral port (N = 1).
    #[command(hide = true)]
    Relay {
        /// Planned migration interval.
        #[arg(long, value_parser = chat_proto::cli::parse_duration)]
        migration_interval: Duration,
        /// Host lease.
        #[arg(long, value_parser = chat_proto::cli::parse_duration, default_value = "500ms")]
        lease: Duration,
        /// How long a member whose watch stream closed keeps its name.
        #[arg(long, value_parser = chat_proto::cli::parse_duration, default_value = "3s")]
        member_grace: Duration,
    },
    /// A chat node whose user only reads.
    #[command(hide = true)]
    Node {
        /// Relay URI.
        #[arg(long)]
        relay: String,
        /// Member name.
        #[arg(long)]
        name: String,
        /// Print what the client sees, one line per event.
        #[arg(long)]
        report: bool,
        /// Print only how many chat messages were shown so far, every few
        /// thousand and when this many are reached.
        #[arg(long)]
        count_to: Option<u64>,
        /// Be a probing subscriber whose benchmark's base instant is this
        /// many Unix nanoseconds.
        #[arg(long)]
        probe_base: Option<u64>,
    },
    /// The bare tonic broadcast server on an ephemeral port.
    #[command(hide = true)]
    TonicServer {
        /// Keep every frame and replay them to sessions that ask.
        #[arg(long)]
        log: bool,
    },
    /// A late joiner of the signed bare tonic server: receives its log,
    /// checks every message, and prints how many it checked, like
    /// `node --count-to`.
    #[command(hide = true)]
    TonicJoiner {
        /// The server's address, `host:port`.
        #[arg(long)]
        addr: String,
        /// Messages to expect.
        #[arg(long)]
        count_to: u64,
    },
}
