//! Random identifiers of the local store: version ids, upload ids and data file names.
//!
//! All three are random, never derived from a key, so no object key can ever choose a filesystem path.

use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;

/// The version id of writes made while versioning is off or suspended (OSS and S3 call it `null`).
pub(crate) const NULL_VERSION: &str = "null";

/// A fresh version id in the style of OSS (`CAEQ...`): 4 + 40 URL-safe alphanumerics.
pub(crate) fn version_id() -> String {
    let mut s = String::with_capacity(44);
    s.push_str("CAEQ");
    Alphanumeric.append_string(&mut rand::thread_rng(), &mut s, 40);
    s
}

/// A fresh multipart upload id: 32 upper-case hex characters, as OSS issues them.
pub(crate) fn upload_id() -> String {
    hex::encode_upper(rand::thread_rng().gen::<[u8; 16]>())
}

/// A fresh data (or staged part) file name: 32 lower-case hex characters.
pub(crate) fn file_id() -> String {
    hex::encode(rand::thread_rng().gen::<[u8; 16]>())
}

/// True when `s` could be an upload id issued by [`upload_id`] (used to keep foreign names out of paths).
pub(crate) fn is_upload_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// True when `s` could be a file name issued by [`file_id`].
pub(crate) fn is_file_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_shapes() {
        let v = version_id();
        assert!(v.starts_with("CAEQ") && v.len() == 44 && v.bytes().all(|b| b.is_ascii_alphanumeric()), "{v}");
        assert_ne!(version_id(), v);
        let u = upload_id();
        assert!(is_upload_id(&u), "{u}");
        assert!(!is_upload_id(&u.to_lowercase()));
        let f = file_id();
        assert!(is_file_id(&f) && !is_file_id("../etc/passwd"), "{f}");
    }
}
