//! Where an update came from, and the log of past updates. The engine says what
//! each source sent (`Engine::received`); its callers (`ferryctl update`, the
//! window) sum it by locality here and append one entry per update that pulled
//! something to `$XDG_DATA_HOME/ferry/history.jsonl` (one JSON object a line,
//! append-only; lines that do not parse are skipped when read).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::engine::{RefPlan, SourceBytes};
use crate::sources::Locality;

/// Bytes received per locality, and from how many sources of each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub drive_bytes: u64,
    pub drives: u32,
    pub nearby_bytes: u64,
    pub nearby: u32,
    pub internet_bytes: u64,
    pub internet: u32,
}

impl Received {
    /// Sums what each source sent (sources that sent nothing are not counted).
    pub fn of(sources: &[SourceBytes]) -> Self {
        let mut received = Self::default();
        for source in sources.iter().filter(|s| s.bytes > 0) {
            let (bytes, count) = match source.locality {
                Locality::Drive => (&mut received.drive_bytes, &mut received.drives),
                Locality::Nearby => (&mut received.nearby_bytes, &mut received.nearby),
                Locality::Internet => (&mut received.internet_bytes, &mut received.internet),
            };
            *bytes += source.bytes;
            *count += 1;
        }
        received
    }

    pub fn total(&self) -> u64 {
        self.drive_bytes + self.nearby_bytes + self.internet_bytes
    }

    /// What would otherwise have come over the internet.
    pub fn internet_saved(&self) -> u64 {
        self.drive_bytes + self.nearby_bytes
    }
}

/// One past update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it finished (Unix seconds).
    pub time: u64,
    /// `REMOTE:REF` of every ref it moved.
    pub refs: Vec<String>,
    /// The `version` of the first ref it moved, if the commit has one.
    pub version: Option<String>,
    /// The commit of the first ref it moved.
    pub commit: String,
    /// Names of the sources that sent something, one per source.
    pub sources: Vec<String>,
    pub received: Received,
}

impl HistoryEntry {
    /// The entry for an update that ended with `plans` (the refs that succeeded)
    /// after `sources` sent what they sent; `None` when no ref moved.
    pub fn of(plans: &[RefPlan], sources: &[SourceBytes], time: u64) -> Option<Self> {
        let moved: Vec<&RefPlan> = plans.iter().filter(|p| !p.up_to_date).collect();
        let first = moved.first()?;
        let names = sources
            .iter()
            .filter(|s| s.bytes > 0)
            .map(|s| s.source.name.clone())
            .collect();
        Some(Self {
            time,
            refs: moved
                .iter()
                .map(|p| format!("{}:{}", p.remote, p.ref_name))
                .collect(),
            version: first.version.clone(),
            commit: first.commit.to_hex(),
            sources: names,
            received: Received::of(sources),
        })
    }
}

/// Where the history is kept: `$XDG_DATA_HOME/ferry/history.jsonl`.
pub fn default_history_path() -> PathBuf {
    glib::user_data_dir().join("ferry").join("history.jsonl")
}

/// Appends `entry` to the history at `path` (creating it and its directory).
pub fn append(path: &Path, entry: &HistoryEntry) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
    line.push('\n');
    // One write of a whole line in append mode: concurrent writers do not
    // interleave within it.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

/// The history at `path`, newest first; nothing when there is none.
pub fn load(path: &Path) -> Vec<HistoryEntry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut entries: Vec<HistoryEntry> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    entries.reverse();
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::engine::SourceLabel;

    fn sent(name: &str, locality: Locality, bytes: u64) -> SourceBytes {
        SourceBytes {
            source: SourceLabel {
                id: format!("id:{name}"),
                uri: format!("http://{name}"),
                name: name.into(),
            },
            locality,
            bytes,
        }
    }

    #[test]
    fn received_sums_by_locality_and_counts_sources_that_sent_something() {
        let received = Received::of(&[
            sent("stick", Locality::Drive, 1_900),
            sent("a", Locality::Nearby, 200),
            sent("b", Locality::Nearby, 110),
            sent("idle", Locality::Nearby, 0),
            sent("upstream", Locality::Internet, 12),
        ]);
        assert_eq!(
            received,
            Received {
                drive_bytes: 1_900,
                drives: 1,
                nearby_bytes: 310,
                nearby: 2,
                internet_bytes: 12,
                internet: 1,
            }
        );
        assert_eq!(received.total(), 2_222);
        assert_eq!(received.internet_saved(), 2_210);
    }

    #[test]
    fn the_log_appends_and_reads_newest_first_skipping_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry/history.jsonl");
        assert!(load(&path).is_empty());
        let entry = |time, version: &str| HistoryEntry {
            time,
            refs: vec!["origin:os/stable".into()],
            version: Some(version.into()),
            commit: "ab".repeat(32),
            sources: vec!["KINGSTON".into()],
            received: Received::default(),
        };
        append(&path, &entry(1, "41")).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{not json\n")
            .unwrap();
        append(&path, &entry(2, "42")).unwrap();
        assert_eq!(load(&path), vec![entry(2, "42"), entry(1, "41")]);
    }
}
