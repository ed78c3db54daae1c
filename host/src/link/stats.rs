//! What the link counts.

use std::collections::BTreeMap;

use dinoedge_proto::reassembly::LossReason;
use dinoedge_proto::wire::DecoderStats;

/// Why a frame was lost, as counted (by name) in [`LinkStats::frames_lost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameLoss {
    /// On the link: the reassembler's reason.
    Link(LossReason),
    /// The consumer was too far behind: the backlog's bounds were reached.
    HostQueueFull,
    /// The consumer stopped before taking it.
    HostStopped,
}

impl FrameLoss {
    /// Its name in counters and reports.
    pub fn name(&self) -> &'static str {
        match self {
            FrameLoss::Link(reason) => reason.name(),
            FrameLoss::HostQueueFull => "HostQueueFull",
            FrameLoss::HostStopped => "HostStopped",
        }
    }
}

/// Counters over the whole run, across reconnections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connections opened (the first one included).
    pub connections: u64,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Sessions begun with a `Welcome`.
    pub sessions: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Valid packets received.
    pub packets: u64,
    /// Damaged frames on the line, all kinds (each one a resynchronisation).
    pub resyncs: u64,
    /// Of those, CRC mismatches.
    pub crc_errors: u64,
    /// Frames received intact.
    pub frames_received: u64,
    /// Frame bytes received intact.
    pub frame_bytes: u64,
    /// Frames lost, by [`FrameLoss::name`].
    pub frames_lost: BTreeMap<String, u64>,
    /// Frames the edge dropped at the source for lack of credit (summed over sessions).
    pub dropped_at_edge: u64,
    /// `Hello`s refused with a `Reject` (another protocol version, packets too small, a
    /// format the host cannot take).
    pub rejected: u64,
    /// Frame packets that arrived outside a session.
    pub out_of_session: u64,
    /// The latest clock offset estimate: edge clock minus host clock, microseconds.
    pub clock_offset_us: Option<i64>,
    /// The round trip of that estimate, microseconds.
    pub clock_rtt_us: Option<u64>,
    /// Results sent to the edge.
    pub results_sent: u64,
    /// Results not sent: their frame's session had ended, or the link stopped first.
    pub results_stale: u64,
    /// Results sent without their mask, which did not fit the edge's packet size.
    pub results_mask_left_out: u64,
    /// Frame packets from an edge that serves only its controls ([`LinkConfig::controls_only`]:
    /// it was granted no credit), ignored.
    ///
    /// [`LinkConfig::controls_only`]: super::LinkConfig::controls_only
    pub frame_packets_unasked: u64,
    /// Button, pedal and probe events received from the edge.
    pub edge_events: u64,
}

impl LinkStats {
    /// All frames lost.
    pub fn lost_total(&self) -> u64 {
        self.frames_lost.values().sum()
    }

    /// Counts `frames` frames lost for `loss`.
    pub(crate) fn count_loss(&mut self, loss: FrameLoss, frames: u64) {
        *self.frames_lost.entry(loss.name().to_owned()).or_default() += frames;
    }

    /// Takes the decoder's counters (one decoder serves the whole link, across
    /// connections, so they are always current).
    pub(crate) fn set_decoder(&mut self, d: &DecoderStats) {
        self.bytes = d.bytes;
        self.packets = d.packets;
        self.resyncs = d.rejected();
        self.crc_errors = d.crc_errors;
    }

    /// A time on the edge's clock moved onto the link's, once the clock offset is known (and
    /// when it falls after the link's epoch).
    pub(crate) fn to_host_clock(&self, edge_us: u64) -> Option<u64> {
        let offset = self.clock_offset_us?;
        u64::try_from(i128::from(edge_us) - i128::from(offset)).ok()
    }

    /// A time on the link's clock moved onto the edge's, once the clock offset is known.
    pub(crate) fn to_edge_clock(&self, host_us: u64) -> Option<u64> {
        let offset = self.clock_offset_us?;
        u64::try_from(i128::from(host_us) + i128::from(offset)).ok()
    }

    /// One line for a progress display.
    pub fn progress_line(&self) -> String {
        format!(
            "frames {} lost {} dropped@edge {} | packets {} resyncs {} crc {} | {:.1} MB | sessions {}{}",
            self.frames_received,
            self.lost_total(),
            self.dropped_at_edge,
            self.packets,
            self.resyncs,
            self.crc_errors,
            self.bytes as f64 / 1e6,
            self.sessions,
            self.clock_offset_us
                .map(|o| format!(" | clock offset {:.3} ms", o as f64 / 1000.0))
                .unwrap_or_default()
        )
    }
}
