//! Bare tonic with signatures: the same broadcast server as
//! [`super::tonic_bare`], but every message is a chat message signed
//! exactly as a chat member signs it (the product's
//! [`Keypair::sign_message`], with its sender chain: `chain_seq` and
//! `chain_prev`, the digest of the sender's previous message), and every
//! subscriber checks every message before it counts it, in batches of
//! what has already arrived, with the product's check by runs
//! ([`chat_proto::runs::check`]: one signature per run of a sender's
//! linked messages, several senders' runs in one batch verification, one
//! hash per message). It is the least any system with end-to-end
//! signatures pays, without a log, ids, acknowledgements or migration.
//!
//! Subscribers know the publishers' keys out of band, as a chat member
//! knows them from the relay's name certificates: publisher `i` signs as
//! `p<i>` with a key derived from `i` ([`keypair`]).

use super::tonic_bare::{self, TonicPublisher};
use crate::pb::{Frame, Signature};
use crate::signatures::ChainSigner;
use crate::stats::Probe;
use crate::Result;
use chat_proto::chain::Signed;
use chat_proto::runs::{self, Item};
use chat_proto::trust::{self, Keypair, PublicKey};
use futures_util::FutureExt;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

/// Most frames checked together (as the chat's clients do).
pub const MAX_BATCH: usize = chat_node::checked::MAX_BATCH;

/// The sender name of publisher `index`.
pub fn sender_name(index: u32) -> String {
    format!("p{index:04}")
}

/// The key of publisher `index` (derived from it: the subscribers know
/// every publisher's key in advance).
pub fn keypair(index: u32) -> Keypair {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(b"chat-bench-tonic");
    secret[16..20].copy_from_slice(&index.to_be_bytes());
    Keypair::from_secret(secret)
}

/// One publisher's chain: signs its messages in order.
pub struct Signer(ChainSigner);

impl Signer {
    /// The signer of publisher `index`, at the start of its chain.
    pub fn new(index: u32) -> Self {
        Self(ChainSigner::new(keypair(index), sender_name(index)))
    }

    /// The next message of the chain with `text`, signed as a chat member
    /// signs it.
    pub fn sign(&mut self, text: String) -> Frame {
        let msg = self.0.next(text);
        Frame {
            payload: msg.text.into(),
            signed: Some(Signature {
                from: self.0.name().to_string(),
                id: msg.id,
                sent_at_unix_ms: msg.sent_at_unix_ms,
                chain_seq: msg.chain_seq,
                chain_prev: msg.chain_prev,
                signature: msg.signature,
            }),
        }
    }
}

/// A publisher that signs every message.
pub struct SignedPublisher {
    inner: TonicPublisher,
    signer: Signer,
}

impl SignedPublisher {
    /// Opens the session of publisher `index`.
    pub async fn connect(addr: &str, index: u32) -> Result<Self> {
        Ok(Self {
            inner: TonicPublisher::connect(addr).await?,
            signer: Signer::new(index),
        })
    }

    /// Signs and sends one payload.
    pub async fn publish(&mut self, payload: String) -> Result<()> {
        let frame = self.signer.sign(payload);
        self.inner.send(frame).await
    }

    /// Ends the stream and waits until the server has every frame.
    pub async fn close(self) {
        self.inner.close().await;
    }
}

/// Checks frames the way a chat client checks a batch of messages.
#[derive(Default)]
pub struct Verifier {
    keys: HashMap<String, Option<PublicKey>>,
    /// Frames refused so far.
    pub refused: u64,
}

impl Verifier {
    /// The key of sender `from`, known out of band (cached).
    fn key(&mut self, from: &str) -> Option<PublicKey> {
        *self.keys.entry(from.to_string()).or_insert_with(|| {
            let index = from.strip_prefix('p')?.parse::<u32>().ok()?;
            (sender_name(index) == from).then(|| keypair(index).verifying())
        })
    }

    /// Whether each frame of `batch` is a message its sender signed, one
    /// signature per run.
    pub fn check(&mut self, batch: &[Frame]) -> Vec<bool> {
        let mut items = Vec::with_capacity(batch.len());
        let mut at = Vec::with_capacity(batch.len());
        for (i, frame) in batch.iter().enumerate() {
            let Some(s) = &frame.signed else { continue };
            let Ok(text) = std::str::from_utf8(&frame.payload) else {
                continue;
            };
            let Some(key) = self.key(&s.from) else {
                continue;
            };
            items.push(Item {
                key,
                signed: Signed {
                    room: trust::ROOM,
                    id: &s.id,
                    from: &s.from,
                    text,
                    sent_at_unix_ms: s.sent_at_unix_ms,
                    chain_seq: s.chain_seq,
                    chain_prev: &s.chain_prev,
                    signature: &s.signature,
                },
            });
            at.push(i);
        }
        let mut valid = vec![false; batch.len()];
        for (&i, ok) in at.iter().zip(runs::check(&items).valid) {
            valid[i] = ok;
        }
        self.refused += valid.iter().filter(|v| !**v).count() as u64;
        valid
    }
}

/// The next batch of frames: the next one (waiting for it), then every one
/// that has already arrived, up to [`MAX_BATCH`]; empty once the stream
/// ended or broke.
pub async fn next_batch(inbound: &mut Streaming<Frame>) -> Vec<Frame> {
    let mut batch = Vec::new();
    let Some(Ok(first)) = inbound.next().await else {
        return batch;
    };
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match inbound.next().now_or_never() {
            Some(Some(Ok(frame))) => batch.push(frame),
            _ => break,
        }
    }
    batch
}

/// Opens a subscribing session (its own connection) that checks every
/// message before counting it; returns once the server has subscribed it.
/// Refused messages count as malformed.
pub async fn subscribe(
    addr: &str,
    mut probe: Probe,
    cancel: CancellationToken,
) -> Result<JoinHandle<Probe>> {
    let mut client = tonic_bare::connect(addr).await?;
    let (tx, rx) = mpsc::channel::<Frame>(1);
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    Ok(tokio::spawn(async move {
        let _open = tx;
        let mut verifier = Verifier::default();
        loop {
            let batch = tokio::select! {
                b = next_batch(&mut inbound) => b,
                _ = cancel.cancelled() => break,
            };
            if batch.is_empty() {
                break;
            }
            for (frame, ok) in batch.iter().zip(verifier.check(&batch)) {
                if ok {
                    probe.on_payload(&frame.payload);
                } else {
                    probe.malformed += 1;
                }
            }
        }
        probe
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_frames_check_by_runs_and_a_forgery_is_refused() {
        let mut signers: Vec<Signer> = (0..3).map(Signer::new).collect();
        let mut frames = Vec::new();
        for k in 0..30 {
            let i = k % 3;
            frames.push(signers[i].sign(crate::payload::make(i as u32, k as u64)));
        }
        let mut verifier = Verifier::default();
        assert!(verifier.check(&frames).iter().all(|v| *v));
        let mut forged = frames.clone();
        forged[29].payload = crate::payload::make(2, 999).into();
        forged[28].signed = None;
        let valid = verifier.check(&forged);
        assert_eq!(valid.iter().filter(|v| !**v).count(), 2);
        assert!(!valid[28] && !valid[29]);
        assert_eq!(verifier.refused, 2);
    }
}
