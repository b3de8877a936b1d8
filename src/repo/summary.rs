//! The repository summary: `REPO/summary`, a GVariant `(a(s(taya{sv}))a{sv})`.
//!
//! The first member lists the refs of the repository's own collection (or all its
//! refs when it has no collection id), sorted by name: (name, (commit size, commit
//! checksum, metadata)). The commit size is a NATIVE-endian `t` (libostree writes
//! `g_variant_get_size (commit)` without byte swapping); the per-ref
//! `ostree.commit.timestamp` and the summary's `ostree.summary.last-modified` and
//! `ostree.summary.expires` are big-endian inside their `t`.
//!
//! [`Summary::to_bytes`] lays the summary out as `ostree summary -u` (2022.7) does:
//! refs sorted by name, metadata dictionaries built with a `GVariantDict` and keys
//! inserted in libostree's order, so the dictionary order (a hash table's) is the same.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;

use glib::prelude::*;
use glib::{Variant, VariantDict, VariantTy};

use crate::repo::checksum::Checksum;
use crate::repo::durable;
use crate::repo::error::{RepoError, Result};
use crate::repo::refs::{self, is_valid_collection_id, is_valid_ref_name};

/// GVariant type of a summary.
pub const SUMMARY_TYPE: &str = "(a(s(taya{sv}))a{sv})";
/// GVariant type of one ref entry.
pub const REF_ENTRY_TYPE: &str = "(s(taya{sv}))";
/// GVariant type of the collection map.
pub const COLLECTION_MAP_TYPE: &str = "a{sa(s(taya{sv}))}";

pub const SUMMARY_FILE: &str = "summary";
pub const SUMMARY_SIG_FILE: &str = "summary.sig";

pub const KEY_LAST_MODIFIED: &str = "ostree.summary.last-modified";
pub const KEY_EXPIRES: &str = "ostree.summary.expires";
pub const KEY_COLLECTION_ID: &str = "ostree.summary.collection-id";
pub const KEY_COLLECTION_MAP: &str = "ostree.summary.collection-map";
pub const KEY_MODE: &str = "ostree.summary.mode";
pub const KEY_TOMBSTONE_COMMITS: &str = "ostree.summary.tombstone-commits";
pub const KEY_INDEXED_DELTAS: &str = "ostree.summary.indexed-deltas";
pub const KEY_STATIC_DELTAS: &str = "ostree.static-deltas";
pub const KEY_COMMIT_TIMESTAMP: &str = "ostree.commit.timestamp";
pub const KEY_COMMIT_VERSION: &str = "ostree.commit.version";

/// One ref listed in a summary.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SummaryRef {
    pub name: String,
    pub checksum: Checksum,
    /// Size in bytes of the serialized commit object.
    pub commit_size: u64,
    /// `ostree.commit.timestamp`: the commit's timestamp, Unix seconds.
    pub timestamp: Option<u64>,
    /// `ostree.commit.version`
    pub version: Option<String>,
    /// Any other per-ref metadata, in file order.
    #[serde(skip)]
    pub other_metadata: Vec<(String, Variant)>,
}

impl SummaryRef {
    pub fn new(name: impl Into<String>, checksum: Checksum, commit_size: u64) -> Self {
        Self {
            name: name.into(),
            checksum,
            commit_size,
            timestamp: None,
            version: None,
            other_metadata: Vec::new(),
        }
    }

    pub fn with_timestamp(mut self, timestamp: u64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    fn from_variant(entry: &Variant) -> Result<Self> {
        let name = entry.child_value(0).str().unwrap_or_default().to_owned();
        if !is_valid_ref_name(&name) {
            return Err(bad(format!("invalid ref name “{}”", name.escape_debug())));
        }
        let data = entry.child_value(1);
        let commit_size = data.child_value(0).get::<u64>().unwrap_or_default();
        let csum = data.child_value(1);
        let csum = csum.fixed_array::<u8>().unwrap_or_default();
        let checksum = Checksum::from_bytes(csum).map_err(|_| {
            bad(format!(
                "ref “{name}” has a checksum of {} bytes",
                csum.len()
            ))
        })?;
        let mut summary_ref = SummaryRef::new(name, checksum, commit_size);
        for (key, value) in dict_entries(&data.child_value(2)) {
            match key.as_str() {
                KEY_COMMIT_TIMESTAMP => {
                    summary_ref.timestamp = Some(u64::from_be(typed::<u64>(&key, &value)?))
                }
                KEY_COMMIT_VERSION => summary_ref.version = Some(typed::<String>(&key, &value)?),
                _ => summary_ref.other_metadata.push((key, value)),
            }
        }
        Ok(summary_ref)
    }

    fn to_variant(&self) -> Variant {
        // libostree (summary_add_ref_entry) inserts the timestamp, then the version.
        let dict = VariantDict::new(None);
        if let Some(timestamp) = self.timestamp {
            dict.insert_value(KEY_COMMIT_TIMESTAMP, &timestamp.to_be().to_variant());
        }
        if let Some(version) = &self.version {
            dict.insert_value(KEY_COMMIT_VERSION, &version.to_variant());
        }
        for (key, value) in &self.other_metadata {
            dict.insert_value(key, value);
        }
        Variant::tuple_from_iter([
            self.name.to_variant(),
            Variant::tuple_from_iter([
                self.commit_size.to_variant(),
                Variant::array_from_fixed_array(self.checksum.as_bytes()),
                dict.end(),
            ]),
        ])
    }
}

/// A parsed (or to be written) summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Refs of the main collection (`collection_id`), or of the repository when it has
    /// no collection id. Sorted by name after parsing; sorted on writing.
    pub refs: Vec<SummaryRef>,
    /// `ostree.summary.collection-map`: other collections' refs, each list sorted.
    pub collection_map: BTreeMap<String, Vec<SummaryRef>>,
    /// `ostree.summary.last-modified`, Unix seconds.
    pub last_modified: Option<u64>,
    /// `ostree.summary.expires`, Unix seconds.
    pub expires: Option<u64>,
    /// `ostree.summary.collection-id`
    pub collection_id: Option<String>,
    /// `ostree.summary.mode`
    pub mode: Option<String>,
    /// `ostree.summary.tombstone-commits`
    pub tombstone_commits: Option<bool>,
    /// `ostree.summary.indexed-deltas`
    pub indexed_deltas: Option<bool>,
    /// Every other key (`ostree.static-deltas`, keys added with `-m`, …), file order.
    pub other_metadata: Vec<(String, Variant)>,
}

fn bad(reason: impl Into<String>) -> RepoError {
    RepoError::format("summary", reason)
}

fn dict_entries(dict: &Variant) -> impl Iterator<Item = (String, Variant)> + '_ {
    dict.iter().map(|entry| {
        let key = entry.child_value(0).str().unwrap_or_default().to_owned();
        let value = entry
            .child_value(1)
            .as_variant()
            .unwrap_or(entry.child_value(1));
        (key, value)
    })
}

fn typed<T: FromVariant + StaticVariantType>(key: &str, value: &Variant) -> Result<T> {
    value.get::<T>().ok_or_else(|| {
        bad(format!(
            "“{key}” has type {} instead of {}",
            value.type_(),
            T::static_variant_type()
        ))
    })
}

fn parse_ref_list(list: &Variant, what: &str) -> Result<Vec<SummaryRef>> {
    let mut refs = list
        .iter()
        .map(|entry| SummaryRef::from_variant(&entry))
        .collect::<Result<Vec<_>>>()?;
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = refs.windows(2).find(|pair| pair[0].name == pair[1].name) {
        return Err(bad(format!("{what} lists ref “{}” twice", pair[0].name)));
    }
    Ok(refs)
}

fn ref_list_variant(refs: &[SummaryRef], what: &str) -> Result<Variant> {
    let mut sorted: Vec<&SummaryRef> = refs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in sorted.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(bad(format!("{what} lists ref “{}” twice", pair[0].name)));
        }
    }
    for r in &sorted {
        if !is_valid_ref_name(&r.name) {
            return Err(RepoError::InvalidRefName(r.name.clone()));
        }
    }
    Ok(Variant::array_from_iter_with_type(
        VariantTy::new(REF_ENTRY_TYPE).expect("static type"),
        sorted.iter().map(|r| r.to_variant()),
    ))
}

impl Summary {
    /// An empty summary with the metadata `ostree summary -u` writes for an archive
    /// repository: mode `archive-z2`, no tombstone commits, indexed deltas, and the
    /// given collection id and last-modified time.
    pub fn for_archive_repo(collection_id: Option<&str>, last_modified: u64) -> Self {
        Self {
            collection_id: collection_id.map(str::to_owned),
            mode: Some("archive-z2".to_owned()),
            last_modified: Some(last_modified),
            tombstone_commits: Some(false),
            indexed_deltas: Some(true),
            ..Self::default()
        }
    }

    /// Parses summary bytes. Anything that is not a summary in GVariant normal form,
    /// a checksum that is not 32 bytes, an invalid ref name or collection id, a ref
    /// listed twice, or a well-known key of the wrong type is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        // GVariant reads zero bytes as the default value (an empty summary); a
        // real summary is never empty, so an empty file is junk.
        if bytes.is_empty() {
            return Err(bad("the file is empty"));
        }
        let ty = VariantTy::new(SUMMARY_TYPE).expect("static type");
        let variant = Variant::from_bytes_with_type(&glib::Bytes::from(bytes), ty);
        if !variant.is_normal_form() {
            return Err(bad(format!(
                "{} bytes are not a {SUMMARY_TYPE} GVariant in normal form",
                bytes.len()
            )));
        }
        Self::from_variant(&variant)
    }

    /// Reads a summary from an already typed GVariant.
    pub fn from_variant(variant: &Variant) -> Result<Self> {
        if variant.type_().as_str() != SUMMARY_TYPE {
            return Err(bad(format!(
                "GVariant of type {} instead of {SUMMARY_TYPE}",
                variant.type_()
            )));
        }
        let mut summary = Summary {
            refs: parse_ref_list(&variant.child_value(0), "the summary")?,
            ..Summary::default()
        };
        for (key, value) in dict_entries(&variant.child_value(1)) {
            match key.as_str() {
                KEY_LAST_MODIFIED => {
                    summary.last_modified = Some(u64::from_be(typed::<u64>(&key, &value)?))
                }
                KEY_EXPIRES => summary.expires = Some(u64::from_be(typed::<u64>(&key, &value)?)),
                KEY_COLLECTION_ID => {
                    let id = typed::<String>(&key, &value)?;
                    if !is_valid_collection_id(&id) {
                        return Err(bad(format!(
                            "invalid collection ID “{}”",
                            id.escape_debug()
                        )));
                    }
                    summary.collection_id = Some(id);
                }
                KEY_MODE => summary.mode = Some(typed::<String>(&key, &value)?),
                KEY_TOMBSTONE_COMMITS => {
                    summary.tombstone_commits = Some(typed::<bool>(&key, &value)?)
                }
                KEY_INDEXED_DELTAS => summary.indexed_deltas = Some(typed::<bool>(&key, &value)?),
                KEY_COLLECTION_MAP => {
                    if value.type_().as_str() != COLLECTION_MAP_TYPE {
                        return Err(bad(format!(
                            "“{key}” has type {} instead of {COLLECTION_MAP_TYPE}",
                            value.type_()
                        )));
                    }
                    for entry in value.iter() {
                        let id = entry.child_value(0).str().unwrap_or_default().to_owned();
                        if !is_valid_collection_id(&id) {
                            return Err(bad(format!(
                                "invalid collection ID “{}” in the collection map",
                                id.escape_debug()
                            )));
                        }
                        let refs = parse_ref_list(&entry.child_value(1), "the collection map")?;
                        if summary.collection_map.insert(id.clone(), refs).is_some() {
                            return Err(bad(format!("the collection map lists “{id}” twice")));
                        }
                    }
                }
                _ => summary.other_metadata.push((key, value)),
            }
        }
        Ok(summary)
    }

    /// The summary as a GVariant, laid out as `ostree summary -u` lays it out.
    pub fn to_variant(&self) -> Result<Variant> {
        let refs = ref_list_variant(&self.refs, "the summary")?;
        // Insertion order of regenerate_metadata() in libostree 2022.7: additional
        // metadata (-m) first, then static deltas, last-modified, mode, tombstone
        // commits, indexed deltas, collection id, collection map.
        let dict = VariantDict::new(None);
        if let Some(expires) = self.expires {
            dict.insert_value(KEY_EXPIRES, &expires.to_be().to_variant());
        }
        for (key, value) in &self.other_metadata {
            dict.insert_value(key, value);
        }
        if let Some(last_modified) = self.last_modified {
            dict.insert_value(KEY_LAST_MODIFIED, &last_modified.to_be().to_variant());
        }
        if let Some(mode) = &self.mode {
            dict.insert_value(KEY_MODE, &mode.to_variant());
        }
        if let Some(tombstone_commits) = self.tombstone_commits {
            dict.insert_value(KEY_TOMBSTONE_COMMITS, &tombstone_commits.to_variant());
        }
        if let Some(indexed_deltas) = self.indexed_deltas {
            dict.insert_value(KEY_INDEXED_DELTAS, &indexed_deltas.to_variant());
        }
        if let Some(id) = &self.collection_id {
            refs::validate_collection_id(id)?;
            dict.insert_value(KEY_COLLECTION_ID, &id.to_variant());
        }
        if !self.collection_map.is_empty() {
            let mut entries = Vec::with_capacity(self.collection_map.len());
            for (id, refs) in &self.collection_map {
                refs::validate_collection_id(id)?;
                entries.push(Variant::from_dict_entry(
                    &id.to_variant(),
                    &ref_list_variant(refs, "the collection map")?,
                ));
            }
            let map = Variant::array_from_iter_with_type(
                VariantTy::new(&COLLECTION_MAP_TYPE[1..]).expect("static type"),
                entries,
            );
            dict.insert_value(KEY_COLLECTION_MAP, &map);
        }
        Ok(Variant::tuple_from_iter([refs, dict.end()]))
    }

    /// The serialized summary (GVariant normal form).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.to_variant()?.data().to_vec())
    }

    /// Every ref the summary lists with its collection: the main refs under
    /// `collection_id` (None if the summary has none), then the collection map's.
    pub fn all_refs(&self) -> impl Iterator<Item = (Option<&str>, &SummaryRef)> {
        let main = self.refs.iter().map(|r| (self.collection_id.as_deref(), r));
        let mapped = self
            .collection_map
            .iter()
            .flat_map(|(id, refs)| refs.iter().map(move |r| (Some(id.as_str()), r)));
        main.chain(mapped)
    }

    /// Looks a ref up: with `collection_id` None or equal to the summary's own, in
    /// the main list; otherwise in the collection map.
    pub fn find_ref(&self, collection_id: Option<&str>, name: &str) -> Option<&SummaryRef> {
        let list = match collection_id {
            None => &self.refs,
            Some(id) if Some(id) == self.collection_id.as_deref() => &self.refs,
            Some(id) => self.collection_map.get(id)?,
        };
        list.iter().find(|r| r.name == name)
    }

    /// Reads `root/summary`; `Ok(None)` if the repository has none.
    pub fn load(root: &Path) -> Result<Option<Self>> {
        let path = root.join(SUMMARY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes).map(Some),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(RepoError::io(&path, err)),
        }
    }

    /// Writes `root/summary` atomically and removes `root/summary.sig`, which no longer
    /// matches (as `ostree summary -u` does).
    pub fn write_to_repo(&self, root: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        let sig = root.join(SUMMARY_SIG_FILE);
        match std::fs::remove_file(&sig) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(RepoError::io(&sig, err)),
        }
        durable::write_atomic(root, SUMMARY_FILE, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csum(byte: u8) -> Checksum {
        Checksum([byte; 32])
    }

    #[test]
    fn round_trip_from_scratch() {
        let mut s = Summary::for_archive_repo(Some("org.example.Os"), 1_700_000_000);
        s.refs.push(
            SummaryRef::new("os/stable", csum(1), 198)
                .with_timestamp(1_600_000_000)
                .with_version("1.0"),
        );
        s.refs
            .push(SummaryRef::new("os/beta", csum(2), 182).with_timestamp(1_600_000_001));
        s.collection_map.insert(
            "org.other.Apps".into(),
            vec![SummaryRef::new("app/stable", csum(3), 200)],
        );
        let bytes = s.to_bytes().unwrap();
        let parsed = Summary::parse(&bytes).unwrap();
        assert_eq!(parsed.refs[0].name, "os/beta");
        assert_eq!(parsed.refs[1].version.as_deref(), Some("1.0"));
        assert_eq!(parsed.refs[1].commit_size, 198);
        assert_eq!(parsed.last_modified, Some(1_700_000_000));
        assert_eq!(parsed.to_bytes().unwrap(), bytes);
        assert_eq!(
            parsed
                .find_ref(Some("org.other.Apps"), "app/stable")
                .unwrap()
                .checksum,
            csum(3)
        );
        assert_eq!(parsed.all_refs().count(), 3);
    }

    #[test]
    fn duplicates_and_bad_names_are_refused() {
        let mut s = Summary::default();
        s.refs.push(SummaryRef::new("a", csum(1), 1));
        s.refs.push(SummaryRef::new("a", csum(2), 1));
        assert!(s.to_bytes().is_err());
        s.refs[1].name = "../x".into();
        assert!(matches!(s.to_bytes(), Err(RepoError::InvalidRefName(_))));
    }
}
