//! The full-screen interface end to end: a real `relay-svc` and two real
//! `chat-node --mode tui` processes, each in its own tmux terminal on a
//! private tmux server. Keys are typed with `send-keys`, screens are read
//! with `capture-pane`: a message typed in one terminal shows up in the
//! other, the status bar follows the host as it moves every 2 s, a room
//! joined with `/join` has its own transcript and unread count in the room
//! list, Ctrl-P and `/room` switch rooms, and `/quit` ends the program and
//! gives the terminal back (main screen, cooked mode, no mouse reporting).

use chat_tests::procs::{binary, RelayProcess};
use chat_tests::tmux::Tmux;

/// Terminal size of each session.
const COLS: u16 = 120;
const ROWS: u16 = 35;

/// `text` quoted for `/bin/sh`.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The status bar's `host: NAME (epoch E)`, if the screen shows one.
fn status_host(screen: &str) -> Option<(String, u64)> {
    let line = screen
        .lines()
        .find(|l| l.contains("host: ") && l.contains(" (epoch "))?;
    let (_, rest) = line.split_once("host: ")?;
    let (name, rest) = rest.split_once(" (epoch ")?;
    let (epoch, _) = rest.split_once(')')?;
    Some((name.to_string(), epoch.parse().ok()?))
}

/// The status bar line (the one naming the host), or "".
fn status_line(screen: &str) -> &str {
    screen
        .lines()
        .find(|l| l.contains("host: "))
        .unwrap_or_default()
}

/// Whether the status bar says the chat is active and connected to a host.
fn active_and_connected(screen: &str) -> bool {
    let status = status_line(screen);
    status.contains(" active") && status.contains(" connected") && status_host(screen).is_some()
}

/// Whether the status bar names `room` as the current room.
fn current_room(screen: &str, room: &str) -> bool {
    status_line(screen).starts_with(&format!(" #{room} │"))
}

/// The unread count the room list shows for `room` (0 if none), if it
/// lists the room: its row is `│#room      N│`.
fn unread(screen: &str, room: &str) -> Option<u32> {
    let row = screen
        .lines()
        .filter_map(|l| l.strip_prefix('│')?.split('│').next())
        .find(|cell| cell.split_whitespace().next() == Some(&format!("#{room}")))?;
    row.split_whitespace()
        .nth(1)
        .map_or(Some(0), |n| n.parse().ok())
}

/// Both join `#ops`; a message there shows on its screens only; Ctrl-P
/// goes back to `#lobby`, where the room list counts what arrives in
/// `#ops`; `/room #ops` shows it and clears the count.
async fn rooms_keep_their_own_transcripts(tmux: &Tmux) {
    for name in ["alice", "bob"] {
        tmux.type_line(name, "/join #ops");
    }
    for name in ["alice", "bob"] {
        tmux.wait_screen(name, "#ops current and active", |s| {
            current_room(s, "ops") && active_and_connected(s) && unread(s, "lobby") == Some(0)
        })
        .await;
    }
    tmux.type_line("alice", "only in ops");
    tmux.wait_screen("bob", "alice's message in #ops", |s| {
        s.contains("alice: only in ops")
    })
    .await;
    tmux.keys("bob", &["C-p"]);
    tmux.wait_screen("bob", "#lobby without the #ops message", |s| {
        current_room(s, "lobby") && !s.contains("only in ops") && s.contains("hi alice, bob here")
    })
    .await;
    tmux.type_line("alice", "unread in ops");
    tmux.wait_screen("bob", "one unread message in #ops", |s| {
        unread(s, "ops") == Some(1) && !s.contains("unread in ops")
    })
    .await;
    tmux.type_line("bob", "/room #ops");
    tmux.wait_screen("bob", "#ops with the message read", |s| {
        current_room(s, "ops") && s.contains("alice: unread in ops") && unread(s, "ops") == Some(0)
    })
    .await;
}

/// Waits until session `name`'s program ended, then checks it exited with
/// status 0 and left the terminal as it found it.
async fn assert_quit_cleanly(tmux: &Tmux, name: &str) {
    // The session's shell prints the exit status and the terminal modes
    // after chat-node ends, then ends too.
    tmux.wait_screen(name, "the program ended", |_| tmux.exited(name))
        .await;
    // tmux's "Pane is dead" line may scroll the first line into the history.
    let screen = tmux.history(name);
    assert!(
        screen.contains("chat-node exited: 0"),
        "{name}'s chat-node did not exit with status 0:\n{screen}"
    );
    assert_eq!(
        tmux.pane(name, "#{alternate_on}"),
        "0",
        "{name}'s terminal was left on the alternate screen"
    );
    assert_eq!(
        tmux.pane(
            name,
            "#{mouse_standard_flag}#{mouse_button_flag}#{mouse_any_flag}#{mouse_sgr_flag}"
        ),
        "0000",
        "{name}'s terminal still reports the mouse"
    );
    assert!(
        !screen.contains("host: "),
        "the interface is still on {name}'s main screen:\n{screen}"
    );
    // `stty -a` lists the line discipline flags: raw mode would show
    // `-icanon -echo`.
    let flags: Vec<&str> = screen
        .split(|c: char| c.is_whitespace() || c == ';')
        .collect();
    for flag in ["icanon", "echo", "isig"] {
        assert!(
            flags.contains(&flag),
            "{name}'s terminal was left without {flag} (still raw):\n{screen}"
        );
    }
}

/// Starts `chat-node --mode tui` for alice and bob, each in its own tmux
/// terminal and data directory (so tests running at once do not share
/// keys), and waits until both show the chat active (the relay activates
/// it at two members).
async fn alice_and_bob_in_tmux(label: &str, relay: &RelayProcess) -> Tmux {
    let node = binary("chat-node");
    let node = sh_quote(node.to_str().expect("UTF-8 binary path"));
    let log = std::env::var("CHAT_TEST_LOG").unwrap_or_else(|_| "error".into());
    let mut tmux = Tmux::new(label);
    for name in ["alice", "bob"] {
        let command = format!(
            "RUST_LOG={} {node} {} --name {name} --mode tui --listen 127.0.0.1:0 --data-dir .; \
             echo \"chat-node exited: $?\"; stty -a",
            sh_quote(&log),
            sh_quote(&relay.uri()),
        );
        tmux.start(name, &command, COLS, ROWS);
    }
    for name in ["alice", "bob"] {
        tmux.wait_screen(name, "an active chat with a host", active_and_connected)
            .await;
    }
    tmux
}

#[tokio::test]
async fn rooms_keep_their_own_transcripts_and_unread_counts() {
    if !Tmux::available_or_skip("the terminal interface test drives chat-node in tmux") {
        return;
    }
    let relay = RelayProcess::start(&["--min-users", "2"]).await;
    let tmux = alice_and_bob_in_tmux("tui-rooms", &relay).await;
    tmux.type_line("bob", "hi alice, bob here");
    tmux.wait_screen("alice", "bob's message", |s| {
        s.contains("bob: hi alice, bob here")
    })
    .await;
    rooms_keep_their_own_transcripts(&tmux).await;
    tmux.type_line("alice", "/quit");
    assert_quit_cleanly(&tmux, "alice").await;
    tmux.type_line("bob", "/quit");
    assert_quit_cleanly(&tmux, "bob").await;
    drop(tmux);
    drop(relay);
}

#[tokio::test]
async fn two_terminals_chat_watch_the_host_move_and_quit() {
    if !Tmux::available_or_skip("the terminal interface test drives chat-node in tmux") {
        return;
    }
    let relay = RelayProcess::start(&["--min-users", "2", "--migration-interval", "2s"]).await;
    let tmux = alice_and_bob_in_tmux("tui-e2e", &relay).await;

    // A message typed by alice shows up on bob's screen, and on alice's as
    // acknowledged (no longer "sending…"); and the other way round.
    tmux.type_line("alice", "hello bob, this is alice");
    tmux.wait_screen("bob", "alice's message", |s| {
        s.contains("alice: hello bob, this is alice")
    })
    .await;
    tmux.wait_screen("alice", "her message acknowledged", |s| {
        s.lines()
            .any(|l| l.contains("alice: hello bob, this is alice") && !l.contains("sending"))
    })
    .await;
    tmux.type_line("bob", "hi alice, bob here");
    tmux.wait_screen("alice", "bob's reply", |s| {
        s.contains("bob: hi alice, bob here")
    })
    .await;

    // The status bar follows the host: a later epoch, another member.
    let screen = tmux.screen("bob");
    let (first_host, first_epoch) =
        status_host(&screen).unwrap_or_else(|| panic!("bob's status bar names no host:\n{screen}"));
    let mut moved = None;
    tmux.wait_screen("bob", "the host move in the status bar", |s| {
        moved = status_host(s).filter(|(host, epoch)| *epoch > first_epoch && *host != first_host);
        moved.is_some()
    })
    .await;
    let (_, moved_epoch) = moved.expect("a moved host");
    tmux.wait_screen("alice", "the host move in the status bar", |s| {
        status_host(s).is_some_and(|(_, epoch)| epoch >= moved_epoch)
    })
    .await;

    // `/quit` leaves cleanly; the other member sees it go.
    tmux.type_line("alice", "/quit");
    assert_quit_cleanly(&tmux, "alice").await;
    tmux.wait_screen("bob", "alice leaving", |s| s.contains("alice left"))
        .await;
    tmux.type_line("bob", "/quit");
    assert_quit_cleanly(&tmux, "bob").await;
    drop(tmux);
    drop(relay);
}
