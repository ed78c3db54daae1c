//! Taking a link capture apart: every packet decoded, every frame reassembled or explained.

use std::collections::BTreeMap;
use std::io::Read;

use dinoedge_proto::reassembly::{Frame, Loss, Reassembled, Reassembler, ReassemblerConfig};
use dinoedge_proto::wire::{self, DecodeError, Decoder, DecoderStats};
use dinoedge_proto::{Message, MessageKind};

/// One thing found in a capture, in stream order.
#[derive(Debug)]
pub enum InspectEvent<'a> {
    /// A valid packet, at this byte offset of the capture (where its frame ended).
    Packet {
        /// Offset just past its delimiter.
        end_offset: u64,
        /// The message.
        message: &'a Message<'a>,
    },
    /// A damaged packet, skipped.
    Damaged {
        /// Offset just past where it was cut off.
        end_offset: u64,
        /// What was wrong.
        error: DecodeError,
    },
    /// A frame reassembled with a matching CRC.
    Frame(&'a Frame),
    /// A frame lost, with the reason.
    Lost(Loss),
}

/// Totals over a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// The decoder's counters (bytes, packets, each kind of damage).
    pub decoder: DecoderStats,
    /// Valid packets by message kind.
    pub packets: BTreeMap<String, u64>,
    /// Frames delivered intact.
    pub frames_delivered: u64,
    /// Pixel bytes in delivered frames.
    pub frame_bytes: u64,
    /// Frames lost, by reason (the reason's name).
    pub frames_lost: BTreeMap<String, u64>,
    /// Bytes of an unfinished packet at the end of the capture (0 if it ended cleanly).
    pub truncated_tail: usize,
}

impl Inspection {
    /// All frames lost, whatever the reason.
    pub fn lost_total(&self) -> u64 {
        self.frames_lost.values().sum()
    }
}

fn kind_name(kind: MessageKind) -> String {
    format!("{kind:?}")
}

/// Counts a reassembly outcome and reports it.
fn record(
    outcome: Reassembled,
    summary: &mut Inspection,
    on_event: &mut impl FnMut(&InspectEvent<'_>),
) {
    match outcome {
        Reassembled::Frame(frame) => {
            summary.frames_delivered += 1;
            summary.frame_bytes += frame.data.len() as u64;
            on_event(&InspectEvent::Frame(&frame));
        }
        Reassembled::Lost(loss) => {
            *summary
                .frames_lost
                .entry(loss.reason.name().to_owned())
                .or_default() += u64::from(loss.frames());
            on_event(&InspectEvent::Lost(loss));
        }
    }
}

/// Reads a whole capture, accepting packets of up to `max_packet` bytes, and reports each
/// packet, damaged frame, frame and loss to `on_event` as it goes. Frame timestamps are byte
/// offsets, so the reassembler's timeout does not apply to a capture.
pub fn inspect(
    input: &mut impl Read,
    max_packet: usize,
    config: ReassemblerConfig,
    on_event: &mut impl FnMut(&InspectEvent<'_>),
) -> std::io::Result<Inspection> {
    let mut decoder = Decoder::new(vec![0u8; wire::max_wire_len(max_packet)]);
    let mut reassembler = Reassembler::new(config);
    let mut summary = Inspection::default();
    let mut read_buf = vec![0u8; 1 << 16];
    let mut offset = 0u64;
    let mut outcomes = Vec::new();
    loop {
        let n = match input.read(&mut read_buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut rest = read_buf.get(..n).unwrap_or_default();
        while let Some(result) = decoder.push(&mut rest) {
            let end_offset = offset + (n - rest.len()) as u64;
            match result.and_then(|_| decoder.message()) {
                Ok(message) => {
                    *summary
                        .packets
                        .entry(kind_name(message.kind()))
                        .or_default() += 1;
                    on_event(&InspectEvent::Packet {
                        end_offset,
                        message: &message,
                    });
                    reassembler.on_message(&message, end_offset, &mut |o| outcomes.push(o));
                }
                Err(error) => on_event(&InspectEvent::Damaged { end_offset, error }),
            }
            for o in outcomes.drain(..) {
                record(o, &mut summary, on_event);
            }
        }
        offset += n as u64;
    }
    summary.truncated_tail = decoder.pending();
    reassembler.flush(&mut |o| outcomes.push(o));
    for o in outcomes.drain(..) {
        record(o, &mut summary, on_event);
    }
    summary.decoder = *decoder.stats();
    Ok(summary)
}
