//! `transfer cp - URL`: a stream on stdin into one object, through the built binary, against `transfer serve` in
//! both dialects, moto and s3s-fs. Every run goes through a recording proxy, so what is asserted is what crossed
//! the wire: the parts and their sizes, one PutObject for a short stream, nothing left behind by a stream of the
//! wrong length, a kill or a Ctrl-C.

use crate::cli::{summary, transfer};
use crate::cli_s3::transfer_s3;
use crate::util::caps::{TargetCaps, MOTO, S3S_FS, SERVE_OSS, SERVE_S3};
use crate::util::fault::{FaultProxy, Seen};
use crate::util::moto::{Moto, MOTO_KEY};
use crate::util::s3s::{S3sFs, S3S_KEY};
use crate::util::{data, s3_client, Served, AK, SK};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::ListUploadsRequest;
use transfer_engine::{ErrorKind, MultipartStore, ObjectRef, ObjectStore, TagSet};

const MIB: usize = 1 << 20;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

/// A target as the binary sees it: `cmd(endpoint, ledger)`, its scheme, a client to check with.
struct Target<'a> {
    cmd: &'a dyn Fn(&str, &Path) -> Command,
    endpoint: String,
    scheme: &'static str,
    store: HttpStore,
    /// Its entry in the capability matrix: without tagging no tags are asked for; without ListMultipartUploads
    /// that a failed stream aborted its upload is seen on the wire only.
    caps: TargetCaps,
}

/// Runs `cmd` with `input` on its stdin (written by a thread, then closed).
fn piped(cmd: &mut Command, input: Vec<u8>) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // A command that refuses early closes its stdin: a broken pipe here is its answer, not a failure.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// What a run sent: InitiateMultipartUpload, UploadPart (each one's declared length, largest first), Complete,
/// PutObject, AbortMultipartUpload.
#[derive(Debug, Default, PartialEq, Eq)]
struct Sent {
    initiates: usize,
    parts: Vec<u64>,
    completes: usize,
    puts: usize,
    aborts: usize,
}

fn sent(seen: &[Seen]) -> Sent {
    let mut s = Sent::default();
    for r in seen {
        let upload = r.target.contains("uploadId=");
        match r.method.as_str() {
            "POST" if r.target.contains("uploads") && !upload => s.initiates += 1,
            "POST" if upload => s.completes += 1,
            "PUT" if upload => s.parts.push(r.declared),
            "PUT" => s.puts += 1,
            "DELETE" if upload => s.aborts += 1,
            _ => {}
        }
    }
    // Parts go several at once, in no fixed order: their sizes, largest first.
    s.parts.sort_unstable_by(|a, b| b.cmp(a));
    s
}

/// Runs the binary with `input` on stdin through a fresh recording proxy; its output and what it sent.
async fn stream(t: &Target<'_>, ledger: &Path, args: &[&str], input: Vec<u8>) -> (Output, Sent) {
    let proxy = FaultProxy::start(&t.endpoint, vec![]).await;
    let out = piped((t.cmd)(&proxy.endpoint, ledger).args(args), input);
    (out, sent(&proxy.seen()))
}

async fn body(store: &HttpStore, b: &str, key: &str) -> Vec<u8> {
    store.get_object(&ObjectRef::new(b, key), None).await.unwrap().bytes().await.unwrap().to_vec()
}

/// Incomplete multipart uploads of `key`.
async fn uploads(store: &HttpStore, b: &str, key: &str) -> usize {
    let req = ListUploadsRequest::default().prefix(Some(key.to_owned()));
    store.list_uploads(b, &req).await.unwrap().uploads.iter().filter(|u| u.key == key).count()
}

async fn missing(store: &HttpStore, b: &str, key: &str) {
    let head = store.head_object(&ObjectRef::new(b, key)).await;
    assert_eq!(head.map(|h| h.size).unwrap_err().kind(), ErrorKind::ObjectNotFound, "{b}/{key} was published");
}

fn done_event(out: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "done")
        .unwrap_or_else(|| panic!("no done event: {}", stderr(out)))
}

async fn streams(t: &Target<'_>, b: &str) {
    use transfer_engine::BucketStore;
    t.store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let url = |key: &str| format!("{}://{b}/{key}", t.scheme);
    let five = ["--part-size", "5MiB"];

    // Longer than a part: a multipart upload of 5 MiB parts as they fill, with the command's tags and metadata.
    let input = data(18 * MIB + 3, 1);
    let mut args = vec!["--json", "cp", "--meta", "origin=pipe"];
    if t.caps.tagging {
        args.extend(["--tag", "kind=backup"]);
    }
    let big = url("big.tar.zst");
    args.extend(five.iter().chain(&["-", big.as_str()]));
    let (out, wire) = stream(t, &ledger, &args, input.clone()).await;
    ok(&out);
    let five_mib = 5 * MIB as u64;
    assert_eq!(
        wire,
        Sent {
            initiates: 1,
            parts: vec![five_mib, five_mib, five_mib, 3 * MIB as u64 + 3],
            completes: 1,
            ..Sent::default()
        },
        "{}",
        stderr(&out)
    );
    assert!(body(&t.store, b, "big.tar.zst").await == input, "the object is the stream");
    let head = t.store.head_object(&ObjectRef::new(b, "big.tar.zst")).await.unwrap();
    assert_eq!(head.metadata.user.get("origin").map(String::as_str), Some("pipe"));
    if t.caps.tagging {
        let tags = t.store.get_tagging(&ObjectRef::new(b, "big.tar.zst")).await.unwrap();
        assert_eq!(tags, TagSet::from_pairs([("kind", "backup")]).unwrap());
    }
    let done = done_event(&out);
    assert_eq!(done["blake3"].as_str(), Some(blake3::hash(&input).to_hex().as_str()), "{done}");
    assert_eq!((done["bytes"].as_u64(), done["parts_sent"].as_u64()), (Some(input.len() as u64), Some(4)));
    assert_eq!(summary(&out)["objects_transferred"].as_u64(), Some(1));

    // Ending on a part's boundary: two parts, no empty third.
    let input = data(10 * MIB, 2);
    let even = url("even");
    let (out, wire) = stream(t, &ledger, &["cp", five[0], five[1], "-", &even], input.clone()).await;
    ok(&out);
    assert_eq!((wire.initiates, wire.parts, wire.completes), (1, vec![five_mib, five_mib], 1));
    assert!(body(&t.store, b, "even").await == input);

    // Within one part: one PutObject. Empty: an empty object.
    for (key, input) in [("small", data(1000, 3)), ("empty", Vec::new())] {
        let (out, wire) = stream(t, &ledger, &["cp", five[0], five[1], "-", &url(key)], input.clone()).await;
        ok(&out);
        assert_eq!(wire, Sent { puts: 1, ..Sent::default() }, "{key}: {}", stderr(&out));
        assert_eq!(body(&t.store, b, key).await, input, "{key}");
    }

    // A length given: the plan of a file that size (12 MiB is below the 64 MiB threshold: one PutObject).
    let input = data(12 * MIB, 4);
    let sized = url("sized");
    let (out, wire) = stream(t, &ledger, &["cp", "--expected-size", "12MiB", "-", &sized], input.clone()).await;
    ok(&out);
    assert_eq!(wire, Sent { puts: 1, ..Sent::default() }, "{}", stderr(&out));
    assert!(body(&t.store, b, "sized").await == input);

    // Said to fit one request and longer: refused before anything is sent.
    let (out, wire) = stream(t, &ledger, &["cp", "--expected-size", "1000", "-", &url("one")], data(2000, 6)).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(wire, Sent::default(), "{}", stderr(&out));
    missing(&t.store, b, "one").await;

    // The wrong length, longer or shorter, published nothing and left no upload.
    let sizes = ["--expected-size", "10MiB", "--multipart-threshold", "5MiB", five[0], five[1]];
    for (key, len) in [("long", 12 * MIB), ("short", 7 * MIB)] {
        let mut args = vec!["cp"];
        args.extend(sizes);
        let dest = url(key);
        args.extend(["-", &dest]);
        let (out, wire) = stream(t, &ledger, &args, data(len, 5)).await;
        assert_eq!(out.status.code(), Some(1), "{key}: {}", stderr(&out));
        assert!(stderr(&out).contains("--expected-size") && stderr(&out).contains("aborted"), "{}", stderr(&out));
        assert_eq!((wire.initiates, wire.completes, wire.aborts), (1, 0, 1), "{key}");
        missing(&t.store, b, key).await;
        if t.caps.list_uploads {
            assert_eq!(uploads(&t.store, b, key).await, 0, "{key}: an upload was left behind");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_against_transfer_serve_in_both_dialects() {
    let served = Served::start();
    let oss = |ep: &str, l: &Path| transfer(ep, l);
    let target = Target {
        cmd: &oss,
        endpoint: served.endpoint.clone(),
        scheme: "oss",
        store: served.client(V4),
        caps: SERVE_OSS,
    };
    streams(&target, "stream-oss").await;
    let s3 = |ep: &str, l: &Path| transfer_s3(ep, l, (AK, SK));
    let store = s3_client(&served.endpoint, (AK, SK));
    let target = Target { cmd: &s3, endpoint: served.endpoint.clone(), scheme: "s3", store, caps: SERVE_S3 };
    streams(&target, "stream-s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_against_moto() {
    let moto = Moto::start("streams_against_moto");
    let s3 = |ep: &str, l: &Path| transfer_s3(ep, l, MOTO_KEY);
    let store = moto.client_in("us-east-1");
    let target = Target { cmd: &s3, endpoint: moto.endpoint.clone(), scheme: "s3", store, caps: MOTO };
    streams(&target, "stream-moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_against_s3s_fs() {
    let server = S3sFs::start("streams_against_s3s_fs");
    let s3 = |ep: &str, l: &Path| transfer_s3(ep, l, S3S_KEY);
    let store = s3_client(&server.endpoint, S3S_KEY);
    let target = Target { cmd: &s3, endpoint: server.endpoint.clone(), scheme: "s3", store, caps: S3S_FS };
    streams(&target, "stream-s3s").await;
}

/// Parts grow as the stream goes: with 100 KiB parts (OSS's smallest), the first 500 are 100 KiB and the next
/// ones 200 KiB, so the 10,000-part limit never caps the stream at 10,000 first parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_streams_parts_grow() {
    let served = Served::start();
    let store = served.client(V4);
    use transfer_engine::BucketStore;
    store.create_bucket("grow").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let kib = 1024u64;
    let input = data(500 * 100 * 1024 + 3 * 200 * 1024 + 5, 6);
    let proxy = FaultProxy::start(&served.endpoint, vec![]).await;
    let out = piped(
        transfer(&proxy.endpoint, &tmp.path().join("l.db")).args(["cp", "--part-size", "100KiB", "-", "oss://grow/g"]),
        input.clone(),
    );
    ok(&out);
    let wire = sent(&proxy.seen());
    let mut want = vec![100 * kib; 500];
    want.extend([200 * kib, 200 * kib, 200 * kib, 5]);
    assert_eq!(wire.parts.len(), want.len());
    // Parts go several at once: compare the sizes sent, in order of size.
    let (mut got, mut want) = (wire.parts, want);
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(body(&store, "grow", "g").await == input);
    let head = store.head_object(&ObjectRef::new("grow", "g")).await.unwrap();
    assert!(head.etag.trim_matches('"').ends_with("-504"), "{}", head.etag);
}

/// Starts `transfer cp - URL` with its stdin kept open; writes `first` into it.
fn start_stream(cmd: &mut Command, first: &[u8]) -> (Child, std::process::ChildStdin) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(first).unwrap();
    (child, stdin)
}

/// Waits (at most a minute, then fails) until the proxy saw `n` parts answered.
async fn parts_answered(proxy: &FaultProxy, child: &mut Child, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PUT" && s.target.contains("uploadId=") && s.answered.is_some())
        .count()
        < n
    {
        assert!(child.try_wait().unwrap().is_none(), "the stream's upload ended early");
        assert!(Instant::now() < deadline, "no part arrived within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A killed stream cannot resume: its upload stays in the ledger for `transfer cleanup` (which aborts it without
/// being asked for the job: there is nothing to keep it for), `transfer resume` refuses the job by id and passes
/// it over without one, and running the pipeline again publishes the stream whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stream_leaves_its_upload_to_cleanup() {
    let served = Served::start();
    let store = served.client(V4);
    use transfer_engine::BucketStore;
    store.create_bucket("killed").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let proxy = FaultProxy::start(&served.endpoint, vec![]).await;
    let args = ["cp", "--part-size", "5MiB", "-", "oss://killed/k"];
    let (mut child, stdin) = start_stream(transfer(&proxy.endpoint, &ledger).args(args), &data(12 * MIB, 7));
    parts_answered(&proxy, &mut child, 2).await;
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert_eq!(uploads(&store, "killed", "k").await, 1);
    missing(&store, "killed", "k").await;

    let jobs = crate::cli::run(transfer(&served.endpoint, &ledger).args(["--json", "jobs"]));
    ok(&jobs);
    let listed: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&jobs.stdout).lines().next().unwrap()).unwrap();
    assert_eq!((listed["source"].as_str(), listed["resumable_by_id"].as_bool()), (Some("-"), Some(false)), "{listed}");
    let id = listed["job"].as_i64().unwrap().to_string();
    let by_id = crate::cli::run(transfer(&served.endpoint, &ledger).args(["resume", &id]));
    assert_eq!(by_id.status.code(), Some(2), "{}", stderr(&by_id));
    assert!(stderr(&by_id).contains("cannot be read twice"), "{}", stderr(&by_id));
    let newest = crate::cli::run(transfer(&served.endpoint, &ledger).args(["resume"]));
    ok(&newest);
    assert!(stderr(&newest).contains("nothing to resume"), "{}", stderr(&newest));

    let cleaned = crate::cli::run(transfer(&served.endpoint, &ledger).args(["--json", "cleanup"]));
    ok(&cleaned);
    assert_eq!(summary(&cleaned)["aborted"].as_u64(), Some(1), "{}", stderr(&cleaned));
    assert_eq!(uploads(&store, "killed", "k").await, 0);

    let input = data(12 * MIB, 8);
    let again = piped(transfer(&served.endpoint, &ledger).args(args), input.clone());
    ok(&again);
    assert!(body(&store, "killed", "k").await == input);
}

/// Ctrl-C while the stream's writer is idle: the job stops without waiting for more input, aborts its upload
/// (a stream cannot resume) and exits 1, not the resumable 3; nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_stream_aborts_its_upload() {
    let served = Served::start();
    let store = served.client(V4);
    use transfer_engine::BucketStore;
    store.create_bucket("stopped").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let proxy = FaultProxy::start(&served.endpoint, vec![]).await;
    let cmd = transfer(&proxy.endpoint, &tmp.path().join("l.db"))
        .args(["cp", "--part-size", "5MiB", "-", "oss://stopped/s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = cmd.unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data(6 * MIB, 9)).unwrap();
    parts_answered(&proxy, &mut child, 1).await;
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "a stopped stream kept waiting for its input");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(stdin);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("upload was aborted") && err.contains("does not resume"), "{err}");
    assert_eq!(uploads(&store, "stopped", "s").await, 0);
    missing(&store, "stopped", "s").await;
}

/// What a stream cannot be: refused before anything is read or sent (exit 2).
#[test]
fn what_a_stream_cannot_be() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    for (args, says) in [
        (&["cp", "-", "oss://b1b/"][..], "name its key"),
        (&["cp", "-", "oss://b1b/k", "--update"], "--no-clobber"),
        (&["cp", "-", "oss://b1b/k", "-r"], "one object"),
        (&["cp", "-", "oss://b1b/k", "--dry-run"], "--expected-size"),
        (&["cp", "-", "/tmp/x"], "oss://"),
        (&["cp", "./Cargo.toml", "oss://b1b/k", "--expected-size", "1MiB"], "applies to -"),
    ] {
        let out = piped(transfer("http://127.0.0.1:9", &ledger).args(args), b"x".to_vec());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// The process's peak resident memory so far (`VmHWM`), in bytes; `None` once it has exited.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// `head -c 300M /dev/urandom | transfer cp - oss://b/k` with a 64 MiB budget: the object is the stream, tagged,
/// and the process never held more than the budget and 64 MiB besides (the parts in flight and the one being
/// read live within the budget, whatever the stream's length).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mib_stream_stays_within_its_memory_budget() {
    let served = Served::start();
    let store = served.client(V4);
    use transfer_engine::BucketStore;
    store.create_bucket("big-stream").await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = transfer(&served.endpoint, &tmp.path().join("l.db"))
        .args(["--json", "cp", "--memory-limit", "64MiB", "--tag", "kind=nightly", "-", "oss://big-stream/k"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut hash = blake3::Hasher::new();
        for i in 0..300 {
            let chunk = data(MIB, 1000 + i);
            hash.update(&chunk);
            stdin.write_all(&chunk).unwrap();
        }
        hash.finalize()
    });
    let mut peak = 0;
    while let Some(rss) = peak_rss(pid) {
        peak = peak.max(rss);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hash = writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    assert!(peak > 0, "the process's memory was read while it ran");
    assert!(peak <= (64 + 64) * MIB as u64, "peak RSS {} MiB with a 64 MiB budget", peak / MIB as u64);
    let done = done_event(&out);
    assert_eq!(done["blake3"].as_str(), Some(hash.to_hex().as_str()), "{done}");
    let object = ObjectRef::new("big-stream", "k");
    assert_eq!(blake3::hash(&body(&store, "big-stream", "k").await), hash, "the object is the stream");
    assert_eq!(store.get_tagging(&object).await.unwrap().get("kind"), Some("nightly"));
    assert_eq!(done["verified"]["crc64"].as_bool(), Some(true), "{done}");
}
