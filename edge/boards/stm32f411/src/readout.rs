//! Readout protection (feature `readout-protection`): at level 1 no debug probe can read the
//! flash, so the key block cannot be copied out of a unit that leaves the bench.
//!
//! Level 1 is undone only by a regression to level 0, which mass-erases the flash, key block
//! included (README.md). Level 2 would be permanent and would shut the debug port for good: it
//! is never set here.

use stm32f4xx_hal::pac::FLASH;

use crate::store::{FlashError, clear_errors};

/// The option bytes' first key (RM0383, "Option bytes").
const OPTKEY1: u32 = 0x0819_2a3b;
/// The option bytes' second key.
const OPTKEY2: u32 = 0x4c5d_6e7f;

/// The chip's readout protection, after [`protect_readout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum Readout {
    /// It was at level 1 (or 2) already.
    AlreadyProtected,
    /// It was at level 0 and is now set to level 1, from the next reset.
    ProtectedNow,
}

/// Why readout protection could not be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum ReadoutError {
    /// The option control register stayed locked after its keys were written.
    Locked,
    /// The option bytes' programming reported an error.
    Flash(FlashError),
}

/// Sets readout protection to level 1 if it is at level 0: from the next reset a debug probe can
/// no longer read the flash, the key block included. Never level 2.
pub fn protect_readout(flash: &FLASH) -> Result<Readout, ReadoutError> {
    if !flash.optcr().read().rdp().is_level0() {
        return Ok(Readout::AlreadyProtected);
    }
    wait_idle(flash);
    clear_errors(flash);
    // RM0383, "Modifying user option bytes": the option control register is unlocked by its
    // two keys, in order.
    if flash.optcr().read().optlock().is_locked() {
        flash.optkeyr().write(|w| w.optkeyr().set(OPTKEY1));
        flash.optkeyr().write(|w| w.optkeyr().set(OPTKEY2));
    }
    if flash.optcr().read().optlock().is_locked() {
        return Err(ReadoutError::Locked);
    }
    // Only the RDP byte changes (0x00: level 1, anything but 0xAA and 0xCC would do); the
    // other option bytes (write protection, brown-out level, watchdog) are kept.
    flash.optcr().modify(|_, w| w.rdp().level1());
    flash.optcr().modify(|_, w| w.optstrt().set_());
    wait_idle(flash);
    let sr = flash.sr().read();
    let failed = if sr.wrperr().bit_is_set() {
        Some(FlashError::WriteProtection)
    } else if sr.operr().bit_is_set() {
        Some(FlashError::Operation)
    } else if sr.pgserr().bit_is_set() {
        Some(FlashError::Sequence)
    } else {
        None
    };
    flash.optcr().modify(|_, w| w.optlock().set_());
    match failed {
        Some(e) => Err(ReadoutError::Flash(e)),
        None => Ok(Readout::ProtectedNow),
    }
}

/// Waits for the flash controller to finish what it is doing.
fn wait_idle(flash: &FLASH) {
    while flash.sr().read().bsy().bit_is_set() {}
}
