//! End-to-end checks of the messages a host serves or copies: each one
//! must carry a relay-signed name certificate for its sender and the
//! sender's signature. A host, being some member's machine, then cannot
//! forge or alter what another member said.

use crate::chain::Signed;
use crate::pb::chat::ChatMessage;
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
        key.verify(&Signed::served(room, m).payload(), &m.signature)
    }
}
