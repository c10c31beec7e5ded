//! Full-screen terminal interface.

use crate::client::{ClientEvent, UserCommand};
use tokio::sync::mpsc;

/// Runs the full-screen interface until the user quits.
pub async fn run_tui(
    commands: mpsc::Sender<UserCommand>,
    events: mpsc::Receiver<ClientEvent>,
) -> std::io::Result<()> {
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    super::run_lines(stdin, commands, events, false).await;
    Ok(())
}
