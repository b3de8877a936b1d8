//! DNS-SD TXT records of an `_ostree_repo._tcp` advertisement, read exactly as
//! libostree's LAN finder reads them (`ostree-repo-finder-avahi{,-parser}.c`).
//!
//! Each TXT string is `key=value` (RFC 6763 §6). A string over 8900 bytes, or one
//! whose key is empty or holds a byte outside `0x20..=0x7e`, is ignored. Keys are
//! lower-cased and the first of several strings with the same key wins. Values are
//! raw GVariant bytes in normal form, no framing:
//!
//! | key  | type     | meaning                                                  |
//! |------|----------|----------------------------------------------------------|
//! | `v`  | `y`      | format version, must be 1                                |
//! | `rb` | `(yyay)` | refs bloom filter: k, hash id (1), filter bytes          |
//! | `st` | `t`      | summary last-modified, Unix seconds, big-endian          |
//! | `ri` | `q`      | repository index, big-endian; the repo is served at `/RI/` |

use std::collections::HashMap;

use glib::{Variant, VariantTy};

use super::bloom::{Bloom, BloomError, HASH_ID_COLLECTION_REF_SIPHASH};

/// Longest TXT string libostree accepts (RFC 6763 §6.1).
pub const MAX_TXT_STRING_LEN: usize = 8900;

/// The only advertisement format version.
pub const TXT_VERSION: u8 = 1;

/// Why a TXT string or a whole advertisement was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxtError {
    #[error("TXT string of {0} bytes is longer than {MAX_TXT_STRING_LEN} bytes")]
    TooLong(usize),
    #[error("TXT string has an empty or invalid key")]
    InvalidKey,
    #[error("TXT attribute “{0}” is missing")]
    Missing(&'static str),
    #[error("TXT attribute “{key}” is not a GVariant of type “{type_string}” in normal form")]
    NotNormalForm {
        key: &'static str,
        type_string: &'static str,
    },
    #[error("unsupported advertisement version {0} (only 1 is known)")]
    UnsupportedVersion(u8),
    #[error("refs bloom filter: {0}")]
    Bloom(#[from] BloomError),
}

/// Splits one TXT string into its lower-cased key and its value. `None` as the value
/// means the string was a bare key with no `=`; `Some(&[])` means `key=`.
pub fn parse_txt_string(txt: &[u8]) -> Result<(String, Option<&[u8]>), TxtError> {
    if txt.len() > MAX_TXT_STRING_LEN {
        return Err(TxtError::TooLong(txt.len()));
    }
    let key_len = txt
        .iter()
        .position(|&b| !(0x20..=0x7e).contains(&b) || b == b'=')
        .unwrap_or(txt.len());
    if key_len == 0 {
        return Err(TxtError::InvalidKey);
    }
    let key = String::from_utf8_lossy(&txt[..key_len]).to_ascii_lowercase();
    match txt.get(key_len) {
        None => Ok((key, None)),
        Some(b'=') => Ok((key, Some(&txt[key_len + 1..]))),
        Some(_) => Err(TxtError::InvalidKey),
    }
}

/// The attributes of one advertisement: lower-cased key → value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxtAttributes {
    map: HashMap<String, Option<Vec<u8>>>,
}

impl TxtAttributes {
    /// Parses TXT strings in order; invalid ones are skipped (as libostree does),
    /// and of several with the same key the first wins.
    pub fn parse<I, S>(strings: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut map = HashMap::new();
        for txt in strings {
            match parse_txt_string(txt.as_ref()) {
                Ok((key, value)) => {
                    map.entry(key).or_insert_with(|| value.map(<[u8]>::to_vec));
                }
                Err(e) => glib::g_debug!("ferry", "ignoring TXT string: {e}"),
            }
        }
        Self { map }
    }

    /// The attributes of a service resolved by `mdns-sd`, whose TXT values are raw bytes.
    pub fn from_mdns(properties: &mdns_sd::TxtProperties) -> Self {
        Self::parse(properties.iter().map(|p| {
            let mut txt = p.key().as_bytes().to_vec();
            if let Some(value) = p.val() {
                txt.push(b'=');
                txt.extend_from_slice(value);
            }
            txt
        }))
    }

    /// The value of `key` (lower case), if present with a value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key)?.as_deref()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value of `key` as a GVariant of `type_string`, which must be in normal form.
    fn variant(&self, key: &'static str, type_string: &'static str) -> Result<Variant, TxtError> {
        let value = self.get(key).ok_or(TxtError::Missing(key))?;
        let not_normal = TxtError::NotNormalForm { key, type_string };
        let ty = VariantTy::new(type_string).map_err(|_| not_normal.clone())?;
        let variant = Variant::from_bytes_with_type(&glib::Bytes::from(value), ty);
        if !variant.is_normal_form() {
            return Err(not_normal);
        }
        Ok(variant)
    }
}

/// A decoded `_ostree_repo._tcp` advertisement (format version 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoAdvert {
    /// The refs bloom filter (hash id 1).
    pub bloom: Bloom,
    /// `st`: when the summary was last modified, Unix seconds.
    pub summary_timestamp: u64,
    /// `ri`: which repository on the host; it is served at `/RI/`.
    pub repo_index: u16,
}

impl RepoAdvert {
    /// Decodes and validates `v`, `rb`, `st` and `ri`.
    pub fn decode(attrs: &TxtAttributes) -> Result<Self, TxtError> {
        let version = attrs.variant("v", "y")?;
        let version = version
            .data()
            .first()
            .copied()
            .ok_or(TxtError::Missing("v"))?;
        if version != TXT_VERSION {
            return Err(TxtError::UnsupportedVersion(version));
        }

        let rb = attrs.variant("rb", "(yyay)")?;
        let k = rb.try_child_value(0).and_then(|v| v.get::<u8>());
        let hash_id = rb.try_child_value(1).and_then(|v| v.get::<u8>());
        let bytes = rb
            .try_child_value(2)
            .and_then(|v| v.fixed_array::<u8>().ok().map(<[u8]>::to_vec));
        let (Some(k), Some(hash_id), Some(bytes)) = (k, hash_id, bytes) else {
            return Err(TxtError::NotNormalForm {
                key: "rb",
                type_string: "(yyay)",
            });
        };
        if k == 0 {
            return Err(BloomError::ZeroK.into());
        }
        if hash_id != HASH_ID_COLLECTION_REF_SIPHASH {
            return Err(BloomError::UnknownHash(hash_id).into());
        }
        let bloom = Bloom::from_bytes(bytes, k)?;

        let st = attrs.variant("st", "t")?;
        let st: [u8; 8] = st.data().try_into().map_err(|_| TxtError::NotNormalForm {
            key: "st",
            type_string: "t",
        })?;
        let ri = attrs.variant("ri", "q")?;
        let ri: [u8; 2] = ri.data().try_into().map_err(|_| TxtError::NotNormalForm {
            key: "ri",
            type_string: "q",
        })?;

        Ok(Self {
            bloom,
            summary_timestamp: u64::from_be_bytes(st),
            repo_index: u16::from_be_bytes(ri),
        })
    }

    /// The four TXT attributes, in the byte format above (for advertising).
    pub fn encode(&self) -> Vec<(String, Vec<u8>)> {
        let mut rb = vec![self.bloom.k(), HASH_ID_COLLECTION_REF_SIPHASH];
        rb.extend_from_slice(self.bloom.as_bytes());
        vec![
            ("v".to_owned(), vec![TXT_VERSION]),
            ("rb".to_owned(), rb),
            (
                "st".to_owned(),
                self.summary_timestamp.to_be_bytes().to_vec(),
            ),
            ("ri".to_owned(), self.repo_index.to_be_bytes().to_vec()),
        ]
    }

    /// The path of the repository on the peer's HTTP server: `/RI`.
    pub fn repo_path(&self) -> String {
        format!("/{}", self.repo_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    fn b64(s: &str) -> Vec<u8> {
        STANDARD.decode(s).unwrap()
    }

    fn txt(key: &str, value: &[u8]) -> Vec<u8> {
        let mut out = key.as_bytes().to_vec();
        out.push(b'=');
        out.extend_from_slice(value);
        out
    }

    fn reference_strings() -> Vec<Vec<u8>> {
        vec![
            txt("v", &b64("AQ==")),
            txt("rb", &b64("AQFAAAAAAAAAAAAAAAA=")),
            txt("st", &b64("AAAAAFhoRoA=")),
            txt("ri", &[0, 0]),
        ]
    }

    #[test]
    fn reference_vectors_decode() {
        let advert = RepoAdvert::decode(&TxtAttributes::parse(reference_strings())).unwrap();
        assert_eq!(advert.summary_timestamp, 1483228800);
        assert_eq!(advert.repo_index, 0);
        assert_eq!(advert.repo_path(), "/0");
        assert_eq!(advert.bloom.k(), 1);
        assert_eq!(advert.bloom.as_bytes().len(), 12);
        assert_eq!(advert.bloom.set_bits(), vec![6]);
        assert!(advert.bloom.may_contain("com.example", "ref"));
    }

    #[test]
    fn encode_round_trips() {
        let mut bloom = Bloom::new(250, 1).unwrap();
        bloom.add("com.example", "ref");
        let advert = RepoAdvert {
            bloom,
            summary_timestamp: 1483228800,
            repo_index: 513,
        };
        let strings: Vec<Vec<u8>> = advert.encode().iter().map(|(k, v)| txt(k, v)).collect();
        assert_eq!(strings[0], txt("v", &b64("AQ==")));
        assert_eq!(strings[2], txt("st", &b64("AAAAAFhoRoA=")));
        assert_eq!(strings[3], txt("ri", &[2, 1]));
        assert_eq!(
            RepoAdvert::decode(&TxtAttributes::parse(strings)).unwrap(),
            advert
        );
    }

    #[test]
    fn keys_are_lower_cased_and_first_duplicate_wins() {
        let mut strings = vec![txt("V", &[1]), txt("v", &[2])];
        strings.extend(reference_strings().into_iter().skip(1));
        strings.push(txt("ST", &[0; 8]));
        let advert = RepoAdvert::decode(&TxtAttributes::parse(strings)).unwrap();
        assert_eq!(advert.summary_timestamp, 1483228800);
    }

    #[test]
    fn wrong_version_is_rejected() {
        let mut strings = reference_strings();
        strings[0] = txt("v", &[2]);
        assert_eq!(
            RepoAdvert::decode(&TxtAttributes::parse(strings)),
            Err(TxtError::UnsupportedVersion(2))
        );
        let mut strings = reference_strings();
        strings[0] = b"v".to_vec();
        assert_eq!(
            RepoAdvert::decode(&TxtAttributes::parse(strings)),
            Err(TxtError::Missing("v"))
        );
    }

    #[test]
    fn non_normal_gvariants_are_rejected() {
        let cases: [(usize, Vec<u8>, &str); 5] = [
            (0, txt("v", &[1, 0]), "v"),
            (0, txt("v", &[]), "v"),
            (2, txt("st", &[0; 7]), "st"),
            (3, txt("ri", &[0, 0, 0]), "ri"),
            (1, txt("rb", &[1]), "rb"),
        ];
        for (index, replacement, key) in cases {
            let mut strings = reference_strings();
            strings[index] = replacement;
            match RepoAdvert::decode(&TxtAttributes::parse(strings)) {
                Err(TxtError::NotNormalForm { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_or_bad_bloom_is_rejected() {
        for (value, expected) in [
            (vec![], None),
            (vec![1], None),
            (vec![1, 1], Some(TxtError::Bloom(BloomError::Empty))),
            (vec![0, 1, 0xff], Some(TxtError::Bloom(BloomError::ZeroK))),
            (
                vec![1, 2, 0xff],
                Some(TxtError::Bloom(BloomError::UnknownHash(2))),
            ),
        ] {
            let mut strings = reference_strings();
            strings[1] = txt("rb", &value);
            let result = RepoAdvert::decode(&TxtAttributes::parse(strings));
            match expected {
                Some(e) => assert_eq!(result, Err(e)),
                None => assert!(
                    matches!(result, Err(TxtError::NotNormalForm { key: "rb", .. })),
                    "{value:?}: {result:?}"
                ),
            }
        }
    }

    #[test]
    fn oversize_and_invalid_strings_are_ignored() {
        let mut big = vec![1, 1];
        big.extend(std::iter::repeat_n(0xffu8, MAX_TXT_STRING_LEN));
        assert_eq!(
            parse_txt_string(&txt("rb", &big)),
            Err(TxtError::TooLong(MAX_TXT_STRING_LEN + 5))
        );
        let mut strings = reference_strings();
        strings[1] = txt("rb", &big);
        assert_eq!(
            RepoAdvert::decode(&TxtAttributes::parse(strings)),
            Err(TxtError::Missing("rb"))
        );
        // Exactly at the limit is fine.
        let at_limit = txt("x", &vec![0; MAX_TXT_STRING_LEN - 2]);
        assert!(parse_txt_string(&at_limit).is_ok());

        assert_eq!(parse_txt_string(b"=1"), Err(TxtError::InvalidKey));
        assert_eq!(parse_txt_string(b""), Err(TxtError::InvalidKey));
        assert_eq!(parse_txt_string(b"k\x01=1"), Err(TxtError::InvalidKey));
        assert_eq!(parse_txt_string(b"Key"), Ok(("key".to_owned(), None)));
        assert_eq!(
            parse_txt_string(b"k="),
            Ok(("k".to_owned(), Some(&b""[..])))
        );
        assert_eq!(
            parse_txt_string(b"k=a=b"),
            Ok(("k".to_owned(), Some(&b"a=b"[..])))
        );
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for _ in 0..2000 {
            let mut strings = reference_strings();
            let which = rng.random_range(0..strings.len());
            let len = rng.random_range(0..24);
            let value: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let key = ["v", "rb", "st", "ri"][which];
            strings[which] = txt(key, &value);
            let _ = RepoAdvert::decode(&TxtAttributes::parse(strings));
        }
    }
}
