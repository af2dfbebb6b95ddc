//! The engine through its library API against `transfer serve`: single and multipart uploads with tags and
//! metadata, interrupted runs that resume without re-sending what arrived, a source that changed between runs,
//! an upload id the server forgot, and tags applied on complete with a crash repaired on resume.

use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::{bucket, client_for, data, Served, AK, SK};
use std::sync::Arc;
use std::time::Duration;
use transfer_engine::checkpoint::{JobKind, JobSpec, JobState, Ledger, ObjectState};
use transfer_engine::job::{DirRequest, Engine, EngineConfig, TagOn, UploadRequest};
use transfer_engine::plan::PlanOptions;
use transfer_engine::run::RetryPolicy;
use transfer_engine::sign::{Credentials, SignatureVersion::V4};
use transfer_engine::store::{Upload, UploadId};
use transfer_engine::ErrorKind;
use transfer_engine::MultipartStore;
use transfer_engine::{Metadata, ObjectRef, ObjectStore, TagSet};

const KIB: u64 = 1024;

fn config(tag_on: TagOn) -> EngineConfig {
    EngineConfig::default()
        .plan(PlanOptions::default().preferred_part_size(100 * KIB).multipart_threshold(300 * KIB).max_in_flight(3))
        .retry(RetryPolicy::default().base_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(20)))
        .tag_on(tag_on)
}

/// A proxy in front of `endpoint` that holds every PUT whose target contains `contains` for `ms` milliseconds.
async fn slow_puts(endpoint: &str, contains: &'static str, ms: u64) -> FaultProxy {
    let delay = Fault::Delay(Duration::from_millis(ms));
    FaultProxy::start(endpoint, vec![Rule { method: Some("PUT"), contains, fault: delay, times: 10_000 }]).await
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
    // A job the tests of single files manage themselves (jobs of directories find their own).
    let spec =
        JobSpec { kind: JobKind::Upload, source: "files".into(), destination: bucket_name.into(), note: "".into() };
    let job = ledger.create_job(&spec).unwrap();
    Setup { served, dir, ledger, job }
}

impl Setup {
    fn engine(&self, endpoint: &str, tag_on: TagOn) -> Engine {
        let store: Arc<dyn transfer_engine::Store> = Arc::new(client_for(endpoint, V4, Credentials::new(AK, SK)));
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
    UploadRequest::new(path, b, key).tags(seed_tags()).metadata(Metadata::with_user([("origin", "backup")]).unwrap())
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
        vec![Rule {
            method: Some("PUT"),
            contains: "partNumber=5&",
            fault: Fault::Status(403, "AccessDenied"),
            times: 1,
        }],
    )
    .await;
    let e = s
        .engine(&proxy.endpoint, TagOn::Initiate)
        .upload_file(s.job, &request(&path, "resume", "big"))
        .await
        .unwrap_err();
    assert_eq!(e.service_code(), Some("AccessDenied"), "{e}");
    assert!(e.to_string().contains("part: 5"), "{e}");
    let row = s.ledger.object(s.job, &path.to_string_lossy()).unwrap().unwrap();
    let recorded: Vec<u32> = s.ledger.parts(row.id).unwrap().iter().map(|p| p.number).collect();
    assert!((1..11).contains(&recorded.len()), "{recorded:?} recorded");

    // On the wire: the resume sends exactly the parts not recorded, none of the recorded ones.
    let wire = FaultProxy::start(&s.served.endpoint, vec![]).await;
    let out =
        s.engine(&wire.endpoint, TagOn::Initiate).upload_file(s.job, &request(&path, "resume", "big")).await.unwrap();
    let sent: Vec<u32> = wire.seen().iter().filter(|r| r.method == "PUT").filter_map(|r| r.part_number()).collect();
    assert_eq!(sent.len() + recorded.len(), 11, "sent {sent:?}, recorded {recorded:?}");
    assert!(sent.iter().all(|n| !recorded.contains(n)), "a recorded part was sent again: {sent:?}");
    assert_eq!((out.parts_reused, out.parts_sent), (recorded.len() as u32, sent.len() as u32));
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
        vec![Rule {
            method: Some("PUT"),
            contains: "partNumber=4&",
            fault: Fault::Status(403, "AccessDenied"),
            times: 2,
        }],
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
    let open: Vec<String> = store
        .list_uploads("changed", &Default::default())
        .await
        .unwrap()
        .uploads
        .into_iter()
        .map(|u| u.upload_id.to_string())
        .collect();
    assert_eq!(open, vec![row.upload_id.clone().unwrap().to_string()], "the stale upload must have been aborted");

    // The server forgets the upload: the next run starts again and succeeds.
    store
        .abort_multipart(&Upload::new("changed", "f", UploadId::new(row.upload_id.as_deref().unwrap())))
        .await
        .unwrap();
    let out = s
        .engine(&s.served.endpoint, TagOn::Initiate)
        .upload_file(s.job, &request(&path, "changed", "f"))
        .await
        .unwrap();
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
            vec![Rule {
                method: Some("PUT"),
                contains: "?tagging",
                fault: Fault::Status(403, "AccessDenied"),
                times: 1,
            }],
        )
        .await;
        let e = s
            .engine(&proxy.endpoint, TagOn::Complete)
            .upload_file(s.job, &request(&path, "oncomplete", name))
            .await
            .unwrap_err();
        assert_eq!(e.service_code(), Some("AccessDenied"));
        assert!(s.tags("oncomplete", name).await.is_empty(), "the object exists untagged after the crash");
        let row = s.ledger.object(s.job, &path.to_string_lossy()).unwrap().unwrap();
        assert!(!row.tags_applied);

        let out = s
            .engine(&s.served.endpoint, TagOn::Complete)
            .upload_file(s.job, &request(&path, "oncomplete", name))
            .await
            .unwrap();
        assert_eq!(out.parts_sent, 0, "{name}: only the tags are applied on resume");
        assert_eq!(s.tags("oncomplete", name).await, seed_tags().sorted());
        assert_eq!(s.read("oncomplete", name).await, content);
        assert_eq!(s.ledger.object(s.job, &path.to_string_lossy()).unwrap().unwrap().state, ObjectState::Tagged);
    }
}

/// A tree of files: nested directories, a multipart-sized file, an empty file.
fn tree(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..24usize {
        let rel = format!("d{}/sub{}/f{i}.bin", i % 3, i % 2);
        let len = match i {
            0 => 0,
            1 => 450 * 1024,
            _ => 2000 + i * 37,
        };
        files.push((rel, data(len, i as u64)));
    }
    for (rel, bytes) in &files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    files
}

fn dir_request(root: &std::path::Path, b: &str) -> DirRequest {
    DirRequest::new(root, b, "backup").tags(seed_tags())
}

#[tokio::test]
async fn a_directory_job_uploads_every_file_with_tags_and_reports_progress() {
    let s = setup("dirjob").await;
    let root = s.dir.path().join("tree");
    let files = tree(&root);
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let engine = s.engine(&s.served.endpoint, TagOn::Initiate);
    let mut handle = engine.upload_dir(dir_request(&root, "dirjob")).await.unwrap();
    // A second writer on the same job is refused while this one runs, in this process as from another.
    let again = engine.upload_dir(dir_request(&root, "dirjob")).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Locked, "{again}");
    assert!(again.to_string().contains(&format!("job {}", handle.job())), "{again}");
    let elsewhere = s.ledger.lock_job(handle.job()).unwrap_err();
    assert_eq!(elsewhere.kind(), ErrorKind::Locked, "{elsewhere}");
    assert!(elsewhere.to_string().contains("another transfer"), "{elsewhere}");
    let mut events = 0;
    while let Some(e) = handle.next_event().await {
        assert!(matches!(e, transfer_engine::job::Event::Done { .. }), "{e:?}");
        events += 1;
    }
    let summary = handle.join().await.unwrap();
    assert_eq!(events, files.len());
    assert_eq!(summary.state, transfer_engine::checkpoint::JobState::Done);
    assert_eq!((summary.progress.objects_done, summary.progress.objects_failed), (files.len() as u64, 0));
    assert_eq!((summary.progress.bytes_acknowledged, summary.progress.bytes_found), (total, total));
    assert!(summary.progress.listing_finished);
    for (rel, bytes) in &files {
        let key = format!("backup/{rel}");
        assert_eq!(&s.read("dirjob", &key).await, bytes, "{key}");
        assert_eq!(s.tags("dirjob", &key).await, seed_tags().sorted(), "{key}");
    }
    // The job is named by what it moves: the ledger holds it with its source and destination.
    let row = s.ledger.jobs().unwrap().into_iter().find(|j| j.id == summary.job).unwrap();
    let source = std::path::absolute(&root).unwrap().display().to_string();
    assert_eq!((row.kind, row.source, row.destination), (JobKind::Upload, source, "dirjob/backup/".to_owned()));
    // A done job is not found again: the same lines start a new job (the next backup run).
    let next = engine.upload_dir(dir_request(&root, "dirjob")).await.unwrap().join().await.unwrap();
    assert_ne!(next.job, summary.job);
    assert_eq!((next.state, next.progress.objects_done), (JobState::Done, files.len() as u64));
}

#[tokio::test]
async fn a_stopped_job_resumes_and_an_aborted_one_leaves_no_upload() {
    let s = setup("stopjob").await;
    let root = s.dir.path().join("tree");
    let files = tree(&root);
    let slow = slow_puts(&s.served.endpoint, "", 150).await;
    let handle = s.engine(&slow.endpoint, TagOn::Initiate).upload_dir(dir_request(&root, "stopjob")).await.unwrap();
    let job = handle.job();
    crate::util::until("3 objects done", Duration::from_secs(60), || handle.progress().objects_done >= 3).await;
    handle.stop();
    let stopped = handle.join().await.unwrap();
    assert_eq!(stopped.state, transfer_engine::checkpoint::JobState::Stopped);
    let first_run = stopped.progress.objects_done;
    assert!(first_run < files.len() as u64, "stopped before the end");

    let summary = s
        .engine(&s.served.endpoint, TagOn::Initiate)
        .upload_dir(dir_request(&root, "stopjob"))
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    assert_eq!((summary.state, summary.job), (JobState::Done, job), "the same lines resume the same job");
    assert_eq!(summary.progress.objects_already_done, first_run, "what the first run finished is not sent again");
    assert_eq!(summary.progress.objects_done + first_run, files.len() as u64);
    for (rel, bytes) in &files {
        assert_eq!(&s.read("stopjob", &format!("backup/{rel}")).await, bytes);
    }

    // Abort: a big file mid-upload; its multipart upload is aborted on the server.
    let big_dir = s.dir.path().join("big");
    std::fs::create_dir_all(&big_dir).unwrap();
    std::fs::write(big_dir.join("big.bin"), data(2 * 1024 * 1024, 5)).unwrap();
    let handle = s.engine(&slow.endpoint, TagOn::Initiate).upload_dir(dir_request(&big_dir, "stopjob")).await.unwrap();
    let acknowledged = || handle.progress().bytes_acknowledged >= 300 * 1024;
    crate::util::until("300 KiB acknowledged", Duration::from_secs(60), acknowledged).await;
    let summary = handle.abort().await.unwrap();
    assert_eq!(summary.aborted_uploads, 1);
    let open = s.served.client(V4).list_uploads("stopjob", &Default::default()).await.unwrap();
    assert!(open.uploads.is_empty(), "{open:?}");
}

/// Run only as the child of `a_killed_process_resumes_sending_only_what_was_not_acknowledged`.
#[test]
#[ignore = "a child process of the SIGKILL test"]
fn child_upload() {
    let (Ok(endpoint), Ok(ledger), Ok(job), Ok(dir)) = (
        std::env::var("TRANSFER_CHILD_ENDPOINT"),
        std::env::var("TRANSFER_CHILD_LEDGER"),
        std::env::var("TRANSFER_CHILD_JOB"),
        std::env::var("TRANSFER_CHILD_DIR"),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store: Arc<dyn transfer_engine::Store> = Arc::new(client_for(&endpoint, V4, Credentials::new(AK, SK)));
        let engine = Engine::new(store, Ledger::open(ledger).unwrap(), config(TagOn::Initiate)).unwrap();
        let job = transfer_engine::checkpoint::JobId(job.parse().unwrap());
        engine
            .upload_dir(dir_request(std::path::Path::new(&dir), "killed"))
            .job(job)
            .await
            .unwrap()
            .join()
            .await
            .unwrap();
    });
}

#[tokio::test]
async fn a_killed_process_resumes_sending_only_what_was_not_acknowledged() {
    let s = setup("killed").await;
    let dir = s.dir.path().join("src");
    std::fs::create_dir_all(&dir).unwrap();
    let content = data(3 * 1024 * 1024, 77); // 31 parts of 100 KiB
    let file = dir.join("big.bin");
    std::fs::write(&file, &content).unwrap();
    // A job the program keeps the id of (the child runs it by id), recorded with what it moves.
    let spec = JobSpec {
        kind: JobKind::Upload,
        source: std::path::absolute(&dir).unwrap().display().to_string(),
        destination: "killed/backup/".into(),
        note: String::new(),
    };
    let job = s.ledger.create_job(&spec).unwrap();
    let slow = slow_puts(&s.served.endpoint, "partNumber", 150).await;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "engine::child_upload", "--ignored", "--test-threads=1"])
        .env("TRANSFER_CHILD_ENDPOINT", &slow.endpoint)
        .env("TRANSFER_CHILD_LEDGER", s.ledger.path())
        .env("TRANSFER_CHILD_JOB", job.0.to_string())
        .env("TRANSFER_CHILD_DIR", &dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let source = file.to_string_lossy().into_owned();
    let recorded = |l: &Ledger| l.object(job, &source).unwrap().map(|r| l.parts(r.id).unwrap().len()).unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while recorded(&s.ledger) < 5 {
        assert!(std::time::Instant::now() < deadline, "the child made no progress");
        assert!(child.try_wait().unwrap().is_none(), "the child ended before it was killed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let row = s.ledger.object(job, &source).unwrap().unwrap();
    let recorded_at_kill = s.ledger.parts(row.id).unwrap().len() as u32;
    let on_server = s
        .served
        .client(V4)
        .list_parts(
            &Upload::new("killed", "backup/big.bin", UploadId::new(row.upload_id.as_deref().unwrap())),
            None,
            None,
        )
        .await
        .unwrap();
    let in_flight_lost = on_server.parts.len() as u32 - recorded_at_kill;
    // Acknowledged but not durable at the kill: the parts in flight (3) plus those answered inside the ledger's
    // last commit window (50 ms; with 150 ms per part and 3 in flight, at most 1 or 2 more).
    assert!(in_flight_lost <= 5, "{in_flight_lost} parts were acknowledged but not recorded");

    let engine = s.engine(&s.served.endpoint, TagOn::Initiate);
    // The same lines, without the id: the job is found by what it moves.
    let mut handle = engine.upload_dir(dir_request(&dir, "killed")).await.unwrap();
    assert_eq!(handle.job(), job);
    let Some(transfer_engine::job::Event::Done { outcome, .. }) = handle.next_event().await else {
        panic!("no Done event")
    };
    handle.join().await.unwrap();
    let (sent, reused) = outcome.parts();
    assert_eq!(reused, recorded_at_kill);
    assert_eq!(sent, 31 - recorded_at_kill, "only what the ledger did not hold is sent again");
    assert_eq!(s.read("killed", "backup/big.bin").await, content);
    assert_eq!(s.tags("killed", "backup/big.bin").await, seed_tags().sorted());
}

#[tokio::test]
async fn a_job_completes_with_the_right_bytes_through_injected_faults() {
    let s = setup("faultjob").await;
    let root = s.dir.path().join("tree");
    let files = tree(&root);
    let rule = |method: &'static str, contains: &'static str, fault: Fault, times: usize| Rule {
        method: Some(method),
        contains,
        fault,
        times,
    };
    let proxy = FaultProxy::start(
        &s.served.endpoint,
        vec![
            rule("PUT", "partNumber=2&", Fault::Reset, 1),
            rule("PUT", "partNumber=3&", Fault::Status(503, "SlowDown"), 2),
            rule("PUT", "partNumber=4&", Fault::Status(500, "InternalError"), 1),
            rule("POST", "uploadId=", Fault::ErrorBody200, 1),
            rule("POST", "uploadId=", Fault::LoseResponse, 1),
            rule("PUT", "/faultjob/backup/d1/", Fault::Status(503, "SlowDown"), 3),
            rule("PUT", "/faultjob/backup/d2/", Fault::Reset, 2),
            rule("PUT", "/faultjob/backup/d0/", Fault::Delay(Duration::from_millis(200)), 2),
        ],
    )
    .await;
    let summary = s
        .engine(&proxy.endpoint, TagOn::Initiate)
        .upload_dir(dir_request(&root, "faultjob"))
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    assert_eq!(summary.state, transfer_engine::checkpoint::JobState::Done, "{:?}", summary.failures);
    assert_eq!(proxy.pending(), 0, "every scheduled fault was hit");
    for (rel, bytes) in &files {
        assert_eq!(&s.read("faultjob", &format!("backup/{rel}")).await, bytes, "{rel}");
    }
}

#[tokio::test]
async fn a_graceful_stop_records_every_part_the_server_acknowledged() {
    let s = setup("graceful").await;
    let dir = s.dir.path().join("src");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.bin");
    std::fs::write(&file, data(3 * 1024 * 1024, 8)).unwrap();
    let slow = slow_puts(&s.served.endpoint, "partNumber", 150).await;
    let handle = s.engine(&slow.endpoint, TagOn::Initiate).upload_dir(dir_request(&dir, "graceful")).await.unwrap();
    let job = handle.job();
    let acknowledged = || handle.progress().bytes_acknowledged >= 400 * 1024;
    crate::util::until("400 KiB acknowledged", Duration::from_secs(60), acknowledged).await;
    handle.stop();
    let summary = handle.join().await.unwrap();
    assert_eq!(summary.state, transfer_engine::checkpoint::JobState::Stopped);
    let row = s.ledger.object(job, &file.to_string_lossy()).unwrap().unwrap();
    let mut recorded: Vec<u32> = s.ledger.parts(row.id).unwrap().iter().map(|p| p.number).collect();
    recorded.sort_unstable();
    let listed = s
        .served
        .client(V4)
        .list_parts(
            &Upload::new("graceful", "backup/big.bin", UploadId::new(row.upload_id.as_deref().unwrap())),
            None,
            None,
        )
        .await
        .unwrap();
    let on_server: Vec<u32> = listed.parts.iter().map(|p| p.part_number.get()).collect();
    assert_eq!(recorded, on_server, "parts in flight at the stop finished and were recorded");
    assert!(recorded.len() < 31, "the stop came before the end");
    assert_eq!(summary.progress.bytes_acknowledged, recorded.len() as u64 * 100 * 1024);
}

#[tokio::test]
async fn the_blake3_digest_can_ride_as_a_tag_and_metadata() {
    let s = setup("digest").await;
    let store: Arc<dyn transfer_engine::Store> = Arc::new(client_for(&s.served.endpoint, V4, Credentials::new(AK, SK)));
    let mut cfg = config(TagOn::Initiate);
    cfg.digest =
        transfer_engine::job::DigestOptions::default().tag(Some("blake3".into())).metadata(Some("blake3".into()));
    let engine = Engine::new(store, s.ledger.clone(), cfg).unwrap();
    for (name, len) in [("small", 5000usize), ("big", 700 * 1024)] {
        let content = data(len, 31);
        let path = s.file(name, &content);
        let out = engine.upload_file(s.job, &request(&path, "digest", name)).await.unwrap();
        let hex = blake3::hash(&content).to_hex().to_string();
        assert_eq!(out.blake3, hex);
        let tags = s.served.client(V4).get_tagging(&ObjectRef::new("digest", name)).await.unwrap();
        assert_eq!(tags.get("blake3"), Some(hex.as_str()), "{name}");
        assert_eq!(tags.get("k4+-="), Some("+-=._:/"), "{name}: the caller's tags are kept");
        let head = s.served.client(V4).head_object(&ObjectRef::new("digest", name)).await.unwrap();
        assert_eq!(head.metadata.user.get("blake3").map(String::as_str), Some(hex.as_str()), "{name}");
        assert_eq!(head.metadata.user.get("origin").map(String::as_str), Some("backup"));
    }
}

// What a backup program embedding the engine met, each fixed.

#[tokio::test]
async fn a_job_whose_objects_fail_is_an_error_to_join_and_wait_gives_its_summary() {
    let s = setup("failing").await;
    let root = s.dir.path().join("tree");
    let files = tree(&root);
    let deny = FaultProxy::start(
        &s.served.endpoint,
        vec![Rule {
            method: Some("PUT"),
            contains: "/failing/",
            fault: Fault::Status(403, "AccessDenied"),
            times: 10_000,
        }],
    )
    .await;
    let engine = s.engine(&deny.endpoint, TagOn::Initiate);
    // A caller who only checks `?` sees the failure.
    let e = engine.upload_dir(dir_request(&root, "failing")).await.unwrap().join().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::JobFailed, "{e}");
    let first = std::error::Error::source(&e).and_then(|c| c.downcast_ref::<transfer_engine::Error>()).unwrap();
    assert_eq!(first.kind(), ErrorKind::AccessDenied, "{first}");
    // `wait` gives the summary, with each failure's error value (kind, code, request id, object).
    let summary = engine.upload_dir(dir_request(&root, "failing")).await.unwrap().wait().await.unwrap();
    assert_eq!((summary.state, summary.failures.len()), (JobState::Failed, files.len()));
    for (key, e) in &summary.failures {
        assert_eq!((e.kind(), e.service_code()), (ErrorKind::AccessDenied, Some("AccessDenied")), "{key}: {e}");
    }
}

#[tokio::test]
async fn a_dropped_handle_releases_its_job_to_the_next_start_in_the_same_process() {
    let s = setup("dropped").await;
    let root = s.dir.path().join("tree");
    let files = tree(&root);
    let slow = slow_puts(&s.served.endpoint, "", 100).await;
    let handle = s.engine(&slow.endpoint, TagOn::Initiate).upload_dir(dir_request(&root, "dropped")).await.unwrap();
    let job = handle.job();
    crate::util::until("2 objects done", Duration::from_secs(60), || handle.progress().objects_done >= 2).await;
    drop(handle);
    // At once: the start waits for the dropped job to record its parts in flight and release its lock.
    let engine = s.engine(&s.served.endpoint, TagOn::Initiate);
    let summary = engine.upload_dir(dir_request(&root, "dropped")).await.unwrap().join().await.unwrap();
    assert_eq!((summary.job, summary.state), (job, JobState::Done));
    assert!(summary.progress.objects_already_done >= 2, "{:?}", summary.progress);
    assert_eq!(summary.progress.objects_already_done + summary.progress.objects_done, files.len() as u64);
    for (rel, bytes) in &files {
        assert_eq!(&s.read("dropped", &format!("backup/{rel}")).await, bytes, "{rel}");
    }
}

#[test]
fn a_start_outside_a_tokio_runtime_is_refused_before_anything_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let store: Arc<dyn transfer_engine::Store> =
        Arc::new(client_for("http://127.0.0.1:9", V4, Credentials::new(AK, SK)));
    let engine = Engine::new(store, ledger.clone(), config(TagOn::Initiate)).unwrap();
    let e = futures::executor::block_on(engine.upload_dir(dir_request(dir.path(), "b")).start()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("Tokio runtime"), "{e}");
    assert!(ledger.jobs().unwrap().is_empty(), "no job was recorded");
}

#[tokio::test]
async fn a_job_id_is_refused_for_another_source_and_a_missing_bucket_before_the_job() {
    let s = setup("named").await;
    let (a, b) = (s.dir.path().join("a"), s.dir.path().join("b"));
    tree(&a);
    tree(&b);
    let engine = s.engine(&s.served.endpoint, TagOn::Initiate);
    let job = engine.upload_dir(dir_request(&a, "named")).await.unwrap().join().await.unwrap().job;
    let jobs_before = s.ledger.jobs().unwrap().len();
    let e = engine.upload_dir(dir_request(&b, "named")).job(job).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let (a_abs, b_abs) = (std::path::absolute(&a).unwrap(), std::path::absolute(&b).unwrap());
    assert!(e.to_string().contains(&*a_abs.to_string_lossy()), "names the job's source: {e}");
    assert!(e.to_string().contains(&*b_abs.to_string_lossy()), "and the request's: {e}");
    // The same id with its own source runs (every object already there in the done job).
    let again = engine.upload_dir(dir_request(&a, "named")).job(job).await.unwrap().join().await.unwrap();
    assert_eq!((again.job, again.progress.objects_done), (job, 0));

    // A bucket that does not exist, on either side, fails the start; no job is recorded.
    let e = engine.upload_dir(dir_request(&a, "no-such-bucket-here")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BucketNotFound, "{e}");
    assert!(e.to_string().contains("no-such-bucket-here"), "{e}");
    let copy = transfer_engine::job::PrefixCopyRequest::new("no-such-source-bucket", "", "named", "copied/");
    let e = engine.copy_prefix(copy).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BucketNotFound, "{e}");
    assert_eq!(s.ledger.jobs().unwrap().len(), jobs_before);
}
