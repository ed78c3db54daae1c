//! Reassembly of frames from [`FrameStart`], [`FrameChunk`]s and [`FrameEnd`] on the host.
//!
//! The protocol sends one frame at a time: every chunk of frame `n`, in order, before the
//! start of frame `n + 1`, and numbers frames consecutively. So the reassembler holds at most
//! one partial frame (bounded by [`ReassemblerConfig::max_frame_len`]) and knows at once when
//! something went missing, even a whole frame. Every frame from the first one seen to the
//! newest ends exactly once: delivered intact (its CRC checked) or reported lost with a
//! [`LossReason`]; packets of frames already told are ignored and counted.
//!
//! ```text
//! FrameStart ──► partial frame ──chunks in order──► all bytes ──CRC ok──► Frame
//!                    │                                   │
//!                    └─ gap, duplicate, reorder, overrun, └─ CRC bad, or no FrameEnd
//!                       timeout, next start ─────────────────► Loss { seq, reason }
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::credit::seq_before;
use crate::message::{FrameChunk, FrameEnd, FrameStart, Message};
use crate::wire::FrameCrc;

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblerConfig {
    /// Largest frame accepted, in bytes; larger frames are lost as [`LossReason::TooLarge`].
    /// It is also the most memory held in a partial frame.
    pub max_frame_len: u32,
    /// Largest chunk accepted, in bytes: the chunk capacity of the negotiated packet size.
    pub max_chunk_len: u32,
    /// A partial frame that receives nothing for this long is lost as
    /// [`LossReason::Timeout`] (checked by [`Reassembler::poll`]).
    pub timeout_us: u64,
}

impl Default for ReassemblerConfig {
    /// 32 MiB frames (3840x2160 RGB fits), 1 MiB chunks, 1 s of silence.
    fn default() -> Self {
        ReassemblerConfig {
            max_frame_len: 32 << 20,
            max_chunk_len: 1 << 20,
            timeout_us: 1_000_000,
        }
    }
}

/// A complete frame whose CRC matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's header as sent (`frame_crc` is `None` when the CRC came in a `FrameEnd`).
    pub start: FrameStart,
    /// The frame CRC that was checked (from the start or from the `FrameEnd`).
    pub crc: u32,
    /// Its bytes, `start.total_len` of them.
    pub data: Vec<u8>,
    /// When its first packet arrived, in the caller's microseconds.
    pub first_us: u64,
    /// When its last packet arrived, in the caller's microseconds.
    pub last_us: u64,
}

/// Why a frame was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// Chunks or a `FrameEnd` arrived for a frame whose `FrameStart` never did.
    MissingStart,
    /// No packet at all arrived for `count` frames from `seq` on: a later frame came first.
    Unseen {
        /// How many consecutive frames.
        count: u32,
    },
    /// A chunk began after the bytes received so far: the chunks between are missing.
    MissingChunk {
        /// The offset that should have come next.
        expected_offset: u32,
        /// The offset that came.
        got_offset: u32,
    },
    /// The chunk just received repeats the previous one.
    DuplicateChunk {
        /// Its offset.
        offset: u32,
    },
    /// A chunk began before the bytes received so far, and does not repeat the previous one.
    OutOfOrderChunk {
        /// The offset that should have come next.
        expected_offset: u32,
        /// The offset that came.
        got_offset: u32,
    },
    /// A chunk reaches past the frame's length.
    Overrun {
        /// The chunk's offset.
        offset: u32,
        /// The chunk's length.
        len: u32,
        /// The frame's length.
        total_len: u32,
    },
    /// A chunk is larger than the negotiated chunk size.
    OversizedChunk {
        /// Its length.
        len: u32,
        /// The limit.
        limit: u32,
    },
    /// The data's CRC differs from the frame CRC.
    CrcMismatch {
        /// The frame CRC the edge sent.
        expected: u32,
        /// The CRC of the bytes received.
        computed: u32,
    },
    /// Nothing arrived for the frame within the timeout.
    Timeout {
        /// Bytes received before it stopped.
        received: u32,
        /// The frame's length.
        total_len: u32,
    },
    /// The next frame started before this one was complete.
    Incomplete {
        /// Bytes received.
        received: u32,
        /// The frame's length.
        total_len: u32,
    },
    /// All bytes arrived but the `FrameEnd` with the CRC did not, before the next frame.
    MissingEnd,
    /// The frame is larger than the configured maximum.
    TooLarge {
        /// Its announced length.
        total_len: u32,
        /// The maximum.
        limit: u32,
    },
    /// The header is inconsistent: the length does not match width, height and format.
    BadHeader {
        /// The announced length.
        total_len: u32,
        /// What width, height and format imply (0 if impossible, e.g. odd-width YUYV).
        implied_len: u32,
    },
    /// A second `FrameStart` with the same sequence number arrived.
    DuplicateStart,
    /// The connection dropped with `count` frames from `seq` on started by the edge but not
    /// one packet of them received; known once the edge reconnects and tells, in its
    /// [`Hello::previous`](crate::Hello::previous), where it had got to (see
    /// [`connection_lost`]).
    ConnectionLost {
        /// How many consecutive frames.
        count: u32,
    },
}

/// A frame that will never be delivered, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loss {
    /// The frame's sequence number (the first one, for [`LossReason::Unseen`] and
    /// [`LossReason::ConnectionLost`]).
    pub seq: u32,
    /// Why.
    pub reason: LossReason,
}

impl LossReason {
    /// The reason's name, without its details (for counters keyed by reason).
    pub fn name(&self) -> &'static str {
        match self {
            LossReason::MissingStart => "MissingStart",
            LossReason::Unseen { .. } => "Unseen",
            LossReason::MissingChunk { .. } => "MissingChunk",
            LossReason::DuplicateChunk { .. } => "DuplicateChunk",
            LossReason::OutOfOrderChunk { .. } => "OutOfOrderChunk",
            LossReason::Overrun { .. } => "Overrun",
            LossReason::OversizedChunk { .. } => "OversizedChunk",
            LossReason::CrcMismatch { .. } => "CrcMismatch",
            LossReason::Timeout { .. } => "Timeout",
            LossReason::Incomplete { .. } => "Incomplete",
            LossReason::MissingEnd => "MissingEnd",
            LossReason::TooLarge { .. } => "TooLarge",
            LossReason::BadHeader { .. } => "BadHeader",
            LossReason::DuplicateStart => "DuplicateStart",
            LossReason::ConnectionLost { .. } => "ConnectionLost",
        }
    }
}

impl Loss {
    /// How many frames this loss stands for (more than one only for [`LossReason::Unseen`]
    /// and [`LossReason::ConnectionLost`]).
    pub fn frames(&self) -> u32 {
        match self.reason {
            LossReason::Unseen { count } | LossReason::ConnectionLost { count } => count,
            _ => 1,
        }
    }
}

/// The frames of a session that vanished with its connection: those from `next_untold`, the
/// host's next sequence number not yet told in that session (see
/// [`Reassembler::next_untold`]), up to `edge_next_seq`, the
/// [`PreviousSession::next_seq`](crate::PreviousSession::next_seq) the edge reports for it.
///
/// `None` when nothing is missing, that is when `edge_next_seq` does not come after
/// `next_untold` in wrapping order ([`seq_before`]): the host has told every frame the edge
/// started (or the edge's count is stale).
pub fn connection_lost(next_untold: u32, edge_next_seq: u32) -> Option<Loss> {
    seq_before(next_untold, edge_next_seq).then(|| Loss {
        seq: next_untold,
        reason: LossReason::ConnectionLost {
            count: edge_next_seq.wrapping_sub(next_untold),
        },
    })
}

/// What the reassembler has to say about a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reassembled {
    /// A complete, checked frame.
    Frame(Box<Frame>),
    /// A lost frame.
    Lost(Loss),
}

/// Counts since the reassembler was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReassemblyStats {
    /// `FrameStart`s received.
    pub starts: u64,
    /// Frames delivered.
    pub delivered: u64,
    /// Frames reported lost (an [`LossReason::Unseen`] loss counts each of its frames).
    pub lost: u64,
    /// Chunks received.
    pub chunks: u64,
    /// Pixel bytes received in chunks.
    pub chunk_bytes: u64,
    /// Frame packets ignored because their frame was already reported lost or delivered.
    pub ignored: u64,
}

#[derive(Debug)]
struct Partial {
    start: FrameStart,
    data: Vec<u8>,
    crc: FrameCrc,
    /// The previous chunk's `(offset, len)`, to tell a duplicate from a reordering.
    last_chunk: Option<(u32, u32)>,
    /// The frame CRC, from the start or, failing that, from the `FrameEnd`.
    expected_crc: Option<u32>,
    first_us: u64,
    last_us: u64,
}

impl Partial {
    fn received(&self) -> u32 {
        self.data.len() as u32
    }

    fn is_complete(&self) -> bool {
        self.received() == self.start.total_len
    }

    /// Why this frame is lost if it must end now.
    fn unfinished(&self) -> LossReason {
        if self.is_complete() {
            LossReason::MissingEnd
        } else {
            LossReason::Incomplete {
                received: self.received(),
                total_len: self.start.total_len,
            }
        }
    }
}

/// Turns frame packets back into frames; see the module documentation.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblerConfig,
    partial: Option<Partial>,
    /// The next sequence number not yet told: every frame before it was delivered, reported
    /// lost, or is the partial frame. `None` until the first frame packet (or a [`reset`]),
    /// when there is no telling which frames came before.
    ///
    /// [`reset`]: Reassembler::reset
    next_untold: Option<u32>,
    stats: ReassemblyStats,
}

/// Where a frame packet's sequence number stands.
enum Admit {
    /// It belongs to the partial frame.
    Current,
    /// Its frame was already told: ignore it.
    Told,
    /// A frame not yet told: any partial frame and any skipped frames are now lost.
    New,
}

impl Reassembler {
    /// A reassembler with these limits, joining a stream at whatever frame comes first.
    pub fn new(config: ReassemblerConfig) -> Self {
        Reassembler {
            config,
            partial: None,
            next_untold: None,
            stats: ReassemblyStats::default(),
        }
    }

    /// Its limits.
    pub fn config(&self) -> &ReassemblerConfig {
        &self.config
    }

    /// Changes the limits (e.g. once the packet size is negotiated); a partial frame is kept.
    pub fn set_config(&mut self, config: ReassemblerConfig) {
        self.config = config;
    }

    /// Counts so far.
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// The next frame sequence number whose fate is not yet told (the partial frame's, or the
    /// one after the newest told); `None` before the first frame packet of a joined stream.
    /// A host grants credit from here.
    pub fn next_untold(&self) -> Option<u32> {
        match &self.partial {
            Some(p) => Some(p.start.seq),
            None => self.next_untold,
        }
    }

    /// Bytes currently held in the partial frame.
    pub fn held_bytes(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.data.capacity())
    }

    /// Takes any message; acts on the frame messages and ignores the rest. `now_us` is the
    /// receive time on the caller's clock.
    pub fn on_message(
        &mut self,
        msg: &Message<'_>,
        now_us: u64,
        out: &mut impl FnMut(Reassembled),
    ) {
        match msg {
            Message::FrameStart(start) => self.on_start(start, now_us, out),
            Message::FrameChunk(chunk) => self.on_chunk(chunk, now_us, out),
            Message::FrameEnd(end) => self.on_end(end, now_us, out),
            _ => {}
        }
    }

    /// Sorts a frame packet's `seq`; for a new frame, first settles the partial frame and
    /// reports the frames skipped in between.
    fn admit(&mut self, seq: u32, out: &mut impl FnMut(Reassembled)) -> Admit {
        if self.partial.as_ref().is_some_and(|p| p.start.seq == seq) {
            return Admit::Current;
        }
        if self.next_untold.is_some_and(|next| seq_before(seq, next)) {
            self.stats.ignored += 1;
            return Admit::Told;
        }
        self.flush(out);
        if let Some(next) = self.next_untold
            && next != seq
        {
            self.lose(
                next,
                LossReason::Unseen {
                    count: seq.wrapping_sub(next),
                },
                out,
            );
        }
        self.next_untold = Some(seq.wrapping_add(1));
        Admit::New
    }

    /// The partial frame that a chunk or end of frame `seq` continues; for a frame not yet
    /// started, reports it lost as [`LossReason::MissingStart`] and gives `None`.
    fn continuing(&mut self, seq: u32, out: &mut impl FnMut(Reassembled)) -> Option<&mut Partial> {
        match self.admit(seq, out) {
            Admit::Current => self.partial.as_mut(),
            Admit::Told => None,
            Admit::New => {
                self.lose(seq, LossReason::MissingStart, out);
                None
            }
        }
    }

    /// A frame begins; any unfinished frame is lost.
    pub fn on_start(&mut self, start: &FrameStart, now_us: u64, out: &mut impl FnMut(Reassembled)) {
        self.stats.starts += 1;
        match self.admit(start.seq, out) {
            Admit::Told => return,
            Admit::Current => {
                self.lose_partial(LossReason::DuplicateStart, out);
                return;
            }
            Admit::New => {}
        }
        let implied_len = start
            .format
            .frame_len(start.width, start.height)
            .unwrap_or(0);
        let reason = if start.total_len > self.config.max_frame_len {
            Some(LossReason::TooLarge {
                total_len: start.total_len,
                limit: self.config.max_frame_len,
            })
        } else if implied_len != start.total_len {
            Some(LossReason::BadHeader {
                total_len: start.total_len,
                implied_len,
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            self.lose(start.seq, reason, out);
            return;
        }
        let partial = Partial {
            start: start.clone(),
            data: Vec::with_capacity(start.total_len as usize),
            crc: FrameCrc::new(),
            last_chunk: None,
            expected_crc: start.frame_crc,
            first_us: now_us,
            last_us: now_us,
        };
        let complete = partial.is_complete();
        self.partial = Some(partial);
        if complete {
            // A zero-length frame is complete at its start.
            self.try_finish(out);
        }
    }

    /// A chunk of the current frame (or of one that went missing).
    pub fn on_chunk(
        &mut self,
        chunk: &FrameChunk<'_>,
        now_us: u64,
        out: &mut impl FnMut(Reassembled),
    ) {
        self.stats.chunks += 1;
        self.stats.chunk_bytes += chunk.data.len() as u64;
        let max_chunk_len = self.config.max_chunk_len;
        let Some(p) = self.continuing(chunk.seq, out) else {
            return;
        };
        let len = u32::try_from(chunk.data.len()).unwrap_or(u32::MAX);
        let expected = p.received();
        let reason = if len > max_chunk_len {
            Some(LossReason::OversizedChunk {
                len,
                limit: max_chunk_len,
            })
        } else if chunk.offset > expected {
            Some(LossReason::MissingChunk {
                expected_offset: expected,
                got_offset: chunk.offset,
            })
        } else if chunk.offset < expected {
            if p.last_chunk == Some((chunk.offset, len)) {
                Some(LossReason::DuplicateChunk {
                    offset: chunk.offset,
                })
            } else {
                Some(LossReason::OutOfOrderChunk {
                    expected_offset: expected,
                    got_offset: chunk.offset,
                })
            }
        } else if u64::from(chunk.offset) + u64::from(len) > u64::from(p.start.total_len) {
            Some(LossReason::Overrun {
                offset: chunk.offset,
                len,
                total_len: p.start.total_len,
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            self.lose_partial(reason, out);
            return;
        }
        if len == 0 {
            // Says nothing; must not hide a duplicate of the chunk before it.
            return;
        }
        p.data.extend_from_slice(chunk.data);
        p.crc.update(chunk.data);
        p.last_chunk = Some((chunk.offset, len));
        p.last_us = now_us;
        if p.is_complete() {
            self.try_finish(out);
        }
    }

    /// The CRC of a frame whose start had none.
    pub fn on_end(&mut self, end: &FrameEnd, now_us: u64, out: &mut impl FnMut(Reassembled)) {
        let Some(p) = self.continuing(end.seq, out) else {
            return;
        };
        if !p.is_complete() {
            let reason = p.unfinished();
            self.lose_partial(reason, out);
            return;
        }
        if p.expected_crc.is_none() {
            p.expected_crc = Some(end.frame_crc);
        }
        p.last_us = now_us;
        self.try_finish(out);
    }

    /// Starts afresh for a new session, whose first frame is `seq` 0: any partial frame is
    /// reported lost first, and a session whose first frames never arrive has them reported
    /// as [`LossReason::Unseen`]. Statistics are kept.
    pub fn reset(&mut self, out: &mut impl FnMut(Reassembled)) {
        self.flush(out);
        self.next_untold = Some(0);
    }

    /// Ends the session whose connection dropped, now that the edge has told where it had got
    /// to (`edge_next_seq`, from its next `Hello`): any partial frame is reported lost first
    /// (as by [`flush`](Self::flush)), then the frames after the newest told up to
    /// `edge_next_seq` as one [`LossReason::ConnectionLost`] (see [`connection_lost`]). Call
    /// it only for the session the edge names, before [`reset`](Self::reset) for the next
    /// one. Without a known [`next_untold`](Self::next_untold) (a joined stream) there is no
    /// telling which frames are missing, and nothing more is reported.
    pub fn connection_lost(&mut self, edge_next_seq: u32, out: &mut impl FnMut(Reassembled)) {
        self.flush(out);
        let Some(next) = self.next_untold else {
            return;
        };
        if let Some(loss) = connection_lost(next, edge_next_seq) {
            self.next_untold = Some(edge_next_seq);
            self.lose(loss.seq, loss.reason, out);
        }
    }

    /// Reports the partial frame lost if nothing arrived for it within the timeout.
    pub fn poll(&mut self, now_us: u64, out: &mut impl FnMut(Reassembled)) {
        if let Some(p) = &self.partial
            && now_us.saturating_sub(p.last_us) > self.config.timeout_us
        {
            let reason = LossReason::Timeout {
                received: p.received(),
                total_len: p.start.total_len,
            };
            self.lose_partial(reason, out);
        }
    }

    /// Reports any partial frame lost (e.g. when the link goes down): incomplete, or complete
    /// but still waiting for its `FrameEnd`.
    pub fn flush(&mut self, out: &mut impl FnMut(Reassembled)) {
        if let Some(reason) = self.partial.as_ref().map(Partial::unfinished) {
            self.lose_partial(reason, out);
        }
    }

    /// Delivers the complete partial frame if its CRC is known and matches.
    fn try_finish(&mut self, out: &mut impl FnMut(Reassembled)) {
        let Some(expected) = self.partial.as_ref().and_then(|p| p.expected_crc) else {
            return; // waiting for the FrameEnd
        };
        let Some(p) = self.partial.take() else {
            return;
        };
        let computed = p.crc.value();
        if computed != expected {
            self.lose(
                p.start.seq,
                LossReason::CrcMismatch { expected, computed },
                out,
            );
            return;
        }
        self.stats.delivered += 1;
        out(Reassembled::Frame(Box::new(Frame {
            crc: expected,
            start: p.start,
            data: p.data,
            first_us: p.first_us,
            last_us: p.last_us,
        })));
    }

    fn lose_partial(&mut self, reason: LossReason, out: &mut impl FnMut(Reassembled)) {
        if let Some(p) = self.partial.take() {
            self.lose(p.start.seq, reason, out);
        }
    }

    fn lose(&mut self, seq: u32, reason: LossReason, out: &mut impl FnMut(Reassembled)) {
        let loss = Loss { seq, reason };
        self.stats.lost += u64::from(loss.frames());
        out(Reassembled::Lost(loss));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_lost_counts_the_frames_the_host_never_told() {
        assert_eq!(
            connection_lost(5, 8),
            Some(Loss {
                seq: 5,
                reason: LossReason::ConnectionLost { count: 3 }
            })
        );
        assert_eq!(connection_lost(5, 8).map(|l| l.frames()), Some(3));
        assert_eq!(
            LossReason::ConnectionLost { count: 3 }.name(),
            "ConnectionLost"
        );
    }

    #[test]
    fn connection_lost_is_none_when_nothing_is_missing() {
        assert_eq!(connection_lost(8, 8), None, "every started frame told");
        assert_eq!(connection_lost(0, 0), None, "a session without frames");
        assert_eq!(connection_lost(9, 8), None, "a stale count from the edge");
    }

    #[test]
    fn connection_lost_wraps_like_every_seq() {
        assert_eq!(
            connection_lost(u32::MAX - 1, 2),
            Some(Loss {
                seq: u32::MAX - 1,
                reason: LossReason::ConnectionLost { count: 4 }
            })
        );
        assert_eq!(connection_lost(2, u32::MAX - 1), None);
        // More than half the sequence space ahead is behind, as in credit arithmetic.
        assert_eq!(connection_lost(0, (1 << 31) + 1), None);
        assert_eq!(
            connection_lost(0, (1 << 31) - 1).map(|l| l.frames()),
            Some((1 << 31) - 1)
        );
    }
}
