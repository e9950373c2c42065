//! transport::hosts: what every request to one registry shares within a process: a pause after a 429, pacing to a request rate, a cap on requests in flight, and pacing from the registry's own `RateLimit-*` headers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::retry::RetryPolicy;

/// Limits for one registry, from `registries.yaml`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostSettings {
    /// Requests started per second, at most (no burst above it).
    pub requests_per_second: Option<f64>,
    /// Requests in flight at once, at most.
    pub max_concurrency: Option<usize>,
    /// How failed requests are retried.
    pub retry: RetryPolicy,
}

/// What a registry said of its quota: `RateLimit-Limit: 100;w=21600`, `RateLimit-Remaining: 76;w=21600`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quota {
    /// Requests allowed per window.
    pub limit: u64,
    /// Requests left in the current window.
    pub remaining: u64,
    /// The window.
    pub window: Duration,
}

impl Quota {
    /// Below this many remaining requests, counted requests are paced to the window's refill rate.
    pub fn reserve(&self) -> u64 {
        (self.limit / 20).max(2)
    }

    /// One request's share of the window: the pace that never empties the quota.
    pub fn refill_interval(&self) -> Duration {
        self.window / self.limit.clamp(1, u32::MAX as u64) as u32
    }

    /// Reads the quota from a response's headers, if it carries one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Quota> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (limit, w1) = parse_quota_value(get("ratelimit-limit")?)?;
        let (remaining, w2) = parse_quota_value(get("ratelimit-remaining")?)?;
        let window = w1.or(w2).unwrap_or(Duration::from_secs(21_600));
        (limit > 0).then_some(Quota {
            limit,
            remaining,
            window,
        })
    }
}

/// `100;w=21600` → (100, Some(21600 s)).
fn parse_quota_value(v: &str) -> Option<(u64, Option<Duration>)> {
    let mut parts = v.split(';');
    let n = parts.next()?.trim().parse().ok()?;
    let window = parts
        .filter_map(|p| p.trim().strip_prefix("w="))
        .find_map(|w| w.trim().parse::<u64>().ok())
        .filter(|w| *w > 0)
        .map(Duration::from_secs);
    Some((n, window))
}

#[derive(Default)]
struct GateState {
    paused_until: Option<Instant>,
    next_slot: Option<Instant>,
    next_counted: Option<Instant>,
    quota: Option<Quota>,
    pacing_announced: bool,
}

/// The shared gate every request to one registry passes.
pub struct HostGate {
    name: String,
    settings: HostSettings,
    inflight: Option<Arc<Semaphore>>,
    state: Mutex<GateState>,
    /// The registry answered a referrers request 404 (or 405, 501): it has no referrers API,
    /// which the spec lets a registry say only that way, so nobody asks it again this run.
    no_referrers_api: std::sync::atomic::AtomicBool,
    /// Set once the registry answered a referrers request 200: it has the API.
    has_referrers_api: std::sync::atomic::AtomicBool,
    /// Held by the one request that finds out whether the registry has the API, so concurrent
    /// ones wait for its answer instead of probing too.
    referrers_probe: tokio::sync::Mutex<()>,
}

/// Held while a request is in flight.
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
}

impl HostGate {
    fn new(name: &str, settings: HostSettings) -> Self {
        HostGate {
            name: name.to_owned(),
            inflight: settings
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n.max(1)))),
            settings,
            state: Mutex::default(),
            no_referrers_api: Default::default(),
            has_referrers_api: Default::default(),
            referrers_probe: Default::default(),
        }
    }

    /// False once the registry has shown it has no referrers API.
    pub fn may_have_referrers_api(&self) -> bool {
        !self
            .no_referrers_api
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The registry has no referrers API: the fallback tags are the way from now on.
    pub fn no_referrers_api(&self) {
        self.no_referrers_api
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The registry has the referrers API: requests no longer wait for a probe.
    pub fn has_referrers_api(&self) {
        self.has_referrers_api
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// While nobody knows whether the registry has the API: a guard that makes this request
    /// the only probe (`None` once it is known).
    pub async fn referrers_probe(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let known = |g: &Self| {
            g.has_referrers_api
                .load(std::sync::atomic::Ordering::Relaxed)
                || !g.may_have_referrers_api()
        };
        if known(self) {
            return None;
        }
        let guard = self.referrers_probe.lock().await;
        (!known(self)).then_some(guard)
    }

    /// How this registry's requests are retried.
    pub fn retry(&self) -> RetryPolicy {
        self.settings.retry
    }

    /// Waits for this request's turn: past any pause, at its paced slot, within the concurrency cap.
    /// `counted` requests are those a registry charges to its quota (Docker Hub: manifest GETs).
    pub async fn admit(&self, counted: bool) -> Admission {
        loop {
            let until = self.state.lock().expect("gate").paused_until;
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u).await,
                _ => break,
            }
        }
        let at = {
            let mut st = self.state.lock().expect("gate");
            let now = Instant::now();
            let mut at = now;
            if let Some(rps) = self.settings.requests_per_second.filter(|r| *r > 0.0) {
                let slot = st.next_slot.map_or(now, |s| s.max(now));
                st.next_slot = Some(slot + Duration::from_secs_f64(1.0 / rps));
                at = slot;
            }
            if let Some(q) = st.quota.filter(|q| counted && q.remaining <= q.reserve()) {
                let slot = st.next_counted.map_or(now, |s| s.max(now));
                st.next_counted = Some(slot + q.refill_interval());
                at = at.max(slot);
                if !st.pacing_announced {
                    st.pacing_announced = true;
                    tracing::warn!(
                        registry = %self.name,
                        remaining = q.remaining,
                        limit = q.limit,
                        window_s = q.window.as_secs(),
                        "rate limit nearly used up: pacing requests to one per {:.1}s",
                        q.refill_interval().as_secs_f64()
                    );
                }
            }
            at
        };
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
        let permit = match &self.inflight {
            Some(s) => Some(s.clone().acquire_owned().await.expect("never closed")),
            None => None,
        };
        Admission { _permit: permit }
    }

    /// Holds every request to this registry for `d` (a 429 asked for it).
    pub fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut st = self.state.lock().expect("gate");
        if st.paused_until.is_none_or(|p| p < until) {
            st.paused_until = Some(until);
        }
    }

    /// Learns the quota from a response.
    pub fn observe(&self, headers: &HeaderMap) {
        if let Some(q) = Quota::from_headers(headers) {
            let mut st = self.state.lock().expect("gate");
            if q.remaining > q.reserve() && st.pacing_announced {
                st.pacing_announced = false;
                tracing::info!(registry = %self.name, remaining = q.remaining, "rate limit recovered: pacing off");
            }
            tracing::trace!(registry = %self.name, remaining = q.remaining, limit = q.limit, "quota");
            st.quota = Some(q);
        }
    }

    /// The last quota seen.
    pub fn quota(&self) -> Option<Quota> {
        self.state.lock().expect("gate").quota
    }
}

/// The gates of every registry a process talks to.
#[derive(Default)]
pub struct Hosts {
    settings: HashMap<String, HostSettings>,
    gates: Mutex<HashMap<String, Arc<HostGate>>>,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosts")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Hosts {
    /// Gates with these per-registry settings (others get the defaults).
    pub fn new(settings: HashMap<String, HostSettings>) -> Self {
        Hosts {
            settings,
            gates: Mutex::default(),
        }
    }

    /// The gate for a registry name.
    pub fn gate(&self, registry: &str) -> Arc<HostGate> {
        self.gates
            .lock()
            .expect("gates")
            .entry(registry.to_owned())
            .or_insert_with(|| {
                Arc::new(HostGate::new(
                    registry,
                    self.settings.get(registry).copied().unwrap_or_default(),
                ))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn reads_docker_hub_quota_headers() {
        let q = Quota::from_headers(&headers(&[
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "76;w=21600"),
        ]))
        .unwrap();
        assert_eq!(
            q,
            Quota {
                limit: 100,
                remaining: 76,
                window: Duration::from_secs(21600)
            }
        );
        assert_eq!(q.reserve(), 5);
        assert_eq!(q.refill_interval(), Duration::from_secs(216));
        assert!(Quota::from_headers(&headers(&[("ratelimit-limit", "100")])).is_none());
        assert!(Quota::from_headers(&headers(&[
            ("ratelimit-limit", "x"),
            ("ratelimit-remaining", "1")
        ]))
        .is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_spaces_requests_to_the_rate() {
        let gate = HostGate::new(
            "r",
            HostSettings {
                requests_per_second: Some(4.0),
                ..Default::default()
            },
        );
        let start = Instant::now();
        for _ in 0..5 {
            gate.admit(false).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everyone_and_a_low_quota_paces_counted_requests() {
        let gate = HostGate::new("r", HostSettings::default());
        gate.pause(Duration::from_secs(2));
        let start = Instant::now();
        gate.admit(false).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));

        gate.observe(&headers(&[
            ("ratelimit-limit", "10;w=20"),
            ("ratelimit-remaining", "2;w=20"),
        ]));
        let start = Instant::now();
        gate.admit(false).await;
        gate.admit(false).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "uncounted requests pass");
        for _ in 0..3 {
            gate.admit(true).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(4), "2 s apart");
        gate.observe(&headers(&[
            ("ratelimit-limit", "10;w=20"),
            ("ratelimit-remaining", "9;w=20"),
        ]));
        let start = Instant::now();
        gate.admit(true).await;
        gate.admit(true).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "quota recovered");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_capped() {
        let gate = Arc::new(HostGate::new(
            "r",
            HostSettings {
                max_concurrency: Some(1),
                ..Default::default()
            },
        ));
        let first = gate.admit(false).await;
        let g = gate.clone();
        let second = tokio::spawn(async move {
            g.admit(false).await;
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!second.is_finished());
        drop(first);
        second.await.unwrap();
    }
}
