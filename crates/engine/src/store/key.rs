//! Object key and bucket name rules.

use crate::error::{Error, Result};

/// Longest object key, in bytes.
pub const MAX_KEY_BYTES: usize = 1023;

/// Checks an object key: 1 to 1023 bytes of UTF-8, not starting with `/` or `\`, no NUL, and no `.` or `..`
/// path segment (such a key could escape a filesystem root). Refusals use OSS's `InvalidObjectName` code.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::code(400, "InvalidObjectName", format!("The specified object name is not valid: {why}."))
            .with_context("key", format!("{key:?}"))
    };
    if key.is_empty() {
        return Err(bad("it is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(bad(&format!("it is {} bytes long, the limit is {MAX_KEY_BYTES}", key.len())));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(bad("it starts with '/' or '\\'"));
    }
    if key.contains('\0') {
        return Err(bad("it contains a NUL character"));
    }
    if key.split(['/', '\\']).any(|seg| seg == ".." || seg == ".") {
        return Err(bad("it has a '.' or '..' path segment"));
    }
    Ok(())
}

/// Largest part number of a multipart upload.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// Checks a part number: 1 to 10000, or OSS's 400 `InvalidArgument` naming `partNumber` (EC 0017-00000220).
pub fn validate_part_number(n: u32) -> Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        return Ok(());
    }
    Err(Error::service(crate::ServiceError {
        status: 400,
        code: "InvalidArgument".into(),
        message: format!("Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive."),
        ec: Some("0017-00000220".into()),
        extra: vec![("ArgumentName".into(), "partNumber".into()), ("ArgumentValue".into(), n.to_string())],
        ..Default::default()
    }))
}

/// Checks a bucket name: 3 to 63 characters of lower-case letters, digits and `-`, starting and ending with a
/// letter or digit. Refusals use `InvalidBucketName`.
pub fn validate_bucket(bucket: &str) -> Result<()> {
    check_bucket(bucket, false)
}

/// Checks a bucket name by the rule of a store with `caps`: OSS's ([`validate_bucket`]), or S3's where the
/// store takes dotted names ([`Capabilities::dotted_bucket_names`](super::Capabilities::dotted_bucket_names)):
/// 3 to 63 characters of lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit,
/// no `..`, and not an IP address.
pub fn validate_bucket_for(bucket: &str, caps: &super::Capabilities) -> Result<()> {
    check_bucket(bucket, caps.dotted_bucket_names)
}

/// Both rules: OSS's, and with `dots` S3's.
fn check_bucket(bucket: &str, dots: bool) -> Result<()> {
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.'))
        && alnum(bucket.bytes().next())
        && alnum(bucket.bytes().last())
        && !bucket.contains("..")
        && bucket.parse::<std::net::Ipv4Addr>().is_err();
    if ok {
        return Ok(());
    }
    let rule = if dots {
        "use 3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit, without '..', not an IP address"
    } else {
        "use 3 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
    };
    Err(Error::code(400, "InvalidBucketName", format!("The specified bucket {bucket:?} is not valid: {rule}.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_judges_bucket_names_by_its_rule() {
        use crate::store::Capabilities;
        for ok in ["logs.example.com", "a-b.c1", "abc"] {
            validate_bucket_for(ok, &Capabilities::S3).unwrap();
        }
        for bad in ["ab", "-abc", "abc.", "a..b", "192.168.1.10", "Upper.case", "a_b"] {
            assert_eq!(
                validate_bucket_for(bad, &Capabilities::S3).unwrap_err().service_code(),
                Some("InvalidBucketName"),
                "{bad}"
            );
        }
        assert!(validate_bucket_for("logs.example.com", &Capabilities::OSS).is_err(), "OSS takes no dots");
        validate_bucket_for("logs-example", &Capabilities::OSS).unwrap();
    }

    #[test]
    fn keys_that_escape_are_refused() {
        for k in ["", "/abs", "\\abs", "a/../b", "..", "a/./b", "nul\0", &"x".repeat(1024)] {
            let e = validate_key(k).unwrap_err();
            assert_eq!(e.service_code(), Some("InvalidObjectName"), "{k:?}");
        }
        for k in ["a", "dir/file.txt", "a..b", "...", "中文/键", &"x".repeat(1023)] {
            validate_key(k).unwrap();
        }
    }

    #[test]
    fn part_numbers() {
        validate_part_number(1).unwrap();
        validate_part_number(10_000).unwrap();
        for n in [0, 10_001] {
            let e = validate_part_number(n).unwrap_err();
            assert_eq!(e.service_code(), Some("InvalidArgument"));
            assert_eq!(e.service_error().unwrap().extra("ArgumentValue"), Some(n.to_string().as_str()));
        }
    }

    #[test]
    fn bucket_names() {
        validate_bucket("examplebucket").unwrap();
        validate_bucket("a-1").unwrap();
        for b in ["ab", "Upper", "-a-", "a_b", &"a".repeat(64)] {
            assert!(validate_bucket(b).is_err(), "{b}");
        }
    }
}
