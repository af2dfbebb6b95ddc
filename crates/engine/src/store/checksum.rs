//! Checksums a server checks on receipt and that CompleteMultipartUpload names again: S3's
//! `x-amz-checksum-*` family. OSS checks bodies by the CRC-64 it reports instead, and has none of these.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A checksum of one body (an object or a part), as sent and as the server confirmed it.
///
/// Only CRC-32C for now: computed by the CPU's CRC instruction (SSE 4.2, ARMv8 CRC), it costs a few percent
/// of what `Content-MD5` costs for the same protection against corrupted bodies, and every current
/// S3-compatible server we test checks it (AWS, Garage, s3s; not moto, which checks nothing).
///
/// `Display` and `FromStr` use `<algorithm>:<wire value>` (`crc32c:kZxRwg==`), the form the checkpoint
/// ledger keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// CRC-32C (Castagnoli); on the wire, the base64 of its four big-endian bytes.
    Crc32c(u32),
}

impl Checksum {
    /// The CRC-32C of `bytes`.
    pub fn crc32c(bytes: &[u8]) -> Checksum {
        Checksum::Crc32c(crc32c::crc32c(bytes))
    }

    /// The name in `x-amz-checksum-algorithm` ([`CRC32C_ALGORITHM`]).
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Crc32c(_) => CRC32C_ALGORITHM,
        }
    }

    /// The header that carries it on a PutObject or UploadPart and in the answer (`x-amz-checksum-crc32c`).
    pub fn header(&self) -> &'static str {
        match self {
            Checksum::Crc32c(_) => CRC32C_HEADER,
        }
    }

    /// The wire value: the base64 of the big-endian bytes.
    pub fn value(&self) -> String {
        match self {
            Checksum::Crc32c(c) => crate::util::b64(&c.to_be_bytes()),
        }
    }

    /// Parses the wire value of a CRC-32C (`x-amz-checksum-crc32c`, `<ChecksumCRC32C>`).
    pub fn parse_crc32c(value: &str) -> Result<Checksum> {
        crate::util::b64_decode(value.trim())
            .ok()
            .and_then(|raw| <[u8; 4]>::try_from(raw.as_slice()).ok())
            .map(|b| Checksum::Crc32c(u32::from_be_bytes(b)))
            .ok_or_else(|| Error::invalid(format!("{value:?} is not a base64 CRC-32C (four bytes)")))
    }
}

/// The checksum of a whole object as the store reports it (S3's `x-amz-checksum-*` on a HEAD with
/// `x-amz-checksum-mode: ENABLED`): of its bytes (`FULL_OBJECT`, what a single PutObject or a full-object
/// multipart upload carries), or `COMPOSITE`: the checksum of the concatenated part checksums, which only the
/// object's part layout can reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectChecksum {
    /// The value. Only CRC-32C is read; an object with another algorithm has none here.
    pub value: Checksum,
    /// `Some(n)`: composite, of `n` parts. `None`: of the object's bytes.
    pub composite_parts: Option<u32>,
}

impl ObjectChecksum {
    /// Reads `x-amz-checksum-crc32c` (`value` or `value-N`) with `x-amz-checksum-type` (`type_`), for an
    /// object whose ETag is `etag`. Whether a value without `-N` and without a type is composite is told by
    /// the ETag: a multipart ETag (`...-N`) means N parts (moto answers a HEAD that way).
    pub fn parse(value: &str, type_: Option<&str>, etag: &str) -> Result<ObjectChecksum> {
        let parts_of = |n: &str| n.parse::<u32>().ok().filter(|n| *n >= 1);
        let etag_parts = etag.trim_matches('"').rsplit_once('-').and_then(|(_, n)| parts_of(n));
        let (raw, suffix) = match value.trim().rsplit_once('-') {
            Some((raw, n)) => {
                let n = parts_of(n).ok_or_else(|| Error::invalid(format!("{value:?} is not a CRC-32C checksum")))?;
                (raw, Some(n))
            }
            None => (value.trim(), None),
        };
        let composite_parts = match type_.map(str::to_ascii_uppercase).as_deref() {
            Some("FULL_OBJECT") => None,
            Some("COMPOSITE") => Some(suffix.or(etag_parts).ok_or_else(|| {
                Error::invalid(format!("a composite checksum {value:?} without its part count (ETag {etag:?})"))
            })?),
            _ => suffix.or(etag_parts),
        };
        Ok(ObjectChecksum { value: Checksum::parse_crc32c(raw)?, composite_parts })
    }
}

/// The header of a CRC-32C ([`Checksum::header`]).
pub const CRC32C_HEADER: &str = "x-amz-checksum-crc32c";
/// The name of CRC-32C in `x-amz-checksum-algorithm` ([`Checksum::algorithm`]).
pub const CRC32C_ALGORITHM: &str = "CRC32C";

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checksum::Crc32c(_) => write!(f, "crc32c:{}", self.value()),
        }
    }
}

impl FromStr for Checksum {
    type Err = Error;

    fn from_str(s: &str) -> Result<Checksum> {
        match s.split_once(':') {
            Some(("crc32c", value)) => Checksum::parse_crc32c(value),
            _ => Err(Error::invalid(format!("{s:?} is not a checksum (expected crc32c:<base64>)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value_and_wire_forms() {
        // The CRC-32C check value: "123456789" -> 0xE3069283.
        let c = Checksum::crc32c(b"123456789");
        assert_eq!(c, Checksum::Crc32c(0xE306_9283));
        assert_eq!(c.value(), "4waSgw==");
        assert_eq!(c.header(), "x-amz-checksum-crc32c");
        assert_eq!(c.algorithm(), "CRC32C");
        assert_eq!(Checksum::parse_crc32c("4waSgw==").unwrap(), c);
        assert_eq!(c.to_string(), "crc32c:4waSgw==");
        assert_eq!("crc32c:4waSgw==".parse::<Checksum>().unwrap(), c);
        assert!(Checksum::parse_crc32c("AAAA").is_err());
        assert!(Checksum::parse_crc32c("not base64!").is_err());
        assert!("md5:xyz".parse::<Checksum>().is_err());
        assert!("4waSgw==".parse::<Checksum>().is_err());
    }

    #[test]
    fn object_checksums_tell_composite_from_full_object() {
        let c = Checksum::Crc32c(0xE306_9283);
        let full = |n| ObjectChecksum { value: c, composite_parts: n };
        assert_eq!(ObjectChecksum::parse("4waSgw==", None, "abc").unwrap(), full(None));
        assert_eq!(ObjectChecksum::parse("4waSgw==-3", None, "abc-3").unwrap(), full(Some(3)));
        assert_eq!(ObjectChecksum::parse("4waSgw==", Some("COMPOSITE"), "\"abc-7\"").unwrap(), full(Some(7)));
        assert_eq!(ObjectChecksum::parse("4waSgw==", None, "abc-7").unwrap(), full(Some(7)), "moto's HEAD");
        assert_eq!(ObjectChecksum::parse("4waSgw==", Some("FULL_OBJECT"), "abc-7").unwrap(), full(None));
        assert!(ObjectChecksum::parse("4waSgw==", Some("COMPOSITE"), "abc").is_err());
        assert!(ObjectChecksum::parse("4waSgw==-x", None, "abc").is_err());
        assert!(ObjectChecksum::parse("4waSgw==-0", None, "abc").is_err());
    }
}
