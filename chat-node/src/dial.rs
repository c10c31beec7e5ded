//! How this node reaches the others and how they reach it: one [`Dialer`]
//! makes every outgoing connection (the relay, hosts, successors, private
//! messages), and the same credentials serve its own endpoint.
//!
//! The relay URI's scheme decides for the whole node. `https://`: TLS
//! everywhere; the relay is verified against `--relay-ca`, other nodes
//! against the authority the relay names at registration, each by the node
//! id it is meant to be (`<node_id>.node.invalid`), and this node presents
//! its relay-issued certificate, for its own ECDSA P-256 TLS key (the
//! relay binds that key to the node's Ed25519 identity at registration).
//! `http://`: plaintext, which is only for
//! one machine: the relay and every node dialled must be on loopback
//! unless `--allow-plaintext` says otherwise.

use chat_proto::tls::{self, ClientAuthority, Credentials, TlsError, TlsKey};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Status;

/// Bound on connecting to the relay (TCP; the TLS handshake has its own).
const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How the node protects its connections (`--relay-ca`, `--allow-plaintext`).
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// The relay's certificate authority, PEM: needed for an `https://`
    /// relay URI.
    pub relay_ca_pem: Option<String>,
    /// Allow plaintext to addresses that are not loopback.
    pub allow_plaintext: bool,
}

/// Why the node cannot talk to the others the way it was told to.
#[derive(Debug, Clone, Error)]
pub enum DialError {
    /// The relay URI is not `http://` or `https://` with a host.
    #[error("bad relay URI {uri:?}: {reason}")]
    RelayUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS was asked for without the relay's authority.
    #[error(
        "the relay URI {0} is https://, so the relay's certificate authority is needed: \
         give it with --relay-ca FILE (env CHAT_RELAY_CA), e.g. the relay's DATA_DIR/ca.pem"
    )]
    NoRelayCa(String),
    /// The `--relay-ca` file could not be read.
    #[error("--relay-ca {}: {reason}", path.display())]
    RelayCaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Plaintext to another machine without `--allow-plaintext`.
    #[error(
        "refusing plaintext (http://) to {}, which is not a loopback address: anyone on the \
         way could read the chat; use an https:// relay URI with --relay-ca FILE, or pass \
         --allow-plaintext (env CHAT_ALLOW_PLAINTEXT=1) to do this deliberately",
        .0.bare()
    )]
    PlaintextNotLoopback(chat_proto::rules::Quoted),
    /// A certificate or key could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// Over TLS, a node is dialled without knowing which node it is.
    #[error(
        "which node listens at {} is not known, so it cannot be verified",
        .0.bare()
    )]
    UnknownNode(chat_proto::rules::Quoted),
    /// A node address that is not a valid URI.
    #[error("bad address {address}: {reason}")]
    BadAddress {
        /// The address given (its start).
        address: chat_proto::rules::Quoted,
        /// What is wrong with it.
        reason: String,
    },
    /// A call between nodes whose TLS client certificate is missing,
    /// invalid, or not the one of the node the call claims to come from.
    #[error("{call} refused: {why}")]
    Unauthenticated {
        /// The call refused (`Replicate`, `DeliverPrivate`...).
        call: &'static str,
        /// Why, in words.
        why: String,
    },
    /// The relay gave no TLS certificate though we asked over TLS.
    #[error("the relay issued no TLS certificate: is it serving plaintext behind a TLS proxy?")]
    NoCertificate,
}

/// Where another node listens, and which node it must prove to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// `host:port`.
    pub address: String,
    /// Its node id (TLS checks the certificate names it).
    pub node_id: String,
}

/// What the relay issued this node at registration (DER), and the key it
/// was issued for.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// This node's TLS key: the certificate is for it.
    pub key: TlsKey,
    /// The relay's authority: it issued every node's certificate.
    pub authority: Vec<u8>,
    /// This node's certificate, for its TLS key, naming its node id.
    pub certificate: Vec<u8>,
}

/// The addresses of a relay URI list (`URI,URI,...`), in order.
pub fn relay_uris(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// Makes every connection of the node; cheap to clone.
#[derive(Clone)]
pub struct Dialer(Arc<Security>);

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.0 {
            Security::Plaintext { .. } => "plaintext",
            Security::Tls { .. } => "tls",
        };
        f.debug_tuple("Dialer").field(&kind).finish()
    }
}

enum Security {
    Plaintext {
        /// `--allow-plaintext`: other machines too.
        allow_remote: bool,
    },
    Tls {
        /// Verifies the relay.
        relay_ca_pem: String,
        /// Once registered: our certificate and the nodes' authority.
        node: Option<NodeTls>,
    },
}

struct NodeTls {
    /// Our TLS key: each certificate the relay issues us is for it.
    key: TlsKey,
    /// The authority of every node certificate, PEM (verifies servers).
    authority_pem: String,
    /// Verifies clients' certificates.
    clients: ClientAuthority,
    /// What we present as a client (replaced when renewed).
    credentials: std::sync::RwLock<Credentials>,
    /// What our server presents (replaced when renewed).
    server: Arc<tls::ServerCertificate>,
}

impl Dialer {
    /// The dialer for the relay at `relay_uri` (or several addresses of
    /// one relay, comma-separated, all with the same scheme), before
    /// registration: checks that the options fit the URIs' scheme.
    pub fn new(relay_uri: &str, options: &TransportOptions) -> Result<Self, DialError> {
        let uris = relay_uris(relay_uri);
        let Some(first) = uris.first() else {
            return Err(DialError::RelayUri {
                uri: relay_uri.to_string(),
                reason: "no relay address".to_string(),
            });
        };
        let security = Self::security_for(first, options)?;
        for uri in &uris[1..] {
            let other = Self::security_for(uri, options)?;
            if matches!(other, Security::Tls { .. }) != matches!(security, Security::Tls { .. }) {
                return Err(DialError::RelayUri {
                    uri: relay_uri.to_string(),
                    reason: "every relay address needs the same scheme".to_string(),
                });
            }
        }
        tls::init();
        Ok(Self(Arc::new(security)))
    }

    /// How to reach the relay at one `relay_uri`.
    fn security_for(relay_uri: &str, options: &TransportOptions) -> Result<Security, DialError> {
        let bad = |reason: &str| DialError::RelayUri {
            uri: relay_uri.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = relay_uri.parse().map_err(|_| bad("not a URI"))?;
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        match uri.scheme_str() {
            Some("https") => Ok(Security::Tls {
                relay_ca_pem: options
                    .relay_ca_pem
                    .clone()
                    .ok_or_else(|| DialError::NoRelayCa(relay_uri.to_string()))?,
                node: None,
            }),
            Some("http") if options.allow_plaintext || is_loopback(host) => {
                Ok(Security::Plaintext {
                    allow_remote: options.allow_plaintext,
                })
            }
            Some("http") => Err(DialError::PlaintextNotLoopback(relay_uri.into())),
            _ => Err(bad("the scheme must be http:// or https://")),
        }
    }

    /// Whether connections run over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(*self.0, Security::Tls { .. })
    }

    /// The certificate signing request to register with, for `key` (TLS
    /// only: empty in plaintext).
    pub fn certificate_request(&self, key: &TlsKey, name: &str) -> Result<Vec<u8>, DialError> {
        match *self.0 {
            Security::Tls { .. } => Ok(tls::certificate_request(key, name)?),
            Security::Plaintext { .. } => Ok(Vec::new()),
        }
    }

    /// The certificate signing request to renew this node's certificate
    /// with, for the TLS key it registered with (empty in plaintext).
    pub fn renewal_request(&self, name: &str) -> Result<Vec<u8>, DialError> {
        match &*self.0 {
            Security::Plaintext { .. } => Ok(Vec::new()),
            Security::Tls { node: None, .. } => Err(DialError::NoCertificate),
            Security::Tls {
                node: Some(node), ..
            } => Ok(tls::certificate_request(&node.key, name)?),
        }
    }

    /// The dialer once registered: presents the certificate the relay
    /// issued (for our TLS key) and trusts the relay's authority for other
    /// nodes.
    pub fn registered(&self, issued: Option<IssuedCertificate>) -> Result<Self, DialError> {
        let Security::Tls { relay_ca_pem, .. } = &*self.0 else {
            return Ok(self.clone());
        };
        let issued = issued
            .filter(|i| !i.certificate.is_empty() && !i.authority.is_empty())
            .ok_or(DialError::NoCertificate)?;
        let credentials = Credentials::for_node(&issued.key, &issued.certificate)?;
        let node = NodeTls {
            key: issued.key,
            authority_pem: tls::certificate_pem(&issued.authority),
            clients: ClientAuthority::new(&issued.authority)?,
            server: Arc::new(tls::ServerCertificate::new(&credentials)?),
            credentials: std::sync::RwLock::new(credentials),
        };
        Ok(Self(Arc::new(Security::Tls {
            relay_ca_pem: relay_ca_pem.clone(),
            node: Some(node),
        })))
    }

    /// A channel to the relay at `uri` (connects lazily, reconnects by
    /// itself).
    pub fn relay(&self, uri: &str) -> Result<Channel, DialError> {
        let bad = |e: &dyn std::fmt::Display| DialError::RelayUri {
            uri: uri.to_string(),
            reason: e.to_string(),
        };
        let endpoint = Endpoint::from_shared(uri.to_string())
            .map_err(|e| bad(&e))?
            .connect_timeout(RELAY_CONNECT_TIMEOUT);
        let endpoint = match &*self.0 {
            Security::Tls { relay_ca_pem, .. } => endpoint
                .tls_config(tls::client_config(relay_ca_pem, None, None))
                .map_err(|e| bad(&e))?,
            Security::Plaintext { .. } => endpoint,
        };
        Ok(endpoint.connect_lazy())
    }

    /// An endpoint for the node `to`, connecting within `connect_timeout`:
    /// over TLS it must present a certificate for `to.node_id`, and we
    /// present ours; in plaintext `to` must be on loopback unless
    /// `--allow-plaintext`.
    pub fn node(&self, to: &NodeAddr, connect_timeout: Duration) -> Result<Endpoint, DialError> {
        let bad = |e: &dyn std::fmt::Display| DialError::BadAddress {
            address: (&to.address).into(),
            reason: e.to_string(),
        };
        let endpoint = match &*self.0 {
            Security::Plaintext { allow_remote } => {
                let endpoint =
                    Endpoint::from_shared(format!("http://{}", to.address)).map_err(|e| bad(&e))?;
                let host = endpoint.uri().host().unwrap_or_default();
                if !allow_remote && !is_loopback(host) {
                    return Err(DialError::PlaintextNotLoopback((&to.address).into()));
                }
                endpoint
            }
            Security::Tls { node: None, .. } => return Err(DialError::NoCertificate),
            Security::Tls {
                node: Some(node), ..
            } => {
                if to.node_id.is_empty() {
                    return Err(DialError::UnknownNode((&to.address).into()));
                }
                let domain = tls::node_domain(&to.node_id);
                let credentials = node.credentials.read().unwrap_or_else(|p| p.into_inner());
                let config =
                    tls::client_config(&node.authority_pem, Some(&domain), Some(&credentials));
                Endpoint::from_shared(format!("https://{}", to.address))
                    .map_err(|e| bad(&e))?
                    .tls_config(config)
                    .map_err(|e| bad(&e))?
            }
        };
        Ok(endpoint.connect_timeout(connect_timeout))
    }

    /// The TLS configuration of this node's own endpoint (`None`:
    /// plaintext): its certificate, and clients' certificates asked for.
    pub fn server_tls(&self) -> Result<Option<Arc<tls::ServerConfig>>, DialError> {
        match &*self.0 {
            Security::Plaintext { .. } => Ok(None),
            Security::Tls { node: None, .. } => Err(DialError::NoCertificate),
            Security::Tls {
                node: Some(node), ..
            } => Ok(Some(tls::server_config_with(
                node.server.clone(),
                Some(&node.clients),
            )?)),
        }
    }

    /// Presents `certificate` (DER, newly issued by the relay for our TLS
    /// key, see [`Self::renewal_request`]) from now on, as client and as
    /// server: connections made from now on use it, open ones keep the one
    /// they were made with. Nothing to do in plaintext.
    pub fn renew(&self, certificate: &[u8]) -> Result<(), DialError> {
        let Security::Tls {
            node: Some(node), ..
        } = &*self.0
        else {
            return Ok(());
        };
        let credentials = Credentials::for_node(&node.key, certificate)?;
        node.server.replace(&credentials)?;
        *node.credentials.write().unwrap_or_else(|p| p.into_inner()) = credentials;
        Ok(())
    }

    /// Why the relay at `uri` could not be reached, if `status` is a
    /// connection failure rather than the relay's answer: the causes, and
    /// a hint when TLS and plaintext may be mixed up.
    pub fn unreachable(&self, uri: &str, status: &Status) -> Option<String> {
        let why = with_causes(std::error::Error::source(status)?);
        let hint = match *self.0 {
            Security::Plaintext { .. } => {
                "if the relay serves TLS (its default), use an https:// relay URI with \
                 --relay-ca (the relay's DATA_DIR/ca.pem)"
            }
            Security::Tls { .. } => {
                "if the relay serves plaintext (--plaintext), use an http:// relay URI; \
                 otherwise check that --relay-ca is the relay's DATA_DIR/ca.pem"
            }
        };
        Some(format!("cannot reach the relay at {uri}: {why}; {hint}"))
    }

    /// Checks that a call's client certificate is a valid relay-issued
    /// certificate for `node_id` (always true in plaintext, where nothing
    /// could tell).
    pub(crate) fn authenticate(
        &self,
        peer: &PeerCerts,
        node_id: &str,
        call: &'static str,
    ) -> Result<(), DialError> {
        let Security::Tls {
            node: Some(node), ..
        } = &*self.0
        else {
            return Ok(());
        };
        let refused = |why: String| DialError::Unauthenticated { call, why };
        // The node id comes from the caller's request: quote only its start.
        let named = chat_proto::rules::Quoted::new(node_id);
        let named = named.bare();
        let chain = peer.as_deref().map(Vec::as_slice).unwrap_or_default();
        if chain.is_empty() {
            return Err(refused(format!(
                "it needs the relay-issued client certificate of node {named}, and none was \
                 presented"
            )));
        }
        match node.clients.verify_node(chain) {
            Ok(id) if id == node_id => Ok(()),
            Ok(id) => Err(refused(format!(
                "the client certificate is for node {id}, not for node {named}"
            ))),
            Err(e) => Err(refused(e.to_string())),
        }
    }
}

/// The client certificates of a call, as `Request::peer_certs` gives them.
pub type PeerCerts = Option<Arc<Vec<tls::CertificateDer<'static>>>>;

/// Whether `host` (a URI host: a name, an IP or a bracketed IPv6) is this
/// machine: `localhost` or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            host.eq_ignore_ascii_case("localhost")
                || host.to_ascii_lowercase().ends_with(".localhost")
        }
    }
}

/// An error and its causes, each once: "transport error: dns error: failed
/// to lookup address information: Name or service not known", where the
/// error alone says only "transport error".
pub fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut why: Vec<String> = Vec::new();
    let mut cause = Some(err);
    while let Some(e) = cause {
        let part = e.to_string();
        if why.last() != Some(&part) {
            why.push(part);
        }
        cause = e.source();
    }
    why.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_told_with_its_causes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("transport error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let dns = std::io::Error::other("failed to lookup address information");
        assert_eq!(
            with_causes(&Outer(dns)),
            "transport error: failed to lookup address information"
        );
    }

    #[test]
    fn loopback_is_recognised() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "::1",
            "localhost",
            "a.localhost",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "relay",
            "example.com",
            "[2001:db8::1]",
            "localhost.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn a_huge_address_from_a_peer_is_quoted_short() {
        let dialer = Dialer::new("http://127.0.0.1:5000", &TransportOptions::default()).unwrap();
        let huge = |host: &str| NodeAddr {
            address: format!("{host}{}:1", "x".repeat(1 << 20)),
            node_id: "n1".into(),
        };
        for to in [huge("127.0.0.1."), huge("relay."), huge("bad address ")] {
            let refused = dialer.node(&to, Duration::from_secs(1)).unwrap_err();
            let said = refused.to_string();
            assert!(said.len() < 600, "{} bytes", said.len());
            assert!(said.contains("more bytes)"), "{said}");
        }
    }

    #[test]
    fn the_scheme_decides_and_plaintext_stays_on_this_machine() {
        let none = TransportOptions::default();
        assert!(!Dialer::new("http://127.0.0.1:5000", &none)
            .unwrap()
            .is_tls());
        let remote = Dialer::new("http://relay:5000", &none).unwrap_err();
        assert!(remote.to_string().contains("--allow-plaintext"), "{remote}");
        let allowed = TransportOptions {
            allow_plaintext: true,
            ..Default::default()
        };
        assert!(Dialer::new("http://relay:5000", &allowed).is_ok());
        let no_ca = Dialer::new("https://relay:5000", &none).unwrap_err();
        assert!(no_ca.to_string().contains("--relay-ca"), "{no_ca}");
        assert!(Dialer::new("ftp://relay:5000", &none).is_err());

        let local = Dialer::new("http://127.0.0.1:5000", &none).unwrap();
        let far = NodeAddr {
            address: "10.1.2.3:7000".into(),
            node_id: String::new(),
        };
        let refused = local.node(&far, Duration::from_secs(1)).unwrap_err();
        assert!(
            refused.to_string().contains("--allow-plaintext"),
            "{refused:?}"
        );
        let near = NodeAddr {
            address: "127.0.0.1:7000".into(),
            node_id: String::new(),
        };
        assert!(local.node(&near, Duration::from_secs(1)).is_ok());
    }
}
