//! Own messages between sending and showing up in the log, keyed by the id
//! the client gave each one when it queued it.

use super::room::{LineKind, RoomState, RoomView};
use super::state::shown;
use crate::client::{ClientEvent, MAX_PENDING};

/// Own messages shown as pending, at most: the client's queue, plus as many
/// again acknowledged but held until the chat activates.
const MAX_SHOWN: usize = 2 * MAX_PENDING;
/// How many recent log lines are searched for a sequence number.
const SEQ_LOOKBACK: usize = 500;

/// A message this user sent that is not in the log yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The client's id for it, as in its `Queued`, `Ack` and `Refused`.
    pub id: String,
    /// When it was queued.
    pub at_ms: i64,
    /// Text, as the log will show it.
    pub text: String,
    /// Sequenced by the host but held until the chat activates.
    pub held_seq: Option<u64>,
}

impl RoomView {
    /// Applies an event about this user's own messages; false for other
    /// events.
    ///
    /// A message shows as pending from `Queued` on. `Refused` removes it;
    /// so does `Ack` while the chat is active (the message is in the log
    /// or on its way). While the chat is not active the host holds
    /// sequenced messages back, so the entry stays, marked held, until the
    /// message with its seq arrives or a reset wipes it.
    pub(super) fn apply_pending(&mut self, event: &ClientEvent, now_ms: i64) -> bool {
        match event {
            ClientEvent::Queued { id, text } => self.queued(id, text, now_ms),
            ClientEvent::Ack { id, seq } => self.acked(id, *seq),
            ClientEvent::Refused { id } => self.pending.retain(|p| p.id != *id),
            _ => return false,
        }
        true
    }

    fn queued(&mut self, id: &str, text: &str, now_ms: i64) {
        if self.pending.len() >= MAX_SHOWN {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending {
            id: id.to_string(),
            at_ms: now_ms,
            text: shown(text),
            held_seq: None,
        });
    }

    fn acked(&mut self, id: &str, seq: u64) {
        let Some(i) = self.pending.iter().position(|p| p.id == id) else {
            return; // a re-sent message acknowledged again, after it showed
        };
        if self.state == RoomState::Active || self.logged(seq) {
            self.pending.remove(i);
        } else if let Some(p) = self.pending.get_mut(i) {
            p.held_seq = Some(seq);
        }
    }

    /// Whether the message `seq` is among the recent lines of the log.
    fn logged(&self, seq: u64) -> bool {
        self.lines
            .iter()
            .rev()
            .take(SEQ_LOOKBACK)
            .any(|l| matches!(l.kind, LineKind::Chat { seq: s, .. } if s == seq))
    }

    /// A held message settles when the message with its seq arrives.
    pub(super) fn on_message(&mut self, seq: u64) {
        self.pending.retain(|p| p.held_seq != Some(seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::tui::test_support::message;

    fn queued(id: &str, text: &str) -> ClientEvent {
        ClientEvent::Queued {
            id: id.into(),
            text: text.into(),
        }
    }

    fn ack(id: &str, seq: u64) -> ClientEvent {
        ClientEvent::Ack { id: id.into(), seq }
    }

    fn pending_ids(s: &RoomView) -> Vec<&str> {
        s.pending.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn an_ack_settles_the_message_with_its_id() {
        let mut s = RoomView::default();
        s.apply(&ClientEvent::Activated);
        s.apply(&queued("a", "one"));
        s.apply(&queued("b", "two"));
        s.apply(&message(7, "me", "two"));
        s.apply(&ack("b", 7));
        assert_eq!(pending_ids(&s), ["a"]);
        s.apply(&ack("b", 7));
        assert_eq!(
            pending_ids(&s),
            ["a"],
            "a repeated ack settles nothing more"
        );
        s.apply(&ack("a", 8));
        assert!(s.pending.is_empty());
    }

    #[test]
    fn identical_texts_acked_out_of_order_settle_the_right_entries() {
        let mut s = RoomView::default();
        s.apply(&ClientEvent::Waiting {
            members: 1,
            min_users: 2,
        });
        s.apply(&queued("first", "same"));
        s.apply(&queued("second", "same"));
        s.apply(&ack("second", 5));
        s.apply(&ack("first", 6));
        let held: Vec<_> = s
            .pending
            .iter()
            .map(|p| (p.id.as_str(), p.held_seq))
            .collect();
        assert_eq!(held, [("first", Some(6)), ("second", Some(5))]);
        s.apply(&ClientEvent::Activated);
        s.apply(&message(5, "me", "same"));
        assert_eq!(pending_ids(&s), ["first"], "seq 5 was the second one");
    }

    #[test]
    fn a_refused_message_leaves_and_the_other_stays_pending() {
        let mut s = RoomView::default();
        s.apply(&ClientEvent::Activated);
        s.apply(&queued("first", "same"));
        s.apply(&queued("second", "same"));
        s.apply(&ClientEvent::error("message not signed by you"));
        s.apply(&ClientEvent::Refused { id: "first".into() });
        assert_eq!(pending_ids(&s), ["second"]);
        assert_eq!(s.pending[0].held_seq, None, "still sending");
        s.apply(&ack("second", 3));
        assert!(s.pending.is_empty());
    }

    #[test]
    fn held_messages_stay_until_delivered_or_reset() {
        let mut s = RoomView::default();
        s.apply(&ClientEvent::Waiting {
            members: 1,
            min_users: 3,
        });
        s.apply(&queued("a", "early"));
        s.apply(&queued("b", "later"));
        s.apply(&ack("a", 4));
        assert_eq!(s.pending[0].held_seq, Some(4));
        s.apply(&ClientEvent::Activated);
        s.apply(&message(4, "me", "early"));
        assert_eq!(pending_ids(&s), ["b"]);
        s.apply(&ClientEvent::Reset {
            by: "x".into(),
            min_users: 2,
        });
        s.apply(&queued("c", "held, then wiped"));
        s.apply(&ack("c", 6));
        s.apply(&ClientEvent::Reset {
            by: "x".into(),
            min_users: 2,
        });
        assert_eq!(
            pending_ids(&s),
            ["b"],
            "held messages go with the history; unacknowledged ones are re-sent, not wiped"
        );
        assert_eq!(s.state, RoomState::Waiting { min_users: 2 });
    }

    #[test]
    fn pending_lines_are_bounded() {
        let mut s = RoomView::default();
        for i in 0..MAX_SHOWN + 3 {
            s.apply(&queued(&i.to_string(), "x"));
        }
        assert_eq!(s.pending.len(), MAX_SHOWN);
        assert_eq!(s.pending[0].id, "3");
    }
}
