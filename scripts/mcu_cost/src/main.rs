//! The board's secure-link benchmark (`edge/boards/stm32f411/src/bench.rs`, the same file) run
//! under QEMU's `mps2-an386` Cortex-M4, timed by instruction counts instead of cycles.
//!
//! QEMU does not model the DWT cycle counter, so each measurement is bracketed by two calls of
//! [`dinoedge_mark`]: `scripts/mcu_cost.sh` loads a TCG plugin (`insn_marks.c`) that counts
//! every instruction executed and prints the count each time that function is entered. The
//! program prints, over semihosting, one `span NAME OPS` line per measurement, in order; the
//! script pairs the n-th line with marks 2n and 2n+1.
#![no_std]
#![no_main]

// The board's totals use `Span::ALL` and `Span::index`; the marks here need neither.
#[allow(dead_code)]
#[path = "../../../edge/boards/stm32f411/src/bench.rs"]
mod bench;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};

use bench::{BenchBuffers, Meter, Settings, Span};

/// The board's numbers (`bench-seal` in its `main.rs`).
const SETTINGS: Settings = Settings {
    packets: 64,
    handshakes: 4,
};

/// Where the instruction-counting plugin looks: it prints its count each time this function
/// starts. Never inlined, and with a side effect, so that every call stays a call.
#[inline(never)]
fn dinoedge_mark(span: Span, end: bool) {
    core::hint::black_box((span, end));
    cortex_m::asm::nop();
}

/// Brackets each measurement with marks and names it on the semihosting console.
struct MarkMeter;

impl Meter for MarkMeter {
    fn measure<R>(&mut self, span: Span, ops: u32, work: impl FnOnce() -> R) -> R {
        dinoedge_mark(span, false);
        let result = work();
        dinoedge_mark(span, true);
        hprintln!("span {} {}", span.name(), ops);
        result
    }
}

/// Runs the benchmark once, prints what the script needs and ends the emulator (exit status 0
/// only when every measurement ran and the check passed).
#[entry]
fn main() -> ! {
    let Some(buffers) = cortex_m::singleton!(: BenchBuffers = BenchBuffers::new()) else {
        hprintln!("error: buffers taken twice");
        quit(false);
    };
    match bench::run(&mut MarkMeter, buffers, SETTINGS) {
        Ok(sizes) => {
            hprintln!(
                "sizes chunk_data={} clear_wire={} sealed_wire={}",
                sizes.chunk_data,
                sizes.clear_wire,
                sizes.sealed_wire
            );
            quit(true);
        }
        Err(e) => {
            hprintln!("error: {:?}", e);
            quit(false);
        }
    }
}

/// Reports a panic on the console and ends the emulator with a failure.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("panic: {}", info);
    quit(false);
}

/// Ends the emulator through semihosting with success or failure as its exit status.
fn quit(success: bool) -> ! {
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Not reached under QEMU, which stops at the exit call.
    loop {
        cortex_m::asm::wfi();
    }
}
