//! The everyday commands through the built binary (`ls`, `du`, `rm`, `cat`, `mb`, `rb`), against every target
//! that can take them: `transfer serve` in both dialects, moto and s3s-fs. Each output is parsed and checked
//! against what the store holds.

use crate::cli::{run, transfer};
use crate::cli_s3::transfer_s3;
use crate::util::caps::S3S_FS;
use crate::util::moto::{Moto, MOTO_KEY};
use crate::util::s3s::{S3sFs, S3S_KEY};
use crate::util::{data, s3_client, Served, AK, SK};
use std::path::Path;
use std::process::{Command, Output};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::{ListRequest, PutOptions};
use transfer_engine::{BucketStore, ObjectStore};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every key of `b`, with its size, as the store lists it.
async fn keys(store: &HttpStore, b: &str) -> Vec<(String, u64)> {
    let page = store.list_objects(b, &ListRequest::default()).await.unwrap();
    page.objects.into_iter().map(|e| (e.key, e.size)).collect()
}

/// mb, ls (buckets, one level, recursive, long), du, cat, rm (one, -r with filters and --dry-run), rb (refused
/// when not empty, --force), with the refusals a careless command line meets.
async fn everyday(cmd: &dyn Fn(&Path) -> Command, scheme: &str, store: &HttpStore, b: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let t = |args: &[&str]| run(cmd(&ledger).args(args));
    let url = |rest: &str| format!("{scheme}://{b}/{rest}");

    let made = t(&["mb", &url("")]);
    assert_eq!(code(&made), Some(0), "{}", stderr(&made));
    assert_eq!(code(&t(&["mb", &url("")])), Some(0), "making a bucket one has is no error");
    let big = data(100_000, 71);
    for (key, body) in [("p/a.txt", b"abc".to_vec()), ("p/sub/b.txt", b"b".to_vec()), ("p/sub/c.log", b"cc".to_vec())] {
        store.put_object(b, key, body.into(), &PutOptions::default()).await.unwrap();
    }
    store.put_object(b, "q.bin", big.clone().into(), &PutOptions::default()).await.unwrap();

    let buckets = t(&["--json", "ls", &format!("{scheme}://")]);
    assert_eq!(code(&buckets), Some(0), "{}", stderr(&buckets));
    assert!(lines(&buckets).iter().any(|l| l["bucket"] == b), "{}", String::from_utf8_lossy(&buckets.stdout));

    // One level: the prefix as a DIR row, the object beside it.
    let level = t(&["--json", "ls", &url("p/")]);
    assert_eq!(code(&level), Some(0), "{}", stderr(&level));
    let level = lines(&level);
    assert_eq!(level.len(), 2, "{level:?}");
    assert!(level.iter().any(|l| l["type"] == "prefix" && l["prefix"] == "p/sub/"), "{level:?}");
    assert!(level.iter().any(|l| l["type"] == "object" && l["key"] == "p/a.txt" && l["size"] == 3), "{level:?}");
    let all = t(&["--json", "ls", "-r", &url("")]);
    let listed: Vec<(String, u64)> =
        lines(&all).iter().map(|l| (l["key"].as_str().unwrap().to_owned(), l["size"].as_u64().unwrap())).collect();
    assert_eq!(listed, keys(store, b).await, "ls -r lists what the store holds");
    let long = t(&["ls", "-l", &url("p/")]);
    let long = String::from_utf8_lossy(&long.stdout).into_owned();
    assert!(
        long.contains("DIR  p/sub/") && long.lines().any(|l| l.ends_with("  p/a.txt") && l.contains("  3  ")),
        "{long}"
    );

    let du = t(&["--json", "du", &url("p/")]);
    assert_eq!(code(&du), Some(0), "{}", stderr(&du));
    let du = &lines(&du)[0];
    assert_eq!((du["objects"].as_u64(), du["bytes"].as_u64()), (Some(3), Some(6)), "{du}");

    let cat = t(&["cat", &url("q.bin")]);
    assert_eq!(code(&cat), Some(0), "{}", stderr(&cat));
    assert!(cat.stdout == big, "cat prints the object's bytes");
    assert_eq!(stderr(&cat), "", "and nothing else");
    let missing = t(&["cat", &url("nothing")]);
    assert_ne!(code(&missing), Some(0));
    assert!(missing.stdout.is_empty() && stderr(&missing).contains("nothing"), "{}", stderr(&missing));

    // Refusals: a bucket that is not empty, a prefix without -r, a whole bucket without --force.
    let rb = t(&["rb", &url("")]);
    assert_eq!(code(&rb), Some(1), "{}", stderr(&rb));
    assert!(stderr(&rb).contains("not empty") && stderr(&rb).contains("--force"), "{}", stderr(&rb));
    assert_eq!(code(&t(&["rm", &url("p/")])), Some(2));
    let whole = t(&["rm", "-r", &url("")]);
    assert_eq!(code(&whole), Some(2));
    assert!(stderr(&whole).contains("--force"), "{}", stderr(&whole));
    assert_eq!(keys(store, b).await.len(), 4, "nothing removed by a refusal");

    let planned = t(&["--json", "rm", "-r", "--dry-run", "--exclude", "*.log", &url("p/")]);
    assert_eq!(code(&planned), Some(0), "{}", stderr(&planned));
    let planned: Vec<String> = lines(&planned)
        .iter()
        .filter(|l| l["event"] == "planned")
        .map(|l| l["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(planned, ["p/a.txt", "p/sub/b.txt"]);
    assert_eq!(keys(store, b).await.len(), 4, "a dry run removes nothing");
    let removed = t(&["rm", "-r", "--exclude", "*.log", &url("p/")]);
    assert_eq!(code(&removed), Some(0), "{}", stderr(&removed));
    let left: Vec<String> = keys(store, b).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, ["p/sub/c.log", "q.bin"]);
    assert_eq!(code(&t(&["rm", &url("q.bin")])), Some(0));
    let again = t(&["rm", &url("q.bin")]);
    assert_eq!(code(&again), Some(1), "an object that is not there: {}", stderr(&again));

    let forced = t(&["rb", "--force", &url("")]);
    assert_eq!(code(&forced), Some(0), "{}", stderr(&forced));
    let gone = store.list_objects(b, &ListRequest::default()).await.unwrap_err();
    assert_eq!(gone.kind(), transfer_engine::ErrorKind::BucketNotFound, "{gone}");
}

/// In a versioned bucket: `rm` leaves a delete marker, `ls --all-versions` shows it and the versions under it,
/// `rm --all-versions` (after a dry run that removes nothing) removes every one, and the bucket is then empty.
async fn versions(cmd: &dyn Fn(&Path) -> Command, scheme: &str, store: &HttpStore, b: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let t = |args: &[&str]| run(cmd(&ledger).args(args));
    let url = |rest: &str| format!("{scheme}://{b}/{rest}");
    assert_eq!(code(&t(&["mb", &url("")])), Some(0));
    store.put_versioning(b, true).await.unwrap();
    for body in [b"first".to_vec(), b"second!".to_vec()] {
        store.put_object(b, "k", body.into(), &PutOptions::default()).await.unwrap();
    }
    assert_eq!(code(&t(&["rm", &url("k")])), Some(0));
    assert!(keys(store, b).await.is_empty(), "a delete marker hides the object");

    let listed = t(&["--json", "ls", "--all-versions", &url("")]);
    assert_eq!(code(&listed), Some(0), "{}", stderr(&listed));
    let listed = lines(&listed);
    let kinds: Vec<(&str, bool, u64)> = listed
        .iter()
        .map(|l| (l["type"].as_str().unwrap(), l["is_latest"].as_bool().unwrap(), l["size"].as_u64().unwrap()))
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(sorted, [("delete_marker", true, 0), ("version", false, 5), ("version", false, 7)], "{listed:?}");

    let planned = t(&["--json", "rm", "--all-versions", "--dry-run", &url("k")]);
    assert_eq!(code(&planned), Some(0), "{}", stderr(&planned));
    assert_eq!(lines(&planned).iter().filter(|l| l["event"] == "planned").count(), 3);
    let all = transfer_engine::store::VersionsRequest::default();
    assert_eq!(store.list_versions(b, &all).await.unwrap().versions.len(), 3, "a dry run removes nothing");
    let removed = t(&["rm", "--all-versions", &url("k")]);
    assert_eq!(code(&removed), Some(0), "{}", stderr(&removed));
    assert!(store.list_versions(b, &all).await.unwrap().versions.is_empty(), "nothing of k is left");
    let again = t(&["rm", "--all-versions", &url("k")]);
    assert_eq!(code(&again), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("no versions"), "{}", stderr(&again));
    let rb = t(&["rb", &url("")]);
    assert_eq!(code(&rb), Some(0), "an empty versioned bucket goes: {}", stderr(&rb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_commands_against_transfer_serve_in_both_dialects() {
    let served = Served::start();
    let endpoint = served.endpoint.clone();
    everyday(&|l| transfer(&endpoint, l), "oss", &served.client(V4), "everyday-oss").await;
    everyday(&|l| transfer_s3(&endpoint, l, (AK, SK)), "s3", &s3_client(&endpoint, (AK, SK)), "everyday-s3").await;
    versions(&|l| transfer(&endpoint, l), "oss", &served.client(V4), "versions-oss").await;
    versions(&|l| transfer_s3(&endpoint, l, (AK, SK)), "s3", &s3_client(&endpoint, (AK, SK)), "versions-s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_commands_against_moto() {
    let moto = Moto::start("everyday_commands_against_moto");
    let endpoint = moto.endpoint.clone();
    everyday(&|l| transfer_s3(&endpoint, l, MOTO_KEY), "s3", &moto.client_in("us-east-1"), "everyday-moto").await;
    versions(&|l| transfer_s3(&endpoint, l, MOTO_KEY), "s3", &moto.client_in("us-east-1"), "versions-moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_commands_against_s3s_fs() {
    let server = S3sFs::start("everyday_commands_against_s3s_fs");
    let endpoint = server.endpoint.clone();
    everyday(&|l| transfer_s3(&endpoint, l, S3S_KEY), "s3", &s3_client(&endpoint, S3S_KEY), "everyday-s3s").await;
    if S3S_FS.versioning {
        versions(&|l| transfer_s3(&endpoint, l, S3S_KEY), "s3", &s3_client(&endpoint, S3S_KEY), "versions-s3s").await;
    }
}

/// Shell completions, the manual page and the version come from the same clap definitions as the commands:
/// bash loads the script and registers it, and every command is in each.
#[test]
fn completions_man_page_and_version() {
    let t = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_transfer")).args(args).output().unwrap();
    let text = |out: &Output| {
        assert_eq!(code(out), Some(0), "{}", stderr(out));
        String::from_utf8(out.stdout.clone()).unwrap()
    };
    let bash = text(&t(&["completions", "bash"]));
    let loaded = Command::new("bash").args(["-c", &format!("{bash}\ncomplete -p transfer")]).output().unwrap();
    assert_eq!(code(&loaded), Some(0), "{}", stderr(&loaded));
    assert!(String::from_utf8_lossy(&loaded.stdout).contains(" transfer"), "bash registers the completion");
    let zsh = text(&t(&["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef transfer"), "{}", &zsh[..zsh.len().min(80)]);
    let fish = text(&t(&["completions", "fish"]));
    let man = text(&t(&["man"]));
    assert!(man.contains(".TH transfer"), "a roff manual page");
    for command in ["cp", "resume", "jobs", "cleanup", "stat", "tag", "ls", "du", "rm", "cat", "mb", "rb", "serve"] {
        assert!(bash.contains(command) && zsh.contains(command), "{command} completes");
        assert!(fish.contains(&format!("-a \"{command}\"")), "{command} completes in fish");
        assert!(man.contains(&format!("transfer\\-{command}(1)")), "{command} is in the manual page");
    }
    let version = text(&t(&["version"]));
    assert_eq!(version, format!("transfer {}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(text(&t(&["--version"])), version, "the same as --version");
    assert_eq!(code(&t(&["completions", "tcsh"])), Some(2), "an unknown shell is a usage error");
}
