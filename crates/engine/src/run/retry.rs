//! Retrying one request: full-jitter exponential backoff, driven by the error classification.
//!
//! Only errors whose [`Error::is_retryable`] is true are retried (5xx, 408, 429, `RequestTimeTooSkewed`,
//! `InvalidDigest`, CRC mismatches, resets, timeouts; see [`crate::error::classify`]). Each attempt is a fresh
//! call of the closure, so the caller re-reads its part from the source for every attempt: a retry never resends
//! bytes that may have been corrupted in memory. Attempts are bounded by count and by total elapsed time.

use crate::error::Result;
use rand::Rng;
use std::future::Future;
use std::time::{Duration, Instant};

/// How one request is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff cap of the first retry; doubles each retry.
    pub base_delay: Duration,
    /// The largest backoff cap.
    pub max_delay: Duration,
    /// No new attempt starts once this much time has passed since the first.
    pub max_elapsed: Duration,
}

setters!(RetryPolicy { max_attempts: u32, base_delay: Duration, max_delay: Duration, max_elapsed: Duration });

impl Default for RetryPolicy {
    /// 10 attempts, 200 ms doubling to 20 s, within 5 minutes: the SDKs' backoff, with more patience for
    /// long migrations.
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            max_elapsed: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (1 for the first retry): a uniform random duration in
    /// `[0, min(base * 2^(retry-1), max))` ("full jitter"), drawn from `rng`.
    pub fn backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let cap = self.base_delay.saturating_mul(1u32 << (retry.saturating_sub(1)).min(20)).min(self.max_delay);
        cap.mul_f64(rng.gen::<f64>())
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the policy's bounds are reached. `attempt`
    /// receives the attempt number (1-based). The final error carries how many attempts were made.
    pub async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut n = 1;
        loop {
            match attempt(n).await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) if n >= self.max_attempts.max(1) || started.elapsed() >= self.max_elapsed => {
                    return Err(e.with_context("attempts", n));
                }
                Err(e) => {
                    let delay = self.backoff(n, &mut rand::thread_rng());
                    tracing::info!(operation = what, attempt = n, ?delay, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                    n += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use rand::SeedableRng;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_elapsed: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let p = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for retry in 1..12 {
            let cap = Duration::from_millis(200 * (1 << (retry - 1))).min(Duration::from_secs(20));
            for _ in 0..50 {
                assert!(p.backoff(retry, &mut rng) < cap);
            }
        }
        let draws: Vec<Duration> = (0..50).map(|_| p.backoff(10, &mut rng)).collect();
        assert!(
            draws.iter().any(|d| *d > Duration::from_secs(10)) && draws.iter().any(|d| *d < Duration::from_secs(10))
        );
    }

    #[tokio::test]
    async fn retries_temporary_errors_until_success() {
        let calls = AtomicU32::new(0);
        let out = fast()
            .run("put", |n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 3 {
                        Err(Error::code(503, "SlowDown", "Please reduce your request rate."))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!((out, calls.load(Ordering::SeqCst)), (3, 3));
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried_and_attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let e = fast()
            .run("complete", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Error::code(400, "InvalidPart", "no")) }
            })
            .await
            .unwrap_err();
        assert_eq!((e.service_code(), calls.load(Ordering::SeqCst)), (Some("InvalidPart"), 1));

        let calls = AtomicU32::new(0);
        let e = fast()
            .run("part", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Error::code(500, "InternalError", "boom")) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(e.to_string().contains("attempts: 4"), "{e}");
    }
}
