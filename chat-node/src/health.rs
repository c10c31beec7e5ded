//! `chat-node health`: the `grpc.health.v1` check of both binaries, plus a
//! way to name the node to expect by its key. A node's certificate names
//! only `<node_id>.node.invalid`, and the node id is derived from the
//! node's key: a container's healthcheck knows its key file (e.g.
//! `/data/NAME.key`) but not, in advance, its node id.

use chat_proto::cli::HealthArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `chat-node health`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeHealthArgs {
    /// The check itself.
    #[command(flatten)]
    pub check: HealthArgs,

    /// With --ca: expect the node that holds this key file (its
    /// certificate names `<node_id>.node.invalid`, derived from the key),
    /// e.g. `/data/NAME.key` in a node's own container. The file is only
    /// read.
    #[arg(
        long,
        value_name = "FILE",
        requires = "ca",
        conflicts_with = "server_name"
    )]
    pub node_key: Option<PathBuf>,
}

impl NodeHealthArgs {
    /// Runs the check: prints the status, exit 0 only if SERVING.
    pub async fn run(mut self) -> ExitCode {
        if let Some(path) = &self.node_key {
            match server_name_of_key(path) {
                Ok(name) => self.check.server_name = Some(name),
                Err(e) => {
                    eprintln!("chat-node: health check failed: --node-key: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        self.check.run("chat-node").await
    }
}

/// The TLS name of the node whose key (32 secret bytes) is in `path`.
pub fn server_name_of_key(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let secret: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("{} is not a 32-byte key file", path.display()))?;
    let key = chat_proto::trust::Keypair::from_secret(secret);
    let node_id = chat_proto::trust::node_id_of(&key.public_key());
    Ok(chat_proto::tls::node_domain(&node_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_names_its_node() {
        let dir = std::env::temp_dir().join(format!("chat-node-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("alice.key");
        let _ = std::fs::remove_file(&path);
        let key = chat_proto::trust::Keypair::load_or_create(&path).expect("key");
        let expected =
            chat_proto::tls::node_domain(&chat_proto::trust::node_id_of(&key.public_key()));
        assert_eq!(server_name_of_key(&path), Ok(expected));
        std::fs::write(&path, b"short").expect("write");
        assert!(server_name_of_key(&path).is_err_and(|e| e.contains("32-byte")));
        assert!(server_name_of_key(&dir.join("absent.key")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
