//! Signature checks: every request is verified with [`transfer_engine::sign::verify`] against the configured
//! credentials before anything else happens.

use crate::routing::Target;
use http::{HeaderMap, Method};
use std::time::SystemTime;
use transfer_engine::sign::{self, Credentials, SignTarget, Verified};
use transfer_engine::Result;

/// Verifies the signature of a request (header or presigned, V1 or V4) against `keys`. Errors are OSS's:
/// `AccessDenied`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `RequestTimeTooSkewed`,
/// `InvalidSecurityToken`.
pub(crate) fn check(keys: &[Credentials], method: &Method, target: &Target, headers: &HeaderMap) -> Result<Verified> {
    let st = SignTarget {
        method: method.as_str(),
        bucket: target.bucket.as_deref(),
        key: target.key.as_deref(),
        query: &target.query,
    };
    let lookup = |ak: &str| keys.iter().find(|c| c.access_key_id() == ak).cloned();
    sign::verify(&st, headers, &lookup, SystemTime::now())
}

/// Verifies an AWS SigV4 signature (header or presigned) over the path as received. Errors are S3's:
/// `AccessDenied`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `RequestTimeTooSkewed`, `InvalidToken`,
/// `AuthorizationHeaderMalformed`.
pub(crate) fn check_s3(
    keys: &[Credentials],
    method: &Method,
    path: &str,
    target: &Target,
    headers: &HeaderMap,
) -> Result<sign::s3::S3Verified> {
    let st = sign::s3::S3Target { method: method.as_str(), uri: path, query: &target.query };
    let lookup = |ak: &str| keys.iter().find(|c| c.access_key_id() == ak).cloned();
    sign::s3::verify(&st, headers, &lookup, SystemTime::now())
}
