//! s3s-fs (the file-system S3 server of the `s3s` project, installed by `scripts/third-party` into
//! `target/s3s-fs`) as a child process on 127.0.0.1 with a temporary root and its own credentials. Unlike moto it
//! checks AWS SigV4 and the payload's SHA-256, and Content-MD5 on PutObject. Each test starts its own server;
//! dropping it kills the process and removes the root.
//!
//! Without the binary the tests fail, saying how to install it (`scripts/test` installs it).

use super::process::ChildServer;
use std::path::PathBuf;
use std::time::Duration;

/// How long s3s-fs may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The credentials the server accepts.
pub const S3S_KEY: (&str, &str) = ("s3s-test-key", "s3s-test-secret");

/// A running s3s-fs. Dropping it kills the process and removes its root.
pub struct S3sFs {
    _server: ChildServer,
    _root: tempfile::TempDir,
    pub endpoint: String,
}

/// The s3s-fs executable: `TRANSFER_S3S_FS`, or the one `scripts/third-party` installs.
fn executable() -> PathBuf {
    match std::env::var_os("TRANSFER_S3S_FS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/s3s-fs/bin/s3s-fs"),
    }
}

impl S3sFs {
    /// Starts s3s-fs on a free port with a temporary root; a panic naming the fix when the binary is missing (a
    /// test never passes without its server).
    pub fn start(test: &str) -> S3sFs {
        let exe = executable();
        assert!(
            exe.is_file(),
            "{test}: {} is missing. Run ./scripts/test (or ./scripts/third-party once, then cargo test).",
            exe.display()
        );
        let root = tempfile::tempdir().expect("temp root");
        let server = ChildServer::start(test, "s3s-fs", &exe, START_TIMEOUT, |cmd, port| {
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", S3S_KEY.0, "--secret-key", S3S_KEY.1])
                .arg(root.path())
                .env_remove("RUST_LOG");
        });
        let endpoint = server.endpoint.clone();
        S3sFs { _server: server, _root: root, endpoint }
    }
}
