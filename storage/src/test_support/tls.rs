//! A throwaway cluster that accepts only TLS connections, for the store's TLS tests.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use super::TestPostgres;

impl TestPostgres {
    /// Turns TLS on in the throwaway cluster with this certificate chain and key (PEM), makes
    /// it refuse plain TCP connections (`hostssl` trust, `hostnossl` reject), and restarts it.
    /// The role `chat_scram`, if a test creates it, must log in with a SCRAM password.
    /// The files go into the data directory, owned by the server's user, the key mode 0600
    /// (Postgres refuses a key others can read). Panics on an external server.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) {
        let cluster = self.cluster("enable_tls");
        let data = cluster.data_dir();
        let write = |name: &str, text: &str, mode: u32| {
            let path = data.join(name);
            fs::write(&path, text)
                .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(mode)))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            if cluster.as_postgres {
                let status = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&path)
                    .status();
                if !status.as_ref().is_ok_and(|s| s.success()) {
                    panic!("chown postgres {} failed: {status:?}", path.display());
                }
            }
        };
        write("server.crt", cert_pem, 0o644);
        write("server.key", key_pem, 0o600);
        write(
            "pg_hba.conf",
            "# chat-storage test_support: TLS only over TCP\n\
             local     all all                     trust\n\
             hostssl   all chat_scram 127.0.0.1/32 scram-sha-256\n\
             hostssl   all all        127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
            0o600,
        );
        let conf = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", conf.display()));
        text.push_str(
            "\n# chat-storage test_support: TLS\n\
             ssl = on\n\
             ssl_cert_file = 'server.crt'\n\
             ssl_key_file = 'server.key'\n",
        );
        fs::write(&conf, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        self.stop_server();
        self.start_server();
    }

    /// Turns TLS off again and accepts plain TCP connections (the server then answers a TLS
    /// request with "no"), and restarts. Panics on an external server.
    pub fn disable_tls(&self) {
        let cluster = self.cluster("disable_tls");
        let data = cluster.data_dir();
        let conf = data.join("postgresql.conf");
        let appended = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"ssl = off\n"));
        if let Err(e) = appended {
            panic!("cannot write {}: {e}", conf.display());
        }
        let hba = data.join("pg_hba.conf");
        fs::write(
            &hba,
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", hba.display()));
        self.stop_server();
        self.start_server();
    }
}
