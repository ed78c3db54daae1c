//! What arrives from the edge: messages, frames and their settling.

use dinoedge_proto::clock::ClockSample;
use dinoedge_proto::reassembly::{Reassembled, Reassembler};
use dinoedge_proto::{ErrorCode, ErrorReport, Message, Pong};

use super::{CLOCK_SAMPLES, Core, PROTOCOL_ERROR_INTERVAL_US, Session};
use crate::link::event::{EdgeInput, LinkEvent, ReceivedFrame};
use crate::link::stats::{FrameLoss, LinkStats};

impl Core {
    pub(super) fn on_message(&mut self, now_us: u64, msg: &Message<'_>) {
        let Some(conn) = &mut self.conn else { return };
        conn.last_rx = now_us;
        match msg {
            Message::Hello(hello) => self.welcome(now_us, hello),
            Message::FrameStart(_) | Message::FrameChunk(_) | Message::FrameEnd(_) => {
                self.on_frame_packet(now_us, msg)
            }
            Message::Heartbeat(beat) => {
                // Frames an edge serving only its controls drops are frames nobody asked for.
                if let Some(session) = &mut conn.session
                    && !self.config.controls_only
                {
                    note_dropped(session, beat.dropped_at_source, &mut self.stats);
                }
            }
            Message::Ping(ping) => self.send_control(&Message::Pong(Pong {
                id: ping.id,
                ping_sent_us: ping.sent_us,
                received_us: now_us,
            })),
            Message::Pong(pong) => {
                if let Some(sample) = ClockSample::from_pong(pong, now_us) {
                    if conn.clock.len() == CLOCK_SAMPLES {
                        conn.clock.pop_front();
                    }
                    conn.clock.push_back(sample);
                    if let Some(best) = conn.clock.iter().min_by_key(|s| s.rtt_us) {
                        self.stats.clock_offset_us = Some(best.offset_us);
                        self.stats.clock_rtt_us = Some(best.rtt_us);
                    }
                }
            }
            Message::Event(event) => {
                self.stats.edge_events += 1;
                let session_id = conn.session.as_ref().map_or(0, |s| s.id);
                let at_host_us = self.stats.to_host_clock(event.at_us);
                tracing::info!(kind = ?event.kind, session_id, "edge control");
                self.emit(LinkEvent::EdgeEvent(EdgeInput {
                    event: event.clone(),
                    session_id,
                    received_us: now_us,
                    at_host_us,
                }));
            }
            Message::Log(log) => {
                tracing::info!(level = ?log.level, text = %log.text, "edge log");
                self.emit(LinkEvent::EdgeLog(log.clone()));
            }
            Message::Error(report) => {
                tracing::warn!(code = ?report.code, detail = %report.detail, "edge error");
                self.emit(LinkEvent::EdgeError(report.clone()));
            }
            // The secure link is the layer below this session (`link::secure`); reaching here,
            // the edge asks for one that this host was not configured for.
            Message::SecureHello(_) => tracing::warn!(
                "the edge asks for a secure link, and this host runs the link in the clear: \
                 start it with --link-keys DIR holding the edge's key"
            ),
            // Host-to-edge messages coming back are ignored (a loopback or a confused peer),
            // and so are sealed packets without a secure layer to open them.
            Message::Welcome(_)
            | Message::Reject(_)
            | Message::Credit(_)
            | Message::Result(_)
            | Message::SecureWelcome(_)
            | Message::SecureReject(_)
            | Message::Sealed(_) => {}
        }
    }

    pub(super) fn on_frame_packet(&mut self, now_us: u64, msg: &Message<'_>) {
        let Some(conn) = &mut self.conn else { return };
        let Some(session) = &mut conn.session else {
            self.stats.out_of_session += 1;
            // A restarted host: tell the edge at once, at most once a second.
            let due = conn
                .last_protocol_error
                .is_none_or(|t| now_us.saturating_sub(t) >= PROTOCOL_ERROR_INTERVAL_US);
            if due {
                conn.last_protocol_error = Some(now_us);
                let detail =
                    heapless::String::try_from("no session: send Hello").unwrap_or_default();
                self.send_control(&Message::Error(ErrorReport {
                    code: ErrorCode::Protocol,
                    detail,
                }));
            }
            return;
        };
        if self.config.controls_only {
            // Granted no credit, the edge sent frames anyway: they are not wanted here.
            self.stats.frame_packets_unasked += 1;
            return;
        }
        if let Message::FrameStart(start) = msg {
            note_dropped(session, start.dropped_at_source, &mut self.stats);
        }
        if self.settle(|r, out| r.on_message(msg, now_us, &mut |o| out.push(o))) > 0 {
            self.send_credit(now_us);
        }
    }

    /// Runs `f` on the connection's reassembler and hands every frame it settles (delivered
    /// or lost) to the consumer; returns how many.
    pub(super) fn settle(
        &mut self,
        f: impl FnOnce(&mut Reassembler, &mut Vec<Reassembled>),
    ) -> usize {
        let Some(conn) = &mut self.conn else { return 0 };
        let mut outcomes = Vec::new();
        f(&mut conn.reassembler, &mut outcomes);
        let session_id = conn.session.as_ref().map_or(0, |s| s.id);
        let settled = outcomes.len();
        for o in outcomes {
            self.deliver(o, session_id);
        }
        settled
    }

    /// Counts a reassembly outcome and hands it on.
    pub(super) fn deliver(&mut self, outcome: Reassembled, session_id: u32) {
        match outcome {
            Reassembled::Frame(frame) => {
                self.stats.frames_received += 1;
                self.stats.frame_bytes += frame.data.len() as u64;
                let capture_host_us = self.stats.to_host_clock(frame.start.capture_us);
                let received_us = frame.last_us;
                self.emit(LinkEvent::Frame(ReceivedFrame {
                    frame,
                    session_id,
                    received_us,
                    capture_host_us,
                }));
            }
            Reassembled::Lost(loss) => {
                self.stats
                    .count_loss(FrameLoss::Link(loss.reason), u64::from(loss.frames()));
                tracing::debug!(seq = loss.seq, reason = ?loss.reason, "frame lost");
                self.emit(LinkEvent::Lost(loss));
            }
        }
    }
}

/// Takes the edge's cumulative drop count for this session into the run's total.
fn note_dropped(session: &mut Session, reported: u32, stats: &mut LinkStats) {
    if reported > session.dropped {
        stats.dropped_at_edge += u64::from(reported - session.dropped);
        session.dropped = reported;
    }
}
