//! The boot counter's bookkeeping, apart from the flash it is kept in: given what the log and
//! the carry hold, which number this boot takes and where it is written.
//!
//! No two boots may take the same number: it is half of the seed every handshake secret is
//! derived from (PROTOCOL.md §6.7), so a number taken twice repeats the secrets. Every rule here
//! follows from that:
//!
//! - The log is an append-only run of `u32` words in one flash sector; each boot programs the
//!   next erased word with one more than the highest number found. Erased flash reads
//!   `0xffff_ffff`, so that value is never written and ends the count.
//! - The number taken is one more than the highest word anywhere in the log or the carry, not
//!   one more than the last: flash fails only towards higher values (programming clears bits,
//!   erasing and charge loss set them), so a word cut short by a power loss, a sector left
//!   half-erased or a worn cell can only make a number skip ahead, never come back.
//! - Words are stored most significant byte first because the HAL programs byte by byte in
//!   address order: a word cut short keeps its high bytes right and its low bytes erased,
//!   landing less than 2^24 above the number meant, rather than near `0xffff_ffff`.
//! - When the log is full it is erased, which would forget the count. So before the erase the
//!   highest number is appended to the carry (words in another sector, never erased by the
//!   firmware): a power loss between the erase and the next write leaves the count in the
//!   carry. The carry's sector is the key block's; reflashing the key block (which erases that
//!   sector) is harmless because secrets are derived under the key, and a new key makes old
//!   numbers harmless.
//!
//! These are plain functions over byte slices so that they can be tested on a PC:
//! `rustc --edition 2024 --test src/boot_count.rs -o /tmp/boot_count && /tmp/boot_count`.

/// A word of erased flash.
pub const ERASED: u32 = u32::MAX;

/// Bytes of a word in the log and the carry.
pub const WORD: usize = 4;

/// The flash bytes that store `value` (most significant first, see the module's notes).
pub const fn encode(value: u32) -> [u8; WORD] {
    value.to_be_bytes()
}

/// The words of `area`, in order.
fn words(area: &[u8]) -> impl Iterator<Item = u32> + '_ {
    area.chunks_exact(WORD).map(|w| {
        let mut bytes = [0u8; WORD];
        bytes.copy_from_slice(w);
        u32::from_be_bytes(bytes)
    })
}

/// The word at `index` of `area` (`None` past its end).
pub fn word(area: &[u8], index: usize) -> Option<u32> {
    words(area).nth(index)
}

/// Where the next word of `area` goes: just past the last programmed one (`None` when the area
/// is full). Erased words before it (left by a half-done erase) stay unused: the log only
/// grows at its end.
fn next_free(area: &[u8]) -> Option<usize> {
    let len = area.len() / WORD;
    let used = words(area)
        .enumerate()
        .filter(|&(_, w)| w != ERASED)
        .map(|(i, _)| i + 1)
        .last()
        .unwrap_or(0);
    (used < len).then_some(used)
}

/// What this boot writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Program the number into the log's word `index`.
    Append {
        /// The word's index in the log.
        index: usize,
    },
    /// The log is full: program `highest` into the carry's word `carry_index`, erase the log,
    /// then program the number into the log's word 0.
    Rollover {
        /// The word's index in the carry.
        carry_index: usize,
        /// The highest number taken so far.
        highest: u32,
    },
}

/// This boot's number and how to record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The number this boot takes, once it is written.
    pub next: u32,
    /// How to write it.
    pub step: Step,
}

/// Why no number can be taken (the link must not start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum PlanError {
    /// The count reached `0xffff_fffe`: the next number cannot be stored.
    Exhausted,
    /// The log and the carry are both full.
    CarryFull,
}

/// The number this boot takes and where it goes, from the log's and the carry's bytes.
pub fn plan(log: &[u8], carry: &[u8]) -> Result<Plan, PlanError> {
    let highest = words(log)
        .chain(words(carry))
        .filter(|&w| w != ERASED)
        .max();
    // A unit that never booted starts at 1.
    let next = match highest {
        None => 1,
        Some(h) => h
            .checked_add(1)
            .filter(|&n| n != ERASED)
            .ok_or(PlanError::Exhausted)?,
    };
    let step = match next_free(log) {
        Some(index) => Step::Append { index },
        None => Step::Rollover {
            carry_index: next_free(carry).ok_or(PlanError::CarryFull)?,
            // A full log has programmed words, so there is a highest.
            highest: highest.unwrap_or(next - 1),
        },
    };
    Ok(Plan { next, step })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(words: &[u32], len: usize) -> Vec<u8> {
        let mut bytes = vec![0xff; len * WORD];
        for (i, w) in words.iter().enumerate() {
            bytes[i * WORD..(i + 1) * WORD].copy_from_slice(&encode(*w));
        }
        bytes
    }

    #[test]
    fn a_new_unit_starts_at_one_in_the_first_word() {
        let plan = plan(&area(&[], 8), &area(&[], 4)).unwrap();
        assert_eq!(plan.next, 1);
        assert_eq!(plan.step, Step::Append { index: 0 });
    }

    #[test]
    fn each_boot_appends_one_more() {
        let plan = plan(&area(&[1, 2, 3], 8), &area(&[], 4)).unwrap();
        assert_eq!(plan.next, 4);
        assert_eq!(plan.step, Step::Append { index: 3 });
    }

    #[test]
    fn a_full_log_carries_its_highest_then_restarts() {
        let log = area(&[1, 2, 3, 4], 4);
        let plan = plan(&log, &area(&[], 4)).unwrap();
        assert_eq!(plan.next, 5);
        assert_eq!(
            plan.step,
            Step::Rollover {
                carry_index: 0,
                highest: 4
            }
        );
    }

    #[test]
    fn power_lost_after_the_erase_continues_from_the_carry() {
        // Carried 4, erased, then nothing written: the next boot must not take 1 again.
        let plan = plan(&area(&[], 4), &area(&[4], 4)).unwrap();
        assert_eq!(plan.next, 5);
        assert_eq!(plan.step, Step::Append { index: 0 });
        // And later boots keep counting above it.
        let plan = super::plan(&area(&[5, 6], 4), &area(&[4], 4)).unwrap();
        assert_eq!(plan.next, 7);
    }

    #[test]
    fn a_torn_or_worn_word_only_skips_ahead() {
        // 3 was being written, MSB first, and only its first byte made it: 0x00ff_ffff.
        let mut log = area(&[1, 2], 8);
        log[8] = 0x00;
        let plan = plan(&log, &area(&[], 4)).unwrap();
        assert_eq!(plan.next, 0x0100_0000);
        assert_eq!(plan.step, Step::Append { index: 3 });
        // A half-erased log: some words erased, others with bits set; the highest still wins.
        let log = area(&[0xffff_0001, ERASED, 7, ERASED], 8);
        let plan = super::plan(&log, &area(&[9], 4)).unwrap();
        assert_eq!(plan.next, 0xffff_0002);
        assert_eq!(plan.step, Step::Append { index: 3 });
    }

    #[test]
    fn the_end_of_the_count_and_of_the_carry_refuse() {
        assert_eq!(
            plan(&area(&[0xffff_fffe], 4), &area(&[], 4)),
            Err(PlanError::Exhausted)
        );
        assert_eq!(
            plan(&area(&[1, 2], 2), &area(&[1, 1], 2)),
            Err(PlanError::CarryFull)
        );
    }

    #[test]
    fn words_read_back_as_written() {
        let log = area(&[0x0102_0304], 2);
        assert_eq!(&log[..4], &[1, 2, 3, 4]);
        assert_eq!(word(&log, 0), Some(0x0102_0304));
        assert_eq!(word(&log, 1), Some(ERASED));
        assert_eq!(word(&log, 2), None);
    }
}
