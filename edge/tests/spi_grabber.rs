//! The SPI frame grabber source against a mocked SPI device (embedded-hal-mock).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use dinoedge_edge::port::{FrameSource, SourceInfo};
use dinoedge_edge::source::{SpiCommands, SpiFrameGrabber};
use dinoedge_proto::PixelFormat;
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as T};

const INFO: SourceInfo = SourceInfo {
    width: 4,
    height: 3,
    format: PixelFormat::Gray8,
    fps_milli: 30_000,
};

fn status(byte: u8) -> Vec<T<u8>> {
    vec![
        T::transaction_start(),
        T::write_vec(vec![0x01]),
        T::read_vec(vec![byte]),
        T::transaction_end(),
    ]
}

fn burst(bytes: &[u8]) -> Vec<T<u8>> {
    vec![
        T::transaction_start(),
        T::write_vec(vec![0x02]),
        T::read_vec(bytes.to_vec()),
        T::transaction_end(),
    ]
}

fn release() -> Vec<T<u8>> {
    vec![
        T::transaction_start(),
        T::write_vec(vec![0x03]),
        T::transaction_end(),
    ]
}

#[test]
fn reads_a_frame_in_line_sized_bursts_then_releases_it() {
    let frame: Vec<u8> = (1..=12).collect();
    let mut expected = Vec::new();
    expected.extend(status(0x00)); // nothing captured yet
    expected.extend(status(0x01));
    expected.extend(burst(&frame[0..4]));
    expected.extend(burst(&frame[4..8]));
    expected.extend(burst(&frame[8..12]));
    expected.extend(release());
    expected.extend(status(0x01)); // the next frame, skipped for lack of credit
    expected.extend(release());
    let spi = SpiMock::new(&expected);
    let mut grabber = SpiFrameGrabber::new(spi, INFO, SpiCommands::default());

    assert!(grabber.poll_frame(0).unwrap().is_none());
    assert!(grabber.poll_frame(1).unwrap().is_some());
    // While a frame is current, polling does not touch the bus.
    assert!(grabber.poll_frame(2).unwrap().is_none());
    let mut got = Vec::new();
    let mut line = [0u8; 4];
    loop {
        let n = grabber.read(&mut line).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&line[..n]);
    }
    assert_eq!(got, frame);
    assert!(grabber.poll_frame(3).unwrap().is_some());
    grabber.skip().unwrap();
    grabber.release().done();
}
