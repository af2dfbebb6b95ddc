//! The values a multipart upload is addressed by: its id, its parts' numbers, and the upload itself.

use super::{ByteRange, CopyConditions, ObjectRef};
use std::fmt;

/// A multipart upload's id, as the server issued it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    /// The id the server issued.
    pub fn new(id: impl Into<String>) -> UploadId {
        UploadId(id.into())
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for UploadId {
    fn from(id: String) -> UploadId {
        UploadId(id)
    }
}

impl From<&str> for UploadId {
    fn from(id: &str) -> UploadId {
        UploadId(id.to_owned())
    }
}

impl std::ops::Deref for UploadId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for UploadId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A part's number within its upload: 1 to 10,000 (stores refuse others with `InvalidArgument`, see
/// [`validate_part_number`](super::validate_part_number)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartNumber(u32);

impl PartNumber {
    /// Part `n`.
    pub const fn new(n: u32) -> PartNumber {
        PartNumber(n)
    }

    /// The number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PartNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u32> for PartNumber {
    fn from(n: u32) -> PartNumber {
        PartNumber(n)
    }
}

impl PartialEq<u32> for PartNumber {
    fn eq(&self, other: &u32) -> bool {
        self.0 == *other
    }
}

/// A multipart upload: the object it becomes and its id. InitiateMultipartUpload answers one; every other
/// call of the upload takes it (or one of its [parts](Upload::part)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upload {
    /// Destination bucket.
    pub bucket: String,
    /// Destination key.
    pub key: String,
    /// The upload's id.
    pub id: UploadId,
}

impl Upload {
    /// Upload `id` of `bucket/key`.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>, id: impl Into<UploadId>) -> Upload {
        Upload { bucket: bucket.into(), key: key.into(), id: id.into() }
    }

    /// Part `number` of this upload.
    pub fn part(&self, number: impl Into<PartNumber>) -> PartRef<'_> {
        PartRef { upload: self, number: number.into() }
    }
}

impl fmt::Display for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} (upload id {})", self.bucket, self.key, self.id)
    }
}

/// One part of an upload: what UploadPart and UploadPartCopy address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRef<'a> {
    /// The upload.
    pub upload: &'a Upload,
    /// The part's number.
    pub number: PartNumber,
}

/// Where an UploadPartCopy takes its bytes: a source object, a range of it (or all of it), and the conditions
/// that pin it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCopySource {
    /// The source object, possibly at a version.
    pub source: ObjectRef,
    /// The bytes of the source; `None`: all of it.
    pub range: Option<ByteRange>,
    /// Preconditions on the source (`x-*-copy-source-if-match`, ...).
    pub conditions: CopyConditions,
}

impl PartCopySource {
    /// `range` of `source` (all of it for `None`), unconditionally.
    pub fn new(source: ObjectRef, range: Option<ByteRange>) -> PartCopySource {
        PartCopySource { source, range, conditions: CopyConditions::default() }
    }

    /// With these preconditions.
    pub fn conditions(mut self, conditions: CopyConditions) -> PartCopySource {
        self.conditions = conditions;
        self
    }
}
