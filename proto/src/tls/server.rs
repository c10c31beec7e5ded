//! The server side: TLS configurations, the accepting of TLS connections
//! for tonic, and the judging of client certificates.

use super::{cert_err, node_id_of_certificate, provider, Credentials, TlsError, HANDSHAKE_TIMEOUT};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

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

/// The TLS configuration of a server presenting `identity` over HTTP/2.
/// With `clients`, clients are asked for a certificate (see
/// [`ClientAuthority`]); without, they are not.
pub fn server_config(
    identity: &Credentials,
    clients: Option<&ClientAuthority>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certificate = ServerCertificate::new(identity)?;
    server_config_with(Arc::new(certificate), clients)
}

/// The server configuration presenting whatever `certificate` holds at
/// each handshake (a node swaps in its renewed certificate).
pub fn server_config_with(
    certificate: Arc<ServerCertificate>,
    clients: Option<&ClientAuthority>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(cert_err)?;
    let builder = match clients {
        Some(clients) => builder
            .with_client_cert_verifier(Arc::new(DeferredClientAuth(clients.verifier.clone()))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate a server presents, replaceable while it serves: new
/// handshakes get the new one, open connections keep theirs.
#[derive(Debug)]
pub struct ServerCertificate(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl ServerCertificate {
    /// Presents `identity`.
    pub fn new(identity: &Credentials) -> Result<Self, TlsError> {
        Ok(Self(std::sync::RwLock::new(certified_key(identity)?)))
    }

    /// Presents `identity` from the next handshake on.
    pub fn replace(&self, identity: &Credentials) -> Result<(), TlsError> {
        let key = certified_key(identity)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for ServerCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The chain and signing key of `identity`, checked to belong together.
fn certified_key(identity: &Credentials) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(format!("the certificate file: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| TlsError::Certificate(format!("the key file: {e}")))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(cert_err)?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(cert_err)?;
    Ok(Arc::new(certified))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{certificate_request, check_certificate_request, Authority, TlsKey};
    use crate::trust::{self, Keypair};

    #[test]
    fn client_certificates_are_judged_with_reasons() {
        let ca = Authority::ephemeral().unwrap();
        let clients = ClientAuthority::new(ca.certificate_der()).unwrap();
        let key = Keypair::generate();
        let node_id = trust::node_id_of(&key.public_key());
        let csr = certificate_request(&TlsKey::generate().unwrap(), "bob").unwrap();
        let request = check_certificate_request(&csr).unwrap();
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
}
