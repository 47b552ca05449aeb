//! Feeds arbitrary bytes to the raw chat protocol's frame decoder (what the WebSocket transport
//! runs on every text frame) and to the long-polling request parsers (a `POST ?sid` body and a
//! query string). Run with `scripts/fuzz-smoke` (or `cargo fuzz run raw` from
//! `transports/polling`).
#![no_main]

use chat_core::protocol::decode_client_frame;
use chat_transport_polling::{parse_submission, query_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(frame) = decode_client_frame(text) {
            // A decoded command re-encodes to JSON that decodes to the same command.
            let mut value = serde_json::to_value(&frame.command).expect("commands serialize");
            if let Some(id) = &frame.id {
                value["id"] = serde_json::Value::String(id.clone());
            }
            let again = decode_client_frame(&value.to_string()).expect("re-encoded frame decodes");
            assert_eq!(again, frame);
        }
        for name in ["sid", "cursor", "site", "token"] {
            let _ = query_value(text, name);
        }
    }
    match parse_submission(data, 16) {
        Ok(frames) => assert!(frames.len() <= 16),
        Err(refusal) => assert!(refusal.status == 400 || refusal.status == 413),
    }
});
