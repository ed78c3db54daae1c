//! Frame sources: a test pattern, and an SPI frame grabber.

mod spi_grabber;
mod test_pattern;

pub use spi_grabber::{SpiCommands, SpiFrameGrabber};
pub use test_pattern::TestPattern;
