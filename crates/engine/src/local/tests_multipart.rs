//! Tests of multipart uploads: complete (ETag, CRC-64, metadata and tags from initiate), refused completes that
//! change nothing, part numbers, overwrites, ListParts and ListMultipartUploads paging, abort, UploadPartCopy.

use super::tests::{code, files_under, md5_hex, obj, put, read, seed_tags, snapshot, store, B};
use super::*;
use crate::crc64::checksum;
use crate::meta::Metadata;
use crate::store::CopyConditions;
use crate::store::UploadId;
use crate::store::{ByteRange, ObjectType};

const MIN: usize = 102_400;

fn part_data(n: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| n.wrapping_mul(31).wrapping_add(i as u8)).collect()
}

fn done(receipts: &[&PartReceipt]) -> Vec<CompletedPart> {
    receipts.iter().map(|r| CompletedPart::from(*r)).collect()
}

#[tokio::test]
async fn parts_uploaded_out_of_order_complete_in_order() {
    let (_d, s) = store().await;
    let mut meta = Metadata::with_user([("origin", "mp")]).unwrap();
    meta.content_type = Some("video/mp4".into());
    let opts = PutOptions { metadata: meta.clone(), tags: Some(seed_tags()), ..Default::default() };
    let id = s.initiate_multipart(B, "big.bin", &opts).await.unwrap();
    assert!(id.id.len() == 32 && id.id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()), "{id}");
    let (d1, d2, d3) = (part_data(1, MIN), part_data(2, MIN + 7), part_data(3, 10));
    let r3 = s.upload_part(id.part(3), Body::from(d3.clone())).await.unwrap();
    let r1 = s.upload_part(id.part(1), Body::from(d1.clone())).await.unwrap();
    let r2 = s.upload_part(id.part(2), Body::from(d2.clone())).await.unwrap();
    assert_eq!((r1.etag.clone(), r1.crc64, r1.size), (md5_hex(&d1), Some(checksum(&d1)), MIN as u64));
    assert_eq!(r3.part_number, 3);
    // The object is not visible before Complete.
    assert_eq!(code(&s.head_object(&obj("big.bin")).await.unwrap_err()).1, "NoSuchKey");

    let mut parts = done(&[&r1, &r2, &r3]);
    parts[1].etag = format!("\"{}\"", parts[1].etag.to_lowercase());
    let r = s.complete_multipart(&id, &parts, &CompleteOptions::default()).await.unwrap();
    let whole = [d1.clone(), d2.clone(), d3.clone()].concat();
    let expected_etag = format!("{}-3", md5_hex(format!("{}{}{}", r1.etag, r2.etag, r3.etag).as_bytes()));
    assert_eq!(r.etag, expected_etag);
    assert_eq!(r.crc64, Some(checksum(&whole)));
    assert_eq!(r.version_id, None);
    let info = s.head_object(&obj("big.bin")).await.unwrap();
    assert_eq!(
        (info.object_type, info.size, info.etag.clone()),
        (ObjectType::Multipart, whole.len() as u64, expected_etag)
    );
    assert_eq!(info.metadata.user, meta.user);
    assert_eq!(info.metadata.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(s.get_tagging(&obj("big.bin")).await.unwrap(), seed_tags());
    assert_eq!(read(&s, &obj("big.bin")).await, whole);
    // The upload and its staged parts are gone.
    assert!(s.list_uploads(B, &Default::default()).await.unwrap().uploads.is_empty());
    assert_eq!(code(&s.abort_multipart(&id).await.unwrap_err()), (404, "NoSuchUpload".into()));
    assert_eq!(code(&s.list_parts(&id, None, None).await.unwrap_err()).1, "NoSuchUpload");
    assert_eq!(files_under(&s, ".staging"), 0);
    // The three parts are the object's pieces: linked, not copied.
    assert_eq!((files_under(&s, ".pieces"), files_under(&s, ".data")), (3, 0));
}

/// A completed object of `parts` (each `len` bytes, the last `last`), its bytes, and its store.
async fn pieced(parts: usize, len: usize, last: usize) -> (tempfile::TempDir, LocalStore, Vec<u8>) {
    let (d, s) = store().await;
    let id = s.initiate_multipart(B, "mp", &PutOptions::default()).await.unwrap();
    let mut receipts = Vec::new();
    let mut whole = Vec::new();
    for n in 1..=parts {
        let data = part_data(n as u8, if n == parts { last } else { len });
        whole.extend_from_slice(&data);
        receipts.push(s.upload_part(id.part(n as u32), Body::from(data)).await.unwrap());
    }
    let refs: Vec<&PartReceipt> = receipts.iter().collect();
    s.complete_multipart(&id, &done(&refs), &CompleteOptions::default()).await.unwrap();
    (d, s, whole)
}

#[tokio::test]
async fn pieces_serve_ranges_across_their_boundaries() {
    let (_d, s, whole) = pieced(3, MIN, 10).await;
    assert_eq!(read(&s, &obj("mp")).await, whole);
    let n = whole.len() as u64;
    let m = MIN as u64;
    for (a, b) in [(0, 0), (m - 1, m), (m - 5, 2 * m + 3), (m, 2 * m - 1), (2 * m, n - 1), (1, n - 2), (n - 1, n - 1)] {
        let got = s.get_object(&obj("mp"), Some(ByteRange::inclusive(a, b))).await.unwrap();
        assert_eq!(got.range, Some((a, b)));
        assert_eq!(got.bytes().await.unwrap(), whole[a as usize..=b as usize], "{a}-{b}");
    }
    // Copies read the pieces too: a whole CopyObject and an UploadPartCopy across a boundary.
    s.copy_object(B, "copy", &CopyOptions::from(obj("mp"))).await.unwrap();
    assert_eq!(read(&s, &obj("copy")).await, whole);
    let id = s.initiate_multipart(B, "pc", &PutOptions::default()).await.unwrap();
    let range = ByteRange::inclusive(m - 3, 2 * m + 5);
    let p = s
        .upload_part_copy(
            id.part(1),
            &PartCopySource { source: obj("mp"), range: Some(range), conditions: Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(p.etag, md5_hex(&whole[MIN - 3..=2 * MIN + 5]));
    // A single part is linked as a plain data file.
    s.complete_multipart(&id, &done(&[&p]), &CompleteOptions::default()).await.unwrap();
    assert_eq!(read(&s, &obj("pc")).await, whole[MIN - 3..=2 * MIN + 5]);
    assert_eq!((files_under(&s, ".pieces"), files_under(&s, ".data")), (3, 1 + 1));
}

#[tokio::test]
async fn a_read_in_progress_keeps_the_pieces_an_overwrite_removes() {
    let (_d, s, whole) = pieced(3, MIN, 1000).await;
    let got = s.get_object(&obj("mp"), None).await.unwrap();
    put(&s, "mp", b"new").await;
    // The pieces stay while the read holds them, and go when it is dropped.
    assert_eq!((files_under(&s, ".pieces"), files_under(&s, ".data")), (3, 1));
    assert_eq!(got.bytes().await.unwrap(), whole);
    assert_eq!((files_under(&s, ".pieces"), files_under(&s, ".data")), (0, 1));
    assert_eq!(read(&s, &obj("mp")).await, b"new");
    // Without a read, a delete removes them at once.
    let (_d, s, _) = pieced(2, MIN, 5).await;
    assert_eq!(files_under(&s, ".pieces"), 2);
    s.delete_object(&obj("mp")).await.unwrap();
    assert_eq!(files_under(&s, ".pieces"), 0);
}

#[tokio::test]
async fn pieces_survive_a_reopen_and_a_stray_piece_directory_is_swept() {
    let (d, s, whole) = pieced(2, MIN, 7).await;
    let root = s.root().to_owned();
    drop(s);
    let stray = ids::file_id();
    let stray = root.join(".pieces").join(&stray[..2]).join(&stray);
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("1"), b"half a complete").unwrap();
    let s = LocalStore::open(&root).unwrap();
    assert!(!stray.exists());
    assert_eq!(read(&s, &obj("mp")).await, whole);
    assert_eq!(files_under(&s, ".pieces"), 2);
    drop(d);
}

#[test]
fn the_known_oss_multipart_etag() {
    // A recorded OSS exchange (oss2's mock tests): MD5 over the ASCII hex part ETags, then the part count.
    let rows = ["4DE8075FB607DF4D13FBC480EA488EFA", "AF947EC157726CEA88ED83B3C989063B"].map(|e| index::PartRow {
        part_number: 1,
        etag: e.into(),
        size: 0,
        crc64: 0,
        last_modified: 0,
        file: String::new(),
    });
    assert_eq!(multipart::multipart_etag(&rows), "1C787C506EABFB9B45EAAA8DB039F4B2-2");
}

#[tokio::test]
async fn bad_part_numbers_change_nothing() {
    let (_d, s) = store().await;
    let id = s.initiate_multipart(B, "k", &PutOptions::default()).await.unwrap();
    let before = snapshot(&s);
    for n in [0u32, 10_001] {
        let e = s.upload_part(id.part(n), Body::from("x")).await.unwrap_err();
        assert_eq!(code(&e), (400, "InvalidArgument".into()));
        assert_eq!(e.message(), "Part number must be an integer between 1 and 10000, inclusive.");
        let se = e.service_error().unwrap();
        assert_eq!(
            (se.extra("ArgumentName"), se.extra("ArgumentValue")),
            (Some("partNumber"), Some(n.to_string().as_str()))
        );
        let e = s
            .upload_part_copy(
                id.part(n),
                &PartCopySource { source: obj("src"), range: None, conditions: Default::default() },
            )
            .await
            .unwrap_err();
        assert_eq!(code(&e).1, "InvalidArgument");
        assert_eq!(snapshot(&s), before);
    }
    let e = s
        .upload_part(Upload::new(B, "k", UploadId::new("0123456789ABCDEF0123456789ABCDEF")).part(1), Body::from("x"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), (404, "NoSuchUpload".into()));
    let e = s.upload_part(Upload::new(B, "other-key", id.id.clone()).part(1), Body::from("x")).await.unwrap_err();
    assert_eq!(code(&e).1, "NoSuchUpload");
    s.upload_part(id.part(10_000), Body::from("x")).await.unwrap();
}

#[tokio::test]
async fn refused_completes_change_nothing() {
    let (_d, s) = store().await;
    put(&s, "k", b"previous").await;
    let id = s.initiate_multipart(B, "k", &PutOptions::default()).await.unwrap();
    let r1 = s.upload_part(id.part(1), Body::from(part_data(1, MIN))).await.unwrap();
    let small = s.upload_part(id.part(2), Body::from(part_data(2, MIN - 1))).await.unwrap();
    let r3 = s.upload_part(id.part(3), Body::from(part_data(3, 5))).await.unwrap();
    let before = snapshot(&s);
    let complete = |parts: Vec<CompletedPart>, forbid: bool| {
        let (s, id) = (s.clone(), id.clone());
        async move {
            let e = s.complete_multipart(&id, &parts, &CompleteOptions { forbid_overwrite: forbid }).await;
            e.unwrap_err()
        }
    };
    assert_eq!(code(&complete(vec![], false).await), (400, "MalformedXML".into()));
    let e = complete(done(&[&r3, &r1]), false).await;
    assert_eq!(code(&e), (400, "InvalidPartOrder".into()));
    assert_eq!(e.service_error().unwrap().ec.as_deref(), Some("0042-00000209"));
    assert_eq!(code(&complete(done(&[&r1, &r1]), false).await).1, "InvalidPartOrder");
    let mut wrong = done(&[&r1, &r3]);
    wrong[0].etag = md5_hex(b"something else");
    assert_eq!(code(&complete(wrong, false).await), (400, "InvalidPart".into()));
    let mut missing = done(&[&r1, &r3]);
    missing[1].part_number = 4.into();
    assert_eq!(code(&complete(missing, false).await), (400, "InvalidPart".into()));
    let e = complete(done(&[&r1, &small, &r3]), false).await;
    assert_eq!(code(&e), (400, "EntityTooSmall".into()));
    assert_eq!(e.service_error().unwrap().ec.as_deref(), Some("0042-00000213"));
    let e = complete(done(&[&r1, &r3]), true).await;
    assert_eq!(code(&e), (409, "FileAlreadyExists".into()));
    assert_eq!(e.service_error().unwrap().ec.as_deref(), Some("0042-00000214"));
    let e = s
        .complete_multipart(
            &Upload::new(B, "k", UploadId::new("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF")),
            &done(&[&r1]),
            &Default::default(),
        )
        .await;
    assert_eq!(code(&e.unwrap_err()), (404, "NoSuchUpload".into()));
    assert_eq!(snapshot(&s), before);
    assert_eq!(read(&s, &obj("k")).await, b"previous");

    // A small part is fine as the last one.
    let r = s.complete_multipart(&id, &done(&[&r1, &small]), &Default::default()).await.unwrap();
    assert!(r.etag.ends_with("-2"));
    assert_eq!(read(&s, &obj("k")).await, [part_data(1, MIN), part_data(2, MIN - 1)].concat());
    assert_eq!(files_under(&s, ".staging"), 0);
}

#[tokio::test]
async fn reuploading_a_part_replaces_it() {
    let (_d, s) = store().await;
    let id = s.initiate_multipart(B, "k", &PutOptions::default()).await.unwrap();
    let old = s.upload_part(id.part(1), Body::from("first")).await.unwrap();
    let new = s.upload_part(id.part(1), Body::from("second!")).await.unwrap();
    assert_ne!(old.etag, new.etag);
    let page = s.list_parts(&id, None, None).await.unwrap();
    assert_eq!(page.parts.len(), 1);
    assert_eq!((page.parts[0].etag.as_str(), page.parts[0].size), (new.etag.as_str(), 7));
    assert_eq!(page.parts[0].crc64, Some(checksum(b"second!")));
    assert_eq!(files_under(&s, ".staging"), 1);
    let e = s.complete_multipart(&id, &done(&[&old]), &Default::default()).await.unwrap_err();
    assert_eq!(code(&e).1, "InvalidPart");
    s.complete_multipart(&id, &done(&[&new]), &Default::default()).await.unwrap();
    assert_eq!(read(&s, &obj("k")).await, b"second!");
}

#[tokio::test]
async fn list_parts_pages() {
    let (_d, s) = store().await;
    let id = s.initiate_multipart(B, "k", &PutOptions::default()).await.unwrap();
    for n in [5u32, 1, 4, 2, 3] {
        s.upload_part(id.part(n), Body::from(vec![n as u8; n as usize])).await.unwrap();
    }
    let mut marker = None;
    let mut pages = Vec::new();
    loop {
        let p = s.list_parts(&id, marker, Some(2)).await.unwrap();
        pages.push(p.parts.iter().map(|x| x.part_number).collect::<Vec<_>>());
        if !p.is_truncated {
            break;
        }
        marker = p.next_marker;
    }
    assert_eq!(pages, vec![vec![1, 2], vec![3, 4], vec![5]]);
    let all = s.list_parts(&id, None, None).await.unwrap();
    assert_eq!((all.parts.len(), all.is_truncated, all.next_marker), (5, false, Some(5.into())));
    assert_eq!(all.parts[3].size, 4);
    let rest = s.list_parts(&id, Some(PartNumber::from(3)), Some(5000)).await.unwrap();
    assert_eq!(rest.parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), [4, 5]);
}

#[tokio::test]
async fn abort_drops_the_staged_parts() {
    let (_d, s) = store().await;
    let id = s.initiate_multipart(B, "k", &PutOptions::default()).await.unwrap();
    s.upload_part(id.part(1), Body::from("abc")).await.unwrap();
    s.upload_part(id.part(2), Body::from("def")).await.unwrap();
    assert_eq!(files_under(&s, ".staging"), 2);
    assert_eq!(code(&s.abort_multipart(&Upload::new(B, "other", id.id.clone())).await.unwrap_err()).1, "NoSuchUpload");
    s.abort_multipart(&id).await.unwrap();
    assert_eq!(files_under(&s, ".staging"), 0);
    assert!(!s.root().join(".staging").join(id.id.as_str()).exists());
    let e = s.upload_part(id.part(3), Body::from("x")).await.unwrap_err();
    assert_eq!(code(&e), (404, "NoSuchUpload".into()));
    assert_eq!(code(&s.abort_multipart(&id).await.unwrap_err()).1, "NoSuchUpload");
    assert_eq!(code(&s.head_object(&obj("k")).await.unwrap_err()).1, "NoSuchKey");
}

#[tokio::test]
async fn upload_part_copy_ranges_and_refusals() {
    let (_d, s) = store().await;
    let src: Vec<u8> = (0..2 * MIN + 100).map(|i| (i % 253) as u8).collect();
    let sr = s.put_object(B, "src", Body::from(src.clone()), &PutOptions::default()).await.unwrap();
    let id = s.initiate_multipart(B, "dst", &PutOptions::default()).await.unwrap();
    let p1 = s
        .upload_part_copy(
            id.part(1),
            &PartCopySource {
                source: obj("src"),
                range: Some(ByteRange::inclusive(0, MIN as u64 - 1)),
                conditions: Default::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!((p1.etag.clone(), p1.size, p1.crc64), (md5_hex(&src[..MIN]), MIN as u64, Some(checksum(&src[..MIN]))));
    let cond = CopyConditions { if_match: Some(format!("\"{}\"", sr.etag)), if_none_match: None };
    let p2 = s
        .upload_part_copy(
            id.part(2),
            &PartCopySource {
                source: obj("src"),
                range: Some(ByteRange { first: MIN as u64, last: None }),
                conditions: cond.clone(),
            },
        )
        .await
        .unwrap();
    let p3 = s
        .upload_part_copy(
            id.part(3),
            &PartCopySource { source: obj("src"), range: None, conditions: Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(p3.size, src.len() as u64);

    let before = snapshot(&s);
    let past = Some(ByteRange::at(src.len() as u64, 10));
    let e = s
        .upload_part_copy(
            id.part(4),
            &PartCopySource { source: obj("src"), range: past, conditions: Default::default() },
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), (416, "InvalidRange".into()));
    let e = s
        .upload_part_copy(
            id.part(4),
            &PartCopySource { source: obj("missing"), range: None, conditions: Default::default() },
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), (404, "NoSuchKey".into()));
    let bad = CopyConditions { if_match: Some("\"00\"".into()), if_none_match: None };
    let e = s
        .upload_part_copy(id.part(4), &PartCopySource { source: obj("src"), range: None, conditions: bad.clone() })
        .await
        .unwrap_err();
    assert_eq!(code(&e), (412, "PreconditionFailed".into()));
    let bad = CopyConditions { if_match: None, if_none_match: Some(sr.etag.clone()) };
    assert_eq!(
        code(
            &s.upload_part_copy(
                id.part(4),
                &PartCopySource { source: obj("src"), range: None, conditions: bad.clone() }
            )
            .await
            .unwrap_err()
        )
        .0,
        412
    );
    assert_eq!(snapshot(&s), before);

    let r = s.complete_multipart(&id, &done(&[&p1, &p2, &p3]), &Default::default()).await.unwrap();
    let whole = [src.clone(), src.clone()].concat();
    assert_eq!(r.crc64, Some(checksum(&whole)));
    assert_eq!(read(&s, &obj("dst")).await, whole);
}

#[tokio::test]
async fn list_uploads_by_key_then_initiation() {
    let (_d, s) = store().await;
    let mut ids = Vec::new();
    for k in ["b", "a", "b", "c/1", "c/2"] {
        ids.push((k, s.initiate_multipart(B, k, &PutOptions::default()).await.unwrap()));
    }
    let all = s.list_uploads(B, &Default::default()).await.unwrap();
    let got: Vec<(String, UploadId)> = all.uploads.iter().map(|u| (u.key.clone(), u.upload_id.clone())).collect();
    let want: Vec<(String, UploadId)> =
        [1, 0, 2, 3, 4].iter().map(|&i| (ids[i].0.to_owned(), ids[i].1.id.clone())).collect();
    assert_eq!(got, want);
    assert!(!all.is_truncated);
    let c = s.list_uploads(B, &ListUploadsRequest { prefix: Some("c/".into()), ..Default::default() }).await.unwrap();
    assert_eq!(c.uploads.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(), ["c/1", "c/2"]);

    let mut req = ListUploadsRequest { max_uploads: Some(2), ..Default::default() };
    let mut paged = Vec::new();
    loop {
        let p = s.list_uploads(B, &req).await.unwrap();
        paged.extend(p.uploads.iter().map(|u| (u.key.clone(), u.upload_id.clone())));
        if !p.is_truncated {
            break;
        }
        req.key_marker = p.next_key_marker;
        req.upload_id_marker = p.next_upload_id_marker;
    }
    assert_eq!(paged, want);
    let after_a = ListUploadsRequest { key_marker: Some("a".into()), ..Default::default() };
    assert_eq!(s.list_uploads(B, &after_a).await.unwrap().uploads.len(), 4);
    assert_eq!(code(&s.list_uploads("nobucket", &Default::default()).await.unwrap_err()).1, "NoSuchBucket");
}
