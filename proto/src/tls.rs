//! TLS on every hop, in one place: the relay's small certificate authority
//! (kept in its data directory), the certificates it issues (its own server
//! certificate, and one per node for the node's ECDSA P-256 TLS key, from
//! the node's certificate signing request, naming the node of its Ed25519
//! identity key), the tonic server and client configurations, and reading
//! a node id out of a peer's certificate.
//!
//! rustls with ring is the only crypto provider of the build; [`init`]
//! makes it the process default. No cryptography is written here: rcgen
//! makes and signs certificates, rustls and webpki check them.

use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A DER certificate, as `tonic::Request::peer_certs` gives them.
pub use rustls::pki_types::CertificateDer;
/// A server's TLS configuration (see [`server_config`]).
pub use rustls::ServerConfig;

mod authority;
mod key;
mod server;

pub use authority::{certificate_request, check_certificate_request, Authority, NodeRequest};
pub use key::TlsKey;
pub use server::{
    incoming, server_config, server_config_with, ClientAuthority, ServerCertificate, TlsIncoming,
};

/// Suffix of the one DNS name in a node certificate, `<node_id>.node.invalid`:
/// `.invalid` is reserved (RFC 2606), so it never names a real host.
pub const NODE_NAME_SUFFIX: &str = ".node.invalid";
/// Largest certificate signing request a Register may carry, in bytes.
pub const MAX_CSR_BYTES: usize = 4096;
/// Names the relay's automatic server certificate always carries.
pub const DEFAULT_SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Bound on a TLS handshake, on either side: a peer that speaks no TLS
/// (or nothing) costs at most this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The authority's certificate, in the relay's data directory.
pub const AUTHORITY_CERT_FILE: &str = "ca.pem";
/// The authority's private key, next to it (readable by the owner only).
pub const AUTHORITY_KEY_FILE: &str = "ca.key";

/// Makes ring the process-wide rustls crypto provider. Both binaries call
/// it at start; calling it again (or after another caller) does nothing.
pub fn init() {
    // Err only means a provider is installed already: ring, in this build.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a certificate could not be made, read or accepted.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A certificate or key could not be made or parsed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A certificate signing request was refused.
    #[error("certificate request: {0}")]
    Request(String),
    /// A peer's certificate names no node.
    #[error("the certificate names no node: {0}")]
    NoNode(String),
    /// A client certificate was refused; says why.
    #[error("{0}")]
    Refused(String),
}

fn cert_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Certificate(e.to_string())
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |e| TlsError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// A certificate chain and its private key, PEM: what a TLS endpoint
/// presents.
#[derive(Clone)]
pub struct Credentials {
    /// The certificate (and any intermediates), PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads a PEM certificate chain and a PEM private key (`--tls-cert`,
    /// `--tls-key`).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            cert_pem: std::fs::read_to_string(cert).map_err(file_err(cert))?,
            key_pem: std::fs::read_to_string(key).map_err(file_err(key))?,
        })
    }

    /// A node's credentials: the certificate the relay issued for its TLS
    /// key, and that key.
    pub fn for_node(key: &TlsKey, cert_der: &[u8]) -> Result<Self, TlsError> {
        Ok(Self {
            cert_pem: certificate_pem(cert_der),
            key_pem: key.pem().to_string(),
        })
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

/// PEM of a DER certificate.
pub fn certificate_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// DER of the first certificate in `pem_text`.
pub fn certificate_der(pem_text: &str) -> Result<Vec<u8>, TlsError> {
    pem::parse_many(pem_text)
        .map_err(cert_err)?
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .ok_or_else(|| TlsError::Certificate("no CERTIFICATE in the PEM text".into()))
}

/// The DNS name a node's certificate carries: `<node_id>.node.invalid`.
pub fn node_domain(node_id: &str) -> String {
    format!("{node_id}{NODE_NAME_SUFFIX}")
}

/// The node id a node certificate names (its `<node_id>.node.invalid` DNS
/// name). The certificate's chain must have been verified against the
/// relay's authority already (the TLS layer does, or
/// [`ClientAuthority::verify_node`]): the relay's signature is what binds
/// the certificate's TLS key to that node, whose id is derived from its
/// Ed25519 identity key ([`crate::trust::node_id_of`]). The relay issues
/// it only for a certificate request covered by a Register signed with
/// that identity key.
pub fn node_id_of_certificate(der: &[u8]) -> Result<String, TlsError> {
    let no_node = |why: &str| TlsError::NoNode(why.to_string());
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| no_node(&e.to_string()))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|e| no_node(&e.to_string()))?
        .ok_or_else(|| no_node("no subject alternative name"))?;
    let node_id = names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => {
                dns.strip_suffix(NODE_NAME_SUFFIX)
            }
            _ => None,
        })
        .ok_or_else(|| no_node(&format!("no DNS name ending in {NODE_NAME_SUFFIX}")))?;
    Ok(node_id.to_string())
}

/// The crypto provider of every TLS configuration made here.
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The TLS configuration of a client that trusts `authority_pem` only,
/// expects the server to be `domain` (by default the host of the URI it
/// dials) and presents `identity`, if any.
pub fn client_config(
    authority_pem: &str,
    domain: Option<&str>,
    identity: Option<&Credentials>,
) -> ClientTlsConfig {
    init();
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(authority_pem))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(domain) = domain {
        config = config.domain_name(domain);
    }
    if let Some(identity) = identity {
        config = config.identity(identity.identity());
    }
    config
}
