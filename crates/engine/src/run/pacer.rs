//! One pacer per endpoint: every request of every worker to a store passes it, so a throttling answer slows
//! them all together instead of each backing off on its own while the others keep hammering (rclone's pacer,
//! the AWS SDKs' adaptive mode).
//!
//! - **Requests in flight, additive increase and multiplicative decrease.** Unthrottled, the pacer limits
//!   nothing (the job's own bound applies). A throttling answer ([`ErrorKind::Throttled`]: 503 `SlowDown`, 429,
//!   OSS's `QpsLimitExceeded`) halves the requests allowed in flight, from what was in flight, down to one; at
//!   most once per round trip (the requests in flight at a decrease come back before the next one counts), so
//!   one burst of refusals is one halving. Each success then adds `1 / limit`: one more request per round of
//!   successes, a gradual recovery. Once the limit is back above what was in flight when the first refusal
//!   came, the pacer is out of the way again.
//! - **`Retry-After`** holds every new request of the endpoint until the time it names (at most a minute).
//! - **A cap on requests per second** ([`Pacer::with_tps`], `--tpslimit`): a token bucket of one request's
//!   burst, as rclone's.
//!
//! [`Pacer::stats`] counts the throttling answers and the time the endpoint ran slowed (from the first refusal
//! until the pacer was out of the way again).

use crate::error::{Error, ErrorKind};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The longest `Retry-After` honoured.
const MAX_HOLD: Duration = Duration::from_secs(60);

/// See the module docs.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
    /// Woken when a request ends or a hold is lifted.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// Requests allowed in flight while slowed; `None`: not slowed.
    limit: Option<f64>,
    /// What was in flight when the slowing began: reaching it again ends it.
    ceiling: usize,
    /// Answers to wait for before another refusal halves the limit again.
    until_next_decrease: usize,
    hold_until: Option<Instant>,
    /// Requests per second, and when the next may start.
    tps: Option<(f64, Instant)>,
    throttled: u64,
    slowed_since: Option<Instant>,
    slowed: Duration,
}

/// What a pacer saw: [`Pacer::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PacerStats {
    /// Throttling answers.
    pub throttled: u64,
    /// Time the endpoint ran slowed: from a refusal until the pacer was out of the way again (still counting
    /// while it is slowed).
    pub slowed: Duration,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}

impl Pacer {
    /// A pacer that limits nothing until the endpoint throttles.
    pub fn new() -> Pacer {
        Pacer {
            state: Mutex::new(State {
                in_flight: 0,
                limit: None,
                ceiling: 0,
                until_next_decrease: 0,
                hold_until: None,
                tps: None,
                throttled: 0,
                slowed_since: None,
                slowed: Duration::ZERO,
            }),
            changed: Notify::new(),
        }
    }

    /// At most `per_second` requests start each second (`--tpslimit`); 0 or less: no cap.
    pub fn with_tps(self, per_second: f64) -> Pacer {
        if per_second > 0.0 {
            self.lock().tps = Some((per_second, Instant::now()));
        }
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request may start, and counts it in flight until the returned turn ends.
    pub async fn turn(&self) -> Turn<'_> {
        loop {
            let notified = self.changed.notified();
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                let held = s.hold_until.filter(|t| *t > now);
                let full = s.limit.is_some_and(|l| s.in_flight as f64 >= l.floor().max(1.0));
                let early = s.tps.filter(|(_, next)| *next > now).map(|(_, next)| next);
                match (held, full, early) {
                    (Some(t), ..) => Some(Some(t)),
                    (None, true, _) => Some(None),
                    (None, false, Some(t)) => Some(Some(t)),
                    (None, false, None) => {
                        s.hold_until = None;
                        if let Some((rate, next)) = &mut s.tps {
                            *next = now.max(*next) + Duration::from_secs_f64(1.0 / *rate);
                        }
                        s.in_flight += 1;
                        None
                    }
                }
            };
            match wait {
                None => return Turn { pacer: self, done: false },
                // Until the time named, or sooner if something changes (a hold may be lifted early by nothing,
                // but a request ending frees room).
                Some(Some(t)) => {
                    let _ = tokio::time::timeout_at(t, notified).await;
                }
                Some(None) => notified.await,
            }
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> PacerStats {
        let s = self.lock();
        let running = s.slowed_since.map_or(Duration::ZERO, |t| t.elapsed());
        PacerStats { throttled: s.throttled, slowed: s.slowed + running }
    }

    /// Requests allowed in flight now: `None` when the pacer is out of the way.
    pub fn limit(&self) -> Option<usize> {
        self.lock().limit.map(|l| l.floor().max(1.0) as usize)
    }

    fn end(&self, outcome: Ended<'_>) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.until_next_decrease = s.until_next_decrease.saturating_sub(1);
        match outcome {
            Ended::Failed(e) if e.kind() == ErrorKind::Throttled => {
                s.throttled += 1;
                let now = Instant::now();
                if let Some(after) = retry_after(e) {
                    let until = now + after.min(MAX_HOLD);
                    s.hold_until = Some(s.hold_until.map_or(until, |t| t.max(until)));
                }
                match s.limit {
                    None => {
                        // The first refusal: half of what was in flight (this request included).
                        let was = s.in_flight + 1;
                        s.ceiling = was;
                        s.limit = Some((was as f64 / 2.0).max(1.0));
                        s.slowed_since = Some(now);
                        s.until_next_decrease = s.in_flight;
                    }
                    Some(l) if s.until_next_decrease == 0 => {
                        s.limit = Some((l / 2.0).max(1.0));
                        s.until_next_decrease = s.in_flight;
                    }
                    Some(_) => {}
                }
                tracing::debug!(limit = ?s.limit, "throttled: the endpoint's requests slow down together");
            }
            // Another failure (or a request given up) says nothing about the rate; only a success lets it grow.
            Ended::Failed(_) | Ended::Cancelled => {}
            Ended::Ok => {
                if let Some(l) = s.limit {
                    let l = l + 1.0 / l;
                    if l >= s.ceiling as f64 {
                        s.limit = None;
                        if let Some(t) = s.slowed_since.take() {
                            s.slowed += t.elapsed();
                        }
                    } else {
                        s.limit = Some(l);
                    }
                }
            }
        }
        drop(s);
        self.changed.notify_waiters();
    }
}

/// The `Retry-After` of an answer, in seconds (the HTTP-date form is not used by object stores).
fn retry_after(e: &Error) -> Option<Duration> {
    let value = e.service_error()?.header("retry-after")?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// How a turn ended.
enum Ended<'a> {
    Ok,
    Failed(&'a Error),
    Cancelled,
}

/// A request's turn: [`Turn::ended`] with its outcome; dropped without it (the request was given up), it only
/// frees its place.
#[derive(Debug)]
pub struct Turn<'a> {
    pacer: &'a Pacer,
    done: bool,
}

impl Turn<'_> {
    /// The request ended: with `Some(error)` when it failed (a throttling answer slows the endpoint).
    pub fn ended(mut self, error: Option<&Error>) {
        self.done = true;
        self.pacer.end(error.map_or(Ended::Ok, Ended::Failed));
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.pacer.end(Ended::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Error {
        Error::code(503, "SlowDown", "Please reduce your request rate.")
    }

    #[tokio::test]
    async fn a_refusal_halves_what_was_in_flight_once_per_round_and_successes_bring_it_back() {
        let p = Pacer::new();
        let mut turns = Vec::new();
        for _ in 0..8 {
            turns.push(p.turn().await);
        }
        assert_eq!(p.limit(), None, "nothing is limited before a refusal");
        // A burst of refusals from the same round is one halving.
        for _ in 0..3 {
            turns.pop().unwrap().ended(Some(&throttle()));
        }
        assert_eq!(p.limit(), Some(4));
        // The round's other answers come back; the next refusal halves again.
        for _ in 0..5 {
            turns.pop().unwrap().ended(None);
        }
        let t = p.turn().await;
        t.ended(Some(&throttle()));
        assert_eq!(p.limit(), Some(2));
        assert_eq!(p.stats().throttled, 4);
        // Recovery is gradual: about one more request per round of successes, until the old ceiling.
        let mut successes = 0;
        while p.limit().is_some() {
            p.turn().await.ended(None);
            successes += 1;
        }
        assert!((10..40).contains(&successes), "{successes}");
        assert!(p.stats().slowed > Duration::ZERO);
    }

    #[tokio::test]
    async fn a_full_pacer_waits_for_a_request_to_end() {
        let p = std::sync::Arc::new(Pacer::new());
        let a = p.turn().await;
        let b = p.turn().await;
        b.ended(Some(&throttle())); // two in flight: the limit is one
        assert_eq!(p.limit(), Some(1));
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move {
                let t = p.turn().await;
                t.ended(None);
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a second request waits while one is in flight");
        a.ended(None);
        waiter.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_every_new_request_and_tps_spaces_them() {
        let p = Pacer::new();
        let e = throttle().with_header("retry-after", "3");
        let started = tokio::time::Instant::now();
        p.turn().await.ended(Some(&e));
        p.turn().await.ended(None);
        assert!(started.elapsed() >= Duration::from_secs(3), "{:?}", started.elapsed());

        let p = Pacer::new().with_tps(4.0);
        let started = tokio::time::Instant::now();
        for _ in 0..9 {
            p.turn().await.ended(None);
        }
        // The first goes at once, the next eight a quarter of a second apart.
        assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
