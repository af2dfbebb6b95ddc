//! Downloads through the built binary (`transfer cp REMOTE LOCAL`), against every target that can take them:
//! `transfer serve` in both dialects, moto and s3s-fs. A directory backed up with `cp -r` comes back
//! byte-identical with its modification times; nothing partial is ever at a final path; a rerun resumes; keys
//! that would leave the destination directory are refused.

use crate::cli::{run, summary, transfer};
use crate::cli_s3::transfer_s3;
use crate::util::caps::{TargetCaps, MOTO, S3S_FS, SERVE_OSS, SERVE_S3};
use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::moto::{Moto, MOTO_KEY};
use crate::util::s3s::{S3sFs, S3S_KEY};
use crate::util::{data, s3_client, Served, AK, SK};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::PutOptions;
use transfer_engine::{BucketStore, ObjectStore};

const MIB: usize = 1024 * 1024;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every file under `root`, by its path relative to it, with its bytes and modification time.
fn files(root: &Path) -> Vec<(String, Vec<u8>, SystemTime)> {
    let mut found: Vec<_> = walk(root)
        .into_iter()
        .filter(|p| !p.is_dir())
        .map(|p| {
            let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap(), modified)
        })
        .collect();
    found.sort();
    found
}

/// A target as the binary sees it: a command with its credentials and endpoint, the scheme of its addresses,
/// and a client to check with.
struct Target<'a> {
    cmd: &'a dyn Fn(&Path) -> Command,
    scheme: &'static str,
    store: HttpStore,
    /// Its entry in the capability matrix: whether a multipart object can be checked (S3) by the CRC-32C the
    /// store keeps of it, by its ETag under the part layout the store tells.
    caps: TargetCaps,
}

/// Back up a directory (small, empty and multipart files, mtimes with nanoseconds), restore it with `cp -r`:
/// the same bytes and mtimes, no temporary file left, each object verified (CRC-64 on OSS; on S3 the MD5 of
/// single-request objects). Then one object to a file and into a directory, a rerun under --no-clobber that
/// skips everything, and the refusals: no such object, a local-to-local copy.
async fn restore_a_backup(t: &Target<'_>, b: &str) {
    t.store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, src, out) = (tmp.path().join("l.db"), tmp.path().join("src"), tmp.path().join("out"));
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("small.txt"), b"small").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    let big = data(11 * MIB + 3, 21);
    std::fs::write(src.join("sub/big.bin"), &big).unwrap();
    std::fs::write(src.join("sub/deeper/mid.bin"), data(300_000, 22)).unwrap();
    std::fs::write(src.join("tool.sh"), b"#!/bin/sh\n").unwrap();
    let mode =
        |p: PathBuf| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
    let chmod = |p: PathBuf, m: u32| std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m));
    chmod(src.join("tool.sh"), 0o750).unwrap();
    chmod(src.join("small.txt"), 0o600).unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::new(1_577_934_245, 123_456_789);
    std::fs::File::options().write(true).open(src.join("small.txt")).unwrap().set_modified(when).unwrap();
    let cp = |args: &[&str]| run((t.cmd)(&ledger).arg("cp").args(args));
    let remote = |rest: &str| format!("{}://{b}/{rest}", t.scheme);
    let sizes = ["--multipart-threshold", "6MiB", "--part-size", "5MiB"];

    ok(&cp(&[&["-r"], &sizes[..], &[src.to_str().unwrap(), &remote("backup/")]].concat()));
    let restored =
        cp(&[&["-r", "--json", "--preserve-mode"], &sizes[..], &[&remote("backup/"), out.to_str().unwrap()]].concat());
    ok(&restored);
    assert_eq!(files(&out), files(&src), "bytes and modification times come back as they were");
    assert_eq!(summary(&restored)["objects_transferred"].as_u64(), Some(5));
    assert_eq!((mode(out.join("tool.sh")), mode(out.join("small.txt"))), (0o750, 0o600), "--preserve-mode");
    for e in events(&restored).iter().filter(|e| e["event"] == "done") {
        let v = &e["verified"];
        let by = |what: &str| v.as_object().unwrap().iter().filter(|(_, on)| **on == true).any(|(k, _)| k == what);
        match (t.scheme, e["key"].as_str().unwrap()) {
            ("oss", _) => assert!(by("crc64"), "every object is checked by its CRC-64 on OSS: {e}"),
            // S3 has no CRC-64. The multipart object: by its composite CRC-32C (moto), or by its multipart ETag
            // recomputed under the part layout HEAD ?partNumber= tells (serve); s3s-fs tells neither.
            (_, "backup/sub/big.bin") => {
                assert_eq!(
                    [by("checksum"), by("md5")],
                    [t.caps.s3_multipart_crc32c, t.caps.s3_head_part_number && !t.caps.s3_multipart_crc32c],
                    "{e}"
                )
            }
            // An object written in one request: by the CRC-32C sent with it, else the MD5 that is its ETag.
            _ => assert!(by("checksum") || by("md5"), "{e}"),
        }
    }

    // One object to a file, and into a directory (created, as the trailing / asks).
    let one = tmp.path().join("one.bin");
    ok(&cp(&[&sizes[..], &[&remote("backup/sub/big.bin"), one.to_str().unwrap()]].concat()));
    assert!(std::fs::read(&one).unwrap() == big);
    let into = format!("{}/", tmp.path().join("into").display());
    ok(&cp(&[&remote("backup/small.txt"), &into]));
    assert_eq!(std::fs::read(tmp.path().join("into/small.txt")).unwrap(), b"small");
    assert_eq!(std::fs::metadata(tmp.path().join("into/small.txt")).unwrap().modified().unwrap(), when);

    // To stdout, in order, and nothing else on it.
    let streamed = cp(&[&sizes[..], &[&remote("backup/sub/big.bin"), "-"]].concat());
    ok(&streamed);
    assert!(streamed.stdout == big, "stdout carries the object's bytes, whole and in order");
    let refused = cp(&["-r", &remote("backup/"), "-"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));

    // Under --update a rerun as a new job fetches only what differs: the file changed here, and the multipart
    // object where the store tells nothing to compare it by (s3s-fs: no CRC-32C of it, no part layout).
    std::fs::write(out.join("sub/deeper/mid.bin"), data(300_000, 23)).unwrap();
    let update =
        cp(&[&["-r", "--json", "--update"], &sizes[..], &[&remote("backup/"), out.to_str().unwrap()]].concat());
    ok(&update);
    let mut fetched: Vec<String> = events(&update)
        .iter()
        .filter(|e| e["event"] == "done" && e["skipped"].is_null())
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    fetched.sort();
    let want: &[&str] = match t.scheme == "oss" || t.caps.s3_multipart_crc32c || t.caps.s3_head_part_number {
        true => &["backup/sub/deeper/mid.bin"],
        false => &["backup/sub/big.bin", "backup/sub/deeper/mid.bin"],
    };
    assert_eq!(fetched, want, "{}", stderr(&update));
    assert_eq!(files(&out), files(&src));

    // Under --no-clobber a rerun as a new job leaves every file alone.
    std::fs::write(out.join("small.txt"), b"mine").unwrap();
    let again =
        cp(&[&["-r", "--json", "--no-clobber"], &sizes[..], &[&remote("backup/"), out.to_str().unwrap()]].concat());
    ok(&again);
    assert_eq!(summary(&again)["objects_transferred"].as_u64(), Some(0), "{}", stderr(&again));
    assert_eq!(std::fs::read(out.join("small.txt")).unwrap(), b"mine");

    let missing = cp(&[&remote("backup/nothing"), tmp.path().join("x").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("there is no object"), "{}", stderr(&missing));
    assert!(!tmp.path().join("x").exists());
    let local = cp(&[src.to_str().unwrap(), tmp.path().join("y").to_str().unwrap()]);
    assert_eq!(local.status.code(), Some(2), "{}", stderr(&local));
    assert!(stderr(&local).contains("both") && stderr(&local).contains("local paths"), "{}", stderr(&local));
}

/// Every flow above the target's entry in the capability matrix lets it run, in buckets named after `name`;
/// `at` is the command against another endpoint (a proxy in front of the target).
async fn every_flow(t: &Target<'_>, endpoint: &str, name: &str, at: &dyn Fn(&str, &Path) -> Command) {
    restore_a_backup(t, &format!("restore-{name}")).await;
    faults_on_the_way(t, endpoint, &format!("faults-{name}"), at).await;
    if t.caps.versioning {
        versions(t, &format!("versions-{name}")).await;
    }
    if t.caps.archive {
        let class = if t.scheme == "oss" { "ColdArchive" } else { "Archive" };
        archived(t, endpoint, at, &format!("archived-{name}"), class).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_against_transfer_serve_in_both_dialects() {
    let served = Served::start();
    let endpoint = served.endpoint.clone();
    let oss = |ledger: &Path| transfer(&endpoint, ledger);
    let target = Target { cmd: &oss, scheme: "oss", store: served.client(V4), caps: SERVE_OSS };
    every_flow(&target, &endpoint, "oss", &|ep, l| transfer(ep, l)).await;
    let s3 = |ledger: &Path| transfer_s3(&endpoint, ledger, (AK, SK));
    let target = Target { cmd: &s3, scheme: "s3", store: s3_client(&served.endpoint, (AK, SK)), caps: SERVE_S3 };
    every_flow(&target, &endpoint, "s3", &|ep, l| transfer_s3(ep, l, (AK, SK))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_against_moto() {
    let moto = Moto::start("downloads_against_moto");
    let endpoint = moto.endpoint.clone();
    let s3 = |ledger: &Path| transfer_s3(&endpoint, ledger, MOTO_KEY);
    let target = Target { cmd: &s3, scheme: "s3", store: moto.client_in("us-east-1"), caps: MOTO };
    every_flow(&target, &endpoint, "moto", &|ep, l| transfer_s3(ep, l, MOTO_KEY)).await;
    unsafe_keys_are_refused(&moto, &s3, "unsafe-moto").await;
    damaged_objects_are_refused(&moto, &s3, "damaged-moto").await;
}

/// An object whose bytes are not what its CRC-32C says (moto stores a claimed checksum unchecked): the download
/// fails (exit 1 alone, 3 beside an object that arrives) and says what did not match; nothing is at the final
/// path, to a file or in a directory; the stream to stdout fails too.
async fn damaged_objects_are_refused(moto: &Moto, cmd: &dyn Fn(&Path) -> Command, b: &str) {
    moto.client_in("us-east-1").create_bucket(b).await.unwrap();
    moto.put_with_crc32c(b, "p/damaged", "these bytes are not the ones checksummed", "AAAAAA==");
    moto.put_unchecked(b, "p/fine", "fine");
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let one = tmp.path().join("one");
    let out = run(cmd(&ledger).args(["cp", &format!("s3://{b}/p/damaged"), one.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("CRC-32C") && stderr(&out).contains("nothing was published"), "{}", stderr(&out));
    assert!(!one.exists());
    let dir = tmp.path().join("dir");
    let out = run(cmd(&ledger).args(["cp", "-r", &format!("s3://{b}/p/"), dir.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // The damaged object's bytes stay in its temporary file (for the next run), out of the final name.
    let names: Vec<String> = files(&dir).into_iter().map(|(p, ..)| p).collect();
    assert!(names.len() == 2 && names.contains(&"fine".to_owned()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with(".damaged.transfer-") && n.ends_with(".part")), "{names:?}");
    let out = run(cmd(&ledger).args(["cp", &format!("s3://{b}/p/damaged"), "-"]));
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("CRC-32C"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_against_s3s_fs() {
    let server = S3sFs::start("downloads_against_s3s_fs");
    let endpoint = server.endpoint.clone();
    let s3 = |ledger: &Path| transfer_s3(&endpoint, ledger, S3S_KEY);
    let store = s3_client(&server.endpoint, S3S_KEY);
    let target = Target { cmd: &s3, scheme: "s3", store, caps: S3S_FS };
    every_flow(&target, &endpoint, "s3s", &|ep, l| transfer_s3(ep, l, S3S_KEY)).await;
}

/// Keys that would land outside the destination directory, created on moto (which takes them): each is refused
/// for itself and written nowhere; the other objects of the prefix arrive; the exit status says the job is
/// partly done (3). A directory marker (`p/dir/`) is passed over.
async fn unsafe_keys_are_refused(moto: &Moto, cmd: &dyn Fn(&Path) -> Command, b: &str) {
    moto.client_in("us-east-1").create_bucket(b).await.unwrap();
    let bad = ["p/../escaped.txt", "p/a/../../escaped2.txt", "p/a\\b.txt", "p//double.txt"];
    for key in bad.iter().chain(&["p/fine.txt"]) {
        moto.put_unchecked(b, key, "x");
    }
    // A directory marker is no file and no failure.
    moto.put_unchecked(b, "p/dir/", "");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("deep/out");
    let got =
        run(cmd(&tmp.path().join("l.db")).args(["cp", "-r", "--json", &format!("s3://{b}/p/"), out.to_str().unwrap()]));
    assert_eq!(got.status.code(), Some(3), "{}", stderr(&got));
    let failed: Vec<String> =
        events(&got).iter().filter(|e| e["event"] == "failed").map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(failed.len(), bad.len(), "{failed:?}");
    assert!(stderr(&got).contains(".. segment"), "{}", stderr(&got));
    let everything: Vec<PathBuf> = walk(tmp.path());
    let names: Vec<String> =
        everything.iter().map(|p| p.strip_prefix(tmp.path()).unwrap().display().to_string()).collect();
    assert!(names.contains(&"deep/out/fine.txt".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("escaped") || n.contains("double") || n.contains("a\\b")), "{names:?}");
}

/// Every file and directory under `root`.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            found.push(p);
        }
    }
    found
}

/// Downloads through a proxy that breaks GETs, on every target: a reset, a 503 SlowDown and a body cut halfway
/// are retried and the object arrives whole; a body damaged on the way (one byte flipped, every header intact)
/// is caught by the object's checksum (its CRC-64, CRC-32C or MD5 ETag), fails the run with nothing at the
/// final path, and the next run fetches it again and publishes it whole.
async fn faults_on_the_way(t: &Target<'_>, endpoint: &str, b: &str, proxied: &dyn Fn(&str, &Path) -> Command) {
    t.store.create_bucket(b).await.unwrap();
    let (big, small) = (data(11 * MIB + 7, 61), data(300_000, 62));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), &big).unwrap();
    std::fs::write(src.join("small"), &small).unwrap();
    let sizes = ["--multipart-threshold", "6MiB", "--part-size", "5MiB"];
    let remote = |rest: &str| format!("{}://{b}/{rest}", t.scheme);
    let direct = tmp.path().join("direct.db");
    ok(&run((t.cmd)(&direct).args(["cp", "-r"]).args(sizes).args([src.to_str().unwrap(), &remote("f/")])));

    let get = |contains: &'static str, fault: Fault| Rule { method: Some("GET"), contains, fault, times: 1 };
    let transient = vec![
        get("f/big", Fault::Reset),
        get("f/big", Fault::Status(503, "SlowDown")),
        get("f/big", Fault::CutBody),
        get("f/small", Fault::CutBody),
    ];
    let proxy = FaultProxy::start(endpoint, transient).await;
    let (ledger, out) = (tmp.path().join("l.db"), tmp.path().join("out"));
    let cp = |proxy: &FaultProxy, ledger: &Path| {
        run(proxied(&proxy.endpoint, ledger)
            .args(["cp", "-r", "--json"])
            .args(sizes)
            .args([&remote("f/"), out.to_str().unwrap()]))
    };
    let done = cp(&proxy, &ledger);
    ok(&done);
    assert_eq!(proxy.pending(), 0, "every fault was met");
    assert!(summary(&done)["requests_retried"].as_u64().unwrap() >= 4, "{}", stderr(&done));
    assert!(std::fs::read(out.join("big")).unwrap() == big && std::fs::read(out.join("small")).unwrap() == small);

    // Damaged on the way: the multipart object where the store gives a contract to check it by (its CRC-64,
    // its CRC-32C), the single one everywhere (its CRC-64, CRC-32C or MD5 ETag).
    std::fs::remove_dir_all(&out).unwrap();
    let multipart_checked = t.scheme == "oss" || t.caps.s3_multipart_crc32c;
    let proxy =
        FaultProxy::start(endpoint, vec![get("f/big", Fault::CorruptResponse), get("f/small", Fault::CorruptResponse)])
            .await;
    let ledger = tmp.path().join("l2.db");
    let damaged = cp(&proxy, &ledger);
    assert_eq!(proxy.pending(), 0);
    let mut failed: Vec<String> = events(&damaged)
        .iter()
        .filter(|e| e["event"] == "failed")
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    failed.sort();
    let want: &[&str] = if multipart_checked { &["f/big", "f/small"] } else { &["f/small"] };
    assert_eq!(failed, want, "{}", stderr(&damaged));
    assert_eq!(damaged.status.code(), Some(if multipart_checked { 1 } else { 3 }), "{}", stderr(&damaged));
    assert!(!out.join("small").exists(), "nothing damaged at a final path");
    if !multipart_checked {
        // Nothing the store offers can tell (s3s-fs: no checksum; serve in S3: an ETag made by OSS's rule, a
        // convention): the object is published, and the summary says truthfully that not everything was verified.
        assert_eq!(summary(&damaged)["verified"], false, "{}", stderr(&damaged));
    }
    let again = cp(&proxy, &ledger);
    ok(&again);
    assert!(std::fs::read(out.join("small")).unwrap() == small);
    assert!(!multipart_checked || std::fs::read(out.join("big")).unwrap() == big);
}

/// kill -9 in the middle of a download of 8 parts, every GET slowed by a proxy that counts them: nothing is at
/// the final path, the temporary file is; `transfer resume` (from another directory) fetches only what had not
/// arrived (at most the parts in flight at the kill are fetched twice) and publishes the object byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_download_resumes_fetching_only_the_missing_parts() {
    let served = Served::start();
    let oss = served.client(V4);
    oss.create_bucket("resume-dl").await.unwrap();
    let bytes = data(40 * MIB, 31);
    oss.put_object("resume-dl", "big.bin", bytes.clone().into(), &PutOptions::default()).await.unwrap();
    let slow =
        Rule { method: Some("GET"), contains: "big.bin", fault: Fault::Delay(Duration::from_millis(300)), times: 100 };
    let proxy = FaultProxy::start(&served.endpoint, vec![slow]).await;
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, file) = (tmp.path().join("l.db"), tmp.path().join("big.bin"));
    let args = ["cp", "--jobs", "2", "--part-size", "5MiB", "--multipart-threshold", "6MiB", "oss://resume-dl/big.bin"];
    let gets = |p: &FaultProxy| {
        p.seen().into_iter().filter(|s| s.method == "GET" && s.target.contains("big.bin")).collect::<Vec<_>>()
    };

    // A relative destination: the job records it absolute.
    let mut child =
        transfer(&proxy.endpoint, &ledger).current_dir(tmp.path()).args(args).arg("big.bin").spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gets(&proxy).iter().filter(|s| s.answered.is_some()).count() < 3 {
        assert!(std::time::Instant::now() < deadline, "the download never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed once three parts are in the ledger (it commits in groups): what it recorded is what the resume keeps.
    let recorded = || {
        let l = transfer_engine::checkpoint::Ledger::open(&ledger).unwrap();
        let job = l.jobs().unwrap().first().map(|j| j.id);
        let row = job.and_then(|j| l.objects(j, None, 0, 1).unwrap().into_iter().next());
        row.map_or(0, |r| l.parts(r.id).unwrap().len())
    };
    crate::util::until("3 parts recorded", Duration::from_secs(30), || recorded() >= 3).await;
    let kept = recorded();
    child.kill().unwrap();
    child.wait().unwrap();
    let first: Vec<_> = gets(&proxy);
    let answered = first.iter().filter(|s| s.answered.is_some()).count();
    assert!(answered < 8, "the kill came before the end ({answered} parts answered)");
    assert!(!file.exists(), "nothing is at the final path before the download is complete");
    assert!(tmp.path().join(".big.bin.transfer-1.part").exists(), "the temporary file is kept for the resume");

    // `transfer resume` runs the job again with the options it was started with (the download's absolute path).
    let out = run(transfer(&proxy.endpoint, &ledger).current_dir("/").args(["resume", "--json"]));
    ok(&out);
    assert!(std::fs::read(&file).unwrap() == bytes);
    let again = gets(&proxy).len() - first.len();
    // What had not arrived, and at most what arrived but was not recorded yet at the kill.
    assert!(again <= 8 - kept, "fetched {again} parts again, {kept} of 8 recorded before the kill");
    assert!(again >= 8 - answered, "fetched {again} parts again, {answered} of 8 had arrived");
    let s = summary(&out);
    assert!(s["bytes_reused"].as_u64().unwrap() >= 5 * MIB as u64, "{s}");
    assert!(!tmp.path().join(".big.bin.transfer-1.part").exists());
}

/// A reader that goes away after the first bytes (`transfer cp oss://b/key - | head -c 100`): the command stops
/// quietly with 141, as a program killed by SIGPIPE does, and leaves nothing behind but its job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_reader_goes_away_stops_quietly() {
    let served = Served::start();
    let oss = served.client(V4);
    oss.create_bucket("piped-dl").await.unwrap();
    oss.put_object("piped-dl", "big.bin", data(20 * MIB, 5).into(), &PutOptions::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = transfer(&served.endpoint, &tmp.path().join("l.db"))
        .args(["cp", "--part-size", "5MiB", "oss://piped-dl/big.bin", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(&first[..], &data(20 * MIB, 5)[..100]);
}

/// `--version-id` downloads that version of one object (to a file and to stdout); the current one is the
/// default; a version that does not exist is refused before any job exists, and so is the option with a
/// prefix.
async fn versions(t: &Target<'_>, b: &str) {
    t.store.create_bucket(b).await.unwrap();
    t.store.put_versioning(b, true).await.unwrap();
    let first = t.store.put_object(b, "doc.txt", b"first".to_vec().into(), &PutOptions::default()).await.unwrap();
    t.store.put_object(b, "doc.txt", b"second".to_vec().into(), &PutOptions::default()).await.unwrap();
    let v1 = first.version_id.expect("a versioned bucket names the version");
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let cp = |args: &[&str]| run((t.cmd)(&ledger).arg("cp").args(args));
    let remote = format!("{}://{b}/doc.txt", t.scheme);
    let (old, new) = (tmp.path().join("old.txt"), tmp.path().join("new.txt"));
    ok(&cp(&["--version-id", &v1, &remote, old.to_str().unwrap()]));
    assert_eq!(std::fs::read(&old).unwrap(), b"first");
    ok(&cp(&[&remote, new.to_str().unwrap()]));
    assert_eq!(std::fs::read(&new).unwrap(), b"second");
    let streamed = cp(&["--version-id", &v1, &remote, "-"]);
    ok(&streamed);
    assert_eq!(streamed.stdout, b"first");
    let missing = cp(&["--version-id", "no-such-version", &remote, tmp.path().join("x").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("has no version no-such-version"), "{}", stderr(&missing));
    let prefix = cp(&["-r", "--version-id", &v1, &format!("{}://{b}/", t.scheme), tmp.path().to_str().unwrap()]);
    assert_eq!(prefix.status.code(), Some(2), "{}", stderr(&prefix));
}

/// What the local side can get wrong, each with a clear message and nothing at a final path: a full disk
/// (exit 3, resumable: the same command finishes once there is room), a read-only destination, a file where the
/// prefix's directory must go, two keys where one is the other's directory (`c/a` and `c/a/b`: one arrives, the
/// other is reported), a version that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_failures_say_what_happened_and_leave_nothing_partial() {
    use crate::serve::SmallDisk;
    let served = Served::start();
    let oss = served.client(V4);
    oss.create_bucket("local-fail").await.unwrap();
    let big = data(20 * MIB, 8);
    oss.put_object("local-fail", "big.bin", big.clone().into(), &PutOptions::default()).await.unwrap();
    for key in ["c/a", "c/a/b"] {
        oss.put_object("local-fail", key, key.as_bytes().to_vec().into(), &PutOptions::default()).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let cp = |args: &[&str]| run(transfer(&served.endpoint, &ledger).arg("cp").args(args));

    // A full disk: exit 3, nothing at the final path, and the same command finishes once there is room.
    let disk = SmallDisk::mount("8m").expect("the tests run as root and mount a tmpfs");
    let file = disk.path().join("big.bin");
    let full = cp(&["--part-size", "5MiB", "oss://local-fail/big.bin", file.to_str().unwrap()]);
    assert_eq!(full.status.code(), Some(3), "{}", stderr(&full));
    assert!(stderr(&full).contains("the disk is full"), "{}", stderr(&full));
    assert!(!file.exists());
    disk.resize("64m");
    ok(&cp(&["--part-size", "5MiB", "oss://local-fail/big.bin", file.to_str().unwrap()]));
    assert!(std::fs::read(&file).unwrap() == big);

    // A read-only destination.
    let ro = SmallDisk::mount_with("ro,size=1m").expect("a read-only tmpfs");
    let denied = cp(&["oss://local-fail/c/a", ro.path().join("a").to_str().unwrap()]);
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));
    assert!(stderr(&denied).contains("Read-only file system"), "{}", stderr(&denied));

    // A file where the directory must go.
    let not_dir = tmp.path().join("plain");
    std::fs::write(&not_dir, b"x").unwrap();
    let refused = cp(&["-r", "oss://local-fail/c/", not_dir.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("is not a directory"), "{}", stderr(&refused));

    // What is at a final path and is no regular file is refused, never replaced: a FIFO, a symbolic link, a
    // device. A regular file keeps its permissions when it is replaced.
    let fifo = tmp.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
    for (target, says) in
        [(&fifo, "is a FIFO"), (&link, "is a symbolic link"), (&PathBuf::from("/dev/null"), "is a device")]
    {
        let out = cp(&["oss://local-fail/c/a", target.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo() && link.is_symlink());
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, b"old").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    ok(&cp(&["oss://local-fail/c/a", secret.to_str().unwrap()]));
    assert_eq!(std::fs::read(&secret).unwrap(), b"c/a");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "a replaced file keeps its permissions");

    // A key named as transfer names its temporary files is refused; the others arrive.
    for (key, body) in [("t/x", "x"), ("t/.x.transfer-9.part", "not x")] {
        oss.put_object("local-fail", key, body.as_bytes().to_vec().into(), &PutOptions::default()).await.unwrap();
    }
    let tdir = tmp.path().join("t");
    let got = cp(&["-r", "--json", "oss://local-fail/t/", tdir.to_str().unwrap()]);
    assert_eq!(got.status.code(), Some(3), "{}", stderr(&got));
    assert!(stderr(&got).contains("temporary files"), "{}", stderr(&got));
    assert_eq!(std::fs::read(tdir.join("x")).unwrap(), b"x");

    // `c/a` and `c/a/b`: a file and a directory of the same name cannot both be.
    let out = tmp.path().join("collide");
    let both = cp(&["-r", "--json", "oss://local-fail/c/", out.to_str().unwrap()]);
    assert_eq!(both.status.code(), Some(3), "{}", stderr(&both));
    let failed: Vec<_> = events(&both).into_iter().filter(|e| e["event"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let why = failed[0]["error"].as_str().unwrap();
    assert!(why.contains("is a file") || why.contains("is a directory"), "{why}");
    let a = out.join("a");
    assert!(a.is_file() && std::fs::read(&a).unwrap() == b"c/a" || std::fs::read(a.join("b")).unwrap() == b"c/a/b");
    let leftovers: Vec<_> =
        walk(&out).into_iter().filter(|p| p.is_file() && !p.ends_with("a") && !p.ends_with("b")).collect();
    assert!(leftovers.iter().all(|p| p.file_name().unwrap().to_string_lossy().ends_with(".part")), "{leftovers:?}");

    // A directory holding a download's temporary file uploads without it.
    std::fs::write(out.join(".left.transfer-4.part"), b"partial").unwrap();
    oss.create_bucket("local-fail-up").await.unwrap();
    ok(&cp(&["-r", out.to_str().unwrap(), "oss://local-fail-up/up/"]));
    let page = oss.list_objects("local-fail-up", &transfer_engine::store::ListRequest::default()).await.unwrap();
    let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert!(!keys.is_empty() && keys.iter().all(|k| !k.ends_with(".part")), "{keys:?}");
    drop(ro);
    drop(disk);
}

/// Archived objects: a GET is refused (`InvalidObjectState`) until a restore finished; `cp` without
/// --restore-archived skips them and says how to restore them; with it, RestoreObject, a wait until HEAD says
/// the restore is done, then the download (or the copy) of the right bytes. The RestoreObject requests are read
/// at a proxy: `--restore-days` and `--restore-tier` are what they ask for, and no tier is named without one.
async fn archived(t: &Target<'_>, endpoint: &str, at: &dyn Fn(&str, &Path) -> Command, b: &str, class: &str) {
    use transfer_engine::store::RestoreState;
    use transfer_engine::{ErrorKind, Metadata, ObjectRef, StorageClass};
    t.store.create_bucket(b).await.unwrap();
    let cold = Metadata { storage_class: Some(StorageClass::parse(class).unwrap()), ..Default::default() };
    let bytes = data(300_000, 77);
    for key in ["cold.bin", "cold-copy.bin"] {
        let opts = PutOptions::default().metadata(cold.clone());
        t.store.put_object(b, key, bytes.clone().into(), &opts).await.unwrap();
    }
    let obj = ObjectRef::new(b, "cold.bin");
    let e = t.store.get_object(&obj, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidObjectState, "{e}");
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let cp = |args: &[&str]| run((t.cmd)(&ledger).arg("cp").args(args));
    let (remote, file) = (format!("{}://{b}/cold.bin", t.scheme), tmp.path().join("cold.bin"));

    let skipped = cp(&["--json", &remote, file.to_str().unwrap()]);
    ok(&skipped);
    assert!(!file.exists());
    let done: Vec<_> = events(&skipped).into_iter().filter(|e| e["event"] == "done").collect();
    assert!(done[0]["skipped"].as_str().unwrap().contains("--restore-archived"), "{done:?}");

    let proxy = FaultProxy::start(endpoint, vec![]).await;
    let restore = |proxy: &FaultProxy, args: &[&str]| {
        ok(&run(at(&proxy.endpoint, &ledger).arg("cp").args(args)));
        let asked: Vec<String> = proxy
            .seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.target.contains("restore"))
            .map(|s| s.document.expect("a RestoreRequest document"))
            .collect();
        assert_eq!(asked.len(), 1, "one RestoreObject: {asked:?}");
        asked.into_iter().next().unwrap()
    };
    let asked = restore(
        &proxy,
        &["--restore-archived", "--restore-days", "2", "--restore-tier", "bulk", &remote, file.to_str().unwrap()],
    );
    assert!(asked.contains("<Days>2</Days>") && asked.contains("<Tier>Bulk</Tier>"), "{asked}");
    assert!(std::fs::read(&file).unwrap() == bytes);
    let head = t.store.head_object(&obj).await.unwrap();
    assert!(matches!(head.restore, Some(RestoreState::Restored { .. })), "{head:?}");

    // A server-side copy of an archived source goes through the same step.
    let (from, to) = (format!("{}://{b}/cold-copy.bin", t.scheme), format!("{}://{b}/warm.bin", t.scheme));
    let skipped = cp(&["--json", &from, &to]);
    ok(&skipped);
    assert!(
        t.store
            .head_object(&ObjectRef::new(b, "warm.bin"))
            .await
            .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound),
        "skipped, not copied"
    );
    let proxy = FaultProxy::start(endpoint, vec![]).await;
    let asked = restore(
        &proxy,
        &["--restore-archived", "--storage-class", "Standard", "--metadata-directive", "replace", &from, &to],
    );
    assert!(
        asked.contains("<Days>1</Days>") && !asked.contains("Tier"),
        "the defaults: one day, the store's tier: {asked}"
    );
    let copied = t.store.get_object(&ObjectRef::new(b, "warm.bin"), None).await.unwrap();
    assert!(copied.bytes().await.unwrap().as_ref() == bytes.as_slice());
}

/// `transfer serve`'s RestoreObject, through both dialects as OSS answers it: 202 to the first request, 409
/// `RestoreAlreadyInProgress` (the client's `InProgress`) while it runs, HEAD `ongoing-request="true"`, then
/// readable with an expiry date, and 200 (`Restored`) to a request after that; an object in no archive class is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_restores_archived_objects_as_oss_does() {
    use transfer_engine::store::{RestoreAnswer, RestoreRequest, RestoreState, RestoreTier};
    use transfer_engine::{Metadata, ObjectRef, StorageClass};
    let served = Served::start();
    for (store, b) in
        [(served.client(V4), "restore-api-oss"), (s3_client(&served.endpoint, (AK, SK)), "restore-api-s3")]
    {
        store.create_bucket(b).await.unwrap();
        let cold = Metadata { storage_class: Some(StorageClass::Archive), ..Default::default() };
        store.put_object(b, "a", b"archived".to_vec().into(), &PutOptions::default().metadata(cold)).await.unwrap();
        store.put_object(b, "s", b"standard".to_vec().into(), &PutOptions::default()).await.unwrap();
        let obj = ObjectRef::new(b, "a");
        let request = RestoreRequest::days(1).tier(RestoreTier::Expedited);
        assert_eq!(store.restore_object(&obj, &request).await.unwrap(), RestoreAnswer::Started);
        assert_eq!(store.restore_object(&obj, &request).await.unwrap(), RestoreAnswer::InProgress);
        let head = store.head_object(&obj).await.unwrap();
        assert_eq!(head.restore, Some(RestoreState::Ongoing));
        assert!(head.needs_restore());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while store.head_object(&obj).await.unwrap().needs_restore() {
            assert!(std::time::Instant::now() < deadline, "the restore never finished");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let head = store.head_object(&obj).await.unwrap();
        assert!(matches!(&head.restore, Some(RestoreState::Restored { expiry: Some(_) })), "{head:?}");
        assert_eq!(store.get_object(&obj, None).await.unwrap().bytes().await.unwrap().as_ref(), b"archived");
        assert_eq!(store.restore_object(&obj, &request).await.unwrap(), RestoreAnswer::Restored);
        let e = store.restore_object(&ObjectRef::new(b, "s"), &request).await.unwrap_err();
        assert_eq!(e.service_code(), Some("OperationNotSupported"), "{e}");
    }
}

/// `--bwlimit UP:DOWN` holds a download to its DOWN rate: 3 MiB at 1 MiB/s takes at least about 2.9 s (less
/// what the bucket may hold, a tenth of a second's worth). Only the lower bound is asserted: a limit cannot make
/// anything faster, and a loaded machine only slower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bwlimit_holds_a_download_to_its_down_rate() {
    let served = Served::start();
    let oss = served.client(V4);
    oss.create_bucket("paced-down").await.unwrap();
    let bytes = data(3 * MIB, 64);
    oss.put_object("paced-down", "f.bin", bytes.clone().into(), &PutOptions::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, file) = (tmp.path().join("l.db"), tmp.path().join("f.bin"));
    let started = std::time::Instant::now();
    let out = run(transfer(&served.endpoint, &ledger)
        .args(["cp", "--part-size", "1MiB", "--bwlimit", "off:1MiB/s", "oss://paced-down/f.bin"])
        .arg(&file));
    let took = started.elapsed();
    ok(&out);
    assert!(took >= Duration::from_millis(2700), "3 MiB at 1 MiB/s took {took:?}");
    assert!(std::fs::read(&file).unwrap() == bytes);
}
