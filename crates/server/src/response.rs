//! Responses: the [`Reply`] a handler builds, the headers every response carries, and OSS's `<Error>` document
//! for every failure (in the body, or base64 in `x-oss-err` on HEAD).

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use transfer_engine::{Error, ErrorKind, Result, ServiceError};

/// The body type of every response.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, Error>;

/// What a handler answers: a status, headers and a body. Common headers are added by [`Reply::into_response`].
pub(crate) struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: ReplyBody,
}

enum ReplyBody {
    Empty,
    Full(Bytes),
    Stream(BoxStream<'static, Result<Bytes>>),
}

impl Reply {
    /// An empty reply with `status`.
    pub(crate) fn new(status: StatusCode) -> Self {
        Self { status, headers: HeaderMap::new(), body: ReplyBody::Empty }
    }

    /// An empty 200.
    pub(crate) fn ok() -> Self {
        Self::new(StatusCode::OK)
    }

    /// An empty 204.
    pub(crate) fn no_content() -> Self {
        Self::new(StatusCode::NO_CONTENT)
    }

    /// A 200 whose body is an XML document.
    pub(crate) fn xml(doc: String) -> Self {
        Self::ok().header("content-type", "application/xml").with_body(Bytes::from(doc))
    }

    /// A 200 whose body is `value` serialized as XML.
    pub(crate) fn xml_of<T: serde::Serialize>(value: &T) -> Result<Self> {
        Ok(Self::xml(transfer_engine::xml::to_string(value)?))
    }

    /// A 200 whose body is `value` serialized as XML under the root element `root` (for DTOs shared by two
    /// documents, such as `CopyObjectResult` and `CopyPartResult`).
    pub(crate) fn xml_rooted<T: serde::Serialize>(value: &T, root: &str) -> Result<Self> {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let fail = |e: quick_xml::SeError| Error::new(ErrorKind::Protocol, "cannot write XML").with_source(e);
        let ser = quick_xml::se::Serializer::with_root(&mut out, Some(root)).map_err(fail)?;
        value.serialize(ser).map_err(fail)?;
        Ok(Self::xml(out))
    }

    /// Replaces the status.
    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Sets a header (replacing an earlier value of the same name). Values that are not valid header text are
    /// sent as opaque bytes.
    pub(crate) fn header(mut self, name: &str, value: impl AsRef<str>) -> Self {
        set_header(&mut self.headers, name, value.as_ref());
        self
    }

    /// Sets a header when `value` is `Some`.
    pub(crate) fn header_opt(self, name: &str, value: Option<impl AsRef<str>>) -> Self {
        match value {
            Some(v) => self.header(name, v),
            None => self,
        }
    }

    /// Sets every `(name, value)` header.
    pub(crate) fn headers<N: AsRef<str>, V: AsRef<str>>(mut self, pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        for (n, v) in pairs {
            set_header(&mut self.headers, n.as_ref(), v.as_ref());
        }
        self
    }

    /// A body held in memory.
    pub(crate) fn with_body(mut self, body: Bytes) -> Self {
        self.body = ReplyBody::Full(body);
        self
    }

    /// A streamed body; the caller sets `Content-Length`.
    pub(crate) fn with_stream(mut self, body: BoxStream<'static, Result<Bytes>>) -> Self {
        self.body = ReplyBody::Stream(body);
        self
    }

    /// The response, with the headers every response carries.
    pub(crate) fn into_response(self, common: &Common) -> Response<ResponseBody> {
        let body: ResponseBody = match self.body {
            ReplyBody::Empty => Empty::new().map_err(|never| match never {}).boxed_unsync(),
            ReplyBody::Full(b) => Full::new(b).map_err(|never| match never {}).boxed_unsync(),
            ReplyBody::Stream(s) => StreamBody::new(s.map(|r| r.map(Frame::data))).boxed_unsync(),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        common.apply(resp.headers_mut());
        resp
    }
}

fn set_header(headers: &mut HeaderMap, name: &str, value: &str) {
    let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
        tracing::warn!(header = name, "dropping a response header with an invalid name");
        return;
    };
    let value = HeaderValue::from_str(value).or_else(|_| HeaderValue::from_bytes(value.as_bytes()));
    match value {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => tracing::warn!(header = %name, "dropping a response header with an invalid value"),
    }
}

/// The headers every response carries: `x-oss-request-id`, `Date`, `Server`.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    /// This request's id.
    pub(crate) request_id: String,
}

impl Common {
    fn apply(&self, headers: &mut HeaderMap) {
        set_header(headers, "x-oss-request-id", &self.request_id);
        set_header(headers, "date", &httpdate::fmt_http_date(SystemTime::now()));
        set_header(headers, "server", "transfer");
    }
}

/// Makes request ids: 24 upper-case hex digits, unique within a process and across restarts (the start time
/// leads, a counter follows).
#[derive(Debug)]
pub(crate) struct RequestIds {
    epoch: u32,
    next: AtomicU64,
}

impl RequestIds {
    pub(crate) fn new() -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        // Seconds, plus a little of the sub-second clock so two servers started in the same second differ.
        let seed = now.subsec_nanos() as u64 & 0xFFFF_FFFF;
        Self { epoch: now.as_secs() as u32, next: AtomicU64::new(seed << 32) }
    }

    pub(crate) fn next(&self) -> String {
        format!("{:08X}{:016X}", self.epoch, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// The service error an engine error is answered with. Errors that carry no service facts become 400
/// `InvalidArgument` (bad input), 501 `NotImplemented` (unsupported), 507 `InsufficientStorage` (a full disk),
/// or 500 `InternalError` (logged).
pub(crate) fn service_error_of(err: &Error) -> ServiceError {
    if let Some(se) = err.service_error() {
        return se.clone();
    }
    let (status, code, message) = match err.kind() {
        ErrorKind::InvalidInput => (400, "InvalidArgument", err.to_string()),
        ErrorKind::Unsupported => (501, "NotImplemented", err.to_string()),
        ErrorKind::InsufficientStorage => (507, "InsufficientStorage", err.to_string()),
        ErrorKind::Transport => (400, "IncompleteBody", err.to_string()),
        _ => {
            tracing::error!(error = %err, "internal error");
            (500, "InternalError", "We encountered an internal error. Please try again.".to_owned())
        }
    };
    ServiceError { status, code: code.to_owned(), message, ..Default::default() }
}

/// OSS's error response for `err`: the `<Error>` document in the body, or on HEAD an empty body with the
/// document base64-encoded in `x-oss-err`; `x-oss-ec` when the error has an EC; the error's own headers.
pub(crate) fn error_response(err: &Error, common: &Common, host_id: &str, head: bool) -> Response<ResponseBody> {
    let mut se = service_error_of(err);
    se.request_id = Some(common.request_id.clone());
    let status = StatusCode::from_u16(se.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let doc = transfer_engine::xml::error_document(&se, host_id);
    let mut reply = Reply::new(status).header("content-type", "application/xml").headers(se.headers.iter().cloned());
    if let Some(ec) = &se.ec {
        reply = reply.header("x-oss-ec", ec);
    }
    reply = if head {
        reply.header("x-oss-err", transfer_engine::util::b64(doc.as_bytes()))
    } else {
        reply.with_body(Bytes::from(doc))
    };
    reply.into_response(common)
}

/// A 400 `InvalidArgument` naming the argument, as OSS reports a bad query parameter or header.
pub(crate) fn invalid_argument(message: impl Into<String>, name: &str, value: &str) -> Error {
    Error::code(400, "InvalidArgument", message).with_extra("ArgumentName", name).with_extra("ArgumentValue", value)
}

/// A 400 `MalformedXML`.
pub(crate) fn malformed_xml() -> Error {
    Error::code(
        400,
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_24_upper_hex_and_unique() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn errors_without_service_facts_are_mapped() {
        assert_eq!(service_error_of(&Error::invalid("bad")).code, "InvalidArgument");
        let io = Error::from(std::io::Error::other("disk"));
        let se = service_error_of(&io);
        assert_eq!((se.status, se.code.as_str()), (500, "InternalError"));
        let e = invalid_argument("m", "partNumber", "0");
        assert_eq!(e.service_error().unwrap().extra("ArgumentName"), Some("partNumber"));
    }
}
