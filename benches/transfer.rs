//! End-to-end throughput and peak memory of the engine against `transfer serve` on loopback, each workload
//! beside a `curl` reference measured in the same run. See `benches/README.md`.
//!
//! `cargo bench --bench transfer` runs the full benchmark and rewrites `benches/RESULTS.md`. Under
//! `cargo test` (no `--bench` argument) it runs a tiny smoke pass that checks the plumbing (the objects arrive
//! with the right size and CRC-64) and writes nothing; nothing is timed against a threshold.
//!
//! Environment:
//! - `TRANSFER_BENCH_RUNS` (default 3): runs per workload and side; the median is reported.
//! - `TRANSFER_BENCH_BIG_MIB` (default 1024): size of the big file.
//! - `TRANSFER_BENCH_SMALL_FILES` (default 2000) and `TRANSFER_BENCH_SMALL_KIB` (default 16): the small files.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use transfer_engine::checkpoint::{JobSpec, JobState, Ledger};
use transfer_engine::job::{DirRequest, Engine, EngineConfig, UploadRequest};
use transfer_engine::oss::OssStore;
use transfer_engine::sign::{Credentials, SignTarget, SignatureVersion, Signer};
use transfer_engine::store::ListRequest;
use transfer_engine::util::{pct_encode, pct_encode_path};
use transfer_engine::{BucketStore as _, ObjectRef, ObjectStore};

const AK: &str = "bench-access-key-id";
const SK: &str = "bench-access-key-secret";
const BUCKET: &str = "bench";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Requests in flight, for both sides: the engine's default `PlanOptions::max_in_flight` (8), which is what
/// its scheduler allows across all objects, and `curl --parallel-max` for the small files.
const CONCURRENCY: usize = 8;
/// Objects HEAD-checked (size and CRC-64) per small-file run, besides the listing that counts them all.
const SMALL_SAMPLE: usize = 16;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = std::result::Result<T, BoxError>;

#[derive(Debug, Clone)]
struct Config {
    runs: usize,
    big_bytes: u64,
    small_files: usize,
    small_bytes: u64,
    /// `cargo bench`: write RESULTS.md. Otherwise a smoke pass under `cargo test`.
    full: bool,
}

impl Config {
    fn from_env(full: bool) -> Config {
        let get = |name: &str, default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|&v| v > 0)
                .unwrap_or(default)
        };
        if full {
            Config {
                runs: get("TRANSFER_BENCH_RUNS", 3) as usize,
                big_bytes: get("TRANSFER_BENCH_BIG_MIB", 1024) * MIB,
                small_files: get("TRANSFER_BENCH_SMALL_FILES", 2000) as usize,
                small_bytes: get("TRANSFER_BENCH_SMALL_KIB", 16) * KIB,
                full,
            }
        } else {
            // Smoke: big enough to go multipart (threshold 64 MiB would be slow in debug), so shrink nothing in
            // the engine and keep it a single PUT; the point is the plumbing, not the numbers.
            Config {
                runs: 1,
                big_bytes: 3 * MIB,
                small_files: 40,
                small_bytes: 16 * KIB,
                full,
            }
        }
    }
}

fn main() {
    let full = std::env::args().skip(1).any(|a| a == "--bench");
    let config = Config::from_env(full);
    if let Err(e) = run(&config) {
        eprintln!("transfer bench failed: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Peak memory: VmHWM of a process, reset by writing 5 to its clear_refs (Linux >= 4.0).

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// User + system CPU seconds of `pid` so far (its threads included; children not).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After `(comm)`: utime and stime are the 12th and 13th fields (clock ticks, 100 per second on Linux).
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Resets the peak RSS of `pid` to its current RSS; false where the kernel refuses.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Checks that resetting really lowers VmHWM (allocates and touches 64 MiB, frees it, resets).
fn reset_works() -> bool {
    let me = std::process::id();
    let before = proc_status_kib(me, "VmHWM").unwrap_or(0);
    let v = vec![1u8; 64 << 20];
    std::hint::black_box(&v);
    drop(v);
    let high = proc_status_kib(me, "VmHWM").unwrap_or(0);
    reset_peak(me) && high >= before && proc_status_kib(me, "VmHWM").unwrap_or(u64::MAX) + 32 * 1024 < high
}

// ---------------------------------------------------------------------------------------------------------
// The server.

struct Server {
    child: Child,
    endpoint: String,
}

impl Server {
    fn start(root: &Path, log: &Path) -> Res<Server> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_transfer"))
            .args(["serve", "--no-fsync", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .env_remove("OSS_SESSION_TOKEN")
            // Per-request logging would be part of both sides' cost; keep only warnings (to a file).
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let endpoint = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("unexpected first line {line:?}"))?
            .to_owned();
        Ok(Server { child, endpoint })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(endpoint: &str) -> Res<OssStore> {
    Ok(OssStore::builder()
        .endpoint(endpoint)
        .region("cn-hangzhou")
        .credentials(Credentials::new(AK, SK))
        .signature_version(SignatureVersion::V4)
        .build()?)
}

/// A presigned (V1, one hour) PUT URL for `key`: curl needs no signing logic.
fn presigned_put(endpoint: &str, key: &str) -> String {
    let target = SignTarget {
        method: "PUT",
        bucket: Some(BUCKET),
        key: Some(key),
        query: &[],
    };
    let q = Signer::new(SignatureVersion::V1, "cn-hangzhou").presign(
        &Credentials::new(AK, SK),
        &target,
        &http::HeaderMap::new(),
        SystemTime::now(),
        Duration::from_secs(3600),
    );
    let query: Vec<String> = q
        .iter()
        .map(|(k, v)| format!("{}={}", pct_encode(k), pct_encode(v)))
        .collect();
    format!("{endpoint}/{BUCKET}/{}?{}", pct_encode_path(key), query.join("&"))
}

// ---------------------------------------------------------------------------------------------------------
// Data: deterministic pseudo-random bytes (xorshift64), written in chunks; CRC-64 kept for verification.

fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

fn write_file(path: &Path, len: u64, seed: u64) -> Res<u64> {
    let mut f = std::io::BufWriter::with_capacity(MIB as usize, std::fs::File::create(path)?);
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut crc = transfer_engine::crc64::Crc64::new();
    let mut buf = vec![0u8; (8 * MIB).min(len.max(1)) as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        fill(&mut buf[..n], &mut state);
        crc.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(crc.value())
}

struct SmallFile {
    path: PathBuf,
    name: String,
    crc: u64,
}

// ---------------------------------------------------------------------------------------------------------
// Measurements.

#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    /// Peak RSS of the uploading side (KiB).
    peak_kib: u64,
    /// Peak RSS of the server during this side's run (KiB), when it could be reset per run.
    server_peak_kib: Option<u64>,
    /// Ours only: this process's RSS when its peak was reset, just before the phase (KiB).
    base_kib: u64,
    /// CPU seconds (user + system) of the uploading side and of the server during the run.
    cpu: f64,
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

/// Runs curl under `/usr/bin/time -f %M`: wall time of the whole command, curl's peak RSS, its stdout.
fn timed_curl(args: &[String]) -> Res<(f64, u64, f64, String)> {
    let mem_file = tempfile::NamedTempFile::new()?;
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M %U %S", "-o"])
        .arg(mem_file.path())
        .arg("curl")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!("curl failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    let mem = std::fs::read_to_string(mem_file.path())?;
    let f: Vec<f64> = mem
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let [peak, user, sys] = f[..] else {
        return Err(format!("bad time output {mem:?}").into());
    };
    Ok((
        secs,
        peak as u64,
        user + sys,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

struct Bench {
    config: Config,
    work: PathBuf,
    server: Server,
    rt: tokio::runtime::Runtime,
    admin: OssStore,
    per_run_server_peak: bool,
    own_peak_reset: bool,
}

impl Bench {
    fn server_reset(&self) {
        if self.per_run_server_peak {
            reset_peak(self.server.pid());
        }
    }

    fn server_peak(&self) -> Option<u64> {
        if self.per_run_server_peak {
            proc_status_kib(self.server.pid(), "VmHWM")
        } else {
            None
        }
    }

    /// A fresh ledger, engine (with its own client: cold connections, as curl starts with) and job.
    fn engine(&self, name: &str) -> Res<(Engine, Ledger, transfer_engine::checkpoint::JobId)> {
        let ledger = Ledger::open(self.work.join(format!("ledger-{name}.db")))?;
        let store: Arc<dyn ObjectStore> = Arc::new(client(&self.server.endpoint)?);
        // Defaults throughout (8 MiB parts, 64 MiB multipart threshold, 8 requests in flight, 256 MiB budget).
        let engine = Engine::new(store, ledger.clone(), EngineConfig::default())?;
        let job = ledger.create_job(&JobSpec {
            kind: "upload".into(),
            source: self.work.join("data").display().to_string(),
            destination: format!("oss://{BUCKET}/{name}/"),
            options_json: "{}".into(),
        })?;
        Ok((engine, ledger, job))
    }

    /// Times `f` (an engine phase) with this process's peak RSS reset before it.
    fn ours<F: std::future::Future<Output = Res<()>>>(&self, f: F) -> Res<Sample> {
        self.server_reset();
        reset_peak(std::process::id());
        let base_kib = proc_status_kib(std::process::id(), "VmRSS").unwrap_or(0);
        let (cpu0, server_cpu0) = (cpu_secs(std::process::id()), cpu_secs(self.server.pid()));
        let t = Instant::now();
        self.rt.block_on(f)?;
        let secs = t.elapsed().as_secs_f64();
        let (cpu, server_cpu) = (
            cpu_secs(std::process::id()) - cpu0,
            cpu_secs(self.server.pid()) - server_cpu0,
        );
        let peak_kib = proc_status_kib(std::process::id(), "VmHWM").unwrap_or(0);
        Ok(Sample {
            secs,
            peak_kib,
            server_peak_kib: self.server_peak(),
            base_kib,
            cpu,
            server_cpu,
        })
    }

    fn big_ours(&self, run: usize, path: &Path, crc: u64) -> Res<Sample> {
        let key = format!("ours/big-{run}");
        let (engine, ledger, job) = self.engine(&format!("ours-big-{run}"))?;
        let _lock = ledger.lock_job(job)?;
        let req = UploadRequest::new(path, BUCKET, &key);
        let s = self.ours(async {
            let out = engine.upload_file(job, &req).await?;
            if out.size != self.config.big_bytes {
                return Err(format!("engine reported {} bytes", out.size).into());
            }
            Ok(())
        })?;
        self.verify_and_delete(&key, self.config.big_bytes, crc)?;
        Ok(s)
    }

    fn big_curl(&self, run: usize, path: &Path, crc: u64) -> Res<Sample> {
        let key = format!("curl/big-{run}");
        let url = presigned_put(&self.server.endpoint, &key);
        // One PUT of the whole file. `Expect:` removes curl's `Expect: 100-continue` (sent for bodies over
        // 1 MiB), so curl does not wait for the interim response before sending the body.
        let args: Vec<String> = [
            "-sS",
            "--fail",
            "-H",
            "Expect:",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-T",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([path.display().to_string(), url])
        .collect();
        self.server_reset();
        let server_cpu0 = cpu_secs(self.server.pid());
        let (secs, peak_kib, cpu, out) = timed_curl(&args)?;
        let server_cpu = cpu_secs(self.server.pid()) - server_cpu0;
        let server_peak_kib = self.server_peak();
        if out.trim() != "200" {
            return Err(format!("curl PUT answered {out:?}").into());
        }
        self.verify_and_delete(&key, self.config.big_bytes, crc)?;
        Ok(Sample {
            secs,
            peak_kib,
            server_peak_kib,
            base_kib: 0,
            cpu,
            server_cpu,
        })
    }

    fn small_ours(&self, run: usize, files: &[SmallFile]) -> Res<Sample> {
        let prefix = format!("ours/small-{run}/");
        let (engine, _ledger, job) = self.engine(&format!("ours-small-{run}"))?;
        let req = DirRequest {
            dir: self.work.join("data/small"),
            bucket: BUCKET.into(),
            prefix: prefix.clone(),
            metadata: Default::default(),
            tags: None,
            filter: Default::default(),
        };
        // A directory job (it takes the job's lock, walks the directory and runs `upload_file` per file under
        // the engine's one scheduler: at most 8 requests in flight).
        let s = self.ours(async {
            let summary = engine.upload_dir(job, req)?.join().await?;
            if summary.state != JobState::Done || !summary.failures.is_empty() {
                return Err(format!("directory job ended {:?}: {:?}", summary.state, summary.failures).into());
            }
            Ok(())
        })?;
        self.verify_small(&prefix, files)?;
        Ok(s)
    }

    fn small_curl(&self, run: usize, files: &[SmallFile]) -> Res<Sample> {
        let prefix = format!("curl/small-{run}/");
        // One curl process, one config file of uploads, 8 transfers at once over reused keep-alive
        // connections. The URLs are presigned before the clock starts (the engine signs each request inside
        // its time; signing is microseconds).
        let cfg_path = self.work.join(format!("curl-small-{run}.cfg"));
        let mut cfg = String::new();
        for f in files {
            let url = presigned_put(&self.server.endpoint, &format!("{prefix}{}", f.name));
            cfg.push_str(&format!(
                "url = \"{url}\"\nupload-file = \"{}\"\noutput = \"/dev/null\"\n",
                f.path.display()
            ));
        }
        std::fs::write(&cfg_path, cfg)?;
        let args: Vec<String> = [
            "-sS",
            "--fail",
            "-H",
            "Expect:",
            "--parallel",
            "--parallel-max",
            &CONCURRENCY.to_string(),
            // Open the 8 connections at once instead of waiting to see whether one can multiplex (it cannot:
            // plain HTTP/1.1), so curl reaches full concurrency from the start.
            "--parallel-immediate",
            "-w",
            "%{http_code}\\n",
            "-K",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([cfg_path.display().to_string()])
        .collect();
        self.server_reset();
        let server_cpu0 = cpu_secs(self.server.pid());
        let (secs, peak_kib, cpu, out) = timed_curl(&args)?;
        let server_cpu = cpu_secs(self.server.pid()) - server_cpu0;
        let server_peak_kib = self.server_peak();
        let ok = out.lines().filter(|l| l.trim() == "200").count();
        if ok != files.len() {
            return Err(format!("curl --parallel: {ok} of {} uploads answered 200", files.len()).into());
        }
        self.verify_small(&prefix, files)?;
        Ok(Sample {
            secs,
            peak_kib,
            server_peak_kib,
            base_kib: 0,
            cpu,
            server_cpu,
        })
    }

    /// HEAD: the object has the file's size and CRC-64. Then removes it (1 GiB per run adds up).
    fn verify_and_delete(&self, key: &str, size: u64, crc: u64) -> Res<()> {
        self.rt.block_on(async {
            let obj = ObjectRef::new(BUCKET, key);
            let info = self.admin.head_object(&obj).await?;
            if info.size != size || info.crc64 != Some(crc) {
                return Err(format!(
                    "{key}: size {} crc {:?}, expected {size} and {crc}",
                    info.size, info.crc64
                )
                .into());
            }
            self.admin.delete_object(&obj).await?;
            Ok(())
        })
    }

    /// Lists the prefix (every object there, with its size), then HEADs an evenly spread sample for the CRC-64.
    fn verify_small(&self, prefix: &str, files: &[SmallFile]) -> Res<()> {
        self.rt.block_on(async {
            let mut listed = 0usize;
            let mut token = None;
            loop {
                let req = ListRequest {
                    prefix: Some(prefix.into()),
                    continuation_token: token.take(),
                    max_keys: Some(1000),
                    ..ListRequest::default()
                };
                let page = self.admin.list_objects(BUCKET, &req).await?;
                for o in &page.objects {
                    if o.size != self.config.small_bytes {
                        return Err(format!("{}: {} bytes", o.key, o.size).into());
                    }
                }
                listed += page.objects.len();
                match page.next_continuation_token {
                    Some(t) if page.is_truncated => token = Some(t),
                    _ => break,
                }
            }
            if listed != files.len() {
                return Err(format!("{prefix}: {listed} objects listed, {} uploaded", files.len()).into());
            }
            let step = (files.len() / SMALL_SAMPLE).max(1);
            for f in files.iter().step_by(step) {
                let key = format!("{prefix}{}", f.name);
                let info = self.admin.head_object(&ObjectRef::new(BUCKET, &key)).await?;
                if info.size != self.config.small_bytes || info.crc64 != Some(f.crc) {
                    return Err(
                        format!("{key}: size {} crc {:?}, expected crc {}", info.size, info.crc64, f.crc).into(),
                    );
                }
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Report.

struct Workload {
    name: String,
    bytes_per_run: u64,
    files_per_run: usize,
    reference: String,
    curl: Vec<Sample>,
    ours: Vec<Sample>,
}

impl Workload {
    /// Prints one run and files it under its side.
    fn record(&mut self, label: &str, run: usize, ours: bool, s: Sample) {
        eprintln!(
            "  {label} run {run} {:<5} {:>8.3} s  peak {:>7.1} MiB  cpu {:.2} / server {:.2}",
            if ours { "ours" } else { "curl" },
            s.secs,
            s.peak_kib as f64 / 1024.0,
            s.cpu,
            s.server_cpu
        );
        if ours {
            self.ours.push(s)
        } else {
            self.curl.push(s)
        }
    }
}

impl Workload {
    fn secs(v: &[Sample]) -> f64 {
        median(v.iter().map(|s| s.secs).collect())
    }
    fn mib_s(&self, v: &[Sample]) -> f64 {
        self.bytes_per_run as f64 / MIB as f64 / Self::secs(v)
    }
    fn files_s(&self, v: &[Sample]) -> f64 {
        self.files_per_run as f64 / Self::secs(v)
    }
    fn peak_mib(v: &[Sample]) -> f64 {
        median(v.iter().map(|s| s.peak_kib as f64 / 1024.0).collect())
    }
    fn server_peak_mib(v: &[Sample]) -> Option<f64> {
        let p: Vec<f64> = v
            .iter()
            .filter_map(|s| s.server_peak_kib)
            .map(|k| k as f64 / 1024.0)
            .collect();
        (!p.is_empty()).then(|| p.iter().cloned().fold(0.0, f64::max))
    }
    fn runs(v: &[Sample]) -> String {
        v.iter()
            .map(|s| format!("{:.2}", s.secs))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "?".into());
    let mem = proc_meminfo_gib();
    format!(
        "{} — {cpu}, {} CPUs, {mem:.1} GiB RAM",
        sh("uname", &["-srm"]),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

fn proc_meminfo_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        })
        .map_or(0.0, |k| k / 1024.0 / 1024.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn report(b: &Bench, workloads: &[Workload], load_before: &str, own_baseline_kib: u64) -> String {
    let c = &b.config;
    let mut t = String::new();
    t.push_str("| workload | side | median time (s) | MiB/s | files/s | ours / curl | peak RSS (MiB) | server peak RSS (MiB) | CPU s client / server | runs (s) |\n");
    t.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for w in workloads {
        for (side, v) in [(w.reference.as_str(), &w.curl), ("engine (ours)", &w.ours)] {
            let ratio = if std::ptr::eq(v, &w.ours) {
                format!("**{:.2}**", w.mib_s(&w.ours) / w.mib_s(&w.curl))
            } else {
                "1".into()
            };
            let files = if w.files_per_run > 1 {
                format!("{:.0}", w.files_s(v))
            } else {
                "—".into()
            };
            let server = Workload::server_peak_mib(v).map_or("—".into(), |m| format!("{m:.1}"));
            let peak = if std::ptr::eq(v, &w.ours) && b.own_peak_reset {
                let base = median(v.iter().map(|s| s.base_kib as f64 / 1024.0).collect());
                format!("{:.1} (at start {base:.1})", Workload::peak_mib(v))
            } else {
                format!("{:.1}", Workload::peak_mib(v))
            };
            t.push_str(&format!(
                "| {} | {side} | {:.3} | {:.1} | {files} | {ratio} | {peak} | {server} | {:.2} / {:.2} | {} |\n",
                w.name,
                Workload::secs(v),
                w.mib_s(v),
                median(v.iter().map(|s| s.cpu).collect()),
                median(v.iter().map(|s| s.server_cpu).collect()),
                Workload::runs(v)
            ));
        }
    }
    let commit = sh(
        "git",
        &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"],
    );
    let dirty = sh(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    );
    let curl = sh("curl", &["--version"]);
    let mut s = String::new();
    s.push_str("# Benchmark results\n\nRewritten by `cargo bench --bench transfer` (see `README.md`). Do not edit by hand.\n\n");
    s.push_str(&format!("- Date: {}\n", sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"])));
    s.push_str(&format!(
        "- Commit: {commit}{}\n",
        if dirty.is_empty() || dirty == "?" {
            ""
        } else {
            " (with uncommitted changes)"
        }
    ));
    s.push_str(&format!("- Machine: {}\n", machine()));
    s.push_str(&format!(
        "- Load average before / after: {load_before} / {} (the machine may be shared)\n",
        loadavg()
    ));
    s.push_str(&format!("- curl: {}\n", curl.lines().next().unwrap_or("?")));
    s.push_str(&format!(
        "- Workloads: one {} MiB file; {} files of {} KiB. {} run(s) per side, alternating which side goes first; medians reported.\n",
        c.big_bytes / MIB,
        c.small_files,
        c.small_bytes / KIB,
        c.runs
    ));
    s.push_str(
        "- Engine: `EngineConfig::default()` (8 MiB parts, multipart from 64 MiB, 8 requests in flight, 256 MiB budget); small files as one directory job (`Engine::upload_dir`).\n",
    );
    s.push_str("- Server: `transfer serve --no-fsync` on 127.0.0.1, root in a temp dir on the same disk, `RUST_LOG=warn`, shared by both sides.\n\n");
    s.push_str(&t);
    s.push_str("\nPeak RSS: curl = `/usr/bin/time -f %M` of the curl process. Ours = the bench process's `VmHWM`, ");
    if b.own_peak_reset {
        s.push_str(&format!(
            "reset (`/proc/self/clear_refs` ← 5) just before the engine phase, so it is the process's RSS at the start of the phase (\"at start\", median; up to {:.1} MiB: runtime, file list, and heap the allocator kept from earlier phases) plus what the phase added. The medians of peak and start come from different runs.\n",
            own_baseline_kib as f64 / 1024.0
        ));
    } else {
        s.push_str("NOT resettable here: the value is the process's peak since start (an upper bound).\n");
    }
    if b.per_run_server_peak {
        s.push_str("Server peak RSS: `VmHWM` of the serve process, reset before each side's run and read after it (max over runs).\n");
    } else {
        s.push_str("Server peak RSS: not measured (its clear_refs could not be written).\n");
    }
    s.push_str("CPU: user + system seconds during the run (medians), of the uploader (curl: `/usr/bin/time %U %S`; ours: `/proc/self/stat` of the whole bench process) and of the server (`/proc/<pid>/stat`). Both share the machine's cores.\n");
    s
}

// ---------------------------------------------------------------------------------------------------------

fn run(config: &Config) -> Res<()> {
    let work = tempfile::Builder::new().prefix("transfer-bench-").tempdir()?;
    let data = work.path().join("data");
    std::fs::create_dir_all(data.join("small"))?;
    let root = work.path().join("root");
    let server = Server::start(&root, &work.path().join("serve.log"))?;
    let own_peak_reset = reset_works();
    let per_run_server_peak = reset_peak(server.pid()) && proc_status_kib(server.pid(), "VmHWM").is_some();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let admin = client(&server.endpoint)?;
    rt.block_on(admin.create_bucket(BUCKET))?;
    eprintln!(
        "transfer bench: {} on {} ({}), work dir {}",
        if config.full { "full run" } else { "smoke run" },
        server.endpoint,
        env!("CARGO_BIN_EXE_transfer"),
        work.path().display()
    );

    eprintln!(
        "generating {} MiB + {} x {} KiB ...",
        config.big_bytes / MIB,
        config.small_files,
        config.small_bytes / KIB
    );
    let big = data.join("big.bin");
    let big_crc = write_file(&big, config.big_bytes, 1)?;
    let mut files = Vec::with_capacity(config.small_files);
    for i in 0..config.small_files {
        let name = format!("f{i:05}.bin");
        let path = data.join("small").join(&name);
        let crc = write_file(&path, config.small_bytes, 1000 + i as u64)?;
        files.push(SmallFile { path, name, crc });
    }

    let load_before = loadavg();
    let bench = Bench {
        config: config.clone(),
        work: work.path().to_owned(),
        server,
        rt,
        admin,
        per_run_server_peak,
        own_peak_reset,
    };
    let mut big_w = Workload {
        name: format!("1 file × {} MiB", config.big_bytes / MIB),
        bytes_per_run: config.big_bytes,
        files_per_run: 1,
        reference: "curl, one PUT".into(),
        curl: vec![],
        ours: vec![],
    };
    let mut small_w = Workload {
        name: format!("{} files × {} KiB", config.small_files, config.small_bytes / KIB),
        bytes_per_run: config.small_files as u64 * config.small_bytes,
        files_per_run: config.small_files,
        reference: format!("curl --parallel-max {CONCURRENCY}"),
        curl: vec![],
        ours: vec![],
    };
    for run in 0..config.runs {
        // Alternate which side goes first, so neither always gets the warmer (or the more fragmented) server.
        let curl_first = run % 2 == 0;
        for ours_turn in [!curl_first, curl_first] {
            let s = if ours_turn {
                bench.big_ours(run, &big, big_crc)?
            } else {
                bench.big_curl(run, &big, big_crc)?
            };
            big_w.record("big  ", run, ours_turn, s);
        }
        for ours_turn in [!curl_first, curl_first] {
            let s = if ours_turn {
                bench.small_ours(run, &files)?
            } else {
                bench.small_curl(run, &files)?
            };
            small_w.record("small", run, ours_turn, s);
        }
    }
    let own_baseline_kib = big_w
        .ours
        .iter()
        .chain(&small_w.ours)
        .map(|s| s.base_kib)
        .max()
        .unwrap_or(0);
    let text = report(&bench, &[big_w, small_w], &load_before, own_baseline_kib);
    println!("\n{text}");
    if config.full {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/RESULTS.md");
        std::fs::write(&path, &text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
