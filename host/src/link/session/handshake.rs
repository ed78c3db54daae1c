//! The handshake: a `Hello` opens a session or is refused.

use dinoedge_proto::reassembly::ReassemblerConfig;
use dinoedge_proto::wire;
use dinoedge_proto::{
    Hello, MIN_PACKET, Message, PROTOCOL_VERSION, Ping, Reject, RejectReason, Welcome,
};

use super::{Core, Session};
use crate::link::event::LinkEvent;

impl Core {
    /// Answers a `Hello`: a new session, or a `Reject`.
    pub(super) fn welcome(&mut self, now_us: u64, hello: &Hello) {
        if hello.protocol_version != PROTOCOL_VERSION {
            return self.refuse_version(now_us, hello.protocol_version);
        }
        let to_host = (hello.max_packet_tx as usize).min(self.config.max_packet_to_host);
        let to_edge = (hello.max_packet_rx as usize).min(self.config.max_packet_to_edge);
        if to_host < MIN_PACKET || to_edge < MIN_PACKET {
            return self.reject(RejectReason::PacketTooSmall);
        }
        let implied = hello
            .sensor
            .format
            .frame_len(hello.sensor.width, hello.sensor.height);
        // Frames are refused before the edge sends one; an edge that only serves its controls
        // sends none, whatever its sensor.
        if !self.config.controls_only
            && implied.is_none_or(|len| len > self.config.reassembly.max_frame_len)
        {
            return self.reject(RejectReason::UnsupportedFormat);
        }
        self.tell_previous_session(hello);
        // A Hello in a session means the edge restarted: the old session's partial frame is
        // lost.
        self.settle(|r, out| r.reset(&mut |o| out.push(o)));
        let session_id = self.next_session_id;
        self.next_session_id = self.next_session_id.wrapping_add(1).max(1);
        let credits = self.credit_room();
        let reassembly = ReassemblerConfig {
            max_chunk_len: wire::chunk_capacity(to_host) as u32,
            ..self.config.reassembly
        };
        // A Hello may come from an edge that rebooted on a line that stayed open: its clock
        // began anew, so the old offset is void until the ping below is answered.
        self.stats.clock_offset_us = None;
        self.stats.clock_rtt_us = None;
        let Some(conn) = &mut self.conn else { return };
        conn.clock.clear();
        conn.reassembler.set_config(reassembly);
        conn.max_packet_to_edge = to_edge;
        conn.session = Some(Session {
            id: session_id,
            dropped: 0,
            results_sent: 0,
        });
        conn.last_credit = now_us;
        // The clock offset is wanted before the first frame's capture time is mapped.
        conn.ping_id = conn.ping_id.wrapping_add(1);
        conn.last_ping = now_us;
        let ping = Message::Ping(Ping {
            id: conn.ping_id,
            sent_us: now_us,
        });
        self.send_control(&Message::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            session_id,
            max_packet_to_host: to_host as u32,
            max_packet_to_edge: to_edge as u32,
            initial_credits: credits,
            roi: None,
            fps_milli: None,
        }));
        self.send_control(&ping);
        self.stats.sessions += 1;
        tracing::debug!(session_id, device = %hello.device_id, "session begins");
        self.emit(LinkEvent::SessionStarted {
            session_id,
            hello: Box::new(hello.clone()),
        });
    }

    /// Refuses a `Hello` of another protocol version, naming both in the log.
    pub(super) fn refuse_version(&mut self, _now_us: u64, version: u16) {
        tracing::warn!(
            edge = version,
            host = PROTOCOL_VERSION,
            "the edge speaks protocol version {version}, this host version {PROTOCOL_VERSION}: \
             refused (update the edge's firmware or the host)"
        );
        self.reject(RejectReason::UnsupportedVersion);
    }

    /// Refuses a `Hello` for `reason`, and counts it.
    fn reject(&mut self, reason: RejectReason) {
        self.stats.rejected += 1;
        self.send_control(&Message::Reject(Reject {
            reason,
            supported_min: PROTOCOL_VERSION,
            supported_max: PROTOCOL_VERSION,
        }));
    }

    /// The frames of the edge's previous session that vanished with its connection are
    /// reported lost, once the edge says how far it had got (its `Hello`'s `previous`).
    fn tell_previous_session(&mut self, hello: &Hello) {
        let previous = self.previous.take();
        let Some(told) = hello.previous else { return };
        let current = self.conn.as_ref().and_then(|c| c.session.as_ref());
        if current.is_some_and(|s| s.id == told.session_id) {
            // The edge gave up on a session whose connection is still up (its liveness timer).
            self.settle(|r, out| r.connection_lost(told.next_seq, &mut |o| out.push(o)));
        } else if let Some((id, mut reassembler)) = previous
            && id == told.session_id
        {
            let mut outcomes = Vec::new();
            reassembler.connection_lost(told.next_seq, &mut |o| outcomes.push(o));
            for o in outcomes {
                self.deliver(o, id);
            }
        }
    }
}
