//! The relay's limits per member and overall, over the wire: new
//! identities per address, names that look like a member's, and rooms.
//! Strangers speak the protocol by hand; honest members are real nodes.

use chat_node::StartError;
use chat_proto::pb::relay::{JoinRoomRequest, RoomClaim};
use chat_proto::trust::Keypair;
use chat_tests::hostile::{lookup, relay_client, signed_register, NOWHERE};
use chat_tests::{eventually, join, Relay};
use relay_svc::RelayConfig;
use std::time::Duration;
use tonic::Code;

const NO_MIGRATION: Duration = Duration::from_secs(3600);

async fn relay_with(configure: impl FnOnce(&mut RelayConfig)) -> Relay {
    let mut config = RelayConfig::for_tests(2, NO_MIGRATION);
    configure(&mut config);
    Relay::start_with("127.0.0.1:0".parse().expect("addr"), config).await
}

#[tokio::test]
async fn new_identities_from_one_address_are_limited_but_known_keys_come_back() {
    let relay = relay_with(|c| c.new_identities_per_minute = 3).await;
    let uri = relay.uri();
    let mut rc = relay_client(&uri).await;
    // Two strangers and one real node: three new keys from 127.0.0.1.
    let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate()).collect();
    for (i, key) in keys.iter().take(2).enumerate() {
        rc.register(signed_register(key, &format!("s{i}"), NOWHERE))
            .await
            .expect("within the limit");
    }
    let _alice = join(&uri, "alice").await.expect("alice is the third");
    // A fourth new key is refused, and told when to try again...
    let refused = rc
        .register(signed_register(&keys[2], "s2", NOWHERE))
        .await
        .expect_err("a fourth new identity within the minute");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    let said = refused.message();
    assert!(said.contains("at most 3 a minute"), "{said}");
    assert!(said.contains("try again in 20 s"), "{said}");
    assert_eq!(
        lookup(&uri, "s2").await.map_err(|s| s.code()),
        Err(Code::NotFound)
    );
    // ...and so is a real node, which says why.
    match join(&uri, "bob").await {
        Err(StartError::Relay(status)) => {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
            assert!(status.message().contains("try again in"), "{status}");
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a fourth new identity was registered"),
    }
    // Keys the relay bound come back as often as they like (a relay
    // restart, a reconnect, a certificate renewal).
    for _ in 0..5 {
        rc.register(signed_register(&keys[0], "s0", NOWHERE))
            .await
            .expect("a known key registers again");
    }
}

#[tokio::test]
async fn names_that_look_like_a_members_are_refused() {
    let relay = relay_with(|_| {}).await;
    let uri = relay.uri();
    let original = join(&uri, "rust-a").await.expect("rust-a joins");
    let mut rc = relay_client(&uri).await;
    for look_alike in [
        "rust\u{2010}a", // hyphen
        "rust-\u{430}",  // Cyrillic a
        "rust\u{FF0D}a", // fullwidth hyphen-minus
    ] {
        let refused = rc
            .register(signed_register(&Keypair::generate(), look_alike, NOWHERE))
            .await
            .expect_err("a look-alike name");
        assert_eq!(refused.code(), Code::AlreadyExists, "{refused}");
        let said = refused.message();
        assert!(said.contains("looks like \"rust-a\""), "{said}");
        assert!(said.contains("(spelled rust"), "{said}");
        assert!(lookup(&uri, look_alike).await.is_err());
    }
    // A real node is asked for another name.
    match join(&uri, "rust\u{2010}a").await {
        Err(StartError::NameRefused(why)) => assert!(why.contains("looks like"), "{why}"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a look-alike name was registered"),
    }
    // A different name is fine; so is the name again for its own key.
    let _other = join(&uri, "rust-b").await.expect("rust-b joins");
    let key = Keypair::generate();
    rc.register(signed_register(&key, "carol", NOWHERE))
        .await
        .expect("carol registers");
    rc.register(signed_register(&key, "carol", NOWHERE))
        .await
        .expect("carol registers again");
    // Once rust-a has left, its look-alikes are free.
    original.leave().await;
    eventually("rust-a is gone", || async {
        lookup(&uri, "rust-a").await.is_err()
    })
    .await;
    rc.register(signed_register(
        &Keypair::generate(),
        "rust\u{2010}a",
        NOWHERE,
    ))
    .await
    .expect("the look-alike is free now");
}

#[tokio::test]
async fn rooms_beyond_the_relays_limits_are_refused() {
    let relay = relay_with(|c| {
        c.max_rooms = 3;
        c.max_rooms_per_member = 2;
    })
    .await;
    let uri = relay.uri();
    let mut rc = relay_client(&uri).await;
    let register = |name: &str| {
        let req = signed_register(&Keypair::generate(), name, NOWHERE);
        let mut rc = rc.clone();
        async move { rc.register(req).await.expect("registers").into_inner() }
    };
    // Each in the lobby: one room.
    let (a, b, c) = (
        register("a").await,
        register("b").await,
        register("c").await,
    );
    let join_room = |who: &chat_proto::pb::relay::RegisterResponse, room: &str| JoinRoomRequest {
        node_id: who.node_id.clone(),
        session_token: who.session_token.clone(),
        claim: Some(RoomClaim {
            room: room.into(),
            ..RoomClaim::default()
        }),
    };
    rc.join_room(join_room(&a, "red"))
        .await
        .expect("a's second room");
    let refused = rc.join_room(join_room(&a, "blue")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    assert!(refused.message().contains("at most 2 rooms"), "{refused}");
    rc.join_room(join_room(&b, "green"))
        .await
        .expect("the third room");
    let refused = rc.join_room(join_room(&c, "blue")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    assert!(
        refused.message().contains("as many rooms as it may (3)"),
        "{refused}"
    );
    rc.join_room(join_room(&c, "green"))
        .await
        .expect("a room that exists");
}
