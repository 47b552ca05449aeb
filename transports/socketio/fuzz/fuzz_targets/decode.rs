//! Feeds arbitrary bytes to the Engine.IO payload decoder and the Socket.IO packet decoder.
//! Run with `cargo +nightly fuzz run decode` from `transports/socketio`.
#![no_main]

use bytes::Bytes;
use chat_transport_socketio::engineio::packet::{decode_payload, Packet as EioPacket};
use chat_transport_socketio::engineio::WsFrame;
use chat_transport_socketio::socketio::packet::{decode_text, Decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Engine.IO: a polling body, and the same bytes as WebSocket frames.
    if let Ok(packets) = decode_payload(data, 64) {
        for p in packets {
            // Whatever decodes must re-encode and decode to the same packet.
            let again = EioPacket::decode_text(&p.encode_text());
            assert_eq!(again.as_ref(), Ok(&p));
        }
    }
    let _ = EioPacket::from_ws_frame(WsFrame::Binary(Bytes::copy_from_slice(data)));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = EioPacket::from_ws_frame(WsFrame::Text(text.to_owned()));

        // Socket.IO: one text packet, then the stateful decoder over `\x1e`-split parts,
        // odd parts fed as binary attachments.
        if let Ok((mut p, count)) = decode_text(text, 8) {
            // The attachments would follow as binary messages.
            p.attachments = vec![Bytes::new(); count];
            let (encoded, _) = p.encode();
            assert!(decode_text(&encoded, 8).is_ok(), "{encoded:?}");
        }
        let mut decoder = Decoder::new(8);
        for (i, part) in text.split('\u{1e}').enumerate() {
            let _ = if i % 2 == 0 {
                decoder.decode_text(part)
            } else {
                decoder.decode_binary(Bytes::copy_from_slice(part.as_bytes()))
            };
        }
    }
});
