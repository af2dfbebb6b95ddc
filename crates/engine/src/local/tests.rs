//! Tests of the local store: objects, ranges, metadata and tags, listing, copy, buckets, failed bodies, refused
//! input, restart and crash sweeping. Shared helpers live here too.

use super::*;
use crate::crc64::checksum;
use crate::meta::{Metadata, StorageClass};
use crate::store::{ByteRange, Directive, ListRequest, ObjectType};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use tempfile::TempDir;

pub(super) const B: &str = "bkt";

/// A store in a fresh directory with bucket [`B`].
pub(super) async fn store() -> (TempDir, LocalStore) {
    let dir = TempDir::new().unwrap();
    let s = LocalStore::open(dir.path().join("root")).unwrap();
    s.create_bucket(B).await.unwrap();
    (dir, s)
}

pub(super) fn obj(key: &str) -> ObjectRef {
    ObjectRef::new(B, key)
}

pub(super) fn md5_hex(data: &[u8]) -> String {
    hex::encode_upper(Md5::digest(data))
}

pub(super) async fn put(s: &LocalStore, key: &str, data: &'static [u8]) -> PutResult {
    s.put_object(B, key, Body::from(data), &PutOptions::default()).await.unwrap()
}

pub(super) async fn read(s: &LocalStore, o: &ObjectRef) -> Vec<u8> {
    s.get_object(o, None).await.unwrap().bytes().await.unwrap().to_vec()
}

/// The (status, code) of a service error.
pub(super) fn code(e: &Error) -> (u16, String) {
    (e.status().unwrap_or(0), e.service_code().unwrap_or("").to_owned())
}

pub(super) fn seed_tags() -> TagSet {
    TagSet::from_pairs([("k1", "v1"), ("k2", "v2"), ("k3", "v3"), ("k4+-=", "+-=._:/")]).unwrap()
}

/// Everything on disk that matters: every index row and every file (path, size) outside the database files.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub rows: Vec<String>,
    pub files: BTreeMap<String, u64>,
}

pub(super) fn snapshot(s: &LocalStore) -> Snapshot {
    let conn = s.inner.conn.lock().unwrap();
    let mut rows = Vec::new();
    for t in ["buckets", "versions", "uploads", "parts"] {
        let mut st = conn.prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2")).unwrap();
        let n = st.column_count();
        let mut q = st.query([]).unwrap();
        while let Some(r) = q.next().unwrap() {
            let vals: Vec<String> = (0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect();
            rows.push(format!("{t}: {}", vals.join(" | ")));
        }
    }
    let mut files = BTreeMap::new();
    let root = s.root().to_owned();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if !rel.starts_with("index.db") && rel != ".lock" && rel != ".reserve" {
                files.insert(rel, e.metadata().unwrap().len());
            }
        }
    }
    Snapshot { rows, files }
}

/// Files under `<root>/<dir>`, recursively.
pub(super) fn files_under(s: &LocalStore, dir: &str) -> usize {
    snapshot(s).files.keys().filter(|k| k.starts_with(dir)).count()
}

#[tokio::test]
async fn put_head_get_and_ranges() {
    let (_d, s) = store().await;
    let data = b"hello world";
    let r = put(&s, "dir/a.txt", data).await;
    assert_eq!(r.etag, md5_hex(data));
    assert_eq!(r.crc64, Some(checksum(data)));
    assert_eq!(r.version_id, None);
    let info = s.head_object(&obj("dir/a.txt")).await.unwrap();
    assert_eq!((info.size, info.etag.as_str(), info.crc64), (11, r.etag.as_str(), Some(5981764153023615706)));
    assert_eq!(info.object_type, ObjectType::Normal);
    assert_eq!(info.metadata.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(info.metadata.storage_class, Some(StorageClass::Standard));
    assert_eq!((info.tagging_count, info.next_append_position, info.version_id), (0, None, None));
    assert!((info.last_modified - chrono::Utc::now().timestamp()).abs() < 5);
    assert_eq!(read(&s, &obj("dir/a.txt")).await, data);

    let g = s.get_object(&obj("dir/a.txt"), Some(ByteRange::inclusive(6, 10))).await.unwrap();
    assert_eq!(g.range, Some((6, 10)));
    assert_eq!(g.info.size, 11);
    assert_eq!(g.bytes().await.unwrap(), Bytes::from_static(b"world"));
    let g = s.get_object(&obj("dir/a.txt"), Some(ByteRange::inclusive(2, 1000))).await.unwrap();
    assert_eq!(g.range, Some((2, 10)));
    assert_eq!(g.bytes().await.unwrap(), Bytes::from_static(b"llo world"));
    let g = s.get_object(&obj("dir/a.txt"), Some(ByteRange { first: 4, last: None })).await.unwrap();
    assert_eq!(g.bytes().await.unwrap(), Bytes::from_static(b"o world"));
    let e = s.get_object(&obj("dir/a.txt"), Some(ByteRange::at(11, 1))).await.unwrap_err();
    assert_eq!(code(&e), (416, "InvalidRange".into()));

    put(&s, "empty", b"").await;
    let g = s.get_object(&obj("empty"), None).await.unwrap();
    assert_eq!((g.range, g.info.size, g.info.crc64), (None, 0, Some(0)));
    assert!(g.bytes().await.unwrap().is_empty());
    let e = s.get_object(&obj("empty"), Some(ByteRange::at(0, 1))).await.unwrap_err();
    assert_eq!(code(&e), (416, "InvalidRange".into()));

    let e = s.head_object(&obj("nope")).await.unwrap_err();
    assert_eq!(code(&e), (404, "NoSuchKey".into()));
    let e = s.get_object(&ObjectRef::new("no-bucket", "k"), None).await.unwrap_err();
    assert_eq!(code(&e), (404, "NoSuchBucket".into()));
    let meta = s.get_object_meta(&obj("dir/a.txt")).await.unwrap();
    assert_eq!((meta.size, meta.etag, meta.crc64, meta.version_id), (11, r.etag, r.crc64, None));
}

#[tokio::test]
async fn large_bodies_stream_in_and_out_in_chunks() {
    let (_d, s) = store().await;
    let data: Vec<u8> = (0..(1 << 20) + 3).map(|i| (i * 7 % 251) as u8).collect();
    let chunks: Vec<Result<Bytes>> = data.chunks(100_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let body = Body::from_stream(data.len() as u64, stream::iter(chunks).boxed());
    let r = s.put_object(B, "big", body, &PutOptions::default()).await.unwrap();
    assert_eq!(r.crc64, Some(checksum(&data)));
    assert_eq!(r.etag, md5_hex(&data));
    let g = s.get_object(&obj("big"), None).await.unwrap();
    let pieces: Vec<Bytes> = g.body.map(|c| c.unwrap()).collect().await;
    assert!(pieces.len() >= 4 && pieces.iter().all(|p| p.len() <= blobs::CHUNK), "{}", pieces.len());
    assert_eq!(pieces.concat(), data);
    let g = s.get_object(&obj("big"), Some(ByteRange::inclusive(300_000, 700_000))).await.unwrap();
    assert_eq!(g.bytes().await.unwrap(), &data[300_000..=700_000]);
}

#[tokio::test]
async fn metadata_and_tags_round_trip() {
    let (_d, s) = store().await;
    let mut meta = Metadata::with_user([("Owner", "me"), ("x-y", "1 2")]).unwrap();
    meta.content_type = Some("text/plain".into());
    meta.cache_control = Some("no-cache".into());
    meta.content_disposition = Some("attachment; filename=\"a.txt\"".into());
    meta.storage_class = Some(StorageClass::InfrequentAccess);
    let opts = PutOptions { metadata: meta.clone(), tags: Some(seed_tags()), ..Default::default() };
    s.put_object(B, "m", Body::from("x"), &opts).await.unwrap();
    let info = s.head_object(&obj("m")).await.unwrap();
    assert_eq!(info.metadata, meta);
    assert_eq!(info.tagging_count, 4);
    let tags = s.get_tagging(&obj("m")).await.unwrap();
    assert_eq!(tags, seed_tags());
    assert_eq!(tags.get("k4+-="), Some("+-=._:/"));

    let new = TagSet::from_pairs([("a b", "c d")]).unwrap();
    assert_eq!(s.put_tagging(&obj("m"), &new).await.unwrap(), None);
    assert_eq!(s.get_tagging(&obj("m")).await.unwrap(), new);
    assert_eq!(s.head_object(&obj("m")).await.unwrap().tagging_count, 1);
    s.delete_tagging(&obj("m")).await.unwrap();
    assert!(s.get_tagging(&obj("m")).await.unwrap().is_empty());
    let e = s.put_tagging(&obj("missing"), &new).await.unwrap_err();
    assert_eq!(code(&e), (404, "NoSuchKey".into()));

    let bad = Metadata { user: [("bad_name".to_owned(), "v".to_owned())].into(), ..Default::default() };
    let before = snapshot(&s);
    let e =
        s.put_object(B, "m2", Body::from("x"), &PutOptions { metadata: bad, ..Default::default() }).await.unwrap_err();
    assert!(e.to_string().contains("bad_name"), "{e}");
    assert_eq!(snapshot(&s), before);
}

fn digest_mismatch(got: &[u8; 16]) -> Error {
    Error::code(400, "InvalidDigest", "mismatch").with_extra("CalculatedDigest", hex::encode(got))
}

#[tokio::test]
async fn a_body_md5_check_is_applied_to_the_md5_the_store_computes() {
    let (_d, s) = store().await;
    put(&s, "kept", b"old").await;
    let before = snapshot(&s);
    let data: Vec<u8> = (0..(600 << 10)).map(|i| (i % 241) as u8).collect();
    let body = |check: [u8; 16]| {
        let chunks: Vec<Result<Bytes>> = data.chunks(70_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Body::from_stream(data.len() as u64, stream::iter(chunks).boxed())
            .with_md5_check(crate::store::Md5Check { expected: check, mismatch: digest_mismatch })
    };
    let right: [u8; 16] = Md5::digest(&data).into();
    for key in ["new", "kept"] {
        let e = s.put_object(B, key, body([7; 16]), &PutOptions::default()).await.unwrap_err();
        let se = e.service_error().unwrap();
        assert_eq!(
            (se.code.as_str(), se.extra("CalculatedDigest")),
            ("InvalidDigest", Some(hex::encode(right).as_str()))
        );
        assert_eq!(snapshot(&s), before);
    }
    let id = s.initiate_multipart(B, "mp", &PutOptions::default()).await.unwrap();
    let with_upload = snapshot(&s);
    assert!(s.upload_part(id.part(1), body([7; 16])).await.is_err());
    assert_eq!(snapshot(&s), with_upload);
    assert_eq!(s.upload_part(id.part(1), body(right)).await.unwrap().etag, md5_hex(&data));
    assert_eq!(s.put_object(B, "new", body(right), &PutOptions::default()).await.unwrap().etag, md5_hex(&data));
    assert_eq!(read(&s, &obj("new")).await, data);
}

#[tokio::test]
async fn a_body_that_fails_midway_leaves_nothing() {
    let (_d, s) = store().await;
    put(&s, "kept", b"old").await;
    let before = snapshot(&s);
    for key in ["new", "kept"] {
        let chunks: Vec<Result<Bytes>> =
            vec![Ok(Bytes::from_static(b"12345")), Err(Error::code(400, "InvalidDigest", "digest mismatch"))];
        let body = Body::from_stream(10, stream::iter(chunks).boxed());
        let e = s.put_object(B, key, body, &PutOptions::default()).await.unwrap_err();
        assert_eq!(e.service_code(), Some("InvalidDigest"));
        assert_eq!(snapshot(&s), before);
    }
    let short = Body::from_stream(10, stream::iter(vec![Ok(Bytes::from_static(b"123"))]).boxed());
    let e = s.put_object(B, "new", short, &PutOptions::default()).await.unwrap_err();
    assert_eq!(e.service_code(), Some("IncompleteBody"));
    assert_eq!(snapshot(&s), before);
    assert_eq!(code(&s.head_object(&obj("new")).await.unwrap_err()).1, "NoSuchKey");
    assert_eq!(read(&s, &obj("kept")).await, b"old");
    assert_eq!(files_under(&s, ".tmp"), 0);
}

#[tokio::test]
async fn a_write_that_meets_a_full_disk_is_507_and_the_store_takes_writes_once_there_is_room() {
    let (_d, s) = store().await;
    let reserve = s.root().join(".reserve");
    let len = || std::fs::metadata(&reserve).map_or(0, |m| m.len());
    assert_eq!(len(), LocalOptions::default().reserve);
    // A body whose write fails as a full disk fails it (ENOSPC from the filesystem reads the same).
    let enospc = Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull));
    let body = Body::from_stream(10, stream::iter(vec![Ok(Bytes::from_static(b"12345")), Err(enospc)]).boxed());
    let e = s.put_object(B, "new", body, &PutOptions::default()).await.unwrap_err();
    assert_eq!(
        (code(&e).0, code(&e).1.as_str(), e.kind()),
        (507, "InsufficientStorage", ErrorKind::InsufficientStorage)
    );
    assert!(!e.is_retryable());
    assert!(e.message().contains(&s.root().display().to_string()), "{e}");
    assert_eq!(files_under(&s, ".tmp"), 0);
    // Full mode: half the reserve is given back to the index.
    assert!(s.inner.space.is_full());
    assert_eq!(len(), LocalOptions::default().reserve / 2);
    // This disk has room, so the next write finds it, makes the reserve whole and goes through.
    put(&s, "new", b"after").await;
    assert!(!s.inner.space.is_full());
    assert_eq!(len(), LocalOptions::default().reserve);
    assert_eq!(read(&s, &obj("new")).await, b"after");
    // Without a reserve (0), a full disk is still refused as such.
    let dir = TempDir::new().unwrap();
    let bare = LocalStore::open_with(dir.path(), LocalOptions::default().reserve(0)).unwrap();
    assert!(!dir.path().join(".reserve").exists());
    bare.create_bucket(B).await.unwrap();
    let enospc = Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull));
    let body = Body::from_stream(10, stream::iter(vec![Err(enospc)]).boxed());
    let e = bare.put_object(B, "k", body, &PutOptions::default()).await.unwrap_err();
    assert_eq!(code(&e).1, "InsufficientStorage");
}

#[tokio::test]
async fn refused_keys_change_nothing() {
    let (_d, s) = store().await;
    put(&s, "ok", b"1").await;
    let before = snapshot(&s);
    for key in ["../escape", "/abs", "a/../../b", "nul\0", ".."] {
        let e = s.put_object(B, key, Body::from("x"), &PutOptions::default()).await.unwrap_err();
        assert_eq!(code(&e), (400, "InvalidObjectName".into()), "{key:?}");
        let e = s.append_object(B, key, 0, Body::from("x"), &PutOptions::default()).await.unwrap_err();
        assert_eq!(code(&e).1, "InvalidObjectName");
        let e = s.initiate_multipart(B, key, &PutOptions::default()).await.unwrap_err();
        assert_eq!(code(&e).1, "InvalidObjectName");
        let e = s.copy_object(B, key, &CopyOptions::from(obj("ok"))).await.unwrap_err();
        assert_eq!(code(&e).1, "InvalidObjectName");
        let e = s.copy_object(B, "dst", &CopyOptions::from(obj(key))).await.unwrap_err();
        assert_eq!(code(&e).1, "InvalidObjectName");
        let e = s.put_symlink(B, "link", key, &PutOptions::default()).await.unwrap_err();
        assert_eq!(code(&e).1, "InvalidObjectName");
        assert_eq!(code(&s.delete_object(&obj(key)).await.unwrap_err()).1, "InvalidObjectName");
    }
    assert_eq!(snapshot(&s), before);
    // No file anywhere under the root outside the store's own directories.
    assert!(snapshot(&s).files.keys().all(|f| f.starts_with(".data/")), "{:?}", snapshot(&s).files);
}

#[tokio::test]
async fn listing_with_prefix_delimiter_and_pages() {
    let (_d, s) = store().await;
    for k in ["a", "b/1", "b/2", "b/c/3", "c", "d/x", "d/y", "e", "中/文"] {
        put(&s, k, b"x").await;
    }
    let list = |req: ListRequest| {
        let s = s.clone();
        async move { s.list_objects(B, &req).await.unwrap() }
    };
    let keys = |p: &ListPage| p.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>();
    let all = list(ListRequest::default()).await;
    assert_eq!(keys(&all), ["a", "b/1", "b/2", "b/c/3", "c", "d/x", "d/y", "e", "中/文"]);
    assert!(!all.is_truncated && all.next_continuation_token.is_none());
    assert_eq!(all.objects[0].size, 1);
    assert_eq!(all.objects[0].storage_class, StorageClass::Standard);

    let p = list(ListRequest { prefix: Some("b/".into()), ..Default::default() }).await;
    assert_eq!(keys(&p), ["b/1", "b/2", "b/c/3"]);
    let p = list(ListRequest { prefix: Some("b/".into()), delimiter: Some("/".into()), ..Default::default() }).await;
    assert_eq!((keys(&p), p.common_prefixes.clone()), (vec!["b/1".into(), "b/2".into()], vec!["b/c/".to_owned()]));
    let p = list(ListRequest { delimiter: Some("/".into()), ..Default::default() }).await;
    assert_eq!(keys(&p), ["a", "c", "e"]);
    assert_eq!(p.common_prefixes, ["b/", "d/", "中/"]);

    // Pages of 2 with a delimiter: common prefixes count toward the page and are never repeated.
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let req = ListRequest {
            delimiter: Some("/".into()),
            max_keys: Some(2),
            continuation_token: token.clone(),
            ..Default::default()
        };
        let p = list(req).await;
        pages += 1;
        assert!(p.objects.len() + p.common_prefixes.len() <= 2);
        seen.extend(keys(&p));
        seen.extend(p.common_prefixes.clone());
        if !p.is_truncated {
            break;
        }
        token = p.next_continuation_token.clone();
        assert!(token.is_some());
    }
    seen.sort();
    assert_eq!(seen, ["a", "b/", "c", "d/", "e", "中/"]);
    assert_eq!(pages, 3);

    let p = list(ListRequest { start_after: Some("b/2".into()), max_keys: Some(3), ..Default::default() }).await;
    assert_eq!(keys(&p), ["b/c/3", "c", "d/x"]);
    assert!(p.is_truncated);
    let p = list(ListRequest { continuation_token: p.next_continuation_token, ..Default::default() }).await;
    assert_eq!(keys(&p), ["d/y", "e", "中/文"]);
    let e = s
        .list_objects(B, &ListRequest { continuation_token: Some("%%%".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(code(&e), (400, "InvalidArgument".into()));
    let e = s.list_objects("nobucket", &ListRequest::default()).await.unwrap_err();
    assert_eq!(code(&e).1, "NoSuchBucket");
}

#[tokio::test]
async fn delete_missing_and_existing() {
    let (_d, s) = store().await;
    assert_eq!(s.delete_object(&obj("never")).await.unwrap(), DeleteResult::default());
    put(&s, "k", b"data").await;
    assert_eq!(files_under(&s, ".data"), 1);
    assert_eq!(s.delete_object(&obj("k")).await.unwrap(), DeleteResult::default());
    assert_eq!(code(&s.head_object(&obj("k")).await.unwrap_err()).1, "NoSuchKey");
    assert_eq!(files_under(&s, ".data"), 0);
    // Overwrite removes the old bytes' file.
    put(&s, "k", b"1").await;
    put(&s, "k", b"2").await;
    assert_eq!(files_under(&s, ".data"), 1);
    assert_eq!(read(&s, &obj("k")).await, b"2");
}

#[tokio::test]
async fn copy_with_both_directives() {
    let (_d, s) = store().await;
    let mut meta = Metadata::with_user([("a", "1")]).unwrap();
    meta.content_type = Some("text/x".into());
    let opts = PutOptions { metadata: meta.clone(), tags: Some(seed_tags()), ..Default::default() };
    let src = s.put_object(B, "src", Body::from("payload"), &opts).await.unwrap();

    let r = s.copy_object(B, "dst", &CopyOptions::from(obj("src"))).await.unwrap();
    assert_eq!((r.etag.as_str(), r.crc64), (src.etag.as_str(), src.crc64));
    let info = s.head_object(&obj("dst")).await.unwrap();
    assert_eq!(
        (info.metadata.user.clone(), info.metadata.content_type.clone()),
        (meta.user.clone(), meta.content_type)
    );
    assert_eq!(info.object_type, ObjectType::Normal);
    assert_eq!(s.get_tagging(&obj("dst")).await.unwrap(), seed_tags());
    assert_eq!(read(&s, &obj("dst")).await, b"payload");

    let new_meta = Metadata::with_user([("b", "2")]).unwrap();
    let new_tags = TagSet::from_pairs([("t", "1")]).unwrap();
    let mut o = CopyOptions::from(obj("src"));
    o.metadata = Directive::Replace(new_meta.clone());
    o.tagging = Directive::Replace(new_tags.clone());
    s.copy_object(B, "dst2", &o).await.unwrap();
    let info = s.head_object(&obj("dst2")).await.unwrap();
    assert_eq!(info.metadata.user, new_meta.user);
    assert_eq!(info.metadata.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(s.get_tagging(&obj("dst2")).await.unwrap(), new_tags);

    // Onto itself, replacing the metadata (how the V2 seed changes metadata).
    let mut o = CopyOptions::from(obj("src"));
    o.metadata = Directive::Replace(new_meta.clone());
    s.copy_object(B, "src", &o).await.unwrap();
    let info = s.head_object(&obj("src")).await.unwrap();
    assert_eq!((info.metadata.user, info.etag), (new_meta.user, src.etag.clone()));
    assert_eq!(read(&s, &obj("src")).await, b"payload");
    assert_eq!(s.get_tagging(&obj("src")).await.unwrap(), seed_tags());

    let before = snapshot(&s);
    let e = s.copy_object(B, "d3", &CopyOptions::from(obj("missing"))).await.unwrap_err();
    assert_eq!(code(&e), (404, "NoSuchKey".into()));
    let mut o = CopyOptions::from(obj("src"));
    o.conditions.if_match = Some("\"0000\"".into());
    assert_eq!(code(&s.copy_object(B, "d3", &o).await.unwrap_err()), (412, "PreconditionFailed".into()));
    let mut o = CopyOptions::from(obj("src"));
    o.conditions.if_none_match = Some(format!("\"{}\"", src.etag.to_lowercase()));
    assert_eq!(code(&s.copy_object(B, "d3", &o).await.unwrap_err()).0, 412);
    let mut o = CopyOptions::from(obj("src"));
    o.forbid_overwrite = true;
    let e = s.copy_object(B, "dst", &o).await.unwrap_err();
    assert_eq!(code(&e), (409, "FileAlreadyExists".into()));
    assert_eq!(snapshot(&s), before);
    let mut o = CopyOptions::from(obj("src"));
    o.conditions.if_match = Some(format!("\"{}\"", src.etag));
    s.copy_object(B, "d3", &o).await.unwrap();
}

#[tokio::test]
async fn copy_is_independent_of_later_appends_and_deletes() {
    let (_d, s) = store().await;
    s.append_object(B, "log", 0, Body::from("abc"), &PutOptions::default()).await.unwrap();
    s.copy_object(B, "snap", &CopyOptions::from(obj("log"))).await.unwrap();
    s.append_object(B, "log", 3, Body::from("def"), &PutOptions::default()).await.unwrap();
    assert_eq!(read(&s, &obj("snap")).await, b"abc");
    assert_eq!(s.head_object(&obj("snap")).await.unwrap().object_type, ObjectType::Normal);
    assert_eq!(s.head_object(&obj("snap")).await.unwrap().crc64, Some(checksum(b"abc")));
    s.delete_object(&obj("log")).await.unwrap();
    assert_eq!(read(&s, &obj("snap")).await, b"abc");
}

#[tokio::test]
async fn forbid_overwrite_on_put() {
    let (_d, s) = store().await;
    let opts = PutOptions { forbid_overwrite: true, ..Default::default() };
    s.put_object(B, "k", Body::from("1"), &opts).await.unwrap();
    let before = snapshot(&s);
    let e = s.put_object(B, "k", Body::from("2"), &opts).await.unwrap_err();
    assert_eq!(code(&e), (409, "FileAlreadyExists".into()));
    assert_eq!(e.service_error().unwrap().ec.as_deref(), Some("0026-00000002"));
    assert_eq!(snapshot(&s), before);
}

#[tokio::test]
async fn buckets() {
    let (_d, s) = store().await;
    assert_eq!(code(&s.create_bucket("Bad_Name").await.unwrap_err()).1, "InvalidBucketName");
    s.create_bucket(B).await.unwrap();
    s.create_bucket("zzz").await.unwrap();
    let names: Vec<String> = s.list_buckets().await.unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [B, "zzz"]);
    let e = s.put_object("missing", "k", Body::from("x"), &PutOptions::default()).await.unwrap_err();
    assert_eq!(code(&e), (404, "NoSuchBucket".into()));
    assert_eq!(
        code(&s.initiate_multipart("missing", "k", &PutOptions::default()).await.unwrap_err()).1,
        "NoSuchBucket"
    );
    assert_eq!(code(&s.get_versioning("missing").await.unwrap_err()).1, "NoSuchBucket");
    assert_eq!(code(&s.delete_bucket("missing").await.unwrap_err()).1, "NoSuchBucket");

    put(&s, "k", b"x").await;
    assert_eq!(code(&s.delete_bucket(B).await.unwrap_err()), (409, "BucketNotEmpty".into()));
    s.delete_object(&obj("k")).await.unwrap();
    let id = s.initiate_multipart(B, "k", &PutOptions::default()).await.unwrap();
    assert_eq!(code(&s.delete_bucket(B).await.unwrap_err()).1, "BucketNotEmpty");
    s.abort_multipart(&id).await.unwrap();
    s.delete_bucket(B).await.unwrap();
    assert_eq!(s.list_buckets().await.unwrap().len(), 1);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("store");
    let part = vec![b'p'; 102_400];
    let (upload, e1) = {
        let s = LocalStore::open_with(&root, LocalOptions::default().fsync(false)).unwrap();
        s.create_bucket(B).await.unwrap();
        s.create_bucket("vers").await.unwrap();
        s.put_versioning("vers", true).await.unwrap();
        let opts = PutOptions {
            tags: Some(seed_tags()),
            metadata: Metadata::with_user([("m", "1")]).unwrap(),
            ..Default::default()
        };
        s.put_object(B, "a", Body::from("alpha"), &opts).await.unwrap();
        let v1 = s.put_object("vers", "v", Body::from("one"), &PutOptions::default()).await.unwrap();
        s.put_object("vers", "v", Body::from("two"), &PutOptions::default()).await.unwrap();
        s.put_tagging(&ObjectRef::new("vers", "v").at_version(v1.version_id.unwrap()), &seed_tags()).await.unwrap();
        s.append_object(B, "log", 0, Body::from("12"), &PutOptions::default()).await.unwrap();
        s.put_symlink(B, "link", "a", &PutOptions::default()).await.unwrap();
        let up_opts = PutOptions { tags: Some(TagSet::from_pairs([("mp", "1")]).unwrap()), ..Default::default() };
        let upload = s.initiate_multipart(B, "mp", &up_opts).await.unwrap();
        let e1 = s.upload_part(upload.part(1), Body::from(part.clone())).await.unwrap().etag;
        (upload, e1)
    };
    let s = LocalStore::open(&root).unwrap();
    assert_eq!(read(&s, &obj("a")).await, b"alpha");
    let info = s.head_object(&obj("a")).await.unwrap();
    assert_eq!((info.tagging_count, info.metadata.user.get("m").map(String::as_str)), (4, Some("1")));
    assert_eq!(s.get_versioning("vers").await.unwrap(), Versioning::Enabled);
    assert_eq!(read(&s, &ObjectRef::new("vers", "v")).await, b"two");
    let listed = s.list_objects("vers", &ListRequest::default()).await.unwrap();
    assert_eq!(listed.objects.len(), 1);
    let r = s.append_object(B, "log", 2, Body::from("34"), &PutOptions::default()).await.unwrap();
    assert_eq!((r.next_position, r.crc64), (4, Some(checksum(b"1234"))));
    assert_eq!(s.get_symlink(&obj("link")).await.unwrap().target, "a");
    let ups = s.list_uploads(B, &Default::default()).await.unwrap();
    assert_eq!(ups.uploads.iter().map(|u| u.upload_id.as_str()).collect::<Vec<_>>(), [upload.id.as_str()]);
    let parts = s.list_parts(&upload, None, None).await.unwrap();
    assert_eq!(parts.parts.len(), 1);
    assert_eq!(parts.parts[0].etag, e1);
    let e2 = s.upload_part(upload.part(2), Body::from("tail")).await.unwrap().etag;
    let done = [CompletedPart::new(1, e1), CompletedPart::new(2, e2)];
    let r = s.complete_multipart(&upload, &done, &Default::default()).await.unwrap();
    let mut whole = part.clone();
    whole.extend_from_slice(b"tail");
    assert_eq!(r.crc64, Some(checksum(&whole)));
    assert_eq!(read(&s, &obj("mp")).await, whole);
    assert_eq!(s.get_tagging(&obj("mp")).await.unwrap().get("mp"), Some("1"));
}

#[tokio::test]
async fn open_sweeps_what_a_crash_left() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("store");
    {
        let s = LocalStore::open(&root).unwrap();
        s.create_bucket(B).await.unwrap();
        put(&s, "kept", b"kept").await;
        let id = s.initiate_multipart(B, "mp", &PutOptions::default()).await.unwrap();
        s.upload_part(id.part(1), Body::from("part")).await.unwrap();
    }
    let orphan = ids::file_id();
    std::fs::create_dir_all(root.join(".data").join(&orphan[..2])).unwrap();
    std::fs::write(root.join(".data").join(&orphan[..2]).join(&orphan), b"orphan").unwrap();
    std::fs::write(root.join(".tmp").join(ids::file_id()), b"half").unwrap();
    let stale_upload = root.join(".staging").join(ids::upload_id());
    std::fs::create_dir_all(&stale_upload).unwrap();
    let s = LocalStore::open(&root).unwrap();
    assert!(!stale_upload.exists());
    let files = snapshot(&s).files;
    assert_eq!(files.keys().filter(|f| f.starts_with(".data/")).count(), 1, "{files:?}");
    assert_eq!(files.keys().filter(|f| f.starts_with(".staging/")).count(), 1, "{files:?}");
    assert_eq!(files.keys().filter(|f| f.starts_with(".tmp/")).count(), 0, "{files:?}");
    assert_eq!(read(&s, &obj("kept")).await, b"kept");
}

#[tokio::test]
async fn one_process_owns_a_root() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("store");
    let first = LocalStore::open(&root).unwrap();
    let e = LocalStore::open(&root).unwrap_err();
    assert!(e.to_string().contains("in use by another process"), "{e}");
    drop(first);
    LocalStore::open(&root).unwrap();
}
