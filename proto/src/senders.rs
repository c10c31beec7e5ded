//! End-to-end checks of the messages a host serves or copies: each one
//! must carry a relay-signed name certificate for its sender and the
//! sender's signature. A host, being some member's machine, then cannot
//! forge or alter what another member said.

use crate::chain::{Digest, Signed};
use crate::pb::chat::ChatMessage;
use crate::runs;
use crate::trust::{PublicKey, TrustError};
use std::collections::HashMap;

/// Sender certificates remembered once verified.
const CACHED_CERTIFICATES: usize = 4096;

/// Verifies messages, remembering the sender certificates it has checked
/// (one signature check per message instead of two).
#[derive(Debug, Default)]
pub struct Senders {
    /// Certificate signature -> (name, key) it binds.
    known: HashMap<Vec<u8>, (String, PublicKey)>,
}

impl Senders {
    /// Checks `m`, of `room`, against the relay's key.
    pub fn check(
        &mut self,
        relay: &PublicKey,
        room: &str,
        m: &ChatMessage,
    ) -> Result<(), TrustError> {
        let key = self.sender_key(relay, m)?;
        key.verify(&Signed::served(room, m).payload(), &m.signature)
    }

    /// Checks `messages` of `room` (in log order) against the relay's key
    /// with one signature per run of a sender's consecutive messages
    /// (see [`runs`]); each one's digest, or why it is refused.
    pub fn check_all(
        &mut self,
        relay: &PublicKey,
        room: &str,
        messages: &[&ChatMessage],
    ) -> Vec<Result<Digest, TrustError>> {
        let keys: Vec<Result<PublicKey, TrustError>> =
            messages.iter().map(|m| self.sender_key(relay, m)).collect();
        let items: Vec<runs::Item<'_>> = messages
            .iter()
            .zip(&keys)
            .filter_map(|(m, key)| {
                Some(runs::Item {
                    key: *key.as_ref().ok()?,
                    signed: Signed::served(room, m),
                })
            })
            .collect();
        let checked = runs::check(&items);
        let mut verdicts = checked.valid.into_iter().zip(checked.digests);
        keys.into_iter()
            .map(|key| {
                key?;
                match verdicts.next() {
                    Some((true, digest)) => Ok(digest),
                    _ => Err(TrustError::BadSignature),
                }
            })
            .collect()
    }

    /// The key `m`'s sender certificate binds to its name, checked once
    /// per certificate.
    fn sender_key(&mut self, relay: &PublicKey, m: &ChatMessage) -> Result<PublicKey, TrustError> {
        let cert = m.sender.as_ref().ok_or(TrustError::Malformed)?;
        let (name, key) = match self.known.get(&cert.signature) {
            Some(known) => known.clone(),
            None => {
                // History stays verifiable after the grant expired.
                let grant = relay.verify_name(cert, i64::MIN)?;
                let known = (grant.name, PublicKey::from_bytes(&grant.public_key)?);
                if self.known.len() >= CACHED_CERTIFICATES {
                    self.known.clear();
                }
                self.known.insert(cert.signature.clone(), known.clone());
                known
            }
        };
        if name != m.from {
            return Err(TrustError::Mismatch("sender name"));
        }
        Ok(key)
    }
}
