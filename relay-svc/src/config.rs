//! Command line and environment configuration of the relay.

use chat_proto::tls::{Authority, Credentials, TlsError};
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
    Health(chat_proto::cli::HealthArgs),
    /// Create the relay's root of trust in DIR (`relay.key`, `ca.key`,
    /// `ca.pem`; kept if already there) and print the relay's public key:
    /// give every instance of a replicated relay copies of these files
    /// (`--key-dir`).
    InitKeys {
        /// Where to write the keys.
        dir: PathBuf,
    },
}

/// Where the relay keeps its durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// In this process (today's relay): the epoch and the name bindings
    /// in the data directory, the rest rebuilt from the nodes.
    Memory,
    /// In an etcd cluster at these endpoints (`http://HOST:PORT`): one
    /// instance leads at a time, the others stand by.
    Etcd(Vec<String>),
}

impl StoreSpec {
    /// Whether the state is in etcd.
    pub fn is_etcd(&self) -> bool {
        matches!(self, StoreSpec::Etcd(_))
    }
}

/// Parses `memory` or `etcd://HOST:PORT,HOST:PORT,...`.
pub fn parse_store(text: &str) -> Result<StoreSpec, String> {
    if text == "memory" {
        return Ok(StoreSpec::Memory);
    }
    let Some(list) = text.strip_prefix("etcd://") else {
        return Err("expected `memory` or `etcd://HOST:PORT,HOST:PORT,...`".into());
    };
    let endpoints: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| format!("http://{e}"))
        .collect();
    let valid = |e: &String| {
        e.parse::<tonic::transport::Uri>()
            .is_ok_and(|u| u.port_u16().is_some() && u.path() == "/")
    };
    if endpoints.is_empty() || !endpoints.iter().all(valid) {
        return Err(format!("`{list}`: expected HOST:PORT,HOST:PORT,..."));
    }
    Ok(StoreSpec::Etcd(endpoints))
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
          value_parser = chat_proto::cli::parse_duration)]
    pub migration_interval: Duration,

    /// How long a member whose watch stream closed keeps its name before the
    /// relay forgets it, e.g. `3s`.
    #[arg(long, env = "RELAY_MEMBER_GRACE", default_value = "3s",
          value_parser = chat_proto::cli::parse_duration)]
    pub member_grace: Duration,

    /// How long a room member may be without a session before the host
    /// counts it as gone from the room (told to every node), e.g. `10s`.
    #[arg(long, env = "RELAY_AWAY_GRACE", default_value = "10s",
          value_parser = chat_proto::cli::parse_duration)]
    pub away_grace: Duration,

    /// How long the name and TLS certificates the relay issues stay valid;
    /// nodes renew theirs when two thirds have passed, e.g. `24h`.
    #[arg(long, env = "RELAY_CERTIFICATE_TTL", default_value = "24h",
          value_parser = chat_proto::cli::parse_duration)]
    pub certificate_ttl: Duration,

    /// How long the host's lease lasts without renewal; a host silent for
    /// longer is replaced by its successor, e.g. `500ms`.
    #[arg(long, env = "RELAY_LEASE", default_value = "500ms",
          value_parser = chat_proto::cli::parse_duration)]
    pub lease: Duration,

    /// Secret a member must present to `$reset` the chat. Without it nobody
    /// may reset.
    #[arg(long, env = "RELAY_ADMIN_SECRET", hide_env_values = true)]
    pub admin_secret: Option<String>,

    /// Directory of the relay's persistent key (`relay.key`, created on
    /// first start) and TLS certificate authority (`ca.pem`, `ca.key`).
    /// Nodes pin the key and trust the authority: keep the directory
    /// across restarts.
    #[arg(long, env = "RELAY_DATA_DIR", default_value = "relay-data")]
    pub data_dir: Option<PathBuf>,

    /// Serve this certificate chain (PEM) instead of the one the relay's
    /// authority issues itself; the authority still issues the nodes'
    /// certificates. Needs --tls-key.
    #[arg(
        long,
        env = "RELAY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "plaintext"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        env = "RELAY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert",
        conflicts_with = "plaintext"
    )]
    pub tls_key: Option<PathBuf>,

    /// Another host name or IP address the automatic server certificate
    /// is valid for, besides localhost, 127.0.0.1 and ::1 (repeatable; the
    /// env variable takes a comma-separated list): the name nodes use in
    /// the relay URI, e.g. `relay`.
    #[arg(
        long = "tls-name",
        env = "RELAY_TLS_NAMES",
        value_name = "NAME",
        value_delimiter = ',',
        conflicts_with = "plaintext"
    )]
    pub tls_names: Vec<String>,

    /// Serve without TLS: anyone on the path can read what nodes send the
    /// relay. A deliberate choice, for one machine (nodes then need an
    /// `http://` relay URI).
    #[arg(long, env = "RELAY_PLAINTEXT")]
    pub plaintext: bool,

    /// Chat messages each member may send per second, sustained (0: no
    /// limit). Hosts refuse faster senders with a retry delay.
    #[arg(long, env = "RELAY_MESSAGES_PER_SECOND", default_value_t = 20)]
    pub messages_per_second: u32,

    /// Messages a member may send at once before the rate applies.
    #[arg(long, env = "RELAY_MESSAGE_BURST", default_value_t = 50)]
    pub message_burst: u32,

    /// Retention for every room: entries older than this (by the time
    /// their sender signed, `sent_at`) are dropped from every copy of the
    /// log, e.g. `30d`, `12h`. Default: kept for ever.
    #[arg(long, env = "RELAY_HISTORY_MAX_AGE",
          value_parser = chat_proto::cli::parse_duration)]
    pub history_max_age: Option<Duration>,

    /// Retention for every room: only the newest this many entries of a
    /// room's log are kept; older ones are dropped from every copy.
    /// Default: no limit.
    #[arg(long, env = "RELAY_HISTORY_MAX_ENTRIES",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub history_max_entries: Option<u64>,

    /// Most rooms the relay holds at once: a JoinRoom or Register that
    /// would create another is refused (RESOURCE_EXHAUSTED) until rooms
    /// empty.
    #[arg(long, env = "RELAY_MAX_ROOMS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rooms: u32,

    /// Most rooms one member may be in (at most 1000, what one Register
    /// may claim); joining another is refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "RELAY_MAX_ROOMS_PER_MEMBER", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_rooms_per_member: u32,

    /// New identities (keys the relay never bound) one source address (an
    /// IPv4 address, or an IPv6 /64) may register per minute, all at once
    /// or spread (0: no limit). A key registering again never counts.
    #[arg(long, env = "RELAY_NEW_IDENTITIES_PER_MINUTE", default_value_t = 60)]
    pub new_identities_per_minute: u32,

    /// Where the relay's durable state lives: `memory` (this process and
    /// its data directory) or `etcd://HOST:PORT,HOST:PORT,...` (shared by
    /// every instance given the same endpoints and --etcd-prefix: one
    /// leads, the others stand by and answer UNAVAILABLE). With etcd the
    /// keys must already exist (see --key-dir and `init-keys`).
    #[arg(long, env = "RELAY_STORE", default_value = "memory", value_parser = parse_store)]
    pub store: StoreSpec,

    /// The prefix of every etcd key of this relay (several relays may
    /// share one etcd cluster under different prefixes).
    #[arg(long, env = "RELAY_ETCD_PREFIX", default_value = "/chat-relay")]
    pub etcd_prefix: String,

    /// How long the leader's etcd lease lasts without renewal (whole
    /// seconds, at least 2): a standby takes over within about this after
    /// the leader dies; the leader stops answering when it could not
    /// renew for this long.
    #[arg(long, env = "RELAY_ETCD_LEASE", default_value = "3s",
          value_parser = chat_proto::cli::parse_duration)]
    pub etcd_lease: Duration,

    /// The address nodes reach this instance at, written in etcd while it
    /// leads so that standbys can name it (default: --listen).
    #[arg(long, env = "RELAY_ADVERTISE")]
    pub advertise: Option<String>,

    /// Directory of the shared root of trust: `relay.key` (signs host
    /// terms and name certificates) and `ca.key`, `ca.pem` (the TLS
    /// authority). Read, never created: make them once with `relay-svc
    /// init-keys DIR` and give every instance the same files. Default:
    /// the data directory, where a lone relay creates them.
    #[arg(long, env = "RELAY_KEY_DIR", value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
}

/// The admin secret of [`RelayConfig::for_tests`].
#[cfg(any(test, feature = "test-util"))]
pub const TEST_ADMIN_SECRET: &str = "test-admin-secret";

/// Configurations for tests and benchmarks (feature `test-util`): never
/// part of the relay's own program.
#[cfg(any(test, feature = "test-util"))]
impl RelayConfig {
    /// A configuration for tests: listen address comes from the caller's listener.
    pub fn for_tests(min_users: u32, migration_interval: Duration) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            min_users,
            migration_interval,
            member_grace: Duration::from_secs(3),
            away_grace: Duration::from_secs(10),
            certificate_ttl: Duration::from_secs(24 * 60 * 60),
            lease: Duration::from_millis(500),
            admin_secret: Some(TEST_ADMIN_SECRET.to_string()),
            // An ephemeral key: tests that restart a relay choose a directory.
            data_dir: None,
            messages_per_second: 20,
            message_burst: 50,
            // Benchmarks create many rooms and members; tests of the
            // limits set their own.
            max_rooms: 1_000_000,
            // Tests of retention set their own.
            history_max_age: None,
            history_max_entries: None,
            max_rooms_per_member: 1000,
            // Every test member registers from 127.0.0.1; tests of the
            // limit set one.
            new_identities_per_minute: 0,
            tls_cert: None,
            tls_key: None,
            tls_names: Vec::new(),
            // Most tests run on one machine in plaintext; TLS tests use
            // `for_tls_tests`.
            plaintext: true,
            store: StoreSpec::Memory,
            etcd_prefix: "/chat-relay".into(),
            etcd_lease: Duration::from_secs(3),
            advertise: None,
            key_dir: None,
        }
    }

    /// A configuration for TLS tests: the relay keeps its key and its
    /// certificate authority in `data_dir` (so the test can read
    /// `ca.pem`) and serves TLS with a certificate for `localhost`,
    /// `127.0.0.1` and `::1`.
    pub fn for_tls_tests(
        min_users: u32,
        migration_interval: Duration,
        data_dir: &std::path::Path,
    ) -> Self {
        Self {
            data_dir: Some(data_dir.to_path_buf()),
            plaintext: false,
            ..Self::for_tests(min_users, migration_interval)
        }
    }
}

impl RelayConfig {
    /// How long one host may keep a room: twice the migration interval
    /// plus the lease. An honest host moves the room on its schedule well
    /// before; one that keeps renewing past it loses the room to its
    /// successor, as when its lease runs out.
    pub fn term_limit(&self) -> Duration {
        self.migration_interval
            .saturating_mul(2)
            .saturating_add(self.lease)
    }

    /// The relay's certificate authority, unless it serves plaintext: kept
    /// in the key directory (read, never created: `--key-dir` or etcd) or
    /// the data directory, or ephemeral without one.
    pub fn load_authority(&self) -> Result<Option<Authority>, TlsError> {
        if self.plaintext {
            return Ok(None);
        }
        match self.trust_dir() {
            Some(dir) => {
                if !self.creates_keys() {
                    for file in [
                        chat_proto::tls::AUTHORITY_KEY_FILE,
                        chat_proto::tls::AUTHORITY_CERT_FILE,
                    ] {
                        must_exist(&dir.join(file)).map_err(|e| TlsError::File {
                            path: dir.join(file),
                            reason: e.to_string(),
                        })?;
                    }
                }
                Authority::load_or_create(dir).map(Some)
            }
            None => Authority::ephemeral().map(Some),
        }
    }

    /// Where the keys are: `--key-dir`, else the data directory.
    fn trust_dir(&self) -> Option<&std::path::Path> {
        self.key_dir.as_deref().or(self.data_dir.as_deref())
    }

    /// Whether missing keys are created: only by a lone relay in its own
    /// data directory. A shared root of trust is made once, on purpose
    /// (`init-keys`): instances creating their own would not trust each
    /// other's certificates.
    fn creates_keys(&self) -> bool {
        self.key_dir.is_none() && !self.store.is_etcd()
    }

    /// What the relay presents to TLS clients: `--tls-cert` and
    /// `--tls-key`, or a certificate `authority` issues for `localhost`,
    /// `127.0.0.1`, `::1` and every `--tls-name`.
    pub fn server_credentials(&self, authority: &Authority) -> Result<Credentials, TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Credentials::from_files(cert, key),
            _ => authority.issue_server(&self.tls_names),
        }
    }

    /// The relay's key: kept in the key or data directory (read, never
    /// created, with `--key-dir` or etcd), or ephemeral without one.
    pub fn load_key(&self) -> std::io::Result<chat_proto::trust::Keypair> {
        match self.trust_dir() {
            Some(dir) => {
                let path = dir.join(RELAY_KEY_FILE);
                if !self.creates_keys() {
                    must_exist(&path)?;
                }
                chat_proto::trust::Keypair::load_or_create(&path)
            }
            None if self.store.is_etcd() => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "--store etcd needs the shared keys: --key-dir DIR (see `relay-svc init-keys`)",
            )),
            None => Ok(chat_proto::trust::Keypair::generate()),
        }
    }

    /// The address standbys name for this instance while it leads.
    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
}

/// The file of the relay's signing key in the key or data directory.
pub const RELAY_KEY_FILE: &str = "relay.key";

/// Refuses a key file that is not there (it would be created otherwise).
fn must_exist(path: &std::path::Path) -> std::io::Result<()> {
    match path.exists() {
        true => Ok(()),
        false => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{} is missing: shared keys are never created by an instance \
                 (make them once with `relay-svc init-keys DIR`)",
                path.display()
            ),
        )),
    }
}

/// `relay-svc init-keys DIR`: creates the root of trust in `dir` (keeps
/// what is there) and returns the relay's public key, hex.
pub fn init_keys(dir: &std::path::Path) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = chat_proto::trust::Keypair::load_or_create(&dir.join(RELAY_KEY_FILE))
        .map_err(|e| e.to_string())?;
    Authority::load_or_create(dir).map_err(|e| e.to_string())?;
    Ok(chat_proto::trust::hex(&key.public_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_off_unless_asked_for_and_parses_durations_and_counts() {
        let cli = RelayCli::try_parse_from(["relay-svc"]).expect("parses");
        assert_eq!(cli.config.history_max_age, None);
        assert_eq!(cli.config.history_max_entries, None);
        let cli = RelayCli::try_parse_from([
            "relay-svc",
            "--history-max-age",
            "30d",
            "--history-max-entries",
            "50",
        ])
        .expect("parses");
        let month = Duration::from_secs(30 * 24 * 60 * 60);
        assert_eq!(cli.config.history_max_age, Some(month));
        assert_eq!(cli.config.history_max_entries, Some(50));
        assert!(RelayCli::try_parse_from(["relay-svc", "--history-max-entries", "0"]).is_err());
        assert!(RelayCli::try_parse_from(["relay-svc", "--history-max-age", "soon"]).is_err());
    }
}
