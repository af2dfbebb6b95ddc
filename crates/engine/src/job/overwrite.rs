//! The overwrite policy: whether an object whose destination already exists is transferred.
//!
//! The policy is checked once per object, before anything is written for it: when the ledger has no row for it
//! yet, or a row that is pending (or failed) with no multipart upload. An object the ledger has in progress or
//! done goes on as it would without a policy. The destination is looked at with a HEAD (retried, under a
//! request permit). With [`Overwrite::IfMissing`] every write that creates the object also carries
//! `x-oss-forbid-overwrite: true` (PutObject, InitiateMultipartUpload, CompleteMultipartUpload, CopyObject),
//! so an object that appears between the HEAD and the write is not clobbered either: the store answers
//! `409 FileAlreadyExists` (S3: `If-None-Match: *` and `412 PreconditionFailed`) and the object is skipped too
//! (its multipart upload, if any, is aborted).
//!
//! A skipped object is recorded in the ledger ([`Ledger::skip_object`](crate::checkpoint::Ledger::skip_object)),
//! so a resumed job does not look at it again: a later run reports it as already done.

use super::Engine;
use crate::checkpoint::{ObjectRow, ObjectState};
use crate::crc64::Crc64;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{ObjectInfo, ObjectRef, PutResult, Upload};
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// What to do with an object whose destination already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Overwrite {
    /// Transfer it anyway, replacing the destination.
    #[default]
    Always,
    /// Leave an existing destination alone (`--no-clobber`): the object is skipped with
    /// [`SkipReason::Exists`]. Writes also carry `x-oss-forbid-overwrite`, so a destination created meanwhile
    /// is not replaced either.
    IfMissing,
    /// Leave an existing destination alone when it has the same size and the same CRC-64/XZ as the source
    /// (`--update`): the object is skipped with [`SkipReason::Unchanged`]. A file's CRC-64 is computed by
    /// reading it (only when the sizes match); a copy compares its source's HEAD with the destination's. A
    /// destination (or a copy source) without a CRC-64 counts as different, but for a download, whose file is
    /// also compared with the MD5 an object's ETag is when the object has no CRC-64.
    IfDifferent,
}

/// Why an object was not transferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The destination exists ([`Overwrite::IfMissing`]).
    Exists,
    /// The destination has the source's size and CRC-64 ([`Overwrite::IfDifferent`]).
    Unchanged,
    /// The source is archived (Archive, ColdArchive, DeepColdArchive) and not restored, and the engine was not
    /// asked to restore it ([`EngineConfig::restore`](super::EngineConfig::restore)).
    Archived,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::Exists => "the destination exists",
            SkipReason::Unchanged => "the destination has the same size and CRC-64",
            SkipReason::Archived => {
                "the source is archived and not restored; add --restore-archived to restore it first (library: \
                 EngineConfig::restore)"
            }
        })
    }
}

/// True for a ledger row of an object nothing was written for yet: the policy is checked for it.
pub(super) fn not_started(row: &ObjectRow) -> bool {
    row.upload_id.is_none() && matches!(row.state, ObjectState::Pending | ObjectState::Failed)
}

impl Engine {
    /// `x-oss-forbid-overwrite` for the writes of an object under this engine's policy.
    pub(super) fn forbid_overwrite(&self) -> bool {
        self.inner.config.overwrite == Overwrite::IfMissing
    }

    /// True for the store's refusal of a write that must not overwrite an existing destination (OSS's 409
    /// `FileAlreadyExists`, S3's 412 to `If-None-Match: *`, told apart from a changed source by the dialect).
    pub(super) fn refused_overwrite(&self, e: &Error) -> bool {
        e.kind() == ErrorKind::AlreadyExists
    }

    /// The destination's HEAD, or `None` when it does not exist.
    pub(super) async fn destination(&self, dest: &ObjectRef) -> Result<Option<ObjectInfo>> {
        match self.head(dest).await {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.kind() == ErrorKind::ObjectNotFound => Ok(None),
            Err(e) => Err(e.with_context("destination", dest)),
        }
    }

    /// Whether the policy skips uploading a file of `size` bytes (open as `file`) to `dest`, and the
    /// destination's HEAD if so.
    pub(super) async fn upload_skip(
        &self,
        dest: &ObjectRef,
        file: &Arc<File>,
        path: &Arc<Path>,
        size: u64,
    ) -> Result<Option<(SkipReason, ObjectInfo)>> {
        match self.inner.config.overwrite {
            Overwrite::Always => Ok(None),
            Overwrite::IfMissing => Ok(self.destination(dest).await?.map(|h| (SkipReason::Exists, h))),
            Overwrite::IfDifferent => {
                let Some(head) = self.destination(dest).await? else { return Ok(None) };
                if head.size != size || head.crc64.is_none() {
                    return Ok(None);
                }
                let crc = self.file_crc64(file, path, size).await?;
                Ok((head.crc64 == Some(crc)).then_some((SkipReason::Unchanged, head)))
            }
        }
    }

    /// Whether the policy skips copying the source described by `src` to `dest`, and the destination's HEAD
    /// if so.
    pub(super) async fn copy_skip(
        &self,
        dest: &ObjectRef,
        src: &ObjectInfo,
    ) -> Result<Option<(SkipReason, ObjectInfo)>> {
        match self.inner.config.overwrite {
            Overwrite::Always => Ok(None),
            Overwrite::IfMissing => Ok(self.destination(dest).await?.map(|h| (SkipReason::Exists, h))),
            Overwrite::IfDifferent => {
                let Some(head) = self.destination(dest).await? else { return Ok(None) };
                let same = head.size == src.size && src.crc64.is_some() && head.crc64 == src.crc64;
                Ok(same.then_some((SkipReason::Unchanged, head)))
            }
        }
    }

    /// CRC-64/XZ of the first `size` bytes of `file`, read in 1 MiB slices on a blocking thread under a memory
    /// permit.
    pub(super) async fn file_crc64(&self, file: &Arc<File>, path: &Arc<Path>, size: u64) -> Result<u64> {
        Ok(self.file_sums(file, path, size, false).await?.0)
    }

    /// [`file_crc64`](Self::file_crc64), and with `md5` the MD5 (hex) of the same bytes, in the same read.
    pub(super) async fn file_sums(
        &self,
        file: &Arc<File>,
        path: &Arc<Path>,
        size: u64,
        md5: bool,
    ) -> Result<(u64, Option<String>)> {
        use md5::{Digest, Md5};
        const SLICE: u64 = 1 << 20;
        let _memory = self.inner.scheduler.memory(SLICE.min(size).max(1)).await;
        let (f, p) = (file.clone(), path.clone());
        tokio::task::spawn_blocking(move || {
            let mut crc = Crc64::new();
            let mut sum = md5.then(Md5::new);
            let mut buf = vec![0u8; SLICE.min(size) as usize];
            let mut offset = 0;
            while offset < size {
                let n = SLICE.min(size - offset) as usize;
                f.read_exact_at(&mut buf[..n], offset).map_err(|e| super::upload::io_error("read", &p, e))?;
                crc.update(&buf[..n]);
                if let Some(m) = sum.as_mut() {
                    m.update(&buf[..n]);
                }
                offset += n as u64;
            }
            let hex = sum.map(|m| m.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>());
            Ok::<_, Error>((crc.value(), hex))
        })
        .await?
    }

    /// A write with `x-oss-forbid-overwrite` was answered `FileAlreadyExists` on a retry (`attempt > 1`): an
    /// earlier attempt whose answer was lost may have written the object itself. It is taken as this write's
    /// result when the destination has the size and CRC-64 that were sent; otherwise `e` stands. Called with
    /// the attempt's request permit held.
    pub(super) async fn earlier_attempt(
        &self,
        e: Error,
        attempt: u32,
        dest: &ObjectRef,
        size: u64,
        crc: Option<u64>,
    ) -> Result<PutResult> {
        if attempt > 1 && self.refused_overwrite(&e) {
            if let (Some(crc), Ok(head)) = (crc, self.inner.store.head_object(dest).await) {
                if head.size == size && head.crc64 == Some(crc) {
                    return Ok(PutResult { etag: head.etag, crc64: head.crc64, version_id: head.version_id });
                }
            }
        }
        Err(e)
    }

    /// Records the object as skipped: aborts its multipart upload `upload_id` (if any; best effort), clears it,
    /// and marks the row [`ObjectState::Skipped`].
    pub(super) async fn skip(&self, row: &ObjectRow, upload: Option<&Upload>) -> Result<()> {
        let id = row.id;
        if let Some(upload) = upload {
            match self.inner.store.abort_multipart(upload).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UploadNotFound => {}
                Err(e) => {
                    tracing::warn!(upload_id = %upload.id, error = %e, "could not abort the upload of a skipped object; `transfer cleanup` can")
                }
            }
            self.db(move |l| l.set_upload(id, None)).await?;
        }
        self.db(move |l| l.skip_object(id)).await
    }

    /// The object was skipped because the store refused to overwrite it: records that, and returns the
    /// destination's HEAD if it can be had (for the outcome).
    pub(super) async fn skip_refused(
        &self,
        row: &ObjectRow,
        dest: &ObjectRef,
        upload: Option<&Upload>,
    ) -> Result<Option<ObjectInfo>> {
        tracing::info!(destination = %dest, "the destination appeared meanwhile and the store refused to overwrite it; skipped");
        self.skip(row, upload).await?;
        Ok(self.destination(dest).await.ok().flatten())
    }
}
