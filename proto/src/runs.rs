//! Signatures checked per run, not per message.
//!
//! Each message names the digest of its sender's previous message
//! (`chain_prev`), and a digest covers every byte of the message its
//! signature included. So when message `j` follows message `i` of the
//! same sender and key in a batch (`j.chain_seq == i.chain_seq + 1` and
//! `j.chain_prev == digest(i)`), a valid signature on `j` vouches for `i`
//! as well: forging `i` would need a second SHA-256 preimage. A batch is
//! therefore checked with one signature per *run* (a sender's consecutive
//! messages in it) plus one hash per message, and the runs' signatures of
//! several senders go through one batch verification.
//!
//! Nothing is accepted that a check one by one would refuse for want of a
//! valid signature somewhere in its run: a message is accepted only if the
//! signature at the end of its run verifies, or, when that one fails, its
//! own. Batch verification (ed25519-dalek's `verify_batch`) is only a fast
//! path: when it fails, every signature of the batch is checked strictly
//! on its own, so an invalid signature costs its run, never a neighbour's.

use crate::chain::{Digest, Signed};
use crate::trust::PublicKey;
use std::collections::HashMap;

/// One message to check: what its sender signed, and the key that must
/// have signed it.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The sender's key (from its verified name certificate).
    pub key: PublicKey,
    /// The signed fields, the signature among them.
    pub signed: Signed<'a>,
}

/// What a check by runs found, message by message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// For each item, in order: whether it is vouched for by a valid
    /// signature (its own, or one later in its run).
    pub valid: Vec<bool>,
    /// Each item's digest (what the sender's next message chains to).
    pub digests: Vec<Digest>,
    /// Signatures verified (runs, plus fallbacks after a failed run).
    pub signatures_checked: usize,
}

/// Checks `items` (in the order they are to be shown) with one signature
/// per run of consecutive messages from the same sender and key.
pub fn check(items: &[Item<'_>]) -> Checked {
    // Each payload is built once: it is hashed into the digest, and checked
    // against the signature when its message ends a run.
    let payloads: Vec<Vec<u8>> = items.iter().map(|it| it.signed.payload()).collect();
    let digests: Vec<Digest> = items
        .iter()
        .zip(&payloads)
        .map(|(it, payload)| it.signed.digest_of(payload))
        .collect();
    let vouched_by = links(items, &digests);
    let tails: Vec<usize> = (0..items.len())
        .filter(|&i| vouched_by[i].is_none())
        .collect();
    let tail_valid = verify_all(items, &payloads, &tails);
    let mut signatures_checked = tails.len();
    let mut valid = vec![false; items.len()];
    for (&i, ok) in tails.iter().zip(&tail_valid) {
        valid[i] = *ok;
    }
    // A link always points forwards: walk backwards so each message's
    // voucher is settled before it. A run whose signature failed falls
    // back to each message's own.
    for i in (0..items.len()).rev() {
        if let Some(j) = vouched_by[i] {
            valid[i] = valid[j] || {
                signatures_checked += 1;
                verify_one(&items[i], &payloads[i])
            };
        }
    }
    Checked {
        valid,
        digests,
        signatures_checked,
    }
}

/// For each item, the later item of the same sender and key that chains
/// directly to it, if the batch holds one.
fn links(items: &[Item<'_>], digests: &[Digest]) -> Vec<Option<usize>> {
    let mut vouched_by = vec![None; items.len()];
    let mut open: HashMap<(&str, [u8; 32]), usize> = HashMap::new();
    for (j, item) in items.iter().enumerate() {
        let sender = (item.signed.from, item.key.to_bytes());
        if let Some(&i) = open.get(&sender) {
            let before = &items[i].signed;
            if item.signed.chain_seq == before.chain_seq.wrapping_add(1)
                && item.signed.chain_prev == digests[i].as_slice()
            {
                vouched_by[i] = Some(j);
            }
        }
        open.insert(sender, j);
    }
    vouched_by
}

fn verify_one(item: &Item<'_>, payload: &[u8]) -> bool {
    item.key.verify(payload, item.signed.signature).is_ok()
}

/// Verifies the signatures of `items[which]`: in one batch when there are
/// several, each strictly on its own when the batch fails (or has one).
fn verify_all(items: &[Item<'_>], payloads: &[Vec<u8>], which: &[usize]) -> Vec<bool> {
    if which.len() > 1 {
        let batch: Vec<(&[u8], &[u8], PublicKey)> = which
            .iter()
            .map(|&i| {
                (
                    payloads[i].as_slice(),
                    items[i].signed.signature,
                    items[i].key,
                )
            })
            .collect();
        if PublicKey::verify_batch(&batch).is_ok() {
            return vec![true; which.len()];
        }
    }
    which
        .iter()
        .map(|&i| verify_one(&items[i], &payloads[i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::chat::SendMessage;
    use crate::trust::Keypair;

    /// `n` chained messages from `from`, signed by `key`.
    fn chain(key: &Keypair, from: &str, n: usize) -> Vec<SendMessage> {
        let mut prev = Vec::new();
        (1..=n)
            .map(|k| {
                let mut m = SendMessage {
                    id: format!("{from}-{k}"),
                    text: format!("message {k}"),
                    chain_seq: k as u64,
                    chain_prev: prev.clone(),
                    ..Default::default()
                };
                prev = key.sign_message("lobby", from, &mut m).to_vec();
                m
            })
            .collect()
    }

    fn items<'a>(batch: &'a [(&'a str, PublicKey, &'a SendMessage)]) -> Vec<Item<'a>> {
        batch
            .iter()
            .map(|(from, key, m)| Item {
                key: *key,
                signed: Signed::sent("lobby", from, m),
            })
            .collect()
    }

    #[test]
    fn one_signature_per_run_and_runs_of_several_senders_together() {
        let (ann, bob) = (Keypair::generate(), Keypair::generate());
        let (a, b) = (chain(&ann, "ann", 50), chain(&bob, "bob", 50));
        let mut batch = Vec::new();
        for k in 0..50 {
            batch.push(("ann", ann.verifying(), &a[k]));
            batch.push(("bob", bob.verifying(), &b[k]));
        }
        let checked = check(&items(&batch));
        assert!(checked.valid.iter().all(|v| *v));
        assert_eq!(checked.signatures_checked, 2, "one per sender's run");
    }

    #[test]
    fn a_spoiled_message_is_refused_and_costs_only_its_own_run() {
        let (ann, bob) = (Keypair::generate(), Keypair::generate());
        let (a, b) = (chain(&ann, "ann", 10), chain(&bob, "bob", 10));
        // Altered text: the link from ann's next message no longer holds,
        // and its own signature fails.
        let mut altered = a[4].clone();
        altered.text = "something else".into();
        // A spoiled signature at the end of bob's run.
        let mut spoiled = b[9].clone();
        spoiled.signature[0] ^= 1;
        let mut batch = Vec::new();
        for k in 0..10 {
            batch.push((
                "ann",
                ann.verifying(),
                if k == 4 { &altered } else { &a[k] },
            ));
            batch.push((
                "bob",
                bob.verifying(),
                if k == 9 { &spoiled } else { &b[k] },
            ));
        }
        let checked = check(&items(&batch));
        for (k, pair) in checked.valid.chunks(2).enumerate() {
            assert_eq!(pair[0], k != 4, "ann's message {k}");
            assert_eq!(pair[1], k != 9, "bob's message {k}: only the spoiled one");
        }
    }

    #[test]
    fn a_mid_run_signature_is_vouched_for_only_if_it_is_the_senders() {
        let ann = Keypair::generate();
        let a = chain(&ann, "ann", 3);
        let mut spoiled = a[1].clone();
        spoiled.signature[5] ^= 1;
        let batch = [
            ("ann", ann.verifying(), &a[0]),
            ("ann", ann.verifying(), &spoiled),
            ("ann", ann.verifying(), &a[2]),
        ];
        let checked = check(&items(&batch));
        // The digest covers the signature: the spoiled copy breaks the
        // link, so it is checked on its own and refused.
        assert_eq!(checked.valid, vec![true, false, true]);
    }

    #[test]
    fn another_key_or_a_reordered_run_does_not_vouch() {
        let (ann, eve) = (Keypair::generate(), Keypair::generate());
        let a = chain(&ann, "ann", 3);
        let mut forged = a[0].clone();
        forged.text = "forged".into();
        forged.signature = vec![0; 64];
        // Eve (another key under ann's name) cannot vouch for a forgery.
        let batch = [
            ("ann", eve.verifying(), &forged),
            ("ann", ann.verifying(), &a[1]),
        ];
        assert_eq!(check(&items(&batch)).valid, vec![false, true]);
        let batch = [
            ("ann", ann.verifying(), &a[2]),
            ("ann", ann.verifying(), &a[1]),
            ("ann", ann.verifying(), &a[0]),
        ];
        let checked = check(&items(&batch));
        assert_eq!(checked.valid, vec![true, true, true]);
        assert_eq!(checked.signatures_checked, 3, "out of order: no links");
    }
}
