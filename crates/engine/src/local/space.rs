//! A full disk never wedges the store: deletes and aborts keep working, writes are refused with a clear
//! `InsufficientStorage`, and the store takes writes again by itself once there is room.
//!
//! # Why a full disk needs a design
//! Every operation commits to the SQLite index, and SQLite appends each commit to its write-ahead log first,
//! deletes included. Once the filesystem is full, the index cannot take the commit that would delete an object
//! and free its bytes: without help the store could only be unblocked by freeing space from outside, restarting
//! changes nothing, and every client saw an unexplained 500 that it retried.
//!
//! # The design
//! - **A reserve.** The store keeps a file of [`LocalOptions::reserve`](super::LocalOptions::reserve) bytes
//!   (1 MiB by default) at `<root>/.reserve`, written with real (incompressible) bytes so its blocks are
//!   allocated. It is space set aside for the one thing that must not fail: the index's commits of the
//!   operations that free space. It is given back in two halves.
//! - **Entering full mode.** When a write of the store (a body, a copy, a rename, an index commit) fails with
//!   `ENOSPC`/`EDQUOT` or SQLite's `SQLITE_FULL`, the store enters full mode and cuts the reserve to half its
//!   size: that half is free for the index at once. While full, every operation that adds data (PutObject,
//!   UploadPart, UploadPartCopy, InitiateMultipartUpload, CompleteMultipartUpload, CopyObject, AppendObject,
//!   symlinks, tagging, buckets) is refused before it reads a byte: 507 `InsufficientStorage`, naming the
//!   store's root and what to do. So the space the reserve gave back is left to the operations that free space.
//! - **Operations that free space** (DeleteObject, each key of DeleteMultipleObjects, AbortMultipartUpload,
//!   DeleteObjectTagging, DeleteBucket) always run. If one meets a full disk anyway (another program took the
//!   first half, or a restart came in between), the rest of the reserve is given back and the operation runs
//!   once more (with no reserve left, after the index's write-ahead log was checkpointed and truncated, in case
//!   that gives space back).
//! - **Leaving full mode.** After each operation that freed space, and before each write while full, the store
//!   asks the filesystem (`statvfs`) for its free space; once there is room to make the reserve whole and as
//!   much again for writes, it does so and takes writes again. No restart is needed, and freeing space from
//!   outside works the same way.
//! - **Restarts.** A reserve short of its size is the memory of full mode: a store opened without room to
//!   complete it starts in full mode, its remaining half still held for the operations that free space.
//!
//! The limit: a disk filled to its last byte while the store held no reserve (another program took every byte
//! the store gave back, or the disk was filled before the store kept a reserve) may need space freed outside
//! once. Best effort on copy-on-write filesystems (btrfs, ZFS): a deleted file's blocks come back only once no
//! snapshot holds them.

use super::errors;
use crate::error::{Error, Result};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The reserve's default size.
pub(crate) const DEFAULT_RESERVE: u64 = 1024 * 1024;

/// Free space beyond the reserve that full mode waits for (at least this, and at least the reserve's size).
const MIN_HEADROOM: u64 = 1024 * 1024;

/// The file that holds the reserve, under the store's root.
const RESERVE_FILE: &str = ".reserve";

/// True when `e` (or anything in its chain of causes) is a full filesystem: `ENOSPC`, `EDQUOT`, or SQLite's
/// `SQLITE_FULL` ("database or disk is full").
pub(crate) fn is_disk_full(e: &Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if matches!(io.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) {
                return true;
            }
        }
        if let Some(rusqlite::Error::SqliteFailure(f, _)) = err.downcast_ref::<rusqlite::Error>() {
            if f.code == rusqlite::ErrorCode::DiskFull {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// The reserve and the full-mode flag of one store root.
#[derive(Debug)]
pub(crate) struct Space {
    root: PathBuf,
    /// The reserve's size; 0 keeps none (full mode is still detected and left).
    size: u64,
    full: AtomicBool,
    /// Serialises changes to the reserve file.
    lock: Mutex<()>,
}

impl Space {
    /// Blocking: the space of the store at `root`, its reserve made whole if it is not. Without room for that
    /// the store starts in full mode, keeping what reserve there is; an error is returned only for a failure
    /// that is not a full disk.
    pub(crate) fn open(root: &Path, size: u64) -> Result<Space> {
        let space = Space { root: root.to_owned(), size, full: AtomicBool::new(false), lock: Mutex::new(()) };
        if space.reserve_len() < size && !space.make_reserve()? {
            tracing::warn!(
                root = %root.display(),
                "the disk of the store is full: writes are refused until space is freed; deletes and aborts work"
            );
            space.full.store(true, Ordering::SeqCst);
        }
        Ok(space)
    }

    fn reserve_path(&self) -> PathBuf {
        self.root.join(RESERVE_FILE)
    }

    /// The reserve's current length (0 without one).
    fn reserve_len(&self) -> u64 {
        std::fs::metadata(self.reserve_path()).map_or(0, |m| m.len())
    }

    /// True while writes are refused.
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }

    /// Free space to wait for before leaving full mode: the reserve, and as much again (at least 1 MiB) for
    /// writes.
    pub(crate) fn needed(&self) -> u64 {
        self.size + self.size.max(MIN_HEADROOM)
    }

    /// The refusal of a write while the disk is full.
    pub(crate) fn refusal(&self) -> Error {
        errors::insufficient_storage(&self.root, self.needed())
    }

    /// Blocking: a write met a full disk. Enters full mode and gives back the reserve's first half.
    pub(crate) fn enter_full(&self) {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let was_full = self.full.swap(true, Ordering::SeqCst);
        self.cut_reserve(self.size / 2);
        if !was_full {
            tracing::warn!(
                root = %self.root.display(),
                "the disk of the store is full: writes are refused until space is freed; deletes and aborts work"
            );
        }
    }

    /// Blocking: an operation that frees space met a full disk. Enters full mode and gives back all that is
    /// left of the reserve; true if there was some.
    pub(crate) fn release(&self) -> bool {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.full.store(true, Ordering::SeqCst);
        self.cut_reserve(0)
    }

    /// Cuts the reserve to `len` bytes (removing it at 0), which frees the blocks past that; true if it was
    /// longer.
    fn cut_reserve(&self, len: u64) -> bool {
        let path = self.reserve_path();
        let before = self.reserve_len();
        if before <= len {
            return false;
        }
        let res = match len {
            0 => std::fs::remove_file(&path),
            _ => std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(len)),
        };
        match res {
            Ok(()) => {
                tracing::info!(path = %path.display(), from = before, to = len, "gave back reserved space");
                true
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not give back the reserve");
                false
            }
        }
    }

    /// Blocking: leaves full mode if the disk has room again (making the reserve whole first). True when the
    /// store takes writes.
    pub(crate) fn recover(&self) -> bool {
        if !self.is_full() {
            return true;
        }
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.is_full() {
            return true;
        }
        match self.make_reserve() {
            Ok(true) => {
                self.full.store(false, Ordering::SeqCst);
                tracing::info!(root = %self.root.display(), "the disk of the store has room again: writes are taken");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(root = %self.root.display(), error = %e, "cannot make the store's reserve whole");
                false
            }
        }
    }

    /// Blocking: makes the reserve whole if the disk has room for the missing part and for writes after it
    /// ([`Space::needed`]); false, with nothing changed, when it has not.
    fn make_reserve(&self) -> Result<bool> {
        let held = self.reserve_len().min(self.size);
        match free_bytes(&self.root) {
            Ok(free) if free >= self.needed() - held => self.fill_reserve(),
            Ok(_) => Ok(false),
            // A filesystem that cannot tell: writing the reserve is the test (a full disk refuses it).
            Err(e) => {
                let root = self.root.display();
                tracing::debug!(%root, error = %e, "cannot ask the filesystem for its free space");
                self.fill_reserve()
            }
        }
    }

    /// Blocking: extends the reserve to its size. False, the reserve cut back to what it was, when the disk
    /// has no room for it.
    fn fill_reserve(&self) -> Result<bool> {
        if self.size == 0 {
            return Ok(true);
        }
        let path = self.reserve_path();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let start = f.metadata()?.len();
        let res = (|| {
            // Incompressible bytes: a filesystem that compresses (or keeps zeros as holes) still allocates them.
            let mut x: u64 = rand::random::<u64>() | 1;
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = self.size.saturating_sub(start);
            while left > 0 {
                for chunk in buf.chunks_exact_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    chunk.copy_from_slice(&x.to_le_bytes());
                }
                let n = left.min(buf.len() as u64) as usize;
                f.write_all(&buf[..n])?;
                left -= n as u64;
            }
            f.sync_all()
        })();
        match res {
            Ok(()) => Ok(true),
            Err(e) => {
                let _ = f.set_len(start);
                let e = Error::from(e);
                if is_disk_full(&e) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// Bytes an unprivileged writer may still use on the filesystem of `path`.
fn free_bytes(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn full_disk_errors_are_recognised_through_their_causes() {
        let enospc = Error::from(io::Error::from_raw_os_error(28));
        assert!(is_disk_full(&enospc));
        let wrapped = Error::new(ErrorKind::Io, "cannot publish").with_source(enospc);
        assert!(is_disk_full(&wrapped));
        let sqlite = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error { code: rusqlite::ErrorCode::DiskFull, extended_code: 13 },
            Some("database or disk is full".into()),
        );
        assert!(is_disk_full(&Error::from(sqlite)));
        assert!(!is_disk_full(&Error::from(io::Error::from(io::ErrorKind::PermissionDenied))));
        assert!(!is_disk_full(&Error::code(500, "InternalError", "x")));
    }

    #[test]
    fn the_reserve_is_given_back_in_halves_and_made_whole_again() {
        let dir = tempfile::tempdir().unwrap();
        let size = 64 * 1024;
        let space = Space::open(dir.path(), size).unwrap();
        let reserve = dir.path().join(RESERVE_FILE);
        let len = || std::fs::metadata(&reserve).map_or(0, |m| m.len());
        assert_eq!(len(), size);
        assert!(!space.is_full());
        // A write met a full disk: half is given back, writes are refused.
        space.enter_full();
        assert!(space.is_full());
        assert_eq!(len(), size / 2);
        let refusal = space.refusal();
        assert_eq!((refusal.status(), refusal.kind()), (Some(507), ErrorKind::InsufficientStorage));
        assert!(refusal.message().contains(&dir.path().display().to_string()), "{refusal}");
        // A store opened now remembers: a temp directory has room, so it makes the reserve whole.
        drop(space);
        let space = Space::open(dir.path(), size).unwrap();
        assert!(!space.is_full());
        assert_eq!(len(), size);
        // A delete met a full disk: the rest is given back.
        assert!(space.release());
        assert!(space.is_full() && !reserve.exists());
        assert!(!space.release(), "nothing left to give back");
        // There is room: full mode ends and the reserve is whole again.
        assert!(space.recover());
        assert!(!space.is_full());
        assert_eq!(len(), size);
    }
}
