//! Sync: a directory or prefix made like another ([`Engine::sync`]).
//!
//! Both sides are read in the same order (the bytes of the keys relative to each side: a store lists so, and
//! the directory walk sorts each directory's names with a subdirectory `d` as `d/`) and merge-joined as streams,
//! so nothing holds either side's key set. Each pair found goes to the job's runner:
//! - only in the source: transferred (an upload, a copy or a download, as `cp` does it);
//! - on both sides: compared ([`Compare`]) and transferred only when it differs;
//! - only in the destination: with [`SyncRequest::delete`], recorded in the ledger as one to delete.
//!
//! What is known without a request is used without one: a destination the ledger says it wrote from the
//! source as it is now (the file's size, mtime and inode, or the source object's ETag; the destination's ETag,
//! or the file's state as published) is unchanged; a file whose state the ledger holds keeps its recorded
//! CRC-64; an object keeps the CRC-64 a finished row recorded for its ETag. Only the rest costs a HEAD or a read.
//!
//! The pass's progress (the key below which every pair is settled without failure) is in the ledger, so a
//! killed sync lists both sides again only after it. Deletions wait for the end of the pass: they are made
//! only when every transfer succeeded and both listings completed, never when the source listed nothing
//! (unless asked), at most [`SyncRequest::max_delete`], with DeleteMultiple where the store has it.

use super::download::path_under;
use super::handle::{Event, Tracker};
use super::jobs::{with_slash, Found, Settled, Work};
use super::{
    Chunk, CopyRequest, DownloadRequest, Engine, KeyFilter, Outcome, PlannedAction, PlannedObject, SkipReason,
    UploadRequest,
};
use crate::checkpoint::{FileState, Fingerprint, JobId};
use crate::error::{Error, ErrorKind, Result};
use crate::meta::Metadata;
use crate::store::{Directive, ListEntry, ListRequest, ObjectInfo, ObjectRef};
use crate::tags::TagSet;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One side of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncSide {
    /// A local directory (its regular files, at any depth; links to files followed, to directories not).
    Dir(PathBuf),
    /// The objects under a prefix of a bucket (keys ending in `/`, directory markers, are left out).
    Prefix {
        /// Bucket.
        bucket: String,
        /// Key prefix: `photos` means the objects under `photos/`; empty: the whole bucket.
        prefix: String,
    },
}

impl SyncSide {
    /// The objects under `bucket/prefix`.
    pub fn prefix(bucket: impl Into<String>, prefix: impl Into<String>) -> SyncSide {
        SyncSide::Prefix { bucket: bucket.into(), prefix: prefix.into() }
    }

    /// The files under `dir`.
    pub fn dir(dir: impl Into<PathBuf>) -> SyncSide {
        SyncSide::Dir(dir.into())
    }

    /// The bucket of a prefix.
    pub(super) fn bucket(&self) -> Option<&str> {
        match self {
            SyncSide::Prefix { bucket, .. } => Some(bucket),
            SyncSide::Dir(_) => None,
        }
    }

    /// As the ledger and messages name it: `bucket/prefix/` or the absolute directory with a `/`.
    pub(super) fn name(&self) -> Result<String> {
        Ok(match self {
            SyncSide::Prefix { bucket, prefix } => format!("{bucket}/{}", with_slash(prefix)),
            SyncSide::Dir(d) => {
                let abs = std::path::absolute(d)
                    .map_err(|e| Error::new(ErrorKind::Io, format!("cannot resolve {}", d.display())).with_source(e))?;
                format!("{}/", abs.display().to_string().trim_end_matches('/'))
            }
        })
    }
}

/// How a sync tells that an entry on both sides differs. In every mode a destination the ledger says it wrote
/// from the source as it is now is the same without a request, and entries of different sizes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compare {
    /// Size and CRC-64 (the default): catches edits that keep the size. A CRC-64 comes from the ledger, the
    /// store (HEAD) or a read of the file; where a store has none (S3), the same bytes by whatever else the
    /// object offers (its CRC-32C, the MD5 its ETag is), else different.
    #[default]
    SizeCrc,
    /// Size and modification time: a file's mtime against the `mtime` metadata an upload recorded (rclone's key,
    /// read both ways; HEAD), else the object's Last-Modified (the destination at least as new is the same).
    SizeMtime,
    /// Size only.
    Size,
    /// ETags (bucket to bucket within one store, where a copy keeps the ETag of a single-part object).
    Etag,
}

impl Compare {
    /// `size-crc`, `size-mtime`, `size`, `etag`.
    pub fn parse(s: &str) -> Option<Compare> {
        Some(match s {
            "size-crc" => Compare::SizeCrc,
            "size-mtime" => Compare::SizeMtime,
            "size" => Compare::Size,
            "etag" => Compare::Etag,
            _ => return None,
        })
    }
}

/// A sync: [`SyncRequest::new`], then the options that apply.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SyncRequest {
    /// What the destination is made like.
    pub source: SyncSide,
    /// What is made like the source.
    pub destination: SyncSide,
    /// How entries on both sides are compared.
    pub compare: Compare,
    /// Remove what the destination has and the source does not (after every transfer of the pass succeeded
    /// and both sides were listed whole).
    pub delete: bool,
    /// Delete at most this many in a run (more to delete ends the job `Stopped`; the next run lists both sides
    /// again and goes on).
    pub max_delete: Option<u64>,
    /// Delete even when the source listed nothing (a misspelt prefix lists nothing: refused without this).
    pub allow_empty_source: bool,
    /// Metadata of each object written: for an upload, [`Directive::Replace`] gives every object these
    /// (`Copy`: none beyond the file's attributes); for a copy, the source's or these.
    pub metadata: Directive<Metadata>,
    /// Tags of each object written: for an upload, `Replace` gives these (`Copy`: none); for a copy, the
    /// source's or these.
    pub tags: Directive<TagSet>,
    /// Which entries are taken, by their key relative to each side; what it leaves out is neither copied nor
    /// deleted.
    pub filter: KeyFilter,
    /// The keys (relative to each side) this sync covers: all by default; a shard of a migration covers one
    /// range (`transfer shard run`), lists both sides only within it and deletes nothing outside it.
    pub range: KeyRange,
    /// Relative keys another process settles (the split objects of a migration, [`Engine::split`]): passed
    /// over on both sides, neither compared, copied nor deleted here.
    pub elsewhere: BTreeSet<String>,
    /// Part ranges of split objects this sync sends ([`Chunk`]), before it lists its own keys.
    pub chunks: Vec<Chunk>,
    /// Only these relative keys (a retry of what failed, `transfer shard plan --files-from`): each side is asked
    /// for each one (a HEAD, a stat) instead of being listed. `None`: every key (of the range and the filter).
    pub keys: Option<Vec<String>>,
}

/// Relative keys after `after` (exclusive) up to `upto` (inclusive), in byte order; `None` leaves that end open.
/// A listing maps onto it directly: it starts after `after`, and stops past `upto`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRange {
    /// Keys above this one.
    pub after: Option<String>,
    /// Keys up to and including this one.
    pub upto: Option<String>,
}

impl KeyRange {
    /// The keys in `(after, upto]`.
    pub fn new(after: Option<String>, upto: Option<String>) -> KeyRange {
        KeyRange { after, upto }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &str) -> bool {
        self.after.as_deref().is_none_or(|a| key > a) && self.upto.as_deref().is_none_or(|u| key <= u)
    }

    /// Whether it is every key.
    pub fn is_all(&self) -> bool {
        self.after.is_none() && self.upto.is_none()
    }

    /// `(after, upto]` as the ledger names a job of the range (empty for every key).
    pub(super) fn suffix(&self) -> String {
        match self.is_all() {
            true => String::new(),
            false => format!(" keys ({}, {}]", self.after.as_deref().unwrap_or(""), self.upto.as_deref().unwrap_or("")),
        }
    }
}

impl SyncRequest {
    /// Make `destination` like `source`: compare by size and CRC-64, delete nothing, copy metadata and tags.
    pub fn new(source: SyncSide, destination: SyncSide) -> SyncRequest {
        SyncRequest {
            source,
            destination,
            compare: Compare::default(),
            delete: false,
            max_delete: None,
            allow_empty_source: false,
            metadata: Directive::Copy,
            tags: Directive::Copy,
            filter: KeyFilter::default(),
            range: KeyRange::default(),
            elsewhere: BTreeSet::new(),
            chunks: Vec::new(),
            keys: None,
        }
    }

    /// Refuses what cannot be synced before anything is recorded: two directories, a side inside the other,
    /// ETags compared with a file.
    pub(super) fn validate(&self, relayed: bool) -> Result<()> {
        use SyncSide::{Dir, Prefix};
        if let (Some(a), Some(u)) = (&self.range.after, &self.range.upto) {
            if a >= u {
                return Err(Error::invalid(format!(
                    "the key range ({a:?}, {u:?}] is empty: its end must follow its start"
                )));
            }
        }
        match (&self.source, &self.destination) {
            (Dir(_), Dir(_)) => {
                return Err(Error::invalid(
                    "both sides of the sync are directories; one must be a bucket (oss://, s3://, local://)",
                ))
            }
            (Dir(d), _) if !d.is_dir() => {
                return Err(Error::invalid(format!("{} is not a directory; name the directory to sync", d.display())))
            }
            (_, Dir(d)) if d.exists() && !d.is_dir() => {
                return Err(Error::invalid(format!(
                    "{} is not a directory; name a directory to sync into",
                    d.display()
                )))
            }
            (Prefix { bucket: sb, prefix: sp }, Prefix { bucket: db, prefix: dp }) if !relayed && sb == db => {
                let (s, d) = (with_slash(sp), with_slash(dp));
                if s.starts_with(&d) || d.starts_with(&s) {
                    return Err(Error::invalid(format!(
                        "{sb}/{s} and {db}/{d} overlap (one is inside the other): a sync would copy its own \
                         output, or delete its own source; choose prefixes apart"
                    )));
                }
            }
            _ => {}
        }
        let objects_both = matches!((&self.source, &self.destination), (Prefix { .. }, Prefix { .. }));
        if self.compare == Compare::Etag && (relayed || !objects_both) {
            return Err(Error::invalid(
                "--compare etag compares objects of one store (a server-side copy keeps a single-part object's ETag); \
                 a file has no ETag and another store makes its own: use size-crc",
            ));
        }
        Ok(())
    }
}

setters!(SyncRequest {
    compare: Compare,
    delete: bool,
    max_delete: Option<u64>,
    allow_empty_source: bool,
    metadata: Directive<Metadata>,
    tags: Directive<TagSet>,
    filter: KeyFilter,
    range: KeyRange,
    elsewhere: BTreeSet<String>,
    chunks: Vec<Chunk>,
    keys: Option<Vec<String>>,
});

/// One entry of a side, found by the listing or the walk.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    File { path: PathBuf, state: FileState },
    Object { key: String, size: u64, etag: String, last_modified: i64 },
}

impl Entry {
    fn size(&self) -> u64 {
        match self {
            Entry::File { state, .. } => state.size,
            Entry::Object { size, .. } => *size,
        }
    }
}

/// The entries of both sides under one relative key.
#[derive(Debug)]
pub(super) struct Pair {
    rel: String,
    src: Option<Entry>,
    dst: Option<Entry>,
}

impl Pair {
    /// The key events name it by: the destination's key (a download's: the source object's).
    pub(super) fn key(&self, req: &SyncRequest) -> String {
        match (&req.destination, &req.source) {
            (SyncSide::Prefix { prefix, .. }, _) => format!("{}{}", with_slash(prefix), self.rel),
            (SyncSide::Dir(_), SyncSide::Prefix { prefix, .. }) => format!("{}{}", with_slash(prefix), self.rel),
            (SyncSide::Dir(d), SyncSide::Dir(_)) => d.join(&self.rel).display().to_string(),
        }
    }

    /// The relative key the pass's progress is kept by, and whether the source has it.
    pub(super) fn progress(&self) -> (String, bool) {
        (self.rel.clone(), self.src.is_some())
    }
}

/// Where a side's entries come from.
enum Lister {
    Objects {
        engine: Engine,
        /// The destination store (else the store copies read from).
        dest: bool,
        bucket: String,
        prefix: String,
        req: ListRequest,
        page: VecDeque<ListEntry>,
        done: bool,
    },
    Files(mpsc::Receiver<std::result::Result<(String, Entry), String>>),
    /// Given keys, in order, each asked for.
    Keys {
        engine: Engine,
        side: SyncSide,
        dest: bool,
        keys: VecDeque<String>,
    },
}

impl Lister {
    /// The next entry the filter takes, with its relative key; `Err`: the side could not be listed (what, why). A
    /// listing ends at the first key past `upto`, whether the filter takes it or not.
    async fn next(
        &mut self,
        filter: &KeyFilter,
        upto: Option<&str>,
    ) -> std::result::Result<Option<(String, Entry)>, (String, String)> {
        match self {
            Lister::Keys { engine, side, dest, keys } => loop {
                let Some(rel) = keys.pop_front() else { return Ok(None) };
                if upto.is_some_and(|u| rel.as_str() > u) {
                    keys.clear();
                    return Ok(None);
                }
                // What a listing or a walk passes over: directory markers, downloads' temporary files.
                let name = rel.rsplit('/').next().unwrap_or(&rel);
                if rel.is_empty() || rel.ends_with('/') || super::is_temp_name(name) || !filter.matches(&rel) {
                    continue;
                }
                match engine.entry(side, &rel, *dest).await {
                    Ok(Some(entry)) => return Ok(Some((rel, entry))),
                    Ok(None) => continue,
                    Err(e) => return Err((rel.clone(), format!("cannot read {rel}: {e}"))),
                }
            },
            Lister::Files(rx) => match rx.recv().await {
                None => Ok(None),
                Some(Ok(item)) => Ok(Some(item)),
                Some(Err(why)) => Err((why.clone(), why)),
            },
            Lister::Objects { engine, dest, bucket, prefix, req, page, done } => loop {
                if let Some(e) = page.pop_front() {
                    let Some(rel) = e.key.strip_prefix(prefix.as_str()) else { continue };
                    if upto.is_some_and(|u| rel > u) {
                        (*done, *page) = (true, VecDeque::new());
                        return Ok(None);
                    }
                    if rel.is_empty() || rel.ends_with('/') || !filter.matches(rel) {
                        continue;
                    }
                    let rel = rel.to_owned();
                    let entry =
                        Entry::Object { key: e.key, size: e.size, etag: e.etag, last_modified: e.last_modified };
                    return Ok(Some((rel, entry)));
                }
                if *done {
                    return Ok(None);
                }
                let inner = &engine.inner;
                let listed = engine
                    .retrying("ListObjects", |_| async {
                        let _slot = inner.scheduler.request().await;
                        match dest {
                            true => inner.store.list_objects(bucket, req).await,
                            false => engine.source_store().list_objects(bucket, req).await,
                        }
                    })
                    .await
                    .map_err(|e| (format!("{bucket}/{prefix}"), format!("cannot list {bucket}/{prefix}: {e}")))?;
                page.extend(listed.objects);
                match listed.next_continuation_token {
                    Some(token) if listed.is_truncated => {
                        req.continuation_token = Some(token);
                        req.start_after = None;
                    }
                    _ => *done = true,
                }
            },
        }
    }
}

/// A side's lister that ends past the last key of the sync's range.
struct Bounded<'a> {
    lister: Lister,
    upto: Option<&'a str>,
    ended: bool,
}

impl<'a> Bounded<'a> {
    fn new(lister: Lister, upto: Option<&'a str>) -> Self {
        Bounded { lister, upto, ended: false }
    }

    async fn next(&mut self, filter: &KeyFilter) -> std::result::Result<Option<(String, Entry)>, (String, String)> {
        if self.ended {
            return Ok(None);
        }
        let next = self.lister.next(filter, self.upto).await?;
        if next.as_ref().is_some_and(|(rel, _)| self.upto.is_some_and(|u| rel.as_str() > u)) {
            self.ended = true;
            return Ok(None);
        }
        Ok(next)
    }
}

/// Walks `root` in key order, sending each regular file the filter takes whose relative key is after `after`.
/// A directory that does not exist has no files.
fn walk_sorted(
    root: &Path,
    filter: &KeyFilter,
    after: Option<&str>,
    tx: &mpsc::Sender<std::result::Result<(String, Entry), String>>,
    tracker: &Tracker,
) -> bool {
    fn visit(
        dir: &Path,
        rel: &str,
        (filter, after): (&KeyFilter, Option<&str>),
        tx: &mpsc::Sender<std::result::Result<(String, Entry), String>>,
        tracker: &Tracker,
    ) -> bool {
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel.is_empty() => return true,
            Err(e) => return unlisted(tx, format!("cannot list {}: {e}", dir.display())),
        };
        // (key the name sorts by: a directory's with a `/`, name, is a directory)
        let mut names: Vec<(String, bool)> = Vec::new();
        for entry in read {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => return unlisted(tx, format!("cannot list {}: {e}", dir.display())),
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                let why = format!("{} has a name that is not UTF-8; rename it", entry.path().display());
                return unlisted(tx, why);
            };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            names.push((if is_dir { format!("{name}/") } else { name }, is_dir));
        }
        names.sort_unstable();
        for (sort_key, is_dir) in names {
            if tracker.is_stopped() {
                return false;
            }
            let key = format!("{rel}{sort_key}");
            if is_dir {
                // Every key under `key` is after it; all of them are at or before `after` when `after` is past
                // `key` without being inside it.
                if after.is_some_and(|a| a > key.as_str() && !a.starts_with(&key)) {
                    continue;
                }
                if !visit(&dir.join(sort_key.trim_end_matches('/')), &key, (filter, after), tx, tracker) {
                    return false;
                }
                continue;
            }
            if after.is_some_and(|a| key.as_str() <= a) || super::is_temp_name(&sort_key) || !filter.matches(&key) {
                continue;
            }
            let path = dir.join(&sort_key);
            let item = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Ok((key, Entry::File { path, state: FileState::of(&m) })),
                Ok(_) => continue,
                Err(e) => Err(format!("cannot stat {}: {e}", path.display())),
            };
            if tx.blocking_send(item).is_err() {
                return false;
            }
        }
        true
    }
    /// Reports what could not be read; the walk ends there (the side is not listed whole).
    fn unlisted(tx: &mpsc::Sender<std::result::Result<(String, Entry), String>>, why: String) -> bool {
        let _ = tx.blocking_send(Err(why));
        false
    }
    visit(root, "", (filter, after), tx, tracker)
}

impl Engine {
    /// A job making `req.destination` like `req.source`: `.await` it to start it ([`JobStart`](super::JobStart)).
    /// Directory to prefix (uploads), prefix to prefix (server-side copies within one store, relayed with
    /// [`Engine::relay`]), prefix to directory (downloads, verified and renamed into place as
    /// [`Engine::download_prefix`] does). The summary's progress counts what was transferred
    /// (`objects_done`), found unchanged (`objects_skipped`, [`SkipReason::Unchanged`]), failed and deleted
    /// ([`Event::Deleted`]). A killed or stopped sync (or one whose listing failed) resumes its pass where it
    /// stopped, before its deletions; a pass that reached its deletions is over, and the next start runs a
    /// new one. A dry run reports every transfer, unchanged entry and deletion as an
    /// [`Event::Planned`] and writes nothing.
    pub fn sync(&self, req: SyncRequest) -> super::JobStart {
        super::JobStart::new(self, super::start::Source::Sync(Arc::new(req)))
    }

    /// Lists both sides from the pass's cursor and sends every pair to the runner, in key order.
    pub(super) async fn merge_sides(
        self,
        req: Arc<SyncRequest>,
        after: Option<String>,
        tracker: Arc<Tracker>,
        tx: mpsc::Sender<Found>,
    ) {
        // A range starts the listing at its lower end (or the pass's cursor past it) and ends it past its upper.
        let after = match (after, &req.range.after) {
            (Some(cursor), Some(start)) => Some(cursor.max(start.clone())),
            (cursor, start) => cursor.or(start.clone()),
        };
        // The chunks of split objects first: each is one unit of work, like an object.
        for chunk in &req.chunks {
            if tx.send(Ok(Work::Chunk(chunk.clone()))).await.is_err() {
                return;
            }
        }
        let upto = req.range.upto.as_deref();
        let lister = |side, dest| match &req.keys {
            Some(keys) => self.key_lister(side, dest, keys, after.as_deref()),
            None => self.lister(side, dest, after.as_deref(), &req.filter, &tracker),
        };
        let mut src = Bounded::new(lister(&req.source, false), upto);
        let mut dst = Bounded::new(lister(&req.destination, true), upto);
        // The entry each side showed and the merge has not taken yet; a side is read on only once its entry was
        // taken, after the pair it went into was sent (so a pair never waits for the next page of either side).
        let (mut a, mut b) = (None, None);
        let (mut take_a, mut take_b) = (true, true);
        loop {
            if tracker.is_stopped() {
                return;
            }
            for (take, side, lister) in [(&mut take_a, &mut a, &mut src), (&mut take_b, &mut b, &mut dst)] {
                if std::mem::take(take) {
                    match lister.next(&req.filter).await {
                        Ok(next) => *side = next,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
            }
            let order = match (&a, &b) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((r1, _)), Some((r2, _))) => r1.cmp(r2),
            };
            // `order` came from the entries themselves, so each `take` finds one (an ended side is not read
            // again: nothing was taken from it).
            let pair = match order {
                Ordering::Less => {
                    let Some((rel, s)) = a.take() else { break };
                    take_a = true;
                    Pair { rel, src: Some(s), dst: None }
                }
                Ordering::Greater => {
                    let Some((rel, d)) = b.take() else { break };
                    take_b = true;
                    Pair { rel, src: None, dst: Some(d) }
                }
                Ordering::Equal => {
                    let (Some((rel, s)), Some((_, d))) = (a.take(), b.take()) else { break };
                    (take_a, take_b) = (true, true);
                    Pair { rel, src: Some(s), dst: Some(d) }
                }
            };
            if req.elsewhere.contains(&pair.rel) {
                continue;
            }
            if let Some(s) = &pair.src {
                tracker.found(s.size());
            }
            if tx.send(Ok(Work::Sync(pair))).await.is_err() {
                return;
            }
        }
        tracker.listing_finished();
    }

    /// A side's entries under `keys` after `after`, in key order, each asked for.
    fn key_lister(&self, side: &SyncSide, dest: bool, keys: &[String], after: Option<&str>) -> Lister {
        let mut keys: Vec<String> = keys.iter().filter(|k| after.is_none_or(|a| k.as_str() > a)).cloned().collect();
        keys.sort_unstable();
        keys.dedup();
        Lister::Keys { engine: self.clone(), side: side.clone(), dest, keys: keys.into() }
    }

    fn lister(
        &self,
        side: &SyncSide,
        dest: bool,
        after: Option<&str>,
        filter: &KeyFilter,
        tracker: &Arc<Tracker>,
    ) -> Lister {
        match side {
            SyncSide::Prefix { bucket, prefix } => {
                let prefix = with_slash(prefix);
                let req = ListRequest {
                    prefix: Some(prefix.clone()).filter(|p| !p.is_empty()),
                    start_after: after.map(|a| format!("{prefix}{a}")),
                    max_keys: Some(self.inner.config.list_page_size.clamp(1, 1000)),
                    ..Default::default()
                };
                Lister::Objects {
                    engine: self.clone(),
                    dest,
                    bucket: bucket.clone(),
                    prefix,
                    req,
                    page: VecDeque::new(),
                    done: false,
                }
            }
            SyncSide::Dir(dir) => {
                let (tx, rx) = mpsc::channel(1024);
                let (dir, filter, after, tracker) = (
                    std::path::absolute(dir).unwrap_or(dir.clone()),
                    filter.clone(),
                    after.map(str::to_owned),
                    tracker.clone(),
                );
                tokio::task::spawn_blocking(move || walk_sorted(&dir, &filter, after.as_deref(), &tx, &tracker));
                Lister::Files(rx)
            }
        }
    }

    /// Settles one pair: transfers, leaves alone, or records for deletion.
    pub(super) async fn sync_pair(&self, job: JobId, req: &SyncRequest, pair: Pair) -> Result<Settled> {
        let dry_run = self.dry_run();
        let Pair { rel, src, dst } = pair;
        let Some(src) = src else {
            if !req.delete {
                return Ok(Settled::Nothing);
            }
            if dry_run {
                let (bucket, key) = match (&req.destination, &dst) {
                    (SyncSide::Prefix { bucket, .. }, Some(Entry::Object { key, .. })) => (bucket.clone(), key.clone()),
                    (_, Some(Entry::File { path, .. })) => (String::new(), path.display().to_string()),
                    _ => (String::new(), rel.clone()),
                };
                let size = dst.as_ref().map_or(0, Entry::size);
                return Ok(Settled::Planned(PlannedObject {
                    source: String::new(),
                    bucket,
                    key,
                    size,
                    action: PlannedAction::Delete,
                }));
            }
            self.db(move |l| l.add_sync_delete(job, &rel)).await?;
            return Ok(Settled::Nothing);
        };
        let work = self.sync_work(req, &rel, &src)?;
        if let Some(dst) = &dst {
            if self.unchanged(req, &src, dst).await? {
                let size = src.size();
                return Ok(match dry_run {
                    true => Settled::Planned(unchanged_plan(&work, size)),
                    false => Settled::Transferred(Outcome::left_alone(size, SkipReason::Unchanged, None)),
                });
            }
        }
        self.settle(job, work).await.1
    }

    /// The transfer that makes the destination of `rel` like the source entry `src`.
    pub(super) fn sync_work(&self, req: &SyncRequest, rel: &str, src: &Entry) -> Result<Work> {
        let replace_or_none = |m: &Directive<Metadata>| match m {
            Directive::Replace(m) => m.clone(),
            Directive::Copy => Metadata::default(),
        };
        Ok(match (src, &req.destination) {
            (Entry::File { path, .. }, SyncSide::Prefix { bucket, prefix }) => {
                let mut up = UploadRequest::new(path, bucket, format!("{}{rel}", with_slash(prefix)))
                    .metadata(replace_or_none(&req.metadata));
                if let Directive::Replace(t) = &req.tags {
                    up = up.tags(t.clone());
                }
                Work::Upload(up)
            }
            (Entry::Object { key, .. }, SyncSide::Prefix { bucket, prefix }) => {
                let SyncSide::Prefix { bucket: sb, .. } = &req.source else { unreachable!("an object's side") };
                Work::Copy(CopyRequest {
                    source: ObjectRef::new(sb, key),
                    bucket: bucket.clone(),
                    key: format!("{}{rel}", with_slash(prefix)),
                    metadata: req.metadata.clone(),
                    tags: req.tags.clone(),
                })
            }
            (Entry::Object { key, .. }, SyncSide::Dir(dir)) => {
                let SyncSide::Prefix { bucket: sb, .. } = &req.source else { unreachable!("an object's side") };
                let dir = std::path::absolute(dir).unwrap_or(dir.clone());
                let path = path_under(&dir, rel).map_err(Error::invalid)?;
                Work::Download(DownloadRequest::new(ObjectRef::new(sb, key), path))
            }
            (Entry::File { .. }, SyncSide::Dir(_)) => unreachable!("refused by validate"),
        })
    }

    /// Whether the destination entry `dst` holds what the source entry `src` does, by the request's comparison.
    pub(super) async fn unchanged(&self, req: &SyncRequest, src: &Entry, dst: &Entry) -> Result<bool> {
        if src.size() != dst.size() {
            return Ok(false);
        }
        if req.compare == Compare::Size || self.produced(req, src, dst).await? {
            return Ok(true);
        }
        match req.compare {
            Compare::Size => Ok(true),
            Compare::Etag => self.same_etag(req, src, dst).await,
            Compare::SizeMtime => self.same_mtime(req, src, dst).await,
            Compare::SizeCrc => self.same_bytes(req, src, dst).await,
        }
    }

    /// ETag comparison: the listed ETags, or the HEADs' where a listing has none (s3s-fs lists none).
    async fn same_etag(&self, req: &SyncRequest, src: &Entry, dst: &Entry) -> Result<bool> {
        let (Entry::Object { key: sk, etag: se, .. }, Entry::Object { key: dk, etag: de, .. }) = (src, dst) else {
            return Ok(false);
        };
        if !se.is_empty() && !de.is_empty() {
            return Ok(se == de);
        }
        let (SyncSide::Prefix { bucket: sb, .. }, SyncSide::Prefix { bucket: db, .. }) =
            (&req.source, &req.destination)
        else {
            return Ok(false);
        };
        let (hs, hd) = (self.source_head(&ObjectRef::new(sb, sk)).await?, self.head(&ObjectRef::new(db, dk)).await?);
        Ok(!hs.etag.is_empty() && hs.etag == hd.etag)
    }

    /// Whether the ledger's last write of `dst` made it from `src` as it is now.
    async fn produced(&self, req: &SyncRequest, src: &Entry, dst: &Entry) -> Result<bool> {
        let (bucket, key) = match (&req.destination, dst) {
            (SyncSide::Prefix { bucket, .. }, Entry::Object { key, .. }) => (bucket.clone(), key.clone()),
            (_, Entry::File { path, .. }) => (String::new(), path.display().to_string()),
            _ => return Ok(false),
        };
        let path = match dst {
            Entry::File { path, .. } => Some(path.display().to_string()),
            Entry::Object { .. } => None,
        };
        let (row, file) = self
            .inner
            .ledger
            .off_thread(move |l| {
                let row = l.last_write(&bucket, &key)?;
                let file = match (&row, path) {
                    (Some(_), Some(p)) => l.file(&p)?,
                    _ => None,
                };
                Ok((row, file))
            })
            .await?;
        let Some(row) = row else { return Ok(false) };
        let made_from = match (src, &req.source) {
            (Entry::File { path, state }, _) => {
                row.source == path.display().to_string()
                    && row.fingerprint
                        == Fingerprint::File { size: state.size, mtime_ns: state.mtime_ns, inode: state.inode }
            }
            (Entry::Object { key, etag, .. }, SyncSide::Prefix { bucket, .. }) => {
                row.source == format!("{bucket}/{key}")
                    && matches!(&row.fingerprint, Fingerprint::Object { etag: e, .. } if e == etag)
            }
            _ => false,
        };
        Ok(made_from
            && match dst {
                Entry::Object { etag, .. } => row.etag.as_deref() == Some(etag.as_str()),
                Entry::File { state, .. } => file.is_some_and(|(recorded, _)| recorded == *state),
            })
    }

    /// Size-and-CRC comparison.
    async fn same_bytes(&self, req: &SyncRequest, src: &Entry, dst: &Entry) -> Result<bool> {
        match (src, dst) {
            (Entry::File { path, state }, Entry::Object { key, etag, .. }) => {
                let SyncSide::Prefix { bucket, .. } = &req.destination else { return Ok(false) };
                self.file_and_object(path, *state, ObjectRef::new(bucket, key), etag, true).await
            }
            (Entry::Object { key, etag, .. }, Entry::File { path, state }) => {
                let SyncSide::Prefix { bucket, .. } = &req.source else { return Ok(false) };
                self.file_and_object(path, *state, ObjectRef::new(bucket, key), etag, false).await
            }
            (Entry::Object { key: sk, etag: se, .. }, Entry::Object { key: dk, etag: de, .. }) => {
                let (SyncSide::Prefix { bucket: sb, .. }, SyncSide::Prefix { bucket: db, .. }) =
                    (&req.source, &req.destination)
                else {
                    return Ok(false);
                };
                // The same MD5 is the same bytes (two ETags of one form that are no MD5 are never equal by chance).
                if is_md5_form(se) && se.eq_ignore_ascii_case(de) {
                    return Ok(true);
                }
                let (s, d) = (ObjectRef::new(sb, sk), ObjectRef::new(db, dk));
                let (known_s, known_d) = (self.known_crc(&s, se).await?, self.known_crc(&d, de).await?);
                if let (Some(a), Some(b)) = (known_s, known_d) {
                    return Ok(a == b);
                }
                let (hs, hd) = (self.source_head(&s).await?, self.head(&d).await?);
                let (cs, cd) = (known_s.or(hs.crc64), known_d.or(hd.crc64));
                Ok(match (cs, cd) {
                    (Some(a), Some(b)) => a == b,
                    _ => match (hs.checksum, hd.checksum) {
                        (Some(a), Some(b)) if a.composite_parts.is_none() && b.composite_parts.is_none() => a == b,
                        _ => hs.etag_is_md5() && hd.etag_is_md5() && hs.etag == hd.etag,
                    },
                })
            }
            (Entry::File { .. }, Entry::File { .. }) => Ok(false),
        }
    }

    /// Whether the file at `path` (in `state`) holds the object `obj` (whose listed ETag is `etag`; in the
    /// destination store when `dest`, else in the source's): by CRC-64 when the ledger knows the object's; else,
    /// without a request, by the MD5 a listed ETag of that form is (an ETag that is no MD5, under SSE-KMS say,
    /// only makes the file count as different: sent again, never wrongly kept); else by the store's CRC-64 (HEAD),
    /// or whatever else the object can be checked by.
    async fn file_and_object(
        &self,
        path: &Path,
        state: FileState,
        obj: ObjectRef,
        etag: &str,
        dest: bool,
    ) -> Result<bool> {
        if let Some(want) = self.known_crc(&obj, etag).await? {
            return Ok(self.file_crc(path, state, false).await?.is_some_and(|(crc, _)| crc == want));
        }
        if is_md5_form(etag) {
            let sums = self.file_crc(path, state, true).await?;
            return Ok(sums.and_then(|(_, md5)| md5).is_some_and(|m| m.eq_ignore_ascii_case(etag)));
        }
        let head = match dest {
            true => self.head(&obj).await?,
            false => self.source_head(&obj).await?,
        };
        match head.crc64 {
            Some(want) => Ok(self.file_crc(path, state, false).await?.is_some_and(|(crc, _)| crc == want)),
            None => self.file_matches(&obj, &head, path).await,
        }
    }

    /// The CRC-64 of `obj` while its ETag is `etag`, if a finished row of the ledger recorded it.
    async fn known_crc(&self, obj: &ObjectRef, etag: &str) -> Result<Option<u64>> {
        let (b, k, e) = (obj.bucket.clone(), obj.key.clone(), etag.to_owned());
        self.inner.ledger.off_thread(move |l| l.known_crc64(&b, &k, &e)).await
    }

    /// The file's CRC-64 (recorded for its state, else read, and recorded outside a dry run), and with `md5`
    /// its MD5 (hex; a read). `None`: the file changed while it was read.
    async fn file_crc(&self, path: &Path, state: FileState, md5: bool) -> Result<Option<(u64, Option<String>)>> {
        let name = path.display().to_string();
        if !md5 {
            let name = name.clone();
            if let Some((s, Some(crc))) = self.inner.ledger.off_thread(move |l| l.file(&name)).await? {
                if s == state {
                    return Ok(Some((crc, None)));
                }
            }
        }
        let file = Arc::new(std::fs::File::open(path).map_err(|e| super::upload::io_error("open", path, e))?);
        let sums = self.file_sums(&file, &Arc::from(path), state.size, md5).await?;
        let now = FileState::of(&file.metadata().map_err(|e| super::upload::io_error("stat", path, e))?);
        if now != state {
            return Ok(None);
        }
        if !self.dry_run() {
            let crc = sums.0;
            self.db(move |l| l.record_file(&name, state, Some(crc))).await?;
        }
        Ok(Some(sums))
    }

    /// Size-and-mtime comparison.
    async fn same_mtime(&self, req: &SyncRequest, src: &Entry, dst: &Entry) -> Result<bool> {
        const NS: i128 = 1_000_000_000;
        // Equal at the precision of the coarser of the two.
        let same =
            |a: i128, b: i128| if a % NS == 0 || b % NS == 0 { a.div_euclid(NS) == b.div_euclid(NS) } else { a == b };
        let object_time = |head: &ObjectInfo| {
            head.metadata.user.get(super::MTIME_METADATA).and_then(|m| super::parse_mtime(m)).map(|t| {
                let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                d.as_nanos() as i128
            })
        };
        Ok(match (src, dst) {
            (Entry::File { state, .. }, Entry::Object { key, last_modified, .. }) => {
                let SyncSide::Prefix { bucket, .. } = &req.destination else { return Ok(false) };
                let head = self.head(&ObjectRef::new(bucket, key)).await?;
                match object_time(&head) {
                    Some(t) => same(state.mtime_ns, t),
                    None => i128::from(*last_modified) * NS >= state.mtime_ns.div_euclid(NS) * NS,
                }
            }
            (Entry::Object { key, last_modified, .. }, Entry::File { state, .. }) => {
                let SyncSide::Prefix { bucket, .. } = &req.source else { return Ok(false) };
                let head = self.source_head(&ObjectRef::new(bucket, key)).await?;
                match object_time(&head) {
                    Some(t) => same(t, state.mtime_ns),
                    None => state.mtime_ns.div_euclid(NS) >= i128::from(*last_modified),
                }
            }
            (Entry::Object { key: sk, last_modified: sl, .. }, Entry::Object { key: dk, last_modified: dl, .. }) => {
                let (SyncSide::Prefix { bucket: sb, .. }, SyncSide::Prefix { bucket: db, .. }) =
                    (&req.source, &req.destination)
                else {
                    return Ok(false);
                };
                let (hs, hd) =
                    (self.source_head(&ObjectRef::new(sb, sk)).await?, self.head(&ObjectRef::new(db, dk)).await?);
                match (object_time(&hs), object_time(&hd)) {
                    (Some(a), Some(b)) => same(a, b),
                    _ => dl >= sl,
                }
            }
            (Entry::File { .. }, Entry::File { .. }) => false,
        })
    }

    /// The deletions of a complete pass: in key order, at most `max_delete`, DeleteMultiple where the store has
    /// it. Answers (deleted, withheld by the limit); each deletion (or failure) is an event.
    pub(super) async fn sync_deletions(
        &self,
        job: JobId,
        req: &SyncRequest,
        sources: u64,
        emit: &mpsc::Sender<Event>,
        failures: &mut Vec<(String, Error)>,
    ) -> Result<(u64, u64)> {
        let tracker = self.tracker.clone().expect("a job engine is tracked");
        let pending = self.inner.ledger.off_thread(move |l| l.count_sync_deletes(job)).await?;
        if pending == 0 {
            return Ok((0, 0));
        }
        if sources == 0 && !req.allow_empty_source {
            let e = Error::invalid(format!(
                "the source {} lists nothing{}: refusing to delete the {pending} entries of {} (a misspelt address \
                 lists nothing); check the source, or pass --allow-empty-source (library: \
                 SyncRequest::allow_empty_source) to empty the destination",
                req.source.name()?,
                if req.filter.is_empty() { "" } else { " that the filters take" },
                req.destination.name()?,
            ));
            tracker.failed();
            failures.push((req.destination.name()?, e.clone()));
            let _ = emit.send(Event::Failed { key: req.destination.name()?, error: e }).await;
            return Ok((0, pending));
        }
        let allowed = req.max_delete.unwrap_or(u64::MAX);
        let (mut deleted, mut after) = (0u64, String::new());
        loop {
            let room = allowed.saturating_sub(deleted).min(1000) as usize;
            if room == 0 {
                let left = self.inner.ledger.off_thread(move |l| l.count_sync_deletes(job)).await?;
                return Ok((deleted, left));
            }
            let from = after.clone();
            let batch = self.inner.ledger.off_thread(move |l| l.sync_deletes(job, &from, room)).await?;
            let Some(last) = batch.last() else { return Ok((deleted, 0)) };
            after = last.clone();
            let mut done = Vec::with_capacity(batch.len());
            for (rel, result) in batch.iter().zip(self.delete_batch(req, &batch).await?) {
                match result {
                    Ok((key, delete_marker)) => {
                        deleted += 1;
                        tracker.deleted();
                        done.push(rel.clone());
                        let _ = emit.send(Event::Deleted { key, delete_marker }).await;
                    }
                    Err((key, e)) => {
                        tracker.failed();
                        if failures.len() < 100 {
                            failures.push((key.clone(), e.clone()));
                        }
                        let _ = emit.send(Event::Failed { key, error: e }).await;
                    }
                }
            }
            self.db(move |l| l.remove_sync_deletes(job, &done)).await?;
        }
    }

    /// Deletes the destination entries `rels`: one DeleteMultiple (retried as a whole: a delete is idempotent)
    /// for a bucket, `remove_file` for a directory. Per entry, (its key or path, whether a delete marker was
    /// left), or why it failed.
    #[allow(clippy::type_complexity)]
    async fn delete_batch(
        &self,
        req: &SyncRequest,
        rels: &[String],
    ) -> Result<Vec<std::result::Result<(String, bool), (String, Error)>>> {
        match &req.destination {
            SyncSide::Prefix { bucket, prefix } => {
                let prefix = with_slash(prefix);
                let objects: Vec<ObjectRef> =
                    rels.iter().map(|r| ObjectRef::new(bucket, format!("{prefix}{r}"))).collect();
                let inner = &self.inner;
                let results = self
                    .retrying("DeleteMultipleObjects", |_| async {
                        let _slot = inner.scheduler.request().await;
                        inner.store.delete_objects(bucket, &objects).await
                    })
                    .await?;
                Ok(objects
                    .into_iter()
                    .zip(results)
                    .map(|(o, r)| match r {
                        Ok(d) => Ok((o.key, d.delete_marker)),
                        Err(e) if e.kind() == ErrorKind::ObjectNotFound => Ok((o.key, false)),
                        Err(e) => Err((o.key.clone(), e.with_context("object", &o))),
                    })
                    .collect())
            }
            SyncSide::Dir(dir) => {
                let dir = std::path::absolute(dir).unwrap_or(dir.clone());
                let rels = rels.to_vec();
                Ok(tokio::task::spawn_blocking(move || {
                    rels.iter()
                        .map(|r| {
                            let path = path_under(&dir, r).map_err(|why| (r.clone(), Error::invalid(why)))?;
                            let name = path.display().to_string();
                            match std::fs::remove_file(&path) {
                                Ok(()) => Ok((name, false)),
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((name, false)),
                                Err(e) => Err((name, super::upload::io_error("delete", &path, e))),
                            }
                        })
                        .collect()
                })
                .await?)
            }
        }
    }
}

/// Whether an ETag has the form of an MD5 (32 hex digits): a single-request object's, unless a KMS or a
/// customer's key made it something else.
fn is_md5_form(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A dry run's report of a pair found unchanged.
fn unchanged_plan(work: &Work, size: u64) -> PlannedObject {
    let (source, bucket, key) = match work {
        Work::Upload(r) => (r.path.display().to_string(), r.bucket.clone(), r.key.clone()),
        Work::Copy(r) => (r.source.to_string(), r.bucket.clone(), r.key.clone()),
        Work::Download(r) => (r.source.to_string(), String::new(), r.path.display().to_string()),
        _ => Default::default(),
    };
    PlannedObject { source, bucket, key, size, action: PlannedAction::Skip(SkipReason::Unchanged) }
}

/// The pass's progress as pairs settle: the cursor moves over a pair once it and every pair before it settled
/// without failure; after a failure it stays, so a resumed pass compares the failed pair again.
#[derive(Debug, Default)]
pub(super) struct Watermark {
    /// Dispatched pairs by sequence: (relative key, in the source, settled: None pending, Some(ok)).
    pending: BTreeMap<u64, (String, bool, Option<bool>)>,
    pub(super) cursor: Option<String>,
    pub(super) sources: u64,
    frozen: bool,
    /// Pairs passed since the cursor was last saved.
    pub(super) unsaved: u64,
}

impl Watermark {
    pub(super) fn new(cursor: Option<String>, sources: u64) -> Watermark {
        Watermark { cursor, sources, ..Default::default() }
    }

    pub(super) fn dispatched(&mut self, seq: u64, rel: String, in_source: bool) {
        self.pending.insert(seq, (rel, in_source, None));
    }

    pub(super) fn settled(&mut self, seq: u64, ok: bool) {
        if let Some(e) = self.pending.get_mut(&seq) {
            e.2 = Some(ok);
        }
        while !self.frozen {
            let Some(first) = self.pending.first_entry() else { break };
            match first.get().2 {
                None => break,
                Some(false) => self.frozen = true,
                Some(true) => {
                    let (rel, in_source, _) = first.remove();
                    self.cursor = Some(rel);
                    self.sources += u64::from(in_source);
                    self.unsaved += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_passes_only_pairs_settled_without_failure_before_it() {
        let mut w = Watermark::new(None, 0);
        for (seq, rel, src) in [(1, "a", true), (2, "b", false), (3, "c", true), (4, "d", true)] {
            w.dispatched(seq, rel.to_owned(), src);
        }
        w.settled(2, true);
        assert_eq!(w.cursor, None, "b settled, a not yet");
        w.settled(1, true);
        assert_eq!((w.cursor.as_deref(), w.sources), (Some("b"), 1));
        w.settled(3, false);
        w.settled(4, true);
        assert_eq!((w.cursor.as_deref(), w.sources), (Some("b"), 1), "a failure holds the cursor before it");
    }

    #[test]
    fn the_walk_finds_files_in_the_order_a_store_lists_keys() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["a-b", "a.txt", "a/x", "a/y/z", "a0", "b", "é", "ab/c"];
        for n in names {
            let p = dir.path().join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, n).unwrap();
        }
        let walk = |after: Option<&str>| {
            let (tx, mut rx) = mpsc::channel(64);
            let tracker = Tracker::new(false);
            assert!(walk_sorted(dir.path(), &KeyFilter::default(), after, &tx, &tracker));
            drop(tx);
            let mut found = Vec::new();
            while let Ok(Ok((rel, _))) = rx.try_recv() {
                found.push(rel);
            }
            found
        };
        let mut sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        sorted.sort();
        assert_eq!(walk(None), sorted);
        assert_eq!(walk(Some("a/x")), ["a/y/z", "a0", "ab/c", "b", "é"]);
    }
}
