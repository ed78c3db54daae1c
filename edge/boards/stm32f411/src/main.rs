//! dinoedge firmware for an STM32F411 "Black Pill" (100 MHz Cortex-M4F).
//!
//! Wiring: USART2 to the host (PA2 TX, PA3 RX, 921600 baud, or a USB-UART bridge); an SPI frame
//! grabber on SPI1 (PA5 SCK, PA6 MISO, PA7 MOSI, PA4 chip select) with the command set of
//! `dinoedge_edge::source::SpiCommands::default()`; the alarm on the on-board LED (PC13, lit
//! when low); the freeze button on PA0 (the on-board KEY) and a foot switch on PA1, both to
//! ground. Logs go out over RTT (defmt).
//!
//! The link is always secure (PROTOCOL.md §6.7). At boot the firmware reads its key block from
//! flash sector 7, sets readout protection (feature `readout-protection`, on by default),
//! advances the boot counter in sector 6 and only then starts the link; when any of these
//! fails it logs why and blinks the LED instead, and never falls back to the clear. The key
//! block is flashed once per unit, apart from the program (README.md):
//!
//! ```sh
//! dinoedge keys new --device US-0042 --dir keys/
//! probe-rs download --chip STM32F411CEUx --binary-format bin --base-address 0x08060000 \
//!     keys/US-0042-<keyid>.keyblock
//! ```
#![no_std]
#![no_main]

#[cfg(feature = "bench-seal")]
mod bench;
mod boot_count;
#[cfg(feature = "readout-protection")]
mod readout;
mod store;

use core::cell::Cell;

use cortex_m::peripheral::DWT;
use cortex_m_rt::entry;
use defmt_rtt as _;
use dinoedge_edge::buffers::{EdgeBuffers, chunk_len, rx_len, sealed, tx_len};
use dinoedge_edge::machine::{Edge, EdgeConfig, EdgeSecurity, Peripherals};
use dinoedge_edge::port::{Clock, SourceInfo};
use dinoedge_edge::proto::{MAX_ID, PixelFormat};
use dinoedge_edge::source::{SpiCommands, SpiFrameGrabber};
use embedded_hal::digital::{ErrorType, InputPin, OutputPin};
use embedded_hal_bus::spi::ExclusiveDevice;
use panic_probe as _;
use stm32f4xx_hal::{pac, prelude::*, rcc::Config, serial::Serial};

/// 640x480 Gray8 in 4 KiB packets to the host, 1 KiB from it, sealed: the buffers take packets
/// `SEAL_OVERHEAD` bytes larger, so that what the edge announces after sealing is still 4 KiB
/// and 1 KiB (the protocol's minimum).
type Buffers = EdgeBuffers<{ tx_len(sealed(4096)) }, { rx_len(sealed(1024)) }, { chunk_len(4096) }>;

/// The system clock: the 25 MHz crystal through the PLL.
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

/// Why the link does not start. Each reason has its own LED pattern, for a unit without a probe
/// attached: that many short flashes, then a pause, over and over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
enum Refusal {
    /// No key block at 0x0806_0000, or a damaged one: two flashes.
    NoKeyBlock,
    /// The boot counter could not be advanced: three flashes.
    BootCounter,
    /// Readout protection could not be set: four flashes.
    #[cfg(feature = "readout-protection")]
    ReadoutProtection,
}

impl Refusal {
    /// Flashes per round.
    const fn flashes(self) -> u32 {
        match self {
            Refusal::NoKeyBlock => 2,
            Refusal::BootCounter => 3,
            #[cfg(feature = "readout-protection")]
            Refusal::ReadoutProtection => 4,
        }
    }
}

/// Never starts the link (not even in the clear): blinks the refusal's pattern on the LED and
/// repeats the reason in the log every round, for a probe attached later.
fn refuse<P: OutputPin>(led: &mut ActiveLowLed<P>, why: Refusal) -> ! {
    const MS: u32 = SYSCLK_HZ / 1000;
    loop {
        defmt::error!("secure link not started: {}", why);
        for _ in 0..why.flashes() {
            // A pin that cannot be driven leaves only the log to tell; keep trying.
            let _ = led.set_high();
            cortex_m::asm::delay(150 * MS);
            let _ = led.set_low();
            cortex_m::asm::delay(250 * MS);
        }
        cortex_m::asm::delay(1500 * MS);
    }
}

/// Everything the secure link needs from flash, in order: the key block (key and device id),
/// readout protection (feature `readout-protection`), then this boot's number, advanced in
/// flash before any handshake can use it.
fn secure_boot(
    flash: &mut pac::FLASH,
) -> Result<(EdgeSecurity, heapless::String<MAX_ID>), Refusal> {
    let (key, device_id) = store::read_key_block(flash).map_err(|e| {
        defmt::error!(
            "no usable key block at 0x0806_0000: {}; flash one (README.md)",
            e
        );
        Refusal::NoKeyBlock
    })?;
    defmt::info!("key {} for device {=str}", key.id(), device_id.as_str());

    #[cfg(feature = "readout-protection")]
    match readout::protect_readout(flash) {
        Ok(readout::Readout::AlreadyProtected) => {}
        Ok(readout::Readout::ProtectedNow) => {
            defmt::warn!("readout protection set to level 1; power-cycle to put it in force");
        }
        Err(e) => {
            defmt::error!("readout protection could not be set: {}", e);
            return Err(Refusal::ReadoutProtection);
        }
    }
    #[cfg(not(feature = "readout-protection"))]
    defmt::warn!("readout protection left as it is (development build): the key can be read out");

    let boot = store::advance_boot_counter(flash).map_err(|e| {
        defmt::error!("boot counter not advanced: {}", e);
        Refusal::BootCounter
    })?;
    defmt::info!("boot {=u32}", boot);
    let security = EdgeSecurity {
        key,
        boot_seed: store::boot_seed(&store::unique_id(), boot),
    };
    Ok((security, device_id))
}

/// Boots: clocks and pins, the benchmark (feature `bench-seal`), the secure link's key, readout
/// protection and boot counter (or a refusal), then the edge's main loop.
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
    let mut alarm = ActiveLowLed(gpioc.pc13.into_push_pull_output());

    #[cfg(feature = "bench-seal")]
    bench_seal::run();

    let mut flash = dp.FLASH;
    let (security, device_id) = match secure_boot(&mut flash) {
        Ok(secured) => secured,
        Err(why) => refuse(&mut alarm, why),
    };

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
        device_id,
        ..EdgeConfig::default()
    };
    let mut edge = Edge::new_secure(
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
            alarm,
            freeze: ActiveLow(gpioa.pa0.into_pull_up_input()),
            foot_switch: ActiveLow(gpioa.pa1.into_pull_up_input()),
        },
        config,
        security,
        buffers,
    );
    defmt::info!("dinoedge edge up, secure link starting");
    loop {
        if edge.step().is_err() {
            defmt::warn!("step failed; the edge has recovered");
        }
    }
}

/// The secure link's cost on this chip, at boot (feature `bench-seal`): cycles per 4 KiB
/// packet in the clear and sealed, and per handshake half, from the DWT cycle counter.
#[cfg(feature = "bench-seal")]
mod bench_seal {
    use cortex_m::peripheral::DWT;

    use crate::SYSCLK_HZ;
    use crate::bench::{self, BenchBuffers, Meter, Settings, Span};

    /// Packets per run: enough that the loop's own cost and the counter reads vanish.
    const PACKETS: u32 = 64;
    /// Handshakes per run.
    const HANDSHAKES: u32 = 4;

    /// Operations and cycles per span.
    struct DwtMeter {
        totals: [(u32, u64); Span::ALL.len()],
    }

    impl Meter for DwtMeter {
        fn measure<R>(&mut self, span: Span, ops: u32, work: impl FnOnce() -> R) -> R {
            let start = DWT::cycle_count();
            let result = work();
            // Wraps after 43 s at 100 MHz: far longer than any one measurement.
            let cycles = DWT::cycle_count().wrapping_sub(start);
            if let Some((n, total)) = self.totals.get_mut(span.index()) {
                *n += ops;
                *total += u64::from(cycles);
            }
            result
        }
    }

    /// Runs the benchmark and logs its results.
    pub fn run() {
        let Some(buffers) = cortex_m::singleton!(: BenchBuffers = BenchBuffers::new()) else {
            defmt::error!("bench-seal: buffers taken twice");
            return;
        };
        let mut meter = DwtMeter {
            totals: [(0, 0); Span::ALL.len()],
        };
        let settings = Settings {
            packets: PACKETS,
            handshakes: HANDSHAKES,
        };
        defmt::info!(
            "bench-seal: {=u32} handshakes, {=u32} packets of 4 KiB",
            HANDSHAKES,
            PACKETS
        );
        match bench::run(&mut meter, buffers, settings) {
            Ok(sizes) => defmt::info!(
                "bench-seal: chunk {=usize} bytes of pixels, {=usize} bytes on the wire in the clear, {=usize} sealed",
                sizes.chunk_data,
                sizes.clear_wire,
                sizes.sealed_wire
            ),
            Err(e) => {
                defmt::error!("bench-seal failed: {}", defmt::Debug2Format(&e));
                return;
            }
        }
        for span in Span::ALL {
            let Some(&(ops, cycles)) = meter.totals.get(span.index()) else {
                continue;
            };
            let per_op = cycles / u64::from(ops.max(1));
            defmt::info!(
                "bench-seal: {=str}: {=u64} cycles each ({=u64} us at {=u32} MHz, {=u32} runs)",
                span.name(),
                per_op,
                per_op / u64::from(SYSCLK_HZ / 1_000_000),
                SYSCLK_HZ / 1_000_000,
                ops
            );
        }
    }
}
