//! Data files of the local store: receiving a body into a temp file, publishing it by rename, reading it back in
//! chunks, assembling new files from ranges of others, appending in place, and sweeping what a crash left.
//!
//! Layout under the store root (no path ever comes from an object key):
//! - `.tmp/<id>`: bodies being received; removed on failure and swept on open.
//! - `.data/<xx>/<id>`: object bytes, `<xx>` being the first two characters of the random `<id>`.
//! - `.pieces/<xx>/<id>/<n>`: the bytes of a completed multipart object, one file per part (`1`, `2`, ...), hard
//!   links to the staged parts, so Complete copies no byte. Its index name, `<xx>/<id>/<sizes>`, carries the
//!   pieces' sizes (runs like `8388608*127,1234`), so a range read opens only the pieces it needs. (A directory
//!   of its own: a store opened by a build from before pieces, whose sweep knows only `.data` files, fails to
//!   read these objects instead of removing them.)
//! - `.staging/<upload id>/<id>`: the staged parts of a multipart upload.
//!
//! A received body is hashed (MD5 and CRC-64) while it is written, and fsynced when the store is opened with
//! `fsync`, before it is renamed into place; the index row that makes it visible is committed after that.
//!
//! A single data file is opened under the index lock by a read, so removing it afterwards does not disturb the
//! read. The pieces of a multipart object are opened one after the other as the read reaches them; the read holds
//! a [`Lease`] on their directory, taken under the index lock, and a removal while leased is left to the last
//! lease's drop.

use super::ids;
use crate::crc64::{self, Crc64};
use crate::error::{Error, ErrorKind, Result};
use crate::store::Body;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use md5::{Digest, Md5};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Size of the chunks a read streams and a copy buffers.
pub(crate) const CHUNK: usize = 256 * 1024;

/// What was written: length, MD5 and CRC-64 of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Bytes written.
    pub size: u64,
    /// MD5 of the bytes, when it was computed.
    pub md5: Option<[u8; 16]>,
    /// CRC-64/XZ of the bytes.
    pub crc: u64,
}

impl Written {
    /// Upper-case hex MD5: the ETag of a PutObject or an UploadPart.
    pub(super) fn etag(&self) -> String {
        self.md5.map(hex::encode_upper).unwrap_or_default()
    }
}

/// A temp file holding received bytes. Dropping it without publishing removes the file, so every error path
/// (and a cancelled request) leaves nothing behind.
#[derive(Debug)]
pub(crate) struct Staged {
    path: PathBuf,
    /// What the file holds.
    pub written: Written,
    armed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove a temp file");
                }
            }
        }
    }
}

/// One source of an assembled file: `len` bytes of `src` from `offset`.
#[derive(Debug)]
pub(crate) struct Piece {
    pub src: Source,
    pub offset: u64,
    pub len: u64,
}

/// Where a [`Piece`] reads from.
#[derive(Debug)]
pub(crate) enum Source {
    /// A file opened already.
    File(File),
    /// A piece of a multipart object, opened when reached, its directory leased until then.
    Path(PathBuf, Arc<Lease>),
}

impl Source {
    fn open(self) -> Result<(File, Option<Arc<Lease>>)> {
        match self {
            Source::File(f) => Ok((f, None)),
            Source::Path(p, lease) => Ok((File::open(&p).map_err(|e| io_err("cannot open", &p, e))?, Some(lease))),
        }
    }
}

/// The bytes of a version, opened for reading (see [`Blobs::open_content`]).
#[derive(Debug)]
pub(crate) enum Content {
    /// One data file.
    File(File),
    /// The pieces of a multipart object.
    Pieces(Pieces),
}

/// The pieces of a multipart object: files `1`, `2`, ... of `dir`, with their sizes.
#[derive(Debug)]
pub(crate) struct Pieces {
    dir: PathBuf,
    sizes: Vec<u64>,
    lease: Arc<Lease>,
}

impl Pieces {
    /// The pieces' files that hold `len` bytes from `offset`, with the offset and length in each.
    fn spans(&self, offset: u64, len: u64) -> Vec<(PathBuf, u64, u64)> {
        let end = offset + len;
        let mut out = Vec::new();
        let mut start = 0u64;
        for (i, &size) in self.sizes.iter().enumerate() {
            let (a, b) = (start, start + size);
            start = b;
            if b <= offset || size == 0 {
                continue;
            }
            if a >= end {
                break;
            }
            let (from, to) = (offset.max(a), end.min(b));
            out.push((self.dir.join((i + 1).to_string()), from - a, to - from));
        }
        out
    }
}

impl Content {
    /// Streams `len` bytes from `offset` in chunks of at most [`CHUNK`] bytes.
    pub(super) fn stream(self, offset: u64, len: u64) -> BoxStream<'static, Result<Bytes>> {
        match self {
            Content::File(f) => read_stream(tokio::fs::File::from_std(f), offset, len),
            Content::Pieces(p) => {
                let lease = p.lease.clone();
                futures::stream::iter(p.spans(offset, len))
                    .then(|(path, offset, len)| async move {
                        match tokio::fs::File::open(&path).await {
                            Ok(f) => read_stream(f, offset, len),
                            Err(e) => {
                                futures::stream::once(async move { Err(io_err("cannot open", &path, e)) }).boxed()
                            }
                        }
                    })
                    .flatten()
                    // The lease lives as long as the stream.
                    .map(move |chunk| {
                        let _ = &lease;
                        chunk
                    })
                    .boxed()
            }
        }
    }

    /// `len` bytes from `offset` as pieces for [`Blobs::assemble`].
    pub(super) fn pieces(self, offset: u64, len: u64) -> Vec<Piece> {
        match self {
            Content::File(f) => vec![Piece { src: Source::File(f), offset, len }],
            Content::Pieces(p) => p
                .spans(offset, len)
                .into_iter()
                .map(|(path, offset, len)| Piece { src: Source::Path(path, p.lease.clone()), offset, len })
                .collect(),
        }
    }
}

/// Reads in progress of multipart objects' piece directories (by `xx/<id>`): how many, and whether the directory
/// is to be removed when the last one ends.
#[derive(Debug, Default)]
struct Readers(Mutex<HashMap<String, Reading>>);

#[derive(Debug, Default)]
struct Reading {
    count: usize,
    doomed: bool,
}

/// A read's hold on a piece directory: while any is held, [`Blobs::remove_data`] leaves the directory in
/// place, and the last lease dropped removes it.
#[derive(Debug)]
pub(crate) struct Lease {
    blobs: Blobs,
    entry: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let remove = {
            let mut map = self.blobs.readers.0.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_mut(&self.entry) {
                Some(r) if r.count > 1 => {
                    r.count -= 1;
                    false
                }
                Some(_) => map.remove(&self.entry).is_some_and(|r| r.doomed),
                None => false,
            }
        };
        if remove {
            self.blobs.remove_entry(&self.entry);
        }
    }
}

/// A data name of the index split up: its entry under `.data` (`xx/<id>`) and, for a multipart object's
/// pieces, their sizes.
fn split_name(name: &str) -> Result<(&str, Option<Vec<u64>>)> {
    let bad = || Error::new(ErrorKind::Io, format!("the index names an invalid data file {name:?}"));
    let mut it = name.splitn(3, '/');
    let (dir, id, sizes) = (it.next().unwrap_or_default(), it.next().ok_or_else(bad)?, it.next());
    if !(ids::is_file_id(id) && id.starts_with(dir) && dir.len() == 2) {
        return Err(bad());
    }
    let entry = &name[..dir.len() + 1 + id.len()];
    let Some(sizes) = sizes else { return Ok((entry, None)) };
    let mut out = Vec::new();
    for run in sizes.split(',') {
        let (size, count) = run.split_once('*').unwrap_or((run, "1"));
        let (size, count): (u64, usize) = (size.parse().map_err(|_| bad())?, count.parse().map_err(|_| bad())?);
        if count == 0 || out.len() + count > 10_000 {
            return Err(bad());
        }
        out.extend(std::iter::repeat_n(size, count));
    }
    Ok((entry, Some(out)))
}

/// The sizes of the pieces a data name holds (a multipart object's parts, in order); `None` for one file.
pub(super) fn piece_sizes(name: &str) -> Result<Option<Vec<u64>>> {
    Ok(split_name(name)?.1)
}

/// The sizes part of a piece directory's data name: runs of equal sizes as `size*count`, joined by commas.
fn encode_sizes(sizes: &[u64]) -> String {
    let mut runs: Vec<(u64, usize)> = Vec::new();
    for &s in sizes {
        match runs.last_mut() {
            Some((size, count)) if *size == s => *count += 1,
            _ => runs.push((s, 1)),
        }
    }
    let runs: Vec<String> =
        runs.iter().map(|&(s, n)| if n == 1 { s.to_string() } else { format!("{s}*{n}") }).collect();
    runs.join(",")
}

/// The data directories of one store root.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    root: PathBuf,
    fsync: bool,
    readers: Arc<Readers>,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}", path.display())).with_source(e)
}

impl Blobs {
    /// The data directories under `root`, created if missing.
    pub(super) fn open(root: &Path, fsync: bool) -> Result<Self> {
        for dir in [".tmp", ".data", ".pieces", ".staging"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).map_err(|e| io_err("cannot create", &p, e))?;
        }
        Ok(Self { root: root.to_owned(), fsync, readers: Arc::default() })
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(".tmp")
    }

    /// Path of a data file named `xx/<id>` (as [`Blobs::publish_data`] returns it).
    pub(super) fn data_path(&self, name: &str) -> Result<PathBuf> {
        match split_name(name)? {
            (entry, None) => Ok(self.root.join(".data").join(entry)),
            (_, Some(_)) => Err(Error::new(ErrorKind::Io, format!("the data of {name:?} is in pieces, not one file"))),
        }
    }

    fn upload_dir(&self, upload_id: &str) -> Result<PathBuf> {
        if !ids::is_upload_id(upload_id) {
            return Err(Error::new(ErrorKind::Io, format!("invalid upload id {upload_id:?} for a staging path")));
        }
        Ok(self.root.join(".staging").join(upload_id))
    }

    /// Path of a staged part file.
    pub(super) fn part_path(&self, upload_id: &str, name: &str) -> Result<PathBuf> {
        if !ids::is_file_id(name) {
            return Err(Error::new(ErrorKind::Io, format!("the index names an invalid part file {name:?}")));
        }
        Ok(self.upload_dir(upload_id)?.join(name))
    }

    fn new_temp_path(&self) -> PathBuf {
        self.tmp_dir().join(ids::file_id())
    }

    /// Streams `body` into a new temp file, computing MD5 and CRC-64. On any error the temp file is removed and
    /// the error returned.
    pub(super) async fn receive(&self, body: Body) -> Result<Staged> {
        let path = self.new_temp_path();
        let file = tokio::fs::File::create(&path).await.map_err(|e| io_err("cannot create", &path, e))?;
        let mut staged = Staged { path, written: Written { size: 0, md5: None, crc: 0 }, armed: true };
        staged.written = write_body(body, file, self.fsync).await?;
        Ok(staged)
    }

    /// Blocking: builds a temp file from `pieces` in order. With `digest` the bytes are read through a buffer
    /// and MD5 and CRC-64 computed; without it they are copied (`std::io::copy`, which may use
    /// `copy_file_range`) and the CRC is left 0 for the caller to supply.
    pub(super) fn assemble(&self, pieces: Vec<Piece>, digest: bool) -> Result<Staged> {
        let path = self.new_temp_path();
        let mut out = File::create(&path).map_err(|e| io_err("cannot create", &path, e))?;
        let mut staged = Staged { path, written: Written { size: 0, md5: None, crc: 0 }, armed: true };
        let mut md5 = Md5::new();
        let mut crc = Crc64::new();
        let mut size = 0u64;
        for p in pieces {
            let (mut file, _lease) = p.src.open()?;
            file.seek(SeekFrom::Start(p.offset))?;
            let mut src = (&mut file).take(p.len);
            let n = if digest {
                let mut buf = vec![0u8; CHUNK];
                let mut n = 0u64;
                loop {
                    let k = src.read(&mut buf)?;
                    if k == 0 {
                        break;
                    }
                    md5.update(&buf[..k]);
                    crc.update(&buf[..k]);
                    out.write_all(&buf[..k])?;
                    n += k as u64;
                }
                n
            } else {
                io::copy(&mut src, &mut out)?
            };
            if n != p.len {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("a data file is shorter than the index says: read {n} of {} bytes", p.len),
                ));
            }
            size += n;
        }
        out.flush()?;
        if self.fsync {
            out.sync_all()?;
        }
        staged.written =
            Written { size, md5: digest.then(|| md5.finalize().into()), crc: if digest { crc.value() } else { 0 } };
        Ok(staged)
    }

    /// Moves a received file into the data directory; returns its name (`xx/<id>`) for the index.
    pub(super) async fn publish_data(&self, staged: Staged) -> Result<String> {
        let id = ids::file_id();
        let name = format!("{}/{}", &id[..2], id);
        let dest = self.data_path(&name)?;
        self.publish(staged, dest).await?;
        Ok(name)
    }

    /// Moves a received part into its upload's staging directory; returns its file name for the index.
    pub(super) async fn publish_part(&self, staged: Staged, upload_id: &str) -> Result<String> {
        let name = ids::file_id();
        let dest = self.part_path(upload_id, &name)?;
        self.publish(staged, dest).await?;
        Ok(name)
    }

    /// Blocking: makes the listed staged parts (file name and size, in order) the pieces of a new data entry by
    /// hard-linking them (`.pieces/xx/<id>/1`, `2`, ...; a single part becomes a plain data file), fsyncing the
    /// new directory entries when the store fsyncs. The staged parts stay where they are. Returns the data name
    /// for the index; on error nothing new is left.
    pub(super) fn link_parts(&self, upload_id: &str, parts: &[(String, u64)]) -> Result<String> {
        let id = ids::file_id();
        let entry = format!("{}/{}", &id[..2], id);
        if let [(file, _)] = parts {
            let src = self.part_path(upload_id, file)?;
            let dest = self.root.join(".data").join(&entry);
            let parent = dest.parent().map(Path::to_owned).unwrap_or_else(|| self.root.clone());
            fs::create_dir_all(&parent).map_err(|e| io_err("cannot create", &parent, e))?;
            fs::hard_link(&src, &dest).map_err(|e| io_err("cannot link", &dest, e))?;
            if self.fsync {
                sync_dir(&parent)?;
            }
            return Ok(entry);
        }
        let dest = self.pieces_dir(&entry);
        let parent = dest.parent().map(Path::to_owned).unwrap_or_else(|| self.root.clone());
        fs::create_dir_all(&parent).map_err(|e| io_err("cannot create", &parent, e))?;
        let linked = (|| {
            fs::create_dir(&dest).map_err(|e| io_err("cannot create", &dest, e))?;
            for (i, (file, _)) in parts.iter().enumerate() {
                let src = self.part_path(upload_id, file)?;
                let to = dest.join((i + 1).to_string());
                fs::hard_link(&src, &to).map_err(|e| io_err("cannot link", &to, e))?;
            }
            if self.fsync {
                sync_dir(&dest)?;
                sync_dir(&parent)?;
            }
            Ok(())
        })();
        if let Err(e) = linked {
            remove_any(&dest);
            return Err(e);
        }
        let sizes: Vec<u64> = parts.iter().map(|(_, size)| *size).collect();
        Ok(format!("{entry}/{}", encode_sizes(&sizes)))
    }

    /// Blocking: opens the bytes the data name `name` holds for reading: a data file, or (for a multipart
    /// object's pieces) a lease on their directory. Called under the index lock, so that the entry cannot be
    /// removed between the lookup and this.
    pub(super) fn open_content(&self, name: &str) -> Result<Content> {
        match split_name(name)? {
            (entry, None) => {
                let path = self.root.join(".data").join(entry);
                Ok(Content::File(File::open(&path).map_err(|e| io_err("cannot open", &path, e))?))
            }
            (entry, Some(sizes)) => {
                let mut map = self.readers.0.lock().unwrap_or_else(|p| p.into_inner());
                map.entry(entry.to_owned()).or_default().count += 1;
                let lease = Arc::new(Lease { blobs: self.clone(), entry: entry.to_owned() });
                Ok(Content::Pieces(Pieces { dir: self.pieces_dir(entry), sizes, lease }))
            }
        }
    }

    async fn publish(&self, mut staged: Staged, dest: PathBuf) -> Result<()> {
        let dir = dest.parent().map(Path::to_owned).unwrap_or_else(|| self.root.clone());
        tokio::fs::create_dir_all(&dir).await.map_err(|e| io_err("cannot create", &dir, e))?;
        tokio::fs::rename(&staged.path, &dest).await.map_err(|e| io_err("cannot publish", &dest, e))?;
        staged.armed = false;
        if self.fsync {
            let dir2 = dir.clone();
            tokio::task::spawn_blocking(move || File::open(&dir2).and_then(|d| d.sync_all()))
                .await
                .map_err(|e| Error::new(ErrorKind::Io, format!("fsync task failed: {e}")))?
                .map_err(|e| io_err("cannot fsync", &dir, e))?;
        }
        Ok(())
    }

    /// Appends `body` to the data file `name` whose valid length is `old_size`: anything past `old_size` (left by
    /// a failed append) is cut first. On error the file is cut back to `old_size`; the index, which still says
    /// `old_size`, remains the authority either way.
    pub(super) async fn append(&self, name: &str, old_size: u64, body: Body) -> Result<Written> {
        let path = self.data_path(name)?;
        let mut file =
            tokio::fs::OpenOptions::new().write(true).open(&path).await.map_err(|e| io_err("cannot open", &path, e))?;
        file.set_len(old_size).await?;
        file.seek(SeekFrom::Start(old_size)).await?;
        let res = write_body(body, file, self.fsync).await;
        if res.is_err() {
            if let Ok(f) = tokio::fs::OpenOptions::new().write(true).open(&path).await {
                let _ = f.set_len(old_size).await;
            }
        }
        res
    }

    /// Removes data files and piece directories (best effort: a leftover is swept on the next open). A piece
    /// directory that a read holds a [`Lease`] on is removed when the last lease is dropped.
    pub(super) fn remove_data(&self, names: &[String]) {
        for name in names {
            match split_name(name) {
                Ok((entry, None)) => remove_logged(&self.root.join(".data").join(entry)),
                Ok((entry, Some(_))) => {
                    let leased = {
                        let mut map = self.readers.0.lock().unwrap_or_else(|p| p.into_inner());
                        map.get_mut(entry).map(|r| r.doomed = true).is_some()
                    };
                    if !leased {
                        self.remove_entry(entry);
                    }
                }
                Err(_) => {}
            }
        }
    }

    /// The directory of the pieces `xx/<id>`.
    fn pieces_dir(&self, entry: &str) -> PathBuf {
        self.root.join(".pieces").join(entry)
    }

    /// Removes a piece directory `xx/<id>` and its pieces.
    fn remove_entry(&self, entry: &str) {
        let dir = self.pieces_dir(entry);
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a data directory");
            }
        }
    }

    /// Removes staged part files (best effort).
    pub(super) fn remove_parts(&self, upload_id: &str, names: &[String]) {
        for name in names {
            if let Ok(p) = self.part_path(upload_id, name) {
                remove_logged(&p);
            }
        }
    }

    /// Removes an upload's staging directory and everything in it (best effort).
    pub(super) fn remove_upload(&self, upload_id: &str) {
        if let Ok(dir) = self.upload_dir(upload_id) {
            if let Err(e) = fs::remove_dir_all(&dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a staging directory");
                }
            }
        }
    }

    /// Blocking: removes temp files, data files that no index row names and staged parts of uploads or part
    /// numbers the index does not know: what a crash between writing and committing leaves. Returns how many
    /// files it removed.
    pub(super) fn sweep(
        &self,
        data: &HashSet<String>,
        uploads: &HashSet<String>,
        parts: &HashSet<(String, String)>,
    ) -> Result<usize> {
        // The `xx/<id>` entries the index names: data files under `.data`, piece directories under `.pieces`.
        let (mut files, mut pieces) = (HashSet::new(), HashSet::new());
        for (entry, sizes) in data.iter().filter_map(|n| split_name(n).ok()) {
            match sizes {
                None => files.insert(entry),
                Some(_) => pieces.insert(entry),
            };
        }
        let mut removed = 0;
        for entry in fs::read_dir(self.tmp_dir())? {
            let entry = entry?;
            remove_any(&entry.path());
            removed += 1;
        }
        for (top, named) in [(".data", &files), (".pieces", &pieces)] {
            for dir in fs::read_dir(self.root.join(top))? {
                let dir = dir?;
                let dname = dir.file_name().to_string_lossy().into_owned();
                if !dir.file_type()?.is_dir() {
                    remove_any(&dir.path());
                    removed += 1;
                    continue;
                }
                for f in fs::read_dir(dir.path())? {
                    let f = f?;
                    let name = format!("{dname}/{}", f.file_name().to_string_lossy());
                    if !named.contains(name.as_str()) {
                        remove_any(&f.path());
                        removed += 1;
                    }
                }
            }
        }
        for dir in fs::read_dir(self.root.join(".staging"))? {
            let dir = dir?;
            let upload = dir.file_name().to_string_lossy().into_owned();
            if !uploads.contains(&upload) || !dir.file_type()?.is_dir() {
                remove_any(&dir.path());
                removed += 1;
                continue;
            }
            for f in fs::read_dir(dir.path())? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                if !parts.contains(&(upload.clone(), name)) {
                    remove_any(&f.path());
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

fn remove_logged(p: &Path) {
    if let Err(e) = fs::remove_file(p) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), error = %e, "could not remove a data file");
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("cannot fsync", dir, e))
}

fn remove_any(p: &Path) {
    let res = if p.is_dir() { fs::remove_dir_all(p) } else { fs::remove_file(p) };
    if let Err(e) = res {
        tracing::warn!(path = %p.display(), error = %e, "sweep could not remove a leftover");
    }
}

/// Bytes of a body gathered before one write: small chunks share the hand-off to the blocking pool and the
/// syscall. Kept small: a chunk is best written while it is still in the cache from hashing, and held chunks
/// keep the HTTP layer from reusing their memory (batches of 1 MiB cost more kernel copy time than they saved).
const WRITE_BATCH: usize = 256 * 1024;

/// Writes every chunk of `body` to `file` while hashing it; the one write path of put, part and append.
///
/// The chunks are hashed as they arrive and written (a chunk of hyper's, up to about 400 KiB, or a batch of
/// smaller ones up to [`WRITE_BATCH`]) by one vectored write on the blocking pool, straight from the body's
/// buffers, with no copy into a file buffer; one write is in flight while the next chunk is received and
/// hashed. An error returns only once no write is in flight, so a caller that cuts the file back (a failed
/// append) is not overtaken by a late write.
///
/// A body's MD5 check (`Content-MD5`) is taken and applied to the MD5 computed here, so the bytes are hashed
/// once; a mismatch fails the write like any other error at the end of the body.
async fn write_body(mut body: Body, file: tokio::fs::File, fsync: bool) -> Result<Written> {
    let mut md5 = Md5::new();
    let mut crc = Crc64::new();
    let check = body.take_md5_check();
    let mut stream = body.into_stream();
    let mut writer = BatchWriter { file: Some(file.into_std().await), pending: None, batch: Vec::new(), batched: 0 };
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = writer.wait().await;
                return Err(e);
            }
        };
        md5.update(&chunk);
        crc.update(&chunk);
        writer.push(chunk).await?;
    }
    let md5: [u8; 16] = md5.finalize().into();
    if let Some(check) = check {
        if let Err(e) = check.check(&md5) {
            let _ = writer.wait().await;
            return Err(e);
        }
    }
    writer.finish(fsync).await?;
    Ok(Written { size: crc.len(), md5: Some(md5), crc: crc.value() })
}

/// Writes chunks to a file in batches on the blocking pool, one batch in flight at a time.
struct BatchWriter {
    /// The file, when no write is in flight.
    file: Option<File>,
    /// The write in flight, which hands the file back.
    pending: Option<tokio::task::JoinHandle<(File, io::Result<()>)>>,
    batch: Vec<Bytes>,
    batched: usize,
}

impl BatchWriter {
    async fn push(&mut self, chunk: Bytes) -> Result<()> {
        self.batched += chunk.len();
        self.batch.push(chunk);
        if self.batched >= WRITE_BATCH {
            self.write_batch().await?;
        }
        Ok(())
    }

    /// Starts writing the gathered chunks once the previous write is done.
    async fn write_batch(&mut self) -> Result<()> {
        let mut file = self.wait().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let res = write_chunks(&mut file, &batch);
            (file, res)
        }));
        Ok(())
    }

    /// Waits for the write in flight, if any; returns the file.
    async fn wait(&mut self) -> Result<File> {
        match self.pending.take() {
            Some(h) => {
                let (file, res) =
                    h.await.map_err(|e| Error::new(ErrorKind::Io, format!("a write task failed: {e}")))?;
                res?;
                Ok(file)
            }
            None => self.file.take().ok_or_else(|| Error::new(ErrorKind::Io, "a failed write lost its file")),
        }
    }

    /// Writes what is left and waits for it; fsyncs the file when asked.
    async fn finish(mut self, fsync: bool) -> Result<()> {
        if !self.batch.is_empty() {
            self.write_batch().await?;
        }
        let file = self.wait().await?;
        if fsync {
            tokio::task::spawn_blocking(move || file.sync_all())
                .await
                .map_err(|e| Error::new(ErrorKind::Io, format!("fsync task failed: {e}")))??;
        }
        Ok(())
    }
}

/// Blocking: writes all of `chunks` at the file's position, as few `writev` calls as it takes.
fn write_chunks(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = chunks.iter().map(|c| io::IoSlice::new(c)).collect();
    let mut bufs = &mut slices[..];
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Streams `len` bytes of `file` from `offset` in chunks of at most [`CHUNK`] bytes.
fn read_stream(file: tokio::fs::File, offset: u64, len: u64) -> BoxStream<'static, Result<Bytes>> {
    let state = (file, len, false);
    futures::stream::unfold(state, move |(mut file, remaining, mut started)| async move {
        if remaining == 0 {
            return None;
        }
        if !started {
            if let Err(e) = file.seek(SeekFrom::Start(offset)).await {
                return Some((Err(Error::from(e)), (file, 0, true)));
            }
            started = true;
        }
        let want = remaining.min(CHUNK as u64) as usize;
        let mut buf = BytesMut::zeroed(want);
        let mut got = 0;
        while got < want {
            match file.read(&mut buf[got..]).await {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Some((Err(Error::from(e)), (file, 0, started))),
            }
        }
        if got == 0 {
            let e = Error::new(ErrorKind::Io, format!("a data file ended {remaining} bytes early"));
            return Some((Err(e), (file, 0, started)));
        }
        buf.truncate(got);
        Some((Ok(buf.freeze()), (file, remaining - got as u64, started)))
    })
    .boxed()
}

/// The CRC-64 of consecutive pieces given each piece's CRC and length.
pub(crate) fn fold_crc(parts: impl IntoIterator<Item = (u64, u64)>) -> u64 {
    parts.into_iter().fold(0, |acc, (crc, len)| crc64::combine(acc, crc, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_names_carry_their_sizes_in_runs() {
        let id = ids::file_id();
        let entry = format!("{}/{id}", &id[..2]);
        assert_eq!(encode_sizes(&[5, 5, 5, 2]), "5*3,2");
        assert_eq!(encode_sizes(&[1, 2, 2, 1]), "1,2*2,1");
        let name = format!("{entry}/{}", encode_sizes(&[8, 8, 3]));
        assert_eq!(split_name(&name).unwrap(), (entry.as_str(), Some(vec![8, 8, 3])));
        assert_eq!(split_name(&entry).unwrap(), (entry.as_str(), None));
        for bad in ["5*0", "x", "5*", "1*10001", ""] {
            assert!(split_name(&format!("{entry}/{bad}")).is_err(), "{bad}");
        }
        assert!(split_name("zz/not-an-id").is_err() && split_name(&id).is_err());
    }

    #[test]
    fn spans_cut_a_range_into_pieces() {
        let blobs = Blobs { root: PathBuf::from("/r"), fsync: false, readers: Arc::default() };
        let lease = Arc::new(Lease { blobs, entry: "ab/x".into() });
        let p = Pieces { dir: PathBuf::from("/d"), sizes: vec![4, 0, 4, 2], lease };
        let spans =
            |a, n| p.spans(a, n).into_iter().map(|(f, o, l)| (f.display().to_string(), o, l)).collect::<Vec<_>>();
        assert_eq!(spans(0, 10), [("/d/1".into(), 0, 4), ("/d/3".into(), 0, 4), ("/d/4".into(), 0, 2)]);
        assert_eq!(spans(3, 2), [("/d/1".to_string(), 3, 1), ("/d/3".into(), 0, 1)]);
        assert_eq!(spans(8, 1), [("/d/4".to_string(), 0, 1)]);
        assert_eq!(spans(4, 4), [("/d/3".to_string(), 0, 4)]);
    }
}
