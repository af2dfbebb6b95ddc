//! Copies between two stores ([`Engine::relay`]): the bytes of each object flow through this process.
//!
//! The copy driver (`copy.rs`) resolves the source, the ledger row, metadata and tags exactly as for a
//! server-side copy; only its two leaf operations differ. Instead of CopyObject, one GetObject of the whole
//! source and one PutObject; instead of UploadPartCopy, one ranged GetObject and one UploadPart per part, under a
//! memory permit for the part's bytes. Every read is checked against the source's HEAD (same ETag, and the
//! version pinned when the source has versions): a source that changes mid-copy fails the read with
//! `PreconditionFailed`, which restarts the object once from a fresh HEAD, as for a server-side copy. Every
//! write's CRC-64 is checked by the client against the destination's, as for an upload.

use super::Engine;
use crate::crc64;
use crate::error::{Error, Result};
use crate::store::{Body, ByteRange, ObjectInfo, ObjectRef, ObjectStore, PartReceipt, PutOptions, PutResult};
use bytes::Bytes;
use std::sync::Arc;

impl Engine {
    /// The bytes of `obj` (whole, or `(offset, len)`) from `source`, as the version `head` describes.
    async fn fetch(
        &self,
        source: &Arc<dyn ObjectStore>,
        obj: &ObjectRef,
        head: &ObjectInfo,
        part: Option<(u64, u64)>,
    ) -> Result<Bytes> {
        let obj = match (&obj.version_id, &head.version_id) {
            (None, Some(v)) => obj.clone().at_version(v.clone()),
            _ => obj.clone(),
        };
        let want = part.map_or(head.size, |(_, len)| len);
        let range = part.map(|(offset, len)| ByteRange::at(offset, len));
        let inner = &self.inner;
        self.retrying("GetObject", |_| async {
            let _slot = inner.scheduler.request().await;
            self.check_stopped()?;
            let got = source.get_object(&obj, range).await?;
            if got.info.etag != head.etag {
                return Err(Error::code(
                    412,
                    "PreconditionFailed",
                    format!("the source {obj} changed during the copy (ETag {} is now {})", head.etag, got.info.etag),
                ));
            }
            let data = got.bytes().await?;
            if data.len() as u64 != want {
                return Err(Error::new(
                    crate::ErrorKind::Transport,
                    format!("the source {obj} answered {} bytes where {want} were asked for", data.len()),
                ));
            }
            Ok(data)
        })
        .await
    }

    /// A whole object from `source` into `bucket/key` with one PutObject.
    pub(super) async fn relay_put(
        &self,
        source: &Arc<dyn ObjectStore>,
        obj: &ObjectRef,
        head: &ObjectInfo,
        (bucket, key): (&str, &str),
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let inner = &self.inner;
        let _memory = inner.scheduler.memory(head.size).await;
        let data = self.fetch(source, obj, head, None).await?;
        let dest = ObjectRef::new(bucket, key);
        // The client checks the server's CRC-64 against the bytes sent.
        self.retrying("PutObject", |n| {
            let (data, dest) = (data.clone(), &dest);
            async move {
                let _slot = inner.scheduler.request().await;
                self.check_stopped()?;
                match inner.store.put_object(bucket, key, Body::from(data.clone()), opts).await {
                    Err(e) => self.earlier_attempt(e, n, dest, head.size, Some(crc64::checksum(&data))).await,
                    ok => ok,
                }
            }
        })
        .await
    }

    /// One part: `(offset, len)` of the source, read from `source`, sent as part `number` of `upload_id`.
    pub(super) async fn relay_part(
        &self,
        source: &Arc<dyn ObjectStore>,
        obj: &ObjectRef,
        head: &ObjectInfo,
        part: (u64, u64),
        (bucket, key, upload_id, number): (&str, &str, &str, u32),
        halt: &super::parts::Halt,
    ) -> Result<PartReceipt> {
        let inner = &self.inner;
        let data = self.fetch(source, obj, head, Some(part)).await?;
        // The client checks the server's CRC-64 against the bytes sent.
        self.retrying("UploadPart", |_| {
            let data = data.clone();
            async move {
                let _slot = inner.scheduler.request().await;
                halt.check()?;
                self.check_stopped()?;
                inner
                    .store
                    .upload_part(bucket, key, upload_id, number, Body::from(data), inner.config.content_md5)
                    .await
            }
        })
        .await
    }
}
