//! The S3 dialect client against a real third-party S3 server: moto's `moto_server`, started per test on
//! 127.0.0.1 from the test virtualenv (see `util::moto`). moto checks neither signatures nor Content-MD5, but
//! implements tagging, versioning and the whole multipart API as S3 does.

use crate::util::data;
use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::moto::Moto;
use std::sync::Arc;
use std::time::Duration;
use transfer_engine::checkpoint::{JobSpec, Ledger};
use transfer_engine::job::{CopyRequest, Engine, EngineConfig, TagOn, UploadRequest};
use transfer_engine::plan::PlanOptions;
use transfer_engine::run::RetryPolicy;
use transfer_engine::s3::S3Store;
use transfer_engine::store::{
    ByteRange, CompleteOptions, CompletedPart, CopyConditions, CopyOptions, Directive, ListRequest, ListUploadsRequest,
    ObjectType, PutOptions, Versioning,
};
use transfer_engine::{BucketStore, ErrorKind, Metadata, ObjectRef, ObjectStore, TagSet};

const MIB: usize = 1024 * 1024;

fn meta() -> Metadata {
    let mut m = Metadata::with_user([("origin", "backup"), ("team", "storage")]).unwrap();
    m.content_type = Some("application/x-test".into());
    m.cache_control = Some("no-cache".into());
    m
}

fn tags() -> TagSet {
    TagSet::from_pairs([("k4+-=", "+-=._:/"), ("plain", "v w")]).unwrap()
}

fn opts() -> PutOptions {
    PutOptions { metadata: meta(), tags: Some(tags()), content_md5: true, ..PutOptions::default() }
}

async fn read(s: &S3Store, obj: &ObjectRef) -> Vec<u8> {
    s.get_object(obj, None).await.unwrap().bytes().await.unwrap().to_vec()
}

fn assert_meta(info_meta: &Metadata, want: &Metadata) {
    assert_eq!(info_meta.user, want.user);
    assert_eq!(info_meta.content_type, want.content_type);
    assert_eq!(info_meta.cache_control, want.cache_control);
}

#[tokio::test]
async fn put_get_head_delete_with_metadata_and_tags() {
    let Some(moto) = Moto::start("put_get_head_delete_with_metadata_and_tags") else { return };
    let s = moto.client();
    s.create_bucket("objects").await.unwrap();
    s.create_bucket("objects").await.unwrap(); // already ours: success
    let obj = ObjectRef::new("objects", "dir/a b+c~ü.txt");
    let body = data(1000, 1);
    let put = s.put_object(&obj.bucket, &obj.key, body.clone().into(), &opts()).await.unwrap();
    assert!(!put.etag.is_empty());

    let head = s.head_object(&obj).await.unwrap();
    assert_eq!((head.size, head.etag.as_str(), head.object_type), (1000, put.etag.as_str(), ObjectType::Normal));
    assert_meta(&head.metadata, &meta());
    let summary = s.get_object_meta(&obj).await.unwrap();
    assert_eq!((summary.size, summary.etag.as_str()), (1000, put.etag.as_str()));

    assert_eq!(read(&s, &obj).await, body);
    let part = s.get_object(&obj, Some(ByteRange::inclusive(10, 19))).await.unwrap();
    assert_eq!((part.info.size, part.range), (1000, Some((10, 19))));
    assert_eq!(part.bytes().await.unwrap().to_vec(), body[10..20].to_vec());
    let tail = s.get_object(&obj, Some(ByteRange { first: 990, last: Some(5000) })).await.unwrap();
    assert_eq!(tail.range, Some((990, 999)));
    assert_eq!(s.get_tagging(&obj).await.unwrap().sorted(), tags().sorted());

    let e = s.append_object("objects", "log", 0, b"x".to_vec().into(), &PutOptions::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);

    s.delete_object(&obj).await.unwrap();
    let e = s.head_object(&obj).await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(404), Some("NoSuchKey"), false));
    let e = s.get_object(&obj, None).await.unwrap_err();
    assert_eq!(e.service_code(), Some("NoSuchKey"));
    let e = s.get_object(&ObjectRef::new("no-such-bucket", "k"), None).await.unwrap_err();
    assert_eq!(e.service_code(), Some("NoSuchBucket"));
    s.delete_bucket("objects").await.unwrap();
}

#[tokio::test]
async fn buckets_outside_us_east_1_carry_their_location() {
    let Some(moto) = Moto::start("buckets_outside_us_east_1_carry_their_location") else { return };
    let s = moto.client_in("eu-west-1");
    s.create_bucket("europe").await.unwrap();
    s.put_object("europe", "k", b"x".to_vec().into(), &PutOptions::default()).await.unwrap();
    assert_eq!(read(&s, &ObjectRef::new("europe", "k")).await, b"x");
}

#[tokio::test]
async fn multipart_with_tags_on_initiate_parts_out_of_order_list_parts_paging_and_abort() {
    let Some(moto) = Moto::start("multipart_with_tags_on_initiate") else { return };
    let s = moto.client();
    s.create_bucket("multi").await.unwrap();
    let id = s.initiate_multipart("multi", "big", &opts()).await.unwrap();
    let parts = [(3u32, data(1000, 3)), (1, data(5 * MIB, 1)), (2, data(5 * MIB, 2))];
    for (n, bytes) in &parts {
        let r = s.upload_part("multi", "big", &id, *n, bytes.clone().into(), true).await.unwrap();
        assert_eq!((r.part_number, r.size), (*n, bytes.len() as u64));
    }
    // ListParts, one part a page.
    let (mut listed, mut marker, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = s.list_parts("multi", "big", &id, marker, Some(1)).await.unwrap();
        pages += 1;
        listed.extend(page.parts.iter().map(|p| (p.part_number, p.size)));
        if !page.is_truncated {
            break;
        }
        marker = page.next_marker;
        assert!(marker.is_some() && pages < 10);
    }
    assert_eq!(listed, [(1, 5 * MIB as u64), (2, 5 * MIB as u64), (3, 1000)]);
    assert_eq!(pages, 3);
    let uploads = s.list_uploads("multi", &ListUploadsRequest::default()).await.unwrap();
    assert!(uploads.uploads.iter().any(|u| u.upload_id == id && u.key == "big"));

    let page = s.list_parts("multi", "big", &id, None, None).await.unwrap();
    let done: Vec<CompletedPart> =
        page.parts.iter().map(|p| CompletedPart { part_number: p.part_number, etag: p.etag.clone() }).collect();
    let put = s.complete_multipart("multi", "big", &id, &done, &CompleteOptions::default()).await.unwrap();
    let obj = ObjectRef::new("multi", "big");
    let head = s.head_object(&obj).await.unwrap();
    assert_eq!((head.size, head.etag.as_str(), head.object_type), ((10 * MIB + 1000) as u64, put.etag.as_str(), ObjectType::Multipart));
    assert_meta(&head.metadata, &meta());
    let want: Vec<u8> = [&parts[1].1, &parts[2].1, &parts[0].1].into_iter().flatten().copied().collect();
    assert_eq!(read(&s, &obj).await, want);
    assert_eq!(s.get_tagging(&obj).await.unwrap().sorted(), tags().sorted());

    // Abort: the upload and its parts are gone.
    let id = s.initiate_multipart("multi", "dropped", &PutOptions::default()).await.unwrap();
    s.upload_part("multi", "dropped", &id, 1, data(100, 9).into(), false).await.unwrap();
    s.abort_multipart("multi", "dropped", &id).await.unwrap();
    let e = s.list_parts("multi", "dropped", &id, None, None).await.unwrap_err();
    assert_eq!((e.service_code(), e.is_retryable()), (Some("NoSuchUpload"), false));
    let uploads = s.list_uploads("multi", &ListUploadsRequest::default()).await.unwrap();
    assert!(uploads.uploads.iter().all(|u| u.upload_id != id));
}

#[tokio::test]
async fn tagging_on_the_current_object_and_on_a_specific_version() {
    let Some(moto) = Moto::start("tagging_on_a_specific_version") else { return };
    let s = moto.client();
    s.create_bucket("versions").await.unwrap();
    assert_eq!(s.get_versioning("versions").await.unwrap(), Versioning::Off);
    s.put_versioning("versions", true).await.unwrap();
    assert_eq!(s.get_versioning("versions").await.unwrap(), Versioning::Enabled);

    let first = TagSet::from_pairs([("gen", "1")]).unwrap();
    let second = TagSet::from_pairs([("gen", "2")]).unwrap();
    let put = |t: &TagSet| PutOptions { tags: Some(t.clone()), ..PutOptions::default() };
    let v1 = s.put_object("versions", "k", b"one".to_vec().into(), &put(&first)).await.unwrap().version_id.unwrap();
    let v2 = s.put_object("versions", "k", b"two".to_vec().into(), &put(&second)).await.unwrap().version_id.unwrap();
    assert_ne!(v1, v2);
    let current = ObjectRef::new("versions", "k");
    let old = current.clone().at_version(&v1);
    assert_eq!(read(&s, &old).await, b"one");
    assert_eq!(s.head_object(&old).await.unwrap().version_id.as_deref(), Some(v1.as_str()));

    let changed = TagSet::from_pairs([("gen", "1"), ("reviewed", "yes")]).unwrap();
    // S3 names the version tagged in x-amz-version-id; moto 5.2 sends no such header.
    let tagged = s.put_tagging(&old, &changed).await.unwrap();
    assert!(tagged.is_none() || tagged.as_deref() == Some(v1.as_str()), "{tagged:?}");
    assert_eq!(s.get_tagging(&old).await.unwrap().sorted(), changed.sorted());
    assert_eq!(s.get_tagging(&current).await.unwrap().sorted(), second.sorted());

    let replaced = TagSet::from_pairs([("gen", "2b")]).unwrap();
    s.put_tagging(&current, &replaced).await.unwrap();
    assert_eq!(s.get_tagging(&current).await.unwrap().sorted(), replaced.sorted());
    s.delete_tagging(&old).await.unwrap();
    assert!(s.get_tagging(&old).await.unwrap().is_empty());
    assert_eq!(s.get_tagging(&current).await.unwrap().sorted(), replaced.sorted());
    s.delete_tagging(&current).await.unwrap();
    assert!(s.get_tagging(&current).await.unwrap().is_empty());

    let del = s.delete_object(&current).await.unwrap();
    assert!(del.delete_marker && del.version_id.is_some());
    assert_eq!(read(&s, &old).await, b"one");
    let gone = s.delete_object(&old).await.unwrap();
    assert_eq!(gone.version_id.as_deref(), Some(v1.as_str()));
}

#[tokio::test]
async fn upload_part_copy_with_ranges_and_a_pinned_source() {
    let Some(moto) = Moto::start("upload_part_copy_with_ranges") else { return };
    let s = moto.client();
    s.create_bucket("copysrc").await.unwrap();
    s.create_bucket("copydst").await.unwrap();
    let content = data(11 * MIB + 3, 5);
    let src_put = s.put_object("copysrc", "source", content.clone().into(), &opts()).await.unwrap();
    let src = ObjectRef::new("copysrc", "source");
    let pinned = CopyConditions { if_match: Some(src_put.etag.clone()), ..CopyConditions::default() };

    let id = s.initiate_multipart("copydst", "copy", &opts()).await.unwrap();
    let m = 5 * MIB as u64;
    let ranges = [ByteRange::inclusive(0, m - 1), ByteRange::inclusive(m, 2 * m - 1), ByteRange { first: 2 * m, last: None }];
    let mut done = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        let n = i as u32 + 1;
        let receipt = s.upload_part_copy("copydst", "copy", &id, n, &src, Some(*r), &pinned).await.unwrap();
        done.push(CompletedPart { part_number: n, etag: receipt.etag });
    }
    assert_eq!(s.list_parts("copydst", "copy", &id, None, None).await.unwrap().parts.last().unwrap().size, MIB as u64 + 3);

    s.complete_multipart("copydst", "copy", &id, &done, &CompleteOptions::default()).await.unwrap();
    let dst = ObjectRef::new("copydst", "copy");
    assert_eq!(read(&s, &dst).await, content);
    assert_meta(&s.head_object(&dst).await.unwrap().metadata, &meta());
    assert_eq!(s.get_tagging(&dst).await.unwrap().sorted(), tags().sorted());
}

#[tokio::test]
async fn copy_object_with_both_directives_in_both_modes() {
    let Some(moto) = Moto::start("copy_object_with_both_directives") else { return };
    let s = moto.client();
    s.create_bucket("copies").await.unwrap();
    let content = data(3000, 7);
    s.put_object("copies", "src", content.clone().into(), &opts()).await.unwrap();
    let src = ObjectRef::new("copies", "src");

    // Source conditions are sent (moto 5.2 checks only x-amz-copy-source-if-none-match, and only here).
    let mut unchanged = CopyOptions::from(src.clone());
    unchanged.conditions.if_none_match = Some(s.head_object(&src).await.unwrap().etag);
    let e = s.copy_object("copies", "never", &unchanged).await.unwrap_err();
    assert_eq!((e.status(), e.service_code(), e.is_retryable()), (Some(412), Some("PreconditionFailed"), false));

    s.copy_object("copies", "kept", &CopyOptions::from(src.clone())).await.unwrap();
    let kept = ObjectRef::new("copies", "kept");
    assert_eq!(read(&s, &kept).await, content);
    assert_meta(&s.head_object(&kept).await.unwrap().metadata, &meta());
    assert_eq!(s.get_tagging(&kept).await.unwrap().sorted(), tags().sorted());

    let mut new_meta = Metadata::with_user([("origin", "copy")]).unwrap();
    new_meta.content_type = Some("text/plain".into());
    let new_tags = TagSet::from_pairs([("copied", "yes")]).unwrap();
    let mut replace = CopyOptions::from(src.clone());
    replace.metadata = Directive::Replace(new_meta.clone());
    replace.tagging = Directive::Replace(new_tags.clone());
    s.copy_object("copies", "replaced", &replace).await.unwrap();
    let replaced = ObjectRef::new("copies", "replaced");
    assert_eq!(read(&s, &replaced).await, content);
    assert_meta(&s.head_object(&replaced).await.unwrap().metadata, &new_meta);
    assert_eq!(s.get_tagging(&replaced).await.unwrap().sorted(), new_tags.sorted());

    // Mixed: the metadata kept, the tags replaced; and the other way round.
    let mut mixed = CopyOptions::from(src.clone());
    mixed.tagging = Directive::Replace(new_tags.clone());
    s.copy_object("copies", "mixed", &mixed).await.unwrap();
    let m = ObjectRef::new("copies", "mixed");
    assert_meta(&s.head_object(&m).await.unwrap().metadata, &meta());
    assert_eq!(s.get_tagging(&m).await.unwrap().sorted(), new_tags.sorted());
    let mut other = CopyOptions::from(src);
    other.metadata = Directive::Replace(new_meta.clone());
    s.copy_object("copies", "other", &other).await.unwrap();
    let o = ObjectRef::new("copies", "other");
    assert_meta(&s.head_object(&o).await.unwrap().metadata, &new_meta);
    assert_eq!(s.get_tagging(&o).await.unwrap().sorted(), tags().sorted());
}

#[tokio::test]
async fn listing_with_prefixes_delimiters_and_paging() {
    let Some(moto) = Moto::start("listing_with_prefixes_delimiters_and_paging") else { return };
    let s = moto.client();
    s.create_bucket("listing").await.unwrap();
    let keys = ["a/1", "a/2", "a/3 x", "a/4+y", "a/5", "a/sub/x", "b/1", "top"];
    for k in keys {
        s.put_object("listing", k, k.as_bytes().to_vec().into(), &PutOptions::default()).await.unwrap();
    }
    let (mut seen, mut token, mut pages) = (Vec::new(), None, 0);
    loop {
        let req = ListRequest { prefix: Some("a/".into()), max_keys: Some(2), continuation_token: token.clone(), ..Default::default() };
        let page = s.list_objects("listing", &req).await.unwrap();
        pages += 1;
        assert!(page.objects.len() <= 2);
        seen.extend(page.objects.iter().map(|o| (o.key.clone(), o.size)));
        if !page.is_truncated {
            break;
        }
        token = page.next_continuation_token;
        assert!(token.is_some() && pages < 10);
    }
    let want: Vec<(String, u64)> = keys[..6].iter().map(|k| (k.to_string(), k.len() as u64)).collect();
    assert_eq!(seen, want);
    assert_eq!(pages, 3);

    let root = s.list_objects("listing", &ListRequest { delimiter: Some("/".into()), ..Default::default() }).await.unwrap();
    assert_eq!(root.common_prefixes, ["a/", "b/"]);
    assert_eq!(root.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["top"]);
    let req = ListRequest { prefix: Some("a/".into()), delimiter: Some("/".into()), start_after: Some("a/3 x".into()), ..Default::default() };
    let after = s.list_objects("listing", &req).await.unwrap();
    assert_eq!(after.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["a/4+y", "a/5"]);
    assert_eq!(after.common_prefixes, ["a/sub/"]);
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        plan: PlanOptions {
            preferred_part_size: 5 * MIB as u64,
            multipart_threshold: 6 * MIB as u64,
            copy_threshold: 6 * MIB as u64,
            copy_part_size: 5 * MIB as u64,
            max_in_flight: 2,
            ..PlanOptions::default()
        },
        retry: RetryPolicy { base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20), ..RetryPolicy::default() },
        tag_on: TagOn::Initiate,
        content_md5: true,
        ..EngineConfig::default()
    }
}

fn engine_for(endpoint: &str, ledger: &Ledger) -> Engine {
    let store = S3Store::builder()
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials(transfer_engine::sign::Credentials::new("moto-test-key", "moto-test-secret"))
        .system_proxy(false)
        .build()
        .unwrap();
    Engine::new(Arc::new(store), ledger.clone(), engine_config()).unwrap()
}

#[tokio::test]
async fn the_engine_resumes_a_multipart_upload_and_copies_in_parts() {
    let Some(moto) = Moto::start("the_engine_resumes_a_multipart_upload") else { return };
    let s = moto.client();
    s.create_bucket("engine").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let spec = JobSpec { kind: "upload".into(), source: "files".into(), destination: "s3://engine".into(), options_json: "{}".into() };
    let job = ledger.create_job(&spec).unwrap();
    let content = data(12 * MIB + 3, 11); // three parts of 5, 5 and 2 MiB
    let path = dir.path().join("big");
    std::fs::write(&path, &content).unwrap();
    let mut req = UploadRequest::new(&path, "engine", "backup/big");
    req.metadata = meta();
    req.tags = Some(tags());

    // Part 2 is refused once, permanently: the first run fails with acknowledged parts in the ledger.
    let proxy = FaultProxy::start(
        &moto.endpoint,
        vec![Rule { method: Some("PUT"), contains: "partNumber=2&", fault: Fault::Status(403, "AccessDenied"), times: 1 }],
    )
    .await;
    let e = engine_for(&proxy.endpoint, &ledger).upload_file(job, &req).await.unwrap_err();
    assert_eq!(e.service_code(), Some("AccessDenied"), "{e}");
    let uploads = s.list_uploads("engine", &ListUploadsRequest::default()).await.unwrap();
    assert_eq!(uploads.uploads.len(), 1, "the upload is kept for the resume");

    let out = engine_for(&moto.endpoint, &ledger).upload_file(job, &req).await.unwrap();
    assert_eq!(out.size, content.len() as u64);
    assert!(out.parts_reused >= 1 && out.parts_sent + out.parts_reused == 3, "{out:?}");
    let obj = ObjectRef::new("engine", "backup/big");
    assert_eq!(read(&s, &obj).await, content);
    let head = s.head_object(&obj).await.unwrap();
    assert_eq!((head.object_type, head.etag.as_str()), (ObjectType::Multipart, out.etag.as_str()));
    assert_meta(&head.metadata, &meta());
    assert_eq!(s.get_tagging(&obj).await.unwrap().sorted(), tags().sorted());
    assert!(s.list_uploads("engine", &ListUploadsRequest::default()).await.unwrap().uploads.is_empty());

    // A server-side copy above the copy threshold: UploadPartCopy in ranges, metadata and tags kept or replaced.
    let copy_job = ledger
        .create_job(&JobSpec { kind: "copy".into(), source: "s3://engine/backup/big".into(), destination: "s3://engine".into(), options_json: "{}".into() })
        .unwrap();
    let engine = engine_for(&moto.endpoint, &ledger);
    let copied = engine.copy_object(copy_job, &CopyRequest::new(obj.clone(), "engine", "copy/kept")).await.unwrap();
    assert_eq!((copied.size, copied.parts_sent), (content.len() as u64, 3));
    let kept = ObjectRef::new("engine", "copy/kept");
    assert_eq!(read(&s, &kept).await, content);
    assert_meta(&s.head_object(&kept).await.unwrap().metadata, &meta());
    assert_eq!(s.get_tagging(&kept).await.unwrap().sorted(), tags().sorted());

    let new_tags = TagSet::from_pairs([("copied", "yes")]).unwrap();
    let mut replace = CopyRequest::new(obj, "engine", "copy/replaced");
    replace.metadata = Directive::Replace(Metadata::with_user([("origin", "copy")]).unwrap());
    replace.tags = Directive::Replace(new_tags.clone());
    let replace_job = ledger
        .create_job(&JobSpec { kind: "copy".into(), source: "s3://engine/backup/big".into(), destination: "s3://engine/copy/replaced".into(), options_json: "{}".into() })
        .unwrap();
    engine.copy_object(replace_job, &replace).await.unwrap();
    let replaced = ObjectRef::new("engine", "copy/replaced");
    assert_eq!(read(&s, &replaced).await, content);
    let head = s.head_object(&replaced).await.unwrap();
    assert_eq!(head.metadata.user.get("origin").map(String::as_str), Some("copy"));
    assert_eq!(head.metadata.user.get("team"), None);
    assert_eq!(s.get_tagging(&replaced).await.unwrap().sorted(), new_tags.sorted());
}
