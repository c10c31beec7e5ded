//! The host's answers to a member's messages: each one's, and a flood's
//! counted as they come.

use super::next_frame;
use chat_proto::pb::chat::{server_frame, ServerFrame};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tonic::Streaming;

/// What the host answered to the flood.
#[derive(Debug, Default)]
pub struct FloodAnswers {
    pub acked: HashSet<String>,
    /// Refused with `retry_after_ms > 0`.
    pub throttled: HashSet<String>,
    /// Refused for another reason.
    pub refused: Vec<String>,
    /// How the session ended before every message was answered, if it did.
    pub ended: Option<String>,
}

impl FloodAnswers {
    pub fn answered(&self) -> usize {
        self.acked.len() + self.throttled.len() + self.refused.len()
    }
}

/// Counts the host's answers until `expected` messages have one or the
/// session ends.
pub async fn read_flood_answers(
    mut frames: Streaming<ServerFrame>,
    answers: Arc<Mutex<FloodAnswers>>,
    expected: usize,
) {
    loop {
        let frame = match frames.message().await {
            Ok(Some(frame)) => frame.frame,
            Ok(None) => {
                answers.lock().expect("answers").ended = Some("closed without a status".into());
                return;
            }
            Err(status) => {
                answers.lock().expect("answers").ended = Some(status.to_string());
                return;
            }
        };
        let mut answers = answers.lock().expect("answers");
        match frame {
            Some(server_frame::Frame::Ack(ack)) => {
                answers.acked.insert(ack.id);
            }
            Some(server_frame::Frame::Rejected(r)) if r.retry_after_ms > 0 => {
                answers.throttled.insert(r.id);
            }
            Some(server_frame::Frame::Rejected(r)) => answers.refused.push(r.reason),
            _ => {}
        }
        if answers.answered() >= expected {
            return;
        }
    }
}

/// How the host answered one message.
#[derive(Debug)]
pub enum Answer {
    /// Acknowledged.
    Acked,
    /// Refused as too fast (to be sent again later).
    Throttled,
    /// Refused for another reason.
    Refused(String),
}

/// The host's answer to message `id` on a session, skipping other frames.
pub async fn answer(frames: &mut Streaming<ServerFrame>, id: &str) -> Answer {
    loop {
        match next_frame(frames).await {
            Ok(Some(server_frame::Frame::Ack(ack))) if ack.id == id => return Answer::Acked,
            Ok(Some(server_frame::Frame::Rejected(r))) if r.id == id => {
                return match r.retry_after_ms {
                    0 => Answer::Refused(r.reason),
                    _ => Answer::Throttled,
                }
            }
            Ok(Some(_)) => {}
            other => panic!("expected the answer to {id}, got {other:?}"),
        }
    }
}
