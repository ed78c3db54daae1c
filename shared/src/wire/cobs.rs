//! Consistent Overhead Byte Stuffing, in place, with bulk copies.
//!
//! Written here rather than taken from the `cobs` crate because the codec encodes in place
//! (the postcard bytes are serialised straight into the output buffer and stuffed there, with
//! no second buffer) and finds zeros with `memchr`, copying whole blocks; `cobs` works a byte at
//! a time through a separate output buffer (see the `codec` benchmark for the difference).

/// Longest run of non-zero bytes one COBS block carries.
const MAX_BLOCK: usize = 254;

/// Bytes reserved in front of a payload so that [`encode_in_place`] never overtakes its
/// input, for a buffer of `buf_len` bytes.
pub(crate) const fn headroom(buf_len: usize) -> usize {
    buf_len / MAX_BLOCK + 2
}

/// Largest COBS encoding of `len` bytes, without the delimiter.
pub const fn max_encoded_len(len: usize) -> usize {
    len + len / MAX_BLOCK + 1
}

/// Stuffs `buf[start..start + len]` and writes the result from `buf[0]`; returns its length.
///
/// Needs `start >= len / 254 + 2` (see [`headroom`]), so that each write lands at or before
/// the next byte still to be read. The caller guarantees the range lies inside `buf`.
pub(crate) fn encode_in_place(buf: &mut [u8], start: usize, len: usize) -> Option<usize> {
    let end = start.checked_add(len)?;
    if end > buf.len() || start < len / MAX_BLOCK + 2 {
        return None;
    }
    let mut read = start;
    let mut write = 0usize;
    loop {
        let limit = end.min(read + MAX_BLOCK);
        let block = buf.get(read..limit)?;
        match find_zero(block) {
            Some(run) => {
                *buf.get_mut(write)? = run as u8 + 1;
                move_forward(buf, read, write + 1, run)?;
                write += 1 + run;
                read += run + 1;
                // Each further zero of a run ends an empty block: one 0x01 apiece, written in
                // bulk because images have long runs of black.
                let zeros = buf.get(read..end)?.iter().take_while(|&&b| b == 0).count();
                buf.get_mut(write..write + zeros)?.fill(1);
                write += zeros;
                read += zeros;
                if read == end {
                    // The payload ended in a zero: an empty last block stands for it.
                    *buf.get_mut(write)? = 1;
                    return Some(write + 1);
                }
            }
            None => {
                let run = limit - read;
                *buf.get_mut(write)? = if run == MAX_BLOCK {
                    0xff
                } else {
                    run as u8 + 1
                };
                move_forward(buf, read, write + 1, run)?;
                write += 1 + run;
                read = limit;
                if read == end {
                    return Some(write);
                }
            }
        }
    }
}

/// Position of the first zero in `block`: a plain scan for the first bytes, where zeros come
/// thick (image borders), `memchr` beyond them, where they are rare.
fn find_zero(block: &[u8]) -> Option<usize> {
    const SCAN: usize = 16;
    if let Some(at) = block.iter().take(SCAN).position(|&b| b == 0) {
        return Some(at);
    }
    memchr::memchr(0, block.get(SCAN..)?).map(|at| at + SCAN)
}

/// Copies `len` bytes from `from` to `to <= from` within `buf`; short runs by hand, since a
/// `memmove` call costs more than the copy.
fn move_forward(buf: &mut [u8], from: usize, to: usize, len: usize) -> Option<()> {
    if len > 16 {
        buf.get(from..from + len)?;
        buf.copy_within(from..from + len, to);
    } else {
        for i in 0..len {
            *buf.get_mut(to + i)? = *buf.get(from + i)?;
        }
    }
    Some(())
}

/// Unstuffs `buf` (one COBS frame, without its delimiter) in place; returns the decoded length,
/// or the offset of the first code byte that points past the end of the frame.
///
/// Zeros never reach here: the stream decoder cuts frames at zeros.
pub(crate) fn decode_in_place(buf: &mut [u8]) -> Result<usize, usize> {
    let len = buf.len();
    let mut read = 0usize;
    let mut write = 0usize;
    while read < len {
        let code = buf.get(read).copied().ok_or(read)?;
        if code == 1 {
            // A run of empty blocks is a run of zeros (none after the frame's last block).
            let ones = buf
                .get(read..)
                .ok_or(read)?
                .iter()
                .take_while(|&&b| b == 1)
                .count();
            read += ones;
            let zeros = if read < len { ones } else { ones - 1 };
            buf.get_mut(write..write + zeros).ok_or(read)?.fill(0);
            write += zeros;
            continue;
        }
        let run = usize::from(code).saturating_sub(1);
        let from = read + 1;
        let to = from + run;
        if to > len || code == 0 {
            return Err(read);
        }
        move_forward(buf, from, write, run).ok_or(read)?;
        write += run;
        read = to;
        if code != 0xff && read < len {
            *buf.get_mut(write).ok_or(read)? = 0;
            write += 1;
        }
    }
    Ok(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(data: &[u8]) -> Vec<u8> {
        let room = headroom(data.len() + 300);
        let mut buf = vec![0u8; room + data.len() + 300];
        buf[room..room + data.len()].copy_from_slice(data);
        let n = encode_in_place(&mut buf, room, data.len()).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn known_vectors() {
        // Vectors from the COBS paper and its common test suites.
        let cases: &[(&[u8], &[u8])] = &[
            (&[], &[0x01]),
            (&[0x00], &[0x01, 0x01]),
            (&[0x00, 0x00], &[0x01, 0x01, 0x01]),
            (&[0x11, 0x22, 0x00, 0x33], &[0x03, 0x11, 0x22, 0x02, 0x33]),
            (&[0x11, 0x22, 0x33, 0x44], &[0x05, 0x11, 0x22, 0x33, 0x44]),
            (&[0x11, 0x00, 0x00, 0x00], &[0x02, 0x11, 0x01, 0x01, 0x01]),
        ];
        for (raw, stuffed) in cases {
            assert_eq!(encode(raw), *stuffed, "encoding {raw:02x?}");
            let mut buf = stuffed.to_vec();
            let n = decode_in_place(&mut buf).unwrap();
            assert_eq!(&buf[..n], *raw, "decoding {stuffed:02x?}");
        }
    }

    #[test]
    fn long_blocks() {
        let raw: Vec<u8> = (1..=254u8).collect();
        let enc = encode(&raw);
        assert_eq!(enc.len(), 255);
        assert_eq!(enc[0], 0xff);
        let raw2: Vec<u8> = (0..600u32).map(|i| (i % 255) as u8 + 1).collect();
        for data in [raw, raw2, vec![0u8; 600], vec![7u8; 254 * 3]] {
            let enc = encode(&data);
            assert!(enc.len() <= max_encoded_len(data.len()));
            assert!(!enc.contains(&0));
            let mut buf = enc.clone();
            let n = decode_in_place(&mut buf).unwrap();
            assert_eq!(&buf[..n], &data[..]);
        }
        // A trailing empty block after a full one is accepted too.
        let mut with_tail = encode(&(1..=254u8).collect::<Vec<_>>());
        with_tail.push(0x01);
        let n = decode_in_place(&mut with_tail).unwrap();
        assert_eq!(n, 254);
    }

    #[test]
    fn bad_code_is_an_error() {
        let mut buf = [0x05, 0x11, 0x22];
        assert_eq!(decode_in_place(&mut buf), Err(0));
        let mut buf = [0x02, 0x11, 0x04, 0x01];
        assert_eq!(decode_in_place(&mut buf), Err(2));
    }
}
