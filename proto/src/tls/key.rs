//! A node's TLS key: ECDSA P-256, which every TLS stack accepts (BoringSSL
//! in grpcio, Go, Java, browsers), used for TLS only. The node's identity
//! stays its Ed25519 key; the relay binds the two by issuing the node's
//! certificate for this key only on a Register signed with the identity
//! key, whose signature covers the certificate request.

use super::{cert_err, file_err, TlsError};
use crate::trust;
use rcgen::KeyPair;
use std::path::Path;

/// A node's ECDSA P-256 TLS key (PKCS#8); cheap to clone.
#[derive(Clone)]
pub struct TlsKey {
    pem: std::sync::Arc<str>,
}

impl std::fmt::Debug for TlsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsKey").finish_non_exhaustive()
    }
}

impl TlsKey {
    /// A new random key.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        Ok(Self {
            pem: key.serialize_pem().into(),
        })
    }

    /// The key in `pem_text` (PKCS#8), which must be ECDSA P-256.
    pub fn from_pem(pem_text: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(pem_text).map_err(cert_err)?;
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(TlsError::Certificate(
                "a node's TLS key must be ECDSA P-256".into(),
            ));
        }
        Ok(Self {
            pem: pem_text.into(),
        })
    }

    /// The key kept at `path` (PEM, readable by the owner only), created
    /// there if there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, TlsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_pem(&text).map_err(|e| TlsError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                match trust::write_private(path, key.pem.as_bytes()) {
                    Ok(()) => Ok(key),
                    // Another process made it first: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(file_err(path)(e)),
                }
            }
            Err(e) => Err(file_err(path)(e)),
        }
    }

    /// The private key, PKCS#8 PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The public key, as an uncompressed SEC1 point (65 bytes): what the
    /// certificate's subject public key holds.
    pub fn public_key_raw(&self) -> Result<Vec<u8>, TlsError> {
        Ok(self.key_pair()?.public_key_raw().to_vec())
    }

    pub(super) fn key_pair(&self) -> Result<KeyPair, TlsError> {
        KeyPair::from_pem(&self.pem).map_err(cert_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_key_is_p256_and_kept_in_its_file() {
        let dir = std::env::temp_dir().join(format!("tls-key-test-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alice.tls-key");
        let first = TlsKey::load_or_create(&path).unwrap();
        let again = TlsKey::load_or_create(&path).unwrap();
        assert_eq!(first.public_key_raw(), again.public_key_raw());
        assert_eq!(first.public_key_raw().unwrap().len(), 65);
        assert_ne!(
            TlsKey::generate().unwrap().public_key_raw(),
            first.public_key_raw()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Another key type, or junk, is refused and names the file.
        let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        std::fs::write(&path, ed25519.serialize_pem()).unwrap();
        let refused = TlsKey::load_or_create(&path).unwrap_err().to_string();
        assert!(refused.contains("ECDSA P-256"), "{refused}");
        assert!(refused.contains("alice.tls-key"), "{refused}");
        std::fs::write(&path, "junk").unwrap();
        assert!(TlsKey::load_or_create(&path).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
