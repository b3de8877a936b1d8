//! Choosing what each ref is updated to: the sources a ref may use, the newest
//! commit that passes trust across them (rule 8: verified before anything under it
//! is asked for), and the plan that says so.

use std::collections::HashSet;

use super::events::{
    DownloadSize, EngineEvent, RefPlan, RejectedCommit, SourceBytes, UnusedReason, UnusedSource,
};
use super::schedule::{SourceSchedule, FILE_IN_FLIGHT_PER_WORKER, INITIAL_HTTP_IN_FLIGHT};
use super::{Engine, EngineError, EngineSource};
use gio::prelude::*;

use crate::fetch::MAX_METADATA_SIZE;
use crate::repo::config::RemoteConfig;
use crate::repo::objects::Commit;
use crate::repo::{Checksum, ObjectName, ObjectType};
use crate::sources::{Locality, Source, SourceKind, Target};
use crate::transport::{Transport, TransportError};
use crate::trust::{self, CommitToVerify, TrustPolicy};

/// A commit that passed trust: checksum, parsed, raw bytes, detached metadata.
type TrustedCommit = (Checksum, Commit, glib::Bytes, Option<glib::Bytes>);

/// Why `source` may not be used for refs of `remote`, if it may not; `named` are
/// the ids of sources the user chose by hand.
pub fn unused_reason(
    remote: &RemoteConfig,
    source: &Source,
    named: &[String],
) -> Option<UnusedReason> {
    if remote.gpg_verify || remote.sign_verify || named.contains(&source.id) {
        return None;
    }
    let trusted = match source.kind {
        // Sources the user typed in.
        SourceKind::Static => true,
        // Only the remote's own URL, not another remote's.
        SourceKind::Internet => source.remote.as_deref() == Some(remote.name.as_str()),
        // Discovered, not named: anyone can plug in a drive or answer on the LAN.
        SourceKind::Usb | SourceKind::Lan => false,
    };
    (!trusted).then_some(UnusedReason::RemoteNotVerified)
}

impl Engine {
    /// What every source discovery offered looked like, for error messages.
    pub(super) fn describe_sources(&self) -> String {
        let seen = self.seen.borrow();
        if seen.is_empty() {
            return "no sources were found".into();
        }
        seen.join("; ")
    }

    pub(super) fn prepare_sources(&self, sources: &[Source]) -> Vec<EngineSource> {
        *self.seen.borrow_mut() = sources
            .iter()
            .map(|s| match &s.error {
                Some(error) => format!("{} is {}: {error}", s.name, s.state),
                None => format!("{} is {}", s.name, s.state),
            })
            .collect();
        // Read once per run: a connection that turns metered mid-pull does not
        // strand the objects already asked of the internet.
        let spare_internet =
            !self.settings.allow_metered && gio::NetworkMonitor::default().is_network_metered();
        let (spared, sources): (Vec<Source>, Vec<Source>) = sources
            .iter()
            .cloned()
            .partition(|s| spare_internet && s.locality() == Locality::Internet);
        *self.spared.borrow_mut() = spared;
        // Enough queued for every worker of a drive's pool (`drive`).
        let file_limit = self.drive_workers() * FILE_IN_FLIGHT_PER_WORKER;
        sources
            .iter()
            .filter(|s| s.state.is_usable())
            .filter_map(|s| {
                let http = match &self.limited_http {
                    Some(limited) if self.settings.download_limit.applies_to(s.locality()) => {
                        limited
                    }
                    _ => &self.http,
                };
                let transport = Transport::for_uri(&s.uri, http).ok()?;
                let is_file = transport.is_file();
                let limit = if is_file {
                    file_limit
                } else {
                    INITIAL_HTTP_IN_FLIGHT
                };
                Some(EngineSource::new(
                    s.clone(),
                    transport,
                    SourceSchedule::new(limit, !is_file),
                ))
            })
            .collect()
    }

    /// Finds the newest trusted commit of each target across `sources`.
    pub async fn check(
        &self,
        targets: &[Target],
        sources: &[Source],
    ) -> Result<Vec<RefPlan>, EngineError> {
        let mut engine_sources = self.prepare_sources(sources);
        let mut plans = Vec::new();
        for target in targets {
            let (usable, unused) = self.sources_for(target, &mut engine_sources);
            plans.push(
                self.resolve(target, &mut engine_sources[..usable], unused)
                    .await?,
            );
        }
        Ok(plans)
    }

    /// Puts the sources `target` may use first and returns how many there are, and
    /// the sources offering its ref that it may not use, with why.
    pub(super) fn sources_for(
        &self,
        target: &Target,
        sources: &mut [EngineSource],
    ) -> (usize, Vec<UnusedSource>) {
        let named = &self.settings.named_sources;
        // Stable: the order among the usable ones stays as it was.
        sources.sort_by_key(|s| unused_reason(&target.remote, &s.source, named).is_some());
        let usable = sources
            .iter()
            .take_while(|s| unused_reason(&target.remote, &s.source, named).is_none())
            .count();
        let untrusted = sources[usable..]
            .iter()
            .filter(|s| s.source.offer_for(target).is_some())
            .filter_map(|s| {
                let reason = unused_reason(&target.remote, &s.source, named)?;
                Some(unused_source(&s.source, target, reason))
            });
        // Spared internet sources may not have been looked at (discovery spares
        // them too): the ref's own remote counts as offering it.
        let spared = self.spared.borrow();
        let metered = spared
            .iter()
            .filter(|s| {
                s.offer_for(target).is_some()
                    || s.remote.as_deref() == Some(target.remote.name.as_str())
            })
            .map(|s| unused_source(s, target, UnusedReason::MeteredConnection));
        (usable, untrusted.chain(metered).collect())
    }

    /// Remembers what each source has sent so far in this update.
    pub(super) fn record_received(&self, sources: &[EngineSource]) {
        *self.received.borrow_mut() = sources
            .iter()
            .filter(|s| s.bytes > 0)
            .map(|s| SourceBytes {
                source: s.label(),
                locality: s.source.locality(),
                bytes: s.bytes,
            })
            .collect();
    }

    pub(super) async fn resolve(
        &self,
        target: &Target,
        sources: &mut [EngineSource],
        unused_sources: Vec<UnusedSource>,
    ) -> Result<RefPlan, EngineError> {
        let remote = &target.remote;
        let current = self
            .repo
            .installed(&remote.name, &target.ref_name)?
            .map(|(checksum, commit)| (checksum, commit.timestamp));
        let policy = TrustPolicy::for_remote(self.repo.root(), remote)?;

        // Offers, newest claimed first; a source's claim is only a hint.
        let mut offers: Vec<(Checksum, Option<u64>, usize)> = Vec::new();
        for (i, s) in sources.iter().enumerate().filter(|(_, s)| s.state.alive) {
            if let Some(offer) = s.source.offer_for(target) {
                offers.push((offer.commit, offer.timestamp, i));
            }
        }
        if offers.is_empty() && !unused_sources.is_empty() {
            let unused = unused_sources
                .iter()
                .map(|u| format!("{} ({})", u.name, u.source))
                .collect::<Vec<_>>()
                .join(", ");
            if unused_sources
                .iter()
                .all(|u| u.reason == UnusedReason::MeteredConnection)
            {
                return Err(EngineError::MeteredInternetOnly {
                    ref_name: target.ref_name.clone(),
                    unused,
                });
            }
            return Err(EngineError::OnlyUnverifiedNearby {
                remote: remote.name.clone(),
                ref_name: target.ref_name.clone(),
                unused,
            });
        }
        if offers.is_empty() {
            return Err(EngineError::NoSource {
                ref_name: target.ref_name.clone(),
                looked_at: self.describe_sources(),
            });
        }
        offers.sort_by_key(|o| std::cmp::Reverse(o.1));

        let mut verified: Vec<TrustedCommit> = Vec::new();
        let mut rejected = Vec::new();
        let mut tried: HashSet<Checksum> = HashSet::new();
        for (commit_checksum, _, _) in offers.clone() {
            if !tried.insert(commit_checksum) {
                continue;
            }
            let holders: Vec<usize> = offers
                .iter()
                .filter(|(c, _, _)| *c == commit_checksum)
                .map(|(_, _, i)| *i)
                .collect();
            match self
                .fetch_trusted_commit(&policy, target, commit_checksum, current, &holders, sources)
                .await
            {
                Ok(found) => verified.push(found),
                Err(mut reasons) => rejected.append(&mut reasons),
            }
        }
        let mut best = verified.into_iter().max_by_key(|(_, c, _, _)| c.timestamp);
        // Only stale sources around (every offer older than what is installed, so
        // refused as a downgrade): the installed commit stays, and that is no error.
        if let (None, Some((installed, installed_at))) = (&best, current) {
            if offers
                .iter()
                .all(|(_, claimed, _)| claimed.is_some_and(|t| t <= installed_at))
            {
                let (commit, bytes) = self.repo.load_commit(&installed)?;
                let detached = self.repo.load_detached_metadata(&installed)?;
                best = Some((
                    installed,
                    commit,
                    glib::Bytes::from_owned(bytes),
                    detached.map(glib::Bytes::from_owned),
                ));
            }
        }
        let Some((commit_checksum, commit, commit_bytes, detached)) = best else {
            let reasons = rejected
                .iter()
                .map(|r: &RejectedCommit| {
                    format!("{} from {}: {}", short(&r.commit), r.source, r.reason)
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(EngineError::NoTrustedCommit {
                ref_name: target.ref_name.clone(),
                reasons,
            });
        };
        let up_to_date = current.is_some_and(|(c, _)| c == commit_checksum)
            && !self.repo.is_commit_partial(&commit_checksum);
        let holders = offers
            .iter()
            .filter(|(c, _, _)| *c == commit_checksum)
            .map(|(_, _, i)| sources[*i].source.id.clone())
            .collect();
        // One stat per object of the commit: off the main thread.
        let download = if up_to_date {
            Some(DownloadSize::default())
        } else {
            let repo = self.repo.clone();
            let commit = commit.clone();
            gio::spawn_blocking(move || DownloadSize::missing_from(&repo, &commit))
                .await
                .unwrap_or(None)
        };
        let plan = RefPlan {
            remote: remote.name.clone(),
            ref_name: target.ref_name.clone(),
            commit: commit_checksum,
            timestamp: commit.timestamp,
            version: commit.version(),
            subject: commit.subject.clone(),
            current: current.map(|(c, _)| c),
            up_to_date,
            sources: holders,
            rejected,
            download,
            unused_sources,
            commit_bytes,
            detached,
        };
        self.emit(EngineEvent::Resolved { plan: plan.clone() });
        Ok(plan)
    }

    /// Fetches a commit from one of `holders` and checks it; on failure, why each
    /// holder's copy was refused.
    async fn fetch_trusted_commit(
        &self,
        policy: &TrustPolicy,
        target: &Target,
        checksum: Checksum,
        current: Option<(Checksum, u64)>,
        holders: &[usize],
        sources: &mut [EngineSource],
    ) -> Result<TrustedCommit, Vec<RejectedCommit>> {
        let mut reasons = Vec::new();
        let commit_path = ObjectName::new(checksum, ObjectType::Commit).relative_path();
        let meta_path = ObjectName::new(checksum, ObjectType::CommitMeta).relative_path();
        let spill_dir = self.repo.root().join("tmp");
        for &i in holders {
            if !sources[i].state.alive {
                continue;
            }
            let source_id = sources[i].source.id.clone();
            let reject = |reason: String| RejectedCommit {
                commit: checksum,
                source: source_id.clone(),
                reason,
            };
            let bytes = match sources[i]
                .transport
                .get_bytes(&commit_path, MAX_METADATA_SIZE, &spill_dir)
                .await
            {
                Ok(bytes) => bytes,
                Err(e) => {
                    if e.source_is_gone() {
                        self.drop_source(&mut sources[i], e.to_string());
                    }
                    reasons.push(reject(format!("cannot fetch the commit: {e}")));
                    continue;
                }
            };
            if Checksum::digest(&bytes) != checksum {
                let reason = format!("served commit {} with the wrong content", short(&checksum));
                self.drop_source(&mut sources[i], reason.clone());
                reasons.push(reject(reason));
                continue;
            }
            let commit = match Commit::parse(&bytes) {
                Ok(c) => c,
                Err(e) => {
                    reasons.push(reject(e.to_string()));
                    continue;
                }
            };
            // Detached metadata is not content-addressed: each holder's copy is judged.
            let detached = match sources[i]
                .transport
                .get_bytes(&meta_path, MAX_METADATA_SIZE, &spill_dir)
                .await
            {
                Ok(bytes) => Some(bytes),
                Err(TransportError::NotFound) => None,
                Err(e) => {
                    if e.source_is_gone() {
                        self.drop_source(&mut sources[i], e.to_string());
                    }
                    reasons.push(reject(format!("cannot fetch the signatures: {e}")));
                    continue;
                }
            };
            let detached_variant = match detached
                .as_deref()
                .map(trust::parse_detached_metadata)
                .transpose()
            {
                Ok(v) => v,
                Err(e) => {
                    reasons.push(reject(e.to_string()));
                    continue;
                }
            };
            match policy.verify_commit(&CommitToVerify {
                commit_bytes: &bytes,
                detached_metadata: detached_variant,
                ref_name: &target.ref_name,
                current,
            }) {
                Ok(_) => return Ok((checksum, commit, bytes, detached)),
                Err(e) => reasons.push(reject(e.to_string())),
            }
        }
        Err(reasons)
    }
}

/// A source not used for `target`, with why in a sentence.
fn unused_source(source: &Source, target: &Target, reason: UnusedReason) -> UnusedSource {
    let message = match reason {
        UnusedReason::RemoteNotVerified => format!(
            "{} is not used for {}: remote {} verifies no commit signatures, so only its own \
             URL and sources named by hand are trusted",
            source.name, target.ref_name, target.remote.name
        ),
        UnusedReason::MeteredConnection => format!(
            "{} is not used for {}: the network connection is metered, and internet sources \
             are used on metered connections only when allowed",
            source.name, target.ref_name
        ),
    };
    UnusedSource {
        source: source.id.clone(),
        name: source.name.clone(),
        reason,
        message,
    }
}

pub(super) fn short(c: &Checksum) -> String {
    c.to_hex()[..12].to_owned()
}
