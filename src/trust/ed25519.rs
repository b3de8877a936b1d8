//! ed25519 signatures (`ostree.sign.ed25519`): 64-byte signatures over the raw
//! `.commit` (or `summary`) bytes, checked against 32-byte public keys.
//!
//! Key sources, as libostree reads them: a remote's `verification-ed25519-key` (one
//! base64 key) and `verification-ed25519-file` (one base64 key a line); when the remote
//! configures neither, the system files `trusted.ed25519` and `trusted.ed25519.d/*`
//! under `/etc/ostree` and `/usr/share/ostree`. Revoked keys come from
//! `revoked.ed25519` and `revoked.ed25519.d/*` in the same directories. Ferry honours
//! the revocation lists for every key source (libostree only for system keys).

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use glib::Variant;

use crate::trust::error::{KeyName, SignatureKind, Subject, TrustError};
use crate::trust::meta;

/// Detached metadata key holding ed25519 signatures (`aay`).
pub const ED25519_METADATA_KEY: &str = "ostree.sign.ed25519";

/// A 32-byte ed25519 public key.
pub type PublicKey = [u8; 32];

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Base64 text of a public key (as in `verification-ed25519-key`).
pub fn public_key_to_base64(key: &PublicKey) -> String {
    b64().encode(key)
}

/// Decodes a base64 public key; `place` says where it came from for the error.
pub fn parse_public_key(text: &str, place: &str) -> Result<PublicKey, TrustError> {
    let invalid = |reason: String| TrustError::InvalidKey {
        kind: SignatureKind::Ed25519,
        place: place.to_owned(),
        reason,
    };
    let bytes = b64()
        .decode(text.trim())
        .map_err(|e| invalid(format!("not base64: {e}")))?;
    let key: PublicKey = bytes
        .as_slice()
        .try_into()
        .map_err(|_| invalid(format!("{} bytes instead of 32", bytes.len())))?;
    VerifyingKey::from_bytes(&key).map_err(|_| invalid("not a valid curve point".to_owned()))?;
    Ok(key)
}

/// Reads a key file: one base64 public key a line; blank lines and `#` comments are
/// skipped, any other line that is not a key is an error.
pub fn load_key_file(path: &Path) -> Result<Vec<PublicKey>, TrustError> {
    let text = fs::read_to_string(path).map_err(|e| TrustError::io(path, e))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let place = format!("on line {} of {}", i + 1, path.display());
        let key = parse_public_key(line, &place)?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// The system key files of one kind ("trusted" or "revoked") under `system_root`:
/// `{etc,usr/share}/ostree/KIND.ed25519` and the files in `KIND.ed25519.d/` (sorted).
pub fn system_key_files(system_root: &Path, kind: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for base in ["etc/ostree", "usr/share/ostree"] {
        let base = system_root.join(base);
        let single = base.join(format!("{kind}.ed25519"));
        if single.is_file() {
            files.push(single);
        }
        let dir = base.join(format!("{kind}.ed25519.d"));
        if let Ok(entries) = fs::read_dir(&dir) {
            let mut in_dir: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        }
    }
    files
}

/// All keys in the system files of one kind ("trusted" or "revoked").
pub fn load_system_keys(system_root: &Path, kind: &str) -> Result<Vec<PublicKey>, TrustError> {
    let mut keys = Vec::new();
    for file in system_key_files(system_root, kind) {
        for key in load_key_file(&file)? {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

fn signing_key(secret_key_base64: &str) -> Result<SigningKey, TrustError> {
    let invalid = |reason: String| TrustError::InvalidKey {
        kind: SignatureKind::Ed25519,
        place: "given for signing".to_owned(),
        reason,
    };
    let bytes = b64()
        .decode(secret_key_base64.trim())
        .map_err(|e| invalid(format!("not base64: {e}")))?;
    let pair: [u8; 64] = bytes.as_slice().try_into().map_err(|_| {
        invalid(format!(
            "{} bytes instead of 64 (seed then public key)",
            bytes.len()
        ))
    })?;
    SigningKey::from_keypair_bytes(&pair)
        .map_err(|_| invalid("its public half does not match its seed".to_owned()))
}

/// Signs `data` (the raw `.commit` bytes) with a base64 secret key of 64 bytes, seed
/// then public key, as `ostree sign` takes it.
pub fn sign_ed25519(secret_key_base64: &str, data: &[u8]) -> Result<[u8; 64], TrustError> {
    Ok(signing_key(secret_key_base64)?.sign(data).to_bytes())
}

/// The base64 public key belonging to a base64 secret key.
pub fn public_key_from_secret(secret_key_base64: &str) -> Result<String, TrustError> {
    Ok(public_key_to_base64(
        &signing_key(secret_key_base64)?.verifying_key().to_bytes(),
    ))
}

/// New detached metadata (`a{sv}`): `existing` (if any) with `signature` appended to
/// `ostree.sign.ed25519`. Other keys (such as `ostree.gpgsigs`) are kept, in order.
pub fn append_ed25519_signature(
    existing: Option<&Variant>,
    signature: &[u8; 64],
) -> Result<Variant, TrustError> {
    let mut entries: Vec<(String, Variant)> = Vec::new();
    let mut sigs: Vec<Vec<u8>> = Vec::new();
    let mut slot: Option<usize> = None;
    if let Some(existing) = existing {
        meta::check_vardict(existing).map_err(|reason| TrustError::InvalidMetadata { reason })?;
        for entry in existing.iter() {
            let key = entry.child_value(0).str().unwrap_or_default().to_owned();
            let Some(value) = entry.child_value(1).as_variant() else {
                continue;
            };
            if key == ED25519_METADATA_KEY {
                if slot.is_none() {
                    sigs = meta::byte_arrays(&value).map_err(|reason| {
                        TrustError::InvalidMetadata {
                            reason: format!("{ED25519_METADATA_KEY}: {reason}"),
                        }
                    })?;
                    slot = Some(entries.len());
                    entries.push((key, value));
                }
            } else {
                entries.push((key, value));
            }
        }
    }
    sigs.push(signature.to_vec());
    let value = meta::build_byte_arrays(sigs.iter().map(Vec::as_slice));
    match slot {
        Some(i) => entries[i].1 = value,
        None => entries.push((ED25519_METADATA_KEY.to_owned(), value)),
    }
    Ok(meta::build_vardict(entries))
}

/// Checks `signatures` over `data`: succeeds with the first trusted, unrevoked key
/// that verifies one of them.
pub(crate) fn verify(
    subject: &Subject,
    trusted: &[PublicKey],
    revoked: &[PublicKey],
    data: &[u8],
    signatures: &[Vec<u8>],
) -> Result<PublicKey, TrustError> {
    if signatures.is_empty() {
        return Err(TrustError::NotSigned {
            subject: subject.clone(),
            kind: SignatureKind::Ed25519,
        });
    }
    let usable: Vec<(PublicKey, VerifyingKey)> = trusted
        .iter()
        .filter(|k| !revoked.contains(k))
        .filter_map(|k| VerifyingKey::from_bytes(k).ok().map(|v| (*k, v)))
        .collect();
    let revoked_keys: Vec<(PublicKey, VerifyingKey)> = revoked
        .iter()
        .filter_map(|k| VerifyingKey::from_bytes(k).ok().map(|v| (*k, v)))
        .collect();

    let mut malformed = None;
    let mut revoked_signer = None;
    let mut well_formed = 0;
    for sig in signatures {
        let Ok(bytes) = <[u8; 64]>::try_from(sig.as_slice()) else {
            malformed = Some(format!("a signature is {} bytes instead of 64", sig.len()));
            continue;
        };
        well_formed += 1;
        let sig = Signature::from_bytes(&bytes);
        if let Some((key, _)) = usable
            .iter()
            .find(|(_, v)| v.verify_strict(data, &sig).is_ok())
        {
            return Ok(*key);
        }
        if let Some((key, _)) = revoked_keys
            .iter()
            .find(|(_, v)| v.verify_strict(data, &sig).is_ok())
        {
            revoked_signer = Some(*key);
        }
    }

    if let Some(key) = revoked_signer {
        return Err(TrustError::RevokedKey {
            subject: subject.clone(),
            kind: SignatureKind::Ed25519,
            key: KeyName::new(public_key_to_base64(&key)),
        });
    }
    if well_formed == 0 {
        return Err(TrustError::MalformedSignature {
            subject: subject.clone(),
            kind: SignatureKind::Ed25519,
            reason: malformed.unwrap_or_default(),
        });
    }
    if usable.is_empty() {
        return Err(TrustError::NoTrustedKeys {
            subject: subject.clone(),
            kind: SignatureKind::Ed25519,
        });
    }
    Err(TrustError::NoValidSignature {
        subject: subject.clone(),
        kind: SignatureKind::Ed25519,
        tried: usable.len(),
    })
}
