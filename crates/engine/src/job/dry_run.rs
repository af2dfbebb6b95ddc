//! Dry runs: what a job would do to each object, found with the same enumeration, the same overwrite check and
//! the same planner as a real run, and nothing written.
//!
//! With [`EngineConfig::dry_run`](super::EngineConfig::dry_run) the job runner hands each object it finds to
//! [`Engine::plan_upload_file`] or [`Engine::plan_copy_object`] instead of [`Engine::upload_file`] or
//! [`Engine::copy_object`], and reports the answer as an [`Event::Planned`](super::Event::Planned). Those two
//! only read: the file, the copy source's HEAD, and the destination's HEAD when an overwrite policy asks for it.

use super::{CopyRequest, Engine, SkipReason, UploadRequest};
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{plan_object, Method, ObjectPlan};

/// What a run would do to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedObject {
    /// The source as the ledger would name it: the file's absolute path, or `bucket/key[?versionId=..]`.
    pub source: String,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key.
    pub key: String,
    /// Bytes in the object.
    pub size: u64,
    /// How it would be transferred, or why not.
    pub action: PlannedAction,
}

/// How a run would transfer one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlannedAction {
    /// One PutObject.
    Put,
    /// A multipart upload: `parts` UploadPart requests of `part_size` bytes (the last one possibly shorter).
    Multipart {
        /// Size of every part but the last.
        part_size: u64,
        /// Number of parts.
        parts: u32,
    },
    /// One CopyObject.
    Copy,
    /// A multipart copy: `parts` UploadPartCopy requests of `part_size` bytes (the last one possibly shorter).
    MultipartCopy {
        /// Size of every part but the last.
        part_size: u64,
        /// Number of parts.
        parts: u32,
    },
    /// A download: `parts` ranged GETs of `part_size` bytes (the last one possibly shorter; one GET of the
    /// whole object when `parts` is 1).
    Download {
        /// Size of every part but the last.
        part_size: u64,
        /// Number of parts.
        parts: u32,
    },
    /// Not transferred: the [overwrite policy](super::Overwrite) leaves the destination alone (or a sync found
    /// it unchanged).
    Skip(SkipReason),
    /// A sync would delete this destination entry: the source does not have it.
    Delete,
}

impl PlannedAction {
    fn upload(plan: &ObjectPlan) -> PlannedAction {
        match plan.method {
            Method::Single => PlannedAction::Put,
            Method::Multipart { part_size, parts } => PlannedAction::Multipart { part_size, parts },
        }
    }

    fn copy(plan: &ObjectPlan) -> PlannedAction {
        match plan.method {
            Method::Single => PlannedAction::Copy,
            Method::Multipart { part_size, parts } => PlannedAction::MultipartCopy { part_size, parts },
        }
    }
}

impl Engine {
    /// What [`Engine::upload_file`] would do with `req` for an object nothing was sent for yet, without
    /// writing anything or touching the ledger: the file is opened and planned with the engine's
    /// [`PlanOptions`](crate::plan::PlanOptions); under an [overwrite policy](super::Overwrite) the
    /// destination is looked at with a HEAD (and the file read for its CRC-64 with
    /// [`Overwrite::IfDifferent`](super::Overwrite::IfDifferent) when the sizes match). Works whether or not
    /// the engine is configured for dry runs.
    pub async fn plan_upload_file(&self, req: &UploadRequest) -> Result<PlannedObject> {
        let (path, file, meta, _) = req.open()?;
        let size = meta.len();
        let plan = plan_object(size, &self.inner.caps, &self.inner.config.plan)?;
        let action = match self.upload_skip(&req.dest(), &file, &path, size).await? {
            Some((reason, _)) => PlannedAction::Skip(reason),
            None => PlannedAction::upload(&plan),
        };
        let source = path.to_string_lossy().into_owned();
        Ok(PlannedObject { source, bucket: req.bucket.clone(), key: req.key.clone(), size, action })
    }

    /// What [`Engine::copy_object`] would do with `req` for an object nothing was copied for yet, without
    /// writing anything or touching the ledger: the source is looked at with a HEAD and planned with the
    /// engine's [`PlanOptions`](crate::plan::PlanOptions); under an [overwrite policy](super::Overwrite) the
    /// destination is looked at with a HEAD too. Works whether or not the engine is configured for dry runs.
    pub async fn plan_copy_object(&self, req: &CopyRequest) -> Result<PlannedObject> {
        req.validate()?;
        let head = self.source_head(&req.source).await?;
        let plan = self.plan_copy(head.size)?;
        let archived = head.needs_restore() && self.inner.config.restore.is_none();
        let action = match self.copy_skip(&req.dest(), &head).await? {
            _ if archived => PlannedAction::Skip(SkipReason::Archived),
            Some((reason, _)) => PlannedAction::Skip(reason),
            // Relayed from another store, the bytes go as an upload's.
            None if self.inner.source.is_some() => PlannedAction::upload(&plan),
            None => PlannedAction::copy(&plan),
        };
        Ok(PlannedObject {
            source: req.source.to_string(),
            bucket: req.bucket.clone(),
            key: req.key.clone(),
            size: head.size,
            action,
        })
    }

    /// What [`Engine::upload_stream`] would do with `req`, without reading the stream (its bytes would be gone):
    /// the plan of its [expected size](super::StreamUploadRequest::expected_size). A stream of unknown length
    /// cannot be planned: [`ErrorKind::InvalidInput`].
    pub fn plan_upload_stream(&self, req: &super::StreamUploadRequest) -> Result<PlannedObject> {
        let Some(size) = req.expected_size else {
            return Err(Error::invalid(
                "a dry run cannot plan a stream of unknown length without reading it, and reading it would consume \
                 it: give its size (--expected-size)",
            ));
        };
        let plan = plan_object(size, &self.inner.caps, &self.inner.config.plan)?;
        Ok(PlannedObject {
            source: super::STREAM_SOURCE.to_owned(),
            bucket: req.bucket.clone(),
            key: req.key.clone(),
            size,
            action: PlannedAction::upload(&plan),
        })
    }

    /// True when this engine only reports.
    pub(super) fn dry_run(&self) -> bool {
        self.inner.config.dry_run
    }

    /// A writing call on an engine configured for dry runs is refused before anything happens.
    pub(super) fn refuse_dry_run(&self, call: &str, instead: &str) -> Result<()> {
        if self.dry_run() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "Engine::{call} writes, and this engine is configured for a dry run (EngineConfig::dry_run); \
                     call Engine::{instead} to see what it would do, or start the job with upload_one/copy_one"
                ),
            ));
        }
        Ok(())
    }
}
