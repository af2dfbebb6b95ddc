//! What a download checks its bytes against beyond the CRC-64, and the one in-order pass that checks them.
//!
//! OSS reports every object's CRC-64: the parts' CRC-64s, taken as they are written, are combined and compared
//! with it, and no byte is read twice. Where a store has no CRC-64 the reference is, in this order:
//! 1. the object's CRC-32C (S3, asked for with `x-amz-checksum-mode: ENABLED`): of its bytes (`FULL_OBJECT`),
//!    or `COMPOSITE`: the CRC-32C of its parts' CRC-32Cs, which only the layout of the upload reproduces;
//! 2. its ETag when that is an MD5: of the bytes (an object written in one request), or of the parts' MD5s with
//!    `-N` (a multipart upload, not under a KMS or a customer's key), again with the layout. How a multipart
//!    ETag is made is a convention, not a contract: S3, MinIO, Garage and moto hash the parts' binary MD5s, OSS
//!    (and `transfer serve`) their upper-case hex. Either matching verifies the bytes; neither matching leaves
//!    them unverified, with a warning, rather than refusing a restore over a store's private rule.
//!
//! And, whatever the store, the BLAKE3 an earlier `transfer` upload labelled the object with
//! ([`DigestOptions`](super::DigestOptions)), when the engine's configuration names the label and the object
//! carries it: the bytes against the file the backup read, end to end.
//!
//! The layout of a multipart upload is asked of the store (HEAD `?partNumber=`, S3): part 1 and the last part
//! tell an even layout, the one every uploader we know writes; when they do not, every part is asked for (up to
//! 1,000 parts). A check that fails under an inferred layout is not believed until every part was asked for: an
//! uneven layout is then checked again, not reported as corrupt.

use super::{Engine, Verified};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{Checksum, ObjectChecksum, ObjectInfo, ObjectRef, PartNumber};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The most parts whose sizes are asked one by one (HEAD `?partNumber=`) to learn an uneven layout.
const MAX_PARTS_ASKED: u32 = 1000;

/// What a download's bytes are checked against, besides the CRC-64 (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub(super) struct Expected {
    /// The object's CRC-32C.
    checksum: Option<ObjectChecksum>,
    /// The ETag, lowercase, when it is an MD5 (`hex`) or a multipart MD5 (`hex-N`).
    md5: Option<String>,
    /// The BLAKE3 the object is labelled with.
    blake3: Option<blake3::Hash>,
    /// The sizes of the parts the chosen reference is made of: the upload's parts for a composite CRC-32C or a
    /// multipart ETag, else the whole object as one.
    layout: Vec<u64>,
    /// Whether `layout` is every part as the store reported it, not an even layout inferred from two.
    exact: bool,
}

impl Expected {
    /// True when nothing is to be checked.
    pub(super) fn is_empty(&self) -> bool {
        self.checksum.is_none() && self.md5.is_none() && self.blake3.is_none()
    }

    /// Whether the reference depends on the upload's part layout.
    fn layout_bound(&self) -> bool {
        self.layout.len() > 1
    }
}

impl Engine {
    /// What `head`'s bytes can be checked against. `crc64_checked`: the CRC-64 already was (the store's
    /// checksums are then not needed; a BLAKE3 label still is).
    pub(super) async fn expected(
        &self,
        source: &ObjectRef,
        head: &ObjectInfo,
        crc64_checked: bool,
    ) -> Result<Expected> {
        let mut e = Expected { blake3: self.labelled_blake3(source, head).await?, ..Expected::default() };
        let mut parts = 1;
        if !crc64_checked {
            if let Some(c) = head.checksum {
                parts = c.composite_parts.unwrap_or(1);
                e.checksum = Some(c);
            } else if head.etag_is_md5() {
                e.md5 = Some(head.etag.trim_matches('"').to_ascii_lowercase());
            } else if let Some(n) = head.multipart_etag_parts() {
                parts = n;
                e.md5 = Some(head.etag.trim_matches('"').to_ascii_lowercase());
            }
        }
        e.layout = vec![head.size];
        e.exact = true;
        if parts > 1 {
            match self.upload_layout(source, head, parts, false).await? {
                Some(layout) => (e.layout, e.exact) = (layout, false),
                None => {
                    tracing::debug!(%source, "the store does not tell the object's part layout: its checksum is not checked");
                    (e.checksum, e.md5) = (None, None);
                }
            }
        }
        Ok(e)
    }

    /// The BLAKE3 the object is labelled with, by the metadata or the tag [`DigestOptions`](super::DigestOptions)
    /// names.
    async fn labelled_blake3(&self, source: &ObjectRef, head: &ObjectInfo) -> Result<Option<blake3::Hash>> {
        let opts = &self.inner.config.digest;
        let mut label = opts.metadata.as_ref().and_then(|name| head.metadata.user.get(name)).cloned();
        if let (None, Some(name), true) = (&label, &opts.tag, head.tagging_count > 0) {
            let store = self.source_store();
            let tags = self
                .retrying("GetObjectTagging", |_| async {
                    let _slot = self.inner.scheduler.request().await;
                    store.get_tagging(source).await
                })
                .await;
            label = match tags {
                Ok(tags) => tags.get(name).map(str::to_owned),
                Err(e) if e.kind() == ErrorKind::Stopped => return Err(e),
                Err(e) => {
                    tracing::warn!(%source, error = %e, "cannot read the object's tags: its BLAKE3 label is not checked");
                    None
                }
            };
        }
        Ok(label.and_then(|hex| match blake3::Hash::from_hex(hex.trim()) {
            Ok(h) => Some(h),
            Err(_) => {
                tracing::warn!(%source, label = %hex, "the object's BLAKE3 label is not a BLAKE3 digest; not checked");
                None
            }
        }))
    }

    /// The sizes of the `parts` parts of the upload that wrote `head`, asked of the store: from part 1 and the
    /// last (an even layout), or every part when `exact`. `None` when the store does not tell.
    async fn upload_layout(
        &self,
        source: &ObjectRef,
        head: &ObjectInfo,
        parts: u32,
        exact: bool,
    ) -> Result<Option<Vec<u64>>> {
        let obj = super::download::pinned(source, head);
        let part_size = |n: u32| {
            let obj = &obj;
            async move {
                let number = PartNumber::new(n);
                let got = self
                    .retrying("HeadObject", |_| async {
                        let _slot = self.inner.scheduler.request().await;
                        self.source_store().head_part(obj, number).await
                    })
                    .await;
                // Not compared: the ETag (moto answers the part's own). A store that refuses the question (a
                // part number it does not take, a permission) leaves the layout unknown, not the download failed.
                match got {
                    Ok(info) if info.parts_count == Some(parts) => Ok(Some(info.size)),
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == ErrorKind::Stopped => Err(e),
                    Err(e) => {
                        tracing::debug!(%obj, error = %e, "HEAD of a part failed: the part layout is unknown");
                        Ok(None)
                    }
                }
            }
        };
        let Some(first) = part_size(1).await? else { return Ok(None) };
        let layout: Option<Vec<u64>> = if exact {
            let rest: Vec<Option<u64>> = futures::stream::iter(2..=parts)
                .map(part_size)
                .buffered(self.inner.config.plan.max_in_flight.max(1))
                .try_collect()
                .await?;
            std::iter::once(Some(first)).chain(rest).collect()
        } else {
            let before_last = u64::from(parts - 1) * first;
            let last = head.size.checked_sub(before_last).filter(|l| (1..=first).contains(l));
            match last {
                Some(last) if part_size(parts).await? == Some(last) => {
                    Some((1..=parts).map(|n| if n == parts { last } else { first }).collect())
                }
                // Not an even layout: asked part by part, where that is a bounded cost.
                _ if parts <= MAX_PARTS_ASKED => return Box::pin(self.upload_layout(source, head, parts, true)).await,
                _ => None,
            }
        };
        Ok(layout.filter(|sizes| sizes.iter().sum::<u64>() == head.size))
    }

    /// Checks the object's `head.size` bytes in `file` against `expected`: from the CRC-32Cs of the parts that
    /// wrote it (`parts`: size and CRC-32C of each, in order; empty when unknown) where they tell it, else read
    /// back once (in 1 MiB slices, under the memory budget). A mismatch under an inferred layout is checked again
    /// under the exact one before it is believed.
    pub(super) async fn check_file(
        &self,
        source: &ObjectRef,
        head: &ObjectInfo,
        (file, parts): (&std::sync::Arc<File>, &[(u64, u32)]),
        mut expected: Expected,
    ) -> Result<Checked> {
        loop {
            if let Some(checked) = from_parts(&expected, parts) {
                match self.believed(source, head, &expected, checked).await? {
                    Believed::Yes(checked) | Believed::Unverified(checked) => return Ok(checked),
                    Believed::Recheck(exact, _) => expected = exact,
                }
                continue;
            }
            let _memory = self.inner.scheduler.memory((1 << 20).min(head.size).max(1)).await;
            let (file, size, mut v) = (file.clone(), head.size, Verifier::new(&expected));
            let checked = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; (1 << 20).min(size as usize).max(1)];
                let mut offset = 0;
                while offset < size {
                    let n = (buf.len() as u64).min(size - offset) as usize;
                    file.read_exact_at(&mut buf[..n], offset)?;
                    v.update(&buf[..n]);
                    offset += n as u64;
                }
                Ok::<_, Error>(v.finish())
            })
            .await??;
            match self.believed(source, head, &expected, checked).await? {
                Believed::Yes(checked) => return Ok(checked),
                Believed::Recheck(exact, _) => expected = exact,
                Believed::Unverified(checked) => return Ok(checked),
            }
        }
    }

    /// Whether a check's mismatch stands: always, unless it was made under an inferred layout that the exact
    /// one contradicts (a file is then checked again; a stream, whose bytes are gone, is left unverified).
    pub(super) async fn believed(
        &self,
        source: &ObjectRef,
        head: &ObjectInfo,
        expected: &Expected,
        checked: Checked,
    ) -> Result<Believed> {
        if !checked.mismatches.iter().any(|m| m.layout_bound) || expected.exact {
            return Ok(Believed::Yes(checked.soft_mismatch_unverified(source)));
        }
        let parts = expected.layout.len() as u32;
        let exact = self.upload_layout(source, head, parts, true).await?;
        match exact {
            Some(layout) if layout == expected.layout => Ok(Believed::Yes(checked.soft_mismatch_unverified(source))),
            Some(layout) => Ok(Believed::Recheck(
                Expected { layout, exact: true, ..expected.clone() },
                checked.without_layout_bound(),
            )),
            None => Ok(Believed::Unverified(checked.without_layout_bound())),
        }
    }
}

/// The check of `expected` made from the CRC-32Cs of the parts written (size and CRC-32C, in order), without
/// reading the bytes again: when the object's CRC-32C is the only reference, and it is of the whole object
/// (the parts' CRCs combine into it) or composite over parts the same as these. `None` otherwise.
fn from_parts(expected: &Expected, parts: &[(u64, u32)]) -> Option<Checked> {
    let want = expected.checksum.filter(|_| expected.md5.is_none() && expected.blake3.is_none())?;
    if parts.is_empty() {
        return None;
    }
    let got = match want.composite_parts {
        None => parts.iter().fold(0, |acc, &(len, crc)| crc32c::crc32c_combine(acc, crc, len as usize)),
        Some(_) if parts.iter().map(|p| p.0).eq(expected.layout.iter().copied()) => {
            let crcs: Vec<u8> = parts.iter().flat_map(|p| p.1.to_be_bytes()).collect();
            crc32c::crc32c(&crcs)
        }
        Some(_) => return None,
    };
    let got = Checksum::Crc32c(got);
    let verified = Verified { checksum: got == want.value, ..Verified::default() };
    let mut mismatches = Vec::new();
    if !verified.checksum {
        let what = format!("CRC-32C {}, not the object's {}", got.value(), want.value.value());
        mismatches.push(Mismatch { what, layout_bound: want.composite_parts.is_some(), soft: false });
    }
    Some(Checked::new(verified, mismatches, None))
}

/// What [`Engine::believed`] concluded.
pub(super) enum Believed {
    /// The check stands, match or mismatch.
    Yes(Checked),
    /// The layout was not the inferred one: check again under this one (or, where the bytes are gone, keep
    /// what did not depend on the layout).
    Recheck(Expected, Checked),
    /// The layout cannot be known: what depends on it is not verified either way.
    Unverified(Checked),
}

/// A mismatch: what was found instead of what.
#[derive(Debug, Clone)]
pub(super) struct Mismatch {
    /// "CRC-32C x, not the object's y".
    pub(super) what: String,
    /// Whether the reference depends on the upload's part layout.
    layout_bound: bool,
    /// Whether the reference is a convention rather than a contract (a multipart ETag).
    soft: bool,
}

/// The result of a check.
#[derive(Debug, Clone, Default)]
pub(super) struct Checked {
    /// What matched.
    pub(super) verified: Verified,
    /// Every reference that did not, contracts before conventions.
    mismatches: Vec<Mismatch>,
    /// The bytes' BLAKE3, when it was computed.
    pub(super) blake3: Option<blake3::Hash>,
}

impl Checked {
    fn new(verified: Verified, mut mismatches: Vec<Mismatch>, blake3: Option<blake3::Hash>) -> Checked {
        mismatches.sort_by_key(|m| m.soft);
        Checked { verified, mismatches, blake3 }
    }

    /// What did not match, the first contract first; `None` when nothing failed.
    pub(super) fn mismatch(&self) -> Option<&str> {
        self.mismatches.first().map(|m| m.what.as_str())
    }

    /// The check, with a mismatch against a convention (a multipart ETag) turned into "not verified", said.
    fn soft_mismatch_unverified(mut self, source: &ObjectRef) -> Checked {
        for m in self.mismatches.extract_if(.., |m| m.soft) {
            tracing::warn!(%source, "the bytes have the {}: the store does not make multipart ETags by a rule we know, so they are not verified by it", m.what);
        }
        self
    }

    /// The check without what depended on a layout that cannot be known (what else failed still stands).
    fn without_layout_bound(mut self) -> Checked {
        self.mismatches.retain(|m| !m.layout_bound);
        self
    }
}

/// Takes an object's bytes in order and checks them against an [`Expected`] at the end.
pub(super) struct Verifier {
    checksum: Option<ObjectChecksum>,
    md5: Option<String>,
    blake3: Option<(blake3::Hash, Box<blake3::Hasher>)>,
    layout: Vec<u64>,
    /// The part being taken, and the bytes it still lacks.
    part: usize,
    left: u64,
    part_crc: u32,
    part_md5: Md5,
    /// The finished parts' CRC-32Cs (big-endian) and MD5s, concatenated.
    crcs: Vec<u8>,
    md5s: Vec<u8>,
    /// Bytes taken.
    taken: u64,
}

impl Verifier {
    pub(super) fn new(e: &Expected) -> Verifier {
        let (crcs, md5s) = match e.layout_bound() {
            true => (4 * e.layout.len(), 16 * e.layout.len()),
            false => (4, 16),
        };
        Verifier {
            checksum: e.checksum,
            md5: e.md5.clone(),
            blake3: e.blake3.map(|h| (h, Box::default())),
            left: e.layout.first().copied().unwrap_or(0),
            layout: e.layout.clone(),
            part: 0,
            part_crc: 0,
            part_md5: Md5::new(),
            crcs: Vec::with_capacity(crcs),
            md5s: Vec::with_capacity(md5s),
            taken: 0,
        }
    }

    /// Takes the next bytes.
    pub(super) fn update(&mut self, mut data: &[u8]) {
        self.taken += data.len() as u64;
        if let Some((_, h)) = &mut self.blake3 {
            h.update(data);
        }
        if self.checksum.is_none() && self.md5.is_none() {
            return;
        }
        while !data.is_empty() {
            while self.left == 0 && self.part < self.layout.len() {
                self.close_part();
            }
            if self.part >= self.layout.len() {
                return; // Past the layout's end: the length check says so.
            }
            let n = (self.left as usize).min(data.len());
            let (now, rest) = data.split_at(n);
            if self.checksum.is_some() {
                self.part_crc = crc32c::crc32c_append(self.part_crc, now);
            }
            if self.md5.is_some() {
                self.part_md5.update(now);
            }
            self.left -= n as u64;
            data = rest;
        }
    }

    fn close_part(&mut self) {
        self.crcs.extend_from_slice(&std::mem::take(&mut self.part_crc).to_be_bytes());
        self.md5s.extend_from_slice(&std::mem::take(&mut self.part_md5).finalize());
        self.part += 1;
        self.left = self.layout.get(self.part).copied().unwrap_or(0);
    }

    /// The result, once every byte was taken.
    pub(super) fn finish(mut self) -> Checked {
        while self.part < self.layout.len() {
            self.close_part();
        }
        let layout_bound = self.layout.len() > 1;
        let (mut verified, mut mismatches) = (Verified::default(), Vec::new());
        let want = self.layout.iter().sum::<u64>();
        if self.taken != want {
            let what = format!("length {}, not the object's {want} bytes", self.taken);
            mismatches.push(Mismatch { what, layout_bound: false, soft: false });
        }
        if let Some(want) = self.checksum {
            // Composite: the CRC of the parts' CRCs; else the one part's, which is the whole object.
            let got = Checksum::Crc32c(match want.composite_parts {
                Some(_) => crc32c::crc32c(&self.crcs),
                None => u32::from_be_bytes(first4(&self.crcs)),
            });
            verified.checksum = got == want.value;
            if !verified.checksum {
                let what = format!("CRC-32C {}, not the object's {}", got.value(), want.value.value());
                mismatches.push(Mismatch { what, layout_bound: want.composite_parts.is_some(), soft: false });
            }
        }
        if let Some(want) = &self.md5 {
            // A multipart ETag (`-N`, one part included) is made of the parts' MD5s; a plain one is the bytes'.
            let multipart = want.contains('-');
            let got = match multipart {
                true => format!("{}-{}", hex::encode(Md5::digest(&self.md5s)), self.layout.len()),
                false => hex::encode(&self.md5s[..16]),
            };
            // OSS's rule: the MD5 of the parts' MD5s in upper-case hex, one after the other.
            let oss = || {
                let hexes: String = self.md5s.chunks(16).map(hex::encode_upper).collect();
                format!("{}-{}", hex::encode(Md5::digest(hexes.as_bytes())), self.layout.len())
            };
            verified.md5 = &got == want || (multipart && &oss() == want);
            if !verified.md5 {
                let what = format!("MD5 {got}, not the ETag {want}");
                mismatches.push(Mismatch { what, layout_bound, soft: multipart });
            }
        }
        let mut blake3 = None;
        if let Some((want, h)) = self.blake3 {
            let got = h.finalize();
            verified.blake3 = got == want;
            if !verified.blake3 {
                let what = format!("BLAKE3 {got}, not the {want} the object is labelled with");
                mismatches.push(Mismatch { what, layout_bound: false, soft: false });
            }
            blake3 = Some(got);
        }
        Checked::new(verified, mismatches, blake3)
    }
}

fn first4(b: &[u8]) -> [u8; 4] {
    let mut a = [0; 4];
    a.copy_from_slice(&b[..4]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(etag: &str, encryption: Option<&str>) -> ObjectInfo {
        ObjectInfo {
            size: 0,
            etag: etag.into(),
            last_modified: 0,
            crc64: None,
            object_type: crate::store::ObjectType::Normal,
            version_id: None,
            tagging_count: 0,
            next_append_position: None,
            metadata: Default::default(),
            restore: None,
            encryption: encryption.map(str::to_owned),
            checksum: None,
            parts_count: None,
        }
    }

    #[test]
    fn only_plain_md5_etags_of_objects_not_under_kms_are_checked_as_md5s() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert!(head(&format!("\"{md5}\""), None).etag_is_md5());
        assert!(head(md5, Some("AES256")).etag_is_md5());
        assert!(!head(md5, Some("aws:kms")).etag_is_md5() && !head(md5, Some("SSE-C")).etag_is_md5());
        assert!(!head(&format!("{md5}-2"), None).etag_is_md5() && !head("not-an-md5", None).etag_is_md5());
        assert_eq!(head(&format!("\"{md5}-12\""), None).multipart_etag_parts(), Some(12));
        assert_eq!(head(&format!("{md5}-2"), Some("AES256")).multipart_etag_parts(), Some(2));
        assert_eq!(head(&format!("{md5}-2"), Some("aws:kms")).multipart_etag_parts(), None);
        assert_eq!(head(&format!("{md5}-0"), None).multipart_etag_parts(), None);
        assert_eq!(head(md5, None).multipart_etag_parts(), None);
        assert_eq!(head("abc-2", None).multipart_etag_parts(), None);
    }

    /// Feeds `data` in slices of `slice` bytes (crossing part boundaries anywhere).
    fn check(e: &Expected, data: &[u8], slice: usize) -> Checked {
        let mut v = Verifier::new(e);
        data.chunks(slice.max(1)).for_each(|c| v.update(c));
        v.finish()
    }

    fn layout(sizes: &[u64]) -> Expected {
        Expected { layout: sizes.to_vec(), exact: true, ..Expected::default() }
    }

    #[test]
    fn multipart_etags_and_composite_checksums_are_made_of_the_parts() {
        let data: Vec<u8> = (0..25_000u32).map(|i| (i * 31 + i / 97) as u8).collect();
        let sizes = [10_000u64, 10_000, 5_000];
        let parts: Vec<&[u8]> = vec![&data[..10_000], &data[10_000..20_000], &data[20_000..]];
        // S3's multipart ETag: the MD5 of the parts' binary MD5s, then -N.
        let md5s: Vec<u8> = parts.iter().flat_map(|p| Md5::digest(p).to_vec()).collect();
        let s3_etag = format!("{}-3", hex::encode(Md5::digest(&md5s)));
        // OSS's: the MD5 of the parts' upper-case hex MD5s.
        let hexes: String = parts.iter().map(|p| hex::encode_upper(Md5::digest(p))).collect();
        let oss_etag = format!("{}-3", hex::encode(Md5::digest(hexes.as_bytes())));
        // A composite CRC-32C: the CRC-32C of the parts' big-endian CRC-32Cs.
        let crcs: Vec<u8> = parts.iter().flat_map(|p| crc32c::crc32c(p).to_be_bytes()).collect();
        let composite = ObjectChecksum { value: Checksum::Crc32c(crc32c::crc32c(&crcs)), composite_parts: Some(3) };
        for slice in [1, 999, 10_000, 25_000] {
            for etag in [&s3_etag, &oss_etag] {
                let c = check(&Expected { md5: Some(etag.clone()), ..layout(&sizes) }, &data, slice);
                assert!(c.verified.md5 && c.mismatch().is_none(), "{etag} in slices of {slice}");
            }
            let c = check(&Expected { checksum: Some(composite), ..layout(&sizes) }, &data, slice);
            assert!(c.verified.checksum && c.mismatch().is_none(), "composite in slices of {slice}");
        }
        // One byte changed: each reference says so; the ETag's mismatch is soft (a convention), the CRC's not.
        let mut bad = data.clone();
        bad[15_000] ^= 1;
        let c = check(&Expected { md5: Some(s3_etag.clone()), ..layout(&sizes) }, &bad, 4096);
        let m = &c.mismatches[0];
        assert!(!c.verified.md5 && m.soft && m.layout_bound, "{m:?}");
        let c = check(&Expected { checksum: Some(composite), ..layout(&sizes) }, &bad, 4096);
        let m = &c.mismatches[0];
        assert!(!c.verified.checksum && !m.soft && m.layout_bound, "{m:?}");
        // Under another layout the same bytes do not match: the layout is part of the reference.
        let c = check(&Expected { checksum: Some(composite), ..layout(&[12_500, 12_500]) }, &data, 4096);
        assert!(c.mismatch().is_some());
    }

    #[test]
    fn full_object_checksums_md5s_and_blake3_labels_cover_every_byte() {
        let data = vec![7u8; 3000];
        let full = ObjectChecksum { value: Checksum::crc32c(&data), composite_parts: None };
        let md5 = hex::encode(Md5::digest(&data));
        let e = Expected { checksum: Some(full), blake3: Some(blake3::hash(&data)), ..layout(&[3000]) };
        let c = check(&e, &data, 1000);
        assert!(c.verified.checksum && c.verified.blake3 && c.mismatch().is_none());
        assert_eq!(c.blake3, Some(blake3::hash(&data)));
        let c = check(&Expected { md5: Some(md5.clone()), ..layout(&[3000]) }, &data, 7);
        assert!(c.verified.md5 && c.mismatch().is_none());
        // Short and long bodies are mismatches of length, whatever else matches.
        let c = check(&Expected { md5: Some(md5), ..layout(&[3000]) }, &data[..2999], 7);
        assert!(c.mismatch().unwrap().contains("length 2999"));
        let c = check(&e, &[data.as_slice(), b"x"].concat(), 1000);
        assert!(c.mismatch().is_some());
        // A contract's mismatch comes before a convention's.
        let wrong = blake3::hash(b"other");
        let mut md5s = Expected { md5: Some("00".repeat(16) + "-2"), blake3: Some(wrong), ..layout(&[1500, 1500]) };
        let c = check(&md5s, &data, 100);
        assert!(!c.mismatches[0].soft, "the BLAKE3 mismatch is the one reported");
        md5s.blake3 = None;
        assert!(check(&md5s, &data, 100).mismatches[0].soft);
        // Nothing to check: nothing verified, nothing refused.
        let c = check(&layout(&[3000]), &data, 100);
        assert!(!c.verified.any() && c.mismatch().is_none());
    }

    #[test]
    fn the_parts_crc32cs_check_the_object_without_reading_it_again() {
        let data: Vec<u8> = (0..30_000u32).map(|i| (i * 13 + i / 101) as u8).collect();
        let written = |size: usize| -> Vec<(u64, u32)> {
            data.chunks(size).map(|c| (c.len() as u64, crc32c::crc32c(c))).collect()
        };
        let full = ObjectChecksum { value: Checksum::crc32c(&data), composite_parts: None };
        for size in [1000, 7000, 30_000] {
            let c = from_parts(&Expected { checksum: Some(full), ..layout(&[30_000]) }, &written(size)).unwrap();
            assert!(c.verified.checksum && c.mismatch().is_none(), "whole-object CRC-32C from parts of {size}");
        }
        let uploaded = written(12_000);
        let crcs: Vec<u8> = uploaded.iter().flat_map(|p| p.1.to_be_bytes()).collect();
        let composite = ObjectChecksum { value: Checksum::Crc32c(crc32c::crc32c(&crcs)), composite_parts: Some(3) };
        let e = Expected { checksum: Some(composite), ..layout(&[12_000, 12_000, 6000]) };
        assert!(from_parts(&e, &uploaded).unwrap().verified.checksum, "the download's parts are the upload's");
        assert!(from_parts(&e, &written(10_000)).is_none(), "other parts: read back");
        let mut damaged = uploaded.clone();
        damaged[1].1 ^= 1;
        let c = from_parts(&e, &damaged).unwrap();
        assert!(c.mismatches[0].layout_bound && !c.mismatches[0].soft, "{c:?}");
        // Anything else to check (an MD5, a BLAKE3 label) needs the bytes.
        let e = Expected { checksum: Some(full), blake3: Some(blake3::hash(&data)), ..layout(&[30_000]) };
        assert!(from_parts(&e, &written(1000)).is_none());
        assert!(from_parts(&Expected { checksum: Some(full), ..layout(&[30_000]) }, &[]).is_none());
    }

    #[test]
    fn a_multipart_etag_of_one_part_is_the_md5_of_its_md5() {
        let data = vec![3u8; 5000];
        let etag = format!("{}-1", hex::encode(Md5::digest(Md5::digest(&data))));
        let c = check(&Expected { md5: Some(etag), ..layout(&[5000]) }, &data, 999);
        assert!(c.verified.md5 && c.mismatch().is_none(), "{c:?}");
    }

    #[test]
    fn forgetting_what_depended_on_an_unknown_layout_keeps_every_other_mismatch() {
        let data = vec![5u8; 3000];
        let composite = ObjectChecksum { value: Checksum::Crc32c(1), composite_parts: Some(2) };
        let e = Expected { checksum: Some(composite), blake3: Some(blake3::hash(b"x")), ..layout(&[1500, 1500]) };
        let c = check(&e, &data, 700).without_layout_bound();
        assert!(c.mismatch().is_some_and(|m| m.contains("BLAKE3")), "{c:?}");
    }
}
