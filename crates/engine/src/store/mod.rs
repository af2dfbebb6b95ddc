//! The store contract, split by who needs it, stateless and ID-based.
//!
//! # Contract
//! - [`ObjectStore`]: what a job calls on objects: HEAD, a ranged GET, PUT, one page of a listing, DELETE (one or
//!   many), CopyObject, tagging. [`list_all`] offers a listing as a stream of entries.
//! - [`MultipartStore`]: the multipart upload, stateless: initiate, upload a part, copy a part, complete,
//!   abort, list parts, list uploads. Each call takes one value naming what it acts on ([`Upload`], a
//!   [`PartRef`]), never a positional list of strings.
//! - [`OssExtensions`]: what only OSS has (append, symlinks, GetObjectMeta), declared by [`Capabilities`]: a
//!   store without them answers [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) without sending.
//! - [`BucketStore`]: bucket administration, for tests, `--create-bucket` and `transfer serve`.
//!
//! [`Store`] is what the engine holds: an [`ObjectStore`] that is also a [`MultipartStore`].
//!
//! No method keeps hidden state: an [`UploadId`], a [`PartNumber`], an ETag or a CRC-64 is a value returned to
//! the caller and handed back later, so a checkpoint can hold every one of them and a new process can continue
//! where an old one stopped. Methods do not retry; retrying is the scheduler's decision, made from
//! [`Error::is_retryable`](crate::Error::is_retryable). Per-request protection (Content-MD5, S3's checksums)
//! is the store's configuration or an options struct, never a bare flag.
//!
//! Errors carry a [kind](crate::ErrorKind) decided where the answer is read, and the service's own words
//! (`NoSuchKey`, `InvalidPart`, ...) whichever backend produced them, so the local store in process, the local
//! store behind `transfer serve` and a real endpoint fail the same way.
//!
//! Dialect differences (limits, header names, which operations exist) are data: see [`Capabilities`] and
//! [`crate::dialect::Dialect`].

use crate::error::Result;
use crate::meta::{Metadata, StorageClass};
use crate::tags::TagSet;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::fmt;

mod body;
mod checksum;
mod ids;
mod key;
pub use body::{Body, Md5Check};
pub use checksum::{Checksum, ObjectChecksum, CRC32C_ALGORITHM, CRC32C_HEADER};
pub use ids::{PartCopySource, PartNumber, PartRef, Upload, UploadId};
pub use key::{
    validate_bucket, validate_bucket_for, validate_key, validate_part_number, MAX_KEY_BYTES, MAX_PART_NUMBER,
};

/// An object, optionally at a specific version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key (raw, not encoded).
    pub key: String,
    /// A version id; `None` means the current version.
    pub version_id: Option<String>,
}

impl ObjectRef {
    /// The current version of `bucket/key`.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self { bucket: bucket.into(), key: key.into(), version_id: None }
    }

    /// The same object at `version_id`.
    pub fn at_version(mut self, version_id: impl Into<String>) -> Self {
        self.version_id = Some(version_id.into());
        self
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, self.key)?;
        if let Some(v) = &self.version_id {
            write!(f, "?versionId={v}")?;
        }
        Ok(())
    }
}

/// An inclusive byte range, as in `Range: bytes=first-last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub first: u64,
    /// Last byte, inclusive; `None` means to the end.
    pub last: Option<u64>,
}

impl ByteRange {
    /// Bytes `first..=last`.
    pub fn inclusive(first: u64, last: u64) -> Self {
        Self { first, last: Some(last) }
    }

    /// `len` bytes starting at `offset` (`len` must be at least 1).
    pub fn at(offset: u64, len: u64) -> Self {
        Self { first: offset, last: Some(offset + len.max(1) - 1) }
    }

    /// The header value: `bytes=first-last` or `bytes=first-`.
    pub fn to_header(&self) -> String {
        match self.last {
            Some(l) => format!("bytes={}-{}", self.first, l),
            None => format!("bytes={}-", self.first),
        }
    }

    /// Parses `bytes=a-b` / `bytes=a-` / `bytes=-n` (suffix) against an object of `size` bytes, with RFC 7233
    /// semantics: the end is clamped to the size; a start at or past the size is `None` (unsatisfiable).
    /// A header that is not a single byte range is an error.
    pub fn resolve(header: &str, size: u64) -> Result<Option<(u64, u64)>> {
        let bad = || crate::Error::invalid(format!("range {header:?} is not of the form bytes=first-last"));
        let spec = header.trim().strip_prefix("bytes=").ok_or_else(bad)?;
        if spec.contains(',') {
            return Err(bad());
        }
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        let (first, last) = if a.is_empty() {
            let n: u64 = b.parse().map_err(|_| bad())?;
            if n == 0 {
                return Ok(None);
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        } else {
            let first: u64 = a.parse().map_err(|_| bad())?;
            let last = if b.is_empty() { u64::MAX } else { b.parse().map_err(|_| bad())? };
            if last < first {
                return Err(bad());
            }
            (first, last.min(size.saturating_sub(1)))
        };
        if first >= size {
            return Ok(None);
        }
        Ok(Some((first, last)))
    }
}

/// The kind of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// Written by one PutObject or CopyObject.
    Normal,
    /// Completed from a multipart upload.
    Multipart,
    /// Created by AppendObject and appendable.
    Appendable,
    /// A symbolic link to another key.
    Symlink,
}

impl ObjectType {
    /// The wire name (`x-oss-object-type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Multipart => "Multipart",
            Self::Appendable => "Appendable",
            Self::Symlink => "Symlink",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Normal" => Self::Normal,
            "Multipart" => Self::Multipart,
            "Appendable" => Self::Appendable,
            "Symlink" => Self::Symlink,
            _ => return None,
        })
    }
}

/// What HeadObject reports about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// The ETag, with its quotes removed.
    pub etag: String,
    /// Last-Modified, as seconds since the Unix epoch.
    pub last_modified: i64,
    /// CRC-64/XZ of the whole object, when the store knows it.
    pub crc64: Option<u64>,
    /// The object's type.
    pub object_type: ObjectType,
    /// The version id, on versioned buckets.
    pub version_id: Option<String>,
    /// Number of tags.
    pub tagging_count: usize,
    /// For appendable objects, the position the next append must use.
    pub next_append_position: Option<u64>,
    /// Metadata and standard headers (the storage class is always set by a store).
    pub metadata: Metadata,
    /// Where a restore of an archived object stands (`x-oss-restore`, `x-amz-restore`); `None`: none asked for,
    /// or the restored copy expired.
    pub restore: Option<RestoreState>,
    /// The server-side encryption the object is stored under (`x-oss-server-side-encryption`,
    /// `x-amz-server-side-encryption`: `AES256`, `KMS`, `aws:kms`, ...; `SSE-C` for a customer's key), when the
    /// store says.
    pub encryption: Option<String>,
    /// The object's CRC-32C as the store reports it (S3, asked for on every HEAD), when it has one.
    pub checksum: Option<ObjectChecksum>,
    /// The number of parts of an object written by a multipart upload (`x-amz-mp-parts-count`), in the answer
    /// to a HEAD of one of its parts ([`ObjectStore::head_part`]).
    pub parts_count: Option<u32>,
}

impl ObjectInfo {
    /// Whether the ETag of an object written in one request is the MD5 of its bytes: not under a KMS or a
    /// customer's key (S3 says so of SSE-KMS and SSE-C), and only when it has an MD5's form.
    pub fn etag_is_md5(&self) -> bool {
        let e = self.etag.trim_matches('"');
        self.etag_of_md5s() && e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// The number of parts of a multipart ETag (`hex-N`, the hex an MD5's) that is the MD5 of its parts' MD5s:
    /// not under a KMS or a customer's key, as [`ObjectInfo::etag_is_md5`].
    pub fn multipart_etag_parts(&self) -> Option<u32> {
        let (hex, n) = self.etag.trim_matches('"').rsplit_once('-')?;
        let md5 = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        n.parse().ok().filter(|n| self.etag_of_md5s() && md5 && *n >= 1)
    }

    /// Whether the object's ETag is made of MD5s at all: not under a KMS or a customer's key.
    fn etag_of_md5s(&self) -> bool {
        self.encryption.as_deref().is_none_or(|e| e.eq_ignore_ascii_case("AES256"))
    }

    /// True for an object whose bytes cannot be read now: in an archive class (Archive, ColdArchive,
    /// DeepColdArchive; S3's GLACIER and DEEP_ARCHIVE) and not restored. Reads answer `InvalidObjectState`
    /// until a RestoreObject ([`ObjectStore::restore_object`]) has finished.
    pub fn needs_restore(&self) -> bool {
        use crate::meta::StorageClass::{Archive, ColdArchive, DeepColdArchive};
        let archived = matches!(self.metadata.storage_class, Some(Archive | ColdArchive | DeepColdArchive));
        archived && !matches!(self.restore, Some(RestoreState::Restored { .. }))
    }
}

/// Where a restore of an archived object stands, as HEAD reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreState {
    /// Requested, not finished (`ongoing-request="true"`).
    Ongoing,
    /// Readable until `expiry` (an HTTP date, as the server gave it), `ongoing-request="false"`.
    Restored {
        /// When the restored copy goes away.
        expiry: Option<String>,
    },
}

impl RestoreState {
    /// Parses the `x-oss-restore` / `x-amz-restore` header value.
    pub fn parse(value: &str) -> Option<RestoreState> {
        let field = |name: &str| {
            let at = value.find(name)? + name.len();
            let rest = value[at..].trim_start().strip_prefix('=')?.trim_start().strip_prefix('"')?;
            rest.split_once('"').map(|(v, _)| v.to_owned())
        };
        match field("ongoing-request")?.as_str() {
            "true" => Some(RestoreState::Ongoing),
            "false" => Some(RestoreState::Restored { expiry: field("expiry-date") }),
            _ => None,
        }
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        match self {
            RestoreState::Ongoing => "ongoing-request=\"true\"".to_owned(),
            RestoreState::Restored { expiry: Some(e) } => format!("ongoing-request=\"false\", expiry-date=\"{e}\""),
            RestoreState::Restored { expiry: None } => "ongoing-request=\"false\"".to_owned(),
        }
    }
}

/// A RestoreObject request: how long the restored copy stays readable, and how fast it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreRequest {
    /// Days the restored copy stays readable (1 to 7 for Archive, up to 365 for the colder classes on OSS).
    pub days: u32,
    /// The priority (ColdArchive, DeepColdArchive, S3's Glacier classes); `None`: the store's default.
    pub tier: Option<RestoreTier>,
}

impl RestoreRequest {
    /// A restore readable for `days` days at the store's default priority.
    pub fn days(days: u32) -> RestoreRequest {
        RestoreRequest { days, tier: None }
    }

    /// At this priority.
    pub fn tier(mut self, tier: RestoreTier) -> RestoreRequest {
        self.tier = Some(tier);
        self
    }
}

/// How fast a restore is made (the `Tier` of a RestoreRequest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestoreTier {
    /// Within an hour.
    Expedited,
    /// Hours (the default of the colder classes).
    Standard,
    /// The cheapest, slowest.
    Bulk,
}

impl RestoreTier {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreTier::Expedited => "Expedited",
            RestoreTier::Standard => "Standard",
            RestoreTier::Bulk => "Bulk",
        }
    }

    /// Parses a wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<RestoreTier> {
        [RestoreTier::Expedited, RestoreTier::Standard, RestoreTier::Bulk]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

/// What RestoreObject answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreAnswer {
    /// A restore began (202 Accepted).
    Started,
    /// One is already under way (409 `RestoreAlreadyInProgress`): nothing to do but wait.
    InProgress,
    /// The object is restored already; its restored copy's life was extended (200 OK).
    Restored,
}

/// What GetObjectMeta reports: the six light fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMetaSummary {
    /// Size in bytes.
    pub size: u64,
    /// The ETag, unquoted.
    pub etag: String,
    /// Last-Modified, seconds since the epoch.
    pub last_modified: i64,
    /// Last access time, seconds since the epoch, when reported.
    pub last_access_time: Option<i64>,
    /// Version id.
    pub version_id: Option<String>,
    /// CRC-64/XZ of the whole object.
    pub crc64: Option<u64>,
}

/// A ranged or whole read: the object's info, the bytes served, and the body.
pub struct GetObject {
    /// The object's HeadObject facts (size is the whole object's).
    pub info: ObjectInfo,
    /// The inclusive range served; `None` for a zero-length object.
    pub range: Option<(u64, u64)>,
    /// The body. A backend checks what it can while streaming (the HTTP client checks the CRC-64 of a whole
    /// read and fails the last chunk on a mismatch).
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl fmt::Debug for GetObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetObject").field("info", &self.info).field("range", &self.range).finish_non_exhaustive()
    }
}

impl GetObject {
    /// Reads the whole body into memory.
    pub async fn bytes(self) -> Result<Bytes> {
        use futures::TryStreamExt;
        let chunks: Vec<Bytes> = self.body.try_collect().await?;
        Ok(match chunks.len() {
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => Bytes::from(chunks.concat()),
        })
    }
}

/// Options of every call that creates an object (PutObject, InitiateMultipartUpload, the first AppendObject,
/// PutSymlink).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// Metadata and standard headers.
    pub metadata: Metadata,
    /// Tags, sent in the tagging header.
    pub tags: Option<TagSet>,
    /// Send `Content-MD5` with bodies (the CRC-64 check already protects the bytes; MD5 costs CPU).
    pub content_md5: bool,
    /// `x-oss-forbid-overwrite: true`: fail with `FileAlreadyExists` if the key exists.
    pub forbid_overwrite: bool,
}

/// How a copy treats the source's metadata or tags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Directive<T> {
    /// Copy them from the source (the default).
    #[default]
    Copy,
    /// Use these instead.
    Replace(T),
}

/// Preconditions on a copy source (`x-oss-copy-source-if-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyConditions {
    /// Copy only if the source ETag equals this (pin the source during a multipart copy).
    pub if_match: Option<String>,
    /// Copy only if the source ETag differs.
    pub if_none_match: Option<String>,
}

/// CopyObject options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyOptions {
    /// The source (possibly at a version).
    pub source: ObjectRef,
    /// `x-oss-metadata-directive`.
    pub metadata: Directive<Metadata>,
    /// `x-oss-tagging-directive`.
    pub tagging: Directive<TagSet>,
    /// Source preconditions.
    pub conditions: CopyConditions,
    /// `x-oss-forbid-overwrite: true`.
    pub forbid_overwrite: bool,
}

impl CopyOptions {
    /// Copy `source` with its metadata and tags.
    pub fn from(source: ObjectRef) -> Self {
        Self {
            source,
            metadata: Directive::Copy,
            tagging: Directive::Copy,
            conditions: CopyConditions::default(),
            forbid_overwrite: false,
        }
    }
}

setters!(PutOptions { metadata: Metadata, tags: Option<TagSet>, content_md5: bool, forbid_overwrite: bool });
setters!(CopyConditions { if_match: Option<String>, if_none_match: Option<String> });
setters!(CopyOptions {
    metadata: Directive<Metadata>,
    tagging: Directive<TagSet>,
    conditions: CopyConditions,
    forbid_overwrite: bool,
});
setters!(CompleteOptions { forbid_overwrite: bool });
setters!(ListUploadsRequest {
    prefix: Option<String>,
    key_marker: Option<String>,
    upload_id_marker: Option<UploadId>,
    max_uploads: Option<u32>,
});
setters!(VersionsRequest {
    prefix: Option<String>,
    key_marker: Option<String>,
    version_id_marker: Option<String>,
    max_keys: Option<u32>,
});
setters!(ListRequest {
    prefix: Option<String>,
    delimiter: Option<String>,
    start_after: Option<String>,
    continuation_token: Option<String>,
    max_keys: Option<u32>,
});

/// What a write returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// The new object's ETag, unquoted.
    pub etag: String,
    /// CRC-64/XZ of the stored object, as the server reported it.
    pub crc64: Option<u64>,
    /// The new version id, on versioned buckets.
    pub version_id: Option<String>,
}

/// The receipt of one acknowledged part: everything Complete and a checkpoint need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReceipt {
    /// Part number, 1..=10000.
    pub part_number: PartNumber,
    /// The part's ETag, unquoted.
    pub etag: String,
    /// CRC-64/XZ of the part, when the server reported it.
    pub crc64: Option<u64>,
    /// Bytes in the part.
    pub size: u64,
    /// The [`Checksum`] the server checked the part against, when the store sends one (S3 with CRC-32C):
    /// CompleteMultipartUpload must name it again.
    pub checksum: Option<Checksum>,
}

/// A part named in CompleteMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// Part number.
    pub part_number: PartNumber,
    /// ETag, unquoted.
    pub etag: String,
    /// The part's [`Checksum`], named in the Complete document (`<ChecksumCRC32C>`) when the upload has one.
    pub checksum: Option<Checksum>,
}

impl CompletedPart {
    /// A part without a checksum.
    pub fn new(part_number: impl Into<PartNumber>, etag: impl Into<String>) -> CompletedPart {
        CompletedPart { part_number: part_number.into(), etag: etag.into(), checksum: None }
    }
}

impl From<&PartReceipt> for CompletedPart {
    fn from(r: &PartReceipt) -> CompletedPart {
        CompletedPart { part_number: r.part_number, etag: r.etag.clone(), checksum: r.checksum }
    }
}

impl From<&PartInfo> for CompletedPart {
    fn from(p: &PartInfo) -> CompletedPart {
        CompletedPart { part_number: p.part_number, etag: p.etag.clone(), checksum: p.checksum }
    }
}

/// Options of CompleteMultipartUpload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompleteOptions {
    /// `x-oss-forbid-overwrite: true`.
    pub forbid_overwrite: bool,
}

/// One part as ListParts reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Part number.
    pub part_number: PartNumber,
    /// ETag, unquoted.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-64/XZ of the part.
    pub crc64: Option<u64>,
    /// The part's [`Checksum`], when the upload has one (S3's `<ChecksumCRC32C>`).
    pub checksum: Option<Checksum>,
    /// Last-Modified, seconds since the epoch.
    pub last_modified: i64,
}

impl PartInfo {
    /// Whether `bytes` are this part's, by the strongest check the listing allows: the CRC-64 (OSS), else the
    /// part's [`Checksum`] (S3 with a checksum algorithm), else the ETag as the MD5 of the bytes (S3 without
    /// SSE-KMS). False when the size differs, or when the listing has no ETag (Complete must name one) or
    /// nothing that can tell.
    pub fn holds(&self, bytes: &[u8]) -> bool {
        if self.size != bytes.len() as u64 || self.etag.is_empty() {
            return false;
        }
        if let Some(crc) = self.crc64 {
            return crate::crc64::checksum(bytes) == crc;
        }
        if let Some(sum @ Checksum::Crc32c(_)) = self.checksum {
            return Checksum::crc32c(bytes) == sum;
        }
        let etag = self.etag.trim_matches('"');
        etag.len() == 32 && {
            use md5::{Digest, Md5};
            etag.eq_ignore_ascii_case(&hex::encode(Md5::digest(bytes)))
        }
    }
}

/// One page of ListParts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartsPage {
    /// Parts in ascending order.
    pub parts: Vec<PartInfo>,
    /// Pass as the marker of [`MultipartStore::list_parts`] to get the next page, when truncated.
    pub next_marker: Option<PartNumber>,
    /// True when more parts follow.
    pub is_truncated: bool,
}

/// An incomplete multipart upload as ListMultipartUploads reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// Object key.
    pub key: String,
    /// Upload id.
    pub upload_id: UploadId,
    /// Initiation time, seconds since the epoch.
    pub initiated: i64,
}

/// A ListMultipartUploads request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListUploadsRequest {
    /// Only keys with this prefix.
    pub prefix: Option<String>,
    /// Continue after this key ...
    pub key_marker: Option<String>,
    /// ... and this upload id.
    pub upload_id_marker: Option<UploadId>,
    /// Page size (at most 1000).
    pub max_uploads: Option<u32>,
}

/// One page of ListMultipartUploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadsPage {
    /// Uploads, by key then initiation.
    pub uploads: Vec<UploadInfo>,
    /// Markers for the next page, when truncated.
    pub next_key_marker: Option<String>,
    /// Markers for the next page, when truncated.
    pub next_upload_id_marker: Option<UploadId>,
    /// True when more uploads follow.
    pub is_truncated: bool,
}

/// A ListObjects(V2) request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListRequest {
    /// Only keys with this prefix.
    pub prefix: Option<String>,
    /// Group keys by this delimiter after the prefix (usually `/`).
    pub delimiter: Option<String>,
    /// Start after this key (first page).
    pub start_after: Option<String>,
    /// The token of the previous page.
    pub continuation_token: Option<String>,
    /// Page size (at most 1000).
    pub max_keys: Option<u32>,
}

/// A ListObjectVersions request: every version and delete marker under a prefix, by key, each key's newest
/// first, continued after (`key_marker`, `version_id_marker`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VersionsRequest {
    /// Only keys with this prefix.
    pub prefix: Option<String>,
    /// Continue after this key's versions ...
    pub key_marker: Option<String>,
    /// ... or, with it, after this version of that key.
    pub version_id_marker: Option<String>,
    /// Page size (at most 1000).
    pub max_keys: Option<u32>,
}

/// One version of an object, or a delete marker, as ListObjectVersions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    /// Key.
    pub key: String,
    /// Version id (`null` for what was written while versioning was off).
    pub version_id: String,
    /// Whether it is the key's current version.
    pub is_latest: bool,
    /// A delete marker (no bytes, no ETag).
    pub delete_marker: bool,
    /// Size (0 for a delete marker).
    pub size: u64,
    /// ETag, unquoted (empty for a delete marker).
    pub etag: String,
    /// Last-Modified, seconds since the epoch.
    pub last_modified: i64,
    /// Storage class.
    pub storage_class: StorageClass,
    /// The object's type (OSS's `<Type>`; Normal where the store does not say).
    pub object_type: ObjectType,
}

/// One page of ListObjectVersions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionsPage {
    /// Versions and delete markers by key, each key's newest first.
    pub versions: Vec<VersionEntry>,
    /// True when more follow.
    pub is_truncated: bool,
    /// Where the next page starts, when truncated.
    pub next_key_marker: Option<String>,
    /// Where the next page starts, when truncated.
    pub next_version_id_marker: Option<String>,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Key.
    pub key: String,
    /// Size.
    pub size: u64,
    /// ETag, unquoted.
    pub etag: String,
    /// Last-Modified, seconds since the epoch.
    pub last_modified: i64,
    /// Storage class.
    pub storage_class: StorageClass,
    /// Object type.
    pub object_type: ObjectType,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// Objects in key order.
    pub objects: Vec<ListEntry>,
    /// Prefixes rolled up by the delimiter.
    pub common_prefixes: Vec<String>,
    /// Token for the next page, when truncated.
    pub next_continuation_token: Option<String>,
    /// True when more entries follow.
    pub is_truncated: bool,
}

/// What DeleteObject returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteResult {
    /// The version removed, or the delete marker's version id.
    pub version_id: Option<String>,
    /// True when a delete marker was created.
    pub delete_marker: bool,
}

/// What AppendObject returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The position the next append must use (the object's new length).
    pub next_position: u64,
    /// CRC-64/XZ of the whole object so far.
    pub crc64: Option<u64>,
    /// Version id.
    pub version_id: Option<String>,
}

/// A symlink's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkInfo {
    /// The target key.
    pub target: String,
    /// Version id of the link.
    pub version_id: Option<String>,
}

/// Versioning state of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Never enabled.
    Off,
    /// Every write creates a version.
    Enabled,
    /// Versioning was enabled and is now suspended.
    Suspended,
}

/// The operations and limits of a backend: what the engine plans against, and what the conformance suite
/// gates its cases on. A case is skipped only where its backend declares it lacks the capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// AppendObject exists.
    pub append: bool,
    /// PutSymlink / GetSymlink exist.
    pub symlink: bool,
    /// Object tagging exists.
    pub tagging: bool,
    /// Tags on a specific version.
    pub versioned_tagging: bool,
    /// HeadObject reports the number of tags (`x-oss-tagging-count`), so a count of 0 means no tags. S3's
    /// HeadObject is not documented to: without this, reading an object's tags takes GetObjectTagging.
    pub tag_count_on_head: bool,
    /// ListMultipartUploads exists.
    pub list_uploads: bool,
    /// Bucket versioning exists.
    pub versioning: bool,
    /// Largest part number.
    pub max_parts: u32,
    /// Smallest part but the last, in bytes.
    pub min_part_size: u64,
    /// Largest part, in bytes.
    pub max_part_size: u64,
    /// Largest single PutObject body, in bytes.
    pub max_put_size: u64,
    /// Bucket names may hold dots (S3's rule, `logs.example.com`); OSS's rule has none. See
    /// [`validate_bucket_for`].
    pub dotted_bucket_names: bool,
    /// Largest object one CopyObject copies, in bytes; a larger one is copied with UploadPartCopy. It is also
    /// where the planner switches to UploadPartCopy when the user sets no copy threshold
    /// ([`PlanOptions::copy_threshold`](crate::plan::PlanOptions::copy_threshold)): one request is far faster than
    /// many parts whenever the store takes it (many S3 servers copy from metadata alone).
    pub max_copy_size: u64,
}

impl Capabilities {
    /// Everything OSS offers, with OSS's limits. CopyObject: objects up to 1 GiB (OSS's documented limit for
    /// CopyObject; it advises UploadPartCopy above).
    pub const OSS: Capabilities = Capabilities {
        append: true,
        symlink: true,
        tagging: true,
        versioned_tagging: true,
        tag_count_on_head: true,
        list_uploads: true,
        versioning: true,
        max_parts: 10_000,
        min_part_size: 100 * 1024,
        max_part_size: 5 * 1024 * 1024 * 1024,
        max_put_size: 5 * 1024 * 1024 * 1024,
        dotted_bucket_names: false,
        max_copy_size: 1024 * 1024 * 1024,
    };

    /// S3: no append, no symlinks; parts of 5 MiB (but the last) to 5 GiB, at most 10,000 of them; one PutObject or
    /// CopyObject of at most 5 GiB.
    pub const S3: Capabilities = Capabilities {
        append: false,
        symlink: false,
        tagging: true,
        versioned_tagging: true,
        tag_count_on_head: false,
        list_uploads: true,
        versioning: true,
        max_parts: 10_000,
        min_part_size: 5 * 1024 * 1024,
        max_part_size: 5 * 1024 * 1024 * 1024,
        max_put_size: 5 * 1024 * 1024 * 1024,
        dotted_bucket_names: true,
        max_copy_size: 5 * 1024 * 1024 * 1024,
    };
}

/// The object operations a job calls. See the module docs for the contract.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// What this backend can do, and its limits.
    fn capabilities(&self) -> &Capabilities;

    /// The pacer this store's requests take turns from, if it has one: a job reports the throttling it saw
    /// ([`Progress::requests_throttled`](crate::job::Progress::requests_throttled),
    /// [`Progress::slowed`](crate::job::Progress::slowed)). Default: none.
    fn pacer(&self) -> Option<std::sync::Arc<crate::run::Pacer>> {
        None
    }

    /// PutObject: stores `body` as `bucket/key`.
    async fn put_object(&self, bucket: &str, key: &str, body: Body, opts: &PutOptions) -> Result<PutResult>;

    /// HeadObject.
    async fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo>;

    /// HeadObject of one part of an object a multipart upload wrote (S3's `?partNumber=`): the part's size in
    /// `size` and the object's part count in [`ObjectInfo::parts_count`]. A store that keeps no part layout
    /// answers [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), or without a part count.
    async fn head_part(&self, obj: &ObjectRef, part: PartNumber) -> Result<ObjectInfo>;

    /// GetObject, whole or one byte range (standard range semantics: the end is clamped to the size; a start past
    /// the end is `InvalidRange`).
    async fn get_object(&self, obj: &ObjectRef, range: Option<ByteRange>) -> Result<GetObject>;

    /// ListObjectsV2, one page. [`list_all`] streams every page.
    async fn list_objects(&self, bucket: &str, req: &ListRequest) -> Result<ListPage>;

    /// ListObjectVersions, one page: every version and delete marker.
    async fn list_versions(&self, bucket: &str, req: &VersionsRequest) -> Result<VersionsPage>;

    /// DeleteObject (a specific version, or the current one).
    async fn delete_object(&self, obj: &ObjectRef) -> Result<DeleteResult>;

    /// Deletes many objects of `bucket` (at most 1,000 a call): one result per object, in order, so one that
    /// failed does not hide the others. The default deletes them one by one; a store with a batch call
    /// (DeleteMultipleObjects) sends one request.
    async fn delete_objects(&self, bucket: &str, objects: &[ObjectRef]) -> Result<Vec<Result<DeleteResult>>> {
        let mut out = Vec::with_capacity(objects.len());
        for obj in objects {
            if obj.bucket != bucket {
                out.push(Err(crate::Error::invalid(format!("{obj} is not in bucket {bucket}"))));
                continue;
            }
            out.push(self.delete_object(obj).await);
        }
        Ok(out)
    }

    /// CopyObject: server-side copy of `opts.source` to `bucket/key`.
    async fn copy_object(&self, bucket: &str, key: &str, opts: &CopyOptions) -> Result<PutResult>;

    /// PutObjectTagging: replaces the whole tag set. Returns the version id it applied to.
    async fn put_tagging(&self, obj: &ObjectRef, tags: &TagSet) -> Result<Option<String>>;

    /// GetObjectTagging.
    async fn get_tagging(&self, obj: &ObjectRef) -> Result<TagSet>;

    /// DeleteObjectTagging.
    async fn delete_tagging(&self, obj: &ObjectRef) -> Result<()>;

    /// RestoreObject: makes an archived object readable for a while (POST `?restore`, both dialects). An object
    /// that is not archived is refused by the store.
    async fn restore_object(&self, obj: &ObjectRef, req: &RestoreRequest) -> Result<RestoreAnswer>;
}

/// The multipart upload, stateless: every call names the upload (or the part) it acts on.
#[async_trait]
pub trait MultipartStore: Send + Sync + fmt::Debug {
    /// InitiateMultipartUpload of `bucket/key`. Metadata and tags given here land on the object at Complete.
    async fn initiate_multipart(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<Upload>;

    /// UploadPart. The body is checked as the store is configured to (the CRC-64 an OSS server reports, the
    /// CRC-32C an S3 store sends, Content-MD5 when asked for).
    async fn upload_part(&self, part: PartRef<'_>, body: Body) -> Result<PartReceipt>;

    /// UploadPartCopy: the part's bytes come from `from`.
    async fn upload_part_copy(&self, part: PartRef<'_>, from: &PartCopySource) -> Result<PartReceipt>;

    /// CompleteMultipartUpload with parts in ascending part-number order.
    async fn complete_multipart(
        &self,
        upload: &Upload,
        parts: &[CompletedPart],
        opts: &CompleteOptions,
    ) -> Result<PutResult>;

    /// AbortMultipartUpload.
    async fn abort_multipart(&self, upload: &Upload) -> Result<()>;

    /// ListParts, one page of parts with numbers above `marker`, at most `max_parts` of them.
    async fn list_parts(
        &self,
        upload: &Upload,
        marker: Option<PartNumber>,
        max_parts: Option<u32>,
    ) -> Result<PartsPage>;

    /// ListMultipartUploads, one page.
    async fn list_uploads(&self, bucket: &str, req: &ListUploadsRequest) -> Result<UploadsPage>;
}

/// What only OSS offers ([`Capabilities::append`], [`Capabilities::symlink`]): a store without an operation
/// answers [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) without sending anything.
#[async_trait]
pub trait OssExtensions: Send + Sync + fmt::Debug {
    /// AppendObject at `position` (0 creates the object; `opts` apply only then).
    async fn append_object(
        &self,
        bucket: &str,
        key: &str,
        position: u64,
        body: Body,
        opts: &PutOptions,
    ) -> Result<AppendResult>;

    /// PutSymlink: `bucket/key` becomes a link to `target` (which need not exist).
    async fn put_symlink(&self, bucket: &str, key: &str, target: &str, opts: &PutOptions) -> Result<PutResult>;

    /// GetSymlink.
    async fn get_symlink(&self, obj: &ObjectRef) -> Result<SymlinkInfo>;

    /// GetObjectMeta: the six light fields (a plain HEAD where the dialect has no such call).
    async fn get_object_meta(&self, obj: &ObjectRef) -> Result<ObjectMetaSummary>;
}

/// What the engine holds: objects and multipart uploads of one store.
pub trait Store: ObjectStore + MultipartStore {}

impl<T: ObjectStore + MultipartStore + ?Sized> Store for T {}

/// Every entry of a listing of `bucket` (its `prefix`, `start_after`, ... as in `req`), page by page as the
/// stream is read: a listing of millions of keys holds one page in memory. The stream ends after the first
/// error.
pub fn list_all(
    store: std::sync::Arc<dyn ObjectStore>,
    bucket: impl Into<String>,
    req: ListRequest,
) -> BoxStream<'static, Result<ListEntry>> {
    use futures::StreamExt;
    let bucket = bucket.into();
    let pages = futures::stream::unfold(Some(req), move |next| {
        let (store, bucket) = (store.clone(), bucket.clone());
        async move {
            let req = next?;
            match store.list_objects(&bucket, &req).await {
                Err(e) => Some((Err(e), None)),
                Ok(page) => {
                    let more = match page.next_continuation_token.clone() {
                        Some(token) if page.is_truncated => {
                            Some(ListRequest { continuation_token: Some(token), start_after: None, ..req })
                        }
                        _ => None,
                    };
                    Some((Ok(page.objects), more))
                }
            }
        }
    });
    pages
        .flat_map(|page| match page {
            Ok(entries) => futures::stream::iter(entries.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::iter([Err(e)]).boxed(),
        })
        .boxed()
}

/// Bucket administration: what tests and `transfer` need around the object operations.
#[async_trait]
pub trait BucketStore: Send + Sync + fmt::Debug {
    /// PutBucket. Creating a bucket that exists and is yours succeeds.
    async fn create_bucket(&self, bucket: &str) -> Result<()>;
    /// DeleteBucket (must be empty: `BucketNotEmpty` otherwise).
    async fn delete_bucket(&self, bucket: &str) -> Result<()>;
    /// PutBucketVersioning (`Enabled` or `Suspended`).
    async fn put_versioning(&self, bucket: &str, enabled: bool) -> Result<()>;
    /// GetBucketVersioning.
    async fn get_versioning(&self, bucket: &str) -> Result<Versioning>;
    /// ListBuckets (GetService): every bucket as `(name, creation time in seconds since the epoch)`, by name.
    /// The default answers [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported); a backend that can list
    /// its buckets overrides it (`transfer serve` answers `GET /` with it).
    async fn list_buckets(&self) -> Result<Vec<(String, i64)>> {
        Err(crate::Error::new(crate::ErrorKind::Unsupported, "this store cannot list its buckets"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_with_standard_semantics() {
        assert_eq!(ByteRange::resolve("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(ByteRange::resolve("bytes=90-200", 100).unwrap(), Some((90, 99)));
        assert_eq!(ByteRange::resolve("bytes=100-", 100).unwrap(), None);
        assert_eq!(ByteRange::resolve("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(ByteRange::resolve("bytes=5-", 100).unwrap(), Some((5, 99)));
        assert!(ByteRange::resolve("bytes=9-3", 100).is_err());
        assert!(ByteRange::resolve("bytes=0-1,3-4", 100).is_err());
        assert_eq!(ByteRange::at(10, 5).to_header(), "bytes=10-14");
    }
}
