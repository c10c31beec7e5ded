//! TLS on every hop, in one place: the relay's small certificate authority
//! (kept in its data directory), the certificates it issues (its own server
//! certificate, and one per node for the node's Ed25519 identity key, from
//! the node's certificate signing request), the tonic server and client
//! configurations, and reading a node id out of a peer's certificate.
//!
//! rustls with ring is the only crypto provider of the build; [`init`]
//! makes it the process default. No cryptography is written here: rcgen
//! makes and signs certificates, rustls and webpki check them.

use crate::trust::{self, Keypair};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A DER certificate, as `tonic::Request::peer_certs` gives them.
pub use rustls::pki_types::CertificateDer;
/// A server's TLS configuration (see [`server_config`]).
pub use rustls::ServerConfig;

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

/// How far back a new certificate's validity starts, for clocks that lag.
const BACKDATE: time::Duration = time::Duration::minutes(5);
/// How long the authority is valid.
const AUTHORITY_VALIDITY: time::Duration = time::Duration::days(3650);
/// How long the relay's automatic server certificate is valid (a new one
/// is issued at every start).
const SERVER_VALIDITY: time::Duration = time::Duration::days(365);

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

    /// A node's credentials: the certificate the relay issued for its key,
    /// and that key.
    pub fn for_node(key: &Keypair, cert_der: &[u8]) -> Result<Self, TlsError> {
        let pkcs8 = key.to_pkcs8_der().map_err(cert_err)?;
        Ok(Self {
            cert_pem: certificate_pem(cert_der),
            key_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8)),
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

/// The relay's certificate authority: it issues the relay's own server
/// certificate and every node's certificate.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// The authority kept in `dir` (`ca.pem`, `ca.key`), created there on
    /// first use and the same ever after, so nodes keep trusting it.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        init();
        let key_path = dir.join(AUTHORITY_KEY_FILE);
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem_text) => KeyPair::from_pem(&pem_text).map_err(|e| TlsError::File {
                path: key_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key =
                    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
                match trust::write_private(&key_path, key.serialize_pem().as_bytes()) {
                    Ok(()) => key,
                    // Another process made it first: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::load_or_create(dir)
                    }
                    Err(e) => return Err(file_err(&key_path)(e)),
                }
            }
            Err(e) => return Err(file_err(&key_path)(e)),
        };
        let cert_path = dir.join(AUTHORITY_CERT_FILE);
        let cert_der = match std::fs::read_to_string(&cert_path) {
            Ok(pem_text) => certificate_der(&pem_text).map_err(|e| TlsError::File {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = authority_params()?.self_signed(&key).map_err(cert_err)?;
                let der = der.der().to_vec();
                match trust::write_new(&cert_path, certificate_pem(&der).as_bytes(), 0o644) {
                    Ok(()) => der,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::load_or_create(dir)
                    }
                    Err(e) => return Err(file_err(&cert_path)(e)),
                }
            }
            Err(e) => return Err(file_err(&cert_path)(e)),
        };
        if public_key_of(&cert_der)? != key.public_key_raw() {
            return Err(TlsError::File {
                path: cert_path,
                reason: format!("its key is not the one in {AUTHORITY_KEY_FILE}"),
            });
        }
        Self::from_parts(cert_der, key)
    }

    /// An authority in memory only (a relay without a data directory: its
    /// nodes' certificates mean nothing after it stops).
    pub fn ephemeral() -> Result<Self, TlsError> {
        init();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let cert = authority_params()?.self_signed(&key).map_err(cert_err)?;
        Self::from_parts(cert.der().to_vec(), key)
    }

    fn from_parts(cert_der: Vec<u8>, key: KeyPair) -> Result<Self, TlsError> {
        let issuer =
            Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key).map_err(cert_err)?;
        Ok(Self { issuer, cert_der })
    }

    /// The authority's certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The authority's certificate, PEM (what `ca.pem` holds).
    pub fn certificate_pem(&self) -> String {
        certificate_pem(&self.cert_der)
    }

    /// A server certificate for the relay, with a fresh key: valid for
    /// `localhost`, `127.0.0.1`, `::1` and every name in `extra_names`.
    pub fn issue_server(&self, extra_names: &[String]) -> Result<Credentials, TlsError> {
        let names: Vec<String> = DEFAULT_SERVER_NAMES
            .iter()
            .map(|n| n.to_string())
            .chain(extra_names.iter().cloned())
            .collect();
        let mut params = CertificateParams::new(names).map_err(cert_err)?;
        params.distinguished_name = common_name("chat relay");
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + SERVER_VALIDITY;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        Ok(Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A node's certificate for the key of a checked request: subject CN
    /// `name`, one DNS name `<node_id>.node.invalid`, for both server and
    /// client use, valid from five minutes ago until `not_after_unix_ms`
    /// (the node's name certificate expires then too). DER.
    pub fn issue_node(
        &self,
        request: &NodeRequest,
        name: &str,
        node_id: &str,
        not_after_unix_ms: i64,
    ) -> Result<Vec<u8>, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(name);
        let dns = node_domain(node_id).try_into().map_err(cert_err)?;
        params.subject_alt_names = vec![SanType::DnsName(dns)];
        params.not_before = OffsetDateTime::now_utc() - BACKDATE;
        params.not_after = OffsetDateTime::from_unix_timestamp(not_after_unix_ms.div_euclid(1000))
            .map_err(cert_err)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&request.0.public_key, &self.issuer)
            .map_err(cert_err)?;
        Ok(cert.der().to_vec())
    }
}

/// What the authority's own certificate says.
fn authority_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name("chat relay CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + AUTHORITY_VALIDITY;
    params.serial_number = Some(random_serial());
    Ok(params)
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// A random positive 16-byte serial number (RFC 5280 wants them unique
/// per issuer; rcgen's default derives one from the key).
fn random_serial() -> SerialNumber {
    let mut bytes = rand::random::<[u8; 16]>();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// The DNS name a node's certificate carries: `<node_id>.node.invalid`.
pub fn node_domain(node_id: &str) -> String {
    format!("{node_id}{NODE_NAME_SUFFIX}")
}

/// A node's certificate signing request for its Ed25519 identity `key`,
/// DER (PKCS#10). The relay decides what the certificate says; the request
/// proves the key.
pub fn certificate_request(key: &Keypair, name: &str) -> Result<Vec<u8>, TlsError> {
    let pkcs8 = key.to_pkcs8_der().map_err(cert_err)?;
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.into(), &rcgen::PKCS_ED25519)
        .map_err(cert_err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    let csr = params.serialize_request(&key).map_err(cert_err)?;
    Ok(csr.der().to_vec())
}

/// A certificate signing request that was checked: well formed, signed by
/// its key, and for the registrant's Ed25519 key.
#[derive(Debug)]
pub struct NodeRequest(CertificateSigningRequestParams);

/// Checks a node's certificate signing request: at most
/// [`MAX_CSR_BYTES`], self-signed, and for `public_key` (the registrant's
/// 32-byte Ed25519 key) and no other.
pub fn check_certificate_request(der: &[u8], public_key: &[u8]) -> Result<NodeRequest, TlsError> {
    if der.len() > MAX_CSR_BYTES {
        return Err(TlsError::Request(format!(
            "{} bytes; at most {MAX_CSR_BYTES}",
            der.len()
        )));
    }
    let params = CertificateSigningRequestParams::from_der(&der.into())
        .map_err(|e| TlsError::Request(e.to_string()))?;
    let key = &params.public_key;
    if key.algorithm() != &rcgen::PKCS_ED25519 || rcgen::PublicKeyData::der_bytes(key) != public_key
    {
        return Err(TlsError::Request(
            "its key is not the registrant's Ed25519 key".into(),
        ));
    }
    Ok(NodeRequest(params))
}

/// The raw subject public key of a DER certificate.
fn public_key_of(der: &[u8]) -> Result<Vec<u8>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(cert_err)?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// The node id a node certificate names (its `<node_id>.node.invalid` DNS
/// name), checked against the certificate's key: a node's id is derived
/// from its key ([`trust::node_id_of`]). The certificate's chain must have
/// been verified already (the TLS layer does).
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
    let key = &cert.public_key().subject_public_key.data;
    if trust::node_id_of(key) != node_id {
        return Err(no_node("its node id is not its key's"));
    }
    Ok(node_id.to_string())
}

/// Client certificates as a node's server sees them: every client is
/// asked for one, none is required, and any is let through the handshake
/// (which still proves the client holds the certificate's key). The calls
/// that need to know their caller verify its chain here, against the
/// relay's authority, so that a refusal is a gRPC status saying why
/// (expired, another authority, another node) rather than a broken
/// connection; the others (health, reflection) serve anyone.
#[derive(Clone)]
pub struct ClientAuthority {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for ClientAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthority").finish_non_exhaustive()
    }
}

impl ClientAuthority {
    /// Client certificates issued by the authority whose certificate is
    /// `authority_der`.
    pub fn new(authority_der: &[u8]) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(authority_der.to_vec()))
            .map_err(cert_err)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider()))
                .allow_unauthenticated()
                .build()
                .map_err(cert_err)?;
        Ok(Self { verifier })
    }

    /// Verifies a client's certificate chain (as `Request::peer_certs`
    /// gives it) against the authority, now, and returns the node id its
    /// certificate names.
    pub fn verify_node(&self, chain: &[CertificateDer<'_>]) -> Result<String, TlsError> {
        let (end_entity, intermediates) = chain
            .split_first()
            .ok_or_else(|| TlsError::Refused("no client certificate".into()))?;
        self.verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map_err(refusal)?;
        node_id_of_certificate(end_entity)
    }
}

/// Says why a client certificate was refused, in words.
fn refusal(err: rustls::Error) -> TlsError {
    use rustls::CertificateError as E;
    let why = match err {
        rustls::Error::InvalidCertificate(E::Expired | E::ExpiredContext { .. }) => {
            "the client certificate has expired".to_string()
        }
        rustls::Error::InvalidCertificate(E::NotValidYet | E::NotValidYetContext { .. }) => {
            "the client certificate is not valid yet".to_string()
        }
        rustls::Error::InvalidCertificate(E::UnknownIssuer | E::BadSignature) => {
            "the client certificate was not issued by this chat's relay".to_string()
        }
        other => format!("the client certificate is not valid: {other}"),
    };
    TlsError::Refused(why)
}

/// Lets every client certificate through the handshake for
/// [`ClientAuthority::verify_node`] to judge, checking only the handshake
/// signature (the client holds the key); everything but the chain check is
/// the webpki verifier's.
#[derive(Debug)]
struct DeferredClientAuth(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The crypto provider of every TLS configuration made here.
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The TLS configuration of a server presenting `identity` over HTTP/2.
/// With `clients`, clients are asked for a certificate (see
/// [`ClientAuthority`]); without, they are not.
pub fn server_config(
    identity: &Credentials,
    clients: Option<&ClientAuthority>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(format!("the certificate file: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| TlsError::Certificate(format!("the key file: {e}")))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(cert_err)?;
    let builder = match clients {
        Some(clients) => builder
            .with_client_cert_verifier(Arc::new(DeferredClientAuth(clients.verifier.clone()))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(cert_err)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Handshakes in progress at once, at most; more connections wait.
const MAX_HANDSHAKES: usize = 256;

/// The TLS connections made on `listener` under `config`, for tonic's
/// `serve_with_incoming`: each handshake runs in a task of its own,
/// bounded by [`HANDSHAKE_TIMEOUT`] (a client that speaks no TLS is
/// dropped at once), and requests see the client's certificates
/// (`Request::peer_certs`). Dropping it closes the listener.
pub fn incoming(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsIncoming {
    TlsIncoming {
        listener,
        acceptor: TlsAcceptor::from(config),
        handshakes: tokio::task::JoinSet::new(),
    }
}

/// A stream of TLS connections (see [`incoming`]).
pub struct TlsIncoming {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: tokio::task::JoinSet<Option<TlsStream<TcpStream>>>,
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = Result<TlsStream<TcpStream>, std::io::Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            while this.handshakes.len() < MAX_HANDSHAKES {
                match this.listener.poll_accept(cx) {
                    Poll::Ready(Ok((tcp, peer))) => {
                        let _ = tcp.set_nodelay(true);
                        let handshake = handshake(this.acceptor.clone(), tcp, peer);
                        this.handshakes.spawn(handshake);
                    }
                    // tonic logs it and goes on.
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Pending => break,
                }
            }
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(tls)))) => return Poll::Ready(Some(Ok(tls))),
                // A failed handshake: room for another connection.
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The server side of one handshake, bounded; `None` if it failed.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_names_the_node_of_its_key() {
        let ca = Authority::ephemeral().unwrap();
        let key = Keypair::generate();
        let node_id = trust::node_id_of(&key.public_key());
        let csr = certificate_request(&key, "alice").unwrap();
        let request = check_certificate_request(&csr, &key.public_key()).unwrap();
        let expires = trust::now_unix_ms() + 3_600_000;
        let der = ca.issue_node(&request, "alice", &node_id, expires).unwrap();
        assert_eq!(node_id_of_certificate(&der), Ok(node_id.clone()));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.validity().not_after.timestamp(),
            expires.div_euclid(1000)
        );
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "alice");
        assert!(Credentials::for_node(&key, &der).is_ok());
    }

    #[test]
    fn client_certificates_are_judged_with_reasons() {
        let ca = Authority::ephemeral().unwrap();
        let clients = ClientAuthority::new(ca.certificate_der()).unwrap();
        let key = Keypair::generate();
        let node_id = trust::node_id_of(&key.public_key());
        let csr = certificate_request(&key, "bob").unwrap();
        let request = check_certificate_request(&csr, &key.public_key()).unwrap();
        let hour = 3_600_000;
        let chain = |ca: &Authority, expires| {
            let der = ca.issue_node(&request, "bob", &node_id, expires).unwrap();
            vec![CertificateDer::from(der)]
        };
        let now = trust::now_unix_ms();
        assert_eq!(
            clients.verify_node(&chain(&ca, now + hour)),
            Ok(node_id.clone())
        );
        let refused = |r: Result<String, TlsError>| match r {
            Err(TlsError::Refused(why)) => why,
            other => panic!("not refused: {other:?}"),
        };
        let expired = refused(clients.verify_node(&chain(&ca, now - hour)));
        assert!(expired.contains("expired"), "{expired}");
        let stranger = Authority::ephemeral().unwrap();
        let foreign = refused(clients.verify_node(&chain(&stranger, now + hour)));
        assert!(
            foreign.contains("not issued by this chat's relay"),
            "{foreign}"
        );
        assert!(clients.verify_node(&[]).is_err());
    }

    #[tokio::test]
    async fn a_silent_client_holds_up_nobody_and_dropping_the_stream_frees_the_port() {
        use tokio_stream::StreamExt;
        let ca = Authority::ephemeral().unwrap();
        let config = server_config(&ca.issue_server(&[]).unwrap(), None).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = incoming(listener, config);
        // Connects and never says a word.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.certificate_der().to_vec()))
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (client, server) = tokio::join!(connector.connect(name, tcp), incoming.next());
        assert!(client.is_ok(), "{:?}", client.err());
        assert!(matches!(server, Some(Ok(_))));
        drop(incoming);
        assert!(
            TcpListener::bind(addr).await.is_ok(),
            "the port is free again"
        );
    }

    #[test]
    fn a_request_for_another_key_or_too_large_is_refused() {
        let key = Keypair::generate();
        let other = Keypair::generate();
        let csr = certificate_request(&key, "alice").unwrap();
        assert!(matches!(
            check_certificate_request(&csr, &other.public_key()),
            Err(TlsError::Request(_))
        ));
        assert!(check_certificate_request(&[0; MAX_CSR_BYTES + 1], &key.public_key()).is_err());
        assert!(check_certificate_request(b"junk", &key.public_key()).is_err());
    }

    #[test]
    fn the_authority_is_kept_in_its_directory() {
        let dir = std::env::temp_dir().join(format!("tls-test-{}", rand::random::<u64>()));
        let first = Authority::load_or_create(&dir).unwrap();
        let again = Authority::load_or_create(&dir).unwrap();
        assert_eq!(first.certificate_der(), again.certificate_der());
        let on_disk = std::fs::read_to_string(dir.join(AUTHORITY_CERT_FILE)).unwrap();
        assert_eq!(certificate_der(&on_disk).unwrap(), first.certificate_der());
        // A server certificate issues; a key that does not match is refused.
        assert!(first.issue_server(&["relay".into()]).is_ok());
        std::fs::remove_file(dir.join(AUTHORITY_KEY_FILE)).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(dir.join(AUTHORITY_KEY_FILE), key.serialize_pem()).unwrap();
        assert!(Authority::load_or_create(&dir).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
