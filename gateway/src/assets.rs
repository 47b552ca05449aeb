//! The browser code, embedded in the binary: the widget, the agent console and the demo page.
//!
//! The two pages carry a Content-Security-Policy and refuse framing by other sites; the widget
//! loader, embedded on third-party sites, carries no frame or policy header that would break it
//! there.

use crate::console_sign_in::ConsoleSignIn;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::{LazyLock, OnceLock};

/// An embedded file.
pub struct Asset {
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static str,
    /// Headers of its own (security policy).
    pub headers: &'static [(&'static str, &'static str)],
}

/// The widget loader: its language tables and their chooser (web/i18n/), the helpers it shares
/// with the console (web/shared/: building elements, the reconnect back-off, how attachments
/// show), its attachments
/// (web/widget/attachments.js) and the widget's own files, in one function scope so that none of
/// them becomes a global of the customer's page, served as one script (customer pages embed one
/// tag). The widget's files share a strict scope of their own, in this order (state.js declares
/// what the others use, widget.js starts it all), left at once when the page already has a
/// widget: the loader is served under three paths and a page may include two.
const WIDGET: Asset = Asset {
    content_type: "application/javascript; charset=utf-8",
    body: concat!(
        "(function () {\n",
        include_str!("../../web/i18n/i18n.js"),
        include_str!("../../web/i18n/en.js"),
        include_str!("../../web/i18n/zh-CN.js"),
        include_str!("../../web/shared/dom.js"),
        include_str!("../../web/shared/backoff.js"),
        include_str!("../../web/shared/attachments.js"),
        include_str!("../../web/widget/attachments.js"),
        "(function () {\n",
        "'use strict';\n",
        "if (window.ChatWidget && window.ChatWidget.version) return;\n",
        include_str!("../../web/widget/state.js"),
        include_str!("../../web/widget/identity.js"),
        include_str!("../../web/widget/ui.js"),
        include_str!("../../web/widget/offline.js"),
        include_str!("../../web/widget/messages.js"),
        include_str!("../../web/widget/read-receipts.js"),
        include_str!("../../web/widget/transports.js"),
        include_str!("../../web/widget/connection.js"),
        include_str!("../../web/widget/typing.js"),
        include_str!("../../web/widget/visitor-context.js"),
        include_str!("../../web/widget/widget.js"),
        "})();\n",
        "}());\n"
    ),
    headers: &[],
};

const CONSOLE_HTML: &str = include_str!("../../web/admin/index.html");
const DEMO_HTML: &str = include_str!("../../web/demo/index.html");

/// The console's sign-in settings (`CHAT_ADMIN_TOKEN_URL`, `CHAT_ADMIN_LOGIN_URL`), fixed at
/// start-up. A process-wide value because [`lookup`] routes a bare path, and the settings are
/// read once like the embedded files themselves.
static CONSOLE_SIGN_IN: OnceLock<ConsolePage> = OnceLock::new();

/// What the console's sign-in settings make of its page.
struct ConsolePage {
    /// `/chat/admin/config.js`.
    config_js: String,
    /// The page's Content-Security-Policy.
    csp: String,
}

/// Serves the console what `configured` means with or without a main site behind the gateway
/// (called once at start-up).
pub fn install_console_sign_in(configured: &ConsoleSignIn, has_upstream: bool) {
    let told = configured.for_console(has_upstream);
    if configured.token_url.is_some() && told.token_url.is_none() {
        tracing::info!(
            "CHAT_ADMIN_TOKEN_URL is a path on this origin and CHAT_UPSTREAM is not set: the \
             agent console asks for a pasted token"
        );
    }
    configure_console(&told);
}

/// Sets the console's sign-in settings; the first call wins (the gateway calls it once, before
/// serving). Until then the console is told to ask for a pasted token.
pub fn configure_console(sign_in: &ConsoleSignIn) -> bool {
    CONSOLE_SIGN_IN
        .set(ConsolePage {
            config_js: sign_in.config_js(),
            csp: sign_in.console_csp(),
        })
        .is_ok()
}

fn console_page() -> &'static ConsolePage {
    CONSOLE_SIGN_IN.get_or_init(|| {
        let paste_only = ConsoleSignIn::paste_only();
        ConsolePage {
            config_js: paste_only.config_js(),
            csp: paste_only.console_csp(),
        }
    })
}

/// The agent console's headers: only its own script and style, chat sockets (and the token
/// URL's origin), `blob:` images (attachments), never framed.
static CONSOLE_HEADERS: LazyLock<[(&str, &str); 3]> = LazyLock::new(|| {
    [
        ("Content-Security-Policy", console_page().csp.as_str()),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    ]
});

/// The demo page's policy: its inline widget configuration and site stylesheet are allowed by
/// hash (nothing else inline), the widget from this origin, chat sockets, and `blob:` images
/// (the widget shows attachments through object URLs: their bytes need the visitor's token).
pub static DEMO_CSP: LazyLock<String> = LazyLock::new(|| {
    let hashes = |tag: &str| {
        inline_blocks(DEMO_HTML, tag)
            .iter()
            .map(|block| {
                let digest = Sha256::digest(block.as_bytes());
                format!(
                    " 'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            })
            .collect::<String>()
    };
    format!(
        "default-src 'self'; script-src 'self'{}; style-src 'self'{}; img-src 'self' data: blob:; \
         connect-src 'self' ws: wss:; frame-ancestors 'self'; base-uri 'none'; \
         form-action 'self'; object-src 'none'",
        hashes("script"),
        hashes("style")
    )
});

static DEMO_HEADERS: LazyLock<[(&str, &str); 3]> = LazyLock::new(|| {
    [
        ("Content-Security-Policy", DEMO_CSP.as_str()),
        ("X-Frame-Options", "SAMEORIGIN"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ]
});

/// The text of every inline `<tag>…</tag>` block (a `<script>` with a `src` is not inline).
fn inline_blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut blocks = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(head_end) = after.find('>') else {
            break;
        };
        let attrs = &after[..head_end];
        let body_and_rest = &after[head_end + 1..];
        let Some(end) = body_and_rest.find(&close) else {
            break;
        };
        if !attrs.contains("src=") {
            blocks.push(&body_and_rest[..end]);
        }
        rest = &body_and_rest[end + close.len()..];
    }
    blocks
}

/// A script of the console, under its own policy.
fn script(body: &'static str) -> Asset {
    Asset {
        content_type: "application/javascript; charset=utf-8",
        body,
        headers: &[],
    }
}

/// The asset served at `path`, if any. The widget answers at its current path and at the two
/// paths older integrations embed.
pub fn lookup(path: &str) -> Option<Asset> {
    let asset = match path {
        "/chat/widget/widget.js" | "/widget/widget.js" | "/widget/widgetScript.js" => WIDGET,
        "/chat/admin/" | "/chat/admin/index.html" => Asset {
            content_type: "text/html; charset=utf-8",
            body: CONSOLE_HTML,
            headers: CONSOLE_HEADERS.as_slice(),
        },
        "/chat/admin/config.js" => Asset {
            content_type: "application/javascript; charset=utf-8",
            body: console_page().config_js.as_str(),
            headers: &[],
        },
        "/chat/admin/console.js" => Asset {
            content_type: "application/javascript; charset=utf-8",
            body: include_str!("../../web/admin/console.js"),
            headers: &[],
        },
        "/chat/admin/session.js" => script(include_str!("../../web/admin/session.js")),
        "/chat/admin/read-receipts.js" => script(include_str!("../../web/admin/read-receipts.js")),
        "/chat/admin/transfer.js" => script(include_str!("../../web/admin/transfer.js")),
        "/chat/admin/replies.js" => script(include_str!("../../web/admin/replies.js")),
        "/chat/admin/site-token.js" => Asset {
            content_type: "application/javascript; charset=utf-8",
            body: include_str!("../../web/admin/site-token.js"),
            headers: &[],
        },
        "/chat/admin/site-switcher.js" => Asset {
            content_type: "application/javascript; charset=utf-8",
            body: include_str!("../../web/admin/site-switcher.js"),
            headers: &[],
        },
        "/chat/admin/visitor-panel.js" => Asset {
            content_type: "application/javascript; charset=utf-8",
            body: include_str!("../../web/admin/visitor-panel.js"),
            headers: &[],
        },
        "/chat/admin/signals.js" => Asset {
            content_type: "application/javascript; charset=utf-8",
            body: include_str!("../../web/admin/signals.js"),
            headers: &[],
        },
        "/chat/admin/canned.js" => Asset {
            content_type: "application/javascript; charset=utf-8",
            body: include_str!("../../web/admin/canned.js"),
            headers: &[],
        },
        "/chat/admin/search.js" => Asset {
            content_type: "application/javascript; charset=utf-8",
            body: include_str!("../../web/admin/search.js"),
            headers: &[],
        },
        "/chat/admin/i18n/i18n.js" => script(include_str!("../../web/i18n/i18n.js")),
        "/chat/admin/i18n/en.js" => script(include_str!("../../web/i18n/en.js")),
        "/chat/admin/i18n/zh-CN.js" => script(include_str!("../../web/i18n/zh-CN.js")),
        "/chat/admin/shared/dom.js" => script(include_str!("../../web/shared/dom.js")),
        "/chat/admin/shared/backoff.js" => script(include_str!("../../web/shared/backoff.js")),
        "/chat/admin/shared/attachments.js" => {
            script(include_str!("../../web/shared/attachments.js"))
        }
        "/chat/admin/language.js" => script(include_str!("../../web/admin/language.js")),
        "/chat/admin/alerts.js" => script(include_str!("../../web/admin/alerts.js")),
        "/chat/admin/attachments.js" => script(include_str!("../../web/admin/attachments.js")),
        "/chat/admin/console.css" => Asset {
            content_type: "text/css; charset=utf-8",
            body: include_str!("../../web/admin/console.css"),
            headers: &[],
        },
        "/chat/demo/" | "/chat/demo/index.html" => Asset {
            content_type: "text/html; charset=utf-8",
            body: DEMO_HTML,
            headers: DEMO_HEADERS.as_slice(),
        },
        _ => return None,
    };
    Some(asset)
}

#[cfg(test)]
mod tests {
    #[test]
    fn legacy_widget_paths_serve_the_same_loader() {
        let current = super::lookup("/chat/widget/widget.js").unwrap().body;
        // One script with its languages inside, in a function scope of its own.
        assert!(current.starts_with("(function () {"));
        assert!(current.contains("ChatLocales['zh-CN'] = {"));
        assert!(current.contains("window.ChatWidget = {"));
        // Its attachments part comes before the widget's state, which calls it; the widget's own
        // files in a strict scope that ends with widget.js's start.
        let attachments_at = current.find("function chatWidgetAttachments(").unwrap();
        let widget_at = current
            .find("'use strict';\nif (window.ChatWidget && window.ChatWidget.version) return;\n")
            .unwrap();
        let state_at = current
            .find("const attachments = chatWidgetAttachments({")
            .unwrap();
        assert!(attachments_at < widget_at && widget_at < state_at);
        // The helpers it shares with the console come before everything that calls them.
        let dom_at = current.find("function chatElement(").unwrap();
        let backoff_at = current.find("function chatBackoff(").unwrap();
        let view_at = current.find("function chatAttachmentView(").unwrap();
        assert!(dom_at < view_at && view_at < attachments_at && backoff_at < attachments_at);
        assert!(current.find("ChatLocales['zh-CN'] = {").unwrap() < dom_at);
        assert!(state_at < current.find("window.ChatWidget = {").unwrap());
        assert!(current.ends_with("if (document.body) start();\nelse document.addEventListener('DOMContentLoaded', start, { once: true });\n})();\n}());\n"));
        assert_eq!(super::lookup("/widget/widget.js").unwrap().body, current);
        assert_eq!(
            super::lookup("/widget/widgetScript.js").unwrap().body,
            current
        );
        assert!(super::lookup("/chat/nothing").is_none());
        assert!(super::lookup("/chat/widget/widget.js")
            .unwrap()
            .headers
            .is_empty());
    }

    #[test]
    fn pages_carry_a_policy_that_covers_their_inline_code() {
        use super::*;
        // The console has nothing inline: `script-src 'self'` is enough.
        assert!(inline_blocks(CONSOLE_HTML, "script").is_empty());
        assert!(inline_blocks(CONSOLE_HTML, "style").is_empty());
        assert!(!CONSOLE_HTML.contains(" style=") && !CONSOLE_HTML.contains(" onclick="));
        // The demo page's inline blocks are each allowed by hash, and nothing is `unsafe-inline`.
        let scripts = inline_blocks(DEMO_HTML, "script");
        let styles = inline_blocks(DEMO_HTML, "style");
        assert_eq!(scripts.len(), 1, "{scripts:?}");
        assert_eq!(styles.len(), 1);
        assert!(scripts[0].contains("ChatWidgetConfig"));
        assert_eq!(DEMO_CSP.matches("'sha256-").count(), 2, "{}", *DEMO_CSP);
        assert!(!DEMO_CSP.contains("unsafe"));
        let demo = lookup("/chat/demo/").unwrap();
        assert!(demo
            .headers
            .iter()
            .any(|(k, v)| *k == "Content-Security-Policy" && v.contains("'sha256-")));
        let console = lookup("/chat/admin/").unwrap();
        assert!(console.headers.contains(&("X-Frame-Options", "DENY")));
        // Attachments show through object URLs (their bytes are fetched with a token): both
        // pages allow `blob:` images, and nothing more than before besides.
        for page in [&demo, &console] {
            let csp = page
                .headers
                .iter()
                .find(|(k, _)| *k == "Content-Security-Policy")
                .map(|(_, v)| *v)
                .unwrap();
            assert!(csp.contains("img-src 'self' data: blob:;"), "{csp}");
        }
    }

    #[test]
    fn the_console_reads_its_sign_in_settings_before_it_starts() {
        use super::*;
        // `defer` scripts run in document order: config.js sets what session.js reads when
        // console.js starts it.
        let config_at = CONSOLE_HTML.find("src=\"./config.js\"").unwrap();
        let site_token_at = CONSOLE_HTML.find("src=\"./site-token.js\"").unwrap();
        let site_switcher_at = CONSOLE_HTML.find("src=\"./site-switcher.js\"").unwrap();
        let console_at = CONSOLE_HTML.find("src=\"./console.js\"").unwrap();
        assert!(config_at < console_at && site_token_at < console_at);
        assert!(site_switcher_at < console_at);
        // The language (and the alerts, which use it) come before every script that shows text.
        let language_at = CONSOLE_HTML.find("src=\"./language.js\"").unwrap();
        let alerts_at = CONSOLE_HTML.find("src=\"./alerts.js\"").unwrap();
        let panel_at = CONSOLE_HTML.find("src=\"./visitor-panel.js\"").unwrap();
        for table in ["i18n.js", "en.js", "zh-CN.js"] {
            let at = CONSOLE_HTML
                .find(&format!("src=\"./i18n/{table}\""))
                .unwrap();
            assert!(at < language_at, "{table}");
            assert!(lookup(&format!("/chat/admin/i18n/{table}")).is_some());
        }
        assert!(language_at < alerts_at && alerts_at < site_switcher_at);
        // The attachments part is called by console.js (and shows text).
        let attachments_at = CONSOLE_HTML.find("src=\"./attachments.js\"").unwrap();
        assert!(language_at < attachments_at && attachments_at < console_at);
        assert!(lookup("/chat/admin/attachments.js").is_some());
        assert!(alerts_at < console_at && language_at < panel_at);
        // The parts console.js calls when it starts (they show text, and the session reads the
        // sign-in settings and the site token's fetcher).
        for part in [
            "session.js",
            "read-receipts.js",
            "transfer.js",
            "replies.js",
        ] {
            let at = CONSOLE_HTML.find(&format!("src=\"./{part}\"")).unwrap();
            assert!(language_at < at && at < console_at, "{part}");
            assert!(config_at < at && site_token_at < at, "{part}");
            assert!(lookup(&format!("/chat/admin/{part}")).is_some());
        }
        // The console's parts that listen to console.js's events (and show text) come after it.
        for part in ["signals.js", "canned.js", "search.js"] {
            let at = CONSOLE_HTML.find(&format!("src=\"./{part}\"")).unwrap();
            assert!(language_at < at && console_at < at, "{part}");
            assert!(lookup(&format!("/chat/admin/{part}")).is_some());
        }
        // The helpers shared with the widget (web/shared/) come before every part that uses them.
        for shared in ["dom.js", "backoff.js", "attachments.js"] {
            let at = CONSOLE_HTML
                .find(&format!("src=\"./shared/{shared}\""))
                .unwrap();
            assert!(at < language_at && at < attachments_at, "{shared}");
            assert!(lookup(&format!("/chat/admin/shared/{shared}")).is_some());
        }
        assert!(lookup("/chat/admin/language.js").is_some());
        assert!(lookup("/chat/admin/alerts.js").is_some());
        assert!(lookup("/chat/admin/site-token.js").is_some());
        assert!(lookup("/chat/admin/site-switcher.js").is_some());
        let config = lookup("/chat/admin/config.js").unwrap();
        assert!(config.content_type.starts_with("application/javascript"));
        assert!(config.body.contains("window.ChatConsoleConfig = {"));
        assert!(include_str!("../../web/admin/session.js").contains("window.ChatConsoleConfig"));
    }

    #[test]
    fn every_script_of_the_console_is_served_as_javascript() {
        use super::*;
        // Each `<script src="./…">` of the page answers at /chat/admin/…, as a script, under the
        // page's `script-src 'self'` (a missing one would leave the console half loaded).
        let mut rest = CONSOLE_HTML;
        let mut seen = 0;
        while let Some(at) = rest.find("<script src=\"./") {
            let after = &rest[at + "<script src=\"./".len()..];
            let end = after.find('"').unwrap();
            let path = format!("/chat/admin/{}", &after[..end]);
            let asset = lookup(&path).unwrap_or_else(|| panic!("{path} is not served"));
            assert!(
                asset.content_type.starts_with("application/javascript"),
                "{path}"
            );
            seen += 1;
            rest = &after[end..];
        }
        // Every script of the page is one of ours, loaded by a relative path (none was missed).
        assert_eq!(seen, CONSOLE_HTML.matches("<script ").count());
        assert!(seen > 10, "{seen}");
        assert!(console_page().csp.contains("script-src 'self';"));
    }
}
