//! The `transfer cp` command through the built binary against `transfer serve`: outputs parsed, exit codes
//! checked, objects checked with the library.

use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::{bucket, data, Served, AK, SK};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::{Body, ListRequest, PutOptions};
use transfer_engine::{ObjectRef, ObjectStore, TagSet};

pub(crate) fn transfer(endpoint: &str, ledger: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_transfer"));
    c.env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .env("TRANSFER_ENDPOINT", endpoint)
        .env("TRANSFER_REGION", "cn-hangzhou")
        .env("TRANSFER_LEDGER", ledger)
        .env_remove("OSS_SESSION_TOKEN");
    c
}

pub(crate) fn run(c: &mut Command) -> Output {
    c.output().expect("run transfer")
}

pub(crate) fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last =
        stdout.lines().last().unwrap_or_else(|| panic!("no output; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["event"], "summary", "{stdout}");
    v
}

fn tree(root: &Path, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let rel = format!("dir{}/file{i}.bin", i % 2);
            let bytes = data(if i == 0 { 400 * 1024 } else { 500 + i * 10 }, i as u64);
            std::fs::create_dir_all(root.join(&rel).parent().unwrap()).unwrap();
            std::fs::write(root.join(&rel), &bytes).unwrap();
            (rel, bytes)
        })
        .collect()
}

pub(crate) async fn listed(store: &dyn ObjectStore, b: &str, prefix: &str) -> usize {
    store.list_objects(b, &ListRequest::default().prefix(Some(prefix.into()))).await.unwrap().objects.len()
}

#[tokio::test]
async fn cp_a_directory_with_tags_then_again() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "cli").await;
    let tmp = tempfile::tempdir().unwrap();
    let files = tree(&tmp.path().join("src"), 9);
    let ledger = tmp.path().join("ledger.db");
    let src = tmp.path().join("src");
    let out = run(transfer(&served.endpoint, &ledger)
        .args([
            "cp",
            "-r",
            "--json",
            "--part-size",
            "100KiB",
            "--tag",
            "path=/a=b",
            "--tagging",
            "owner=ops&k4%2B-%3D=%2B-%3D._%3A%2F",
        ])
        .arg(&src)
        .arg("oss://cli/backup/"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s = summary(&out);
    assert_eq!((s["objects_transferred"].as_u64(), s["objects_failed"].as_u64()), (Some(9), Some(0)));
    assert_eq!(s["bytes_transferred"].as_u64(), Some(files.iter().map(|(_, b)| b.len() as u64).sum()));
    assert_eq!(s["crc64_verified"], true);
    assert_eq!(listed(&store, "cli", "backup/").await, 9, "the summary's count equals the objects on the server");
    // --tag splits at the first '=' (the value may hold more); a key with '=' goes through --tagging, encoded.
    let expected_tags =
        TagSet::from_pairs([("owner", "ops"), ("k4+-=", "+-=._:/"), ("path", "/a=b")]).unwrap().sorted();
    for (rel, bytes) in &files {
        let obj = ObjectRef::new("cli", format!("backup/{rel}"));
        assert_eq!(store.get_object(&obj, None).await.unwrap().bytes().await.unwrap().as_ref(), bytes.as_slice());
        assert_eq!(store.get_tagging(&obj).await.unwrap().sorted(), expected_tags);
    }
    // A finished job is not resumed: the same command copies again, as a new job (skipping what exists is what
    // --no-clobber and --update are for). Resuming an unfinished job is the Ctrl-C test's subject.
    let first_job = s["job"].as_u64();
    let again =
        run(transfer(&served.endpoint, &ledger).args(["cp", "-r", "--json"]).arg(&src).arg("oss://cli/backup/"));
    assert_eq!(again.status.code(), Some(0));
    let s = summary(&again);
    assert_ne!(s["job"].as_u64(), first_job);
    assert_eq!((s["objects_transferred"].as_u64(), s["objects_skipped"].as_u64()), (Some(9), Some(0)));
}

#[tokio::test]
async fn bad_input_exits_2_before_any_byte_moves() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "badcli").await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    std::fs::write(&file, b"data").unwrap();
    let ledger = tmp.path().join("ledger.db");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--tag", "bad*key=v"], "--tag"),
        (vec!["--tagging", "a=b=c"], "--tagging"),
        (vec!["--part-size", "8 parsecs"], "unknown unit"),
        (vec!["--storage-class", "Gold"], "storage class"),
        (vec!["--meta", "bad_name=v"], "--meta"),
    ];
    for (flags, expect) in cases {
        let out = run(transfer(&served.endpoint, &ledger).arg("cp").args(&flags).arg(&file).arg("oss://badcli/k"));
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expect),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let missing_bucket = run(transfer(&served.endpoint, &ledger).arg("cp").arg(&file).arg("oss://no-such-bucket/k"));
    assert_eq!(missing_bucket.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing_bucket.stderr).contains("does not exist"));
    let no_creds = run(transfer(&served.endpoint, &ledger)
        .env_remove("OSS_ACCESS_KEY_ID")
        .arg("cp")
        .arg(&file)
        .arg("oss://badcli/k"));
    assert_eq!(no_creds.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_creds.stderr).contains("OSS_ACCESS_KEY_ID"));
    let unreachable = run(transfer("http://127.0.0.1:1", &ledger).arg("cp").arg(&file).arg("oss://badcli/k"));
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("check --endpoint"),
        "the error names the flag that fixes it"
    );
    let wrong_secret = run(transfer(&served.endpoint, &ledger)
        .env("OSS_ACCESS_KEY_SECRET", "wrong")
        .arg("cp")
        .arg(&file)
        .arg("oss://badcli/k"));
    assert_eq!(wrong_secret.status.code(), Some(2));
    let err = String::from_utf8_lossy(&wrong_secret.stderr);
    assert!(
        err.contains("SignatureDoesNotMatch") && err.contains("request id") && err.contains("OSS_ACCESS_KEY_SECRET"),
        "{err}"
    );
    assert!(!err.contains("=wrong") && !err.contains(" wrong"), "the secret is never printed: {err}");
    let no_region = run(transfer(&served.endpoint, &ledger)
        .env_remove("TRANSFER_REGION")
        .arg("cp")
        .arg(&file)
        .arg("oss://badcli/k"));
    assert_eq!(no_region.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_region.stderr).contains("--region"));
    let dir_without_r = run(transfer(&served.endpoint, &ledger).arg("cp").arg(tmp.path()).arg("oss://badcli/d/"));
    assert_eq!(dir_without_r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dir_without_r.stderr).contains("-r"));
    // Keys no store takes, and sources that are not files: refused before a job is recorded, never one object at
    // a time ("run `transfer resume`" could never succeed). A FIFO with no writer does not block.
    let fifo = tmp.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let long = format!("oss://badcli/{}", "k".repeat(1024));
    let refusals: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (vec![file.as_os_str(), "oss://badcli/../k".as_ref()], "'..'"),
        (vec![file.as_os_str(), "oss://badcli/a/./k".as_ref()], "'.'"),
        (vec![file.as_os_str(), long.as_ref()], "1024 bytes"),
        (vec!["-r".as_ref(), tmp.path().as_os_str(), "oss://badcli//d/".as_ref()], "prefix"),
        (vec![fifo.as_os_str(), "oss://badcli/fifo".as_ref()], "not a regular file"),
    ];
    for (args, expect) in refusals {
        let mut cmd = transfer(&served.endpoint, &ledger);
        let out = crate::util::run_within(cmd.arg("cp").args(&args), std::time::Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect) && !err.contains("transfer resume"), "{args:?}: {err}");
    }
    let jobs = run(transfer(&served.endpoint, &ledger).args(["jobs", "--json"]));
    assert!(jobs.stdout.is_empty(), "no job was recorded: {}", String::from_utf8_lossy(&jobs.stdout));
    assert_eq!(listed(&store, "badcli", "").await, 0, "nothing arrived");
}

#[tokio::test]
async fn cp_object_to_object_server_side_and_into_the_local_store() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "copycli").await;
    let tags = TagSet::from_pairs([("keep", "me")]).unwrap();
    let opts = PutOptions::default().tags(Some(tags.clone()));
    store.put_object("copycli", "src/obj", Body::from(data(3000, 1)), &opts).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let out = run(transfer(&served.endpoint, &ledger).args(["cp", "oss://copycli/src/obj", "oss://copycli/dst/obj"]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let dst = ObjectRef::new("copycli", "dst/obj");
    assert_eq!(store.get_tagging(&dst).await.unwrap(), tags);
    assert_eq!(store.get_object(&dst, None).await.unwrap().bytes().await.unwrap().as_ref(), data(3000, 1).as_slice());

    // The embedded local store: create the bucket through the library, then copy a file into it.
    let root = tmp.path().join("local");
    {
        let local = transfer_engine::local::LocalStore::open(&root).unwrap();
        transfer_engine::BucketStore::create_bucket(&local, "mine").await.unwrap();
    }
    let file = tmp.path().join("note.txt");
    std::fs::write(&file, b"hello local").unwrap();
    let out = run(transfer(&served.endpoint, &ledger)
        .args(["cp", "--local-root"])
        .arg(&root)
        .arg(&file)
        .arg("local://mine/notes/"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let local = transfer_engine::local::LocalStore::open(&root).unwrap();
    let got = local.get_object(&ObjectRef::new("mine", "notes/note.txt"), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"hello local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_gracefully_with_exit_3_and_the_same_command_resumes() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "sigint").await;
    let tmp = tempfile::tempdir().unwrap();
    let files = tree(&tmp.path().join("src"), 40);
    let ledger = tmp.path().join("ledger.db");
    let slow = FaultProxy::start(
        &served.endpoint,
        vec![Rule {
            method: Some("PUT"),
            contains: "",
            fault: Fault::Delay(Duration::from_millis(100)),
            times: 100_000,
        }],
    )
    .await;
    let src = tmp.path().join("src");
    let mut child = transfer(&slow.endpoint, &ledger)
        .args(["cp", "-r", "--json", "--jobs", "2"])
        .arg(&src)
        .arg("oss://sigint/b/")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        // Wait for three objects, then let the test send SIGINT.
        let mut seen = Vec::new();
        while let Some(Ok(line)) = lines.next() {
            seen.push(line);
            if seen.len() == 3 {
                break;
            }
        }
        (seen, lines.map_while(Result::ok).collect::<Vec<_>>())
    });
    while !reader.is_finished() && child.try_wait().unwrap().is_none() {
        let done = listed(&store, "sigint", "b/").await;
        if done >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let (_, rest) = reader.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("transfer resume"), "the resume command is printed: {err}");
    let stopped: serde_json::Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(stopped["state"], "stopped");
    let first = stopped["objects_transferred"].as_u64().unwrap();
    assert!(first < 40);

    let out = run(transfer(&served.endpoint, &ledger).args(["cp", "-r", "--json"]).arg(&src).arg("oss://sigint/b/"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s = summary(&out);
    assert_eq!(s["objects_skipped"].as_u64(), Some(first));
    assert_eq!(s["objects_transferred"].as_u64(), Some(40 - first));
    for (rel, bytes) in &files {
        let obj = ObjectRef::new("sigint", format!("b/{rel}"));
        assert_eq!(
            store.get_object(&obj, None).await.unwrap().bytes().await.unwrap().as_ref(),
            bytes.as_slice(),
            "{rel}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_initiate_answer_and_a_busy_preflight_leave_nothing_behind() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "lostinit").await;
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, file) = (tmp.path().join("ledger.db"), tmp.path().join("big"));
    let bytes = data(3 * 1024 * 1024, 41);
    std::fs::write(&file, &bytes).unwrap();
    // The bucket check meets a 503 and a reset once each (it is retried as any request is); the server
    // initiates the upload but its answer is lost (the retry finds that upload rather than leaving it behind).
    let rule = |method, contains, fault| Rule { method: Some(method), contains, fault, times: 1 };
    let proxy = FaultProxy::start(
        &served.endpoint,
        vec![
            rule("GET", "max-keys=1", Fault::Status(503, "SlowDown")),
            rule("GET", "max-keys=1", Fault::Reset),
            rule("POST", "?uploads", Fault::LoseResponse),
        ],
    )
    .await;
    let out = run(transfer(&proxy.endpoint, &ledger)
        .args(["cp", "--part-size", "1MiB", "--multipart-threshold", "1MiB", "-q"])
        .arg(&file)
        .arg("oss://lostinit/big"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(proxy.pending(), 0, "every fault was met");
    let initiates = proxy.seen().iter().filter(|s| s.method == "POST" && s.target.contains("?uploads")).count();
    assert_eq!(initiates, 1, "the lost answer's upload was found, not initiated again");
    let got = store.get_object(&ObjectRef::new("lostinit", "big"), None).await.unwrap().bytes().await.unwrap();
    assert!(got == bytes);
    let left = transfer_engine::MultipartStore::list_uploads(&store, "lostinit", &Default::default()).await.unwrap();
    assert!(left.uploads.is_empty(), "no upload left behind: {:?}", left.uploads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_appended_during_its_upload_is_not_published_and_the_rerun_sends_it_whole() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "growing").await;
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, file) = (tmp.path().join("ledger.db"), tmp.path().join("log.bin"));
    let first = data(2 * 1024 * 1024, 51);
    std::fs::write(&file, &first).unwrap();
    let slow = Rule {
        method: Some("PUT"),
        contains: "uploadId=",
        fault: Fault::Delay(Duration::from_millis(150)),
        times: 1000,
    };
    let proxy = FaultProxy::start(&served.endpoint, vec![slow]).await;
    let cmd = |endpoint: &str| {
        let mut c = transfer(endpoint, &ledger);
        c.args(["cp", "--part-size", "256KiB", "--multipart-threshold", "1MiB", "--jobs", "1"])
            .arg(&file)
            .arg("oss://growing/log.bin");
        c
    };
    let child = cmd(&proxy.endpoint).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let answered = || proxy.seen().iter().any(|s| s.method == "PUT" && s.answered.is_some());
    crate::util::until("a part answered", Duration::from_secs(60), answered).await;
    // A writer appends while the parts go.
    let more = data(100_000, 52);
    std::io::Write::write_all(&mut std::fs::OpenOptions::new().append(true).open(&file).unwrap(), &more).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // 1, as --help says: nothing of the job is in place (a directory job with other files done exits 3).
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("changed while it was being uploaded") && err.contains("nothing was published"), "{err}");
    let gone = store.head_object(&ObjectRef::new("growing", "log.bin")).await.unwrap_err();
    assert_eq!(gone.kind(), transfer_engine::ErrorKind::ObjectNotFound, "a torn object was published");

    // The same command again uploads the file as it is now, whole, and leaves no upload behind.
    let out = run(&mut cmd(&served.endpoint));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let whole: Vec<u8> = first.iter().chain(&more).copied().collect();
    let got = store.get_object(&ObjectRef::new("growing", "log.bin"), None).await.unwrap().bytes().await.unwrap();
    assert!(got == whole, "the object is the whole file");
    let left = transfer_engine::MultipartStore::list_uploads(&store, "growing", &Default::default()).await.unwrap();
    assert!(left.uploads.is_empty(), "{:?}", left.uploads);
}

#[tokio::test]
async fn bwlimit_holds_every_object_of_the_job_to_one_rate() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "paced").await;
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, dir) = (tmp.path().join("ledger.db"), tmp.path().join("src"));
    std::fs::create_dir_all(&dir).unwrap();
    // Two objects (one multipart) sent at once, 4 MiB in all, under one limit of 2 MiB/s: at least about 2 s
    // (less what the bucket may hold, a tenth of a second's worth). Only the lower bound is asserted: a limit
    // cannot make anything faster, and a loaded machine only slower.
    std::fs::write(dir.join("a.bin"), data(3 * 1024 * 1024, 61)).unwrap();
    std::fs::write(dir.join("b.bin"), data(1024 * 1024, 62)).unwrap();
    let started = std::time::Instant::now();
    let out = run(transfer(&served.endpoint, &ledger)
        .args(["cp", "-r", "--json", "--jobs", "4", "--part-size", "1MiB", "--multipart-threshold", "2MiB"])
        .args(["--bwlimit", "2MiB/s"])
        .arg(&dir)
        .arg("oss://paced/d/"));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(took >= Duration::from_millis(1800), "4 MiB at 2 MiB/s took {took:?}");
    assert_eq!(listed(&store, "paced", "d/").await, 2);
    // The limit is part of the job: `jobs show` gives it back as a flag (resume applies it again).
    let job = summary(&out)["job"].as_i64().unwrap().to_string();
    let shown = run(transfer(&served.endpoint, &ledger).args(["jobs", "show", &job]));
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.contains("--bwlimit 2MiB/s"), "{shown}");
    // Refused before anything moves: a rate that is not one, a timetable entry that is not one.
    for (bad, says) in [("fast", "50MiB/s"), ("08:00,1MiB/s 25:00,off", "not a time of day")] {
        let out = run(transfer(&served.endpoint, &ledger)
            .args(["cp", "--bwlimit", bad])
            .arg(dir.join("b.bin"))
            .arg("oss://paced/x"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(says), "{bad}: {err}");
    }
    assert_eq!(listed(&store, "paced", "x").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_turns_the_bandwidth_limit_off() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "unpaced").await;
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, file) = (tmp.path().join("ledger.db"), tmp.path().join("f.bin"));
    let bytes = data(6 * 1024 * 1024, 63);
    std::fs::write(&file, &bytes).unwrap();
    let wire = FaultProxy::start(&served.endpoint, vec![]).await;
    // At 512 KiB/s the file would take 12 s.
    let child = transfer(&wire.endpoint, &ledger)
        .args(["cp", "--part-size", "1MiB", "--multipart-threshold", "1MiB", "--bwlimit", "512KiB/s"])
        .arg(&file)
        .arg("oss://unpaced/f.bin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let part = || wire.seen().iter().any(|s| s.target.contains("partNumber="));
    crate::util::until("a part sent", Duration::from_secs(60), part).await;
    let started = std::time::Instant::now();
    let kill = Command::new("kill").args(["-USR2", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("bandwidth limit off"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(9), "the rest went unlimited: {:?}", started.elapsed());
    let got = store.get_object(&ObjectRef::new("unpaced", "f.bin"), None).await.unwrap().bytes().await.unwrap();
    assert!(got == bytes);
}

/// A directory walk uploads regular files, and files reached through a link, and nothing else: a FIFO is passed
/// over (and never opened: the run does not block on it), a link to a directory is not followed, a download's
/// temporary file stays home, and a dangling link fails by its name ("broken link") while the rest arrives.
#[tokio::test]
async fn a_directory_walk_uploads_regular_files_only() {
    let served = Served::start();
    let store = served.client(V4);
    bucket(&store, "walk").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"a").unwrap();
    std::fs::write(src.join("sub/b.txt"), b"b").unwrap();
    std::fs::write(src.join(".c.txt.transfer-7.part"), b"half a download").unwrap();
    assert!(Command::new("mkfifo").arg(src.join("fifo")).status().unwrap().success());
    std::os::unix::fs::symlink(src.join("a.txt"), src.join("link-file")).unwrap();
    std::os::unix::fs::symlink(src.join("sub"), src.join("link-dir")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), src.join("dangling")).unwrap();
    let mut cmd = transfer(&served.endpoint, &tmp.path().join("l.db"));
    let out = crate::util::run_within(
        cmd.args(["cp", "-r", "--json"]).arg(&src).arg("oss://walk/p/"),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "one failure beside what arrived: {err}");
    let failed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0]["error"].to_string().contains("broken link"), "{failed:?}");
    let page = store.list_objects("walk", &ListRequest::default()).await.unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["p/a.txt", "p/link-file", "p/sub/b.txt"]);
    let linked = store.get_object(&ObjectRef::new("walk", "p/link-file"), None).await.unwrap();
    assert_eq!(linked.bytes().await.unwrap().as_ref(), b"a", "a link to a file uploads the file it names");
}
