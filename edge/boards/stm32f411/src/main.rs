//! dinoedge firmware for an STM32F411 "Black Pill" (100 MHz Cortex-M4F).
//!
//! Wiring: USART2 to the host (PA2 TX, PA3 RX, 921600 baud, or a USB-UART bridge); an SPI frame
//! grabber on SPI1 (PA5 SCK, PA6 MISO, PA7 MOSI, PA4 chip select) with the command set of
//! `dinoedge_edge::source::SpiCommands::default()`; the alarm on the on-board LED (PC13, lit
//! when low); the freeze button on PA0 (the on-board KEY) and a foot switch on PA1, both to
//! ground. Logs go out over RTT (defmt).
#![no_std]
#![no_main]

use core::cell::Cell;

use cortex_m::peripheral::DWT;
use cortex_m_rt::entry;
use defmt_rtt as _;
use dinoedge_edge::buffers::{EdgeBuffers, chunk_len, rx_len, tx_len};
use dinoedge_edge::machine::{Edge, EdgeConfig, Peripherals};
use dinoedge_edge::port::{Clock, SourceInfo};
use dinoedge_edge::proto::PixelFormat;
use dinoedge_edge::source::{SpiCommands, SpiFrameGrabber};
use embedded_hal::digital::{ErrorType, InputPin, OutputPin};
use embedded_hal_bus::spi::ExclusiveDevice;
use panic_probe as _;
use stm32f4xx_hal::{pac, prelude::*, rcc::Config, serial::Serial};

/// 640x480 Gray8 in 4 KiB packets to the host, 1 KiB from it.
type Buffers = EdgeBuffers<{ tx_len(4096) }, { rx_len(1024) }, { chunk_len(4096) }>;

const SYSCLK_HZ: u32 = 100_000_000;

/// Microseconds from the DWT cycle counter, extended past its 43 s wrap (polled often enough:
/// every step of the main loop).
struct CycleClock {
    last: Cell<u32>,
    high: Cell<u64>,
}

impl Clock for CycleClock {
    fn now_us(&self) -> u64 {
        let now = DWT::cycle_count();
        if now < self.last.get() {
            self.high.set(self.high.get() + (1 << 32));
        }
        self.last.set(now);
        (self.high.get() + u64::from(now)) / u64::from(SYSCLK_HZ / 1_000_000)
    }
}

/// A button wired to ground with a pull-up: pressed reads low.
struct ActiveLow<P>(P);

impl<P: ErrorType> ErrorType for ActiveLow<P> {
    type Error = P::Error;
}

impl<P: InputPin> InputPin for ActiveLow<P> {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        self.0.is_low()
    }

    fn is_low(&mut self) -> Result<bool, Self::Error> {
        self.0.is_high()
    }
}

/// An LED lit when its pin is low.
struct ActiveLowLed<P>(P);

impl<P: ErrorType> ErrorType for ActiveLowLed<P> {
    type Error = P::Error;
}

impl<P: OutputPin> OutputPin for ActiveLowLed<P> {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.0.set_high()
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.0.set_low()
    }
}

/// embedded-io 0.7 over the HAL's nb serial (the HAL implements embedded-io 0.6, write only).
struct Uart<U: stm32f4xx_hal::serial::Instance> {
    serial: Serial<U, u8>,
    peeked: Option<u8>,
}

/// The UART failed (overrun, framing, noise, parity).
#[derive(Debug)]
struct UartError;

impl core::fmt::Display for UartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("UART error")
    }
}

impl core::error::Error for UartError {}

impl embedded_io::Error for UartError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl<U: stm32f4xx_hal::serial::Instance> embedded_io::ErrorType for Uart<U> {
    type Error = UartError;
}

impl<U: stm32f4xx_hal::serial::Instance> Uart<U> {
    fn poll_byte(&mut self) -> Result<Option<u8>, UartError> {
        if let Some(b) = self.peeked.take() {
            return Ok(Some(b));
        }
        match embedded_hal_nb::serial::Read::read(&mut self.serial) {
            Ok(b) => Ok(Some(b)),
            Err(nb::Error::WouldBlock) => Ok(None),
            Err(nb::Error::Other(_)) => Err(UartError),
        }
    }
}

impl<U: stm32f4xx_hal::serial::Instance> embedded_io::ReadReady for Uart<U> {
    fn read_ready(&mut self) -> Result<bool, UartError> {
        if self.peeked.is_none() {
            self.peeked = self.poll_byte()?;
        }
        Ok(self.peeked.is_some())
    }
}

impl<U: stm32f4xx_hal::serial::Instance> embedded_io::Read for Uart<U> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, UartError> {
        let mut n = 0;
        for slot in buf.iter_mut() {
            match self.poll_byte()? {
                Some(b) => {
                    *slot = b;
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }
}

impl<U: stm32f4xx_hal::serial::Instance> embedded_io::Write for Uart<U> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, UartError> {
        for &b in buf {
            nb::block!(embedded_hal_nb::serial::Write::write(&mut self.serial, b))
                .map_err(|_| UartError)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), UartError> {
        nb::block!(embedded_hal_nb::serial::Write::flush(&mut self.serial)).map_err(|_| UartError)
    }
}

#[entry]
fn main() -> ! {
    let (Some(dp), Some(mut cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        panic!("peripherals taken twice");
    };
    let mut rcc = dp.RCC.freeze(Config::hse(25.MHz()).sysclk(SYSCLK_HZ.Hz()));
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();

    let gpioa = dp.GPIOA.split(&mut rcc);
    let gpioc = dp.GPIOC.split(&mut rcc);

    let Ok(serial) = dp
        .USART2
        .serial((gpioa.pa2, gpioa.pa3), 921_600.bps(), &mut rcc)
    else {
        panic!("USART2 configuration");
    };
    let spi = dp.SPI1.spi(
        (Some(gpioa.pa5), Some(gpioa.pa6), Some(gpioa.pa7)),
        embedded_hal::spi::MODE_0,
        10.MHz(),
        &mut rcc,
    );
    let Ok(grabber_spi) = ExclusiveDevice::new_no_delay(spi, gpioa.pa4.into_push_pull_output());
    let source = SpiFrameGrabber::new(
        grabber_spi,
        SourceInfo {
            width: 640,
            height: 480,
            format: PixelFormat::Gray8,
            fps_milli: 30_000,
        },
        SpiCommands::default(),
    );

    let Some(buffers) = cortex_m::singleton!(: Buffers = Buffers::new()) else {
        panic!("buffers taken twice");
    };
    let config = EdgeConfig {
        device_id: heapless::String::try_from("f411-0001").unwrap_or_default(),
        ..EdgeConfig::default()
    };
    let mut edge = Edge::new(
        Peripherals {
            link: Uart {
                serial,
                peeked: None,
            },
            source,
            clock: CycleClock {
                last: Cell::new(0),
                high: Cell::new(0),
            },
            alarm: ActiveLowLed(gpioc.pc13.into_push_pull_output()),
            freeze: ActiveLow(gpioa.pa0.into_pull_up_input()),
            foot_switch: ActiveLow(gpioa.pa1.into_pull_up_input()),
        },
        config,
        buffers,
    );
    defmt::info!("dinoedge edge up");
    loop {
        if edge.step().is_err() {
            defmt::warn!("step failed; the edge has recovered");
        }
    }
}
