//! When to pet systemd's watchdog: a state machine without I/O or a clock (the caller passes
//! `now`, any monotonic time since a fixed start).
//!
//! # What counts as progress
//! The watchdog is there to restart a pipeline that hangs (an engine that never returns, an
//! output stage stuck on a dead disk), not one that waits for the scanner. So progress is
//! either of:
//! - a frame completed since the last look (the processed counter moved), or
//! - nothing is waiting: every frame received was processed, dropped or failed.
//!
//! A live link whose edge sends nothing (scanner off, cable out, between patients) therefore
//! keeps the watchdog fed: restarting would not bring frames back, and a unit that restarts
//! every `WatchdogSec` all night would hit systemd's start limit and stay down once the frames
//! come. What stops the pets is frames waiting while none completes for longer than the
//! limit (systemd's `WatchdogSec`). The pets come from the output stage's status tick, so a
//! stage stuck so hard that the tick stops also stops them.

use std::time::Duration;

/// The counters one look needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Frames processed so far (never goes down).
    pub processed: u64,
    /// Frames received and not yet processed, dropped or failed.
    pub waiting: u64,
}

/// What to do after one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to send now.
    Wait,
    /// Send `WATCHDOG=1` (and a status) now.
    Pet,
    /// Frames have been waiting with none completed for `since`: pets stop until one does.
    /// Given once per stall.
    Stalled {
        /// Frames waiting at this look.
        waiting: u64,
        /// How long nothing has completed.
        since: Duration,
    },
    /// A frame completed after a stall: send `WATCHDOG=1` again now.
    Resumed,
}

/// The watchdog's state: pets at half the limit while there is progress, as systemd asks of
/// `WATCHDOG_USEC`, and none once frames have waited longer than the limit.
#[derive(Debug, Clone)]
pub struct Watchdog {
    limit: Duration,
    last_pet: Option<Duration>,
    progress_at: Duration,
    processed: u64,
    stalled: bool,
}

impl Watchdog {
    /// A watchdog with `limit` (systemd's `WATCHDOG_USEC`), started at `now`: the time before
    /// the first look counts as progress, so a pipeline gets one whole `limit` to start.
    pub fn new(limit: Duration, now: Duration) -> Self {
        Watchdog {
            limit,
            last_pet: None,
            progress_at: now,
            processed: 0,
            stalled: false,
        }
    }

    /// The limit it was made with.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// One look at the counters at `now` (not earlier than the last look).
    pub fn observe(&mut self, now: Duration, progress: Progress) -> Verdict {
        if progress.processed != self.processed || progress.waiting == 0 {
            self.processed = progress.processed;
            self.progress_at = now;
        }
        let since = now.saturating_sub(self.progress_at);
        if since > self.limit {
            if self.stalled {
                return Verdict::Wait;
            }
            self.stalled = true;
            return Verdict::Stalled {
                waiting: progress.waiting,
                since,
            };
        }
        if self.stalled {
            self.stalled = false;
            self.last_pet = Some(now);
            return Verdict::Resumed;
        }
        let due = self
            .last_pet
            .is_none_or(|last| now.saturating_sub(last) >= self.limit / 2);
        if due {
            self.last_pet = Some(now);
            Verdict::Pet
        } else {
            Verdict::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn at(processed: u64, waiting: u64) -> Progress {
        Progress { processed, waiting }
    }

    /// Looks every half second (the output stage's tick) from `from` to `to`, with `progress`
    /// at each; returns the verdicts other than `Wait`, with their times.
    fn drive(
        w: &mut Watchdog,
        from: f64,
        to: f64,
        mut progress: impl FnMut(f64) -> Progress,
    ) -> Vec<(f64, Verdict)> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= to + 1e-9 {
            let v = w.observe(s(t), progress(t));
            if v != Verdict::Wait {
                out.push((t, v));
            }
            t += 0.5;
        }
        out
    }

    #[test]
    fn frames_completing_are_petted_at_half_the_limit() {
        let mut w = Watchdog::new(s(10.0), s(0.0));
        // 30 frames/s, one in flight at every look.
        let got = drive(&mut w, 0.5, 20.0, |t| at((t * 30.0) as u64, 1));
        let times: Vec<f64> = got.iter().map(|(t, _)| *t).collect();
        assert!(got.iter().all(|(_, v)| *v == Verdict::Pet), "{got:?}");
        assert_eq!(times, vec![0.5, 5.5, 10.5, 15.5]);
    }

    #[test]
    fn an_idle_source_keeps_the_watchdog_fed() {
        // Nothing received, nothing waiting, for a whole night's worth of looks.
        let mut w = Watchdog::new(s(10.0), s(0.0));
        let got = drive(&mut w, 0.5, 3600.0, |_| at(0, 0));
        assert_eq!(got.len(), 720);
        assert!(got.iter().all(|(_, v)| *v == Verdict::Pet));
        // The same after frames stopped coming: the last one was processed.
        let mut w = Watchdog::new(s(10.0), s(0.0));
        let got = drive(&mut w, 0.5, 600.0, |t| {
            if t < 5.0 {
                at((t * 10.0) as u64, 1)
            } else {
                at(50, 0)
            }
        });
        assert!(got.iter().all(|(_, v)| *v == Verdict::Pet), "{got:?}");
    }

    #[test]
    fn a_stuck_frame_stops_the_pets_after_the_limit_and_a_completed_one_resumes_them() {
        let mut w = Watchdog::new(s(10.0), s(0.0));
        // Frames complete until 4 s; from then on one is stuck in the engine while new ones
        // arrive (and are superseded); at 30 s it completes.
        let got = drive(&mut w, 0.5, 40.0, |t| {
            if t < 4.0 {
                at((t * 10.0) as u64, 1)
            } else if t < 30.0 {
                at(35, 1)
            } else {
                at(40 + (t as u64 - 30), 1)
            }
        });
        let last_progress = 3.5;
        let pets: Vec<f64> = got
            .iter()
            .filter(|(_, v)| *v == Verdict::Pet)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(pets, vec![0.5, 5.5, 10.5, 35.0, 40.0]);
        // No pet later than the limit after the last frame completed.
        assert!(pets.iter().all(|&t| t <= last_progress + 10.0 || t >= 30.0));
        let stalls: Vec<&(f64, Verdict)> = got
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Stalled { .. }))
            .collect();
        assert_eq!(
            stalls,
            vec![&(
                14.0,
                Verdict::Stalled {
                    waiting: 1,
                    since: s(14.0 - last_progress)
                }
            )]
        );
        assert!(got.contains(&(30.0, Verdict::Resumed)), "{got:?}");
    }

    #[test]
    fn frames_arriving_with_none_completing_from_the_start_is_a_stall() {
        let mut w = Watchdog::new(s(4.0), s(100.0));
        let got = drive(&mut w, 100.5, 120.0, |t| at(0, (t - 100.0) as u64 + 1));
        assert_eq!(got.first(), Some(&(100.5, Verdict::Pet)));
        assert_eq!(
            got.iter()
                .filter(|(_, v)| *v == Verdict::Pet)
                .map(|(t, _)| *t)
                .collect::<Vec<_>>(),
            vec![100.5, 102.5]
        );
        assert!(matches!(got.last(), Some((t, Verdict::Stalled { .. })) if *t == 104.5));
    }

    #[test]
    fn looks_closer_than_half_the_limit_do_not_pet_twice() {
        let mut w = Watchdog::new(s(2.0), s(0.0));
        assert_eq!(w.observe(s(0.1), at(1, 0)), Verdict::Pet);
        assert_eq!(w.observe(s(0.2), at(2, 0)), Verdict::Wait);
        assert_eq!(w.observe(s(1.0), at(3, 0)), Verdict::Wait);
        assert_eq!(w.observe(s(1.1), at(4, 0)), Verdict::Pet);
        // A clock that stands still (or a look out of order) is not a pet either.
        assert_eq!(w.observe(s(1.1), at(5, 0)), Verdict::Wait);
        assert_eq!(w.limit(), s(2.0));
    }
}
