//! Who signed what. Every node holds an Ed25519 key; the relay vouches for
//! the public key of each registered member. Session Hellos and private
//! messages are signed, so nobody can take over a connected member's name
//! or forge the sender of a private message.

use chat_proto::pb::chat::{Hello, PrivateMessage};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// How far a signed timestamp may be from the verifier's clock.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// Why a signature was not accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The key is not 32 valid bytes.
    #[error("malformed public key")]
    BadKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The signed timestamp is too far from now (a replay, or a bad clock).
    #[error("signed at a time too far from now")]
    Stale,
}

/// This node's key pair.
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NodeKey").field(&self.public_key()).finish()
    }
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        NodeKey(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    /// The public half, 32 bytes.
    pub fn public_key(&self) -> Vec<u8> {
        self.0.verifying_key().to_bytes().to_vec()
    }

    /// Signs a Hello in place.
    pub fn sign_hello(&self, hello: &mut Hello) {
        hello.public_key = self.public_key();
        hello.signed_at_unix_ms = now_unix_ms();
        hello.signature = self.0.sign(&hello_payload(hello)).to_bytes().to_vec();
    }

    /// Signs a private message in place.
    pub fn sign_private(&self, msg: &mut PrivateMessage) {
        msg.sent_at_unix_ms = now_unix_ms();
        msg.signature = self.0.sign(&private_payload(msg)).to_bytes().to_vec();
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    // Length-prefixed, so no field can bleed into the next.
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn hello_payload(h: &Hello) -> Vec<u8> {
    join(&[
        b"chat.v1.Hello",
        h.name.as_bytes(),
        h.node_id.as_bytes(),
        h.address.as_bytes(),
        &h.public_key,
        &h.signed_at_unix_ms.to_be_bytes(),
    ])
}

fn private_payload(m: &PrivateMessage) -> Vec<u8> {
    join(&[
        b"chat.v1.PrivateMessage",
        m.id.as_bytes(),
        m.from.as_bytes(),
        m.from_node_id.as_bytes(),
        m.to.as_bytes(),
        m.text.as_bytes(),
        &m.sent_at_unix_ms.to_be_bytes(),
    ])
}

fn verify(
    public_key: &[u8],
    payload: &[u8],
    signature: &[u8],
    signed_at: i64,
) -> Result<(), SignatureError> {
    let key: [u8; 32] = public_key.try_into().map_err(|_| SignatureError::BadKey)?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| SignatureError::BadKey)?;
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError::BadSignature)?;
    key.verify_strict(payload, &Signature::from_bytes(&sig))
        .map_err(|_| SignatureError::BadSignature)?;
    if (now_unix_ms() - signed_at).abs() > MAX_CLOCK_SKEW_MS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Checks a Hello's signature against the key it carries (the caller
/// checks that the relay vouches for that key).
pub fn verify_hello(hello: &Hello) -> Result<(), SignatureError> {
    verify(
        &hello.public_key,
        &hello_payload(hello),
        &hello.signature,
        hello.signed_at_unix_ms,
    )
}

/// Checks a private message's signature against the sender's `public_key`.
pub fn verify_private(msg: &PrivateMessage, public_key: &[u8]) -> Result<(), SignatureError> {
    verify(
        public_key,
        &private_payload(msg),
        &msg.signature,
        msg.sent_at_unix_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_hellos_and_privates_verify_and_tampering_does_not() {
        let key = NodeKey::generate();
        let mut hello = Hello {
            name: "alice".into(),
            node_id: "n1".into(),
            address: "a:1".into(),
            ..Default::default()
        };
        key.sign_hello(&mut hello);
        assert_eq!(verify_hello(&hello), Ok(()));
        let mut forged = hello.clone();
        forged.name = "bob".into();
        assert_eq!(verify_hello(&forged), Err(SignatureError::BadSignature));

        let mut msg = PrivateMessage {
            id: "1".into(),
            from: "alice".into(),
            to: "bob".into(),
            text: "hi".into(),
            ..Default::default()
        };
        key.sign_private(&mut msg);
        assert_eq!(verify_private(&msg, &key.public_key()), Ok(()));
        let other = NodeKey::generate();
        assert_eq!(
            verify_private(&msg, &other.public_key()),
            Err(SignatureError::BadSignature)
        );
        let mut altered = msg.clone();
        altered.text = "give me your password".into();
        assert_eq!(
            verify_private(&altered, &key.public_key()),
            Err(SignatureError::BadSignature)
        );
        let mut old = msg.clone();
        old.sent_at_unix_ms -= MAX_CLOCK_SKEW_MS * 2;
        key.sign_private(&mut old);
        old.sent_at_unix_ms -= MAX_CLOCK_SKEW_MS * 2;
        assert!(verify_private(&old, &key.public_key()).is_err());
        assert_eq!(verify_private(&msg, b"short"), Err(SignatureError::BadKey));
    }
}
