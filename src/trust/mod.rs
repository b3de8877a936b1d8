//! Trust: commit and summary signatures (GPG `ostree.gpgsigs`, ed25519
//! `ostree.sign.ed25519`), ref and collection bindings, and downgrade checks.
//!
//! A [`TrustPolicy`] is built once per remote from the repository path and the
//! remote's configuration ([`RemoteConfig`]: `gpg-verify`, `sign-verify`, their
//! `-summary` forms, the ed25519 key settings); it loads the keys then. Checking is
//! pure: [`verify_commit`] and [`verify_summary`] read nothing from disk.
//!
//! The order of checks for a commit follows libostree: signatures over the raw
//! `.commit` bytes first (GPG when `gpg-verify`, ed25519 when `sign-verify`; each
//! enabled system needs at least one valid signature), then the commit is parsed
//! (normal-form GVariant `(a{sv}aya(say)sstayay)`), then its bindings, then the
//! downgrade check against the installed commit.

pub mod ed25519;
mod error;
pub mod gpg;
mod meta;

use std::path::{Path, PathBuf};

use glib::{Variant, VariantTy};

use crate::repo::config::RemoteConfig;
use crate::repo::Checksum;

pub use ed25519::{
    append_ed25519_signature, public_key_from_secret, sign_ed25519, ED25519_METADATA_KEY,
};
pub use error::{KeyName, SignatureKind, Subject, TrustError};
pub use gpg::{import_key_bytes, import_keys, keyring_path, GpgSigner, Keyring};

/// Detached metadata key holding OpenPGP signatures (`aay`).
pub const GPG_METADATA_KEY: &str = "ostree.gpgsigs";
/// Commit metadata key listing the refs a commit may be offered for (`as`).
pub const REF_BINDING_KEY: &str = "ostree.ref-binding";
/// Commit metadata key naming the collection a commit belongs to (`s`).
pub const COLLECTION_BINDING_KEY: &str = "ostree.collection-binding";
/// GVariant type of a commit object.
pub const COMMIT_VARIANT_TYPE: &str = "(a{sv}aya(say)sstayay)";

/// What Ferry requires of commits and summaries from one remote, with its keys
/// loaded.
#[derive(Clone, Debug)]
pub struct TrustPolicy {
    pub remote_name: String,
    /// Require a valid GPG signature on commits.
    pub gpg_verify: bool,
    /// Require a valid GPG signature on the summary.
    pub gpg_verify_summary: bool,
    /// The keyring files the GPG keys were read from.
    pub gpg_keyring_paths: Vec<PathBuf>,
    /// The trusted GPG keys.
    pub gpg_keyring: Keyring,
    /// Require a valid ed25519 signature on commits.
    pub sign_verify: bool,
    /// Require a valid ed25519 signature on the summary.
    pub sign_verify_summary: bool,
    /// Trusted ed25519 public keys.
    pub ed25519_trusted: Vec<ed25519::PublicKey>,
    /// Revoked ed25519 public keys: never accepted, even when also trusted.
    pub ed25519_revoked: Vec<ed25519::PublicKey>,
    /// The remote's collection ID: when set, commits must carry both bindings.
    pub collection_id: Option<String>,
    /// Accept commits older than the installed one (`--allow-downgrade`).
    pub allow_downgrade: bool,
    /// Root under which the system key directories (`etc/ostree`,
    /// `usr/share/ostree`) were read; `/` outside tests.
    pub system_root: PathBuf,
}

impl TrustPolicy {
    /// Loads the policy for a remote of the repository at `repo_path`, with system
    /// keys from `/etc/ostree` and `/usr/share/ostree`.
    pub fn for_remote(repo_path: &Path, remote: &RemoteConfig) -> Result<Self, TrustError> {
        Self::for_remote_with_system_root(repo_path, remote, Path::new("/"))
    }

    /// As [`TrustPolicy::for_remote`], reading system keys below `system_root`.
    ///
    /// GPG keys: the remote's keyring `REPO/NAME.trustedkeys.gpg`; when it has none,
    /// the global keyrings `usr/share/ostree/trusted.gpg.d/*.gpg` (libostree's rule).
    /// ed25519 keys: the remote's inline key and key file; when it configures
    /// neither, the system `trusted.ed25519(.d)` files. Revoked ed25519 keys always
    /// come from the system `revoked.ed25519(.d)` files.
    pub fn for_remote_with_system_root(
        repo_path: &Path,
        remote: &RemoteConfig,
        system_root: &Path,
    ) -> Result<Self, TrustError> {
        let mut gpg_keyring = Keyring::new();
        let mut gpg_keyring_paths = Vec::new();
        if remote.gpg_verify || remote.gpg_verify_summary {
            let own = keyring_path(repo_path, &remote.name);
            let files = if own.exists() {
                vec![own]
            } else {
                global_gpg_keyrings(system_root)
            };
            for file in files {
                gpg_keyring.add_file(&file)?;
                gpg_keyring_paths.push(file);
            }
        }

        let mut ed25519_trusted = Vec::new();
        let mut ed25519_revoked = Vec::new();
        if remote.sign_verify || remote.sign_verify_summary {
            let mut add = |keys: Vec<ed25519::PublicKey>| {
                for key in keys {
                    if !ed25519_trusted.contains(&key) {
                        ed25519_trusted.push(key);
                    }
                }
            };
            if let Some(file) = &remote.verification_ed25519_file {
                add(ed25519::load_key_file(file)?);
            }
            if let Some(keys) = &remote.verification_ed25519_key {
                // One base64 key; a list (separated by `;`, `,` or spaces) is
                // accepted too: base64 never contains those.
                let place = format!("in verification-ed25519-key of remote {}", remote.name);
                let mut any = false;
                for key in keys.split([';', ',', ' ', '\t']).filter(|k| !k.is_empty()) {
                    add(vec![ed25519::parse_public_key(key, &place)?]);
                    any = true;
                }
                if !any {
                    add(vec![ed25519::parse_public_key(keys, &place)?]);
                }
            }
            if remote.verification_ed25519_file.is_none()
                && remote.verification_ed25519_key.is_none()
            {
                add(ed25519::load_system_keys(system_root, "trusted")?);
            }
            ed25519_revoked = ed25519::load_system_keys(system_root, "revoked")?;
        }

        Ok(Self {
            remote_name: remote.name.clone(),
            gpg_verify: remote.gpg_verify,
            gpg_verify_summary: remote.gpg_verify_summary,
            gpg_keyring_paths,
            gpg_keyring,
            sign_verify: remote.sign_verify,
            sign_verify_summary: remote.sign_verify_summary,
            ed25519_trusted,
            ed25519_revoked,
            collection_id: remote.collection_id.clone(),
            allow_downgrade: false,
            system_root: system_root.to_owned(),
        })
    }

    /// Whether commits are accepted without any signature (both `gpg-verify` and
    /// `sign-verify` are off). Callers should warn loudly.
    pub fn allows_unsigned_commits(&self) -> bool {
        !self.gpg_verify && !self.sign_verify
    }

    /// Same as [`verify_commit`].
    pub fn verify_commit(&self, commit: &CommitToVerify<'_>) -> Result<VerifiedCommit, TrustError> {
        verify_commit(self, commit)
    }

    /// Same as [`verify_summary`].
    pub fn verify_summary(
        &self,
        summary_bytes: &[u8],
        summary_sig_bytes: Option<&[u8]>,
    ) -> Result<VerifiedSummary, TrustError> {
        verify_summary(self, summary_bytes, summary_sig_bytes)
    }
}

fn global_gpg_keyrings(system_root: &Path) -> Vec<PathBuf> {
    let dir = system_root.join("usr/share/ostree/trusted.gpg.d");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "gpg"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A commit offered for a ref, with what is needed to judge it.
#[derive(Clone, Debug)]
pub struct CommitToVerify<'a> {
    /// The raw `.commit` object bytes, exactly as received.
    pub commit_bytes: &'a [u8],
    /// The commit's detached metadata (`.commitmeta`, an `a{sv}`), if any.
    pub detached_metadata: Option<Variant>,
    /// The ref the commit is offered for (empty when pulling by checksum).
    pub ref_name: &'a str,
    /// The commit installed for this ref now, and its timestamp.
    pub current: Option<(Checksum, u64)>,
}

/// A commit that passed [`verify_commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCommit {
    /// sha256 of the commit bytes: the commit's name.
    pub checksum: Checksum,
    /// The commit's timestamp (Unix seconds).
    pub timestamp: u64,
    /// The key of the valid GPG signature, when GPG verification is on.
    pub gpg_signer: Option<GpgSigner>,
    /// The base64 key of the valid ed25519 signature, when `sign-verify` is on.
    pub ed25519_key: Option<String>,
    /// True when the remote verifies no signatures at all (gpg-verify=false and
    /// sign-verify=false): the commit was accepted unsigned. Warn loudly.
    pub unsigned_allowed: bool,
    /// The commit's `ostree.ref-binding`, if it has one.
    pub ref_bindings: Option<Vec<String>>,
    /// The commit's `ostree.collection-binding`, if it has one.
    pub collection_binding: Option<String>,
}

/// A summary that passed [`verify_summary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSummary {
    pub gpg_signer: Option<GpgSigner>,
    pub ed25519_key: Option<String>,
    /// True when the policy requires no summary signature.
    pub unsigned_allowed: bool,
}

/// Parses `.commitmeta` bytes (an `a{sv}` in normal form).
pub fn parse_detached_metadata(bytes: &[u8]) -> Result<Variant, TrustError> {
    meta::parse_vardict(bytes).map_err(|reason| TrustError::InvalidMetadata { reason })
}

/// Signatures found in a detached metadata or `summary.sig` dictionary.
struct Signatures {
    gpg: Vec<Vec<u8>>,
    ed25519: Vec<Vec<u8>>,
}

impl Signatures {
    fn from_dict(subject: &Subject, dict: Option<&Variant>) -> Result<Self, TrustError> {
        let mut out = Signatures {
            gpg: Vec::new(),
            ed25519: Vec::new(),
        };
        let Some(dict) = dict else {
            return Ok(out);
        };
        meta::check_vardict(dict).map_err(|reason| TrustError::InvalidSignatureData {
            subject: subject.clone(),
            reason,
        })?;
        for (key, kind, slot) in [
            (GPG_METADATA_KEY, SignatureKind::Gpg, &mut out.gpg),
            (
                ED25519_METADATA_KEY,
                SignatureKind::Ed25519,
                &mut out.ed25519,
            ),
        ] {
            if let Some(value) = meta::lookup(dict, key) {
                *slot =
                    meta::byte_arrays(&value).map_err(|reason| TrustError::MalformedSignature {
                        subject: subject.clone(),
                        kind,
                        reason: format!("{key}: {reason}"),
                    })?;
            }
        }
        Ok(out)
    }
}

/// Checks the signatures required by `policy` over `data`; returns the GPG signer and
/// the ed25519 key that made them.
fn check_signatures(
    policy: &TrustPolicy,
    subject: &Subject,
    data: &[u8],
    dict: Option<&Variant>,
    gpg_required: bool,
    ed25519_required: bool,
) -> Result<(Option<GpgSigner>, Option<String>), TrustError> {
    if !gpg_required && !ed25519_required {
        return Ok((None, None));
    }
    let sigs = Signatures::from_dict(subject, dict)?;
    let gpg_signer = if gpg_required {
        if sigs.gpg.is_empty() {
            return Err(TrustError::NotSigned {
                subject: subject.clone(),
                kind: SignatureKind::Gpg,
            });
        }
        Some(policy.gpg_keyring.verify(subject, data, &sigs.gpg)?)
    } else {
        None
    };
    let ed25519_key = if ed25519_required {
        let key = ed25519::verify(
            subject,
            &policy.ed25519_trusted,
            &policy.ed25519_revoked,
            data,
            &sigs.ed25519,
        )?;
        Some(ed25519::public_key_to_base64(&key))
    } else {
        None
    };
    Ok((gpg_signer, ed25519_key))
}

/// The parts of a commit object trust cares about.
struct CommitFields {
    timestamp: u64,
    ref_bindings: Option<Vec<String>>,
    collection_binding: Option<String>,
}

fn parse_commit(checksum: Checksum, bytes: &[u8]) -> Result<CommitFields, TrustError> {
    let invalid = |reason: &str| TrustError::InvalidCommit {
        checksum,
        reason: reason.to_owned(),
    };
    let ty = VariantTy::new(COMMIT_VARIANT_TYPE).expect("valid commit type");
    let commit = Variant::from_bytes_with_type(&glib::Bytes::from(bytes), ty);
    if !commit.is_normal_form() {
        return Err(invalid("it is not in GVariant normal form"));
    }
    let metadata = commit.child_value(0);
    let timestamp = u64::from_be(
        commit
            .child_value(5)
            .get::<u64>()
            .ok_or_else(|| invalid("its timestamp is not a t"))?,
    );

    let ref_bindings = match meta::lookup(&metadata, REF_BINDING_KEY) {
        None => None,
        Some(v) => Some(
            v.get::<Vec<String>>()
                .filter(|_| v.is_type(VariantTy::STRING_ARRAY))
                .ok_or_else(|| invalid("its ostree.ref-binding is not an as"))?,
        ),
    };
    let collection_binding = match meta::lookup(&metadata, COLLECTION_BINDING_KEY) {
        None => None,
        Some(v) => Some(
            v.str()
                .map(str::to_owned)
                .ok_or_else(|| invalid("its ostree.collection-binding is not an s"))?,
        ),
    };
    Ok(CommitFields {
        timestamp,
        ref_bindings,
        collection_binding,
    })
}

/// libostree's binding rule: a ref binding, when present, must list the ref; a
/// remote with a collection ID requires both bindings, and the collection binding
/// must equal the remote's collection ID.
fn check_bindings(
    checksum: Checksum,
    ref_name: &str,
    collection_id: Option<&str>,
    fields: &CommitFields,
) -> Result<(), TrustError> {
    match &fields.ref_bindings {
        None => {
            if let Some(collection_id) = collection_id {
                return Err(TrustError::MissingRefBinding {
                    checksum,
                    ref_name: ref_name.to_owned(),
                    collection_id: collection_id.to_owned(),
                });
            }
            return Ok(());
        }
        Some(bound) => {
            if !ref_name.is_empty() && !bound.iter().any(|r| r == ref_name) {
                return Err(TrustError::RefBindingMismatch {
                    checksum,
                    ref_name: ref_name.to_owned(),
                    bound: bound.clone(),
                });
            }
        }
    }
    if let Some(collection_id) = collection_id {
        match &fields.collection_binding {
            None => {
                return Err(TrustError::MissingCollectionBinding {
                    checksum,
                    ref_name: ref_name.to_owned(),
                    collection_id: collection_id.to_owned(),
                })
            }
            Some(bound) if bound != collection_id => {
                return Err(TrustError::CollectionBindingMismatch {
                    checksum,
                    ref_name: ref_name.to_owned(),
                    bound: bound.clone(),
                    expected: collection_id.to_owned(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Verifies a commit offered for a ref: signatures as the policy requires, bindings,
/// and that it is not older than the installed commit (the same commit is fine).
pub fn verify_commit(
    policy: &TrustPolicy,
    commit: &CommitToVerify<'_>,
) -> Result<VerifiedCommit, TrustError> {
    let checksum = Checksum::digest(commit.commit_bytes);
    let subject = Subject::commit(checksum, commit.ref_name);

    let (gpg_signer, ed25519_key) = check_signatures(
        policy,
        &subject,
        commit.commit_bytes,
        commit.detached_metadata.as_ref(),
        policy.gpg_verify,
        policy.sign_verify,
    )?;

    let fields = parse_commit(checksum, commit.commit_bytes)?;
    check_bindings(
        checksum,
        commit.ref_name,
        policy.collection_id.as_deref(),
        &fields,
    )?;

    if let Some((current, current_timestamp)) = commit.current {
        if current != checksum && fields.timestamp < current_timestamp && !policy.allow_downgrade {
            return Err(TrustError::Downgrade {
                checksum,
                ref_name: commit.ref_name.to_owned(),
                timestamp: fields.timestamp,
                current,
                current_timestamp,
            });
        }
    }

    Ok(VerifiedCommit {
        checksum,
        timestamp: fields.timestamp,
        gpg_signer,
        ed25519_key,
        unsigned_allowed: policy.allows_unsigned_commits(),
        ref_bindings: fields.ref_bindings,
        collection_binding: fields.collection_binding,
    })
}

/// Verifies a summary against `summary.sig` (an `a{sv}` with `ostree.gpgsigs` and/or
/// `ostree.sign.ed25519` over the raw summary bytes), as `gpg-verify-summary` and
/// `sign-verify-summary` require. A missing `summary.sig` fails when either is on.
pub fn verify_summary(
    policy: &TrustPolicy,
    summary_bytes: &[u8],
    summary_sig_bytes: Option<&[u8]>,
) -> Result<VerifiedSummary, TrustError> {
    let subject = Subject::Summary;
    let gpg_required = policy.gpg_verify_summary;
    let ed25519_required = policy.sign_verify_summary;
    if !gpg_required && !ed25519_required {
        return Ok(VerifiedSummary {
            gpg_signer: None,
            ed25519_key: None,
            unsigned_allowed: true,
        });
    }
    let Some(sig_bytes) = summary_sig_bytes else {
        return Err(TrustError::NotSigned {
            subject,
            kind: if gpg_required {
                SignatureKind::Gpg
            } else {
                SignatureKind::Ed25519
            },
        });
    };
    let dict =
        meta::parse_vardict(sig_bytes).map_err(|reason| TrustError::InvalidSignatureData {
            subject: subject.clone(),
            reason,
        })?;
    let (gpg_signer, ed25519_key) = check_signatures(
        policy,
        &subject,
        summary_bytes,
        Some(&dict),
        gpg_required,
        ed25519_required,
    )?;
    Ok(VerifiedSummary {
        gpg_signer,
        ed25519_key,
        unsigned_allowed: false,
    })
}
