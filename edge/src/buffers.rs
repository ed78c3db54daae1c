//! The memory the edge works in, owned by the caller (a `static` in firmware) and sized by const
//! generics: nothing is allocated, nothing holds a whole frame.

use dinoedge_proto::wire;

/// Bytes of the transmit buffer for packets of up to `max_packet` bytes.
pub const fn tx_len(max_packet: usize) -> usize {
    wire::encode_buffer_len(max_packet)
}

/// Bytes of the receive buffer for packets of up to `max_packet` bytes.
pub const fn rx_len(max_packet: usize) -> usize {
    wire::max_wire_len(max_packet)
}

/// Bytes of pixel data per chunk in packets of up to `max_packet` bytes.
pub const fn chunk_len(max_packet: usize) -> usize {
    wire::chunk_capacity(max_packet)
}

/// Packet size to size the buffers for when the edge is to announce `announced` on a secure
/// link: sealing adds [`SEAL_OVERHEAD`](dinoedge_proto::secure::SEAL_OVERHEAD) bytes to each
/// packet, and the edge announces what is left.
pub const fn sealed(announced: usize) -> usize {
    announced + dinoedge_proto::secure::SEAL_OVERHEAD
}

/// Transmit, receive and chunk buffers, and the two the secure link seals and opens packets
/// in. Size them with [`tx_len`], [`rx_len`] and [`chunk_len`] of the packet sizes the edge
/// announces ([`sealed`] of them on a secure link, so that a 1 KiB minimum survives sealing):
///
/// ```
/// use dinoedge_edge::buffers::{EdgeBuffers, chunk_len, rx_len, sealed, tx_len};
/// // 4 KiB packets to the host, 1 KiB from it, sealed: about 19 KiB in all.
/// type Buffers =
///     EdgeBuffers<{ tx_len(sealed(4096)) }, { rx_len(sealed(1024)) }, { chunk_len(4096) }>;
/// assert!(core::mem::size_of::<Buffers>() < 19_000);
/// ```
#[derive(Debug)]
pub struct EdgeBuffers<const TX: usize, const RX: usize, const CHUNK: usize> {
    pub(crate) tx: [u8; TX],
    pub(crate) rx: [u8; RX],
    pub(crate) chunk: [u8; CHUNK],
    /// An outgoing message's bytes while they are sealed.
    pub(crate) seal: [u8; TX],
    /// An incoming sealed message's bytes while they are opened.
    pub(crate) open: [u8; RX],
}

impl<const TX: usize, const RX: usize, const CHUNK: usize> EdgeBuffers<TX, RX, CHUNK> {
    /// Zeroed buffers (usable in a `static`).
    pub const fn new() -> Self {
        EdgeBuffers {
            tx: [0; TX],
            rx: [0; RX],
            chunk: [0; CHUNK],
            seal: [0; TX],
            open: [0; RX],
        }
    }

    /// Largest packet the transmit buffer can hold (what the edge announces in `Hello`).
    pub const fn max_packet_tx() -> usize {
        // encode_buffer_len grows faster than its argument: take the largest packet it covers.
        let mut packet = TX;
        while packet > 0 && wire::encode_buffer_len(packet) > TX {
            packet -= 1;
        }
        packet
    }

    /// Largest packet the receive buffer can hold.
    pub const fn max_packet_rx() -> usize {
        let mut packet = RX;
        while packet > 0 && wire::max_wire_len(packet) > RX {
            packet -= 1;
        }
        packet
    }
}

impl<const TX: usize, const RX: usize, const CHUNK: usize> Default for EdgeBuffers<TX, RX, CHUNK> {
    fn default() -> Self {
        Self::new()
    }
}
