//! The local filesystem store: buckets, versions, multipart staging with atomic publish, appendable objects and
//! symlinks, behaving like OSS. It is the embedded default backend and what `transfer serve` exposes.
//!
//! # Design
//! - One SQLite index (`<root>/index.db`, see `index.rs`) is the authority on what exists: buckets, object versions
//!   (with metadata, tags, ETag, CRC-64, type, symlink target and data file name), multipart uploads and parts.
//! - Object bytes live in data files with random names (`<root>/.data/<xx>/<id>`), staged parts in
//!   `<root>/.staging/<upload id>/<id>`; see `blobs.rs`. Keys are never mapped to paths. A completed multipart
//!   object keeps its parts as pieces (`<root>/.pieces/<xx>/<id>/<n>`, hard links to the staged files):
//!   Complete copies no byte.
//! - A write streams the body into `<root>/.tmp/` while computing MD5 and CRC-64, fsyncs it (unless
//!   [`LocalOptions::fsync`] is off), renames it into place and then commits the index row in one transaction:
//!   a crash at any point leaves either the old state or the new one. [`LocalStore::open`] sweeps temp files and
//!   data files no row names.
//! - rusqlite is synchronous: the connection sits behind a `std::sync::Mutex` and is only used inside
//!   `spawn_blocking`, never across an `.await`. A read resolves its row and opens its data file under that
//!   lock, so a concurrent overwrite or delete cannot pull the file away from under it.
//! - One root is owned by one `LocalStore` at a time (clone it to share): opening sweeps the temp directory,
//!   which would break the in-flight writes of another store on the same root.
//! - A full disk never wedges the store (see `space.rs`): a reserve file (`<root>/.reserve`) is given back when
//!   a write meets a full disk, so the index stays writable for deletes and aborts; writes are refused with 507
//!   `InsufficientStorage` until there is room again, and the store notices that by itself.
//!
//! # Behaviour where OSS leaves a choice
//! - Versioning: writes while versioning is off or suspended get the version id `null` (reported as no version id
//!   while the bucket was never versioned). A delete of an unknown version id succeeds (OSS answers 204 whether
//!   or not the object exists); reads of one fail with `NoSuchVersion`.
//! - `forbid_overwrite` is honoured in unversioned buckets and ignored in versioned (enabled or suspended) ones,
//!   as OSS documents for CopyObject.
//! - An append to an existing appendable object keeps its version id; its ETag changes with every append (MD5 of
//!   the previous ETag and the appended bytes' MD5), its CRC-64 is the whole object's.
//! - Head/Get of a symlink serve the target's current version (size, ETag, CRC-64, metadata, bytes) with the
//!   link's type, version id and tag count; a link to a link counts as a missing target. GetObjectMeta and
//!   tagging act on the link itself; a link's ETag is the MD5 of its target key.

mod append;
mod blobs;
mod errors;
mod ids;
mod index;
mod multipart;
mod objects;
mod space;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_multipart;
#[cfg(test)]
mod tests_versions;

use crate::error::{Error, ErrorKind, Result};
use crate::store::validate_bucket;
use crate::store::{
    AppendResult, Body, BucketStore, ByteRange, Capabilities, CompleteOptions, CompletedPart, CopyOptions,
    DeleteResult, GetObject, ListPage, ListRequest, ListUploadsRequest, MultipartStore, ObjectInfo, ObjectMetaSummary,
    ObjectRef, ObjectStore, OssExtensions, PartCopySource, PartNumber, PartReceipt, PartRef, PartsPage, PutOptions,
    PutResult, RestoreAnswer, RestoreRequest, SymlinkInfo, Upload, UploadsPage, Versioning, VersionsPage,
    VersionsRequest,
};
use crate::tags::TagSet;
use async_trait::async_trait;
use blobs::{Blobs, Staged};
use index::Facts;
use rusqlite::Connection;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Options of [`LocalStore::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalOptions {
    /// fsync every data file (and its directory) before the index row that publishes it is committed. On by
    /// default; turning it off trades durability across power loss for speed (a process crash stays safe).
    pub fsync: bool,
    /// Bytes of disk the store sets aside (`<root>/.reserve`) so that its index can still commit deletes and
    /// aborts once the disk is full (1 MiB by default; 0 keeps none). See the module's design notes.
    pub reserve: u64,
    /// How long a RestoreObject of an archived object (storage class Archive, ColdArchive, DeepColdArchive)
    /// takes before the object can be read, as OSS's take hours (2 seconds by default).
    pub restore_delay: std::time::Duration,
}

setters!(LocalOptions { fsync: bool, reserve: u64, restore_delay: std::time::Duration });

impl Default for LocalOptions {
    fn default() -> Self {
        Self { fsync: true, reserve: space::DEFAULT_RESERVE, restore_delay: std::time::Duration::from_secs(2) }
    }
}

/// Number of stripes of the append locks: appends to keys hashing to the same stripe run one at a time.
const APPEND_STRIPES: usize = 64;

/// An OSS-like object store in a local directory. Cheap to clone (clones share the same index and files).
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    conn: Mutex<Connection>,
    blobs: Blobs,
    /// The reserve and full mode (see `space.rs`).
    space: space::Space,
    append_locks: Vec<tokio::sync::Mutex<()>>,
    /// How long a restore takes ([`LocalOptions::restore_delay`]).
    restore_delay: std::time::Duration,
    /// Held for the store's lifetime: one process owns a root at a time.
    _lock: std::fs::File,
}

/// How long opening a store waits for its root's lock before saying another process has it.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes the exclusive lock on `root/.lock`, so a second process (another `transfer serve`, or an embedder
/// opening the same root) fails clearly instead of sweeping the first one's in-flight files.
fn lock_root(root: &Path) -> Result<std::fs::File> {
    let path = root.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot open {}", path.display())).with_source(e))?;
    // A lock a previous owner just released can still be held for a moment by a process another thread of that
    // owner was starting (fork duplicates the descriptor until exec closes it): wait briefly before failing.
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    let mut locked = file.try_lock();
    while matches!(locked, Err(std::fs::TryLockError::WouldBlock)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(25));
        locked = file.try_lock();
    }
    match locked {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            ErrorKind::Io,
            format!(
                "the local store at {} is in use by another process (a running `transfer serve`?); stop it or choose another root",
                root.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::new(ErrorKind::Io, format!("cannot lock {}", path.display())).with_source(e))
        }
    }
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStore").field("root", &self.inner.root).finish_non_exhaustive()
    }
}

/// Data files and staged parts to remove once a transaction has committed.
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    data: Vec<String>,
    upload: Option<String>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl LocalStore {
    /// Opens the store rooted at `root` (created if needed) with default options.
    pub fn open(root: impl AsRef<Path>) -> Result<LocalStore> {
        Self::open_with(root, LocalOptions::default())
    }

    /// Opens the store rooted at `root` (created if needed). Everything a previous process committed is there;
    /// temp files and unreferenced data files left by a crash are removed.
    pub fn open_with(root: impl AsRef<Path>, opts: LocalOptions) -> Result<LocalStore> {
        let root = root.as_ref().to_owned();
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot create {}", root.display())).with_source(e))?;
        let lock = lock_root(&root)?;
        let conn = index::open(&root.join("index.db"))?;
        let blobs = Blobs::open(&root, opts.fsync)?;
        let refs = index::references(&conn)?;
        let swept = blobs.sweep(&refs.data, &refs.uploads, &refs.parts)?;
        if swept > 0 {
            tracing::debug!(root = %root.display(), swept, "removed files left by an interrupted write");
        }
        // After the sweep, which may have given back the space of interrupted writes.
        let space = space::Space::open(&root, opts.reserve)?;
        let append_locks = (0..APPEND_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        let restore_delay = opts.restore_delay;
        let inner = Inner { root, conn: Mutex::new(conn), blobs, space, append_locks, restore_delay, _lock: lock };
        Ok(LocalStore { inner: Arc::new(inner) })
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// GetService: every bucket with its creation time (seconds since the epoch), by name.
    pub async fn list_buckets(&self) -> Result<Vec<(String, i64)>> {
        self.db(|c, _| index::list_buckets(c)).await
    }

    /// Runs `f` with the index connection (and the data files) on a blocking thread.
    async fn db<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Blobs) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn, &inner.blobs)
        })
        .await?
    }

    /// Runs blocking file work (no index access) on a blocking thread.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Blobs) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner.blobs)).await?
    }

    fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// Runs `f` with the store's space on a blocking thread.
    async fn space<T: Send + 'static>(&self, f: impl FnOnce(&space::Space) -> T + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        Ok(tokio::task::spawn_blocking(move || f(&inner.space)).await?)
    }

    /// Runs an operation that adds data. While the disk is full it is refused before it starts (507
    /// `InsufficientStorage`) unless there is room again; if it meets a full disk, the store enters full mode
    /// (giving the index half of the reserve) and the refusal is returned.
    async fn writing<T>(&self, op: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        if self.inner.space.is_full() && !self.space(|s| s.recover()).await? {
            return Err(self.inner.space.refusal());
        }
        match op.await {
            Err(e) if space::is_disk_full(&e) => {
                self.space(|s| s.enter_full()).await?;
                Err(self.inner.space.refusal().with_source(e))
            }
            other => other,
        }
    }

    /// Runs an operation that frees space (a delete, an abort), which works on a full disk: if the index cannot
    /// commit it for lack of space, the rest of the reserve is given back (or, with none left, the index's log
    /// truncated) and it runs once more. Afterwards a full store checks whether it may take writes again.
    async fn freeing<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let res = match op().await {
            Err(e) if space::is_disk_full(&e) => {
                if !self.space(|s| s.release()).await? {
                    if let Err(e) = self.db(|c, _| index::checkpoint_truncate(c)).await {
                        tracing::warn!(error = %e, "could not truncate the index's log on a full disk");
                    }
                }
                op().await.map_err(|e| match space::is_disk_full(&e) {
                    true => self.inner.space.refusal().with_source(e),
                    false => e,
                })
            }
            other => other,
        };
        if res.is_ok() && self.inner.space.is_full() {
            self.space(|s| s.recover()).await?;
        }
        res
    }

    /// Removes files that a committed transaction no longer references.
    fn clean(&self, left: Leftovers) {
        self.blobs().remove_data(&left.data);
        if let Some(u) = left.upload {
            self.blobs().remove_upload(&u);
        }
    }

    /// Fails with `NoSuchBucket` unless `bucket` exists; with `forbid_ec`, also fails with `FileAlreadyExists`
    /// if the key exists. An early check: [`LocalStore::publish`] repeats it in its transaction.
    async fn precheck(&self, bucket: &str, key: &str, forbid_ec: Option<&'static str>) -> Result<()> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.db(move |c, _| {
            let v = index::bucket_versioning(c, &bucket)?;
            match forbid_ec {
                Some(ec) => index::ensure_absent(c, &bucket, &key, v, ec),
                None => Ok(()),
            }
        })
        .await
    }

    /// Publishes a new current version of `bucket/key`: moves `staged` (if any) into the data directory, then in
    /// one transaction checks the bucket, `forbid_ec` (`x-oss-forbid-overwrite`) and `guard` (which may check and
    /// change more rows, e.g. remove the completed upload) and inserts the version row. If anything fails the
    /// moved file is removed and nothing is visible.
    async fn publish<G>(
        &self,
        bucket: &str,
        key: &str,
        mut facts: Facts,
        staged: Option<Staged>,
        forbid_ec: Option<&'static str>,
        guard: G,
    ) -> Result<PutResult>
    where
        G: FnOnce(&Connection) -> Result<Leftovers> + Send + 'static,
    {
        if let Some(s) = staged {
            facts.data = Some(self.blobs().publish_data(s).await?);
        }
        let data = facts.data.clone();
        let (etag, crc64) = (facts.etag.clone(), facts.crc64);
        let (b, k) = (bucket.to_owned(), key.to_owned());
        let res = self
            .db(move |c, _| {
                let tx = c.transaction()?;
                let v = index::bucket_versioning(&tx, &b)?;
                if let Some(ec) = forbid_ec {
                    index::ensure_absent(&tx, &b, &k, v, ec)?;
                }
                let mut left = guard(&tx)?;
                let ins = index::insert_version(&tx, &b, &k, v, &facts)?;
                tx.commit()?;
                left.data.extend(ins.replaced_data);
                Ok((index::reported_version(v, &ins.version_id), left))
            })
            .await;
        match res {
            Ok((version_id, left)) => {
                self.clean(left);
                Ok(PutResult { etag, crc64, version_id })
            }
            Err(e) => {
                self.blobs().remove_data(data.as_slice());
                Err(e)
            }
        }
    }
}

#[async_trait]
impl BucketStore for LocalStore {
    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        validate_bucket(bucket)?;
        let b = bucket.to_owned();
        self.writing(self.db(move |c, _| index::create_bucket(c, &b, now()))).await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.freeing(|| {
            let b = bucket.to_owned();
            self.db(move |c, _| index::delete_bucket(c, &b))
        })
        .await
    }

    async fn put_versioning(&self, bucket: &str, enabled: bool) -> Result<()> {
        let b = bucket.to_owned();
        let v = if enabled { Versioning::Enabled } else { Versioning::Suspended };
        self.writing(self.db(move |c, _| index::set_versioning(c, &b, v))).await
    }

    async fn get_versioning(&self, bucket: &str) -> Result<Versioning> {
        let b = bucket.to_owned();
        self.db(move |c, _| index::bucket_versioning(c, &b)).await
    }

    async fn list_buckets(&self) -> Result<Vec<(String, i64)>> {
        LocalStore::list_buckets(self).await
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn capabilities(&self) -> &Capabilities {
        &Capabilities::OSS
    }

    async fn put_object(&self, bucket: &str, key: &str, body: Body, opts: &PutOptions) -> Result<PutResult> {
        self.writing(self.put_impl(bucket, key, body, opts)).await
    }

    async fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        self.head_impl(obj).await
    }

    async fn head_part(&self, obj: &ObjectRef, part: PartNumber) -> Result<ObjectInfo> {
        self.head_part_impl(obj, part).await
    }

    async fn get_object(&self, obj: &ObjectRef, range: Option<ByteRange>) -> Result<GetObject> {
        self.get_impl(obj, range).await
    }

    async fn list_objects(&self, bucket: &str, req: &ListRequest) -> Result<ListPage> {
        self.list_impl(bucket, req).await
    }

    async fn list_versions(&self, bucket: &str, req: &VersionsRequest) -> Result<VersionsPage> {
        self.list_versions_impl(bucket, req).await
    }

    async fn delete_object(&self, obj: &ObjectRef) -> Result<DeleteResult> {
        self.freeing(|| self.delete_impl(obj)).await
    }

    async fn copy_object(&self, bucket: &str, key: &str, opts: &CopyOptions) -> Result<PutResult> {
        self.writing(self.copy_impl(bucket, key, opts)).await
    }

    async fn put_tagging(&self, obj: &ObjectRef, tags: &TagSet) -> Result<Option<String>> {
        self.writing(self.set_tagging(obj, tags.clone())).await
    }

    async fn get_tagging(&self, obj: &ObjectRef) -> Result<TagSet> {
        self.get_tagging_impl(obj).await
    }

    async fn delete_tagging(&self, obj: &ObjectRef) -> Result<()> {
        self.freeing(|| self.set_tagging(obj, TagSet::new())).await.map(|_| ())
    }

    async fn restore_object(&self, obj: &ObjectRef, req: &RestoreRequest) -> Result<RestoreAnswer> {
        self.restore_impl(obj, req, self.inner.restore_delay).await
    }
}

#[async_trait]
impl MultipartStore for LocalStore {
    async fn initiate_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<Upload> {
        let id = self.writing(self.initiate_impl(bucket, key, opts)).await?;
        Ok(Upload::new(bucket, key, id))
    }

    async fn upload_part(&self, part: PartRef<'_>, body: Body) -> Result<PartReceipt> {
        // The body arrives in process; a Content-MD5 check is the HTTP layer's business.
        let u = part.upload;
        self.writing(self.upload_part_impl(&u.bucket, &u.key, u.id.as_str(), part.number.get(), body)).await
    }

    async fn upload_part_copy(&self, part: PartRef<'_>, from: &PartCopySource) -> Result<PartReceipt> {
        let u = part.upload;
        let (n, source, range, conditions) = (part.number.get(), &from.source, from.range, &from.conditions);
        self.writing(self.upload_part_copy_impl(&u.bucket, &u.key, u.id.as_str(), n, source, range, conditions)).await
    }

    async fn complete_multipart(
        &self,
        upload: &Upload,
        parts: &[CompletedPart],
        opts: &CompleteOptions,
    ) -> Result<PutResult> {
        self.writing(self.complete_impl(&upload.bucket, &upload.key, upload.id.as_str(), parts, opts)).await
    }

    async fn abort_multipart(&self, upload: &Upload) -> Result<()> {
        self.freeing(|| self.abort_impl(&upload.bucket, &upload.key, upload.id.as_str())).await
    }

    async fn list_parts(
        &self,
        upload: &Upload,
        marker: Option<PartNumber>,
        max_parts: Option<u32>,
    ) -> Result<PartsPage> {
        let marker = marker.map(PartNumber::get);
        self.list_parts_impl(&upload.bucket, &upload.key, upload.id.as_str(), marker, max_parts).await
    }

    async fn list_uploads(&self, bucket: &str, req: &ListUploadsRequest) -> Result<UploadsPage> {
        self.list_uploads_impl(bucket, req).await
    }
}

#[async_trait]
impl OssExtensions for LocalStore {
    async fn append_object(
        &self,
        bucket: &str,
        key: &str,
        position: u64,
        body: Body,
        opts: &PutOptions,
    ) -> Result<AppendResult> {
        self.writing(self.append_impl(bucket, key, position, body, opts)).await
    }

    async fn put_symlink(&self, bucket: &str, key: &str, target: &str, opts: &PutOptions) -> Result<PutResult> {
        self.writing(self.put_symlink_impl(bucket, key, target, opts)).await
    }

    async fn get_symlink(&self, obj: &ObjectRef) -> Result<SymlinkInfo> {
        self.get_symlink_impl(obj).await
    }

    async fn get_object_meta(&self, obj: &ObjectRef) -> Result<ObjectMetaSummary> {
        self.meta_impl(obj).await
    }
}
