//! The full-screen interface end to end: a real `relay-svc` and two real
//! `chat-node --mode tui` processes, each in its own tmux terminal on a
//! private tmux server. Keys are typed with `send-keys`, screens are read
//! with `capture-pane`: a message typed in one terminal shows up in the
//! other, the status bar follows the host as it moves every 2 s, and `/quit`
//! ends the program and gives the terminal back (main screen, cooked mode,
//! no mouse reporting).

use chat_tests::procs::{binary, RelayProcess};
use chat_tests::DEADLINE;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Terminal size of each session.
const COLS: u16 = 120;
const ROWS: u16 = 35;

/// How often a screen is read while waiting for it to change.
const POLL: Duration = Duration::from_millis(50);

/// A tmux server on a private socket, with a scratch directory the nodes run
/// in (their `chat-node.log` goes there). Dropping it kills the server and
/// every program in it, also when the test fails; the directory is kept
/// then, for its logs.
struct TmuxServer {
    socket: String,
    /// Path of the server's socket, once it runs (tmux leaves it behind).
    socket_path: Option<PathBuf>,
    dir: PathBuf,
}

impl TmuxServer {
    /// Whether tmux can be run here.
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn new() -> TmuxServer {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let socket = format!("chat-tui-e2e-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(&socket);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        TmuxServer {
            socket,
            socket_path: None,
            dir,
        }
    }

    /// Runs a tmux command on this server; panics if tmux refuses it.
    fn tmux(&self, args: &[&str]) -> String {
        // No user configuration: the server starts the same everywhere.
        let out = Command::new("tmux")
            .args(["-f", "/dev/null", "-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts session `name` running `command` through `/bin/sh`, in its own
    /// subdirectory of the scratch directory. A pane whose program ended
    /// stays (dead) so its last screen and modes can still be read.
    fn start(&mut self, name: &str, command: &str) {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).expect("create the session directory");
        let dir = dir.to_str().expect("UTF-8 temporary directory");
        let (cols, rows) = (COLS.to_string(), ROWS.to_string());
        self.tmux(&[
            "set-option",
            "-g",
            "remain-on-exit",
            "on",
            ";",
            "set-option",
            "-g",
            "default-shell",
            "/bin/sh",
            ";",
            "new-session",
            "-d",
            "-s",
            name,
            "-c",
            dir,
            "-x",
            &cols,
            "-y",
            &rows,
            command,
        ]);
        let path = self.tmux(&["display-message", "-p", "#{socket_path}"]);
        self.socket_path = Some(PathBuf::from(path.trim()));
    }

    /// Types `text` literally into session `name`, then Enter.
    fn type_line(&self, name: &str, text: &str) {
        self.tmux(&["send-keys", "-t", name, "-l", text]);
        self.tmux(&["send-keys", "-t", name, "Enter"]);
    }

    /// The visible screen of session `name`, as text.
    fn screen(&self, name: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-t", name])
    }

    /// Session `name`'s scrollback and screen, as text.
    fn history(&self, name: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-S", "-", "-t", name])
    }

    /// A tmux format (such as `#{pane_dead}`) expanded for session `name`'s pane.
    fn pane(&self, name: &str, format: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", name, format])
            .trim()
            .to_string()
    }

    /// Polls session `name`'s screen until `cond` holds; returns that screen.
    async fn wait_screen(
        &self,
        name: &str,
        what: &str,
        mut cond: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let screen = self.screen(name);
            if cond(&screen) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {name}'s screen to show {what}; it shows:\n{screen}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-f", "/dev/null", "-L", &self.socket, "kill-server"])
            .output();
        if let Some(path) = self.socket_path.take() {
            let _ = std::fs::remove_file(path);
        }
        if std::thread::panicking() {
            eprintln!("chat-node logs (if any) are in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

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

/// Waits until session `name`'s program ended, then checks it exited with
/// status 0 and left the terminal as it found it.
async fn assert_quit_cleanly(tmux: &TmuxServer, name: &str) {
    // The session's shell prints the exit status and the terminal modes
    // after chat-node ends, then ends too.
    tmux.wait_screen(name, "the program ended", |_| {
        tmux.pane(name, "#{pane_dead}") == "1"
    })
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

#[tokio::test]
async fn two_terminals_chat_watch_the_host_move_and_quit() {
    if !TmuxServer::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tmux is required in CI (the terminal interface test drives chat-node in tmux)"
        );
        println!("skipped: tmux is not installed");
        return;
    }
    let relay = RelayProcess::start(&["--min-users", "2", "--migration-interval", "2s"]).await;
    let node = binary("chat-node");
    let node = sh_quote(node.to_str().expect("UTF-8 binary path"));
    let log = std::env::var("CHAT_TEST_LOG").unwrap_or_else(|_| "error".into());
    let mut tmux = TmuxServer::new();
    for name in ["alice", "bob"] {
        let command = format!(
            "RUST_LOG={} {node} {} --name {name} --mode tui --listen 127.0.0.1:0; \
             echo \"chat-node exited: $?\"; stty -a",
            sh_quote(&log),
            sh_quote(&relay.uri()),
        );
        tmux.start(name, &command);
    }

    // Both see the chat activate once the second member is in.
    for name in ["alice", "bob"] {
        tmux.wait_screen(name, "an active chat with a host", active_and_connected)
            .await;
    }

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
