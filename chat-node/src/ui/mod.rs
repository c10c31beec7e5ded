//! User interfaces over a running node: line, json and full-screen.

pub mod bot;
pub mod line;
pub mod tui;

pub use line::{format_event, run_lines};
