//! Any bytes as what a peer sends on a secure link: each packet goes through the decoder,
//! then a `Sealed` one through the channel's window and decryption, a `SecureHello` through
//! the host's side of the handshake and a `SecureWelcome` through the edge's. A message, a
//! typed error or a refusal for every input, never a panic.
#![no_main]

use dinoedge_proto::Message;
use dinoedge_proto::secure::{Initiator, LinkKey, NOISE_LEN, respond};
use dinoedge_proto::wire::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = LinkKey::new([0x42; 32]);
    let mut m1 = [0u8; NOISE_LEN];
    let Ok(initiator) = Initiator::start(&key, dinoedge_proto::PROTOCOL_VERSION, [1; 32], &mut m1)
    else {
        return;
    };
    let mut m2 = [0u8; NOISE_LEN];
    let Ok((mut channel, _)) = respond(&key, dinoedge_proto::PROTOCOL_VERSION, [2; 32], &m1, &mut m2)
    else {
        return;
    };
    let mut initiator = Some(initiator);
    let mut decoder = Decoder::new(vec![0u8; 8192]);
    let mut scratch = vec![0u8; 8192];
    let mut input = data;
    while let Some(result) = decoder.push(&mut input) {
        let Ok(msg) = result.and_then(|_| decoder.message()) else {
            continue;
        };
        match msg {
            Message::Sealed(sealed) => {
                let _ = channel.open_message(&sealed, &mut scratch);
            }
            Message::SecureHello(hello) => {
                let mut out = [0u8; NOISE_LEN];
                let _ = respond(&key, hello.protocol_version, [3; 32], hello.noise, &mut out);
            }
            Message::SecureWelcome(welcome) => {
                if let Some(i) = initiator.take() {
                    let _ = i.finish(welcome.noise);
                }
            }
            _ => {}
        }
    }
});
