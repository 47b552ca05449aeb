//! Who the client is, and the forwarding headers the main site sees.
//!
//! The client address is the TCP peer, unless the peer is a trusted proxy
//! (`CHAT_TRUSTED_PROXIES`): then `X-Forwarded-For` is walked right to left, skipping trusted
//! addresses, and the first untrusted one is the client (if all are trusted, the leftmost).
//! Anything left of the client in `X-Forwarded-For` was written by the client itself and is
//! never believed.

use http::HeaderValue;
use ipnet::IpNet;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::net::IpAddr;
use std::str::FromStr;

/// The proxies whose `X-Forwarded-For` is believed (`CHAT_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// No trusted proxy: the TCP peer is always the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether `ip` is a trusted proxy. An IPv4-mapped IPv6 address counts as its IPv4 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of CIDR blocks (`10.0.0.0/8, 127.0.0.1/32, ::1/128`); a bare
    /// address means that one address.
    fn from_str(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "{item:?} is not a CIDR block (e.g. 10.0.0.0/8) or an address"
                        ))
                    }
                },
            };
            nets.push(net);
        }
        Ok(Self { nets })
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The TCP peer's address.
pub fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| canonical(a.ip()))
}

/// The IP address of a socket's peer, as requests see it; `None` for a Unix socket.
pub fn socket_peer_ip(socket: &pingora::protocols::SocketDigest) -> Option<IpAddr> {
    socket
        .peer_addr()
        .and_then(|a| a.as_inet())
        .map(|a| canonical(a.ip()))
}

/// The client address of a request: the TCP peer, or, when the peer is a trusted proxy, what
/// its `X-Forwarded-For` says (see the module documentation). `None` when the peer is not an
/// IP socket (a Unix socket).
pub fn client_ip(session: &Session, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = peer_ip(session)?;
    if !trusted.contains(peer) {
        // The common case, without reading (and copying) `X-Forwarded-For`.
        return Some(peer);
    }
    Some(resolve(peer, &forwarded_for(session), trusted).client)
}

/// Every `X-Forwarded-For` entry of the request, left to right (several headers are read in
/// order).
fn forwarded_for(session: &Session) -> Vec<String> {
    let values = session.req_header().headers.get_all("x-forwarded-for");
    forwarded_for_entries(values.iter().map(|v| v.as_bytes()))
}

/// The entries of `X-Forwarded-For` header `values`, left to right.
pub fn forwarded_for_entries<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The outcome of walking `X-Forwarded-For`.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The client.
    pub client: IpAddr,
    /// `X-Forwarded-For` for the main site: the received entries from the client on (as IP
    /// addresses), then the peer. Just the peer when the peer is not trusted.
    pub chain: Vec<IpAddr>,
}

/// Walks `xff` (left to right as received) for a request from `peer`.
pub fn resolve(peer: IpAddr, xff: &[String], trusted: &TrustedProxies) -> Resolved {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return Resolved {
            client: peer,
            chain: vec![peer],
        };
    }
    // An entry that is not an address (garbage, `unknown`, a port glued on) ends the walk: what
    // lies left of it cannot be trusted either.
    let entries: Vec<Option<IpAddr>> = xff.iter().map(|s| parse_entry(s)).collect();
    let mut client_index = None;
    for (i, entry) in entries.iter().enumerate().rev() {
        match entry {
            Some(ip) if trusted.contains(*ip) => client_index = Some(i),
            Some(_) => {
                client_index = Some(i);
                break;
            }
            None => break,
        }
    }
    match client_index {
        Some(i) => {
            let mut chain: Vec<IpAddr> = entries[i..].iter().flatten().copied().collect();
            chain.push(peer);
            Resolved {
                client: chain[0],
                chain,
            }
        }
        // No usable entry: the trusted peer itself is the client.
        None => Resolved {
            client: peer,
            chain: vec![peer],
        },
    }
}

/// An `X-Forwarded-For` entry as an address; tolerates `[v6]` and `v4:port` forms.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = entry.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    entry
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse::<IpAddr>().ok())
        .map(canonical)
}

/// The forwarding headers the main site sees for a request: `X-Forwarded-For` rebuilt (see
/// [`Resolved::chain`]; a client-sent one is dropped unless the peer is trusted), `X-Real-IP`
/// (the client), `X-Forwarded-Proto`, `X-Forwarded-Host`. Written by Pingora's proxy
/// ([`set_forwarding_headers`]) and by the gateway's own forwarder (`crate::site_forward`).
pub struct Forwarding {
    /// `X-Forwarded-For` and `X-Real-IP`; `None` when the peer is not an IP socket.
    client: Option<(HeaderValue, HeaderValue)>,
    proto: HeaderValue,
    host: Option<HeaderValue>,
}

/// Headers a client may send that only the gateway writes for the main site: dropped from what
/// is forwarded, and `Forwarded` is not written back (the main site must not believe it).
pub const FORWARDING_HEADERS: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
];

impl Forwarding {
    /// The forwarding headers for the request of `session`.
    pub fn of(session: &Session, trusted: &TrustedProxies, tls: bool) -> pingora::Result<Self> {
        let host = match session.req_header().headers.get(http::header::HOST) {
            // A clone shares the received bytes.
            Some(host) if host.to_str().is_ok() => Some(host.clone()),
            // HTTP/2 carries the host in the URI (`:authority`).
            _ => session
                .req_header()
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        let forwarded = || forwarded_for(session);
        Ok(Self::for_peer(peer_ip(session), forwarded, host, trusted, tls)?.0)
    }

    /// The forwarding headers for a request from the TCP peer `peer` to `host`, and the client
    /// address they name. `forwarded_for` gives the request's `X-Forwarded-For` entries; it is
    /// called only for a trusted peer.
    pub fn for_peer(
        peer: Option<IpAddr>,
        forwarded_for: impl FnOnce() -> Vec<String>,
        host: Option<HeaderValue>,
        trusted: &TrustedProxies,
        tls: bool,
    ) -> pingora::Result<(Self, Option<IpAddr>)> {
        let (client, address) = match peer {
            Some(peer) if trusted.contains(peer) => {
                let resolved = resolve(peer, &forwarded_for(), trusted);
                let chain: Vec<String> = resolved.chain.iter().map(IpAddr::to_string).collect();
                let headers = (
                    header_value(chain.join(", "))?,
                    header_value(resolved.client.to_string())?,
                );
                (Some(headers), Some(resolved.client))
            }
            Some(peer) => {
                // An untrusted peer is the client and the whole chain: one string for both
                // headers (a `HeaderValue` clone shares its bytes).
                let value = header_value(peer.to_string())?;
                (Some((value.clone(), value)), Some(peer))
            }
            None => (None, None),
        };
        let forwarding = Self {
            client,
            proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
            host,
        };
        Ok((forwarding, address))
    }

    /// The headers to write, by name.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &HeaderValue)> {
        let (forwarded_for, real_ip) = match &self.client {
            Some((xff, real)) => (Some(xff), Some(real)),
            None => (None, None),
        };
        [
            ("X-Forwarded-For", forwarded_for),
            ("X-Real-IP", real_ip),
            ("X-Forwarded-Proto", Some(&self.proto)),
            ("X-Forwarded-Host", self.host.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
    }
}

fn header_value(s: String) -> pingora::Result<HeaderValue> {
    HeaderValue::try_from(s).map_err(|e| {
        pingora::Error::because(pingora::ErrorType::InternalError, "a forwarding header", e)
    })
}

/// Sets the forwarding headers ([`Forwarding`]) of a request proxied to the main site by
/// Pingora; the client-sent ones are removed first.
pub fn set_forwarding_headers(
    session: &Session,
    upstream_request: &mut RequestHeader,
    trusted: &TrustedProxies,
    tls: bool,
) -> pingora::Result<()> {
    for name in FORWARDING_HEADERS {
        while upstream_request.remove_header(name).is_some() {}
    }
    for (name, value) in Forwarding::of(session, trusted, tls)?.headers() {
        upstream_request.insert_header(name, value.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(s: &str) -> Vec<String> {
        s.split(',').map(|p| p.trim().to_owned()).collect()
    }

    fn chain(r: &Resolved) -> String {
        r.chain
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn parses_cidr_lists() {
        let t: TrustedProxies = "10.0.0.0/8, 127.0.0.1/32,::1/128, 192.168.1.7"
            .parse()
            .unwrap();
        assert!(t.contains(ip("10.1.2.3")));
        assert!(t.contains(ip("127.0.0.1")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("192.168.1.7")));
        assert!(
            t.contains(ip("::ffff:10.9.9.9")),
            "IPv4-mapped counts as IPv4"
        );
        assert!(!t.contains(ip("11.0.0.1")));
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.example".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let r = resolve(ip("203.0.113.9"), &xff("1.2.3.4, 10.0.0.1"), &t);
        assert_eq!(r.client, ip("203.0.113.9"));
        assert_eq!(chain(&r), "203.0.113.9");
        let r = resolve(ip("203.0.113.9"), &[], &TrustedProxies::none());
        assert_eq!(chain(&r), "203.0.113.9");
    }

    #[test]
    fn a_trusted_peer_is_walked_right_to_left() {
        let t: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        // Spoofed 6.6.6.6 left of the real client stays out.
        let r = resolve(ip("10.0.0.2"), &xff("6.6.6.6, 198.51.100.4, 10.0.0.1"), &t);
        assert_eq!(r.client, ip("198.51.100.4"));
        assert_eq!(chain(&r), "198.51.100.4, 10.0.0.1, 10.0.0.2");
        // All trusted: the leftmost.
        let r = resolve(ip("10.0.0.2"), &xff("10.0.0.5, 10.0.0.1"), &t);
        assert_eq!(r.client, ip("10.0.0.5"));
        assert_eq!(chain(&r), "10.0.0.5, 10.0.0.1, 10.0.0.2");
        // No header: the proxy itself.
        let r = resolve(ip("10.0.0.2"), &[], &t);
        assert_eq!(r.client, ip("10.0.0.2"));
        // Garbage stops the walk; what is right of it is still used.
        let r = resolve(ip("10.0.0.2"), &xff("198.51.100.4, nonsense, 10.0.0.1"), &t);
        assert_eq!(r.client, ip("10.0.0.1"));
        let r = resolve(ip("10.0.0.2"), &xff("garbage"), &t);
        assert_eq!(r.client, ip("10.0.0.2"));
        // Ports and brackets are tolerated.
        let r = resolve(ip("10.0.0.2"), &xff("198.51.100.4:5555"), &t);
        assert_eq!(r.client, ip("198.51.100.4"));
        let r = resolve(ip("10.0.0.2"), &xff("[2001:db8::1]"), &t);
        assert_eq!(r.client, ip("2001:db8::1"));
    }
}
