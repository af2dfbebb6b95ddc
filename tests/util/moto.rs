//! moto's S3 server (`moto_server`, from the test virtualenv that `scripts/venv` makes) as a child process on
//! 127.0.0.1, and S3 clients pointed at it. Each test starts its own server and dropping it kills the process.
//!
//! Without the virtualenv the tests fail, saying how to make it (`scripts/test` makes it).

use super::process::ChildServer;
use std::path::PathBuf;
use std::time::Duration;
use transfer_engine::http::HttpStore;
use transfer_engine::sign::Credentials;

/// How long moto_server may take to answer after it is started (it imports all of moto first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The credentials clients sign with (moto checks no signature).
pub const MOTO_KEY: (&str, &str) = ("moto-test-key", "moto-test-secret");

/// A running moto_server. Dropping it kills the process.
pub struct Moto {
    _server: ChildServer,
    pub endpoint: String,
}

/// The moto_server executable: `TRANSFER_MOTO_SERVER`, or the one in `target/sdk-venv`.
fn executable() -> PathBuf {
    match std::env::var_os("TRANSFER_MOTO_SERVER") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin/moto_server"),
    }
}

impl Moto {
    /// Starts moto_server on a free port and waits until it accepts connections; a panic naming the fix when
    /// the virtualenv is missing (a test never passes without its server).
    pub fn start(test: &str) -> Moto {
        let exe = executable();
        assert!(
            exe.is_file(),
            "{test}: {} is missing. The moto tests run moto's S3 server from the test virtualenv: run \
             ./scripts/test (or ./scripts/venv once, then cargo test).",
            exe.display()
        );
        let server = ChildServer::start(test, "moto_server", &exe, START_TIMEOUT, |cmd, port| {
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]).env("MOTO_ALLOW_NONEXISTENT_REGION", "true");
        });
        let endpoint = server.endpoint.clone();
        Moto { _server: server, endpoint }
    }

    /// Puts `key` (with `body` as its bytes) through boto3 from the test virtualenv: how keys our own client
    /// refuses to send (`..` segments, backslashes) are made, as a careless writer would make them.
    pub fn put_unchecked(&self, bucket: &str, key: &str, body: &str) {
        self.boto3_put(bucket, key, body, "");
    }

    /// Puts `key` through boto3 claiming `crc32c` (base64) as its CRC-32C, which moto stores without checking:
    /// an object whose bytes are not what its checksum says, as a damaged store would serve it.
    pub fn put_with_crc32c(&self, bucket: &str, key: &str, body: &str, crc32c: &str) {
        self.boto3_put(bucket, key, body, crc32c);
    }

    fn boto3_put(&self, bucket: &str, key: &str, body: &str, crc32c: &str) {
        let script = "import sys, boto3\n\
            s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
            aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])\n\
            extra = {'ChecksumAlgorithm': 'CRC32C', 'ChecksumCRC32C': sys.argv[7]} if sys.argv[7] else {}\n\
            s3.put_object(Bucket=sys.argv[4], Key=sys.argv[5], Body=sys.argv[6].encode(), **extra)\n\
            assert s3.head_object(Bucket=sys.argv[4], Key=sys.argv[5])['ContentLength'] == len(sys.argv[6])\n";
        let out = std::process::Command::new(executable().with_file_name("python"))
            .args(["-c", script, &self.endpoint, MOTO_KEY.0, MOTO_KEY.1, bucket, key, body, crc32c])
            .output()
            .expect("run the virtualenv's python");
        assert!(out.status.success(), "boto3 put {key:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// An S3 client signing for `region`.
    pub fn client_in(&self, region: &str) -> HttpStore {
        HttpStore::s3()
            .endpoint(&self.endpoint)
            .region(region)
            .credentials(Credentials::new(MOTO_KEY.0, MOTO_KEY.1))
            .system_proxy(false)
            .build()
            .expect("S3 client")
    }
}
