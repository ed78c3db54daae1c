//! What the secure link costs on the MCU: the work the edge does per 4 KiB packet (a
//! `FrameChunk` encoded in the clear, and the same chunk sealed as the secure link sends it)
//! and per handshake (its two halves, as `Edge` runs them), each run under a [`Meter`].
//!
//! The workload is separate from the timing so that the same code is timed two ways: by the
//! DWT cycle counter on the board (`--features bench-seal`, see `main.rs`) and by counting
//! executed instructions under QEMU (`scripts/mcu_cost.sh`, whose program includes this file).
//! It uses a fixed test key, never the unit's own: it needs no key block and touches no flash.

use dinoedge_edge::buffers::{EdgeBuffers, chunk_len, rx_len, sealed, tx_len};
use dinoedge_edge::proto::secure::{
    Channel, HandshakeError, Initiator, LinkKey, NOISE_LEN, OpenError, SEAL_OVERHEAD, SealError,
    TAG_LEN, ephemeral_secret, respond,
};
use dinoedge_edge::proto::wire::{self, EncodeError};
use dinoedge_edge::proto::{FrameChunk, Message, PROTOCOL_VERSION};

/// The packet size the board announces to the host (its buffers are [`sealed`] of it).
pub const ANNOUNCED: usize = 4096;

/// The transmit buffer's length on the board, so the sealed packet is exactly the board's.
const TX: usize = tx_len(sealed(ANNOUNCED));

/// The chunk buffer's length on the board.
const CHUNK: usize = chunk_len(ANNOUNCED);

/// The board's buffers, for the packet size they let it announce.
type BoardBuffers = EdgeBuffers<TX, { rx_len(sealed(1024)) }, CHUNK>;

/// A key for the benchmark only (the board's own key stays in its key block).
const TEST_KEY: [u8; 32] = [0x5a; 32];

/// The seed the benchmark's ephemeral secrets are derived from (the board's comes from its
/// boot counter).
const TEST_SEED: [u8; 32] = [0xa5; 32];

/// The memory the benchmark works in: a packet's worth each for the inner message while it is
/// sealed, the wire bytes, and the chunk's pixels (the board's `EdgeBuffers` has the same).
pub struct BenchBuffers {
    seal: [u8; TX],
    tx: [u8; TX],
    chunk: [u8; CHUNK],
}

impl BenchBuffers {
    /// Zeroed buffers (usable in a `static`).
    pub const fn new() -> Self {
        BenchBuffers {
            seal: [0; TX],
            tx: [0; TX],
            chunk: [0; CHUNK],
        }
    }
}

impl Default for BenchBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// One kind of work the benchmark times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// A 4 KiB `FrameChunk` encoded for the wire in the clear (postcard, CRC-32, COBS): what
    /// every packet cost before the secure link.
    ClearChunk,
    /// The same chunk sealed as the secure link sends it (postcard, ChaCha20-Poly1305, then
    /// the `Sealed` packet's postcard, CRC-32 and COBS).
    SealedChunk,
    /// The edge's first handshake half: its ephemeral secret (HMAC-BLAKE2s) and
    /// `Initiator::start` (an X25519 public key from the secret, message 1).
    HandshakeStart,
    /// The edge's second half: `Initiator::finish` (the X25519 shared secret with the host's
    /// ephemeral key, message 2 checked, the session keys split).
    HandshakeFinish,
}

impl Span {
    /// Every span, in the order [`run`] measures them.
    pub const ALL: [Span; 4] = [
        Span::HandshakeStart,
        Span::HandshakeFinish,
        Span::ClearChunk,
        Span::SealedChunk,
    ];

    /// Its name in logs and in `scripts/mcu_cost.sh`'s report.
    pub const fn name(self) -> &'static str {
        match self {
            Span::ClearChunk => "clear_chunk",
            Span::SealedChunk => "sealed_chunk",
            Span::HandshakeStart => "handshake_start",
            Span::HandshakeFinish => "handshake_finish",
        }
    }

    /// Its position in [`Span::ALL`] (to index per-span totals).
    pub const fn index(self) -> usize {
        match self {
            Span::HandshakeStart => 0,
            Span::HandshakeFinish => 1,
            Span::ClearChunk => 2,
            Span::SealedChunk => 3,
        }
    }
}

/// Times work: the board reads the DWT cycle counter around it, the emulator build marks its
/// start and end for an instruction-counting plugin.
pub trait Meter {
    /// Runs `work`, which does `ops` operations of the kind `span`, and records what it cost.
    fn measure<R>(&mut self, span: Span, ops: u32, work: impl FnOnce() -> R) -> R;
}

/// How much work to time.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Packets encoded, and then sealed, back to back.
    pub packets: u32,
    /// Handshakes run, one at a time.
    pub handshakes: u32,
}

/// Why the benchmark stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchError {
    /// The handshake failed (a bug: both sides hold the same test key).
    Handshake(HandshakeError),
    /// A chunk could not be sealed.
    Seal(SealError),
    /// A chunk could not be encoded in the clear.
    Encode(EncodeError),
    /// The host side could not open what the edge sealed.
    Open(OpenError),
    /// The host side opened something other than what the edge sealed.
    Mismatch,
    /// Asked for no packets or no handshakes.
    NothingToDo,
}

/// What was sent, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Pixel bytes in each chunk.
    pub chunk_data: usize,
    /// Wire bytes of the chunk in the clear (delimiter included).
    pub clear_wire: usize,
    /// Wire bytes of the chunk sealed (delimiter included).
    pub sealed_wire: usize,
}

/// Runs `settings.handshakes` handshakes (the host's half too, untimed: it runs on the host),
/// then encodes and seals `settings.packets` chunks under the last handshake's channel, and
/// checks that the host's side of that channel opens what the edge sealed.
pub fn run(
    meter: &mut impl Meter,
    buffers: &mut BenchBuffers,
    settings: Settings,
) -> Result<Sizes, BenchError> {
    if settings.packets == 0 || settings.handshakes == 0 {
        return Err(BenchError::NothingToDo);
    }
    let key = LinkKey::new(TEST_KEY);
    let mut pair = None;
    for attempt in 0..settings.handshakes {
        pair = Some(handshake(meter, &key, attempt)?);
    }
    let (mut edge, mut host) = pair.ok_or(BenchError::NothingToDo)?;

    // What the board announces and how much of a frame each chunk then carries, as `Edge`
    // works them out from its buffers.
    let announced = BoardBuffers::max_packet_tx().saturating_sub(SEAL_OVERHEAD);
    let data_len = wire::chunk_capacity(announced).min(CHUNK);
    for (i, byte) in buffers.chunk.iter_mut().enumerate() {
        *byte = i as u8;
    }
    let data = buffers.chunk.get(..data_len).unwrap_or_default();
    let tx = &mut buffers.tx;
    let seal = &mut buffers.seal;

    let clear_wire = meter.measure(
        Span::ClearChunk,
        settings.packets,
        || -> Result<usize, EncodeError> {
            let mut len = 0;
            for seq in 0..settings.packets {
                let msg = Message::FrameChunk(FrameChunk {
                    seq,
                    offset: 0,
                    data,
                });
                len = wire::encode_limited(&msg, announced, &mut tx[..])?.len();
            }
            Ok(len)
        },
    );
    let clear_wire = clear_wire.map_err(BenchError::Encode)?;

    let sealed_wire = meter.measure(
        Span::SealedChunk,
        settings.packets,
        || -> Result<usize, SealError> {
            let mut len = 0;
            for seq in 0..settings.packets {
                let msg = Message::FrameChunk(FrameChunk {
                    seq,
                    offset: 0,
                    data,
                });
                len = edge
                    .seal_message(&msg, announced + SEAL_OVERHEAD, &mut seal[..], &mut tx[..])?
                    .len();
            }
            Ok(len)
        },
    );
    let sealed_wire = sealed_wire.map_err(BenchError::Seal)?;

    check(&mut edge, &mut host, data, &mut seal[..])?;
    Ok(Sizes {
        chunk_data: data_len,
        clear_wire,
        sealed_wire,
    })
}

/// One handshake with the edge's two halves timed; returns the edge's and the host's channel.
fn handshake(
    meter: &mut impl Meter,
    key: &LinkKey,
    attempt: u32,
) -> Result<(Channel, Channel), BenchError> {
    let mut hello = [0u8; NOISE_LEN];
    let initiator = meter.measure(Span::HandshakeStart, 1, || {
        let secret = ephemeral_secret(key, &TEST_SEED, attempt);
        Initiator::start(key, PROTOCOL_VERSION, secret, &mut hello)
    });
    let initiator = initiator.map_err(BenchError::Handshake)?;
    // The host's half: a fresh ephemeral secret per handshake, as a host draws one.
    let mut host_secret = [0x42u8; 32];
    for (slot, byte) in host_secret.iter_mut().zip(attempt.to_le_bytes()) {
        *slot ^= byte;
    }
    let mut welcome = [0u8; NOISE_LEN];
    let (host, _) = respond(key, PROTOCOL_VERSION, host_secret, &hello, &mut welcome)
        .map_err(BenchError::Handshake)?;
    let edge = meter.measure(Span::HandshakeFinish, 1, || initiator.finish(&welcome));
    let edge = edge.map_err(BenchError::Handshake)?;
    Ok((edge, host))
}

/// Seals `data` once more on the edge's side and opens it on the host's: both ends of the
/// channel the packets were sealed under agree, so the timed work was the real thing.
fn check(
    edge: &mut Channel,
    host: &mut Channel,
    data: &[u8],
    scratch: &mut [u8],
) -> Result<(), BenchError> {
    let len = data.len();
    let buf = scratch
        .get_mut(..len + TAG_LEN)
        .ok_or(BenchError::Seal(SealError::NoRoom { len }))?;
    buf.get_mut(..len)
        .ok_or(BenchError::Mismatch)?
        .copy_from_slice(data);
    let (counter, sealed_len) = edge.seal_in_place(buf, len).map_err(BenchError::Seal)?;
    let sealed = buf.get_mut(..sealed_len).ok_or(BenchError::Mismatch)?;
    if sealed.get(..len) == Some(data) {
        // Encryption left the bytes as they were.
        return Err(BenchError::Mismatch);
    }
    let opened = host
        .open_in_place(counter, sealed)
        .map_err(BenchError::Open)?;
    if opened != len || sealed.get(..len) != Some(data) {
        return Err(BenchError::Mismatch);
    }
    Ok(())
}
