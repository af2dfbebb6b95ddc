//! # transfer-server
//!
//! `transfer serve`: any [`ServedStore`] (in practice the local filesystem store) served over
//! HTTP in the OSS dialect, faithfully enough that Alibaba's own SDKs (`oss2`, `alibabacloud-oss-v2`) and our
//! OSS client work against it unchanged. It is what the conformance and SDK suites run against, and a way to
//! put a directory on the network as an OSS endpoint.
//!
//! # What it does
//! - Every request's signature (V1 or V4, header or presigned) is checked with
//!   [`transfer_engine::sign::verify`] before anything else; failures answer OSS's error documents.
//! - Addressing: path style (`/bucket/key`) and virtual-host style (`Host: bucket.localhost`, or
//!   `bucket.<suffix>` for a suffix given to [`Server::with_virtual_host_suffixes`]); IP hosts are path style.
//! - One dispatch table maps method + sub-resources to an operation; one function per direction maps headers to
//!   store options and store results to headers.
//! - Bodies stream into the store with their `Content-Length`, or with `Transfer-Encoding: chunked` (PutObject,
//!   UploadPart, AppendObject; the store enforces its limits as the bytes arrive); `Content-MD5` is checked on
//!   the fly and a mismatch makes the store keep nothing (400 `InvalidDigest`).
//! - Timeouts ([`Timeouts`]): a request's headers must arrive within 60 s of the connection becoming idle (which
//!   also closes an idle keep-alive connection), and a body that sends no byte for 60 s fails with 400
//!   `RequestTimeout`: whatever it had written is removed and the connection is closed.
//! - A full disk (the local store's 507 `InsufficientStorage`) refuses writes and still serves deletes and
//!   aborts; see `transfer_engine::local`.
//! - Errors are OSS's `<Error>` XML with status, request id, EC and extras; on HEAD the document goes
//!   base64-encoded in `x-oss-err`.
//! - A request signed with AWS SigV4 speaks the S3 dialect: its signature is checked as S3 checks it, and its
//!   `x-amz-*` headers and the answer's are translated at the edge, errors included (see the `s3` module).
//!   A body whose SHA-256 the signature covers (`x-amz-content-sha256` other than `UNSIGNED-PAYLOAD`) is
//!   checked against it as it streams, like `Content-MD5`: 400 `XAmzContentSHA256Mismatch`, nothing kept.
//!
//! # Example
//! ```no_run
//! # async fn demo(store: std::sync::Arc<impl transfer_server::ServedStore + 'static>) -> std::io::Result<()> {
//! use transfer_engine::sign::{Credentials, CredentialsFile};
//! let server = transfer_server::Server::bind("127.0.0.1:0".parse().unwrap(), store, Credentials::new("ak", "sk")).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod auth;
mod body;
mod bucket;
mod handlers;
mod headers;
mod multipart;
mod object;
mod response;
mod routing;
mod s3;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use response::{Common, Reply, RequestIds, ResponseBody};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use transfer_engine::sign::{Credentials, CredentialsFile};
use transfer_engine::{BucketStore, MultipartStore, ObjectStore, OssExtensions, Result};

/// What `transfer serve` puts on the network: a store with every operation of the OSS dialect (objects,
/// multipart uploads, OSS's own operations, buckets). Any type that has them all is one.
pub trait ServedStore: ObjectStore + MultipartStore + OssExtensions + BucketStore {}

impl<T: ObjectStore + MultipartStore + OssExtensions + BucketStore + ?Sized> ServedStore for T {}

/// How long a connection may take to send a request's headers (including an idle keep-alive wait) before
/// it is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a request body may go without sending a byte before the request fails.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment variables that override the timeouts (seconds, fractions allowed): for tests, and for a
/// deployment that needs other values before the command line has flags for them.
pub const HEADER_TIMEOUT_ENV: &str = "TRANSFER_SERVE_HEADER_TIMEOUT";
/// See [`HEADER_TIMEOUT_ENV`].
pub const BODY_TIMEOUT_ENV: &str = "TRANSFER_SERVE_BODY_TIMEOUT";

/// How long the server waits for a client before it gives up on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// From the moment a connection is idle (accepted, or its last answer sent) to the end of the next request's
    /// headers: an idle keep-alive connection is closed after this long, and so is one that sends its headers
    /// too slowly. 60 s by default.
    pub header: Duration,
    /// The longest a request body may go without sending a byte. The request then fails with 400
    /// `RequestTimeout`, whatever the store had received of it is removed, and the connection is closed.
    /// 60 s by default.
    pub body: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { header: HEADER_READ_TIMEOUT, body: BODY_READ_TIMEOUT }
    }
}

impl Timeouts {
    /// The defaults, with [`HEADER_TIMEOUT_ENV`] and [`BODY_TIMEOUT_ENV`] applied when set. A value that is not
    /// a number of seconds above 0 and at most a day is an error naming the variable.
    pub fn from_env() -> std::io::Result<Self> {
        fn var(name: &str, default: Duration) -> std::io::Result<Duration> {
            let Ok(raw) = std::env::var(name) else { return Ok(default) };
            raw.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && *s <= 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "{name}={raw:?} is not a number of seconds above 0 and at most 86400 (such as 60 or 0.5)"
                        ),
                    )
                })
        }
        let d = Self::default();
        Ok(Self { header: var(HEADER_TIMEOUT_ENV, d.header)?, body: var(BODY_TIMEOUT_ENV, d.body)? })
    }
}

/// How long [`Server::run`] waits for open requests to finish after shutdown is asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// An OSS-dialect HTTP server in front of a store, bound and ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server<S> {
    listener: TcpListener,
    state: Arc<State<S>>,
}

#[derive(Debug)]
struct State<S> {
    store: Arc<S>,
    credentials: auth::Keys,
    suffixes: Vec<String>,
    ids: RequestIds,
    timeouts: Timeouts,
}

impl<S: ServedStore + 'static> Server<S> {
    /// Binds `addr` (port 0 picks a free port) to serve `store`, accepting requests signed with `credentials`
    /// (which, when they carry a security token, requests must present too). Virtual-host addressing is on for
    /// `<bucket>.localhost`. The timeouts are [`Timeouts::from_env`]'s (an invalid variable fails here).
    pub async fn bind(addr: SocketAddr, store: Arc<S>, credentials: Credentials) -> std::io::Result<Self> {
        let timeouts = Timeouts::from_env()?;
        let listener = TcpListener::bind(addr).await?;
        let state = State {
            store,
            credentials: auth::Keys::fixed(vec![credentials]),
            suffixes: vec!["localhost".into()],
            ids: RequestIds::new(),
            timeouts,
        };
        Ok(Self { listener, state: Arc::new(state) })
    }

    /// Replaces the timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        let state = Arc::get_mut(&mut self.state).expect("the server has not started");
        state.timeouts = timeouts;
        self
    }

    /// Also accepts virtual-host requests for `<bucket>.<suffix>` for each suffix (such as
    /// `oss-cn-hangzhou.example.test`); `localhost` stays on.
    pub fn with_virtual_host_suffixes<I: IntoIterator<Item = T>, T: Into<String>>(mut self, suffixes: I) -> Self {
        let state = Arc::get_mut(&mut self.state).expect("the server has not started");
        state.suffixes.extend(suffixes.into_iter().map(|s| s.into().trim_matches('.').to_ascii_lowercase()));
        self
    }

    /// Also accepts requests signed with `credentials`.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        let state = Arc::get_mut(&mut self.state).expect("the server has not started");
        state.credentials.push(credentials);
        self
    }

    /// Accepts the credentials the JSON file at `path` names ([`CredentialsFile`]'s form) instead of those
    /// given so far, re-reading it when it changes: a key it no longer names stays accepted until its
    /// `Expiration` (an STS token outlives the issue of the next), one without an expiration is revoked at once,
    /// and expired ones are refused. Fails when the file cannot be read now.
    pub fn with_credentials_file(mut self, path: impl Into<std::path::PathBuf>) -> Result<Self> {
        let keys = auth::Keys::from_file(CredentialsFile::new(path))?;
        let state = Arc::get_mut(&mut self.state).expect("the server has not started");
        state.credentials = keys;
        Ok(self)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open requests finish (up to 10 seconds)
    /// and returns. One task per connection, HTTP/1.1 keep-alive.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(self.state.clone(), stream, peer, stop_rx.clone()));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        let drained =
            tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(open = connections.len(), "connections still open after the drain timeout; closing them");
            connections.abort_all();
        }
        Ok(())
    }
}

async fn serve_connection<S: ServedStore + 'static>(
    state: Arc<State<S>>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let header_timeout = state.timeouts.header;
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(state.handle(req, peer).await) }
    });
    let mut builder = http1::Builder::new();
    // The header timer runs from the moment the connection is idle, so it also closes idle keep-alive connections.
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// What the access log records about a request besides its status.
#[derive(Default)]
struct LogFacts {
    op: Option<routing::Op>,
    access_key_id: Option<String>,
    /// The request is signed with AWS SigV4: it speaks the S3 dialect, and so does its answer.
    s3: bool,
}

impl<S: ServedStore + 'static> State<S> {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        let started = Instant::now();
        let common = Common { request_id: self.ids.next() };
        let method = req.method().clone();
        let uri = req.uri().clone();
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost")
            .to_owned();
        let mut facts = LogFacts::default();
        let mut resp = match self.process(req, &host, &mut facts).await {
            Ok(reply) => reply.into_response(&common),
            Err(e) if facts.s3 => {
                response::error_response(&s3::error_to_s3(&e), &common, &host, method == Method::HEAD)
            }
            Err(e) => response::error_response(&e, &common, &host, method == Method::HEAD),
        };
        if facts.s3 {
            s3::response_to_s3(resp.headers_mut());
        }
        tracing::debug!(
            request_id = %common.request_id,
            %peer,
            %method,
            path = uri.path(),
            op = ?facts.op,
            access_key_id = facts.access_key_id.as_deref().unwrap_or("-"),
            status = resp.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request"
        );
        resp
    }

    async fn process(&self, req: Request<Incoming>, host: &str, facts: &mut LogFacts) -> Result<Reply> {
        let (mut parts, body) = req.into_parts();
        let target = routing::parse_target(Some(host), parts.uri.path(), parts.uri.query(), &self.suffixes)?;
        facts.s3 = transfer_engine::sign::s3::is_signed_with_sigv4(&parts.headers, &target.query);
        let mut payload_sha256 = None;
        // S3 takes an `x-amz-checksum-*` header where OSS requires Content-MD5 (DeleteObjects).
        let s3_checksum = facts.s3 && s3::has_checksum_header(&parts.headers);
        if facts.s3 {
            let verified = auth::check_s3(&self.credentials, &parts.method, parts.uri.path(), &target, &parts.headers)?;
            facts.access_key_id = Some(verified.access_key_id);
            payload_sha256 = s3::payload_sha256(&verified.payload_hash)?;
            s3::request_to_oss(&parts.method, &mut parts.headers)?;
        } else {
            let verified = auth::check(&self.credentials, &parts.method, &target, &parts.headers)?;
            facts.access_key_id = Some(verified.access_key_id);
        }
        let op = routing::resolve(&parts.method, &target, parts.headers.contains_key("x-oss-copy-source"))?;
        facts.op = Some(op);
        let req = handlers::Req {
            op,
            target,
            headers: parts.headers,
            body: Some(body),
            host: host.to_owned(),
            payload_sha256,
            s3_checksum,
            body_timeout: self.timeouts.body,
        };
        handlers::dispatch(&*self.store, req).await
    }
}
