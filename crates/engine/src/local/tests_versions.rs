//! Tests of versioning (versions, per-version tags, delete markers, suspension), appendable objects and symlinks.

use super::tests::{code, obj, put, read, seed_tags, snapshot, store, B};
use super::*;
use crate::crc64::checksum;
use crate::meta::Metadata;
use crate::store::{ListRequest, ObjectType};
use futures::StreamExt;

#[tokio::test]
async fn enabled_versioning_keeps_versions_with_their_own_tags() {
    let (_d, s) = store().await;
    assert_eq!(s.get_versioning(B).await.unwrap(), Versioning::Off);
    s.put_versioning(B, true).await.unwrap();
    assert_eq!(s.get_versioning(B).await.unwrap(), Versioning::Enabled);
    let v1 = put(&s, "k", b"one").await.version_id.unwrap();
    let v2 = put(&s, "k", b"two").await.version_id.unwrap();
    assert_ne!(v1, v2);
    assert!(v1.len() >= 32 && v1.bytes().all(|b| b.is_ascii_alphanumeric()), "{v1}");
    assert_eq!(read(&s, &obj("k")).await, b"two");
    assert_eq!(read(&s, &obj("k").at_version(&v1)).await, b"one");
    assert_eq!(s.head_object(&obj("k")).await.unwrap().version_id.as_deref(), Some(v2.as_str()));

    // Tags are per version.
    let t1 = TagSet::from_pairs([("v", "1")]).unwrap();
    assert_eq!(s.put_tagging(&obj("k").at_version(&v1), &t1).await.unwrap().as_deref(), Some(v1.as_str()));
    assert_eq!(s.put_tagging(&obj("k"), &seed_tags()).await.unwrap().as_deref(), Some(v2.as_str()));
    assert_eq!(s.get_tagging(&obj("k").at_version(&v1)).await.unwrap(), t1);
    assert_eq!(s.get_tagging(&obj("k")).await.unwrap(), seed_tags());
    s.delete_tagging(&obj("k").at_version(&v1)).await.unwrap();
    assert!(s.get_tagging(&obj("k").at_version(&v1)).await.unwrap().is_empty());
    assert_eq!(s.get_tagging(&obj("k").at_version(&v2)).await.unwrap(), seed_tags());

    // Delete without a version id: a delete marker.
    let d = s.delete_object(&obj("k")).await.unwrap();
    assert!(d.delete_marker);
    let marker = d.version_id.unwrap();
    assert!(marker != v1 && marker != v2);
    assert_eq!(code(&s.head_object(&obj("k")).await.unwrap_err()), (404, "NoSuchKey".into()));
    assert_eq!(code(&s.get_object(&obj("k"), None).await.unwrap_err()).1, "NoSuchKey");
    let e = s.head_object(&obj("k").at_version(&marker)).await.unwrap_err();
    assert_eq!(code(&e), (405, "MethodNotAllowed".into()));
    assert_eq!(code(&s.get_object(&obj("k").at_version(&marker), None).await.unwrap_err()).0, 405);
    assert!(s.list_objects(B, &ListRequest::default()).await.unwrap().objects.is_empty());
    assert_eq!(read(&s, &obj("k").at_version(&v2)).await, b"two");
    let e = s.head_object(&obj("k").at_version("CAEQnosuchversion")).await.unwrap_err();
    assert_eq!(code(&e), (404, "NoSuchVersion".into()));

    // Removing the marker by id brings v2 back; removing v2 makes v1 current.
    let d = s.delete_object(&obj("k").at_version(&marker)).await.unwrap();
    assert_eq!((d.delete_marker, d.version_id.as_deref()), (true, Some(marker.as_str())));
    assert_eq!(read(&s, &obj("k")).await, b"two");
    let d = s.delete_object(&obj("k").at_version(&v2)).await.unwrap();
    assert_eq!((d.delete_marker, d.version_id.as_deref()), (false, Some(v2.as_str())));
    assert_eq!(read(&s, &obj("k")).await, b"one");
    assert_eq!(s.head_object(&obj("k")).await.unwrap().version_id.as_deref(), Some(v1.as_str()));
    assert_eq!(code(&s.get_object(&obj("k").at_version(&v2), None).await.unwrap_err()).1, "NoSuchVersion");
    // A bucket with versions left is not empty.
    s.delete_object(&obj("k")).await.unwrap();
    assert_eq!(code(&s.delete_bucket(B).await.unwrap_err()).1, "BucketNotEmpty");
}

#[tokio::test]
async fn suspended_versioning_writes_the_null_version() {
    let (_d, s) = store().await;
    let off = put(&s, "k", b"off").await;
    assert_eq!(off.version_id, None);
    s.put_versioning(B, true).await.unwrap();
    // The object written while versioning was off is the "null" version.
    assert_eq!(s.head_object(&obj("k")).await.unwrap().version_id.as_deref(), Some("null"));
    let v1 = put(&s, "k", b"enabled").await.version_id.unwrap();
    s.put_versioning(B, false).await.unwrap();
    assert_eq!(s.get_versioning(B).await.unwrap(), Versioning::Suspended);
    let n1 = put(&s, "k", b"null-1").await;
    assert_eq!(n1.version_id.as_deref(), Some("null"));
    let n2 = put(&s, "k", b"null-2").await;
    assert_eq!(n2.version_id.as_deref(), Some("null"));
    // Only one null version exists; the enabled-era version is kept.
    let rows = snapshot(&s).rows.iter().filter(|r| r.starts_with("versions:")).count();
    assert_eq!(rows, 2);
    assert_eq!(read(&s, &obj("k").at_version("null")).await, b"null-2");
    assert_eq!(read(&s, &obj("k").at_version(&v1)).await, b"enabled");
    let d = s.delete_object(&obj("k")).await.unwrap();
    assert_eq!((d.delete_marker, d.version_id.as_deref()), (true, Some("null")));
    assert_eq!(code(&s.head_object(&obj("k")).await.unwrap_err()).1, "NoSuchKey");
    assert_eq!(read(&s, &obj("k").at_version(&v1)).await, b"enabled");
}

#[tokio::test]
async fn append_chain_and_refusals() {
    let (_d, s) = store().await;
    let meta = Metadata::with_user([("first", "yes")]).unwrap();
    let first = PutOptions { metadata: meta.clone(), tags: Some(seed_tags()), ..Default::default() };
    let r = s.append_object(B, "log", 0, Body::from("abc"), &first).await.unwrap();
    assert_eq!((r.next_position, r.crc64, r.version_id), (3, Some(checksum(b"abc")), None));
    let etag1 = s.head_object(&obj("log")).await.unwrap().etag;
    let later = PutOptions { tags: Some(TagSet::from_pairs([("later", "1")]).unwrap()), ..Default::default() };
    let r = s.append_object(B, "log", 3, Body::from("defg"), &later).await.unwrap();
    assert_eq!((r.next_position, r.crc64), (7, Some(checksum(b"abcdefg"))));
    let info = s.head_object(&obj("log")).await.unwrap();
    assert_eq!((info.object_type, info.size, info.next_append_position), (ObjectType::Appendable, 7, Some(7)));
    assert_eq!(info.crc64, Some(checksum(b"abcdefg")));
    assert_ne!(info.etag, etag1);
    assert_eq!(info.metadata.user, meta.user);
    assert_eq!(s.get_tagging(&obj("log")).await.unwrap(), seed_tags());
    assert_eq!(read(&s, &obj("log")).await, b"abcdefg");
    let empty = s.append_object(B, "log", 7, Body::empty(), &PutOptions::default()).await.unwrap();
    assert_eq!(empty.next_position, 7);

    put(&s, "plain", b"normal").await;
    let before = snapshot(&s);
    for pos in [0u64, 3, 8] {
        let e = s.append_object(B, "log", pos, Body::from("zz"), &PutOptions::default()).await.unwrap_err();
        assert_eq!(code(&e), (409, "PositionNotEqualToLength".into()));
        assert_eq!(e.message(), "Position is not equal to file length");
        let se = e.service_error().unwrap();
        assert_eq!((se.ec.as_deref(), se.header("x-oss-next-append-position")), (Some("0026-00000016"), Some("7")));
    }
    let e = s.append_object(B, "new", 5, Body::from("zz"), &PutOptions::default()).await.unwrap_err();
    assert_eq!(e.service_error().unwrap().header("x-oss-next-append-position"), Some("0"));
    let e = s.append_object(B, "plain", 6, Body::from("zz"), &PutOptions::default()).await.unwrap_err();
    assert_eq!(code(&e), (409, "ObjectNotAppendable".into()));
    assert_eq!(snapshot(&s), before);

    // A failed append leaves the object as it was (its file cut back, even when a large write was still in
    // flight at the failure), and the next append still works.
    let before = snapshot(&s);
    for first in [3, 3 << 20] {
        let chunks: Vec<Result<bytes::Bytes>> =
            vec![Ok(bytes::Bytes::from(vec![b'X'; first])), Err(Error::code(400, "InvalidDigest", "bad"))];
        let body = Body::from_stream(first as u64 + 3, futures::stream::iter(chunks).boxed());
        let e = s.append_object(B, "log", 7, body, &PutOptions::default()).await.unwrap_err();
        assert_eq!(e.service_code(), Some("InvalidDigest"));
        assert_eq!(snapshot(&s), before);
    }
    assert_eq!(read(&s, &obj("log")).await, b"abcdefg");
    assert_eq!(s.head_object(&obj("log")).await.unwrap().size, 7);
    let r = s.append_object(B, "log", 7, Body::from("h"), &PutOptions::default()).await.unwrap();
    assert_eq!((r.next_position, r.crc64), (8, Some(checksum(b"abcdefgh"))));
    assert_eq!(read(&s, &obj("log")).await, b"abcdefgh");
}

#[tokio::test]
async fn appends_in_a_versioned_bucket_keep_the_version() {
    let (_d, s) = store().await;
    s.put_versioning(B, true).await.unwrap();
    let r1 = s.append_object(B, "log", 0, Body::from("ab"), &PutOptions::default()).await.unwrap();
    let r2 = s.append_object(B, "log", 2, Body::from("cd"), &PutOptions::default()).await.unwrap();
    assert!(r1.version_id.is_some());
    assert_eq!(r1.version_id, r2.version_id);
    s.delete_object(&obj("log")).await.unwrap();
    // Behind a delete marker the key is new again: position 0 creates a new appendable version.
    let r3 = s.append_object(B, "log", 0, Body::from("x"), &PutOptions::default()).await.unwrap();
    assert_ne!(r3.version_id, r1.version_id);
    assert_eq!(read(&s, &obj("log").at_version(r1.version_id.unwrap())).await, b"abcd");
}

#[tokio::test]
async fn symlinks() {
    let (_d, s) = store().await;
    let tgt = put(&s, "target.txt", b"target bytes").await;
    let link_tags = TagSet::from_pairs([("l", "1"), ("m", "2")]).unwrap();
    let opts = PutOptions {
        tags: Some(link_tags.clone()),
        metadata: Metadata::with_user([("who", "link")]).unwrap(),
        ..Default::default()
    };
    s.put_symlink(B, "link", "target.txt", &opts).await.unwrap();
    let info = s.get_symlink(&obj("link")).await.unwrap();
    assert_eq!((info.target.as_str(), info.version_id), ("target.txt", None));

    let g = s.get_object(&obj("link"), None).await.unwrap();
    assert_eq!((g.info.object_type, g.info.size, g.info.tagging_count), (ObjectType::Symlink, 12, 2));
    assert_eq!(g.info.crc64, tgt.crc64);
    assert_eq!(g.bytes().await.unwrap(), &b"target bytes"[..]);
    let head = s.head_object(&obj("link")).await.unwrap();
    assert_eq!((head.object_type, head.size, head.etag.clone()), (ObjectType::Symlink, 12, tgt.etag.clone()));
    let meta = s.get_object_meta(&obj("link")).await.unwrap();
    assert_eq!(meta.size, 0);
    assert_ne!(meta.etag, tgt.etag);
    assert_eq!(s.get_tagging(&obj("link")).await.unwrap(), link_tags);

    // A copy of a link is a link.
    s.copy_object(B, "link2", &CopyOptions::from(obj("link"))).await.unwrap();
    assert_eq!(s.get_symlink(&obj("link2")).await.unwrap().target, "target.txt");
    assert_eq!(read(&s, &obj("link2")).await, b"target bytes");

    let e = s.get_symlink(&obj("target.txt")).await.unwrap_err();
    assert_eq!(code(&e), (400, "NotSymlink".into()));
    assert_eq!(code(&s.get_symlink(&obj("nope")).await.unwrap_err()), (404, "NoSuchKey".into()));
    s.put_symlink(B, "dangling", "not/there", &PutOptions::default()).await.unwrap();
    let e = s.get_object(&obj("dangling"), None).await.unwrap_err();
    assert_eq!(code(&e), (404, "SymlinkTargetNotExist".into()));
    assert_eq!(code(&s.head_object(&obj("dangling")).await.unwrap_err()).1, "SymlinkTargetNotExist");
    s.delete_object(&obj("target.txt")).await.unwrap();
    assert_eq!(code(&s.get_object(&obj("link"), None).await.unwrap_err()).1, "SymlinkTargetNotExist");
    let forbid = PutOptions { forbid_overwrite: true, ..Default::default() };
    let e = s.put_symlink(B, "link", "x", &forbid).await.unwrap_err();
    assert_eq!(code(&e).1, "FileAlreadyExists");
    let list = s.list_objects(B, &ListRequest::default()).await.unwrap();
    let types: Vec<ObjectType> = list.objects.iter().map(|o| o.object_type).collect();
    assert_eq!(types, [ObjectType::Symlink; 3]);
}

#[tokio::test]
async fn concurrent_appends_at_the_same_position_admit_one() {
    let (_d, s) = store().await;
    s.append_object(B, "log", 0, Body::from("0"), &PutOptions::default()).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.append_object(B, "log", 1, Body::from(vec![b'a' + i; 3]), &PutOptions::default()).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                ok += 1;
                assert_eq!(r.next_position, 4);
            }
            Err(e) => assert_eq!(code(&e).1, "PositionNotEqualToLength"),
        }
    }
    assert_eq!(ok, 1);
    let data = read(&s, &obj("log")).await;
    assert_eq!(data.len(), 4);
    assert!(data[1..].iter().all(|b| *b == data[1]));
    assert_eq!(s.head_object(&obj("log")).await.unwrap().crc64, Some(checksum(&data)));
}
