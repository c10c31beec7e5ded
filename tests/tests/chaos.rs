//! The seeded chaos test: big rooms of every node and two-member rooms,
//! host kills alternating between the two kinds. CI runs the short plan;
//! the full run is
//! `CHAOS_MIGRATIONS=1000 CHAOS_HOST_KILLS=20 CHAOS_RELAY_RESTARTS=5 cargo test --release -p chat-tests --test chaos -- --nocapture`
//! (see docs/testing.md).

use chat_tests::chaos::{self, ChaosPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_through_migrations_host_kills_and_relay_restarts() {
    let plan = ChaosPlan::from_env();
    println!("chaos plan: {plan:?}");
    let report = chaos::run(plan.clone()).await;
    println!("{}", report.summary());
    assert_eq!(report.host_kills, plan.host_kills);
    assert_eq!(report.relay_restarts, plan.relay_restarts);
    assert!(report.migrations >= plan.migrations, "{}", report.summary());
    assert!(report.acked > 0, "{}", report.summary());
    assert_eq!(
        report.rooms.len(),
        plan.rooms + plan.pairs,
        "{}",
        report.summary()
    );
    if plan.pairs > 0 && plan.nodes >= 2 && plan.host_kills > 0 {
        assert!(
            report.kills_in_rooms_of(2) > 0,
            "no host kill in a two-member room: {}",
            report.summary()
        );
    }
    for (room, tally) in &report.rooms {
        assert!(tally.acked > 0, "#{room}: {}", report.summary());
        assert_eq!(
            (tally.lost, tally.dup, tally.reordered, tally.tampering),
            (0, 0, 0, 0),
            "#{room}: {}",
            report.summary()
        );
    }
    assert_eq!(
        (report.lost, report.dup, report.reordered, report.tampering),
        (0, 0, 0, 0),
        "{}",
        report.summary()
    );
}
