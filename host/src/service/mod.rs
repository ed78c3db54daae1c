//! Running under systemd (`packaging/dinoedge.service`, `Type=notify`): readiness, the
//! watchdog and status lines over `sd_notify`, and whether the log should go to the journal.
//!
//! - `READY=1` goes out once the pipeline runs: `dinoedge run` loads the model and warms the
//!   engine up (`Models::load`) before it starts the pipeline, and the first frame or status
//!   tick of the pipeline says that its stages are up (a live link may still wait for its
//!   edge: that is not a fault, see below). Until then `systemctl start` waits (the unit's
//!   `TimeoutStartSec` allows for the loading; TensorRT engines are built beforehand, never
//!   at start).
//! - `WATCHDOG=1` goes out only while frames make progress, as [`watchdog`] defines it: a
//!   source that sends nothing is not a fault; frames waiting while none completes for longer
//!   than `WatchdogSec` are, and systemd then restarts the service.
//! - `STATUS=` says what `systemctl status dinoedge` should show: loading, frames and rates,
//!   a stall, stopping.
//!
//! [`Service`] is the thin runner over the state machine: all of it is inert when
//! `$NOTIFY_SOCKET` is not set, and a failed send is logged once and never stops a run.

pub mod journal;
pub mod notify;
pub mod watchdog;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::pipeline::LiveStatus;
pub use watchdog::{Progress, Verdict, Watchdog};

/// Without a systemd watchdog (`WatchdogSec` unset) the same machine paces the status lines:
/// one at least every half of this, and a stall logged after it.
const STATUS_LIMIT: Duration = Duration::from_secs(30);

/// The counters a watchdog looks at, from the pipeline's status tick.
pub fn progress(status: &LiveStatus) -> Progress {
    Progress {
        processed: status.processed,
        waiting: status
            .received
            .saturating_sub(status.processed.saturating_add(status.dropped)),
    }
}

/// The `STATUS=` text for a tick.
pub fn status_text(status: &LiveStatus) -> String {
    format!(
        "{} frames processed, {:.1} frames/s, latency p99 {:.1} ms, {} dropped, {} lost on the link",
        status.processed, status.fps, status.p99_ms, status.dropped, status.lost
    )
}

/// The notifications of one `dinoedge run` under systemd; does nothing elsewhere. Its
/// methods take `&self` because the pipeline's frame and tick callbacks both hold it.
#[derive(Debug)]
pub struct Service {
    notifier: Option<notify::Notifier>,
    watchdog_on: bool,
    limit: Duration,
    epoch: Instant,
    state: RefCell<State>,
}

#[derive(Debug, Default)]
struct State {
    ready: bool,
    watchdog: Option<Watchdog>,
    send_failed: bool,
}

impl Service {
    /// What the environment asks for: `$NOTIFY_SOCKET`, `$WATCHDOG_USEC`, `$WATCHDOG_PID`.
    pub fn from_env() -> Self {
        let notifier = match notify::Notifier::from_env() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("not notifying systemd: {e}");
                None
            }
        };
        let watchdog = notify::watchdog_limit(
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        if let (Some(limit), Some(_)) = (watchdog, &notifier) {
            tracing::info!(
                "systemd watchdog: {:.1} s without progress restarts the service",
                limit.as_secs_f64()
            );
        }
        Service {
            watchdog_on: watchdog.is_some() && notifier.is_some(),
            limit: watchdog.unwrap_or(STATUS_LIMIT),
            notifier,
            epoch: Instant::now(),
            state: RefCell::default(),
        }
    }

    /// Whether systemd listens.
    pub fn is_notifying(&self) -> bool {
        self.notifier.is_some()
    }

    /// Before the model loads.
    pub fn loading(&self) {
        self.send(&["STATUS=loading the model and warming up the engine"]);
    }

    /// The pipeline runs (its first frame or tick): `READY=1`, once.
    pub fn running(&self) {
        if self.notifier.is_none() {
            return;
        }
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return;
        };
        if state.ready {
            return;
        }
        state.ready = true;
        state.watchdog = Some(Watchdog::new(self.limit, self.epoch.elapsed()));
        drop(state);
        self.send(&["READY=1", "STATUS=running, waiting for frames"]);
    }

    /// A status tick of the pipeline: pets the watchdog while frames make progress.
    pub fn tick(&self, status: &LiveStatus) {
        if self.notifier.is_none() {
            return;
        }
        self.running();
        let verdict = match self.state.try_borrow_mut() {
            Ok(mut state) => match &mut state.watchdog {
                Some(w) => w.observe(self.epoch.elapsed(), progress(status)),
                None => return,
            },
            Err(_) => return,
        };
        let pet = if self.watchdog_on { "WATCHDOG=1" } else { "" };
        match verdict {
            Verdict::Wait => {}
            Verdict::Pet => self.send(&[pet, &format!("STATUS={}", status_text(status))]),
            Verdict::Resumed => {
                tracing::info!("frames complete again after a stall");
                self.send(&[pet, &format!("STATUS={}", status_text(status))]);
            }
            Verdict::Stalled { waiting, since } => {
                let text = format!(
                    "stalled: {waiting} frame(s) waiting, none completed for {:.1} s",
                    since.as_secs_f64()
                );
                if self.watchdog_on {
                    tracing::error!("{text}; no more watchdog pets, systemd will restart dinoedge");
                } else {
                    tracing::warn!("{text}");
                }
                self.send(&[&format!("STATUS={text}")]);
            }
        }
    }

    /// The pipeline has ended: `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&["STOPPING=1", "STATUS=stopping"]);
    }

    fn send(&self, lines: &[&str]) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let message = notify::message(lines.iter().copied().filter(|l| !l.is_empty()));
        if let Err(e) = notifier.send(&message) {
            let first = self
                .state
                .try_borrow_mut()
                .map(|mut s| !std::mem::replace(&mut s.send_failed, true))
                .unwrap_or(false);
            if first {
                tracing::warn!("notifying systemd: {e} (further failures are not logged)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_frames_are_those_received_and_not_yet_settled() {
        let status = LiveStatus {
            received: 10,
            processed: 6,
            dropped: 3,
            ..LiveStatus::default()
        };
        assert_eq!(
            progress(&status),
            Progress {
                processed: 6,
                waiting: 1
            }
        );
        // Counters read at slightly different moments never make a negative count.
        let status = LiveStatus {
            received: 5,
            processed: 6,
            ..LiveStatus::default()
        };
        assert_eq!(progress(&status).waiting, 0);
    }

    #[test]
    fn the_status_names_the_counts() {
        let text = status_text(&LiveStatus {
            processed: 42,
            fps: 29.96,
            p99_ms: 41.26,
            dropped: 2,
            lost: 1,
            ..LiveStatus::default()
        });
        assert_eq!(
            text,
            "42 frames processed, 30.0 frames/s, latency p99 41.3 ms, 2 dropped, 1 lost on the link"
        );
    }
}
