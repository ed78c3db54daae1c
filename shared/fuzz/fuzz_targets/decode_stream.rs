//! Any bytes, cut into pieces the input chooses, through the stream decoder and the
//! reassembler: no panic, bounded memory, and every packet delivered re-encodes to bytes that
//! decode to the same message.
#![no_main]

use dinoedge_proto::reassembly::{Reassembler, ReassemblerConfig};
use dinoedge_proto::wire::{self, Decoder};
use dinoedge_proto::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the piece size, so splits vary with the input.
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece) + 1;
    let mut decoder = Decoder::new(vec![0u8; 2048]);
    let mut reassembler = Reassembler::new(ReassemblerConfig {
        max_frame_len: 1 << 16,
        max_chunk_len: 2048,
        timeout_us: 1000,
    });
    let mut reencoded = vec![0u8; wire::encode_buffer_len(4096)];
    for (i, mut input) in stream.chunks(piece).enumerate() {
        while let Some(result) = decoder.decode(&mut input) {
            let Ok(msg) = result else { continue };
            let bytes = wire::encode(&msg, &mut reencoded).expect("a decoded message re-encodes");
            let again = wire::Decoder::new(vec![0u8; bytes.len()])
                .decode(&mut &bytes[..])
                .map(|r| r.map(|m| format!("{m:?}")));
            assert_eq!(again, Some(Ok(format!("{msg:?}"))), "round trip changed the message");
            if let Message::Result(r) = &msg {
                if let Some(mask) = r.mask {
                    // Size the output only from a validated mask, as a receiver must.
                    if mask.validate().is_ok() {
                        let mut cells = vec![0u8; mask.cells()];
                        assert!(mask.decode_into(&mut cells).is_ok());
                    }
                }
            }
            reassembler.on_message(&msg, i as u64 * 100, &mut |_| {});
            assert!(reassembler.held_bytes() <= 1 << 16);
        }
        reassembler.poll(i as u64 * 100, &mut |_| {});
    }
});
