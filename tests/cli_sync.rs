//! `transfer sync` through the built binary, against `transfer serve` in both dialects, moto and s3s-fs. Every run goes
//! through a recording proxy, so what is asserted is what crossed the wire: a re-run after three edits (one of
//! the same size), two deletions and one addition sends exactly those writes and one DeleteMultiple, and the
//! run after it sends nothing but its listings. The same for bucket to directory and bucket to bucket; then
//! --max-delete, --dry-run, an empty source, overlapping sides, a listing that fails half-way and the resumed
//! pass that lists only after where it stopped.

use crate::cli::{run, summary, transfer};
use crate::cli_s3::transfer_s3;
use crate::util::caps::{TargetCaps, MOTO, S3S_FS, SERVE_OSS, SERVE_S3};
use crate::util::fault::{Fault, FaultProxy, Rule, Seen};
use crate::util::moto::{Moto, MOTO_KEY};
use crate::util::s3s::{S3sFs, S3S_KEY};
use crate::util::{data, s3_client, Served, AK, SK};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::{ListRequest, PutOptions};
use transfer_engine::{BucketStore, ObjectStore};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

fn events(out: &Output, kind: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == kind)
        .collect()
}

/// A target as the binary sees it through a proxy: `cmd(endpoint, ledger)`, its scheme, a client to check with.
struct Target<'a> {
    cmd: &'a dyn Fn(&str, &Path) -> Command,
    endpoint: String,
    scheme: &'static str,
    store: HttpStore,
    /// Its entry in the capability matrix: where listings carry no ETags, the listing cannot say an object is
    /// the one the ledger wrote, and every entry on both sides costs a HEAD.
    caps: TargetCaps,
}

impl Target<'_> {
    /// What a run that changes nothing sends: no write, no read of a body; HEADs only where the listing has no
    /// ETags (`heads` of them).
    /// `lists`: the one check that the buckets exist, and a page per side listed.
    fn quiet(&self, heads: usize, lists: usize) -> Sent {
        Sent { heads: if self.caps.listed_etags { 0 } else { heads }, lists, ..Sent::default() }
    }
}

/// What a run sent, by kind: object writes (PUT without a copy source), copies, DeleteMultiple, single
/// DELETEs, GETs of objects, HEADs, listings.
#[derive(Debug, Default, PartialEq, Eq)]
struct Sent {
    puts: usize,
    copies: usize,
    delete_multiple: usize,
    deletes: usize,
    gets: usize,
    heads: usize,
    lists: usize,
}

fn sent(seen: &[Seen]) -> Sent {
    let mut s = Sent::default();
    for r in seen {
        let copy = r.has("x-oss-copy-source") || r.has("x-amz-copy-source");
        let listing = r.target.contains("list-type") || r.target.contains("prefix=") || r.target.ends_with('/');
        match r.method.as_str() {
            "PUT" if copy => s.copies += 1,
            "PUT" => s.puts += 1,
            "POST" if r.target.contains("delete") => s.delete_multiple += 1,
            "POST" => s.puts += 1,
            "DELETE" => s.deletes += 1,
            "GET" if !listing => s.gets += 1,
            "GET" => s.lists += 1,
            "HEAD" => s.heads += 1,
            _ => {}
        }
    }
    s
}

/// Every object under `prefix` with its bytes.
async fn objects(store: &HttpStore, b: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let req = ListRequest::default().prefix(Some(prefix.to_owned()));
    let page = store.list_objects(b, &req).await.unwrap();
    let mut out = BTreeMap::new();
    for e in page.objects {
        let body =
            store.get_object(&transfer_engine::ObjectRef::new(b, &e.key), None).await.unwrap().bytes().await.unwrap();
        out.insert(e.key[prefix.len()..].to_owned(), body.to_vec());
    }
    out
}

/// Every file under `root` with its bytes, by its path relative to `root`.
pub(crate) fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn write(root: &Path, rel: &str, body: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// A tree whose names exercise the order a directory walk must share with a listing (`a-b` < `a.txt` < `a/`).
fn tree(root: &Path) {
    for (rel, seed) in [("a-b", 1), ("a.txt", 2), ("a/x", 3), ("a/y/z", 4), ("b", 5), ("c/d", 6), ("c/e", 7)] {
        write(root, rel, &data(1000 + seed as usize * 10, seed));
    }
}

/// Runs the binary through a fresh recording proxy, and answers its output and what it sent.
async fn through_proxy(t: &Target<'_>, ledger: &Path, args: &[&str]) -> (Output, Sent) {
    let proxy = FaultProxy::start(&t.endpoint, vec![]).await;
    let out = run((t.cmd)(&proxy.endpoint, ledger).args(args));
    (out, sent(&proxy.seen()))
}

async fn directory_to_bucket(t: &Target<'_>, b: &str) {
    t.store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, src) = (tmp.path().join("l.db"), tmp.path().join("src"));
    tree(&src);
    let url = format!("{}://{b}/p", t.scheme);
    let src_arg = src.to_str().unwrap();

    let (first, wire) = through_proxy(t, &ledger, &["--json", "sync", src_arg, &url, "--delete"]).await;
    ok(&first);
    assert_eq!((wire.puts, wire.delete_multiple, summary(&first)["objects_transferred"].as_u64()), (7, 0, Some(7)));
    assert_eq!(objects(&t.store, b, "p/").await, files(&src));

    // Three edits (one keeps the size), two deletions, one addition.
    write(&src, "a.txt", &data(1020, 99)); // the same size, other bytes
    write(&src, "b", &data(10, 98));
    write(&src, "c/e", &data(5000, 97));
    std::fs::remove_file(src.join("a/y/z")).unwrap();
    std::fs::remove_file(src.join("c/d")).unwrap();
    write(&src, "new/f", b"new");
    let (second, wire) = through_proxy(t, &ledger, &["--json", "sync", src_arg, &url, "--delete"]).await;
    ok(&second);
    // The same-size edit is told without a request: by the object's CRC-64 the ledger holds (OSS), or by the MD5
    // the listed ETag is; a listing without ETags costs a HEAD per entry compared.
    let heads = if t.caps.listed_etags { 0 } else { 3 };
    assert_eq!(wire, Sent { puts: 4, delete_multiple: 1, heads, lists: 2, ..Sent::default() }, "{}", stderr(&second));
    let s = summary(&second);
    assert_eq!(
        (s["objects_transferred"].as_u64(), s["objects_unchanged"].as_u64(), s["objects_deleted"].as_u64()),
        (Some(4), Some(2), Some(2)),
        "{s}"
    );
    let deleted: Vec<_> = events(&second, "deleted").iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(deleted, ["p/a/y/z", "p/c/d"]);
    assert_eq!(objects(&t.store, b, "p/").await, files(&src));

    // Nothing changed: no write, no delete, not even a HEAD (the ledger knows what it wrote).
    let (third, wire) = through_proxy(t, &ledger, &["--json", "sync", src_arg, &url, "--delete"]).await;
    ok(&third);
    assert_eq!(wire, t.quiet(6, 2), "{}", stderr(&third));
    assert_eq!(summary(&third)["objects_unchanged"].as_u64(), Some(6));

    // A lost ledger costs reads of the files, not writes: each is compared with the MD5 its object's listed ETag
    // is (a HEAD each where the listing has none).
    let fresh = tmp.path().join("fresh.db");
    let (lost, wire) = through_proxy(t, &fresh, &["--json", "sync", src_arg, &url, "--delete"]).await;
    ok(&lost);
    assert_eq!(wire, t.quiet(6, 2), "{}", stderr(&lost));

    // --max-delete: one of three, exit 3; the next run goes on with the rest.
    for rel in ["a-b", "a/x", "b"] {
        std::fs::remove_file(src.join(rel)).unwrap();
    }
    let (held, wire) =
        through_proxy(t, &ledger, &["--json", "sync", src_arg, &url, "--delete", "--max-delete", "1"]).await;
    assert_eq!(held.status.code(), Some(3), "{}", stderr(&held));
    assert_eq!(events(&held, "deleted").len(), 1);
    assert_eq!((wire.delete_multiple, summary(&held)["deletions_withheld"].as_u64()), (1, Some(2)));
    assert!(stderr(&held).contains("--max-delete"), "{}", stderr(&held));
    assert_eq!(objects(&t.store, b, "p/").await.len(), files(&src).len() + 2);
    // A dry run lists the two left and deletes nothing.
    let dry = run((t.cmd)(&t.endpoint, &ledger).args(["sync", "--dry-run", src_arg, &url, "--delete"]));
    ok(&dry);
    let listed = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(listed.lines().filter(|l| l.starts_with("DELETE")).count(), 2, "{listed}");
    assert_eq!(objects(&t.store, b, "p/").await.len(), files(&src).len() + 2);
    let rest = run((t.cmd)(&t.endpoint, &ledger).args(["sync", src_arg, &url, "--delete"]));
    ok(&rest);
    assert_eq!(objects(&t.store, b, "p/").await, files(&src));

    // An empty source (a misspelt directory would be one) deletes nothing unless asked.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let refused = run((t.cmd)(&t.endpoint, &ledger).args(["sync", empty.to_str().unwrap(), &url, "--delete"]));
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--allow-empty-source"), "{}", stderr(&refused));
    assert_eq!(objects(&t.store, b, "p/").await, files(&src));
    let emptied = run((t.cmd)(&t.endpoint, &ledger).args([
        "sync",
        empty.to_str().unwrap(),
        &url,
        "--delete",
        "--allow-empty-source",
    ]));
    ok(&emptied);
    assert!(objects(&t.store, b, "p/").await.is_empty());
}

async fn bucket_to_directory_and_bucket(t: &Target<'_>, b: &str) {
    t.store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, out) = (tmp.path().join("l.db"), tmp.path().join("out"));
    let put = |key: &'static str, body: Vec<u8>| {
        let store = &t.store;
        async move { store.put_object(b, key, body.into(), &PutOptions::default()).await.unwrap() }
    };
    for (key, seed) in [("s/a-b", 1u64), ("s/a.txt", 2), ("s/a/x", 3), ("s/b", 4), ("s/c/d", 5)] {
        put(key, data(2000, seed)).await;
    }
    let src = format!("{}://{b}/s", t.scheme);
    let dst = format!("{}://{b}/m", t.scheme);
    let out_arg = out.to_str().unwrap();

    let (first, wire) = through_proxy(t, &ledger, &["--json", "sync", &src, out_arg]).await;
    ok(&first);
    assert_eq!(wire.gets, 5, "{}", stderr(&first));
    let (copied, wire) = through_proxy(t, &ledger, &["--json", "sync", &src, &dst]).await;
    ok(&copied);
    assert_eq!((wire.copies, wire.puts), (5, 0), "server-side: {}", stderr(&copied));
    assert_eq!(files(&out), objects(&t.store, b, "s/").await);
    assert_eq!(objects(&t.store, b, "m/").await, objects(&t.store, b, "s/").await);

    put("s/a.txt", data(2000, 90)).await; // the same size
    put("s/b", data(10, 91)).await;
    t.store.delete_object(&transfer_engine::ObjectRef::new(b, "s/c/d")).await.unwrap();
    put("s/n/e/w", b"new".to_vec()).await;
    let (second, wire) = through_proxy(t, &ledger, &["--json", "sync", &src, out_arg, "--delete"]).await;
    ok(&second);
    assert_eq!((wire.gets, wire.puts, wire.delete_multiple), (3, 0, 0), "{}", stderr(&second));
    assert_eq!(files(&out), objects(&t.store, b, "s/").await);
    let (copied, wire) = through_proxy(t, &ledger, &["--json", "sync", &src, &dst, "--delete"]).await;
    ok(&copied);
    assert_eq!((wire.copies, wire.delete_multiple, wire.puts), (3, 1, 0), "{}", stderr(&copied));
    assert_eq!(objects(&t.store, b, "m/").await, objects(&t.store, b, "s/").await);

    // Nothing changed: nothing fetched, copied or deleted, and no HEAD.
    for (dest, heads, lists) in [(out_arg, 5, 2), (dst.as_str(), 10, 3)] {
        let (again, wire) = through_proxy(t, &ledger, &["--json", "sync", &src, dest, "--delete"]).await;
        ok(&again);
        assert_eq!(wire, t.quiet(heads, lists), "{dest}: {}", stderr(&again));
    }

    // Sides inside each other, and an unknown comparison, are refused before anything moves.
    let inside = run((t.cmd)(&t.endpoint, &ledger).args(["sync", &src, &format!("{src}/deeper")]));
    assert_eq!(inside.status.code(), Some(2), "{}", stderr(&inside));
    assert!(stderr(&inside).contains("overlap"), "{}", stderr(&inside));
    let two = run((t.cmd)(&t.endpoint, &ledger).args(["sync", &src, &dst, out_arg]));
    assert_eq!(two.status.code(), Some(2), "one SRC, one DST: {}", stderr(&two));
    let unknown = run((t.cmd)(&t.endpoint, &ledger).args(["sync", "--compare", "md4", &src, out_arg]));
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("size-crc"), "{}", stderr(&unknown));
}

/// Every flow above the target's entry in the capability matrix lets it run, in buckets named after `name`.
async fn every_flow(t: &Target<'_>, name: &str) {
    directory_to_bucket(t, &format!("sync-{name}")).await;
    bucket_to_directory_and_bucket(t, &format!("sync-b-{name}")).await;
    comparisons(t, &format!("sync-c-{name}")).await;
    if t.caps.tagging {
        filters_tags_and_metadata(t, &format!("sync-f-{name}")).await;
    }
    if t.caps.versioning {
        versioned(t, &format!("sync-v-{name}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_against_transfer_serve_in_both_dialects() {
    let served = Served::start();
    let oss = |ep: &str, l: &Path| transfer(ep, l);
    let target = Target {
        cmd: &oss,
        endpoint: served.endpoint.clone(),
        scheme: "oss",
        store: served.client(V4),
        caps: SERVE_OSS,
    };
    every_flow(&target, "oss").await;
    let s3 = |ep: &str, l: &Path| transfer_s3(ep, l, (AK, SK));
    let store = s3_client(&served.endpoint, (AK, SK));
    let target = Target { cmd: &s3, endpoint: served.endpoint.clone(), scheme: "s3", store, caps: SERVE_S3 };
    every_flow(&target, "s3").await;
}

/// Each comparison does what it says, told apart by what crosses the wire: `size` misses a same-size edit that
/// the default catches; a touch that keeps the bytes is sent again under `size-mtime`, not under `size-crc`;
/// `etag` catches a same-size rewrite of a source object that `size` misses, bucket to bucket.
async fn comparisons(t: &Target<'_>, b: &str) {
    t.store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, src) = (tmp.path().join("l.db"), tmp.path().join("src"));
    write(&src, "a", &data(1000, 1));
    write(&src, "b", &data(1000, 2));
    let (url, copy, src_arg) =
        (format!("{}://{b}/c", t.scheme), format!("{}://{b}/d", t.scheme), src.to_str().unwrap());
    let sent_by = |args: Vec<&str>| {
        let args: Vec<String> = ["--json", "sync"].iter().copied().chain(args).map(str::to_owned).collect();
        let ledger = ledger.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (out, wire) = through_proxy(t, &ledger, &args).await;
            ok(&out);
            wire
        }
    };
    assert_eq!(sent_by(vec![src_arg, &url]).await.puts, 2);

    write(&src, "a", &data(1000, 3));
    assert_eq!(sent_by(vec!["--compare", "size", src_arg, &url]).await.puts, 0, "size misses it");
    assert_eq!(sent_by(vec![src_arg, &url]).await.puts, 1, "size-crc catches it");
    assert_eq!(objects(&t.store, b, "c/").await, files(&src));

    let touched = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 5);
    std::fs::File::options().write(true).open(src.join("b")).unwrap().set_modified(touched).unwrap();
    assert_eq!(sent_by(vec![src_arg, &url]).await.puts, 0, "the same bytes");
    assert_eq!(sent_by(vec!["--compare", "size-mtime", src_arg, &url]).await.puts, 1, "another mtime");
    assert_eq!(sent_by(vec!["--compare", "size-mtime", src_arg, &url]).await.puts, 0);

    assert_eq!(sent_by(vec!["--compare", "etag", &url, &copy]).await.copies, 2);
    t.store.put_object(b, "c/a", data(1000, 4).into(), &PutOptions::default()).await.unwrap();
    assert_eq!(sent_by(vec!["--compare", "size", &url, &copy]).await.copies, 0, "size misses a same-size rewrite");
    assert_eq!(sent_by(vec!["--compare", "etag", &url, &copy]).await.copies, 1, "etag catches it");
    assert_eq!(objects(&t.store, b, "d/").await, objects(&t.store, b, "c/").await);
}

/// cp's options that apply work in a sync: the filters choose on both sides (what they leave out is neither
/// copied nor deleted), every object written carries the tags and metadata asked for, and two directories are
/// refused before anything moves.
async fn filters_tags_and_metadata(t: &Target<'_>, b: &str) {
    t.store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, src) = (tmp.path().join("l.db"), tmp.path().join("src"));
    write(&src, "keep.txt", b"keep");
    write(&src, "sub/also.txt", b"also");
    write(&src, "skip.log", b"skip");
    let url = format!("{}://{b}/f", t.scheme);
    t.store.put_object(b, "f/other.log", b"theirs".to_vec().into(), &PutOptions::default()).await.unwrap();
    let out = run((t.cmd)(&t.endpoint, &ledger).args([
        "sync",
        src.to_str().unwrap(),
        &url,
        "--delete",
        "--exclude",
        "*.log",
        "--tag",
        "team=ops",
        "--meta",
        "origin=sync",
    ]));
    ok(&out);
    let keys: Vec<String> = objects(&t.store, b, "f/").await.into_keys().collect();
    assert_eq!(keys, ["keep.txt", "other.log", "sub/also.txt"], "skip.log not copied, other.log not deleted");
    for key in ["f/keep.txt", "f/sub/also.txt"] {
        let obj = transfer_engine::ObjectRef::new(b, key);
        assert_eq!(t.store.get_tagging(&obj).await.unwrap().get("team"), Some("ops"), "{key}");
        let head = t.store.head_object(&obj).await.unwrap();
        assert_eq!(head.metadata.user.get("origin").map(String::as_str), Some("sync"), "{key}");
    }
    let other = tmp.path().join("other");
    let refused = run((t.cmd)(&t.endpoint, &ledger).args(["sync", src.to_str().unwrap(), other.to_str().unwrap()]));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("local paths"), "{}", stderr(&refused));
    assert!(!other.exists(), "nothing made");
}

/// In a versioned bucket a sync's deletion leaves a delete marker, says so, and the data stays.
async fn versioned(t: &Target<'_>, b: &str) {
    t.store.create_bucket(b).await.unwrap();
    t.store.put_versioning(b, true).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, src) = (tmp.path().join("l.db"), tmp.path().join("src"));
    write(&src, "keep", b"keep");
    write(&src, "gone", b"gone");
    let url = format!("{}://{b}/v", t.scheme);
    ok(&run((t.cmd)(&t.endpoint, &ledger).args(["sync", src.to_str().unwrap(), &url])));
    std::fs::remove_file(src.join("gone")).unwrap();
    let out = run((t.cmd)(&t.endpoint, &ledger).args(["--json", "sync", src.to_str().unwrap(), &url, "--delete"]));
    ok(&out);
    let deleted = events(&out, "deleted");
    assert_eq!(deleted.len(), 1, "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!((deleted[0]["key"].as_str(), deleted[0]["delete_marker"].as_bool()), (Some("v/gone"), Some(true)));
    assert_eq!(objects(&t.store, b, "v/").await.keys().collect::<Vec<_>>(), ["keep"]);
    let versions = t.store.list_versions(b, &Default::default()).await.unwrap();
    let gone: Vec<_> = versions.versions.iter().filter(|v| v.key == "v/gone").collect();
    assert_eq!(gone.len(), 2, "the data and its delete marker: {gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_against_moto() {
    let moto = Moto::start("sync_against_moto");
    let s3 = |ep: &str, l: &Path| transfer_s3(ep, l, MOTO_KEY);
    let target = Target {
        cmd: &s3,
        endpoint: moto.endpoint.clone(),
        scheme: "s3",
        store: moto.client_in("us-east-1"),
        caps: MOTO,
    };
    every_flow(&target, "moto").await;
}

/// A directory of 1,100 files (over one page of the destination's listing) synced to `oss://b/p` once, then
/// changed: `f00001` (on the first page) and `f01050` (on the second) edited, and an object the source does not
/// have added to the destination.
struct Resumable {
    store: HttpStore,
    tmp: tempfile::TempDir,
    ledger: std::path::PathBuf,
    src: std::path::PathBuf,
    url: String,
}

async fn resumable(served: &Served, b: &str) -> Resumable {
    let store = served.client(V4);
    store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, src) = (tmp.path().join("l.db"), tmp.path().join("src"));
    for i in 0..1100 {
        write(&src, &format!("f{i:05}"), format!("{i}").as_bytes());
    }
    let url = format!("oss://{b}/p");
    ok(&run(transfer(&served.endpoint, &ledger).args(["sync", src.to_str().unwrap(), &url])));
    store.put_object(b, "p/zz-stale", b"old".to_vec().into(), &PutOptions::default()).await.unwrap();
    std::fs::write(src.join("f00001"), b"changed").unwrap();
    std::fs::write(src.join("f01050"), b"changed").unwrap();
    Resumable { store, tmp, ledger, src, url }
}

/// Runs `transfer resume` (the recorded sync, through `proxy`) and checks that every listing it sent goes on
/// after the cursor (`after`: the `start-after=` it must carry) and that it finished the pass: one file sent
/// (`f01050`, past the cursor), one object deleted, under 1,000 compared.
async fn resumes_after(served: &Served, proxy: &FaultProxy, ledger: &Path, after: &str) {
    let before = proxy.seen().len();
    let resumed = run(transfer(&served.endpoint, ledger).args(["--json", "resume"]));
    ok(&resumed);
    let lists: Vec<Seen> = proxy.seen()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("max-keys=1000"))
        .cloned()
        .collect();
    assert!(
        !lists.is_empty() && lists.iter().all(|r| r.target.contains(after) || r.target.contains("continuation-token")),
        "every listing goes on after the cursor ({after}): {:?}",
        lists.iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    let s = summary(&resumed);
    assert_eq!((s["objects_transferred"].as_u64(), s["objects_deleted"].as_u64()), (Some(1), Some(1)), "{s}");
    assert!(s["objects_unchanged"].as_u64().unwrap() < 1000, "{s}");
}

/// A listing that fails half-way ends the pass failed with nothing deleted; `transfer resume` lists both sides
/// only after the last key the pass settled, and finishes (deleting then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_listing_failed_resumes_after_what_it_compared() {
    let (served, b) = (Served::start(), "sync-resume");
    let Resumable { store, tmp: _tmp, ledger, src, url } = resumable(&served, b).await;

    // The destination's second page is refused: the pass fails, compares what it had, deletes nothing.
    let refuse = Rule {
        method: Some("GET"),
        contains: "continuation-token",
        fault: Fault::Status(403, "AccessDenied"),
        times: 1,
    };
    let proxy = FaultProxy::start(&served.endpoint, vec![refuse]).await;
    let failed =
        run(transfer(&proxy.endpoint, &ledger).args(["--json", "sync", src.to_str().unwrap(), &url, "--delete"]));
    assert_ne!(failed.status.code(), Some(0), "{}", stderr(&failed));
    assert!(store.head_object(&transfer_engine::ObjectRef::new(b, "p/zz-stale")).await.is_ok(), "nothing deleted");
    let body = |k: &str| {
        let store = &store;
        let k = k.to_owned();
        async move {
            store
                .get_object(&transfer_engine::ObjectRef::new(b, &k), None)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
    };
    assert_eq!(body("p/f00001").await, b"changed", "what was compared before the failure was synced");

    // `transfer resume` runs the recorded sync (through the same proxy, its one refusal spent).
    resumes_after(&served, &proxy, &ledger, "start-after=p%2Ff00").await;
    assert_eq!(body("p/f01050").await, b"changed");
    assert!(store
        .head_object(&transfer_engine::ObjectRef::new(b, "p/zz-stale"))
        .await
        .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_against_s3s_fs() {
    let server = S3sFs::start("sync_against_s3s_fs");
    let s3 = |ep: &str, l: &Path| transfer_s3(ep, l, S3S_KEY);
    let store = s3_client(&server.endpoint, S3S_KEY);
    let target = Target { cmd: &s3, endpoint: server.endpoint.clone(), scheme: "s3", store, caps: S3S_FS };
    every_flow(&target, "s3s").await;
}

/// Between two stores the bytes flow through `transfer` (GETs from one, PUTs to the other): a re-run reads and
/// writes only what changed, and one after it neither reads nor writes an object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_between_two_stores_relays_only_what_changed() {
    let (from, to) = (Served::start(), Served::start());
    let (src, dst) = (from.client(V4), to.client(V4));
    src.create_bucket("origin").await.unwrap();
    dst.create_bucket("target").await.unwrap();
    for (key, seed) in [("p/a", 1u64), ("p/b", 2), ("p/c/d", 3), ("p/e", 4)] {
        src.put_object("origin", key, data(3000, seed).into(), &PutOptions::default()).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("l.db");
    let relay = || async {
        let (reads, writes) =
            (FaultProxy::start(&from.endpoint, vec![]).await, FaultProxy::start(&to.endpoint, vec![]).await);
        let out = run(transfer(&writes.endpoint, &ledger).args([
            "--json",
            "sync",
            "oss://origin/p",
            "oss://target/q",
            "--delete",
            "--src-endpoint",
            &reads.endpoint,
        ]));
        ok(&out);
        (sent(&reads.seen()), sent(&writes.seen()))
    };
    let (reads, writes) = relay().await;
    assert_eq!((reads.gets, writes.puts, writes.copies), (4, 4, 0), "relayed, not copied server-side");
    assert_eq!(objects(&dst, "target", "q/").await, objects(&src, "origin", "p/").await);

    src.put_object("origin", "p/a", data(3000, 9).into(), &PutOptions::default()).await.unwrap(); // the same size
    src.delete_object(&transfer_engine::ObjectRef::new("origin", "p/b")).await.unwrap();
    src.put_object("origin", "p/n", b"new".to_vec().into(), &PutOptions::default()).await.unwrap();
    let (reads, writes) = relay().await;
    assert_eq!((reads.gets, writes.puts, writes.delete_multiple), (2, 2, 1));
    assert_eq!(objects(&dst, "target", "q/").await, objects(&src, "origin", "p/").await);

    let (reads, writes) = relay().await;
    assert_eq!((reads.gets, reads.heads, writes.puts, writes.heads), (0, 0, 0, 0));
}

/// A sync killed (SIGKILL) while it waits for a page of its listing: the cursor it had saved is in the ledger
/// (`transfer jobs` shows it), and `transfer resume` lists both sides only after it, then finishes the pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_listing_resumes_after_its_cursor() {
    let (served, b) = (Served::start(), "sync-killed");
    let Resumable { store, tmp: _tmp, ledger, src, url } = resumable(&served, b).await;

    // The destination's second page is held back; the run is killed once the ledger shows its cursor.
    let hold = Rule {
        method: Some("GET"),
        contains: "continuation-token",
        fault: Fault::Delay(std::time::Duration::from_secs(30)),
        times: 1,
    };
    let proxy = FaultProxy::start(&served.endpoint, vec![hold]).await;
    let mut child = transfer(&proxy.endpoint, &ledger)
        .args(["sync", src.to_str().unwrap(), &url, "--delete"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let cursor = loop {
        let jobs = run(transfer(&served.endpoint, &ledger).args(["--json", "jobs"]));
        let cursor = String::from_utf8_lossy(&jobs.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|j| j["kind"] == "sync")
            .find_map(|j| j["sync_cursor"].as_str().map(str::to_owned));
        match cursor {
            Some(c) if c.as_str() >= "f00999" => break c,
            _ => assert!(std::time::Instant::now() < deadline, "no cursor saved: {}", stderr(&jobs)),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(store.head_object(&transfer_engine::ObjectRef::new(b, "p/zz-stale")).await.is_ok(), "nothing deleted");

    resumes_after(&served, &proxy, &ledger, &format!("start-after=p%2F{cursor}")).await;
    assert!(store
        .head_object(&transfer_engine::ObjectRef::new(b, "p/zz-stale"))
        .await
        .is_err_and(|e| e.kind() == transfer_engine::ErrorKind::ObjectNotFound));
}
