//! A frame grabber on SPI with a frame FIFO (ArduCAM-style): the MCU polls a status register
//! until a frame is captured, then bursts it out in pieces, then releases the FIFO for the
//! next capture.

use embedded_hal::spi::{Operation, SpiDevice};

use crate::port::{FrameSource, NewFrame, SourceInfo};

/// The grabber's command bytes (each SPI transaction starts with one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiCommands {
    /// Read one status byte.
    pub status: u8,
    /// The status bits that mean "a frame is captured and ready".
    pub ready_mask: u8,
    /// Burst-read the next bytes of the frame.
    pub read: u8,
    /// Release the frame: the grabber may capture the next one.
    pub release: u8,
}

impl Default for SpiCommands {
    /// `0x01` status (bit 0 ready), `0x02` burst read, `0x03` release.
    fn default() -> Self {
        SpiCommands {
            status: 0x01,
            ready_mask: 0x01,
            read: 0x02,
            release: 0x03,
        }
    }
}

/// A [`FrameSource`] over an embedded-hal 1.0 [`SpiDevice`].
#[derive(Debug)]
pub struct SpiFrameGrabber<D> {
    spi: D,
    info: SourceInfo,
    commands: SpiCommands,
    /// Bytes of the current frame still to read; `None` when no frame is current.
    remaining: Option<u32>,
}

impl<D: SpiDevice> SpiFrameGrabber<D> {
    /// A grabber delivering frames of this geometry.
    pub fn new(spi: D, info: SourceInfo, commands: SpiCommands) -> Self {
        SpiFrameGrabber {
            spi,
            info,
            commands,
            remaining: None,
        }
    }

    /// Gives the SPI device back.
    pub fn release(self) -> D {
        self.spi
    }
}

impl<D: SpiDevice> FrameSource for SpiFrameGrabber<D> {
    type Error = D::Error;

    fn info(&self) -> SourceInfo {
        self.info
    }

    fn poll_frame(&mut self, _now_us: u64) -> Result<Option<NewFrame>, D::Error> {
        if self.remaining.is_some() {
            return Ok(None);
        }
        let mut status = [0u8; 1];
        self.spi.transaction(&mut [
            Operation::Write(&[self.commands.status]),
            Operation::Read(&mut status),
        ])?;
        if status[0] & self.commands.ready_mask == 0 {
            return Ok(None);
        }
        self.remaining = Some(self.info.frame_len());
        Ok(Some(NewFrame::default()))
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, D::Error> {
        let Some(remaining) = self.remaining else {
            return Ok(0);
        };
        let n = remaining.min(u32::try_from(buf.len()).unwrap_or(u32::MAX));
        if let Some(piece) = buf.get_mut(..n as usize)
            && !piece.is_empty()
        {
            self.spi.transaction(&mut [
                Operation::Write(&[self.commands.read]),
                Operation::Read(piece),
            ])?;
        }
        if remaining == n {
            self.remaining = None;
            self.spi.write(&[self.commands.release])?;
        } else {
            self.remaining = Some(remaining - n);
        }
        Ok(n as usize)
    }

    fn skip(&mut self) -> Result<(), D::Error> {
        if self.remaining.take().is_some() {
            self.spi.write(&[self.commands.release])?;
        }
        Ok(())
    }
}
