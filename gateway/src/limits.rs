//! Connection and rate limits of the admission path: chat sessions open in total and per client
//! address, and session opens per address (a token bucket). Counting is by RAII: a [`Slot`] is
//! held by whatever lives as long as the session (the WebSocket task, the core session of a
//! polling or Socket.IO client, the Engine.IO connection) and gives its place back when dropped.
//!
//! Memory is bounded: an address is tracked only while it holds a slot or its bucket is not
//! full again; idle entries are swept, and past [`MAX_TRACKED_ADDRESSES`] the idle ones are
//! forgotten at once. IPv6 addresses count per /64 (what one subscriber usually gets).

use chat_core::rate::{RateLimit, TokenBucket};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most client addresses tracked at once before idle ones are forgotten regardless of their
/// bucket (addresses holding a slot are bounded by `CHAT_MAX_CONNECTIONS`).
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// How often the table is swept of idle entries.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The limits, from `CHAT_MAX_CONNECTIONS`, `CHAT_MAX_CONNECTIONS_PER_IP` and
/// `CHAT_SESSION_OPENS_PER_IP_PER_MIN` (README, "Configuration").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Chat sessions open at once on this process, every transport and role.
    pub max_connections: usize,
    /// Chat sessions open at once from one client address.
    pub max_connections_per_ip: usize,
    /// Session opens per client address per minute, refilled evenly; the bucket holds this
    /// many or `max_connections_per_ip`, whichever is more.
    pub opens_per_ip_per_min: u32,
}

impl LimitsConfig {
    /// The bucket of session opens per address: `opens_per_ip_per_min` a minute, and a burst of
    /// at least `max_connections_per_ip`, so that every session an address may hold can
    /// reconnect at once (a gateway restart tells every session to reconnect).
    pub fn open_rate(&self) -> RateLimit {
        let burst = u32::try_from(self.max_connections_per_ip)
            .unwrap_or(u32::MAX)
            .max(self.opens_per_ip_per_min);
        RateLimit {
            burst,
            ..RateLimit::per_minute(self.opens_per_ip_per_min)
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 200,
            opens_per_ip_per_min: 120,
        }
    }
}

/// Why the limits refuse a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitRefusal {
    /// `CHAT_MAX_CONNECTIONS` reached.
    TooManyConnections {
        /// The limit.
        limit: usize,
    },
    /// `CHAT_MAX_CONNECTIONS_PER_IP` reached for this address.
    TooManyFromAddress {
        /// The limit.
        limit: usize,
    },
    /// `CHAT_SESSION_OPENS_PER_IP_PER_MIN` exhausted; a token is back after `retry_after`.
    RateLimited {
        /// When an open will be accepted again.
        retry_after: Duration,
        /// The limit.
        per_min: u32,
    },
}

struct Entry {
    open: usize,
    /// `None` when opens are not rate limited ([`Limits::counting`]).
    opens: Option<TokenBucket>,
}

struct Table {
    by_address: HashMap<IpAddr, Entry>,
    swept: Instant,
}

struct Shared {
    config: LimitsConfig,
    /// Whether opens spend from the per-address bucket.
    rate_opens: bool,
    open: AtomicUsize,
    table: Mutex<Table>,
}

/// The limits of one gateway process. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    shared: Arc<Shared>,
}

/// One place among the open sessions; given back when dropped.
pub struct Slot {
    shared: Arc<Shared>,
    address: Option<IpAddr>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("address", &self.address)
            .finish()
    }
}

/// The key an address counts under: itself for IPv4, its /64 for IPv6.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

impl Limits {
    /// Limits with these settings.
    pub fn new(config: LimitsConfig) -> Self {
        Self::build(config, true)
    }

    /// Only counts: at most `total` slots, `per_address` of them per address, no open rate
    /// (the TCP connection caps of [`crate::connections`]).
    pub fn counting(total: usize, per_address: usize) -> Self {
        let config = LimitsConfig {
            max_connections: total,
            max_connections_per_ip: per_address,
            opens_per_ip_per_min: 0,
        };
        Self::build(config, false)
    }

    fn build(config: LimitsConfig, rate_opens: bool) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                rate_opens,
                open: AtomicUsize::new(0),
                table: Mutex::new(Table {
                    by_address: HashMap::new(),
                    swept: Instant::now(),
                }),
            }),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> LimitsConfig {
        self.shared.config
    }

    /// Sessions holding a slot now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }

    /// Client addresses tracked now (for tests and metrics).
    pub fn tracked_addresses(&self) -> usize {
        self.shared.table().by_address.len()
    }

    /// Takes a slot for a new session from `address` (`None`: unknown, only the total counts),
    /// spending one of the address's session opens.
    pub fn acquire(&self, address: Option<IpAddr>) -> Result<Slot, LimitRefusal> {
        self.acquire_at(address, Instant::now())
    }

    fn acquire_at(&self, address: Option<IpAddr>, now: Instant) -> Result<Slot, LimitRefusal> {
        let config = self.shared.config;
        let mut table = self.shared.table();
        // The total is changed under the table lock too, so check-then-add is atomic.
        if self.shared.open.load(Ordering::Acquire) >= config.max_connections {
            return Err(LimitRefusal::TooManyConnections {
                limit: config.max_connections,
            });
        }
        let address = address.map(address_key);
        if let Some(ip) = address {
            table.sweep(now);
            let rate_opens = self.shared.rate_opens;
            let entry = table.by_address.entry(ip).or_insert_with(|| Entry {
                open: 0,
                opens: rate_opens.then(|| TokenBucket::new(config.open_rate(), now)),
            });
            if entry.open >= config.max_connections_per_ip {
                return Err(LimitRefusal::TooManyFromAddress {
                    limit: config.max_connections_per_ip,
                });
            }
            if let Some(Err(retry_after)) = entry.opens.as_mut().map(|b| b.try_take(now)) {
                return Err(LimitRefusal::RateLimited {
                    retry_after,
                    per_min: config.opens_per_ip_per_min,
                });
            }
            entry.open += 1;
        }
        self.shared.open.fetch_add(1, Ordering::AcqRel);
        drop(table);
        Ok(Slot {
            shared: self.shared.clone(),
            address,
        })
    }
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Table {
    /// Forgets addresses with no session whose bucket is full again: now and then, and at once
    /// when the table is at its bound (then every address without a session goes).
    fn sweep(&mut self, now: Instant) {
        let full = self.by_address.len() >= MAX_TRACKED_ADDRESSES;
        if full {
            self.by_address.retain(|_, e| e.open > 0);
            self.swept = now;
        } else if now.saturating_duration_since(self.swept) >= SWEEP_EVERY {
            self.by_address
                .retain(|_, e| e.open > 0 || e.opens.as_ref().is_some_and(|b| !b.is_full(now)));
            self.swept = now;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.shared.table();
        if let Some(ip) = self.address {
            if let Some(entry) = table.by_address.get_mut(&ip) {
                entry.open = entry.open.saturating_sub(1);
            }
        }
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize, per_min: u32) -> Limits {
        Limits::new(LimitsConfig {
            max_connections: total,
            max_connections_per_ip: per_ip,
            opens_per_ip_per_min: per_min,
        })
    }

    #[test]
    fn per_address_and_total_caps_release_on_drop() {
        let l = limits(3, 2, 1000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = l.acquire(Some(a)).unwrap();
        let _s2 = l.acquire(Some(a)).unwrap();
        assert_eq!(
            l.acquire(Some(a)).unwrap_err(),
            LimitRefusal::TooManyFromAddress { limit: 2 }
        );
        let _s3 = l.acquire(Some(b)).unwrap();
        assert_eq!(
            l.acquire(Some(b)).unwrap_err(),
            LimitRefusal::TooManyConnections { limit: 3 }
        );
        drop(s1);
        assert_eq!(l.open(), 2);
        let _s4 = l.acquire(Some(a)).unwrap();
        assert_eq!(l.open(), 3);
    }

    #[test]
    fn a_full_address_can_reconnect_at_once() {
        let rate = LimitsConfig::default().open_rate();
        assert_eq!(rate.burst, 200);
        assert!((rate.per_sec - 2.0).abs() < 1e-9);
    }

    #[test]
    fn opens_are_rate_limited_per_address() {
        let l = limits(100, 2, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        drop(l.acquire_at(Some(a), t0).unwrap());
        drop(l.acquire_at(Some(a), t0).unwrap());
        match l.acquire_at(Some(a), t0).unwrap_err() {
            LimitRefusal::RateLimited { retry_after, .. } => {
                assert!(retry_after <= Duration::from_secs(30), "{retry_after:?}")
            }
            other => panic!("{other:?}"),
        }
        // Another address has its own bucket; unknown addresses only count in the total.
        drop(l.acquire_at(Some("10.0.0.2".parse().unwrap()), t0).unwrap());
        drop(l.acquire_at(None, t0).unwrap());
        assert!(l.acquire_at(Some(a), t0 + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_idle_entries_are_forgotten() {
        let l = limits(100, 1, 1000);
        let _s = l.acquire(Some("2001:db8::1".parse().unwrap())).unwrap();
        assert!(l.acquire(Some("2001:db8::2".parse().unwrap())).is_err());
        assert!(l.acquire(Some("2001:db8:0:1::1".parse().unwrap())).is_ok());

        let l = limits(100_000, 10, 60);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            drop(l.acquire_at(Some(IpAddr::V4(i.into())), t0).unwrap());
        }
        assert_eq!(l.tracked_addresses(), 1000);
        // A minute later every bucket is full again: the next sweep forgets them all.
        drop(
            l.acquire_at(
                Some("10.9.9.9".parse().unwrap()),
                t0 + Duration::from_secs(61),
            )
            .unwrap(),
        );
        assert_eq!(l.tracked_addresses(), 1);
    }
}
