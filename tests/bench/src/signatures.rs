//! What end-to-end signatures cost: the sender signs each chat message, the
//! host checks it once before sequencing it, and every receiver checks it
//! again (the sender's name certificate is checked once per sender and
//! cached). Measured here on a real 100-byte message with the product's own
//! signing code, on one thread, so the cost can be set beside the CPU each
//! process spends per message in scenario A.

use chat_proto::chain::Signed;
use chat_proto::pb::chat::SendMessage;
use chat_proto::trust::{self, Keypair};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Microseconds per operation, on one core.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SignatureCost {
    /// Signing one message (the sender).
    pub sign_us: f64,
    /// Checking one message's signature (the host once, each receiver once).
    pub verify_us: f64,
}

/// Signs and verifies real chat messages for about `budget` each.
pub fn measure(budget: Duration) -> crate::Result<SignatureCost> {
    let key = Keypair::generate();
    let public = key.verifying();
    let mut msg = SendMessage {
        id: "bench-0".into(),
        text: "x".repeat(100),
        ..Default::default()
    };
    let sign_us = per_op_us(budget, |i| {
        msg.id = format!("bench-{i}");
        key.sign_message(trust::ROOM, "bench", &mut msg);
    });
    let payload = Signed::sent(trust::ROOM, "bench", &msg).payload();
    let mut failures = 0u64;
    let verify_us = per_op_us(budget, |_| {
        if public.verify(&payload, &msg.signature).is_err() {
            failures += 1;
        }
    });
    if failures > 0 {
        return Err(crate::BenchError::Setup(format!(
            "{failures} genuine signatures failed to verify"
        )));
    }
    Ok(SignatureCost { sign_us, verify_us })
}

/// Sets the signature costs of this machine beside scenario A's figures
/// for ours. Senders sign every message; receivers, the host and the
/// successor check one signature per run of a sender's consecutive
/// messages in a batch (`chat_proto::runs`), so a check's share of the CPU
/// depends on how large batches grow, not on the message count alone.
pub fn annotate(row: &mut crate::report::Row, cost: SignatureCost) {
    row.set("sign_us", cost.sign_us);
    row.set("verify_us", cost.verify_us);
    row.result.push_str(&format!(
        "; Ed25519 here: sign {:.1} us, check {:.1} us (checked per run)",
        cost.sign_us, cost.verify_us
    ));
}

/// Runs `op` in batches until `budget` has passed; microseconds per call.
fn per_op_us(budget: Duration, mut op: impl FnMut(u64)) -> f64 {
    const BATCH: u64 = 64;
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < budget {
        for _ in 0..BATCH {
            op(done);
            done += 1;
        }
    }
    start.elapsed().as_secs_f64() * 1e6 / done.max(1) as f64
}

/// One sender's chain, as a chat member keeps it: signs its messages in
/// order, each naming its counter and the digest of the one before.
pub struct ChainSigner {
    key: Keypair,
    name: String,
    seq: u64,
    prev: Vec<u8>,
}

impl ChainSigner {
    /// `name`'s chain, signed with `key`, at its start.
    pub fn new(key: Keypair, name: String) -> Self {
        Self {
            key,
            name,
            seq: 0,
            prev: Vec::new(),
        }
    }

    /// The sender's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message of the chain with `text` (id `NAME-K`), signed.
    pub fn next(&mut self, text: String) -> SendMessage {
        self.seq += 1;
        let mut msg = SendMessage {
            id: format!("{}-{}", self.name, self.seq),
            text,
            chain_seq: self.seq,
            chain_prev: std::mem::take(&mut self.prev),
            ..Default::default()
        };
        self.prev = self
            .key
            .sign_message(trust::ROOM, &self.name, &mut msg)
            .to_vec();
        msg
    }
}
