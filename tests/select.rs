//! Choosing what moves, through the library against `transfer serve`: include/exclude filters over a
//! directory and a prefix.

use crate::util::{bucket, client_for, data, Served, AK, SK};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use transfer_engine::checkpoint::{JobId, JobSpec, Ledger};
use transfer_engine::job::{DirRequest, Engine, EngineConfig, Event, JobSummary, KeyFilter, ObjectOutcome, PrefixCopyRequest};
use transfer_engine::plan::PlanOptions;
use transfer_engine::run::RetryPolicy;
use transfer_engine::sign::{Credentials, SignatureVersion::V4};
use transfer_engine::store::{Directive, ListRequest};
use transfer_engine::{ErrorKind, Metadata, ObjectStore};

const KIB: u64 = 1024;

/// Uploads: multipart from 64 KiB in parts of 100 KiB (the store's minimum); copies: UploadPartCopy from
/// 300 KiB in parts of 100 KiB.
fn config() -> EngineConfig {
    EngineConfig {
        plan: PlanOptions {
            preferred_part_size: 100 * KIB,
            multipart_threshold: 64 * KIB,
            copy_threshold: 300 * KIB,
            copy_part_size: 100 * KIB,
            max_in_flight: 3,
            ..PlanOptions::default()
        },
        retry: RetryPolicy { base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20), ..RetryPolicy::default() },
        tag_on: Default::default(),
        content_md5: false,
        digest: Default::default(),
    }
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
    fn engine(&self) -> Engine {
        let store: Arc<dyn ObjectStore> = Arc::new(client_for(&self.served.endpoint, V4, Credentials::new(AK, SK)));
        Engine::new(store, self.ledger.clone(), config()).unwrap()
    }

    fn job(&self, source: &str) -> JobId {
        let spec = JobSpec { kind: "upload".into(), source: source.into(), destination: "d".into(), options_json: "{}".into() };
        self.ledger.create_job(&spec).unwrap()
    }

    /// Writes `rel` under the test's directory `sub`.
    fn file(&self, sub: &str, rel: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = self.dir.path().join(sub).join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
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

}

/// Every Done event's outcome by key, and the summary.
struct Ran {
    done: BTreeMap<String, ObjectOutcome>,
    summary: JobSummary,
}

async fn run(mut handle: transfer_engine::job::JobHandle) -> Ran {
    let mut done = BTreeMap::new();
    while let Some(event) = handle.next_event().await {
        match event {
            Event::Done { key, outcome } => assert!(done.insert(key, outcome).is_none()),
            Event::Failed { key, error } => panic!("{key} failed: {error}"),
        }
    }
    let summary = handle.join().await.unwrap();
    Ran { done, summary }
}

fn dir_request(dir: &Path, b: &str, prefix: &str, filter: KeyFilter) -> DirRequest {
    DirRequest { dir: dir.to_path_buf(), bucket: b.into(), prefix: prefix.into(), metadata: Metadata::default(), tags: None, filter }
}

fn prefix_request(src_prefix: &str, b: &str, prefix: &str, filter: KeyFilter) -> PrefixCopyRequest {
    PrefixCopyRequest {
        src_bucket: "src".into(),
        src_prefix: src_prefix.into(),
        bucket: b.into(),
        prefix: prefix.into(),
        metadata: Directive::Copy,
        tags: Directive::Copy,
        filter,
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
    let job = s.job("tree");
    let ran = run(s.engine().upload_dir(job, dir_request(&s.dir.path().join("tree"), "src", "in", f.clone())).unwrap()).await;
    let expected: Vec<String> = taken.iter().map(|r| format!("in/{r}")).collect();
    assert_eq!(s.keys("src").await, expected);
    assert_eq!(ran.done.keys().cloned().collect::<Vec<_>>(), expected);
    let p = &ran.summary.progress;
    assert_eq!((p.objects_found, p.objects_done), (5, 5), "entries not taken are not found");
    assert_eq!(s.ledger.objects(job, None, 0, 100).unwrap().len(), 5, "nor in the ledger");

    // The whole tree under another prefix, then a filtered prefix copy of it.
    let all = tree(&s, "tree");
    let job = s.job("all");
    run(s.engine().upload_dir(job, dir_request(&s.dir.path().join("tree"), "src", "all", KeyFilter::default())).unwrap()).await;
    assert_eq!(s.keys("src").await.iter().filter(|k| k.starts_with("all/")).count(), all.len());
    let job = s.job("copy");
    let ran = run(s.engine().copy_prefix(job, prefix_request("all/", "dst", "out", f)).unwrap()).await;
    let expected: Vec<String> = taken.iter().map(|r| format!("out/{r}")).collect();
    assert_eq!(s.keys("dst").await, expected);
    assert_eq!((ran.summary.progress.objects_found, ran.summary.progress.objects_done), (5, 5));
    assert_eq!(s.ledger.objects(job, None, 0, 100).unwrap().len(), 5);

    // A bad glob is refused, naming it.
    let e = KeyFilter::new(&["ok/*", "a["], &[] as &[&str]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("\"a[\""), "{e}");
}
