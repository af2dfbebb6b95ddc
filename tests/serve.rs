//! `transfer serve` as a process: the first stdout line, a signed request, SIGTERM, the missing credentials
//! error, a full disk (a small tmpfs), and the timeouts of stalled bodies and idle connections.

use crate::util::{bucket, client_for, data, AK, SK};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::SystemTime;
use transfer_engine::sign::{Credentials, SignTarget, SignatureVersion, Signer};

fn transfer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_transfer"))
}

#[test]
fn serve_without_credentials_exits_2_naming_the_variables() {
    let root = tempfile::tempdir().unwrap();
    let out = transfer()
        .args(["serve", "--root"])
        .arg(root.path())
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("OSS_ACCESS_KEY_ID")
        .env_remove("OSS_ACCESS_KEY_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OSS_ACCESS_KEY_ID") && err.contains("OSS_ACCESS_KEY_SECRET"), "{err}");
    assert!(out.stdout.is_empty());
}

#[cfg(unix)]
#[tokio::test]
async fn serve_announces_its_address_answers_and_stops_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let mut child = transfer()
        .args(["serve", "--no-fsync", "--root"])
        .arg(root.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("OSS_ACCESS_KEY_ID", "cli-ak")
        .env("OSS_ACCESS_KEY_SECRET", "cli-sk")
        .env_remove("OSS_SESSION_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let addr = first.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{first:?}")).to_owned();
    assert!(addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"), "{addr}");

    let mut headers = http::HeaderMap::new();
    let target = SignTarget { method: "PUT", bucket: Some("clibucket"), key: None, query: &[] };
    Signer::new(SignatureVersion::V4, "cn-hangzhou").sign(
        &Credentials::new("cli-ak", "cli-sk"),
        &target,
        &mut headers,
        SystemTime::now(),
    );
    let r = reqwest::Client::new().put(format!("http://{addr}/clibucket/")).headers(headers).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("server").unwrap(), "transfer");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// A `transfer serve` on a root of the test's choosing, with extra environment; killed on drop.
struct ServeAt {
    child: std::process::Child,
    endpoint: String,
}

impl ServeAt {
    fn start(root: &std::path::Path, env: &[(&str, &str)]) -> ServeAt {
        ServeAt::with_args(root, env, &[])
    }

    fn with_args(root: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> ServeAt {
        let mut cmd = transfer();
        cmd.args(["serve", "--no-fsync", "--root"])
            .arg(root)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .env_remove("OSS_SESSION_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn transfer serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let endpoint = first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{first:?}")).to_owned();
        ServeAt { child, endpoint }
    }

    fn addr(&self) -> &str {
        self.endpoint.trim_start_matches("http://")
    }
}

impl Drop for ServeAt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small tmpfs mounted on a temp directory, unmounted on drop (drop the server first).
pub(crate) struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`8m`); `None`, with a printed note, where mounting is not permitted.
    pub(crate) fn mount(size: &str) -> Option<SmallDisk> {
        SmallDisk::mount_with(&format!("size={size}"))
    }

    /// Mounts a tmpfs with these options (`size=8m`, `ro,size=1m`).
    pub(crate) fn mount_with(options: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(dir.path()).output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            Ok(o) => {
                eprintln!("NOTE: skipped: cannot mount a tmpfs here: {}", String::from_utf8_lossy(&o.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("NOTE: skipped: cannot run mount: {e}");
                None
            }
        }
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Gives the mounted tmpfs another size (`64m`): room freed, as an operator would.
    pub(crate) fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {} with size={size}", self.dir.path().display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(self.dir.path()).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

/// Asserts `e` is the store's 507 `InsufficientStorage`: permanent (no retry storm), naming the store's disk.
fn assert_disk_full(e: &transfer_engine::Error, root: &std::path::Path) {
    assert_eq!((e.status(), e.service_code()), (Some(507), Some("InsufficientStorage")), "{e}");
    assert_eq!(e.kind(), transfer_engine::ErrorKind::InsufficientStorage, "{e}");
    assert!(!e.is_retryable(), "a full disk must not be retried: {e}");
    let root = root.display().to_string();
    assert!(e.message().contains(&root) && e.message().contains("is full"), "{e}");
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_and_still_deletes_and_aborts() {
    use transfer_engine::store::{Body, CopyOptions, PutOptions};
    use transfer_engine::{MultipartStore, ObjectRef, ObjectStore, OssExtensions};
    let Some(disk) = SmallDisk::mount("8m") else { return };
    let root = disk.path().to_owned();
    let mut serve = ServeAt::start(&root, &[]);
    let store = client_for(&serve.endpoint, SignatureVersion::V4, Credentials::new(AK, SK));
    let b = bucket(&store, "full").await;
    let put = |store: &transfer_engine::http::HttpStore, key: String, len: usize| {
        let store = store.clone();
        let b = b.clone();
        async move { store.put_object(&b, &key, Body::from(data(len, len as u64)), &PutOptions::default()).await }
    };
    // An upload in progress, with a part, before the disk fills.
    let upload = store.initiate_multipart(&b, "mp", &PutOptions::default()).await.unwrap();
    store.upload_part(upload.part(1), Body::from(data(100 * 1024, 1))).await.unwrap();

    // Fill the disk through PutObject, then with ever smaller objects, until not even a byte is taken.
    let mut stored = Vec::new();
    let mut refusal = None;
    for len in [512 * 1024, 64 * 1024, 4 * 1024, 1] {
        for _ in 0..40 {
            let key = format!("fill-{len}-{}", stored.len());
            match put(&store, key.clone(), len).await {
                Ok(_) => stored.push(key),
                Err(e) => {
                    refusal = Some(e);
                    break;
                }
            }
        }
    }
    let refusal = refusal.expect("an 8 MiB disk must fill up");
    assert_disk_full(&refusal, &root);
    assert!(stored.len() >= 4, "only {} objects fit", stored.len());
    // Every kind of write is refused the same way, a large body as clearly as a small one.
    assert_disk_full(&put(&store, "more".into(), 10).await.unwrap_err(), &root);
    assert_disk_full(&put(&store, "large".into(), 16 * 1024 * 1024).await.unwrap_err(), &root);
    let e = store.initiate_multipart(&b, "mp2", &PutOptions::default()).await.unwrap_err();
    assert_disk_full(&e, &root);
    assert_disk_full(&store.upload_part(upload.part(2), Body::from(data(1024, 2))).await.unwrap_err(), &root);
    let copy = CopyOptions::from(ObjectRef::new(&b, &stored[0]));
    assert_disk_full(&store.copy_object(&b, "copy", &copy).await.unwrap_err(), &root);
    let e = store.append_object(&b, "log", 0, Body::from("line"), &PutOptions::default()).await.unwrap_err();
    assert_disk_full(&e, &root);
    // The command line stops at once (no retries) and says what to do.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    std::fs::write(&file, b"bytes").unwrap();
    let out = crate::cli::run(
        crate::cli::transfer(&serve.endpoint, &tmp.path().join("l.db"))
            .args(["cp", "--json"])
            .arg(&file)
            .arg(format!("oss://{b}/cli")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // Stopped on a full disk: resumable once there is room (exit 3, as for a download's full disk).
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("InsufficientStorage") && err.contains("free space there"), "{err}");
    assert_eq!(crate::cli::summary(&out)["requests_retried"].as_u64(), Some(0), "a full disk is not retried");

    // Another program takes every byte left, and the server restarts: the disk is full to its last byte.
    let filler = root.join("outside-filler");
    fill_up(&filler);
    drop(serve);
    serve = ServeAt::start(&root, &[]);
    let store = client_for(&serve.endpoint, SignatureVersion::V4, Credentials::new(AK, SK));
    assert_disk_full(&put(&store, "after-restart".into(), 10).await.unwrap_err(), &root);

    // Deletes and aborts still work: DeleteObject, DeleteMultipleObjects (our client's, with its Content-MD5),
    // AbortMultipartUpload.
    store.delete_object(&ObjectRef::new(&b, &stored[0])).await.expect("DeleteObject on a full disk");
    let batch: Vec<ObjectRef> = stored[1..3].iter().map(|k| ObjectRef::new(&b, k)).collect();
    for r in store.delete_objects(&b, &batch).await.expect("DeleteMultipleObjects on a full disk") {
        r.expect("each key of DeleteMultipleObjects on a full disk");
    }
    store.abort_multipart(&upload).await.expect("AbortMultipartUpload on a full disk");
    for k in &stored[..3] {
        assert_eq!(store.head_object(&ObjectRef::new(&b, k)).await.unwrap_err().status(), Some(404));
    }

    // Writes come back once deletes have freed enough, without a restart.
    let mut next = 3;
    loop {
        match put(&store, "after-deletes".into(), 64 * 1024).await {
            Ok(_) => break,
            Err(e) if next < stored.len() => {
                assert_disk_full(&e, &root);
                store.delete_object(&ObjectRef::new(&b, &stored[next])).await.unwrap();
                next += 1;
            }
            Err(e) => panic!("writes did not resume after deleting every object: {e}"),
        }
    }
    let got = store.get_object(&ObjectRef::new(&b, "after-deletes"), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), data(64 * 1024, 64 * 1024).as_slice());

    // Filled from outside again while the store takes writes: a delete still works, and writes resume once the
    // other program's space is freed.
    fill_up(&filler);
    assert_disk_full(&put(&store, "filled-outside".into(), 64 * 1024).await.unwrap_err(), &root);
    store.delete_object(&ObjectRef::new(&b, &stored[next])).await.expect("DeleteObject on a disk filled outside");
    std::fs::remove_file(&filler).unwrap();
    put(&store, "after-filler".into(), 64 * 1024).await.expect("writes resume once space is freed outside");
    drop(serve);
    drop(disk);
}

/// Another program filling the disk: appends to `path` until not one more byte fits.
fn fill_up(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[7u8]).is_ok() {}
}

/// Reads from `s` until the server closes the connection or `limit` passes: what arrived, and whether it closed.
fn read_until_closed(s: &mut std::net::TcpStream, limit: std::time::Duration) -> (String, bool) {
    use std::io::Read;
    let deadline = std::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&out).into_owned(), false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), true),
        }
    }
}

#[tokio::test]
async fn stalled_bodies_and_idle_connections_are_cut_off() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let root = tempfile::tempdir().unwrap();
    let serve =
        ServeAt::start(root.path(), &[("TRANSFER_SERVE_BODY_TIMEOUT", "1"), ("TRANSFER_SERVE_HEADER_TIMEOUT", "2")]);
    let store = client_for(&serve.endpoint, SignatureVersion::V4, Credentials::new(AK, SK));
    let b = bucket(&store, "stall").await;
    let addr = serve.addr().to_owned();

    // Twenty PUTs that declare 100 MB, send a few bytes and stall: each is answered and closed within the body
    // timeout, and leaves no temp file.
    let stalls: Vec<_> = (0..20)
        .map(|i| {
            let (addr, b) = (addr.clone(), b.clone());
            std::thread::spawn(move || {
                let key = format!("stalled-{i}");
                let mut headers = http::HeaderMap::new();
                let t = SignTarget { method: "PUT", bucket: Some(&b), key: Some(&key), query: &[] };
                Signer::new(SignatureVersion::V4, "cn-hangzhou").sign(
                    &Credentials::new(AK, SK),
                    &t,
                    &mut headers,
                    SystemTime::now(),
                );
                let mut req = format!("PUT /{b}/{key} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100000000\r\n");
                for (k, v) in &headers {
                    req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
                }
                req.push_str("\r\nthe first few bytes");
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                s.write_all(req.as_bytes()).unwrap();
                read_until_closed(&mut s, Duration::from_secs(15))
            })
        })
        .collect();
    for t in stalls {
        let (resp, closed) = t.join().unwrap();
        assert!(closed, "a stalled body kept its connection open: {resp:?}");
        assert!(resp.starts_with("HTTP/1.1 400") && resp.contains("<Code>RequestTimeout</Code>"), "{resp}");
    }
    let tmp: Vec<_> = std::fs::read_dir(root.path().join(".tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temp files left behind: {tmp:?}");
    let e = transfer_engine::ObjectStore::head_object(&store, &transfer_engine::ObjectRef::new(&b, "stalled-0"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));

    // An idle keep-alive connection is closed after the header timeout, not kept forever.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let mut headers = http::HeaderMap::new();
    let t = SignTarget { method: "HEAD", bucket: Some(&b), key: Some("missing"), query: &[] };
    Signer::new(SignatureVersion::V4, "cn-hangzhou").sign(
        &Credentials::new(AK, SK),
        &t,
        &mut headers,
        SystemTime::now(),
    );
    let mut req = format!("HEAD /{b}/missing HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let idle_from = Instant::now();
    let (resp, closed) = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(closed, "an idle keep-alive connection stayed open: {resp}");
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(1500) && idle < Duration::from_secs(6), "closed after {idle:?}");
}

#[tokio::test]
async fn a_virtual_host_suffix_names_the_bucket_by_the_host() {
    let root = tempfile::tempdir().unwrap();
    let serve = ServeAt::with_args(root.path(), &[], &["--virtual-host-suffix", "storage.test"]);
    let store = client_for(&serve.endpoint, SignatureVersion::V4, Credentials::new(AK, SK));
    let b = bucket(&store, "vhost").await;
    let opts = transfer_engine::store::PutOptions::default();
    transfer_engine::ObjectStore::put_object(&store, &b, "k", b"by host".to_vec().into(), &opts).await.unwrap();
    // A presigned GET sent to `vhost.storage.test`: the bucket comes from the Host, the path is the key alone.
    let target = SignTarget { method: "GET", bucket: Some(&b), key: Some("k"), query: &[] };
    let signer = Signer::new(SignatureVersion::V4, "cn-hangzhou");
    let ten_minutes = std::time::Duration::from_secs(600);
    let query =
        signer.presign(&Credentials::new(AK, SK), &target, &http::HeaderMap::new(), SystemTime::now(), ten_minutes);
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let addr: std::net::SocketAddr = serve.addr().parse().unwrap();
    let client = reqwest::Client::builder().no_proxy().resolve("vhost.storage.test", addr).build().unwrap();
    let url = format!("http://vhost.storage.test:{}/k?{}", addr.port(), query.join("&"));
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"by host");
}
