//! A room's host term, with one owner. [`Tenure`] holds what this node
//! knows of the room's terms, the term it hosts (live, or frozen while it
//! hands the room off), the lease the relay confirmed for that term, the
//! Replicate replay counter, the role watch and the commit point. Its
//! fields are private: every change goes through a named transition that
//! publishes the role itself, so the role read under the lock and the one
//! on the watch never disagree.
//!
//! Pure and synchronous (time comes in as an argument), so each transition
//! is tested beside it. A node keeps one per room, in that room's host
//! state.
//!
//! Invariants:
//! - the known epoch only rises, and only from a term the caller verified;
//! - a hosted epoch is never above the known epoch;
//! - the lease belongs to the hosted term: it starts unconfirmed and ends
//!   with the term;
//! - the commit point starts at 0 in each hosted term and then never goes
//!   down; it moves only while that term's lease holds.

use super::Role;
use chat_proto::pb::relay::{HostTerm, HostTermCertificate};
use std::time::Instant;
use tokio::sync::watch;

/// What a newly verified host term means for this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermChange {
    /// Older than a term already known: ignored.
    Stale,
    /// Now the newest term known; this node's role stays as it is.
    Noted,
    /// It names this node for an epoch newer than any it hosts: take the
    /// role ([`Tenure::begin`]).
    BecomeHost,
    /// It names another node for an epoch newer than the one this node
    /// hosts: stop serving ([`Tenure::end`]).
    StepDown,
}

/// The newest relay-verified term known.
#[derive(Debug, Clone)]
struct KnownTerm {
    epoch: u64,
    cert: HostTermCertificate,
}

/// Whether the hosted term serves chat traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sequencing messages.
    Live,
    /// Shipping the room to a successor: nothing is sequenced.
    HandingOff,
}

/// The term this node hosts.
#[derive(Debug)]
struct Hosted {
    epoch: u64,
    cert: HostTermCertificate,
    phase: Phase,
    /// Until when the relay has confirmed the lease, by our clock.
    lease_until: Option<Instant>,
}

/// The host term of one room, as this node sees it.
#[derive(Debug)]
pub struct Tenure {
    latest: Option<KnownTerm>,
    hosted: Option<Hosted>,
    /// The last Replicate counter accepted, and its epoch.
    last_replicate: Option<(u64, u64)>,
    /// The role, published on every change.
    role_tx: watch::Sender<Role>,
    commit: CommitPoint,
}

impl Default for Tenure {
    fn default() -> Self {
        Self::new()
    }
}

impl Tenure {
    /// Dormant, knowing no term.
    pub fn new() -> Self {
        Self {
            latest: None,
            hosted: None,
            last_replicate: None,
            role_tx: watch::channel(Role::Dormant).0,
            commit: CommitPoint::new(),
        }
    }

    /// This node's part in the room.
    pub fn role(&self) -> Role {
        match &self.hosted {
            None => Role::Dormant,
            Some(h) if h.phase == Phase::Live => Role::Live { epoch: h.epoch },
            Some(h) => Role::HandingOff { epoch: h.epoch },
        }
    }

    /// Watches the role: every change is published.
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        self.role_tx.subscribe()
    }

    /// The newest epoch known from a relay-signed term (0 before any).
    pub fn known_epoch(&self) -> u64 {
        self.latest.as_ref().map_or(0, |t| t.epoch)
    }

    /// The certificate of the newest term known.
    pub fn latest_cert(&self) -> Option<&HostTermCertificate> {
        self.latest.as_ref().map(|t| &t.cert)
    }

    /// The certificate of the term this node hosts, whatever its epoch.
    pub fn hosted_cert(&self) -> Option<&HostTermCertificate> {
        self.hosted.as_ref().map(|h| &h.cert)
    }

    /// The certificate of the term this node hosts, if that is `epoch`.
    pub fn hosting_cert(&self, epoch: u64) -> Option<&HostTermCertificate> {
        self.hosted_in(epoch).map(|h| &h.cert)
    }

    /// Whether the relay's last confirmation of our lease still holds at
    /// `now`. Never while dormant.
    pub fn lease_holds(&self, now: Instant) -> bool {
        let until = self.hosted.as_ref().and_then(|h| h.lease_until);
        until.is_some_and(|u| now < u)
    }

    /// The commit point, to read, watch or tick.
    pub fn commit(&self) -> &CommitPoint {
        &self.commit
    }

    /// Takes in a term the caller verified against the relay's key; `me`
    /// is this node's id. A term not older than the newest known becomes
    /// the newest known, and the answer says whether this node should
    /// take the role or give it up (neither is done here).
    pub fn observe(&mut self, term: &HostTerm, cert: HostTermCertificate, me: &str) -> TermChange {
        if term.epoch < self.known_epoch() {
            return TermChange::Stale;
        }
        self.latest = Some(KnownTerm {
            epoch: term.epoch,
            cert,
        });
        let hosting = self.role().hosting_epoch();
        match (term.node_id == me, hosting) {
            (true, h) if h.is_none_or(|e| e < term.epoch) => TermChange::BecomeHost,
            (false, Some(e)) if e < term.epoch => TermChange::StepDown,
            _ => TermChange::Noted,
        }
    }

    /// Takes `cert`, a term of `epoch` the caller verified, as the newest
    /// known if it is newer than any known (the term a copy read back from
    /// disk knew). The role stays as it is.
    pub fn restore(&mut self, epoch: u64, cert: HostTermCertificate) {
        if epoch > self.known_epoch() {
            self.latest = Some(KnownTerm { epoch, cert });
        }
    }

    /// Starts hosting `epoch` (whose verified certificate is `cert`), live,
    /// with an unconfirmed lease and nothing committed. Refused (false) for
    /// an epoch below the known one, or the one already hosted.
    pub fn begin(&mut self, epoch: u64, cert: HostTermCertificate) -> bool {
        if self.known_epoch() > epoch || self.role().hosting_epoch() == Some(epoch) {
            return false;
        }
        self.latest = Some(KnownTerm {
            epoch,
            cert: cert.clone(),
        });
        self.hosted = Some(Hosted {
            epoch,
            cert,
            phase: Phase::Live,
            lease_until: None,
        });
        self.commit.reset();
        self.publish_role();
        true
    }

    /// Stops sequencing while the room of `epoch` is shipped to a
    /// successor. Only from live hosting of that epoch.
    pub fn freeze(&mut self, epoch: u64) -> bool {
        self.shift(epoch, Phase::Live, Phase::HandingOff)
    }

    /// Serves `epoch` again after a handoff failed. Only from handing off
    /// that epoch.
    pub fn unfreeze(&mut self, epoch: u64) -> bool {
        self.shift(epoch, Phase::HandingOff, Phase::Live)
    }

    /// Stops hosting (the lease goes with the term). False if dormant.
    pub fn end(&mut self) -> bool {
        if self.hosted.take().is_none() {
            return false;
        }
        self.publish_role();
        true
    }

    /// Records that the relay confirmed our lease for `epoch` until
    /// `until` (by our clock). A lease never shrinks; a confirmation for
    /// a term no longer hosted is ignored.
    pub fn confirm_lease(&mut self, epoch: u64, until: Instant) {
        if let Some(h) = self.hosted.as_mut().filter(|h| h.epoch == epoch) {
            h.lease_until = h.lease_until.max(Some(until));
        }
    }

    /// Moves the commit point up to `seq` (never down), only while this
    /// node hosts `epoch` and its lease holds at `now`: a host whose lease
    /// ran out acknowledges nothing (the relay may be promoting another)
    /// until the relay confirms the lease again. True if it moved.
    pub fn advance_commit(&self, epoch: u64, seq: u64, now: Instant) -> bool {
        self.hosted_in(epoch).is_some() && self.lease_holds(now) && self.commit.advance(seq)
    }

    /// Accepts the counter of a Replicate of `epoch`, unless it replays
    /// one: not above the last accepted in the same epoch, or from an
    /// older epoch than that.
    pub fn accept_counter(&mut self, epoch: u64, counter: u64) -> bool {
        let replayed = self
            .last_replicate
            .is_some_and(|(e, c)| e > epoch || (e == epoch && counter <= c));
        if !replayed {
            self.last_replicate = Some((epoch, counter));
        }
        !replayed
    }

    /// The hosted term, if its epoch is `epoch`.
    fn hosted_in(&self, epoch: u64) -> Option<&Hosted> {
        self.hosted.as_ref().filter(|h| h.epoch == epoch)
    }

    /// Moves the hosted term of `epoch` from phase `from` to `to`.
    fn shift(&mut self, epoch: u64, from: Phase, to: Phase) -> bool {
        match self.hosted.as_mut() {
            Some(h) if h.epoch == epoch && h.phase == from => h.phase = to,
            _ => return false,
        }
        self.publish_role();
        true
    }

    /// Publishes the role, waking watchers only if it changed.
    fn publish_role(&self) {
        let role = self.role();
        self.role_tx.send_if_modified(|published| {
            let changed = *published != role;
            *published = role;
            changed
        });
    }
}

/// The commit point of the hosted term: the highest sequence number the
/// successor holds (the head when alone). Only committed entries are
/// delivered and acknowledged. Anyone may read, watch or tick it; only
/// [`Tenure`] moves it: back to 0 when a term begins, up while the lease
/// holds.
#[derive(Debug)]
pub struct CommitPoint(watch::Sender<u64>);

impl CommitPoint {
    fn new() -> Self {
        Self(watch::channel(0).0)
    }

    /// Nothing is committed in a new term until a successor holds it.
    fn reset(&self) {
        self.0.send_replace(0);
    }

    /// Moves up to `seq`, never down; true if it moved.
    fn advance(&self, seq: u64) -> bool {
        self.0.send_if_modified(|commit| {
            let up = seq > *commit;
            if up {
                *commit = seq;
            }
            up
        })
    }

    /// Wakes every watcher without moving (on activation, held messages
    /// become deliverable).
    pub fn tick(&self) {
        self.0.send_modify(|_| {});
    }

    /// Watches the commit point.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// The commit point now.
    pub fn get(&self) -> u64 {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests;
