//! A stable-toolchain stand-in for the cargo-fuzz target (`fuzz/fuzz_targets/decode.rs`):
//! random and mutated inputs through every decoder, which must answer with errors, never
//! panic, and re-encode whatever they accept.

use bytes::Bytes;
use chat_transport_socketio::engineio::packet::{decode_payload, Packet as EioPacket};
use chat_transport_socketio::socketio::packet::{decode_text, Decoder};
use rand::{Rng, SeedableRng};

const SEEDS: &[&str] = &[
    "4hello\u{1e}4€\u{1e}bAQIDBA==",
    "2probe",
    "0{\"sid\":\"a\",\"upgrades\":[],\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":1}",
    "2/admin,456[\"project:delete\",123]",
    "51-[\"hello\",{\"_placeholder\":true,\"num\":0}]",
    "61-/admin,456[{\"_placeholder\":true,\"num\":0}]",
    "0/admin,{\"token\":\"123\"}",
    "4{\"message\":\"Not authorized\"}",
];

fn check(data: &[u8]) {
    if let Ok(packets) = decode_payload(data, 64) {
        for p in packets {
            assert_eq!(EioPacket::decode_text(&p.encode_text()).as_ref(), Ok(&p));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((mut p, count)) = decode_text(text, 8) {
            // The attachments would follow as binary messages.
            p.attachments = vec![Bytes::new(); count];
            let (encoded, _) = p.encode();
            assert!(decode_text(&encoded, 8).is_ok(), "{text:?} -> {encoded:?}");
        }
        let mut d = Decoder::new(8);
        for (i, part) in text.split('\u{1e}').enumerate() {
            let _ = if i % 2 == 0 {
                d.decode_text(part)
            } else {
                d.decode_binary(Bytes::copy_from_slice(part.as_bytes()))
            };
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..20_000 {
        let len = rng.gen_range(0..48);
        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        check(&data);
    }
}

#[test]
fn mutated_spec_packets_never_panic() {
    let alphabet = b"0123456789/,-[]{}\":_bx\x1e ";
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..50_000 {
        let mut data = SEEDS[rng.gen_range(0..SEEDS.len())].as_bytes().to_vec();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..=data.len());
            match rng.gen_range(0..3) {
                0 if i < data.len() => {
                    data.remove(i);
                }
                1 if i < data.len() => data[i] = alphabet[rng.gen_range(0..alphabet.len())],
                _ => data.insert(i, alphabet[rng.gen_range(0..alphabet.len())]),
            }
        }
        check(&data);
    }
}
