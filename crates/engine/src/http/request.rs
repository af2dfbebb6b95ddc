//! Building OSS requests: the endpoint and its addressing style, URL and query encoding, and [`Request`], the
//! one description of a call (method, bucket, key, query, headers, body, error context) that every operation
//! fills in and [`HttpStore`](super::HttpStore) signs and sends.
//!
//! The query is kept as decoded `(name, value)` pairs: the very same list is handed to the signer and encoded
//! into the URL, so what is signed is what is sent. Encoding is RFC 3986 (`%20`, never `+`); a pair with an
//! empty value is sent as a bare key (`?uploads`, `?append&position=0`).

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::meta::Metadata;
use crate::store::{Body, PutOptions};
use crate::util::{pct_encode, pct_encode_path};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Where requests go: scheme, host and port of the service endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    scheme: String,
    host: String,
    port: Option<u16>,
    ip_or_localhost: bool,
}

impl Endpoint {
    /// Parses `http://host[:port]` or `https://host[:port]`; a bare host means https.
    pub(crate) fn parse(s: &str) -> Result<Self> {
        let with_scheme = if s.contains("://") { s.to_owned() } else { format!("https://{s}") };
        let url = reqwest::Url::parse(&with_scheme)
            .map_err(|e| Error::invalid(format!("endpoint {s:?} is not a URL")).with_source(e))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::invalid(format!("endpoint {s:?}: the scheme must be http or https")));
        }
        if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
            return Err(Error::invalid(format!("endpoint {s:?} must not have a path or a query")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid("the endpoint must not carry credentials; use HttpStoreBuilder::credentials"));
        }
        let host = url.host_str().filter(|h| !h.is_empty());
        let Some(host) = host else { return Err(Error::invalid(format!("endpoint {s:?} has no host"))) };
        let ip_or_localhost =
            host.eq_ignore_ascii_case("localhost") || host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
        Ok(Self { scheme: url.scheme().to_owned(), host: host.to_owned(), port: url.port(), ip_or_localhost })
    }

    /// True when the host is `localhost`.
    pub(crate) fn is_localhost(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
    }

    /// The addressing of a request to `bucket`: `path_style` as configured, except that a dotted bucket name is
    /// addressed by path over TLS (its virtual host, `a.b.host`, would not match the endpoint's certificate), as
    /// the AWS SDKs do.
    pub(crate) fn path_style_for(&self, path_style: bool, bucket: Option<&str>) -> bool {
        path_style || (self.scheme == "https" && bucket.is_some_and(|b| b.contains('.')))
    }

    /// Path style is the default for IP addresses and `localhost`; virtual-hosted style otherwise.
    pub(crate) fn default_path_style(&self) -> bool {
        self.ip_or_localhost
    }

    /// The request URL: `scheme://bucket.host[:port]/key?query` (virtual-hosted) or
    /// `scheme://host[:port]/bucket/key?query` (path style). The key is percent-encoded keeping `/`.
    pub(crate) fn url(
        &self,
        path_style: bool,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(String, String)],
    ) -> String {
        let mut out =
            format!("{}://{}{}", self.scheme, self.authority(path_style, bucket), Self::path(path_style, bucket, key));
        let q = encode_query(query);
        if !q.is_empty() {
            out.push('?');
            out.push_str(&q);
        }
        out
    }

    /// The `Host` of a request: `bucket.host[:port]` (virtual-hosted) or `host[:port]`.
    pub(crate) fn authority(&self, path_style: bool, bucket: Option<&str>) -> String {
        let mut out = match bucket {
            Some(b) if !path_style => format!("{b}.{}", self.host),
            _ => self.host.clone(),
        };
        if let Some(p) = self.port {
            out.push_str(&format!(":{p}"));
        }
        out
    }

    /// The path of a request as sent (and as AWS SigV4 signs it): `/bucket/key` (path style) or `/key`, the
    /// key percent-encoded keeping `/`; `/bucket/` for a bucket request in path style.
    pub(crate) fn path(path_style: bool, bucket: Option<&str>, key: Option<&str>) -> String {
        let mut out = String::from("/");
        if let (Some(b), true) = (bucket, path_style) {
            out.push_str(b);
            out.push('/');
        }
        if let Some(k) = key {
            out.push_str(&pct_encode_path(k));
        }
        out
    }
}

/// Encodes decoded pairs as a query string, RFC 3986, bare keys for empty values.
pub(crate) fn encode_query(query: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in query.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&pct_encode(k));
        if !v.is_empty() {
            out.push('=');
            out.push_str(&pct_encode(v));
        }
    }
    out
}

/// The `x-oss-copy-source` value: `/<bucket>/<key, percent-encoded keeping '/'>`, then `?versionId=<vid>`
/// appended as is (the SDKs do not encode the version id).
pub(crate) fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let mut s = format!("/{bucket}/{}", pct_encode_path(key));
    if let Some(v) = version_id {
        s.push_str("?versionId=");
        s.push_str(v);
    }
    s
}

/// One call to the service, before signing.
#[derive(Debug)]
pub(crate) struct Request {
    /// HTTP method.
    pub(crate) method: Method,
    /// Bucket, if the call addresses one.
    pub(crate) bucket: Option<String>,
    /// Object key (raw), if the call addresses an object.
    pub(crate) key: Option<String>,
    /// Decoded query pairs, in the order sent.
    pub(crate) query: Vec<(String, String)>,
    /// Headers to sign and send (Content-Length, dates and Authorization are added when sending).
    pub(crate) headers: HeaderMap,
    /// The body.
    pub(crate) body: Body,
    /// Send `Content-MD5` of an in-memory body.
    pub(crate) content_md5: bool,
    /// Context for error messages: key, upload id, part number, ...
    pub(crate) context: Vec<(&'static str, String)>,
    /// The first problem met while building (an invalid header value); reported when sending.
    pub(crate) invalid: Option<Error>,
    /// The server copies or assembles data before answering: wait for the server-work timeout.
    pub(crate) slow: bool,
}

impl Request {
    /// A request with no bucket, key, query, headers or body.
    pub(crate) fn new(method: Method) -> Self {
        Self {
            method,
            bucket: None,
            key: None,
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: Body::empty(),
            content_md5: false,
            context: Vec::new(),
            invalid: None,
            slow: false,
        }
    }

    /// Addresses a bucket.
    pub(crate) fn bucket(mut self, bucket: &str) -> Self {
        self.bucket = Some(bucket.to_owned());
        self.context.push(("bucket", bucket.to_owned()));
        self
    }

    /// Addresses an object in the bucket.
    pub(crate) fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self.context.push(("key", key.to_owned()));
        self
    }

    /// Adds a query parameter (an empty value is sent as a bare key).
    pub(crate) fn query(mut self, name: &str, value: impl ToString) -> Self {
        self.query.push((name.to_owned(), value.to_string()));
        self
    }

    /// Adds a query parameter when there is a value.
    pub(crate) fn query_opt(self, name: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.query(name, v),
            None => self,
        }
    }

    /// Adds a header. An invalid name or value makes the request fail when sent, naming the header.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => {
                self.invalid.get_or_insert_with(|| {
                    Error::invalid(format!(
                        "header {name} cannot carry the value {value:?} (control or non-ASCII characters)"
                    ))
                });
            }
        }
        self
    }

    /// Adds a header when there is a value.
    pub(crate) fn header_opt(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.header(name, v),
            None => self,
        }
    }

    /// Marks a call the server works on before answering (copies, Complete).
    pub(crate) fn slow(mut self) -> Self {
        self.slow = true;
        self
    }

    /// Adds a `name: value` pair of error context.
    pub(crate) fn context(mut self, name: &'static str, value: impl ToString) -> Self {
        self.context.push((name, value.to_string()));
        self
    }

    /// Sets the body; `md5` asks for `Content-MD5` (sent for in-memory bodies).
    pub(crate) fn body(mut self, body: Body, md5: bool) -> Self {
        self.body = body;
        self.content_md5 = md5;
        self
    }

    /// Sets an XML body with `Content-Type: application/xml` and its `Content-MD5`.
    pub(crate) fn xml(self, doc: String) -> Self {
        self.header("content-type", "application/xml").body(Body::from_bytes(doc.into_bytes()), true)
    }

    /// Metadata headers: `x-oss-meta-*`, the standard headers and the storage class.
    pub(crate) fn metadata(mut self, d: &Dialect, m: &Metadata) -> Self {
        if let Err(e) = m.validate() {
            self.invalid.get_or_insert(e);
            return self;
        }
        for (name, value) in &m.user {
            self = self.header(&format!("{}{name}", d.meta_prefix), value);
        }
        for (name, value) in m.standard() {
            self = self.header(name, value);
        }
        let class = match m.storage_class {
            None => None,
            Some(c) => match d.storage_class_name(c) {
                Some(name) => Some(name),
                None => {
                    self.invalid.get_or_insert_with(|| {
                        Error::new(
                            crate::ErrorKind::Unsupported,
                            format!("the {} dialect has no storage class {c}", d.name),
                        )
                    });
                    return self;
                }
            },
        };
        self.header_opt(&d.h("storage-class"), class)
    }

    /// The headers of an object-creating call: metadata, tags (`x-oss-tagging`) and the dialect's
    /// forbid-overwrite header.
    pub(crate) fn put_options(self, d: &Dialect, opts: &PutOptions) -> Self {
        let tags = opts.tags.as_ref().filter(|t| !t.is_empty()).map(|t| t.to_header());
        let req = self.metadata(d, &opts.metadata).forbid_overwrite(d, opts.forbid_overwrite);
        match tags {
            Some(_) if !d.capabilities.tagging => req.refuse(no_tagging("tags on a write")),
            tags => req.header_opt(&d.h("tagging"), tags.as_deref()),
        }
    }

    /// Makes the request fail with `err` when sent, without sending anything.
    pub(crate) fn refuse(mut self, err: Error) -> Self {
        self.invalid.get_or_insert(err);
        self
    }

    /// The dialect's header that makes the write fail when the key exists (`x-oss-forbid-overwrite: true`,
    /// `If-None-Match: *`), when `forbid` is set.
    pub(crate) fn forbid_overwrite(self, d: &Dialect, forbid: bool) -> Self {
        match forbid {
            true => self.header(d.forbid_overwrite.0, d.forbid_overwrite.1),
            false => self,
        }
    }
}

/// The error of a tagging call to a store declared without object tagging ([`Capabilities::tagging`]
/// false, as for an S3 server that does not implement it): said, never worked around.
///
/// [`Capabilities::tagging`]: crate::store::Capabilities::tagging
pub(crate) fn no_tagging(what: &str) -> Error {
    Error::new(crate::ErrorKind::Unsupported, format!("{what}: this store is declared without object tagging"))
        .with_context("operation", what)
}

#[cfg(test)]
mod tests {

    #[test]
    fn dotted_buckets_go_by_path_over_tls() {
        let tls = Endpoint::parse("https://s3.example.net").unwrap();
        assert!(tls.path_style_for(false, Some("logs.example.com")));
        assert!(!tls.path_style_for(false, Some("logs-example")));
        assert!(!tls.path_style_for(false, None));
        let plain = Endpoint::parse("http://s3.example.net").unwrap();
        assert!(!plain.path_style_for(false, Some("logs.example.com")), "no certificate to match over http");
        assert!(plain.path_style_for(true, Some("x")));
    }
    use super::*;
    use crate::tags::TagSet;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn path_style_and_virtual_host_urls() {
        let local = Endpoint::parse("http://127.0.0.1:1234").unwrap();
        assert!(local.default_path_style());
        assert_eq!(
            local.url(true, Some("bkt"), Some("dir/中 x+y"), &q(&[("uploads", "")])),
            "http://127.0.0.1:1234/bkt/dir/%E4%B8%AD%20x%2By?uploads"
        );
        assert_eq!(
            local.url(true, Some("bkt"), None, &q(&[("versioning", "")])),
            "http://127.0.0.1:1234/bkt/?versioning"
        );
        assert_eq!(local.url(true, None, None, &[]), "http://127.0.0.1:1234/");
        assert!(Endpoint::parse("http://localhost:9000").unwrap().default_path_style());
        assert!(Endpoint::parse("http://[::1]:9000").unwrap().default_path_style());

        let oss = Endpoint::parse("oss-cn-hangzhou.aliyuncs.com").unwrap();
        assert!(!oss.default_path_style());
        assert_eq!(
            oss.url(false, Some("bkt"), Some("dir/中 x+y"), &q(&[("append", ""), ("position", "0")])),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/dir/%E4%B8%AD%20x%2By?append&position=0"
        );
        assert_eq!(
            oss.url(
                false,
                Some("bkt"),
                None,
                &q(&[("list-type", "2"), ("prefix", "a b+c/"), ("encoding-type", "url")])
            ),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/?list-type=2&prefix=a%20b%2Bc%2F&encoding-type=url"
        );
        for bad in ["ftp://h", "http://h/path", "http://u:p@h", "http://h?x=1"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_accepted_unchanged_by_the_http_stack() {
        let url = Endpoint::parse("http://127.0.0.1:1").unwrap().url(
            true,
            Some("b"),
            Some("a b/c~d%e"),
            &q(&[("versionId", "v+1 2"), ("tagging", "")]),
        );
        assert_eq!(url, "http://127.0.0.1:1/b/a%20b/c~d%25e?versionId=v%2B1%202&tagging");
        assert_eq!(reqwest::Url::parse(&url).unwrap().as_str(), url);
    }

    #[test]
    fn copy_source_keeps_slashes_and_appends_the_version_raw() {
        assert_eq!(copy_source("src", "dir/中 x+y", None), "/src/dir/%E4%B8%AD%20x%2By");
        assert_eq!(copy_source("src", "a b", Some("CAEQ+/=")), "/src/a%20b?versionId=CAEQ+/=");
    }

    #[test]
    fn put_options_become_headers() {
        let d = Dialect::OSS;
        let mut opts = PutOptions { forbid_overwrite: true, ..Default::default() };
        opts.metadata = Metadata::with_user([("Color", "blue")]).unwrap();
        opts.metadata.content_type = Some("text/plain".into());
        opts.metadata.storage_class = Some(crate::StorageClass::InfrequentAccess);
        opts.tags = Some(TagSet::from_pairs([("k4+-=", "+-=._:/"), ("a", "b c")]).unwrap());
        let r = Request::new(Method::PUT).put_options(&d, &opts);
        assert!(r.invalid.is_none());
        let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(h("x-oss-meta-color").as_deref(), Some("blue"));
        assert_eq!(h("content-type").as_deref(), Some("text/plain"));
        assert_eq!(h("x-oss-storage-class").as_deref(), Some("IA"));
        assert_eq!(h("x-oss-tagging").as_deref(), Some("k4%2B-%3D=%2B-%3D._%3A%2F&a=b%20c"));
        assert_eq!(h("x-oss-forbid-overwrite").as_deref(), Some("true"));

        let bad = Request::new(Method::PUT).header("x-oss-meta-a", "line\nbreak");
        assert!(bad.invalid.is_some());
    }
}
