//! # transfer-engine
//!
//! The library that backup software embeds to move data into and between object stores: Alibaba Cloud OSS
//! (its own dialect) and any S3-compatible store.
//!
//! The [`job`] module's docs show the few lines a backup program needs: upload a directory with tags, and
//! resume after a crash by running the same lines again.
//!
//! # Layout
//! - [`store`]: the narrow, stateless [`ObjectStore`] contract every backend implements, and its value types.
//!   Upload ids, part numbers, ETags and CRCs are plain values so a checkpoint can hold them.
//! - [`oss`]: the OSS dialect over HTTP (reqwest): signatures V4 and V1, RFC 3986 encoding, typed errors,
//!   CRC-64 checks on every body.
//! - [`s3`]: the S3 dialect over the same HTTP machinery: AWS SigV4, `x-amz-*` headers, path-style or
//!   virtual-hosted addressing; append and symlinks reported as unsupported.
//! - [`local`]: the local filesystem store: buckets, versions, multipart staging with atomic publish, appendable
//!   objects and symlinks. It is the embedded default and what `transfer serve` puts on the network.
//! - [`job`]: the [`job::Engine`]: uploads files in planned parts under one scheduler, records every acknowledged
//!   part in the ledger, resumes after a crash, applies tags on initiate or on complete.
//! - [`checkpoint`]: the SQLite ledger of jobs, objects and acknowledged parts (schema in `migrations/`), with
//!   grouped part writes, one writer per job, and refusal of corrupt or foreign files.
//! - [`run`]: the job-wide scheduler (one bound on requests in flight, one memory budget) and the retry policy.
//! - [`tags`] and [`meta`]: tags and metadata as validated types, with their header and XML encodings.
//! - [`plan`]: the part planner: single request or multipart, part size within the dialect's limits and the
//!   memory budget (one part buffered per in-flight request); impossible transfers are refused before any byte moves.
//! - [`crc64`]: CRC-64/XZ and the combine that joins part CRCs.
//! - [`sign`]: OSS V1 and V4 and AWS SigV4 (S3) signing and verification, shared by the client and the server.
//! - [`dialect`]: wire differences as data.
//! - [`xml`]: the XML bodies, shared by client and server.

pub mod checkpoint;
pub mod crc64;
pub mod dialect;
pub mod error;
pub mod job;
pub mod local;
pub mod meta;
pub mod oss;
pub mod plan;
pub mod run;
pub mod s3;
pub mod sign;
pub mod store;
pub mod tags;
pub mod util;
pub mod xml;

pub use error::{Error, ErrorKind, Result, Retry, ServiceError};
pub use meta::{Metadata, StorageClass};
pub use store::{BucketStore, ObjectRef, ObjectStore};
pub use tags::TagSet;
