//! Sealed private messages: a `PrivateMessage` for a member nobody can dial,
//! carried by the room's host in a libsodium sealed box (`crypto_box_seal`)
//! to the recipient's key, so the host can neither read nor alter it. The
//! scheme is written out in `chat.proto` (`SealedPrivate`), for clients in
//! other languages.
//!
//! The X25519 keys are the members' Ed25519 identity keys converted as
//! libsodium does (`crypto_sign_ed25519_{pk,sk}_to_curve25519`): the relay
//! already binds each member's name to that key, so no second key has to
//! be registered or trusted.
//!
//! A sealed box is anonymous (anyone may seal to a key): who sent the
//! message is proven by the signature inside it, which the recipient checks
//! as for a directly delivered private message.

use crate::pb::chat::{PrivateMessage, SealedPrivate};
use crate::trust::{Keypair, PublicKey};
use prost::Message;
use thiserror::Error;

/// Longest `SealedPrivate.sealed` a host passes on, in bytes.
pub const MAX_SEALED_BYTES: usize = 8 * 1024;

/// What a sealed box adds to its message: the ephemeral public key (32
/// bytes) and the Poly1305 tag (16 bytes).
pub const SEAL_OVERHEAD: usize = 48;

/// Why a message could not be sealed or opened.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    /// The sealed message would be (or is) longer than [`MAX_SEALED_BYTES`].
    #[error("a sealed private message is at most {MAX_SEALED_BYTES} bytes; this one is {0}")]
    TooLarge(usize),
    /// The box was not sealed to this key, or was altered.
    #[error(
        "the sealed message does not open with this node's key (altered, or sealed to another key)"
    )]
    DoesNotOpen,
    /// The box opened but holds no PrivateMessage.
    #[error("the sealed message holds no private message: {0}")]
    Malformed(String),
    /// Encryption failed (cannot happen for in-range sizes).
    #[error("sealing failed")]
    Seal,
}

/// Seals `plaintext` to the holder of the Ed25519 key `to`.
pub fn seal(to: &PublicKey, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let size = plaintext.len().saturating_add(SEAL_OVERHEAD);
    if size > MAX_SEALED_BYTES {
        return Err(SealError::TooLarge(size));
    }
    crypto_box::PublicKey::from(to.x25519_public())
        .seal(&mut crypto_box::aead::OsRng, plaintext)
        .map_err(|_| SealError::Seal)
}

/// Opens a box sealed to `me`'s key.
pub fn open(me: &Keypair, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() > MAX_SEALED_BYTES {
        return Err(SealError::TooLarge(sealed.len()));
    }
    crypto_box::SecretKey::from(me.x25519_secret())
        .unseal(sealed)
        .map_err(|_| SealError::DoesNotOpen)
}

/// Seals a signed private message to its recipient, whose Ed25519 key is
/// `to` (from the relay's member record).
pub fn seal_private(to: &PublicKey, msg: &PrivateMessage) -> Result<SealedPrivate, SealError> {
    Ok(SealedPrivate {
        to_node_id: msg.to_node_id.clone(),
        sealed: seal(to, &msg.encode_to_vec())?,
    })
}

/// Opens a sealed private message with `me`'s key. The message inside is
/// still to be checked (signature, recipient, freshness, replay).
pub fn open_private(me: &Keypair, sealed: &SealedPrivate) -> Result<PrivateMessage, SealError> {
    let bytes = open(me, &sealed.sealed)?;
    PrivateMessage::decode(bytes.as_slice()).map_err(|e| SealError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> PrivateMessage {
        PrivateMessage {
            id: "m1".into(),
            from: "alice".into(),
            to: "bob".into(),
            to_node_id: "n-bob".into(),
            text: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn sealed_to_a_key_opens_with_it_only() {
        let bob = Keypair::generate();
        let sealed = seal_private(&bob.verifying(), &message("meet at noon")).unwrap();
        assert_eq!(sealed.to_node_id, "n-bob");
        assert_eq!(
            open_private(&bob, &sealed).unwrap(),
            message("meet at noon")
        );
        let carol = Keypair::generate();
        assert_eq!(open_private(&carol, &sealed), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn the_box_hides_the_text_and_refuses_any_change() {
        let bob = Keypair::generate();
        let sealed = seal_private(&bob.verifying(), &message("meet at noon")).unwrap();
        let text = b"meet at noon";
        assert!(!sealed.sealed.windows(text.len()).any(|w| w == text));
        for at in [0, 31, 32, 47, 48, sealed.sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered.sealed[at] ^= 1;
            assert_eq!(open_private(&bob, &altered), Err(SealError::DoesNotOpen));
        }
        let mut short = sealed.clone();
        short.sealed.truncate(40);
        assert_eq!(open_private(&bob, &short), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn two_seals_of_one_message_differ() {
        let bob = Keypair::generate();
        let a = seal(&bob.verifying(), b"same").unwrap();
        let b = seal(&bob.verifying(), b"same").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + SEAL_OVERHEAD);
    }

    #[test]
    fn sizes_are_bounded() {
        let bob = Keypair::generate();
        let big = vec![0u8; MAX_SEALED_BYTES - SEAL_OVERHEAD + 1];
        assert_eq!(
            seal(&bob.verifying(), &big),
            Err(SealError::TooLarge(MAX_SEALED_BYTES + 1))
        );
        let fits = vec![0u8; MAX_SEALED_BYTES - SEAL_OVERHEAD];
        let sealed = seal(&bob.verifying(), &fits).unwrap();
        assert_eq!(sealed.len(), MAX_SEALED_BYTES);
        assert_eq!(open(&bob, &sealed).unwrap(), fits);
        assert_eq!(
            open(&bob, &vec![0u8; MAX_SEALED_BYTES + 1]),
            Err(SealError::TooLarge(MAX_SEALED_BYTES + 1))
        );
    }

    /// A box sealed by libsodium itself (PyNaCl's `SealedBox`, to the
    /// Ed25519 key of seed [7; 32] converted with
    /// `crypto_sign_ed25519_pk_to_curve25519`): the scheme is libsodium's.
    #[test]
    fn opens_a_box_libsodium_sealed() {
        let me = Keypair::from_secret([7; 32]);
        assert_eq!(
            crate::trust::hex(&me.public_key()),
            "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
        );
        let sealed = "9c31edd72730ac1cee45abfe022a5ba6199bf47e9b9a8000c08704ab986dc232\
                      a0ceeb641576376178bf88e16b479dcc2675c39fe7205b14a3b11615ec4ed6f6fbab39";
        let bytes: Vec<u8> = (0..sealed.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&sealed[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(open(&me, &bytes).unwrap(), b"sealed by libsodium");
    }

    #[test]
    fn garbage_inside_a_valid_box_is_malformed() {
        let bob = Keypair::generate();
        let sealed = SealedPrivate {
            to_node_id: "n-bob".into(),
            sealed: seal(&bob.verifying(), &[0xff, 0xff, 0xff]).unwrap(),
        };
        assert!(matches!(
            open_private(&bob, &sealed),
            Err(SealError::Malformed(_))
        ));
    }
}
