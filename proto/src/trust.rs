//! Signatures and certificates: the exact byte layouts the protos describe,
//! in one place for every signer and verifier. The relay's key is the one
//! root of trust: it signs host terms (the only form in which an epoch
//! counts), name grants (a name bound to a node and its key) and reset
//! grants (one member's permission to reset one room, once) and copy
//! permits (one member may hold one term's copies of a room); members
//! sign their own messages, Hellos and node-to-node calls.

use crate::chain::{Digest, Signed};
use crate::pb::chat::{Hello, PrivateMessage, SendMessage, SignedHead};
use crate::pb::relay::RegisterRequest;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

mod certificates;
pub use certificates::{reset_nonce, verify_room_reset};

/// How far a signed timestamp may be from the verifier's clock.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// The room a request that names none is about.
pub const ROOM: &str = crate::rules::DEFAULT_ROOM;
/// Largest certificate accepted anywhere, in bytes.
pub const MAX_CERTIFICATE_BYTES: usize = 2048;

/// Length of a reset grant's nonce, in bytes.
pub const RESET_NONCE_BYTES: usize = 16;

/// Why a signature or certificate was not accepted.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TrustError {
    /// The key is not 32 valid bytes.
    #[error("malformed public key")]
    BadKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The signed timestamp is too far from now (a replay, or a bad clock).
    #[error("signed at a time too far from now")]
    Stale,
    /// The certificate is missing, too large or does not decode.
    #[error("malformed certificate")]
    Malformed,
    /// The certificate is past its expiry.
    #[error("certificate expired")]
    Expired,
    /// The certificate is valid but says something else than claimed.
    #[error("certificate does not match: {0}")]
    Mismatch(&'static str),
    /// The certificate was used before (a replay).
    #[error("certificate used before: {0}")]
    Replayed(&'static str),
}

impl From<TrustError> for tonic::Status {
    fn from(err: TrustError) -> Self {
        tonic::Status::permission_denied(err.to_string())
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The signed layout: each part as its length (8 bytes, big-endian) and
/// its bytes, so no part can bleed into the next.
pub fn frame(parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len() + 8).sum();
    let mut out = Vec::with_capacity(len);
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// An Ed25519 key pair (a node's or the relay's).
pub struct Keypair(SigningKey);

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Keypair")
            .field(&hex(&self.public_key()))
            .finish()
    }
}

impl Keypair {
    /// A fresh random key.
    pub fn generate() -> Self {
        Keypair(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    /// The key whose secret is these 32 bytes.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Keypair(SigningKey::from_bytes(&secret))
    }

    /// The key kept in `path` (32 secret bytes), created there if absent,
    /// readable by the owner only. Two processes creating it at once end up
    /// with the same key.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a 32-byte key file", path.display()),
                    )
                })?;
                Ok(Self::from_secret(secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                match write_private(path, &key.0.to_bytes()) {
                    Ok(()) => Ok(key),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The public half, to verify this key's signatures.
    pub fn verifying(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The X25519 secret of this key (libsodium's
    /// `crypto_sign_ed25519_sk_to_curve25519`), for opening sealed boxes.
    pub(crate) fn x25519_secret(&self) -> [u8; 32] {
        self.0.to_scalar_bytes()
    }

    /// The public half, 32 bytes.
    pub fn public_key(&self) -> Vec<u8> {
        self.0.verifying_key().to_bytes().to_vec()
    }

    /// Signs `payload` (built with [`frame`]).
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        self.0.sign(payload).to_bytes().to_vec()
    }

    /// Signs a Hello answering `nonce` from host `host_node_id`, in place.
    pub fn sign_hello(&self, hello: &mut Hello, nonce: &[u8], host_node_id: &str) {
        hello.public_key = self.public_key();
        hello.signed_at_unix_ms = now_unix_ms();
        hello.signature = self.sign(&hello_payload(hello, nonce, host_node_id));
    }

    /// Signs a Register in place, proving this key is held (sets the key);
    /// the signature covers the certificate request too, so nobody can
    /// swap it on the way.
    pub fn sign_register(&self, req: &mut RegisterRequest) {
        req.public_key = self.public_key();
        req.signed_at_unix_ms = now_unix_ms();
        req.signature = self.sign(&register_payload(req));
    }

    /// Signs a chat message from `from` to `room` in place (its chain
    /// fields set), and returns its digest, which the sender's next message
    /// chains to.
    pub fn sign_message(&self, room: &str, from: &str, msg: &mut SendMessage) -> Digest {
        msg.sent_at_unix_ms = now_unix_ms();
        msg.signature = Vec::new();
        let payload = Signed::sent(room, from, msg).payload();
        msg.signature = self.sign(&payload);
        Signed::sent(room, from, msg).digest()
    }

    /// Signs the head of `room`'s log at `seq`, whose log hash is `hash`,
    /// as the host of `epoch`.
    pub fn sign_head(&self, room: &str, epoch: u64, seq: u64, hash: &Digest) -> SignedHead {
        SignedHead {
            seq,
            hash: hash.to_vec(),
            epoch,
            signature: self.sign(&head_payload(room, epoch, seq, hash)),
        }
    }

    /// Signs a private message in place.
    pub fn sign_private(&self, msg: &mut PrivateMessage) {
        msg.sent_at_unix_ms = now_unix_ms();
        msg.signature = self.sign(&private_payload(msg));
    }
}

/// Writes `bytes` to a new file at `path` that only its owner may read,
/// whole or not at all (written aside, then linked into place);
/// `AlreadyExists` if the file is there.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_new(path, bytes, 0o600)
}

/// Like [`write_private`], with permissions `mode` (on Unix) instead.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let aside = path.with_extension(format!("tmp{}", rand::random::<u32>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let written = options
        .open(&aside)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::hard_link(&aside, path));
    let _ = std::fs::remove_file(&aside);
    written
}

/// The node id the relay gives the holder of `public_key`: the hex of its
/// first 16 bytes, so nobody can claim another key's id.
pub fn node_id_of(public_key: &[u8]) -> String {
    hex(&public_key[..public_key.len().min(16)])
}

/// What a Register's proof of key possession covers.
pub fn register_payload(req: &RegisterRequest) -> Vec<u8> {
    frame(&[
        b"relay.v1.Register",
        req.name.as_bytes(),
        req.address.as_bytes(),
        &req.public_key,
        &req.signed_at_unix_ms.to_be_bytes(),
        &req.certificate_request,
    ])
}

/// Lower-case hex of `bytes` (for key fingerprints in messages and files).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes [`hex`] wrote (either case), or `None` for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A public key that signatures are checked against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PublicKey")
            .field(&hex(self.0.as_bytes()))
            .finish()
    }
}

impl PublicKey {
    /// Parses 32 key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TrustError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| TrustError::BadKey)?;
        VerifyingKey::from_bytes(&key)
            .map(PublicKey)
            .map_err(|_| TrustError::BadKey)
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The X25519 public key of this key (libsodium's
    /// `crypto_sign_ed25519_pk_to_curve25519`), for sealing boxes to it.
    pub(crate) fn x25519_public(&self) -> [u8; 32] {
        self.0.to_montgomery().to_bytes()
    }

    /// Checks `signature` over `payload` (strict RFC 8032 verification).
    pub fn verify(&self, payload: &[u8], signature: &[u8]) -> Result<(), TrustError> {
        let sig: [u8; 64] = signature.try_into().map_err(|_| TrustError::BadSignature)?;
        self.0
            .verify_strict(payload, &Signature::from_bytes(&sig))
            .map_err(|_| TrustError::BadSignature)
    }

    /// Verifies several (payload, signature, key) at once: faster than one
    /// by one, and an error means at least one does not verify (check them
    /// one by one to find which).
    pub fn verify_batch(batch: &[(&[u8], &[u8], PublicKey)]) -> Result<(), TrustError> {
        let mut signatures = Vec::with_capacity(batch.len());
        for (_, signature, _) in batch {
            let sig: [u8; 64] = (*signature)
                .try_into()
                .map_err(|_| TrustError::BadSignature)?;
            signatures.push(Signature::from_bytes(&sig));
        }
        let payloads: Vec<&[u8]> = batch.iter().map(|(p, _, _)| *p).collect();
        let keys: Vec<VerifyingKey> = batch.iter().map(|(_, _, k)| k.0).collect();
        ed25519_dalek::verify_batch(&payloads, &signatures, &keys)
            .map_err(|_| TrustError::BadSignature)
    }

    /// Verifies a log head of `room` signed by this key (a host's) and
    /// returns its hash.
    pub fn verify_head(&self, room: &str, head: &SignedHead) -> Result<Digest, TrustError> {
        let hash: Digest = head
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| TrustError::Malformed)?;
        self.verify(
            &head_payload(room, head.epoch, head.seq, &hash),
            &head.signature,
        )?;
        Ok(hash)
    }
}

/// Checks that a signed time is within [`MAX_CLOCK_SKEW_MS`] of `now_ms`.
pub fn check_fresh(signed_at: i64, now_ms: i64) -> Result<(), TrustError> {
    match now_ms.checked_sub(signed_at) {
        Some(d) if d.checked_abs().is_some_and(|d| d <= MAX_CLOCK_SKEW_MS) => Ok(()),
        _ => Err(TrustError::Stale),
    }
}

/// What a Hello's signature covers.
pub fn hello_payload(h: &Hello, nonce: &[u8], host_node_id: &str) -> Vec<u8> {
    frame(&[
        b"chat.v1.Hello",
        h.name.as_bytes(),
        h.node_id.as_bytes(),
        h.address.as_bytes(),
        &h.public_key,
        &h.signed_at_unix_ms.to_be_bytes(),
        nonce,
        host_node_id.as_bytes(),
    ])
}

/// What a signed log head covers.
pub fn head_payload(room: &str, epoch: u64, seq: u64, hash: &[u8]) -> Vec<u8> {
    frame(&[
        b"chat.v1.LogHead",
        room.as_bytes(),
        &epoch.to_be_bytes(),
        &seq.to_be_bytes(),
        hash,
    ])
}

/// What a private message's signature covers.
pub fn private_payload(m: &PrivateMessage) -> Vec<u8> {
    frame(&[
        b"chat.v1.PrivateMessage",
        m.id.as_bytes(),
        m.from.as_bytes(),
        m.from_node_id.as_bytes(),
        m.to.as_bytes(),
        m.to_node_id.as_bytes(),
        m.text.as_bytes(),
        &m.sent_at_unix_ms.to_be_bytes(),
    ])
}

/// What a Replicate's signature covers.
pub fn replicate_payload(term: &[u8], body: &[u8]) -> Vec<u8> {
    frame(&[b"chat.v1.Replicate", term, body])
}

/// What a TakeOver's signature covers.
pub fn take_over_payload(new_term: &[u8], sender_term: &[u8], signed_at: i64) -> Vec<u8> {
    frame(&[
        b"chat.v1.TakeOver",
        new_term,
        sender_term,
        &signed_at.to_be_bytes(),
    ])
}

/// Verifies a Hello answering `nonce`: signed by the key its certificate
/// binds to its name and node id, recently, under the relay's `relay` key.
/// Returns the member's key, for its messages in the session.
pub fn verify_hello(
    relay: &PublicKey,
    hello: &Hello,
    nonce: &[u8],
    host_node_id: &str,
) -> Result<PublicKey, TrustError> {
    let now = now_unix_ms();
    let cert = hello.certificate.as_ref().ok_or(TrustError::Malformed)?;
    let grant = relay.verify_name(cert, now)?;
    if grant.name != hello.name || grant.node_id != hello.node_id {
        return Err(TrustError::Mismatch("name or node id"));
    }
    if grant.public_key != hello.public_key {
        return Err(TrustError::Mismatch("key"));
    }
    let key = PublicKey::from_bytes(&hello.public_key)?;
    key.verify(&hello_payload(hello, nonce, host_node_id), &hello.signature)?;
    check_fresh(hello.signed_at_unix_ms, now)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhex_reads_what_hex_writes_and_nothing_else() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&bytes)), Some(bytes.to_vec()));
        assert_eq!(unhex("ABff"), Some(vec![0xab, 0xff]));
        for bad in ["a", "zz", "0g", "é1"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
    }
    use crate::pb::relay::{
        HostTerm, HostTermCertificate, NameGrant, ResetCertificate, ResetGrant,
    };

    #[test]
    fn certificates_verify_under_the_issuing_key_only() {
        let relay = Keypair::generate();
        let relay_pub = PublicKey::from_bytes(&relay.public_key()).unwrap();
        let term = HostTerm {
            room: ROOM.into(),
            epoch: 7,
            node_id: "n1".into(),
            ..Default::default()
        };
        let cert = relay.issue_host_term(&term);
        assert_eq!(relay_pub.verify_host_term(&cert), Ok(term));
        let other = PublicKey::from_bytes(&Keypair::generate().public_key()).unwrap();
        assert_eq!(other.verify_host_term(&cert), Err(TrustError::BadSignature));
        let mut altered = cert.clone();
        altered.term[3] ^= 1;
        assert!(relay_pub.verify_host_term(&altered).is_err());

        let grant = NameGrant {
            name: "bob".into(),
            expires_at_unix_ms: 100,
            ..Default::default()
        };
        let cert = relay.issue_name(&grant);
        assert_eq!(relay_pub.verify_name(&cert, 50), Ok(grant));
        assert_eq!(relay_pub.verify_name(&cert, 101), Err(TrustError::Expired));
        // A name grant is never a host term.
        let as_term = HostTermCertificate {
            term: cert.grant,
            signature: cert.signature,
        };
        assert_eq!(
            relay_pub.verify_host_term(&as_term),
            Err(TrustError::BadSignature)
        );
    }

    #[test]
    fn a_reset_verifies_only_for_its_room_member_and_threshold() {
        let relay = Keypair::generate();
        let relay_pub = relay.verifying();
        let grant = ResetGrant {
            room: "ops".into(),
            min_users: 3,
            by: "alice".into(),
            by_node_id: "a1".into(),
            issued_at_unix_ms: 1000,
            nonce: reset_nonce(),
        };
        let cert = relay.issue_reset(&grant);
        let check = |cert: Option<&ResetCertificate>, room: &str, min: u32, by: &str| {
            verify_room_reset(&relay_pub, cert, room, min, by)
        };
        assert_eq!(check(Some(&cert), "ops", 3, "alice"), Ok(grant.clone()));
        assert_eq!(check(None, "ops", 3, "alice"), Err(TrustError::Malformed));
        let room = Err(TrustError::Mismatch("room"));
        assert_eq!(check(Some(&cert), "lobby", 3, "alice"), room);
        let member = Err(TrustError::Mismatch("member"));
        assert_eq!(check(Some(&cert), "ops", 3, "bob"), member);
        let threshold = Err(TrustError::Mismatch("threshold"));
        assert_eq!(check(Some(&cert), "ops", 1, "alice"), threshold);

        // Signed by anyone but the relay, or altered: refused.
        let forged = Keypair::generate().issue_reset(&grant);
        let bad = Err(TrustError::BadSignature);
        assert_eq!(check(Some(&forged), "ops", 3, "alice"), bad);
        let mut altered = cert.clone();
        altered.grant[2] ^= 1;
        assert!(check(Some(&altered), "ops", 3, "alice").is_err());
        // A nonce of another length is malformed.
        let short = relay.issue_reset(&ResetGrant {
            nonce: vec![7; 8],
            ..grant.clone()
        });
        let malformed = Err(TrustError::Malformed);
        assert_eq!(check(Some(&short), "ops", 3, "alice"), malformed);
        // A name grant or a host term is never a reset, and the reverse.
        let name = relay.issue_name(&NameGrant::default());
        let as_reset = ResetCertificate {
            grant: name.grant,
            signature: name.signature,
        };
        assert_eq!(relay_pub.verify_reset(&as_reset), bad);
        let as_term = HostTermCertificate {
            term: cert.grant.clone(),
            signature: cert.signature.clone(),
        };
        assert_eq!(
            relay_pub.verify_host_term(&as_term),
            Err(TrustError::BadSignature)
        );
    }

    #[test]
    fn freshness_is_checked_without_overflow() {
        assert_eq!(check_fresh(1000, 1000 + MAX_CLOCK_SKEW_MS), Ok(()));
        assert_eq!(
            check_fresh(1000, 1001 + MAX_CLOCK_SKEW_MS),
            Err(TrustError::Stale)
        );
        assert_eq!(check_fresh(i64::MIN, i64::MAX), Err(TrustError::Stale));
        assert_eq!(check_fresh(i64::MAX, i64::MIN), Err(TrustError::Stale));
    }

    #[test]
    fn keys_persist_in_their_file() {
        let dir = std::env::temp_dir().join(format!("trust-test-{}", rand::random::<u64>()));
        let path = dir.join("k.key");
        let first = Keypair::load_or_create(&path).unwrap();
        let again = Keypair::load_or_create(&path).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        std::fs::write(&path, b"short").unwrap();
        assert!(Keypair::load_or_create(&path).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
