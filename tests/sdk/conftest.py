"""Fixtures for the SDK conformance tests: run `transfer serve` and talk to it with Alibaba's own SDKs.

The server is started once per session:

    transfer serve --root <tmpdir> --listen 127.0.0.1:0

with OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET set to test values. Its first stdout line must be exactly
`listening on http://127.0.0.1:PORT`; that URL is the endpoint handed to both SDKs (an IP endpoint, so both
SDKs use path-style addressing). The binary is $TRANSFER_BIN, else target/debug/transfer under the repo root.

The same credentials are exported into this (pytest) process so the tests can use the seeds'
EnvironmentVariableCredentialsProvider exactly as the documents do.
"""
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import oss2
import alibabacloud_oss_v2 as oss

REPO_ROOT = Path(__file__).resolve().parents[2]

ACCESS_KEY_ID = "LTAI-transfer-test-id"
ACCESS_KEY_SECRET = "transfer-test-secret-0123456789"
REGION = "cn-hangzhou"

STARTUP_TIMEOUT = 30.0
LISTEN_RE = re.compile(r"^listening on (http://127\.0\.0\.1:\d+)$")

# The seeds read credentials from the environment; make that work in-process too.
os.environ["OSS_ACCESS_KEY_ID"] = ACCESS_KEY_ID
os.environ["OSS_ACCESS_KEY_SECRET"] = ACCESS_KEY_SECRET


def _transfer_bin() -> Path:
    env = os.environ.get("TRANSFER_BIN")
    path = Path(env).resolve() if env else REPO_ROOT / "target" / "debug" / "transfer"
    if not path.is_file():
        pytest.exit(
            f"transfer binary not found at {path} (build it with `cargo build --bin transfer` "
            "or set TRANSFER_BIN)",
            returncode=2,
        )
    return path


class _Drain(threading.Thread):
    """Keeps reading a pipe so the server never blocks on a full stdout; keeps the text for diagnostics."""

    def __init__(self, stream, sink):
        super().__init__(daemon=True)
        self.stream = stream
        self.sink = sink

    def run(self):
        for line in iter(self.stream.readline, ""):
            self.sink.write(line)
            self.sink.flush()


class ServerHandle:
    def __init__(self, endpoint, proc, log_path):
        self.endpoint = endpoint
        self.proc = proc
        self.log_path = log_path

    def log_tail(self, n=60):
        try:
            lines = Path(self.log_path).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """Starts `transfer serve` for the whole session and yields a ServerHandle (``.endpoint``)."""
    binary = _transfer_bin()
    root = tmp_path_factory.mktemp("serve-root")
    log_path = tmp_path_factory.mktemp("serve-log") / "server.log"
    env = dict(os.environ)
    env["OSS_ACCESS_KEY_ID"] = ACCESS_KEY_ID
    env["OSS_ACCESS_KEY_SECRET"] = ACCESS_KEY_SECRET
    env.setdefault("RUST_BACKTRACE", "1")
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [str(binary), "serve", "--root", str(root), "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        bufsize=1,
        env=env,
        cwd=str(root),
    )
    try:
        first_line = _read_first_line(proc, STARTUP_TIMEOUT)
        m = LISTEN_RE.match(first_line.rstrip("\r\n"))
        if not m:
            raise RuntimeError(
                f"first stdout line of `transfer serve` was {first_line!r}, "
                "expected 'listening on http://127.0.0.1:PORT'"
            )
        _Drain(proc.stdout, log).start()
        handle = ServerHandle(m.group(1), proc, log_path)
        yield handle
    except BaseException:
        log.flush()
        sys.stderr.write("\n--- transfer serve log ---\n" + Path(log_path).read_text(errors="replace") + "\n")
        raise
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


def _read_first_line(proc, timeout):
    result = {}

    def reader():
        result["line"] = proc.stdout.readline()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise RuntimeError(f"`transfer serve` printed no line within {timeout:.0f}s")
    line = result.get("line", "")
    if not line:
        code = proc.wait(timeout=5)
        raise RuntimeError(f"`transfer serve` exited (status {code}) before printing its address")
    return line


@pytest.fixture(scope="session")
def endpoint(server):
    return server.endpoint


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed test, attach the tail of the server log to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when == "call":
        handle = getattr(item, "_transfer_server", None)
        if handle is not None:
            rep.sections.append(("transfer serve log (tail)", handle.log_tail()))


@pytest.fixture(autouse=True)
def _remember_server(request):
    if "server" in request.fixturenames:
        request.node._transfer_server = request.getfixturevalue("server")
    yield


def _bucket_name(request):
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    suffix = secrets.token_hex(4)
    base = base[: 63 - len(suffix) - 3].strip("-") or "b"
    name = f"t-{base}-{suffix}"
    assert 3 <= len(name) <= 63 and re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", name)
    return name


@pytest.fixture
def bucket_name(request, server):
    return _bucket_name(request)


# ---------------------------------------------------------------- oss2 (SDK V1)


@pytest.fixture
def oss2_auth():
    """The seeds' auth: ProviderAuth over the environment = signature V1."""
    from oss2.credentials import EnvironmentVariableCredentialsProvider

    return oss2.ProviderAuth(EnvironmentVariableCredentialsProvider())


@pytest.fixture
def bucket(endpoint, bucket_name, oss2_auth):
    """A fresh, empty bucket for one test, as an oss2.Bucket (V1 signature)."""
    b = oss2.Bucket(oss2_auth, endpoint, bucket_name)
    b.create_bucket()
    return b


# ---------------------------------------------------------------- alibabacloud-oss-v2 (SDK V2)


def make_v2_client(endpoint, signature_version=None, secret=None):
    if secret is None:
        provider = oss.credentials.EnvironmentVariableCredentialsProvider()
    else:
        provider = oss.credentials.StaticCredentialsProvider(ACCESS_KEY_ID, secret)
    cfg = oss.config.load_default()
    cfg.credentials_provider = provider
    cfg.region = REGION
    cfg.endpoint = endpoint  # an IP endpoint: the SDK switches to path style by itself
    if signature_version:
        cfg.signature_version = signature_version
    return oss.Client(cfg)


@pytest.fixture
def client(endpoint):
    """SDK V2 client, default signature (V4)."""
    return make_v2_client(endpoint)


@pytest.fixture
def v2_bucket(client, bucket_name):
    """A fresh bucket created through SDK V2; yields its name."""
    client.put_bucket(oss.PutBucketRequest(bucket=bucket_name))
    return bucket_name
