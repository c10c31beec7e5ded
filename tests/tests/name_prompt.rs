//! Without `--name`, in a terminal, chat-node asks for a name, and asks
//! again after an invalid or taken one.

use chat_tests::procs::{binary, spawn_node, RelayProcess};
use chat_tests::tmux::Tmux;

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
