//! Command-line addresses: `oss://bucket/key`, `s3://bucket/key`, `local://bucket/key` (the embedded local store)
//! and plain paths,
//! and size units (`8MiB`, `100KB`, `1048576`).

use std::fmt;
use std::path::PathBuf;

/// Which store a remote address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// An OSS endpoint (`--endpoint`).
    Oss,
    /// An S3-compatible endpoint (`--endpoint`).
    S3,
    /// The local store under `--local-root`.
    Local,
}

/// A source or destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A file or directory on this machine.
    Path(PathBuf),
    /// An object (`key` without a trailing `/`) or a prefix (empty, or ending in `/`).
    Remote { scheme: Scheme, bucket: String, key: String },
}

impl Location {
    /// Parses `oss://b/k`, `s3://b/k`, `local://b/k`, or a path.
    pub(crate) fn parse(s: &str) -> Result<Location, String> {
        let (scheme, rest) = match s.split_once("://") {
            // `oss:/b/k`, `s3:b/k`: a scheme with its slashes mistyped is no local path.
            None => match s.split_once(':') {
                Some((name @ ("oss" | "s3" | "local"), rest)) => {
                    let rest = rest.trim_start_matches('/');
                    return Err(format!("{s}: a malformed address; write {name}://{rest}"));
                }
                _ => return Ok(Location::Path(PathBuf::from(s))),
            },
            Some(("oss", rest)) => (Scheme::Oss, rest),
            Some(("local", rest)) => (Scheme::Local, rest),
            Some(("s3", rest)) => (Scheme::S3, rest),
            Some((other, _)) => {
                return Err(format!("{s}: unknown scheme {other}://; use oss://, s3://, local:// or a path"))
            }
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{s}: no bucket; write {}://BUCKET/KEY", scheme.name()));
        }
        // Each dialect's rule: S3 takes dotted names (`logs.example.com`), OSS and the local store do not.
        let caps = match scheme {
            Scheme::S3 => &transfer_engine::store::Capabilities::S3,
            Scheme::Oss | Scheme::Local => &transfer_engine::store::Capabilities::OSS,
        };
        transfer_engine::store::validate_bucket_for(bucket, caps).map_err(|e| format!("{s}: {}", e.message()))?;
        Ok(Location::Remote { scheme, bucket: bucket.to_owned(), key: key.to_owned() })
    }

    /// True for a directory, a prefix, or a trailing `/`.
    pub(crate) fn is_container(&self) -> bool {
        match self {
            Location::Path(p) => p.is_dir(),
            Location::Remote { key, .. } => key.is_empty() || key.ends_with('/'),
        }
    }
}

impl Scheme {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scheme::Oss => "oss",
            Scheme::S3 => "s3",
            Scheme::Local => "local",
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Path(p) => write!(f, "{}", p.display()),
            Location::Remote { scheme, bucket, key } => write!(f, "{}://{bucket}/{key}", scheme.name()),
        }
    }
}

/// Parses a size: a number with an optional unit (B, KB, MB, GB, TB — powers of 1000 — or KiB, MiB, GiB, TiB —
/// powers of 1024; case-insensitive; `K`, `M`, `G`, `T` alone mean the binary units).
/// `key` as the prefix of the keys under it: with a `/` after it, unless it is empty or has one.
pub(crate) fn prefix_of(key: &str) -> String {
    match key {
        "" => String::new(),
        k if k.ends_with('/') => k.to_owned(),
        k => format!("{k}/"),
    }
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("{s:?} is not a size; write e.g. 8MiB, 100KB or 1048576"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        other => return Err(format!("{s:?}: unknown unit {other:?}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB")),
    };
    Ok((value * mult as f64).round() as u64)
}

/// A bandwidth limit as `--bwlimit` takes it: a size per second (`50MiB/s`, `/s` optional), or `off` (0: no
/// limit).
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(0);
    }
    parse_size(t.strip_suffix("/s").unwrap_or(t))
        .map_err(|_| format!("{s:?} is not a rate; write e.g. 50MiB/s, 500KB/s or off"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("50MiB/s"), Ok(50 << 20));
        assert_eq!(parse_rate("500KB"), Ok(500_000));
        assert_eq!(parse_rate("OFF"), Ok(0));
        assert_eq!(parse_rate("0"), Ok(0));
        assert!(parse_rate("fast").unwrap_err().contains("50MiB/s"));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            Location::parse("oss://bkt/a/b").unwrap(),
            Location::Remote { scheme: Scheme::Oss, bucket: "bkt".into(), key: "a/b".into() }
        );
        assert!(Location::parse("local://bkt/").unwrap().is_container());
        assert!(!Location::parse("oss://bkt/k").unwrap().is_container());
        assert_eq!(Location::parse("./x").unwrap(), Location::Path("./x".into()));
        assert!(Location::parse("oss:///k").unwrap_err().contains("no bucket"));
        assert!(Location::parse("ftp://x/y").unwrap_err().contains("unknown scheme"));
        assert!(Location::parse("oss://Bad_Bucket/k").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("100KB").unwrap(), 100_000);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("8 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_size("MiB").is_err());
    }
}
