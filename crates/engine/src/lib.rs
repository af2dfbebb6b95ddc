//! # transfer-engine
//!
//! The library that backup software embeds to move data into and between object stores: Alibaba Cloud OSS
//! (its own dialect) and any S3-compatible store.
//!
//! The [`job`] module's docs show the few lines a backup program needs: upload a directory with tags, and
//! resume after a crash by running the same lines again.
//!
//! # Layout
//! - [`job`]: the [`job::Engine`]: jobs of files and objects through one part pipeline under one scheduler,
//!   every acknowledged part recorded in the ledger, resumed after a crash, tags on initiate or on complete.
//! - [`store`]: the contract every backend implements, split by who needs it: [`ObjectStore`] (what jobs call),
//!   [`MultipartStore`] (stateless multipart uploads addressed by [`store::Upload`] and [`store::PartRef`]),
//!   [`OssExtensions`] (append, symlinks, GetObjectMeta), [`BucketStore`]; and their value types.
//! - [`http`]: the one HTTP client of both wire dialects, [`http::HttpStore`]: OSS ([`http::HttpStore::oss`],
//!   signatures V4 and V1, CRC-64 on every body) and S3 ([`http::HttpStore::s3`], AWS SigV4, CRC-32C);
//!   typed errors decided where answers are read.
//! - [`s3`]: what is S3's own (its checksum choice, its default region) and how the client speaks it.
//! - `local` (feature `local`, on by default): the local filesystem store: buckets, versions, multipart staging
//!   with atomic publish, appendable objects and symlinks. It is the embedded default and what `transfer serve`
//!   puts on the network.
//! - [`checkpoint`]: the SQLite ledger of jobs, objects and acknowledged parts (schema in `migrations/`), with
//!   grouped part writes, one writer per job, and refusal of corrupt or foreign files.
//! - [`run`]: the job-wide scheduler (one bound on requests in flight, one memory budget) and the retry policy.
//! - [`tags`] and [`meta`]: tags and metadata as validated types, with their header and XML encodings.
//! - [`plan`]: the part planner: single request or multipart, part size within the dialect's limits and the
//!   memory budget (one part buffered per in-flight request); impossible transfers are refused before any byte moves.
//! - [`crc64`]: CRC-64/XZ and the combine that joins part CRCs.
//! - [`sign`]: OSS V1 and V4 and AWS SigV4 (S3) signing; with the `server` feature, their verification.
//! - [`dialect`]: wire differences as data.
//! - `xml` and `util` (public with the `server` feature): the XML bodies and encodings, shared by client and
//!   server.
//!
//! # Features
//! - `local` (default): the local filesystem store.
//! - `rustls` (default) or `native-tls`: the TLS library of the HTTP client.
//! - `server`: what only `transfer serve` needs (signature verification, the XML documents and encoding
//!   helpers it writes with). An embedder leaves it off.

#![warn(missing_docs, unreachable_pub)]

/// Chainable setters, one per field, for the `#[non_exhaustive]` option structs: `Type::default().field(value)`.
macro_rules! setters {
    ($ty:ty { $($field:ident: $t:ty),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`; see the field's documentation.")]
                #[must_use]
                pub fn $field(mut self, value: $t) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

pub mod checkpoint;
pub mod crc64;
pub mod dialect;
pub mod error;
pub mod http;
pub mod job;
#[cfg(feature = "local")]
pub mod local;
pub mod meta;
pub mod plan;
pub mod run;
pub mod s3;
pub mod sign;
pub mod store;
pub mod tags;
#[cfg(feature = "server")]
pub mod util;
#[cfg(not(feature = "server"))]
#[allow(unreachable_pub, dead_code)]
pub(crate) mod util;
#[cfg(feature = "server")]
pub mod xml;
#[cfg(not(feature = "server"))]
#[allow(unreachable_pub, dead_code)]
pub(crate) mod xml;

pub use error::{Error, ErrorKind, Result, Retry, ServiceError};
pub use meta::{Metadata, StorageClass};
pub use store::{BucketStore, MultipartStore, ObjectRef, ObjectStore, OssExtensions, Store};
pub use tags::TagSet;
