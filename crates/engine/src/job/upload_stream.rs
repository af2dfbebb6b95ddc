//! An object from a reader of unknown length ([`Engine::upload_stream`]): `tar | zstd | transfer cp - oss://b/k`,
//! or a backup program's own [`AsyncRead`].
//!
//! The stream is cut into parts as it is read, in order ([`plan_stream`]): parts that grow as the stream goes
//! (so the store's 10,000-part limit does not cap it at 10,000 times a small part), or, when the caller knows
//! the length, a file's plan of that length. A stream that ends within its first part is one PutObject; a
//! longer one is a multipart upload whose parts are sent as they fill, each under a memory permit taken before
//! it is read: what the process holds is the parts in flight and the one being read, within the budget. The
//! stream's CRC-64 and BLAKE3 are computed as it is read; the server's CRC-64 of every part, combined, must be
//! the stream's before Complete, and the object's after.
//!
//! A stream cannot be read twice, so its upload does not resume: a run that fails or is stopped aborts its
//! multipart upload (nothing is published) and says so; one that is killed leaves the upload id in the ledger,
//! where `transfer cleanup` finds and aborts it. Running the job again reads the stream from its start and first
//! aborts whatever upload an earlier run left. A stream of another length than the caller said, or longer than
//! the plan can take, fails before anything is published.

use super::parts::PartTasks;
use super::pipeline::Outcome;
use super::{Engine, Overwrite, SkipReason, Verified};
use crate::checkpoint::{Fingerprint, JobId, ObjectRow, PartRow};
use crate::crc64::Crc64;
use crate::error::{Error, ErrorKind, Result, Retry};
use crate::meta::Metadata;
use crate::plan::{plan_stream, StreamPlan};
use crate::store::{validate_key, Body, ObjectRef, PutOptions, PutResult, Upload};
use crate::tags::TagSet;
use bytes::{BufMut, Bytes};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Mutex;

/// How the ledger names the source of a streamed upload.
pub const STREAM_SOURCE: &str = "-";

/// A reader, boxed.
type BoxRead = Pin<Box<dyn AsyncRead + Send>>;

/// Where a streamed upload's bytes come from: any [`AsyncRead`] (stdin, a pipe, a socket), read once, in order.
#[derive(Clone)]
pub struct Reader(Arc<Mutex<Option<BoxRead>>>);

impl Reader {
    /// `r` as the source of a streamed upload.
    pub fn new(r: impl AsyncRead + Send + 'static) -> Reader {
        Reader(Arc::new(Mutex::new(Some(Box::pin(r)))))
    }
}

impl Reader {
    /// `r`, a blocking reader (stdin, a pipe), read on a thread of its own in blocks of 1 MiB and handed over
    /// four blocks ahead at most: far fewer hand-overs than `tokio::io::stdin`, which hops to a blocking thread
    /// for every read of a pipe's 64 KiB, and a read that waits for its writer never keeps a runtime from
    /// shutting down.
    pub fn from_blocking(mut r: impl std::io::Read + Send + 'static) -> Reader {
        use std::io::Read as _;
        const BLOCK: usize = 1 << 20;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let spawned = std::thread::Builder::new().name("transfer-stdin".into()).spawn(move || loop {
            // `read_to_end` fills the spare capacity without zeroing it first, and stops at the block's end.
            let mut block = Vec::with_capacity(BLOCK);
            let end = std::io::Read::read_to_end(&mut (&mut r).take(BLOCK as u64), &mut block);
            let (last, sent) = match end {
                Ok(_) => (block.len() < BLOCK, tx.blocking_send(Ok(Bytes::from(block)))),
                Err(e) => (true, tx.blocking_send(Err(e))),
            };
            if last || sent.is_err() {
                return;
            }
        });
        let reader = match spawned {
            Ok(_) => Blocks { rx: Some(rx), current: Bytes::new() },
            Err(e) => {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let _ = tx.try_send(Err(e));
                Blocks { rx: Some(rx), current: Bytes::new() }
            }
        };
        Reader::new(reader)
    }
}

/// The blocks a [`Reader::from_blocking`] thread reads, as an [`AsyncRead`].
struct Blocks {
    rx: Option<tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>>,
    current: Bytes,
}

impl AsyncRead for Blocks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.current.is_empty() {
            let Some(rx) = self.rx.as_mut() else { return Poll::Ready(Ok(())) };
            match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(block))) => self.current = block,
                Poll::Ready(Some(Err(e))) => {
                    self.rx = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(None) => {
                    self.rx = None;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.current.len().min(buf.remaining());
        let chunk = self.current.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reader")
    }
}

/// A stream to one object: [`StreamUploadRequest::new`], then the options that apply.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamUploadRequest {
    /// Where the bytes come from.
    pub reader: Reader,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key.
    pub key: String,
    /// Metadata and standard headers of the object.
    pub metadata: Metadata,
    /// Tags the object must carry.
    pub tags: Option<TagSet>,
    /// The stream's length, when the caller knows it: the object is planned as a file of that size, and a
    /// stream of another length fails without publishing anything. `None`: parts grow as the stream goes.
    pub expected_size: Option<u64>,
}

impl StreamUploadRequest {
    /// `reader` to `bucket/key`, no metadata, no tags, length unknown.
    pub fn new(reader: Reader, bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            reader,
            bucket: bucket.into(),
            key: key.into(),
            metadata: Metadata::default(),
            tags: None,
            expected_size: None,
        }
    }

    /// Metadata and standard headers of the object.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Tags the object must carry (an empty set: none).
    pub fn tags(mut self, tags: TagSet) -> Self {
        self.tags = Some(tags).filter(|t| !t.is_empty());
        self
    }

    /// The stream's length, when known; see the field.
    pub fn expected_size(mut self, size: Option<u64>) -> Self {
        self.expected_size = size;
        self
    }

    /// The destination object.
    pub(super) fn dest(&self) -> ObjectRef {
        ObjectRef::new(&self.bucket, &self.key)
    }
}

/// The stream's digests, taken as it is read.
struct Digests {
    crc: Crc64,
    blake3: blake3::Hasher,
}

impl Digests {
    /// Adds `data`, off the async threads unless it is small.
    async fn update(&mut self, data: &Bytes) -> Result<()> {
        const INLINE: usize = 64 * 1024;
        if data.len() <= INLINE {
            self.crc.update(data);
            self.blake3.update(data);
            return Ok(());
        }
        let (mut crc, mut blake3, data) = (self.crc.clone(), std::mem::take(&mut self.blake3), data.clone());
        let (crc, blake3) = tokio::task::spawn_blocking(move || {
            crc.update(&data);
            blake3.update(&data);
            (crc, blake3)
        })
        .await?;
        (self.crc, self.blake3) = (crc, blake3);
        Ok(())
    }
}

/// The stream as it is read: the reader, and a byte read ahead (to learn whether a full part was the last).
struct Source {
    reader: BoxRead,
    ahead: Option<u8>,
    read: u64,
}

impl Source {
    /// At most `len` bytes (fewer only at the end of the stream) into a buffer of the engine's pool.
    async fn chunk(&mut self, engine: &Engine, len: u64) -> Result<Bytes> {
        let pool = &engine.inner.buffers;
        let len = usize::try_from(len).map_err(|_| Error::invalid("a part larger than this machine's memory"))?;
        let mut buf = pool.take(len);
        buf.clear();
        buf.reserve(len);
        if let Some(b) = self.ahead.take() {
            buf.push(b);
        }
        let filled = engine.unless_stopped("while it waited for the stream", async {
            while buf.len() < len {
                let room = len - buf.len();
                let n = self.reader.read_buf(&mut (&mut buf).limit(room)).await.map_err(read_error)?;
                if n == 0 {
                    break;
                }
            }
            Ok(())
        });
        filled.await?;
        self.read += buf.len() as u64;
        Ok(pool.freeze(buf))
    }

    /// Whether the stream has more bytes (one is read ahead and kept for the next chunk).
    async fn more(&mut self, engine: &Engine) -> Result<bool> {
        if self.ahead.is_some() {
            return Ok(true);
        }
        let mut one = [0u8; 1];
        let read = async { self.reader.read(&mut one).await.map_err(read_error) };
        let n = engine.unless_stopped("while it waited for the stream", read).await?;
        if n == 1 {
            self.ahead = Some(one[0]);
        }
        Ok(n == 1)
    }
}

fn read_error(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, "cannot read the stream").with_source(e).with_retry(Retry::Permanent)
}

/// What was written, or why nothing was.
enum Sent {
    Put { put: PutResult, parts: u32 },
    Refused(Option<Upload>),
}

impl Engine {
    /// A job uploading `req.reader` to `req.bucket/req.key`, with a handle as for any job: `.await` it to start it
    /// ([`JobStart`](super::JobStart)). See the docs of `job::upload_stream`: it does not resume.
    pub fn upload_stream(&self, req: StreamUploadRequest) -> super::JobStart {
        super::JobStart::new(self, super::start::Source::Reader(req))
    }

    /// Uploads `req.reader` within `job`. The reader is taken: a second call with the same [`Reader`] fails with
    /// [`ErrorKind::InvalidInput`].
    pub(super) async fn upload_reader(&self, job: JobId, req: &StreamUploadRequest) -> Result<Outcome> {
        self.refuse_dry_run("upload_stream", "plan_upload_stream")?;
        validate_key(&req.key)?;
        req.metadata.validate()?;
        let Some(reader) = req.reader.0.lock().await.take() else {
            return Err(Error::invalid("this Reader was read already: a streamed upload reads its reader once"));
        };
        let plan = plan_stream(req.expected_size, &self.inner.caps, &self.inner.config.plan)?;
        let dest = req.dest();
        let (size, first) = (req.expected_size.unwrap_or(0), plan.part_len(1).unwrap_or(0));
        let row = {
            let (b, k, tags) = (req.bucket.clone(), req.key.clone(), req.tags.clone());
            self.db(move |l| {
                l.upsert_object(job, STREAM_SOURCE, &b, &k, size, &Fingerprint::Stream, first, tags.as_ref())
            })
            .await?
        };
        // An earlier run's upload cannot be continued: its stream is gone. One that cannot be aborted stays in the
        // ledger for `transfer cleanup`, and this run does not start.
        if let Some(id) = &row.upload_id {
            if !self.abort_stream_upload(&row, &Upload::new(&row.dest_bucket, &row.dest_key, id.clone())).await {
                return Err(Error::new(
                    ErrorKind::Service,
                    format!(
                        "the upload {id} an earlier run of this stream left could not be aborted; it stays in the \
                         ledger for `transfer cleanup`: run that, then the pipeline again"
                    ),
                )
                .with_context("object", &dest));
            }
        }
        let row = {
            let id = row.id;
            self.db(move |l| {
                l.reset_object(id, &Fingerprint::Stream, size, first)?;
                l.object_by_id(id)
            })
            .await?
        };
        if self.inner.config.overwrite == Overwrite::IfMissing {
            if let Some(head) = self.destination(&dest).await? {
                self.skip(&row, None).await?;
                return Ok(Outcome::left_alone(size, SkipReason::Exists, Some(&head)));
            }
        }
        let mut source = Source { reader, ahead: None, read: 0 };
        let mut digests = Digests { crc: Crc64::new(), blake3: blake3::Hasher::new() };
        let sent = self.send_stream(&row, &dest, req, &plan, &mut source, &mut digests).await;
        let (put, parts) = match sent {
            Ok(Sent::Put { put, parts }) => (put, parts),
            Ok(Sent::Refused(upload)) => {
                let head = self.skip_refused(&row, &dest, upload.as_ref()).await?;
                return Ok(Outcome::left_alone(source.read, SkipReason::Exists, head.as_ref()));
            }
            Err(e) => {
                let e = self.stream_failed(&row, e, source.read).await.with_context("object", &dest);
                if e.kind() == ErrorKind::Stopped {
                    // A stop is no failure of the object, so no event reports it: what became of the stream is said here.
                    tracing::warn!("{e}");
                }
                self.record_failure(&row, &e).await;
                return Err(e);
            }
        };
        let (crc, blake3) = (digests.crc.value(), digests.blake3.finalize().to_hex().to_string());
        if let Some(got) = put.crc64 {
            super::pipeline::check_crc(crc, Some(got), "the object").map_err(|e| e.with_retry(Retry::Permanent))?;
        }
        self.finish(&row, &dest, req.tags.as_ref(), &put, Some(blake3.clone())).await?;
        Ok(Outcome {
            size: source.read,
            etag: put.etag,
            crc64: put.crc64,
            blake3,
            parts_sent: parts,
            parts_reused: 0,
            already_done: false,
            skipped: None,
            verified: Verified { crc64: put.crc64.is_some(), ..Verified::default() },
            source_changed: false,
            chunk: None,
        })
    }

    /// Reads and sends the stream: one PutObject when it ends within its first part, else a multipart upload.
    async fn send_stream(
        &self,
        row: &ObjectRow,
        dest: &ObjectRef,
        req: &StreamUploadRequest,
        plan: &StreamPlan,
        source: &mut Source,
        digests: &mut Digests,
    ) -> Result<Sent> {
        let inner = &self.inner;
        let opts = self.put_options(&req.metadata, req.tags.as_ref());
        let first_len = plan.part_len(1).unwrap_or(0);
        let memory = inner.scheduler.memory(first_len.max(1)).await;
        let first = source.chunk(self, first_len).await?;
        digests.update(&first).await?;
        if first.len() as u64 == first_len && source.more(self).await? {
            // A stream said to fit one request that goes on is too long: refused before anything is sent.
            if plan.part_len(2).is_none() {
                return Err(too_long(plan));
            }
            return self.send_parts(row, dest, &opts, plan, source, digests, (first, memory)).await;
        }
        check_length(plan, source.read)?;
        self.settle_end_of_stream().await?;
        let (size, crc) = (first.len() as u64, digests.crc.value());
        let put = self
            .write_object(
                "PutObject",
                dest,
                size,
                || Some(crc),
                || {
                    let body = Body::from(first.clone());
                    async { inner.store.put_object(&dest.bucket, &dest.key, body, &opts).await }
                },
            )
            .await;
        drop(memory);
        match put {
            Err(e) if self.refused_overwrite(&e) => Ok(Sent::Refused(None)),
            put => {
                self.acknowledged(size);
                Ok(Sent::Put { put: put?, parts: 1 })
            }
        }
    }

    /// The multipart path of [`Engine::send_stream`]: `first` (a full first part, with its memory permit) and
    /// the rest of the stream, each part sent as soon as it is read.
    #[allow(clippy::too_many_arguments)]
    async fn send_parts(
        &self,
        row: &ObjectRow,
        dest: &ObjectRef,
        opts: &PutOptions,
        plan: &StreamPlan,
        source: &mut Source,
        digests: &mut Digests,
        first: (Bytes, crate::run::MemoryPermit),
    ) -> Result<Sent> {
        let inner = &self.inner;
        let upload = self
            .retrying("InitiateMultipartUpload", |_| async {
                let _slot = inner.scheduler.request().await;
                inner.store.initiate_multipart(&dest.bucket, &dest.key, opts).await
            })
            .await;
        let upload = match upload {
            Err(e) if self.refused_overwrite(&e) => return Ok(Sent::Refused(None)),
            upload => upload?,
        };
        let (rid, uid) = (row.id, upload.id.clone());
        self.db(move |l| l.set_upload(rid, Some(uid.as_str()))).await?;
        let to = Arc::new(upload.clone());
        let writer = inner.ledger.part_writer();
        let mut tasks = PartTasks::new(2 * inner.config.plan.max_in_flight);
        let mut parts = 0u32;
        let mut next = Some(first);
        let taking = async {
            let mut offset = 0u64;
            while let Some((data, memory)) = next.take() {
                parts += 1;
                let (number, len, planned) = (parts, data.len() as u64, plan.part_len(parts).unwrap_or(0));
                let (engine, writer, to, halt) = (self.clone(), writer.clone(), to.clone(), tasks.halt());
                tasks.spawn(async move {
                    let _memory = memory;
                    let receipt = engine
                        .write_part("UploadPart", &halt, || {
                            let (store, body) = (&engine.inner.store, Body::from(data.clone()));
                            let target = to.part(number);
                            async move { store.upload_part(target, body).await }
                        })
                        .await
                        .map_err(|e| e.with_context("part", number).with_context("upload id", &to.id))?;
                    engine.acknowledged(len);
                    let (etag, crc64, checksum) = (receipt.etag, receipt.crc64, receipt.checksum);
                    let blake3 = String::new();
                    writer.record(rid, PartRow { number, offset, size: len, etag, crc64, blake3, checksum });
                    Ok(())
                });
                offset += len;
                // A short part is the last; after a full one, the stream may still end.
                if len < planned || !source.more(self).await? {
                    break;
                }
                let Some(len) = plan.part_len(parts + 1) else {
                    return Err(too_long(plan));
                };
                if !tasks.ready().await {
                    break;
                }
                self.check_stopped()?;
                let memory = inner.scheduler.memory(len).await;
                let data = source.chunk(self, len).await?;
                digests.update(&data).await?;
                next = Some((data, memory));
            }
            check_length(plan, source.read)
        }
        .await;
        tasks.finish_recorded(taking, &writer).await?;
        self.settle_end_of_stream().await?;
        let crc = digests.crc.value();
        match self.complete_recorded(row, &upload, (parts, source.read), Some(crc)).await {
            Err(e) if self.refused_overwrite(&e) => Ok(Sent::Refused(Some(upload))),
            Err(e) => Err(e),
            Ok((put, _)) => Ok(Sent::Put { put, parts }),
        }
    }

    /// Before a stream that ended is published: an end that came with a stop may be a cut-short stream (Ctrl-C
    /// reaches the whole pipeline, and the writer's exit closes the pipe, perhaps a moment before this process
    /// has taken in its own signal): a tenth of a second for the stop to arrive, then nothing is published if
    /// it did.
    async fn settle_end_of_stream(&self) -> Result<()> {
        if self.tracker.is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.check_stopped()
    }

    /// A stream that failed after `read` bytes: its upload (if any) aborted, as the stream cannot be read again;
    /// the error says so, and names the upload if the abort failed (`transfer cleanup` aborts it then).
    async fn stream_failed(&self, row: &ObjectRow, e: Error, read: u64) -> Error {
        let id = row.id;
        let upload = match self.db(move |l| l.object_by_id(id)).await {
            Ok(now) => now.upload_id.map(|u| Upload::new(&now.dest_bucket, &now.dest_key, u)),
            Err(_) => row.upload_id.clone().map(|u| Upload::new(&row.dest_bucket, &row.dest_key, u)),
        };
        let what = match upload {
            None => "nothing was published".to_owned(),
            Some(upload) => match self.abort_stream_upload(row, &upload).await {
                true => "nothing was published and its upload was aborted".to_owned(),
                false => format!(
                    "nothing was published; its upload {} could not be aborted: `transfer cleanup` aborts it",
                    upload.id
                ),
            },
        };
        let note = format!("{what}; it cannot resume (a stream cannot be read twice): {read} bytes had been read");
        e.with_context("stream", note).with_retry(Retry::Permanent)
    }

    /// Aborts a stream's multipart upload and clears it from the ledger; false when the store could not be told
    /// (the ledger keeps it for `transfer cleanup`).
    async fn abort_stream_upload(&self, row: &ObjectRow, upload: &Upload) -> bool {
        let aborted = self
            .retrying("AbortMultipartUpload", |_| async {
                let _slot = self.inner.scheduler.request().await;
                self.inner.store.abort_multipart(upload).await
            })
            .await;
        match aborted {
            Err(e) if e.kind() != ErrorKind::UploadNotFound => {
                tracing::warn!(upload_id = %upload.id, error = %e, "could not abort the stream's upload; `transfer cleanup` can");
                false
            }
            _ => {
                let id = row.id;
                self.db(move |l| l.set_upload(id, None)).await.is_ok()
            }
        }
    }
}

/// A stream of known length must have had exactly that length.
fn check_length(plan: &StreamPlan, read: u64) -> Result<()> {
    match plan {
        StreamPlan::Sized(p) if p.size != read => Err(Error::invalid(format!(
            "the stream ended after {read} bytes, not the {} it was said to have (--expected-size)",
            p.size
        ))),
        _ => Ok(()),
    }
}

/// The error of a stream longer than its plan takes.
fn too_long(plan: &StreamPlan) -> Error {
    let msg = match plan {
        StreamPlan::Sized(p) => {
            format!("the stream is longer than the {} bytes it was said to have (--expected-size)", p.size)
        }
        StreamPlan::Growing { .. } => format!(
            "the stream is longer than the {} bytes its growing parts reach in the store's part limit: raise the \
             memory budget (--memory-limit) for larger parts, or give --expected-size",
            plan.capacity()
        ),
    };
    Error::invalid(msg)
}
