//! CRC-64/XZ, the checksum OSS returns in `x-oss-hash-crc64ecma`, and the combine that joins part CRCs.
//!
//! [`Crc64`] wraps `crc64fast` (SIMD). [`combine`] is zlib's `crc32_combine` (multiplication by `x^(8n) mod P`)
//! widened to 64 bits: `combine(crc(a), crc(b), len(b)) == crc(a ‖ b)`. It lets the engine check a whole multipart object
//! against the server's value from the parts' CRCs alone, including parts uploaded by an earlier process.

/// The reflected ECMA-182 polynomial.
const POLY: u64 = 0xC96C_5795_D787_0F42;

/// A running CRC-64/XZ.
#[derive(Clone)]
pub struct Crc64 {
    digest: crc64fast::Digest,
    len: u64,
}

impl std::fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crc64").field("value", &self.value()).field("len", &self.len).finish()
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64 {
    /// A CRC over zero bytes (value 0).
    pub fn new() -> Self {
        Self { digest: crc64fast::Digest::new(), len: 0 }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.digest.write(data);
        self.len += data.len() as u64;
    }

    /// The CRC of everything fed so far.
    pub fn value(&self) -> u64 {
        self.digest.sum64()
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// CRC-64/XZ of `data` in one call.
pub fn checksum(data: &[u8]) -> u64 {
    let mut c = Crc64::new();
    c.update(data);
    c.value()
}

/// `a * b mod P` in GF(2)[x], both in the reflected representation (x^0 is the top bit).
fn mult_mod_p(a: u64, mut b: u64) -> u64 {
    let mut m = 1u64 << 63;
    let mut p = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
}

/// `x^(2^k) mod P` for k in 0..64, computed once.
fn x2n_table() -> &'static [u64; 64] {
    static TABLE: std::sync::OnceLock<[u64; 64]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u64; 64];
        let mut p = 1u64 << 62; // x^1
        for slot in &mut t {
            *slot = p;
            p = mult_mod_p(p, p);
        }
        t
    })
}

/// `x^(n * 2^k) mod P`.
fn x2n_mod_p(mut n: u64, mut k: usize) -> u64 {
    let table = x2n_table();
    let mut p = 1u64 << 63; // x^0
    while n != 0 {
        if n & 1 != 0 {
            p = mult_mod_p(table[k & 63], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// The CRC of `a ‖ b` from `crc(a)`, `crc(b)` and `len(b)`. `combine(0, c, n) == c`, so folding part CRCs from 0
/// in part-number order yields the whole object's CRC. Shifting `crc(a)` past `len(b)` zero bytes is one
/// multiplication by `x^(8 len(b)) mod P` (zlib's current `crc32_combine`, widened to 64 bits): a few thousand
/// instructions whatever the length, so folding 10,000 part CRCs costs nothing next to the upload.
pub fn combine(crc1: u64, crc2: u64, len2: u64) -> u64 {
    if len2 == 0 {
        return crc1;
    }
    mult_mod_p(x2n_mod_p(len2, 3), crc1) ^ crc2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reference_values() {
        assert_eq!(checksum(b"123456789"), 11051210869376104954);
        assert_eq!(checksum(b""), 0);
        assert_eq!(checksum(b"hello world"), 5981764153023615706);
        assert_eq!(checksum(&vec![b'a'; 1 << 20]), 6701094182323390671);
        assert_eq!(combine(checksum(b"12345"), checksum(b"6789"), 4), 11051210869376104954);
        assert_eq!(combine(0, 42, 7), 42);
        // A length whose bits reach past the first powers of the table.
        let (a, zeros) = (b"head".as_slice(), vec![0u8; (1 << 20) + 3]);
        let whole: Vec<u8> = a.iter().chain(&zeros).copied().collect();
        assert_eq!(combine(checksum(a), checksum(&zeros), zeros.len() as u64), checksum(&whole));
    }

    proptest! {
        #[test]
        fn combine_is_associative_at_any_length(c1: u64, c2: u64, c3: u64, l2 in 0u64..1 << 44, l3 in 0u64..1 << 44) {
            prop_assert_eq!(combine(combine(c1, c2, l2), c3, l3), combine(c1, combine(c2, c3, l3), l2 + l3));
        }
    }

    proptest! {
        #[test]
        fn combine_equals_concatenation(data in proptest::collection::vec(any::<u8>(), 0..4096), cuts in proptest::collection::vec(any::<usize>(), 0..5)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| if data.is_empty() { 0 } else { c % (data.len() + 1) }).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let mut acc = 0u64;
            for w in cuts.windows(2) {
                let part = &data[w[0]..w[1]];
                acc = combine(acc, checksum(part), part.len() as u64);
            }
            prop_assert_eq!(acc, checksum(&data));
        }
    }
}
