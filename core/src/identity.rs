//! Visitors the website already knows (issue 13): the main site passes the logged-in user's
//! `{id, name, email, hash}` to the widget, with `hash` = hex HMAC-SHA256 of the id under
//! `CHAT_IDENTITY_SECRET`, computed on the main site's server (the pattern Intercom and Chatwoot
//! use). A valid hash binds the visitor to `(site, user id)`: the same visitor id on every
//! device, so the same conversations. Without a hash the fields are kept as unverified and never
//! merge anything.
//!
//! ```
//! use chat_core::identity::{IdentitySecret, UserClaim};
//! let secret = IdentitySecret::new(b"identity-secret-of-32-bytes-or-more");
//! let hash = secret.hash("user-42");
//! let claim = UserClaim { id: "user-42".into(), name: None, email: None, hash: Some(hash) };
//! assert!(secret.check(&claim).unwrap());
//! ```

use crate::model::{VisitorId, VisitorProfile};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// Longest user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;
/// Longest user name, in characters.
pub const MAX_USER_NAME_CHARS: usize = 80;
/// Longest email address, in bytes (RFC 5321's path limit).
pub const MAX_USER_EMAIL_BYTES: usize = 254;

/// What the widget says about the user, as the main site gave it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserClaim {
    /// The main site's own user id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Hex HMAC-SHA256 of `id` under `CHAT_IDENTITY_SECRET`.
    pub hash: Option<String>,
}

impl UserClaim {
    /// Checks the fields' bounds (the hash is checked by [`IdentitySecret::check`]).
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.id.len() > MAX_USER_ID_BYTES {
            return Err(format!("user id must be 1..={MAX_USER_ID_BYTES} bytes"));
        }
        if self.id.chars().any(char::is_control) {
            return Err("user id must not hold control characters".into());
        }
        if let Some(name) = &self.name {
            if name.chars().count() > MAX_USER_NAME_CHARS || name.chars().any(char::is_control) {
                return Err(format!(
                    "user name must be at most {MAX_USER_NAME_CHARS} characters, no control characters"
                ));
            }
        }
        if let Some(email) = &self.email {
            let plausible = email.len() <= MAX_USER_EMAIL_BYTES
                && email
                    .split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
                && !email.chars().any(|c| c.is_control() || c.is_whitespace());
            if !plausible {
                return Err(format!(
                    "user email must look like name@domain, at most {MAX_USER_EMAIL_BYTES} bytes"
                ));
            }
        }
        Ok(())
    }

    /// The profile to store: verified or not.
    pub fn profile(&self, verified: bool) -> VisitorProfile {
        VisitorProfile {
            user_id: Some(self.id.clone()),
            name: self.name.clone().filter(|n| !n.trim().is_empty()),
            email: self.email.clone().filter(|e| !e.is_empty()),
            verified,
        }
    }
}

/// `CHAT_IDENTITY_SECRET`: the key the main site signs user ids with.
#[derive(Clone)]
pub struct IdentitySecret {
    key: Vec<u8>,
}

type HmacSha256 = Hmac<Sha256>;

impl IdentitySecret {
    /// Uses `key` as the HMAC key.
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// The hash the main site computes for `user_id` (lowercase hex), for tests and the CLI.
    pub fn hash(&self, user_id: &str) -> String {
        let mut mac = self.mac();
        mac.update(user_id.as_bytes());
        hex_lower(&mac.finalize().into_bytes())
    }

    /// Whether `claim` is verified: `Ok(false)` without a hash, `Ok(true)` with the right one,
    /// an error (which says how to compute it) with a wrong one. Compared in constant time.
    pub fn check(&self, claim: &UserClaim) -> Result<bool, String> {
        let Some(hash) = &claim.hash else {
            return Ok(false);
        };
        let bytes = decode_hex(hash.trim()).ok_or_else(wrong_hash)?;
        let mut mac = self.mac();
        mac.update(claim.id.as_bytes());
        mac.verify_slice(&bytes).map_err(|_| wrong_hash())?;
        Ok(true)
    }
}

fn wrong_hash() -> String {
    "user hash does not match the user id: compute hex HMAC-SHA256(user id, \
     CHAT_IDENTITY_SECRET) on your server"
        .into()
}

/// The visitor id of a known user of `site`: the same on every device and browser. It is a
/// version-8 UUID, which no other visitor id is (anonymous ones are random v4, imported ones
/// v5), so [`is_user_visitor`] tells a known user's id apart.
pub fn user_visitor_id(site: &str, user_id: &str) -> VisitorId {
    use sha2::Digest;
    let digest = Sha256::new()
        .chain_update(b"chat-gateway known user\n")
        .chain_update(site.as_bytes())
        .chain_update(b"\n")
        .chain_update(user_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    VisitorId(Uuid::new_v8(bytes))
}

/// Whether `id` is a known user's visitor id ([`user_visitor_id`]).
pub fn is_user_visitor(id: VisitorId) -> bool {
    id.0.get_version_num() == 8
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_hex_hmac_sha256_of_the_id() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let secret = IdentitySecret::new(b"Jefe");
        assert_eq!(
            secret.hash("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn right_hash_verifies_wrong_or_missing_does_not() {
        let secret = IdentitySecret::new(b"s3cret-s3cret-s3cret-s3cret-s3cret");
        let mut claim = UserClaim {
            id: "u1".into(),
            hash: Some(secret.hash("u1").to_uppercase()),
            ..UserClaim::default()
        };
        assert!(secret.check(&claim).unwrap(), "hex case does not matter");
        claim.hash = Some(secret.hash("u2"));
        assert!(matches!(secret.check(&claim), Err(why) if why.contains("HMAC")));
        claim.hash = Some("zz".into());
        assert!(secret.check(&claim).is_err());
        claim.hash = None;
        assert!(!secret.check(&claim).unwrap());
    }

    #[test]
    fn bounds_are_checked() {
        let ok = UserClaim {
            id: "u1".into(),
            name: Some("Ann".into()),
            email: Some("ann@example.com".into()),
            hash: None,
        };
        assert!(ok.validate().is_ok());
        for bad in [
            UserClaim {
                id: String::new(),
                ..ok.clone()
            },
            UserClaim {
                id: "x".repeat(129),
                ..ok.clone()
            },
            UserClaim {
                id: "a\nb".into(),
                ..ok.clone()
            },
            UserClaim {
                name: Some("n".repeat(81)),
                ..ok.clone()
            },
            UserClaim {
                email: Some("not-an-email".into()),
                ..ok.clone()
            },
            UserClaim {
                email: Some("a b@c".into()),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_visitor_ids_are_per_site_and_stable() {
        assert_eq!(user_visitor_id("s", "u"), user_visitor_id("s", "u"));
        assert_ne!(user_visitor_id("s", "u"), user_visitor_id("t", "u"));
        assert!(is_user_visitor(user_visitor_id("s", "u")));
        assert!(!is_user_visitor(VisitorId::new_random()));
    }
}
