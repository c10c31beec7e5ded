//! Programs in real pseudo-terminals: named sessions on a private tmux
//! server, driven with `send-keys` and read with `capture-pane`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How often a screen is read while waiting for it to change.
const POLL: Duration = Duration::from_millis(50);

/// A tmux server on a private socket, with a scratch directory the sessions
/// run in (a full-screen `chat-node` writes its `chat-node.log` there).
/// Dropping it kills the server and every program in it, also when the test
/// fails; the directory is kept then, for its logs.
pub struct Tmux {
    socket: String,
    /// Path of the server's socket, once it runs (tmux leaves it behind).
    socket_path: Option<PathBuf>,
    dir: PathBuf,
}

impl Tmux {
    /// Whether tmux can be run here.
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Whether a test that needs tmux can run: true if tmux is here; if
    /// not, fails in CI (where tmux is required) and otherwise prints that
    /// the test is skipped. `why` says what the test drives in tmux.
    pub fn available_or_skip(why: &str) -> bool {
        if Self::available() {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tmux is required in CI ({why})"
        );
        println!("skipped: tmux is not installed");
        false
    }

    /// A server for one test, `label` naming its socket and scratch
    /// directory. It starts with the first session.
    pub fn new(label: &str) -> Tmux {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let socket = format!("chat-test-{label}-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(&socket);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Tmux {
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

    /// Starts session `name` running `command` through `/bin/sh` in a
    /// `cols`x`rows` terminal, in its own subdirectory of the scratch
    /// directory. A pane whose program ended stays (dead) so its last
    /// screen and modes can still be read.
    pub fn start(&mut self, name: &str, command: &str, cols: u16, rows: u16) {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).expect("create the session directory");
        let dir = dir.to_str().expect("UTF-8 temporary directory");
        let (cols, rows) = (cols.to_string(), rows.to_string());
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
    pub fn type_line(&self, name: &str, text: &str) {
        self.tmux(&["send-keys", "-t", name, "-l", text]);
        self.tmux(&["send-keys", "-t", name, "Enter"]);
    }

    /// Presses keys in session `name`, in tmux's names (`C-p`, `M-Down`).
    pub fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// The visible screen of session `name`, as text.
    pub fn screen(&self, name: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-t", name])
    }

    /// Session `name`'s scrollback and screen, as text.
    pub fn history(&self, name: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-S", "-", "-t", name])
    }

    /// A tmux format (such as `#{alternate_on}`) expanded for session
    /// `name`'s pane.
    pub fn pane(&self, name: &str, format: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", name, format])
            .trim()
            .to_string()
    }

    /// Whether the program in session `name`'s pane has ended.
    pub fn exited(&self, name: &str) -> bool {
        self.pane(name, "#{pane_dead}") == "1"
    }

    /// Polls session `name`'s screen until `cond` holds; returns that screen.
    pub async fn wait_screen(
        &self,
        name: &str,
        what: &str,
        mut cond: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + crate::DEADLINE;
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

impl Drop for Tmux {
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
