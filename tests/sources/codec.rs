//! The DNS-SD TXT record and bloom filter codec against the reference vectors
//! (docs: shared/reference/ostree-formats.md, from libostree and eos-updater), and
//! malformed advertisements rejected without panicking.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ferry::sources::lan::bloom::{self, Bloom, BloomError};
use ferry::sources::lan::txt::{
    parse_txt_string, RepoAdvert, TxtAttributes, TxtError, MAX_TXT_STRING_LEN,
};

fn b64(s: &str) -> Vec<u8> {
    STANDARD.decode(s).expect("base64")
}

fn txt(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = key.as_bytes().to_vec();
    out.push(b'=');
    out.extend_from_slice(value);
    out
}

/// The reference advertisement: v=1, the 12-byte filter of ("com.example", "ref"),
/// st=1483228800, ri=0.
fn reference() -> Vec<Vec<u8>> {
    vec![
        txt("v", &b64("AQ==")),
        txt("rb", &b64("AQFAAAAAAAAAAAAAAAA=")),
        txt("st", &b64("AAAAAFhoRoA=")),
        txt("ri", &[0, 0]),
    ]
}

fn decode(strings: Vec<Vec<u8>>) -> Result<RepoAdvert, TxtError> {
    RepoAdvert::decode(&TxtAttributes::parse(strings))
}

fn replaced(index: usize, value: Vec<u8>) -> Vec<Vec<u8>> {
    let mut strings = reference();
    strings[index] = value;
    strings
}

#[test]
fn sources_codec_siphash_vector() {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher24::new_with_keys(
        u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]),
        u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]),
    );
    h.write(b"");
    assert_eq!(h.finish(), 0x726fdb47dd0e0e31);
    // H(s, i): the key is 16 bytes all equal to i.
    let mut h = siphasher::sip::SipHasher24::new_with_keys(
        u64::from_le_bytes([3; 8]),
        u64::from_le_bytes([3; 8]),
    );
    h.write(b"com.example");
    assert_eq!(bloom::str_hash("com.example", 3), h.finish());
}

#[test]
fn sources_codec_reference_bloom_vectors() {
    let mut small = Bloom::new(12, 1).unwrap();
    small.add("com.example", "ref");
    assert_eq!(small.set_bits(), vec![6]);
    let mut rb = vec![1, 1];
    rb.extend_from_slice(small.as_bytes());
    assert_eq!(STANDARD.encode(&rb), "AQFAAAAAAAAAAAAAAAA=");

    let mut eos = Bloom::new(bloom::EOS_UPDATER_BYTES, bloom::EOS_UPDATER_K).unwrap();
    eos.add("com.example", "ref");
    assert_eq!(eos.set_bits(), vec![678]);
    assert_eq!(eos.as_bytes()[678 / 8], 1 << (678 % 8));
    assert!(eos.may_contain("com.example", "ref"));
}

#[test]
fn sources_codec_reference_txt_vectors() {
    let advert = decode(reference()).expect("reference decodes");
    assert_eq!(advert.summary_timestamp, 1483228800);
    assert_eq!(advert.repo_index, 0);
    assert_eq!(advert.bloom.k(), 1);
    assert_eq!(advert.bloom.set_bits(), vec![6]);
    assert!(advert.bloom.may_contain("com.example", "ref"));

    // Encoding gives back the reference bytes.
    let encoded = advert.encode();
    assert_eq!(encoded[0], ("v".to_owned(), b64("AQ==")));
    assert_eq!(encoded[1], ("rb".to_owned(), b64("AQFAAAAAAAAAAAAAAAA=")));
    assert_eq!(encoded[2], ("st".to_owned(), b64("AAAAAFhoRoA=")));
    assert_eq!(encoded[3], ("ri".to_owned(), vec![0, 0]));
    // `ri` is big-endian.
    assert_eq!(
        decode(replaced(3, txt("ri", &[1, 2]))).unwrap().repo_index,
        258
    );
}

#[test]
fn sources_codec_keys_are_case_insensitive_and_first_wins() {
    let mut strings = vec![txt("RB", &b64("AQFAAAAAAAAAAAAAAAA="))];
    strings.extend(reference());
    strings.push(txt("St", &[0xff; 8]));
    let advert = decode(strings).unwrap();
    assert_eq!(advert.summary_timestamp, 1483228800);
}

#[test]
fn sources_codec_wrong_version_is_rejected() {
    for v in [0u8, 2, 0xff] {
        assert_eq!(
            decode(replaced(0, txt("v", &[v]))),
            Err(TxtError::UnsupportedVersion(v))
        );
    }
    assert_eq!(
        decode(replaced(0, b"v".to_vec())),
        Err(TxtError::Missing("v"))
    );
    assert_eq!(
        decode(reference()[1..].to_vec()),
        Err(TxtError::Missing("v"))
    );
}

#[test]
fn sources_codec_truncated_rb_is_rejected() {
    for value in [vec![], vec![1]] {
        assert!(
            matches!(
                decode(replaced(1, txt("rb", &value))),
                Err(TxtError::NotNormalForm { key: "rb", .. })
            ),
            "{value:?}"
        );
    }
    assert_eq!(
        decode(replaced(1, txt("rb", &[1, 1]))),
        Err(TxtError::Bloom(BloomError::Empty))
    );
    assert_eq!(
        decode(replaced(1, txt("rb", &[0, 1, 0]))),
        Err(TxtError::Bloom(BloomError::ZeroK))
    );
    assert_eq!(
        decode(replaced(1, txt("rb", &[1, 7, 0]))),
        Err(TxtError::Bloom(BloomError::UnknownHash(7)))
    );
}

#[test]
fn sources_codec_oversize_record_is_rejected() {
    let mut rb = vec![1, 1];
    rb.resize(MAX_TXT_STRING_LEN, 0xff);
    let string = txt("rb", &rb);
    assert!(string.len() > MAX_TXT_STRING_LEN);
    assert_eq!(
        parse_txt_string(&string),
        Err(TxtError::TooLong(string.len()))
    );
    assert_eq!(decode(replaced(1, string)), Err(TxtError::Missing("rb")));
}

#[test]
fn sources_codec_non_normal_gvariants_are_rejected() {
    for (index, string, key) in [
        (0, txt("v", &[1, 1]), "v"),
        (0, txt("v", &[]), "v"),
        (2, txt("st", &[0; 4]), "st"),
        (2, txt("st", &[0; 9]), "st"),
        (3, txt("ri", &[0]), "ri"),
    ] {
        match decode(replaced(index, string)) {
            Err(TxtError::NotNormalForm { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{key}: {other:?}"),
        }
    }
}

#[test]
fn sources_codec_random_garbage_never_panics() {
    for seed in 0u64..3000 {
        // A small deterministic generator: no need for a seeded RNG crate.
        let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let which = (next() % 4) as usize;
        let len = (next() % 40) as usize;
        let value: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let key = ["v", "rb", "st", "ri"][which];
        let _ = decode(replaced(which, txt(key, &value)));
        // Raw strings, keys included.
        let raw: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = parse_txt_string(&raw);
        let _ = decode(vec![raw]);
    }
}
