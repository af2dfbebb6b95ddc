//! Test support: a `transfer serve` child process on 127.0.0.1:0 with a temporary root, stopped on drop, and
//! OSS clients pointed at it; the third-party S3 servers moto ([`moto`]) and s3s-fs ([`s3s`]); a
//! fault-injecting proxy ([`fault`]).

pub mod caps;
pub mod fault;
pub mod moto;
pub mod process;
pub mod s3s;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::{Credentials, SignatureVersion};
use transfer_engine::BucketStore;

pub const AK: &str = "test-access-key-id";
pub const SK: &str = "test-access-key-secret";

/// A running `transfer serve`. Dropping it kills the process and removes its root.
pub struct Served {
    child: Child,
    pub endpoint: String,
    pub root: tempfile::TempDir,
}

impl Served {
    /// Starts `transfer serve --root <tmp> --listen 127.0.0.1:0` and waits for its first stdout line.
    pub fn start() -> Served {
        Served::start_with(&[])
    }

    /// [`Served::start`] with more options (`--credentials-file PATH`, ...).
    pub fn start_with(options: &[&str]) -> Served {
        let root = tempfile::tempdir().expect("temp root");
        let mut child = Command::new(env!("CARGO_BIN_EXE_transfer"))
            .args(["serve", "--root"])
            .arg(root.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(options)
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .env_remove("OSS_SESSION_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn transfer serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
        let endpoint = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from transfer serve: {line:?}"))
            .to_owned();
        Served { child, endpoint, root }
    }

    /// A client signing with `version` and the server's credentials.
    pub fn client(&self, version: SignatureVersion) -> HttpStore {
        self.client_with(version, Credentials::new(AK, SK))
    }

    /// A client with other credentials.
    pub fn client_with(&self, version: SignatureVersion, creds: Credentials) -> HttpStore {
        client_for(&self.endpoint, version, creds)
    }

    /// The server's root directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of `endpoint` (path style, region cn-hangzhou).
pub fn client_for(endpoint: &str, version: SignatureVersion, creds: Credentials) -> HttpStore {
    HttpStore::oss()
        .endpoint(endpoint)
        .region("cn-hangzhou")
        .credentials(creds)
        .signature_version(version)
        .build()
        .expect("client")
}

/// Creates a bucket with a name unique to the test.
/// An S3-dialect client of `endpoint` in us-east-1, path-style, with the key pair `(id, secret)`.
pub fn s3_client(endpoint: &str, (id, secret): (&str, &str)) -> HttpStore {
    HttpStore::s3()
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials(Credentials::new(id, secret))
        .path_style(true)
        .system_proxy(false)
        .build()
        .unwrap()
}

pub async fn bucket(store: &HttpStore, name: &str) -> String {
    store.create_bucket(name).await.expect("create bucket");
    name.to_owned()
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every file under `root` except SQLite's own files, with its size: what "nothing changed on disk" compares.
pub fn disk_snapshot(root: &Path) -> Vec<(PathBuf, u64)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if p.is_dir() {
                walk(&p, out);
            } else if !name.contains(".db") && !name.contains("sqlite") {
                out.push((p.clone(), e.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

/// Polls `ready` every 10 ms until it holds. A guard against a hang, never a measurement: a wait longer than
/// `within` fails the test, saying what never happened.
pub async fn until(what: &str, within: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Runs `cmd` to its end, its output captured; one still running after `within` is killed and fails the test
/// (a hang guard: what must never block, such as opening a FIFO, is caught here instead of hanging the suite).
pub fn run_within(cmd: &mut Command, within: std::time::Duration) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = std::time::Instant::now() + within;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("{cmd:?} still ran after {within:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}
