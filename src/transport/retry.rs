//! transport::retry: which failures get another attempt and how long to wait first: exponential backoff with full jitter, `Retry-After` honoured, an attempt cap and a time budget per request.

use std::time::{Duration, Instant, SystemTime};

/// Attempts per request, the first included.
pub const DEFAULT_ATTEMPTS: u32 = 6;
/// Longest time one request may spend waiting between its attempts.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(120);
/// The first backoff's ceiling; each further one doubles it.
pub const BASE_DELAY: Duration = Duration::from_millis(250);
/// No single backoff waits longer than this (a `Retry-After` may, within the budget).
pub const MAX_DELAY: Duration = Duration::from_secs(20);

/// How a registry's failed requests are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (1: never retry).
    pub attempts: u32,
    /// Total waiting allowed between attempts of one request.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: DEFAULT_ATTEMPTS,
            budget: DEFAULT_BUDGET,
        }
    }
}

/// HTTP statuses worth another attempt: throttling, timeouts and server-side failures.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The attempts of one request: counts them and decides each wait.
#[derive(Debug)]
pub struct Attempts {
    policy: RetryPolicy,
    made: u32,
    waited: Duration,
    started: Instant,
}

impl Attempts {
    /// Before the first attempt.
    pub fn new(policy: RetryPolicy) -> Self {
        Attempts {
            policy,
            made: 0,
            waited: Duration::ZERO,
            started: Instant::now(),
        }
    }

    /// Attempts made so far.
    pub fn made(&self) -> u32 {
        self.made
    }

    /// Time since the first attempt.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// After a failed attempt: how long to wait before the next, or `None` when the cap or the budget is reached.
    /// A `Retry-After` from the server replaces the backoff (it is what the server asked for).
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.made += 1;
        if self.made >= self.policy.attempts {
            return None;
        }
        let delay = retry_after.unwrap_or_else(|| backoff(self.made, fastrand::f64()));
        if self.waited + delay > self.policy.budget {
            return None;
        }
        self.waited += delay;
        Some(delay)
    }
}

/// Full jitter: a uniform wait in `[0, min(MAX_DELAY, BASE_DELAY * 2^(n-1))]`, with `unit` in `[0, 1)`.
pub fn backoff(failures: u32, unit: f64) -> Duration {
    let ceiling = BASE_DELAY
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_DELAY);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 0.5 ", now),
            Some(Duration::from_millis(500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn backoff_doubles_under_a_ceiling_with_jitter() {
        assert_eq!(backoff(1, 1.0), BASE_DELAY);
        assert_eq!(backoff(2, 1.0), BASE_DELAY * 2);
        assert_eq!(backoff(3, 0.5), BASE_DELAY * 2);
        assert_eq!(backoff(30, 1.0), MAX_DELAY);
        assert_eq!(backoff(4, 0.0), Duration::ZERO);
    }

    #[test]
    fn attempts_stop_at_the_cap_or_the_budget() {
        let mut a = Attempts::new(RetryPolicy {
            attempts: 3,
            budget: Duration::from_secs(60),
        });
        assert!(a.next_delay(None).is_some());
        assert_eq!(
            a.next_delay(Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(a.next_delay(None), None, "third failure ends it");

        let mut b = Attempts::new(RetryPolicy {
            attempts: 10,
            budget: Duration::from_secs(5),
        });
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(4))),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(2))),
            None,
            "over budget"
        );
    }

    #[test]
    fn what_is_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 409, 412, 416, 501] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
