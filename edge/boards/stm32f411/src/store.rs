//! What the firmware keeps in flash besides its program, and the chip's own identity: the key
//! block, the boot counter and the unique device id.
//!
//! Flash map of the STM32F411CE (512 KiB; the program is kept below 0x0804_0000 by memory.x):
//!
//! ```text
//! 0x0800_0000  sectors 0-5  256 KiB  the program
//! 0x0804_0000  sector 6     128 KiB  boot counter log (boot_count.rs), erased by the firmware
//! 0x0806_0000  sector 7     128 KiB  key block (80 bytes, flashed by the maker), then from
//!                                    0x0806_1000 the boot counter's carry (never erased by
//!                                    the firmware)
//! ```

use dinoedge_edge::proto::MAX_ID;
use dinoedge_edge::proto::secure::{KEY_BLOCK_LEN, KeyBlockError, LinkKey, parse_key_block};
use stm32f4xx_hal::flash::{self, FlashExt};
use stm32f4xx_hal::pac::FLASH;

use crate::boot_count::{self, Plan, PlanError, Step, WORD};

/// Where the key block starts, from the start of flash (sector 7, 0x0806_0000).
pub const KEY_BLOCK_OFFSET: usize = 0x6_0000;

/// The boot counter's log: all of sector 6 (0x0804_0000, 128 KiB).
const LOG_OFFSET: usize = 0x4_0000;
/// The boot counter log's sector number.
const LOG_SECTOR: u8 = 6;
/// The boot counter log's length: its whole sector.
const LOG_LEN: usize = 128 * 1024;

/// The boot counter's carry: the rest of the key block's sector, 4 KiB past the key block so
/// that a longer key block one day still fits.
const CARRY_OFFSET: usize = KEY_BLOCK_OFFSET + 0x1000;
/// The carry's length: to the end of sector 7 (31 744 words, one per 32 767 boots).
const CARRY_LEN: usize = 128 * 1024 - 0x1000;

/// The chip's 96-bit unique device id (RM0383, "Device electronic signature").
const UID_ADDRESS: usize = 0x1fff_7a10;

/// Reads the key block: the link key and the unit's device id. Erased or damaged flash, or a
/// chip with less flash than the key block's address, is an error: the link must not start.
pub fn read_key_block(flash: &FLASH) -> Result<(LinkKey, heapless::String<MAX_ID>), KeyBlockError> {
    let block = flash
        .read()
        .get(KEY_BLOCK_OFFSET..KEY_BLOCK_OFFSET + KEY_BLOCK_LEN)
        // A chip whose flash ends before sector 7 has no key block at all.
        .ok_or(KeyBlockError::TooShort(0))?;
    parse_key_block(block)
}

/// Why the boot counter could not be advanced (the link must not start: a number taken again
/// would repeat handshake secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum CounterError {
    /// The count or its room is used up.
    Plan(PlanError),
    /// The flash is smaller than the sectors the counter needs, or they are not where this
    /// file expects them.
    Layout,
    /// Erasing or programming failed.
    Flash(FlashError),
    /// A word read back differs from what was programmed.
    Verify {
        /// The word's address.
        address: usize,
        /// What was programmed.
        wrote: u32,
        /// What reads back.
        read: u32,
    },
}

/// The flash controller's error flags, as the HAL reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum FlashError {
    /// Programming sequence error.
    Sequence,
    /// Programming parallelism error.
    Parallelism,
    /// Programming alignment error.
    Alignment,
    /// The sector is write protected.
    WriteProtection,
    /// Operation error.
    Operation,
}

impl From<flash::Error> for FlashError {
    fn from(e: flash::Error) -> Self {
        match e {
            flash::Error::ProgrammingSequence => FlashError::Sequence,
            flash::Error::ProgrammingParallelism => FlashError::Parallelism,
            flash::Error::ProgrammingAlignment => FlashError::Alignment,
            flash::Error::WriteProtection => FlashError::WriteProtection,
            flash::Error::Operation => FlashError::Operation,
        }
    }
}

/// Advances the boot counter and returns this boot's number, only once it is in flash and
/// reads back (boot_count.rs says how the number is chosen and why it never repeats).
pub fn advance_boot_counter(flash: &mut FLASH) -> Result<u32, CounterError> {
    check_layout(flash)?;
    let plan = {
        let all = flash.read();
        let log = all
            .get(LOG_OFFSET..LOG_OFFSET + LOG_LEN)
            .ok_or(CounterError::Layout)?;
        let carry = all
            .get(CARRY_OFFSET..CARRY_OFFSET + CARRY_LEN)
            .ok_or(CounterError::Layout)?;
        boot_count::plan(log, carry).map_err(CounterError::Plan)?
    };
    let Plan { next, step } = plan;
    match step {
        Step::Append { index } => program_word(flash, LOG_OFFSET + index * WORD, next)?,
        Step::Rollover {
            carry_index,
            highest,
        } => {
            defmt::info!("boot counter log full at {=u32}: carrying it over", highest);
            // The count goes into the carry first, so that a power loss during or after the
            // erase cannot take it away.
            program_word(flash, CARRY_OFFSET + carry_index * WORD, highest)?;
            clear_errors(flash);
            let erased = flash.unlocked().erase(LOG_SECTOR);
            reset_data_cache(flash);
            erased.map_err(|e| CounterError::Flash(e.into()))?;
            program_word(flash, LOG_OFFSET, next)?;
        }
    }
    Ok(next)
}

/// Checks that the counter's sectors are where this file puts them on this chip (a 256 KiB
/// STM32F411CC has no sector 6 or 7).
fn check_layout(flash: &FLASH) -> Result<(), CounterError> {
    let log = flash.sector(LOG_OFFSET).ok_or(CounterError::Layout)?;
    let key = flash.sector(KEY_BLOCK_OFFSET).ok_or(CounterError::Layout)?;
    let fits = log.number == LOG_SECTOR
        && log.offset == LOG_OFFSET
        && log.size == LOG_LEN
        && key.offset == KEY_BLOCK_OFFSET
        && key.size >= CARRY_OFFSET - KEY_BLOCK_OFFSET + CARRY_LEN;
    if fits {
        Ok(())
    } else {
        Err(CounterError::Layout)
    }
}

/// Programs `value` into the erased word at `offset` and reads it back.
fn program_word(flash: &mut FLASH, offset: usize, value: u32) -> Result<(), CounterError> {
    clear_errors(flash);
    let bytes = boot_count::encode(value);
    let programmed = flash.unlocked().program(offset, bytes.iter());
    // The data cache may hold the word as it was before (erased): drop it before reading back.
    reset_data_cache(flash);
    programmed.map_err(|e| CounterError::Flash(e.into()))?;
    let read = flash
        .read()
        .get(offset..offset + WORD)
        .and_then(|w| boot_count::word(w, 0))
        .ok_or(CounterError::Layout)?;
    if read == value {
        Ok(())
    } else {
        Err(CounterError::Verify {
            address: flash.address() + offset,
            wrote: value,
            read,
        })
    }
}

/// Clears the flash controller's sticky error flags, which the HAL reads after each operation
/// but never clears: an old error would otherwise fail the next operation.
pub fn clear_errors(flash: &FLASH) {
    flash.sr().write(|w| {
        w.operr().clear_bit_by_one();
        w.wrperr().clear_bit_by_one();
        w.pgaerr().clear_bit_by_one();
        w.pgperr().clear_bit_by_one();
        w.pgserr().clear_bit_by_one()
    });
}

/// Empties the ART accelerator's data cache, so that reads after an erase or a write see the
/// flash, not what was cached before (RM0383, "Adaptive real-time memory accelerator": the
/// cache is reset only while it is disabled).
fn reset_data_cache(flash: &FLASH) {
    let enabled = flash.acr().read().dcen().is_enabled();
    flash.acr().modify(|_, w| w.dcen().disabled());
    flash.acr().modify(|_, w| w.dcrst().reset());
    flash.acr().modify(|_, w| w.dcrst().no_reset());
    if enabled {
        flash.acr().modify(|_, w| w.dcen().enabled());
    }
}

/// The chip's 96-bit unique device id.
#[allow(unsafe_code)]
pub fn unique_id() -> [u8; 12] {
    let mut id = [0u8; 12];
    for (i, slot) in id.chunks_exact_mut(4).enumerate() {
        let address = (UID_ADDRESS + i * 4) as *const u32;
        // SAFETY: the unique id is three read-only, word-aligned words of system memory at
        // 0x1FFF_7A10, mapped on every STM32F4 (RM0383, "Device electronic signature"); a
        // volatile read of them has no side effect, and nothing in this program writes there.
        let word = unsafe { core::ptr::read_volatile(address) };
        slot.copy_from_slice(&word.to_le_bytes());
    }
    id
}

/// The seed this boot's handshake secrets are derived from: the unique id (bytes 0..12) and the
/// boot number (12..16, little-endian), the rest zero. `ephemeral_secret` hashes it with the
/// key and the attempt, so a plain layout is enough; what matters is that no two boots of any
/// unit share it.
pub fn boot_seed(uid: &[u8; 12], boot: u32) -> [u8; 32] {
    let mut seed = [0u8; 32];
    for (slot, byte) in seed
        .iter_mut()
        .zip(uid.iter().chain(boot.to_le_bytes().iter()))
    {
        *slot = *byte;
    }
    seed
}
