//! Uploading one file: the file is the [`ObjectSource`] of the part pipeline ([`super::pipeline`]): one
//! PutObject below the threshold, a resumable multipart upload above it.
//!
//! The file is read in order, part by part, with positional reads: the pipeline takes a memory permit before
//! each read, so buffered bytes stay within the budget, and hands each part to its own task that takes a
//! request permit and sends it. The whole-file BLAKE3 is computed on this ordered read. A retry re-reads the
//! part from the file and refuses bytes that changed.
//!
//! On resume, a part the ledger holds (and the server still lists with its ETag) is reused only if the file's
//! bytes still hash to the recorded BLAKE3; a part only the server lists (acknowledged just before a kill, or
//! sent by a run whose ledger was lost) is adopted when the file's bytes match the server's checksum of it (a
//! local read: nothing goes over the network). A file changed between runs (size, mtime or inode) aborts the
//! old upload first. A file changed during its upload never publishes: before Complete, and before a single
//! PutObject sends what it read, the open file must still have the size, modification and change times it was
//! planned with, the path must still name it, and nothing may follow the planned size.

use super::digest::{part_digest, FileDigest};
use super::parts::Halt;
use super::pipeline::{adopted, Held, ObjectSource, Outcome, Step};
use super::{Engine, SkipReason, UploadRequest};
use crate::checkpoint::{Fingerprint, JobId};
use crate::crc64;
use crate::error::{Error, ErrorKind, Result};
use crate::meta::Metadata;
use crate::plan::{plan_object, ObjectPlan, Part};
use crate::run::BufferPool;
use crate::store::{validate_key, Body, ObjectInfo, ObjectRef, PartInfo, PutOptions, PutResult, Upload};
use async_trait::async_trait;
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

pub(super) fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot {what} {}", path.display())).with_source(e)
}

fn fingerprint(meta: &std::fs::Metadata) -> Fingerprint {
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    Fingerprint::File { size: meta.len(), mtime_ns, inode: meta.ino() }
}

/// `len` bytes of `file` at `offset`, read straight into the spare capacity of `buf` (a reused part buffer or a
/// new one; emptied first): no zeroing first (that was 5% of a big upload's CPU). `rustix` sets the length it filled, so no
/// unsafe code is needed here.
fn pread_exact(file: &File, mut buf: Vec<u8>, len: usize, mut offset: u64) -> std::io::Result<Vec<u8>> {
    buf.clear();
    buf.reserve(len);
    while buf.len() < len {
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), offset)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file is shorter than planned"));
        }
        offset += n as u64;
    }
    // The allocation may hold more than asked for, and a read may fill it: keep exactly the part.
    buf.truncate(len);
    Ok(buf)
}

/// Reads of at most this many bytes are made on the async thread, as the file's open and stat are: a hop to a
/// blocking thread and back costs more than such a read (a third of the client's CPU per 16 KiB file went to
/// thread wake-ups).
const INLINE_READ: u64 = 64 * 1024;

/// Reads `len` bytes at `offset` into a buffer of `pool`, off the async threads unless the read is small.
async fn read_at(pool: &BufferPool, file: Arc<File>, path: Arc<Path>, offset: u64, len: u64) -> Result<Bytes> {
    let pool = pool.clone();
    let read = move || {
        let buf = pread_exact(&file, pool.take(len as usize), len as usize, offset)
            .map_err(|e| io_error("read", &path, e))?;
        Ok(pool.freeze(buf))
    };
    if len <= INLINE_READ {
        return read();
    }
    tokio::task::spawn_blocking(read).await?
}

/// One part as read: its bytes, its digest, and whether they are the bytes of the part the server listed.
struct ReadPart {
    data: Bytes,
    digest: String,
    listed_holds: bool,
}

/// Reads part `offset..offset + len` and takes its digest into `digest`, off the async threads, and checks the
/// bytes against `listed`, the part the server lists but the ledger does not hold; returns `digest` back.
async fn read_part(
    pool: &BufferPool,
    file: Arc<File>,
    path: Arc<Path>,
    (offset, len): (u64, u64),
    mut digest: FileDigest,
    listed: Option<PartInfo>,
) -> Result<(ReadPart, FileDigest)> {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let buf = pread_exact(&file, pool.take(len as usize), len as usize, offset)
            .map_err(|e| io_error("read", &path, e))?;
        let part = digest.part(offset, &buf);
        let listed_holds = listed.is_some_and(|l| l.holds(&buf));
        Ok((ReadPart { data: pool.freeze(buf), digest: part, listed_holds }, digest))
    })
    .await?
}

/// Where the bytes of one request come from: a range of the file, already read once.
struct Reread {
    file: Arc<File>,
    path: Arc<Path>,
    offset: u64,
    len: u64,
    /// The first read's digest ([`part_digest`]), and whether it is a chaining value.
    digest: String,
    tree: bool,
    /// Where a re-read gets its buffer.
    buffers: BufferPool,
}

impl Reread {
    /// The bytes for an attempt: `first` (the first read) when given, else a fresh read checked against the
    /// first read's blake3, so a retry never sends bytes that changed.
    async fn bytes(&self, first: Option<Bytes>) -> Result<Bytes> {
        if let Some(b) = first {
            return Ok(b);
        }
        let data = read_at(&self.buffers, self.file.clone(), self.path.clone(), self.offset, self.len).await?;
        if part_digest(self.tree, self.offset, &data) != self.digest {
            let how = format!("bytes {}..{} differ on re-read", self.offset, self.offset + self.len);
            return Err(changed(&self.path, &how));
        }
        Ok(data)
    }
}

/// Refuses a path that is not a regular file (following links), before anything opens it: a FIFO's open waits
/// for a writer, a device's reads never end.
pub(super) fn regular_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(not_regular(path)),
        Err(e) => Err(io_error("stat", path, e)),
    }
}

fn not_regular(path: &Path) -> Error {
    Error::invalid(format!(
        "{} is not a regular file (a directory, FIFO, socket or device): transfer uploads files and directories; \
         for a stream, copy it to a file first",
        path.display()
    ))
}

impl UploadRequest {
    /// The destination object.
    pub(super) fn dest(&self) -> ObjectRef {
        ObjectRef::new(&self.bucket, &self.key)
    }

    /// Checks the key and metadata, opens the file: its absolute path, the open file and its status and
    /// fingerprint.
    pub(super) fn open(&self) -> Result<(Arc<Path>, Arc<File>, std::fs::Metadata, Fingerprint)> {
        validate_key(&self.key)?;
        self.metadata.validate()?;
        let path: Arc<Path> = std::path::absolute(&self.path).map_err(|e| io_error("resolve", &self.path, e))?.into();
        regular_file(&path)?;
        // Non-blocking, should the path have become a FIFO since: its open would wait for a writer.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        let meta = file.metadata().map_err(|e| io_error("stat", &path, e))?;
        if !meta.is_file() {
            return Err(not_regular(&path));
        }
        let fp = fingerprint(&meta);
        Ok((path, Arc::new(file), meta, fp))
    }
}

impl Engine {
    /// Uploads one file as `req.bucket/req.key` within `job`, resuming what the ledger says an earlier run
    /// delivered. Running it again after a crash, a kill or a failure continues the same upload; running it
    /// again after success does nothing and returns the recorded outcome.
    ///
    /// With an [overwrite policy](super::Overwrite), a file nothing was sent for yet is first checked against
    /// its destination, and may be skipped (recorded as skipped in the ledger, reported in
    /// [`Outcome::skipped`]). With [`EngineConfig::dry_run`](super::EngineConfig::dry_run) set, nothing
    /// is written: the call fails with [`ErrorKind::InvalidInput`] (use [`Engine::plan_upload_file`]).
    pub async fn upload_file(&self, job: JobId, req: &UploadRequest) -> Result<Outcome> {
        self.refuse_dry_run("upload_file", "plan_upload_file")?;
        let (path, file, meta, fp) = req.open()?;
        let size = meta.len();
        let plan = plan_object(size, &self.inner.caps, &self.inner.config.plan)?;
        let with_digest;
        let (req, expect) = match self.with_digest(req, &file, &path, size).await? {
            Some((r, d)) => {
                with_digest = r;
                (&with_digest, Some(d))
            }
            None => (req, None),
        };
        let source = path.to_string_lossy().into_owned();
        let row = {
            let (b, k, tags, fp, part_size) =
                (req.bucket.clone(), req.key.clone(), req.tags.clone(), fp.clone(), plan.part_size());
            self.db(move |l| l.upsert_object(job, &source, &b, &k, size, &fp, part_size, tags.as_ref())).await?
        };
        let changed = row.fingerprint != fp;
        let row = if changed || row.plan_part_size != plan.part_size() {
            self.restart(row, fp, size, plan.part_size()).await?
        } else {
            row
        };
        let dest = req.dest();
        if let Some(done) = self.already_done(&row, &dest, req.tags.as_ref()).await? {
            return Ok(done);
        }
        let opts = self.put_options(&self.file_metadata(req, &meta)?, req.tags.as_ref());
        let mut file = FileSource::new(self, file, path.clone(), meta, &plan, expect);
        self.transfer(&row, &dest, req.tags.as_ref(), &plan, &opts, &mut file)
            .await
            .map(|o| o.changed(changed))
            .map_err(|e| e.with_context("file", path.display()).with_context("object", &dest))
    }

    /// The metadata of the object a file becomes: the request's, and with
    /// [`EngineConfig::file_attributes`](super::EngineConfig::file_attributes) the file's modification time and
    /// mode, which a restore sets back (a value the request gives is kept).
    pub(super) fn file_metadata(&self, req: &UploadRequest, meta: &std::fs::Metadata) -> Result<Metadata> {
        let mut metadata = req.metadata.clone();
        if self.inner.config.file_attributes {
            let mode = format!("{:o}", meta.mode());
            let mtime = meta.modified().ok().map(super::format_mtime);
            for (name, value) in [(super::MTIME_METADATA, mtime), (super::MODE_METADATA, Some(mode))] {
                if let (false, Some(v)) = (metadata.user.contains_key(name), value) {
                    metadata.insert_user(name, v)?;
                }
            }
        }
        Ok(metadata)
    }

    /// With [`DigestOptions`](super::DigestOptions) set: the request with the file's blake3 added to its tags
    /// and/or metadata, and the digest. Reads the file once, in 1 MiB slices.
    pub(super) async fn with_digest(
        &self,
        req: &UploadRequest,
        file: &Arc<File>,
        path: &Arc<Path>,
        size: u64,
    ) -> Result<Option<(UploadRequest, String)>> {
        let opts = &self.inner.config.digest;
        if opts.tag.is_none() && opts.metadata.is_none() {
            return Ok(None);
        }
        const SLICE: u64 = 1 << 20;
        let _memory = self.inner.scheduler.memory(SLICE.min(size).max(1)).await;
        let (f, p) = (file.clone(), path.clone());
        let digest = tokio::task::spawn_blocking(move || {
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; SLICE.min(size) as usize];
            let mut offset = 0;
            while offset < size {
                let n = SLICE.min(size - offset) as usize;
                f.read_exact_at(&mut buf[..n], offset).map_err(|e| io_error("read", &p, e))?;
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            Ok::<_, Error>(hasher.finalize().to_hex().to_string())
        })
        .await??;
        let mut r = req.clone();
        if let Some(key) = &opts.tag {
            let mut tags = r.tags.take().unwrap_or_default();
            tags.insert(key.clone(), digest.clone())?;
            r.tags = Some(tags);
        }
        if let Some(name) = &opts.metadata {
            r.metadata.insert_user(name, digest.clone())?;
            r.metadata.validate()?;
        }
        Ok(Some((r, digest)))
    }
}

/// A file as the source of one object.
pub(super) struct FileSource {
    engine: Engine,
    file: Arc<File>,
    path: Arc<Path>,
    size: u64,
    /// The file's status when it was opened and planned: it must still be the same when the object is
    /// published ([`unchanged`]).
    planned: std::fs::Metadata,
    /// The digest of the parts read so far, in order (out while a part is read on a blocking thread).
    digest: Option<FileDigest>,
    /// Whether part digests are BLAKE3 chaining values ([`FileDigest::is_tree`]).
    tree: bool,
    /// The BLAKE3 the object is labelled with ([`DigestOptions`](super::DigestOptions)): the bytes sent must
    /// hash to it.
    expect: Option<String>,
    /// The BLAKE3 of every byte sent, once known.
    hash: Option<blake3::Hash>,
}

impl FileSource {
    pub(super) fn new(
        engine: &Engine,
        file: Arc<File>,
        path: Arc<Path>,
        planned: std::fs::Metadata,
        plan: &ObjectPlan,
        expect: Option<String>,
    ) -> Self {
        let digest = FileDigest::new(plan.part_size(), plan.part_count());
        let tree = digest.is_tree();
        FileSource {
            engine: engine.clone(),
            file,
            path,
            size: plan.size,
            planned,
            digest: Some(digest),
            tree,
            expect,
            hash: None,
        }
    }

    fn buffers_pool(&self) -> &BufferPool {
        &self.engine.inner.buffers
    }
}

#[async_trait]
impl ObjectSource for FileSource {
    async fn skip(&mut self, dest: &ObjectRef) -> Result<Option<(SkipReason, ObjectInfo)>> {
        self.engine.upload_skip(dest, &self.file, &self.path, self.size).await
    }

    async fn put(&mut self, dest: &ObjectRef, opts: &PutOptions) -> Result<PutResult> {
        let (engine, size) = (&self.engine, self.size);
        let inner = &engine.inner;
        let _memory = inner.scheduler.memory(size).await;
        let data = read_at(&inner.buffers, self.file.clone(), self.path.clone(), 0, size).await?;
        // What was read is what is sent: it must be the file as planned, not one caught mid-write.
        unchanged(&self.file, &self.path, &self.planned)?;
        let hash = blake3::hash(&data);
        check_digest(self.expect.as_deref(), &hash, &self.path)?;
        self.hash = Some(hash);
        let src = Reread {
            file: self.file.clone(),
            path: self.path.clone(),
            offset: 0,
            len: size,
            digest: hash.to_hex().to_string(),
            tree: false,
            buffers: inner.buffers.clone(),
        };
        let whole = data.clone();
        let mut first = Some(data);
        // The client checks the server's CRC-64 against the bytes it sent.
        engine
            .write_object(
                "PutObject",
                dest,
                size,
                || Some(crc64::checksum(&whole)),
                || {
                    let bytes = src.bytes(first.take());
                    async move { inner.store.put_object(&dest.bucket, &dest.key, Body::from(bytes.await?), opts).await }
                },
            )
            .await
    }

    fn buffers(&self) -> bool {
        true
    }

    async fn part(&mut self, part: Part, held: Option<&Held>, to: &Arc<Upload>, halt: &Halt) -> Result<Step> {
        let taken =
            self.digest.take().ok_or_else(|| Error::new(ErrorKind::Io, "an earlier read of the file failed"))?;
        let listed = match held {
            Some(Held::Listed(info)) => Some(info.clone()),
            _ => None,
        };
        let file = (self.file.clone(), self.path.clone());
        let (read, back) =
            read_part(self.buffers_pool(), file.0, file.1, (part.offset, part.len), taken, listed).await?;
        self.digest = Some(back);
        let ReadPart { data, digest: hash, listed_holds } = read;
        // A part is kept when the file's bytes are the ones the server holds: by their BLAKE3 for a part the
        // ledger recorded, by the server's checksum for one only the server lists.
        match held {
            Some(Held::Recorded(p)) if p.size == part.len && p.blake3 == hash => return Ok(Step::Keep(None)),
            Some(Held::Listed(info)) if listed_holds => return Ok(Step::Keep(Some(adopted(&part, info, hash)))),
            _ => {}
        }
        let src = Reread {
            file: self.file.clone(),
            path: self.path.clone(),
            offset: part.offset,
            len: part.len,
            digest: hash,
            tree: self.tree,
            buffers: self.buffers_pool().clone(),
        };
        let (engine, to, halt) = (self.engine.clone(), to.clone(), halt.clone());
        Ok(Step::Send(Box::pin(async move {
            let mut first = Some(data);
            // The client checks the server's CRC-64 against the bytes sent: it is what the ledger keeps.
            let receipt = engine
                .write_part("UploadPart", &halt, || {
                    let bytes = src.bytes(first.take());
                    let (store, to) = (&engine.inner.store, &to);
                    async move { store.upload_part(to.part(part.number), Body::from(bytes.await?)).await }
                })
                .await?;
            Ok((receipt, src.digest))
        })))
    }

    async fn in_place(&mut self, head: &ObjectInfo, plan: &ObjectPlan) -> Result<bool> {
        if head.size != self.size {
            return Ok(false);
        }
        let (file, path, plan, head) = (self.file.clone(), self.path.clone(), *plan, head.clone());
        let _memory = self.engine.inner.scheduler.memory(IN_PLACE_SLICE.min(self.size).max(1)).await;
        tokio::task::spawn_blocking(move || file_is(&file, &path, &plan, &head)).await?
    }

    fn unchanged(&self) -> Result<()> {
        unchanged(&self.file, &self.path, &self.planned)
    }

    fn check(&mut self) -> Result<()> {
        ObjectSource::unchanged(self)?;
        let digest = self.digest.take().ok_or_else(|| Error::new(ErrorKind::Io, "a read of the file failed"))?;
        let hash = digest.finish();
        check_digest(self.expect.as_deref(), &hash, &self.path)?;
        self.hash = Some(hash);
        Ok(())
    }

    fn blake3(&self) -> Option<String> {
        self.hash.map(|h| h.to_hex().to_string())
    }
}

/// How much of a file [`file_is`] reads at once.
const IN_PLACE_SLICE: u64 = 1 << 20;

/// Whether `head` is the object `file` makes under `plan`, by a local read: the CRC-64 where the store reports
/// one (OSS), else the ETag: the MD5 of the bytes for a single-part object, the multipart rule over the plan's
/// parts (the part MD5s) for one of as many parts. False when none applies (an ETag of another form).
fn file_is(file: &File, path: &Path, plan: &ObjectPlan, head: &ObjectInfo) -> Result<bool> {
    use md5::{Digest, Md5};
    let etag = head.etag.trim_matches('"');
    let parts_in_etag = etag.split_once('-').and_then(|(_, n)| n.parse::<u32>().ok());
    let whole_md5 = etag.len() == 32 && parts_in_etag.is_none();
    if head.crc64.is_none() && !whole_md5 && parts_in_etag != Some(plan.part_count()) {
        return Ok(false);
    }
    let mut buf = vec![0u8; IN_PLACE_SLICE.min(plan.size) as usize];
    let (mut crc, mut whole) = (crate::crc64::Crc64::new(), Md5::new());
    let mut part_etags = Vec::new();
    for part in plan.parts() {
        let mut md5 = Md5::new();
        let mut offset = part.offset;
        while offset < part.offset + part.len {
            let n = (part.offset + part.len - offset).min(IN_PLACE_SLICE) as usize;
            file.read_exact_at(&mut buf[..n], offset).map_err(|e| io_error("read", path, e))?;
            match head.crc64 {
                Some(_) => crc.update(&buf[..n]),
                None if whole_md5 => whole.update(&buf[..n]),
                None => md5.update(&buf[..n]),
            }
            offset += n as u64;
        }
        part_etags.push(crate::store::CompletedPart::new(part.number, hex::encode(md5.finalize())));
    }
    Ok(match head.crc64 {
        Some(want) => crc.value() == want,
        None if whole_md5 => etag.eq_ignore_ascii_case(&hex::encode(whole.finalize())),
        None => super::pipeline::completed_from(&part_etags, etag) == Some(true),
    })
}

/// The bytes sent must hash to the digest the object is labelled with.
fn check_digest(expect: Option<&str>, got: &blake3::Hash, path: &Path) -> Result<()> {
    match expect {
        Some(d) if d != got.to_hex().as_str() => {
            Err(changed(path, &format!("its blake3 is no longer the {d} computed first")))
        }
        _ => Ok(()),
    }
}

/// The error of a file that changed while it was uploaded: nothing of it is published, and the next run
/// uploads it as it is then. [`ErrorKind::PreconditionFailed`], as a copy source that changed.
fn changed(path: &Path, how: &str) -> Error {
    Error::new(
        ErrorKind::PreconditionFailed,
        format!(
            "{} changed while it was being uploaded ({how}): nothing was published; run the job again to upload it as it is then",
            path.display()
        ),
    )
    .with_retry(crate::error::Retry::Permanent)
}

/// Checks, before an object is published, that its file is the one planned (as rclone's "source file is being
/// updated"): the same size, modification and change times on the open file, the path still naming it, and
/// nothing past the planned size.
fn unchanged(file: &File, path: &Path, planned: &std::fs::Metadata) -> Result<()> {
    let now = file.metadata().map_err(|e| io_error("stat", path, e))?;
    let times = |m: &std::fs::Metadata| (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec());
    if now.len() != planned.len() {
        return Err(changed(path, &format!("its size went from {} to {} bytes", planned.len(), now.len())));
    }
    if times(&now) != times(planned) {
        return Err(changed(path, "it was modified"));
    }
    // Following links, as the open did: a file reached through a symlink is the link's target.
    match std::fs::metadata(path) {
        Ok(m) if (m.dev(), m.ino()) == (planned.dev(), planned.ino()) => {}
        _ => return Err(changed(path, "the path no longer names the file that was read")),
    }
    let mut past = [0u8; 1];
    match file.read_at(&mut past, planned.len()) {
        Ok(0) => Ok(()),
        Ok(_) => Err(changed(path, &format!("it grew past the {} bytes planned", planned.len()))),
        Err(e) => Err(io_error("read", path, e)),
    }
}

#[cfg(test)]
mod read_tests {
    use super::pread_exact;
    use std::io::Write as _;

    #[test]
    fn exact_reads_at_offsets_and_short_files_fail() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        assert_eq!(pread_exact(&f, Vec::new(), 1000, 5).unwrap(), &data[5..1005]);
        assert_eq!(pread_exact(&f, Vec::new(), 99_000, 1000).unwrap(), &data[1000..]);
        assert!(pread_exact(&f, Vec::new(), 0, 0).unwrap().is_empty());
        assert_eq!(pread_exact(&f, Vec::new(), 10, 99_995).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
        // A reused buffer, larger and holding an earlier part, gives exactly the part asked for.
        let used = pread_exact(&f, Vec::with_capacity(200_000), 99_000, 1000).unwrap();
        let ptr = used.as_ptr();
        let again = pread_exact(&f, used, 500, 7).unwrap();
        assert_eq!((again.as_slice(), again.as_ptr()), (&data[7..507], ptr));
    }
}
