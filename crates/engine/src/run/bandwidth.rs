//! A bandwidth limit: one token bucket of bytes per second, shared by every request given it (a process gives
//! the same [`Bandwidth`] to all its stores, so every object and part of every job shares one limit).
//!
//! A sender takes its bytes before they go, slice by slice (64 KiB): the bucket refills at the rate and holds
//! at most a tenth of a second of it, so the flow is smooth at sub-second scale; a take beyond what the bucket
//! holds is granted at once as debt, and the taker (and, since the debt is shared, every later one) waits until
//! the rate has paid it. The rate can change while transfers run ([`Bandwidth::set`]).

use crate::error::Result;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The rates OSS's own per-request limit takes (`x-oss-traffic-limit`), in bits per second: 30 KiB/s to
/// 100 MiB/s.
pub const OSS_TRAFFIC_LIMIT: RangeInclusive<u64> = 245_760..=838_860_800;

/// `chunks`, each waiting for its bytes from `limit` (when there is one) before it is handed on.
pub fn paced(
    chunks: BoxStream<'static, Result<Bytes>>,
    limit: Option<Arc<Bandwidth>>,
) -> BoxStream<'static, Result<Bytes>> {
    let Some(limit) = limit else { return chunks };
    chunks
        .then(move |c| {
            let limit = limit.clone();
            async move {
                if let Ok(b) = &c {
                    limit.take(b.len() as u64).await;
                }
                c
            }
        })
        .boxed()
}

/// A shared limit on bytes per second; see the module docs. `Bandwidth::new(None)` limits nothing until
/// [`set`](Self::set).
#[derive(Debug)]
pub struct Bandwidth {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Bytes per second; `None`: no limit.
    rate: Option<u64>,
    /// Bytes that may go now; negative: owed.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Bandwidth {
    /// A limit of `rate` bytes per second (`None`: unlimited).
    pub fn new(rate: Option<u64>) -> Bandwidth {
        Bandwidth { state: Mutex::new(State { rate: rate.filter(|&r| r > 0), tokens: 0.0, at: Instant::now() }) }
    }

    /// The limit now, in bytes per second.
    pub fn rate(&self) -> Option<u64> {
        self.lock().rate
    }

    /// Changes the limit (`None`: none) for every transfer sharing it, from their next slice on.
    pub fn set(&self, rate: Option<u64>) {
        let mut s = self.lock();
        s.rate = rate.filter(|&r| r > 0);
        s.tokens = s.tokens.max(0.0);
        s.at = Instant::now();
    }

    /// Waits until `bytes` may go.
    pub async fn take(&self, bytes: u64) {
        let wait = {
            let mut s = self.lock();
            let Some(rate) = s.rate else { return };
            let now = Instant::now();
            let burst = (rate as f64 / 10.0).max(64.0 * 1024.0);
            s.tokens = (s.tokens + now.duration_since(s.at).as_secs_f64() * rate as f64).min(burst);
            s.at = now;
            s.tokens -= bytes as f64;
            (s.tokens < 0.0).then(|| Duration::from_secs_f64(-s.tokens / rate as f64))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn takes_are_paced_at_the_rate_and_the_rate_can_change() {
        let limit = Bandwidth::new(Some(1024 * 1024));
        let started = tokio::time::Instant::now();
        for _ in 0..32 {
            limit.take(64 * 1024).await;
        }
        // 2 MiB at 1 MiB/s, less the tenth of a second the bucket may hold (it starts empty).
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1900) && took <= Duration::from_millis(2100), "{took:?}");
        limit.set(None);
        let started = tokio::time::Instant::now();
        limit.take(100 * 1024 * 1024).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "no limit, no wait");
        assert_eq!(limit.rate(), None);
    }
}
