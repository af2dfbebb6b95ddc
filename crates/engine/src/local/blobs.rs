//! Data files of the local store: receiving a body into a temp file, publishing it by rename, reading it back in
//! chunks, assembling new files from ranges of others, appending in place, and sweeping what a crash left.
//!
//! Layout under the store root (no path ever comes from an object key):
//! - `.tmp/<id>`: bodies being received; removed on failure and swept on open.
//! - `.data/<xx>/<id>`: object bytes, `<xx>` being the first two characters of the random `<id>`.
//! - `.staging/<upload id>/<id>`: the staged parts of a multipart upload.
//!
//! A received body is hashed (MD5 and CRC-64) while it is written, and fsynced when the store is opened with
//! `fsync`, before it is renamed into place; the index row that makes it visible is committed after that.

use super::ids;
use crate::crc64::{self, Crc64};
use crate::error::{Error, ErrorKind, Result};
use crate::store::Body;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use md5::{Digest, Md5};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

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
    pub fn etag(&self) -> String {
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

/// One source of an assembled file: `len` bytes of `file` from `offset`.
#[derive(Debug)]
pub(crate) struct Piece {
    pub file: File,
    pub offset: u64,
    pub len: u64,
}

/// The data directories of one store root.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    root: PathBuf,
    fsync: bool,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}", path.display())).with_source(e)
}

impl Blobs {
    /// The data directories under `root`, created if missing.
    pub fn open(root: &Path, fsync: bool) -> Result<Self> {
        for dir in [".tmp", ".data", ".staging"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).map_err(|e| io_err("cannot create", &p, e))?;
        }
        Ok(Self { root: root.to_owned(), fsync })
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(".tmp")
    }

    /// Path of a data file named `xx/<id>` (as [`Blobs::publish_data`] returns it).
    pub fn data_path(&self, name: &str) -> Result<PathBuf> {
        match name.split_once('/') {
            Some((dir, id)) if ids::is_file_id(id) && id.starts_with(dir) && dir.len() == 2 => {
                Ok(self.root.join(".data").join(dir).join(id))
            }
            _ => Err(Error::new(ErrorKind::Io, format!("the index names an invalid data file {name:?}"))),
        }
    }

    fn upload_dir(&self, upload_id: &str) -> Result<PathBuf> {
        if !ids::is_upload_id(upload_id) {
            return Err(Error::new(ErrorKind::Io, format!("invalid upload id {upload_id:?} for a staging path")));
        }
        Ok(self.root.join(".staging").join(upload_id))
    }

    /// Path of a staged part file.
    pub fn part_path(&self, upload_id: &str, name: &str) -> Result<PathBuf> {
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
    pub async fn receive(&self, body: Body) -> Result<Staged> {
        let path = self.new_temp_path();
        let file = tokio::fs::File::create(&path).await.map_err(|e| io_err("cannot create", &path, e))?;
        let mut staged = Staged { path, written: Written { size: 0, md5: None, crc: 0 }, armed: true };
        staged.written = write_body(body, file, self.fsync).await?;
        Ok(staged)
    }

    /// Blocking: builds a temp file from `pieces` in order. With `digest` the bytes are read through a buffer
    /// and MD5 and CRC-64 computed; without it they are copied (`std::io::copy`, which may use
    /// `copy_file_range`) and the CRC is left 0 for the caller to supply.
    pub fn assemble(&self, pieces: Vec<Piece>, digest: bool) -> Result<Staged> {
        let path = self.new_temp_path();
        let mut out = File::create(&path).map_err(|e| io_err("cannot create", &path, e))?;
        let mut staged = Staged { path, written: Written { size: 0, md5: None, crc: 0 }, armed: true };
        let mut md5 = Md5::new();
        let mut crc = Crc64::new();
        let mut size = 0u64;
        for mut p in pieces {
            p.file.seek(SeekFrom::Start(p.offset))?;
            let mut src = (&mut p.file).take(p.len);
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
        staged.written = Written { size, md5: digest.then(|| md5.finalize().into()), crc: if digest { crc.value() } else { 0 } };
        Ok(staged)
    }

    /// Moves a received file into the data directory; returns its name (`xx/<id>`) for the index.
    pub async fn publish_data(&self, staged: Staged) -> Result<String> {
        let id = ids::file_id();
        let name = format!("{}/{}", &id[..2], id);
        let dest = self.data_path(&name)?;
        self.publish(staged, dest).await?;
        Ok(name)
    }

    /// Moves a received part into its upload's staging directory; returns its file name for the index.
    pub async fn publish_part(&self, staged: Staged, upload_id: &str) -> Result<String> {
        let name = ids::file_id();
        let dest = self.part_path(upload_id, &name)?;
        self.publish(staged, dest).await?;
        Ok(name)
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
    pub async fn append(&self, name: &str, old_size: u64, body: Body) -> Result<Written> {
        let path = self.data_path(name)?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(|e| io_err("cannot open", &path, e))?;
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

    /// Blocking: opens a data file for reading.
    pub fn open_data(&self, name: &str) -> Result<File> {
        let path = self.data_path(name)?;
        File::open(&path).map_err(|e| io_err("cannot open", &path, e))
    }

    /// Blocking: opens a staged part for reading.
    pub fn open_part(&self, upload_id: &str, name: &str) -> Result<File> {
        let path = self.part_path(upload_id, name)?;
        File::open(&path).map_err(|e| io_err("cannot open", &path, e))
    }

    /// Removes data files (best effort: a leftover is swept on the next open).
    pub fn remove_data(&self, names: &[String]) {
        for name in names {
            if let Ok(p) = self.data_path(name) {
                remove_logged(&p);
            }
        }
    }

    /// Removes staged part files (best effort).
    pub fn remove_parts(&self, upload_id: &str, names: &[String]) {
        for name in names {
            if let Ok(p) = self.part_path(upload_id, name) {
                remove_logged(&p);
            }
        }
    }

    /// Removes an upload's staging directory and everything in it (best effort).
    pub fn remove_upload(&self, upload_id: &str) {
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
    pub fn sweep(&self, data: &HashSet<String>, uploads: &HashSet<String>, parts: &HashSet<(String, String)>) -> Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(self.tmp_dir())? {
            let entry = entry?;
            remove_any(&entry.path());
            removed += 1;
        }
        for dir in fs::read_dir(self.root.join(".data"))? {
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
                if !data.contains(&name) {
                    remove_any(&f.path());
                    removed += 1;
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

fn remove_any(p: &Path) {
    let res = if p.is_dir() { fs::remove_dir_all(p) } else { fs::remove_file(p) };
    if let Err(e) = res {
        tracing::warn!(path = %p.display(), error = %e, "sweep could not remove a leftover");
    }
}

/// Writes every chunk of `body` to `file` while hashing it; the one write path of put, part and append.
async fn write_body(body: Body, mut file: tokio::fs::File, fsync: bool) -> Result<Written> {
    let mut md5 = Md5::new();
    let mut crc = Crc64::new();
    let mut stream = body.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        md5.update(&chunk);
        crc.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    if fsync {
        file.sync_all().await?;
    }
    Ok(Written { size: crc.len(), md5: Some(md5.finalize().into()), crc: crc.value() })
}

/// Streams `len` bytes of `file` from `offset` in chunks of at most [`CHUNK`] bytes.
pub(crate) fn read_stream(file: File, offset: u64, len: u64) -> BoxStream<'static, Result<Bytes>> {
    let file = tokio::fs::File::from_std(file);
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
