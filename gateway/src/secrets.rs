//! Where the signing secrets come from: the environment, or, for a zero-configuration start, a
//! development secret generated once into the data directory so that `chat-gateway token` and a
//! running gateway agree and visitor tokens survive restarts.

use crate::config::Config;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::path::{Path, PathBuf};

/// File (in `CHAT_DATA_DIR`) holding the generated development JWT secret.
pub const DEV_SECRET_FILE: &str = "admin-jwt.secret";

/// The secrets in force.
#[derive(Clone)]
pub struct Secrets {
    /// HS256 key for agent JWTs.
    pub admin_jwt: Vec<u8>,
    /// HMAC key for visitor tokens.
    pub visitor_token: Vec<u8>,
    /// Set when `admin_jwt` was generated rather than configured.
    pub generated_at: Option<PathBuf>,
}

/// Reads or creates the secrets for `config`.
pub fn load(config: &Config) -> std::io::Result<Secrets> {
    let (admin_jwt, generated_at) = match &config.admin_jwt_secret {
        Some(secret) => (secret.as_bytes().to_vec(), None),
        None => {
            let path = config.data_dir.join(DEV_SECRET_FILE);
            (read_or_create(&path)?, Some(path))
        }
    };
    let visitor_token = match &config.visitor_token_secret {
        Some(secret) => secret.as_bytes().to_vec(),
        // Derived, not equal: a leaked visitor-token key must not mint agent tokens.
        None => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&admin_jwt)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
            mac.update(b"chat-gateway visitor tokens v1");
            mac.finalize().into_bytes().to_vec()
        }
    };
    Ok(Secrets {
        admin_jwt,
        visitor_token,
        generated_at,
    })
}

fn read_or_create(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(existing) if !existing.trim().is_empty() => {
            return Ok(existing.trim().as_bytes().to_vec())
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        chat_storage::files::create_private_dir(dir)?;
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    write_private(path, &secret)?;
    Ok(secret.into_bytes())
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_is_stable_and_visitor_key_is_derived() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_lookup(|_| None).unwrap();
        config.data_dir = dir.path().to_path_buf();
        let a = load(&config).unwrap();
        let b = load(&config).unwrap();
        assert_eq!(a.admin_jwt, b.admin_jwt);
        assert!(a.generated_at.is_some());
        assert_ne!(a.admin_jwt, a.visitor_token);
        config.admin_jwt_secret = Some("configured".into());
        let c = load(&config).unwrap();
        assert_eq!(c.admin_jwt, b"configured");
        assert!(c.generated_at.is_none());
    }

    #[cfg(unix)]
    #[test]
    fn generated_secret_and_data_dir_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let mut config = Config::from_lookup(|_| None).unwrap();
        config.data_dir = root.path().join("data");
        load(&config).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&config.data_dir), 0o700);
        assert_eq!(mode(&config.data_dir.join(DEV_SECRET_FILE)), 0o600);
    }
}
