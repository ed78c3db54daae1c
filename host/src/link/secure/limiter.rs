//! Failed handshakes from one address, limited: after a few failures in a short time the
//! address is refused for a while, the while doubling with each further strike. A state
//! machine on a clock the caller passes in, so tests drive it without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;

/// How the limiter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failures within [`window_us`](Self::window_us) that block the address.
    pub max_failures: u32,
    /// The window failures are counted in, µs.
    pub window_us: u64,
    /// The first block, µs; it doubles with each strike.
    pub first_block_us: u64,
    /// The longest block, µs.
    pub max_block_us: u64,
    /// Addresses remembered at most (the oldest is forgotten first), so that a flood of
    /// addresses cannot grow memory without bound.
    pub max_addresses: usize,
}

impl Default for LimiterConfig {
    /// 3 failures in 60 s block for 10 s, then 20 s, 40 s, ... up to 10 min; 4,096 addresses.
    fn default() -> Self {
        LimiterConfig {
            max_failures: 3,
            window_us: 60_000_000,
            first_block_us: 10_000_000,
            max_block_us: 600_000_000,
            max_addresses: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    window_start_us: u64,
    failures: u32,
    strikes: u32,
    blocked_until_us: u64,
    last_us: u64,
}

/// Failures per address; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    config: LimiterConfig,
    records: HashMap<IpAddr, Record>,
}

impl RateLimiter {
    /// A limiter that has seen nothing.
    pub fn new(config: LimiterConfig) -> Self {
        RateLimiter {
            config,
            records: HashMap::new(),
        }
    }

    /// `Err(until_us)` while `addr` is blocked at `now_us`.
    pub fn check(&self, now_us: u64, addr: IpAddr) -> Result<(), u64> {
        match self.records.get(&addr) {
            Some(r) if now_us < r.blocked_until_us => Err(r.blocked_until_us),
            _ => Ok(()),
        }
    }

    /// A handshake from `addr` failed at `now_us`; returns the end of the block it caused,
    /// if it caused one.
    pub fn failure(&mut self, now_us: u64, addr: IpAddr) -> Option<u64> {
        if !self.records.contains_key(&addr) && self.records.len() >= self.config.max_addresses {
            self.forget_oldest();
        }
        let config = self.config;
        let r = self.records.entry(addr).or_insert(Record {
            window_start_us: now_us,
            failures: 0,
            strikes: 0,
            blocked_until_us: 0,
            last_us: now_us,
        });
        r.last_us = now_us;
        if now_us.saturating_sub(r.window_start_us) >= config.window_us {
            r.window_start_us = now_us;
            r.failures = 0;
        }
        r.failures += 1;
        if r.failures < config.max_failures {
            return None;
        }
        let block = config
            .first_block_us
            .saturating_mul(1u64 << r.strikes.min(20))
            .min(config.max_block_us);
        r.strikes = r.strikes.saturating_add(1);
        r.failures = 0;
        r.window_start_us = now_us;
        r.blocked_until_us = now_us.saturating_add(block);
        Some(r.blocked_until_us)
    }

    /// A handshake from `addr` succeeded: its record is cleared.
    pub fn success(&mut self, addr: IpAddr) {
        self.records.remove(&addr);
    }

    fn forget_oldest(&mut self) {
        let oldest = self
            .records
            .iter()
            .min_by_key(|(_, r)| r.last_us)
            .map(|(a, _)| *a);
        if let Some(addr) = oldest {
            self.records.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const S: u64 = 1_000_000;

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([192, 168, 1, last])
    }

    #[test]
    fn three_failures_block_and_each_strike_doubles_the_block() {
        let mut l = RateLimiter::new(LimiterConfig::default());
        let a = addr(7);
        assert_eq!(l.failure(0, a), None);
        assert_eq!(l.failure(S, a), None);
        assert!(l.check(2 * S, a).is_ok());
        assert_eq!(l.failure(2 * S, a), Some(12 * S));
        assert_eq!(l.check(11 * S, a), Err(12 * S));
        assert!(l.check(12 * S, a).is_ok(), "the block ends on time");
        assert!(
            l.check(3 * S, addr(8)).is_ok(),
            "another address is not blocked"
        );
        for t in [13, 14] {
            assert_eq!(l.failure(t * S, a), None);
        }
        assert_eq!(l.failure(15 * S, a), Some(35 * S), "20 s the second time");
        l.success(a);
        assert!(l.check(16 * S, a).is_ok(), "a success clears the record");
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_block() {
        let mut l = RateLimiter::new(LimiterConfig::default());
        let a = addr(7);
        for k in 0..10 {
            assert_eq!(l.failure(k * 40 * S, a), None, "failure {k}");
        }
    }

    #[test]
    fn blocks_stop_growing_at_the_maximum_and_memory_is_bounded() {
        let config = LimiterConfig {
            max_failures: 1,
            max_addresses: 4,
            ..LimiterConfig::default()
        };
        let mut l = RateLimiter::new(config);
        let a = addr(1);
        let mut now = 0;
        let mut last_block = 0;
        for _ in 0..12 {
            let until = l.failure(now, a).unwrap();
            last_block = until - now;
            now = until;
        }
        assert_eq!(last_block, config.max_block_us);
        for k in 2..100 {
            l.failure(now + u64::from(k), addr(k));
        }
        assert!(l.records.len() <= 4);
    }
}
