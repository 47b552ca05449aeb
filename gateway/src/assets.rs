//! The browser code, embedded in the binary: the widget, the agent console and the demo page.
//!
//! The two pages carry a Content-Security-Policy and refuse framing by other sites; the widget
//! loader, embedded on third-party sites, carries no frame or policy header that would break it
//! there.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// An embedded file.
pub struct Asset {
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static str,
    /// Headers of its own (security policy).
    pub headers: &'static [(&'static str, &'static str)],
}

const WIDGET: Asset = Asset {
    content_type: "application/javascript; charset=utf-8",
    body: include_str!("../../web/widget/widget.js"),
    headers: &[],
};

const CONSOLE_HTML: &str = include_str!("../../web/admin/index.html");
const DEMO_HTML: &str = include_str!("../../web/demo/index.html");

/// The agent console's policy: only its own script and style, chat sockets, never framed.
pub const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'; object-src 'none'";

const CONSOLE_HEADERS: &[(&str, &str)] = &[
    ("Content-Security-Policy", CONSOLE_CSP),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
];

/// The demo page's policy: its inline widget configuration and site stylesheet are allowed by
/// hash (nothing else inline), the widget from this origin, chat sockets.
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
        "default-src 'self'; script-src 'self'{}; style-src 'self'{}; img-src 'self' data:; \
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

/// The asset served at `path`, if any. The widget answers at its current path and at the two
/// paths older integrations embed.
pub fn lookup(path: &str) -> Option<Asset> {
    let asset = match path {
        "/chat/widget/widget.js" | "/widget/widget.js" | "/widget/widgetScript.js" => WIDGET,
        "/chat/admin/" | "/chat/admin/index.html" => Asset {
            content_type: "text/html; charset=utf-8",
            body: CONSOLE_HTML,
            headers: CONSOLE_HEADERS,
        },
        "/chat/admin/console.js" => Asset {
            content_type: "application/javascript; charset=utf-8",
            body: include_str!("../../web/admin/console.js"),
            headers: &[],
        },
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
    }
}
