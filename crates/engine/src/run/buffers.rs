//! Part buffers, reused.
//!
//! A part read into a fresh allocation of several MiB costs more than the copy from the page cache: the
//! allocator maps new pages, and the kernel faults in and zeroes each 4 KiB page before the read overwrites it
//! (page faults and `clear_page` were 8% of a 1 GiB upload's client CPU, and the first-touch copy twice the cost
//! of a copy into warm pages). [`BufferPool::read`] hands out a buffer that an earlier part used, and
//! [`BufferPool::freeze`] turns it into [`Bytes`] that give it back when the last clone is dropped (after the HTTP
//! client sent it and no retry needs it).
//!
//! The pool holds at most `limit` bytes of idle buffers (the engine passes its memory budget), and buffers
//! smaller than [`MIN_POOLED`] are never pooled: the allocator serves those from its own free lists.

use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// Smallest buffer worth keeping (below it, malloc does not map fresh pages for each allocation).
pub(super) const MIN_POOLED: usize = 256 * 1024;

/// Idle part buffers. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct BufferPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl BufferPool {
    /// A pool keeping at most `limit` bytes of idle buffers.
    pub(crate) fn new(limit: u64) -> BufferPool {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        BufferPool { inner: Arc::new(Inner { limit, idle: Mutex::new(Idle::default()) }) }
    }

    /// An empty buffer with room for `len` bytes: an idle one when there is one large enough, else a new one.
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        if len >= MIN_POOLED {
            let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = idle.buffers.iter().rposition(|b| b.capacity() >= len) {
                let mut buf = idle.buffers.swap_remove(i);
                idle.bytes -= buf.capacity();
                buf.clear();
                return buf;
            }
        }
        Vec::with_capacity(len)
    }

    /// `buf` as [`Bytes`] that return it to the pool when the last clone is dropped.
    pub(crate) fn freeze(&self, buf: Vec<u8>) -> Bytes {
        if buf.capacity() < MIN_POOLED {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Pooled { buf, pool: self.clone() })
    }

    /// Keeps `buf` if it fits under the limit.
    fn give(&self, buf: Vec<u8>) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.bytes + buf.capacity() <= self.inner.limit {
            idle.bytes += buf.capacity();
            idle.buffers.push(buf);
        }
    }

    /// Bytes held by idle buffers.
    #[cfg(test)]
    fn idle_bytes(&self) -> usize {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

/// The owner behind pooled [`Bytes`].
struct Pooled {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_clone_drops_within_the_limit() {
        let pool = BufferPool::new(3 * MIN_POOLED as u64);
        let mut a = pool.take(MIN_POOLED);
        a.extend_from_slice(&vec![7u8; MIN_POOLED]);
        let ptr = a.as_ptr();
        let bytes = pool.freeze(a);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a clone still holds it");
        assert_eq!(slice.as_ref(), &[7u8; 10]);
        drop(slice);
        assert_eq!(pool.idle_bytes(), MIN_POOLED);
        // The same memory serves the next part that fits, empty.
        let b = pool.take(MIN_POOLED);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0));
        assert_eq!(pool.idle_bytes(), 0);
        // A larger part gets a new buffer; the idle ones stay.
        pool.freeze(b);
        let big = pool.take(2 * MIN_POOLED);
        assert!(big.capacity() >= 2 * MIN_POOLED && big.as_ptr() != ptr);
        assert_eq!(pool.idle_bytes(), MIN_POOLED);
        // Past the limit, buffers are freed instead of kept; small ones are never pooled.
        pool.freeze(big);
        pool.freeze(Vec::with_capacity(MIN_POOLED));
        assert_eq!(pool.idle_bytes(), 3 * MIN_POOLED);
        drop(pool.freeze(vec![1u8; 100]));
        assert_eq!(pool.idle_bytes(), 3 * MIN_POOLED);
        assert_eq!(pool.take(100).capacity(), 100);
    }
}
