//! The request paths the server answers, matched by strict patterns.
//!
//! A path is `/RI/` followed by one of: `summary`, `summary.sig`, `config`,
//! `objects/XX/<62 hex>.<type>`, `refs/heads/REF`, `refs/remotes/REMOTE/REF`,
//! `refs/mirrors/COLLECTION/REF`, `deltas/XX/<rest>[-<to>]/(superblock|N)` or
//! `delta-indexes/XX/<rest>.index`. Everything else is refused before the
//! filesystem is touched: percent-encoding (no valid path needs it), empty, `.` or
//! `..` segments, a trailing `/` (no directory listings), anything under `tmp/`,
//! and any byte outside printable ASCII.

use crate::repo::refs::{is_valid_collection_id, is_valid_ref_name, is_valid_remote_name};
use crate::repo::ObjectType;

/// Longest request path considered.
const MAX_PATH_LEN: usize = 1024;

/// What a request path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoPath {
    /// `summary`, generated in memory.
    Summary,
    /// `summary.sig`, served only with the repository's own signed summary.
    SummarySig,
    /// A file of the repository, relative to its root.
    File { relative: String, kind: FileKind },
}

/// The kinds of files served from disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Config,
    Object,
    /// Refs may be aliases (symlinks), as long as they stay inside the repository.
    Ref,
    Delta,
}

impl FileKind {
    /// Whether a symlink may be followed to reach the file (never out of the repo).
    pub fn follows_symlinks(self) -> bool {
        matches!(self, FileKind::Ref)
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The modified base64 alphabet of static delta names (`/` written as `_`).
fn is_mb64(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'_')
}

fn object_file(prefix: &str, file: &str) -> bool {
    if prefix.len() != 2 || !is_lower_hex(prefix) {
        return false;
    }
    let Some((hex, ext)) = file.split_once('.') else {
        return false;
    };
    hex.len() == 62 && is_lower_hex(hex) && ObjectType::from_extension(ext).is_some()
}

fn delta_part(prefix: &str, name: &str, part: &str) -> bool {
    if prefix.len() != 2 || !is_mb64(prefix) {
        return false;
    }
    let name_ok = match name.split_once('-') {
        Some((from, to)) => from.len() == 41 && is_mb64(from) && to.len() == 43 && is_mb64(to),
        None => name.len() == 41 && is_mb64(name),
    };
    let part_ok = part == "superblock"
        || (!part.is_empty() && part.len() <= 9 && part.bytes().all(|b| b.is_ascii_digit()));
    name_ok && part_ok
}

fn delta_index(prefix: &str, file: &str) -> bool {
    prefix.len() == 2
        && is_mb64(prefix)
        && file
            .strip_suffix(".index")
            .is_some_and(|rest| rest.len() == 41 && is_mb64(rest))
}

/// The repository index as written in a path: decimal, no sign, no leading zeros.
fn parse_index(segment: &str) -> Option<u16> {
    if segment.is_empty()
        || segment.len() > 5
        || !segment.bytes().all(|b| b.is_ascii_digit())
        || (segment.len() > 1 && segment.starts_with('0'))
    {
        return None;
    }
    segment.parse().ok()
}

/// Matches a raw (not percent-decoded) request path against the whitelist for the
/// repository served at `/repo_index/`. `None`: refuse (404).
pub fn parse_request_path(path: &str, repo_index: u16) -> Option<RepoPath> {
    if path.len() > MAX_PATH_LEN || !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return None;
    }
    if path.contains(['%', '\\', '?', '#']) {
        return None;
    }
    let rest = path.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return None;
    }
    let (index, segments) = segments.split_first()?;
    if parse_index(index)? != repo_index {
        return None;
    }
    let relative = segments.join("/");
    let file = |kind| {
        Some(RepoPath::File {
            relative: relative.clone(),
            kind,
        })
    };
    match segments {
        ["summary"] => Some(RepoPath::Summary),
        ["summary.sig"] => Some(RepoPath::SummarySig),
        ["config"] => file(FileKind::Config),
        ["objects", prefix, name] if object_file(prefix, name) => file(FileKind::Object),
        ["refs", "heads", name @ ..] if is_valid_ref_name(&name.join("/")) => file(FileKind::Ref),
        ["refs", "remotes", remote, name @ ..]
            if is_valid_remote_name(remote) && is_valid_ref_name(&name.join("/")) =>
        {
            file(FileKind::Ref)
        }
        ["refs", "mirrors", collection, name @ ..]
            if is_valid_collection_id(collection) && is_valid_ref_name(&name.join("/")) =>
        {
            file(FileKind::Ref)
        }
        ["deltas", prefix, name, part] if delta_part(prefix, name, part) => file(FileKind::Delta),
        ["delta-indexes", prefix, name] if delta_index(prefix, name) => file(FileKind::Delta),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX62: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";
    const MB41: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+_Abc";
    const MB43: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+_Abcde";

    fn ok(path: &str) -> RepoPath {
        parse_request_path(path, 0).unwrap_or_else(|| panic!("{path} refused"))
    }

    #[test]
    fn accepted() {
        assert_eq!(ok("/0/summary"), RepoPath::Summary);
        assert_eq!(ok("/0/summary.sig"), RepoPath::SummarySig);
        assert_eq!(
            ok("/0/config"),
            RepoPath::File {
                relative: "config".into(),
                kind: FileKind::Config
            }
        );
        for ext in [
            "filez",
            "dirtree",
            "dirmeta",
            "commit",
            "commitmeta",
            "tombstone-commit",
        ] {
            let path = format!("/0/objects/ab/{HEX62}.{ext}");
            assert!(matches!(
                ok(&path),
                RepoPath::File {
                    kind: FileKind::Object,
                    ..
                }
            ));
        }
        for path in [
            "/0/refs/heads/os/stable",
            "/0/refs/remotes/origin/os/stable",
            "/0/refs/mirrors/org.example.Os/os/stable",
        ] {
            assert!(matches!(
                ok(path),
                RepoPath::File {
                    kind: FileKind::Ref,
                    ..
                }
            ));
        }
        let delta = format!("/0/deltas/Ab/{MB41}/superblock");
        assert!(matches!(
            ok(&delta),
            RepoPath::File {
                kind: FileKind::Delta,
                ..
            }
        ));
        assert!(parse_request_path(&format!("/0/deltas/Ab/{MB41}-{MB43}/12"), 0).is_some());
        assert!(parse_request_path(&format!("/0/delta-indexes/Ab/{MB41}.index"), 0).is_some());
        assert_eq!(
            parse_request_path("/513/summary", 513),
            Some(RepoPath::Summary)
        );
    }

    #[test]
    fn refused() {
        let bad = [
            "",
            "/",
            "/0",
            "/0/",
            "//etc/passwd",
            "/0/../config",
            "/0/./config",
            "/0/%2e%2e/config",
            "/0/%2E%2E/0/config",
            "/0//config",
            "/0/config/",
            "/00/config",
            "/1/config",
            "/-0/config",
            "/65536/config",
            "/0/tmp/cache/x",
            "/0/tmp",
            "/0/objects",
            "/0/objects/",
            "/0/objects/ab",
            "/0/objects/ab/",
            "/0/objects/AB/0123.filez",
            "/0/refs/heads/",
            "/0/refs/heads/../../config",
            "/0/refs/heads/.hidden",
            "/0/refs/remotes/origin",
            "/0/refs/mirrors/notacollection/os",
            "/0/state/x.commitpartial",
            "/0/origin.trustedkeys.gpg",
            "/0/summary?x=1",
            "/0/sum mary",
            "/0/config\0",
            "/0/é",
            "/etc/passwd",
            "/0/deltas/Ab/short/superblock",
            "/0/extensions/x",
        ];
        for path in bad {
            assert_eq!(parse_request_path(path, 0), None, "{path:?}");
        }
        assert_eq!(
            parse_request_path(&format!("/0/objects/ab/{HEX62}.exe"), 0),
            None
        );
        assert_eq!(
            parse_request_path(&format!("/0/objects/ab/{}.filez", &HEX62[1..]), 0),
            None
        );
        assert_eq!(
            parse_request_path(&format!("/0/objects/ab/{}.filez", HEX62.to_uppercase()), 0),
            None
        );
        assert_eq!(
            parse_request_path(&format!("/0/deltas/Ab/{MB41}/x1"), 0),
            None
        );
        assert_eq!(
            parse_request_path(&format!("/0/{}", "a/".repeat(600)), 0),
            None
        );
    }
}
