//! Listings longer than a page, through the binary on every target: 2,600 keys (2.6 pages of the engine's 1,000,
//! more of `transfer serve`'s) whose names need URL encoding (spaces, `+`, `=`, `ü`), copied server-side under
//! another prefix, downloaded into a directory and synced; every key must arrive, and the listing must have
//! been paged (the proxy counts the LIST requests of each run).

use crate::cli::transfer;
use crate::cli_s3::transfer_s3;
use crate::util::fault::FaultProxy;
use crate::util::moto::{Moto, MOTO_KEY};
use crate::util::s3s::{S3sFs, S3S_KEY};
use crate::util::{data, s3_client, Served, AK, SK};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::SignatureVersion::V4;
use transfer_engine::store::ListRequest;
use transfer_engine::{BucketStore, ObjectRef, ObjectStore};

const KEYS: usize = 2_600;

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The relative key of file `i`: three directories, names that need encoding in a URL.
fn rel(i: usize) -> String {
    format!("d{}/ü+ {i:04}=x", i % 3)
}

/// Every key under `prefix`, relative to it, by as many pages as it takes.
async fn keys(store: &HttpStore, b: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut req = ListRequest::default().prefix(Some(prefix.to_owned()));
    loop {
        let page = store.list_objects(b, &req).await.unwrap();
        out.extend(page.objects.iter().map(|o| o.key[prefix.len()..].to_owned()));
        match page.next_continuation_token {
            Some(t) if page.is_truncated => req = req.continuation_token(Some(t)),
            _ => return out,
        }
    }
}

struct Target<'a> {
    cmd: &'a dyn Fn(&str, &Path) -> Command,
    endpoint: String,
    scheme: &'static str,
    store: HttpStore,
}

/// Runs `args` through a fresh counting proxy: the output and the LIST requests it sent.
async fn listed(t: &Target<'_>, ledger: &Path, args: &[&str]) -> (Output, usize, usize) {
    let proxy = FaultProxy::start(&t.endpoint, vec![]).await;
    let out = crate::cli::run((t.cmd)(&proxy.endpoint, ledger).args(args));
    let seen = proxy.seen();
    let is_list = |target: &str| target.contains("list-type") || target.contains("prefix=");
    let lists = seen.iter().filter(|r| r.method == "GET" && is_list(&r.target)).count();
    let puts = seen.iter().filter(|r| r.method == "PUT").count();
    (out, lists, puts)
}

async fn paged(t: &Target<'_>, b: &str) {
    t.store.create_bucket(b).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (src, ledger) = (tmp.path().join("src"), tmp.path().join("l.db"));
    for i in 0..KEYS {
        let p = src.join(rel(i));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data(64 + i % 100, i as u64)).unwrap();
    }
    let url = |prefix: &str| format!("{}://{b}/{prefix}", t.scheme);
    let want: BTreeSet<String> = (0..KEYS).map(rel).collect();
    ok(&crate::cli::run((t.cmd)(&t.endpoint, &ledger).args([
        "cp",
        "-r",
        "--jobs",
        "32",
        src.to_str().unwrap(),
        &url("src/"),
    ])));
    assert_eq!(keys(&t.store, b, "src/").await, want);

    // A prefix copied: its listing took three pages at least.
    let (out, lists, _) = listed(t, &ledger, &["cp", "-r", "--jobs", "32", &url("src/"), &url("copy/")]).await;
    ok(&out);
    assert!(lists >= 3, "{lists} listing requests for {KEYS} keys");
    assert_eq!(keys(&t.store, b, "copy/").await, want);

    // Downloaded into a directory.
    let back = tmp.path().join("back");
    let (out, lists, _) = listed(t, &ledger, &["cp", "-r", "--jobs", "32", &url("src/"), back.to_str().unwrap()]).await;
    ok(&out);
    assert!(lists >= 3, "{lists}");
    assert_eq!(crate::cli_sync::files(&back).into_keys().collect::<BTreeSet<_>>(), want);
    let one: PathBuf = back.join(rel(2_599));
    assert!(std::fs::read(&one).unwrap() == data(64 + 2_599 % 100, 2_599));

    // Synced, then synced again: the second pass lists both sides over every page and writes nothing.
    let sync = ["sync", "--jobs", "32", &url("src/"), &url("synced/")];
    let (out, _, _) = listed(t, &ledger, &sync).await;
    ok(&out);
    assert_eq!(keys(&t.store, b, "synced/").await, want);
    let (out, lists, puts) = listed(t, &ledger, &sync).await;
    ok(&out);
    assert!(lists >= 6, "both sides over three pages each: {lists}");
    assert_eq!(puts, 0, "an unchanged sync writes nothing");
    let sample = ObjectRef::new(b, format!("synced/{}", rel(1_234)));
    let got = t.store.get_object(&sample, None).await.unwrap().bytes().await.unwrap();
    assert!(got == data(64 + 1_234 % 100, 1_234));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_listings_against_transfer_serve_in_both_dialects() {
    let served = Served::start();
    let oss = |ep: &str, l: &Path| transfer(ep, l);
    paged(
        &Target { cmd: &oss, endpoint: served.endpoint.clone(), scheme: "oss", store: served.client(V4) },
        "pages-oss",
    )
    .await;
    let s3 = |ep: &str, l: &Path| transfer_s3(ep, l, (AK, SK));
    let store = s3_client(&served.endpoint, (AK, SK));
    paged(&Target { cmd: &s3, endpoint: served.endpoint.clone(), scheme: "s3", store }, "pages-s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_listings_against_moto() {
    let moto = Moto::start("long_listings_against_moto");
    let s3 = |ep: &str, l: &Path| transfer_s3(ep, l, MOTO_KEY);
    let store = moto.client_in("us-east-1");
    paged(&Target { cmd: &s3, endpoint: moto.endpoint.clone(), scheme: "s3", store }, "pages-moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_listings_against_s3s_fs() {
    let server = S3sFs::start("long_listings_against_s3s_fs");
    let s3 = |ep: &str, l: &Path| transfer_s3(ep, l, S3S_KEY);
    let store = s3_client(&server.endpoint, S3S_KEY);
    paged(&Target { cmd: &s3, endpoint: server.endpoint.clone(), scheme: "s3", store }, "pages-s3s").await;
}
