//! One BLAKE3 pass over a file uploaded in parts: the file's digest from its parts' digests.
//!
//! Every part is hashed once: that digest is recorded in the ledger (a resumed or retried part's bytes must hash
//! to it again) and the whole file's BLAKE3 is derived from the parts' digests, not hashed a second time.
//!
//! BLAKE3 is a tree: a part whose size is a power of two (at least one 1 KiB chunk) and whose offset is a
//! multiple of that size is a whole subtree, and its chaining value ([`blake3::hazmat`]) is its digest. The
//! file's hash is then the tree merged from those values exactly as BLAKE3 shapes it: the left subtree of `n`
//! leaves holds the largest power of two of them below `n`. Parts of other sizes (an explicit `--part-size 100KB`,
//! or a size the memory budget shrank) fall back to two passes: the part's own hash and a sequential hasher
//! (one pass when there is a single part: its hash is the file's).
//! Either way the result is `blake3::hash` of the file's bytes; the tests check that against the plain function.

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};

/// Prefix of a part digest that is a subtree chaining value (so a ledger row written by the other mode, or by
/// an older build, never matches by accident: the part is sent again).
const CV: &str = "cv:";

/// The digest of a file read part by part, in order.
#[derive(Debug)]
pub(super) enum FileDigest {
    /// Equal power-of-two parts: their chaining values, in order.
    Tree(Vec<ChainingValue>),
    /// One part: its hash is the file's.
    One(Option<blake3::Hash>),
    /// Any other parts: a sequential hasher over every byte.
    Sequential(Box<blake3::Hasher>),
}

/// True when parts of `part_size` bytes, `parts` of them, are whole BLAKE3 subtrees of a tree of two leaves or
/// more (one part is the whole file: its root hash is its own, and a single pass already).
fn tree_shape(part_size: u64, parts: u32) -> bool {
    parts >= 2 && part_size >= blake3::CHUNK_LEN as u64 && part_size.is_power_of_two()
}

impl FileDigest {
    /// For a file of `parts` parts of `part_size` bytes (the last one possibly shorter).
    pub(super) fn new(part_size: u64, parts: u32) -> FileDigest {
        if tree_shape(part_size, parts) {
            FileDigest::Tree(Vec::with_capacity(parts as usize))
        } else if parts <= 1 {
            FileDigest::One(None)
        } else {
            FileDigest::Sequential(Box::default())
        }
    }

    /// Whether part digests are chaining values (see [`part_digest`]).
    pub(super) fn is_tree(&self) -> bool {
        matches!(self, FileDigest::Tree(_))
    }

    /// Takes the next part, at `offset`, and returns its digest for the ledger.
    pub(super) fn part(&mut self, offset: u64, data: &[u8]) -> String {
        match self {
            FileDigest::Tree(cvs) => {
                let cv = subtree(offset, data);
                cvs.push(cv);
                format!("{CV}{}", hex::encode(cv))
            }
            FileDigest::One(hash) => {
                let h = blake3::hash(data);
                *hash = Some(h);
                h.to_hex().to_string()
            }
            FileDigest::Sequential(h) => {
                h.update(data);
                blake3::hash(data).to_hex().to_string()
            }
        }
    }

    /// The file's BLAKE3, once every part was taken.
    pub(super) fn finish(self) -> blake3::Hash {
        match self {
            FileDigest::Tree(cvs) => root(&cvs),
            FileDigest::One(hash) => hash.unwrap_or_else(|| blake3::hash(b"")),
            FileDigest::Sequential(h) => h.finalize(),
        }
    }
}

/// A part's digest as [`FileDigest::part`] records it, for checking bytes read again.
pub(super) fn part_digest(tree: bool, offset: u64, data: &[u8]) -> String {
    if tree {
        format!("{CV}{}", hex::encode(subtree(offset, data)))
    } else {
        blake3::hash(data).to_hex().to_string()
    }
}

fn subtree(offset: u64, data: &[u8]) -> ChainingValue {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(offset);
    h.update(data);
    h.finalize_non_root()
}

/// Leaves in the left subtree of `n >= 2` leaves: the largest power of two below `n`.
fn left_len(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn root(cvs: &[ChainingValue]) -> blake3::Hash {
    debug_assert!(cvs.len() >= 2, "a tree digest has two leaves or more");
    let (l, r) = cvs.split_at(left_len(cvs.len()));
    merge_subtrees_root(&inner(l), &inner(r), Mode::Hash)
}

fn inner(cvs: &[ChainingValue]) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let (l, r) = cvs.split_at(left_len(cvs.len()));
    merge_subtrees_non_root(&inner(l), &inner(r), Mode::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn digest_by_parts(data: &[u8], part_size: usize) -> (blake3::Hash, bool) {
        let parts = data.len().div_ceil(part_size).max(1) as u32;
        let mut d = FileDigest::new(part_size as u64, parts);
        let tree = d.is_tree();
        for (i, chunk) in data.chunks(part_size).enumerate() {
            let recorded = d.part((i * part_size) as u64, chunk);
            assert_eq!(recorded, part_digest(tree, (i * part_size) as u64, chunk));
        }
        (d.finish(), tree)
    }

    #[test]
    fn left_subtrees_hold_the_largest_power_of_two_below_n() {
        assert_eq!([2, 3, 4, 5, 8, 9, 10_000].map(left_len), [1, 2, 2, 4, 4, 8, 8192]);
    }

    #[test]
    fn tree_digests_equal_the_plain_hash() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for (len, part) in
            [(2048, 1024), (300_000, 1024), (300_000, 4096), (300_000, 65_536), (131_072, 65_536), (131_073, 65_536)]
        {
            let (got, tree) = digest_by_parts(&data[..len], part);
            assert!(tree, "{len} in parts of {part} is a tree");
            assert_eq!(got, blake3::hash(&data[..len]), "{len} bytes in parts of {part}");
        }
    }

    #[test]
    fn other_part_sizes_fall_back_to_a_sequential_hash() {
        let data = vec![9u8; 250_000];
        for part in [100_000, 1000, 250_000, 300_000] {
            let (got, tree) = digest_by_parts(&data, part);
            assert!(!tree, "{part}");
            assert_eq!(got, blake3::hash(&data));
        }
    }

    #[test]
    fn the_two_modes_never_take_each_others_digests() {
        let data = vec![1u8; 4096];
        assert_ne!(part_digest(true, 0, &data), part_digest(false, 0, &data));
        assert_ne!(
            part_digest(true, 0, &data),
            part_digest(true, 4096, &data),
            "a chaining value depends on the offset"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_length_and_power_of_two_part_size_gives_the_plain_hash(len in 1usize..200_000, shift in 10u32..16, seed: u8) {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let (got, _) = digest_by_parts(&data, 1 << shift);
            prop_assert_eq!(got, blake3::hash(&data));
        }
    }
}
