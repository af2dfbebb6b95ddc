//! Jobs that share the network, through the built binary against `transfer serve` behind a recording proxy: a
//! throttling answer slows every request of the endpoint together and the pace recovers; `--tpslimit` caps the
//! requests started per second. What is asserted is what the proxy saw.

use crate::cli::{summary, transfer};
use crate::util::fault::{Fault, FaultProxy, Rule, Seen};
use crate::util::{data, Served};
use std::path::Path;
use std::time::Duration;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::{BucketStore, ObjectRef, ObjectStore};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn files(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("f{i:03}")), data(16 * 1024, i as u64)).unwrap();
    }
}

/// The PUTs the proxy saw, in the order they came, each with how many PUTs were in flight when it came (itself
/// included).
fn arrivals(seen: &[Seen]) -> Vec<(&Seen, usize)> {
    let puts: Vec<&Seen> = seen.iter().filter(|s| s.method == "PUT").collect();
    puts.iter().map(|p| (*p, puts.iter().filter(|q| q.in_flight_at(p.came)).count())).collect()
}

/// 160 files, 8 requests in flight, every PUT held 50 ms at the proxy; after the first 24, eight in a row are
/// answered 503 SlowDown. The endpoint's requests slow down together: the ten PUTs that come after the refusals
/// find at most half as many in flight as before, and later ones find 8 again (the pace recovered). The summary
/// counts the eight refusals and the time the endpoint ran slowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_endpoint_slows_down_together_and_recovers() {
    let served = Served::start();
    served.client(V4).create_bucket("paced").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    files(&src, 160);
    let held =
        |times| Rule { method: Some("PUT"), contains: "", fault: Fault::Delay(Duration::from_millis(50)), times };
    let refused = Rule { method: Some("PUT"), contains: "", fault: Fault::Status(503, "SlowDown"), times: 8 };
    let proxy = FaultProxy::start(&served.endpoint, vec![held(24), refused, held(10_000)]).await;
    let out = crate::cli::run(transfer(&proxy.endpoint, &tmp.path().join("l.db")).args([
        "--json",
        "cp",
        "-r",
        "--jobs",
        "8",
        src.to_str().unwrap(),
        "oss://paced/p/",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!((s["objects_transferred"].as_u64(), s["requests_throttled"].as_u64()), (Some(160), Some(8)), "{s}");
    assert!(s["slowed_seconds"].as_f64().unwrap() > 0.0, "{s}");

    let seen = proxy.seen();
    let puts = arrivals(&seen);
    assert_eq!(puts.len(), 168, "160 files and the 8 refused PUTs sent again");
    let before = puts[..24].iter().map(|(_, n)| *n).max().unwrap();
    assert_eq!(before, 8, "8 in flight before the refusals");
    // The refusals: the 25th to the 32nd PUT to come. The last of them answered is when every worker knows.
    let last_refusal = puts[24..32].iter().filter_map(|(p, _)| p.answered).max().unwrap();
    let after: Vec<usize> = puts.iter().filter(|(p, _)| p.came > last_refusal).map(|(_, n)| *n).collect();
    assert!(after.len() > 100, "{}", after.len());
    assert!(after[..10].iter().all(|n| *n <= 4), "in flight after the refusals: {:?}", &after[..10]);
    assert!(after.iter().rev().take(40).any(|n| *n == 8), "the pace recovered: {after:?}");
    let store = served.client(V4);
    let one = store.get_object(&ObjectRef::new("paced", "p/f159"), None).await.unwrap().bytes().await.unwrap();
    assert!(one == data(16 * 1024, 159), "the files arrived");
}

/// `--tpslimit 10`: 31 requests (a bucket check and 30 PUTs) start at most ten a second, so the last starts at
/// least three seconds after the first (a lower bound: a slow machine only makes it longer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpslimit_caps_the_requests_started_per_second() {
    let served = Served::start();
    served.client(V4).create_bucket("tps").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    files(&src, 30);
    let proxy = FaultProxy::start(&served.endpoint, vec![]).await;
    let out = crate::cli::run(transfer(&proxy.endpoint, &tmp.path().join("l.db")).args([
        "--json",
        "cp",
        "-r",
        "--tpslimit",
        "10",
        src.to_str().unwrap(),
        "oss://tps/p/",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = proxy.seen();
    let puts: Vec<&Seen> = seen.iter().filter(|s| s.method == "PUT").collect();
    assert_eq!(puts.len(), 30);
    let came: Vec<_> = seen.iter().map(|s| s.came).collect();
    let (first, last) = (came.iter().min().unwrap(), came.iter().max().unwrap());
    assert!(last.duration_since(*first) >= Duration::from_millis(2900), "{:?}", last.duration_since(*first));
    // Any eleven consecutive starts span a second at least.
    let mut sorted = came.clone();
    sorted.sort();
    for w in sorted.windows(11) {
        assert!(w[10].duration_since(w[0]) >= Duration::from_millis(950), "{:?}", w[10].duration_since(w[0]));
    }
    let bad = crate::cli::run(transfer(&proxy.endpoint, &tmp.path().join("l.db")).args([
        "cp",
        "--tpslimit",
        "0",
        src.to_str().unwrap(),
        "oss://tps/q/",
    ]));
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("requests per second"), "{}", stderr(&bad));
}

/// `--traffic-limit 256KiB/s` on oss://: the requests that carry object data (the PutObject, the ranged GETs of
/// the download) send `x-oss-traffic-limit`, the listing and HEADs do not, and serve holds each request to the
/// rate, so a 600 KiB upload and its download each take two seconds at least (a lower bound). A rate outside
/// OSS's range and an s3:// destination are refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_limit_is_sent_with_data_requests_and_held_by_serve() {
    let served = Served::start();
    served.client(V4).create_bucket("traffic").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let file = tmp.path().join("f.bin");
    let body = data(600 * 1024, 7);
    std::fs::write(&file, &body).unwrap();
    let proxy = FaultProxy::start(&served.endpoint, vec![]).await;
    let limited = |args: &[&str]| {
        let mut c = transfer(&proxy.endpoint, &ledger);
        c.args(["cp", "--traffic-limit", "256KiB/s"]).args(args);
        c
    };
    let started = std::time::Instant::now();
    let up = crate::cli::run(&mut limited(&[file.to_str().unwrap(), "oss://traffic/f.bin"]));
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    let back = tmp.path().join("back.bin");
    let started = std::time::Instant::now();
    let down = crate::cli::run(&mut limited(&["oss://traffic/f.bin", back.to_str().unwrap()]));
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(std::fs::read(&back).unwrap() == body);

    let seen = proxy.seen();
    let object = |s: &&Seen| s.target.split('?').next().is_some_and(|p| p.ends_with("/f.bin"));
    let data_requests: Vec<&Seen> =
        seen.iter().filter(|s| (s.method == "PUT" || s.method == "GET") && object(s)).collect();
    assert!(data_requests.len() >= 2, "{data_requests:?}");
    assert!(data_requests.iter().all(|s| s.has("x-oss-traffic-limit")), "{data_requests:?}");
    let others: Vec<&Seen> = seen.iter().filter(|s| !(s.method == "PUT" || s.method == "GET") || !object(s)).collect();
    assert!(!others.is_empty() && others.iter().all(|s| !s.has("x-oss-traffic-limit")), "{others:?}");

    for (args, says) in [
        (&["cp", "--traffic-limit", "10KiB/s", "x", "oss://traffic/x"][..], "30KiB/s to 100MiB/s"),
        (&["cp", "--traffic-limit", "1MiB/s", "x", "s3://traffic/x"], "--bwlimit"),
    ] {
        std::fs::write(tmp.path().join("x"), b"x").unwrap();
        let mut c = transfer(&proxy.endpoint, &ledger);
        let out = crate::cli::run(c.current_dir(tmp.path()).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// Writes a credentials file the way a token renewer does: another file, renamed over it.
fn credentials_file(path: &Path, id: &str, secret: &str, expires_in: Duration) {
    let at = chrono::Utc::now() + chrono::Duration::from_std(expires_in).unwrap();
    let json = serde_json::json!({
        "AccessKeyId": id, "AccessKeySecret": secret, "SecurityToken": format!("token-{id}"),
        "Expiration": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, json.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Credentials rotated mid-job: serve takes its keys from a file it re-reads, and so does the client. Key A
/// expires four seconds in; half-way through a job that takes longer (every PUT held 150 ms), both files are
/// rewritten with key B. The job completes and the proxy saw no request refused: the client signed with B
/// before A expired (a request signed with A after that would be refused), and serve accepted A until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_rotated_mid_job_refuse_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (serve_keys, client_keys) = (tmp.path().join("serve.json"), tmp.path().join("client.json"));
    let a_lives = Duration::from_secs(4);
    credentials_file(&serve_keys, "KEY-A", "secret-a", a_lives);
    credentials_file(&client_keys, "KEY-A", "secret-a", a_lives);
    let served = Served::start_with(&["--credentials-file", serve_keys.to_str().unwrap()]);
    let admin = crate::util::client_for(
        &served.endpoint,
        V4,
        transfer_engine::sign::Credentials::new("KEY-A", "secret-a").with_security_token("token-KEY-A"),
    );
    admin.create_bucket("rotated").await.unwrap();
    let src = tmp.path().join("src");
    files(&src, 60);
    let held = Rule { method: Some("PUT"), contains: "", fault: Fault::Delay(Duration::from_millis(150)), times: 1000 };
    let proxy = FaultProxy::start(&served.endpoint, vec![held]).await;
    let mut child = transfer(&proxy.endpoint, &tmp.path().join("l.db"))
        .env_remove("OSS_ACCESS_KEY_ID")
        .env_remove("OSS_ACCESS_KEY_SECRET")
        .args(["--json", "cp", "-r", "--jobs", "2", "--credentials-file", client_keys.to_str().unwrap()])
        .args([src.to_str().unwrap(), "oss://rotated/p/"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while proxy.seen().iter().filter(|s| s.method == "PUT" && s.answered.is_some()).count() < 6 {
        assert!(child.try_wait().unwrap().is_none(), "the job ended before the rotation");
        assert!(std::time::Instant::now() < deadline, "no PUT within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    credentials_file(&serve_keys, "KEY-B", "secret-b", Duration::from_secs(3600));
    credentials_file(&client_keys, "KEY-B", "secret-b", Duration::from_secs(3600));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["objects_transferred"].as_u64(), Some(60), "{s}");
    let seen = proxy.seen();
    let refused: Vec<_> = seen.iter().filter(|r| r.upstream.is_some_and(|c| c >= 400)).collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let first_put = seen.iter().filter(|r| r.method == "PUT").map(|r| r.came).min().unwrap();
    let last_put = seen.iter().filter(|r| r.method == "PUT").map(|r| r.came).max().unwrap();
    assert!(last_put.duration_since(first_put) > a_lives, "the job outlived key A");
    // Key A is no longer accepted (once serve re-read its file, within a second or so); B is.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let a = loop {
        match admin.list_objects("rotated", &transfer_engine::store::ListRequest::default()).await {
            Err(e) => break e,
            Ok(_) => assert!(std::time::Instant::now() < deadline, "key A is still accepted"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(a.kind(), transfer_engine::ErrorKind::Credentials, "{a}");
    let b = crate::util::client_for(
        &served.endpoint,
        V4,
        transfer_engine::sign::Credentials::new("KEY-B", "secret-b").with_security_token("token-KEY-B"),
    );
    assert_eq!(
        b.list_objects("rotated", &transfer_engine::store::ListRequest::default()).await.unwrap().objects.len(),
        60
    );
}
