//! What the kernel says about the servers: CPU time (utime + stime from /proc/PID/stat) and
//! resident memory (VmRSS), and which Postgres backends serve a given database (their process
//! title names it).

use std::collections::HashMap;
use std::fs;

/// Clock ticks per second of /proc/PID/stat's utime and stime.
pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime of a process in clock ticks (all its threads), or None when it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS of a process in KiB, or None when it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Children of a process (one level), from /proc/PID/task/*/children.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU ticks of every Postgres backend serving `database`, by pid. A backend's process title is
/// `postgres: [CLUSTER_NAME: ]USER DATABASE HOST(PORT) STATE` (Debian's clusters set
/// `cluster_name`, e.g. `15/main`).
pub fn postgres_backends(database: &str) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for pid in all_pids() {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let title = String::from_utf8_lossy(&cmdline);
        let mut words = title.split([' ', '\0']).filter(|w| !w.is_empty());
        if words.next() != Some("postgres:") {
            continue;
        }
        let mut user = words.next();
        if user.is_some_and(|w| w.ends_with(':')) {
            user = words.next();
        }
        if user.is_none() || words.next() != Some(database) {
            continue;
        }
        if let Some(ticks) = cpu_ticks(pid) {
            out.insert(pid, ticks);
        }
    }
    out
}

/// CPU ticks spent between two readings of a set of processes: a pid absent from `before`
/// started in between and counts from zero; one absent from `after` ended and is lost (rare:
/// pools keep their connections).
pub fn ticks_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

/// CPU ticks of a list of pids, by pid.
pub fn ticks_of(pids: &[u32]) -> HashMap<u32, u64> {
    pids.iter()
        .filter_map(|&p| Some((p, cpu_ticks(p)?)))
        .collect()
}

/// Summed VmRSS (KiB) of a list of pids.
pub fn rss_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| rss_kib(p)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(rss_kib(me).unwrap_or(0) > 0);
        assert!(cpu_ticks(u32::MAX).is_none());
    }

    #[test]
    fn ticks_between_counts_new_pids_from_zero() {
        let before = HashMap::from([(1, 10), (2, 5)]);
        let after = HashMap::from([(1, 15), (3, 7)]);
        assert_eq!(ticks_between(&before, &after), 12);
    }
}
