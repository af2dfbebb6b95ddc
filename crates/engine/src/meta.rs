//! Object metadata as a type: user metadata (`x-oss-meta-*` / `x-amz-meta-*`), the standard headers a writer may
//! set, and the storage class, validated to the OSS limits (reference section 3.2).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;

/// Largest total size of user metadata (names plus values), in bytes.
pub const MAX_USER_META_BYTES: usize = 8 * 1024;

/// A storage class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageClass {
    /// `Standard`.
    Standard,
    /// `IA` (infrequent access).
    InfrequentAccess,
    /// `Archive`.
    Archive,
    /// `ColdArchive`.
    ColdArchive,
    /// `DeepColdArchive`.
    DeepColdArchive,
}

impl StorageClass {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "Standard",
            Self::InfrequentAccess => "IA",
            Self::Archive => "Archive",
            Self::ColdArchive => "ColdArchive",
            Self::DeepColdArchive => "DeepColdArchive",
        }
    }

    /// Parses a wire name (case-insensitive; S3's `STANDARD` and `STANDARD_IA` are accepted too).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "standard" => Self::Standard,
            "ia" | "standard_ia" => Self::InfrequentAccess,
            "archive" | "glacier" => Self::Archive,
            "coldarchive" => Self::ColdArchive,
            "deepcoldarchive" | "deep_archive" => Self::DeepColdArchive,
            _ => {
                return Err(Error::invalid(format!(
                    "storage class {s:?} is unknown; use Standard, IA, Archive, ColdArchive or DeepColdArchive"
                )))
            }
        })
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a writer sets on an object besides its bytes and tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// User metadata; names are stored lower-cased, without the `x-oss-meta-` prefix.
    pub user: BTreeMap<String, String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Expires`.
    pub expires: Option<String>,
    /// `x-oss-storage-class`.
    pub storage_class: Option<StorageClass>,
}

fn check_header_value(what: &str, v: &str) -> Result<()> {
    if !v.is_ascii() || v.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Error::invalid(format!(
            "{what} has a value with control or non-ASCII characters; encode the value (for example percent-encoding) first"
        )));
    }
    Ok(())
}

impl Metadata {
    /// Adds one user-metadata entry after checking its name; see [`Metadata::validate`] for the totals.
    pub fn insert_user(&mut self, name: &str, value: impl Into<String>) -> Result<()> {
        let lname = name.to_ascii_lowercase();
        if lname.is_empty() || !lname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(Error::invalid(format!(
                "metadata name {name:?} is invalid; names may contain only letters, digits and '-'"
            )));
        }
        let value = value.into();
        check_header_value(&format!("metadata {name:?}"), &value)?;
        self.user.insert(lname, value);
        Ok(())
    }

    /// Builds user metadata from pairs, validated.
    pub fn with_user<K: AsRef<str>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self> {
        let mut m = Self::default();
        for (k, v) in pairs {
            m.insert_user(k.as_ref(), v)?;
        }
        m.validate()?;
        Ok(m)
    }

    /// Size of user metadata as OSS counts it: names plus values, in bytes.
    pub fn user_bytes(&self) -> usize {
        self.user.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Checks names, values and the 8 KB total. The error names the field at fault.
    pub fn validate(&self) -> Result<()> {
        for (k, v) in &self.user {
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(Error::invalid(format!(
                    "metadata name {k:?} is invalid; names may contain only letters, digits and '-'"
                )));
            }
            check_header_value(&format!("metadata {k:?}"), v)?;
        }
        let total = self.user_bytes();
        if total > MAX_USER_META_BYTES {
            let biggest = self.user.iter().max_by_key(|(k, v)| k.len() + v.len()).map(|(k, _)| k.as_str());
            return Err(Error::invalid(format!(
                "user metadata totals {total} bytes (largest entry {:?}); the limit is {MAX_USER_META_BYTES} bytes",
                biggest.unwrap_or_default()
            )));
        }
        for (name, v) in self.standard() {
            check_header_value(name, v)?;
        }
        Ok(())
    }

    /// The standard headers that are set, as `(header name, value)`.
    pub fn standard(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("content-type", &self.content_type),
            ("cache-control", &self.cache_control),
            ("content-disposition", &self.content_disposition),
            ("content-encoding", &self.content_encoding),
            ("content-language", &self.content_language),
            ("expires", &self.expires),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_deref().map(|v| (n, v)))
    }

    /// Sets a standard header by its (lower-case) name; returns false if the name is not one of them.
    pub fn set_standard(&mut self, name: &str, value: String) -> bool {
        let slot = match name {
            "content-type" => &mut self.content_type,
            "cache-control" => &mut self.cache_control,
            "content-disposition" => &mut self.content_disposition,
            "content-encoding" => &mut self.content_encoding,
            "content-language" => &mut self.content_language,
            "expires" => &mut self.expires,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_metadata_limits_name_the_field() {
        let e = Metadata::with_user([("bad_name", "v")]).unwrap_err();
        assert!(e.to_string().contains("bad_name"), "{e}");
        let m = Metadata::with_user([("Key1", "value1")]).unwrap();
        assert_eq!(m.user.get("key1").map(String::as_str), Some("value1"));
        let big = "v".repeat(5000);
        let e = Metadata::with_user([("a", big.as_str()), ("bb", big.as_str())]).unwrap_err();
        assert!(e.to_string().contains("8192") && e.to_string().contains("\"bb\""), "{e}");
        assert!(Metadata::with_user([("a", "line\nbreak")]).is_err());
    }

    #[test]
    fn storage_class_names() {
        assert_eq!(StorageClass::parse("ia").unwrap(), StorageClass::InfrequentAccess);
        assert_eq!(StorageClass::parse("STANDARD").unwrap().as_str(), "Standard");
        assert!(StorageClass::parse("").is_err());
    }
}
