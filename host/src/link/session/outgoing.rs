//! What the host sends unasked: timers (credit, heartbeat, ping, liveness) and results.

use dinoedge_proto::{Message, Ping, RleMask};

use super::Core;
use crate::link::event::OutgoingResult;

impl Core {
    pub(super) fn on_tick(&mut self, now_us: u64, packets: u64, rejected: u64) {
        let had_outcomes = self.settle(|r, out| r.poll(now_us, &mut |o| out.push(o))) > 0;
        let config = &self.config;
        let Some(conn) = &mut self.conn else { return };
        if let Some(timeout) = config.link_timeout
            && now_us.saturating_sub(conn.last_rx) > timeout.as_micros() as u64
        {
            if self.close.is_none() {
                self.close = Some(format!("nothing from the edge for {timeout:?}"));
            }
            return;
        }
        let Some(session) = &conn.session else { return };
        let since = |t: u64| now_us.saturating_sub(t);
        let credit_due = since(conn.last_credit) >= config.credit_interval.as_micros() as u64;
        let heartbeat_due =
            since(conn.last_heartbeat) >= config.heartbeat_interval.as_micros() as u64;
        let ping_due = since(conn.last_ping) >= config.ping_interval.as_micros() as u64;
        let results_sent = session.results_sent;
        if heartbeat_due {
            conn.last_heartbeat = now_us;
        }
        if ping_due {
            conn.ping_id = conn.ping_id.wrapping_add(1);
            conn.last_ping = now_us;
        }
        let ping_id = conn.ping_id;
        if had_outcomes || credit_due {
            self.send_credit(now_us);
        }
        if heartbeat_due {
            self.send_control(&Message::Heartbeat(dinoedge_proto::Heartbeat {
                now_us,
                frames_sent: results_sent,
                dropped_at_source: 0,
                packets_received: packets as u32,
                packets_rejected: rejected as u32,
            }));
        }
        if ping_due {
            self.send_control(&Message::Ping(Ping {
                id: ping_id,
                sent_us: now_us,
            }));
        }
    }

    pub(super) fn on_result(&mut self, now_us: u64, out: &OutgoingResult) {
        // An edge serving only its controls gets every result, in whatever session it is in:
        // the frames came from a capture on the host, not from any session of the edge's.
        let controls_only = self.config.controls_only;
        let current = self
            .conn
            .as_ref()
            .and_then(|c| c.session.as_ref())
            .is_some_and(|s| controls_only || s.id == out.session_id);
        if !current {
            self.stats.results_stale += 1;
            return;
        }
        let mut msg = out.result.clone();
        if controls_only {
            // The capture time on the edge's clock (PROTOCOL.md §6.8); 0 until the offset is
            // known.
            msg.capture_us = self.stats.to_edge_clock(msg.capture_us).unwrap_or(0);
        }
        msg.mask = out.mask.as_ref().map(|(width, height, runs)| RleMask {
            width: *width,
            height: *height,
            runs,
        });
        let mut sent = self.send(&Message::Result(msg.clone()));
        if sent.is_err() && msg.mask.is_some() {
            msg.mask = None;
            self.stats.results_mask_left_out += 1;
            sent = self.send(&Message::Result(msg));
        }
        if let Err(e) = sent {
            tracing::error!(error = %e, "a result does not fit the link");
            self.stats.results_stale += 1;
            return;
        }
        if let Some(session) = self.conn.as_mut().and_then(|c| c.session.as_mut()) {
            session.results_sent = session.results_sent.wrapping_add(1);
        }
        self.stats.results_sent += 1;
        self.send_credit(now_us);
    }
}
