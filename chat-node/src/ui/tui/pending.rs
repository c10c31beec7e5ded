//! Own messages between sending and showing up in the log.

use super::state::{shown, LineKind, RoomState, TuiState};
use crate::client::MAX_PENDING;
use std::collections::VecDeque;

/// How many recent log lines are searched for a sequence number.
const SEQ_LOOKBACK: usize = 500;

/// A message this user sent that is not in the log yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// When it was sent.
    pub at_ms: i64,
    /// Text.
    pub text: String,
    /// Sequenced by the host but held until the chat activates.
    pub held_seq: Option<u64>,
}

impl TuiState {
    /// Shows a message the user just sent as pending. Texts the client will
    /// refuse anyway (empty, too long, queue full) are not shown: the client
    /// reports those as errors and no acknowledgement follows.
    pub fn add_pending(&mut self, text: &str, at_ms: i64) {
        if chat_proto::rules::validate_text(text).is_ok() && self.pending.len() < MAX_PENDING {
            self.pending.push_back(Pending {
                at_ms,
                // Shown as the logged copy will be, so an Ack can match it.
                text: shown(text),
                held_seq: None,
            });
        }
    }

    // How pending messages end: the client reports `Ack { id, seq }` for own
    // messages, in the order it sent them, but not their text. So an Ack
    // settles the oldest pending message not yet acknowledged, unless the
    // message with that seq is already in the log, in which case the first
    // pending message with its text is settled (same text, same user). If the
    // chat is not active the host holds sequenced messages back, so the entry
    // stays, marked held, until the message with its seq arrives (or a reset
    // wipes it). Known limit: a message the host rejects has no Ack, so the
    // next Ack settles it instead of the newer one; both are then in flight.
    pub(super) fn on_ack(&mut self, id: &str, seq: u64) {
        if self.acked_ids.iter().any(|a| a == id) {
            return; // a re-sent message acknowledged again
        }
        bounded_push(&mut self.acked_ids, id.to_string(), 256);
        let logged = self
            .lines
            .iter()
            .rev()
            .take(SEQ_LOOKBACK)
            .find_map(|l| match &l.kind {
                LineKind::Chat { seq: s, from } if *s == seq => {
                    Some((from.clone(), l.text.clone()))
                }
                _ => None,
            });
        let unacked = |p: &Pending| p.held_seq.is_none();
        if let Some((from, text)) = logged {
            self.my_name = Some(from);
            let index = self
                .pending
                .iter()
                .position(|p| unacked(p) && p.text == text);
            if let Some(i) = index.or_else(|| self.pending.iter().position(unacked)) {
                self.pending.remove(i);
            }
            return;
        }
        bounded_push(&mut self.acked_seqs, seq, 256);
        if let Some(i) = self.pending.iter().position(unacked) {
            if self.room == RoomState::Active {
                self.pending.remove(i);
            } else if let Some(p) = self.pending.get_mut(i) {
                p.held_seq = Some(seq);
            }
        }
    }

    pub(super) fn on_message(&mut self, seq: u64, from: &str) {
        if self.acked_seqs.contains(&seq) {
            self.my_name = Some(shown(from));
        }
        self.pending.retain(|p| p.held_seq != Some(seq));
    }
}

fn bounded_push<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() >= max {
        queue.pop_front();
    }
    queue.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientEvent;
    use crate::ui::tui::test_support::message;

    #[test]
    fn ack_settles_pending_and_learns_the_name() {
        let mut s = TuiState::new();
        s.apply(&ClientEvent::Activated);
        s.add_pending("one", 0);
        s.add_pending("two", 0);
        s.apply(&message(7, "me", "two"));
        s.apply(&ClientEvent::Ack {
            id: "b".into(),
            seq: 7,
        });
        assert_eq!(
            s.pending
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>(),
            ["one"]
        );
        assert_eq!(s.my_name.as_deref(), Some("me"));
        s.apply(&ClientEvent::Ack {
            id: "b".into(),
            seq: 7,
        });
        assert_eq!(s.pending.len(), 1, "a repeated ack settles nothing more");
        s.apply(&ClientEvent::Ack {
            id: "a".into(),
            seq: 8,
        });
        assert!(s.pending.is_empty());
    }

    #[test]
    fn held_messages_stay_until_delivered_or_reset() {
        let mut s = TuiState::new();
        s.apply(&ClientEvent::Waiting {
            members: 1,
            min_users: 3,
        });
        s.add_pending("early", 0);
        s.add_pending("later", 0);
        s.apply(&ClientEvent::Ack {
            id: "a".into(),
            seq: 4,
        });
        assert_eq!(s.pending[0].held_seq, Some(4));
        s.apply(&ClientEvent::Activated);
        s.apply(&message(4, "me", "early"));
        assert_eq!(s.pending.len(), 1);
        assert_eq!(s.my_name.as_deref(), Some("me"));
        s.apply(&ClientEvent::Reset {
            by: "x".into(),
            min_users: 2,
        });
        assert_eq!(
            s.pending.len(),
            1,
            "unacknowledged messages are re-sent, not wiped"
        );
        assert_eq!(s.room, RoomState::Waiting { min_users: 2 });
    }
}
