//! Refs: names, where they live on disk, and reading and writing them durably.
//!
//! A ref is a file holding 64 lowercase hex characters and a newline:
//! `refs/heads/REF` (the repository's own refs), `refs/remotes/REMOTE/REF` (what was
//! last pulled from a remote) and `refs/mirrors/COLLECTION-ID/REF` (refs of other
//! collections, as `ostree create-usb` writes them).
//!
//! Name rules are libostree's:
//! - a ref is components separated by `/`, each matching `[\w\d][-._\w\d]*` (so no
//!   empty component, no leading `/`, no trailing `/`, no `.` or `..` component, no
//!   component starting with `-`, `.` or `_`... except `_`, which `\w` includes).
//!   `\w` is GRegex's Unicode-aware class, so we match with GRegex itself. One
//!   deliberate difference: libostree's `$` also matches before a trailing newline, so
//!   it accepts `"a\n"`; Ferry does not.
//! - a remote name is a single such component;
//! - a collection id is a D-Bus interface name: at least two `.`-separated elements,
//!   each `[A-Za-z_][A-Za-z0-9_]*`, at most 255 bytes.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::repo::beneath::{BeneathError, Tree};
use crate::repo::checksum::Checksum;
use crate::repo::durable;
use crate::repo::error::{RepoError, Result};

/// libostree's `OSTREE_REF_FRAGMENT_REGEXP`.
const REF_FRAGMENT_REGEXP: &str = r"[\w\d][-._\w\d]*";

fn regex_matches(pattern: &str, s: &str) -> bool {
    // GRegex works on NUL-terminated strings: a NUL can never be part of a name.
    if s.is_empty() || s.contains('\0') {
        return false;
    }
    glib::Regex::match_simple(
        pattern,
        s,
        glib::RegexCompileFlags::DOLLAR_ENDONLY,
        glib::RegexMatchFlags::empty(),
    )
}

/// Whether `name` is a valid ref name (`ostree_validate_rev`).
pub fn is_valid_ref_name(name: &str) -> bool {
    let pattern = format!("^(?:{REF_FRAGMENT_REGEXP}/)*{REF_FRAGMENT_REGEXP}$");
    regex_matches(&pattern, name)
}

/// Checks a ref name (`ostree_validate_rev`); [`RepoError::InvalidRefName`] if invalid.
pub fn validate_ref_name(name: &str) -> Result<()> {
    if is_valid_ref_name(name) {
        Ok(())
    } else {
        Err(RepoError::InvalidRefName(name.to_owned()))
    }
}

/// Whether `name` is a valid remote name (`ostree_validate_remote_name`).
pub fn is_valid_remote_name(name: &str) -> bool {
    regex_matches(&format!("^{REF_FRAGMENT_REGEXP}$"), name)
}

/// Checks a remote name; [`RepoError::InvalidRemoteName`] if invalid.
pub fn validate_remote_name(name: &str) -> Result<()> {
    if is_valid_remote_name(name) {
        Ok(())
    } else {
        Err(RepoError::InvalidRemoteName(name.to_owned()))
    }
}

/// Whether `id` is a valid collection id (`ostree_validate_collection_id`, which is
/// `g_dbus_is_interface_name`).
pub fn is_valid_collection_id(id: &str) -> bool {
    if id.is_empty() || id.len() > 255 {
        return false;
    }
    let mut elements = 0;
    for element in id.split('.') {
        let mut bytes = element.bytes();
        match bytes.next() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
            _ => return false,
        }
        if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return false;
        }
        elements += 1;
    }
    elements >= 2
}

/// Checks a collection id; [`RepoError::InvalidCollectionId`] if invalid.
pub fn validate_collection_id(id: &str) -> Result<()> {
    if is_valid_collection_id(id) {
        Ok(())
    } else {
        Err(RepoError::InvalidCollectionId(id.to_owned()))
    }
}

/// Splits `REMOTE:REF` (or a bare `REF`) as `ostree_parse_refspec` does: the remote
/// must be a valid remote name, the ref a valid ref name.
pub fn parse_refspec(spec: &str) -> Result<(Option<String>, String)> {
    let (remote, name) = match spec.split_once(':') {
        Some((remote, name)) => (Some(remote), name),
        None => (None, spec),
    };
    if let Some(remote) = remote {
        if !is_valid_remote_name(remote) {
            return Err(RepoError::InvalidRefName(spec.to_owned()));
        }
    }
    if !is_valid_ref_name(name) {
        return Err(RepoError::InvalidRefName(spec.to_owned()));
    }
    Ok((remote.map(str::to_owned), name.to_owned()))
}

/// Which of the three ref namespaces a ref lives in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "kind", content = "owner", rename_all = "lowercase")]
pub enum RefKind {
    /// `refs/heads/REF`: the repository's own refs (its own collection, if it has one).
    Head,
    /// `refs/remotes/REMOTE/REF`.
    Remote(String),
    /// `refs/mirrors/COLLECTION-ID/REF`.
    Mirror(String),
}

impl RefKind {
    /// The directory holding refs of this kind, relative to the repository root.
    pub fn relative_dir(&self) -> PathBuf {
        match self {
            RefKind::Head => PathBuf::from("refs/heads"),
            RefKind::Remote(remote) => Path::new("refs/remotes").join(remote),
            RefKind::Mirror(collection) => Path::new("refs/mirrors").join(collection),
        }
    }

    /// Checks the remote name or collection id this kind carries.
    pub fn validate(&self) -> Result<()> {
        match self {
            RefKind::Head => Ok(()),
            RefKind::Remote(remote) => validate_remote_name(remote),
            RefKind::Mirror(collection) => validate_collection_id(collection),
        }
    }
}

/// Where the ref `name` of `kind` lives: `ROOT/refs/...`. Validates both names, so
/// the path never leaves the refs directory.
pub fn ref_path(root: &Path, kind: &RefKind, name: &str) -> Result<PathBuf> {
    kind.validate()?;
    validate_ref_name(name)?;
    Ok(root.join(kind.relative_dir()).join(name))
}

/// Longest ref file accepted: 64 hex digits and a newline.
const MAX_REF_FILE: usize = 65;

/// Parses the contents of a ref file: exactly 64 lowercase hex digits, optionally
/// followed by one newline. Anything else is [`RepoError::CorruptRef`] naming `path`.
pub fn parse_ref_contents(path: &Path, contents: &[u8]) -> Result<Checksum> {
    let hex = contents.strip_suffix(b"\n").unwrap_or(contents);
    let corrupt = || RepoError::CorruptRef {
        path: path.to_owned(),
    };
    if hex.len() != 64 || !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(corrupt());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).map_err(|_| corrupt())?;
    Ok(Checksum(out))
}

/// Reads the ref file `relative` beneath `tree` (the repository root): never
/// through a FIFO, device or link out of the repository, at most one ref's size.
fn read_ref_file(tree: &Tree, relative: &Path) -> Result<Option<Checksum>> {
    match tree.read(relative, MAX_REF_FILE as u64) {
        Ok(contents) => parse_ref_contents(&tree.path().join(relative), &contents).map(Some),
        Err(BeneathError::NotFound { .. }) => Ok(None),
        // A directory where a ref would be (`os` while `os/stable` exists): no ref.
        Err(BeneathError::NotRegular {
            kind: "directory", ..
        }) => Ok(None),
        Err(BeneathError::TooLarge { path, .. }) => Err(RepoError::CorruptRef { path }),
        Err(e) => Err(e.into()),
    }
}

/// Opens a repository root for reading refs; `None` if it does not exist.
fn open_root(root: &Path) -> Result<Option<Tree>> {
    match Tree::open(root) {
        Ok(tree) => Ok(Some(tree)),
        Err(BeneathError::Lost { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads a ref. `Ok(None)` if it does not exist; [`RepoError::CorruptRef`] if the file
/// holds anything but a checksum. Ref aliases (symlinks) are followed within the
/// repository; a FIFO, device or link out of it is an error.
pub fn read_ref(root: &Path, kind: &RefKind, name: &str) -> Result<Option<Checksum>> {
    ref_path(root, kind, name)?;
    let Some(tree) = open_root(root)? else {
        return Ok(None);
    };
    read_ref_file(&tree, &kind.relative_dir().join(name))
}

/// Writes a ref durably: a temporary file in the ref's directory, fsync, rename over
/// the ref, fsync of the directory. Missing directories are created (and made
/// durable in their parents).
pub fn write_ref(root: &Path, kind: &RefKind, name: &str, checksum: &Checksum) -> Result<()> {
    let path = ref_path(root, kind, name)?;
    let (dir, file_name) = split_parent(&path);
    durable::create_dirs(&dir)?;
    durable::write_atomic(&dir, &file_name, format!("{checksum}\n").as_bytes())
}

/// Deletes a ref; returns whether it existed. Directories left empty below the
/// kind's directory (`refs/heads/os/` after deleting `os/stable`) are removed so they
/// cannot block a later ref of that name. The change is made durable.
pub fn delete_ref(root: &Path, kind: &RefKind, name: &str) -> Result<bool> {
    let path = ref_path(root, kind, name)?;
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => return Ok(false),
        Ok(_) => {}
        Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(false)
        }
        Err(err) => return Err(RepoError::io(&path, err)),
    }
    fs::remove_file(&path).map_err(|err| RepoError::io(&path, err))?;
    let base = root.join(kind.relative_dir());
    let mut dir = path.parent().map(Path::to_path_buf);
    while let Some(current) = dir {
        if current == base || !current.starts_with(&base) {
            break;
        }
        if fs::remove_dir(&current).is_err() {
            break;
        }
        dir = current.parent().map(Path::to_path_buf);
    }
    // Sync the deepest directory that still exists: the unlink (or rmdir) is in it.
    let mut sync = path.parent().map(Path::to_path_buf);
    while let Some(current) = sync {
        match durable::sync_dir(&current) {
            Ok(()) => break,
            Err(RepoError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                sync = current.parent().map(Path::to_path_buf);
            }
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

/// Every ref in the repository, sorted by kind (heads, remotes, mirrors), then owner,
/// then name. Files whose names are not valid refs (temporary files) are skipped; a
/// valid name holding junk is [`RepoError::CorruptRef`].
pub fn list_refs(root: &Path) -> Result<Vec<(RefKind, String, Checksum)>> {
    list_refs_with(root, &mut |refused| Err(refused))
}

/// As [`list_refs`], but a ref file refused as unsafe (a link out of the
/// repository, a FIFO, a device) is left out and handed to `skipped`, not an error:
/// for a repository this computer serves, one planted link must not stop sharing
/// the rest.
pub fn list_refs_skipping_unsafe(
    root: &Path,
    skipped: &mut dyn FnMut(RepoError),
) -> Result<Vec<(RefKind, String, Checksum)>> {
    list_refs_with(root, &mut |refused| {
        skipped(refused);
        Ok(())
    })
}

/// What to do with a ref file `beneath` refused: fail, or go on without it.
type OnRefused<'a> = dyn FnMut(RepoError) -> Result<()> + 'a;

fn list_refs_with(
    root: &Path,
    on_refused: &mut OnRefused<'_>,
) -> Result<Vec<(RefKind, String, Checksum)>> {
    let mut out = Vec::new();
    let Some(tree) = open_root(root)? else {
        return Ok(out);
    };
    collect_refs(
        &tree,
        Path::new("refs/heads"),
        "",
        &RefKind::Head,
        &mut out,
        on_refused,
    )?;
    for (top, make) in [
        ("refs/remotes", RefKind::Remote as fn(String) -> RefKind),
        ("refs/mirrors", RefKind::Mirror as fn(String) -> RefKind),
    ] {
        let dir = root.join(top);
        for (owner, path) in sorted_entries(&dir)? {
            let kind = make(owner);
            if kind.validate().is_err() || !is_real_dir(&path)? {
                continue;
            }
            let relative = kind.relative_dir();
            collect_refs(&tree, &relative, "", &kind, &mut out, on_refused)?;
        }
    }
    out.sort();
    Ok(out)
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(RepoError::io(dir, err)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| RepoError::io(dir, err))?;
        // Names that are not UTF-8 cannot be refs.
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn is_real_dir(path: &Path) -> Result<bool> {
    Ok(fs::symlink_metadata(path)
        .map_err(|err| RepoError::io(path, err))?
        .is_dir())
}

fn collect_refs(
    tree: &Tree,
    relative_dir: &Path,
    prefix: &str,
    kind: &RefKind,
    out: &mut Vec<(RefKind, String, Checksum)>,
    on_refused: &mut OnRefused<'_>,
) -> Result<()> {
    for (file_name, path) in sorted_entries(&tree.path().join(relative_dir))? {
        let name = format!("{prefix}{file_name}");
        if !is_valid_ref_name(&name) {
            continue;
        }
        let meta = fs::symlink_metadata(&path).map_err(|err| RepoError::io(&path, err))?;
        let relative = relative_dir.join(&file_name);
        if meta.is_dir() {
            collect_refs(tree, &relative, &format!("{name}/"), kind, out, on_refused)?;
        } else {
            match read_ref_file(tree, &relative) {
                // A regular file, or an alias symlink to one (a dangling alias is
                // skipped).
                Ok(Some(checksum)) => out.push((kind.clone(), name, checksum)),
                Ok(None) => {}
                Err(
                    e @ RepoError::Beneath(
                        BeneathError::Escapes { .. } | BeneathError::NotRegular { .. },
                    ),
                ) => on_refused(e)?,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn split_parent(path: &Path) -> (PathBuf, String) {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refspecs() {
        assert_eq!(
            parse_refspec("origin:os/stable").unwrap(),
            (Some("origin".to_owned()), "os/stable".to_owned())
        );
        assert_eq!(
            parse_refspec("os/stable").unwrap(),
            (None, "os/stable".into())
        );
        for bad in ["", ":a", "a:", "a b:c", "a:b:c", "o/x:a", "a:/b"] {
            assert!(parse_refspec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ref_contents() {
        let hex = "ab".repeat(32);
        let p = Path::new("x");
        assert!(parse_ref_contents(p, hex.as_bytes()).is_ok());
        assert!(parse_ref_contents(p, format!("{hex}\n").as_bytes()).is_ok());
        for bad in [
            format!("{hex}\n\n"),
            format!("{hex} "),
            format!(" {hex}"),
            hex.to_uppercase(),
            hex[1..].to_owned(),
            String::new(),
        ] {
            assert!(matches!(
                parse_ref_contents(p, bad.as_bytes()),
                Err(RepoError::CorruptRef { .. })
            ));
        }
    }
}
