//! The summary table (like issue 12's), the per-rate detail table, and the section of
//! docs/benchmarks.md they are written into.

use std::fmt::Write as _;

use crate::idle::IdleResult;
use crate::load::LoadResult;
use crate::monitor::{self, Usage};
use crate::systems::System;

pub const SECTION: &str = "## Peer benchmark (Nginx + Node, socketioxide, gateway)";

/// One rate run of one system, with what it cost.
pub struct RateRow {
    pub system: System,
    pub result: LoadResult,
    pub usage: Usage,
}

pub struct Criteria {
    pub agents: usize,
    pub p99_limit_ms: f64,
    pub reference_rate: u64,
}

impl RateRow {
    pub fn p50_ms(&self) -> f64 {
        self.result.latency_us.value_at_quantile(0.50) as f64 / 1000.0
    }
    pub fn p99_ms(&self) -> f64 {
        self.result.latency_us.value_at_quantile(0.99) as f64 / 1000.0
    }
    pub fn achieved(&self, c: &Criteria) -> f64 {
        self.result.achieved_rate(c.agents)
    }
    fn messages(&self, c: &Criteria) -> f64 {
        (self.achieved(c) * self.usage.secs).max(1.0)
    }
    pub fn server_us_per_msg(&self, c: &Criteria) -> f64 {
        self.usage.server_cpu_secs * 1e6 / self.messages(c)
    }
    pub fn postgres_us_per_msg(&self, c: &Criteria) -> f64 {
        self.usage.postgres_cpu_secs * 1e6 / self.messages(c)
    }
    pub fn xact_per_msg(&self, c: &Criteria) -> Option<f64> {
        self.usage.xacts.map(|x| x as f64 / self.messages(c))
    }
    /// Why the rate does not count as sustained, if it does not.
    pub fn failure(&self, c: &Criteria) -> Option<String> {
        let r = &self.result;
        if let Some(how) = r.agents_closed.first() {
            return Some(format!(
                "{} agent session(s) ended by the server ({how})",
                r.agents_closed.len()
            ));
        }
        if r.window_deliveries == 0 {
            return Some("nothing delivered".into());
        }
        if r.ack_errors > 0 {
            return Some(format!("{} sends answered with an error", r.ack_errors));
        }
        if r.undelivered > 0 {
            return Some(format!(
                "{} deliveries missing after the drain",
                r.undelivered
            ));
        }
        if self.achieved(c) < 0.95 * r.rate as f64 {
            return Some(format!("achieved only {:.0} msg/s", self.achieved(c)));
        }
        if self.p99_ms() > c.p99_limit_ms {
            return Some(format!("p99 {:.1} ms", self.p99_ms()));
        }
        None
    }
    fn cpu_line(&self) -> String {
        let u = &self.usage;
        let pct = |s: f64| 100.0 * s / u.secs.max(1e-9);
        format!(
            "server {:.0} %, Postgres backends {:.0} %, load generator {:.0} % of one core",
            pct(u.server_cpu_secs),
            pct(u.postgres_cpu_secs),
            pct(u.loadgen_cpu_secs)
        )
    }
}

pub fn usage_of(result: &LoadResult) -> Usage {
    monitor::usage(&result.before, &result.after)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The highest rate sustained with p99 within the limit (a lower rate that failed, e.g. in a
/// burst of the machine's noise, does not hide it), and the first rate above it that failed.
fn highest_sustained<'a>(
    rows: &[&'a RateRow],
    c: &Criteria,
) -> (Option<&'a RateRow>, Option<&'a RateRow>) {
    let best = rows.iter().rev().find(|r| r.failure(c).is_none()).copied();
    let floor = best.map_or(0, |b| b.result.rate);
    let failed = rows
        .iter()
        .find(|r| r.result.rate > floor && r.failure(c).is_some())
        .copied();
    (best, failed)
}

pub struct Report<'a> {
    pub systems: &'a [System],
    pub rates: &'a [RateRow],
    pub idle: &'a [(System, IdleResult)],
    pub criteria: Criteria,
}

impl Report<'_> {
    fn rows_of(&self, s: System) -> Vec<&RateRow> {
        let mut rows: Vec<&RateRow> = self.rates.iter().filter(|r| r.system == s).collect();
        rows.sort_by_key(|r| r.result.rate);
        rows
    }

    fn at_reference(&self, s: System) -> Option<&RateRow> {
        self.rows_of(s)
            .into_iter()
            .find(|r| r.result.rate == self.criteria.reference_rate)
    }

    fn idle_of(&self, s: System) -> Option<&IdleResult> {
        self.idle.iter().find(|(sys, _)| *sys == s).map(|(_, r)| r)
    }

    /// The summary table in Markdown.
    pub fn summary(&self) -> String {
        let c = &self.criteria;
        let mut out = String::new();
        let header: Vec<&str> = self.systems.iter().map(|s| s.title()).collect();
        writeln!(out, "| | {} |", header.join(" | ")).ok();
        writeln!(out, "|---|{}", "---:|".repeat(self.systems.len())).ok();
        let baseline = self
            .systems
            .first()
            .and_then(|s| highest_sustained(&self.rows_of(*s), c).0)
            .map(|r| r.result.rate);
        let mut line = |label: String, cell: &dyn Fn(System) -> String| {
            let cells: Vec<String> = self.systems.iter().map(|s| cell(*s)).collect();
            writeln!(out, "| {label} | {} |", cells.join(" | ")).ok();
        };
        line(
            format!(
                "highest rate with visitor→agent p99 ≤ {} ms",
                c.p99_limit_ms
            ),
            &|s| match highest_sustained(&self.rows_of(s), c).0 {
                Some(r) => match baseline {
                    Some(b) if b > 0 => format!(
                        "{} msg/s ({:.1}×)",
                        r.result.rate,
                        r.result.rate as f64 / b as f64
                    ),
                    _ => format!("{} msg/s", r.result.rate),
                },
                None => "none".into(),
            },
        );
        let rr = c.reference_rate;
        let at =
            |s: System, f: &dyn Fn(&RateRow) -> String| self.at_reference(s).map_or("–".into(), f);
        line(format!("p50 / p99 at {rr} msg/s"), &|s| {
            at(s, &|r| format!("{:.2} / {:.1} ms", r.p50_ms(), r.p99_ms()))
        });
        line(format!("server CPU per message at {rr} msg/s"), &|s| {
            at(s, &|r| format!("{:.0} µs", r.server_us_per_msg(c)))
        });
        line(
            format!("Postgres backend CPU per message at {rr} msg/s"),
            &|s| at(s, &|r| format!("{:.0} µs", r.postgres_us_per_msg(c))),
        );
        line("Postgres transactions per message".into(), &|s| {
            at(s, &|r| {
                r.xact_per_msg(c).map_or("–".into(), |x| format!("{x:.2}"))
            })
        });
        line(format!("server RSS at {rr} msg/s"), &|s| {
            at(s, &|r| mib(r.usage.server_rss_kib))
        });
        let idle_n = self.idle.first().map_or(0, |(_, r)| r.connections);
        line(
            format!("idle RSS per connection, {idle_n} visitors"),
            &|s| {
                self.idle_of(s).map_or("–".into(), |r| {
                    format!("{:.1} KiB", r.per_connection_kib())
                })
            },
        );
        line("base RSS".into(), &|s| {
            self.idle_of(s).map_or("–".into(), |r| mib(r.base_rss_kib))
        });
        line("handshakes/s (new visitor connections)".into(), &|s| {
            self.idle_of(s)
                .map_or("–".into(), |r| format!("{:.0}", r.handshakes_per_sec))
        });
        out
    }

    /// Every rate run, one line each.
    pub fn details(&self) -> String {
        let c = &self.criteria;
        let mut out = String::from(
            "| system | rate | achieved | p50 ms | p99 ms | p99.9 ms | max ms | server CPU/msg | Postgres CPU/msg | xact/msg | server RSS | missing | send errors |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let mut rows: Vec<&RateRow> = self.rates.iter().collect();
        rows.sort_by_key(|r| {
            (
                r.result.rate,
                self.systems.iter().position(|s| *s == r.system),
            )
        });
        for r in rows {
            let h = &r.result.latency_us;
            writeln!(
                out,
                "| {} | {} | {:.0} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} µs | {:.0} µs | {} | {} | {} | {} |",
                r.system.slug(),
                r.result.rate,
                r.achieved(c),
                r.p50_ms(),
                r.p99_ms(),
                h.value_at_quantile(0.999) as f64 / 1000.0,
                h.max() as f64 / 1000.0,
                r.server_us_per_msg(c),
                r.postgres_us_per_msg(c),
                r.xact_per_msg(c).map_or("–".into(), |x| format!("{x:.2}")),
                mib(r.usage.server_rss_kib),
                r.result.undelivered,
                r.result.ack_errors,
            )
            .ok();
        }
        out
    }

    /// What limited each system's figure: the first rate it did not sustain and the CPU shares
    /// there, or that it sustained every rate run.
    pub fn limits(&self) -> String {
        let c = &self.criteria;
        let mut parts = Vec::new();
        for s in self.systems {
            let rows = self.rows_of(*s);
            let (best, failed) = highest_sustained(&rows, c);
            let mut part = match failed {
                Some(r) => format!(
                    "{}: at {} msg/s {} ({})",
                    s.slug(),
                    r.result.rate,
                    r.failure(c).unwrap_or_default(),
                    r.cpu_line()
                ),
                None => match rows.last() {
                    Some(r) => format!(
                        "{}: sustained up to the highest rate run, {} msg/s ({})",
                        s.slug(),
                        r.result.rate,
                        r.cpu_line()
                    ),
                    None => format!("{}: no rate run", s.slug()),
                },
            };
            let floor = best.map_or(0, |b| b.result.rate);
            for r in rows.iter().filter(|r| r.result.rate < floor) {
                if let Some(why) = r.failure(c) {
                    part.push_str(&format!(", though at {} msg/s {why}", r.result.rate));
                }
            }
            parts.push(part);
        }
        parts.join("; ")
    }
}

/// Replaces the section `SECTION` of `doc` (up to the next `## ` heading) with `body`, or appends
/// it when the document has none.
pub fn replace_section(doc: &str, body: &str) -> String {
    let section = format!("{SECTION}\n\n{}", body.trim_end());
    let Some(start) = doc.find(&format!("\n{SECTION}\n")).map(|i| i + 1) else {
        return format!("{}\n\n{section}\n", doc.trim_end());
    };
    let rest = &doc[start + SECTION.len()..];
    let end = rest
        .find("\n## ")
        .map_or(doc.len(), |i| start + SECTION.len() + i + 1);
    format!(
        "{}{section}\n{}{}",
        &doc[..start],
        if end < doc.len() { "\n" } else { "" },
        &doc[end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_then_replaces_the_section() {
        let doc = "# Benchmarks\n\n## Other\n\ntext\n";
        let once = replace_section(doc, "first\n");
        assert!(once.starts_with(doc.trim_end()));
        assert!(once.ends_with(&format!("{SECTION}\n\nfirst\n")));
        let twice = replace_section(&once, "second\n");
        assert_eq!(twice, once.replace("first", "second"));
        let with_next = format!("{once}\n## Later\n\nmore\n");
        let replaced = replace_section(&with_next, "third\n");
        assert!(replaced.contains(&format!("{SECTION}\n\nthird\n\n## Later\n\nmore\n")));
        assert!(!replaced.contains("first"));
    }
}
