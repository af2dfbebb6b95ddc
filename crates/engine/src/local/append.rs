//! Appendable objects and symlinks of the local store.
//!
//! An append at position 0 on a missing key publishes a new `Appendable` object like a put. A later append
//! writes in place at the end of the data file and then records the new size in the index: the index's size is
//! the authority, readers never read past it, and bytes a failed append left past it are cut by the next one.
//! Appends to one key are serialised by a striped lock; the index row is re-checked before the commit so a
//! concurrent put or delete wins cleanly.

use super::index::{self, Facts, VersionRow};
use super::objects::{md5_upper, new_facts, within_limit, EC_PUT_EXISTS};
use super::{errors, now, Leftovers, LocalStore};
use crate::crc64;
use crate::error::Result;
use crate::store::{
    validate_key, AppendResult, Body, Capabilities, ObjectRef, ObjectType, PutOptions, PutResult, SymlinkInfo,
};
use rusqlite::Connection;
use std::hash::{Hash, Hasher};

/// The checks of an append against the current version: `ObjectNotAppendable` or `PositionNotEqualToLength`.
fn check_append(current: Option<&VersionRow>, key: &str, position: u64) -> Result<()> {
    match current {
        Some(r) if r.facts.object_type != ObjectType::Appendable => Err(errors::not_appendable(key)),
        Some(r) if r.facts.size != position => Err(errors::position_not_equal(position, r.facts.size)),
        None if position != 0 => Err(errors::position_not_equal(position, 0)),
        _ => Ok(()),
    }
}

/// The current, non-delete-marker version of `bucket/key`.
fn current(c: &Connection, bucket: &str, key: &str) -> Result<Option<VersionRow>> {
    index::bucket_versioning(c, bucket)?;
    Ok(index::latest(c, bucket, key)?.filter(|r| !r.facts.delete_marker))
}

impl LocalStore {
    fn append_lock(&self, bucket: &str, key: &str) -> &tokio::sync::Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (bucket, key).hash(&mut h);
        let locks = &self.inner.append_locks;
        &locks[(h.finish() % locks.len() as u64) as usize]
    }

    pub(super) async fn append_impl(
        &self,
        bucket: &str,
        key: &str,
        position: u64,
        body: Body,
        opts: &PutOptions,
    ) -> Result<AppendResult> {
        validate_key(key)?;
        opts.metadata.validate()?;
        let body = within_limit(body, position, Capabilities::OSS.max_put_size)?;
        let _serial = self.append_lock(bucket, key).lock().await;
        let (b, k) = (bucket.to_owned(), key.to_owned());
        let cur = self.db(move |c, _| current(c, &b, &k)).await?;
        check_append(cur.as_ref(), key, position)?;
        match cur {
            None => self.append_create(bucket, key, body, opts).await,
            Some(row) => self.append_existing(row, body).await,
        }
    }

    /// The first append: publishes a new appendable object (the options apply only here).
    async fn append_create(&self, bucket: &str, key: &str, body: Body, opts: &PutOptions) -> Result<AppendResult> {
        let staged = self.blobs().receive(body).await?;
        let w = staged.written;
        let facts = new_facts(ObjectType::Appendable, w, w.etag(), &opts.metadata, opts.tags.as_ref());
        let (b, k) = (bucket.to_owned(), key.to_owned());
        // A put that created the key meanwhile wins: this append then fails as it would have after the put.
        let guard = move |c: &Connection| {
            check_append(current(c, &b, &k)?.as_ref(), &k, 0)?;
            Ok(Leftovers::default())
        };
        let put = self.publish(bucket, key, facts, Some(staged), None, guard).await?;
        Ok(AppendResult { next_position: w.size, crc64: put.crc64, version_id: put.version_id })
    }

    /// A later append: writes in place past the current size, then records the new size, ETag and CRC-64.
    async fn append_existing(&self, row: VersionRow, body: Body) -> Result<AppendResult> {
        let data = row.facts.data.clone().unwrap_or_default();
        let old_size = row.facts.size;
        let w = self.blobs().append(&data, old_size, body).await?;
        let size = old_size + w.size;
        let crc = crc64::combine(row.facts.crc64.unwrap_or(0), w.crc, w.size);
        // Each append changes the ETag: MD5 of the previous ETag and the appended bytes' MD5.
        let etag = md5_upper(format!("{}{}", row.facts.etag, w.etag()).as_bytes());
        let (b, k, seq) = (row.bucket.clone(), row.key.clone(), row.seq);
        let version = self
            .db(move |c, _| {
                let tx = c.transaction()?;
                let v = index::bucket_versioning(&tx, &b)?;
                let now_row = current(&tx, &b, &k)?;
                check_append(now_row.as_ref(), &k, old_size)?;
                if now_row.as_ref().map(|r| r.seq) != Some(seq) {
                    return Err(errors::position_not_equal(old_size, 0));
                }
                index::set_appended(&tx, seq, size, &etag, crc, now())?;
                tx.commit()?;
                Ok(index::reported_version(v, &row.version_id))
            })
            .await?;
        Ok(AppendResult { next_position: size, crc64: Some(crc), version_id: version })
    }

    pub(super) async fn put_symlink_impl(
        &self,
        bucket: &str,
        key: &str,
        target: &str,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        validate_key(key)?;
        validate_key(target)?;
        opts.metadata.validate()?;
        let facts = Facts {
            delete_marker: false,
            object_type: ObjectType::Symlink,
            size: 0,
            etag: md5_upper(target.as_bytes()),
            crc64: None,
            last_modified: now(),
            metadata: index::with_defaults(&opts.metadata),
            tags: opts.tags.clone().unwrap_or_default(),
            symlink_target: Some(target.to_owned()),
            data: None,
        };
        let forbid = opts.forbid_overwrite.then_some(EC_PUT_EXISTS);
        self.publish(bucket, key, facts, None, forbid, |_| Ok(Leftovers::default())).await
    }

    pub(super) async fn get_symlink_impl(&self, obj: &ObjectRef) -> Result<SymlinkInfo> {
        let r = self.resolve(obj, false, false).await?;
        match r.row.facts.symlink_target {
            Some(target) => {
                Ok(SymlinkInfo { target, version_id: index::reported_version(r.versioning, &r.row.version_id) })
            }
            None => Err(errors::not_symlink(&obj.key)),
        }
    }
}
