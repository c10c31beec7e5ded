//! Resets a host cannot fake. A reset wipes a room's history, and control
//! frames are not signed by the host, so a reset counts only with the
//! relay's certificate for it, which names the room, the member who asked
//! (with the admin secret) and the threshold. A hostile host serving a
//! forged, altered or replayed reset gets it refused by every member, as
//! an error naming the host; a hostile member cannot make an honest host
//! log a reset with a certificate that is not its own, or use one twice.

use chat_proto::chain::GENESIS;
use chat_proto::pb::chat::server_frame::{self, Frame};
use chat_proto::pb::chat::{client_frame, Rejected, ResetRoom, RoomReset};
use chat_proto::pb::relay::{
    AuthorizeResetRequest, HostRecord, RenewLeaseRequest, ResetCertificate, ResetGrant,
};
use chat_proto::trust;
use chat_tests::hostile::*;
use chat_tests::{join, Member, Relay};
use std::time::Duration;
use tokio::task::JoinHandle;

const NO_MIGRATION: Duration = Duration::from_secs(3600);
const SECRET: &str = relay_svc::config::TEST_ADMIN_SECRET;

/// Asks the relay, as the node `node_id` with `session_token`, for the
/// certificate of a reset of the lobby to `min_users`.
async fn reset_certificate(
    uri: &str,
    node_id: &str,
    session_token: &str,
    min_users: u32,
) -> ResetCertificate {
    relay_client(uri)
        .await
        .authorize_reset(AuthorizeResetRequest {
            admin_secret: SECRET.into(),
            room: trust::ROOM.into(),
            min_users,
            node_id: node_id.into(),
            session_token: session_token.into(),
        })
        .await
        .expect("a member with the admin secret gets a certificate")
        .into_inner()
        .certificate
        .expect("the answer carries the certificate")
}

// ---------------------------------------------------------------------------
// A hostile host: a modified node the relay made host (it registered
// first), playing each session frame by frame.
// ---------------------------------------------------------------------------

/// Keeps `host`'s lease of `record`'s term until aborted.
fn keep_lease(uri: &str, host: &Stranger, record: &HostRecord) -> JoinHandle<()> {
    let renewal = RenewLeaseRequest {
        epoch: record.epoch,
        node_id: host.reg.node_id.clone(),
        session_token: host.reg.session_token.clone(),
        ..Default::default()
    };
    let uri = uri.to_string();
    tokio::spawn(async move {
        let mut rc = relay_client(&uri).await;
        while rc.renew_lease(renewal.clone()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn room_reset(seq: u64, by: &str, min_users: u32, cert: Option<ResetCertificate>) -> RoomReset {
    RoomReset {
        seq,
        min_users,
        by: by.into(),
        epoch: 1,
        certificate: cert,
    }
}

/// Waits until `member` reports the host for reset `seq`, saying `why`.
async fn refused(member: &mut Member, seq: u64, why: &str) {
    let report = member
        .wait_event("tampering", &[("what", &format!("~served reset {seq} "))])
        .await;
    let what = report["what"].as_str().unwrap_or_default();
    assert!(
        what.contains("refused") && what.contains(why),
        "{}: reset {seq}: {report}",
        member.name
    );
    let host = report["host"].as_str().unwrap_or_default();
    assert!(
        host.starts_with("mallory at 127.0.0.1:"),
        "{}: the report names the host: {report}",
        member.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_refuse_a_forged_or_replayed_reset_and_name_the_host() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut host = ScriptedHost::start().await;
    let (mallory, record) = host.host_lobby(&uri, "mallory").await;
    let lease = keep_lease(&uri, &mallory, &record);
    let mut members = Vec::new();
    let mut sessions = Vec::new();
    for name in ["alice", "bob"] {
        let mut member = join(&uri, name).await.expect("an honest member joins");
        let session = host.session().await;
        assert_eq!(session.hello.name, name);
        session.send(host.welcome(record.epoch, 0, &GENESIS)).await;
        member.wait_event("host", &[("name", "mallory")]).await;
        members.push(member);
        sessions.push(session);
    }
    // Alice reset the room once, with the admin secret: the host holds
    // her genuine certificate.
    let me = members[0].shared().ctx.identity.clone();
    let genuine = reset_certificate(&uri, &me.node_id, &me.session_token, 2).await;
    let bob_node = members[1].shared().ctx.identity.node_id.clone();
    let forged = host.key.issue_reset(&ResetGrant {
        room: trust::ROOM.into(),
        min_users: 1,
        by: "bob".into(),
        by_node_id: bob_node,
        issued_at_unix_ms: trust::now_unix_ms(),
        nonce: trust::reset_nonce(),
    });
    let served = [
        // 1: bob's reset, with no certificate at all.
        room_reset(1, "bob", 1, None),
        // 2: bob's reset, certified by the host's own key.
        room_reset(2, "bob", 1, Some(forged)),
        // 3: alice's genuine reset, shown as bob's; 4: with a threshold of 1.
        room_reset(3, "bob", 2, Some(genuine.clone())),
        room_reset(4, "alice", 1, Some(genuine.clone())),
        // 5: alice's reset as it was: the one reset shown.
        room_reset(5, "alice", 2, Some(genuine.clone())),
        // 6: the same reset served again.
        room_reset(6, "alice", 2, Some(genuine)),
    ];
    for reset in served {
        for session in &sessions {
            session.send(Frame::Reset(reset.clone())).await;
        }
    }

    for m in members.iter_mut() {
        refused(m, 1, "malformed certificate").await;
        refused(m, 2, "bad signature").await;
        refused(m, 3, "does not match: member").await;
        refused(m, 4, "does not match: threshold").await;
        refused(m, 6, "used before").await;
        m.drain();
        let resets: Vec<_> = m.seen.iter().filter(|e| e["type"] == "reset").collect();
        assert_eq!(resets.len(), 1, "{}: {resets:?}", m.name);
        assert_eq!(
            (resets[0]["by"].as_str(), resets[0]["min_users"].as_u64()),
            (Some("alice"), Some(2)),
            "{}: {resets:?}",
            m.name
        );
        assert!(
            !m.has_seen("tampering", &[("what", "~served reset 5 ")]),
            "{}: the genuine reset was refused: {:?}",
            m.name,
            m.seen
        );
    }
    lease.abort();
}

// ---------------------------------------------------------------------------
// A hostile member against an honest host.
// ---------------------------------------------------------------------------

/// The next Rejected on `session`, skipping other frames; the RoomResets
/// skipped are returned too.
async fn next_rejection(session: &mut HostileSession) -> (Rejected, Vec<RoomReset>) {
    let mut resets = Vec::new();
    loop {
        match next_frame(&mut session.frames).await {
            Ok(Some(server_frame::Frame::Rejected(r))) => return (r, resets),
            Ok(Some(server_frame::Frame::Reset(r))) => resets.push(r),
            Ok(Some(_)) => {}
            other => panic!("expected a Rejected, got {other:?}"),
        }
    }
}

/// The next RoomReset on `session`, skipping other frames.
async fn next_reset(session: &mut HostileSession) -> RoomReset {
    loop {
        match next_frame(&mut session.frames).await {
            Ok(Some(server_frame::Frame::Reset(r))) => return r,
            Ok(Some(server_frame::Frame::Rejected(r))) => panic!("refused: {r:?}"),
            Ok(Some(_)) => {}
            other => panic!("expected a RoomReset, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_host_logs_a_reset_only_with_the_askers_unused_certificate() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob"]).await;
    let mallory = Stranger::register(&uri, "mallory").await;
    let host = current_host(&uri).await;
    assert_eq!(host.name, "alice");
    let mut session = HostileSession::open(&host.address).await;
    session
        .send(client_frame::Frame::Hello(
            mallory.hello(&session.challenge),
        ))
        .await;
    session.welcomed().await;
    let reset = |min_users, certificate| {
        client_frame::Frame::Reset(ResetRoom {
            min_users,
            certificate,
        })
    };
    let (node, token) = (&mallory.reg.node_id, &mallory.reg.session_token);

    // Mallory has the admin secret here: her certificate resets the room,
    // and the host logs it with the certificate for members to check.
    let own = reset_certificate(&uri, node, token, 2).await;
    session.send(reset(2, Some(own.clone()))).await;
    let logged = next_reset(&mut session).await;
    assert_eq!((logged.by.as_str(), logged.min_users), ("mallory", 2));
    assert_eq!(logged.certificate.as_ref(), Some(&own));
    for m in members.iter_mut() {
        m.wait_event("reset", &[("by", "mallory"), ("min_users", "2")])
            .await;
    }

    // The same certificate again; alice's certificate; one for another
    // threshold; none at all.
    let alice = members[0].shared().ctx.identity.clone();
    let alices = reset_certificate(&uri, &alice.node_id, &alice.session_token, 2).await;
    let for_three = reset_certificate(&uri, node, token, 3).await;
    let attempts = [
        (reset(2, Some(own)), "used before"),
        (reset(2, Some(alices)), "does not match: member"),
        (reset(2, Some(for_three)), "does not match: threshold"),
        (reset(2, None), "malformed certificate"),
    ];
    for (attempt, why) in attempts {
        session.send(attempt).await;
        let (rejected, resets) = next_rejection(&mut session).await;
        assert!(
            rejected.reason.starts_with("reset refused: ") && rejected.reason.contains(why),
            "{why}: {rejected:?}"
        );
        assert!(resets.is_empty(), "{why}: logged {resets:?}");
    }
    for m in members.iter_mut() {
        m.drain();
        let resets = m.seen.iter().filter(|e| e["type"] == "reset").count();
        assert_eq!(resets, 1, "{}: {:?}", m.name, m.seen);
    }
    drop(session);
    assert_chat_intact(&mut members).await;
}
