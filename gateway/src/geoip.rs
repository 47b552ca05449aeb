//! The country of a client address, from a MaxMind database (`CHAT_GEOIP_DB`: a GeoLite2 or
//! GeoIP2 Country or City `.mmdb` file), added to the visitor context the widget reports. The
//! file is read into memory once at start (GeoLite2-Country is about 10 MB); a change needs a
//! restart. Without the variable, contexts carry the address and no country.

use std::net::IpAddr;
use std::path::Path;

use chat_core::visitor_context::ClientInfo;
use maxminddb::{geoip2, Reader};

/// An open GeoIP database.
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

impl GeoIp {
    /// Reads the database at `path`, or says why it cannot be used.
    pub fn open(path: &Path) -> Result<Self, String> {
        Reader::open_readfile(path)
            .map(|reader| Self { reader })
            .map_err(|e| format!("CHAT_GEOIP_DB {}: {e}", path.display()))
    }

    /// The ISO 3166-1 alpha-2 code of `ip`'s country, when the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let found = self.reader.lookup(ip).ok()?;
        let record: geoip2::Country<'_> = found.decode().ok()??;
        record
            .country
            .iso_code
            .filter(|code| code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(str::to_owned)
    }
}

/// What the gateway adds to a session's reported contexts: the address admission determined
/// and, with a database, its country.
pub fn client_info(ip: Option<IpAddr>, geoip: Option<&GeoIp>) -> ClientInfo {
    ClientInfo {
        ip: ip.map(|ip| ip.to_string()),
        country: ip.and_then(|ip| geoip.and_then(|g| g.country(ip))),
    }
}

/// The test fixture writer, shared with the end-to-end tests.
#[cfg(test)]
#[path = "../tests/common/mmdb.rs"]
mod mmdb;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_country_of_an_address_in_a_written_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("countries.mmdb");
        std::fs::write(
            &path,
            mmdb::country_db(&[([203, 0, 113, 0], 24, "FR"), ([10, 0, 0, 0], 8, "JP")]),
        )
        .unwrap();
        let geoip = GeoIp::open(&path).unwrap();
        let at = |s: &str| geoip.country(s.parse().unwrap());
        assert_eq!(at("203.0.113.77").as_deref(), Some("FR"));
        assert_eq!(at("10.200.1.1").as_deref(), Some("JP"));
        assert_eq!(at("198.51.100.1"), None);
        assert_eq!(at("::1"), None);
        let info = client_info(Some("203.0.113.5".parse().unwrap()), Some(&geoip));
        assert_eq!(info.country.as_deref(), Some("FR"));
        assert_eq!(info.ip.as_deref(), Some("203.0.113.5"));
        assert_eq!(client_info(None, Some(&geoip)), ClientInfo::default());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not.mmdb");
        std::fs::write(&path, b"hello").unwrap();
        let error = GeoIp::open(&path).unwrap_err();
        assert!(error.contains("not.mmdb"), "{error}");
    }
}
