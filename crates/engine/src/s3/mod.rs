//! The S3 dialect HTTP client: [`S3Store`] implements [`ObjectStore`] and [`BucketStore`] over `x-amz-*`
//! headers and AWS SigV4, for AWS S3 and S3-compatible stores (MinIO, Ceph, moto, OSS's S3 endpoint, ...).
//!
//! ```no_run
//! # fn demo() -> transfer_engine::Result<()> {
//! use transfer_engine::s3::S3Store;
//! use transfer_engine::sign::Credentials;
//! let store = S3Store::builder()
//!     .endpoint("http://127.0.0.1:9000")
//!     .region("us-east-1")
//!     .credentials(Credentials::new("ak", "sk"))
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! # Behaviour
//! `S3Store` is the OSS client's HTTP machinery ([`crate::oss`]) driven by [`Dialect::S3`]: the same request
//! building, error documents (a 200 answer with an `<Error>` body on CompleteMultipartUpload, CopyObject and
//! UploadPartCopy is an error), timeouts, clock correction and retry classification; only the data differ.
//! - Signing: AWS SigV4 in the `Authorization` header, `host` and every header set by the client signed. The
//!   payload hash is the body's SHA-256 for small in-memory bodies (XML documents) and `UNSIGNED-PAYLOAD`
//!   otherwise; never `aws-chunked`.
//! - Integrity: S3 has no CRC-64/XZ, so every object and part body held in memory carries a CRC-32C
//!   (`x-amz-checksum-crc32c`, computed by the CPU's CRC instruction: a few percent of what MD5 costs), every
//!   multipart upload declares it (`x-amz-checksum-algorithm: CRC32C`), CompleteMultipartUpload names each
//!   part's, and a server that echoes the checksum must echo the same value. [`S3Checksum::ContentMd5`] sends
//!   `Content-MD5` instead, for servers older than S3's checksums. XML documents always carry `Content-MD5`
//!   (S3 requires it on some); a body streamed from elsewhere ([`Body::from_stream`]) carries neither, as its
//!   digest is not known before it is sent. Uploads always carry `Content-Length`; never `aws-chunked`.
//! - Append and symlinks do not exist in S3: [`Capabilities::S3`](crate::store::Capabilities::S3) says so,
//!   and the calls fail with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) without sending
//!   anything. `forbid_overwrite` is sent as `If-None-Match: *` on PutObject, CopyObject and
//!   CompleteMultipartUpload (CreateMultipartUpload takes none); S3 refuses with 412 `PreconditionFailed`.
//! - Credentials never appear in `Debug`, logs or errors.

use crate::dialect::Dialect;
use crate::error::Result;
use crate::oss::{OssStore, OssStoreBuilder, Signing};
use crate::sign::s3::S3Signer;
use crate::sign::Credentials;
use crate::store::{
    AppendResult, Body, BucketStore, ByteRange, Capabilities, CompleteOptions, CompletedPart, CopyConditions,
    CopyOptions, DeleteResult, GetObject, ListPage, ListRequest, ListUploadsRequest, ObjectInfo, ObjectMetaSummary,
    ObjectRef, ObjectStore, PartReceipt, PartsPage, PutOptions, PutResult, SymlinkInfo, UploadsPage, Versioning,
};
use crate::tags::TagSet;
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// The region used when neither the builder nor `AWS_REGION` / `AWS_DEFAULT_REGION` name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How an [`S3Store`] protects the bodies it sends (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum S3Checksum {
    /// `x-amz-checksum-crc32c` on every object and part, declared on every multipart upload (the default):
    /// AWS S3, and the S3-compatible servers with S3's 2022 checksums (MinIO, Ceph Squid, Garage 1.1+, s3s).
    #[default]
    Crc32c,
    /// `Content-MD5` on every object and part, for servers that ignore `x-amz-checksum-*`: about 1.5 CPU
    /// seconds per GiB more.
    ContentMd5,
}

/// An S3 endpoint as an object store. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct S3Store {
    inner: OssStore,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("client", &self.inner).finish()
    }
}

impl S3Store {
    /// A builder; [`S3StoreBuilder::endpoint`] is required.
    pub fn builder() -> S3StoreBuilder {
        S3StoreBuilder::default()
    }

    /// True when requests use path-style addressing (`<endpoint>/<bucket>/<key>`).
    pub fn path_style(&self) -> bool {
        self.inner.path_style()
    }
}

/// Builds an [`S3Store`].
#[derive(Debug, Default)]
pub struct S3StoreBuilder {
    inner: OssStoreBuilder,
    region: Option<String>,
    credentials: Option<Credentials>,
    without_tagging: bool,
    checksum: S3Checksum,
}

impl S3StoreBuilder {
    /// The service endpoint: `http://host[:port]` or `https://host[:port]` (a bare host means https), e.g.
    /// `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`. Required.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.inner = self.inner.endpoint(endpoint);
        self
    }

    /// The region of the signature scope (and of buckets created). Default: `AWS_REGION`, then
    /// `AWS_DEFAULT_REGION`, then `us-east-1`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The access key. Without it, [`Credentials::from_aws_env`] is used (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Path-style (`<endpoint>/<bucket>/<key>`) or virtual-hosted (`<bucket>.<endpoint host>/<key>`)
    /// addressing. Default: path style for an IP address or `localhost`, virtual-hosted otherwise.
    pub fn path_style(mut self, path_style: bool) -> Self {
        self.inner = self.inner.path_style(path_style);
        self
    }

    /// Whether the server implements object tagging (default true). Some S3-compatible servers do not (s3s-fs);
    /// with `false` the store's [`Capabilities`] say so, the engine neither reads nor copies tags, and a call
    /// that needs tags (tags on a write, the tagging calls) fails with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) without sending anything.
    pub fn tagging(mut self, enabled: bool) -> Self {
        self.without_tagging = !enabled;
        self
    }

    /// How bodies are protected: [`S3Checksum::Crc32c`] (default) or [`S3Checksum::ContentMd5`].
    pub fn checksum(mut self, checksum: S3Checksum) -> Self {
        self.checksum = checksum;
        self
    }

    /// `Content-MD5` with every in-memory body, in addition to the [`checksum`](Self::checksum).
    pub fn content_md5(mut self, enabled: bool) -> Self {
        self.inner = self.inner.content_md5(enabled);
        self
    }

    /// Time allowed to open a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.inner = self.inner.connect_timeout(timeout);
        self
    }

    /// Time a request may go without moving a byte before it fails (default 60 s; `None` disables it).
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.inner = self.inner.read_timeout(timeout);
        self
    }

    /// How long the server may work before answering CopyObject, UploadPartCopy or CompleteMultipartUpload
    /// (default 15 min).
    pub fn server_work_timeout(mut self, timeout: Duration) -> Self {
        self.inner = self.inner.server_work_timeout(timeout);
        self
    }

    /// An overall limit per request, body included (default none).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.inner = self.inner.timeout(timeout);
        self
    }

    /// Whether to honour the `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` environment (default true).
    pub fn system_proxy(mut self, enabled: bool) -> Self {
        self.inner = self.inner.system_proxy(enabled);
        self
    }

    /// Checks the settings and builds the store.
    pub fn build(self) -> Result<S3Store> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let region = self
            .region
            .filter(|r| !r.is_empty())
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let credentials = match self.credentials {
            Some(c) => c,
            None => Credentials::from_aws_env()?,
        };
        let mut dialect = Dialect::S3;
        if self.without_tagging {
            dialect.capabilities.tagging = false;
            dialect.capabilities.versioned_tagging = false;
        }
        let inner = self.inner.crc32c(self.checksum == S3Checksum::Crc32c).build_for(
            dialect,
            Signing::S3(S3Signer::new(region)),
            credentials,
        )?;
        Ok(S3Store { inner })
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for S3Store {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn put_object(&self, bucket: &str, key: &str, body: Body, opts: &PutOptions) -> Result<PutResult> {
        self.inner.put_object(bucket, key, body, opts).await
    }

    async fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        self.inner.head_object(obj).await
    }

    async fn get_object_meta(&self, obj: &ObjectRef) -> Result<ObjectMetaSummary> {
        self.inner.get_object_meta(obj).await
    }

    async fn get_object(&self, obj: &ObjectRef, range: Option<ByteRange>) -> Result<GetObject> {
        self.inner.get_object(obj, range).await
    }

    async fn list_objects(&self, bucket: &str, req: &ListRequest) -> Result<ListPage> {
        self.inner.list_objects(bucket, req).await
    }

    async fn delete_object(&self, obj: &ObjectRef) -> Result<DeleteResult> {
        self.inner.delete_object(obj).await
    }

    async fn initiate_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        self.inner.initiate_multipart(bucket, key, opts).await
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
        content_md5: bool,
    ) -> Result<PartReceipt> {
        self.inner.upload_part(bucket, key, upload_id, part_number, body, content_md5).await
    }

    async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source: &ObjectRef,
        range: Option<ByteRange>,
        conditions: &CopyConditions,
    ) -> Result<PartReceipt> {
        self.inner.upload_part_copy(bucket, key, upload_id, part_number, source, range, conditions).await
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        opts: &CompleteOptions,
    ) -> Result<PutResult> {
        self.inner.complete_multipart(bucket, key, upload_id, parts, opts).await
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.inner.abort_multipart(bucket, key, upload_id).await
    }

    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number_marker: Option<u32>,
        max_parts: Option<u32>,
    ) -> Result<PartsPage> {
        self.inner.list_parts(bucket, key, upload_id, part_number_marker, max_parts).await
    }

    async fn list_uploads(&self, bucket: &str, req: &ListUploadsRequest) -> Result<UploadsPage> {
        self.inner.list_uploads(bucket, req).await
    }

    async fn append_object(
        &self,
        bucket: &str,
        key: &str,
        position: u64,
        body: Body,
        opts: &PutOptions,
    ) -> Result<AppendResult> {
        self.inner.append_object(bucket, key, position, body, opts).await
    }

    async fn put_symlink(&self, bucket: &str, key: &str, target: &str, opts: &PutOptions) -> Result<PutResult> {
        self.inner.put_symlink(bucket, key, target, opts).await
    }

    async fn get_symlink(&self, obj: &ObjectRef) -> Result<SymlinkInfo> {
        self.inner.get_symlink(obj).await
    }

    async fn copy_object(&self, bucket: &str, key: &str, opts: &CopyOptions) -> Result<PutResult> {
        self.inner.copy_object(bucket, key, opts).await
    }

    async fn put_tagging(&self, obj: &ObjectRef, tags: &TagSet) -> Result<Option<String>> {
        self.inner.put_tagging(obj, tags).await
    }

    async fn get_tagging(&self, obj: &ObjectRef) -> Result<TagSet> {
        self.inner.get_tagging(obj).await
    }

    async fn delete_tagging(&self, obj: &ObjectRef) -> Result<()> {
        self.inner.delete_tagging(obj).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl BucketStore for S3Store {
    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.inner.create_bucket(bucket).await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.inner.delete_bucket(bucket).await
    }

    async fn put_versioning(&self, bucket: &str, enabled: bool) -> Result<()> {
        self.inner.put_versioning(bucket, enabled).await
    }

    async fn get_versioning(&self, bucket: &str) -> Result<Versioning> {
        self.inner.get_versioning(bucket).await
    }

    async fn list_buckets(&self) -> Result<Vec<(String, i64)>> {
        self.inner.list_buckets().await
    }
}

#[cfg(test)]
mod tests;
