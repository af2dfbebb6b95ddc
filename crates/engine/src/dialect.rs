//! Wire dialects as data: header names, the metadata prefix, the limits, and the signing family.
//!
//! The HTTP client and the server read every dialect-specific name from a [`Dialect`] instead of branching on
//! "is this OSS": adding S3 meant adding [`Dialect::S3`] here (and its signer, [`crate::sign::s3`]), not editing
//! every call site. Where the two wires differ in more than a name (a query parameter one of them lacks, the
//! spelling of a directive), the difference is a field here too.

use crate::meta::StorageClass;
use crate::store::Capabilities;

/// Which signature family and vocabulary a dialect belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Alibaba Cloud OSS: signatures V1 and `OSS4-HMAC-SHA256`, OSS storage-class names.
    Oss,
    /// S3: AWS SigV4 (`AWS4-HMAC-SHA256`), S3 storage-class names.
    S3,
}

/// A wire dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    /// Short name (`oss`, `s3`).
    pub name: &'static str,
    /// Signature family and vocabulary.
    pub family: Family,
    /// Prefix of the dialect's own headers: `x-oss-`, `x-amz-`.
    pub prefix: &'static str,
    /// Prefix of user metadata headers: `x-oss-meta-`, `x-amz-meta-`.
    pub meta_prefix: &'static str,
    /// Header carrying the whole-object or part CRC-64, if the dialect has one.
    pub crc64_header: Option<&'static str>,
    /// The sub-resource of GetObjectMeta (`objectMeta`); without one, a plain HEAD answers it.
    pub object_meta_query: Option<&'static str>,
    /// A ranged GET must ask for standard range semantics (`x-oss-range-behavior: standard`).
    pub range_behavior_header: bool,
    /// InitiateMultipartUpload, CompleteMultipartUpload and ListParts accept `encoding-type=url` (OSS); on S3
    /// only the listings of objects and uploads do.
    pub multipart_url_encoding: bool,
    /// The listing's `NextContinuationToken` is URL-encoded along with the keys (OSS), not opaque (S3).
    pub encoded_continuation_token: bool,
    /// The values of the tagging directive: (copy, replace).
    pub tagging_directive: (&'static str, &'static str),
    /// The header and value that make a write fail when the key exists.
    pub forbid_overwrite: (&'static str, &'static str),
    /// InitiateMultipartUpload takes the forbid-overwrite header too (OSS). S3's CreateMultipartUpload takes no
    /// conditional header: there, only CompleteMultipartUpload refuses to overwrite.
    pub forbid_overwrite_on_initiate: bool,
    /// PutBucket names the region in `<CreateBucketConfiguration><LocationConstraint>` (S3, outside
    /// `us-east-1`).
    pub bucket_location_constraint: bool,
    /// The header that asks a HEAD for the object's checksum (`x-amz-checksum-mode: ENABLED`), if the dialect
    /// has one.
    pub checksum_mode: Option<&'static str>,
    /// HEAD takes `?partNumber=` and answers that part's size and the object's part count (S3).
    pub part_head: bool,
    /// Operations and limits.
    pub capabilities: Capabilities,
}

impl Dialect {
    /// Alibaba Cloud OSS.
    pub const OSS: Dialect = Dialect {
        name: "oss",
        family: Family::Oss,
        prefix: "x-oss-",
        meta_prefix: "x-oss-meta-",
        crc64_header: Some("x-oss-hash-crc64ecma"),
        object_meta_query: Some("objectMeta"),
        range_behavior_header: true,
        multipart_url_encoding: true,
        encoded_continuation_token: true,
        tagging_directive: ("Copy", "Replace"),
        forbid_overwrite: ("x-oss-forbid-overwrite", "true"),
        forbid_overwrite_on_initiate: true,
        bucket_location_constraint: false,
        checksum_mode: None,
        part_head: false,
        capabilities: Capabilities::OSS,
    };

    /// S3 and S3-compatible stores (MinIO, Ceph, moto, ...). No CRC-64 header (bodies are checked by the
    /// CRC-32C or Content-MD5 the client sends, see [`crate::s3`]), no append or symlink, and conditional writes
    /// through `If-None-Match: *`.
    pub const S3: Dialect = Dialect {
        name: "s3",
        family: Family::S3,
        prefix: "x-amz-",
        meta_prefix: "x-amz-meta-",
        crc64_header: None,
        object_meta_query: None,
        range_behavior_header: false,
        multipart_url_encoding: false,
        encoded_continuation_token: false,
        tagging_directive: ("COPY", "REPLACE"),
        forbid_overwrite: ("if-none-match", "*"),
        forbid_overwrite_on_initiate: false,
        bucket_location_constraint: true,
        checksum_mode: Some("x-amz-checksum-mode"),
        part_head: true,
        capabilities: Capabilities::S3,
    };

    /// The full name of a dialect header: `h("tagging")` is `x-oss-tagging` for OSS.
    pub fn h(&self, suffix: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + suffix.len());
        s.push_str(self.prefix);
        s.push_str(suffix);
        s
    }

    /// The wire name of a storage class in this dialect; `None` when the dialect has no such class.
    pub fn storage_class_name(&self, class: StorageClass) -> Option<&'static str> {
        match self.family {
            Family::Oss => Some(class.as_str()),
            Family::S3 => match class {
                StorageClass::Standard => Some("STANDARD"),
                StorageClass::InfrequentAccess => Some("STANDARD_IA"),
                StorageClass::Archive => Some("GLACIER"),
                StorageClass::DeepColdArchive => Some("DEEP_ARCHIVE"),
                StorageClass::ColdArchive => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_class_names_round_trip_through_parse() {
        for d in [Dialect::OSS, Dialect::S3] {
            for c in [
                StorageClass::Standard,
                StorageClass::InfrequentAccess,
                StorageClass::Archive,
                StorageClass::DeepColdArchive,
            ] {
                let name = d.storage_class_name(c).unwrap();
                assert_eq!(StorageClass::parse(name).unwrap(), c, "{} {name}", d.name);
            }
        }
        assert_eq!(Dialect::S3.storage_class_name(StorageClass::ColdArchive), None);
        assert_eq!(Dialect::S3.h("tagging"), "x-amz-tagging");
    }
}
