//! The HTTP API's keys and the sites each may reach (issue 13): `CHAT_API_KEY` reaches every
//! site; each entry of `CHAT_API_KEYS` (`<sites>:<key>`, comma-separated, `<sites>` being `*` or
//! site ids joined by `|`) reaches its sites only. A key is compared in constant time and never
//! printed, not even by `Debug`.

use chat_core::model::Sites;
use std::fmt;

/// Shortest key accepted: a guessable key would open the whole API.
pub const MIN_KEY_BYTES: usize = 16;

/// The configured keys.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<(String, Sites)>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(_, sites)| format!("<key>:{sites}")))
            .finish()
    }
}

impl ApiKeys {
    /// `CHAT_API_KEY` (every site) and `CHAT_API_KEYS` (`sites:key,…`). The error names the
    /// entry by position, never by its key.
    pub fn parse(every_site: Option<&str>, scoped: Option<&str>) -> Result<Self, String> {
        let mut keys = Vec::new();
        if let Some(key) = every_site.filter(|k| !k.is_empty()) {
            keys.push((key.to_owned(), Sites::All));
        }
        for (n, entry) in scoped
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let Some((sites, key)) = entry.split_once(':') else {
                return Err(format!(
                    "entry {} has no `:`; write <sites>:<key>, e.g. shop1|shop2:<key>",
                    n + 1
                ));
            };
            let sites = Sites::parse(sites).map_err(|why| format!("entry {}: {why}", n + 1))?;
            if key.len() < MIN_KEY_BYTES {
                return Err(format!(
                    "entry {}: the key has {} bytes; use at least {MIN_KEY_BYTES} random ones",
                    n + 1,
                    key.len()
                ));
            }
            if keys.iter().any(|(k, _)| k == key) {
                return Err(format!("entry {}: the same key is listed twice", n + 1));
            }
            keys.push((key.to_owned(), sites));
        }
        Ok(Self { keys })
    }

    /// The sites `presented` reaches, when it is one of the keys. Every key is compared, in
    /// constant time, so the answer's timing says nothing about which key came close.
    pub fn sites_of(&self, presented: &str) -> Option<&Sites> {
        let mut found = None;
        for (key, sites) in &self.keys {
            if constant_time_eq(presented.as_bytes(), key.as_bytes()) {
                found = Some(sites);
            }
        }
        found
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1-0123456789abcdef";
    const K2: &str = "k2-0123456789abcdef";

    #[test]
    fn every_site_and_scoped_keys() {
        let keys = ApiKeys::parse(
            Some("all-0123456789abcdef"),
            Some(&format!("shop1|shop2:{K1}, shop3:{K2}")),
        )
        .unwrap();
        assert_eq!(keys.sites_of("all-0123456789abcdef"), Some(&Sites::All));
        let k1 = keys.sites_of(K1).unwrap();
        assert!(k1.contains("shop1") && k1.contains("shop2") && !k1.contains("shop3"));
        assert_eq!(keys.sites_of(K2).unwrap().to_string(), "shop3");
        assert_eq!(keys.sites_of("k1-0123456789abcdeX"), None);
        assert_eq!(keys.sites_of(""), None);
        assert!(ApiKeys::parse(None, None).unwrap().is_empty());
    }

    #[test]
    fn bad_entries_are_refused_without_printing_the_key() {
        for (value, why) in [
            ("no-colon-0123456789", "no `:`"),
            ("shop 1:k1-0123456789abcdef", "not a site id"),
            ("shop1:short", "at least"),
            ("a:k1-0123456789abcdef,b:k1-0123456789abcdef", "twice"),
        ] {
            let err = ApiKeys::parse(None, Some(value)).unwrap_err();
            assert!(err.contains(why), "{value}: {err}");
            assert!(!err.contains("0123456789"), "{err}");
        }
        let debug = format!("{:?}", ApiKeys::parse(Some(K1), None).unwrap());
        assert!(!debug.contains(K1) && debug.contains('*'), "{debug}");
    }
}
