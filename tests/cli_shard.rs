//! `transfer shard plan | run | merge | status` through the built binary against `transfer serve`: shards run as
//! the processes of a Kubernetes Indexed Job would (the index in `JOB_COMPLETION_INDEX`, each with its own
//! ledger), two of one index at once, one killed and run again; the merge's report must account for every key.

use crate::cli::transfer;
use crate::cli_s3::transfer_s3;
use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::moto::{Moto, MOTO_KEY};
use crate::util::s3s::{S3sFs, S3S_KEY};
use crate::util::{data, s3_client, Served};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::{ListRequest, ListUploadsRequest, PutOptions};
use transfer_engine::{BucketStore, Metadata, MultipartStore, ObjectRef, ObjectStore, TagSet};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

/// Every object under `prefix`, by its key relative to it, with its bytes.
async fn objects(store: &HttpStore, b: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut req = ListRequest::default().prefix(Some(prefix.to_owned()));
    loop {
        let page = store.list_objects(b, &req).await.unwrap();
        for e in &page.objects {
            let body = store.get_object(&ObjectRef::new(b, &e.key), None).await.unwrap().bytes().await.unwrap();
            out.insert(e.key[prefix.len()..].to_owned(), body.to_vec());
        }
        match page.next_continuation_token {
            Some(t) if page.is_truncated => req = req.continuation_token(Some(t)),
            _ => return out,
        }
    }
}

/// A shard process of `plan`: index `i` from JOB_COMPLETION_INDEX, its own ledger.
fn shard(endpoint: &str, dir: &Path, plan: &str, i: u32, ledger: &str) -> Command {
    let mut c = transfer(endpoint, &dir.join(format!("{ledger}.db")));
    c.args(["shard", "run", plan]).env("JOB_COMPLETION_INDEX", i.to_string());
    c
}

fn summary_of(dir: &Path) -> serde_json::Value {
    json_at(&dir.join("report/summary.json"))
}

/// `transfer shard plan SRC DST --shards M --plan PLAN` and `extra` options, run to its end.
fn plan_with(
    endpoint: &str,
    ledger: &Path,
    (src, dst): (&str, &str),
    shards: &str,
    plan: &str,
    extra: &[&str],
) -> Output {
    let args = ["shard", "plan", src, dst, "--shards", shards, "--plan", plan];
    crate::cli::run(transfer(endpoint, ledger).args(args).args(extra))
}

/// The JSON document in the file at `path` (a plan, a shard's result, a report).
fn json_at(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Options that put user metadata `origin` and `tags` on an object.
fn with_origin(origin: &str, tags: &TagSet) -> PutOptions {
    let mut opts = PutOptions::default();
    opts.metadata = Metadata::with_user([("origin", origin)]).unwrap();
    opts.tags = Some(tags.clone());
    opts
}

/// 120 objects under src/ (sizes from 1 KiB to 300 KiB, keys that need encoding, tags and metadata on each),
/// planned into 4 shards in a directory, run as 4 processes at once with a twin of index 1 beside them and
/// index 2 killed once half-way and run again; then merged. Every object arrives once with its tags and
/// metadata, the report's counts add up to the 120 listed, exactly one DONE per index, and running every shard
/// again sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_run_as_an_indexed_job_and_merge() {
    let served = Served::start();
    let store = served.client(V4);
    store.create_bucket("shards").await.unwrap();
    let tags = TagSet::from_pairs([("project", "mig")]).unwrap();
    let opts = with_origin("dc1", &tags);
    for i in 0..120u64 {
        let key = match i % 3 {
            0 => format!("src/a/{i:03} file.bin"),
            1 => format!("src/b/ü-{i:03}+x"),
            _ => format!("src/c/{i:03}"),
        };
        store.put_object("shards", &key, data(1024 * (1 + (i as usize * 37) % 300), i).into(), &opts).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let plan_dir = tmp.path().join("plan");
    let plan = plan_dir.to_str().unwrap();
    // The plan lists the prefixes under src/ at once (each listing held 100 ms at a proxy shows it).
    let held = Rule { method: Some("GET"), contains: "", fault: Fault::Delay(Duration::from_millis(100)), times: 100 };
    let planning = FaultProxy::start(&served.endpoint, vec![held]).await;
    let plan_cmd = |endpoint: &str| {
        let mut c = transfer(endpoint, &tmp.path().join("p.db"));
        c.args(["shard", "plan", "oss://shards/src/", "oss://shards/dst/", "--shards", "4", "--plan", plan]);
        c
    };
    ok(&crate::cli::run(&mut plan_cmd(&planning.endpoint)));
    let lists: Vec<_> = planning.seen().into_iter().filter(|r| r.method == "GET").collect();
    let overlapping = lists.iter().any(|a| lists.iter().any(|b| !std::ptr::eq(a, b) && a.in_flight_at(b.came)));
    assert!(overlapping, "the prefixes were listed one after the other: {lists:?}");
    let planned: serde_json::Value = json_at(&plan_dir.join("plan.json"));
    assert_eq!((planned["shards"].as_array().unwrap().len(), planned["listed"]["objects"].as_u64()), (4, Some(120)));
    // The same plan again is refused: it may have shards running.
    let again = crate::cli::run(&mut plan_cmd(&served.endpoint));
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));

    // Every request held 30 ms at a proxy, so index 2 can be killed half-way.
    let slow = Rule { method: None, contains: "", fault: Fault::Delay(Duration::from_millis(30)), times: 100_000 };
    let proxy = FaultProxy::start(&served.endpoint, vec![slow]).await;
    let spawn = |i: u32, ledger: &str| {
        shard(&proxy.endpoint, tmp.path(), plan, i, ledger)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut killed = spawn(2, "l2");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Index 2 has copied some of its range (the copies are PUTs with a copy source).
    while proxy.seen().iter().filter(|s| s.method == "PUT" && s.answered.is_some()).count() < 5 {
        assert!(killed.try_wait().unwrap().is_none(), "shard 2 ended before it could be killed");
        assert!(Instant::now() < deadline, "no copy within a minute");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(!plan_dir.join("shards/2/DONE").exists());
    let running: Vec<_> = [(0, "l0"), (1, "l1"), (1, "l1-twin"), (2, "l2"), (3, "l3")]
        .into_iter()
        .map(|(i, l)| (i, spawn(i, l)))
        .collect();
    for (i, child) in running {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "shard {i}: {}", stderr(&out));
    }
    for i in 0..4 {
        assert!(plan_dir.join(format!("shards/{i}/DONE")).exists(), "shard {i} has its DONE");
    }

    let merged =
        crate::cli::run(transfer(&served.endpoint, &tmp.path().join("p.db")).args(["--json", "shard", "merge", plan]));
    ok(&merged);
    let s = summary_of(&plan_dir);
    assert_eq!(
        (s["complete"].as_bool(), s["listed"].as_u64(), s["failed"].as_u64()),
        (Some(true), Some(120), Some(0)),
        "{s}"
    );
    let settled = ["copied", "unchanged", "settled_by_earlier_attempts"].map(|k| s[k].as_u64().unwrap());
    assert_eq!(settled.iter().sum::<u64>(), 120, "{s}");
    let csv = std::fs::read_to_string(plan_dir.join("report/failed.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1, "only the header: {csv}");
    assert_eq!(objects(&store, "shards", "dst/").await, objects(&store, "shards", "src/").await);
    let one = ObjectRef::new("shards", "dst/b/ü-001+x");
    assert_eq!(store.get_tagging(&one).await.unwrap(), tags);
    assert_eq!(store.head_object(&one).await.unwrap().metadata.user.get("origin").map(String::as_str), Some("dc1"));

    // Status says so; every shard run again does nothing, not even a listing.
    let status = crate::cli::run(transfer(&served.endpoint, &tmp.path().join("p.db")).args(["shard", "status", plan]));
    ok(&status);
    assert_eq!(String::from_utf8_lossy(&status.stdout).matches("done").count(), 4, "{}", stderr(&status));
    let quiet = FaultProxy::start(&served.endpoint, vec![]).await;
    for i in 0..4 {
        let out = crate::cli::run(&mut shard(&quiet.endpoint, tmp.path(), plan, i, &format!("l{i}")));
        ok(&out);
        assert!(stderr(&out).contains("is done"), "{}", stderr(&out));
    }
    assert!(quiet.seen().is_empty(), "{:?}", quiet.seen());
}

/// A directory to a bucket, the plan kept in the bucket itself (as pods with no shared disk need): shards run one
/// after the other with `--index`, a missing shard makes the merge fail naming it, and a plan inside the
/// source's range is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_in_shards_with_the_plan_in_the_bucket() {
    let served = Served::start();
    let store = served.client(V4);
    store.create_bucket("dirshards").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for i in 0..30 {
        let p = src.join(format!("d{}/f{i:02}", i % 4));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data(2000 + i * 100, i as u64)).unwrap();
    }
    let l = tmp.path().join("l.db");
    let inside = plan_with(
        &served.endpoint,
        &l,
        ("oss://dirshards/data/", "oss://dirshards/copy/"),
        "2",
        "oss://dirshards/data/_plan/",
        &[],
    );
    assert_eq!(inside.status.code(), Some(2), "{}", stderr(&inside));
    assert!(stderr(&inside).contains("inside the source"), "{}", stderr(&inside));

    let into_dest = plan_with(
        &served.endpoint,
        &l,
        (src.to_str().unwrap(), "oss://dirshards/up/"),
        "2",
        "oss://dirshards/up/_plan/",
        &[],
    );
    assert_eq!(into_dest.status.code(), Some(2), "{}", stderr(&into_dest));
    assert!(stderr(&into_dest).contains("inside the destination"), "{}", stderr(&into_dest));

    // The planner's credentials file is its own: the plan does not carry it to the workers.
    let creds = tmp.path().join("planner-credentials.json");
    let doc = serde_json::json!({"AccessKeyId": crate::util::AK, "AccessKeySecret": crate::util::SK});
    std::fs::write(&creds, doc.to_string()).unwrap();
    let plan = "oss://dirshards/_plans/one/";
    ok(&crate::cli::run(transfer(&served.endpoint, &l).env("TRANSFER_CREDENTIALS_FILE", &creds).args([
        "shard",
        "plan",
        src.to_str().unwrap(),
        "oss://dirshards/up/",
        "--shards",
        "3",
        "--plan",
        plan,
    ])));
    let written = store.get_object(&ObjectRef::new("dirshards", "_plans/one/plan.json"), None).await.unwrap();
    let text = String::from_utf8(written.bytes().await.unwrap().to_vec()).unwrap();
    assert!(!text.contains("planner-credentials"), "{text}");
    for i in [0, 2] {
        ok(&crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "run", plan, "--index", &i.to_string()])));
    }
    let partial = crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "merge", plan]));
    assert_eq!(partial.status.code(), Some(1), "{}", stderr(&partial));
    assert!(stderr(&partial).contains("shard 1 has not run"), "{}", stderr(&partial));
    let out_of_range = crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "run", plan, "--index", "3"]));
    assert_eq!(out_of_range.status.code(), Some(2), "{}", stderr(&out_of_range));
    ok(&crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "run", plan, "--index", "1"])));
    ok(&crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "merge", plan])));
    let report = store.get_object(&ObjectRef::new("dirshards", "_plans/one/report/summary.json"), None).await.unwrap();
    let s: serde_json::Value = serde_json::from_slice(&report.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (s["listed"].as_u64(), s["copied"].as_u64(), s["complete"].as_bool()),
        (Some(30), Some(30), Some(true)),
        "{s}"
    );
    let up = objects(&store, "dirshards", "up/").await;
    assert_eq!(up.len(), 30);
    assert!(up["d1/f05"] == data(2500, 5));
}

/// The same migration on a third-party S3 server: 90 objects under src/ and two of 12 MiB split into 5 MiB parts,
/// planned into 3 shards (the plan in a directory), each run as an Indexed Job's process would run it, merged;
/// every object arrives once with its bytes, and the report accounts for all of them.
async fn on_s3(cmd: &dyn Fn(&str, &Path) -> Command, endpoint: &str, store: &HttpStore, b: &str) {
    store.create_bucket(b).await.unwrap();
    for i in 0..90u64 {
        let key = format!("src/{}/k {i:02}+", i % 4);
        store.put_object(b, &key, data(500 + i as usize * 7, i).into(), &PutOptions::default()).await.unwrap();
    }
    // Two objects of three 5 MiB parts, split across shards.
    for (i, key) in ["src/1/big one", "src/3/big+two"].into_iter().enumerate() {
        store.put_object(b, key, data(12 << 20, 70 + i as u64).into(), &PutOptions::default()).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let plan_dir = tmp.path().join("plan");
    let plan = plan_dir.to_str().unwrap();
    let (src, dst) = (format!("s3://{b}/src/"), format!("s3://{b}/dst/"));
    ok(&crate::cli::run(cmd(endpoint, &tmp.path().join("p.db")).args([
        "shard",
        "plan",
        &src,
        &dst,
        "--shards",
        "3",
        "--split-above",
        "10MiB",
        "--part-size",
        "5MiB",
        "--plan",
        plan,
    ])));
    let planned: serde_json::Value = json_at(&plan_dir.join("plan.json"));
    assert_eq!(planned["splits"].as_array().map(Vec::len), Some(2), "{planned}");
    let shards = planned["shards"].as_array().unwrap().len();
    assert!(shards >= 2, "{planned}");
    for i in 0..shards {
        let mut c = cmd(endpoint, &tmp.path().join(format!("l{i}.db")));
        c.args(["shard", "run", plan]).env("JOB_COMPLETION_INDEX", i.to_string());
        ok(&crate::cli::run(&mut c));
    }
    ok(&crate::cli::run(cmd(endpoint, &tmp.path().join("p.db")).args(["shard", "merge", plan])));
    let s = summary_of(&plan_dir);
    assert_eq!(
        (s["complete"].as_bool(), s["listed"].as_u64(), s["copied"].as_u64(), s["split"]["completed"].as_u64()),
        (Some(true), Some(92), Some(92), Some(2)),
        "{s}"
    );
    assert_eq!(objects(store, b, "dst/").await, objects(store, b, "src/").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_against_transfer_serves_s3_dialect() {
    let served = Served::start();
    let cmd = |ep: &str, l: &Path| transfer_s3(ep, l, (crate::util::AK, crate::util::SK));
    let store = s3_client(&served.endpoint, (crate::util::AK, crate::util::SK));
    on_s3(&cmd, &served.endpoint, &store, "shards-s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_against_moto() {
    let moto = Moto::start("shards_against_moto");
    let cmd = |ep: &str, l: &Path| transfer_s3(ep, l, MOTO_KEY);
    on_s3(&cmd, &moto.endpoint, &moto.client_in("us-east-1"), "shards-moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_against_s3s_fs() {
    let server = S3sFs::start("shards_against_s3s_fs");
    let cmd = |ep: &str, l: &Path| transfer_s3(ep, l, S3S_KEY);
    let store = s3_client(&server.endpoint, S3S_KEY);
    on_s3(&cmd, &server.endpoint, &store, "shards-s3s").await;
}

/// Keys of the unfinished uploads under `prefix`.
async fn uploads(store: &HttpStore, b: &str, prefix: &str) -> Vec<String> {
    let page = store.list_uploads(b, &ListUploadsRequest::default()).await.unwrap();
    page.uploads.into_iter().map(|u| u.key).filter(|k| k.starts_with(prefix)).collect()
}

/// A 24 MiB object (with tags and metadata) among 20 small ones, planned into 4 shards with
/// `--split-above 8MiB --part-size 1MiB`: the planner initiates its upload and deals its 24 parts to several
/// shards; a 12 MiB object the destination already holds is left whole. The shards run at once (a twin of the
/// first chunk's index beside them); nothing of the big object is visible until the merge completes it, with its
/// bytes, tags and metadata; a chunk's shard rerun with its ledger lost sends no part again (the server's parts
/// are adopted); merging again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_is_split_across_shards_and_completed_by_the_merge() {
    let served = Served::start();
    let store = served.client(V4);
    store.create_bucket("split").await.unwrap();
    let tags = TagSet::from_pairs([("tier", "gold")]).unwrap();
    let opts = with_origin("dc2", &tags);
    for i in 0..20u64 {
        let key = format!("src/{}/s{i:02}", ["a", "n", "z"][i as usize % 3]);
        store.put_object("split", &key, data(3000 + i as usize * 100, i).into(), &opts).await.unwrap();
    }
    let huge = data(24 << 20, 99);
    store.put_object("split", "src/m/huge.bin", huge.clone().into(), &opts).await.unwrap();
    let same = data(12 << 20, 7);
    for key in ["src/q/same.bin", "dst/q/same.bin"] {
        store.put_object("split", key, same.clone().into(), &opts).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let plan_dir = tmp.path().join("plan");
    let plan = plan_dir.to_str().unwrap();
    let p = tmp.path().join("p.db");
    ok(&plan_with(
        &served.endpoint,
        &p,
        ("oss://split/src/", "oss://split/dst/"),
        "4",
        plan,
        &["--split-above", "8MiB", "--part-size", "1MiB"],
    ));
    let planned: serde_json::Value = json_at(&plan_dir.join("plan.json"));
    let splits = planned["splits"].as_array().unwrap();
    assert_eq!(splits.len(), 1, "only the object the destination lacks is split: {planned}");
    assert_eq!((splits[0]["key"].as_str(), splits[0]["parts"].as_u64()), (Some("m/huge.bin"), Some(24)));
    let chunks = splits[0]["chunks"].as_array().unwrap();
    let holders: std::collections::BTreeSet<u64> = chunks.iter().map(|c| c["shard"].as_u64().unwrap()).collect();
    assert!(chunks.len() >= 2 && holders.len() == chunks.len(), "one chunk per shard: {chunks:?}");
    let mut covered: Vec<u64> = Vec::new();
    for c in chunks {
        covered.extend(c["first"].as_u64().unwrap()..=c["last"].as_u64().unwrap());
    }
    assert_eq!(covered, (1..=24).collect::<Vec<_>>(), "the chunks cover every part once: {chunks:?}");
    assert_eq!(uploads(&store, "split", "dst/").await, ["dst/m/huge.bin"], "the planner initiated its upload");

    let first_holder = chunks[0]["shard"].as_u64().unwrap() as u32;
    let shards = planned["shards"].as_array().unwrap().len() as u32;
    let running: Vec<_> = (0..shards)
        .map(|i| (i, format!("l{i}")))
        .chain([(first_holder, "twin".to_owned())])
        .map(|(i, l)| {
            let child =
                shard(&served.endpoint, tmp.path(), plan, i, &l).stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
            (i, child.unwrap())
        })
        .collect();
    for (i, child) in running {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "shard {i}: {}", stderr(&out));
    }
    let gone = store.head_object(&ObjectRef::new("split", "dst/m/huge.bin")).await.unwrap_err();
    assert_eq!(gone.kind(), transfer_engine::ErrorKind::ObjectNotFound, "nothing is visible before the merge");
    // The upload is the plan's, not a shard job's: cleanup of a shard's ledger leaves it.
    let holder_ledger = tmp.path().join(format!("l{first_holder}.db"));
    ok(&crate::cli::run(transfer(&served.endpoint, &holder_ledger).args(["cleanup", "--include-resumable"])));
    assert_eq!(uploads(&store, "split", "dst/").await, ["dst/m/huge.bin"]);

    // The first chunk's shard again, its DONE and its ledger lost: ListParts is the truth, nothing is re-sent.
    std::fs::remove_file(plan_dir.join(format!("shards/{first_holder}/DONE"))).unwrap();
    let counting = FaultProxy::start(&served.endpoint, vec![]).await;
    ok(&crate::cli::run(&mut shard(&counting.endpoint, tmp.path(), plan, first_holder, "fresh")));
    let seen = counting.seen();
    let resent: Vec<_> = seen.iter().filter(|s| s.target.contains("partNumber=")).collect();
    assert!(resent.is_empty(), "parts sent again: {resent:?}");
    assert!(seen.iter().any(|s| s.method == "GET" && s.target.contains("uploadId=")), "ListParts: {seen:?}");
    let result: serde_json::Value = json_at(&plan_dir.join(format!("shards/{first_holder}/DONE")));
    let first = chunks[0]["first"].as_u64().unwrap();
    let last = chunks[0]["last"].as_u64().unwrap();
    assert_eq!(result["chunks"][0]["parts"].as_array().unwrap().len() as u64, last - first + 1, "{result}");

    let merged = crate::cli::run(transfer(&served.endpoint, &p).args(["shard", "merge", plan]));
    ok(&merged);
    let s = summary_of(&plan_dir);
    assert_eq!(
        (s["complete"].as_bool(), s["listed"].as_u64(), s["split"]["completed"].as_u64(), s["failed"].as_u64()),
        (Some(true), Some(22), Some(1), Some(0)),
        "{s}"
    );
    let settled = ["copied", "unchanged", "settled_by_earlier_attempts", "failed"].map(|k| s[k].as_u64().unwrap());
    assert_eq!(settled.iter().sum::<u64>(), 22, "{s}");
    let dst = ObjectRef::new("split", "dst/m/huge.bin");
    let got = store.get_object(&dst, None).await.unwrap().bytes().await.unwrap();
    assert!(got == huge, "the split object's bytes");
    assert_eq!(store.get_tagging(&dst).await.unwrap(), tags);
    assert_eq!(store.head_object(&dst).await.unwrap().metadata.user.get("origin").map(String::as_str), Some("dc2"));
    assert_eq!(objects(&store, "split", "dst/").await, objects(&store, "split", "src/").await);
    assert!(uploads(&store, "split", "dst/").await.is_empty());
    // Merging again finds it completed.
    ok(&crate::cli::run(transfer(&served.endpoint, &p).args(["shard", "merge", plan])));
    assert_eq!(summary_of(&plan_dir)["split"]["completed"].as_u64(), Some(1));
}

/// A split object whose source changes after the plan is never published: its chunks fail (the shard exits 1,
/// no DONE), the merge reports it; `shard abort` aborts the planned upload, after which a chunk fails naming why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_source_that_changed_never_publishes_and_abort_removes_its_upload() {
    let served = Served::start();
    let store = served.client(V4);
    store.create_bucket("splitx").await.unwrap();
    for i in 0..4u64 {
        store.put_object("splitx", &format!("src/s{i}"), data(2000, i).into(), &PutOptions::default()).await.unwrap();
    }
    store.put_object("splitx", "src/big", data(6 << 20, 5).into(), &PutOptions::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plan_dir = tmp.path().join("plan");
    let plan = plan_dir.to_str().unwrap();
    let l = tmp.path().join("l.db");
    ok(&plan_with(
        &served.endpoint,
        &l,
        ("oss://splitx/src/", "oss://splitx/dst/"),
        "2",
        plan,
        &["--split-above", "4MiB", "--part-size", "1MiB"],
    ));
    store.put_object("splitx", "src/big", data(6 << 20, 6).into(), &PutOptions::default()).await.unwrap();
    for i in 0..2 {
        let out =
            crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "run", plan, "--index", &i.to_string()]));
        // Failed, resumable (the shard's other keys are in place; a rerun goes on).
        assert_eq!(out.status.code(), Some(3), "shard {i}: {}", stderr(&out));
        assert!(stderr(&out).contains("changed since the migration was planned"), "{}", stderr(&out));
        assert!(stderr(&out).contains("chunks of split objects: 0 in place, 1 failed"), "{}", stderr(&out));
        assert!(!plan_dir.join(format!("shards/{i}/DONE")).exists());
    }
    let merged = crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "merge", plan]));
    assert_eq!(merged.status.code(), Some(1), "{}", stderr(&merged));
    assert!(
        store
            .head_object(&ObjectRef::new("splitx", "dst/big"))
            .await
            .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound),
        "nothing published"
    );

    let aborted = crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "abort", plan]));
    ok(&aborted);
    assert!(stderr(&aborted).contains("1 split uploads aborted"), "{}", stderr(&aborted));
    assert!(uploads(&store, "splitx", "dst/").await.is_empty());
    // The source as planned again: the chunk fails on the upload the abort removed.
    store.put_object("splitx", "src/big", data(6 << 20, 5).into(), &PutOptions::default()).await.unwrap();
    let out = crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "run", plan, "--index", "0"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("is gone"), "{}", stderr(&out));
}

/// A directory's large file split across shards: each shard reads only its parts of the file; the merge
/// completes the object with the file's bytes and its modification time in the metadata, as an upload writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_is_split_across_shards() {
    let served = Served::start();
    let store = served.client(V4);
    store.create_bucket("filesplit").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..10 {
        std::fs::write(src.join(format!("d/f{i}")), data(4000 + i, i as u64)).unwrap();
    }
    let big = data((9 << 20) + 123, 9);
    std::fs::write(src.join("big.img"), &big).unwrap();
    let plan_dir = tmp.path().join("plan");
    let plan = plan_dir.to_str().unwrap();
    let l = tmp.path().join("l.db");
    let args = ["--shards", "3", "--split-above", "4MiB", "--part-size", "1MiB", "--plan", plan];
    let mut c = transfer(&served.endpoint, &l);
    c.args(["shard", "plan", src.to_str().unwrap(), "oss://filesplit/up/"]).args(args);
    ok(&crate::cli::run(&mut c));
    let planned: serde_json::Value = json_at(&plan_dir.join("plan.json"));
    assert_eq!(planned["splits"][0]["key"].as_str(), Some("big.img"), "{planned}");
    assert!(planned["splits"][0]["chunks"].as_array().unwrap().len() >= 2, "{planned}");
    for i in 0..planned["shards"].as_array().unwrap().len() {
        ok(&crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "run", plan, "--index", &i.to_string()])));
    }
    ok(&crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "merge", plan])));
    let obj = ObjectRef::new("filesplit", "up/big.img");
    assert!(store.get_object(&obj, None).await.unwrap().bytes().await.unwrap() == big);
    let head = store.head_object(&obj).await.unwrap();
    assert!(head.metadata.user.contains_key(transfer_engine::job::MTIME_METADATA), "{:?}", head.metadata);
    assert_eq!(objects(&store, "filesplit", "up/").await.len(), 11);
    assert_eq!(summary_of(&plan_dir)["listed"].as_u64(), Some(11));
}

/// Keys that failed in their shards come back as the merge's report/retry.txt, and `shard plan --files-from` of
/// it plans only them: the retry's shards ask for each of their keys (HEAD) and list nothing, and its merge
/// accounts for exactly those keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_keys_are_retried_from_the_merges_manifest() {
    let served = Served::start();
    let store = served.client(V4);
    store.create_bucket("retry").await.unwrap();
    for i in 0..30u64 {
        let key =
            if i == 7 { "src/a/k07 ü,x".to_owned() } else { format!("src/{}/k{i:02}", ["a", "b"][i as usize % 2]) };
        store.put_object("retry", &key, data(1500 + i as usize, i).into(), &PutOptions::default()).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let (plan_dir, retry_dir) = (tmp.path().join("plan"), tmp.path().join("retry"));
    let (plan, retry) = (plan_dir.to_str().unwrap(), retry_dir.to_str().unwrap());
    let l = tmp.path().join("l.db");
    ok(&plan_with(&served.endpoint, &l, ("oss://retry/src/", "oss://retry/dst/"), "2", plan, &[]));
    // Copies of k07 and k21 are refused for good.
    let refuse = |key: &'static str| Rule {
        method: Some("PUT"),
        contains: key,
        fault: Fault::Status(403, "AccessDenied"),
        times: 1000,
    };
    let proxy = FaultProxy::start(&served.endpoint, vec![refuse("k07"), refuse("k21")]).await;
    for i in 0..2 {
        let out =
            crate::cli::run(transfer(&proxy.endpoint, &l).args(["shard", "run", plan, "--index", &i.to_string()]));
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    }
    let merged = crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "merge", plan]));
    assert_eq!(merged.status.code(), Some(1), "{}", stderr(&merged));
    let manifest = std::fs::read_to_string(plan_dir.join("report/retry.txt")).unwrap();
    assert_eq!(manifest, "a%2Fk07%20%C3%BC%2Cx\nb%2Fk21\n");

    // As the README pipes it: the manifest on stdin.
    let manifest = std::fs::File::open(plan_dir.join("report/retry.txt")).unwrap();
    ok(&crate::cli::run(transfer(&served.endpoint, &l).stdin(manifest).args([
        "shard",
        "plan",
        "oss://retry/src/",
        "oss://retry/dst/",
        "--shards",
        "2",
        "--files-from",
        "-",
        "--plan",
        retry,
    ])));
    let replanned: serde_json::Value = json_at(&retry_dir.join("plan.json"));
    assert_eq!(replanned["listed"]["objects"].as_u64(), Some(2), "{replanned}");
    let counting = FaultProxy::start(&served.endpoint, vec![]).await;
    for i in 0..replanned["shards"].as_array().unwrap().len() {
        let out =
            crate::cli::run(transfer(&counting.endpoint, &l).args(["shard", "run", retry, "--index", &i.to_string()]));
        ok(&out);
    }
    let seen = counting.seen();
    // Each run checks its bucket with one key's listing (max-keys=1); nothing else is listed.
    let lists: Vec<_> =
        seen.iter().filter(|s| s.target.contains("list-type") && !s.target.contains("max-keys=1&")).collect();
    assert!(lists.is_empty(), "the retry listed: {lists:?}");
    assert!(seen.iter().any(|s| s.method == "HEAD"), "{seen:?}");
    let copies = seen.iter().filter(|s| s.method == "PUT" && s.target.contains("/dst/")).count();
    assert_eq!(copies, 2, "{seen:?}");
    ok(&crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "merge", retry])));
    let s = summary_of(&retry_dir);
    assert_eq!(
        (s["listed"].as_u64(), s["copied"].as_u64(), s["complete"].as_bool()),
        (Some(2), Some(2), Some(true)),
        "{s}"
    );
    assert_eq!(std::fs::read_to_string(retry_dir.join("report/retry.txt")).unwrap(), "");
    assert_eq!(objects(&store, "retry", "dst/").await, objects(&store, "retry", "src/").await);
}

/// Kubernetes stops a pod with SIGTERM: the shard stops as on Ctrl-C (parts in flight recorded, exit 3), writes
/// its result and keeps a snapshot of its ledger beside the plan; the shard rescheduled on another machine (no
/// ledger of its own) restores it and goes on after what was settled, listing from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_stopped_by_sigterm_goes_on_elsewhere_from_its_ledger_snapshot() {
    let served = Served::start();
    let store = served.client(V4);
    store.create_bucket("moved").await.unwrap();
    for i in 0..40u64 {
        store.put_object("moved", &format!("src/k{i:02}"), data(1000, i).into(), &PutOptions::default()).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let plan_dir = tmp.path().join("plan");
    let plan = plan_dir.to_str().unwrap();
    let l = tmp.path().join("planner.db");
    ok(&plan_with(&served.endpoint, &l, ("oss://moved/src/", "oss://moved/dst/"), "1", plan, &[]));
    let slow = Rule { method: None, contains: "", fault: Fault::Delay(Duration::from_millis(30)), times: 100_000 };
    let proxy = FaultProxy::start(&served.endpoint, vec![slow]).await;
    let mut first = shard(&proxy.endpoint, tmp.path(), plan, 0, "machine-a").stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.seen().iter().filter(|s| s.method == "PUT" && s.answered.is_some()).count() < 10 {
        assert!(first.try_wait().unwrap().is_none(), "the shard ended before it could be stopped");
        assert!(Instant::now() < deadline, "no copy within a minute");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let term = Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap();
    assert!(term.success());
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let result: serde_json::Value = json_at(&plan_dir.join("shards/0/result.json"));
    assert_eq!(result["state"].as_str(), Some("stopped"), "{result}");
    assert!(plan_dir.join("shards/0/ledger.db").exists(), "the ledger is kept beside the plan");
    // Only `shard run` resumes a shard (it knows the plan's split objects): `transfer resume` refuses it by id
    // and passes it over without one.
    let a = tmp.path().join("machine-a.db");
    let by_id = crate::cli::run(transfer(&served.endpoint, &a).args(["resume", "1"]));
    assert_eq!(by_id.status.code(), Some(2), "{}", stderr(&by_id));
    assert!(stderr(&by_id).contains("shard run"), "{}", stderr(&by_id));
    let any = crate::cli::run(transfer(&served.endpoint, &a).args(["resume"]));
    ok(&any);
    assert!(stderr(&any).contains("nothing to resume"), "{}", stderr(&any));

    let counting = FaultProxy::start(&served.endpoint, vec![]).await;
    let out = crate::cli::run(&mut shard(&counting.endpoint, tmp.path(), plan, 0, "machine-b"));
    ok(&out);
    assert!(stderr(&out).contains("ledger restored"), "{}", stderr(&out));
    let done: serde_json::Value = json_at(&plan_dir.join("shards/0/DONE"));
    assert!(done["settled_earlier"].as_u64().unwrap() >= 5, "{done}");
    let seen = counting.seen();
    assert!(
        seen.iter().any(|s| s.target.contains("list-type") && s.target.contains("start-after=src%2Fk")),
        "the listing goes on after the cursor: {seen:?}"
    );
    ok(&crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "merge", plan])));
    assert_eq!(objects(&store, "moved", "dst/").await, objects(&store, "moved", "src/").await);
}

/// A skewed keyspace balances: 80% of the small files' bytes under one prefix, and one 2 GiB file (sparse files:
/// the plan reads sizes, not bytes). The 2 GiB file is split and its parts dealt so that no shard carries much
/// more than an even share of everything, and none is left with little; every part is in exactly one chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_keyspace_with_a_huge_object_plans_balanced_shards() {
    let served = Served::start();
    served.client(V4).create_bucket("skew").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let sparse = |rel: &str, len: u64| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::File::create(p).unwrap().set_len(len).unwrap();
    };
    for i in 0..40 {
        sparse(&format!("hot/h{i:02}"), 20 << 20);
    }
    for i in 0..200 {
        sparse(&format!("cold/c{i:03}"), 1 << 20);
    }
    sparse("huge.bin", 2 << 30);
    let plan_dir = tmp.path().join("plan");
    let l = tmp.path().join("l.db");
    let shards = 8;
    ok(&plan_with(
        &served.endpoint,
        &l,
        (src.to_str().unwrap(), "oss://skew/dst/"),
        &shards.to_string(),
        plan_dir.to_str().unwrap(),
        &[],
    ));
    let planned: serde_json::Value = json_at(&plan_dir.join("plan.json"));
    let total = (40u64 * 20 + 200 + 2048) << 20;
    let ranges = planned["shards"].as_array().unwrap();
    let loads: Vec<u64> =
        ranges.iter().map(|r| r["bytes"].as_u64().unwrap() + r["chunk_bytes"].as_u64().unwrap()).collect();
    assert_eq!(loads.iter().sum::<u64>(), total, "{planned}");
    let share = total / ranges.len() as u64;
    assert!(ranges.len() >= shards - 1, "{loads:?}");
    assert!(loads.iter().all(|&l| l <= share + share / 4 && l >= share / 2), "share {share}: {loads:?}");
    let split = &planned["splits"][0];
    assert_eq!(split["key"].as_str(), Some("huge.bin"), "{planned}");
    let mut parts: Vec<u64> = Vec::new();
    for c in split["chunks"].as_array().unwrap() {
        parts.extend(c["first"].as_u64().unwrap()..=c["last"].as_u64().unwrap());
    }
    assert_eq!(parts, (1..=split["parts"].as_u64().unwrap()).collect::<Vec<_>>());
    assert!(split["chunks"].as_array().unwrap().len() >= 4, "{split}");
    ok(&crate::cli::run(transfer(&served.endpoint, &l).args(["shard", "abort", plan_dir.to_str().unwrap()])));
    // What the sync's filter leaves out is not split (no upload initiated for it) either.
    let excluded = tmp.path().join("excluded");
    ok(&plan_with(
        &served.endpoint,
        &l,
        (src.to_str().unwrap(), "oss://skew/dst/"),
        "8",
        excluded.to_str().unwrap(),
        &["--exclude", "huge.bin"],
    ));
    let planned: serde_json::Value = json_at(&excluded.join("plan.json"));
    assert_eq!(planned["splits"].as_array().map(Vec::len), Some(0), "{planned}");
    assert!(uploads(&served.client(V4), "skew", "dst/").await.is_empty());
}
