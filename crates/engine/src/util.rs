//! Small encoding helpers shared by the client, the server and the local store.

use crate::error::{Error, Result};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 3986 unreserved characters are left alone; everything else is escaped.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// As [`UNRESERVED`], but `/` is kept (object keys in URL paths and copy sources).
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Percent-encodes everything but RFC 3986 unreserved characters (`A-Za-z0-9-._~`).
pub fn pct_encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Percent-encodes an object key for a URL path or a copy source: as [`pct_encode`], keeping `/`.
pub fn pct_encode_path(s: &str) -> String {
    utf8_percent_encode(s, PATH).to_string()
}

/// Decodes `%XX` escapes; `+` stays `+`. Fails on invalid UTF-8.
pub fn pct_decode(s: &str) -> Result<String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::invalid(format!("{s:?} does not percent-decode to UTF-8")))
}

/// Decodes a query-string component: `+` is a space, then `%XX` escapes.
pub fn pct_decode_form(s: &str) -> Result<String> {
    if s.contains('+') {
        pct_decode(&s.replace('+', " "))
    } else {
        pct_decode(s)
    }
}

/// Parses a raw URL query into decoded `(name, value)` pairs, in order. `+` is kept literally: the SDKs encode
/// a space as `%20`, and a literal `+` in a signed query must stay what the client signed.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((pct_decode(k)?, pct_decode(v)?))
        })
        .collect()
}

/// Base64 (standard alphabet, padded).
pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes standard base64.
pub fn b64_decode(s: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| Error::invalid(format!("{s:?} is not valid base64")))
}

/// Base64 of the MD5 of `data`: the `Content-MD5` header value.
pub fn content_md5(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    b64(&Md5::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(pct_encode("a b+c/d~"), "a%20b%2Bc%2Fd~");
        assert_eq!(pct_encode_path("dir/中 x+y"), "dir/%E4%B8%AD%20x%2By");
        assert_eq!(pct_decode("a%2Bb+c").unwrap(), "a+b+c");
        assert_eq!(pct_decode_form("a%2Bb+c").unwrap(), "a+b c");
        assert_eq!(
            parse_query("uploads&partNumber=3&k=%2Bv").unwrap(),
            vec![("uploads".into(), "".into()), ("partNumber".into(), "3".into()), ("k".into(), "+v".into())]
        );
        assert_eq!(content_md5(b"0123456789"), "eB5eJF1ptWaXm4bijSPyxw==");
    }
}
