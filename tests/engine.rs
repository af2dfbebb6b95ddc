//! The engine through its library API against `transfer serve`: single and multipart uploads with tags and
//! metadata, interrupted runs that resume without re-sending what arrived, a source that changed between runs,
//! an upload id the server forgot, and tags applied on complete with a crash repaired on resume.

use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::{bucket, client_for, data, Served, AK, SK};
use std::sync::Arc;
use std::time::Duration;
use transfer_engine::checkpoint::{JobSpec, Ledger, ObjectState};
use transfer_engine::job::{Engine, EngineConfig, TagOn, UploadRequest};
use transfer_engine::plan::PlanOptions;
use transfer_engine::run::RetryPolicy;
use transfer_engine::sign::{Credentials, SignatureVersion::V4};
use transfer_engine::{Metadata, ObjectRef, ObjectStore, TagSet};

const KIB: u64 = 1024;

fn config(tag_on: TagOn) -> EngineConfig {
    EngineConfig {
        plan: PlanOptions { preferred_part_size: 100 * KIB, multipart_threshold: 300 * KIB, max_in_flight: 3, ..PlanOptions::default() },
        retry: RetryPolicy { base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20), ..RetryPolicy::default() },
        tag_on,
        content_md5: false,
    }
}

fn seed_tags() -> TagSet {
    TagSet::from_pairs([("k1", "v1"), ("k4+-=", "+-=._:/")]).unwrap()
}

struct Setup {
    served: Served,
    dir: tempfile::TempDir,
    ledger: Ledger,
    job: transfer_engine::checkpoint::JobId,
}

async fn setup(bucket_name: &str) -> Setup {
    let served = Served::start();
    bucket(&served.client(V4), bucket_name).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let spec = JobSpec { kind: "upload".into(), source: "files".into(), destination: bucket_name.into(), options_json: "{}".into() };
    let job = ledger.create_job(&spec).unwrap();
    Setup { served, dir, ledger, job }
}

impl Setup {
    fn engine(&self, endpoint: &str, tag_on: TagOn) -> Engine {
        let store: Arc<dyn ObjectStore> = Arc::new(client_for(endpoint, V4, Credentials::new(AK, SK)));
        Engine::new(store, self.ledger.clone(), config(tag_on)).unwrap()
    }

    fn file(&self, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    async fn read(&self, b: &str, key: &str) -> Vec<u8> {
        let store = self.served.client(V4);
        store.get_object(&ObjectRef::new(b, key), None).await.unwrap().bytes().await.unwrap().to_vec()
    }

    async fn tags(&self, b: &str, key: &str) -> Vec<transfer_engine::tags::Tag> {
        self.served.client(V4).get_tagging(&ObjectRef::new(b, key)).await.unwrap().sorted()
    }
}

fn request(path: &std::path::Path, b: &str, key: &str) -> UploadRequest {
    let mut r = UploadRequest::new(path, b, key);
    r.tags = Some(seed_tags());
    r.metadata = Metadata::with_user([("origin", "backup")]).unwrap();
    r
}

#[tokio::test]
async fn single_and_multipart_uploads_carry_tags_and_metadata() {
    let s = setup("engine").await;
    let engine = s.engine(&s.served.endpoint, TagOn::Initiate);
    for (name, len) in [("small", 1000usize), ("big", 1024 * 1024 + 3), ("empty", 0)] {
        let content = data(len, len as u64);
        let path = s.file(name, &content);
        let out = engine.upload_file(s.job, &request(&path, "engine", name)).await.unwrap();
        assert_eq!(out.size, len as u64);
        assert_eq!(out.blake3, blake3::hash(&content).to_hex().to_string());
        assert_eq!(out.crc64, Some(transfer_engine::crc64::checksum(&content)));
        assert_eq!(s.read("engine", name).await, content);
        assert_eq!(s.tags("engine", name).await, seed_tags().sorted(), "{name}");
        let head = s.served.client(V4).head_object(&ObjectRef::new("engine", name)).await.unwrap();
        assert_eq!(head.metadata.user.get("origin").map(String::as_str), Some("backup"));
        let row = s.ledger.object(s.job, &path.to_string_lossy()).unwrap().unwrap();
        assert_eq!(row.state, ObjectState::Tagged);
        assert_eq!(row.blake3.as_deref(), Some(out.blake3.as_str()));
        // Again: nothing to do.
        let again = engine.upload_file(s.job, &request(&path, "engine", name)).await.unwrap();
        assert!(again.already_done && again.parts_sent == 0);
    }
    let big = engine.upload_file(s.job, &request(&s.dir.path().join("big"), "engine", "big")).await.unwrap();
    assert_eq!(big.etag, s.served.client(V4).head_object(&ObjectRef::new("engine", "big")).await.unwrap().etag);
}

#[tokio::test]
async fn an_interrupted_upload_resumes_without_resending_acknowledged_parts() {
    let s = setup("resume").await;
    let content = data(1024 * 1024, 99); // 11 parts of 100 KiB (the last smaller)
    let path = s.file("big", &content);
    // Part 5 is refused permanently once: the run fails with parts acknowledged and recorded.
    let proxy = FaultProxy::start(
        &s.served.endpoint,
        vec![Rule { method: Some("PUT"), contains: "partNumber=5&", fault: Fault::Status(403, "AccessDenied"), times: 1 }],
    )
    .await;
    let e = s.engine(&proxy.endpoint, TagOn::Initiate).upload_file(s.job, &request(&path, "resume", "big")).await.unwrap_err();
    assert_eq!(e.service_code(), Some("AccessDenied"), "{e}");
    assert!(e.to_string().contains("part: 5"), "{e}");
    let row = s.ledger.object(s.job, &path.to_string_lossy()).unwrap().unwrap();
    let recorded = s.ledger.parts(row.id).unwrap().len() as u32;
    assert!((1..11).contains(&recorded), "{recorded} parts recorded");

    let out = s.engine(&s.served.endpoint, TagOn::Initiate).upload_file(s.job, &request(&path, "resume", "big")).await.unwrap();
    assert_eq!(out.parts_reused, recorded);
    assert_eq!(out.parts_sent, 11 - recorded);
    assert_eq!(s.read("resume", "big").await, content);
    assert_eq!(s.tags("resume", "big").await, seed_tags().sorted());
    let uploads = s.served.client(V4).list_uploads("resume", &Default::default()).await.unwrap();
    assert!(uploads.uploads.is_empty());
}

#[tokio::test]
async fn a_changed_source_or_a_forgotten_upload_starts_the_object_again() {
    let s = setup("changed").await;
    let path = s.file("f", &data(700 * 1024, 1));
    let proxy = FaultProxy::start(
        &s.served.endpoint,
        vec![Rule { method: Some("PUT"), contains: "partNumber=4&", fault: Fault::Status(403, "AccessDenied"), times: 2 }],
    )
    .await;
    let via_proxy = s.engine(&proxy.endpoint, TagOn::Initiate);
    via_proxy.upload_file(s.job, &request(&path, "changed", "f")).await.unwrap_err();
    let first_upload = s.ledger.object(s.job, &path.to_string_lossy()).unwrap().unwrap().upload_id.unwrap();

    // The file changes: the old upload is aborted and the new content arrives whole.
    let changed = data(650 * 1024, 2);
    std::fs::write(&path, &changed).unwrap();
    via_proxy.upload_file(s.job, &request(&path, "changed", "f")).await.unwrap_err();
    let row = s.ledger.object(s.job, &path.to_string_lossy()).unwrap().unwrap();
    assert_ne!(row.upload_id.as_deref(), Some(first_upload.as_str()));
    let store = s.served.client(V4);
    let open: Vec<String> = store.list_uploads("changed", &Default::default()).await.unwrap().uploads.into_iter().map(|u| u.upload_id).collect();
    assert_eq!(open, vec![row.upload_id.clone().unwrap()], "the stale upload must have been aborted");

    // The server forgets the upload: the next run starts again and succeeds.
    store.abort_multipart("changed", "f", row.upload_id.as_deref().unwrap()).await.unwrap();
    let out = s.engine(&s.served.endpoint, TagOn::Initiate).upload_file(s.job, &request(&path, "changed", "f")).await.unwrap();
    assert_eq!((out.parts_reused, out.parts_sent), (0, 7));
    assert_eq!(s.read("changed", "f").await, changed);
}

#[tokio::test]
async fn tags_on_complete_are_repaired_after_a_crash_between_complete_and_tagging() {
    let s = setup("oncomplete").await;
    for (name, len) in [("small", 10 * 1024usize), ("big", 500 * 1024)] {
        let content = data(len, 3);
        let path = s.file(name, &content);
        let proxy = FaultProxy::start(
            &s.served.endpoint,
            vec![Rule { method: Some("PUT"), contains: "?tagging", fault: Fault::Status(403, "AccessDenied"), times: 1 }],
        )
        .await;
        let e = s.engine(&proxy.endpoint, TagOn::Complete).upload_file(s.job, &request(&path, "oncomplete", name)).await.unwrap_err();
        assert_eq!(e.service_code(), Some("AccessDenied"));
        assert!(s.tags("oncomplete", name).await.is_empty(), "the object exists untagged after the crash");
        let row = s.ledger.object(s.job, &path.to_string_lossy()).unwrap().unwrap();
        assert!(!row.tags_applied);

        let out = s.engine(&s.served.endpoint, TagOn::Complete).upload_file(s.job, &request(&path, "oncomplete", name)).await.unwrap();
        assert_eq!(out.parts_sent, 0, "{name}: only the tags are applied on resume");
        assert_eq!(s.tags("oncomplete", name).await, seed_tags().sorted());
        assert_eq!(s.read("oncomplete", name).await, content);
        assert_eq!(s.ledger.object(s.job, &path.to_string_lossy()).unwrap().unwrap().state, ObjectState::Tagged);
    }
}
