//! chat-bench: throughput, latency, migration pause, crash failover and
//! memory of the migrating chat, measured side by side with a bare tonic
//! broadcast server (the ceiling for our stack), the same with end-to-end
//! signatures (the least any signed system pays), NATS and Redis pub/sub.
//!
//! Every system runs its server side in processes of its own (so their CPU
//! and memory can be read from `/proc`), and its clients in this process
//! (so send and receive times share one clock), except ours' verifying
//! members and G's late joiners, which run in processes of their own and
//! measure against this process's clock. It reports; it asserts nothing
//! about timings.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod children;
pub mod cli;
pub mod error;
pub mod member;
pub mod payload;
pub mod plot;
pub mod procstat;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod serve;
pub mod signatures;
pub mod stats;
pub mod systems;

pub use error::{within, BenchError, Result};

/// Generated code of the benchmark's own broadcast proto.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("bench.v1");
}
