//! Resets need the relay's certificate, which names the room, the member
//! who asked (with the admin secret) and the threshold: a hostile member
//! cannot make an honest host log a reset with a certificate that is not
//! its own, or use one twice.

use chat_proto::pb::chat::{client_frame, server_frame, Rejected, ResetRoom, RoomReset};
use chat_proto::pb::relay::{AuthorizeResetRequest, ResetCertificate};
use chat_proto::trust;
use chat_tests::hostile::*;
use chat_tests::Relay;
use std::time::Duration;

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
