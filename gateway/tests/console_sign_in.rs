//! The console's sign-in settings as the real binary serves them: `/chat/admin/config.js`, the
//! console's policy for a token URL on another origin, a bad URL refused at start, and the
//! default token URL reaching the main site with the agent's cookie. (The browser flow itself:
//! web/tests/console-login.test.mjs.)

mod common;

use common::{start_upstream, Gateway};

async fn console_config(gw: &Gateway) -> serde_json::Value {
    let res = reqwest::get(gw.http("/chat/admin/config.js"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    let body = res.text().await.unwrap();
    let json = body
        .split_once("window.ChatConsoleConfig = ")
        .and_then(|(_, rest)| rest.trim_end().strip_suffix(';'))
        .unwrap_or_else(|| panic!("no settings in {body:?}"));
    serde_json::from_str(json).unwrap()
}

async fn console_csp(gw: &Gateway) -> String {
    let res = reqwest::get(gw.http("/chat/admin/")).await.unwrap();
    res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn with_the_main_site_behind_it_the_console_asks_it_for_tokens() {
    let (upstream, heads) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[("CHAT_UPSTREAM", &format!("127.0.0.1:{upstream}"))],
    );
    let config = console_config(&gw).await;
    assert_eq!(config["tokenUrl"], "/api/admin/chat/token");
    assert_eq!(config["loginUrl"], "/login");
    assert!(console_csp(&gw)
        .await
        .contains("connect-src 'self' ws: wss:;"));

    // The default token URL is the main site's, through the proxy, with the agent's cookie.
    let res = reqwest::Client::new()
        .get(gw.http("/api/admin/chat/token"))
        .header("Cookie", "site_session=s-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "hello from the main site");
    let heads = heads.lock().unwrap();
    let head = heads
        .iter()
        .find(|h| h.starts_with("GET /api/admin/chat/token "))
        .expect("the token request reached the main site");
    assert_eq!(
        common::header_value(head, "cookie"),
        Some("site_session=s-alice")
    );
}

#[tokio::test]
async fn without_a_main_site_or_with_off_the_console_takes_pasted_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let config = console_config(&gw).await;
    assert!(
        config["tokenUrl"].is_null() && config["loginUrl"].is_null(),
        "{config}"
    );

    let (upstream, _) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_UPSTREAM", &format!("127.0.0.1:{upstream}")),
            ("CHAT_ADMIN_TOKEN_URL", "off"),
            ("CHAT_ADMIN_LOGIN_URL", ""),
        ],
    );
    let config = console_config(&gw).await;
    assert!(
        config["tokenUrl"].is_null() && config["loginUrl"].is_null(),
        "{config}"
    );
}

#[tokio::test]
async fn a_token_url_on_another_origin_is_allowed_by_the_console_policy() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            (
                "CHAT_ADMIN_TOKEN_URL",
                "https://www.example.com/api/admin/chat/token",
            ),
            (
                "CHAT_ADMIN_LOGIN_URL",
                "https://www.example.com/login?callbackUrl=%2Fchat%2Fadmin%2F",
            ),
        ],
    );
    let config = console_config(&gw).await;
    assert_eq!(
        config["tokenUrl"],
        "https://www.example.com/api/admin/chat/token"
    );
    assert_eq!(
        config["loginUrl"],
        "https://www.example.com/login?callbackUrl=%2Fchat%2Fadmin%2F"
    );
    let csp = console_csp(&gw).await;
    assert!(
        csp.contains("connect-src 'self' ws: wss: https://www.example.com;"),
        "{csp}"
    );
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("unsafe"),
        "{csp}"
    );
}

#[test]
fn a_token_url_that_is_not_a_url_stops_the_gateway_with_the_variable_named() {
    let dir = tempfile::tempdir().unwrap();
    let (status, log) = Gateway::refused_start(
        dir.path(),
        &[("CHAT_ADMIN_TOKEN_URL", "javascript:alert(1)")],
    );
    assert!(!status.success());
    assert!(log.contains("CHAT_ADMIN_TOKEN_URL"), "{log}");
    assert!(!log.contains("SERVER_OK"), "{log}");
}
