//! `check`'s certificates: every pair the TLS listener would load (`crate::tls`), readable, its
//! key matching its certificate, the names it covers and the days left.

use super::{Context, Report};

/// Fewer days left than this is a warning: certbot renews 30 days ahead, so a certificate this
/// close to expiry means renewal is not happening.
const WARN_DAYS: u64 = 14;

/// The certificates section.
pub fn check(ctx: &Context<'_>, report: &mut Report) {
    let Some(tls) = &ctx.config.tls else {
        report.ok(
            "certificates",
            "none configured: TLS is off, plain HTTP only",
        );
        return;
    };
    let pairs = match tls.certs.resolve() {
        Ok(pairs) => pairs,
        Err(e) => {
            report.error(
                "certificates",
                format!("{e}; the gateway refuses to start"),
                "point CHAT_TLS_CERT/CHAT_TLS_KEY, CHAT_TLS_CERTS or CHAT_TLS_CERT_DIR at readable PEM files",
            );
            return;
        }
    };
    let mut claimed: Vec<(String, String)> = Vec::new();
    for pair in &pairs {
        let file = pair.cert.display().to_string();
        let summary = match crate::tls::inspect(&pair.cert, &pair.key) {
            Ok(summary) => summary,
            Err(e) => {
                report.error(
                    "certificates",
                    format!("{e}; the gateway refuses to start"),
                    format!(
                        "make {} the PEM chain and {} its own private key (certbot: fullchain.pem \
                         with privkey.pem of the same live/ directory), readable by this user",
                        file,
                        pair.key.display()
                    ),
                );
                continue;
            }
        };
        let days = summary.remaining().as_secs() / 86_400;
        let names = summary.names.join(" ");
        for name in &summary.names {
            match claimed.iter().find(|(n, _)| n == name) {
                Some((_, first)) => report.warn(
                    "certificates",
                    format!("{file} names {name}, which {first} already covers: {first} is served"),
                    "list the certificate you want served for that name first, or drop the other",
                ),
                None => claimed.push((name.clone(), file.clone())),
            }
        }
        if summary.remaining().is_zero() {
            report.error(
                "certificates",
                format!("{file} ({names}) has EXPIRED: browsers refuse it"),
                "renew it (certbot renew); the gateway picks the new files up without a restart",
            );
        } else if days < WARN_DAYS {
            report.warn(
                "certificates",
                format!("{file} ({names}) expires in {days} days"),
                "renew it (certbot renew) and check that renewal runs by itself (certbot's timer)",
            );
        } else {
            report.ok(
                "certificates",
                format!("{file}: {names}, key matches, {days} days left"),
            );
        }
    }
}
