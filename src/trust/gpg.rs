//! OpenPGP signatures (`ostree.gpgsigs`) checked against a remote's keyring, in pure
//! Rust (rPGP). Also key import into `NAME.trustedkeys.gpg`.
//!
//! Keyring files are read in every form GnuPG and OSTree write them:
//! - the legacy binary keyring `ostree remote add --gpg-import` produces (concatenated
//!   transferable public keys with GnuPG's ring-trust packets between them),
//! - plain binary exports (`gpg --export`), and ASCII-armored ones (`--armor`),
//! - GnuPG 2.1+ keybox files (`pubring.kbx`).
//!
//! A signature counts when it is a binary-document signature, made by a key (primary
//! or signing subkey) in the keyring, cryptographically valid over the data, and its
//! key is neither revoked nor expired (nor the signature itself expired). This is what
//! GnuPG reports as a VALID signature, which is what libostree requires.

use std::collections::HashSet;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pgp::composed::{SignedPublicKey, SignedPublicKeyParser, SignedPublicSubKey};
use pgp::packet::{Packet, PacketParser, PacketTrait, Signature, SignatureType, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, PublicKeyTrait, Tag};

use crate::repo::{durable, RepoError};
use crate::trust::error::{KeyName, SignatureKind, Subject, TrustError};

/// The keyring file of a remote: `REPO/NAME.trustedkeys.gpg`.
pub fn keyring_path(repo_path: &Path, remote_name: &str) -> PathBuf {
    repo_path.join(format!("{remote_name}.trustedkeys.gpg"))
}

/// Who made a valid GPG signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpgSigner {
    /// Fingerprint of the primary key, upper-case hex (as `gpg` prints it).
    pub fingerprint: String,
    /// Fingerprint of the key that made the signature: the primary key or a subkey.
    pub signing_key: String,
    /// The key's primary user ID, if it has one.
    pub user_id: Option<String>,
    /// When the signature was made (Unix seconds), if it says.
    pub signed_at: Option<i64>,
}

/// A set of trusted OpenPGP public keys, merged by primary fingerprint (so a key
/// imported twice, e.g. once more with its revocation, counts as one key).
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
    sources: Vec<PathBuf>,
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a keyring file (binary keyring, armored keys, or keybox).
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let mut keyring = Self::new();
        keyring.add_file(path)?;
        Ok(keyring)
    }

    /// Adds the keys of a keyring file. A missing file is an error; an empty one adds
    /// nothing.
    pub fn add_file(&mut self, path: &Path) -> Result<usize, TrustError> {
        let bytes = fs::read(path).map_err(|e| TrustError::io(path, e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            self.sources.push(path.to_owned());
            return Ok(0);
        }
        let keys = parse_public_keys(&bytes).map_err(|reason| TrustError::Keyring {
            path: path.to_owned(),
            reason,
        })?;
        let n = keys.len();
        for key in keys {
            self.insert(key);
        }
        self.sources.push(path.to_owned());
        Ok(n)
    }

    /// Adds keys from bytes (binary, armored or keybox).
    pub fn add_bytes(&mut self, bytes: &[u8]) -> Result<usize, String> {
        let keys = parse_public_keys(bytes)?;
        let n = keys.len();
        for key in keys {
            self.insert(key);
        }
        Ok(n)
    }

    fn insert(&mut self, key: SignedPublicKey) {
        let fp = key.primary_key.fingerprint();
        if let Some(existing) = self
            .keys
            .iter_mut()
            .find(|k| k.primary_key.fingerprint() == fp)
        {
            let d = &mut existing.details;
            d.revocation_signatures
                .extend(key.details.revocation_signatures);
            d.direct_signatures.extend(key.details.direct_signatures);
            d.users.extend(key.details.users);
            d.user_attributes.extend(key.details.user_attributes);
            existing.public_subkeys.extend(key.public_subkeys);
        } else {
            self.keys.push(key);
        }
    }

    /// Number of distinct primary keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The files the keys came from.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// Upper-case hex fingerprints of the primary keys.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| fingerprint_hex(&k.primary_key.fingerprint()))
            .collect()
    }

    /// Checks `signatures` (each element one detached OpenPGP signature, binary or
    /// armored) over `data`: succeeds with the first valid one. With none valid, the
    /// error is the most telling failure (revoked over expired over bad over unknown).
    pub fn verify(
        &self,
        subject: &Subject,
        data: &[u8],
        signatures: &[Vec<u8>],
    ) -> Result<GpgSigner, TrustError> {
        self.verify_at(subject, data, signatures, now())
    }

    /// As [`Keyring::verify`], judging expiry at `now` (Unix seconds).
    pub fn verify_at(
        &self,
        subject: &Subject,
        data: &[u8],
        signatures: &[Vec<u8>],
        now: i64,
    ) -> Result<GpgSigner, TrustError> {
        let mut worst: Option<TrustError> = None;
        for blob in signatures {
            let sigs = match parse_signatures(blob) {
                Ok(sigs) if !sigs.is_empty() => sigs,
                Ok(_) => {
                    let reason = "it holds no OpenPGP signature packet".to_owned();
                    keep_worst(&mut worst, malformed(subject, reason));
                    continue;
                }
                Err(reason) => {
                    keep_worst(&mut worst, malformed(subject, reason));
                    continue;
                }
            };
            for sig in &sigs {
                match self.check_one(subject, data, sig, now) {
                    Ok(signer) => return Ok(signer),
                    Err(err) => keep_worst(&mut worst, err),
                }
            }
        }
        Err(worst.unwrap_or_else(|| TrustError::NotSigned {
            subject: subject.clone(),
            kind: SignatureKind::Gpg,
        }))
    }

    fn check_one(
        &self,
        subject: &Subject,
        data: &[u8],
        sig: &Signature,
        now: i64,
    ) -> Result<GpgSigner, TrustError> {
        let issuer = issuer_name(sig);
        if !matches!(sig.typ(), Some(SignatureType::Binary)) {
            return Err(malformed(
                subject,
                format!("the signature by key {issuer} is not a binary-document signature"),
            ));
        }

        let candidates = self.candidates(sig);
        if candidates.is_empty() {
            return Err(TrustError::UntrustedKey {
                subject: subject.clone(),
                kind: SignatureKind::Gpg,
                key: issuer,
            });
        }

        let mut worst: Option<TrustError> = None;
        for (key, sub) in candidates {
            let status = primary_status(key);
            let mut name = KeyName {
                id: fingerprint_hex(&key.primary_key.fingerprint()),
                user_id: status.user_id.clone(),
            };
            let crypto_ok = match sub {
                Some(sub) => sig.verify(&sub.key, data).is_ok(),
                None => sig.verify(&key.primary_key, data).is_ok(),
            };
            if !crypto_ok {
                let err = TrustError::BadSignature {
                    subject: subject.clone(),
                    kind: SignatureKind::Gpg,
                    key: name,
                };
                keep_worst(&mut worst, err);
                continue;
            }
            let signing_key = match sub {
                Some(sub) => {
                    let sub_fp = fingerprint_hex(&sub.key.fingerprint());
                    name.id = format!("{} (subkey {sub_fp})", name.id);
                    sub_fp
                }
                None => name.id.clone(),
            };
            let judged = KeyUnderTest {
                subject,
                key,
                sub,
                status: &status,
                name,
            };
            match judged.check_validity(sig, now) {
                Ok(()) => {
                    return Ok(GpgSigner {
                        fingerprint: fingerprint_hex(&key.primary_key.fingerprint()),
                        signing_key,
                        user_id: status.user_id,
                        signed_at: sig.created().map(|t| t.timestamp()),
                    });
                }
                Err(err) => keep_worst(&mut worst, err),
            }
        }
        Err(worst.expect("at least one candidate was checked"))
    }

    /// Keys in the ring that could have made `sig`: by issuer fingerprint, else by
    /// issuer key ID.
    fn candidates(&self, sig: &Signature) -> Vec<(&SignedPublicKey, Option<&SignedPublicSubKey>)> {
        let fps = sig.issuer_fingerprint();
        let ids = sig.issuer();
        let mut out = Vec::new();
        for key in &self.keys {
            let matches = |fp: pgp::types::Fingerprint, id: pgp::types::KeyId| {
                if !fps.is_empty() {
                    fps.iter().any(|f| **f == fp)
                } else {
                    ids.iter().any(|i| **i == id)
                }
            };
            if matches(key.primary_key.fingerprint(), key.primary_key.key_id()) {
                out.push((key, None));
            }
            for sub in &key.public_subkeys {
                if matches(sub.key.fingerprint(), sub.key.key_id()) {
                    out.push((key, Some(sub)));
                }
            }
        }
        out
    }
}

/// How telling a failure is, to report the most telling one when no signature is
/// valid: a revoked or expired trusted key says more than a bad signature, which
/// says more than an unknown key.
fn severity(err: &TrustError) -> u8 {
    match err {
        TrustError::RevokedKey { .. } => 6,
        TrustError::ExpiredKey { .. } => 5,
        TrustError::ExpiredSignature { .. } => 4,
        TrustError::UnusableKey { .. } => 3,
        TrustError::BadSignature { .. } => 2,
        TrustError::UntrustedKey { .. } => 1,
        _ => 0,
    }
}

fn keep_worst(worst: &mut Option<TrustError>, err: TrustError) {
    if worst.as_ref().is_none_or(|w| severity(&err) > severity(w)) {
        *worst = Some(err);
    }
}

/// A key whose signature verified cryptographically, to be judged valid or not.
struct KeyUnderTest<'a> {
    subject: &'a Subject,
    key: &'a SignedPublicKey,
    sub: Option<&'a SignedPublicSubKey>,
    status: &'a PrimaryStatus,
    name: KeyName,
}

impl KeyUnderTest<'_> {
    fn revoked(&self) -> TrustError {
        TrustError::RevokedKey {
            subject: self.subject.clone(),
            kind: SignatureKind::Gpg,
            key: self.name.clone(),
        }
    }

    fn unusable(&self, reason: &'static str) -> TrustError {
        TrustError::UnusableKey {
            subject: self.subject.clone(),
            key: self.name.clone(),
            reason,
        }
    }

    fn expired(&self, at: i64) -> TrustError {
        TrustError::ExpiredKey {
            subject: self.subject.clone(),
            key: self.name.clone(),
            expired_at: at,
        }
    }

    /// Not revoked, not expired, allowed to sign (a subkey properly bound both ways),
    /// and the signature itself not expired.
    fn check_validity(&self, sig: &Signature, now: i64) -> Result<(), TrustError> {
        let key = self.key;
        if self.status.revoked {
            return Err(self.revoked());
        }
        let Some(self_sig) = &self.status.self_sig else {
            return Err(self.unusable("it has no valid self-signature"));
        };
        if let Some(at) = expiry(key.primary_key.created_at().timestamp(), self_sig) {
            if now >= at {
                return Err(self.expired(at));
            }
        }

        match self.sub {
            None => {
                if has_key_flags(self_sig) && !self_sig.key_flags().sign() {
                    return Err(self.unusable("it is not allowed to make signatures"));
                }
            }
            Some(sub) => {
                let sub_status = subkey_status(key, sub);
                if sub_status.revoked {
                    return Err(self.revoked());
                }
                let Some(binding) = &sub_status.binding else {
                    return Err(self.unusable("its signing subkey has no valid binding signature"));
                };
                if !has_key_flags(binding) || !binding.key_flags().sign() {
                    return Err(self.unusable("its subkey is not allowed to make signatures"));
                }
                if !sub_status.back_signed {
                    return Err(self.unusable(
                        "its signing subkey has no valid primary key binding signature",
                    ));
                }
                if let Some(at) = expiry(sub.key.created_at().timestamp(), binding) {
                    if now >= at {
                        return Err(self.expired(at));
                    }
                }
            }
        }

        if let (Some(created), Some(valid_for)) = (sig.created(), sig.signature_expiration_time()) {
            let secs = valid_for.num_seconds();
            if secs > 0 {
                let at = created.timestamp().saturating_add(secs);
                if now >= at {
                    return Err(TrustError::ExpiredSignature {
                        subject: self.subject.clone(),
                        key: self.name.clone(),
                        expired_at: at,
                    });
                }
            }
        }
        Ok(())
    }
}

fn malformed(subject: &Subject, reason: String) -> TrustError {
    TrustError::MalformedSignature {
        subject: subject.clone(),
        kind: SignatureKind::Gpg,
        reason,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Upper-case hex, as `gpg` prints fingerprints and key IDs.
pub(crate) fn fingerprint_hex(fp: &pgp::types::Fingerprint) -> String {
    hex::encode_upper(fp.as_bytes())
}

/// How a signature names its issuer: the fingerprint if present, else the key ID.
fn issuer_name(sig: &Signature) -> KeyName {
    if let Some(fp) = sig.issuer_fingerprint().first() {
        KeyName::new(fingerprint_hex(fp))
    } else if let Some(id) = sig.issuer().first() {
        KeyName::new(hex::encode_upper(id.as_ref()))
    } else {
        KeyName::new("(unknown)")
    }
}

fn has_key_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}

/// When a key expires according to its (binding or self) signature.
fn expiry(key_created: i64, sig: &Signature) -> Option<i64> {
    let secs = sig.key_expiration_time()?.num_seconds();
    (secs > 0).then(|| key_created.saturating_add(secs))
}

fn created(sig: &Signature) -> i64 {
    sig.created().map(|t| t.timestamp()).unwrap_or(i64::MIN)
}

struct PrimaryStatus {
    revoked: bool,
    /// The newest valid self-signature (user ID certification or direct key sig).
    self_sig: Option<Signature>,
    user_id: Option<String>,
}

fn primary_status(key: &SignedPublicKey) -> PrimaryStatus {
    let pk = &key.primary_key;
    let revoked = key
        .details
        .revocation_signatures
        .iter()
        .chain(&key.details.direct_signatures)
        .any(|s| matches!(s.typ(), Some(SignatureType::KeyRevocation)) && s.verify_key(pk).is_ok());

    let mut best: Option<(i64, Signature, Option<String>, bool)> = None;
    let mut consider = |sig: &Signature, uid: Option<String>, primary: bool| {
        let t = created(sig);
        let better = match &best {
            None => true,
            // Prefer a primary user ID, then the newest.
            Some((bt, _, _, bp)) => (primary, t) > (*bp, *bt),
        };
        if better {
            best = Some((t, sig.clone(), uid, primary));
        }
    };
    for user in &key.details.users {
        let uid = String::from_utf8_lossy(user.id.id()).into_owned();
        for sig in &user.signatures {
            let certification = matches!(
                sig.typ(),
                Some(
                    SignatureType::CertGeneric
                        | SignatureType::CertPersona
                        | SignatureType::CertCasual
                        | SignatureType::CertPositive
                )
            );
            if certification && sig.verify_certification(pk, Tag::UserId, &user.id).is_ok() {
                consider(sig, Some(uid.clone()), sig.is_primary());
            }
        }
    }
    for sig in &key.details.direct_signatures {
        if matches!(sig.typ(), Some(SignatureType::Key)) && sig.verify_key(pk).is_ok() {
            consider(sig, None, false);
        }
    }
    // The user ID to show: the one on the chosen self-signature, else any certified one.
    let (self_sig, user_id) = match best {
        Some((_, sig, uid, _)) => (Some(sig), uid),
        None => (None, None),
    };
    PrimaryStatus {
        revoked,
        self_sig,
        user_id,
    }
}

struct SubkeyStatus {
    revoked: bool,
    binding: Option<Signature>,
    back_signed: bool,
}

fn subkey_status(key: &SignedPublicKey, sub: &SignedPublicSubKey) -> SubkeyStatus {
    let pk = &key.primary_key;
    let mut revoked = false;
    let mut binding: Option<Signature> = None;
    for sig in &sub.signatures {
        // A subkey revocation (0x28) is computed over the same data as a binding.
        match sig.typ() {
            Some(SignatureType::SubkeyRevocation)
                if sig.verify_subkey_binding(pk, &sub.key).is_ok() =>
            {
                revoked = true;
            }
            Some(SignatureType::SubkeyBinding)
                if sig.verify_subkey_binding(pk, &sub.key).is_ok()
                    && binding.as_ref().is_none_or(|b| created(sig) > created(b)) =>
            {
                binding = Some(sig.clone());
            }
            _ => {}
        }
    }
    let back_signed = binding
        .as_ref()
        .and_then(|b| b.embedded_signature())
        .is_some_and(|back| {
            matches!(back.typ(), Some(SignatureType::KeyBinding))
                && back.verify_primary_key_binding(&sub.key, pk).is_ok()
        });
    SubkeyStatus {
        revoked,
        binding,
        back_signed,
    }
}

/// Parses one `ostree.gpgsigs` element: binary signature packets, or armored.
fn parse_signatures(blob: &[u8]) -> Result<Vec<Signature>, String> {
    let binary = if looks_armored(blob) {
        dearmor_all(blob)?
    } else {
        blob.to_vec()
    };
    let mut out = Vec::new();
    for packet in PacketParser::new(&binary[..]) {
        match packet {
            Ok(Packet::Signature(sig)) => out.push(sig),
            Ok(Packet::Marker(_)) | Ok(Packet::Padding(_)) | Ok(Packet::Trust(_)) => {}
            Ok(other) => {
                return Err(format!(
                    "it holds a {:?} packet where a signature was expected",
                    other.tag()
                ))
            }
            Err(e) => return Err(format!("it cannot be parsed: {}", pgp_error_text(&e))),
        }
    }
    Ok(out)
}

/// A pgp error as a sentence. pgp's own `Display` of `InvalidPacketContent`
/// prints the inner error with `Debug`, captured backtrace included: with
/// `RUST_BACKTRACE` set, resolving it took a second and 200 MB per malformed
/// signature (found by tests/fuzz), and the message ran to pages.
fn pgp_error_text(error: &pgp::errors::Error) -> String {
    match error {
        pgp::errors::Error::InvalidPacketContent { source } => {
            format!("invalid packet content: {}", pgp_error_text(source))
        }
        other => other.to_string(),
    }
}

fn looks_armored(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(b"-----BEGIN PGP ")
}

/// Dearmors every armored block in `bytes` and concatenates the binary contents.
fn dearmor_all(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "armored data is not UTF-8".to_owned())?;
    let mut out = Vec::new();
    let mut rest = text;
    let mut blocks = 0;
    while let Some(start) = rest.find("-----BEGIN PGP ") {
        let block = &rest[start..];
        // The END line's type repeats the BEGIN line's.
        let end_marker = "-----END PGP ";
        let end = block
            .find(end_marker)
            .ok_or_else(|| "an armored block has no END line".to_owned())?;
        let after_end = block[end..]
            .find('\n')
            .map(|i| end + i + 1)
            .unwrap_or(block.len());
        let mut dearmor = pgp::armor::Dearmor::new(BufReader::new(&block.as_bytes()[..after_end]));
        dearmor
            .read_to_end(&mut out)
            .map_err(|e| format!("armored data cannot be decoded: {e}"))?;
        blocks += 1;
        rest = &block[after_end..];
    }
    if blocks == 0 {
        return Err("no armored block found".to_owned());
    }
    Ok(out)
}

/// Transferable public keys from a keyring in any supported form. Unparsable keys
/// are skipped (as GnuPG does); finding none at all is an error.
pub(crate) fn parse_public_keys(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
    let keys = if is_keybox(bytes) {
        let mut keys = Vec::new();
        for block in keybox_keyblocks(bytes)? {
            keys.extend(parse_binary_keys(block));
        }
        keys
    } else if looks_armored(bytes) {
        parse_binary_keys(&dearmor_all(bytes)?)
    } else {
        parse_binary_keys(bytes)
    };
    if keys.is_empty() {
        return Err("it holds no OpenPGP public key".to_owned());
    }
    Ok(keys)
}

fn parse_binary_keys(bytes: &[u8]) -> Vec<SignedPublicKey> {
    // GnuPG keyrings interleave ring-trust packets that are not part of a
    // transferable public key; drop them (and unparsable packets) before grouping.
    let packets = PacketParser::new(bytes)
        .filter(|p| {
            matches!(
                p,
                Ok(packet) if !matches!(
                    packet,
                    Packet::Trust(_) | Packet::Marker(_) | Packet::Padding(_)
                )
            )
        })
        .peekable();
    SignedPublicKeyParser::from_packets(packets)
        .filter_map(Result::ok)
        .collect()
}

/// A GnuPG keybox starts with a 32-byte header blob: length, type 1, version 1, flags,
/// then the magic "KBXf".
fn is_keybox(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && bytes[4] == 1 && &bytes[8..12] == b"KBXf"
}

/// The OpenPGP keyblocks of a keybox (blob type 2).
fn keybox_keyblocks(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let be32 = |b: &[u8], at: usize| -> Option<usize> {
        b.get(at..at + 4)
            .map(|s| u32::from_be_bytes(s.try_into().expect("4 bytes")) as usize)
    };
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let len = be32(bytes, pos).ok_or("truncated keybox blob")?;
        if len < 5 || pos + len > bytes.len() {
            return Err("corrupt keybox blob length".to_owned());
        }
        let blob = &bytes[pos..pos + len];
        if blob[4] == 2 {
            let off = be32(blob, 8).ok_or("truncated keybox blob")?;
            let klen = be32(blob, 12).ok_or("truncated keybox blob")?;
            let block = blob
                .get(off..off.checked_add(klen).ok_or("corrupt keybox blob")?)
                .ok_or("keybox keyblock out of bounds")?;
            out.push(block);
        }
        pos += len;
    }
    Ok(out)
}

/// Imports the public keys in `key_file` (armored or binary, one or many) into the
/// remote's keyring `REPO/NAME.trustedkeys.gpg`, appending them in binary form as
/// `ostree remote add --gpg-import` does. Returns the fingerprints of the keys in
/// the file (upper-case hex). Keys already in the keyring unchanged are not added
/// again.
pub fn import_keys(
    repo_path: &Path,
    remote_name: &str,
    key_file: &Path,
) -> Result<Vec<String>, TrustError> {
    let bytes = fs::read(key_file).map_err(|e| TrustError::io(key_file, e))?;
    import_key_bytes(repo_path, remote_name, &bytes).map_err(|e| match e {
        TrustError::Keyring { reason, .. } => TrustError::Keyring {
            path: key_file.to_owned(),
            reason,
        },
        other => other,
    })
}

/// As [`import_keys`], with the key data in memory.
pub fn import_key_bytes(
    repo_path: &Path,
    remote_name: &str,
    key_data: &[u8],
) -> Result<Vec<String>, TrustError> {
    if remote_name.is_empty()
        || remote_name.starts_with('.')
        || remote_name.contains(['/', '\0', '\n'])
    {
        return Err(TrustError::InvalidRemoteName(remote_name.to_owned()));
    }
    let target = keyring_path(repo_path, remote_name);
    let keys = parse_public_keys(key_data).map_err(|reason| TrustError::Keyring {
        path: PathBuf::from("(imported data)"),
        reason,
    })?;
    // Only keys that at least certify themselves are worth trusting.
    let keys: Vec<SignedPublicKey> = keys
        .into_iter()
        .filter(|k| primary_status(k).self_sig.is_some())
        .collect();
    if keys.is_empty() {
        return Err(TrustError::Keyring {
            path: PathBuf::from("(imported data)"),
            reason: "it holds no self-signed OpenPGP public key".to_owned(),
        });
    }

    let existing_bytes = match fs::read(&target) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(TrustError::io(&target, e)),
    };
    let existing = if existing_bytes.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        parse_public_keys(&existing_bytes).map_err(|reason| TrustError::Keyring {
            path: target.clone(),
            reason,
        })?
    };

    // Keep the existing file's bytes as they are; if it is armored or a keybox,
    // rewrite it as a binary keyring first so that appending stays valid.
    let mut out = if looks_armored(&existing_bytes) || is_keybox(&existing_bytes) {
        let mut out = Vec::new();
        for key in &existing {
            key.to_writer(&mut out).map_err(|e| TrustError::Keyring {
                path: target.clone(),
                reason: e.to_string(),
            })?;
        }
        out
    } else {
        existing_bytes.clone()
    };

    let mut fingerprints = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for key in &keys {
        fingerprints.push(fingerprint_hex(&key.primary_key.fingerprint()));
        if existing.contains(key) {
            continue;
        }
        let bytes = key.to_bytes().map_err(|e| TrustError::Keyring {
            path: target.clone(),
            reason: e.to_string(),
        })?;
        if seen.insert(bytes.clone()) {
            out.extend_from_slice(&bytes);
        }
    }

    if out != existing_bytes {
        let dir = target.parent().unwrap_or(Path::new("."));
        let file_name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        durable::write_atomic(dir, &file_name, &out).map_err(|e| match e {
            RepoError::Io { path, source } => TrustError::io(path, source),
            other => TrustError::io(&target, std::io::Error::other(other.to_string())),
        })?;
    }
    Ok(fingerprints)
}
