//! Object tags: a validated [`TagSet`], encoded to the `x-oss-tagging` / `x-amz-tagging` header and to the
//! `<Tagging>` XML body.
//!
//! The limits are OSS's (reference section 3.1): at most 10 tags, unique keys, a key of 1 to 128 characters, a
//! value of 0 to 256 characters, made of letters, digits, space and `+ - = . _ : /`. The header form is an
//! RFC 3986 query string: every key and value is percent-encoded, so a tag such as key `k4+-=` with value
//! `+-=._:/` survives the trip (the official V2 Copiers join tags unencoded and corrupt exactly this tag).

use crate::error::{Error, Result};
use crate::util::{pct_decode_form, pct_encode};
use std::fmt;

/// Most tags an object may carry.
pub const MAX_TAGS: usize = 10;
/// Longest tag key, in characters.
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest tag value, in characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// One tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value (may be empty).
    pub value: String,
}

/// An ordered, validated set of tags with unique keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TagSet {
    tags: Vec<Tag>,
}

fn allowed_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '+' | '-' | '=' | '.' | '_' | ':' | '/')
}

fn check_tag(key: &str, value: &str) -> Result<()> {
    let n = key.chars().count();
    if n == 0 || n > MAX_TAG_KEY_CHARS {
        return Err(Error::invalid(format!(
            "tag key {key:?} is {n} characters long; a tag key must have 1 to {MAX_TAG_KEY_CHARS} characters"
        )));
    }
    let n = value.chars().count();
    if n > MAX_TAG_VALUE_CHARS {
        return Err(Error::invalid(format!(
            "tag {key:?} has a value of {n} characters; a tag value may have at most {MAX_TAG_VALUE_CHARS}"
        )));
    }
    for (what, s) in [("key", key), ("value", value)] {
        if let Some(c) = s.chars().find(|c| !allowed_char(*c)) {
            return Err(Error::invalid(format!(
                "tag {key:?}: the {what} contains {c:?}; tags may contain only letters, digits, space and + - = . _ : /"
            )));
        }
    }
    Ok(())
}

impl TagSet {
    /// An empty tag set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a validated tag set from pairs, in order.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self> {
        let mut set = Self::new();
        for (k, v) in pairs {
            set.insert(k, v)?;
        }
        Ok(set)
    }

    /// Adds a tag, refusing a duplicate key, an invalid key or value, or an eleventh tag.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        check_tag(&key, &value)?;
        if self.tags.iter().any(|t| t.key == key) {
            return Err(Error::invalid(format!("tag key {key:?} appears twice; tag keys must be unique")));
        }
        if self.tags.len() == MAX_TAGS {
            return Err(Error::invalid(format!(
                "tag {key:?} would be tag number {}; an object may carry at most {MAX_TAGS} tags",
                MAX_TAGS + 1
            )));
        }
        self.tags.push(Tag { key, value });
        Ok(())
    }

    /// The tags, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.tags.iter()
    }

    /// Value of the tag with this key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// True when there are no tags.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The tags sorted by key: two sets with the same tags compare equal this way whatever their order.
    pub fn sorted(&self) -> Vec<Tag> {
        let mut v = self.tags.clone();
        v.sort();
        v
    }

    /// The header form: `k1=v1&k2=v2`, each key and value percent-encoded per RFC 3986.
    pub fn to_header(&self) -> String {
        let mut out = String::new();
        for (i, t) in self.tags.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(&pct_encode(&t.key));
            out.push('=');
            out.push_str(&pct_encode(&t.value));
        }
        out
    }

    /// Parses the header form. A pair without `=` is a key with an empty value; `a=b=c` is refused, as OSS does.
    /// `+` decodes to a space (query-string convention, which Go's `url.QueryEscape` relies on).
    pub fn parse_header(s: &str) -> Result<Self> {
        let mut set = Self::new();
        for pair in s.split('&').filter(|p| !p.is_empty()) {
            let mut it = pair.splitn(2, '=');
            let k = it.next().unwrap_or_default();
            let v = it.next().unwrap_or_default();
            if v.contains('=') {
                return Err(Error::invalid(format!(
                    "tagging {pair:?}: a value may not contain an unencoded '='; percent-encode it as %3D"
                )));
            }
            set.insert(pct_decode_form(k)?, pct_decode_form(v)?)?;
        }
        Ok(set)
    }

    /// The `<Tagging><TagSet>...</TagSet></Tagging>` document.
    pub fn to_xml(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Tagging><TagSet>");
        for t in &self.tags {
            out.push_str("<Tag><Key>");
            out.push_str(&crate::xml::escape(&t.key));
            out.push_str("</Key><Value>");
            out.push_str(&crate::xml::escape(&t.value));
            out.push_str("</Value></Tag>");
        }
        out.push_str("</TagSet></Tagging>");
        out
    }

    /// Parses a `<Tagging>` document and validates it.
    pub fn parse_xml(body: &[u8]) -> Result<Self> {
        let doc: crate::xml::Tagging = crate::xml::from_slice(body)?;
        Self::from_pairs(doc.tag_set.tags.into_iter().map(|t| (t.key, t.value)))
    }
}

impl fmt::Display for TagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_header())
    }
}

impl<'a> IntoIterator for &'a TagSet {
    type Item = &'a Tag;
    type IntoIter = std::slice::Iter<'a, Tag>;
    fn into_iter(self) -> Self::IntoIter {
        self.tags.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> TagSet {
        TagSet::from_pairs([("k1", "v1"), ("k2", "v2"), ("k3", "v3"), ("k4+-=", "+-=._:/")]).unwrap()
    }

    #[test]
    fn seed_tag_round_trips_through_header_and_xml() {
        let set = seed();
        let header = set.to_header();
        assert_eq!(header, "k1=v1&k2=v2&k3=v3&k4%2B-%3D=%2B-%3D._%3A%2F");
        assert_eq!(TagSet::parse_header(&header).unwrap(), set);
        assert_eq!(TagSet::parse_xml(set.to_xml().as_bytes()).unwrap(), set);
    }

    #[test]
    fn oss2_urlquote_form_parses_to_the_same_tags() {
        // oss2.urlquote keeps '/' unescaped: "k4%2B-%3D=%2B-%3D._%3A/"
        let set = TagSet::parse_header("k1=v1&k2=v2&k3=v3&k4%2B-%3D=%2B-%3D._%3A/").unwrap();
        assert_eq!(set, seed());
    }

    #[test]
    fn limits_name_the_offending_tag() {
        let mut set = TagSet::new();
        for i in 0..10 {
            set.insert(format!("k{i}"), "v").unwrap();
        }
        let e = set.insert("k10", "v").unwrap_err();
        assert!(e.to_string().contains("k10") && e.to_string().contains("at most 10"), "{e}");
        let e = TagSet::from_pairs([("a", "1"), ("a", "2")]).unwrap_err();
        assert!(e.to_string().contains("\"a\" appears twice"), "{e}");
        let long = "x".repeat(129);
        assert!(TagSet::from_pairs([(long.as_str(), "v")]).unwrap_err().to_string().contains("129 characters"));
        assert!(TagSet::from_pairs([("k", "v".repeat(257))]).is_err());
        assert!(TagSet::from_pairs([("k", "v".repeat(256))]).is_ok());
        assert!(TagSet::from_pairs([("", "v")]).is_err());
        let e = TagSet::from_pairs([("bad*key", "v")]).unwrap_err();
        assert!(e.to_string().contains("'*'"), "{e}");
        assert!(TagSet::parse_header("a=b=c").is_err());
        assert_eq!(TagSet::parse_header("solo").unwrap().get("solo"), Some(""));
        assert_eq!(TagSet::parse_header("a+b=c%20d").unwrap().get("a b"), Some("c d"));
    }
}
