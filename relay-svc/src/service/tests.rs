//! The service over a real registry, called through its trait methods.

use super::fanout::CHANGES_KEPT;
use super::rpc::WatchStream;
use super::watch::WATCH_QUEUE;
use super::*;
use chat_proto::pb::relay::relay_service_server::RelayService;
use chat_proto::pb::relay::*;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::{Code, Request, Status};

/// How long a test waits for a record before it fails.
const DEADLINE: Duration = Duration::from_secs(10);

fn relay() -> Relay {
    relay_with(crate::RelayConfig::for_tests(2, Duration::from_secs(30)))
}

fn relay_with(config: crate::RelayConfig) -> Relay {
    Relay(Shared::new(config, Keypair::generate(), None))
}

fn key_of(name: &str) -> Keypair {
    let mut secret = [9u8; 32];
    for (i, b) in name.bytes().enumerate().take(32) {
        secret[i] = b;
    }
    Keypair::from_secret(secret)
}

async fn register(relay: &Relay, name: &str, port: u16, rooms: &[&str]) -> RegisterResponse {
    let mut req = RegisterRequest {
        name: name.to_string(),
        address: format!("127.0.0.1:{port}"),
        rooms: rooms
            .iter()
            .map(|r| RoomClaim {
                room: r.to_string(),
                ..RoomClaim::default()
            })
            .collect(),
        ..RegisterRequest::default()
    };
    key_of(name).sign_register(&mut req);
    relay
        .register(Request::new(req))
        .await
        .unwrap()
        .into_inner()
}

async fn watch(relay: &Relay, node: &RegisterResponse) -> WatchStream {
    let req = WatchHostRequest {
        node_id: node.node_id.clone(),
        session_token: node.session_token.clone(),
    };
    relay
        .watch_host(Request::new(req))
        .await
        .unwrap()
        .into_inner()
}

async fn next(stream: &mut WatchStream) -> HostRecord {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("a record within the deadline")
        .expect("the stream is open")
        .expect("a record, not an error")
}

/// Every address reached, then a lease check (which makes first hosts).
fn settle(relay: &Relay) {
    relay.0.update(|r| {
        let now = Instant::now();
        for check in r.due_checks(now) {
            r.record_check(&check, true, now);
        }
        r.check_lease(now)
    });
}

#[tokio::test]
async fn a_watch_streams_only_the_rooms_of_its_node_and_rooms_it_joins() {
    let relay = relay();
    let alice = register(&relay, "alice", 1, &["red"]).await;
    let bob = register(&relay, "bob", 2, &["blue"]).await;
    let mut alice_watch = watch(&relay, &alice).await;
    let _bob_watch = watch(&relay, &bob).await;
    settle(&relay);
    let red = next(&mut alice_watch).await;
    assert_eq!((red.room.as_str(), red.name.as_str()), ("red", "alice"));
    // alice joins blue: the answer is blue's record...
    let join = JoinRoomRequest {
        node_id: alice.node_id.clone(),
        session_token: alice.session_token.clone(),
        claim: Some(RoomClaim {
            room: "blue".into(),
            ..RoomClaim::default()
        }),
    };
    let joined = relay.join_room(Request::new(join)).await.unwrap();
    let blue = joined.into_inner().host.expect("blue has a host");
    assert_eq!(blue.name, "bob");
    // ...her watch, open since before, gets blue's current record at
    // once, and blue's changes from now on.
    assert_eq!(next(&mut alice_watch).await, blue);
    let migrate = ReportMigrationRequest {
        from_epoch: blue.epoch,
        to_node_id: alice.node_id.clone(),
        node_id: bob.node_id.clone(),
        session_token: bob.session_token.clone(),
        room: "blue".into(),
    };
    relay.report_migration(Request::new(migrate)).await.unwrap();
    let moved = next(&mut alice_watch).await;
    assert_eq!(
        (moved.room.as_str(), moved.name.as_str()),
        ("blue", "alice")
    );
    assert!(moved.epoch > blue.epoch);
    // A new watch starts with the records of every room she is in.
    let mut again = watch(&relay, &alice).await;
    let mut rooms = vec![next(&mut again).await.room, next(&mut again).await.room];
    rooms.sort();
    assert_eq!(rooms, ["blue", "red"]);
}

#[tokio::test]
async fn rooms_over_the_service() {
    let relay = relay();
    let alice = register(&relay, "alice", 1, &[]).await;
    assert!(alice.host.is_none() && alice.hosts.is_empty());
    let _watch = watch(&relay, &alice).await;
    settle(&relay);
    // No rooms claimed: the lobby. Registering again with rooms replaces
    // them; the answer names the first room's host and every host.
    let again = register(&relay, "alice", 1, &["lobby", "red"]).await;
    assert_eq!(again.host.as_ref().map(|h| h.room.as_str()), Some("lobby"));
    assert_eq!(again.hosts.len(), 1, "red has no host yet");
    settle(&relay);
    let list = ListRoomsRequest::default();
    let listed = relay
        .list_rooms(Request::new(list))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!((names, listed.more), (vec!["lobby", "red"], false));
    let ask = |room: &str| CurrentHostRequest { room: room.into() };
    let red = relay.current_host(Request::new(ask("red"))).await.unwrap();
    assert_eq!(red.into_inner().name, "alice");
    let lobby = relay.current_host(Request::new(ask(""))).await.unwrap();
    assert_eq!(lobby.into_inner().room, "lobby");
    let unknown = relay.current_host(Request::new(ask("blue"))).await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
    let renew = RenewLeaseRequest {
        epoch: 1,
        node_id: alice.node_id.clone(),
        session_token: again.session_token.clone(),
        room: String::new(),
        activated: true,
        ..RenewLeaseRequest::default()
    };
    let lease = relay.renew_lease(Request::new(renew)).await.unwrap();
    assert!(
        lease.into_inner().rooms_hosted.is_empty(),
        "alone in the lobby"
    );
    let leave = LeaveRoomRequest {
        node_id: alice.node_id.clone(),
        session_token: again.session_token.clone(),
        room: "red".into(),
    };
    relay.leave_room(Request::new(leave)).await.unwrap();
    let gone = relay.current_host(Request::new(ask("red"))).await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_watcher_that_falls_behind_still_gets_the_latest_record() {
    let relay = relay();
    let alice = register(&relay, "alice", 1, &["red"]).await;
    let bob = register(&relay, "bob", 2, &["red"]).await;
    let mut alice_watch = watch(&relay, &alice).await;
    let _bob_watch = watch(&relay, &bob).await;
    settle(&relay);
    // More changes than the broadcast keeps, while alice reads nothing.
    let mut host = relay.0.registry().current_host("red").unwrap();
    let nodes = [&alice, &bob];
    for _ in 0..CHANGES_KEPT + WATCH_QUEUE * 2 {
        let from = nodes.iter().find(|n| n.node_id == host.node_id).unwrap();
        let to = nodes.iter().find(|n| n.node_id != host.node_id).unwrap();
        let migrate = ReportMigrationRequest {
            from_epoch: host.epoch,
            to_node_id: to.node_id.clone(),
            node_id: from.node_id.clone(),
            session_token: from.session_token.clone(),
            room: "red".into(),
        };
        host = relay
            .report_migration(Request::new(migrate))
            .await
            .unwrap()
            .into_inner();
    }
    let mut seen = 0;
    while next(&mut alice_watch).await.epoch != host.epoch {
        seen += 1;
        assert!(seen <= CHANGES_KEPT * 2, "the latest record never came");
    }
}

/// A JoinRoom from `node` with `token`, claiming `room` with `term`.
fn join_request(
    node: &RegisterResponse,
    token: &str,
    room: &str,
    term: Option<HostTermCertificate>,
    hosting: bool,
) -> Request<JoinRoomRequest> {
    Request::new(JoinRoomRequest {
        node_id: node.node_id.clone(),
        session_token: token.to_string(),
        claim: Some(RoomClaim {
            room: room.into(),
            latest_term: term,
            hosting,
            ..RoomClaim::default()
        }),
    })
}

#[tokio::test]
async fn strangers_are_refused_by_the_room_calls_and_change_nothing() {
    let relay = relay();
    let alice = register(&relay, "alice", 1, &["red"]).await;
    let bob = register(&relay, "bob", 2, &["blue"]).await;
    let _alice_watch = watch(&relay, &alice).await;
    let _bob_watch = watch(&relay, &bob).await;
    settle(&relay);
    let red = relay.0.registry().current_host("red").unwrap();
    let code = |r: Result<tonic::Response<JoinRoomResponse>, Status>| r.unwrap_err().code();
    // Without bob's token.
    let guessed = format!("{}.guess", bob.node_id);
    let join = join_request(&bob, &guessed, "red", None, false);
    assert_eq!(code(relay.join_room(join).await), Code::PermissionDenied);
    // Claiming to host red with alice's real term.
    let join = join_request(
        &bob,
        &bob.session_token,
        "red",
        red.certificate.clone(),
        true,
    );
    assert_eq!(code(relay.join_room(join).await), Code::PermissionDenied);
    // A term the relay never signed.
    let forged = Keypair::generate().issue_host_term(&HostTerm {
        room: "red".into(),
        epoch: red.epoch + 100,
        node_id: bob.node_id.clone(),
        ..HostTerm::default()
    });
    let join = join_request(&bob, &bob.session_token, "red", Some(forged), true);
    assert_eq!(code(relay.join_room(join).await), Code::PermissionDenied);
    // A room name that breaks the rules.
    let join = join_request(&bob, &bob.session_token, "a room", None, false);
    assert_eq!(code(relay.join_room(join).await), Code::InvalidArgument);
    // Leaving alice's room without her token.
    let leave = LeaveRoomRequest {
        node_id: alice.node_id.clone(),
        session_token: guessed,
        room: "red".into(),
    };
    let refused = relay.leave_room(Request::new(leave)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // Nothing changed: red is alice's alone, at the same term.
    assert_eq!(relay.0.registry().current_host("red").unwrap(), red);
    let list = ListRoomsRequest {
        after: String::new(),
        limit: 0,
    };
    let rooms = relay.list_rooms(Request::new(list)).await.unwrap();
    let red_info = rooms
        .into_inner()
        .rooms
        .into_iter()
        .find(|r| r.name == "red");
    assert_eq!(red_info.map(|r| r.members), Some(vec!["alice".to_string()]));
}

#[tokio::test]
async fn a_reset_certificate_goes_only_to_a_member_of_the_room_with_the_secret() {
    let relay = relay();
    let alice = register(&relay, "alice", 1, &["red"]).await;
    let bob = register(&relay, "bob", 2, &["blue"]).await;
    let ask = |node: &RegisterResponse, token: &str, room: &str, min_users, secret: &str| {
        Request::new(AuthorizeResetRequest {
            admin_secret: secret.to_string(),
            room: room.to_string(),
            min_users,
            node_id: node.node_id.clone(),
            session_token: token.to_string(),
        })
    };
    let secret = crate::config::TEST_ADMIN_SECRET;
    let answer = relay
        .authorize_reset(ask(&alice, &alice.session_token, "red", 3, secret))
        .await
        .expect("alice, in red, with the secret")
        .into_inner();
    let certificate = answer.certificate.expect("a certificate");
    let grant = relay.0.relay_key.verify_reset(&certificate).unwrap();
    assert_eq!(
        (grant.room.as_str(), grant.min_users, grant.by.as_str()),
        ("red", 3, "alice")
    );
    assert_eq!(grant.by_node_id, alice.node_id);
    chat_proto::trust::check_fresh(grant.issued_at_unix_ms, chat_proto::trust::now_unix_ms())
        .unwrap();

    let code = |r: Result<tonic::Response<AuthorizeResetResponse>, Status>| r.unwrap_err().code();
    // Bob is not in red; a guessed token; a zero threshold.
    let not_in = ask(&bob, &bob.session_token, "red", 3, secret);
    assert_eq!(code(relay.authorize_reset(not_in).await), Code::NotFound);
    let guessed = format!("{}.guess", alice.node_id);
    let bad_token = ask(&alice, &guessed, "red", 3, secret);
    assert_eq!(
        code(relay.authorize_reset(bad_token).await),
        Code::PermissionDenied
    );
    let zero = ask(&alice, &alice.session_token, "red", 0, secret);
    assert_eq!(
        code(relay.authorize_reset(zero).await),
        Code::InvalidArgument
    );
    // Wrong secrets count against the limit only once the caller is known.
    for _ in 0..10 {
        let stranger = ask(&bob, &guessed, "blue", 1, "guess");
        assert_eq!(
            code(relay.authorize_reset(stranger).await),
            Code::PermissionDenied
        );
    }
    let right = ask(&bob, &bob.session_token, "blue", 1, secret);
    assert!(relay.authorize_reset(right).await.is_ok(), "not locked out");
    for _ in 0..crate::admin::MAX_FAILURES {
        let wrong = ask(&bob, &bob.session_token, "blue", 1, "guess");
        assert_eq!(
            code(relay.authorize_reset(wrong).await),
            Code::PermissionDenied
        );
    }
    let locked = ask(&alice, &alice.session_token, "red", 3, secret);
    assert_eq!(
        code(relay.authorize_reset(locked).await),
        Code::ResourceExhausted
    );
}

#[tokio::test]
async fn refusals_quote_only_the_start_of_huge_input() {
    let relay = relay();
    let alice = register(&relay, "alice", 1, &["red"]).await;
    let _watch = watch(&relay, &alice).await;
    settle(&relay);
    let red = relay.0.registry().current_host("red").unwrap();
    let huge = "x".repeat(1 << 20);
    let short = |status: &Status| {
        assert!(
            status.message().len() < 300,
            "{} bytes",
            status.message().len()
        );
        assert!(
            status.message().contains("(1048512 more bytes)"),
            "{status}"
        );
    };
    // A room name of 1 MiB.
    let join = join_request(&alice, &alice.session_token, &huge, None, false);
    let refused = relay.join_room(join).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    short(&refused);
    // A member name of 1 MiB looked up.
    let lookup = LookupMemberRequest { name: huge.clone() };
    let refused = relay.lookup_member(Request::new(lookup)).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    short(&refused);
    // A node id of 1 MiB as the migration target.
    let migrate = ReportMigrationRequest {
        from_epoch: red.epoch,
        to_node_id: huge.clone(),
        node_id: alice.node_id.clone(),
        session_token: alice.session_token.clone(),
        room: "red".into(),
    };
    let refused = relay.report_migration(Request::new(migrate)).await;
    let refused = refused.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    short(&refused);
    // A foreign term claimed for a room of 1 MiB.
    let forged = Keypair::generate().issue_host_term(&HostTerm::default());
    let join = join_request(&alice, &alice.session_token, &huge, Some(forged), false);
    let refused = relay.join_room(join).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    short(&refused);
}

#[tokio::test]
async fn room_limits_come_from_the_configuration() {
    let mut config = crate::RelayConfig::for_tests(2, Duration::from_secs(30));
    config.max_rooms = 4;
    config.max_rooms_per_member = 2;
    let relay = relay_with(config);
    let alice = register(&relay, "alice", 1, &["a1", "a2"]).await;
    let bob = register(&relay, "bob", 2, &["b1"]).await;
    // alice is in as many rooms as a member may be.
    let join = join_request(&alice, &alice.session_token, "a3", None, false);
    let refused = relay.join_room(join).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("at most 2 rooms"), "{refused}");
    // bob's second room is the relay's fourth; a fifth is refused.
    let join = join_request(&bob, &bob.session_token, "b2", None, false);
    relay.join_room(join).await.unwrap();
    let carol = register(&relay, "carol", 3, &["a1"]).await;
    let join = join_request(&carol, &carol.session_token, "c1", None, false);
    let refused = relay.join_room(join).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("as many rooms as it may (4)"),
        "{refused}"
    );
    let join = join_request(&carol, &carol.session_token, "b1", None, false);
    relay.join_room(join).await.unwrap();
}

/// A registration of `name` under `key`, as if sent from `ip`.
fn register_from(key: &Keypair, name: &str, ip: [u8; 4]) -> Request<RegisterRequest> {
    let mut req = RegisterRequest {
        name: name.to_string(),
        address: "127.0.0.1:9".into(),
        ..RegisterRequest::default()
    };
    key.sign_register(&mut req);
    let mut request = Request::new(req);
    let remote = std::net::SocketAddr::from((ip, 40_000));
    request
        .extensions_mut()
        .insert(tonic::transport::server::TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(remote),
        });
    request
}

#[tokio::test]
async fn new_identities_per_address_are_limited_but_known_keys_come_back() {
    let mut config = crate::RelayConfig::for_tests(2, Duration::from_secs(30));
    config.new_identities_per_minute = 2;
    let relay = relay_with(config);
    let home = [203, 0, 113, 7];
    let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate()).collect();
    relay
        .register(register_from(&keys[0], "n0", home))
        .await
        .unwrap();
    relay
        .register(register_from(&keys[1], "n1", home))
        .await
        .unwrap();
    let refused = relay
        .register(register_from(&keys[2], "n2", home))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let message = refused.message();
    assert!(message.contains("at most 2 a minute"), "{message}");
    assert!(message.contains("try again in 30 s"), "{message}");
    assert!(relay.0.registry().lookup("n2").is_none());
    // Keys the relay bound register again as often as they like.
    for _ in 0..5 {
        relay
            .register(register_from(&keys[0], "n0", home))
            .await
            .unwrap();
    }
    // Also once the relay forgot the member (its watch closed long ago).
    relay
        .0
        .update(|r| r.reap(Instant::now() + Duration::from_secs(3600), Duration::ZERO));
    assert!(relay.0.registry().lookup("n1").is_none());
    relay
        .register(register_from(&keys[1], "n1", home))
        .await
        .unwrap();
    // Another address has its own minute.
    relay
        .register(register_from(&keys[2], "n2", [198, 51, 100, 1]))
        .await
        .unwrap();
    // A registration refused for another reason costs nothing.
    let elsewhere = [192, 0, 2, 1];
    let taken = relay
        .register(register_from(&keys[3], "n2", elsewhere))
        .await;
    assert_eq!(taken.unwrap_err().code(), Code::AlreadyExists);
    for (i, name) in ["x1", "x2"].into_iter().enumerate() {
        let key = Keypair::generate();
        let ok = relay.register(register_from(&key, name, elsewhere)).await;
        assert!(ok.is_ok(), "new identity {i}: {ok:?}");
    }
}
