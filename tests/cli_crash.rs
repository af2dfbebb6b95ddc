//! Real crashes in the narrow windows after an upload completes, through the binary against `transfer serve`:
//! the process is SIGKILLed while a proxy holds its request, so what the server has and what the ledger says
//! differ exactly as after a crash there. The rerun must finish the job without sending the object's bytes again.

use crate::cli::transfer;
use crate::util::fault::{Fault, FaultProxy, Rule, Seen};
use crate::util::{data, Served};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::{BucketStore, ErrorKind, ObjectRef, ObjectStore, TagSet};

/// 12 MiB in 4 MiB parts, tagged after Complete.
fn upload(endpoint: &str, ledger: &Path, file: &Path, key: &str) -> std::process::Command {
    let mut c = transfer(endpoint, ledger);
    c.args([
        "cp",
        "--part-size",
        "4MiB",
        "--multipart-threshold",
        "4MiB",
        "--tag-on",
        "complete",
        "--tag",
        "tier=gold",
    ])
    .arg(file)
    .arg(format!("oss://crash/{key}"));
    c
}

/// Waits (at most a minute, then fails) until the proxy has a request `matches` picks still unanswered, then
/// kills `child` with SIGKILL.
async fn kill_while_held(proxy: &FaultProxy, child: &mut Child, matches: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy.seen().iter().any(|s| matches(s) && s.answered.is_none()) {
        assert!(child.try_wait().unwrap().is_none(), "the upload ended before the window");
        assert!(Instant::now() < deadline, "the held request never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// What a rerun sent of the object's bytes: parts and whole-object PUTs.
fn bytes_requests(seen: &[Seen]) -> usize {
    seen.iter().filter(|s| s.method == "PUT" && !s.target.contains("tagging")).count()
}

/// Killed after Complete, while PutObjectTagging is on its way (`--tag-on complete`): the object is there and
/// untagged. The rerun applies the tags with one request and sends no byte of the object again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_complete_and_tagging_is_repaired_without_resending() {
    let served = Served::start();
    let store = served.client(V4);
    store.create_bucket("crash").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (file, ledger) = (tmp.path().join("f.bin"), tmp.path().join("l.db"));
    let body = data(12 << 20, 3);
    std::fs::write(&file, &body).unwrap();
    let held =
        Rule { method: Some("PUT"), contains: "tagging", fault: Fault::Delay(Duration::from_secs(60)), times: 1 };
    let proxy = FaultProxy::start(&served.endpoint, vec![held]).await;
    let mut child =
        upload(&proxy.endpoint, &ledger, &file, "tagged").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    kill_while_held(&proxy, &mut child, |s| s.method == "PUT" && s.target.contains("tagging")).await;
    let obj = ObjectRef::new("crash", "tagged");
    assert!(store.get_object(&obj, None).await.unwrap().bytes().await.unwrap() == body, "Complete went through");
    assert!(store.get_tagging(&obj).await.unwrap().is_empty(), "the tags never arrived");

    let again = FaultProxy::start(&served.endpoint, vec![]).await;
    let out = crate::cli::run(&mut upload(&again.endpoint, &ledger, &file, "tagged"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = again.seen();
    assert_eq!(bytes_requests(&seen), 0, "no byte sent again: {seen:?}");
    assert_eq!(seen.iter().filter(|s| s.method == "PUT" && s.target.contains("tagging")).count(), 1);
    assert_eq!(store.get_tagging(&obj).await.unwrap(), TagSet::from_pairs([("tier", "gold")]).unwrap());
}

/// Killed after the server completed the upload but before the answer came back (so before the ledger could
/// record it): the rerun finds the object the ledger's upload became (its parts, its CRC-64), sends no byte
/// again, and applies the tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_complete_and_its_record_sends_nothing_again() {
    let served = Served::start();
    let store = served.client(V4);
    store.create_bucket("crash").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (file, ledger) = (tmp.path().join("f.bin"), tmp.path().join("l.db"));
    let body = data(12 << 20, 4);
    std::fs::write(&file, &body).unwrap();
    let held = Rule {
        method: Some("POST"),
        contains: "uploadId=",
        fault: Fault::HoldAnswer(Duration::from_secs(60)),
        times: 1,
    };
    let proxy = FaultProxy::start(&served.endpoint, vec![held]).await;
    let mut child = upload(&proxy.endpoint, &ledger, &file, "completed")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the server answered Complete (the proxy holds that answer): killed earlier, while the request was
    // still on its way, the proxy could drop it with the client's connection and the server never complete.
    let completed = |s: &Seen| s.method == "POST" && s.target.contains("uploadId=") && s.upstream.is_some();
    kill_while_held(&proxy, &mut child, completed).await;
    let obj = ObjectRef::new("crash", "completed");
    // The server completed it (the proxy forwarded the request and held only the answer).
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.head_object(&obj).await {
        assert_eq!(e.kind(), ErrorKind::ObjectNotFound, "{e}");
        assert!(Instant::now() < deadline, "the server never completed the upload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let again = FaultProxy::start(&served.endpoint, vec![]).await;
    let out = crate::cli::run(&mut upload(&again.endpoint, &ledger, &file, "completed"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = again.seen();
    assert_eq!(bytes_requests(&seen), 0, "no byte sent again: {seen:?}");
    assert!(!seen.iter().any(|s| s.method == "POST"), "no upload initiated or completed again: {seen:?}");
    assert!(store.get_object(&obj, None).await.unwrap().bytes().await.unwrap() == body);
    assert_eq!(store.get_tagging(&obj).await.unwrap(), TagSet::from_pairs([("tier", "gold")]).unwrap());
}
