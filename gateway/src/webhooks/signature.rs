//! The signature of a webhook request, as Stripe and GitHub sign theirs: an HMAC-SHA256 over
//! the timestamp and the raw body, so a receiver can tell the request came from this gateway,
//! was not altered, and is recent (a replayed request carries an old timestamp, which cannot be
//! changed without breaking the signature). `docs/webhooks.md` shows how to verify it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature: `sha256=<lower-case hex>`.
pub const SIGNATURE_HEADER: &str = "X-Chat-Signature";
/// The header carrying the Unix time (seconds) the signature was made at.
pub const TIMESTAMP_HEADER: &str = "X-Chat-Timestamp";

/// `sha256=hex(HMAC-SHA256(secret, "<timestamp>.<body>"))`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_timestamp_and_the_body() {
        // Computed independently: Python's
        // hmac.new(b"Jefe", b"1700000000.what do ya want for nothing?", "sha256").hexdigest().
        let body = b"what do ya want for nothing?";
        assert_eq!(
            sign(b"Jefe", 1_700_000_000, body),
            "sha256=1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e"
        );
        assert_ne!(
            sign(b"Jefe", 1_700_000_001, body),
            sign(b"Jefe", 1_700_000_000, body),
            "the timestamp is signed"
        );
    }
}
