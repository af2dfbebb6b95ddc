//! moto's S3 server (`moto_server`, from the test virtualenv that `scripts/venv` makes) as a child process on
//! 127.0.0.1, and S3 clients pointed at it. Each test starts its own server and dropping it kills the process.
//!
//! Without the virtualenv the tests fail, saying how to make it; `TRANSFER_SKIP_MOTO=1` skips them instead,
//! with a printed line (for a plain `cargo test` in a fresh clone; `scripts/test` always runs them).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use transfer_engine::s3::S3Store;
use transfer_engine::sign::Credentials;

/// How long moto_server may take to answer after it is started (it imports all of moto first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto_server. Dropping it kills the process.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

/// The moto_server executable: `TRANSFER_MOTO_SERVER`, or the one in `target/sdk-venv`.
fn executable() -> PathBuf {
    match std::env::var_os("TRANSFER_MOTO_SERVER") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin/moto_server"),
    }
}

/// A free port on 127.0.0.1 (moto_server needs a port number; 0 would leave us guessing which it took).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Moto {
    /// Starts moto_server on a free port and waits until it accepts connections. `None`, after printing a
    /// line, when `TRANSFER_SKIP_MOTO=1`; a panic naming the fix when the virtualenv is missing.
    pub fn start(test: &str) -> Option<Moto> {
        if std::env::var("TRANSFER_SKIP_MOTO").is_ok_and(|v| v == "1") {
            println!("SKIPPED {test}: TRANSFER_SKIP_MOTO=1 (./scripts/test runs the moto tests)");
            return None;
        }
        let exe = executable();
        assert!(
            exe.is_file(),
            "{test}: {} is missing. The moto tests run moto's S3 server from the test virtualenv: run \
             ./scripts/test (or ./scripts/venv once, then cargo test), or set TRANSFER_SKIP_MOTO=1 to skip them.",
            exe.display()
        );
        // A port picked here can be taken before moto binds it: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&exe)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_ALLOW_NONEXISTENT_REGION", "true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{test}: cannot start {}: {e}", exe.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("moto_server on port {port} exited with {status}");
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Some(Moto { child, endpoint: format!("http://{addr}") });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{test}: moto_server did not answer on {addr} within {} s", START_TIMEOUT.as_secs());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("{test}: moto_server would not start: {last}");
    }

    /// An S3 client of this server (path style, region us-east-1; moto checks no signature).
    pub fn client(&self) -> S3Store {
        self.client_in("us-east-1")
    }

    /// An S3 client signing for `region`.
    pub fn client_in(&self, region: &str) -> S3Store {
        S3Store::builder()
            .endpoint(&self.endpoint)
            .region(region)
            .credentials(Credentials::new("moto-test-key", "moto-test-secret"))
            .system_proxy(false)
            .build()
            .expect("S3 client")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
