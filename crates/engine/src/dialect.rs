//! Wire dialects as data: header names, the metadata prefix, the limits, and the signing family.
//!
//! The HTTP client and the server read every dialect-specific name from a [`Dialect`] instead of branching on
//! "is this OSS": adding S3 means adding a value here (and its signer), not editing every call site.

use crate::store::Capabilities;

/// A wire dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    /// Short name (`oss`, `s3`).
    pub name: &'static str,
    /// Prefix of the dialect's own headers: `x-oss-`.
    pub prefix: &'static str,
    /// Prefix of user metadata headers: `x-oss-meta-`.
    pub meta_prefix: &'static str,
    /// Header carrying the whole-object or part CRC-64, if the dialect has one.
    pub crc64_header: Option<&'static str>,
    /// Operations and limits.
    pub capabilities: Capabilities,
}

impl Dialect {
    /// Alibaba Cloud OSS.
    pub const OSS: Dialect = Dialect {
        name: "oss",
        prefix: "x-oss-",
        meta_prefix: "x-oss-meta-",
        crc64_header: Some("x-oss-hash-crc64ecma"),
        capabilities: Capabilities::OSS,
    };

    /// The full name of a dialect header: `h("tagging")` is `x-oss-tagging` for OSS.
    pub fn h(&self, suffix: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + suffix.len());
        s.push_str(self.prefix);
        s.push_str(suffix);
        s
    }
}
