//! One scheduler per job: a single bound on in-flight requests and a single memory budget, shared by every
//! object of the job.
//!
//! A part task takes a [`MemoryPermit`] for its buffer *before* reading the part, then a [`RequestPermit`]
//! before sending it, and drops both when the server has answered. So the bytes held in buffers never exceed
//! the budget, whatever the number of files or the part size, and reading the next parts overlaps with sending
//! the current ones only as far as the budget allows. Small objects take the same permits as parts.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Memory is accounted in units of this many bytes (a semaphore counts permits in `u32` per acquisition).
const UNIT: u64 = 64 * 1024;

/// The job-wide bounds.
#[derive(Debug, Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requests: Arc<Semaphore>,
    memory: Arc<Semaphore>,
    budget_units: u32,
    in_flight: AtomicUsize,
    buffered: AtomicU64,
}

/// Permission to hold a buffer of some bytes; released on drop.
#[derive(Debug)]
pub struct MemoryPermit {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    inner: Arc<Inner>,
}

impl Drop for MemoryPermit {
    fn drop(&mut self) {
        self.inner.buffered.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Permission to have one request in flight; released on drop.
#[derive(Debug)]
pub struct RequestPermit {
    _permit: OwnedSemaphorePermit,
    inner: Arc<Inner>,
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        self.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Scheduler {
    /// A scheduler allowing `max_in_flight` requests and `memory_budget` bytes of buffers at once.
    pub fn new(max_in_flight: usize, memory_budget: u64) -> Result<Self> {
        if max_in_flight == 0 {
            return Err(Error::invalid("the number of requests in flight must be at least 1 (--jobs)"));
        }
        if memory_budget < UNIT {
            return Err(Error::invalid(format!(
                "a memory budget of {memory_budget} bytes is too small; give at least {UNIT} bytes (--memory-limit)"
            )));
        }
        let budget_units = u32::try_from(memory_budget / UNIT).unwrap_or(u32::MAX);
        Ok(Self {
            inner: Arc::new(Inner {
                requests: Arc::new(Semaphore::new(max_in_flight)),
                memory: Arc::new(Semaphore::new(budget_units as usize)),
                budget_units,
                in_flight: AtomicUsize::new(0),
                buffered: AtomicU64::new(0),
            }),
        })
    }

    /// Waits until `bytes` fit in the memory budget. A request for more than the whole budget waits for the
    /// whole budget, so such a buffer is held alone rather than never.
    pub async fn memory(&self, bytes: u64) -> MemoryPermit {
        let units = bytes.div_ceil(UNIT).clamp(1, self.inner.budget_units as u64) as u32;
        let permit = self.inner.memory.clone().acquire_many_owned(units).await.expect("the semaphore is never closed");
        self.inner.buffered.fetch_add(bytes, Ordering::Relaxed);
        MemoryPermit { _permit: permit, bytes, inner: self.inner.clone() }
    }

    /// Waits for a free request slot.
    pub async fn request(&self) -> RequestPermit {
        let permit = self.inner.requests.clone().acquire_owned().await.expect("the semaphore is never closed");
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestPermit { _permit: permit, inner: self.inner.clone() }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Bytes held in buffers now.
    pub fn buffered(&self) -> u64 {
        self.inner.buffered.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bounds_hold_under_load() {
        let s = Scheduler::new(3, 10 * UNIT).unwrap();
        let peak_requests = Arc::new(AtomicUsize::new(0));
        let peak_bytes = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..60u64 {
            let (s, pr, pb) = (s.clone(), peak_requests.clone(), peak_bytes.clone());
            tasks.push(tokio::spawn(async move {
                let _m = s.memory((i % 4 + 1) * UNIT).await;
                pb.fetch_max(s.buffered(), Ordering::SeqCst);
                let _r = s.request().await;
                pr.fetch_max(s.in_flight(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(peak_requests.load(Ordering::SeqCst) <= 3);
        assert!(peak_requests.load(Ordering::SeqCst) >= 2, "the bound should also be used");
        assert!(peak_bytes.load(Ordering::SeqCst) <= 10 * UNIT);
        assert_eq!((s.in_flight(), s.buffered()), (0, 0));
    }

    #[tokio::test]
    async fn a_buffer_larger_than_the_budget_runs_alone() {
        let s = Scheduler::new(4, 4 * UNIT).unwrap();
        let big = s.memory(100 * UNIT).await;
        let s2 = s.clone();
        let small = tokio::spawn(async move { s2.memory(UNIT).await.bytes });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!small.is_finished(), "nothing else may be buffered beside an over-budget buffer");
        drop(big);
        assert_eq!(small.await.unwrap(), UNIT);
    }

    #[test]
    fn nonsense_bounds_are_refused_with_the_flag_to_fix() {
        assert!(Scheduler::new(0, 1 << 20).unwrap_err().to_string().contains("--jobs"));
        assert!(Scheduler::new(1, 10).unwrap_err().to_string().contains("--memory-limit"));
    }
}
