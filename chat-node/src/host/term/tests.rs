use super::*;
use std::time::Duration;

const ME: &str = "me";
const OTHER: &str = "other";

fn term(epoch: u64, node_id: &str) -> HostTerm {
    HostTerm {
        epoch,
        node_id: node_id.into(),
        ..Default::default()
    }
}

/// A stand-in certificate, told apart by its bytes (the tenure trusts its
/// caller to have verified it).
fn cert(epoch: u64) -> HostTermCertificate {
    HostTermCertificate {
        term: epoch.to_be_bytes().to_vec(),
        signature: Vec::new(),
    }
}

/// What `tenure` makes of a term of `epoch` naming `node_id`.
fn observe(tenure: &mut Tenure, epoch: u64, node_id: &str) -> TermChange {
    tenure.observe(&term(epoch, node_id), cert(epoch), ME)
}

/// Hosting `epoch`, live, with a lease confirmed until `until`.
fn hosting(epoch: u64, until: Instant) -> Tenure {
    let mut tenure = Tenure::new();
    assert!(tenure.begin(epoch, cert(epoch)));
    tenure.confirm_lease(epoch, until);
    tenure
}

#[test]
fn a_stale_term_is_ignored() {
    let mut tenure = Tenure::new();
    assert_eq!(observe(&mut tenure, 5, OTHER), TermChange::Noted);
    assert_eq!(observe(&mut tenure, 4, ME), TermChange::Stale);
    assert_eq!(tenure.known_epoch(), 5);
    assert_eq!(tenure.latest_cert(), Some(&cert(5)));
    assert_eq!(tenure.role(), Role::Dormant);
}

#[test]
fn a_newer_term_for_me_says_become_host_and_for_another_says_step_down() {
    let mut tenure = Tenure::new();
    assert_eq!(observe(&mut tenure, 3, ME), TermChange::BecomeHost);
    assert!(tenure.begin(3, cert(3)));
    // The same term again changes nothing.
    assert_eq!(observe(&mut tenure, 3, ME), TermChange::Noted);
    assert_eq!(observe(&mut tenure, 4, OTHER), TermChange::StepDown);
    // Observing only tells: the role is given up by `end`.
    assert_eq!(tenure.role(), Role::Live { epoch: 3 });
    assert!(tenure.end());
    assert!(!tenure.end(), "already dormant");
    assert_eq!(tenure.role(), Role::Dormant);
    assert_eq!(tenure.hosted_cert(), None);
    assert_eq!(tenure.known_epoch(), 4);
}

#[test]
fn begin_refuses_an_epoch_below_the_known_one_or_the_one_hosted() {
    let mut tenure = Tenure::new();
    observe(&mut tenure, 7, OTHER);
    assert!(!tenure.begin(6, cert(6)));
    assert_eq!(tenure.role(), Role::Dormant);
    assert!(tenure.begin(7, cert(7)));
    assert!(!tenure.begin(7, cert(7)), "already hosted");
    assert!(tenure.begin(8, cert(8)));
    assert_eq!(tenure.role(), Role::Live { epoch: 8 });
    assert_eq!(tenure.known_epoch(), 8);
    assert_eq!(tenure.hosting_cert(8), Some(&cert(8)));
    assert_eq!(tenure.hosting_cert(7), None);
    assert_eq!(tenure.latest_cert(), Some(&cert(8)));
}

#[test]
fn the_lease_gates_the_commit_point() {
    let t0 = Instant::now();
    let mut tenure = Tenure::new();
    tenure.begin(1, cert(1));
    assert!(
        !tenure.lease_holds(t0),
        "unconfirmed at the start of a term"
    );
    assert!(!tenure.advance_commit(1, 5, t0));
    assert_eq!(tenure.commit().get(), 0);

    let until = t0 + Duration::from_secs(1);
    tenure.confirm_lease(1, until);
    tenure.confirm_lease(1, t0 + Duration::from_millis(10));
    assert!(
        tenure.lease_holds(t0 + Duration::from_millis(500)),
        "never shrinks"
    );
    assert!(tenure.advance_commit(1, 5, t0));
    assert!(!tenure.advance_commit(1, 3, t0), "never down");
    assert!(!tenure.advance_commit(2, 9, t0), "another epoch");
    assert!(!tenure.advance_commit(1, 9, until), "lease ran out");
    assert_eq!(tenure.commit().get(), 5);
}

#[test]
fn a_new_term_starts_with_nothing_committed_and_no_lease() {
    let t0 = Instant::now();
    let mut tenure = hosting(1, t0 + Duration::from_secs(1));
    assert!(tenure.advance_commit(1, 5, t0));
    tenure.confirm_lease(2, t0 + Duration::from_secs(9));
    assert!(tenure.begin(2, cert(2)));
    assert_eq!(tenure.commit().get(), 0);
    assert!(
        !tenure.lease_holds(t0),
        "the old lease went with the old term"
    );
    assert!(tenure.end());
    tenure.confirm_lease(2, t0 + Duration::from_secs(9));
    assert!(!tenure.lease_holds(t0), "no lease while dormant");
}

#[test]
fn a_replayed_counter_is_refused() {
    let mut tenure = Tenure::new();
    assert!(tenure.accept_counter(4, 100));
    assert!(!tenure.accept_counter(4, 100), "the same counter");
    assert!(!tenure.accept_counter(4, 99), "a lower counter");
    assert!(tenure.accept_counter(4, 101));
    assert!(!tenure.accept_counter(3, 500), "an older epoch");
    assert!(tenure.accept_counter(5, 1), "a new epoch starts afresh");
}

#[test]
fn freeze_only_from_live_in_the_same_epoch() {
    let mut tenure = Tenure::new();
    assert!(!tenure.freeze(1), "dormant");
    tenure.begin(1, cert(1));
    assert!(!tenure.freeze(2), "another epoch");
    assert!(!tenure.unfreeze(1), "not frozen");
    assert!(tenure.freeze(1));
    assert!(!tenure.freeze(1), "already frozen");
    assert_eq!(tenure.role(), Role::HandingOff { epoch: 1 });
    assert_eq!(tenure.hosting_cert(1), Some(&cert(1)), "still the host");
    assert!(tenure.unfreeze(1));
    assert_eq!(tenure.role(), Role::Live { epoch: 1 });
}

/// The role published since the last look, if any.
fn seen(roles: &mut watch::Receiver<Role>) -> Option<Role> {
    roles
        .has_changed()
        .unwrap()
        .then(|| *roles.borrow_and_update())
}

#[test]
fn the_watch_sees_every_role_change() {
    let mut tenure = Tenure::new();
    let mut roles = tenure.watch_role();
    observe(&mut tenure, 1, OTHER);
    assert_eq!(seen(&mut roles), None, "noting a term is no role change");
    tenure.begin(2, cert(2));
    assert_eq!(seen(&mut roles), Some(Role::Live { epoch: 2 }));
    tenure.freeze(2);
    assert_eq!(seen(&mut roles), Some(Role::HandingOff { epoch: 2 }));
    tenure.unfreeze(2);
    assert_eq!(seen(&mut roles), Some(Role::Live { epoch: 2 }));
    tenure.begin(3, cert(3));
    assert_eq!(seen(&mut roles), Some(Role::Live { epoch: 3 }));
    tenure.end();
    assert_eq!(seen(&mut roles), Some(Role::Dormant));
    assert!(!tenure.freeze(3));
    assert_eq!(
        seen(&mut roles),
        None,
        "a refused transition publishes nothing"
    );
}

#[test]
fn a_tick_wakes_commit_watchers_without_moving() {
    let t0 = Instant::now();
    let tenure = hosting(1, t0 + Duration::from_secs(1));
    let mut commits = tenure.commit().subscribe();
    tenure.commit().tick();
    assert!(commits.has_changed().unwrap());
    assert_eq!(*commits.borrow_and_update(), 0);
    tenure.advance_commit(1, 4, t0);
    assert_eq!(*commits.borrow_and_update(), 4);
}
