//! Certificates of the TLS listener: several PEM pairs, chosen by SNI, replaced without a
//! restart.
//!
//! Where they come from ([`CertSources`]): `CHAT_TLS_CERT`/`CHAT_TLS_KEY` (one pair),
//! `CHAT_TLS_CERTS` (`cert.pem:key.pem` pairs, comma-separated) and `CHAT_TLS_CERT_DIR` (a
//! directory scanned for certbot's `<name>/fullchain.pem` + `<name>/privkey.pem`, or flat
//! `<name>.crt` + `<name>.key`). The first certificate is the default, served to a client that
//! sends no name or one no certificate covers.
//!
//! [`Certificates`] holds the table the TLS handshake reads ([`Certificates::resolver`]); a
//! reload builds a whole new table and swaps it in only if every pair loaded, so a half-written
//! renewal never replaces a working certificate. Connections already open keep the certificate
//! they were accepted with.

pub mod stream;
pub mod termination;

use crate::error::GatewayError;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A PEM file larger than this is refused: a chain is a few kilobytes, and the file is read
/// whole.
const MAX_PEM_BYTES: u64 = 1 << 20;
/// Most pairs a certificate directory may hold, so a wrong directory cannot make a reload read
/// a whole disk.
const MAX_DIR_PAIRS: usize = 1000;

/// One certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertPair {
    /// The chain, leaf first (certbot's `fullchain.pem`).
    pub cert: PathBuf,
    /// The private key (certbot's `privkey.pem`).
    pub key: PathBuf,
}

/// Where the certificates are read from (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSources {
    /// Pairs named one by one, in order (`CHAT_TLS_CERT`/`CHAT_TLS_KEY`, then `CHAT_TLS_CERTS`).
    pub pairs: Vec<CertPair>,
    /// A directory scanned on every load (`CHAT_TLS_CERT_DIR`).
    pub dir: Option<PathBuf>,
}

impl CertSources {
    /// Whether any certificate is configured (TLS is on).
    pub fn is_configured(&self) -> bool {
        !self.pairs.is_empty() || self.dir.is_some()
    }

    /// Parses `CHAT_TLS_CERTS`: comma-separated `cert.pem:key.pem` pairs.
    pub fn parse_list(list: &str) -> Result<Vec<CertPair>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| match item.rsplit_once(':') {
                Some((cert, key)) if !cert.trim().is_empty() && !key.trim().is_empty() => {
                    Ok(CertPair {
                        cert: cert.trim().into(),
                        key: key.trim().into(),
                    })
                }
                _ => Err(format!("{item:?} is not cert.pem:key.pem")),
            })
            .collect()
    }

    /// Every pair, the named ones first, then the directory's in name order.
    pub fn resolve(&self) -> Result<Vec<CertPair>, GatewayError> {
        let mut pairs = self.pairs.clone();
        if let Some(dir) = &self.dir {
            pairs.extend(scan_dir(dir)?);
        }
        if pairs.is_empty() {
            return Err(GatewayError::Tls("no certificate found".into()));
        }
        Ok(pairs)
    }
}

/// The pairs of a certificate directory: `<name>/fullchain.pem` + `<name>/privkey.pem`
/// (certbot's `live/`), or `<name>.crt` + `<name>.key`, sorted by name.
fn scan_dir(dir: &Path) -> Result<Vec<CertPair>, GatewayError> {
    let unreadable = |e: std::io::Error| {
        GatewayError::Tls(format!("cannot read the directory {}: {e}", dir.display()))
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .take(MAX_DIR_PAIRS * 4)
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let mut pairs = Vec::new();
    for path in names {
        let pair = if path.is_dir() {
            CertPair {
                cert: path.join("fullchain.pem"),
                key: path.join("privkey.pem"),
            }
        } else if path.extension().is_some_and(|e| e == "crt") {
            CertPair {
                cert: path.clone(),
                key: path.with_extension("key"),
            }
        } else {
            continue;
        };
        // certbot's `live/README` and half-made directories are not pairs.
        if pair.cert.is_file() && pair.key.is_file() {
            pairs.push(pair);
        }
    }
    pairs.truncate(MAX_DIR_PAIRS);
    Ok(pairs)
}

/// What a certificate says about itself (for `chat-gateway check` and the reload log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The chain's file.
    pub cert: PathBuf,
    /// The DNS names it covers (subject alternative names; the subject's common name when it
    /// has none), lower case; wildcards as `*.example.com`.
    pub names: Vec<String>,
    /// When it expires, in seconds since the Unix epoch.
    pub not_after: i64,
}

impl CertSummary {
    /// How long until it expires (zero once expired).
    pub fn remaining(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Duration::from_secs(self.not_after.saturating_sub(now).max(0) as u64)
    }
}

/// Loads a pair and checks it (PEM parses, the key matches the leaf) without serving it.
pub fn inspect(cert: &Path, key: &Path) -> Result<CertSummary, GatewayError> {
    load(&CertPair {
        cert: cert.into(),
        key: key.into(),
    })
    .map(|(_, summary)| summary)
}

fn read_pem(path: &Path) -> Result<Vec<u8>, GatewayError> {
    let fail = |why: String| GatewayError::Tls(format!("{}: {why}", path.display()));
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len > MAX_PEM_BYTES {
        return Err(fail(format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    std::fs::read(path).map_err(|e| fail(e.to_string()))
}

fn load(pair: &CertPair) -> Result<(Arc<CertifiedKey>, CertSummary), GatewayError> {
    let cert_file = pair.cert.display();
    let key_file = pair.key.display();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read_pem(&pair.cert)?)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                GatewayError::Tls(format!("{cert_file}: not a PEM certificate chain: {e}"))
            })?;
    let Some(leaf) = chain.first() else {
        return Err(GatewayError::Tls(format!(
            "{cert_file}: no certificate in it"
        )));
    };
    let summary = summarize(&pair.cert, leaf)?;
    let key = PrivateKeyDer::from_pem_slice(&read_pem(&pair.key)?)
        .map_err(|e| GatewayError::Tls(format!("{key_file}: not a PEM private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| GatewayError::Tls(format!("{key_file} does not fit {cert_file}: {e}")))?;
    Ok((Arc::new(certified), summary))
}

fn summarize(path: &Path, leaf: &CertificateDer<'_>) -> Result<CertSummary, GatewayError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).map_err(|e| {
        GatewayError::Tls(format!("{}: unreadable certificate: {e}", path.display()))
    })?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    Ok(CertSummary {
        cert: path.into(),
        names,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The certificates one load produced, by name.
#[derive(Debug)]
struct Table {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    summaries: Vec<CertSummary>,
}

impl Table {
    fn load(pairs: &[CertPair]) -> Result<Self, GatewayError> {
        let mut loaded = Vec::with_capacity(pairs.len());
        for pair in pairs {
            loaded.push(load(pair)?);
        }
        let Some(default) = loaded.first().map(|(key, _)| key.clone()) else {
            return Err(GatewayError::Tls("no certificate found".into()));
        };
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut summaries = Vec::with_capacity(loaded.len());
        for (key, summary) in loaded {
            for name in &summary.names {
                // The first pair naming a host keeps it, as with Nginx's first server block.
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()),
                    None => exact.entry(name.clone()),
                }
                .or_insert_with(|| key.clone());
            }
            summaries.push(summary);
        }
        Ok(Self {
            exact,
            wildcard,
            default,
            summaries,
        })
    }

    /// The certificate for `sni`: exact name, then a wildcard one label up, then the default.
    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(sni) = sni else {
            return self.default.clone();
        };
        let name = sni.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// The TLS listener's certificates, swappable while it runs.
pub struct Certificates {
    sources: CertSources,
    table: ArcSwap<Table>,
    /// The files as last loaded, and a change seen by the watcher but not yet settled.
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Seen {
    loaded: Vec<FileStamp>,
    pending: Option<Vec<FileStamp>>,
}

/// One file's identity for change detection: the file a path resolves to (certbot's `live/`
/// symlinks move to a new `archive/` file on renewal), modification time, length.
type FileStamp = (PathBuf, Option<SystemTime>, u64);

fn stamps(pairs: &[CertPair]) -> Vec<FileStamp> {
    pairs
        .iter()
        .flat_map(|p| [&p.cert, &p.key])
        .map(|path| {
            // `metadata` follows certbot's `live/` symlinks to the `archive/` file they name.
            let meta = std::fs::metadata(path).ok();
            let mtime = meta.as_ref().and_then(|m| m.modified().ok());
            let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            (target, mtime, meta.map_or(0, |m| m.len()))
        })
        .collect()
}

impl Certificates {
    /// Loads every pair; fails (naming the file) if any pair cannot be used.
    pub fn load(sources: CertSources) -> Result<Arc<Self>, GatewayError> {
        let pairs = sources.resolve()?;
        let seen = Seen {
            loaded: stamps(&pairs),
            pending: None,
        };
        let table = Table::load(&pairs)?;
        Ok(Arc::new(Self {
            sources,
            table: ArcSwap::from_pointee(table),
            seen: Mutex::new(seen),
        }))
    }

    /// What the loaded certificates cover, in load order (the first is the default).
    pub fn summaries(&self) -> Vec<CertSummary> {
        self.table.load().summaries.clone()
    }

    /// The handshake's certificate chooser over this table.
    pub fn resolver(self: &Arc<Self>) -> Arc<dyn ResolvesServerCert> {
        Arc::new(Resolver(self.clone()))
    }

    /// Re-reads every file; swaps the table only if all of them load.
    pub fn reload_now(&self) -> Result<String, String> {
        let pairs = self.sources.resolve().map_err(|e| e.to_string())?;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Seen {
            loaded: stamps(&pairs),
            pending: None,
        };
        let table = Table::load(&pairs).map_err(|e| e.to_string())?;
        let described = describe(&table.summaries);
        self.table.store(Arc::new(table));
        Ok(described)
    }

    /// Whether the files changed (or a pair appeared or vanished in the directory) since the
    /// last load and then stayed as they are since the previous call: a renewal that copies the
    /// chain and then the key is taken once both are written, not refused half-way. A refused
    /// change is not retried until the files change again.
    pub fn changed_on_disk(&self) -> bool {
        let pairs = self.sources.resolve().unwrap_or_default();
        let now = stamps(&pairs);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.loaded == now {
            seen.pending = None;
            return false;
        }
        if seen.pending.as_ref() == Some(&now) {
            seen.loaded = now;
            seen.pending = None;
            return true;
        }
        seen.pending = Some(now);
        false
    }
}

/// Reloads `certs` whenever their files change, checking every `every` (a renewal by certbot
/// or any other tool is picked up without a SIGHUP). Logged and counted like a SIGHUP reload.
pub fn watch(certs: Arc<Certificates>, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("tls-watch".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            if !certs.changed_on_disk() {
                continue;
            }
            let result = certs.reload_now();
            match &result {
                Ok(change) => {
                    tracing::info!(part = "certificates", "files changed, reloaded: {change}")
                }
                Err(why) => tracing::error!(
                    part = "certificates",
                    "files changed but the reload was refused, keeping the old certificates: {why}"
                ),
            }
            crate::metrics::config_reload("certificates", result.is_ok());
        });
    if let Err(e) = spawned {
        tracing::error!("cannot watch the certificate files ({e}): reload them with SIGHUP");
    }
}

/// One log line: the first few certificates with their names and days left.
fn describe(summaries: &[CertSummary]) -> String {
    const LISTED: usize = 10;
    let mut each: Vec<String> = summaries
        .iter()
        .take(LISTED)
        .map(|s| {
            format!(
                "{} ({}, expires in {} days)",
                s.cert.display(),
                s.names.join(" "),
                s.remaining().as_secs() / 86_400
            )
        })
        .collect();
    if summaries.len() > LISTED {
        each.push(format!("and {} more", summaries.len() - LISTED));
    }
    format!("{} certificate(s): {}", summaries.len(), each.join("; "))
}

impl crate::reload::Reload for Certificates {
    fn name(&self) -> &'static str {
        "certificates"
    }

    fn reload(&self) -> Result<String, String> {
        self.reload_now()
    }
}

#[derive(Debug)]
struct Resolver(Arc<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.table.load().pick(hello.server_name()))
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
