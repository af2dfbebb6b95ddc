//! Archived sources: an object in an archive class (Archive, ColdArchive, DeepColdArchive; S3's Glacier classes)
//! cannot be read until a RestoreObject has finished. Every job that reads a source (downloads, streams, copies,
//! relays) passes its HEAD through [`Engine::readable`] first: a readable object goes on; an archived one is
//! restored and waited for under [`EngineConfig::restore`](super::EngineConfig::restore), or skipped with
//! [`SkipReason::Archived`](super::SkipReason::Archived) without it.
//!
//! The store is the record of a restore: HEAD says whether one is under way (`x-oss-restore:
//! ongoing-request="true"`) or done, so a job restarted while a restore runs waits for it instead of asking
//! again, and one whose restored copy expired asks again.

use super::Engine;
use crate::error::Result;
use crate::store::{ObjectInfo, ObjectRef, RestoreAnswer};
use std::time::Duration;

/// The first wait between two looks at a restore; each wait doubles, up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between two looks at a restore (real ones take minutes to hours).
const LONGEST_WAIT: Duration = Duration::from_secs(60);

impl Engine {
    /// `source`'s HEAD once it can be read: `head` itself for an object that is not archived (or restored);
    /// for an archived one, the HEAD after its restore finished, or `None` when the engine is not to restore
    /// (the caller skips the object). See the [module docs](self).
    pub(super) async fn readable(&self, source: &ObjectRef, head: ObjectInfo) -> Result<Option<ObjectInfo>> {
        if !head.needs_restore() {
            return Ok(Some(head));
        }
        let Some(request) = self.inner.config.restore else { return Ok(None) };
        let mut head = head;
        let mut wait = FIRST_WAIT;
        loop {
            if head.restore.is_none() {
                let inner = &self.inner;
                let answer = self
                    .retrying("RestoreObject", |_| async {
                        let _slot = inner.scheduler.request().await;
                        self.source_store().restore_object(source, &request).await
                    })
                    .await
                    .map_err(|e| e.with_context("source", source))?;
                match answer {
                    RestoreAnswer::Started => {
                        tracing::info!(source = %source, "restoring the archived object before reading it")
                    }
                    RestoreAnswer::InProgress => {
                        tracing::info!(source = %source, "a restore of the archived object is under way; waiting for it")
                    }
                    RestoreAnswer::Restored => {}
                }
            }
            self.pause(wait).await?;
            wait = (wait * 2).min(LONGEST_WAIT);
            head = self.source_head(source).await?;
            // Readable once the store says the restore is done; with no restore under way (it expired, or was
            // not taken), the loop asks again.
            if !head.needs_restore() {
                return Ok(Some(head));
            }
            if head.restore.is_none() {
                tracing::debug!(source = %source, "no restore under way (it expired, or was not taken): asking again");
            }
        }
    }

    /// Sleeps `d`, or less when the job is asked to stop (then fails with [`ErrorKind::Stopped`](crate::ErrorKind::Stopped)).
    async fn pause(&self, d: Duration) -> Result<()> {
        let wait = async {
            tokio::time::sleep(d).await;
            Ok(())
        };
        self.unless_stopped("while waiting for a restore; resume it to continue", wait).await
    }
}
