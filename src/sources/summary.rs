//! What discovery needs from a source's summary: the collection-refs it offers
//! (main refs plus `ostree.summary.collection-map`), with commit, timestamp and
//! version, and when the summary was last modified.

use std::sync::Arc;

use glib::prelude::*;
use glib::{Variant, VariantDict, VariantTy};

use crate::repo::Checksum;

use super::model::OfferedRef;

const SUMMARY_TYPE: &str = "(a(s(taya{sv}))a{sv})";
const REF_MAP_TYPE: &str = "a(s(taya{sv}))";

/// A parsed summary, as discovery keeps it (fetched and parsed once per change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryInfo {
    /// `ostree.summary.collection-id`, if set.
    pub collection_id: Option<String>,
    /// Every collection-ref the summary lists, sorted by (collection id, ref).
    pub refs: Vec<OfferedRef>,
    /// `ostree.summary.last-modified` (Unix seconds).
    pub last_modified: Option<u64>,
    /// The raw summary bytes, for consumers that need more than the refs.
    pub bytes: Arc<[u8]>,
}

impl SummaryInfo {
    /// Parses summary `bytes`. Refs of the main ref map belong to the summary's
    /// collection id, or to `fallback_collection` (the collection id configured for
    /// the remote) when the summary has none.
    pub fn parse(bytes: &[u8], fallback_collection: Option<&str>) -> Result<Self, String> {
        Self::parse_inner(bytes, fallback_collection, false)
    }

    /// Parses the summary of a configured remote: the main refs are the remote's
    /// refs, so they belong to the collection configured for the remote (`None` for
    /// a remote without one), whatever the summary says.
    pub fn parse_for_remote(bytes: &[u8], remote_collection: Option<&str>) -> Result<Self, String> {
        Self::parse_inner(bytes, remote_collection, true)
    }

    fn parse_inner(bytes: &[u8], fallback_collection: Option<&str>, force: bool) -> Result<Self, String> {
        let ty = VariantTy::new(SUMMARY_TYPE).map_err(|e| e.to_string())?;
        let summary = Variant::from_data_with_type(bytes.to_vec(), ty);
        if !summary.is_normal_form() {
            return Err("summary is not a GVariant of the summary type in normal form".into());
        }
        let ref_map = summary.try_child_value(0).ok_or("summary has no ref map")?;
        let metadata = summary.try_child_value(1).ok_or("summary has no metadata")?;
        let metadata = VariantDict::new(Some(&metadata));

        let collection_id = metadata
            .lookup_value("ostree.summary.collection-id", Some(VariantTy::STRING))
            .and_then(|v| v.str().map(str::to_owned))
            .filter(|c| !c.is_empty());
        let last_modified = metadata
            .lookup_value("ostree.summary.last-modified", Some(VariantTy::UINT64))
            .and_then(|v| v.get::<u64>())
            .map(u64::from_be);

        let main_collection = if force {
            fallback_collection
        } else {
            collection_id.as_deref().or(fallback_collection)
        };
        let mut refs = Vec::new();
        read_ref_map(&ref_map, main_collection, &mut refs)?;

        let map_ty = VariantTy::new("a{sa(s(taya{sv}))}").map_err(|e| e.to_string())?;
        if let Some(map) = metadata.lookup_value("ostree.summary.collection-map", Some(map_ty)) {
            for entry in map.iter() {
                let (Some(cid), Some(ref_map)) = (entry.try_child_value(0), entry.try_child_value(1))
                else {
                    continue;
                };
                let Some(cid) = cid.str() else { continue };
                if !ref_map.is_type(VariantTy::new(REF_MAP_TYPE).map_err(|e| e.to_string())?) {
                    continue;
                }
                read_ref_map(&ref_map, Some(cid), &mut refs)?;
            }
        }
        refs.sort_by(|a, b| {
            (&a.collection_id, &a.ref_name).cmp(&(&b.collection_id, &b.ref_name))
        });
        refs.dedup_by(|a, b| a.collection_id == b.collection_id && a.ref_name == b.ref_name);

        Ok(Self {
            collection_id,
            refs,
            last_modified,
            bytes: Arc::from(bytes),
        })
    }
}

fn read_ref_map(map: &Variant, collection_id: Option<&str>, out: &mut Vec<OfferedRef>) -> Result<(), String> {
    for entry in map.iter() {
        let name = entry
            .try_child_value(0)
            .and_then(|v| v.str().map(str::to_owned))
            .ok_or("summary ref without a name")?;
        let info = entry.try_child_value(1).ok_or("summary ref without data")?;
        let checksum = info
            .try_child_value(1)
            .and_then(|v| v.fixed_array::<u8>().ok().map(<[u8]>::to_vec))
            .ok_or("summary ref without a checksum")?;
        let commit = Checksum::from_bytes(&checksum)
            .map_err(|_| format!("summary ref “{name}” has a checksum of {} bytes", checksum.len()))?;
        let meta = info.try_child_value(2).map(|m| VariantDict::new(Some(&m)));
        let timestamp = meta
            .as_ref()
            .and_then(|m| m.lookup_value("ostree.commit.timestamp", Some(VariantTy::UINT64)))
            .and_then(|v| v.get::<u64>())
            .map(u64::from_be);
        let version = meta
            .as_ref()
            .and_then(|m| m.lookup_value("ostree.commit.version", Some(VariantTy::STRING)))
            .and_then(|v| v.str().map(str::to_owned));
        out.push(OfferedRef {
            collection_id: collection_id.map(str::to_owned),
            ref_name: name,
            commit,
            timestamp,
            version,
        });
    }
    Ok(())
}
