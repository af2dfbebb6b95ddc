//! Choosing what moves, through the library against `transfer serve`: the overwrite policy (no-clobber and
//! update, for files and server-side copies, including a destination that appears between the check and the
//! write), include/exclude filters over a directory and a prefix, and dry runs that plan every object and
//! write nothing.

use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::{bucket, client_for, data, Served, AK, SK};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use transfer_engine::checkpoint::{JobId, JobKind, JobSpec, JobState, Ledger, ObjectState};
use transfer_engine::job::{
    CopyRequest, DirRequest, Engine, EngineConfig, Event, JobSummary, KeyFilter, Outcome, Overwrite, PlannedAction,
    PrefixCopyRequest, SkipReason, UploadRequest,
};
use transfer_engine::plan::PlanOptions;
use transfer_engine::run::RetryPolicy;
use transfer_engine::sign::{Credentials, SignatureVersion::V4};
use transfer_engine::store::{Body, ListRequest, PutOptions};
use transfer_engine::MultipartStore;
use transfer_engine::{ErrorKind, ObjectRef, ObjectStore};

const KIB: u64 = 1024;

/// Uploads: multipart from 64 KiB in parts of 100 KiB (the store's minimum); copies: UploadPartCopy from
/// 300 KiB in parts of 100 KiB.
fn config(overwrite: Overwrite, dry_run: bool) -> EngineConfig {
    EngineConfig::default()
        .plan(
            PlanOptions::default()
                .preferred_part_size(100 * KIB)
                .multipart_threshold(64 * KIB)
                .copy_threshold(Some(300 * KIB))
                .copy_part_size(100 * KIB)
                .max_in_flight(3),
        )
        .retry(RetryPolicy::default().base_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(20)))
        .overwrite(overwrite)
        .dry_run(dry_run)
}

struct Setup {
    served: Served,
    dir: tempfile::TempDir,
    ledger: Ledger,
}

async fn setup(buckets: &[&str]) -> Setup {
    let served = Served::start();
    for b in buckets {
        bucket(&served.client(V4), b).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("ledger.db")).unwrap();
    Setup { served, dir, ledger }
}

impl Setup {
    fn engine_via(&self, endpoint: &str, overwrite: Overwrite) -> Engine {
        let store: Arc<dyn transfer_engine::Store> = Arc::new(client_for(endpoint, V4, Credentials::new(AK, SK)));
        Engine::new(store, self.ledger.clone(), config(overwrite, false)).unwrap()
    }

    fn engine(&self, overwrite: Overwrite) -> Engine {
        self.engine_via(&self.served.endpoint, overwrite)
    }

    /// An engine configured for dry runs.
    fn dry(&self, overwrite: Overwrite) -> Engine {
        let store: Arc<dyn transfer_engine::Store> =
            Arc::new(client_for(&self.served.endpoint, V4, Credentials::new(AK, SK)));
        Engine::new(store, self.ledger.clone(), config(overwrite, true)).unwrap()
    }

    fn job(&self, source: &str) -> JobId {
        let spec =
            JobSpec { kind: JobKind::Upload, source: source.into(), destination: "d".into(), note: String::new() };
        self.ledger.create_job(&spec).unwrap()
    }

    /// Writes `rel` under the test's directory `sub`.
    fn file(&self, sub: &str, rel: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = self.dir.path().join(sub).join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    async fn put(&self, b: &str, key: &str, bytes: &[u8]) -> String {
        let store = self.served.client(V4);
        store.put_object(b, key, Body::from(bytes.to_vec()), &PutOptions::default()).await.unwrap().etag
    }

    async fn read(&self, b: &str, key: &str) -> Vec<u8> {
        let store = self.served.client(V4);
        store.get_object(&ObjectRef::new(b, key), None).await.unwrap().bytes().await.unwrap().to_vec()
    }

    async fn etag(&self, b: &str, key: &str) -> String {
        self.served.client(V4).head_object(&ObjectRef::new(b, key)).await.unwrap().etag
    }

    /// Every key in `b`, sorted.
    async fn keys(&self, b: &str) -> Vec<String> {
        let store = self.served.client(V4);
        let mut keys = Vec::new();
        let mut req = ListRequest::default();
        loop {
            let page = store.list_objects(b, &req).await.unwrap();
            keys.extend(page.objects.into_iter().map(|o| o.key));
            match page.next_continuation_token {
                Some(t) if page.is_truncated => req.continuation_token = Some(t),
                _ => break,
            }
        }
        keys.sort();
        keys
    }

    async fn open_uploads(&self, b: &str) -> usize {
        self.served.client(V4).list_uploads(b, &Default::default()).await.unwrap().uploads.len()
    }
}

/// Every Done event's outcome by key, the Planned events by key, and the summary.
struct Ran {
    done: BTreeMap<String, Outcome>,
    planned: BTreeMap<String, transfer_engine::job::PlannedObject>,
    summary: JobSummary,
}

async fn run(start: transfer_engine::job::JobStart) -> Ran {
    let mut handle = start.await.unwrap();
    let (mut done, mut planned) = (BTreeMap::new(), BTreeMap::new());
    while let Some(event) = handle.next_event().await {
        match event {
            Event::Done { key, outcome } => assert!(done.insert(key, outcome).is_none()),
            Event::Planned { key, plan } => assert!(planned.insert(key, plan).is_none()),
            Event::Failed { key, error, .. } => panic!("{key} failed: {error}"),
            Event::Deleted { key, .. } => panic!("{key} deleted by a job that is no sync"),
        }
    }
    let summary = handle.join().await.unwrap();
    Ran { done, planned, summary }
}

fn dir_request(dir: &Path, b: &str, prefix: &str, filter: KeyFilter) -> DirRequest {
    DirRequest::new(dir, b, prefix).filter(filter)
}

fn prefix_request(src_prefix: &str, b: &str, prefix: &str, filter: KeyFilter) -> PrefixCopyRequest {
    PrefixCopyRequest::new("src", src_prefix, b, prefix).filter(filter)
}

#[tokio::test]
async fn no_clobber_leaves_existing_files_alone_and_uploads_missing_ones() {
    let s = setup(&["noclobber"]).await;
    // Existing destinations hold other bytes than the files; one small, one multipart-sized.
    let mut before = BTreeMap::new();
    for (name, len) in [("exists-small", 5000usize), ("exists-big", 250 * 1024)] {
        let old = data(len, 1);
        s.file("tree", name, &data(len, 2));
        before.insert(format!("up/{name}"), (s.put("noclobber", &format!("up/{name}"), &old).await, old));
    }
    let missing: BTreeMap<String, Vec<u8>> = [("missing-small", 3000usize), ("sub/missing-big", 230 * 1024)]
        .into_iter()
        .map(|(n, len)| (format!("up/{n}"), data(len, 3)))
        .collect();
    for (key, bytes) in &missing {
        s.file("tree", key.strip_prefix("up/").unwrap(), bytes);
    }
    let engine = s.engine(Overwrite::IfMissing);
    let ran =
        run(engine.upload_dir(dir_request(&s.dir.path().join("tree"), "noclobber", "up", KeyFilter::default()))).await;

    assert_eq!(ran.summary.state, JobState::Done);
    let job = ran.summary.job;
    assert_eq!(ran.done.len(), 4);
    for (key, (etag, old)) in &before {
        assert_eq!(ran.done[key].skipped, Some(SkipReason::Exists), "{key}");
        assert_eq!(&s.read("noclobber", key).await, old, "{key}: untouched");
        assert_eq!(&s.etag("noclobber", key).await, etag, "{key}: untouched");
    }
    for (key, bytes) in &missing {
        assert_eq!(ran.done[key].skipped, None, "{key}");
        assert_eq!(&s.read("noclobber", key).await, bytes, "{key}: uploaded");
    }
    let p = &ran.summary.progress;
    assert_eq!((p.objects_found, p.objects_done, p.objects_skipped, p.objects_already_done), (4, 2, 2, 0));
    let missing_bytes: u64 = missing.values().map(|b| b.len() as u64).sum();
    assert_eq!(p.bytes_acknowledged, missing_bytes, "the bytes of skipped objects are not acknowledged");
    let skipped_rows = s.ledger.objects(job, Some(ObjectState::Skipped), 0, 100).unwrap();
    assert_eq!(skipped_rows.len(), 2);

    // Again, as the same job: everything resolves as done, nothing is sent, the skipped bytes still do not count.
    let again = run(engine
        .upload_dir(dir_request(&s.dir.path().join("tree"), "noclobber", "up", KeyFilter::default()))
        .job(job))
    .await;
    assert_eq!(again.summary.state, JobState::Done);
    let p = &again.summary.progress;
    assert_eq!((p.objects_done, p.objects_skipped, p.objects_already_done), (0, 0, 4));
    assert_eq!(p.bytes_acknowledged, missing_bytes);
    for (key, (etag, _)) in &before {
        assert_eq!(&s.etag("noclobber", key).await, etag, "{key}: still untouched");
    }
}

#[tokio::test]
async fn no_clobber_holds_when_the_destination_appears_after_the_check() {
    let s = setup(&["race"]).await;
    let job = s.job("race");
    // The HEAD says the destination is missing, but it exists: the write carries x-oss-forbid-overwrite, the
    // store refuses it, and the object is skipped untouched — for a PutObject and for a multipart upload.
    for (name, len) in [("small", 4000usize), ("big", 250 * 1024)] {
        let key = format!("race-{name}");
        let etag = s.put("race", &key, b"old bytes").await;
        let path = s.file("files", name, &data(len, 4));
        let proxy = FaultProxy::start(
            &s.served.endpoint,
            vec![Rule {
                method: Some("HEAD"),
                contains: "/race/race-",
                fault: Fault::Status(404, "NoSuchKey"),
                times: 1,
            }],
        )
        .await;
        let out = s
            .engine_via(&proxy.endpoint, Overwrite::IfMissing)
            .upload_file(job, &UploadRequest::new(&path, "race", &key))
            .await
            .unwrap();
        assert_eq!(proxy.injected(), 1);
        assert_eq!(out.skipped, Some(SkipReason::Exists), "{name}: {out:?}");
        assert_eq!(out.etag, etag, "{name}: the outcome names the destination that stayed");
        assert_eq!(s.read("race", &key).await, b"old bytes", "{name}");
        assert_eq!(s.ledger.object(job, &path.to_string_lossy()).unwrap().unwrap().state, ObjectState::Skipped);
    }
    assert_eq!(s.open_uploads("race").await, 0, "the refused multipart upload was aborted");

    // A PutObject whose answer is lost and is retried meets its own object: that is an upload, not a skip.
    let content = data(3000, 5);
    let path = s.file("files", "lost", &content);
    let proxy = FaultProxy::start(
        &s.served.endpoint,
        vec![Rule { method: Some("PUT"), contains: "/race/lost", fault: Fault::LoseResponse, times: 1 }],
    )
    .await;
    let out = s
        .engine_via(&proxy.endpoint, Overwrite::IfMissing)
        .upload_file(job, &UploadRequest::new(&path, "race", "lost"))
        .await
        .unwrap();
    assert_eq!(proxy.injected(), 1);
    assert_eq!(out.skipped, None, "{out:?}");
    assert_eq!(s.read("race", "lost").await, content);
}

#[tokio::test]
async fn update_skips_only_identical_destinations() {
    let s = setup(&["upd"]).await;
    let job = s.job("upd");
    let engine = s.engine(Overwrite::IfDifferent);
    let same_small = data(6000, 7);
    let same_big = data(200 * 1024, 8);
    /// (name, destination bytes, file bytes, expected skip)
    type Case = (&'static str, Option<Vec<u8>>, Vec<u8>, Option<SkipReason>);
    let cases: Vec<Case> = vec![
        ("same-small", Some(same_small.clone()), same_small, Some(SkipReason::Unchanged)),
        ("same-big", Some(same_big.clone()), same_big, Some(SkipReason::Unchanged)),
        ("same-size-other-bytes", Some(data(6000, 9)), data(6000, 10), None),
        ("same-size-other-bytes-big", Some(data(200 * 1024, 9)), data(200 * 1024, 10), None),
        ("other-size", Some(data(6000, 11)), data(6001, 11), None),
        ("missing", None, data(100, 12), None),
    ];
    for (name, dest, file, expect) in cases {
        let etag = match &dest {
            Some(d) => Some(s.put("upd", name, d).await),
            None => None,
        };
        let path = s.file("files", name, &file);
        let out = engine.upload_file(job, &UploadRequest::new(&path, "upd", name)).await.unwrap();
        assert_eq!(out.skipped, expect, "{name}");
        assert_eq!(s.read("upd", name).await, file, "{name}: the destination has the file's bytes");
        match expect {
            Some(_) => {
                assert_eq!(Some(s.etag("upd", name).await), etag, "{name}: not rewritten");
                assert_eq!(out.parts_sent, 0);
            }
            None => assert!(out.parts_sent >= 1, "{name}: {out:?}"),
        }
    }
}

#[tokio::test]
async fn no_clobber_and_update_apply_to_server_side_copies() {
    let s = setup(&["src", "dst"]).await;
    let small = data(8000, 20);
    let big = data(400 * 1024, 21); // UploadPartCopy: 4 parts
    s.put("src", "data/small", &small).await;
    s.put("src", "data/big", &big).await;
    s.put("src", "data/fresh", b"fresh").await;

    // No-clobber over a prefix: the existing destinations stay, the missing one is copied.
    let kept_small = s.put("dst", "nc/small", b"older small").await;
    let kept_big = s.put("dst", "nc/big", &data(10, 22)).await;
    let ran =
        run(s.engine(Overwrite::IfMissing).copy_prefix(prefix_request("data/", "dst", "nc", KeyFilter::default())))
            .await;
    assert_eq!(ran.summary.state, JobState::Done);
    assert_eq!(ran.done["nc/small"].skipped, Some(SkipReason::Exists));
    assert_eq!(ran.done["nc/big"].skipped, Some(SkipReason::Exists));
    assert_eq!(ran.done["nc/fresh"].skipped, None);
    assert_eq!((s.etag("dst", "nc/small").await, s.etag("dst", "nc/big").await), (kept_small, kept_big));
    assert_eq!(s.read("dst", "nc/small").await, b"older small");
    assert_eq!(s.read("dst", "nc/fresh").await, b"fresh");
    let p = &ran.summary.progress;
    assert_eq!((p.objects_done, p.objects_skipped, p.bytes_acknowledged), (1, 2, 5));

    // A destination that appears between the check and the copy is not clobbered either.
    let job2 = s.job("copies-race");
    let etag = s.put("dst", "race/small", b"appeared").await;
    let proxy = FaultProxy::start(
        &s.served.endpoint,
        vec![Rule { method: Some("HEAD"), contains: "/dst/race/", fault: Fault::Status(404, "NoSuchKey"), times: 1 }],
    )
    .await;
    let req = CopyRequest::new(ObjectRef::new("src", "data/small"), "dst", "race/small");
    let out = s.engine_via(&proxy.endpoint, Overwrite::IfMissing).copy_object(job2, &req).await.unwrap();
    assert_eq!((proxy.injected(), out.skipped), (1, Some(SkipReason::Exists)));
    assert_eq!((s.etag("dst", "race/small").await, s.read("dst", "race/small").await), (etag, b"appeared".to_vec()));

    // Update: identical destinations stay, same-size different ones are copied again.
    let job3 = s.job("copies-update");
    let same_small = s.put("dst", "upd/small", &small).await;
    let same_big = s.put("dst", "upd/big", &big).await;
    let engine = s.engine(Overwrite::IfDifferent);
    for (key, etag) in [("small", &same_small), ("big", &same_big)] {
        let out = engine
            .copy_object(
                job3,
                &CopyRequest::new(ObjectRef::new("src", format!("data/{key}")), "dst", format!("upd/{key}")),
            )
            .await
            .unwrap();
        assert_eq!(out.skipped, Some(SkipReason::Unchanged), "{key}");
        assert_eq!(&s.etag("dst", &format!("upd/{key}")).await, etag, "{key}: not rewritten");
    }
    let job4 = s.job("copies-update-2");
    s.put("dst", "upd2/small", &data(small.len(), 30)).await;
    s.put("dst", "upd2/big", &data(big.len(), 31)).await;
    for (key, bytes) in [("small", &small), ("big", &big)] {
        let out = engine
            .copy_object(
                job4,
                &CopyRequest::new(ObjectRef::new("src", format!("data/{key}")), "dst", format!("upd2/{key}")),
            )
            .await
            .unwrap();
        assert_eq!(out.skipped, None, "{key}");
        assert_eq!(&s.read("dst", &format!("upd2/{key}")).await, bytes, "{key}: copied over the different bytes");
    }
}

/// A nested tree: `(relative path, bytes)`.
fn tree(s: &Setup, sub: &str) -> Vec<String> {
    let rels = [
        "a.txt",
        "b.log",
        "notes/c.txt",
        "notes/deep/d.txt",
        "notes/deep/e.bin",
        "photos/2024/f.jpg",
        "photos/2024/skip/g.jpg",
        "photos/h.jpg",
        "photos/secret-i.jpg",
        "tmp/j.txt",
        "k.JPG",
    ];
    for (i, rel) in rels.iter().enumerate() {
        s.file(sub, rel, &data(100 + i * 10, i as u64));
    }
    rels.iter().map(|r| r.to_string()).collect()
}

/// What the filter of the two filter tests takes from [`tree`].
fn filter() -> (KeyFilter, Vec<&'static str>) {
    // Base-name include (*.txt at any depth), path include with ** (photos/**), path exclude with ** and a
    // base-name exclude; patterns are case-sensitive (k.JPG is not taken).
    let f = KeyFilter::new(&["*.txt", "photos/**"], &["**/skip/**", "secret-*", "notes/deep/*"]).unwrap();
    (f, vec!["a.txt", "notes/c.txt", "photos/2024/f.jpg", "photos/h.jpg", "tmp/j.txt"])
}

#[tokio::test]
async fn filters_choose_the_files_of_a_directory_and_the_objects_of_a_prefix() {
    let s = setup(&["src", "dst"]).await;
    tree(&s, "tree");
    let (f, taken) = filter();
    let ran =
        run(s.engine(Overwrite::Always).upload_dir(dir_request(&s.dir.path().join("tree"), "src", "in", f.clone())))
            .await;
    let expected: Vec<String> = taken.iter().map(|r| format!("in/{r}")).collect();
    assert_eq!(s.keys("src").await, expected);
    assert_eq!(ran.done.keys().cloned().collect::<Vec<_>>(), expected);
    let p = &ran.summary.progress;
    assert_eq!((p.objects_found, p.objects_done), (5, 5), "entries not taken are not found");
    assert_eq!(s.ledger.objects(ran.summary.job, None, 0, 100).unwrap().len(), 5, "nor in the ledger");

    // The whole tree under another prefix, then a filtered prefix copy of it.
    let all = tree(&s, "tree");
    run(s.engine(Overwrite::Always).upload_dir(dir_request(
        &s.dir.path().join("tree"),
        "src",
        "all",
        KeyFilter::default(),
    )))
    .await;
    assert_eq!(s.keys("src").await.iter().filter(|k| k.starts_with("all/")).count(), all.len());
    let ran = run(s.engine(Overwrite::Always).copy_prefix(prefix_request("all/", "dst", "out", f))).await;
    let expected: Vec<String> = taken.iter().map(|r| format!("out/{r}")).collect();
    assert_eq!(s.keys("dst").await, expected);
    assert_eq!((ran.summary.progress.objects_found, ran.summary.progress.objects_done), (5, 5));
    assert_eq!(s.ledger.objects(ran.summary.job, None, 0, 100).unwrap().len(), 5);

    // A bad glob is refused, naming it.
    let e = KeyFilter::new(&["ok/*", "a["], &[] as &[&str]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("\"a[\""), "{e}");
}

#[tokio::test]
async fn a_dry_run_of_a_directory_plans_every_object_and_writes_nothing() {
    let s = setup(&["dry"]).await;
    // (relative path, size, action without a policy)
    let files: Vec<(&str, u64, PlannedAction)> = vec![
        ("empty", 0, PlannedAction::Put),
        ("small.txt", 10 * KIB, PlannedAction::Put),
        ("sub/below.txt", 64 * KIB - 1, PlannedAction::Put),
        ("sub/at-threshold.bin", 64 * KIB, PlannedAction::Multipart { part_size: 64 * KIB, parts: 1 }),
        ("sub/deep/big.bin", 250 * KIB, PlannedAction::Multipart { part_size: 100 * KIB, parts: 3 }),
        ("sub/deep/bigger.bin", 1000 * KIB + 1, PlannedAction::Multipart { part_size: 100 * KIB, parts: 11 }),
        ("excluded.tmp", 10, PlannedAction::Put),
    ];
    for (i, (rel, size, _)) in files.iter().enumerate() {
        s.file("tree", rel, &data(*size as usize, i as u64));
    }
    let existing_etag = s.put("dry", "up/sub/deep/big.bin", b"already here").await;
    let filter = KeyFilter::new(&[] as &[&str], &["*.tmp"]).unwrap();
    let root = s.dir.path().join("tree");
    // A job id the ledger does not know: a dry run does not need one.
    let job = JobId(4242);

    for overwrite in [Overwrite::Always, Overwrite::IfMissing] {
        let engine = s.dry(overwrite);
        let ran = run(engine.upload_dir(dir_request(&root, "dry", "up", filter.clone()))).await;
        assert!(ran.done.is_empty());
        let mut expected = BTreeMap::new();
        for (rel, size, action) in files.iter().filter(|(r, ..)| !r.ends_with(".tmp")) {
            let key = format!("up/{rel}");
            let action = match (overwrite, *rel) {
                (Overwrite::IfMissing, "sub/deep/big.bin") => PlannedAction::Skip(SkipReason::Exists),
                _ => *action,
            };
            expected.insert(key, (*size, action));
        }
        let got: BTreeMap<String, (u64, PlannedAction)> =
            ran.planned.iter().map(|(k, p)| (k.clone(), (p.size, p.action))).collect();
        assert_eq!(got, expected, "{overwrite:?}");
        for (key, plan) in &ran.planned {
            assert_eq!((&plan.key, plan.bucket.as_str()), (key, "dry"));
            assert_eq!(plan.source, root.join(key.strip_prefix("up/").unwrap()).to_string_lossy());
        }
        let p = &ran.summary.progress;
        assert_eq!(ran.summary.state, JobState::Done);
        let bytes: u64 = expected.values().map(|(size, _)| size).sum();
        assert_eq!((p.objects_found, p.bytes_found, p.objects_planned), (6, bytes, 6));
        assert_eq!((p.objects_done, p.bytes_acknowledged), (0, 0));
        assert_eq!(p.objects_skipped, if overwrite == Overwrite::IfMissing { 1 } else { 0 });
    }
    // Nothing was written: the bucket holds only what was there, no upload was started, the ledger is empty.
    assert_eq!(s.keys("dry").await, vec!["up/sub/deep/big.bin".to_owned()]);
    assert_eq!(s.etag("dry", "up/sub/deep/big.bin").await, existing_etag);
    assert_eq!(s.open_uploads("dry").await, 0);
    assert!(s.ledger.jobs().unwrap().is_empty());
    assert!(s.ledger.objects(job, None, 0, 100).unwrap().is_empty());

    // An existing job is neither locked nor changed by a dry run, and its rows stay as they were.
    let real = s.job("tree");
    let _lock = s.ledger.lock_job(real).unwrap();

    let ran =
        run(s.dry(Overwrite::Always).upload_one(UploadRequest::new(root.join("small.txt"), "dry", "one")).job(real))
            .await;
    assert_eq!(ran.planned["one"].action, PlannedAction::Put);
    let jobs = s.ledger.jobs().unwrap();
    assert_eq!((jobs.len(), jobs[0].state, jobs[0].counts.total), (1, JobState::Running, 0));
    assert_eq!(s.keys("dry").await.len(), 1);

    // A direct write on a dry-run engine is refused; the planning call answers instead.
    let engine = s.dry(Overwrite::Always);
    let req = UploadRequest::new(root.join("sub/deep/bigger.bin"), "dry", "direct");
    let e = engine.upload_file(real, &req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("plan_upload_file"), "{e}");
    assert_eq!(
        engine.plan_upload_file(&req).await.unwrap().action,
        PlannedAction::Multipart { part_size: 100 * KIB, parts: 11 }
    );
    assert_eq!(s.keys("dry").await.len(), 1);
    assert_eq!(s.ledger.counts(real).unwrap().total, 0);
}

#[tokio::test]
async fn a_dry_run_of_a_prefix_copy_plans_copies_and_multipart_copies_and_writes_nothing() {
    let s = setup(&["src", "dst"]).await;
    let objects: Vec<(&str, u64, PlannedAction)> = vec![
        ("data/small", 1000, PlannedAction::Copy),
        ("data/sub/below", 300 * KIB - 1, PlannedAction::Copy),
        ("data/sub/big", 300 * KIB, PlannedAction::MultipartCopy { part_size: 100 * KIB, parts: 3 }),
        ("data/sub/deep/bigger", 1000 * KIB + 5, PlannedAction::MultipartCopy { part_size: 100 * KIB, parts: 11 }),
        ("data/skip/me", 10, PlannedAction::Copy),
    ];
    for (i, (key, size, _)) in objects.iter().enumerate() {
        s.put("src", key, &data(*size as usize, i as u64)).await;
    }
    let existing = s.put("dst", "m/small", b"here").await;
    let filter = KeyFilter::new(&[] as &[&str], &["skip/**"]).unwrap();
    let job = JobId(7);
    for overwrite in [Overwrite::Always, Overwrite::IfMissing] {
        let ran = run(s.dry(overwrite).copy_prefix(prefix_request("data/", "dst", "m", filter.clone()))).await;
        let mut expected = BTreeMap::new();
        for (key, size, action) in objects.iter().filter(|(k, ..)| !k.contains("skip")) {
            let dest = format!("m/{}", key.strip_prefix("data/").unwrap());
            let action = match (overwrite, dest.as_str()) {
                (Overwrite::IfMissing, "m/small") => PlannedAction::Skip(SkipReason::Exists),
                _ => *action,
            };
            expected.insert(dest, (format!("src/{key}"), *size, action));
        }
        let got: BTreeMap<String, (String, u64, PlannedAction)> =
            ran.planned.iter().map(|(k, p)| (k.clone(), (p.source.clone(), p.size, p.action))).collect();
        assert_eq!(got, expected, "{overwrite:?}");
        assert_eq!(ran.summary.state, JobState::Done);
        let p = &ran.summary.progress;
        let bytes: u64 = expected.values().map(|(_, size, _)| size).sum();
        assert_eq!((p.objects_found, p.bytes_found, p.objects_planned, p.objects_done), (4, bytes, 4, 0));
    }
    // One object, through copy_one.
    let ran = run(s.dry(Overwrite::IfMissing).copy_one(CopyRequest::new(
        ObjectRef::new("src", "data/sub/big"),
        "dst",
        "one",
    )))
    .await;
    assert_eq!(ran.planned["one"].action, PlannedAction::MultipartCopy { part_size: 100 * KIB, parts: 3 });
    let e = s
        .dry(Overwrite::Always)
        .copy_object(job, &CopyRequest::new(ObjectRef::new("src", "data/small"), "dst", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);

    assert_eq!(s.keys("dst").await, vec!["m/small".to_owned()]);
    assert_eq!(s.etag("dst", "m/small").await, existing);
    assert_eq!(s.open_uploads("dst").await, 0);
    assert!(s.ledger.jobs().unwrap().is_empty());
}
