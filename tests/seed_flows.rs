//! The flows of both seed documents (object tagging with oss2, object metadata with the V2 SDK), driven
//! through our own OSS client against `transfer serve`, with both signature versions. Each test asserts what
//! the seed promises: tags read back equal those set, bytes and sizes equal, metadata replaced.

use crate::util::{bucket, data, Served};
use bytes::Bytes;
use transfer_engine::sign::SignatureVersion::{self, V1, V4};
use transfer_engine::store::PartCopySource;
use transfer_engine::store::{
    Body, ByteRange, CompleteOptions, CompletedPart, CopyConditions, CopyOptions, Directive, ObjectType, PutOptions,
};
use transfer_engine::MultipartStore;
use transfer_engine::OssExtensions;
use transfer_engine::{BucketStore, Metadata, ObjectRef, ObjectStore, TagSet};

/// The seed's tag set: `k1=v1&k2=v2&k3=v3` plus key `k4+-=` with value `+-=._:/`.
fn seed_tags() -> TagSet {
    TagSet::from_pairs([("k1", "v1"), ("k2", "v2"), ("k3", "v3"), ("k4+-=", "+-=._:/")]).unwrap()
}

fn tagged() -> PutOptions {
    PutOptions::default().tags(Some(seed_tags()))
}

async fn tags_of(store: &dyn ObjectStore, obj: &ObjectRef) -> Vec<transfer_engine::tags::Tag> {
    store.get_tagging(obj).await.unwrap().sorted()
}

async fn read(store: &dyn ObjectStore, obj: &ObjectRef) -> Bytes {
    store.get_object(obj, None).await.unwrap().bytes().await.unwrap()
}

/// oss2's `determine_part_size` for the seed's `preferred_size=100 * 1024`.
const PART: usize = 100 * 1024;

#[tokio::test]
async fn tags_on_simple_upload() {
    let served = Served::start();
    for (i, v) in [V1, V4].into_iter().enumerate() {
        let store = served.client(v);
        let b = bucket(&store, &format!("simple-{i}")).await;
        let obj = ObjectRef::new(&b, "exampledir/exampleobject.txt");
        store.put_object(&b, &obj.key, Body::from("content"), &tagged()).await.unwrap();
        assert_eq!(tags_of(&store, &obj).await, seed_tags().sorted());
        assert_eq!(read(&store, &obj).await, Bytes::from_static(b"content"));
        assert_eq!(store.head_object(&obj).await.unwrap().tagging_count, 4);
    }
}

/// Multipart upload with tags on initiate, parts sent out of order, completed in ascending order.
#[tokio::test]
async fn tags_on_multipart_upload() {
    let served = Served::start();
    for (i, v) in [V1, V4].into_iter().enumerate() {
        let store = served.client(v);
        let b = bucket(&store, &format!("multipart-{i}")).await;
        let key = "exampledir/exampleobject.txt";
        let file = data(3 * PART + 1234, 7);
        let upload_id = store.initiate_multipart(&b, key, &tagged()).await.unwrap();
        let chunks: Vec<&[u8]> = file.chunks(PART).collect();
        let mut parts = Vec::new();
        for (n, chunk) in chunks.iter().enumerate().rev() {
            let r = store.upload_part(upload_id.part(n as u32 + 1), Body::from(chunk.to_vec())).await.unwrap();
            assert_eq!(r.size, chunk.len() as u64);
            assert_eq!(r.crc64, Some(transfer_engine::crc64::checksum(chunk)));
            parts.push(CompletedPart::from(&r));
        }
        parts.sort_by_key(|p| p.part_number);
        let done = store.complete_multipart(&upload_id, &parts, &CompleteOptions::default()).await.unwrap();
        assert_eq!(done.crc64, Some(transfer_engine::crc64::checksum(&file)));
        let obj = ObjectRef::new(&b, key);
        assert_eq!(read(&store, &obj).await.as_ref(), file.as_slice());
        assert_eq!(tags_of(&store, &obj).await, seed_tags().sorted());
        let head = store.head_object(&obj).await.unwrap();
        assert_eq!((head.size, head.object_type), (file.len() as u64, ObjectType::Multipart));
        assert!(head.etag.ends_with("-4"), "multipart ETag {}", head.etag);
    }
}

/// Append with tags: only the first append's tags take effect.
#[tokio::test]
async fn tags_on_append_upload() {
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "append").await;
    let obj = ObjectRef::new(&b, "exampledir/exampleobject.txt");
    let first = store.append_object(&b, &obj.key, 0, Body::from("<yourContent>"), &tagged()).await.unwrap();
    assert_eq!(first.next_position, 13);
    let other = PutOptions::default().tags(Some(TagSet::from_pairs([("ignored", "yes")]).unwrap()));
    let second = store.append_object(&b, &obj.key, 13, Body::from("-more"), &other).await.unwrap();
    assert_eq!(second.next_position, 18);
    assert_eq!(second.crc64, Some(transfer_engine::crc64::checksum(b"<yourContent>-more")));
    assert_eq!(tags_of(&store, &obj).await, seed_tags().sorted());
    assert_eq!(read(&store, &obj).await, Bytes::from_static(b"<yourContent>-more"));
    let head = store.head_object(&obj).await.unwrap();
    assert_eq!((head.object_type, head.next_append_position), (ObjectType::Appendable, Some(18)));
}

/// The resumable flow at the store level: a client uploads some parts and goes away; a new client finds
/// them with ListParts (paged), sends only the missing ones and completes. Tags from initiate arrive.
#[tokio::test]
async fn tags_on_resumable_upload() {
    let served = Served::start();
    let b = bucket(&served.client(V4), "resumable").await;
    let key = "exampledir/examplefile.txt";
    let file = data(5 * PART + 77, 11);
    let upload_id = {
        let first = served.client(V4);
        let id = first.initiate_multipart(&b, key, &tagged()).await.unwrap();
        for n in [1u32, 3] {
            let chunk = &file[(n as usize - 1) * PART..n as usize * PART];
            first.upload_part(id.part(n), Body::from(chunk.to_vec())).await.unwrap();
        }
        id
    };
    let second = served.client(V1);
    let mut listed = Vec::new();
    let mut marker = None;
    loop {
        let page = second.list_parts(&upload_id, marker, Some(1)).await.unwrap();
        listed.extend(page.parts.iter().map(|p| p.part_number.get()));
        if !page.is_truncated {
            break;
        }
        marker = page.next_marker;
    }
    assert_eq!(listed, vec![1, 3]);
    let chunks: Vec<&[u8]> = file.chunks(PART).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let n = i as u32 + 1;
        if !listed.contains(&n) {
            second.upload_part(upload_id.part(n), Body::from(chunk.to_vec())).await.unwrap();
        }
    }
    let all = second.list_parts(&upload_id, None, None).await.unwrap();
    let parts: Vec<CompletedPart> = all.parts.iter().map(CompletedPart::from).collect();
    assert_eq!(parts.len(), chunks.len());
    second.complete_multipart(&upload_id, &parts, &CompleteOptions::default()).await.unwrap();
    let obj = ObjectRef::new(&b, key);
    assert_eq!(read(&second, &obj).await.as_ref(), file.as_slice());
    assert_eq!(tags_of(&second, &obj).await, seed_tags().sorted());
}

#[tokio::test]
async fn put_tagging_on_existing_object_and_version() {
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "tagging").await;
    let obj = ObjectRef::new(&b, "exampledir/exampleobject.txt");
    store.put_object(&b, &obj.key, Body::from("v1"), &PutOptions::default()).await.unwrap();
    let rule = TagSet::from_pairs([("key1", "value1"), ("key2", "value2")]).unwrap();
    store.put_tagging(&obj, &rule).await.unwrap();
    assert_eq!(tags_of(&store, &obj).await, rule.sorted());

    store.put_versioning(&b, true).await.unwrap();
    let first = store.put_object(&b, &obj.key, Body::from("first"), &PutOptions::default()).await.unwrap();
    let second = store.put_object(&b, &obj.key, Body::from("second"), &PutOptions::default()).await.unwrap();
    let (v1, v2) = (first.version_id.expect("version id"), second.version_id.expect("version id"));
    assert_ne!(v1, v2);
    let owner = TagSet::from_pairs([("owner", "John"), ("type", "document")]).unwrap();
    let at_v1 = obj.clone().at_version(&v1);
    assert_eq!(store.put_tagging(&at_v1, &owner).await.unwrap().as_deref(), Some(v1.as_str()));
    assert_eq!(tags_of(&store, &at_v1).await, owner.sorted());
    assert!(store.get_tagging(&obj.clone().at_version(&v2)).await.unwrap().is_empty());
    assert_eq!(read(&store, &at_v1).await, Bytes::from_static(b"first"));
    store.delete_tagging(&at_v1).await.unwrap();
    assert!(store.get_tagging(&at_v1).await.unwrap().is_empty());
}

#[tokio::test]
async fn copy_with_copy_and_replace_tag_directives() {
    let served = Served::start();
    for (i, v) in [V1, V4].into_iter().enumerate() {
        let store = served.client(v);
        let b = bucket(&store, &format!("copy-{i}")).await;
        let src = ObjectRef::new(&b, "srcexampledir/exampleobject.txt");
        let src_tags = TagSet::from_pairs([("src", "yes")]).unwrap();
        let opts = PutOptions::default().tags(Some(src_tags.clone()));
        store.put_object(&b, &src.key, Body::from("copy me"), &opts).await.unwrap();

        store.copy_object(&b, "destexampledir1/exampleobject.txt", &CopyOptions::from(src.clone())).await.unwrap();
        let dest1 = ObjectRef::new(&b, "destexampledir1/exampleobject.txt");
        assert_eq!(tags_of(&store, &dest1).await, src_tags.sorted());

        let replace = CopyOptions::from(src.clone()).tagging(Directive::Replace(seed_tags()));
        store.copy_object(&b, "destexampledir2/exampleobject.txt", &replace).await.unwrap();
        let dest2 = ObjectRef::new(&b, "destexampledir2/exampleobject.txt");
        assert_eq!(tags_of(&store, &dest2).await, seed_tags().sorted());
        assert_eq!(read(&store, &dest2).await, Bytes::from_static(b"copy me"));
        assert_eq!(tags_of(&store, &src).await, src_tags.sorted());
    }
}

/// Multipart copy: HEAD the source, initiate with tags, UploadPartCopy over ranges, complete.
#[tokio::test]
async fn tags_on_multipart_copy() {
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "mpcopy").await;
    let src = ObjectRef::new(&b, "srcexampledir/exampleobject.txt");
    let content = data(3 * PART + 500, 3);
    store.put_object(&b, &src.key, Body::from(content.clone()), &PutOptions::default()).await.unwrap();
    let total = store.head_object(&src).await.unwrap().size;
    let dst = "destexampledir/exampleobject.txt";
    let upload_id = store.initiate_multipart(&b, dst, &tagged()).await.unwrap();
    let mut parts = Vec::new();
    let mut offset = 0u64;
    let mut n = 1;
    while offset < total {
        let len = (PART as u64).min(total - offset);
        let r = store
            .upload_part_copy(
                upload_id.part(n),
                &PartCopySource {
                    source: src.clone(),
                    range: Some(ByteRange::at(offset, len)),
                    conditions: CopyConditions::default(),
                },
            )
            .await
            .unwrap();
        parts.push(CompletedPart::from(&r));
        offset += len;
        n += 1;
    }
    store.complete_multipart(&upload_id, &parts, &CompleteOptions::default()).await.unwrap();
    let dst_obj = ObjectRef::new(&b, dst);
    assert_eq!(store.head_object(&dst_obj).await.unwrap().size, total);
    assert_eq!(read(&store, &dst_obj).await.as_ref(), content.as_slice());
    assert_eq!(tags_of(&store, &dst_obj).await, seed_tags().sorted());
}

#[tokio::test]
async fn tags_on_symlink() {
    let served = Served::start();
    let store = served.client(V1);
    let b = bucket(&store, "symlink").await;
    store.put_object(&b, "exampledir/exampleobject.txt", Body::from("target"), &PutOptions::default()).await.unwrap();
    let link = ObjectRef::new(&b, "shortcut/myobject.txt");
    store.put_symlink(&b, &link.key, "exampledir/exampleobject.txt", &tagged()).await.unwrap();
    assert_eq!(tags_of(&store, &link).await, seed_tags().sorted());
    assert_eq!(store.get_symlink(&link).await.unwrap().target, "exampledir/exampleobject.txt");
    assert_eq!(read(&store, &link).await, Bytes::from_static(b"target"));
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    Metadata::with_user(pairs.iter().copied()).unwrap()
}

/// V2 seed: user metadata on upload, HeadObject, GetObjectMeta, CopyObject with REPLACE metadata.
#[tokio::test]
async fn metadata_upload_head_meta_and_replace() {
    let served = Served::start();
    for (i, v) in [V4, V1].into_iter().enumerate() {
        let store = served.client(v);
        let b = bucket(&store, &format!("meta-{i}")).await;
        let obj = ObjectRef::new(&b, "key");
        let opts = PutOptions::default().metadata(meta(&[("key1", "value1"), ("key2", "value2")]));
        let put = store.put_object(&b, "key", Body::from("Hello, OSS!"), &opts).await.unwrap();
        assert_eq!(put.crc64, Some(transfer_engine::crc64::checksum(b"Hello, OSS!")));

        let head = store.head_object(&obj).await.unwrap();
        assert_eq!(head.size, 11);
        assert_eq!(head.metadata.user, opts.metadata.user);
        assert_eq!(head.etag, put.etag);
        assert_eq!(head.crc64, put.crc64);
        assert_eq!(head.object_type, ObjectType::Normal);
        assert_eq!(head.metadata.storage_class, Some(transfer_engine::StorageClass::Standard));

        let light = store.get_object_meta(&obj).await.unwrap();
        assert_eq!((light.size, light.etag.as_str(), light.crc64), (11, put.etag.as_str(), put.crc64));
        assert_eq!(light.last_modified, head.last_modified);

        let replace = CopyOptions::from(obj.clone()).metadata(Directive::Replace(meta(&[("key3", "value3")])));
        store.copy_object(&b, "key", &replace).await.unwrap();
        let after = store.head_object(&obj).await.unwrap();
        assert_eq!(after.metadata.user, meta(&[("key3", "value3")]).user);
        assert_eq!(read(&store, &obj).await, Bytes::from_static(b"Hello, OSS!"));
    }
}

/// V2 seed's Copier above its multipart threshold, at the store level: the bytes move with UploadPartCopy
/// and the destination gets the replacement metadata and the source's tags.
#[tokio::test]
async fn multipart_copy_replaces_metadata() {
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "copier").await;
    let src = ObjectRef::new(&b, "big-source");
    let content = data(2 * PART + 10, 5);
    let opts = PutOptions::default()
        .metadata(meta(&[("old", "gone")]))
        .tags(Some(TagSet::from_pairs([("keep", "me")]).unwrap()));
    store.put_object(&b, &src.key, Body::from(content.clone()), &opts).await.unwrap();
    let source_tags = store.get_tagging(&src).await.unwrap();
    let init = PutOptions::default().metadata(meta(&[("key1", "value1"), ("key2", "value2")])).tags(Some(source_tags));
    let id = store.initiate_multipart(&b, "copied", &init).await.unwrap();
    let mut parts = Vec::new();
    for (n, off) in (0..content.len() as u64).step_by(PART).enumerate() {
        let len = (PART as u64).min(content.len() as u64 - off);
        let r = store
            .upload_part_copy(
                id.part(n as u32 + 1),
                &PartCopySource {
                    source: src.clone(),
                    range: Some(ByteRange::at(off, len)),
                    conditions: CopyConditions::default(),
                },
            )
            .await
            .unwrap();
        parts.push(CompletedPart::from(&r));
    }
    store.complete_multipart(&id, &parts, &CompleteOptions::default()).await.unwrap();
    let dst = ObjectRef::new(&b, "copied");
    let head = store.head_object(&dst).await.unwrap();
    assert_eq!(head.metadata.user, init.metadata.user);
    assert_eq!(tags_of(&store, &dst).await, TagSet::from_pairs([("keep", "me")]).unwrap().sorted());
    assert_eq!(read(&store, &dst).await.as_ref(), content.as_slice());
}

/// Ranged reads use standard range semantics and report the range served.
#[tokio::test]
async fn ranged_get() {
    let served = Served::start();
    let store = served.client(V4);
    let b = bucket(&store, "range").await;
    let content = data(1000, 9);
    store.put_object(&b, "r", Body::from(content.clone()), &PutOptions::default()).await.unwrap();
    let obj = ObjectRef::new(&b, "r");
    let got = store.get_object(&obj, Some(ByteRange::inclusive(10, 19))).await.unwrap();
    assert_eq!(got.range, Some((10, 19)));
    assert_eq!(got.bytes().await.unwrap().as_ref(), &content[10..20]);
    let tail = store.get_object(&obj, Some(ByteRange::inclusive(990, 5000))).await.unwrap();
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &content[990..]);
}

/// Both signature versions, and virtual-host addressing (`bucket.localhost`).
#[tokio::test]
async fn virtual_host_addressing() {
    let served = Served::start();
    let path_style = served.client(V4);
    let b = bucket(&path_style, "vhost").await;
    let port = served.endpoint.rsplit(':').next().unwrap().to_owned();
    for v in [SignatureVersion::V1, SignatureVersion::V4] {
        let vhost = transfer_engine::http::HttpStore::oss()
            .endpoint(format!("http://localhost:{port}"))
            .region("cn-hangzhou")
            .credentials(transfer_engine::sign::Credentials::new(crate::util::AK, crate::util::SK))
            .signature_version(v)
            .path_style(false)
            .build()
            .unwrap();
        let key = format!("via/vhost-{v:?}");
        vhost.put_object(&b, &key, Body::from(key.clone().into_bytes()), &PutOptions::default()).await.unwrap();
        assert_eq!(read(&path_style, &ObjectRef::new(&b, &key)).await, Bytes::from(key.clone()), "{v:?}");
        assert_eq!(read(&vhost, &ObjectRef::new(&b, &key)).await, Bytes::from(key.clone()), "{v:?}");
    }
}
