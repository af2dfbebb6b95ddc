//! `s3://` addresses through the built binary: against `transfer serve`'s S3 dialect and against moto's S3 server.

use crate::cli::{run, summary, transfer};
use crate::util::caps::{TargetCaps, MOTO, S3S_FS, SERVE_S3};
use crate::util::fault::{Fault, FaultProxy, Rule};
use crate::util::moto::Moto;
use crate::util::s3s::{S3sFs, S3S_KEY};
use crate::util::{data, s3_client, Served, AK, SK};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use transfer_engine::http::HttpStore;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::{ListRequest, PutOptions, Upload, UploadId};
use transfer_engine::{BucketStore, Metadata, MultipartStore, ObjectRef, ObjectStore, TagSet};

/// `transfer` with AWS credentials and `endpoint`, and no OSS ones (an s3:// address must not need them).
pub(crate) fn transfer_s3(endpoint: &str, ledger: &Path, (id, secret): (&str, &str)) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_transfer"));
    c.env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("TRANSFER_ENDPOINT", endpoint)
        .env("TRANSFER_REGION", "us-east-1")
        .env("TRANSFER_LEDGER", ledger)
        .env_remove("OSS_ACCESS_KEY_ID")
        .env_remove("OSS_ACCESS_KEY_SECRET")
        .env_remove("AWS_SESSION_TOKEN");
    c
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A directory upload (one file multipart), a server-side prefix copy, stat and tag, through s3://.
async fn cp_stat_tag(store: &HttpStore, endpoint: &str, creds: (&str, &str), b: &str) {
    store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("small.txt"), b"small").unwrap();
    let big = data(11 * 1024 * 1024, 4);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    let out = run(transfer_s3(endpoint, &ledger, creds)
        .args(["cp", "-r", "--json", "--multipart-threshold", "6MiB", "--part-size", "5MiB", "--tag", "tier=cold"])
        .arg(&src)
        .arg(format!("s3://{b}/up/")));
    ok(&out);
    let s = summary(&out);
    assert_eq!(s["objects_transferred"].as_u64(), Some(2));
    // S3 reports no CRC-64/XZ: the summary does not claim one was verified.
    assert_eq!(s["crc64_verified"], false, "{s}");
    let obj = ObjectRef::new(b, "up/big.bin");
    assert!(store.get_object(&obj, None).await.unwrap().bytes().await.unwrap().as_ref() == big.as_slice());
    assert_eq!(store.get_tagging(&obj).await.unwrap(), TagSet::from_pairs([("tier", "cold")]).unwrap());

    let out = run(transfer_s3(endpoint, &ledger, creds).args([
        "cp",
        "-r",
        "--json",
        &format!("s3://{b}/up/"),
        &format!("s3://{b}/copy/"),
    ]));
    ok(&out);
    assert_eq!(summary(&out)["objects_transferred"].as_u64(), Some(2));
    let copied = ObjectRef::new(b, "copy/big.bin");
    assert_eq!(store.head_object(&copied).await.unwrap().size, big.len() as u64);
    assert_eq!(
        store.get_tagging(&copied).await.unwrap(),
        TagSet::from_pairs([("tier", "cold")]).unwrap(),
        "tags kept by the copy"
    );

    let out = run(transfer_s3(endpoint, &ledger, creds).args(["stat", "--json", &format!("s3://{b}/copy/small.txt")]));
    ok(&out);
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(facts["size"].as_u64(), Some(5));
    ok(&run(transfer_s3(endpoint, &ledger, creds).args([
        "tag",
        "put",
        "--tag",
        "a=b",
        &format!("s3://{b}/copy/small.txt"),
    ])));
    let tags = store.get_tagging(&ObjectRef::new(b, "copy/small.txt")).await.unwrap();
    assert_eq!(tags, TagSet::from_pairs([("a", "b")]).unwrap());
}

/// The mistakes a source address invites, each refused before a job exists: a prefix named without -r, an
/// object that is not there, a prefix with nothing under it (unless --allow-empty).
async fn source_mistakes(store: &HttpStore, endpoint: &str, creds: (&str, &str), b: &str) {
    store.create_bucket(b).await.unwrap();
    store.put_object(b, "2026/a.txt", b"a".to_vec().into(), &PutOptions::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let cp = |args: &[&str]| run(transfer_s3(endpoint, &ledger, creds).arg("cp").args(args));
    let jobs = || run(transfer_s3(endpoint, &ledger, creds).args(["jobs", "--json"]));

    let out = cp(&[&format!("s3://{b}/2026"), &format!("s3://{b}/x/")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("add -r"), "{}", stderr(&out));
    let out = cp(&[&format!("s3://{b}/nothing-here"), &format!("s3://{b}/x/")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("there is no object"), "{}", stderr(&out));

    let out = cp(&["-r", &format!("s3://{b}/misspelt/"), &format!("s3://{b}/x/")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--allow-empty") && stderr(&out).contains("misspelt"), "{}", stderr(&out));
    let out = cp(&["-r", "--allow-empty", &format!("s3://{b}/misspelt/"), &format!("s3://{b}/x/")]);
    ok(&out);
    // None of them left a job behind for a later `transfer resume` to trip on.
    let listed = jobs();
    ok(&listed);
    assert_eq!(json_lines(&listed).len(), 0, "{}", String::from_utf8_lossy(&listed.stdout));
    // The right address works.
    ok(&cp(&["-r", &format!("s3://{b}/2026"), &format!("s3://{b}/x/")]));
    assert_eq!(store.head_object(&ObjectRef::new(b, "x/a.txt")).await.unwrap().size, 1);
}

/// Several sources and a quoted glob, as s5cmd users write them; every source is checked before anything moves.
async fn several_sources_and_globs(store: &HttpStore, endpoint: &str, creds: (&str, &str), b: &str) {
    store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, d) = (tmp.path().join("ledger.db"), tmp.path());
    std::fs::create_dir_all(d.join("photos/2025")).unwrap();
    for (name, body) in [("x.jpg", "x"), ("y.jpg", "yy"), ("photos/a.jpg", "a"), ("photos/b.txt", "b")] {
        std::fs::write(d.join(name), body).unwrap();
    }
    std::fs::write(d.join("photos/2025/c.jpg"), "ccc").unwrap();
    let cp = |args: &[&str]| run(transfer_s3(endpoint, &ledger, creds).current_dir(d).arg("cp").args(args));
    let keys = |prefix: &'static str| async move {
        let page = store.list_objects(b, &ListRequest::default().prefix(Some(prefix.to_owned()))).await.unwrap();
        page.objects.into_iter().map(|o| o.key).collect::<Vec<_>>()
    };

    ok(&cp(&["x.jpg", "y.jpg", &format!("s3://{b}/many/")]));
    assert_eq!(keys("many/").await, ["many/x.jpg", "many/y.jpg"]);
    ok(&cp(&["photos/*.jpg", &format!("s3://{b}/glob/")]));
    assert_eq!(keys("glob/").await, ["glob/2025/c.jpg", "glob/a.jpg"], "names matched at any depth, as s5cmd does");

    let out = cp(&["x.jpg", "y.jpg", &format!("s3://{b}/one")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("end the destination with /"), "{}", stderr(&out));
    let out = cp(&["x.jpg", "missing.jpg", &format!("s3://{b}/m/")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.jpg does not exist"), "{}", stderr(&out));
    assert!(keys("m/").await.is_empty(), "nothing moved before every source was checked");
    let out = cp(&["nowhere/*.jpg", &format!("s3://{b}/n/")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nowhere/ does not exist"), "{}", stderr(&out));
}

#[tokio::test]
async fn s3_addresses_against_transfer_serve() {
    let served = Served::start();
    let store = s3_client(&served.endpoint, (AK, SK));
    cp_stat_tag(&store, &served.endpoint, (AK, SK), "s3cli").await;
    source_mistakes(&store, &served.endpoint, (AK, SK), "s3mistakes").await;
    several_sources_and_globs(&store, &served.endpoint, (AK, SK), "s3many").await;
    // OSS credentials do not stand in for AWS ones.
    let tmp = tempfile::tempdir().unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_transfer"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .env("TRANSFER_LEDGER", tmp.path().join("l.db"))
        .args(["stat", "--endpoint", &served.endpoint, "s3://s3cli/up/small.txt"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AWS_ACCESS_KEY_ID"));
}

#[tokio::test]
async fn s3_addresses_against_moto() {
    let moto = Moto::start("s3_addresses_against_moto");
    let creds = ("moto-test-key", "moto-test-secret");
    cp_stat_tag(&moto.client_in("us-east-1"), &moto.endpoint, creds, "s3cli-moto").await;
    source_mistakes(&moto.client_in("us-east-1"), &moto.endpoint, creds, "s3mistakes-moto").await;
    several_sources_and_globs(&moto.client_in("us-east-1"), &moto.endpoint, creds, "s3many-moto").await;

    // S3's bucket names may hold dots; OSS's may not: each dialect judges by its own rule.
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, file) = (tmp.path().join("l.db"), tmp.path().join("f.txt"));
    std::fs::write(&file, b"dotted").unwrap();
    let out = run(transfer_s3(&moto.endpoint, &ledger, creds)
        .args(["cp", "--create-bucket"])
        .arg(&file)
        .arg("s3://logs.example.test/f.txt"));
    ok(&out);
    let got =
        moto.client_in("us-east-1").get_object(&ObjectRef::new("logs.example.test", "f.txt"), None).await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"dotted");
    let out =
        run(transfer_s3(&moto.endpoint, &ledger, creds).arg("cp").arg(&file).arg("oss://logs.example.test/f.txt"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not valid"), "{}", stderr(&out));
}

#[tokio::test]
async fn s3_addresses_against_s3s_fs() {
    let server = S3sFs::start("s3_addresses_against_s3s_fs");
    let store = s3_client(&server.endpoint, S3S_KEY);
    if S3S_FS.tagging {
        cp_stat_tag(&store, &server.endpoint, S3S_KEY, "s3cli-s3s").await;
    }
    if S3S_FS.prefix_is_no_object {
        source_mistakes(&store, &server.endpoint, S3S_KEY, "s3mistakes-s3s").await;
    }
    several_sources_and_globs(&store, &server.endpoint, S3S_KEY, "s3many-s3s").await;
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Without `--copy-threshold` a server-side copy is one CopyObject below `--multipart-threshold` (64 MiB) and
/// UploadPartCopy parts from there: the same 6 MiB object, copied through both dialects of `transfer serve`, is
/// one CopyObject by default and UploadPartCopy parts with a threshold below its size. A threshold above the
/// destination's CopyObject limit (OSS 1 GiB, S3 5 GiB) is lowered to it, with a warning (2 GiB is above OSS's
/// limit, not S3's). A job started without a threshold records none, and `transfer resume` copies with one
/// CopyObject again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_follow_the_destinations_copy_limit_in_both_dialects() {
    let served = Served::start();
    let oss = served.client(V4);
    oss.create_bucket("limits").await.unwrap();
    let mut metadata = Metadata::with_user([("origin", "cli")]).unwrap();
    metadata.content_type = Some("application/x-test".into());
    let tags = TagSet::from_pairs([("tier", "cold")]).unwrap();
    let bytes = data(6 * 1024 * 1024 + 5, 9);
    let opts = PutOptions::default().metadata(metadata.clone()).tags(Some(tags.clone()));
    oss.put_object("limits", "src.bin", bytes.clone().into(), &opts).await.unwrap();
    let arrived = |key: String| {
        let (oss, metadata, tags, bytes) = (&oss, &metadata, &tags, &bytes);
        async move {
            let obj = ObjectRef::new("limits", key);
            let head = oss.head_object(&obj).await.unwrap();
            assert_eq!(
                (&head.metadata.user, &head.metadata.content_type),
                (&metadata.user, &metadata.content_type),
                "{obj}"
            );
            assert_eq!(oss.get_tagging(&obj).await.unwrap(), *tags, "{obj}");
            assert!(
                oss.get_object(&obj, None).await.unwrap().bytes().await.unwrap().as_ref() == bytes.as_slice(),
                "{obj}"
            );
        }
    };
    // Counts the UploadPartCopy requests (`PUT ...?partNumber=`) on their way to the server.
    let parts_counter = FaultProxy::start(
        &served.endpoint,
        vec![Rule { method: Some("PUT"), contains: "partNumber=", fault: Fault::Delay(Duration::ZERO), times: 1_000 }],
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let cli = |scheme: &str, endpoint: &str| match scheme {
        "oss" => transfer(endpoint, &ledger),
        _ => transfer_s3(endpoint, &ledger, (AK, SK)),
    };
    // (scheme, its CopyObject limit, its smallest part (a smaller --part-size is refused), parts of that size)
    for (scheme, limit, part, parts) in [("oss", "1.00 GiB", "1MiB", 7), ("s3", "5.00 GiB", "5MiB", 2)] {
        let src = format!("{scheme}://limits/src.bin");
        let plan = |extra: &[&str]| {
            let out = run(cli(scheme, &served.endpoint)
                .args(["cp", "--dry-run", "--json"])
                .args(extra)
                .args([&src, &format!("{scheme}://limits/plan")]));
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            (json_lines(&out).remove(0), stderr(&out))
        };
        let (planned, err) = plan(&[]);
        assert_eq!(planned["action"], "copy", "{planned}");
        assert!(!err.contains("--copy-threshold"), "{err}");
        let (planned, err) = plan(&["--copy-threshold", "1MiB", "--part-size", part]);
        assert_eq!(
            (planned["action"].as_str(), planned["parts"].as_u64()),
            (Some("multipart_copy"), Some(parts)),
            "{planned}"
        );
        assert!(!err.contains("--copy-threshold"), "{err}");
        // Above the destination's limit: lowered to it, and said so.
        for threshold in ["2GiB", "6GiB"] {
            let (planned, err) = plan(&["--copy-threshold", threshold]);
            assert_eq!(planned["action"], "copy", "{planned}");
            let lowered = scheme == "oss" || threshold == "6GiB";
            let warning = format!(
                "--copy-threshold {}.00 GiB is above the largest object one CopyObject copies on {scheme}:// ({limit})",
                &threshold[..1]
            );
            assert_eq!(err.contains(&warning), lowered, "{warning:?} in {err}");
        }

        // Real copies: one CopyObject by default, UploadPartCopy parts below the threshold.
        for (extra, dest, part_copies) in
            [(&[][..], "default", 0), (&["--copy-threshold", "1MiB", "--part-size", part][..], "parts", parts)]
        {
            let before = parts_counter.injected() as u64;
            let key = format!("{scheme}-{dest}");
            let out = run(cli(scheme, &parts_counter.endpoint)
                .args(["cp", "--json"])
                .args(extra)
                .args([&src, &format!("{scheme}://limits/{key}")]));
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            let done = json_lines(&out).into_iter().find(|l| l["event"] == "done").unwrap();
            assert_eq!(done["parts_sent"].as_u64(), Some(part_copies.max(1)), "{done}");
            assert_eq!(
                parts_counter.injected() as u64 - before,
                part_copies,
                "{scheme} {dest}: UploadPartCopy requests"
            );
            arrived(key).await;
        }
    }

    // Resume: a job started without a threshold records none, and resumes with the store's limit: one CopyObject.
    let denied_once = FaultProxy::start(
        &parts_counter.endpoint,
        vec![Rule { method: Some("PUT"), contains: "resumed", fault: Fault::Status(403, "AccessDenied"), times: 1 }],
    )
    .await;
    let failed = run(transfer_s3(&denied_once.endpoint, &ledger, (AK, SK)).args([
        "cp",
        "--json",
        "s3://limits/src.bin",
        "s3://limits/resumed",
    ]));
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let job = summary(&failed)["job"].as_i64().unwrap().to_string();
    let shown = run(transfer_s3(&served.endpoint, &ledger, (AK, SK)).args(["jobs", "show", "--json", &job]));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(shown["options"]["cp"]["copy_threshold"].is_null(), "{shown}");
    let before = parts_counter.injected();
    let out = run(transfer_s3("http://127.0.0.1:1", &ledger, (AK, SK)).args(["resume", "--json", &job]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let done = json_lines(&out).into_iter().find(|l| l["event"] == "done").unwrap();
    assert_eq!((done["parts_sent"].as_u64(), parts_counter.injected() - before), (Some(1), 0), "{done}");
    arrived("resumed".into()).await;
}

/// `--checksum` picks how the server checks the bodies: on s3://, a CRC-32C by default (declared on the
/// multipart upload) and Content-MD5 with `md5`; on oss://, `md5` adds Content-MD5 to the CRC-64 check and
/// `crc32c` is refused before anything moves. Seen on the wire through a proxy; the bytes arrive either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_option_picks_what_the_server_checks() {
    let served = Served::start();
    let oss = served.client(V4);
    oss.create_bucket("sums").await.unwrap();
    let proxy = FaultProxy::start(&served.endpoint, vec![]).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f.bin");
    let bytes = data(7 * 1024 * 1024 + 1, 6);
    std::fs::write(&file, &bytes).unwrap();
    let parts = ["--multipart-threshold", "5MiB", "--part-size", "5MiB"];
    // Bodies sent (PUTs) and uploads declared (POST ?uploads) since `from`, with the headers they carried.
    let bodies = |from: usize| -> Vec<crate::util::fault::Seen> {
        proxy.seen().into_iter().skip(from).filter(|s| s.method == "PUT" || s.target.ends_with("?uploads")).collect()
    };

    for (checksum, key) in [(None, "crc.bin"), (Some("md5"), "md5.bin")] {
        let from = proxy.seen().len();
        let mut c = transfer_s3(&proxy.endpoint, &tmp.path().join("l.db"), (AK, SK));
        c.args(["cp", "-q"]).args(parts).arg(&file).arg(format!("s3://sums/{key}"));
        if let Some(v) = checksum {
            c.args(["--checksum", v]);
        }
        ok(&run(&mut c));
        let seen = bodies(from);
        assert_eq!(seen.len(), 3, "{seen:?}");
        for s in &seen {
            let declared = s.target.ends_with("?uploads");
            match checksum {
                None if declared => assert!(s.has("x-amz-checksum-algorithm"), "{s:?}"),
                None => assert!(s.has("x-amz-checksum-crc32c") && !s.has("content-md5"), "{s:?}"),
                Some(_) => assert!(!s.has("x-amz-checksum-algorithm") && !s.has("x-amz-checksum-crc32c"), "{s:?}"),
            }
            if checksum.is_some() && !declared {
                assert!(s.has("content-md5"), "{s:?}");
            }
        }
        let got = oss.get_object(&ObjectRef::new("sums", key), None).await.unwrap().bytes().await.unwrap();
        assert!(got.as_ref() == bytes.as_slice(), "{key}");
    }

    // oss://: md5 adds Content-MD5; crc32c is not an OSS checksum.
    let from = proxy.seen().len();
    let ledger = tmp.path().join("l.db");
    ok(&run(crate::cli::transfer(&proxy.endpoint, &ledger)
        .args(["cp", "-q", "--checksum", "md5"])
        .args(parts)
        .arg(&file)
        .arg("oss://sums/oss-md5.bin")));
    let puts: Vec<_> = bodies(from).into_iter().filter(|s| s.method == "PUT").collect();
    assert!(puts.len() == 2 && puts.iter().all(|s| s.has("content-md5")), "{puts:?}");
    let out = run(crate::cli::transfer(&proxy.endpoint, &ledger)
        .args(["cp", "--checksum", "crc32c"])
        .arg(&file)
        .arg("oss://sums/no.bin"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--checksum crc32c is for s3://"), "{}", stderr(&out));
    assert!(oss
        .head_object(&ObjectRef::new("sums", "no.bin"))
        .await
        .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound));
}

/// What a migration does, through the binary, on any S3 server: a directory (one file multipart) and one file
/// uploaded, a prefix copied server-side with UploadPartCopy, and an upload killed mid-way then resumed by the
/// same command. Tags where the server has tagging; the resume checks what was reused where ListParts tells.
async fn migrate_and_resume(store: &HttpStore, endpoint: &str, creds: (&str, &str), b: &str, caps: TargetCaps) {
    let tagging = caps.tagging;
    store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger.db");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/small.txt"), b"small").unwrap();
    let big = data(11 * 1024 * 1024, 31);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    let read = |key: &'static str| async move {
        store.get_object(&ObjectRef::new(b, key), None).await.unwrap().bytes().await.unwrap().to_vec()
    };
    let parts = ["--multipart-threshold", "6MiB", "--part-size", "5MiB", "--copy-threshold", "6MiB"];
    let tag: &[&str] = if tagging { &["--tag", "tier=cold"] } else { &[] };

    let out = run(transfer_s3(endpoint, &ledger, creds)
        .args(["cp", "-r", "--json"])
        .args(parts)
        .args(tag)
        .arg(&src)
        .arg(format!("s3://{b}/up/")));
    ok(&out);
    assert_eq!(summary(&out)["objects_transferred"].as_u64(), Some(2));
    assert!(read("up/big.bin").await == big && read("up/sub/small.txt").await == b"small");
    if tagging {
        let tags = store.get_tagging(&ObjectRef::new(b, "up/big.bin")).await.unwrap();
        assert_eq!(tags, TagSet::from_pairs([("tier", "cold")]).unwrap());
    }
    let out = run(transfer_s3(endpoint, &ledger, creds)
        .args(["cp", "--json"])
        .arg(src.join("sub/small.txt"))
        .arg(format!("s3://{b}/one.txt")));
    ok(&out);
    assert_eq!(read("one.txt").await, b"small");

    // Server-side: the big object as UploadPartCopy parts, the small one as CopyObject.
    let out = run(transfer_s3(endpoint, &ledger, creds)
        .args(["cp", "-r", "--json"])
        .args(parts)
        .args([format!("s3://{b}/up/"), format!("s3://{b}/copy/")]));
    ok(&out);
    let lines = json_lines(&out);
    let big_done =
        lines.iter().find(|l| l["event"] == "done" && l["key"].as_str().is_some_and(|k| k.ends_with("big.bin")));
    assert_eq!(big_done.and_then(|d| d["parts_sent"].as_u64()), Some(3), "{lines:?}");
    assert!(read("copy/big.bin").await == big && read("copy/sub/small.txt").await == b"small");

    // Killed mid-upload, then the same command again.
    let file = tmp.path().join("resumed.bin");
    let resumed = data(15 * 1024 * 1024 + 7, 32);
    std::fs::write(&file, &resumed).unwrap();
    let slow = Rule {
        method: Some("PUT"),
        contains: "uploadId=",
        fault: Fault::Delay(Duration::from_millis(700)),
        times: 1000,
    };
    let proxy = FaultProxy::start(endpoint, vec![slow]).await;
    let cmd = |endpoint: &str| {
        let mut c = transfer_s3(endpoint, &ledger, creds);
        c.args(["cp", "--json", "--jobs", "1"]).args(parts).arg(&file).arg(format!("s3://{b}/resumed.bin"));
        c
    };
    let mut child =
        cmd(&proxy.endpoint).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let started = std::time::Instant::now();
    while proxy.seen().iter().filter(|s| s.method == "PUT" && s.answered.is_some()).count() < 1 {
        assert!(child.try_wait().unwrap().is_none(), "the upload ended before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(30), "no part arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // What the server holds once the killed run's requests settled; the rerun, counted at a proxy, sends exactly
    // the other parts.
    let settled = || proxy.seen().iter().all(|s| s.answered.is_some());
    crate::util::until("the killed run's requests settle", Duration::from_secs(30), settled).await;
    // The upload id, as the killed run's parts named it (s3s-fs has no ListMultipartUploads).
    let seen = proxy.seen();
    let upload_id = seen.iter().find_map(|s| s.target.split("uploadId=").nth(1)?.split('&').next()).expect("a part");
    let upload_id = percent_decode(upload_id);
    // `cleanup` reaches the killed job's store in the dialect it recorded (S3): a dry run names its upload.
    if caps.list_uploads {
        let out =
            run(transfer_s3(endpoint, &ledger, creds).args(["cleanup", "--dry-run", "--json", "--include-resumable"]));
        ok(&out);
        assert_eq!(crate::cli_ops::upload_ids(&out, "would_abort"), vec![upload_id.clone()]);
    }
    let listed = store.list_parts(&Upload::new(b, "resumed.bin", UploadId::new(upload_id)), None, None).await;
    let listed = listed.unwrap().parts;
    // A part the server lists is kept when the ledger recorded it, or else when the listing lets the file's bytes
    // be checked against it (an ETag, where the matrix says ListParts has them; else it is sent again).
    let recorded: Vec<u32> = {
        let l = transfer_engine::checkpoint::Ledger::open(&ledger).unwrap();
        let job = l.jobs().unwrap().last().unwrap().id;
        let row = l.object(job, &file.to_string_lossy()).unwrap().unwrap();
        l.parts(row.id).unwrap().iter().map(|p| p.number).collect()
    };
    assert!(listed.iter().all(|p| p.etag.is_empty() != caps.list_parts_etags), "ETags as the matrix says: {listed:?}");
    let kept: Vec<u32> = listed
        .iter()
        .filter(|p| caps.list_parts_etags || recorded.contains(&p.part_number.get()))
        .map(|p| p.part_number.get())
        .collect();
    let wire = FaultProxy::start(endpoint, vec![]).await;
    let out = run(&mut cmd(&wire.endpoint));
    ok(&out);
    let mut sent: Vec<u32> = wire.seen().iter().filter(|s| s.method == "PUT").filter_map(|s| s.part_number()).collect();
    sent.sort_unstable();
    let expected: Vec<u32> = (1..=4).filter(|n| !kept.contains(n)).collect();
    assert_eq!(sent, expected, "kept {kept:?} (recorded {recorded:?})");
    let done = json_lines(&out).into_iter().find(|l| l["event"] == "done").unwrap();
    assert_eq!(done["parts_reused"].as_u64(), Some(kept.len() as u64), "{done}");
    assert!(read("resumed.bin").await == resumed, "the resumed object is the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_and_its_resume_against_transfer_serve() {
    let served = Served::start();
    let store = s3_client(&served.endpoint, (AK, SK));
    migrate_and_resume(&store, &served.endpoint, (AK, SK), "s3migrate", SERVE_S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_and_its_resume_against_moto() {
    let moto = Moto::start("a_migration_and_its_resume_against_moto");
    let creds = ("moto-test-key", "moto-test-secret");
    migrate_and_resume(&moto.client_in("us-east-1"), &moto.endpoint, creds, "s3migrate-moto", MOTO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_and_its_resume_against_s3s_fs() {
    let server = S3sFs::start("a_migration_and_its_resume_against_s3s_fs");
    let store = s3_client(&server.endpoint, S3S_KEY);
    migrate_and_resume(&store, &server.endpoint, S3S_KEY, "s3migrate-s3s", S3S_FS).await;
}

/// `%XX` sequences of a query value decoded.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8")
}
