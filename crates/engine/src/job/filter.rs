//! Which entries of a directory or a prefix a job takes: include and exclude glob patterns.

use crate::error::{Error, ErrorKind, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Include and exclude patterns over the entries of a [`DirRequest`](super::DirRequest) or a
/// [`PrefixCopyRequest`](super::PrefixCopyRequest). An entry that is not taken is never found: it is not
/// counted in the job's progress, gets no ledger row and is not transferred.
///
/// # Semantics
/// - A pattern is matched against the entry's path **relative to the source directory or prefix**, with `/`
///   separators: the file `<dir>/photos/2024/a.jpg` is `photos/2024/a.jpg`; the object `src/photos/a.jpg` of
///   the source prefix `src/` is `photos/a.jpg`.
/// - A pattern **without `/`** matches the last component (the base name) at any depth: `*.jpg` takes
///   `a.jpg` and `photos/2024/a.jpg`.
/// - A pattern **with `/`** matches the whole relative path, from its start: `photos/*.jpg` takes
///   `photos/a.jpg` but neither `photos/2024/a.jpg` nor `x/photos/a.jpg`. A leading `/` is allowed and means
///   the same (`/photos/*.jpg`).
/// - `*` matches any run of characters and `?` any one character, neither crossing a `/`; `**` as a whole
///   component crosses `/`: `photos/**` is everything under `photos/`, `**/cache/**` everything under any
///   directory named `cache`, `a/**/b.txt` takes `a/b.txt` and `a/x/y/b.txt`. Also `[abc]`, `[!a-z]` and
///   `{jpg,png}`; `\` escapes the next character. Matching is case-sensitive.
/// - An entry is **taken** when it matches no exclude pattern and, if there are include patterns, at least one
///   of them. Excludes win over includes.
///
/// Patterns match entries (files, objects), never directories as such: to leave out a directory, exclude
/// what is under it (`**/node_modules/**`), not its name.
///
/// [`KeyFilter::default()`] has no pattern and takes everything.
///
/// ```
/// use transfer_engine::job::KeyFilter;
/// let f = KeyFilter::new(&["*.jpg", "docs/**"], &["**/tmp/**", "*.tmp.jpg"])?;
/// assert!(f.matches("a.jpg") && f.matches("photos/2024/b.jpg") && f.matches("docs/x/readme.md"));
/// assert!(!f.matches("notes.txt"), "no include matches");
/// assert!(!f.matches("photos/tmp/c.jpg") && !f.matches("d.tmp.jpg"), "excluded");
/// assert!(KeyFilter::default().matches("anything/at/all"));
/// # Ok::<(), transfer_engine::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    include: Patterns,
    exclude: Patterns,
}

/// One side of a filter: base-name patterns and whole-path patterns.
#[derive(Debug, Clone, Default)]
struct Patterns {
    given: Vec<String>,
    base: GlobSet,
    path: GlobSet,
}

impl Patterns {
    fn build(patterns: &[impl AsRef<str>], side: &str) -> Result<Patterns> {
        let (mut base, mut path) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let mut given = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref();
            let bad = |why: &str| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{side} pattern {p:?} is not a valid glob: {why}. Patterns use * and ? (not crossing /), ** \
                         (any depth), [abc], {{a,b}}; write [[] or \\[ for a literal [ (and likewise for the other \
                         special characters)"
                    ),
                )
            };
            if p.is_empty() || p == "/" {
                return Err(bad("it is empty"));
            }
            let anchored = p.strip_prefix('/').unwrap_or(p);
            let glob = GlobBuilder::new(anchored)
                .literal_separator(true)
                .backslash_escape(true)
                .empty_alternates(true)
                .build()
                .map_err(|e| bad(&e.kind().to_string()))?;
            if p.contains('/') {
                path.add(glob);
            } else {
                base.add(glob);
            }
            given.push(p.to_owned());
        }
        let build =
            |b: GlobSetBuilder| b.build().map_err(|e| Error::invalid(format!("{side} patterns {given:?}: {e}")));
        Ok(Patterns { base: build(base)?, path: build(path)?, given })
    }

    fn is_empty(&self) -> bool {
        self.given.is_empty()
    }

    fn matches(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        (!self.base.is_empty() && self.base.is_match(name)) || (!self.path.is_empty() && self.path.is_match(rel))
    }
}

impl KeyFilter {
    /// A filter taking what matches one of `include` (or everything when `include` is empty) and none of
    /// `exclude`. See the [type docs](KeyFilter) for the pattern language. An invalid pattern is refused with
    /// [`ErrorKind::InvalidInput`], naming the pattern and how to write it.
    pub fn new(include: &[impl AsRef<str>], exclude: &[impl AsRef<str>]) -> Result<KeyFilter> {
        Ok(KeyFilter { include: Patterns::build(include, "include")?, exclude: Patterns::build(exclude, "exclude")? })
    }

    /// True when `rel` (a path relative to the source directory or prefix, `/`-separated) is taken.
    pub fn matches(&self, rel: &str) -> bool {
        let rel = rel.strip_prefix('/').unwrap_or(rel);
        !self.exclude.matches(rel) && (self.include.is_empty() || self.include.matches(rel))
    }

    /// True when the filter has no pattern at all (it takes everything).
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// The include patterns, as given.
    pub fn includes(&self) -> &[String] {
        &self.include.given
    }

    /// The exclude patterns, as given.
    pub fn excludes(&self) -> &[String] {
        &self.exclude.given
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &[&str] = &[];

    fn f(include: &[&str], exclude: &[&str]) -> KeyFilter {
        KeyFilter::new(include, exclude).unwrap()
    }

    #[test]
    fn the_default_and_empty_lists_take_everything() {
        for filter in [KeyFilter::default(), f(NONE, NONE)] {
            assert!(filter.is_empty());
            for rel in ["a", "a/b/c.txt", ".hidden", "dir/"] {
                assert!(filter.matches(rel), "{rel}");
            }
        }
    }

    #[test]
    fn a_pattern_without_a_slash_matches_the_base_name_at_any_depth() {
        let filter = f(&["*.txt"], NONE);
        assert!(filter.matches("a.txt"));
        assert!(filter.matches("x/y/z/a.txt"));
        assert!(!filter.matches("a.txt/b.bin"), "only the last component counts");
        assert!(!filter.matches("a.txt.bak"));
        let exact = f(NONE, &["Thumbs.db"]);
        assert!(!exact.matches("Thumbs.db") && !exact.matches("p/q/Thumbs.db"));
        assert!(exact.matches("p/Thumbs.db.txt") && exact.matches("Thumbs.db/inner"));
    }

    #[test]
    fn a_pattern_with_a_slash_matches_the_whole_relative_path() {
        let filter = f(&["photos/*.jpg"], NONE);
        assert!(filter.matches("photos/a.jpg"));
        assert!(!filter.matches("photos/2024/a.jpg"), "* does not cross /");
        assert!(!filter.matches("x/photos/a.jpg"), "anchored at the start");
        assert!(!filter.matches("a.jpg"));
        let leading = f(&["/photos/*.jpg"], NONE);
        assert!(leading.matches("photos/a.jpg") && !leading.matches("x/photos/a.jpg"));
    }

    #[test]
    fn single_stars_and_question_marks_stay_within_a_component_and_double_stars_cross() {
        let q = f(&["d?/f?.bin"], NONE);
        assert!(q.matches("d1/f2.bin"));
        assert!(!q.matches("d/f2.bin") && !q.matches("d1/f22.bin") && !q.matches("d1/x/f2.bin"));
        let star = f(&["*/*.bin"], NONE);
        assert!(star.matches("a/b.bin") && !star.matches("a/b/c.bin") && !star.matches("b.bin"));
        let under = f(&["photos/**"], NONE);
        assert!(
            under.matches("photos/a.jpg") && under.matches("photos/2024/01/a.jpg") && !under.matches("photo/a.jpg")
        );
        let anywhere = f(NONE, &["**/cache/**"]);
        assert!(!anywhere.matches("cache/a") && !anywhere.matches("x/y/cache/z/a"));
        assert!(anywhere.matches("x/cached/a") && anywhere.matches("cache"));
        let middle = f(&["a/**/b.txt"], NONE);
        assert!(middle.matches("a/b.txt") && middle.matches("a/x/y/b.txt") && !middle.matches("a/x/c.txt"));
        let any_depth = f(&["**/*.rs"], NONE);
        assert!(any_depth.matches("main.rs") && any_depth.matches("src/job/filter.rs"));
    }

    #[test]
    fn excludes_win_and_any_include_suffices() {
        let filter = f(&["*.jpg", "docs/**"], &["**/tmp/**", "secret*"]);
        assert!(filter.matches("a.jpg") && filter.matches("docs/readme.md") && filter.matches("x/y/b.jpg"));
        assert!(!filter.matches("a.png"), "matches no include");
        assert!(!filter.matches("photos/tmp/a.jpg") && !filter.matches("docs/tmp/x.md"), "excluded by path");
        assert!(!filter.matches("secret.jpg") && !filter.matches("docs/secret-plan.md"), "excluded by base name");
        let only_exclude = f(NONE, &["*.log"]);
        assert!(only_exclude.matches("a.txt") && !only_exclude.matches("logs/a.log"));
    }

    #[test]
    fn classes_alternates_and_escapes() {
        let filter = f(&["*.{jpg,png}", "[ab]?.txt", "lit\\*.md"], NONE);
        assert!(filter.matches("x.jpg") && filter.matches("d/x.png") && !filter.matches("x.gif"));
        assert!(filter.matches("a1.txt") && filter.matches("b2.txt") && !filter.matches("c1.txt"));
        assert!(filter.matches("lit*.md") && !filter.matches("little.md"));
        let literal_bracket = f(&["a[[]1].txt"], NONE);
        assert!(literal_bracket.matches("a[1].txt") && !literal_bracket.matches("a1.txt"));
    }

    #[test]
    fn a_bad_pattern_is_refused_naming_it_and_the_fix() {
        let e = KeyFilter::new(&["ok/*.txt", "a["], NONE).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let msg = e.to_string();
        assert!(msg.contains("include pattern \"a[\"") && msg.contains("[[]"), "{msg}");
        let e = KeyFilter::new(NONE, &["{a,b"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("exclude pattern \"{a,b\""), "{e}");
        let e = KeyFilter::new(&[""], NONE).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn the_given_patterns_are_kept() {
        let filter = f(&["*.jpg"], &["tmp/**"]);
        assert_eq!((filter.includes(), filter.excludes()), (&["*.jpg".to_owned()][..], &["tmp/**".to_owned()][..]));
        assert!(!filter.is_empty());
    }
}
