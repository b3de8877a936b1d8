//! What discovery keeps of a source's summary: the parsed [`Summary`], the
//! collection-refs it offers (main refs plus `ostree.summary.collection-map`) as
//! [`OfferedRef`]s, and the raw bytes (for signature checks).

use std::sync::Arc;

use crate::repo::summary::{Summary, SummaryRef};

use super::model::OfferedRef;

/// A parsed summary, as discovery keeps it (fetched and parsed once per change).
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryInfo {
    /// The parsed summary.
    pub summary: Summary,
    /// Every collection-ref the summary lists, sorted by (collection id, ref).
    pub refs: Vec<OfferedRef>,
    /// `ostree.summary.last-modified` (Unix seconds).
    pub last_modified: Option<u64>,
    /// The raw summary bytes.
    pub bytes: Arc<[u8]>,
}

fn offered(collection_id: Option<&str>, r: &SummaryRef) -> OfferedRef {
    OfferedRef {
        collection_id: collection_id.map(str::to_owned),
        ref_name: r.name.clone(),
        commit: r.checksum,
        timestamp: r.timestamp,
        version: r.version.clone(),
    }
}

impl SummaryInfo {
    /// Parses summary `bytes`. Refs of the main ref list belong to the summary's
    /// collection id, or to `fallback_collection` when the summary has none.
    pub fn parse(bytes: &[u8], fallback_collection: Option<&str>) -> Result<Self, String> {
        Self::parse_inner(bytes, fallback_collection, false)
    }

    /// Parses the summary of a configured remote: the main refs are the remote's
    /// refs, so they belong to the collection configured for the remote (`None` for
    /// a remote without one), whatever the summary says.
    pub fn parse_for_remote(bytes: &[u8], remote_collection: Option<&str>) -> Result<Self, String> {
        Self::parse_inner(bytes, remote_collection, true)
    }

    fn parse_inner(
        bytes: &[u8],
        fallback_collection: Option<&str>,
        force: bool,
    ) -> Result<Self, String> {
        let summary = Summary::parse(bytes).map_err(|e| e.to_string())?;
        let main_collection = if force {
            fallback_collection
        } else {
            summary.collection_id.as_deref().or(fallback_collection)
        };
        let mut refs: Vec<OfferedRef> = summary
            .refs
            .iter()
            .map(|r| offered(main_collection, r))
            .collect();
        for (cid, list) in &summary.collection_map {
            refs.extend(list.iter().map(|r| offered(Some(cid), r)));
        }
        refs.sort_by(|a, b| (&a.collection_id, &a.ref_name).cmp(&(&b.collection_id, &b.ref_name)));
        refs.dedup_by(|a, b| a.collection_id == b.collection_id && a.ref_name == b.ref_name);
        Ok(Self {
            last_modified: summary.last_modified,
            summary,
            refs,
            bytes: Arc::from(bytes),
        })
    }
}
