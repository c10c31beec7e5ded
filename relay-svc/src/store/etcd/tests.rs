//! The etcd store against a real etcd: the compare-and-set of a room's
//! term and of the epoch counter, fencing by the leader key, the state
//! read back at takeover, and the leader's keep-alive loop.

use super::*;
use crate::store::etcd_server::EtcdServer;
use crate::store::Store;

fn record(room: &str, epoch: u64, node: &str) -> HostRecord {
    HostRecord {
        room: room.into(),
        epoch,
        node_id: node.into(),
        name: node.into(),
        address: "127.0.0.1:1".into(),
        ..Default::default()
    }
}

fn batch(epoch: u64, terms: &[HostRecord]) -> Batch {
    Batch {
        highest_epoch: epoch,
        terms: terms
            .iter()
            .map(|t| (t.room.clone(), Some(t.clone())))
            .collect(),
        names: Default::default(),
    }
}

/// Wins the leadership under a fresh prefix.
async fn leader(etcd: &EtcdServer, prefix: &str, me: &str) -> (Client, Keys, Leadership) {
    let client = connect(&etcd.endpoints()).await.unwrap();
    let keys = Keys::new(prefix);
    match campaign(&client, &keys, me, Duration::from_secs(2))
        .await
        .unwrap()
    {
        Campaign::Won(l) => (client, keys, l),
        Campaign::Lost(other) => panic!("{other} leads a fresh prefix"),
    }
}

#[tokio::test]
async fn of_two_writers_of_a_room_term_exactly_one_wins() {
    let etcd = EtcdServer::start().await;
    let (client, keys, won) = leader(&etcd, "/cas", "a").await;
    let one = EtcdStore::new(client.clone(), keys.clone(), won.revision);
    let two = EtcdStore::new(client.clone(), keys.clone(), won.revision);
    one.load().await.unwrap();
    two.load().await.unwrap();
    let first = [record("lobby", 1, "alice")];
    let second = [record("lobby", 1, "bob")];
    let (first, second) = (batch(1, &first), batch(1, &second));
    let (a, b) = tokio::join!(one.commit(&first), two.commit(&second));
    assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} {b:?}");
    // The loser reads the winner's term back and builds on it.
    let loser = if a.is_ok() { &two } else { &one };
    let snapshot = loser.load().await.unwrap();
    assert_eq!(snapshot.terms.len(), 1);
    assert_eq!(snapshot.highest_epoch, 1);
    loser
        .commit(&batch(2, &[record("lobby", 2, "carol")]))
        .await
        .unwrap();
    // The other writer's view is stale now: refused, for the room and for
    // the epoch counter alike.
    let winner = if a.is_ok() { &one } else { &two };
    let stale = winner
        .commit(&batch(3, &[record("lobby", 3, "dave")]))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let stale = winner.commit(&batch(4, &[])).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
}

#[tokio::test]
async fn a_writer_whose_leader_key_is_gone_writes_nothing() {
    let etcd = EtcdServer::start().await;
    let (client, keys, won) = leader(&etcd, "/fence", "a").await;
    let old = EtcdStore::new(client.clone(), keys.clone(), won.revision);
    old.load().await.unwrap();
    old.commit(&batch(1, &[record("lobby", 1, "alice")]))
        .await
        .unwrap();
    resign(&client, won).await;
    // Another instance leads now; the old leader's writes are refused.
    let (_, _, next) = leader(&etcd, "/fence", "b").await;
    let refused = old.commit(&batch(2, &[record("lobby", 2, "bob")])).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let new = EtcdStore::new(client.clone(), keys.clone(), next.revision);
    let snapshot = new.load().await.unwrap();
    assert_eq!(snapshot.terms, [record("lobby", 1, "alice")]);
    new.commit(&batch(2, &[record("lobby", 2, "bob")]))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_durable_state_is_read_back_whole_at_takeover() {
    let etcd = EtcdServer::start().await;
    let (client, keys, won) = leader(&etcd, "/state/", "a").await;
    let store = EtcdStore::new(client.clone(), keys.clone(), won.revision);
    store.load().await.unwrap();
    // More writes than one transaction takes.
    let terms: Vec<HostRecord> = (0..250)
        .map(|i| record(&format!("room/{i}"), 10 + i, "alice"))
        .collect();
    let mut first = batch(7, &terms);
    first.names.insert("alice".into(), "aaa".into());
    store.commit(&first).await.unwrap();
    let mut gone = batch(300, &[]);
    gone.terms.insert("room/0".into(), None);
    gone.names.insert("bob".into(), "bbb".into());
    store.commit(&gone).await.unwrap();
    let again = EtcdStore::new(client, keys, won.revision);
    let snapshot = again.load().await.unwrap();
    assert_eq!(snapshot.highest_epoch, 300);
    assert_eq!(snapshot.terms.len(), 249);
    assert!(snapshot.terms.iter().all(|t| t.room != "room/0"));
    assert_eq!(
        snapshot.names,
        [("alice".into(), "aaa".into()), ("bob".into(), "bbb".into())]
    );
    // Its revisions are the stored ones: it can write at once.
    again
        .commit(&batch(301, &[record("room/1", 301, "bob")]))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_kept_lease_keeps_the_lead_and_a_lapsed_one_hands_it_over() {
    let etcd = EtcdServer::start().await;
    let (client, keys, won) = leader(&etcd, "/lead", "a").await;
    let keeping = tokio::spawn({
        let client = client.clone();
        async move { keep_leading(&client, won).await }
    });
    // Past two lease periods the leader still leads.
    let until = Instant::now() + won.ttl * 2 + Duration::from_millis(500);
    while Instant::now() < until {
        let attempt = campaign(&client, &keys, "b", won.ttl).await.unwrap();
        assert!(
            matches!(attempt, Campaign::Lost(ref a) if a == "a"),
            "{attempt:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!keeping.is_finished());
    // The leader stops renewing (a crash): another wins within the lease
    // and etcd's expiry check.
    keeping.abort();
    let deadline = Instant::now() + won.ttl * 4;
    loop {
        match campaign(&client, &keys, "b", won.ttl).await.unwrap() {
            Campaign::Won(_) => break,
            Campaign::Lost(_) => assert!(Instant::now() < deadline, "nobody took over"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
