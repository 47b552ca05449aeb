//! Reload without restart. On SIGHUP every registered part re-reads its source (certificates,
//! the configuration file's reloadable settings) and either takes the new setting or keeps the
//! old one and says why; a part that fails never stops the others.
//!
//! A part registers once at start-up ([`Reloader::register`]); the signal handler in
//! `crate::server` calls [`Reloader::reload_all`].

use std::sync::{Arc, Mutex};

/// One thing that can be re-read while the gateway runs.
pub trait Reload: Send + Sync {
    /// What is reloaded, for the log line and the metric label (`certificates`, `config`).
    fn name(&self) -> &'static str;
    /// Re-reads the source. `Ok` describes what changed (or "unchanged"); `Err` says why the
    /// new setting was refused, the old one being kept.
    fn reload(&self) -> Result<String, String>;
}

/// Every reloadable part of the running gateway.
#[derive(Clone, Default)]
pub struct Reloader {
    parts: Arc<Mutex<Vec<Arc<dyn Reload>>>>,
}

/// What one part did on a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The part's name.
    pub part: &'static str,
    /// What changed, or why the old setting was kept.
    pub result: Result<String, String>,
}

impl Reloader {
    /// An empty reloader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a part; it is reloaded on every later [`reload_all`](Self::reload_all).
    pub fn register(&self, part: Arc<dyn Reload>) {
        self.parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(part);
    }

    /// Reloads every part in registration order, logging one line per part.
    pub fn reload_all(&self) -> Vec<Outcome> {
        let parts = self
            .parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        parts
            .iter()
            .map(|part| {
                let result = part.reload();
                match &result {
                    Ok(change) => tracing::info!(part = part.name(), "reloaded: {change}"),
                    Err(why) => {
                        tracing::error!(
                            part = part.name(),
                            "reload refused, keeping the old setting: {why}"
                        )
                    }
                }
                crate::metrics::config_reload(part.name(), result.is_ok());
                Outcome {
                    part: part.name(),
                    result,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize, bool);
    impl Reload for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn reload(&self) -> Result<String, String> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            if self.1 {
                Ok(format!("reload {n}"))
            } else {
                Err("broken".into())
            }
        }
    }

    #[test]
    fn a_failing_part_does_not_stop_the_others() {
        let reloader = Reloader::new();
        let broken = Arc::new(Counting(AtomicUsize::new(0), false));
        let fine = Arc::new(Counting(AtomicUsize::new(0), true));
        reloader.register(broken.clone());
        reloader.register(fine.clone());
        let outcomes = reloader.reload_all();
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[0].result, Err("broken".into()));
        assert_eq!(outcomes[1].result, Ok("reload 1".into()));
        assert_eq!(fine.0.load(Ordering::SeqCst), 1);
    }
}
