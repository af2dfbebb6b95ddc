//! Multipart uploads: parts sent out of order, metadata and tags given on initiate, ListParts in pages, abort,
//! unknown upload ids, and ListMultipartUploads.

use super::{assert_meta, meta, read, tags, tags_of, Target};
use crate::util::data;
use transfer_engine::store::{CompleteOptions, CompletedPart, ListUploadsRequest, ObjectType, PartReceipt, PutOptions};
use transfer_engine::store::{PartNumber, Upload, UploadId};

const MIB: usize = 1024 * 1024;

/// Parts of 5 MiB (S3's smallest but the last), 5 MiB and 1000 bytes, numbered 1, 2, 3.
fn parts() -> [(u32, Vec<u8>); 3] {
    [(1, data(5 * MIB, 1)), (2, data(5 * MIB, 2)), (3, data(1000, 3))]
}

fn whole(parts: &[(u32, Vec<u8>)]) -> Vec<u8> {
    parts.iter().flat_map(|(_, b)| b.iter().copied()).collect()
}

fn completed(receipts: &[PartReceipt]) -> Vec<CompletedPart> {
    let mut done: Vec<CompletedPart> = receipts.iter().map(CompletedPart::from).collect();
    done.sort_by_key(|p| p.part_number);
    done
}

pub async fn parts_out_of_order_with_metadata(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("multi").await;
    let key = scope.key("big object");
    let opts = PutOptions::default().metadata(meta());
    let id = s.initiate_multipart(&scope.bucket, &key, &opts).await.unwrap();
    let parts = parts();
    let mut receipts = Vec::new();
    // Sent 3, 1, 2.
    for i in [2, 0, 1] {
        let (n, bytes) = &parts[i];
        let r = s.upload_part(id.part(*n), bytes.clone().into()).await.unwrap();
        assert_eq!((r.part_number.get(), r.size), (*n, bytes.len() as u64));
        receipts.push(r);
    }
    // ListParts reports them in order, with their sizes (and ETags, where the target lists them).
    let page = s.list_parts(&id, None, None).await.unwrap();
    assert!(!page.is_truncated);
    let listed: Vec<(u32, u64)> = page.parts.iter().map(|p| (p.part_number.get(), p.size)).collect();
    assert_eq!(listed, [(1, 5 * MIB as u64), (2, 5 * MIB as u64), (3, 1000)]);
    if t.caps.list_parts_etags {
        for p in &page.parts {
            let sent = receipts.iter().find(|r| r.part_number == p.part_number).unwrap();
            assert!(
                p.etag.eq_ignore_ascii_case(&sent.etag),
                "part {}: {} listed, {} sent",
                p.part_number,
                p.etag,
                sent.etag
            );
        }
    }

    let put = s.complete_multipart(&id, &completed(&receipts), &CompleteOptions::default()).await.unwrap();
    let obj = scope.obj("big object");
    let head = s.head_object(&obj).await.unwrap();
    assert_eq!((head.size, head.etag.as_str()), ((10 * MIB + 1000) as u64, put.etag.as_str()));
    assert_eq!(head.object_type, ObjectType::Multipart);
    assert_meta(&head.metadata, &meta());
    assert_eq!(read(s, &obj).await, whole(&parts));
}

pub async fn tags_on_initiate(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("tagged-multi").await;
    let key = scope.key("k");
    let opts = PutOptions::default().metadata(meta()).tags(Some(tags()));
    let id = s.initiate_multipart(&scope.bucket, &key, &opts).await.unwrap();
    let (a, b) = (data(5 * MIB, 7), data(10, 8));
    let r1 = s.upload_part(id.part(1), a.clone().into()).await.unwrap();
    let r2 = s.upload_part(id.part(2), b.clone().into()).await.unwrap();
    s.complete_multipart(&id, &completed(&[r1, r2]), &CompleteOptions::default()).await.unwrap();
    let obj = scope.obj("k");
    assert_eq!(tags_of(s, &obj).await, tags().sorted());
    assert_meta(&s.head_object(&obj).await.unwrap().metadata, &meta());
    assert_eq!(read(s, &obj).await, [a, b].concat());
}

pub async fn list_parts_in_pages(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("parts").await;
    let key = scope.key("paged");
    let id = s.initiate_multipart(&scope.bucket, &key, &PutOptions::default()).await.unwrap();
    for n in [2u32, 1, 3] {
        s.upload_part(id.part(n), data(100 + n as usize, n.into()).into()).await.unwrap();
    }
    let (mut listed, mut marker, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = s.list_parts(&id, marker, Some(1)).await.unwrap();
        pages += 1;
        assert_eq!(page.parts.len(), 1, "page {pages}");
        listed.extend(page.parts.iter().map(|p| (p.part_number.get(), p.size)));
        if !page.is_truncated {
            break;
        }
        marker = page.next_marker;
        assert!(marker.is_some() && pages < 10);
    }
    assert_eq!(listed, [(1, 101), (2, 102), (3, 103)]);
    assert_eq!(pages, 3);
    // From a marker.
    let rest = s.list_parts(&id, Some(PartNumber::from(1)), None).await.unwrap();
    assert_eq!(rest.parts.iter().map(|p| p.part_number.get()).collect::<Vec<_>>(), [2, 3]);
    s.abort_multipart(&id).await.unwrap();
}

pub async fn abort(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("aborted").await;
    let key = scope.key("dropped");
    let id = s.initiate_multipart(&scope.bucket, &key, &PutOptions::default()).await.unwrap();
    let r = s.upload_part(id.part(1), data(100, 9).into()).await.unwrap();
    s.abort_multipart(&id).await.unwrap();
    // No object appeared, and the key is free for another upload.
    let e = s.head_object(&scope.obj("dropped")).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    let id = s.initiate_multipart(&scope.bucket, &key, &PutOptions::default()).await.unwrap();
    let r2 = s.upload_part(id.part(1), data(100, 10).into()).await.unwrap();
    assert_eq!(r.part_number, r2.part_number);
    s.complete_multipart(&id, &completed(&[r2]), &CompleteOptions::default()).await.unwrap();
    assert_eq!(read(s, &scope.obj("dropped")).await, data(100, 10));
}

pub async fn unknown_upload_ids(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("unknown").await;
    let key = scope.key("k");
    let id = s.initiate_multipart(&scope.bucket, &key, &PutOptions::default()).await.unwrap();
    let r = s.upload_part(id.part(1), data(100, 9).into()).await.unwrap();
    s.abort_multipart(&id).await.unwrap();
    // What a resume meets when the server forgot an upload: NoSuchUpload, permanent, on every call.
    let e = s.list_parts(&id, None, None).await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(404), Some("NoSuchUpload"), false), "{e}");
    let e = s.upload_part(id.part(2), data(100, 9).into()).await.unwrap_err();
    assert_eq!((e.service_code(), e.is_retryable()), (Some("NoSuchUpload"), false), "{e}");
    let e = s.complete_multipart(&id, &completed(&[r]), &CompleteOptions::default()).await.unwrap_err();
    assert_eq!((e.service_code(), e.is_retryable()), (Some("NoSuchUpload"), false), "{e}");
    let e = s.abort_multipart(&id).await.unwrap_err();
    assert_eq!((e.service_code(), e.is_retryable()), (Some("NoSuchUpload"), false), "{e}");
    assert_eq!(e.kind(), transfer_engine::ErrorKind::UploadNotFound, "{e}");
}

pub async fn list_uploads(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("uploads").await;
    let mut ids = Vec::new();
    for k in ["u/a", "u/b", "u/b", "v/c"] {
        ids.push((k, s.initiate_multipart(&scope.bucket, &scope.key(k), &PutOptions::default()).await.unwrap()));
    }
    // Under u/, by key.
    let req = ListUploadsRequest::default().prefix(Some(scope.key("u/")));
    let page = s.list_uploads(&scope.bucket, &req).await.unwrap();
    assert!(!page.is_truncated);
    let mut got: Vec<(String, UploadId)> = page.uploads.iter().map(|u| (u.key.clone(), u.upload_id.clone())).collect();
    assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "{got:?}");
    let mut want: Vec<(String, UploadId)> = ids[..3].iter().map(|(k, id)| (scope.key(k), id.id.clone())).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    // Aborted uploads are no longer listed.
    for (k, id) in &ids {
        s.abort_multipart(&Upload::new(&scope.bucket, scope.key(k), id.id.clone())).await.unwrap();
    }
    let req = ListUploadsRequest::default().prefix(Some(scope.prefix.clone()));
    let page = s.list_uploads(&scope.bucket, &req).await.unwrap();
    assert!(page.uploads.is_empty(), "{:?}", page.uploads);
}

pub async fn list_uploads_in_pages(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("upload-pages").await;
    let mut want = Vec::new();
    for k in ["u/a", "u/b", "u/b"] {
        let id = s.initiate_multipart(&scope.bucket, &scope.key(k), &PutOptions::default()).await.unwrap();
        want.push((scope.key(k), id.id));
    }
    // One upload a page: three pages, the two uploads of one key told apart by the upload-id marker.
    let mut req = ListUploadsRequest::default().prefix(Some(scope.key("u/"))).max_uploads(Some(1));
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let page = s.list_uploads(&scope.bucket, &req).await.unwrap();
        pages += 1;
        assert_eq!(page.uploads.len(), 1, "page {pages}");
        seen.extend(page.uploads.iter().map(|u| (u.key.clone(), u.upload_id.clone())));
        if !page.is_truncated {
            break;
        }
        req.key_marker = page.next_key_marker;
        req.upload_id_marker = page.next_upload_id_marker;
        assert!(req.key_marker.is_some() && pages < 10);
    }
    assert_eq!(pages, 3);
    want.sort();
    seen.sort();
    assert_eq!(seen, want);
    for (k, id) in &want {
        s.abort_multipart(&Upload::new(&scope.bucket, k, id.clone())).await.unwrap();
    }
}
