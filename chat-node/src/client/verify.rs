//! End-to-end checks of the messages a host serves: each one must carry a
//! relay-signed name certificate for its sender and the sender's signature.
//! A host, being some member's machine, can then drop or delay messages but
//! cannot forge or alter what another member said.

use chat_proto::pb::chat::ChatMessage;
use chat_proto::trust::{self, PublicKey, TrustError};
use std::collections::HashMap;

/// Sender certificates remembered once verified.
const CACHED_CERTIFICATES: usize = 4096;

/// Verifies messages, remembering the sender certificates it has checked
/// (one signature check per message instead of two).
#[derive(Debug, Default)]
pub(super) struct Verifier {
    /// Certificate signature -> (name, key) it binds.
    senders: HashMap<Vec<u8>, (String, PublicKey)>,
}

impl Verifier {
    /// Checks `m`, served in `room`, against the relay's key.
    pub(super) fn check(
        &mut self,
        relay: &PublicKey,
        room: &str,
        m: &ChatMessage,
    ) -> Result<(), TrustError> {
        let cert = m.sender.as_ref().ok_or(TrustError::Malformed)?;
        let (name, key) = match self.senders.get(&cert.signature) {
            Some(known) => known.clone(),
            None => {
                // History stays verifiable after the grant expired.
                let grant = relay.verify_name(cert, i64::MIN)?;
                let known = (grant.name, PublicKey::from_bytes(&grant.public_key)?);
                if self.senders.len() >= CACHED_CERTIFICATES {
                    self.senders.clear();
                }
                self.senders.insert(cert.signature.clone(), known.clone());
                known
            }
        };
        if name != m.from {
            return Err(TrustError::Mismatch("sender name"));
        }
        let payload = trust::message_payload(room, &m.id, &m.from, &m.text, m.sent_at_unix_ms);
        key.verify(&payload, &m.signature)
    }
}
