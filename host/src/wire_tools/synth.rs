//! A synthetic edge: frames of a moving test pattern, framed exactly as an edge sends them,
//! optionally with bit errors injected on the line.

use std::io::Write;

use dinoedge_proto::chunk::Chunks;
use dinoedge_proto::wire::{self, FrameCrc};
use dinoedge_proto::{FrameMeta, FrameStart, Heartbeat, MIN_PACKET, Message, PixelFormat};

/// What to synthesise.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Number of frames.
    pub frames: u32,
    /// Frame width in pixels.
    pub width: u16,
    /// Frame height in pixels.
    pub height: u16,
    /// Pixel format.
    pub format: PixelFormat,
    /// Packet size of the link (message plus CRC), at least [`MIN_PACKET`].
    pub packet: usize,
    /// Frame interval on the edge clock, in microseconds.
    pub interval_us: u64,
    /// Probability that any one bit on the line is flipped (0 for a clean line).
    pub bit_error_rate: f64,
    /// Seed of the pattern and of the bit errors.
    pub seed: u64,
    /// Send the frame CRC in a `FrameEnd` instead of the `FrameStart`.
    pub crc_at_end: bool,
}

impl Default for SynthConfig {
    /// 30 frames of 640x480 Gray8 at 30 fps in 4 KiB packets, on a clean line.
    fn default() -> Self {
        SynthConfig {
            frames: 30,
            width: 640,
            height: 480,
            format: PixelFormat::Gray8,
            packet: 4096,
            interval_us: 33_333,
            bit_error_rate: 0.0,
            seed: 1,
            crc_at_end: false,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SynthReport {
    /// Frames sent.
    pub frames: u32,
    /// Packets sent.
    pub packets: u64,
    /// Pixel bytes sent.
    pub frame_bytes: u64,
    /// Bytes written on the line.
    pub wire_bytes: u64,
    /// Bits flipped on the line.
    pub flipped_bits: u64,
}

/// Why a capture could not be synthesised.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The packet size is below the protocol's minimum.
    #[error("packet size {0} is below the protocol minimum of {MIN_PACKET} bytes")]
    PacketTooSmall(usize),
    /// Width, height and format give no valid frame size.
    #[error("{width}x{height} is not a valid {format:?} frame size")]
    BadFrameSize {
        /// Width.
        width: u16,
        /// Height.
        height: u16,
        /// Format.
        format: PixelFormat,
    },
    /// The bit error rate is not a probability.
    #[error("bit error rate {0} is not between 0 and 1")]
    BadBitErrorRate(f64),
    /// A packet could not be encoded.
    #[error("encoding a packet: {0}")]
    Encode(#[from] wire::EncodeError),
    /// Writing the capture failed.
    #[error("writing the capture: {0}")]
    Io(#[from] std::io::Error),
}

/// xorshift64*: small, fast, deterministic; the pattern and the errors must repeat exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Flips bits of `bytes` at `rate` per bit, drawing gaps geometrically so that a low rate
/// costs nothing per byte.
struct LineNoise {
    rng: Rng,
    rate: f64,
    /// Bits to pass before the next flip.
    gap: u64,
    flipped: u64,
}

impl LineNoise {
    fn new(seed: u64, rate: f64) -> Self {
        let mut noise = LineNoise {
            rng: Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1),
            rate,
            gap: 0,
            flipped: 0,
        };
        noise.gap = noise.draw_gap();
        noise
    }

    fn draw_gap(&mut self) -> u64 {
        if self.rate <= 0.0 {
            return u64::MAX;
        }
        if self.rate >= 1.0 {
            return 0;
        }
        let u = self.rng.unit().max(f64::MIN_POSITIVE);
        (u.ln() / (1.0 - self.rate).ln())
            .floor()
            .min(u64::MAX as f64 / 2.0) as u64
    }

    fn apply(&mut self, bytes: &mut [u8]) {
        let mut bit = 0u64;
        let total = bytes.len() as u64 * 8;
        while self.gap < total - bit {
            bit += self.gap;
            if let Some(b) = bytes.get_mut((bit / 8) as usize) {
                *b ^= 1 << (bit % 8);
            }
            self.flipped += 1;
            bit += 1;
            self.gap = self.draw_gap();
        }
        self.gap -= total - bit;
    }
}

/// Writes a capture of `config.frames` frames to `out`, as an edge would send them: for each
/// frame a `FrameStart`, its chunks, and a `FrameEnd` when the CRC goes last; a `Heartbeat`
/// every 30 frames.
pub fn synthesize(config: &SynthConfig, out: &mut impl Write) -> Result<SynthReport, SynthError> {
    if config.packet < MIN_PACKET {
        return Err(SynthError::PacketTooSmall(config.packet));
    }
    if !(0.0..=1.0).contains(&config.bit_error_rate) {
        return Err(SynthError::BadBitErrorRate(config.bit_error_rate));
    }
    let frame_len =
        config
            .format
            .frame_len(config.width, config.height)
            .ok_or(SynthError::BadFrameSize {
                width: config.width,
                height: config.height,
                format: config.format,
            })?;
    let mut pattern = Rng(config.seed | 1);
    let mut noise = LineNoise::new(config.seed, config.bit_error_rate);
    let mut frame = vec![0u8; frame_len as usize];
    let mut buf = vec![0u8; wire::encode_buffer_len(config.packet)];
    let mut report = SynthReport::default();
    let mut send = |msg: &Message<'_>, report: &mut SynthReport| -> Result<(), SynthError> {
        let len = {
            let bytes = wire::encode_limited(msg, config.packet, &mut buf)?;
            bytes.len()
        };
        let bytes = buf.get_mut(..len).unwrap_or_default();
        noise.apply(bytes);
        out.write_all(bytes)?;
        report.packets += 1;
        report.wire_bytes += len as u64;
        report.flipped_bits = noise.flipped;
        Ok(())
    };
    for seq in 0..config.frames {
        draw_pattern(&mut frame, config, seq, &mut pattern);
        let mut crc = FrameCrc::new();
        crc.update(&frame);
        let start = FrameStart {
            seq,
            capture_us: u64::from(seq) * config.interval_us,
            width: config.width,
            height: config.height,
            format: config.format,
            total_len: frame_len,
            frame_crc: (!config.crc_at_end).then(|| crc.value()),
            dropped_at_source: 0,
            meta: FrameMeta::default(),
        };
        send(&Message::FrameStart(start), &mut report)?;
        for chunk in Chunks::new(seq, &frame, wire::chunk_capacity(config.packet)) {
            send(&Message::FrameChunk(chunk), &mut report)?;
        }
        if config.crc_at_end {
            let end = dinoedge_proto::FrameEnd {
                seq,
                frame_crc: crc.value(),
            };
            send(&Message::FrameEnd(end), &mut report)?;
        }
        if seq % 30 == 29 {
            let beat = Heartbeat {
                now_us: u64::from(seq) * config.interval_us,
                frames_sent: seq + 1,
                ..Heartbeat::default()
            };
            send(&Message::Heartbeat(beat), &mut report)?;
        }
        report.frames += 1;
        report.frame_bytes += u64::from(frame_len);
    }
    out.flush()?;
    Ok(report)
}

/// A bright bar that moves one step per frame over speckle on black, so that consecutive
/// frames differ and zero bytes are common, as in ultrasound.
fn draw_pattern(frame: &mut [u8], config: &SynthConfig, seq: u32, rng: &mut Rng) {
    let width = usize::from(config.width).max(1);
    let row_len = frame.len() / usize::from(config.height).max(1);
    let bar = (seq as usize * 8) % width;
    for (y, row) in frame.chunks_mut(row_len.max(1)).enumerate() {
        let speckle = y * 2 > usize::from(config.height) / 3;
        for (i, byte) in row.iter_mut().enumerate() {
            let x = i * width / row_len.max(1);
            *byte = if x.abs_diff(bar) < 4 {
                240
            } else if speckle {
                (rng.next() >> 57) as u8 * 2
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_noise_flips_at_the_requested_rate() {
        let mut noise = LineNoise::new(7, 1e-3);
        let mut bytes = vec![0u8; 1 << 20];
        noise.apply(&mut bytes[..1000]);
        noise.apply(&mut bytes[1000..]);
        let ones: u64 = bytes.iter().map(|b| u64::from(b.count_ones())).sum();
        assert_eq!(ones, noise.flipped);
        let expected = (1u64 << 23) as f64 * 1e-3;
        assert!(
            (ones as f64 - expected).abs() < expected * 0.05,
            "{ones} vs {expected}"
        );
        let mut clean = LineNoise::new(7, 0.0);
        let mut bytes = vec![0u8; 4096];
        clean.apply(&mut bytes);
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn refuses_bad_configs() {
        let mut sink = Vec::new();
        let small = SynthConfig {
            packet: 100,
            ..SynthConfig::default()
        };
        assert!(matches!(
            synthesize(&small, &mut sink),
            Err(SynthError::PacketTooSmall(100))
        ));
        let odd = SynthConfig {
            width: 3,
            format: PixelFormat::Yuyv422,
            ..SynthConfig::default()
        };
        assert!(matches!(
            synthesize(&odd, &mut sink),
            Err(SynthError::BadFrameSize { .. })
        ));
        assert!(sink.is_empty());
    }
}
