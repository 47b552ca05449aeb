//! Which paths the gateway answers itself, and which go to the main site.

use crate::assets::{self, Asset};
use chat_core::model::Role;

/// Where a request goes.
pub enum Route {
    /// Not chat's: reverse-proxied to `CHAT_UPSTREAM`.
    Upstream,
    /// `GET /chat/health` and `/chat/health/ready`: readiness.
    Health,
    /// `GET /chat/health/live`: liveness.
    Live,
    /// `GET /chat/api/whoami`.
    WhoAmI,
    /// `GET /chat/api/stats`.
    ApiStats,
    /// `/chat/api/conversations/{id}/messages`.
    ApiMessages(String),
    /// `/chat/api/sites/{site}/users/{user_id}/messages` (both still percent-encoded).
    ApiUserMessages {
        /// The site.
        site: String,
        /// The main site's own user id.
        user: String,
    },
    /// `GET /chat/api/conversations/{id}/visitor`.
    ApiVisitor(String),
    /// `/chat/api/canned-responses` (`None`) or `/chat/api/canned-responses/{id}`.
    ApiCanned(Option<String>),
    /// `/chat/api/attachments` (`None`) or `/chat/api/attachments/{id}`.
    ApiAttachments(Option<String>),
    /// `GET /chat/api/conversations/search`.
    ApiSearch,
    /// An embedded browser file.
    Asset(Asset),
    /// `/ws-visitor/` or `/ws-admin/`: a WebSocket for that role.
    Socket(Role),
    /// `/ws-visitor/poll` or `/ws-admin/poll`: HTTP long-polling for that role.
    Poll(Role),
    /// A canonical path for a short one.
    Redirect(&'static str),
    /// Under `/chat/` but nothing there.
    NotFound,
}

impl Route {
    /// The `route` label of `chat_http_requests_total`: a fixed name per route, never the path.
    /// `None` for [`Route::Upstream`], which has metrics of its own.
    pub fn metric_name(&self) -> Option<&'static str> {
        Some(match self {
            Self::Upstream => return None,
            Self::Health => "health",
            Self::Live => "health_live",
            Self::WhoAmI => "whoami",
            Self::ApiStats => "api_stats",
            Self::ApiMessages(_) => "api_messages",
            Self::ApiUserMessages { .. } => "api_user_messages",
            Self::ApiVisitor(_) => "api_visitor",
            Self::ApiCanned(_) => "api_canned",
            Self::ApiSearch => "api_search",
            Self::ApiAttachments(_) => "api_attachments",
            Self::Asset(_) => "asset",
            Self::Socket(Role::Visitor) => "socket_visitor",
            Self::Socket(Role::Agent) => "socket_agent",
            Self::Poll(Role::Visitor) => "poll_visitor",
            Self::Poll(Role::Agent) => "poll_agent",
            Self::Redirect(_) => "redirect",
            Self::NotFound => "not_found",
        })
    }
}

/// Routes a request path.
pub fn route(path: &str) -> Route {
    match path {
        "/ws-visitor/poll" | "/ws-visitor/poll/" => return Route::Poll(Role::Visitor),
        "/ws-admin/poll" | "/ws-admin/poll/" => return Route::Poll(Role::Agent),
        _ => {}
    }
    if path == "/ws-visitor" || path.starts_with("/ws-visitor/") {
        return Route::Socket(Role::Visitor);
    }
    if path == "/ws-admin" || path.starts_with("/ws-admin/") {
        return Route::Socket(Role::Agent);
    }
    if let Some(asset) = assets::lookup(path) {
        return Route::Asset(asset);
    }
    match path {
        "/chat/health" | "/chat/health/ready" => Route::Health,
        "/chat/health/live" => Route::Live,
        "/chat/api/whoami" => Route::WhoAmI,
        "/chat/api/stats" => Route::ApiStats,
        "/chat/api/conversations/search" => Route::ApiSearch,
        "/chat/api/canned-responses" => Route::ApiCanned(None),
        "/chat/api/attachments" => Route::ApiAttachments(None),
        _ if path.starts_with("/chat/api/attachments/") => {
            let id = &path["/chat/api/attachments/".len()..];
            if id.is_empty() || id.contains('/') {
                Route::NotFound
            } else {
                Route::ApiAttachments(Some(id.to_owned()))
            }
        }
        _ if path.starts_with("/chat/api/canned-responses/") => {
            let id = &path["/chat/api/canned-responses/".len()..];
            if id.is_empty() || id.contains('/') {
                Route::NotFound
            } else {
                Route::ApiCanned(Some(id.to_owned()))
            }
        }
        _ if path.starts_with("/chat/api/conversations/") && path.ends_with("/messages") => {
            let id = &path["/chat/api/conversations/".len()..path.len() - "/messages".len()];
            if id.is_empty() || id.contains('/') {
                Route::NotFound
            } else {
                Route::ApiMessages(id.to_owned())
            }
        }
        _ if path.starts_with("/chat/api/sites/") && path.ends_with("/messages") => {
            let inner = &path["/chat/api/sites/".len()..path.len() - "/messages".len()];
            match inner.split('/').collect::<Vec<_>>()[..] {
                [site, "users", user] if !site.is_empty() && !user.is_empty() => {
                    Route::ApiUserMessages {
                        site: site.to_owned(),
                        user: user.to_owned(),
                    }
                }
                _ => Route::NotFound,
            }
        }
        _ if path.starts_with("/chat/api/conversations/") && path.ends_with("/visitor") => {
            let id = &path["/chat/api/conversations/".len()..path.len() - "/visitor".len()];
            if id.is_empty() || id.contains('/') {
                Route::NotFound
            } else {
                Route::ApiVisitor(id.to_owned())
            }
        }
        "/chat" | "/chat/" | "/chat/demo" => Route::Redirect("/chat/demo/"),
        "/chat/admin" => Route::Redirect("/chat/admin/"),
        _ if path.starts_with("/chat/") => Route::NotFound,
        _ => Route::Upstream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One route of each kind. The match without a wildcard stops compiling when a variant is
    /// added, so that the list below gets it too.
    fn one_of_each() -> Vec<Route> {
        let _listed_below = |route: &Route| match route {
            Route::Upstream
            | Route::Health
            | Route::Live
            | Route::WhoAmI
            | Route::ApiStats
            | Route::ApiMessages(_)
            | Route::ApiUserMessages { .. }
            | Route::ApiVisitor(_)
            | Route::ApiCanned(_)
            | Route::ApiSearch
            | Route::ApiAttachments(_)
            | Route::Asset(_)
            | Route::Socket(_)
            | Route::Poll(_)
            | Route::Redirect(_)
            | Route::NotFound => (),
        };
        vec![
            Route::Upstream,
            Route::Health,
            Route::Live,
            Route::WhoAmI,
            Route::ApiStats,
            Route::ApiMessages(String::new()),
            Route::ApiUserMessages {
                site: String::new(),
                user: String::new(),
            },
            Route::ApiVisitor(String::new()),
            Route::ApiCanned(None),
            Route::ApiSearch,
            Route::ApiAttachments(None),
            Route::Asset(crate::assets::lookup("/chat/widget/widget.js").expect("the widget")),
            Route::Socket(Role::Visitor),
            Route::Socket(Role::Agent),
            Route::Poll(Role::Visitor),
            Route::Poll(Role::Agent),
            Route::Redirect("/chat/demo/"),
            Route::NotFound,
        ]
    }

    #[test]
    fn every_route_label_is_documented() {
        let doc = include_str!("../../docs/metrics.md");
        let row = doc
            .lines()
            .find(|l| l.starts_with("| `route` |"))
            .expect("docs/metrics.md lists the route label's values");
        let names: Vec<_> = one_of_each()
            .iter()
            .filter_map(Route::metric_name)
            .collect();
        assert_eq!(names.len(), 17);
        for name in names {
            assert!(row.contains(&format!("`{name}`")), "{name} is not in {row}");
        }
    }

    #[test]
    fn chat_paths_stay_and_the_rest_goes_upstream() {
        assert!(matches!(
            route("/ws-visitor/"),
            Route::Socket(Role::Visitor)
        ));
        assert!(matches!(route("/ws-admin"), Route::Socket(Role::Agent)));
        assert!(matches!(
            route("/ws-visitor/poll"),
            Route::Poll(Role::Visitor)
        ));
        assert!(matches!(route("/ws-admin/poll/"), Route::Poll(Role::Agent)));
        assert!(matches!(
            route("/ws-admin/poll/x"),
            Route::Socket(Role::Agent)
        ));
        assert!(matches!(route("/chat/health"), Route::Health));
        assert!(matches!(route("/chat/health/ready"), Route::Health));
        assert!(matches!(route("/chat/health/live"), Route::Live));
        assert!(matches!(route("/widget/widgetScript.js"), Route::Asset(_)));
        assert!(matches!(route("/chat/nope"), Route::NotFound));
        assert!(matches!(route("/"), Route::Upstream));
        assert!(matches!(route("/chatroom"), Route::Upstream));
        assert!(matches!(route("/ws-visitors"), Route::Upstream));
        assert!(
            matches!(route("/chat/api/conversations/abc/messages"), Route::ApiMessages(id) if id == "abc")
        );
        assert!(
            matches!(route("/chat/api/conversations/abc/visitor"), Route::ApiVisitor(id) if id == "abc")
        );
        assert!(matches!(
            route("/chat/api/conversations/search"),
            Route::ApiSearch
        ));
        assert!(matches!(
            route("/chat/api/canned-responses"),
            Route::ApiCanned(None)
        ));
        assert!(
            matches!(route("/chat/api/canned-responses/abc"), Route::ApiCanned(Some(id)) if id == "abc")
        );
        assert!(matches!(
            route("/chat/api/canned-responses/a/b"),
            Route::NotFound
        ));
        assert!(matches!(
            route("/chat/api/conversations//messages"),
            Route::NotFound
        ));
        assert!(matches!(
            route("/chat/api/conversations/a/b/messages"),
            Route::NotFound
        ));
        assert!(matches!(
            route("/chat/api/sites/shop1/users/u%2F7/messages"),
            Route::ApiUserMessages { site, user } if site == "shop1" && user == "u%2F7"
        ));
        for bad in [
            "/chat/api/sites//users/u/messages",
            "/chat/api/sites/s/users//messages",
            "/chat/api/sites/s/people/u/messages",
            "/chat/api/sites/s/users/u/x/messages",
        ] {
            assert!(matches!(route(bad), Route::NotFound), "{bad}");
        }
    }
}
