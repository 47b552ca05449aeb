//! The browser code, embedded in the binary: the widget, the agent console and the demo page.

/// An embedded file.
pub struct Asset {
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static str,
}

const WIDGET: Asset = Asset {
    content_type: "application/javascript; charset=utf-8",
    body: include_str!("../../web/widget/widget.js"),
};

/// The asset served at `path`, if any. The widget answers at its current path and at the two
/// paths older integrations embed.
pub fn lookup(path: &str) -> Option<Asset> {
    let asset = match path {
        "/chat/widget/widget.js" | "/widget/widget.js" | "/widget/widgetScript.js" => WIDGET,
        "/chat/admin/" | "/chat/admin/index.html" => Asset {
            content_type: "text/html; charset=utf-8",
            body: include_str!("../../web/admin/index.html"),
        },
        "/chat/admin/console.js" => Asset {
            content_type: "application/javascript; charset=utf-8",
            body: include_str!("../../web/admin/console.js"),
        },
        "/chat/admin/console.css" => Asset {
            content_type: "text/css; charset=utf-8",
            body: include_str!("../../web/admin/console.css"),
        },
        "/chat/demo/" | "/chat/demo/index.html" => Asset {
            content_type: "text/html; charset=utf-8",
            body: include_str!("../../web/demo/index.html"),
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
    }
}
