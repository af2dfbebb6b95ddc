//! Copies between two stores ([`Engine::relay`]): the source of an object is another store, and its bytes flow
//! through this process.
//!
//! The copy driver (`copy.rs`) resolves the source, the ledger row, metadata and tags exactly as for a
//! server-side copy; the part pipeline then runs [`RelaySource`]: instead of CopyObject, one GetObject of the
//! whole source and one PutObject; instead of UploadPartCopy, one ranged GetObject and one UploadPart per part,
//! under a memory permit for the part's bytes. Every read is checked against the source's HEAD (same ETag, and
//! the version pinned when the source has versions): a source that changes mid-copy fails the read with
//! [`ErrorKind::PreconditionFailed`], which restarts the object once from a fresh HEAD, as for a server-side
//! copy. Every write's CRC-64 is checked by the client against the destination's, as for an upload.

use super::copy::kept;
use super::parts::Halt;
use super::pipeline::{Held, ObjectSource, Step};
use super::{Engine, SkipReason};
use crate::crc64;
use crate::error::Result;
use crate::plan::{ObjectPlan, Part};
use crate::store::{Body, ObjectInfo, ObjectRef, ObjectStore, PutOptions, PutResult, Upload};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

/// Another store as the source of one object.
pub(super) struct RelaySource {
    pub(super) engine: Engine,
    /// The store read from.
    pub(super) store: Arc<dyn ObjectStore>,
    /// The object read, as requested.
    pub(super) source: ObjectRef,
    /// Its HEAD when the run began: every read must find the same ETag.
    pub(super) head: ObjectInfo,
}

impl RelaySource {
    /// The bytes of the source (whole, or `(offset, len)`), as the version `head` describes.
    async fn fetch(&self, part: Option<(u64, u64)>) -> Result<Bytes> {
        super::download::read_pinned(&self.engine, &*self.store, &self.source, &self.head, part).await
    }
}

#[async_trait]
impl ObjectSource for RelaySource {
    async fn skip(&mut self, dest: &ObjectRef) -> Result<Option<(SkipReason, ObjectInfo)>> {
        self.engine.copy_skip(dest, &self.head).await
    }

    async fn put(&mut self, dest: &ObjectRef, opts: &PutOptions) -> Result<PutResult> {
        let engine = &self.engine;
        let inner = &engine.inner;
        let _memory = inner.scheduler.memory(self.head.size).await;
        let data = self.fetch(None).await?;
        let size = self.head.size;
        // The client checks the server's CRC-64 against the bytes sent.
        engine
            .write_object(
                "PutObject",
                dest,
                size,
                || Some(crc64::checksum(&data)),
                || inner.store.put_object(&dest.bucket, &dest.key, Body::from(data.clone()), opts),
            )
            .await
    }

    fn buffers(&self) -> bool {
        true
    }

    async fn part(&mut self, part: Part, held: Option<&Held>, to: &Arc<Upload>, halt: &Halt) -> Result<Step> {
        if let Some(keep) = kept(&part, held, &self.head) {
            return Ok(keep);
        }
        let relay = RelaySource {
            engine: self.engine.clone(),
            store: self.store.clone(),
            source: self.source.clone(),
            head: self.head.clone(),
        };
        let (to, halt) = (to.clone(), halt.clone());
        Ok(Step::Send(Box::pin(async move {
            let data = relay.fetch(Some((part.offset, part.len))).await?;
            let engine = &relay.engine;
            // The client checks the server's CRC-64 against the bytes sent.
            let receipt = engine
                .write_part("UploadPart", &halt, || {
                    engine.inner.store.upload_part(to.part(part.number), Body::from(data.clone()))
                })
                .await?;
            Ok((receipt, String::new()))
        })))
    }

    fn expected_crc64(&self) -> Option<u64> {
        self.head.crc64
    }

    fn trusts_found_parts(&self) -> bool {
        self.head.crc64.is_some()
    }

    async fn in_place(&mut self, head: &ObjectInfo, _plan: &ObjectPlan) -> Result<bool> {
        Ok(super::copy::same_bytes(head, &self.head))
    }
}
