//! CRC-64/XZ, the checksum OSS returns in `x-oss-hash-crc64ecma`, and the combine that joins part CRCs.
//!
//! [`Crc64`] wraps `crc64fast` (SIMD). [`combine`] is zlib's `crc32_combine` GF(2) matrix method widened to 64
//! bits: `combine(crc(a), crc(b), len(b)) == crc(a ‖ b)`. It lets the engine check a whole multipart object
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

fn gf2_times(mat: &[u64; 64], mut vec: u64) -> u64 {
    let mut sum = 0;
    let mut i = 0;
    while vec != 0 {
        if vec & 1 != 0 {
            sum ^= mat[i];
        }
        vec >>= 1;
        i += 1;
    }
    sum
}

fn gf2_square(square: &mut [u64; 64], mat: &[u64; 64]) {
    for n in 0..64 {
        square[n] = gf2_times(mat, mat[n]);
    }
}

/// The CRC of `a ‖ b` from `crc(a)`, `crc(b)` and `len(b)`. `combine(0, c, n) == c`, so folding part CRCs from 0
/// in part-number order yields the whole object's CRC.
pub fn combine(crc1: u64, crc2: u64, len2: u64) -> u64 {
    if len2 == 0 {
        return crc1;
    }
    let mut even = [0u64; 64];
    let mut odd = [0u64; 64];
    // The operator for one zero bit.
    odd[0] = POLY;
    let mut row = 1u64;
    for slot in odd.iter_mut().skip(1) {
        *slot = row;
        row <<= 1;
    }
    gf2_square(&mut even, &odd); // two zero bits
    gf2_square(&mut odd, &even); // four zero bits
    let mut crc1 = crc1;
    let mut len2 = len2;
    // Apply len2 zero bytes to crc1: the first square gives one zero byte.
    loop {
        gf2_square(&mut even, &odd);
        if len2 & 1 != 0 {
            crc1 = gf2_times(&even, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
        gf2_square(&mut odd, &even);
        if len2 & 1 != 0 {
            crc1 = gf2_times(&odd, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
    }
    crc1 ^ crc2
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
