//! An object to a writer, in order ([`Engine::download_stream`]): `transfer cp oss://b/key -`, or a backup
//! program piping a restore into `zstd -d | tar x`.
//!
//! The parts are the plan's, fetched by ranged GETs pinned to the object's ETag as a download's are, several at
//! once, and handed to the writer strictly in order: at most as many parts as the memory budget holds are in
//! memory (fetched ahead of the writer), whatever the object's size. A writer cannot be rewound, so a streamed
//! download does not resume: the ledger records the object (so `transfer jobs` shows it), not its parts, and
//! running the job again streams the object from its start. The parts' CRC-64s, combined, are checked against
//! the object's at the end; the bytes are out by then, so a mismatch fails the job (the reader must discard
//! what it got), as `curl | tar` cannot do at all.

use super::download::read_pinned;
use super::start::{JobStart, Source};
use super::verify::Believed;
use super::{Engine, Outcome, Verified};
use crate::checkpoint::{Fingerprint, JobId};
use crate::crc64;
use crate::error::{Error, ErrorKind, Result, Retry};
use crate::store::ObjectRef;
use futures::{StreamExt, TryStreamExt};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

/// A writer, boxed.
type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// Where a streamed download's bytes go: any [`AsyncWrite`] (stdout, a pipe, a socket), written once, in order.
#[derive(Clone)]
pub struct Writer(Arc<Mutex<Option<BoxWrite>>>);

impl Writer {
    /// `w` as the destination of a streamed download.
    pub fn new(w: impl AsyncWrite + Send + 'static) -> Writer {
        Writer(Arc::new(Mutex::new(Some(Box::pin(w)))))
    }
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Writer")
    }
}

/// One object to a writer: [`StreamRequest::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamRequest {
    /// The object, optionally at a version.
    pub source: ObjectRef,
    /// Where its bytes go.
    pub writer: Writer,
}

impl StreamRequest {
    /// `source` to `writer`.
    pub fn new(source: ObjectRef, writer: Writer) -> StreamRequest {
        StreamRequest { source, writer }
    }
}

/// True when `e` is a write into a reader that went away (a closed pipe): the reader is done, not the job's
/// fault.
pub fn is_closed_output(e: &Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            return true;
        }
        source = s.source();
    }
    false
}

impl Engine {
    /// A job streaming one object into `req.writer`, in order, with a handle as for any job: `.await` it to start
    /// it ([`JobStart`]). See the docs of `job::stream`: it does not resume.
    pub fn download_stream(&self, req: StreamRequest) -> JobStart {
        JobStart::new(self, Source::Stream(req))
    }

    /// Streams `req.source` into `req.writer` within `job`, flushing it at the end. The writer is taken: a
    /// second call with the same [`Writer`] fails with [`ErrorKind::InvalidInput`].
    pub async fn stream_object(&self, job: JobId, req: &StreamRequest) -> Result<Outcome> {
        self.refuse_dry_run("stream_object", "plan_download_object")?;
        let Some(mut writer) = req.writer.0.lock().await.take() else {
            return Err(Error::invalid("this Writer was written already: a streamed download writes its writer once"));
        };
        let head = self.source_head(&req.source).await?;
        let size = head.size;
        let Some(head) = self.readable(&req.source, head).await? else {
            return Ok(Outcome::left_alone(size, super::SkipReason::Archived, None));
        };
        let plan = self.plan_read(head.size)?;
        let fp = Fingerprint::Object { etag: head.etag.clone(), version_id: head.version_id.clone(), size: head.size };
        let row = {
            let (source, fp, size, ps) = (req.source.to_string(), fp.clone(), head.size, plan.part_size());
            self.db(move |l| l.upsert_object(job, &source, "", "-", size, &fp, ps, None)).await?
        };
        let id = row.id;
        let (size, ps) = (head.size, plan.part_size());
        // Nothing of an earlier run can be reused: the row starts again.
        self.db(move |l| l.reset_object(id, &fp, size, ps)).await?;
        let expected = match self.expected(&req.source, &head, head.crc64.is_some()).await {
            Ok(e) => e,
            Err(e) => {
                self.record_failure(&row, &e).await;
                return Err(e.with_context("source", &req.source));
            }
        };
        let streamed = async {
            let mut verifier = super::verify::Verifier::new(&expected);
            let ahead = plan.buffered_in_flight(&self.inner.config.plan);
            let (head, source) = (&head, &req.source);
            let mut parts = futures::stream::iter(plan.parts())
                .map(|part| async move {
                    let memory = self.inner.scheduler.memory(part.len.max(1)).await;
                    self.check_stopped()?;
                    let data = match part.len {
                        0 => bytes::Bytes::new(),
                        len => read_pinned(self, &**self.source_store(), source, head, Some((part.offset, len)))
                            .await
                            .map_err(|e| e.with_context("part", part.number))?,
                    };
                    Ok::<_, Error>((part, data, memory))
                })
                .buffered(ahead);
            let mut crc = 0u64;
            while let Some((part, data, _memory)) = parts.try_next().await? {
                crc = crc64::combine(crc, crc64::checksum(&data), part.len);
                verifier.update(&data);
                writer.write_all(&data).await.map_err(output_error)?;
                self.acknowledged(part.len);
            }
            writer.flush().await.map_err(output_error)?;
            Ok::<_, Error>((crc, verifier.finish()))
        }
        .await;
        let (crc, checked) = match streamed {
            Ok(done) => done,
            Err(e) => {
                self.record_failure(&row, &e).await;
                return Err(e.with_context("source", &req.source));
            }
        };
        let checked = match self.believed(&req.source, &head, &expected, checked).await? {
            // The bytes are gone: what depended on the layout stays unverified.
            Believed::Yes(c) | Believed::Unverified(c) | Believed::Recheck(_, c) => c,
        };
        let verified = Verified { crc64: head.crc64 == Some(crc), ..checked.verified };
        let checked_blake3 = checked.blake3;
        let mismatch = match head.crc64 {
            Some(want) if want != crc => Some(format!("CRC-64 {crc}, not the object's {want}")),
            _ => checked.mismatch().map(str::to_owned),
        };
        if let Some(what) = mismatch {
            let e =
                Error::new(ErrorKind::Integrity, format!("the bytes streamed have the {what}: discard what was read"))
                    .with_retry(Retry::Permanent);
            self.record_failure(&row, &e).await;
            return Err(e.with_context("source", &req.source));
        }
        let (etag, checked) = (head.etag.clone(), verified.crc64.then_some(crc));
        let blake3 = checked_blake3.map(|h| h.to_hex().to_string());
        let recorded = blake3.clone();
        self.db(move |l| l.finish_object_tagged(id, &etag, checked, recorded.as_deref(), true)).await?;
        Ok(Outcome {
            size: head.size,
            etag: head.etag,
            crc64: checked,
            blake3: blake3.unwrap_or_default(),
            parts_sent: plan.part_count(),
            parts_reused: 0,
            already_done: false,
            skipped: None,
            verified,
            source_changed: false,
            chunk: None,
        })
    }
}

/// A failed write into the stream's writer.
fn output_error(e: std::io::Error) -> Error {
    let what = match e.kind() {
        std::io::ErrorKind::BrokenPipe => "the output was closed before the object was written whole",
        _ => "cannot write the output",
    };
    Error::new(ErrorKind::Io, what).with_source(e).with_retry(Retry::Permanent)
}
