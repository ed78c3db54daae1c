//! Sealed packets with any counter and any data between genuine ones: the window and the tag
//! decide, never a panic, and whatever the garbage, the next genuine packet still opens (a
//! packet that fails its tag never moves the window).
#![no_main]

use dinoedge_proto::Sealed;
use dinoedge_proto::secure::{Initiator, LinkKey, NOISE_LEN, respond};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = LinkKey::new([0x42; 32]);
    let mut m1 = [0u8; NOISE_LEN];
    let Ok(initiator) = Initiator::start(&key, 3, [1; 32], &mut m1) else {
        return;
    };
    let mut m2 = [0u8; NOISE_LEN];
    let Ok((mut host, _)) = respond(&key, 3, [2; 32], &m1, &mut m2) else {
        return;
    };
    let Ok(mut edge) = initiator.finish(&m2) else {
        return;
    };
    let mut scratch = vec![0u8; 4096];
    let mut rest = data;
    while rest.len() >= 9 {
        let (head, tail) = rest.split_at(9);
        let counter = u64::from_le_bytes([
            head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
        ]);
        let len = usize::from(head[8]).min(tail.len());
        let (body, after) = tail.split_at(len);
        rest = after;
        let sealed = Sealed {
            counter,
            data: body,
        };
        let _ = host.open_message(&sealed, &mut scratch);
        // A genuine packet from the edge still opens after any amount of garbage.
        let mut buf = [0u8; 64];
        buf[..4].copy_from_slice(b"ping");
        if let Ok((c, n)) = edge.seal_in_place(&mut buf, 4) {
            assert_eq!(host.open_in_place(c, &mut buf[..n]), Ok(4));
        }
    }
});
