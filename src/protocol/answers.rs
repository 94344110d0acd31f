//! Which client message a ParseComplete or CloseComplete answers.
//!
//! The server answers every Parse with a ParseComplete and every Close with a
//! CloseComplete, in order, until an error; after an error it skips everything up to
//! Sync, answering nothing. So within one cycle (the messages up to the ReadyForQuery
//! with a given number) the n-th answer is for the n-th message of its kind. Counting
//! every such message, inspected or not, keeps the positions right.
//!
//! Whoever must not act on a message until the server has taken it (a held statement
//! forgotten, a masked statement's name given to another) records it here with its
//! position, and learns which were answered and which were skipped.

use std::collections::VecDeque;

/// Positions of one kind of message (Parse, or Close) within their cycle.
#[derive(Debug, Default)]
pub struct Positions {
    /// (cycle, messages sent in it) for the newest cycle one was sent in.
    sent: (u64, u64),
    /// (cycle, answers seen in it).
    seen: (u64, u64),
}

impl Positions {
    /// A message goes upstream in `cycle`: its position there.
    pub fn sent(&mut self, cycle: u64) -> u64 {
        if self.sent.0 != cycle {
            self.sent = (cycle, 0);
        }
        self.sent.1 += 1;
        self.sent.1 - 1
    }

    /// An answer arrived in `cycle`: the position of the message it answers.
    pub fn seen(&mut self, cycle: u64) -> u64 {
        if self.seen.0 != cycle {
            self.seen = (cycle, 0);
        }
        self.seen.1 += 1;
        self.seen.1 - 1
    }
}

/// Things waiting for the answer to the message at (cycle, position).
#[derive(Debug)]
pub struct Waiting<T> {
    queue: VecDeque<(u64, u64, T)>,
    limit: usize,
}

impl<T> Default for Waiting<T> {
    fn default() -> Waiting<T> {
        Waiting::new(4096)
    }
}

impl<T> Waiting<T> {
    pub fn new(limit: usize) -> Waiting<T> {
        Waiting {
            queue: VecDeque::new(),
            limit,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// False (and `item` dropped) past the limit: the caller must then act as if
    /// the answer never came.
    pub fn wait(&mut self, cycle: u64, at: u64, item: T) -> bool {
        self.try_wait(cycle, at, item).is_ok()
    }

    /// Like [`Waiting::wait`], but hands `item` back past the limit.
    pub fn try_wait(&mut self, cycle: u64, at: u64, item: T) -> Result<(), T> {
        if self.queue.len() >= self.limit {
            return Err(item);
        }
        self.queue.push_back((cycle, at, item));
        Ok(())
    }

    /// The answer to (cycle, at) arrived: what waited for it, and what waited for
    /// earlier messages that the server therefore skipped.
    pub fn answered(&mut self, cycle: u64, at: u64, skipped: &mut Vec<T>) -> Option<T> {
        while let Some((c, i, _)) = self.queue.front() {
            if *c < cycle || (*c == cycle && *i < at) {
                if let Some((_, _, t)) = self.queue.pop_front() {
                    skipped.push(t);
                }
            } else {
                break;
            }
        }
        match self.queue.front() {
            Some((c, i, _)) if *c == cycle && *i == at => self.queue.pop_front().map(|e| e.2),
            _ => None,
        }
    }

    /// Cycle `seen` ended: whatever still waits for an answer in it was skipped.
    pub fn cycle_ended(&mut self, seen: u64, skipped: &mut Vec<T>) {
        while self.queue.front().is_some_and(|(c, _, _)| *c <= seen) {
            if let Some((_, _, t)) = self.queue.pop_front() {
                skipped.push(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_match_by_position_and_errors_skip_the_rest() {
        let mut p = Positions::default();
        let mut w = Waiting::new(10);
        // Cycle 1: three Parses; the second and third wait.
        assert_eq!(p.sent(1), 0);
        let b = p.sent(1);
        let c = p.sent(1);
        w.wait(1, b, "b");
        w.wait(1, c, "c");
        let mut skipped = Vec::new();
        assert_eq!(w.answered(1, p.seen(1), &mut skipped), None); // a's answer
        assert_eq!(w.answered(1, p.seen(1), &mut skipped), Some("b"));
        // ...then an error: c is never answered.
        w.cycle_ended(1, &mut skipped);
        assert_eq!(skipped, ["c"]);
        // Cycle 2: positions start again.
        assert_eq!(p.sent(2), 0);
        w.wait(2, 0, "d");
        skipped.clear();
        assert_eq!(w.answered(2, p.seen(2), &mut skipped), Some("d"));
        assert!(skipped.is_empty() && w.is_empty());
        assert!(!Waiting::new(0).wait(1, 0, ()), "past the limit");
    }
}
