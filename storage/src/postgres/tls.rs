//! Postgres over TLS with rustls, honouring libpq's `sslmode` and `sslrootcert`.
//!
//! | `sslmode`          | TLS                         | certificate checked                     |
//! |--------------------|-----------------------------|-----------------------------------------|
//! | `disable`          | never                       | –                                       |
//! | `prefer` (default) | if the server offers it     | chain to the CA, when a CA file is given |
//! | `require`          | always                      | chain to the CA, when a CA file is given |
//! | `verify-ca`        | always                      | chain to the CA (or the system roots)    |
//! | `verify-full`      | always                      | chain, and the host name                 |
//!
//! As in libpq, `prefer` and `require` do not check the certificate unless a root CA file is
//! given (`sslrootcert=/path` in the URL, else the gateway's `CHAT_DATABASE_CA`); then they check
//! the chain as `verify-ca` does. Unlike libpq, `verify-*` without a CA file uses the system's
//! trusted roots (libpq wants `sslrootcert=system` for that, also accepted here), and
//! `~/.postgresql/root.crt` is not read. tokio-postgres only knows `disable`, `prefer` and
//! `require`: the parameters are taken out of the URL (`conninfo.rs`) and the
//! `verify-*` modes run as `require` with a verifying connector.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

mod stream;
mod verify;

pub use stream::RustlsStream;
use verify::{AcceptAnyCertificate, ChainVerifier};

use super::conninfo::extract_tls_params;
use crate::StorageError;

/// A CA file larger than this is refused (the RDS global bundle is about 160 KiB).
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, plain otherwise (libpq's default).
    Prefer,
    /// TLS or nothing; the certificate is checked only against a given CA file.
    Require,
    /// TLS, the certificate chained to the CA; any host name.
    VerifyCa,
    /// TLS, the certificate chained to the CA and issued for the host name.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, StorageError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // libpq's `allow` (plain first, TLS if the server insists) has no tokio-postgres
            // equivalent; refusing it beats silently doing something else.
            other => {
                return Err(StorageError::Tls(format!(
                    "sslmode={other:?} is not supported; use disable, prefer, require, \
                     verify-ca or verify-full"
                )))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `url` (libpq URL or key-value form), with `ca` (the gateway's `CHAT_DATABASE_CA`) as
/// the root CA file when the URL names none, into tokio-postgres's config and the connector
/// that implements its `sslmode`. Reads the CA file (or the system roots) now, so a missing or
/// empty one fails here, before any connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let url = "postgres://chat@db.example.com/chat?sslmode=verify-full";
/// let (config, tls) = chat_storage::postgres::tls::configure(url, None)?;
/// let (client, connection) = config.connect(tls).await?;
/// # Ok(()) }
/// ```
pub fn configure(
    url: &str,
    ca: Option<&Path>,
) -> Result<(tokio_postgres::Config, MakeRustls), StorageError> {
    let params = extract_tls_params(url);
    let mut config: tokio_postgres::Config = params
        .conninfo
        .parse()
        .map_err(|e: tokio_postgres::Error| StorageError::InvalidUrl(e.to_string()))?;
    let mode = match params.sslmode.as_deref() {
        Some(value) => SslMode::parse(value)?,
        None => SslMode::Prefer,
    };
    let root = match params.sslrootcert.as_deref() {
        Some("system") => Some(Roots::System),
        Some(path) => Some(Roots::File(PathBuf::from(path))),
        None => ca.map(|path| Roots::File(path.to_path_buf())),
    };
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let connector = MakeRustls::new(mode, root)?;
    Ok((config, connector))
}

/// Where trusted roots come from.
#[derive(Debug, Clone)]
enum Roots {
    File(PathBuf),
    System,
}

impl Roots {
    /// "the CA in /path", for error messages.
    fn describe(&self) -> String {
        match self {
            Self::File(path) => format!("the CA in {}", path.display()),
            Self::System => "any of the system's trusted root CAs".to_string(),
        }
    }

    fn load(&self) -> Result<RootCertStore, StorageError> {
        let mut store = RootCertStore::empty();
        match self {
            Self::File(path) => {
                let fail = |why: String| {
                    StorageError::Tls(format!("cannot use the CA file {}: {why}", path.display()))
                };
                let size = std::fs::metadata(path)
                    .map_err(|e| fail(e.to_string()))?
                    .len();
                if size > MAX_CA_FILE_BYTES {
                    return Err(fail(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
                }
                let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| fail(format!("not PEM: {e}")))?;
                    store
                        .add(cert)
                        .map_err(|e| fail(format!("not a usable certificate: {e}")))?;
                }
                if store.is_empty() {
                    return Err(fail("no PEM certificate in it".to_string()));
                }
            }
            Self::System => {
                let certs = rustls_native_certs::load_native_certs().map_err(|e| {
                    StorageError::Tls(format!("cannot read the system's trusted roots: {e}"))
                })?;
                let (_added, _unusable) = store.add_parsable_certificates(certs);
                if store.is_empty() {
                    return Err(StorageError::Tls(
                        "the system has no trusted root certificates; give the database's CA \
                         with sslrootcert=/path or CHAT_DATABASE_CA"
                            .to_string(),
                    ));
                }
            }
        }
        Ok(store)
    }
}

/// tokio-postgres's TLS connector on rustls (ring), for one `sslmode` and trust setting.
#[derive(Clone)]
pub struct MakeRustls {
    mode: SslMode,
    config: Arc<ClientConfig>,
    /// What the certificate must chain to, for messages; `None` when it is not checked.
    roots: Option<Arc<str>>,
}

impl fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeRustls")
            .field("mode", &self.mode)
            .field("roots", &self.roots)
            .finish()
    }
}

impl MakeRustls {
    fn new(mode: SslMode, root: Option<Roots>) -> Result<Self, StorageError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // libpq checks the chain whenever a root CA file is given, and verify-* always.
        let root = match (mode, root) {
            (SslMode::Disable, _) => None,
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => Some(Roots::System),
            (_, root) => root,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match &root {
            None => Arc::new(AcceptAnyCertificate {
                provider: provider.clone(),
            }),
            Some(roots) => {
                let inner = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots.load()?),
                    provider.clone(),
                )
                .build()
                .map_err(|e| StorageError::Tls(format!("cannot build the verifier: {e}")))?;
                Arc::new(ChainVerifier {
                    inner,
                    check_name: mode == SslMode::VerifyFull,
                })
            }
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StorageError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // Postgres 17 requires ALPN for direct TLS (`sslnegotiation=direct`); earlier servers
        // ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Self {
            mode,
            config: Arc::new(config),
            roots: root.map(|r| Arc::from(r.describe())),
        })
    }

    /// The `sslmode` this connector implements.
    pub fn mode(&self) -> SslMode {
        self.mode
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = StorageError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, StorageError> {
        // Called for Unix sockets too (with ""), where TLS is never used: the name is checked
        // when a handshake starts.
        Ok(RustlsConnect {
            domain: domain.to_string(),
            mode: self.mode,
            config: self.config.clone(),
            roots: self.roots.clone(),
        })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    domain: String,
    mode: SslMode,
    config: Arc<ClientConfig>,
    roots: Option<Arc<str>>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = StorageError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, StorageError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from(self.domain.clone()).map_err(|_| {
                StorageError::TlsHandshake(format!(
                    "{:?} is not a host name or IP address TLS can check",
                    self.domain
                ))
            })?;
            tokio_rustls::TlsConnector::from(self.config.clone())
                .connect(name, stream)
                .await
                .map(|s| RustlsStream(Box::new(s)))
                .map_err(|e| StorageError::TlsHandshake(self.explain(&e)))
        })
    }
}

impl RustlsConnect {
    /// Why the handshake failed, in the operator's terms.
    fn explain(&self, error: &io::Error) -> String {
        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let roots = self.roots.as_deref().unwrap_or("a trusted CA");
        match tls {
            Some(rustls::Error::InvalidCertificate(cert)) => match cert {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    format!(
                        "certificate is not signed by {roots} (sslmode={})",
                        self.mode
                    )
                }
                CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                } => format!(
                    "server name {} does not match certificate names [{}] (sslmode={})",
                    expected.to_str(),
                    presented_names(presented),
                    self.mode
                ),
                CertificateError::NotValidForName => format!(
                    "server name {} does not match the certificate's names (sslmode={})",
                    self.domain, self.mode
                ),
                other => format!("the server's certificate is refused: {other}"),
            },
            Some(other) => format!("TLS handshake with {} failed: {other}", self.domain),
            None => format!("TLS handshake with {} failed: {error}", self.domain),
        }
    }
}

/// The certificate's names for a log line: the server chose them, so at most
/// [`MAX_NAMES_SHOWN`] of them, each cut at [`MAX_NAME_CHARS`], control characters replaced.
fn presented_names(presented: &[String]) -> String {
    let mut shown: Vec<String> = presented
        .iter()
        .take(MAX_NAMES_SHOWN)
        .map(|name| {
            presented_name(name)
                .chars()
                .take(MAX_NAME_CHARS)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect()
        })
        .collect();
    if presented.len() > MAX_NAMES_SHOWN {
        shown.push(format!("… {} more", presented.len() - MAX_NAMES_SHOWN));
    }
    shown.join(", ")
}

const MAX_NAMES_SHOWN: usize = 8;
const MAX_NAME_CHARS: usize = 100;

/// `DnsName("db.example.com")` / `IpAddress(10.0.0.1)` (webpki's form) as the bare name.
fn presented_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(name)
}

/// A connection error's text with what `sslmode` adds to it: the server's refusal of TLS under
/// a mode that needs it, and a server that refuses plain connections under `disable`.
pub(crate) fn explain(message: String, mode: SslMode) -> String {
    if message.contains("server does not support TLS") {
        return message.replace(
            "server does not support TLS",
            &format!("server does not support TLS but sslmode={mode}"),
        );
    }
    if mode == SslMode::Disable && message.contains("no encryption") {
        return format!(
            "{message} (the server accepts only TLS connections; set sslmode=require or \
             verify-full)"
        );
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_onto_tokio_postgres() {
        use tokio_postgres::config::SslMode as Pg;
        for (url, expected) in [
            ("postgres://db/chat", Pg::Prefer),
            ("postgres://db/chat?sslmode=disable", Pg::Disable),
            ("postgres://db/chat?sslmode=require", Pg::Require),
            ("postgres://db/chat?sslmode=verify-full", Pg::Require),
            ("host=db sslmode=verify-ca", Pg::Require),
        ] {
            let (config, _) = configure(url, None).unwrap();
            assert_eq!(config.get_ssl_mode(), expected, "{url}");
        }
        let err = configure("postgres://db/chat?sslmode=allow", None).unwrap_err();
        assert!(err.to_string().contains("sslmode=\"allow\""), "{err}");
    }

    #[test]
    fn a_missing_ca_file_fails_before_connecting() {
        let err = configure(
            "postgres://db/chat?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot use the CA file /nonexistent/ca.pem"),
            "{err}"
        );
        // The environment's CA is used when the URL names none.
        let err = configure(
            "postgres://db/chat?sslmode=require",
            Some(Path::new("/nonexistent/env-ca.pem")),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/env-ca.pem"), "{err}");
        // ...and ignored under sslmode=disable.
        assert!(configure(
            "postgres://db/chat?sslmode=disable",
            Some(Path::new("/nonexistent/env-ca.pem"))
        )
        .is_ok());
    }

    #[test]
    fn messages_name_the_mode() {
        assert_eq!(
            explain(
                "error performing TLS handshake: server does not support TLS".into(),
                SslMode::VerifyFull
            ),
            "error performing TLS handshake: server does not support TLS but sslmode=verify-full"
        );
        assert_eq!(presented_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(presented_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        let hostile: Vec<String> = (0..20)
            .map(|i| format!("DnsName(\"evil{i}\nFAKE LOG LINE{}\")", "x".repeat(500)))
            .collect();
        let shown = presented_names(&hostile);
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.len() < 1_000, "{}", shown.len());
        assert!(shown.ends_with("… 12 more"), "{shown}");
    }
}
