//! The server-side copy driver through its library API against `transfer serve`: metadata and tags kept or
//! replaced on both the single CopyObject and the multipart UploadPartCopy path, a specific source version, an
//! interrupted copy that resumes, a source overwritten between runs, and tags applied on complete.

use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::{bucket, client_for, data, Served, AK, SK};
use std::sync::Arc;
use std::time::Duration;
use transfer_engine::checkpoint::{JobId, JobKind, JobSpec, Ledger, ObjectState};
use transfer_engine::job::{CopyRequest, Engine, EngineConfig, TagOn};
use transfer_engine::plan::PlanOptions;
use transfer_engine::run::RetryPolicy;
use transfer_engine::sign::{Credentials, SignatureVersion::V4};
use transfer_engine::store::{Body, Directive, PutOptions};
use transfer_engine::MultipartStore;
use transfer_engine::{BucketStore, Metadata, ObjectRef, ObjectStore, TagSet};

const KIB: usize = 1024;
/// 1 MiB + 3: eleven parts of 100 KiB (the last smaller) above the 300 KiB copy threshold.
const BIG: usize = 1024 * KIB + 3;
const SMALL: usize = 10 * KIB;

fn config(tag_on: TagOn) -> EngineConfig {
    EngineConfig::default()
        .plan(
            PlanOptions::default()
                .copy_threshold(Some(300 * KIB as u64))
                .copy_part_size(100 * KIB as u64)
                .max_in_flight(3),
        )
        .retry(RetryPolicy::default().base_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(20)))
        .tag_on(tag_on)
}

fn source_tags() -> TagSet {
    TagSet::from_pairs([("k4+-=", "+-=._:/"), ("plain", "v")]).unwrap()
}

fn source_meta() -> Metadata {
    let mut m = Metadata::with_user([("origin", "backup"), ("team", "storage")]).unwrap();
    m.content_type = Some("application/x-test".into());
    m.cache_control = Some("no-cache".into());
    m
}

struct Setup {
    served: Served,
    _dir: tempfile::TempDir,
    ledger: Ledger,
    job: JobId,
}

async fn setup(buckets: &[&str]) -> Setup {
    let served = Served::start();
    for b in buckets {
        bucket(&served.client(V4), b).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let spec = JobSpec {
        kind: JobKind::Copy,
        source: "oss://src".into(),
        destination: "oss://dst".into(),
        note: String::new(),
    };
    let job = ledger.create_job(&spec).unwrap();
    Setup { served, _dir: dir, ledger, job }
}

impl Setup {
    fn engine(&self, endpoint: &str, tag_on: TagOn) -> Engine {
        let store: Arc<dyn transfer_engine::Store> = Arc::new(client_for(endpoint, V4, Credentials::new(AK, SK)));
        Engine::new(store, self.ledger.clone(), config(tag_on)).unwrap()
    }

    /// Writes a source object with the test metadata and tags; returns its version id.
    async fn put(&self, b: &str, key: &str, bytes: &[u8]) -> Option<String> {
        let opts = PutOptions::default().metadata(source_meta()).tags(Some(source_tags()));
        let store = self.served.client(V4);
        store.put_object(b, key, bytes.to_vec().into(), &opts).await.unwrap().version_id
    }

    /// A second job (one object row per source and job).
    fn other_job(&self) -> JobId {
        let spec = JobSpec {
            kind: JobKind::Copy,
            source: "oss://src".into(),
            destination: "oss://dst/2".into(),
            note: String::new(),
        };
        match self.ledger.find_job(spec.kind, &spec.source, &spec.destination).unwrap() {
            Some(j) => j,
            None => self.ledger.create_job(&spec).unwrap(),
        }
    }

    async fn read(&self, obj: &ObjectRef) -> Vec<u8> {
        self.served.client(V4).get_object(obj, None).await.unwrap().bytes().await.unwrap().to_vec()
    }

    async fn tags(&self, obj: &ObjectRef) -> Vec<transfer_engine::tags::Tag> {
        self.served.client(V4).get_tagging(obj).await.unwrap().sorted()
    }

    async fn meta(&self, obj: &ObjectRef) -> Metadata {
        self.served.client(V4).head_object(obj).await.unwrap().metadata
    }

    async fn open_uploads(&self, b: &str) -> Vec<String> {
        let page = self.served.client(V4).list_uploads(b, &Default::default()).await.unwrap();
        page.uploads.into_iter().map(|u| u.upload_id.to_string()).collect()
    }
}

#[tokio::test]
async fn metadata_and_tags_are_kept_or_replaced_on_both_paths() {
    let s = setup(&["src", "dst"]).await;
    let engine = s.engine(&s.served.endpoint, TagOn::Initiate);
    let mut replaced_meta = Metadata::with_user([("fresh", "yes")]).unwrap();
    replaced_meta.content_type = Some("text/plain".into());
    let replaced_tags = TagSet::from_pairs([("new", "a b"), ("x", "y")]).unwrap();
    for (name, len) in [("small", SMALL), ("big", BIG)] {
        let content = data(len, len as u64);
        s.put("src", name, &content).await;
        let source = ObjectRef::new("src", name);

        // Default directives: the source's metadata and tags arrive exactly.
        let kept = ObjectRef::new("dst", format!("{name}-kept"));
        let out = engine.copy_object(s.job, &CopyRequest::new(source.clone(), "dst", &kept.key)).await.unwrap();
        assert_eq!(out.size, len as u64);
        assert_eq!(out.parts_sent, if len == BIG { 11 } else { 1 }, "{name}: the size selects the path");
        assert_eq!(s.read(&kept).await, content, "{name}");
        assert_eq!(s.tags(&kept).await, source_tags().sorted(), "{name}");
        let meta = s.meta(&kept).await;
        assert_eq!(meta.user, source_meta().user, "{name}");
        assert_eq!(meta.content_type.as_deref(), Some("application/x-test"), "{name}");
        assert_eq!(meta.cache_control.as_deref(), Some("no-cache"), "{name}");
        let head = s.served.client(V4).head_object(&kept).await.unwrap();
        assert_eq!(out.etag, head.etag);
        if let (Some(a), Some(b)) = (out.crc64, head.crc64) {
            assert_eq!(a, b);
        }
        assert_eq!(head.crc64, Some(transfer_engine::crc64::checksum(&content)), "{name}");

        // Replace: the given metadata and tags, nothing of the source's.
        let repl = ObjectRef::new("dst", format!("{name}-replaced"));
        let mut req = CopyRequest::new(source.clone(), "dst", &repl.key);
        req.metadata = Directive::Replace(replaced_meta.clone());
        req.tags = Directive::Replace(replaced_tags.clone());
        // One ledger row per source and job: the same source to a second destination is refused in this job.
        let e = engine.copy_object(s.job, &req).await.unwrap_err();
        assert!(e.to_string().contains("already copies"), "{e}");
        engine.copy_object(s.other_job(), &req).await.unwrap();
        assert_eq!(s.read(&repl).await, content, "{name}");
        assert_eq!(s.tags(&repl).await, replaced_tags.sorted(), "{name}");
        let meta = s.meta(&repl).await;
        assert_eq!(meta.user, replaced_meta.user, "{name}: the old metadata is gone");
        assert_eq!(meta.content_type.as_deref(), Some("text/plain"), "{name}");
        assert_eq!(meta.cache_control, None, "{name}");

        // Again: the ledger has it done.
        let again = engine.copy_object(s.job, &CopyRequest::new(source, "dst", &kept.key)).await.unwrap();
        assert!(again.already_done && again.parts_sent == 0 && again.etag == out.etag, "{name}");
    }
    assert!(s.open_uploads("dst").await.is_empty());
}

#[tokio::test]
async fn a_specific_source_version_is_copied() {
    let s = setup(&["versioned", "dst"]).await;
    s.served.client(V4).put_versioning("versioned", true).await.unwrap();
    let engine = s.engine(&s.served.endpoint, TagOn::Initiate);
    for (name, len) in [("small", SMALL), ("big", BIG)] {
        let (old, new) = (data(len, 7), data(len + 5, 8));
        let v1 = s.put("versioned", name, &old).await.expect("a version id");
        let store = s.served.client(V4);
        store.put_object("versioned", name, new.clone().into(), &PutOptions::default()).await.unwrap();
        let source = ObjectRef::new("versioned", name).at_version(&v1);
        let dest = ObjectRef::new("dst", name);
        let out = engine.copy_object(s.job, &CopyRequest::new(source.clone(), "dst", name)).await.unwrap();
        assert_eq!(out.size, len as u64);
        assert_eq!(s.read(&dest).await, old, "{name}: the destination has v1's bytes");
        assert_eq!(s.tags(&dest).await, source_tags().sorted(), "{name}: and v1's tags (the current version has none)");
        assert_eq!(s.meta(&dest).await.user, source_meta().user, "{name}");
        let row = s.ledger.object(s.job, &format!("versioned/{name}?versionId={v1}")).unwrap().unwrap();
        assert_eq!(row.state, ObjectState::Tagged);
    }
}

#[tokio::test]
async fn an_interrupted_multipart_copy_resumes_without_copying_acknowledged_parts() {
    let s = setup(&["src", "dst"]).await;
    let content = data(BIG, 42);
    s.put("src", "big", &content).await;
    let req = CopyRequest::new(ObjectRef::new("src", "big"), "dst", "big");
    let proxy = FaultProxy::start(
        &s.served.endpoint,
        vec![Rule {
            method: Some("PUT"),
            contains: "partNumber=3&",
            fault: Fault::Status(403, "AccessDenied"),
            times: 1,
        }],
    )
    .await;
    let e = s.engine(&proxy.endpoint, TagOn::Initiate).copy_object(s.job, &req).await.unwrap_err();
    assert_eq!(e.service_code(), Some("AccessDenied"), "{e}");
    assert!(e.to_string().contains("part: 3"), "{e}");
    let row = s.ledger.object(s.job, "src/big").unwrap().unwrap();
    assert_eq!(row.state, ObjectState::Failed);
    let recorded = s.ledger.parts(row.id).unwrap();
    assert!(!recorded.is_empty() && recorded.len() < 11, "{} parts recorded", recorded.len());
    assert!(recorded.iter().all(|p| p.blake3.is_empty() && p.number != 3));

    // What crosses the wire on resume: exactly the parts the server did not acknowledge, none of the others.
    let wire = FaultProxy::start(&s.served.endpoint, vec![]).await;
    let out = s.engine(&wire.endpoint, TagOn::Initiate).copy_object(s.job, &req).await.unwrap();
    let sent: Vec<u32> = wire.seen().iter().filter(|r| r.method == "PUT").filter_map(|r| r.part_number()).collect();
    let kept: Vec<u32> = recorded.iter().map(|p| p.number).collect();
    assert_eq!(sent.len() + kept.len(), 11, "sent again {sent:?}, recorded {kept:?}");
    assert!(sent.iter().all(|n| !kept.contains(n)), "an acknowledged part was copied again: {sent:?} / {kept:?}");
    assert_eq!((out.parts_reused, out.parts_sent), (kept.len() as u32, sent.len() as u32));
    let dest = ObjectRef::new("dst", "big");
    assert_eq!(s.read(&dest).await, content);
    assert_eq!(s.tags(&dest).await, source_tags().sorted());
    assert_eq!(s.meta(&dest).await.user, source_meta().user);
    assert!(s.open_uploads("dst").await.is_empty());
}

#[tokio::test]
async fn a_source_overwritten_between_runs_restarts_the_copy_and_aborts_the_stale_upload() {
    let s = setup(&["src", "dst"]).await;
    s.put("src", "obj", &data(700 * KIB, 1)).await;
    let req = CopyRequest::new(ObjectRef::new("src", "obj"), "dst", "obj");
    let proxy = FaultProxy::start(
        &s.served.endpoint,
        vec![Rule {
            method: Some("PUT"),
            contains: "partNumber=3&",
            fault: Fault::Status(403, "AccessDenied"),
            times: 1,
        }],
    )
    .await;
    s.engine(&proxy.endpoint, TagOn::Initiate).copy_object(s.job, &req).await.unwrap_err();
    let stale = s.ledger.object(s.job, "src/obj").unwrap().unwrap().upload_id.expect("an upload id");
    assert_eq!(s.open_uploads("dst").await, vec![stale.to_string()]);

    // The source is overwritten (new bytes, size, metadata and tags).
    let changed = data(650 * KIB, 2);
    let mut meta = Metadata::with_user([("second", "2")]).unwrap();
    meta.content_type = Some("text/csv".into());
    let tags = TagSet::from_pairs([("gen", "2")]).unwrap();
    let opts = PutOptions::default().metadata(meta).tags(Some(tags.clone()));
    s.served.client(V4).put_object("src", "obj", changed.clone().into(), &opts).await.unwrap();

    let out = s.engine(&s.served.endpoint, TagOn::Initiate).copy_object(s.job, &req).await.unwrap();
    assert_eq!((out.parts_reused, out.parts_sent), (0, 7), "nothing of the old source is reused");
    let dest = ObjectRef::new("dst", "obj");
    assert_eq!(s.read(&dest).await, changed);
    assert_eq!(s.tags(&dest).await, tags.sorted(), "the new source's tags");
    let m = s.meta(&dest).await;
    assert_eq!((m.user.get("second").map(String::as_str), m.user.get("origin")), (Some("2"), None));
    assert_eq!(m.content_type.as_deref(), Some("text/csv"));
    assert!(s.open_uploads("dst").await.is_empty(), "the stale upload must have been aborted");
    let row = s.ledger.object(s.job, "src/obj").unwrap().unwrap();
    assert_eq!((row.state, row.size), (ObjectState::Tagged, changed.len() as u64));
}

#[tokio::test]
async fn tags_on_complete_are_repaired_after_a_refused_tagging() {
    let s = setup(&["src", "dst"]).await;
    for (name, len) in [("small", SMALL), ("big", 500 * KIB)] {
        let content = data(len, 3);
        s.put("src", name, &content).await;
        let req = CopyRequest::new(ObjectRef::new("src", name), "dst", name);
        let dest = ObjectRef::new("dst", name);
        let proxy = FaultProxy::start(
            &s.served.endpoint,
            vec![Rule {
                method: Some("PUT"),
                contains: "?tagging",
                fault: Fault::Status(403, "AccessDenied"),
                times: 1,
            }],
        )
        .await;
        let e = s.engine(&proxy.endpoint, TagOn::Complete).copy_object(s.job, &req).await.unwrap_err();
        assert_eq!(e.service_code(), Some("AccessDenied"), "{e}");
        assert_eq!(proxy.injected(), 1);
        assert!(s.tags(&dest).await.is_empty(), "{name}: the copy exists untagged (not with the source's tags)");
        assert_eq!(s.read(&dest).await, content);
        let row = s.ledger.object(s.job, &format!("src/{name}")).unwrap().unwrap();
        assert_eq!((row.state, row.tags_applied), (ObjectState::Completed, false));
        assert_eq!(row.tag_set().unwrap(), Some(source_tags()), "{name}: the resolved tags are in the ledger");

        let out = s.engine(&s.served.endpoint, TagOn::Complete).copy_object(s.job, &req).await.unwrap();
        assert_eq!((out.parts_sent, out.parts_reused), (0, 0), "{name}: only the tags are applied on resume");
        assert_eq!(s.tags(&dest).await, source_tags().sorted(), "{name}");
        assert_eq!(s.meta(&dest).await.user, source_meta().user, "{name}");
        assert_eq!(s.ledger.object(s.job, &format!("src/{name}")).unwrap().unwrap().state, ObjectState::Tagged);
    }
}

#[tokio::test]
async fn a_failed_source_precondition_restarts_once_from_a_fresh_head_then_fails() {
    let s = setup(&["src", "dst"]).await;
    let content = data(BIG, 5);
    s.put("src", "big", &content).await;
    let req = CopyRequest::new(ObjectRef::new("src", "big"), "dst", "big");
    let precondition = |times| Rule {
        method: Some("PUT"),
        contains: "partNumber=2&",
        fault: Fault::Status(412, "PreconditionFailed"),
        times,
    };

    // Twice in a row: the restart meets it again and the copy fails, keeping what arrived for the next run.
    let proxy = FaultProxy::start(&s.served.endpoint, vec![precondition(2)]).await;
    let e = s.engine(&proxy.endpoint, TagOn::Initiate).copy_object(s.job, &req).await.unwrap_err();
    assert_eq!(e.service_code(), Some("PreconditionFailed"), "{e}");
    assert_eq!(proxy.injected(), 2, "one restart, not more");

    // What the server holds of the kept upload: the next run copies exactly the rest.
    let client = s.served.client(V4);
    let kept = s.open_uploads("dst").await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    let upload = transfer_engine::store::Upload::new("dst", "big", transfer_engine::store::UploadId::new(&kept[0]));
    let held = client.list_parts(&upload, None, None).await.unwrap().parts.len() as u32;

    // Once: the copy restarts from a fresh HEAD (the source is the same) and succeeds in the same call.
    let proxy = FaultProxy::start(&s.served.endpoint, vec![precondition(1)]).await;
    let out = s.engine(&proxy.endpoint, TagOn::Initiate).copy_object(s.job, &req).await.unwrap();
    assert_eq!(proxy.injected(), 1);
    assert_eq!(out.parts_reused + out.parts_sent, 11);
    // On the wire, across the restart: each part the server lacked copied once, none it held copied again.
    let copied = proxy.seen().iter().filter(|r| r.target.contains("partNumber=") && r.upstream.is_some()).count();
    assert_eq!(copied as u32, 11 - held, "{out:?}");
    assert_eq!(s.read(&ObjectRef::new("dst", "big")).await, content);
    assert!(s.open_uploads("dst").await.is_empty());
}

/// A prefix copied as one job: every object arrives with its metadata and tags, the listing is paged, and a
/// second run finds everything done.
#[tokio::test]
async fn a_prefix_copied_as_one_job_keeps_every_objects_metadata_and_tags() {
    use transfer_engine::job::{Event, PrefixCopyRequest};
    let served = Served::start();
    let admin = served.client(V4);
    bucket(&admin, "prefix-src").await;
    bucket(&admin, "prefix-dst").await;
    let mut expected = Vec::new();
    for i in 0..12u64 {
        let key = format!("data/{}/obj-{i}", i % 3);
        let len = if i == 0 { 700 * 1024 } else { 1000 + i as usize * 11 };
        let content = data(len, i);
        let opts = PutOptions::default()
            .metadata(Metadata::with_user([("n", i.to_string())]).unwrap())
            .tags(Some(TagSet::from_pairs([("k4+-=", "+-=._:/"), ("n", &*i.to_string())]).unwrap()));
        admin.put_object("prefix-src", &key, Body::from(content.clone()), &opts).await.unwrap();
        expected.push((key, content, i));
    }
    admin
        .put_object("prefix-src", "elsewhere/skip-me", Body::from("not under the prefix"), &PutOptions::default())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let spec = JobSpec {
        kind: JobKind::Copy,
        source: "prefix-src/data/".into(),
        destination: "prefix-dst/mirror/".into(),
        note: String::new(),
    };
    let job = ledger.create_job(&spec).unwrap();
    let store: Arc<dyn transfer_engine::Store> = Arc::new(client_for(&served.endpoint, V4, Credentials::new(AK, SK)));
    let engine = Engine::new(store, ledger.clone(), config(TagOn::Initiate)).unwrap();
    // The job's id is kept by the program, so it runs the job by id (recorded with what it copies).
    let request = || PrefixCopyRequest::new("prefix-src", "data/", "prefix-dst", "mirror");
    let mut handle = engine.copy_prefix(request()).job(job).await.unwrap();
    let mut done = 0;
    while let Some(event) = handle.next_event().await {
        assert!(matches!(event, Event::Done { .. }), "{event:?}");
        done += 1;
    }
    let summary = handle.join().await.unwrap();
    assert_eq!((done, summary.progress.objects_done, summary.progress.objects_failed), (12, 12, 0));
    assert!(summary.progress.listing_finished);
    for (key, content, i) in &expected {
        let dst = ObjectRef::new("prefix-dst", format!("mirror/{}", key.strip_prefix("data/").unwrap()));
        assert_eq!(
            admin.get_object(&dst, None).await.unwrap().bytes().await.unwrap().as_ref(),
            content.as_slice(),
            "{key}"
        );
        let head = admin.head_object(&dst).await.unwrap();
        assert_eq!(head.metadata.user.get("n"), Some(&i.to_string()), "{key}");
        let tags = admin.get_tagging(&dst).await.unwrap();
        assert_eq!((tags.get("k4+-="), tags.get("n")), (Some("+-=._:/"), Some(i.to_string().as_str())), "{key}");
    }
    assert!(admin
        .head_object(&ObjectRef::new("prefix-dst", "mirror/skip-me"))
        .await
        .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound));
    let again = engine.copy_prefix(request()).job(job).await.unwrap().join().await.unwrap();
    assert_eq!((again.progress.objects_already_done, again.progress.objects_done), (12, 0));
}
