//! The commands around `transfer cp`, through the built binary against `transfer serve`: `resume` after a kill,
//! `jobs` (list, show, forget), `cleanup`, `stat`, `tag`, profiles, `--create-bucket`, and the plain output.

use crate::cli::{listed, run, summary, transfer};
use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::{bucket, data, Served};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::{Body, ListUploadsRequest, PutOptions};
use transfer_engine::store::{Upload, UploadId};
use transfer_engine::MultipartStore;
use transfer_engine::{BucketStore, ObjectRef, ObjectStore, TagSet};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The upload ids `transfer cleanup --json` names in its `event` lines (`aborted`, `would_abort`, ...), in order.
pub(crate) fn upload_ids(out: &Output, event: &str) -> Vec<String> {
    json_lines(out)
        .iter()
        .filter(|l| l["event"] == event)
        .map(|l| l["upload_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Upload ids of the bucket's incomplete uploads.
async fn uploads(store: &dyn transfer_engine::Store, b: &str) -> Vec<(String, String)> {
    let page = store.list_uploads(b, &ListUploadsRequest::default()).await.unwrap();
    page.uploads.into_iter().map(|u| (u.key, u.upload_id.to_string())).collect()
}

/// Starts `transfer cp` of one 30-part file through a proxy that slows every part down, waits until the server
/// holds at least `parts` of its parts, and kills it with SIGKILL: the job is left mid-upload, as a crash leaves it.
async fn killed_mid_upload(served: &Served, b: &str, file: &Path, ledger: &Path, parts: usize) -> (FaultProxy, String) {
    let (proxy, id, _) = interrupted_mid_upload(served, b, file, ledger, parts, |child| {
        child.kill().unwrap(); // SIGKILL
    })
    .await;
    (proxy, id)
}

/// As [`killed_mid_upload`], interrupting the process with `interrupt`; returns its exit code and stderr too.
async fn interrupted_mid_upload(
    served: &Served,
    b: &str,
    file: &Path,
    ledger: &Path,
    parts: usize,
    interrupt: impl FnOnce(&mut Child),
) -> (FaultProxy, String, (Option<i32>, String)) {
    let store = served.client(V4);
    let slow = FaultProxy::start(
        &served.endpoint,
        vec![Rule {
            method: Some("PUT"),
            contains: "uploadId=",
            fault: Fault::Delay(Duration::from_millis(300)),
            times: 100_000,
        }],
    )
    .await;
    let mut child: Child = transfer(&slow.endpoint, ledger)
        .args(["cp", "--part-size", "128KiB", "--multipart-threshold", "1MiB", "--jobs", "2", "-q"])
        .arg(file)
        .arg(format!("oss://{b}/big.bin"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let upload_id = loop {
        assert!(child.try_wait().unwrap().is_none(), "the upload ended before it could be killed");
        assert!(std::time::Instant::now() < deadline, "{parts} parts did not arrive within a minute");
        if let Some((_, id)) = uploads(&store, b).await.into_iter().next() {
            let page = store.list_parts(&Upload::new(b, "big.bin", UploadId::new(&id)), None, None).await.unwrap();
            if page.parts.len() >= parts {
                break id;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    interrupt(&mut child);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (slow, upload_id, (status.code(), err))
}

/// A server with bucket `b`, a client, a temporary directory with the ledger's path, and a 3 MiB file in it.
struct Setup {
    served: Served,
    store: transfer_engine::http::HttpStore,
    tmp: tempfile::TempDir,
    ledger: std::path::PathBuf,
    file: std::path::PathBuf,
    bytes: Vec<u8>,
}

async fn setup(b: &str, seed: u64) -> Setup {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, b).await;
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, file) = (tmp.path().join("ledger.db"), tmp.path().join("big.bin"));
    let bytes = data(3 * 1024 * 1024, seed);
    std::fs::write(&file, &bytes).unwrap();
    Setup { served, store, tmp, ledger, file, bytes }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_job_is_listed_shown_and_resumed_by_transfer_resume() {
    let Setup { served, store, tmp: _tmp, ledger, file, bytes } = setup("resume", 7).await;
    let (slow, upload_id) = killed_mid_upload(&served, "resume", &file, &ledger, 4).await;
    // What the server holds after the kill (parts in flight may still land): the resume must send exactly the rest.
    let killed = std::time::Instant::now();
    while slow.seen().iter().any(|s| s.answered.is_none()) {
        assert!(killed.elapsed() < Duration::from_secs(30), "requests of the killed run never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let upload = Upload::new("resume", "big.bin", UploadId::new(&upload_id));
    let held = store.list_parts(&upload, None, None).await.unwrap().parts.len() as u64;
    let before_resume = slow.seen().len();

    let jobs = run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"]));
    assert_eq!(jobs.status.code(), Some(0), "{}", stderr(&jobs));
    let jobs = json_lines(&jobs);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["state"], "interrupted", "a killed job runs no more: it is not shown running");
    assert_eq!(jobs[0]["objects"]["uploading"], 1);
    // The parts the server acknowledged count: the listing says what a resume will not send again.
    let in_parts = jobs[0]["objects"]["bytes_in_parts"].as_u64().unwrap();
    assert!(in_parts >= 128 * 1024 && in_parts.is_multiple_of(128 * 1024), "{}", jobs[0]);
    let id = jobs[0]["job"].as_i64().unwrap();
    let shown = run(transfer(&served.endpoint, &ledger).args(["jobs", "show", &id.to_string()]));
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains(&upload_id) && text.contains("uploading") && text.contains(&format!("transfer resume {id}")),
        "{text}"
    );
    // The options read back as the command that runs the job, not as JSON.
    let command = text.lines().find(|l| l.starts_with("  command: ")).unwrap_or_else(|| panic!("{text}"));
    assert!(
        command.contains(&format!("transfer cp {} oss://resume/big.bin", file.display()))
            && command.contains("--jobs 2 --multipart-threshold 1MiB --part-size 128KiB")
            && !command.contains('{'),
        "{command}"
    );

    // No argument: the newest unfinished job. The recorded options bring back the endpoint (the slow proxy) and
    // the part size; the credentials come from the environment again.
    let out = run(transfer("http://127.0.0.1:1", &ledger).args(["resume", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    let done = lines.iter().find(|l| l["event"] == "done").expect("a done event");
    let (sent, reused) = (done["parts_sent"].as_u64().unwrap(), done["parts_reused"].as_u64().unwrap());
    // On the wire: every part the server held is reused (recorded, or adopted from ListParts), the others sent once.
    let resent: Vec<_> =
        slow.seen()[before_resume..].iter().filter(|s| s.target.contains("partNumber=")).cloned().collect();
    assert_eq!((reused, resent.len() as u64), (held, 24 - held), "{done}");
    assert_eq!(sent + reused, 24, "3 MiB in 128 KiB parts: {done}");
    // Power-of-two parts: the file's BLAKE3 comes from the parts' digests, those recorded before the kill too.
    assert_eq!(done["blake3"].as_str(), Some(blake3::hash(&bytes).to_hex().as_str()), "{done}");
    assert_eq!(summary(&out)["job"].as_i64(), Some(id));
    // The summary tells what this run sent from what the earlier one had delivered.
    let s = summary(&out);
    assert_eq!(s["bytes_reused"].as_u64(), Some(reused * 128 * 1024), "{s}");
    assert_eq!(s["bytes_sent"].as_u64(), Some(sent * 128 * 1024), "{s}");
    let got = store.get_object(&ObjectRef::new("resume", "big.bin"), None).await.unwrap().bytes().await.unwrap();
    assert!(got.as_ref() == bytes.as_slice(), "the resumed object has the file's bytes");
    assert!(uploads(&store, "resume").await.is_empty(), "no upload left behind");

    // Nothing left to resume: said so, and a success (the job is where it was asked to be).
    let again = run(transfer(&served.endpoint, &ledger).args(["resume"]));
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stderr(&again).contains("nothing to resume: no unfinished job"), "{}", stderr(&again));
    let done = run(transfer(&served.endpoint, &ledger).args(["resume", &id.to_string()]));
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    assert!(stderr(&done).contains(&format!("nothing to resume: job {id} is done")), "{}", stderr(&done));
    let missing = run(transfer(&served.endpoint, &ledger).args(["jobs", "show", "999"]));
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no job 999"), "{}", stderr(&missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_twice_quits_at_once_with_the_acknowledged_parts_in_the_ledger() {
    let Setup { served, store, tmp: _tmp, ledger, file, bytes } = setup("twice", 3).await;
    let (slow, upload_id, (code, err)) = interrupted_mid_upload(&served, "twice", &file, &ledger, 3, |child| {
        let pid = child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        // The second press once the first was taken (it says so), not two that arrive as one.
        let mut first = std::io::BufReader::new(child.stderr.as_mut().unwrap());
        let mut line = String::new();
        while !line.contains("Ctrl-C again") {
            line.clear();
            let n = std::io::BufRead::read_line(&mut first, &mut line).unwrap();
            assert!(n > 0, "the process ended without taking the first Ctrl-C");
        }
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
    })
    .await;
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("stopped now") && err.contains("transfer resume"), "{err}");
    // What the server holds once the quit run's requests settled: the resume (through the same proxy, which its
    // recorded options name) sends exactly the other parts, each once.
    let settled = || slow.seen().iter().all(|s| s.answered.is_some());
    crate::util::until("the quit run's requests settle", Duration::from_secs(30), settled).await;
    let listed = store.list_parts(&Upload::new("twice", "big.bin", UploadId::new(&upload_id)), None, None).await;
    let held: Vec<u32> = listed.unwrap().parts.iter().map(|p| p.part_number.get()).collect();
    assert!(held.len() >= 3, "{held:?}");
    let before = slow.seen().len();
    let out = run(transfer(&served.endpoint, &ledger).args(["resume", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sent: Vec<u32> =
        slow.seen()[before..].iter().filter(|s| s.method == "PUT").filter_map(|s| s.part_number()).collect();
    assert_eq!(sent.len() + held.len(), 24, "sent {sent:?}, held {held:?}");
    assert!(sent.iter().all(|n| !held.contains(n)), "a part the server held was sent again: {sent:?} / {held:?}");
    let lines = json_lines(&out);
    let done = lines.iter().find(|l| l["event"] == "done").expect("a done event");
    assert_eq!(done["parts_reused"].as_u64(), Some(held.len() as u64), "{done}");
    let got = store.get_object(&ObjectRef::new("twice", "big.bin"), None).await.unwrap().bytes().await.unwrap();
    assert!(got.as_ref() == bytes.as_slice());
}

/// `transfer cleanup` reports what the server says, not what its own calls answered: an abort the server never
/// saw fails (exit 1) and keeps the upload in the ledger; one ListParts cannot confirm fails too; an upload
/// someone else aborted is "already gone" and leaves the ledger, so a later sweep finds nothing. A URL or a
/// scheme the job does not write to keeps its uploads, and --older-than goes by the server's initiation time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_believes_the_server_not_its_own_calls() {
    let Setup { served, store, tmp: _tmp, ledger, file, .. } = setup("sweep", 12).await;
    let (slow, ours) = killed_mid_upload(&served, "sweep", &file, &ledger, 2).await;
    // Another upload of the same key, initiated later, is not ours and never touched.
    let foreign = store.initiate_multipart("sweep", "big.bin", &PutOptions::default()).await.unwrap();
    let unfinished = || {
        let jobs = json_lines(&run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"])));
        jobs.iter().find(|j| j["state"] != "done").expect("an unfinished job")["job"].to_string()
    };
    let job = unfinished();
    let cleanup = |job: &str, extra: &[&str]| {
        let out = run(transfer(&served.endpoint, &ledger).args(["cleanup", "--json", "--job", job]).args(extra));
        let lines = json_lines(&out);
        let events: Vec<(String, String)> = lines
            .iter()
            .filter(|l| l["event"] != "summary")
            .map(|l| (l["event"].as_str().unwrap().to_owned(), l["message"].as_str().unwrap_or("").to_owned()))
            .collect();
        (out.status.code(), events, lines.last().cloned().unwrap_or_default())
    };
    let ids = || async { uploads(&store, "sweep").await.into_iter().map(|(_, id)| id).collect::<Vec<_>>() };
    let both = {
        let mut v = vec![ours.clone(), foreign.id.to_string()];
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    // In scope: its bucket and a prefix of its key. Out of scope: another prefix, another bucket, another scheme
    // than the one the job writes to.
    let (_, events, _) = cleanup(&job, &["--dry-run", "oss://sweep/bi"]);
    assert_eq!(events.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(), ["would_abort"], "{events:?}");
    for url in ["oss://sweep/elsewhere/", "oss://other/", "s3://sweep/"] {
        let (code, events, summary) = cleanup(&job, &[url]);
        assert_eq!((code, events.len(), summary["aborted"].as_u64()), (Some(0), 0, Some(0)), "{url}: {events:?}");
    }
    assert_eq!(sorted(ids().await), both);

    // --older-than by the server's clock: once the upload is two seconds old, 1s takes it and 1h keeps it.
    let old = || async {
        let page = store.list_uploads("sweep", &ListUploadsRequest::default()).await.unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        page.uploads.iter().any(|u| u.upload_id.as_str() == ours && now - u.initiated >= 2)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !old().await {
        assert!(std::time::Instant::now() < deadline, "the upload never grew two seconds old");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, events, summary) = cleanup(&job, &["--dry-run", "--older-than", "1s"]);
    assert_eq!(events.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(), ["would_abort"], "{events:?}");
    assert_eq!(summary["would_abort"].as_u64(), Some(1), "{summary}");
    let (_, events, _) = cleanup(&job, &["--dry-run", "--older-than", "1h"]);
    assert!(events.is_empty(), "{events:?}");

    // The uploads cannot be listed (a refusal, not retried): nothing is aborted blind, and the sweep fails.
    let listing =
        Rule { method: Some("GET"), contains: "uploads", fault: Fault::Status(403, "AccessDenied"), times: 1 };
    slow.add(listing);
    let (code, events, summary) = cleanup(&job, &[]);
    assert_eq!((code, summary["failed"].as_u64()), (Some(1), Some(1)), "{events:?}");
    assert!(events.len() == 1 && events[0].1.contains("cannot list it"), "{events:?}");
    slow.clear();
    assert_eq!(sorted(ids().await), both);

    // The abort never reaches the server: cleanup says so, fails, and keeps the upload in the ledger.
    let abort = |fault: Fault, times| Rule { method: Some("DELETE"), contains: "uploadId=", fault, times };
    slow.add(abort(Fault::Answer(204), 1));
    let (code, events, summary) = cleanup(&job, &[]);
    assert_eq!(code, Some(1), "{events:?}");
    assert!(events.len() == 1 && events[0].0 == "failed" && events[0].1.contains("still lists it"), "{events:?}");
    assert_eq!((summary["aborted"].as_u64(), summary["failed"].as_u64()), (Some(0), Some(1)), "{summary}");
    assert_eq!(sorted(ids().await), both);

    // The abort's answer is lost and its retry meets NoSuchUpload: ListParts confirms it is gone, so it counts
    // as aborted, and the ledger forgets it (the next sweep finds nothing).
    slow.add(abort(Fault::LoseResponse, 1));
    let (code, events, summary) = cleanup(&job, &[]);
    assert_eq!((code, summary["aborted"].as_u64()), (Some(0), Some(1)), "{events:?}");
    assert_eq!(ids().await, vec![foreign.id.to_string()]);
    let (code, events, _) = cleanup(&job, &[]);
    assert_eq!((code, events.len()), (Some(0), 0), "{events:?}");

    // Killed again: this time the abort happens but ListParts cannot confirm it, a failure that keeps the id.
    // (The rerun may resume the same job, whose recorded endpoint is the first proxy: the rule goes on both.)
    // (Its rerun may adopt the other upload of the key, as a resume without a ledger record does.)
    let (again, second) = killed_mid_upload(&served, "sweep", &file, &ledger, 2).await;
    let others: Vec<String> = ids().await.into_iter().filter(|id| *id != second).collect();
    let job = unfinished();
    let list_parts =
        Rule { method: Some("GET"), contains: "uploadId=", fault: Fault::Status(403, "AccessDenied"), times: 1 };
    for proxy in [&slow, &again] {
        proxy.add(list_parts.clone());
    }
    let (code, events, _) = cleanup(&job, &[]);
    assert_eq!(code, Some(1), "{events:?}");
    assert!(events.len() == 1 && events[0].1.contains("could not confirm"), "{events:?}");
    slow.clear();
    again.clear();
    assert_eq!(ids().await, others, "the abort itself went through");

    // Now gone from the server: the next sweep says so (exit 0) and clears the ledger; the one after finds nothing.
    let (code, events, summary) = cleanup(&job, &[]);
    assert_eq!((code, summary["already_gone"].as_u64()), (Some(0), Some(1)), "{events:?}");
    assert_eq!(events.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(), ["gone"]);
    let (code, events, summary) = cleanup(&job, &[]);
    assert_eq!((code, events.len(), summary["already_gone"].as_u64()), (Some(0), 0, Some(0)), "{events:?}");
    assert_eq!(ids().await, others, "no other upload is touched");

    // --all takes every upload under its prefix, whoever started it, and none outside it.
    let stray = store.initiate_multipart("sweep", "elsewhere/x", &PutOptions::default()).await.unwrap();
    let kept = store.initiate_multipart("sweep", "kept/y", &PutOptions::default()).await.unwrap();
    let out = run(transfer(&served.endpoint, &ledger).args(["cleanup", "--all", "--json", "oss://sweep/elsewhere/"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(upload_ids(&out, "aborted"), vec![stray.id.to_string()]);
    let outside = sorted(others.iter().cloned().chain([kept.id.to_string()]).collect());
    assert_eq!(sorted(ids().await), outside, "the uploads outside the prefix stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_aborts_exactly_our_uploads_and_forget_drops_the_job() {
    let Setup { served, store, tmp: _tmp, ledger, file, .. } = setup("clean", 8).await;
    let (_slow, ours) = killed_mid_upload(&served, "clean", &file, &ledger, 2).await;
    let foreign = store.initiate_multipart("clean", "someone-else", &PutOptions::default()).await.unwrap();

    let jobs = json_lines(&run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"])));
    let killed = jobs.iter().find(|j| j["state"] != "done").unwrap()["job"].as_i64().unwrap().to_string();

    // By default the upload of a resumable job is kept, named with how to include it; nothing is aborted.
    let kept = run(transfer(&served.endpoint, &ledger).args(["cleanup", "--json"]));
    assert_eq!(kept.status.code(), Some(0), "{}", stderr(&kept));
    let lines = json_lines(&kept);
    let event = lines.iter().find(|l| l["event"] == "kept").expect("a kept event");
    assert_eq!(event["job"].as_i64().unwrap().to_string(), killed);
    assert!(event["message"].as_str().unwrap().contains(&format!("--job {killed}")), "{event}");
    assert_eq!(lines.last().unwrap()["aborted"], 0);
    assert_eq!(uploads(&store, "clean").await.len(), 2);

    // A dry run including resumable jobs lists ours only and aborts nothing.
    let dry = run(transfer(&served.endpoint, &ledger).args(["cleanup", "--dry-run", "--json", "--include-resumable"]));
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert_eq!(upload_ids(&dry, "would_abort"), vec![ours.clone()]);
    assert_eq!(uploads(&store, "clean").await.len(), 2);

    // --older-than keeps young uploads, and takes those old enough.
    let young =
        run(transfer(&served.endpoint, &ledger).args(["cleanup", "--older-than", "1h", "--json", "--job", &killed]));
    assert_eq!(json_lines(&young).last().unwrap()["aborted"], 0);
    assert_eq!(uploads(&store, "clean").await.len(), 2);
    let old_enough = run(transfer(&served.endpoint, &ledger).args([
        "cleanup",
        "--older-than",
        "0s",
        "--dry-run",
        "--json",
        "--job",
        &killed,
    ]));
    assert_eq!(old_enough.status.code(), Some(0), "{}", stderr(&old_enough));
    assert_eq!(
        upload_ids(&old_enough, "would_abort"),
        vec![ours.clone()],
        "an upload older than --older-than is taken"
    );

    let out = run(transfer(&served.endpoint, &ledger).args(["cleanup", "--json", "--job", &killed]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(upload_ids(&out, "aborted"), vec![ours.clone()]);
    let left: Vec<String> = uploads(&store, "clean").await.into_iter().map(|(_, id)| id).collect();
    assert_eq!(left, vec![foreign.id.to_string()], "the upload the ledger did not create is untouched");
    let gone = store.list_parts(&Upload::new("clean", "big.bin", UploadId::new(&ours)), None, None).await.unwrap_err();
    assert_eq!(gone.service_code(), Some("NoSuchUpload"));

    // --all takes every upload under the prefix.
    let all = run(transfer(&served.endpoint, &ledger).args(["cleanup", "--all", "oss://clean/some", "--json"]));
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    assert_eq!(json_lines(&all).last().unwrap()["aborted"], 1);
    assert!(uploads(&store, "clean").await.is_empty());

    // The job can still be resumed: its object starts again, since cleanup cleared the upload in the ledger.
    let out = run(transfer(&served.endpoint, &ledger).args(["resume", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = store.get_object(&ObjectRef::new("clean", "big.bin"), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), 3 * 1024 * 1024);

    // Forget: a second killed job's upload is aborted first, then the job is gone.
    std::fs::write(&file, data(3 * 1024 * 1024, 9)).unwrap();
    let (_slow2, second) = killed_mid_upload(&served, "clean", &file, &ledger, 2).await;
    let jobs = json_lines(&run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"])));
    let unfinished: Vec<i64> =
        jobs.iter().filter(|j| j["state"] != "done").map(|j| j["job"].as_i64().unwrap()).collect();
    assert_eq!(unfinished.len(), 1);
    let out = run(transfer(&served.endpoint, &ledger).args(["jobs", "forget", &unfinished[0].to_string()]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let gone = store.list_parts(&Upload::new("clean", "big.bin", UploadId::new(&second)), None, None).await;
    assert!(gone.is_err_and(|e| e.kind() == transfer_engine::ErrorKind::UploadNotFound));
    assert!(uploads(&store, "clean").await.is_empty(), "forget aborted the job's upload");
    let jobs = json_lines(&run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"])));
    assert!(jobs.iter().all(|j| j["job"].as_i64() != Some(unfinished[0])));

    // Housekeeping: finished jobs go at once (--older-than keeps the young ones), a running one's lock file
    // does not outlive it, and the ledger's directory keeps no file per job.
    let finished: Vec<i64> = jobs.iter().filter(|j| j["state"] == "done").map(|j| j["job"].as_i64().unwrap()).collect();
    assert!(!finished.is_empty());
    let young = run(transfer(&served.endpoint, &ledger).args(["jobs", "forget", "--finished", "--older-than", "1h"]));
    assert_eq!(young.status.code(), Some(0), "{}", stderr(&young));
    assert!(stderr(&young).contains("no finished job to forget"), "{}", stderr(&young));
    let out = run(transfer(&served.endpoint, &ledger).args(["jobs", "forget", "--finished", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let forgotten: Vec<i64> =
        json_lines(&out)[0]["jobs"].as_array().unwrap().iter().map(|j| j.as_i64().unwrap()).collect();
    assert_eq!(forgotten, finished);
    assert!(json_lines(&run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"]))).is_empty());
    let mut names: Vec<String> = std::fs::read_dir(ledger.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ledger.db"))
        .collect();
    names.sort();
    assert!(names.iter().all(|n| !n.contains(".lock")), "no lock file left: {names:?}");
    let both = run(transfer(&served.endpoint, &ledger).args(["jobs", "forget", "3", "--finished"]));
    assert_eq!(both.status.code(), Some(2), "one job or --finished, not both");
}

#[tokio::test]
async fn stat_and_tag_commands_on_objects_and_versions() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "objs").await;
    store.put_versioning("objs", true).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let opts = PutOptions::default()
        .metadata(transfer_engine::Metadata::with_user([("owner", "ops")]).unwrap())
        .tags(Some(TagSet::from_pairs([("v", "one")]).unwrap()));
    let first = store.put_object("objs", "k", Body::from(data(1000, 1)), &opts).await.unwrap();
    store.put_object("objs", "k", Body::from(data(2000, 2)), &PutOptions::default()).await.unwrap();
    let v1 = first.version_id.clone().unwrap();

    let out = run(transfer(&served.endpoint, &ledger).args(["stat", "--json", "oss://objs/k"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let facts = &json_lines(&out)[0];
    assert_eq!((facts["size"].as_u64(), facts["tagging_count"].as_u64()), (Some(2000), Some(0)));
    // Dates are RFC 3339, in JSON as in text.
    let modified = facts["last_modified"].as_str().unwrap();
    assert!(modified.len() == 20 && modified.ends_with('Z') && modified.as_bytes()[10] == b'T', "{modified}");
    let out = run(transfer(&served.endpoint, &ledger).args(["stat", "--json", "--version-id", &v1, "oss://objs/k"]));
    let facts = &json_lines(&out)[0];
    assert_eq!((facts["size"].as_u64(), facts["meta"]["owner"].as_str()), (Some(1000), Some("ops")));
    let crc = transfer_engine::crc64::checksum(&data(1000, 1)).to_string();
    assert_eq!(facts["crc64"].as_str(), Some(crc.as_str()));
    let out =
        run(transfer(&served.endpoint, &ledger).args(["stat", "--meta-only", "--version-id", &v1, "oss://objs/k"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("size: 1000") && text.contains(&crc), "{text}");
    let missing = run(transfer(&served.endpoint, &ledger).args(["stat", "oss://objs/nope"]));
    assert_eq!(missing.status.code(), Some(1), "a failed request is exit 1");
    assert!(stderr(&missing).contains("objs/nope"), "{}", stderr(&missing));

    let get = |version: &str| {
        let out =
            run(transfer(&served.endpoint, &ledger).args(["tag", "get", "--version-id", version, "oss://objs/k"]));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get(&v1), "v=one\n");
    let out = run(transfer(&served.endpoint, &ledger).args([
        "tag",
        "put",
        "--version-id",
        &v1,
        "--tag",
        "a=1",
        "--tagging",
        "k4%2B-%3D=%2B-%3D._%3A%2F",
        "oss://objs/k",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tags = store.get_tagging(&ObjectRef::new("objs", "k").at_version(v1.clone())).await.unwrap().sorted();
    assert_eq!(tags, TagSet::from_pairs([("a", "1"), ("k4+-=", "+-=._:/")]).unwrap().sorted());
    // A key holding `=` prints unambiguously: one tag a line, encoded as --tagging takes it.
    let mut lines: Vec<String> = get(&v1).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["a=1", "k4%2B-%3D=%2B-%3D._%3A%2F"]);
    assert!(store.get_tagging(&ObjectRef::new("objs", "k")).await.unwrap().is_empty(), "only that version was tagged");
    let out = run(transfer(&served.endpoint, &ledger).args(["tag", "delete", "--version-id", &v1, "oss://objs/k"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(get(&v1), "");
    let bad = run(transfer(&served.endpoint, &ledger).args(["tag", "put", "--tag", "bad*=x", "oss://objs/k"]));
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--tag"), "{}", stderr(&bad));
}

#[tokio::test]
async fn profiles_name_the_endpoint_and_the_credential_variables() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "prof").await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.lab]\nendpoint = \"{}\"\nregion = \"cn-hangzhou\"\ndialect = \"oss\"\nsignature_version = \"v1\"\n\
             access_key_id_env = \"LAB_KEY_ID\"\naccess_key_secret_env = \"LAB_KEY_SECRET\"\n",
            served.endpoint
        ),
    )
    .unwrap();
    let file = tmp.path().join("f.txt");
    std::fs::write(&file, b"profiled").unwrap();
    let with_profile = |c: &mut Command| {
        c.env("TRANSFER_CONFIG", &config)
            .env_remove("TRANSFER_ENDPOINT")
            .env_remove("OSS_ACCESS_KEY_ID")
            .env_remove("OSS_ACCESS_KEY_SECRET")
            .env("LAB_KEY_ID", crate::util::AK)
            .env("LAB_KEY_SECRET", crate::util::SK);
    };
    let mut c = transfer(&served.endpoint, &ledger);
    with_profile(&mut c);
    let out = run(c.args(["cp", "--profile", "lab"]).arg(&file).arg("oss://prof/f.txt"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = store.get_object(&ObjectRef::new("prof", "f.txt"), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"profiled");
    // The ledger records the profile's name, never a secret.
    let db = std::fs::read(&ledger).unwrap();
    assert!(!db.windows(crate::util::SK.len()).any(|w| w == crate::util::SK.as_bytes()), "no secret in the ledger");
    // --src-profile names the source's store: a relay from the profile's endpoint to another server (if it were
    // ignored, the source would be looked for at the destination, which has no such bucket).
    let other = Served::start();
    let other_store = other.client(V4);
    bucket(&other_store, "prof2").await;
    let out = run(transfer(&other.endpoint, &ledger)
        .env("TRANSFER_CONFIG", &config)
        .env("LAB_KEY_ID", crate::util::AK)
        .env("LAB_KEY_SECRET", crate::util::SK)
        .args(["cp", "--src-profile", "lab", "oss://prof/f.txt", "oss://prof2/f.txt"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = other_store.get_object(&ObjectRef::new("prof2", "f.txt"), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"profiled");

    let mut c = transfer(&served.endpoint, &ledger);
    with_profile(&mut c);
    let out = run(c.args(["stat", "--profile", "nope", "oss://prof/f.txt"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("[profiles.nope]") && stderr(&out).contains("lab"), "{}", stderr(&out));
    std::fs::write(&config, "[profiles.bad]\naccess_key_secret = \"s3cr3t\"\n").unwrap();
    let mut c = transfer(&served.endpoint, &ledger);
    with_profile(&mut c);
    let out = run(c.args(["stat", "--profile", "bad", "oss://prof/f.txt"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown field") && !stderr(&out).contains("s3cr3t"), "{}", stderr(&out));
}

#[tokio::test]
async fn create_bucket_and_plain_output_without_control_characters() {
    let served = Served::start();
    let store = served.client(V4);
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"a").unwrap();
    std::fs::write(src.join("sub/b.txt"), b"bb").unwrap();
    let out =
        run(transfer(&served.endpoint, &ledger).args(["cp", "-r", "--create-bucket"]).arg(&src).arg("oss://fresh/x/"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(listed(&store, "fresh", "x/").await, 2);
    let err = stderr(&out);
    assert!(
        err.contains("done x/a.txt") && err.contains("done x/sub/b.txt") && err.contains("done: 2 objects transferred"),
        "{err}"
    );
    assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "plain lines only when not on a terminal: {err:?}");
    let quiet = run(transfer(&served.endpoint, &ledger).args(["cp", "-r", "-q"]).arg(&src).arg("oss://fresh/y/"));
    assert_eq!(quiet.status.code(), Some(0));
    assert!(stderr(&quiet).is_empty(), "-q prints nothing on success: {}", stderr(&quiet));
    // A bucket that is there is not "created" again, on a server or in the local store (which answers a
    // create of its own existing bucket with success).
    let again =
        run(transfer(&served.endpoint, &ledger).args(["cp", "-r", "--create-bucket"]).arg(&src).arg("oss://fresh/z/"));
    assert!(!stderr(&again).contains("created the bucket"), "{}", stderr(&again));
    let root = tmp.path().join("local-root");
    for (run_no, created) in [(1, 1), (2, 0)] {
        let local = run(transfer(&served.endpoint, &ledger)
            .args(["cp", "-r", "--create-bucket", "--local-root"])
            .arg(&root)
            .arg(&src)
            .arg("local://lbk/x/"));
        assert_eq!(local.status.code(), Some(0), "{}", stderr(&local));
        assert_eq!(stderr(&local).matches("created the bucket").count(), created, "run {run_no}: {}", stderr(&local));
    }
    // Messages are sentences, not log records; the summary ends with a short table.
    assert!(err.contains("created the bucket fresh at "), "{err}");
    assert!(!err.contains(" INFO ") && !err.contains("Z  "), "no timestamps or levels: {err}");
    assert!(err.contains("  bytes:    3 B acknowledged: 3 B sent at") && err.contains("  elapsed:  "), "{err}");
    // -v adds per-object debug lines, -vv timestamped records of every module, the HTTP client's too.
    let verbose = run(transfer(&served.endpoint, &ledger)
        .env_remove("RUST_LOG")
        .args(["cp", "-r", "-v"])
        .arg(&src)
        .arg("oss://fresh/v/"));
    let very = run(transfer(&served.endpoint, &ledger)
        .env_remove("RUST_LOG")
        .args(["cp", "-r", "-vv"])
        .arg(&src)
        .arg("oss://fresh/w/"));
    let (v, vv) = (stderr(&verbose), stderr(&very));
    assert!(v.contains("\ndone v/a.txt") && v.contains("debug: request") && !v.contains("hyper"), "{v}");
    assert!(v.lines().count() < vv.lines().count() && vv.contains(" DEBUG ") && vv.contains("hyper"), "{vv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_a_live_progress_line_is_drawn() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "tty").await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        std::fs::write(src.join(format!("f{i}")), data(20_000, i)).unwrap();
    }
    let slow = FaultProxy::start(
        &served.endpoint,
        vec![Rule {
            method: Some("PUT"),
            contains: "",
            fault: Fault::Delay(Duration::from_millis(150)),
            times: 100_000,
        }],
    )
    .await;
    // util-linux `script` runs the command on a pseudo-terminal and copies what it draws to our pipe.
    // An 80-column terminal: the live line is cut to it, never wrapped.
    let cmd = format!("stty cols 80; {} cp -r --jobs 2 {} oss://tty/p/", env!("CARGO_BIN_EXE_transfer"), src.display());
    let on_a_pty = |cmd: &str| {
        let env = transfer(&slow.endpoint, &ledger);
        let env = env.get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())));
        run(Command::new("script")
            .args(["-qec", cmd, "/dev/null"])
            .env("TERM", "xterm")
            .env_remove("RUST_LOG")
            .envs(env))
    };
    let out = on_a_pty(&cmd);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let drawn = String::from_utf8_lossy(&out.stdout);
    assert!(drawn.contains("acknowledged") && drawn.contains("objects"), "a progress line was drawn: {drawn:?}");
    assert!(drawn.contains('\r') || drawn.contains('\u{1b}'), "it is redrawn in place: {drawn:?}");
    assert!(drawn.contains("done: 12 objects transferred"), "{drawn:?}");
    // Every drawn line, its escape sequences taken out, fits in 80 columns.
    for line in drawn.split(['\r', '\n']) {
        let mut visible = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters, then a final byte in @..~.
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            } else if !c.is_control() {
                visible.push(c);
            }
        }
        assert!(visible.chars().count() <= 80, "{} columns: {visible:?}", visible.chars().count());
    }

    // With --json on a terminal, the JSON goes to stdout (here a file) and the live line still to stderr.
    let json = tmp.path().join("out.json");
    let cmd = format!(
        "stty cols 80; {} cp -r --json --jobs 2 {} oss://tty/q/ > {}",
        env!("CARGO_BIN_EXE_transfer"),
        src.display(),
        json.display()
    );
    let out = on_a_pty(&cmd);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let drawn = String::from_utf8_lossy(&out.stdout);
    assert!(drawn.contains("acknowledged") && !drawn.contains("\"event\""), "{drawn:?}");
    let lines = std::fs::read_to_string(&json).unwrap();
    assert!(lines.lines().all(|l| l.starts_with('{')) && lines.contains("\"summary\""), "{lines}");
    assert_eq!(listed(&store, "tty", "p/").await, 12);
}

#[tokio::test]
async fn dry_run_filters_no_clobber_and_update() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "sel").await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"aaaa").unwrap();
    std::fs::write(src.join("b.log"), b"log").unwrap();
    std::fs::write(src.join("sub/c.txt"), b"cc").unwrap();
    std::fs::write(src.join("sub/big.bin"), data(3 * 1024 * 1024, 5)).unwrap();
    let cp = |extra: &[&str]| {
        let mut c = transfer(&served.endpoint, &ledger);
        c.args(["cp", "-r", "--json", "--multipart-threshold", "1MiB", "--part-size", "1MiB", "--exclude", "*.log"])
            .args(extra)
            .arg(&src)
            .arg("oss://sel/x/");
        run(&mut c)
    };

    let dry = cp(&["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let lines = json_lines(&dry);
    let mut planned: Vec<(String, String, Option<u64>)> = lines
        .iter()
        .filter(|l| l["event"] == "planned")
        .map(|l| (l["key"].as_str().unwrap().to_owned(), l["action"].as_str().unwrap().to_owned(), l["parts"].as_u64()))
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        vec![
            ("x/a.txt".into(), "put".into(), None),
            ("x/sub/big.bin".into(), "multipart".into(), Some(3)),
            ("x/sub/c.txt".into(), "put".into(), None)
        ]
    );
    let s = lines.last().unwrap();
    assert_eq!((s["dry_run"].as_bool(), s["objects"].as_u64()), (Some(true), Some(3)));
    assert_eq!(s["part_sizes"][0]["part_size"].as_u64(), Some(1 << 20));
    assert_eq!(listed(&store, "sel", "").await, 0, "a dry run moves nothing");
    let jobs = run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"]));
    assert!(jobs.stdout.is_empty(), "and records no job");

    let out = cp(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary(&out)["objects_transferred"].as_u64(), Some(3));
    assert_eq!(listed(&store, "sel", "x/").await, 3, "the excluded file stayed home");

    // Same size, other bytes (a.txt); another size (c.txt); unchanged (big.bin).
    std::fs::write(src.join("a.txt"), b"AAAA").unwrap();
    std::fs::write(src.join("sub/c.txt"), b"ccc").unwrap();
    let out = cp(&["--update"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    let skipped: Vec<&str> =
        lines.iter().filter(|l| l["skipped"].is_string()).map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(skipped, vec!["x/sub/big.bin"]);
    let s = summary(&out);
    assert_eq!((s["objects_transferred"].as_u64(), s["objects_skipped"].as_u64()), (Some(2), Some(1)));
    let a = store.get_object(&ObjectRef::new("sel", "x/a.txt"), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(a.as_ref(), b"AAAA");

    // --no-clobber leaves an existing destination alone, whatever it holds.
    std::fs::write(src.join("a.txt"), b"new content").unwrap();
    let out = cp(&["--no-clobber"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!((s["objects_transferred"].as_u64(), s["objects_skipped"].as_u64()), (Some(0), Some(3)));
    let a = store.get_object(&ObjectRef::new("sel", "x/a.txt"), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(a.as_ref(), b"AAAA");

    // Server-side: a prefix copy's plan, with --include.
    let out = run(transfer(&served.endpoint, &ledger).args([
        "cp",
        "-r",
        "--json",
        "--dry-run",
        "--copy-threshold",
        "1MiB",
        "--include",
        "**/*.bin",
        "oss://sel/x/",
        "oss://sel/y/",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        (lines[0]["key"].as_str(), lines[0]["action"].as_str()),
        (Some("y/sub/big.bin"), Some("multipart_copy"))
    );

    let bad =
        run(transfer(&served.endpoint, &ledger).args(["cp", "-r", "--exclude", "a[", "oss://sel/x/", "oss://sel/z/"]));
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("a["), "{}", stderr(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_counts_retried_requests() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "retry").await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let file = tmp.path().join("f.bin");
    std::fs::write(&file, data(10_000, 1)).unwrap();
    let flaky = FaultProxy::start(
        &served.endpoint,
        vec![Rule { method: Some("PUT"), contains: "f.bin", fault: Fault::Status(503, "SlowDown"), times: 2 }],
    )
    .await;
    let out = run(transfer(&flaky.endpoint, &ledger).args(["cp", "--json"]).arg(&file).arg("oss://retry/f.bin"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!((s["requests_retried"].as_u64(), s["objects_transferred"].as_u64()), (Some(2), Some(1)));
    let got = store.get_object(&ObjectRef::new("retry", "f.bin"), None).await.unwrap().bytes().await.unwrap();
    assert!(got.as_ref() == data(10_000, 1).as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cp_option_reaches_the_objects() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "opts").await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("explicit-ledger.db");
    let file = tmp.path().join("f.bin");
    let bytes = data(2 * 1024 * 1024 + 7, 3);
    std::fs::write(&file, &bytes).unwrap();
    // Seen on the wire, with each part held long enough that the parts in flight overlap.
    let slow = Rule {
        method: Some("PUT"),
        contains: "partNumber=",
        fault: Fault::Delay(Duration::from_millis(60)),
        times: 100,
    };
    let wire = FaultProxy::start(&served.endpoint, vec![slow]).await;
    // Upload: V1 signature, tags on complete, metadata and standard headers, a small multipart plan, an
    // explicit ledger path, bounded requests and memory, debug logs.
    let out = run(transfer(&wire.endpoint, tmp.path().join("unused.db").as_path())
        .args(["cp", "-v", "--json", "--signature-version", "v1", "--tag-on", "complete", "--tag", "t=1"])
        .args(["--meta", "owner=ops", "--content-type", "application/x-test", "--cache-control", "no-cache"])
        .args(["--storage-class", "IA", "--multipart-threshold", "1MiB", "--part-size", "512KiB", "--jobs", "3"])
        .args(["--memory-limit", "2MiB", "--checkpoint"])
        .arg(&ledger)
        .arg(&file)
        .arg("oss://opts/f.bin"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let done = json_lines(&out).into_iter().find(|l| l["event"] == "done").unwrap();
    assert_eq!(done["parts_sent"].as_u64(), Some(5), "2 MiB + 7 bytes in 512 KiB parts: {done}");
    assert_eq!(done["blake3"].as_str(), Some(blake3::hash(&bytes).to_hex().as_str()));
    assert!(stderr(&out).contains("debug: request"), "-v shows debug lines: {}", stderr(&out));
    assert!(ledger.exists() && !tmp.path().join("unused.db").exists(), "--checkpoint names the ledger");
    let obj = ObjectRef::new("opts", "f.bin");
    let head = store.head_object(&obj).await.unwrap();
    assert_eq!(head.metadata.user.get("owner").map(String::as_str), Some("ops"));
    assert_eq!(head.metadata.content_type.as_deref(), Some("application/x-test"));
    assert_eq!(head.metadata.cache_control.as_deref(), Some("no-cache"));
    assert_eq!(head.metadata.storage_class, Some(transfer_engine::StorageClass::InfrequentAccess));
    assert_eq!(store.get_tagging(&obj).await.unwrap(), TagSet::from_pairs([("t", "1")]).unwrap());
    assert!(store.get_object(&obj, None).await.unwrap().bytes().await.unwrap().as_ref() == bytes.as_slice());
    // What the options did on the wire: every request signed with V1; no tags on the initiate and a
    // PutObjectTagging after the Complete (--tag-on complete); at most 3 parts at once, and more than one
    // (--jobs 3).
    let seen = wire.seen();
    assert!(seen.iter().all(|s| s.auth_scheme.as_deref() == Some("OSS")), "V1 everywhere: {seen:?}");
    let initiate = seen.iter().find(|s| s.method == "POST" && s.target.contains("?uploads")).unwrap();
    assert!(!initiate.has("x-oss-tagging"), "tags on complete are not sent at initiate: {initiate:?}");
    let complete = seen.iter().position(|s| s.method == "POST" && s.target.contains("uploadId=")).unwrap();
    let tagging = seen.iter().position(|s| s.method == "PUT" && s.target.contains("?tagging")).unwrap();
    assert!(tagging > complete, "PutObjectTagging after Complete");
    let parts: Vec<_> = seen.iter().filter(|s| s.target.contains("partNumber=")).collect();
    let most = parts.iter().map(|p| parts.iter().filter(|q| q.in_flight_at(p.came)).count()).max().unwrap();
    assert!((2..=3).contains(&most), "{most} parts at once with --jobs 3");

    // Copies: the default keeps metadata and tags; REPLACE puts the given ones, on the multipart path too.
    let copy = |extra: &[&str], dst: &str| {
        let mut c = transfer(&served.endpoint, &ledger);
        c.args(["cp", "--copy-threshold", "1MiB", "--part-size", "1MiB"]).args(extra).args(["oss://opts/f.bin", dst]);
        run(&mut c)
    };
    let out = copy(&[], "oss://opts/kept.bin");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let kept = ObjectRef::new("opts", "kept.bin");
    assert_eq!(store.head_object(&kept).await.unwrap().metadata.user, head.metadata.user);
    assert_eq!(store.get_tagging(&kept).await.unwrap(), TagSet::from_pairs([("t", "1")]).unwrap());
    let out = copy(
        &["--metadata-directive", "replace", "--meta", "owner=new", "--tagging-directive", "replace", "--tag", "t=2"],
        "oss://opts/replaced.bin",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let replaced = ObjectRef::new("opts", "replaced.bin");
    assert_eq!(store.head_object(&replaced).await.unwrap().metadata.user.get("owner").map(String::as_str), Some("new"));
    assert_eq!(store.get_tagging(&replaced).await.unwrap(), TagSet::from_pairs([("t", "2")]).unwrap());
    let refused = copy(&["--tag", "t=3"], "oss://opts/x.bin");
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--tagging-directive replace"), "{}", stderr(&refused));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_nothing_of_which_arrives_exits_1_naming_key_code_and_request_id() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "denied").await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    std::fs::write(src.join("b"), b"b").unwrap();
    let deny = FaultProxy::start(
        &served.endpoint,
        vec![Rule { method: Some("PUT"), contains: "/denied/", fault: Fault::Status(403, "AccessDenied"), times: 100 }],
    )
    .await;
    let out = run(transfer(&deny.endpoint, &ledger).args(["cp", "-r", "--json"]).arg(&src).arg("oss://denied/d/"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!((s["state"].as_str(), s["objects_failed"].as_u64()), (Some("failed"), Some(2)));
    // Each failure is an event with the error's kind, as an embedder matches it, and the server's code.
    let failed: Vec<_> = json_lines(&out).into_iter().filter(|v| v["event"] == "failed").collect();
    assert_eq!(failed.len(), 2, "{}", String::from_utf8_lossy(&out.stdout));
    for f in &failed {
        assert_eq!((f["kind"].as_str(), f["code"].as_str()), (Some("access_denied"), Some("AccessDenied")), "{f}");
    }
    let err = stderr(&out);
    assert!(err.contains("d/a") && err.contains("AccessDenied") && err.contains("transfer resume"), "{err}");
    assert!(err.contains("request id FAULT"), "the server's request id is named: {err}");
    assert!(err.contains("--profile"), "and what to change: {err}");
    assert_eq!(listed(&store, "denied", "").await, 0);
    let id = s["job"].as_i64().unwrap().to_string();
    let shown = run(transfer(&served.endpoint, &ledger).args(["jobs", "show", &id]));
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("2 failed") && text.contains("d/a") && text.contains("AccessDenied"),
        "jobs show lists the failures: {text}"
    );
}

#[tokio::test]
async fn a_dry_run_plan_is_complete_however_slowly_it_is_read() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "many").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..1500 {
        std::fs::write(src.join(format!("file-{i:04}")), b"x").unwrap();
    }
    // The reader sleeps before it reads: the pipe fills, printing blocks, and the job must wait for it rather
    // than drop events (the plan is all events).
    let cmd = format!(
        "{} cp -r --dry-run --json {} oss://many/p/ | (sleep 1; cat)",
        env!("CARGO_BIN_EXE_transfer"),
        src.display()
    );
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = transfer(&served.endpoint, &tmp.path().join("l.db"))
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
        .collect();
    let out = run(Command::new("sh").args(["-c", &cmd]).envs(envs));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.iter().filter(|l| l["event"] == "planned").count(), 1500);
    assert_eq!(lines.last().unwrap()["objects"].as_u64(), Some(1500));
}

#[tokio::test]
async fn an_empty_source_or_a_prefix_without_r_is_refused_and_leaves_no_job() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "src-checks").await;
    store.put_object("src-checks", "2026/a.txt", b"a".to_vec().into(), &PutOptions::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    let only_logs = tmp.path().join("logs");
    std::fs::create_dir_all(&only_logs).unwrap();
    std::fs::write(only_logs.join("a.log"), b"x").unwrap();

    let out = run(transfer(&served.endpoint, &ledger).args(["cp", "oss://src-checks/2026", "oss://src-checks/x/"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("add -r"), "{}", stderr(&out));
    let out = run(transfer(&served.endpoint, &ledger).args(["cp", "-r"]).arg(&empty).arg("oss://src-checks/e/"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--allow-empty"), "{}", stderr(&out));
    let out = run(transfer(&served.endpoint, &ledger)
        .args(["cp", "-r", "--include", "*.jpg"])
        .arg(&only_logs)
        .arg("oss://src-checks/e/"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--include/--exclude"), "names the filters: {}", stderr(&out));
    let out = run(transfer(&served.endpoint, &ledger)
        .args(["cp", "-r", "--allow-empty"])
        .arg(&empty)
        .arg("oss://src-checks/e/"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let jobs = run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"]));
    assert!(String::from_utf8_lossy(&jobs.stdout).trim().is_empty(), "no job was left behind");
    assert_eq!(listed(&store, "src-checks", "e/").await, 0);
}

#[tokio::test]
async fn a_finished_jobs_command_run_again_says_it_is_a_new_run() {
    let served = Served::start();
    bucket(&served.client(V4), "again").await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    let cp = |extra: &[&str]| {
        run(transfer(&served.endpoint, &ledger).args(["cp", "-r"]).args(extra).arg(&src).arg("oss://again/p/"))
    };
    let first = cp(&[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(!stderr(&first).contains("did this"), "{}", stderr(&first));
    let again = cp(&[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("job 1 did this and finished at") && stderr(&again).contains("add --update"),
        "{}",
        stderr(&again)
    );
    let update = cp(&["--update"]);
    assert!(
        stderr(&update).contains("job 2 did this") && !stderr(&update).contains("add --update"),
        "{}",
        stderr(&update)
    );
}

#[tokio::test]
async fn a_part_size_out_of_range_is_refused_with_the_range() {
    let served = Served::start();
    bucket(&served.client(V4), "parts").await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let file = tmp.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    for (args, says) in [
        (&["--part-size", "1KiB"][..], "takes parts of 100.00 KiB to 5.00 GiB"),
        (&["--part-size", "8GiB"][..], "takes parts of 100.00 KiB to 5.00 GiB"),
    ] {
        let out = run(transfer(&served.endpoint, &ledger).arg("cp").args(args).arg(&file).arg("oss://parts/f"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    // In range, it is taken as given; one that the memory limit cannot hold jobs times is adjusted, and said so.
    let out =
        run(transfer(&served.endpoint, &ledger).args(["cp", "--part-size", "16MiB"]).arg(&file).arg("oss://parts/f"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("--memory-limit"), "{}", stderr(&out));
    let out = run(transfer(&served.endpoint, &ledger)
        .args(["cp", "--part-size", "64MiB", "--jobs", "8"])
        .arg(&file)
        .arg("oss://parts/g"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("parts of 32.00 MiB instead; raise --memory-limit"), "{}", stderr(&out));
}

#[test]
fn address_typos_get_the_message_that_fixes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let file = tmp.path().join("cat.jpg");
    std::fs::write(&file, b"x").unwrap();
    let cases: [(&[&str], &str, &str); 4] = [
        (&["cp", file.to_str().unwrap(), "oss:/archive/x"], "http://127.0.0.1:9", "write oss://archive/x"),
        (&["cp", "archive/x/cat.jpg", "oss://archive/x/"], "http://127.0.0.1:9", "archive/x/cat.jpg does not exist"),
        (&["cp", file.to_str().unwrap(), "oss://archive/x"], "127.0.0.1:9000", "write http://127.0.0.1:9000"),
        (&["cp", file.to_str().unwrap(), "copy.jpg"], "http://127.0.0.1:9", "are local paths; one side must be"),
    ];
    for (args, endpoint, says) in cases {
        let out = run(transfer(endpoint, &ledger).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

#[tokio::test]
async fn output_into_a_closed_pipe_stops_quietly_with_141() {
    let served = Served::start();
    bucket(&served.client(V4), "piped").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..1500 {
        std::fs::write(src.join(format!("file-{i:04}")), b"x").unwrap();
    }
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = transfer(&served.endpoint, &tmp.path().join("l.db"))
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
        .collect();
    // The reader takes one line and goes; the plan (and `jobs`, `stat`, ...) must not panic on what follows.
    for args in ["cp -r --dry-run", "cp -r --dry-run --json"] {
        let cmd = format!(
            "{} {args} {} oss://piped/p/ | head -1; echo \"status=${{PIPESTATUS[0]}}\" >&2",
            env!("CARGO_BIN_EXE_transfer"),
            src.display()
        );
        let out = run(Command::new("bash").args(["-c", &cmd]).envs(envs.clone()).env("RUST_BACKTRACE", "1"));
        let err = stderr(&out);
        assert!(err.contains("status=141"), "{args}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args}: {err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1, "{args}");
    }
}

#[tokio::test]
async fn a_recursive_copy_of_a_prefix_without_a_slash_means_that_directory() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "pfx").await;
    for key in ["photos/a.jpg", "photos/sub/b.jpg", "photos2/c.jpg"] {
        store.put_object("pfx", key, b"x".to_vec().into(), &PutOptions::default()).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = run(transfer(&served.endpoint, &tmp.path().join("l.db")).args([
        "cp",
        "-r",
        "--json",
        "oss://pfx/photos",
        "oss://pfx/dst",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut keys: Vec<String> = json_lines(&out)
        .iter()
        .filter(|l| l["event"] == "done")
        .map(|l| l["key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["dst/a.jpg", "dst/sub/b.jpg"]);
    assert_eq!(summary(&out)["objects_transferred"].as_u64(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_from_a_store_without_tagging_keeps_no_tags_and_does_not_retry() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "notag").await;
    let opts = PutOptions::default().tags(Some(TagSet::from_pairs([("k", "v")]).unwrap()));
    store.put_object("notag", "src", b"bytes".to_vec().into(), &opts).await.unwrap();
    // A server that answers GetObjectTagging with 501 NotImplemented, as Garage does.
    let proxy = FaultProxy::start(
        &served.endpoint,
        vec![Rule {
            method: Some("GET"),
            contains: "tagging",
            fault: Fault::Status(501, "NotImplemented"),
            times: 100,
        }],
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let out = run(transfer(&proxy.endpoint, &tmp.path().join("l.db")).args([
        "cp",
        "--json",
        "oss://notag/src",
        "oss://notag/dst",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!((s["objects_transferred"].as_u64(), s["requests_retried"].as_u64()), (Some(1), Some(0)), "{s}");
    let got = store.get_object(&ObjectRef::new("notag", "dst"), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"bytes");
}

#[test]
fn help_reads_well() {
    let help = |args: &[&str]| {
        let tmp = Path::new("/nonexistent-ledger.db");
        // Secrets and endpoints set in the environment stay out of the help.
        let out = run(transfer("http://secret-endpoint.invalid:1", tmp)
            .env("TRANSFER_REGION", "secret-region-1")
            .args(args)
            .arg("--help"));
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!text.contains("secret-endpoint") && !text.contains("secret-region"), "env values shown: {text}");
        text
    };
    let top = help(&[]);
    assert!(top.contains("Global options:") && top.contains("--json"), "{top}");
    assert!(top.contains("both dialects, OSS and S3"), "serve says what it serves: {top}");
    let show = help(&["jobs", "show"]);
    assert_eq!(show.matches("[default: 50]").count(), 1, "{show}");
    // --checksum is cp's: the commands that send no bodies do not offer it.
    assert!(help(&["cp"]).contains("--checksum"));
    for cmd in [&["stat"][..], &["cleanup"], &["tag", "get"], &["jobs", "forget"]] {
        let text = help(cmd);
        assert!(!text.contains("--checksum"), "{cmd:?}: {text}");
        assert!(text.contains("Global options:"), "{cmd:?}: {text}");
    }
    let forget = help(&["jobs", "forget"]);
    assert!(forget.contains("--finished") && forget.contains("--older-than"), "{forget}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_cannot_be_listed_is_on_the_jobs_record() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "unl").await;
    for k in ["src/a", "src/b"] {
        store.put_object("unl", k, Body::from(data(10, 1)), &PutOptions::default()).await.unwrap();
    }
    // The checks before the job (a listing of one key) pass; the job's own listing is refused.
    let refused = FaultProxy::start(
        &served.endpoint,
        vec![Rule {
            method: Some("GET"),
            contains: "prefix=src%2F&max-keys=1000",
            fault: Fault::Status(403, "AccessDenied"),
            times: 100,
        }],
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let out = run(transfer(&refused.endpoint, &ledger).args(["cp", "-r", "oss://unl/src/", "oss://unl/dst/"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(refused.injected() >= 1);
    let jobs = json_lines(&run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"])));
    assert_eq!((jobs[0]["state"].as_str(), jobs[0]["objects"]["failed"].as_u64()), (Some("failed"), Some(0)));
    let error = jobs[0]["error"].as_str().unwrap_or_else(|| panic!("the listing's failure is recorded: {}", jobs[0]));
    assert!(error.contains("AccessDenied"), "{error}");
    assert_eq!(jobs[0]["listing_finished"], false, "{}", jobs[0]);
    let listed = run(transfer(&served.endpoint, &ledger).arg("jobs"));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("job 1: ") && text.contains("AccessDenied"), "{text}");
    assert!(text.contains(" 0/0+ ") && text.contains("listed whole"), "counts of what was found, marked: {text}");
    // A job whose listing went through says so.
    let out = run(transfer(&served.endpoint, &ledger).args(["cp", "-r", "oss://unl/src/", "oss://unl/dst/"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let jobs = json_lines(&run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"])));
    let last = jobs.last().unwrap();
    assert_eq!((last["listing_finished"].as_bool(), last["error"].is_null()), (Some(true), true), "{last}");
}

/// Runs `transfer <args>` through `proxy` and kills it (SIGKILL) once the proxy has seen a request `ready` says
/// is the moment.
async fn killed_when(
    proxy: &FaultProxy,
    ledger: &Path,
    args: &[&str],
    ready: impl Fn(&crate::util::fault::Seen) -> bool,
) {
    let mut child =
        transfer(&proxy.endpoint, ledger).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = std::time::Instant::now();
    while !proxy.seen().iter().any(&ready) {
        assert!(child.try_wait().unwrap().is_none(), "it ended before the moment to kill it");
        assert!(started.elapsed() < Duration::from_secs(60), "the moment to kill it never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Real crashes in the two windows after an object's bytes are in place: between Complete and PutObjectTagging
/// (`--tag-on complete`), and between Complete and its ledger record. Each rerun finishes the object with no
/// part sent again, counted at a proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_complete_costs_the_rerun_no_bytes() {
    let Setup { served, store, tmp: _tmp, ledger, file, bytes } = setup("afterc", 12).await;
    let parts_sent =
        |p: &FaultProxy| p.seen().iter().filter(|s| s.method == "PUT" && s.target.contains("partNumber=")).count();
    let read = |key: &'static str| {
        let store = store.clone();
        async move { store.get_object(&ObjectRef::new("afterc", key), None).await.unwrap().bytes().await.unwrap() }
    };
    let cp = |key: &'static str| -> Vec<String> {
        ["cp", "--part-size", "1MiB", "--multipart-threshold", "1MiB", "--tag-on", "complete", "--tag", "k=v"]
            .iter()
            .map(|s| s.to_string())
            .chain([file.display().to_string(), format!("oss://afterc/{key}")])
            .collect()
    };

    // Killed while PutObjectTagging is held: the object is in place, untagged.
    let hold =
        Rule { method: Some("PUT"), contains: "?tagging", fault: Fault::Delay(Duration::from_secs(60)), times: 1 };
    let proxy = FaultProxy::start(&served.endpoint, vec![hold]).await;
    let args = cp("tagged-later");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    killed_when(&proxy, &ledger, &args, |s| s.method == "PUT" && s.target.contains("?tagging")).await;
    assert!(read("tagged-later").await == bytes);
    assert!(
        store.get_tagging(&ObjectRef::new("afterc", "tagged-later")).await.unwrap().is_empty(),
        "killed before tagging"
    );
    let rerun = FaultProxy::start(&served.endpoint, vec![]).await;
    let out = run(transfer(&rerun.endpoint, &ledger).args(&args));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(parts_sent(&rerun), 0, "the rerun only tags");
    assert_eq!(
        store.get_tagging(&ObjectRef::new("afterc", "tagged-later")).await.unwrap(),
        TagSet::from_pairs([("k", "v")]).unwrap()
    );

    // Killed after the server completed the upload, before the answer came back (so before the ledger knew).
    let hold = Rule {
        method: Some("POST"),
        contains: "uploadId=",
        fault: Fault::HoldAnswer(Duration::from_secs(60)),
        times: 1,
    };
    let proxy = FaultProxy::start(&served.endpoint, vec![hold]).await;
    let args = cp("completed");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    killed_when(&proxy, &ledger, &args, |s| {
        s.method == "POST" && s.target.contains("uploadId=") && s.upstream == Some(200)
    })
    .await;
    assert!(read("completed").await == bytes, "the server completed it");
    let rerun = FaultProxy::start(&served.endpoint, vec![]).await;
    let out = run(transfer(&rerun.endpoint, &ledger).args(&args));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(parts_sent(&rerun), 0, "the object in place is the upload's: nothing is sent again");
    assert!(read("completed").await == bytes);
    assert_eq!(
        store.get_tagging(&ObjectRef::new("afterc", "completed")).await.unwrap(),
        TagSet::from_pairs([("k", "v")]).unwrap()
    );
    assert!(uploads(&store, "afterc").await.is_empty());
}

/// `--checkpoint` names the ledger for every command (`cp`, `jobs`, `jobs show`, `cleanup`, `resume`), over
/// `$TRANSFER_LEDGER`; `jobs show --limit` bounds the objects listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_uses_the_ledger_checkpoint_names() {
    let Setup { served, store, tmp, ledger: decoy, file, bytes } = setup("named", 13).await;
    let real = tmp.path().join("named.db");
    let dir = tmp.path().join("dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(&file, dir.join("big.bin")).unwrap();
    for i in 0..3 {
        std::fs::write(dir.join(format!("small-{i}")), format!("{i}")).unwrap();
    }
    let slow = Rule {
        method: Some("PUT"),
        contains: "uploadId=",
        fault: Fault::Delay(Duration::from_millis(200)),
        times: 1000,
    };
    let proxy = FaultProxy::start(&served.endpoint, vec![slow]).await;
    let real_s = real.display().to_string();
    let dir_s = dir.display().to_string();
    let cp = [
        "cp",
        "-r",
        "--part-size",
        "128KiB",
        "--multipart-threshold",
        "1MiB",
        "--jobs",
        "2",
        "--checkpoint",
        &real_s,
        &dir_s,
        "oss://named/d/",
    ];
    killed_when(&proxy, &decoy, &cp, |s| s.target.contains("partNumber=") && s.upstream == Some(200)).await;
    let cmd = |args: &[&str]| run(transfer(&served.endpoint, &decoy).args(args));

    let listed = json_lines(&cmd(&["jobs", "--json", "--checkpoint", &real_s]));
    assert_eq!(listed.len(), 1, "{listed:?}");
    let job = listed[0]["job"].as_i64().unwrap().to_string();
    assert!(cmd(&["jobs", "--json"]).stdout.is_empty(), "the ledger of $TRANSFER_LEDGER holds nothing");
    let shown = cmd(&["jobs", "show", &job, "--json", "--limit", "1", "--checkpoint", &real_s]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["objects_shown"].as_array().map(Vec::len), Some(1), "{shown}");
    assert!(shown["objects"]["total"].as_u64().unwrap() > 1, "more objects than shown: {shown}");
    let dry = json_lines(&cmd(&["cleanup", "--dry-run", "--json", "--include-resumable", "--checkpoint", &real_s]));
    assert_eq!(dry.iter().filter(|l| l["event"] == "would_abort").count(), 1, "{dry:?}");
    let out = cmd(&["resume", "--json", "--checkpoint", &real_s, &job]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = store.get_object(&ObjectRef::new("named", "d/big.bin"), None).await.unwrap().bytes().await.unwrap();
    assert!(got == bytes);
    assert!(uploads(&store, "named").await.is_empty());
}
