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
///
/// A server's answer is given its kind once, where it is parsed (the dialect edge: [`classify`] from the status
/// and the `<Code>`, and the dialect client where a status means two things, such as S3's 412 to a conditional
/// write); nothing past that edge compares code strings. The wire facts stay available for people in
/// [`Error::service_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object (or the version asked for) does not exist: `NoSuchKey`, `NoSuchVersion`.
    ObjectNotFound,
    /// The bucket does not exist: `NoSuchBucket`.
    BucketNotFound,
    /// The multipart upload does not exist (any more): `NoSuchUpload`.
    UploadNotFound,
    /// A write that must not replace an existing object (or bucket) found one: OSS's `FileAlreadyExists`, S3's
    /// 412 to `If-None-Match: *`, `BucketAlreadyExists`. Kept apart from [`ErrorKind::PreconditionFailed`]: an
    /// existing destination under no-clobber is not a copy source that changed.
    AlreadyExists,
    /// A condition on the request's source did not hold (`PreconditionFailed`): a copy or read pinned to an
    /// ETag found another one, so the source changed.
    PreconditionFailed,
    /// The service asked the client to slow down (`SlowDown`, `Throttling`, 429, ...). Retried.
    Throttled,
    /// The credentials were refused: a signature that does not match, an unknown access key, an expired or
    /// invalid security token.
    Credentials,
    /// The credentials are valid but may not do this (`AccessDenied`).
    AccessDenied,
    /// The client's clock differs from the server's by too much (`RequestTimeTooSkewed`). Retried once the
    /// client has corrected its clock from the server's.
    ClockSkew,
    /// The object is not in a state that allows the operation: archived and not restored
    /// (`InvalidObjectState`), not appendable, an append at the wrong position.
    InvalidObjectState,
    /// The destination has no room left (`InsufficientStorage`, HTTP 507): a full disk under `transfer serve`.
    /// Writes are refused until space is freed there; deletes and aborts still work. Not retried: repeating the
    /// write cannot succeed until someone frees space, and the message says where.
    InsufficientStorage,
    /// Any other answer of a service (see [`Error::service_error`]): internal errors, unknown codes.
    Service,
    /// Bad input, caught before any request was sent (a tag set over the limits, a key that escapes the root,
    /// a part number outside 1..=10000) or refused by the server (`InvalidArgument`, `EntityTooSmall`, ...).
    /// Never retried.
    InvalidInput,
    /// Bytes did not match their checksum (CRC-64, CRC-32C or MD5). Retried: the data is re-sent or re-read.
    Integrity,
    /// The connection failed, timed out or was cut short. Retried.
    Transport,
    /// A local filesystem or database operation failed.
    Io,
    /// Another process (or another handle in this one) is running the job: its lock is held.
    Locked,
    /// The operation does not exist on this backend or dialect (for example append on S3, or a server's
    /// `NotImplemented`).
    Unsupported,
    /// The response could not be understood (malformed XML, missing header).
    Protocol,
    /// The job was stopped on request before this object finished; what was acknowledged is in the ledger and
    /// the job can be resumed.
    Stopped,
    /// Objects of a job failed ([`JobHandle::join`](crate::job::JobHandle::join)); the error's source is the
    /// first failure, and the job can be resumed.
    JobFailed,
}

/// The kind's stable name, `snake_case` (`object_not_found`, `already_exists`, ...), as `--json` events carry it.
impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::ObjectNotFound => "object_not_found",
            ErrorKind::BucketNotFound => "bucket_not_found",
            ErrorKind::UploadNotFound => "upload_not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Credentials => "credentials",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::ClockSkew => "clock_skew",
            ErrorKind::InvalidObjectState => "invalid_object_state",
            ErrorKind::InsufficientStorage => "insufficient_storage",
            ErrorKind::Service => "service",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Transport => "transport",
            ErrorKind::Io => "io",
            ErrorKind::Locked => "locked",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Stopped => "stopped",
            ErrorKind::JobFailed => "job_failed",
        })
    }
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

/// The engine's error. Cheap to clone (the cause is shared), so job events and summaries carry it whole.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    retry: Retry,
    message: String,
    service: Option<Box<ServiceError>>,
    context: Vec<(&'static str, String)>,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>>,
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
        let (kind, retry) = classify(se.status, &se.code);
        let message = if se.message.is_empty() { se.code.clone() } else { se.message.clone() };
        Self { kind, retry, message, service: Some(Box::new(se)), context: Vec::new(), source: None }
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
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    /// Overrides the kind: for the dialect edge, where one status means two things (S3's 412 to
    /// `If-None-Match: *` is [`ErrorKind::AlreadyExists`], to a source condition
    /// [`ErrorKind::PreconditionFailed`]).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Overrides the retry class.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// An extra element for the error document (for errors made from a service answer only).
    pub fn with_extra(mut self, name: &str, value: impl Into<String>) -> Self {
        if let Some(se) = self.service.as_mut() {
            se.extra.push((name.to_owned(), value.into()));
        }
        self
    }

    /// A response header for the error (for errors made from a service answer only).
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

    /// The service's `<Code>`, e.g. `NoSuchKey`: for people and logs. Code that decides matches on
    /// [`Error::kind`] instead.
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

/// The kind and retry class of a service answer, from its HTTP status and `<Code>`: the OSS reference (section
/// 5.2) and the SDKs' `retryable_error` lists for OSS, the AWS SDKs' transient and throttling codes for S3. The
/// two dialects share this vocabulary (and the local store speaks it), so one table serves both; where a status
/// means two things, the dialect client overrides the kind with [`Error::with_kind`].
///
/// Retried: every 5xx, 408 and 429; `RequestTimeTooSkewed` (after the clock offset is corrected), `BadRequest`,
/// `InvalidDigest` and S3's `BadDigest`, `XAmzContentSHA256Mismatch` and `IncompleteBody` (the body is re-read
/// and re-sent), throttling (`SlowDown`, `Throttling`, `ThrottlingException`, `RequestThrottled`,
/// `RequestLimitExceeded`, `BandwidthLimitExceeded`, `TooManyRequestsException`; OSS's `QpsLimitExceeded`,
/// `DownloadTrafficRateLimitExceeded`, `UploadTrafficRateLimitExceeded`), timeouts (`RequestTimeout`,
/// `RequestTimeoutException`), a conflicting operation in progress (`PriorRequestNotComplete`,
/// `OperationAborted`, S3's `ConditionalRequestConflict`), `InternalError`, `ServiceUnavailable`. Everything
/// else is permanent: `NoSuchUpload`, `InvalidPart`, `PreconditionFailed`, `EntityTooSmall`, `AccessDenied` and
/// friends need a decision, not a repeat. So is a full disk (`InsufficientStorage`, any 507), although it is a
/// 5xx: the write fails the same way until space is freed, and retrying it for half a minute only hides why.
pub fn classify(status: u16, code: &str) -> (ErrorKind, Retry) {
    use ErrorKind as K;
    use Retry::{Permanent, Temporary};
    match code {
        "NoSuchKey" | "NoSuchVersion" => return (K::ObjectNotFound, Permanent),
        "NoSuchBucket" => return (K::BucketNotFound, Permanent),
        "NoSuchUpload" => return (K::UploadNotFound, Permanent),
        "FileAlreadyExists" | "BucketAlreadyExists" | "BucketAlreadyOwnedByYou" => {
            return (K::AlreadyExists, Permanent)
        }
        "PreconditionFailed" => return (K::PreconditionFailed, Permanent),
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestThrottled"
        | "RequestLimitExceeded"
        | "BandwidthLimitExceeded"
        | "TooManyRequestsException"
        | "QpsLimitExceeded"
        | "DownloadTrafficRateLimitExceeded"
        | "UploadTrafficRateLimitExceeded" => return (K::Throttled, Temporary),
        "SignatureDoesNotMatch"
        | "InvalidAccessKeyId"
        | "InvalidSecurityToken"
        | "SecurityTokenExpired"
        | "ExpiredToken"
        | "InvalidToken"
        | "TokenRefreshRequired" => return (K::Credentials, Permanent),
        "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => return (K::AccessDenied, Permanent),
        "RequestTimeTooSkewed" => return (K::ClockSkew, Temporary),
        "InvalidObjectState" | "ObjectNotAppendable" | "PositionNotEqualToLength" => {
            return (K::InvalidObjectState, Permanent)
        }
        "InsufficientStorage" => return (K::InsufficientStorage, Permanent),
        "InvalidDigest" | "BadDigest" | "XAmzContentSHA256Mismatch" => return (K::Integrity, Temporary),
        "IncompleteBody" | "RequestTimeout" | "RequestTimeoutException" => return (K::Transport, Temporary),
        "BadRequest"
        | "PriorRequestNotComplete"
        | "OperationAborted"
        | "ConditionalRequestConflict"
        | "InternalError"
        | "ServiceUnavailable" => return (K::Service, Temporary),
        // A server that does not implement an operation will not implement it on the next attempt either.
        "NotImplemented" => return (K::Unsupported, Permanent),
        "InvalidArgument"
        | "InvalidRequest"
        | "InvalidPartSize"
        | "EntityTooSmall"
        | "EntityTooLarge"
        | "InvalidStorageClass"
        | "InvalidTag"
        | "InvalidObjectName"
        | "InvalidBucketName"
        | "KeyTooLong"
        | "MetadataTooLarge"
        | "InvalidRange"
        | "MalformedXML"
        | "AuthorizationQueryParametersError"
        | "InvalidEncryptionAlgorithmError"
        | "InvalidLocationConstraint"
        | "TooManyBuckets" => return (K::InvalidInput, Permanent),
        _ => {}
    }
    match status {
        501 | 505 => (K::Unsupported, Permanent),
        507 => (K::InsufficientStorage, Permanent),
        429 => (K::Throttled, Temporary),
        500..=599 | 408 => (K::Service, Temporary),
        403 => (K::AccessDenied, Permanent),
        412 => (K::PreconditionFailed, Permanent),
        _ => (K::Service, Permanent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(status: u16, code: &str) -> Retry {
        classify(status, code).1
    }

    #[test]
    fn classification_follows_the_reference_table() {
        assert_eq!(retry(404, "NoSuchUpload"), Retry::Permanent);
        assert_eq!(retry(400, "InvalidPart"), Retry::Permanent);
        assert_eq!(retry(409, "PositionNotEqualToLength"), Retry::Permanent);
        assert_eq!(retry(403, "SignatureDoesNotMatch"), Retry::Permanent);
        assert_eq!(retry(412, "PreconditionFailed"), Retry::Permanent);
        assert_eq!(retry(403, "RequestTimeTooSkewed"), Retry::Temporary);
        assert_eq!(retry(400, "InvalidDigest"), Retry::Temporary);
        assert_eq!(retry(503, "SlowDown"), Retry::Temporary);
        assert_eq!(retry(500, "InternalError"), Retry::Temporary);
        assert_eq!(retry(429, ""), Retry::Temporary);
        assert_eq!(retry(408, ""), Retry::Temporary);
        assert_eq!(retry(501, "NotImplemented"), Retry::Permanent);
        assert_eq!(retry(501, ""), Retry::Permanent);
        // A full disk is a 5xx that no repeat can fix: the client stops at once and says why.
        assert_eq!(classify(507, "InsufficientStorage"), (ErrorKind::InsufficientStorage, Retry::Permanent));
        assert_eq!(classify(507, ""), (ErrorKind::InsufficientStorage, Retry::Permanent));
        assert_eq!(classify(400, "AuthorizationQueryParametersError"), (ErrorKind::InvalidInput, Retry::Permanent));
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
            assert_eq!(retry(400, code), Retry::Temporary, "{code}");
        }
        assert_eq!(retry(500, "InternalError"), Retry::Temporary);
        assert_eq!(retry(503, "ServiceUnavailable"), Retry::Temporary);
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
            assert_eq!(retry(400, code), Retry::Permanent, "{code}");
        }
    }

    #[test]
    fn codes_have_the_kinds_a_caller_matches_on() {
        use ErrorKind as K;
        for (status, code, kind) in [
            (404, "NoSuchKey", K::ObjectNotFound),
            (404, "NoSuchVersion", K::ObjectNotFound),
            (404, "NoSuchBucket", K::BucketNotFound),
            (404, "NoSuchUpload", K::UploadNotFound),
            (409, "FileAlreadyExists", K::AlreadyExists),
            (409, "BucketAlreadyExists", K::AlreadyExists),
            (412, "PreconditionFailed", K::PreconditionFailed),
            (503, "SlowDown", K::Throttled),
            (429, "", K::Throttled),
            (403, "SignatureDoesNotMatch", K::Credentials),
            (403, "InvalidAccessKeyId", K::Credentials),
            (400, "ExpiredToken", K::Credentials),
            (403, "AccessDenied", K::AccessDenied),
            (403, "", K::AccessDenied),
            (403, "RequestTimeTooSkewed", K::ClockSkew),
            (403, "InvalidObjectState", K::InvalidObjectState),
            (409, "PositionNotEqualToLength", K::InvalidObjectState),
            (400, "BadDigest", K::Integrity),
            (400, "EntityTooSmall", K::InvalidInput),
            (501, "NotImplemented", K::Unsupported),
            (500, "InternalError", K::Service),
            (400, "InvalidPart", K::Service),
        ] {
            assert_eq!(classify(status, code).0, kind, "{status} {code}");
            assert_eq!(Error::code(status, code, "m").kind(), kind, "{status} {code}");
        }
    }

    #[test]
    fn errors_clone_with_their_cause() {
        let e = Error::new(ErrorKind::Io, "disk").with_source(std::io::Error::other("full"));
        let c = e.clone();
        assert_eq!((c.kind(), c.to_string()), (ErrorKind::Io, e.to_string()));
        assert!(std::error::Error::source(&c).is_some());
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
