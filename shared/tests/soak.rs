//! Deterministic corruption soak: random bytes, then valid streams with bit flips, dropped
//! bytes and truncations. Counts what is recovered and checks that nothing corrupt is ever
//! delivered as valid.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::SplitMix;
use dinoedge_proto::wire::{self, Decoder};
use dinoedge_proto::*;

/// 2^20 (over 10^6) bytes of noise: every packet boundary, never a panic, and no packet at
/// all (a random frame passes CRC-32 with odds of 2^-32; this seed has none).
#[test]
fn random_bytes_yield_only_errors() {
    let mut rng = SplitMix(0xd170_ed9e);
    let mut noise = vec![0u8; 1 << 20];
    rng.fill(&mut noise);
    // Feed in random piece sizes, through a small buffer so oversize is exercised too.
    let mut decoder = Decoder::new(vec![0u8; 2048]);
    let mut pos = 0;
    let mut delivered = 0;
    let mut errors = 0;
    while pos < noise.len() {
        let take = (rng.below(5000) as usize + 1).min(noise.len() - pos);
        let mut input = &noise[pos..pos + take];
        pos += take;
        while let Some(r) = decoder.decode(&mut input) {
            match r {
                Ok(_) => delivered += 1,
                Err(_) => errors += 1,
            }
        }
    }
    let stats = *decoder.stats();
    println!("noise: {stats:?}");
    assert_eq!(delivered, 0);
    assert_eq!(stats.bytes, noise.len() as u64);
    assert!(
        errors > 3000,
        "only {errors} frames rejected in 1 MiB of noise"
    );
    assert_eq!(stats.rejected(), errors);
}

/// The messages of a realistic session: frames in chunks, with results, pings and logs in
/// between. Every message is unique (by seq, offset or id), so a delivered packet can be
/// matched against what was sent.
fn session(rng: &mut SplitMix, frames: u32) -> Vec<Message<'static>> {
    let mut msgs = Vec::new();
    for seq in 0..frames {
        let len = 64 * 48;
        let mut data = vec![0u8; len];
        rng.fill(&mut data);
        // Ultrasound-like: a third of the bytes are zero (black background).
        for b in data.iter_mut().step_by(3) {
            *b = 0;
        }
        let data: &'static [u8] = data.leak();
        msgs.push(Message::FrameStart(FrameStart {
            seq,
            capture_us: u64::from(seq) * 33_333,
            width: 64,
            height: 48,
            format: PixelFormat::Gray8,
            total_len: len as u32,
            frame_crc: Some(wire::crc32(data)),
            dropped_at_source: seq / 10,
            meta: FrameMeta::default(),
        }));
        for chunk in chunk::Chunks::new(seq, data, 500) {
            msgs.push(Message::FrameChunk(chunk));
        }
        msgs.push(Message::Ping(Ping {
            id: seq,
            sent_us: u64::from(seq),
        }));
        msgs.push(Message::Log(Log {
            level: LogLevel::Info,
            text: common::hs(&format!("frame {seq} sent")),
        }));
    }
    msgs
}

/// Which sent message a decoded one claims to be.
fn identity(m: &Message<'_>) -> (u8, u32, u32) {
    match m {
        Message::FrameStart(s) => (0, s.seq, 0),
        Message::FrameChunk(c) => (1, c.seq, c.offset),
        Message::Ping(p) => (2, p.id, 0),
        Message::Log(l) => (3, l.text.len() as u32, 0),
        _ => (9, 0, 0),
    }
}

#[test]
fn damaged_streams_never_deliver_corrupt_packets() {
    let mut rng = SplitMix(42);
    let msgs = session(&mut rng, 300);
    let mut sent = std::collections::HashMap::new();
    for m in &msgs {
        // Logs share identities by length; keep every variant for them.
        sent.entry(identity(m))
            .or_insert_with(Vec::new)
            .push(format!("{m:?}"));
    }
    let mut clean = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut boundaries = Vec::new();
    for m in &msgs {
        clean.extend_from_slice(wire::encode(m, &mut buf).unwrap());
        boundaries.push(clean.len());
    }

    let mut total_sent = 0usize;
    let mut total_recovered = 0usize;
    let mut total_damaged_packets = 0usize;
    for round in 0..40u64 {
        // Damage: bit flips at ~1e-4 per bit, dropped bytes, and cut-off packets.
        let mut damaged = Vec::with_capacity(clean.len());
        let mut damaged_packets = std::collections::BTreeSet::new();
        let mut packet = 0;
        let mut i = 0;
        while i < clean.len() {
            while boundaries[packet] <= i {
                packet += 1;
            }
            let roll = rng.below(1_000_000);
            if roll < 35 + 800 && i == boundaries[packet] - 1 {
                // Damage to a delimiter merges this packet with the next one.
                damaged_packets.insert(packet + 1);
            }
            if roll < 30 {
                // Drop this byte.
                damaged_packets.insert(packet);
            } else if roll < 35 {
                // Truncate: skip to the end of this packet's body, keep its delimiter.
                damaged_packets.insert(packet);
                i = boundaries[packet] - 1;
                continue;
            } else if roll < 35 + 800 {
                damaged.push(clean[i] ^ (1 << rng.below(8)));
                damaged_packets.insert(packet);
            } else {
                damaged.push(clean[i]);
            }
            i += 1;
        }
        let mut decoder = Decoder::new(vec![0u8; 4096]);
        let mut pos = 0;
        let mut recovered = 0;
        while pos < damaged.len() {
            let take = (rng.below(3000) as usize + 1).min(damaged.len() - pos);
            let mut input = &damaged[pos..pos + take];
            pos += take;
            while let Some(r) = decoder.decode(&mut input) {
                if let Ok(m) = r {
                    let shown = format!("{m:?}");
                    let candidates = sent.get(&identity(&m));
                    assert!(
                        candidates.is_some_and(|c| c.contains(&shown)),
                        "round {round}: corrupt packet delivered as valid: {shown:.200}"
                    );
                    recovered += 1;
                }
            }
        }
        // Every packet that no damage touched comes through.
        let untouched = msgs.len() - damaged_packets.len();
        assert!(
            recovered >= untouched,
            "round {round}: {recovered} recovered, {untouched} untouched"
        );
        total_sent += msgs.len();
        total_recovered += recovered;
        total_damaged_packets += damaged_packets.len();
    }
    println!(
        "soak: {total_sent} packets sent, {total_damaged_packets} damaged, {total_recovered} recovered intact, 0 corrupt delivered"
    );
    assert!(
        total_damaged_packets > 1000,
        "the soak must actually damage packets"
    );
}
