//! Our OSS client (`HttpStore`) against our server over a `LocalStore`: every store operation makes the round
//! trip, so the client and the server agree on the wire, and errors come back as the same service errors.

use std::sync::Arc;
use transfer_engine::http::HttpStore;
use transfer_engine::local::{LocalOptions, LocalStore};
use transfer_engine::meta::Metadata;
use transfer_engine::sign::{Credentials, SignatureVersion};
use transfer_engine::store::PartCopySource;
use transfer_engine::store::{
    Body, ByteRange, CompleteOptions, CompletedPart, CopyConditions, CopyOptions, Directive, ListRequest,
    ListUploadsRequest, ObjectRef, ObjectType, PutOptions, Versioning,
};
use transfer_engine::{BucketStore, MultipartStore, ObjectStore, OssExtensions, TagSet};
use transfer_server::Server;

async fn flow(version: SignatureVersion, path_style: bool) {
    let root = tempfile::tempdir().unwrap();
    let local = LocalStore::open_with(root.path(), LocalOptions::default().fsync(false)).unwrap();
    let creds = Credentials::new("client-ak", "client-sk");
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), Arc::new(local), creds.clone()).await.unwrap();
    let port = server.local_addr().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let endpoint = if path_style { format!("http://127.0.0.1:{port}") } else { format!("http://localhost:{port}") };
    let oss = HttpStore::oss()
        .endpoint(endpoint)
        .region("cn-hangzhou")
        .credentials(creds)
        .signature_version(version)
        .path_style(path_style)
        .content_md5(true)
        .build()
        .unwrap();
    assert_eq!(oss.path_style(), path_style);

    let b = "through";
    oss.create_bucket(b).await.unwrap();
    assert_eq!(oss.get_versioning(b).await.unwrap(), Versioning::Off);

    // Put with metadata and tags, then read it back every way.
    let mut metadata = Metadata::with_user([("owner", "me")]).unwrap();
    metadata.content_type = Some("text/plain".into());
    let tags = TagSet::from_pairs([("k1", "v1"), ("k4+-=", "+-=._:/")]).unwrap();
    let opts =
        PutOptions::default().metadata(metadata).tags(Some(tags.clone())).content_md5(true).forbid_overwrite(false);
    let key = "dir/ünïcode key+1.txt";
    let put = oss.put_object(b, key, Body::from_bytes(&b"0123456789"[..]), &opts).await.unwrap();
    assert_eq!(put.crc64, Some(transfer_engine::crc64::checksum(b"0123456789")));
    let obj = ObjectRef::new(b, key);
    let info = oss.head_object(&obj).await.unwrap();
    assert_eq!((info.size, info.etag.as_str(), info.tagging_count), (10, put.etag.as_str(), 2));
    assert_eq!(info.metadata.user.get("owner").map(String::as_str), Some("me"));
    assert_eq!(info.metadata.content_type.as_deref(), Some("text/plain"));
    assert_eq!(info.object_type, ObjectType::Normal);
    let meta = oss.get_object_meta(&obj).await.unwrap();
    assert_eq!((meta.size, meta.crc64), (10, put.crc64));
    let got = oss.get_object(&obj, Some(ByteRange::inclusive(3, 5))).await.unwrap();
    assert_eq!(got.range, Some((3, 5)));
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"345");
    let got = oss.get_object(&obj, None).await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"0123456789");
    assert_eq!(oss.get_tagging(&obj).await.unwrap().sorted(), tags.sorted());
    let e = oss.get_object(&obj, Some(ByteRange::inclusive(50, 60))).await.unwrap_err();
    assert_eq!(e.service_code(), Some("InvalidRange"));

    // Forbid-overwrite, copy with replaced metadata, tagging operations.
    let no_overwrite = PutOptions::default().forbid_overwrite(true);
    let e = oss.put_object(b, key, Body::from_bytes(&b"x"[..]), &no_overwrite).await.unwrap_err();
    assert_eq!(e.service_code(), Some("FileAlreadyExists"));
    let mut copy = CopyOptions::from(obj.clone());
    copy.metadata = Directive::Replace(Metadata::with_user([("copied", "yes")]).unwrap());
    copy.conditions = CopyConditions::default().if_match(Some(put.etag.clone())).if_none_match(None);
    oss.copy_object(b, "copy", &copy).await.unwrap();
    let copied = oss.head_object(&ObjectRef::new(b, "copy")).await.unwrap();
    assert_eq!(copied.metadata.user.get("copied").map(String::as_str), Some("yes"));
    assert_eq!(copied.tagging_count, 2);
    copy.conditions = CopyConditions::default().if_match(Some("0000".into())).if_none_match(None);
    assert_eq!(oss.copy_object(b, "copy2", &copy).await.unwrap_err().service_code(), Some("PreconditionFailed"));
    oss.put_tagging(&ObjectRef::new(b, "copy"), &TagSet::from_pairs([("only", "one")]).unwrap()).await.unwrap();
    assert_eq!(oss.get_tagging(&ObjectRef::new(b, "copy")).await.unwrap().get("only"), Some("one"));
    oss.delete_tagging(&ObjectRef::new(b, "copy")).await.unwrap();
    assert!(oss.get_tagging(&ObjectRef::new(b, "copy")).await.unwrap().is_empty());

    // Multipart: an uploaded part and a copied part.
    let mp = "multi/part";
    let upload = oss.initiate_multipart(b, mp, &PutOptions::default()).await.unwrap();
    let part1 = vec![7u8; 100 * 1024];
    let r1 = oss.upload_part(upload.part(1), Body::from_bytes(part1.clone())).await.unwrap();
    let r2 = oss
        .upload_part_copy(
            upload.part(2),
            &PartCopySource {
                source: obj.clone(),
                range: Some(ByteRange::inclusive(0, 4)),
                conditions: CopyConditions::default(),
            },
        )
        .await
        .unwrap();
    let parts = oss.list_parts(&upload, None, None).await.unwrap();
    assert_eq!(parts.parts.iter().map(|p| p.part_number.get()).collect::<Vec<_>>(), vec![1, 2]);
    let uploads = oss.list_uploads(b, &ListUploadsRequest::default()).await.unwrap();
    assert!(uploads.uploads.iter().any(|u| u.upload_id == upload.id && u.key == mp));
    let completed = [CompletedPart::new(1, r1.etag.clone()), CompletedPart::new(2, r2.etag.clone())];
    let done = oss.complete_multipart(&upload, &completed, &CompleteOptions::default()).await.unwrap();
    let mut whole = part1.clone();
    whole.extend_from_slice(b"01234");
    assert_eq!(done.crc64, Some(transfer_engine::crc64::checksum(&whole)));
    let e = oss.abort_multipart(&upload).await.unwrap_err();
    assert_eq!(e.service_code(), Some("NoSuchUpload"));

    // Append and symlinks.
    let a = oss.append_object(b, "log", 0, Body::from_bytes(&b"abc"[..]), &PutOptions::default()).await.unwrap();
    assert_eq!(a.next_position, 3);
    let e = oss.append_object(b, "log", 1, Body::from_bytes(&b"d"[..]), &PutOptions::default()).await.unwrap_err();
    assert_eq!(e.service_error().and_then(|s| s.header("x-oss-next-append-position")), Some("3"));
    oss.put_symlink(b, "link", key, &PutOptions::default()).await.unwrap();
    assert_eq!(oss.get_symlink(&ObjectRef::new(b, "link")).await.unwrap().target, key);

    // Listing.
    let page =
        oss.list_objects(b, &ListRequest::default().delimiter(Some("/".into())).max_keys(Some(1000))).await.unwrap();
    assert_eq!(page.common_prefixes, vec!["dir/".to_owned(), "multi/".to_owned()]);
    assert_eq!(page.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), vec!["copy", "link", "log"]);

    // Versioning and deletes.
    oss.put_versioning(b, true).await.unwrap();
    let v = oss.put_object(b, "v", Body::from_bytes(&b"1"[..]), &PutOptions::default()).await.unwrap();
    assert!(v.version_id.is_some());
    let del = oss.delete_object(&ObjectRef::new(b, "v")).await.unwrap();
    assert!(del.delete_marker);
    let e = oss.head_object(&ObjectRef::new(b, "v")).await.unwrap_err();
    assert_eq!(e.service_code(), Some("NoSuchKey"));
    let old = ObjectRef::new(b, "v").at_version(v.version_id.clone().unwrap());
    assert_eq!(oss.get_object(&old, None).await.unwrap().bytes().await.unwrap().as_ref(), b"1");
    assert_eq!(oss.delete_bucket(b).await.unwrap_err().service_code(), Some("BucketNotEmpty"));

    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn every_operation_through_our_client_v4_path_style() {
    flow(SignatureVersion::V4, true).await;
}

#[tokio::test]
async fn every_operation_through_our_client_v1_virtual_host() {
    flow(SignatureVersion::V1, false).await;
}
