//! A source with no hardware: a moving pattern, produced byte by byte at the nominal rate.

use core::convert::Infallible;

use crate::port::{FramePacer, FrameSource, NewFrame, SourceInfo};

/// A diagonal gradient that shifts by one step per frame, at the source's nominal frame rate.
/// Byte `i` of frame `n` is `pattern_byte(n, i)`, so a receiver can check every byte.
#[derive(Debug, Clone)]
pub struct TestPattern {
    info: SourceInfo,
    /// Index of the current frame.
    frame: u32,
    /// Bytes of the current frame read so far; `None` when no frame is current.
    offset: Option<u32>,
    pacer: FramePacer,
}

impl TestPattern {
    /// A pattern of this geometry and rate (`fps_milli` 0 captures as fast as asked).
    pub fn new(info: SourceInfo) -> Self {
        TestPattern {
            info,
            frame: 0,
            offset: None,
            pacer: FramePacer::default(),
        }
    }

    /// Byte `index` of frame `frame`.
    pub fn pattern_byte(info: &SourceInfo, frame: u32, index: u32) -> u8 {
        let width = u32::from(info.width).max(1);
        let x = index % width;
        let y = index / width;
        (x.wrapping_add(y).wrapping_add(frame.wrapping_mul(3))) as u8
    }

    /// Frames captured so far.
    pub fn frames_captured(&self) -> u32 {
        self.frame
    }
}

impl FrameSource for TestPattern {
    type Error = Infallible;

    fn info(&self) -> SourceInfo {
        self.info
    }

    fn poll_frame(&mut self, now_us: u64) -> Result<Option<NewFrame>, Infallible> {
        if self.offset.is_some() || !self.pacer.due(now_us, self.info.fps_milli) {
            return Ok(None);
        }
        self.offset = Some(0);
        Ok(Some(NewFrame {
            capture_us: Some(now_us),
            ..NewFrame::default()
        }))
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let Some(offset) = self.offset else {
            return Ok(0);
        };
        let total = self.info.frame_len();
        let n = (total - offset).min(buf.len() as u32);
        for (i, byte) in buf.iter_mut().take(n as usize).enumerate() {
            *byte = Self::pattern_byte(&self.info, self.frame, offset + i as u32);
        }
        let offset = offset + n;
        if offset == total {
            self.offset = None;
            self.frame = self.frame.wrapping_add(1);
        } else {
            self.offset = Some(offset);
        }
        Ok(n as usize)
    }

    fn skip(&mut self) -> Result<(), Infallible> {
        if self.offset.take().is_some() {
            self.frame = self.frame.wrapping_add(1);
        }
        Ok(())
    }
}
