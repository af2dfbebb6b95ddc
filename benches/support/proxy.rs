//! A counting HTTP/1.1 proxy: every request a client sends through it is forwarded unchanged and counted by
//! kind (LIST, GET, HEAD, PUT, COPY, DELETE, DELETE-MULTI, ...). Only the client's side is parsed (request heads,
//! and bodies by Content-Length or chunked framing, to find the next head); the server's answers are copied back
//! as bytes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

type Counts = Arc<Mutex<BTreeMap<&'static str, u64>>>;

pub struct CountingProxy {
    pub endpoint: String,
    counts: Counts,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CountingProxy {
    /// A proxy on 127.0.0.1 (a free port) in front of `upstream` (`http://host:port`).
    #[allow(dead_code)] // each bench uses one of the two
    pub fn start(rt: &tokio::runtime::Runtime, upstream: &str) -> std::io::Result<CountingProxy> {
        Self::with_delay(rt, upstream, std::time::Duration::ZERO)
    }

    /// [`CountingProxy::start`], holding every request `delay` before it goes on: a server that far away.
    pub fn with_delay(
        rt: &tokio::runtime::Runtime,
        upstream: &str,
        delay: std::time::Duration,
    ) -> std::io::Result<CountingProxy> {
        let addr = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let counts = Counts::default();
        let shared = counts.clone();
        let task = rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (addr, counts) = (addr.clone(), shared.clone());
                tokio::spawn(async move {
                    let _ = relay(client, &addr, &counts, delay).await;
                });
            }
        });
        Ok(CountingProxy { endpoint, counts, task })
    }

    /// The requests counted since the last call, by kind.
    pub fn take(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap())
    }
}

/// What a request is, from its method, target and whether it names a copy source.
fn kind(method: &str, target: &str, copy: bool) -> &'static str {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let has = |p: &str| query.split('&').any(|kv| kv == p || kv.starts_with(&format!("{p}=")));
    // A request for the bucket itself: `/bucket`, `/bucket/`, with or without a query.
    let path = target.split('?').next().unwrap_or("");
    let bucket_level = path.trim_matches('/').split('/').count() <= 1;
    match method {
        "PUT" if copy && has("partNumber") => "PART-COPY",
        "PUT" if copy => "COPY",
        "PUT" if has("partNumber") => "PART",
        "PUT" => "PUT",
        "POST" if has("delete") => "DELETE-MULTI",
        "POST" if has("uploads") => "INITIATE",
        "POST" if has("uploadId") => "COMPLETE",
        "GET" if bucket_level => "LIST",
        "GET" => "GET",
        "HEAD" => "HEAD",
        "DELETE" => "DELETE",
        _ => "OTHER",
    }
}

async fn relay(client: TcpStream, upstream: &str, counts: &Counts, delay: std::time::Duration) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut reader = BufReader::new(client_read);
    let result = async {
        loop {
            let mut head = Vec::new();
            loop {
                let mut line = Vec::new();
                if reader.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                head.extend_from_slice(&line);
                if line == b"\r\n" || line == b"\n" {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let mut lines = text.lines();
            let mut first = lines.next().unwrap_or("").split_whitespace();
            let (method, target) = (first.next().unwrap_or("").to_owned(), first.next().unwrap_or("").to_owned());
            let (mut length, mut chunked, mut copy) = (0u64, false, false);
            for l in lines {
                let Some((name, value)) = l.split_once(':') else { continue };
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                    "x-amz-copy-source" | "x-oss-copy-source" => copy = true,
                    _ => {}
                }
            }
            *counts.lock().unwrap().entry(kind(&method, &target, copy)).or_default() += 1;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            server_write.write_all(&head).await?;
            if chunked {
                loop {
                    let mut line = Vec::new();
                    reader.read_until(b'\n', &mut line).await?;
                    server_write.write_all(&line).await?;
                    let size = String::from_utf8_lossy(&line);
                    let size = u64::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
                    if size == 0 {
                        // Trailers, up to an empty line.
                        loop {
                            let mut t = Vec::new();
                            if reader.read_until(b'\n', &mut t).await? == 0 || t == b"\r\n" || t == b"\n" {
                                server_write.write_all(&t).await?;
                                break;
                            }
                            server_write.write_all(&t).await?;
                        }
                        break;
                    }
                    tokio::io::copy(&mut (&mut reader).take(size + 2), &mut server_write).await?;
                }
            } else if length > 0 {
                tokio::io::copy(&mut (&mut reader).take(length), &mut server_write).await?;
            }
        }
    }
    .await;
    let _ = server_write.shutdown().await;
    let _ = back.await;
    result
}
