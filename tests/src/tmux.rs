//! A program in a real pseudo-terminal: a tmux session on a private socket,
//! driven with `send-keys` and read with `capture-pane`.

use std::process::Command;
use std::time::Duration;

/// One tmux session on its own server; killed on drop.
pub struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    /// Whether tmux can be run here.
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Starts `command` (a shell command line) in a `cols`x`rows` terminal.
    pub fn start(label: &str, command: &str, cols: u16, rows: u16) -> Tmux {
        let name = format!("chat-test-{label}-{}", std::process::id());
        let tmux = Tmux {
            socket: std::env::temp_dir().join(name),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            command,
        ]);
        tmux.run(&["set-option", "-g", "remain-on-exit", "on"]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally, then Enter.
    pub fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-l", text]);
        self.run(&["send-keys", "Enter"]);
    }

    /// The visible screen, as text.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    /// Whether the program in the pane has exited.
    pub fn exited(&self) -> bool {
        self.run(&["list-panes", "-F", "#{pane_dead}"]).trim() == "1"
    }

    /// Waits until the screen satisfies `cond`; returns the screen.
    pub async fn wait_screen(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + crate::DEADLINE;
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        let _ = std::fs::remove_file(&self.socket);
    }
}
