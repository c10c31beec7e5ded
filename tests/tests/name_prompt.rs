//! Without `--name`, in a terminal, chat-node asks for a name, and asks
//! again after an invalid or taken one: through the real binary in a
//! terminal, and through the same `chat_node::app::run` in-process.

use chat_node::app::{self, Terminal};
use chat_node::NodeConfig;
use chat_tests::procs::{binary, spawn_node, RelayProcess};
use chat_tests::tmux::Tmux;
use chat_tests::{join, temp_dir, Relay};
use clap::Parser;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

#[tokio::test]
async fn asks_for_a_name_until_a_valid_free_one_is_given() {
    if !Tmux::available_or_skip("the name prompt test types into chat-node in tmux") {
        return;
    }
    let relay = RelayProcess::start(&["--min-users", "1"]).await;
    let mut alice = spawn_node(&relay.uri(), "alice", &[]).await;
    alice.wait_event("host", &[]).await;
    let node = binary("chat-node");
    let command = format!(
        "{} {} --mode line --listen 127.0.0.1:0",
        node.display(),
        relay.uri()
    );
    let mut term = Tmux::new("prompt");
    term.start("node", &command, 100, 30);
    term.wait_screen("node", "the name prompt", |s| s.contains("your name:"))
        .await;
    term.type_line("node", "a:b");
    term.wait_screen("node", "the rule, and another prompt", |s| {
        s.contains("must not contain ':'") && s.matches("your name:").count() == 2
    })
    .await;
    term.type_line("node", "alice");
    term.wait_screen("node", "taken, and another prompt", |s| {
        s.contains("taken") && s.matches("your name:").count() == 3
    })
    .await;
    term.type_line("node", "bob");
    term.wait_screen("node", "bob in the chat", |s| s.contains("* bob joined"))
        .await;
    alice.wait_event("joined", &[("name", "bob")]).await;
    term.type_line("node", "$exit");
    term.wait_screen("node", "the node exits", |_| term.exited("node"))
        .await;
    alice.wait_event("left", &[("name", "bob")]).await;
}

#[tokio::test]
async fn the_app_refuses_a_taken_name_and_asks_again_in_process() {
    let relay = Relay::start(1, Duration::from_secs(3600)).await;
    let mut alice = join(&relay.uri(), "alice").await.expect("alice joins");
    alice.wait_event("host", &[]).await;
    let data_dir = temp_dir("name-prompt");
    let config = NodeConfig::try_parse_from([
        "chat-node",
        &relay.uri(),
        "--mode",
        "line",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir.to_string_lossy(),
    ])
    .expect("options");
    let (mut keyboard, input) = tokio::io::duplex(1024);
    let (output, mut screen) = tokio::io::duplex(1024);
    let terminal = Terminal {
        input: BufReader::new(input),
        output,
        interactive: true,
    };
    let app = tokio::spawn(app::run(config, terminal, std::future::pending()));
    let mut shown = String::new();
    read_until(&mut screen, &mut shown, "the name prompt", |s| {
        s.contains("your name:")
    })
    .await;
    keyboard.write_all(b"a:b\n").await.expect("type");
    read_until(
        &mut screen,
        &mut shown,
        "the rule, and another prompt",
        |s| s.contains("must not contain ':'") && s.matches("your name:").count() == 2,
    )
    .await;
    keyboard.write_all(b"alice\n").await.expect("type");
    read_until(&mut screen, &mut shown, "taken, and another prompt", |s| {
        s.contains("\"alice\" is taken") && s.matches("your name:").count() == 3
    })
    .await;
    keyboard.write_all(b"bob\n").await.expect("type");
    alice.wait_event("joined", &[("name", "bob")]).await;
    keyboard.write_all(b"$exit\n").await.expect("type");
    tokio::time::timeout(Duration::from_secs(20), app)
        .await
        .expect("the app returns after $exit")
        .expect("the app task")
        .expect("the app ends without error");
    alice.wait_event("left", &[("name", "bob")]).await;
}

/// Reads what the app writes to its terminal into `shown` until `done`
/// holds of it, or fails the test after a deadline.
async fn read_until(
    screen: &mut DuplexStream,
    shown: &mut String,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 256];
    while !done(shown) {
        let read = tokio::time::timeout_at(deadline, screen.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("waiting for {what}; the terminal shows {shown:?}"))
            .expect("read the terminal");
        assert!(
            read > 0,
            "the app closed its terminal before {what}: {shown:?}"
        );
        shown.push_str(&String::from_utf8_lossy(&buf[..read]));
    }
}
