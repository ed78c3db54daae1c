//! Estimating the edge clock's offset from a [`Ping`](crate::Ping)/[`Pong`] exchange, so that
//! capture timestamps on the edge clock can be placed on the host's.

use crate::message::Pong;

/// One round trip's estimate: `offset_us` is the responder's clock minus the sender's, taken
/// at the round trip's midpoint; its error is at most half of `rtt_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClockSample {
    /// Responder clock minus sender clock, in microseconds.
    pub offset_us: i64,
    /// Round-trip time on the sender's clock, in microseconds.
    pub rtt_us: u64,
}

impl ClockSample {
    /// The estimate from a `pong` that arrived at `now_us` on the sender's clock, or `None`
    /// if `now_us` is before the ping was sent (a confused or foreign pong).
    pub fn from_pong(pong: &Pong, now_us: u64) -> Option<Self> {
        let rtt_us = now_us.checked_sub(pong.ping_sent_us)?;
        let midpoint = i128::from(pong.ping_sent_us) + i128::from(rtt_us / 2);
        let offset = i128::from(pong.received_us) - midpoint;
        Some(ClockSample {
            offset_us: i64::try_from(offset).ok()?,
            rtt_us,
        })
    }

    /// A responder timestamp mapped onto the sender's clock (saturating at the ends).
    pub fn to_sender_clock(&self, responder_us: u64) -> u64 {
        let mapped = i128::from(responder_us) - i128::from(self.offset_us);
        mapped.clamp(0, i128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_from_symmetric_round_trip() {
        // Edge clock runs 5 s behind the host; 2 ms each way.
        let pong = Pong {
            id: 1,
            ping_sent_us: 10_000_000,
            received_us: 5_002_000,
        };
        let s = ClockSample::from_pong(&pong, 10_004_000).unwrap();
        assert_eq!(s.rtt_us, 4_000);
        assert_eq!(s.offset_us, -5_000_000);
        assert_eq!(s.to_sender_clock(5_002_000), 10_002_000);
        assert_eq!(ClockSample::from_pong(&pong, 9_000_000), None);
    }
}
