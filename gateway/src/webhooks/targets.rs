//! `CHAT_WEBHOOK_URLS`: the URL each site's events are POSTed to, written like `CHAT_API_KEYS`
//! (`<sites>:<url>,…`, `<sites>` being `*` or site ids joined by `|`). A site's own entry wins
//! over `*`; a site named by two entries, or two `*` entries, is refused: one URL per site.
//!
//! URLs may carry credentials (a token in the path or the query), so neither `Debug` nor an
//! error nor a log line ever shows one: only [`Target::origin`], the scheme, host and port.

use chat_core::model::Sites;
use reqwest::Url;
use std::fmt;

/// Where one site's events go.
#[derive(Clone)]
pub struct Target {
    url: Url,
    origin: String,
}

impl Target {
    /// The URL, for the request only.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `scheme://host[:port]`, the only part of the URL ever logged.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/…", self.origin)
    }
}

/// Every configured target.
#[derive(Clone, Debug, Default)]
pub struct WebhookTargets {
    /// Site-specific entries: (sites, target).
    scoped: Vec<(Sites, Target)>,
    /// The `*` entry.
    every_site: Option<Target>,
}

/// Longest URL accepted, in bytes.
const MAX_URL_BYTES: usize = 2048;

impl WebhookTargets {
    /// Parses `CHAT_WEBHOOK_URLS`. Errors name the entry by position, never by its URL.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut targets = Self::default();
        for (n, entry) in value
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let n = n + 1;
            let Some((sites, url)) = entry.split_once(':') else {
                return Err(format!(
                    "entry {n} has no `:`; write <sites>:<url>, e.g. shop1|shop2:https://…"
                ));
            };
            if matches!(sites.trim(), "http" | "https") {
                return Err(format!(
                    "entry {n} starts with a URL; write <sites>:<url>, e.g. *:https://…"
                ));
            }
            let sites = Sites::parse(sites).map_err(|why| format!("entry {n}: {why}"))?;
            let target = parse_url(url.trim()).map_err(|why| format!("entry {n}: {why}"))?;
            match sites {
                Sites::All if targets.every_site.is_some() => {
                    return Err(format!("entry {n}: a second `*` entry; one URL per site"));
                }
                Sites::All => targets.every_site = Some(target),
                Sites::Only(ref list) => {
                    if let Some(site) = list
                        .iter()
                        .find(|site| targets.scoped.iter().any(|(s, _)| s.contains(site)))
                    {
                        return Err(format!(
                            "entry {n}: site `{site}` already has a URL; one URL per site"
                        ));
                    }
                    targets.scoped.push((sites, target));
                }
            }
        }
        Ok(targets)
    }

    /// Whether no URL is configured.
    pub fn is_empty(&self) -> bool {
        self.every_site.is_none() && self.scoped.is_empty()
    }

    /// The target of `site`: its own entry, else the `*` entry.
    pub fn for_site(&self, site: &str) -> Option<&Target> {
        self.scoped
            .iter()
            .find(|(sites, _)| sites.contains(site))
            .map(|(_, target)| target)
            .or(self.every_site.as_ref())
    }

    /// The sites that have a target: those whose facts get outbox rows.
    pub fn sites(&self) -> Option<Sites> {
        if self.every_site.is_some() {
            return Some(Sites::All);
        }
        Sites::only(
            self.scoped
                .iter()
                .filter_map(|(sites, _)| sites.list())
                .flatten()
                .cloned(),
        )
    }
}

fn parse_url(text: &str) -> Result<Target, String> {
    if text.len() > MAX_URL_BYTES {
        return Err(format!("the URL is longer than {MAX_URL_BYTES} bytes"));
    }
    // The parser's error never contains the input.
    let url = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the URL's scheme is `{}`; use http:// or https://",
            url.scheme()
        ));
    }
    let Some(host) = url.host_str() else {
        return Err("the URL has no host".into());
    };
    let origin = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    Ok(Target { url, origin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sites_own_entry_wins_over_every_site() {
        let targets = WebhookTargets::parse(
            "shop1|shop2:https://crm.example/hooks?token=s3cret, *:http://127.0.0.1:9000/all",
        )
        .unwrap();
        let shop1 = targets.for_site("shop1").unwrap();
        assert_eq!(
            shop1.url().as_str(),
            "https://crm.example/hooks?token=s3cret"
        );
        assert_eq!(shop1.origin(), "https://crm.example");
        assert_eq!(
            targets.for_site("shop9").unwrap().origin(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(targets.sites(), Some(Sites::All));
        assert!(!format!("{targets:?}").contains("s3cret"));

        let scoped =
            WebhookTargets::parse("b|a:https://x.example/1,c:https://y.example/2").unwrap();
        assert_eq!(scoped.sites().unwrap().to_string(), "a,b,c");
        assert!(scoped.for_site("d").is_none());
        assert!(WebhookTargets::parse("").unwrap().is_empty());
        assert_eq!(WebhookTargets::parse(" ").unwrap().sites(), None);
    }

    #[test]
    fn bad_entries_are_refused_without_showing_the_url() {
        for (value, why) in [
            ("https//crm.example/s3cret", "no `:`"),
            ("https://crm.example/s3cret", "starts with a URL"),
            ("shop 1:https://crm.example/s3cret", "not a site id"),
            ("shop1:ftp://crm.example/s3cret", "scheme is `ftp`"),
            ("shop1:crm.example/s3cret", "not a URL"),
            (
                "shop1:https://a.example/s3cret,shop1|x:https://b.example/",
                "already has a URL",
            ),
            (
                "*:https://a.example/s3cret,*:https://b.example/",
                "second `*`",
            ),
        ] {
            let err = WebhookTargets::parse(value).unwrap_err();
            assert!(err.contains(why), "{value}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        let long = format!("a:https://x.example/{}", "p".repeat(MAX_URL_BYTES));
        assert!(WebhookTargets::parse(&long).unwrap_err().contains("longer"));
    }
}
