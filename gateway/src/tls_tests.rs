use super::*;
use std::fs;

/// Writes a self-signed certificate for `names` and its key under `dir` as `stem.crt` /
/// `stem.key`.
fn make_pair(dir: &Path, stem: &str, names: &[&str]) -> CertPair {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::generate_simple_self_signed(names).unwrap();
    let pair = CertPair {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    fs::write(&pair.cert, cert.cert.pem()).unwrap();
    fs::write(&pair.key, cert.signing_key.serialize_pem()).unwrap();
    pair
}

fn leaf(key: &CertifiedKey) -> Vec<u8> {
    key.end_entity_cert().unwrap().as_ref().to_vec()
}

#[test]
fn picks_by_exact_name_then_wildcard_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_pair(dir.path(), "a", &["shop.example"]);
    let b = make_pair(dir.path(), "b", &["*.blog.example", "blog.example"]);
    let table = Table::load(&[a, b]).unwrap();
    let a_der = leaf(&table.exact["shop.example"]);
    let b_der = leaf(&table.wildcard["blog.example"]);
    assert_ne!(a_der, b_der);
    assert_eq!(leaf(&table.pick(Some("shop.example"))), a_der);
    assert_eq!(leaf(&table.pick(Some("SHOP.example."))), a_der);
    assert_eq!(leaf(&table.pick(Some("blog.example"))), b_der);
    assert_eq!(leaf(&table.pick(Some("www.blog.example"))), b_der);
    // A wildcard covers one label only.
    assert_eq!(leaf(&table.pick(Some("a.b.blog.example"))), a_der);
    assert_eq!(leaf(&table.pick(Some("unknown.example"))), a_der);
    assert_eq!(leaf(&table.pick(None)), a_der);
    assert_eq!(table.summaries[1].names, ["*.blog.example", "blog.example"]);
}

#[test]
fn inspect_reads_names_and_expiry_and_refuses_a_foreign_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_pair(dir.path(), "a", &["shop.example"]);
    let b = make_pair(dir.path(), "b", &["other.example"]);
    let summary = inspect(&a.cert, &a.key).unwrap();
    assert_eq!(summary.names, ["shop.example"]);
    // rcgen's default validity ends in 4096.
    assert!(summary.not_after > 4_000_000_000, "{summary:?}");
    let e = inspect(&a.cert, &b.key).unwrap_err().to_string();
    assert!(e.contains("does not fit"), "{e}");
    fs::write(&b.cert, "not a certificate").unwrap();
    let e = inspect(&b.cert, &b.key).unwrap_err().to_string();
    assert!(e.contains("b.crt"), "{e}");
}

#[test]
fn scans_a_certbot_live_directory() {
    let dir = tempfile::tempdir().unwrap();
    for (name, host) in [("zeta", "zeta.example"), ("alpha", "alpha.example")] {
        let sub = dir.path().join(name);
        fs::create_dir(&sub).unwrap();
        let pair = make_pair(&sub, "x", &[host]);
        fs::rename(&pair.cert, sub.join("fullchain.pem")).unwrap();
        fs::rename(&pair.key, sub.join("privkey.pem")).unwrap();
    }
    fs::write(dir.path().join("README"), "certbot's note").unwrap();
    fs::create_dir(dir.path().join("half-made")).unwrap();
    let sources = CertSources {
        pairs: vec![],
        dir: Some(dir.path().into()),
    };
    let certs = Certificates::load(sources).unwrap();
    let names: Vec<Vec<String>> = certs.summaries().into_iter().map(|s| s.names).collect();
    assert_eq!(names, [["alpha.example"], ["zeta.example"]]);
}

#[test]
fn a_broken_reload_keeps_the_old_table() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_pair(dir.path(), "a", &["shop.example"]);
    let certs = Certificates::load(CertSources {
        pairs: vec![a.clone()],
        dir: None,
    })
    .unwrap();
    assert!(!certs.changed_on_disk());
    fs::write(&a.key, "garbage").unwrap();
    assert!(!certs.changed_on_disk(), "not settled yet");
    assert!(certs.changed_on_disk(), "unchanged for one check");
    assert!(!certs.changed_on_disk(), "a change is reported once");
    let e = certs.reload_now().unwrap_err();
    assert!(e.contains("a.key"), "{e}");
    assert_eq!(certs.summaries()[0].names, ["shop.example"]);
    make_pair(dir.path(), "a", &["new.example"]);
    let ok = certs.reload_now().unwrap();
    assert!(ok.contains("new.example"), "{ok}");
    assert_eq!(certs.summaries()[0].names, ["new.example"]);
}

#[test]
fn parses_certificate_lists() {
    let pairs = CertSources::parse_list("/a/c.pem:/a/k.pem, b.crt:b.key").unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[1].key, PathBuf::from("b.key"));
    assert!(CertSources::parse_list("only-a-cert.pem").is_err());
    assert!(CertSources::parse_list(":k.pem").is_err());
}
