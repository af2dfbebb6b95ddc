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
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::open_with(root.path(), LocalOptions::default().fsync(false)).unwrap();
        let server =
            Server::bind("127.0.0.1:0".parse().unwrap(), Arc::new(store), Credentials::new(AK, SK)).await.unwrap();
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
