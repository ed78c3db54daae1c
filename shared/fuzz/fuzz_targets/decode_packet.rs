//! Any bytes as one unstuffed packet body: a message or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dinoedge_proto::wire::decode_packet(data);
});
