//! Splitting a frame into [`FrameChunk`]s that fit the negotiated packet size.

use crate::message::FrameChunk;

/// Yields the chunks of one frame, in order, each carrying at most `max_data` bytes.
///
/// The frame's bytes come from a slice here; an edge that streams line by line from its
/// capture peripheral builds the same chunks itself with [`chunk_ranges`].
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    seq: u32,
    data: &'a [u8],
    offset: usize,
    max_data: usize,
}

impl<'a> Chunks<'a> {
    /// Chunks of `data` for frame `seq`, each at most `max_data` bytes (at least 1).
    pub fn new(seq: u32, data: &'a [u8], max_data: usize) -> Self {
        Chunks {
            seq,
            data,
            offset: 0,
            max_data: max_data.max(1),
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = FrameChunk<'a>;

    fn next(&mut self) -> Option<FrameChunk<'a>> {
        let rest = self.data.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        let take = rest.len().min(self.max_data);
        let data = rest.get(..take)?;
        let offset = u32::try_from(self.offset).ok()?;
        self.offset += take;
        Some(FrameChunk {
            seq: self.seq,
            offset,
            data,
        })
    }
}

/// The `(offset, len)` of each chunk of a frame of `total_len` bytes cut into pieces of at most
/// `max_data` bytes (at least 1).
pub fn chunk_ranges(total_len: u32, max_data: u32) -> impl Iterator<Item = (u32, u32)> {
    let step = max_data.max(1);
    (0..total_len.div_ceil(step)).map(move |i| {
        let offset = i * step;
        (offset, step.min(total_len - offset))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_frame() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let chunks: Vec<_> = Chunks::new(3, &data, 300).collect();
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[3].offset, 900);
        assert_eq!(chunks[3].data.len(), 100);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.iter().copied()).collect();
        assert_eq!(joined, data);
        let ranges: Vec<_> = chunk_ranges(1000, 300).collect();
        assert_eq!(ranges, [(0, 300), (300, 300), (600, 300), (900, 100)]);
        assert_eq!(chunk_ranges(0, 300).count(), 0);
    }
}
