//! The relay's certificate authority and what it issues: its own server
//! certificate, and a node's certificate from the node's signing request.

use super::TlsKey;
use super::{cert_err, certificate_der, certificate_pem, file_err, init, node_domain, Credentials};
use super::{
    TlsError, AUTHORITY_CERT_FILE, AUTHORITY_KEY_FILE, DEFAULT_SERVER_NAMES, MAX_CSR_BYTES,
};
use crate::trust;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::path::Path;
use time::OffsetDateTime;

/// How far back a new certificate's validity starts, for clocks that lag.
const BACKDATE: time::Duration = time::Duration::minutes(5);
/// How long the authority is valid.
const AUTHORITY_VALIDITY: time::Duration = time::Duration::days(3650);
/// How long the relay's automatic server certificate is valid (a new one
/// is issued at every start).
const SERVER_VALIDITY: time::Duration = time::Duration::days(365);

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

/// A node's certificate signing request for its TLS `key`, DER (PKCS#10).
/// The relay decides what the certificate says; the request proves the
/// key. The Register carrying it is signed with the node's Ed25519
/// identity key, and that signature covers the request: it binds the TLS
/// key to the identity.
pub fn certificate_request(key: &TlsKey, name: &str) -> Result<Vec<u8>, TlsError> {
    let key = key.key_pair()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    let csr = params.serialize_request(&key).map_err(cert_err)?;
    Ok(csr.der().to_vec())
}

/// A certificate signing request that was checked: well formed, signed by
/// its key, and for an ECDSA P-256 key.
#[derive(Debug)]
pub struct NodeRequest(CertificateSigningRequestParams);

/// Checks a node's certificate signing request: at most
/// [`MAX_CSR_BYTES`], self-signed (with ECDSA and SHA-256), and for an
/// ECDSA P-256 key (an uncompressed point), which every TLS stack accepts;
/// any other key type is refused, saying so. Whose key it is, the request
/// does not say: the Register signature covering it does.
pub fn check_certificate_request(der: &[u8]) -> Result<NodeRequest, TlsError> {
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
    use x509_parser::prelude::FromDer;
    if der.len() > MAX_CSR_BYTES {
        return Err(TlsError::Request(format!(
            "{} bytes; at most {MAX_CSR_BYTES}",
            der.len()
        )));
    }
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| TlsError::Request(e.to_string()))?;
    let spki = &csr.certification_request_info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    let point = &spki.subject_public_key.data;
    let p256 = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && curve.as_ref() == Some(&OID_EC_P256)
        && point.len() == 65
        && point.first() == Some(&4);
    if !p256 {
        return Err(TlsError::Request(format!(
            "its key is {}; a node's TLS key must be ECDSA P-256 (an uncompressed point)",
            key_type(&spki.algorithm.algorithm, curve.as_ref())
        )));
    }
    let params = CertificateSigningRequestParams::from_der(&der.into())
        .map_err(|e| TlsError::Request(e.to_string()))?;
    // The certificate's key is written with the parameters of this
    // algorithm: it must be P-256's.
    if params.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(TlsError::Request(
            "it must be signed with ECDSA and SHA-256".into(),
        ));
    }
    Ok(NodeRequest(params))
}

/// Names a subject public key's type, for a refusal.
fn key_type(
    algorithm: &x509_parser::der_parser::oid::Oid<'_>,
    curve: Option<&x509_parser::der_parser::oid::Oid<'_>>,
) -> String {
    use x509_parser::oid_registry as oid;
    if *algorithm == oid::OID_SIG_ED25519 {
        "Ed25519".into()
    } else if *algorithm == oid::OID_PKCS1_RSAENCRYPTION {
        "RSA".into()
    } else if *algorithm == oid::OID_KEY_TYPE_EC_PUBLIC_KEY {
        match curve {
            Some(c) if *c == oid::OID_NIST_EC_P384 => "ECDSA P-384".into(),
            Some(c) if *c == oid::OID_EC_P256 => "ECDSA P-256 as a compressed point".into(),
            Some(c) => format!("ECDSA on the curve {}", c.to_id_string()),
            None => "ECDSA without a named curve".into(),
        }
    } else {
        format!("of type {}", algorithm.to_id_string())
    }
}

/// The raw subject public key of a DER certificate.
fn public_key_of(der: &[u8]) -> Result<Vec<u8>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(cert_err)?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::node_id_of_certificate;
    use crate::trust::Keypair;

    #[test]
    fn a_node_certificate_is_for_its_p256_tls_key_and_names_the_node_of_its_identity() {
        let ca = Authority::ephemeral().unwrap();
        let key = Keypair::generate();
        let tls_key = TlsKey::generate().unwrap();
        let node_id = trust::node_id_of(&key.public_key());
        let csr = certificate_request(&tls_key, "alice").unwrap();
        let request = check_certificate_request(&csr).unwrap();
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
        // An ECDSA P-256 key, the node's TLS key...
        let spki = cert.public_key();
        assert_eq!(
            spki.algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap();
        assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
        assert_eq!(
            spki.subject_public_key.data.as_ref(),
            tls_key.public_key_raw().unwrap().as_slice()
        );
        // ...and one DNS name, the node's.
        let names = cert.subject_alternative_name().unwrap().unwrap();
        let expected = format!("{node_id}.node.invalid");
        assert!(matches!(
            names.value.general_names.as_slice(),
            [x509_parser::extensions::GeneralName::DNSName(dns)] if *dns == expected
        ));
        assert!(Credentials::for_node(&tls_key, &der).is_ok());
    }

    /// A DER certificate request for a fresh key of `algorithm`.
    fn request_for(algorithm: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = KeyPair::generate_for(algorithm).unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        csr.der().to_vec()
    }

    #[test]
    fn a_request_for_another_key_type_or_too_large_is_refused_saying_why() {
        let refusal = |der: &[u8]| match check_certificate_request(der) {
            Err(TlsError::Request(why)) => why,
            other => panic!("not refused: {other:?}"),
        };
        assert!(check_certificate_request(&request_for(&rcgen::PKCS_ECDSA_P256_SHA256)).is_ok());
        // The Ed25519 identity key is not a TLS key.
        let why = refusal(&request_for(&rcgen::PKCS_ED25519));
        assert!(why.contains("Ed25519"), "{why}");
        assert!(why.contains("must be ECDSA P-256"), "{why}");
        let why = refusal(&request_for(&rcgen::PKCS_ECDSA_P384_SHA384));
        assert!(why.contains("ECDSA P-384"), "{why}");
        assert!(why.contains("must be ECDSA P-256"), "{why}");
        let why = TlsError::Request(why).to_string();
        assert!(why.starts_with("certificate request: its key is"), "{why}");
        // A request whose signature does not verify.
        let mut tampered = request_for(&rcgen::PKCS_ECDSA_P256_SHA256);
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(check_certificate_request(&tampered).is_err());
        assert!(refusal(&[0; MAX_CSR_BYTES + 1]).contains("at most"));
        assert!(check_certificate_request(b"junk").is_err());
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
