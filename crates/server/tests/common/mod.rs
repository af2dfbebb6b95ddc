//! Test harness: a server on `127.0.0.1:0` over a `LocalStore` in a temp directory, and a client that signs
//! requests with `transfer_engine::sign::Signer`.

#![allow(dead_code)]

use http::{HeaderMap, HeaderValue, Method};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use transfer_engine::local::{LocalOptions, LocalStore};
use transfer_engine::sign::{Credentials, SignTarget, SignatureVersion, Signer};
use transfer_engine::util::{pct_encode, pct_encode_path};
use transfer_server::Server;

pub const AK: &str = "test-access-key";
pub const SK: &str = "test-secret-key";

/// A running server; call [`TestServer::stop`] at the end of each test.
pub struct TestServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub signer: Signer,
    pub creds: Credentials,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _root: tempfile::TempDir,
}

/// One request to send.
pub struct Call<'a> {
    pub method: Method,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Host to address (virtual-host tests); default the server's address.
    pub host: Option<String>,
    /// Credentials to sign with; `None` sends the request unsigned.
    pub creds: Option<Credentials>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, bucket: Option<&'a str>, key: Option<&'a str>) -> Self {
        Self {
            method,
            bucket,
            key,
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: Vec::new(),
            host: None,
            creds: Some(Credentials::new(AK, SK)),
        }
    }

    pub fn q(mut self, k: &str, v: &str) -> Self {
        self.query.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn h(mut self, k: &'static str, v: &str) -> Self {
        self.headers.insert(k, HeaderValue::from_str(v).unwrap());
        self
    }

    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }

    pub fn signed_by(mut self, creds: Option<Credentials>) -> Self {
        self.creds = creds;
        self
    }

    pub fn host(mut self, host: String) -> Self {
        self.host = Some(host);
        self
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|server| server).await
    }

    /// Starts a server configured by `configure` (timeouts, ...).
    pub async fn start_with(configure: impl FnOnce(Server<LocalStore>) -> Server<LocalStore>) -> Self {
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::open_with(root.path(), LocalOptions::default().fsync(false)).unwrap();
        let server =
            Server::bind("127.0.0.1:0".parse().unwrap(), Arc::new(store), Credentials::new(AK, SK)).await.unwrap();
        let server = configure(server);
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        let client =
            reqwest::Client::builder().resolve("bkt.localhost", addr).resolve("other.localhost", addr).build().unwrap();
        Self {
            addr,
            client,
            signer: Signer::new(SignatureVersion::V4, "cn-hangzhou"),
            creds: Credentials::new(AK, SK),
            stop: Some(tx),
            task: Some(task),
            _root: root,
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &std::path::Path {
        self._root.path()
    }

    /// The head of a raw HTTP/1.1 request (`Connection: close`) to `bucket`/`key` with `query`, signed with V4
    /// for the OSS dialect, carrying `extra` headers: everything up to and including the blank line.
    pub fn raw_head(
        &self,
        method: &str,
        bucket: &str,
        key: Option<&str>,
        query: &[(String, String)],
        extra: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut headers = HeaderMap::new();
        for (k, v) in extra {
            headers.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let target = SignTarget { method, bucket: Some(bucket), key, query };
        self.signer.sign(&self.creds, &target, &mut headers, SystemTime::now());
        let mut path = format!("/{bucket}/{}", key.map(pct_encode_path).unwrap_or_default());
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| if v.is_empty() { pct_encode(k) } else { format!("{}={}", pct_encode(k), pct_encode(v)) })
                .collect();
            path.push('?');
            path.push_str(&q.join("&"));
        }
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// Sends raw request bytes on a new connection and reads the answer to its end: the status and the whole
    /// response (head and body) as text.
    pub async fn raw(&self, request: &[u8]) -> (u16, String) {
        raw_exchange(self.addr, request).await
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Sends `call`, signed as asked.
    pub async fn send(&self, call: Call<'_>) -> reqwest::Response {
        let mut headers = call.headers;
        let target =
            SignTarget { method: call.method.as_str(), bucket: call.bucket, key: call.key, query: &call.query };
        if let Some(creds) = &call.creds {
            self.signer.sign(creds, &target, &mut headers, SystemTime::now());
        }
        let virtual_host = call.host.is_some();
        let host = call.host.unwrap_or_else(|| self.addr.to_string());
        let mut url = format!("http://{host}/");
        if !virtual_host {
            if let Some(b) = call.bucket {
                url.push_str(b);
                url.push('/');
            }
        }
        if let Some(k) = call.key {
            url.push_str(&pct_encode_path(k));
        }
        if !call.query.is_empty() {
            let q: Vec<String> = call
                .query
                .iter()
                .map(|(k, v)| if v.is_empty() { pct_encode(k) } else { format!("{}={}", pct_encode(k), pct_encode(v)) })
                .collect();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        self.client.request(call.method, url).headers(headers).body(call.body).send().await.unwrap()
    }

    /// Creates a bucket, asserting success.
    pub async fn create_bucket(&self, bucket: &str) {
        let r = self.send(Call::new(Method::PUT, Some(bucket), None)).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// Puts an object, asserting success.
    pub async fn put(&self, bucket: &str, key: &str, data: &[u8]) -> reqwest::Response {
        let r = self.send(Call::new(Method::PUT, Some(bucket), Some(key)).body(data.to_vec())).await;
        assert_eq!(r.status(), 200);
        r
    }
}

/// The `<Code>` of an error document.
pub fn code_of(xml: &str) -> String {
    transfer_engine::xml::parse_error(0, xml.as_bytes()).code
}

/// A header as text.
pub fn header<'r>(r: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Sends `request` to `addr` on a new connection and reads until the server closes it: the status and the whole
/// response as text.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// `parts` as a chunked body (`Transfer-Encoding: chunked`): each part one chunk, then the last, empty one.
pub fn chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts.iter().filter(|p| !p.is_empty()) {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The body of a raw response (after the blank line; a chunked answer is not decoded).
pub fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}
