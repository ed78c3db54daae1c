//! Credit-based flow control, as both ends count it.
//!
//! Frame sequence numbers start at 0 in each session and grow by one per frame started. The
//! host grants credit as a bound: [`Credit::until_seq`] lets the edge start every frame whose
//! `seq` comes before it. Comparisons wrap (serial-number arithmetic over u32), so a session
//! may outlive the counter. Because a grant is a bound, not an increment, grants are
//! idempotent and a lost one is repaired by the next.

use crate::message::Credit;

/// Whether sequence number `a` comes before `b`, in wrapping order (they must be within 2^31
/// of each other).
pub const fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The edge's view of its credit: which frames it may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CreditWindow {
    until_seq: u32,
}

impl CreditWindow {
    /// The window a [`Welcome`](crate::Welcome) opens: frames `0 .. initial_credits`.
    pub const fn new(initial_credits: u32) -> Self {
        CreditWindow {
            until_seq: initial_credits,
        }
    }

    /// Applies a grant. A grant older than the current bound (a reordered or repeated
    /// packet) never shrinks the window.
    pub fn grant(&mut self, credit: Credit) {
        if seq_before(self.until_seq, credit.until_seq) {
            self.until_seq = credit.until_seq;
        }
    }

    /// The current bound.
    pub const fn until_seq(&self) -> u32 {
        self.until_seq
    }

    /// How many frames may still start, given the next frame's `seq`.
    pub const fn available(&self, next_seq: u32) -> u32 {
        if seq_before(next_seq, self.until_seq) {
            self.until_seq.wrapping_sub(next_seq)
        } else {
            0
        }
    }

    /// Whether the frame `next_seq` may start now.
    pub const fn may_start(&self, next_seq: u32) -> bool {
        self.available(next_seq) > 0
    }
}

/// The grant that lets the edge hold `room` frames in flight beyond `next_expected`, the
/// sequence number of the next frame the host has not yet taken into its pipeline.
pub const fn grant_for(next_expected: u32, room: u32) -> Credit {
    Credit {
        until_seq: next_expected.wrapping_add(room),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_never_goes_negative_or_backwards() {
        let mut w = CreditWindow::new(2);
        assert_eq!(w.available(0), 2);
        assert_eq!(w.available(2), 0);
        assert_eq!(w.available(5), 0);
        w.grant(Credit { until_seq: 4 });
        assert_eq!(w.available(2), 2);
        w.grant(Credit { until_seq: 3 });
        assert_eq!(w.until_seq(), 4);
        let mut near_wrap = CreditWindow::new(u32::MAX - 1);
        near_wrap.grant(grant_for(u32::MAX, 3));
        assert_eq!(near_wrap.available(u32::MAX), 3);
        assert_eq!(near_wrap.available(1), 1);
        assert!(!near_wrap.may_start(2));
    }
}
