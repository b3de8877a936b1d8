//! The metadata objects (commit, dirtree, dirmeta) and their GVariant forms.
//!
//! Parsing is strict: the bytes must be a GVariant of the right type in normal form,
//! every checksum 32 bytes, and every name in a tree safe to check out. Serializing
//! produces the normal form, which is what `ostree` checksums.

use glib::prelude::*;
use glib::{Variant, VariantDict, VariantTy};

use crate::repo::checksum::{Checksum, ObjectName, ObjectType};
use crate::repo::error::{RepoError, Result};

pub const COMMIT_TYPE: &str = "(a{sv}aya(say)sstayay)";
pub const DIRTREE_TYPE: &str = "(a(say)a(sayay))";
pub const DIRMETA_TYPE: &str = "(uuua(ayay))";
pub const METADATA_TYPE: &str = "a{sv}";

/// Extended attributes as ostree stores them: (name with trailing NUL, value).
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Parses `data` as a GVariant of `type_string`, refusing anything not in normal form.
pub fn variant_from_bytes(what: &'static str, type_string: &str, data: &[u8]) -> Result<Variant> {
    let ty = VariantTy::new(type_string).expect("static GVariant type");
    let variant = Variant::from_bytes_with_type(&glib::Bytes::from(data), ty);
    if !variant.is_normal_form() {
        return Err(RepoError::format(
            what,
            "not a GVariant of the expected type in normal form",
        ));
    }
    Ok(variant)
}

fn bytes_child(v: &Variant, index: usize) -> Vec<u8> {
    v.child_value(index)
        .fixed_array::<u8>()
        .map(|s| s.to_vec())
        .unwrap_or_default()
}

fn checksum_child(what: &'static str, v: &Variant, index: usize) -> Result<Checksum> {
    let bytes = bytes_child(v, index);
    Checksum::from_bytes(&bytes)
        .map_err(|_| RepoError::format(what, format!("checksum of {} bytes", bytes.len())))
}

fn string_child(v: &Variant, index: usize) -> String {
    v.child_value(index).str().unwrap_or_default().to_owned()
}

/// ostree stores integers big-endian inside native GVariant integers.
fn u32_be(v: &Variant, index: usize) -> u32 {
    u32::from_be(v.child_value(index).get::<u32>().unwrap_or_default())
}

fn u64_be(v: &Variant, index: usize) -> u64 {
    u64::from_be(v.child_value(index).get::<u64>().unwrap_or_default())
}

fn bytes_variant(bytes: &[u8]) -> Variant {
    Variant::array_from_fixed_array(bytes)
}

pub(crate) fn xattrs_from_variant(v: &Variant) -> Xattrs {
    v.iter()
        .map(|pair| (bytes_child(&pair, 0), bytes_child(&pair, 1)))
        .collect()
}

pub(crate) fn xattrs_to_variant(xattrs: &Xattrs) -> Variant {
    Variant::array_from_iter_with_type(
        VariantTy::new("(ayay)").expect("static type"),
        xattrs.iter().map(|(name, value)| {
            Variant::tuple_from_iter([bytes_variant(name), bytes_variant(value)])
        }),
    )
}

/// Refuses names that could escape a checkout or that `ostree` itself would refuse.
pub fn validate_tree_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(RepoError::UnsafeName(name.escape_debug().to_string()));
    }
    Ok(())
}

/// `(uuua(ayay))`: ownership, mode and xattrs of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub xattrs: Xattrs,
}

impl DirMeta {
    pub fn parse(data: &[u8]) -> Result<Self> {
        let v = variant_from_bytes("dirmeta", DIRMETA_TYPE, data)?;
        let meta = Self {
            uid: u32_be(&v, 0),
            gid: u32_be(&v, 1),
            mode: u32_be(&v, 2),
            xattrs: xattrs_from_variant(&v.child_value(3)),
        };
        if meta.mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(RepoError::format(
                "dirmeta",
                format!("mode {:o} is not a directory", meta.mode),
            ));
        }
        Ok(meta)
    }

    pub fn to_variant(&self) -> Variant {
        Variant::tuple_from_iter([
            self.uid.to_be().to_variant(),
            self.gid.to_be().to_variant(),
            self.mode.to_be().to_variant(),
            xattrs_to_variant(&self.xattrs),
        ])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_variant().data().to_vec()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirTreeFile {
    pub name: String,
    pub checksum: Checksum,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirTreeDir {
    pub name: String,
    pub tree: Checksum,
    pub meta: Checksum,
}

/// `(a(say)a(sayay))`: the files and subdirectories of one directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirTree {
    pub files: Vec<DirTreeFile>,
    pub dirs: Vec<DirTreeDir>,
}

impl DirTree {
    /// The objects this directory names: its files, then each subdirectory's
    /// dirmeta and dirtree.
    pub fn children(&self) -> Vec<ObjectName> {
        let mut out = Vec::with_capacity(self.files.len() + self.dirs.len() * 2);
        out.extend(
            self.files
                .iter()
                .map(|f| ObjectName::new(f.checksum, ObjectType::File)),
        );
        for d in &self.dirs {
            out.push(ObjectName::new(d.meta, ObjectType::DirMeta));
            out.push(ObjectName::new(d.tree, ObjectType::DirTree));
        }
        out
    }

    pub fn parse(data: &[u8]) -> Result<Self> {
        let v = variant_from_bytes("dirtree", DIRTREE_TYPE, data)?;
        let mut tree = DirTree::default();
        for entry in v.child_value(0).iter() {
            tree.files.push(DirTreeFile {
                name: string_child(&entry, 0),
                checksum: checksum_child("dirtree", &entry, 1)?,
            });
        }
        for entry in v.child_value(1).iter() {
            tree.dirs.push(DirTreeDir {
                name: string_child(&entry, 0),
                tree: checksum_child("dirtree", &entry, 1)?,
                meta: checksum_child("dirtree", &entry, 2)?,
            });
        }
        tree.validate()?;
        Ok(tree)
    }

    /// Every name safe, and no name twice: a file and a directory of the same
    /// name would let a checkout write through a symlink.
    fn validate(&self) -> Result<()> {
        let mut names: Vec<&str> = self
            .files
            .iter()
            .map(|f| f.name.as_str())
            .chain(self.dirs.iter().map(|d| d.name.as_str()))
            .collect();
        for name in &names {
            validate_tree_name(name)?;
        }
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(RepoError::format(
                "dirtree",
                format!("“{}” appears twice", pair[0]),
            ));
        }
        Ok(())
    }

    pub fn to_variant(&self) -> Variant {
        let files = Variant::array_from_iter_with_type(
            VariantTy::new("(say)").expect("static type"),
            self.files.iter().map(|f| {
                Variant::tuple_from_iter([
                    f.name.to_variant(),
                    bytes_variant(f.checksum.as_bytes()),
                ])
            }),
        );
        let dirs = Variant::array_from_iter_with_type(
            VariantTy::new("(sayay)").expect("static type"),
            self.dirs.iter().map(|d| {
                Variant::tuple_from_iter([
                    d.name.to_variant(),
                    bytes_variant(d.tree.as_bytes()),
                    bytes_variant(d.meta.as_bytes()),
                ])
            }),
        );
        Variant::tuple_from_iter([files, dirs])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_variant().data().to_vec()
    }
}

/// `(a{sv}aya(say)sstayay)`: one commit.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The `a{sv}` metadata (version, bindings, …).
    pub metadata: Variant,
    pub parent: Option<Checksum>,
    pub related: Vec<(String, Checksum)>,
    pub subject: String,
    pub body: String,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    pub root_tree: Checksum,
    pub root_meta: Checksum,
}

impl Commit {
    /// The objects this commit names: its root dirmeta and dirtree.
    pub fn children(&self) -> Vec<ObjectName> {
        vec![
            ObjectName::new(self.root_meta, ObjectType::DirMeta),
            ObjectName::new(self.root_tree, ObjectType::DirTree),
        ]
    }

    pub fn parse(data: &[u8]) -> Result<Self> {
        let v = variant_from_bytes("commit", COMMIT_TYPE, data)?;
        let parent_bytes = bytes_child(&v, 1);
        let parent = match parent_bytes.len() {
            0 => None,
            _ => Some(Checksum::from_bytes(&parent_bytes).map_err(|_| {
                RepoError::format(
                    "commit",
                    format!("parent checksum of {} bytes", parent_bytes.len()),
                )
            })?),
        };
        let mut related = Vec::new();
        for entry in v.child_value(2).iter() {
            related.push((
                string_child(&entry, 0),
                checksum_child("commit", &entry, 1)?,
            ));
        }
        Ok(Self {
            metadata: v.child_value(0),
            parent,
            related,
            subject: string_child(&v, 3),
            body: string_child(&v, 4),
            timestamp: u64_be(&v, 5),
            root_tree: checksum_child("commit", &v, 6)?,
            root_meta: checksum_child("commit", &v, 7)?,
        })
    }

    pub fn to_variant(&self) -> Variant {
        let parent = self.parent.map(|p| p.0.to_vec()).unwrap_or_default();
        let related = Variant::array_from_iter_with_type(
            VariantTy::new("(say)").expect("static type"),
            self.related.iter().map(|(name, c)| {
                Variant::tuple_from_iter([name.to_variant(), bytes_variant(c.as_bytes())])
            }),
        );
        Variant::tuple_from_iter([
            self.metadata.clone(),
            bytes_variant(&parent),
            related,
            self.subject.to_variant(),
            self.body.to_variant(),
            self.timestamp.to_be().to_variant(),
            bytes_variant(self.root_tree.as_bytes()),
            bytes_variant(self.root_meta.as_bytes()),
        ])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_variant().data().to_vec()
    }

    /// A metadata value by key, if present with the expected type.
    pub fn metadata_value(&self, key: &str, type_string: &str) -> Option<Variant> {
        let ty = VariantTy::new(type_string).ok()?;
        VariantDict::new(Some(&self.metadata)).lookup_value(key, Some(ty))
    }

    /// `version` from the commit metadata, as `ostree commit --add-metadata-string=version=…` sets.
    pub fn version(&self) -> Option<String> {
        self.metadata_value("version", "s")?
            .str()
            .map(str::to_owned)
    }
}

/// One entry of a commit's `ostree.sizes` index (`ostree commit --generate-sizes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectSize {
    pub name: ObjectName,
    /// Bytes as stored in an archive repository (what a pull downloads).
    pub archived: u64,
    /// Bytes once checked out.
    pub unpacked: u64,
}

impl Commit {
    /// The `ostree.sizes` index, if the commit carries one. Each entry is the
    /// 32-byte checksum, the archived and unpacked sizes as LEB128 varints, then
    /// (since ostree 2020.1) one byte of object type; older entries are file
    /// objects. `None` when absent or malformed: sizes are only a forecast.
    pub fn sizes(&self) -> Option<Vec<ObjectSize>> {
        let index = self.metadata_value("ostree.sizes", "aay")?;
        (0..index.n_children())
            .map(|i| parse_size_entry(index.child_value(i).fixed_array::<u8>().ok()?))
            .collect()
    }
}

fn parse_size_entry(entry: &[u8]) -> Option<ObjectSize> {
    let checksum = Checksum::from_bytes(entry.get(..32)?).ok()?;
    let mut rest = &entry[32..];
    let mut varint = || -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, tail) = rest.split_first()?;
            rest = tail;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    };
    let archived = varint()?;
    let unpacked = varint()?;
    let kind = match rest {
        [] | [1] => ObjectType::File,
        [2] => ObjectType::DirTree,
        [3] => ObjectType::DirMeta,
        _ => return None,
    };
    Some(ObjectSize {
        name: ObjectName::new(checksum, kind),
        archived,
        unpacked,
    })
}

/// The objects a metadata object names: a commit its root dirmeta and dirtree, a
/// dirtree its files, then each subdirectory's dirmeta and dirtree.
pub fn children(name: &ObjectName, bytes: &[u8]) -> Result<Vec<ObjectName>> {
    Ok(match name.kind {
        ObjectType::Commit => Commit::parse(bytes)?.children(),
        ObjectType::DirTree => DirTree::parse(bytes)?.children(),
        _ => Vec::new(),
    })
}

/// Checks a metadata object (commit, dirtree, dirmeta, detached metadata) received
/// or read as `name`: its content matches its checksum (detached metadata is named
/// by its commit, not its content) and it parses, so a malformed or unsafe object
/// is never stored. Returns the objects it names ([`children`]).
pub fn verify_metadata(name: &ObjectName, bytes: &[u8]) -> Result<Vec<ObjectName>> {
    if name.kind == ObjectType::CommitMeta {
        variant_from_bytes("detached metadata", METADATA_TYPE, bytes)?;
        return Ok(Vec::new());
    }
    let actual = Checksum::digest(bytes);
    if actual != name.checksum {
        return Err(RepoError::ChecksumMismatch {
            expected: *name,
            actual: actual.to_hex(),
        });
    }
    match name.kind {
        ObjectType::DirMeta => DirMeta::parse(bytes).map(|_| Vec::new()),
        ObjectType::File => Err(RepoError::format(
            "metadata object",
            format!("{name} is a file object"),
        )),
        _ => children(name, bytes),
    }
}

/// An empty `a{sv}`.
pub fn empty_metadata() -> Variant {
    VariantDict::new(None).end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_entries_as_ostree_writes_them() {
        let c = Checksum::digest(b"x");
        let entry = |tail: &[u8]| [c.as_bytes().as_slice(), tail].concat();
        // 100069 = 0xe5 0x8d 0x06 in LEB128; type byte 1 = file.
        assert_eq!(
            parse_size_entry(&entry(&[0xe5, 0x8d, 0x06, 0x23, 0x01])),
            Some(ObjectSize {
                name: ObjectName::new(c, ObjectType::File),
                archived: 100_069,
                unpacked: 0x23,
            })
        );
        let dirmeta = parse_size_entry(&entry(&[0x0c, 0x0c, 0x03])).unwrap();
        assert_eq!(dirmeta.name.kind, ObjectType::DirMeta);
        // Entries from before the type byte are file objects.
        assert_eq!(
            parse_size_entry(&entry(&[5, 6])).unwrap().name.kind,
            ObjectType::File
        );
        for bad in [&[][..], &[0x80], &[5], &[5, 6, 9], &[5, 6, 1, 0]] {
            assert_eq!(parse_size_entry(&entry(bad)), None, "{bad:?}");
        }
        assert_eq!(parse_size_entry(&[0; 31]), None);
    }

    #[test]
    fn dirtree_round_trip_and_unsafe_names() {
        let c = Checksum::digest(b"x");
        let tree = DirTree {
            files: vec![DirTreeFile {
                name: "a".into(),
                checksum: c,
            }],
            dirs: vec![DirTreeDir {
                name: "b".into(),
                tree: c,
                meta: c,
            }],
        };
        let bytes = tree.to_bytes();
        assert_eq!(DirTree::parse(&bytes).unwrap(), tree);

        for bad in ["..", ".", "a/b", ""] {
            let t = DirTree {
                files: vec![DirTreeFile {
                    name: bad.into(),
                    checksum: c,
                }],
                dirs: vec![],
            };
            assert!(
                matches!(DirTree::parse(&t.to_bytes()), Err(RepoError::UnsafeName(_))),
                "{bad:?}"
            );
        }
        let dup = DirTree {
            files: vec![DirTreeFile {
                name: "a".into(),
                checksum: c,
            }],
            dirs: vec![DirTreeDir {
                name: "a".into(),
                tree: c,
                meta: c,
            }],
        };
        assert!(DirTree::parse(&dup.to_bytes()).is_err());
    }

    #[test]
    fn commit_round_trip() {
        let c = Checksum::digest(b"x");
        let commit = Commit {
            metadata: empty_metadata(),
            parent: Some(c),
            related: vec![],
            subject: "s".into(),
            body: String::new(),
            timestamp: 1_700_000_000,
            root_tree: c,
            root_meta: c,
        };
        let bytes = commit.to_bytes();
        let parsed = Commit::parse(&bytes).unwrap();
        assert_eq!(parsed.timestamp, 1_700_000_000);
        assert_eq!(parsed.parent, Some(c));
        assert_eq!(parsed.to_bytes(), bytes);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Commit::parse(b"garbage").is_err());
        assert!(DirMeta::parse(&[0u8; 3]).is_err());
    }
}

#[cfg(test)]
mod verify_tests {
    use super::*;

    #[test]
    fn verify_metadata_checks_names_and_lists_children() {
        let file = Checksum::digest(b"file");
        let (sub_tree, sub_meta) = (Checksum::digest(b"tree"), Checksum::digest(b"meta"));
        let tree = DirTree {
            files: vec![DirTreeFile {
                name: "a".into(),
                checksum: file,
            }],
            dirs: vec![DirTreeDir {
                name: "d".into(),
                tree: sub_tree,
                meta: sub_meta,
            }],
        };
        let bytes = tree.to_bytes();
        let name = ObjectName::new(Checksum::digest(&bytes), ObjectType::DirTree);
        assert_eq!(
            verify_metadata(&name, &bytes).unwrap(),
            vec![
                ObjectName::new(file, ObjectType::File),
                ObjectName::new(sub_meta, ObjectType::DirMeta),
                ObjectName::new(sub_tree, ObjectType::DirTree),
            ]
        );
        // Named as something else: refused.
        let wrong = ObjectName::new(file, ObjectType::DirTree);
        assert!(matches!(
            verify_metadata(&wrong, &bytes),
            Err(RepoError::ChecksumMismatch { .. })
        ));
        // Well named, but not a dirmeta.
        let as_meta = ObjectName::new(name.checksum, ObjectType::DirMeta);
        assert!(verify_metadata(&as_meta, &bytes).is_err());
        // An unsafe name inside a well-named tree.
        let bad = DirTree {
            files: vec![DirTreeFile {
                name: "..".into(),
                checksum: file,
            }],
            dirs: vec![],
        }
        .to_bytes();
        let bad_name = ObjectName::new(Checksum::digest(&bad), ObjectType::DirTree);
        assert!(verify_metadata(&bad_name, &bad).is_err());
    }
}
