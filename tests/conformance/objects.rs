//! Single objects and listings: PutObject, HeadObject, GetObject (whole and ranged), DeleteObject, and
//! ListObjectsV2 with prefixes, delimiters and pages.

use super::{assert_meta, meta, read, Target};
use crate::util::data;
use futures::StreamExt;
use transfer_engine::store::{list_all, ByteRange, ListRequest, PutOptions, Versioning, VersionsRequest};
use transfer_engine::{ErrorKind, ObjectRef};

pub async fn put_get_head_with_metadata(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("objects").await;
    let obj = scope.obj("dir/a b+c~ü.txt");
    let body = data(1000, 1);
    let opts = PutOptions::default().metadata(meta()).content_md5(true);
    let put = s.put_object(&obj.bucket, &obj.key, body.clone().into(), &opts).await.unwrap();
    assert!(!put.etag.is_empty());

    let head = s.head_object(&obj).await.unwrap();
    assert_eq!((head.size, head.etag.as_str()), (1000, put.etag.as_str()));
    assert_meta(&head.metadata, &meta());
    let summary = s.get_object_meta(&obj).await.unwrap();
    assert_eq!((summary.size, summary.etag.as_str()), (1000, put.etag.as_str()));

    let got = s.get_object(&obj, None).await.unwrap();
    assert_eq!((got.info.size, got.info.etag.as_str()), (1000, put.etag.as_str()));
    assert_meta(&got.info.metadata, &meta());
    assert_eq!(got.bytes().await.unwrap().to_vec(), body);
    let part = s.get_object(&obj, Some(ByteRange::inclusive(10, 19))).await.unwrap();
    assert_eq!((part.info.size, part.range), (1000, Some((10, 19))));
    assert_eq!(part.bytes().await.unwrap().to_vec(), body[10..20].to_vec());
    // The end is clamped to the size.
    let tail = s.get_object(&obj, Some(ByteRange { first: 990, last: Some(5000) })).await.unwrap();
    assert_eq!(tail.range, Some((990, 999)));
    assert_eq!(tail.bytes().await.unwrap().to_vec(), body[990..].to_vec());

    // An empty object.
    let empty = scope.obj("empty");
    s.put_object(&empty.bucket, &empty.key, Vec::new().into(), &PutOptions::default()).await.unwrap();
    assert_eq!(s.head_object(&empty).await.unwrap().size, 0);
    assert!(read(s, &empty).await.is_empty());

    // Gone after DeleteObject, with the service's codes.
    s.delete_object(&obj).await.unwrap();
    let e = s.head_object(&obj).await.unwrap_err();
    assert_eq!((e.status(), e.is_retryable()), (Some(404), false), "{e}");
    let e = s.get_object(&obj, None).await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(404), Some("NoSuchKey"), false), "{e}");

    // Append and symlinks exist only where the store says so; elsewhere the call is refused before sending.
    if !s.capabilities().append {
        let e = s
            .append_object(&scope.bucket, &scope.key("log"), 0, b"x".to_vec().into(), &PutOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }
}

pub async fn missing_bucket(t: &Target) {
    let s = &*t.store;
    let missing = format!("transfer-conformance-missing-{}", std::process::id());
    let e = s.get_object(&ObjectRef::new(&missing, "k"), None).await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(404), Some("NoSuchBucket"), false), "{e}");
    let e = s.put_object(&missing, "k", b"x".to_vec().into(), &PutOptions::default()).await.unwrap_err();
    assert_eq!((e.status(), e.service_code()), (Some(404), Some("NoSuchBucket")), "{e}");
    let e = s.list_objects(&missing, &ListRequest::default()).await.unwrap_err();
    assert_eq!((e.status(), e.service_code()), (Some(404), Some("NoSuchBucket")), "{e}");
    assert_eq!(e.kind(), transfer_engine::ErrorKind::BucketNotFound, "{e}");
}

pub async fn listing_with_prefixes_and_paging(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("listing").await;
    let names = ["a/1", "a/2", "a/3 x", "a/4+y", "a/5", "a/sub/x", "b/1", "top"];
    for n in names {
        s.put_object(&scope.bucket, &scope.key(n), n.as_bytes().to_vec().into(), &PutOptions::default()).await.unwrap();
    }
    let strip = |k: &str| k.strip_prefix(&scope.prefix).unwrap_or_else(|| panic!("{k} outside the scope")).to_owned();

    // Two keys a page under a/.
    let (mut seen, mut token, mut pages) = (Vec::new(), None, 0);
    loop {
        let req =
            ListRequest::default().prefix(Some(scope.key("a/"))).max_keys(Some(2)).continuation_token(token.clone());
        let page = s.list_objects(&scope.bucket, &req).await.unwrap();
        pages += 1;
        assert!(page.objects.len() <= 2);
        seen.extend(page.objects.iter().map(|o| (strip(&o.key), o.size)));
        if !page.is_truncated {
            break;
        }
        token = page.next_continuation_token;
        assert!(token.is_some() && pages < 10);
    }
    let want: Vec<(String, u64)> = names[..6].iter().map(|k| (k.to_string(), k.len() as u64)).collect();
    assert_eq!(seen, want);
    assert_eq!(pages, 3);

    // Rolled up by the delimiter.
    let req = ListRequest::default().prefix(Some(scope.prefix.clone())).delimiter(Some("/".into()));
    let root = s.list_objects(&scope.bucket, &req).await.unwrap();
    assert_eq!(root.common_prefixes.iter().map(|p| strip(p)).collect::<Vec<_>>(), ["a/", "b/"]);
    assert_eq!(root.objects.iter().map(|o| strip(&o.key)).collect::<Vec<_>>(), ["top"]);
    // Starting after a key, with the delimiter.
    let req = ListRequest::default()
        .prefix(Some(scope.key("a/")))
        .delimiter(Some("/".into()))
        .start_after(Some(scope.key("a/3 x")));
    let after = s.list_objects(&scope.bucket, &req).await.unwrap();
    assert_eq!(after.objects.iter().map(|o| strip(&o.key)).collect::<Vec<_>>(), ["a/4+y", "a/5"]);
    assert_eq!(after.common_prefixes.iter().map(|p| strip(p)).collect::<Vec<_>>(), ["a/sub/"]);
    // Prefix and delimiter pages together: keys and rolled-up prefixes share the page size.
    let (mut entries, mut token) = (Vec::new(), None);
    for _ in 0..10 {
        let req = ListRequest::default()
            .prefix(Some(scope.key("a/")))
            .delimiter(Some("/".into()))
            .max_keys(Some(4))
            .continuation_token(token.clone());
        let page = s.list_objects(&scope.bucket, &req).await.unwrap();
        assert!(page.objects.len() + page.common_prefixes.len() <= 4);
        entries.extend(page.objects.iter().map(|o| strip(&o.key)));
        entries.extend(page.common_prefixes.iter().map(|p| strip(p)));
        if !page.is_truncated {
            break;
        }
        token = page.next_continuation_token;
    }
    entries.sort();
    assert_eq!(entries, ["a/1", "a/2", "a/3 x", "a/4+y", "a/5", "a/sub/"]);

    // The whole listing as a stream, two keys a page: every key once, in order.
    let req = ListRequest::default().prefix(Some(scope.prefix.clone())).max_keys(Some(2));
    let streamed: Vec<String> =
        list_all(t.store.clone(), &scope.bucket, req).map(|e| strip(&e.unwrap().key)).collect::<Vec<_>>().await;
    assert_eq!(streamed, names);
}

pub async fn delete_many(t: &Target) {
    let s = &*t.store;
    let scope = t.scope("delete-many").await;
    for n in ["a", "b", "c d+e", "kept"] {
        s.put_object(&scope.bucket, &scope.key(n), n.as_bytes().to_vec().into(), &PutOptions::default()).await.unwrap();
    }
    let objs: Vec<ObjectRef> = ["a", "b", "c d+e", "never-there"].iter().map(|n| scope.obj(n)).collect();
    let mut with_stranger = objs.clone();
    with_stranger.push(ObjectRef::new("another-bucket", "x"));
    let results = s.delete_objects(&scope.bucket, &with_stranger).await.unwrap();
    assert_eq!(results.len(), 5);
    // One result per object, in order: a missing key deletes fine, an object of another bucket is refused in
    // its place without hiding the others.
    for (o, r) in objs.iter().zip(&results) {
        assert!(r.is_ok(), "{o}: {r:?}");
    }
    assert_eq!(results[4].as_ref().unwrap_err().kind(), ErrorKind::InvalidInput);
    let left: Vec<String> = list_all(t.store.clone(), &scope.bucket, ListRequest::default())
        .map(|e| e.unwrap().key)
        .filter(|k| futures::future::ready(k.starts_with(&scope.prefix)))
        .collect()
        .await;
    assert_eq!(left, [scope.key("kept")]);
}

pub async fn buckets(t: &Target) {
    let b = &*t.buckets;
    b.create_bucket("lifecycle").await.unwrap();
    // Creating a bucket that exists and is yours succeeds.
    b.create_bucket("lifecycle").await.unwrap();
    t.store.put_object("lifecycle", "k", b"x".to_vec().into(), &PutOptions::default()).await.unwrap();
    assert_eq!(read(&*t.store, &ObjectRef::new("lifecycle", "k")).await, b"x");
    t.store.delete_object(&ObjectRef::new("lifecycle", "k")).await.unwrap();
    b.delete_bucket("lifecycle").await.unwrap();
    let e = t.store.list_objects("lifecycle", &ListRequest::default()).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
}

pub async fn delete_bucket_refuses_objects(t: &Target) {
    let b = &*t.buckets;
    b.create_bucket("not-empty").await.unwrap();
    t.store.put_object("not-empty", "k", b"x".to_vec().into(), &PutOptions::default()).await.unwrap();
    let e = b.delete_bucket("not-empty").await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(409), Some("BucketNotEmpty"), false), "{e}");
    assert_eq!(read(&*t.store, &ObjectRef::new("not-empty", "k")).await, b"x");
}

pub async fn versioning_states(t: &Target) {
    let b = &*t.buckets;
    b.create_bucket("states").await.unwrap();
    assert_eq!(b.get_versioning("states").await.unwrap(), Versioning::Off);
    b.put_versioning("states", true).await.unwrap();
    assert_eq!(b.get_versioning("states").await.unwrap(), Versioning::Enabled);
    b.put_versioning("states", false).await.unwrap();
    assert_eq!(b.get_versioning("states").await.unwrap(), Versioning::Suspended);
}

/// ListObjectVersions: every version and delete marker under a prefix, by key, each key's newest first, with
/// which one is current; the same over pages of one entry, continued by its markers.
pub async fn versions_are_listed_by_key_newest_first(t: &Target) {
    let scope = t.versioned_scope("versions").await;
    let (s, b) = (&*t.store, scope.bucket.as_str());
    let put = |key: &str, body: &'static [u8]| {
        let key = scope.key(key);
        async move { s.put_object(b, &key, body.to_vec().into(), &PutOptions::default()).await.unwrap() }
    };
    let v1 = put("a b", b"one").await.version_id.unwrap();
    let v2 = put("a b", b"two!").await.version_id.unwrap();
    let marker = s.delete_object(&scope.obj("a b")).await.unwrap();
    assert!(marker.delete_marker);
    let v3 = put("c", b"three").await.version_id.unwrap();
    let all = VersionsRequest::default().prefix(Some(scope.key("")));
    let page = s.list_versions(b, &all).await.unwrap();
    // moto lists every version before every delete marker; S3, OSS and serve interleave them by key. Each
    // key's current entry first, the rest as listed (newest first), compares both.
    let in_order = |mut v: Vec<(String, String, bool, bool, u64)>| {
        v.sort_by(|a, b| (&a.0, !a.2).cmp(&(&b.0, !b.2)));
        v
    };
    let got = in_order(
        page.versions
            .iter()
            .map(|v| (v.key.clone(), v.version_id.clone(), v.is_latest, v.delete_marker, v.size))
            .collect(),
    );
    let want = vec![
        (scope.key("a b"), marker.version_id.clone().unwrap(), true, true, 0),
        (scope.key("a b"), v2.clone(), false, false, 4),
        (scope.key("a b"), v1.clone(), false, false, 3),
        (scope.key("c"), v3.clone(), true, false, 5),
    ];
    assert_eq!(got, want);
    assert!(!page.is_truncated);
    // One entry a page, continued by the markers: the same entries, in the same order.
    let mut paged = Vec::new();
    let mut req = all.clone().max_keys(Some(1));
    loop {
        let page = s.list_versions(b, &req).await.unwrap();
        paged.extend(
            page.versions.iter().map(|v| (v.key.clone(), v.version_id.clone(), v.is_latest, v.delete_marker, v.size)),
        );
        if !page.is_truncated {
            break;
        }
        assert!(paged.len() < 10, "the markers do not advance: {paged:?}");
        req = req.key_marker(page.next_key_marker).version_id_marker(page.next_version_id_marker);
    }
    assert_eq!(in_order(paged), want);
}
