//! `CHAT_ADMIN_JWT_SECRET`, and with `--token` whether a sample agent token from the main site
//! verifies, and exactly why not. Neither the secret nor the token is ever printed.

use super::{Context, Report};
use crate::secrets::DEV_SECRET_FILE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chat_core::auth::{AgentTokens, AuthError};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Shorter HS256 keys can be brute-forced offline from a single token.
const MIN_SECRET_BYTES: usize = 32;

/// Leeway the gateway allows on `exp` and `nbf` (`AgentTokens`).
const LEEWAY_SECS: u64 = 5;

/// Presence and length of the agent JWT secret.
pub(super) fn secret(ctx: &Context<'_>, report: &mut Report) {
    let Some(secret) = ctx.config.admin_jwt_secret.as_deref() else {
        let path = ctx.config.data_dir.join(DEV_SECRET_FILE);
        let state = if path.exists() {
            "is used"
        } else {
            "would be generated"
        };
        report.warn(
            "secret",
            format!(
                "CHAT_ADMIN_JWT_SECRET is not set: the development secret {} {state}, so tokens \
                 minted by the main site do not verify",
                path.display()
            ),
            "set CHAT_ADMIN_JWT_SECRET to the secret the main site signs agent tokens with \
             (the same value in both .env files, at least 32 bytes)",
        );
        return;
    };
    let quoted = ['"', '\'']
        .iter()
        .any(|q| secret.starts_with(*q) && secret.ends_with(*q));
    if quoted || secret != secret.trim() {
        report.warn(
            "secret",
            "CHAT_ADMIN_JWT_SECRET starts or ends with quotes or spaces, which become part of \
             the key (docker --env-file and some .env loaders keep them)",
            "write the value without quotes or surrounding spaces, exactly as the main site \
             uses it",
        );
    }
    if secret.len() < MIN_SECRET_BYTES {
        report.warn(
            "secret",
            format!(
                "CHAT_ADMIN_JWT_SECRET is {} bytes: an HS256 key under {MIN_SECRET_BYTES} bytes \
                 can be guessed offline from one token, and then agent tokens forged",
                secret.len()
            ),
            "generate one with `openssl rand -hex 32` and set it on the main site and the \
             gateway alike",
        );
    } else {
        report.ok(
            "secret",
            format!("CHAT_ADMIN_JWT_SECRET is set ({} bytes)", secret.len()),
        );
    }
}

/// With `--token`: does the sample token verify with this configuration, and if not, why.
pub(super) fn token(ctx: &Context<'_>, report: &mut Report) {
    let Some(token) = ctx.token.map(str::trim) else {
        return;
    };
    let (key, whose) = match ctx.config.admin_jwt_secret.as_deref() {
        Some(secret) => (secret.as_bytes().to_vec(), "CHAT_ADMIN_JWT_SECRET"),
        None => {
            let path = ctx.config.data_dir.join(DEV_SECRET_FILE);
            match std::fs::read_to_string(&path) {
                Ok(s) if !s.trim().is_empty() => (
                    s.trim().as_bytes().to_vec(),
                    "the generated development secret",
                ),
                _ => {
                    report.error(
                        "token",
                        "cannot verify: CHAT_ADMIN_JWT_SECRET is not set and no development \
                         secret exists yet",
                        "set CHAT_ADMIN_JWT_SECRET to the main site's secret",
                    );
                    return;
                }
            }
        }
    };
    match diagnose(token, &key, whose, ctx) {
        Ok(message) => report.ok("token", message),
        Err((message, fix)) => report.error("token", message, fix),
    }
}

type Refusal = (String, String);

fn diagnose(token: &str, key: &[u8], whose: &str, ctx: &Context<'_>) -> Result<String, Refusal> {
    let refuse = |m: String, f: &str| Err((m, f.to_string()));
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return refuse(
            format!(
                "not a JWT ({} dot-separated parts, a JWT has 3)",
                parts.len()
            ),
            "pass the token itself, as the main site's token endpoint returns it",
        );
    };
    let decode = |part: &str| -> Option<Value> {
        let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let (Some(header_json), Some(claims)) = (decode(header), decode(payload)) else {
        return refuse(
            "not a JWT (its header or claims are not base64url JSON)".into(),
            "pass the token itself, as the main site's token endpoint returns it",
        );
    };
    let alg = header_json["alg"].as_str().unwrap_or("(none)");
    if alg != "HS256" {
        return refuse(
            format!("signed with alg {alg:?}; the gateway accepts HS256 only"),
            "have the main site sign with HS256 and the shared secret (jsonwebtoken: \
             { algorithm: 'HS256' })",
        );
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(format!("{header}.{payload}").as_bytes());
    if mac.verify_slice(&signature).is_err() {
        return refuse(
            format!(
                "signature does not verify with {whose}: the main site signs with another \
                 secret, so the secrets differ between the two .env files"
            ),
            "copy the main site's agent-token secret into CHAT_ADMIN_JWT_SECRET (or the \
             other way round) and restart both",
        );
    }
    let now = now_secs();
    let number = |claim: &str| claims[claim].as_u64();
    let rules = &ctx.config.agent_token_rules;
    if claims["sub"].as_str().is_none_or(str::is_empty) {
        return refuse(
            "the signature is right but the claim `sub` (the agent id) is missing or empty".into(),
            "have the main site put the agent's id in `sub`",
        );
    }
    let Some(exp) = number("exp") else {
        return refuse(
            "the signature is right but the claim `exp` (expiry, seconds since 1970) is missing"
                .into(),
            "have the main site set `exp` (15 minutes ahead is usual)",
        );
    };
    if exp + LEEWAY_SECS < now {
        return refuse(
            format!(
                "the signature is right but the token expired {} s ago",
                now - exp
            ),
            "take a fresh token from the main site (they live 15 minutes); if it was fresh, \
             the two machines' clocks differ: enable NTP",
        );
    }
    if let Some(nbf) = number("nbf").filter(|nbf| *nbf > now + LEEWAY_SECS) {
        return refuse(
            format!("the token is not valid for another {} s (`nbf`)", nbf - now),
            "the main site's clock is ahead of this machine's: enable NTP on both",
        );
    }
    if let Some(want) = &rules.audience {
        let matches = match &claims["aud"] {
            Value::String(aud) => aud == want,
            Value::Array(auds) => auds.iter().any(|a| a.as_str() == Some(want)),
            _ => false,
        };
        if !matches {
            return refuse(
                format!(
                    "the token's audience {} is not CHAT_ADMIN_JWT_AUDIENCE={want:?}",
                    claims.get("aud").map_or("(none)".into(), Value::to_string)
                ),
                "make the main site's `aud` and CHAT_ADMIN_JWT_AUDIENCE the same (or unset it)",
            );
        }
    }
    if let Some(want) = &rules.issuer {
        if claims["iss"].as_str() != Some(want.as_str()) {
            return refuse(
                format!(
                    "the token's issuer {} is not CHAT_ADMIN_JWT_ISSUER={want:?}",
                    claims.get("iss").map_or("(none)".into(), Value::to_string)
                ),
                "make the main site's `iss` and CHAT_ADMIN_JWT_ISSUER the same (or unset it)",
            );
        }
    }
    // The gateway's own verification has the last word (lifetime, claim types, …).
    match AgentTokens::with_rules(key, rules).verify_with_expiry(token) {
        Ok(verified) => Ok(format!(
            "the token verifies: agent {:?} ({:?}), expires in {} s",
            verified.agent.id,
            verified.agent.name,
            verified.expires_at.saturating_sub(now)
        )),
        Err(AuthError::Expired) => refuse(
            "the token expired".into(),
            "take a fresh token from the main site",
        ),
        Err(e) => refuse(
            format!("the signature is right but the token is refused: {e}"),
            "mint tokens as the README's \"Agent tokens\" section describes",
        ),
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    fn sign(claims: &Value, alg: &str, key: &[u8]) -> String {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        mac.update(format!("{header}.{payload}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{payload}.{sig}")
    }

    fn why(token: &str, config: &Config) -> String {
        let ctx = Context {
            config,
            token: Some(token),
            timeout: Duration::from_secs(1),
            var: &|_| None,
        };
        match diagnose(token, b"right-secret", "CHAT_ADMIN_JWT_SECRET", &ctx) {
            Ok(ok) => format!("OK {ok}"),
            Err((message, _)) => message,
        }
    }

    #[test]
    fn each_refusal_says_why() {
        let mut config = Config::from_lookup(|_| None).unwrap();
        let now = now_secs();
        let good = serde_json::json!({"sub":"alice","name":"Alice","exp":now+600,"iat":now});
        assert!(why(&sign(&good, "HS256", b"right-secret"), &config)
            .starts_with("OK the token verifies"));
        assert!(why(&sign(&good, "HS256", b"other"), &config).contains("secrets differ"));
        assert!(why(&sign(&good, "HS512", b"right-secret"), &config).contains("HS256 only"));
        let expired = serde_json::json!({"sub":"alice","exp":now-60});
        // 60 s ago when signed; a second or more later on a slow machine.
        let message = why(&sign(&expired, "HS256", b"right-secret"), &config);
        let ago: u64 = message
            .split("expired ")
            .nth(1)
            .and_then(|rest| rest.split(" s ago").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{message}"));
        assert!((60..70).contains(&ago), "{message}");
        let no_sub = serde_json::json!({"exp":now+60});
        assert!(why(&sign(&no_sub, "HS256", b"right-secret"), &config).contains("`sub`"));
        assert!(why("abc.def", &config).contains("not a JWT"));
        config.agent_token_rules.audience = Some("chat".into());
        assert!(why(&sign(&good, "HS256", b"right-secret"), &config).contains("audience (none)"));
        config.agent_token_rules.audience = None;
        config.agent_token_rules.issuer = Some("https://shop.example".into());
        assert!(why(&sign(&good, "HS256", b"right-secret"), &config).contains("issuer (none)"));
        config.agent_token_rules.issuer = None;
        let long = serde_json::json!({"sub":"a","exp":now+3*86_400,"iat":now});
        assert!(why(&sign(&long, "HS256", b"right-secret"), &config)
            .contains("CHAT_ADMIN_JWT_MAX_TTL_SECS"));
    }
}
