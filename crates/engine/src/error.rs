//! The one error type of the engine: a kind, a retry class, the service's own code and the context needed to act.
//!
//! Every backend produces the same [`Error`]. A service error keeps the wire facts (HTTP status, `<Code>`,
//! `<Message>`, request id, OSS `EC`) so a person can quote them to support; [`Error::is_retryable`] answers the
//! only question the scheduler asks. Classification happens once, in [`classify`], from the table in the OSS
//! reference (section 5.2).

use std::fmt;

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, at the granularity a caller branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The service answered with an error document (see [`Error::service`]).
    Service,
    /// Bad input caught before any request was sent: a tag set over the limits, a key that escapes the root,
    /// a part number outside 1..=10000. Never retried.
    InvalidInput,
    /// Bytes did not match their checksum (CRC-64 or MD5). Retried: the data is re-sent or re-read.
    Integrity,
    /// The connection failed, timed out or was cut short. Retried.
    Transport,
    /// A local filesystem or database operation failed.
    Io,
    /// The operation does not exist on this backend or dialect (for example append on S3).
    Unsupported,
    /// The response could not be understood (malformed XML, missing header).
    Protocol,
    /// The job was stopped on request before this object finished; what was acknowledged is in the ledger and
    /// the job can be resumed.
    Stopped,
}

/// Whether repeating the same request can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Repeating the request cannot help.
    Permanent,
    /// A later attempt may succeed (5xx, throttling, resets, checksum mismatches).
    Temporary,
}

/// The facts of an error document returned by a server.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// The `<Code>` element, e.g. `NoSuchKey`.
    pub code: String,
    /// The `<Message>` element.
    pub message: String,
    /// `x-oss-request-id` / `<RequestId>`.
    pub request_id: Option<String>,
    /// OSS error number (`<EC>`, `x-oss-ec`), e.g. `0026-00000016`.
    pub ec: Option<String>,
    /// Extra children of the error document (`ArgumentName`, `StringToSign`, ...), in document order.
    pub extra: Vec<(String, String)>,
    /// Response headers that belong to the error, lower-case names (e.g. `x-oss-next-append-position` on a
    /// 409 `PositionNotEqualToLength`).
    pub headers: Vec<(String, String)>,
}

impl ServiceError {
    /// The value of an extra element of the error document, such as `ArgumentName`.
    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of a response header that came with the error.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Extra elements may carry a signature or string-to-sign; they are never secret, but keep Debug short.
        f.debug_struct("ServiceError")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("request_id", &self.request_id)
            .field("ec", &self.ec)
            .finish_non_exhaustive()
    }
}

/// The engine's error.
pub struct Error {
    kind: ErrorKind,
    retry: Retry,
    message: String,
    service: Option<Box<ServiceError>>,
    context: Vec<(&'static str, String)>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a human-readable message. Retry class: [`Retry::Temporary`] for
    /// [`ErrorKind::Transport`] and [`ErrorKind::Integrity`], [`Retry::Permanent`] otherwise.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retry = match kind {
            ErrorKind::Transport | ErrorKind::Integrity => Retry::Temporary,
            _ => Retry::Permanent,
        };
        Self { kind, retry, message: message.into(), service: None, context: Vec::new(), source: None }
    }

    /// An error document from a server (or produced by the local store in the server's vocabulary),
    /// classified by [`classify`].
    pub fn service(se: ServiceError) -> Self {
        let retry = classify(se.status, &se.code);
        let message = if se.message.is_empty() { se.code.clone() } else { se.message.clone() };
        Self {
            kind: ErrorKind::Service,
            retry,
            message,
            service: Some(Box::new(se)),
            context: Vec::new(),
            source: None,
        }
    }

    /// Shorthand for a service error with a status, a code and a message.
    pub fn code(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::service(ServiceError { status, code: code.to_owned(), message: message.into(), ..Default::default() })
    }

    /// Client-side validation failure.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Adds a `name=value` pair of context (object key, upload id, part number, ...).
    pub fn with_context(mut self, name: &'static str, value: impl fmt::Display) -> Self {
        self.context.push((name, value.to_string()));
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Overrides the retry class.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// An extra element for the error document (for [`ErrorKind::Service`] errors only).
    pub fn with_extra(mut self, name: &str, value: impl Into<String>) -> Self {
        if let Some(se) = self.service.as_mut() {
            se.extra.push((name.to_owned(), value.into()));
        }
        self
    }

    /// A response header for the error (for [`ErrorKind::Service`] errors only).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        if let Some(se) = self.service.as_mut() {
            se.headers.push((name.to_ascii_lowercase(), value.into()));
        }
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when a later attempt of the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retry == Retry::Temporary
    }

    /// The retry class.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// The service's error facts, when the error came from (or is meant for) a server.
    pub fn service_error(&self) -> Option<&ServiceError> {
        self.service.as_deref()
    }

    /// The service's `<Code>`, e.g. `NoSuchKey`.
    pub fn service_code(&self) -> Option<&str> {
        self.service.as_deref().map(|s| s.code.as_str())
    }

    /// HTTP status of a service error.
    pub fn status(&self) -> Option<u16> {
        self.service.as_deref().map(|s| s.status)
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The context pairs attached so far.
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.context
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.service {
            Some(se) => {
                write!(f, "{} (HTTP {}): {}", se.code, se.status, self.message)?;
                if let Some(ec) = &se.ec {
                    write!(f, ", EC {ec}")?;
                }
                if let Some(id) = &se.request_id {
                    write!(f, ", request id {id}")?;
                }
            }
            None => f.write_str(&self.message)?,
        }
        for (k, v) in &self.context {
            write!(f, ", {k}: {v}")?;
        }
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("retry", &self.retry)
            .field("message", &self.message)
            .field("service", &self.service)
            .field("context", &self.context)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, "local I/O failed").with_source(e)
    }
}

impl From<tokio::task::JoinError> for Error {
    /// A task the engine ran in the background (a blocking file or database call, a part upload) panicked or
    /// was cancelled.
    fn from(e: tokio::task::JoinError) -> Self {
        Error::new(ErrorKind::Io, "a background task failed").with_source(e)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::new(ErrorKind::Io, "local database operation failed").with_source(e)
    }
}

/// Retry class of a service answer, from its HTTP status and `<Code>`: the OSS reference (section 5.2) and the
/// SDKs' `retryable_error` lists for OSS, the AWS SDKs' transient and throttling codes for S3.
///
/// Retried: every 5xx, 408 and 429; `RequestTimeTooSkewed` (after the clock offset is corrected), `BadRequest`,
/// `InvalidDigest` and S3's `BadDigest`, `XAmzContentSHA256Mismatch` and `IncompleteBody` (the body is re-read
/// and re-sent), throttling (`SlowDown`, `Throttling`, `ThrottlingException`, `RequestThrottled`,
/// `RequestLimitExceeded`, `BandwidthLimitExceeded`, `TooManyRequestsException`), timeouts (`RequestTimeout`,
/// `RequestTimeoutException`), a conflicting operation in progress (`PriorRequestNotComplete`,
/// `OperationAborted`, S3's `ConditionalRequestConflict`), `InternalError`, `ServiceUnavailable`. Everything
/// else is permanent: `NoSuchUpload`, `InvalidPart`, `PreconditionFailed`, `EntityTooSmall`, `AccessDenied` and
/// friends need a decision, not a repeat.
pub fn classify(status: u16, code: &str) -> Retry {
    match code {
        "RequestTimeTooSkewed"
        | "BadRequest"
        | "InvalidDigest"
        | "BadDigest"
        | "XAmzContentSHA256Mismatch"
        | "IncompleteBody"
        | "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestThrottled"
        | "RequestLimitExceeded"
        | "BandwidthLimitExceeded"
        | "TooManyRequestsException"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "PriorRequestNotComplete"
        | "OperationAborted"
        | "ConditionalRequestConflict"
        | "InternalError"
        | "ServiceUnavailable" => return Retry::Temporary,
        // A server that does not implement an operation will not implement it on the next attempt either.
        "NotImplemented" => return Retry::Permanent,
        _ => {}
    }
    match status {
        501 | 505 => Retry::Permanent,
        500..=599 | 408 | 429 => Retry::Temporary,
        _ => Retry::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_reference_table() {
        assert_eq!(classify(404, "NoSuchUpload"), Retry::Permanent);
        assert_eq!(classify(400, "InvalidPart"), Retry::Permanent);
        assert_eq!(classify(409, "PositionNotEqualToLength"), Retry::Permanent);
        assert_eq!(classify(403, "SignatureDoesNotMatch"), Retry::Permanent);
        assert_eq!(classify(412, "PreconditionFailed"), Retry::Permanent);
        assert_eq!(classify(403, "RequestTimeTooSkewed"), Retry::Temporary);
        assert_eq!(classify(400, "InvalidDigest"), Retry::Temporary);
        assert_eq!(classify(503, "SlowDown"), Retry::Temporary);
        assert_eq!(classify(500, "InternalError"), Retry::Temporary);
        assert_eq!(classify(429, ""), Retry::Temporary);
        assert_eq!(classify(408, ""), Retry::Temporary);
        assert_eq!(classify(501, "NotImplemented"), Retry::Permanent);
        assert_eq!(classify(501, ""), Retry::Permanent);
    }

    #[test]
    fn s3_codes_are_classified_like_the_aws_sdks() {
        for code in [
            "SlowDown",
            "Throttling",
            "RequestThrottled",
            "RequestTimeout",
            "BadDigest",
            "OperationAborted",
            "XAmzContentSHA256Mismatch",
            "ConditionalRequestConflict",
        ] {
            assert_eq!(classify(400, code), Retry::Temporary, "{code}");
        }
        assert_eq!(classify(500, "InternalError"), Retry::Temporary);
        assert_eq!(classify(503, "ServiceUnavailable"), Retry::Temporary);
        for code in [
            "NoSuchKey",
            "NoSuchBucket",
            "NoSuchUpload",
            "InvalidPart",
            "InvalidPartOrder",
            "EntityTooSmall",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "InvalidArgument",
            "InvalidRange",
            "MalformedXML",
        ] {
            assert_eq!(classify(400, code), Retry::Permanent, "{code}");
        }
    }

    #[test]
    fn display_names_code_status_and_context() {
        let e = Error::code(404, "NoSuchUpload", "The specified upload does not exist.")
            .with_context("key", "a/b")
            .with_context("upload id", "U1");
        let s = e.to_string();
        assert!(s.contains("NoSuchUpload") && s.contains("404") && s.contains("a/b") && s.contains("U1"), "{s}");
        assert!(!e.is_retryable());
    }
}
