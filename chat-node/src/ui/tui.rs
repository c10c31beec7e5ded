//! Full-screen terminal interface: a room list (left: each room this node
//! is in, its unread count, the current room highlighted), the current
//! room's scrolling message pane, an optional member pane (F2, right), a
//! status bar (current room, its activation, host, connection) and an input
//! line that incoming messages never overwrite. Each room has its own
//! messages, members, host and scroll position; private messages show in
//! the room that is current when they arrive.
//!
//! Keys: Enter sends; Left/Right/Home/End, Backspace/Delete, Ctrl-A/E/U/K/W
//! edit; Up/Down browse the history; Tab completes commands, member names
//! and `#rooms`; Ctrl-N/Ctrl-P (or Alt-Down/Alt-Up) go to the next/previous
//! room, Alt-1..Alt-9 to the room at that place in the list; `/room #NAME`
//! too; PageUp/PageDown and the mouse wheel scroll, Esc returns to the
//! bottom; F2 shows the members; Ctrl-L repaints; Ctrl-C, Ctrl-D on an empty
//! line, `$exit` and `/quit` leave.
//!
//! The state ([`TuiState`]) and the drawing ([`draw`]) are separate so the
//! view can be tested against ratatui's `TestBackend`.

pub mod editor;
pub mod input;
pub mod panes;
pub mod pending;
pub mod room;
pub mod state;
pub mod status;
pub mod text;
pub mod view;

#[cfg(test)]
mod rooms_tests;
#[cfg(test)]
mod test_support;

pub use input::Action;
pub use room::RoomView;
pub use state::TuiState;
pub use view::draw;

use crate::client::{RoomEvent, UserCommand};
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::Terminal;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::Duration;
use tokio::sync::mpsc;

/// Client events applied before one redraw, at most.
const EVENT_BATCH: usize = 256;

/// Whether this process has the terminal in raw mode on the alternate screen.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Runs the full-screen interface for the user `name` until the user
/// quits. The caller then shuts the node down; this does not send
/// [`UserCommand::Exit`].
pub async fn run_tui(
    name: &str,
    commands: mpsc::Sender<UserCommand>,
    events: mpsc::Receiver<RoomEvent>,
) -> io::Result<()> {
    let guard = TerminalGuard::take()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;
    let (term_tx, mut term_rx) = mpsc::channel(64);
    let reader = std::thread::Builder::new()
        .name("tui-input".into())
        .spawn(move || read_terminal(term_tx))?;
    let mut state = TuiState::new(name);
    let result = interact(&mut terminal, &mut state, &mut term_rx, &commands, events).await;
    // The reader notices the closed channel within one poll interval; wait
    // for it so it does not swallow keys meant for whatever runs next.
    drop(term_rx);
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    drop(terminal);
    drop(guard);
    result
}

/// Draws, then waits for a terminal event or client events, until the
/// user quits or the node stops.
async fn interact<B: Backend<Error = io::Error>>(
    terminal: &mut Terminal<B>,
    state: &mut TuiState,
    input: &mut mpsc::Receiver<io::Result<Event>>,
    commands: &mpsc::Sender<UserCommand>,
    mut events: mpsc::Receiver<RoomEvent>,
) -> io::Result<()> {
    loop {
        terminal.draw(|frame| draw(frame, state))?;
        let end = tokio::select! {
            input = input.recv() => on_input(input, state, commands, terminal).await,
            event = events.recv() => match event {
                Some(event) => {
                    apply_burst(state, &event, &mut events);
                    None
                }
                None => Some(Ok(())), // the node is shutting down
            },
        };
        if let Some(end) = end {
            return end;
        }
    }
}

/// Handles what the terminal reader sent; `Some` ends the interface.
async fn on_input<B: Backend<Error = io::Error>>(
    input: Option<io::Result<Event>>,
    state: &mut TuiState,
    commands: &mpsc::Sender<UserCommand>,
    terminal: &mut Terminal<B>,
) -> Option<io::Result<()>> {
    match input {
        Some(Ok(event)) => match state.handle_event(event) {
            Some(action) => perform(action, commands, terminal).await,
            None => None,
        },
        Some(Err(e)) => Some(Err(e)),
        None => Some(Err(io::Error::other("the terminal input reader stopped"))),
    }
}

/// Applies `first` and whatever else already arrived (up to
/// [`EVENT_BATCH`]), so a burst costs one redraw.
fn apply_burst(state: &mut TuiState, first: &RoomEvent, events: &mut mpsc::Receiver<RoomEvent>) {
    state.apply(first);
    for _ in 0..EVENT_BATCH {
        match events.try_recv() {
            Ok(event) => state.apply(&event),
            Err(_) => break,
        }
    }
}

/// Carries out an action; `Some` ends the interface with that result.
async fn perform<B: Backend<Error = io::Error>>(
    action: Action,
    commands: &mpsc::Sender<UserCommand>,
    terminal: &mut Terminal<B>,
) -> Option<io::Result<()>> {
    match action {
        Action::Quit => Some(Ok(())),
        // The client is gone: nothing is left to drive.
        Action::Send(cmd) => commands.send(cmd).await.is_err().then_some(Ok(())),
        Action::SendAll(cmds) => {
            for cmd in cmds {
                if commands.send(cmd).await.is_err() {
                    return Some(Ok(()));
                }
            }
            None
        }
        Action::Repaint => terminal.clear().err().map(Err),
    }
}

/// Forwards terminal events until the receiver is gone or reading fails.
fn read_terminal(tx: mpsc::Sender<io::Result<Event>>) {
    while !tx.is_closed() {
        match crossterm::event::poll(Duration::from_millis(100)) {
            Ok(false) => {}
            Ok(true) => {
                let event = crossterm::event::read();
                let failed = event.is_err();
                if tx.blocking_send(event).is_err() || failed {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

/// Raw mode, alternate screen and mouse capture, undone on drop (normal
/// return, error, or the future being dropped) and by the panic hook.
struct TerminalGuard;

impl TerminalGuard {
    fn take() -> io::Result<Self> {
        install_panic_hook();
        enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let guard = TerminalGuard;
        crossterm::execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Gives the terminal back, once, if this process took it.
fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        // Nothing more can be done if the terminal refuses.
        let _ = disable_raw_mode();
        let _ = crossterm::execute!(
            io::stdout(),
            DisableMouseCapture,
            LeaveAlternateScreen,
            crossterm::cursor::Show
        );
    }
}

/// Restores the terminal before the previous panic hook prints, so the
/// message is readable. Installed once per process.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}
