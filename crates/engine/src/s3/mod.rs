//! The S3 dialect: [`HttpStore::s3`](crate::http::HttpStore::s3) builds the one HTTP client ([`crate::http`])
//! driven by [`Dialect::S3`](crate::dialect::Dialect::S3) and an AWS SigV4 signer, for AWS S3 and S3-compatible
//! stores (MinIO, Ceph, Garage, moto, s3s, OSS's S3 endpoint, ...).
//!
//! ```no_run
//! # fn demo() -> transfer_engine::Result<()> {
//! use transfer_engine::http::HttpStore;
//! use transfer_engine::s3::S3Checksum;
//! use transfer_engine::sign::Credentials;
//! let store = HttpStore::s3()
//!     .endpoint("http://127.0.0.1:9000")
//!     .region("us-east-1")
//!     .credentials(Credentials::new("ak", "sk"))
//!     .checksum(S3Checksum::Crc32c)
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! # Behaviour
//! The store is the one HTTP client driven by S3's dialect data: the same request
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
//!   (S3 requires it on some); a body streamed from elsewhere ([`Body::from_stream`](crate::store::Body::from_stream)) carries neither, as its
//!   digest is not known before it is sent. Uploads always carry `Content-Length`; never `aws-chunked`.
//! - Append and symlinks do not exist in S3: [`Capabilities::S3`](crate::store::Capabilities::S3) says so,
//!   and the calls fail with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) without sending
//!   anything. `forbid_overwrite` is sent as `If-None-Match: *` on PutObject, CopyObject and
//!   CompleteMultipartUpload (CreateMultipartUpload takes none); S3 refuses with 412 `PreconditionFailed`.
//! - Credentials never appear in `Debug`, logs or errors.

/// The region used when neither the builder nor `AWS_REGION` / `AWS_DEFAULT_REGION` name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How an S3 store protects the bodies it sends (see the module documentation).
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

#[cfg(all(test, feature = "server"))]
mod tests;
