//! A fault-injecting HTTP proxy for tests: it sits between a client and `transfer serve` (or any server) on
//! 127.0.0.1 and, following a schedule of rules, resets connections, answers 500/503 (`SlowDown`), answers
//! `200 OK` with an `<Error>` body, delays, cuts a response body short, loses a response, or damages a request
//! body. Everything else is forwarded as is, the Host header included (SigV4 signs it: the upstream sees the
//! host the client signed for, the proxy's, so the upstream must be on loopback too). Canned answers speak the
//! dialect of the request they answer: a request signed with AWS SigV4 gets `x-amz-request-id` and no
//! `x-oss-*` headers, and no answer to a HEAD has a body. Dropping the proxy stops it.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to do to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Close the connection without answering.
    Reset,
    /// Answer this status with an `<Error>` document of this code, without forwarding.
    Status(u16, &'static str),
    /// Answer `200 OK` whose body is an `<Error>` (InternalError), without forwarding.
    ErrorBody200,
    /// Wait, then forward.
    Delay(Duration),
    /// Forward, then send only half of the response body before closing.
    CutBody,
    /// Forward (the server does the work), then answer 500 as if it had failed: the client must cope with an
    /// operation that succeeded although it was told otherwise (a retried Complete meets NoSuchUpload).
    LoseResponse,
    /// Flip one byte in the middle of the request body, then forward: what the server does with a body that
    /// does not match its Content-MD5 (or its signed SHA-256).
    #[allow(dead_code)] // Used by the conformance binary only.
    CorruptRequest,
    /// Forward (the server does the work), then hold the answer this long: a client killed meanwhile never
    /// learns that its request succeeded.
    HoldAnswer(Duration),
    /// Answer this status with an empty body, without forwarding: the client believes a call the server never
    /// saw (an abort that did not happen).
    Answer(u16),
    /// Forward, then flip one byte in the middle of the response body: bytes damaged on the way to the client,
    /// with every header (ETag, checksums, lengths) as the server sent it.
    CorruptResponse,
}

/// Which requests a rule applies to.
#[derive(Debug, Clone)]
pub struct Rule {
    /// HTTP method to match (`None`: any).
    pub method: Option<&'static str>,
    /// A substring the path-and-query must contain (`""`: any).
    pub contains: &'static str,
    /// The fault.
    pub fault: Fault,
    /// How many matching requests get the fault.
    pub times: usize,
}

struct State {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    injected: AtomicUsize,
    http: reqwest::Client,
    seen: Mutex<Vec<Seen>>,
}

/// A request the proxy saw: method, path and query, the names of its headers, the Content-Length it declared,
/// the body bytes that arrived whole (`None` while it arrives, or if the client went away first), the status the
/// upstream answered (`None`: not forwarded, or no answer yet), and when it came and when its answer went back
/// (`None` until then).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<String>,
    /// The first word of its `Authorization` header (`OSS`, `OSS4-HMAC-SHA256`, `AWS4-HMAC-SHA256`), if any.
    pub auth_scheme: Option<String>,
    pub declared: u64,
    pub received: Option<u64>,
    /// The request body when it is a small document (at most 4 KiB of UTF-8: the XML of a request).
    pub document: Option<String>,
    pub upstream: Option<u16>,
    pub came: Instant,
    pub answered: Option<Instant>,
}

impl Seen {
    pub fn has(&self, header: &str) -> bool {
        self.headers.iter().any(|h| h == header)
    }

    /// The part number a part request (UploadPart, UploadPartCopy) names in its query, if any.
    pub fn part_number(&self) -> Option<u32> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|kv| kv.strip_prefix("partNumber=")?.parse().ok())
    }

    /// Whether the request had come and was not answered yet at `t`.
    pub fn in_flight_at(&self, t: Instant) -> bool {
        self.came <= t && self.answered.is_none_or(|a| a > t)
    }
}

/// A running proxy.
pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1:0 in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            rules: Mutex::new(rules),
            injected: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        });
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut rx => break,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        FaultProxy { endpoint, state, stop: Some(tx) }
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> usize {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Every request so far, in the order they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Adds `rule` after the others (a fault for a later step of a test).
    pub fn add(&self, rule: Rule) {
        self.state.rules.lock().unwrap().push(rule);
    }

    /// Drops every rule not used up yet.
    pub fn clear(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// Rules not yet used up.
    pub fn pending(&self) -> usize {
        self.state.rules.lock().unwrap().iter().map(|r| r.times).sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn take_fault(state: &State, method: &str, target: &str) -> Option<Fault> {
    let mut rules = state.rules.lock().unwrap();
    let rule = rules
        .iter_mut()
        .find(|r| r.times > 0 && r.method.is_none_or(|m| m == method) && target.contains(r.contains))?;
    rule.times -= 1;
    state.injected.fetch_add(1, Ordering::SeqCst);
    Some(rule.fault.clone())
}

fn error_xml(code: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>FAULT</RequestId></Error>")
}

type Reply = Response<BoxBody<Bytes, std::io::Error>>;

/// A whole body.
fn full(bytes: impl Into<Bytes>) -> BoxBody<Bytes, std::io::Error> {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Reply, std::io::Error> {
    let method = req.method().as_str().to_owned();
    let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let fault = take_fault(&state, &method, &target);
    let headers = req.headers().keys().map(|k| k.as_str().to_owned()).collect();
    let declared = req.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let auth_scheme =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()?.split_whitespace().next().map(str::to_owned));
    let index = {
        let mut seen = state.seen.lock().unwrap();
        let (came, received, document, upstream, answered) = (Instant::now(), None, None, None, None);
        let (method, target) = (method.clone(), target.clone());
        seen.push(Seen {
            method,
            target,
            headers,
            auth_scheme,
            declared,
            received,
            document,
            upstream,
            came,
            answered,
        });
        seen.len() - 1
    };
    // Answered when this ends, or when hyper drops it because the client went away.
    let _answered = Answered { state: state.clone(), index };
    forward(&state, index, req, fault, &method, &target).await
}

/// Marks a request answered when dropped.
struct Answered {
    state: Arc<State>,
    index: usize,
}

impl Drop for Answered {
    fn drop(&mut self) {
        if let Ok(mut seen) = self.state.seen.lock() {
            seen[self.index].answered.get_or_insert_with(Instant::now);
        }
    }
}

/// Answers request `index` as its fault says, recording its body's length once it arrived whole.
async fn forward(
    state: &State,
    index: usize,
    req: Request<Incoming>,
    fault: Option<Fault>,
    method: &str,
    target: &str,
) -> Result<Reply, std::io::Error> {
    // Answer in the request's dialect: S3 clients read x-amz-request-id, and an S3 HEAD answer has no body.
    let s3 = req.headers().get("authorization").is_some_and(|v| v.as_bytes().starts_with(b"AWS4-HMAC-SHA256"))
        || target.contains("X-Amz-Signature=");
    let head = method == "HEAD";
    let canned = move |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/xml")
            .header("date", httpdate::fmt_http_date(std::time::SystemTime::now()))
            .header(if s3 { "x-amz-request-id" } else { "x-oss-request-id" }, "FAULT")
            .body(full(if head { Bytes::new() } else { Bytes::from(body) }))
            .unwrap()
    };
    match &fault {
        Some(Fault::Reset) => return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset")),
        Some(Fault::Status(status, code)) => return Ok(canned(*status, error_xml(code))),
        Some(Fault::ErrorBody200) => return Ok(canned(200, error_xml("InternalError"))),
        Some(Fault::Answer(status)) => {
            return Ok(Response::builder().status(*status).body(full(Bytes::new())).unwrap())
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        Some(Fault::CutBody)
        | Some(Fault::CorruptResponse)
        | Some(Fault::LoseResponse)
        | Some(Fault::CorruptRequest)
        | Some(Fault::HoldAnswer(_))
        | None => {}
    }
    let (parts, body) = req.into_parts();
    let mut body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
    {
        let mut seen = state.seen.lock().unwrap();
        seen[index].received = Some(body.len() as u64);
        if body.len() <= 4096 {
            seen[index].document = std::str::from_utf8(&body).ok().map(str::to_owned);
        }
    }
    if matches!(fault, Some(Fault::CorruptRequest)) && !body.is_empty() {
        let mut damaged = body.to_vec();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0x20;
        body = Bytes::from(damaged);
    }
    let mut fwd = state.http.request(parts.method.clone(), format!("{}{}", state.upstream, target)).body(body);
    for (k, v) in &parts.headers {
        fwd = fwd.header(k, v);
    }
    let resp = fwd.send().await.map_err(std::io::Error::other)?;
    state.seen.lock().unwrap()[index].upstream = Some(resp.status().as_u16());
    let mut out = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        out = out.header(k, v);
    }
    let bytes = resp.bytes().await.map_err(std::io::Error::other)?;
    if let Some(Fault::HoldAnswer(d)) = fault {
        tokio::time::sleep(d).await;
    }
    if matches!(fault, Some(Fault::LoseResponse)) {
        return Ok(canned(500, error_xml("InternalError")));
    }
    if matches!(fault, Some(Fault::CorruptResponse)) && !bytes.is_empty() {
        let mut damaged = bytes.to_vec();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0x20;
        return Ok(out.body(full(damaged)).unwrap());
    }
    if matches!(fault, Some(Fault::CutBody)) && !bytes.is_empty() {
        // Content-Length promises every byte; the body stops halfway with an error, so the connection is cut there.
        let half = bytes.slice(..bytes.len() / 2);
        let cut = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "cut by the fault proxy");
        let frames = futures::stream::iter([Ok(hyper::body::Frame::data(half)), Err(cut)]);
        return Ok(out.body(StreamBody::new(frames).boxed()).unwrap());
    }
    Ok(out.body(full(bytes)).unwrap())
}
