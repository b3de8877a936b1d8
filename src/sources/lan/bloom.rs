//! The refs bloom filter carried in the `rb` TXT record of an `_ostree_repo._tcp`
//! advertisement, bit for bit as libostree (`ostree-bloom.c`) builds and reads it.
//!
//! A filter of `n` bytes has `m = 8 n` bits. An element is added by setting bit
//! `h_i mod m` for each `i` in `0..k`; bit `b` lives in `bytes[b / 8]` under mask
//! `1 << (b % 8)`. For a collection-ref, `h_i = H(collection id, i) XOR H(ref, i)`
//! where `H(s, i)` is SipHash-2-4 over the UTF-8 bytes of `s` with a 16-byte key of
//! bytes all equal to `i`, read as a little-endian `u64`.

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

/// The only hash function id libostree defines: SipHash-2-4 over collection-refs.
pub const HASH_ID_COLLECTION_REF_SIPHASH: u8 = 1;

/// What eos-updater publishes: one hash function…
pub const EOS_UPDATER_K: u8 = 1;
/// …and a 250-byte filter (the most that fits in one DNS TXT string as `rb=`).
pub const EOS_UPDATER_BYTES: usize = 250;

/// Why a filter cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BloomError {
    #[error("bloom filter has no bytes")]
    Empty,
    #[error("bloom filter has k = 0 hash functions")]
    ZeroK,
    #[error("unknown bloom filter hash function id {0}")]
    UnknownHash(u8),
}

/// `H(s, k)`: SipHash-2-4 of `s` (no NUL) keyed with 16 bytes all equal to `k`.
pub fn str_hash(s: &str, k: u8) -> u64 {
    let key = u64::from_le_bytes([k; 8]);
    let mut hasher = SipHasher24::new_with_keys(key, key);
    hasher.write(s.as_bytes());
    hasher.finish()
}

/// `h_k(collection id, ref)`, the hash libostree uses for collection-refs.
pub fn collection_ref_hash(collection_id: &str, ref_name: &str, k: u8) -> u64 {
    str_hash(collection_id, k) ^ str_hash(ref_name, k)
}

/// A bloom filter over collection-refs (hash id 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    bytes: Vec<u8>,
    k: u8,
}

impl Bloom {
    /// An empty filter of `n_bytes` bytes using `k` hash functions.
    pub fn new(n_bytes: usize, k: u8) -> Result<Self, BloomError> {
        Self::from_bytes(vec![0; n_bytes], k)
    }

    /// A filter from its serialized bytes, as found in an `rb` record.
    pub fn from_bytes(bytes: Vec<u8>, k: u8) -> Result<Self, BloomError> {
        if bytes.is_empty() {
            return Err(BloomError::Empty);
        }
        if k == 0 {
            return Err(BloomError::ZeroK);
        }
        Ok(Self { bytes, k })
    }

    pub fn k(&self) -> u8 {
        self.k
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn n_bits(&self) -> u64 {
        self.bytes.len() as u64 * 8
    }

    fn bit_indices(&self, collection_id: &str, ref_name: &str) -> Vec<usize> {
        let m = self.n_bits();
        // `bit < m = 8 * bytes.len()`, which is a usize, so the cast cannot truncate.
        (0..self.k)
            .map(|i| (collection_ref_hash(collection_id, ref_name, i) % m) as usize)
            .collect()
    }

    /// Adds a collection-ref.
    pub fn add(&mut self, collection_id: &str, ref_name: &str) {
        for bit in self.bit_indices(collection_id, ref_name) {
            self.bytes[bit / 8] |= 1 << (bit % 8);
        }
    }

    /// Whether the filter may contain the collection-ref (false: it certainly does not).
    pub fn may_contain(&self, collection_id: &str, ref_name: &str) -> bool {
        self.bit_indices(collection_id, ref_name)
            .into_iter()
            .all(|bit| self.bytes[bit / 8] & (1 << (bit % 8)) != 0)
    }

    /// Indices of the bits that are set, lowest first (for tests and diagnostics).
    pub fn set_bits(&self) -> Vec<u64> {
        (0..self.n_bits())
            .filter(|&bit| {
                let bit = bit as usize;
                self.bytes[bit / 8] & (1 << (bit % 8)) != 0
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_reference_vector() {
        // SipHash-2-4, key bytes 0..15, empty message (the SipHash paper's vector).
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let mut hasher = SipHasher24::new_with_keys(k0, k1);
        hasher.write(b"");
        assert_eq!(hasher.finish(), 0x726fdb47dd0e0e31);
    }

    #[test]
    fn com_example_ref_in_12_bytes_sets_bit_6() {
        let mut bloom = Bloom::new(12, 1).unwrap();
        bloom.add("com.example", "ref");
        assert_eq!(bloom.set_bits(), vec![6]);
        assert!(bloom.may_contain("com.example", "ref"));
        let mut encoded = vec![1u8, 1];
        encoded.extend_from_slice(bloom.as_bytes());
        use base64::Engine;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&encoded),
            "AQFAAAAAAAAAAAAAAAA="
        );
    }

    #[test]
    fn com_example_ref_in_250_bytes_sets_bit_678() {
        let mut bloom = Bloom::new(EOS_UPDATER_BYTES, EOS_UPDATER_K).unwrap();
        bloom.add("com.example", "ref");
        assert_eq!(bloom.set_bits(), vec![678]);
    }

    #[test]
    fn absent_ref_is_excluded() {
        let mut bloom = Bloom::new(12, 1).unwrap();
        bloom.add("com.example", "ref");
        // With a single bit set, anything hashing elsewhere is certainly absent.
        let absent = (0..100)
            .map(|i| format!("other/{i}"))
            .filter(|r| !bloom.may_contain("com.example", r))
            .count();
        assert!(absent > 90, "{absent}");
    }

    #[test]
    fn several_hash_functions() {
        let mut bloom = Bloom::new(64, 3).unwrap();
        bloom.add("org.example.Os", "os/stable");
        assert!(bloom.may_contain("org.example.Os", "os/stable"));
        assert!(!bloom.set_bits().is_empty() && bloom.set_bits().len() <= 3);
    }

    #[test]
    fn invalid_parameters() {
        assert_eq!(Bloom::new(0, 1), Err(BloomError::Empty));
        assert_eq!(Bloom::new(4, 0), Err(BloomError::ZeroK));
    }
}
