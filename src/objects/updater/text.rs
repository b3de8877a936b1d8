//! The words the window shows for what the updater knows: pure functions of
//! plans, offers, errors and progress, translated, tested without a window.

use gettextrs::{gettext, ngettext};

use super::Status;
use crate::fetch::engine::{EngineError, RefPlan, SourceProgress, TransferState};
use crate::fetch::history::{HistoryEntry, Received};
use crate::objects::format;
use crate::objects::progress::ProgressSample;
use crate::repo::{Checksum, RepoError};
use crate::sources::{OfferedRef, SourceState};

/// A commit and when it was made.
#[derive(Clone, Debug, PartialEq)]
pub struct Known {
    pub commit: Checksum,
    pub timestamp: Option<u64>,
    pub version: Option<String>,
}

/// "Has version 42 — newer than yours" and the like: what `offer` is, compared with
/// what is installed and with the newest commit known anywhere.
pub fn freshness_words(
    offer: &OfferedRef,
    installed: Option<&Known>,
    newest: Option<&Known>,
) -> String {
    if installed.is_some_and(|i| i.commit == offer.commit) {
        return gettext("Has your version");
    }
    let newer = match (offer.timestamp, installed.and_then(|i| i.timestamp)) {
        (Some(offered), Some(mine)) => offered > mine,
        (None, Some(_)) => newest.is_some_and(|n| n.commit == offer.commit),
        (_, None) => true,
    };
    if !newer {
        return gettext("Has an older version");
    }
    let version = offer.version.clone().or_else(|| {
        newest
            .filter(|n| n.commit == offer.commit)
            .and_then(|n| n.version.clone())
    });
    let not_newest = newest.is_some_and(|n| {
        n.commit != offer.commit
            && matches!((n.timestamp, offer.timestamp), (Some(a), Some(b)) if a > b)
    });
    match (version, not_newest) {
        (Some(v), false) => {
            // Translators: {} is a version, e.g. “Has version 42 — newer than yours”.
            gettext("Has version {} — newer than yours").replace("{}", &v)
        }
        (Some(v), true) => {
            gettext("Has version {} — newer than yours, not the newest").replace("{}", &v)
        }
        (None, false) => gettext("Has a newer version"),
        (None, true) => gettext("Has a newer version, not the newest"),
    }
}

/// Why a source is of no use, in words; `None` when it may be used, and what it
/// offers says more (see [`freshness_words`]).
pub fn unusable_source_words(
    state: SourceState,
    metered_excluded: bool,
    untrusted: bool,
) -> Option<String> {
    Some(match state {
        SourceState::Unreachable => gettext("Not reachable"),
        SourceState::NotServing => gettext("Not sharing updates"),
        SourceState::Failed => gettext("Could not be read"),
        SourceState::Discovered | SourceState::Ready | SourceState::Outdated
            if metered_excluded =>
        {
            gettext("Not used: the connection is metered")
        }
        SourceState::Discovered => gettext("Looking at what it has…"),
        SourceState::Ready | SourceState::Outdated if untrusted => {
            // Translators: a drive or nearby computer with an update whose
            // origin signs nothing; choosing it by hand uses it anyway.
            gettext("Not used: its updates are not signed, so only their own server is trusted")
        }
        SourceState::Ready | SourceState::Outdated => return None,
    })
}

/// An engine error in plain words, and its technical reason.
pub fn explain(error: &EngineError) -> (String, String) {
    let plain = match error {
        EngineError::NoSource { .. } => gettext("No source has this update."),
        EngineError::OnlyUnverifiedNearby { .. } => gettext(
            "Only nearby sources have this update, and its origin does not sign updates, so they are not trusted. Choose one of them by hand to use it.",
        ),
        EngineError::MeteredInternetOnly { .. } => gettext(
            "Only the internet has this update, and the connection is metered. Allow the internet on metered connections in Preferences to use it.",
        ),
        EngineError::NoTrustedCommit { .. } => gettext(
            "The update could not be verified: no source has a copy signed by a trusted key.",
        ),
        EngineError::ObjectUnavailable { .. } => {
            gettext("Part of the update is missing from every source.")
        }
        EngineError::AllSourcesFailed { .. } => {
            gettext("Every source stopped working during the download.")
        }
        EngineError::Cancelled => gettext("The update was cancelled."),
        EngineError::Local(RepoError::NoSpace { .. }) => {
            gettext("There is not enough free space on this computer’s disk for the update.")
        }
        EngineError::Local(_) => gettext("The update could not be saved on this computer."),
        EngineError::Trust(_) => gettext("The update could not be verified."),
    };
    (plain, error.to_string())
}

/// What the words say of a ref's plan.
#[derive(Clone, Copy, Debug)]
pub struct PlanFacts<'a> {
    pub version: Option<&'a str>,
    pub timestamp: u64,
    pub up_to_date: bool,
    /// Bytes to download, when the commit says.
    pub download_bytes: Option<u64>,
}

impl<'a> From<&'a RefPlan> for PlanFacts<'a> {
    fn from(plan: &'a RefPlan) -> Self {
        Self {
            version: plan.version.as_deref(),
            timestamp: plan.timestamp,
            up_to_date: plan.up_to_date,
            download_bytes: plan.download.map(|d| d.bytes),
        }
    }
}

/// The status, title and description for the plans of a check: up to date, one
/// update, or several.
pub fn checked_words(plans: &[PlanFacts]) -> (Status, String, String) {
    let pending: Vec<&PlanFacts> = plans.iter().filter(|p| !p.up_to_date).collect();
    match pending.as_slice() {
        [] => {
            let description = match plans.first().and_then(|p| p.version) {
                Some(version) if plans.len() == 1 => {
                    gettext("Version {} is the newest.").replace("{}", version)
                }
                _ => gettext("This computer has the newest updates."),
            };
            (Status::UpToDate, gettext("Up to Date"), description)
        }
        [plan] => {
            let description = match plan.version {
                // Translators: “Version 42, from 24 November 2026”.
                Some(version) => gettext("Version {version}, from {date}")
                    .replace("{version}", version)
                    .replace("{date}", &format::date(plan.timestamp)),
                None => gettext("A new version from {date}")
                    .replace("{date}", &format::date(plan.timestamp)),
            } + &download_line(&pending);
            (Status::Available, gettext("Update Available"), description)
        }
        many => {
            let n = u32::try_from(many.len()).unwrap_or(u32::MAX);
            let description = ngettext("{} update is available.", "{} updates are available.", n)
                .replace("{}", &n.to_string())
                + &download_line(many);
            (Status::Available, gettext("Updates Available"), description)
        }
    }
}

/// “\n12.3 MB to download” when every pending plan knows its size, else nothing.
pub fn download_line(pending: &[&PlanFacts]) -> String {
    let total: Option<u64> = pending.iter().map(|p| p.download_bytes).sum();
    let Some(total) = total else {
        return String::new();
    };
    // Translators: {} is a size such as “12.3 MB”.
    let line = gettext("{} to download");
    format!("\n{}", line.replace("{}", &format::size(total)))
}

/// "Version 42" while it downloads; nothing without a version.
pub fn version_words(version: Option<&str>) -> String {
    match version {
        Some(v) => gettext("Version {}").replace("{}", v),
        None => String::new(),
    }
}

/// The description of a downloaded, verified update.
pub fn ready_words(version: Option<&str>) -> String {
    match version {
        Some(v) => gettext("Version {} is downloaded and verified.").replace("{}", v),
        None => gettext("The update is downloaded and verified."),
    }
}

/// Where an update came from: "1.9 GB from the USB stick, 310 MB from 2 nearby
/// computers, 12 MB from the internet — 2.2 GB of internet saved"; `None` when
/// nothing was received.
pub fn received_words(received: &Received) -> Option<String> {
    let mut parts = Vec::new();
    if received.drives > 0 {
        parts.push(
            // Translators: {size} is a size such as “1.9 GB”, {n} a number of USB sticks.
            ngettext(
                "{size} from the USB stick",
                "{size} from {n} USB sticks",
                received.drives,
            )
            .replace("{size}", &format::size(received.drive_bytes))
            .replace("{n}", &received.drives.to_string()),
        );
    }
    if received.nearby > 0 {
        parts.push(
            // Translators: {size} is a size such as “310 MB”, {n} a number of computers.
            ngettext(
                "{size} from a nearby computer",
                "{size} from {n} nearby computers",
                received.nearby,
            )
            .replace("{size}", &format::size(received.nearby_bytes))
            .replace("{n}", &received.nearby.to_string()),
        );
    }
    if received.internet > 0 {
        parts.push(
            // Translators: {} is a size such as “12 MB”.
            gettext("{} from the internet").replace("{}", &format::size(received.internet_bytes)),
        );
    }
    if parts.is_empty() {
        return None;
    }
    // Translators: joins the parts of “1.9 GB from the USB stick, 12 MB from the internet”.
    let parts = parts.join(&gettext(", "));
    Some(if received.internet_saved() > 0 {
        // Translators: {parts} says where the update came from, {saved} is a size
        // such as “2.2 GB”: what did not have to come over the internet.
        gettext("{parts} — {saved} of internet saved")
            .replace("{parts}", &parts)
            .replace("{saved}", &format::size(received.internet_saved()))
    } else {
        parts
    })
}

/// A row of the update history: the title ("Version 42") and the subtitle (when,
/// from where, how much came over the internet).
pub fn history_words(entry: &HistoryEntry) -> (String, String) {
    let title = match &entry.version {
        Some(v) => gettext("Version {}").replace("{}", v),
        None => gettext("Update {}").replace("{}", entry.commit.get(..12).unwrap_or_default()),
    };
    let internet = if entry.received.internet_bytes > 0 {
        // Translators: {} is a size such as “12 MB”.
        gettext("{} from the internet").replace("{}", &format::size(entry.received.internet_bytes))
    } else {
        gettext("nothing from the internet")
    };
    // Translators: a history row: {date}, then the sources' names, then how much
    // came over the internet, e.g. “29 November 2026 · KINGSTON, laptop · 12 MB
    // from the internet”.
    let subtitle = gettext("{date} · {sources} · {internet}")
        .replace("{date}", &format::date(entry.time))
        .replace("{sources}", &entry.sources.join(", "))
        .replace("{internet}", &internet);
    (title, subtitle)
}

/// The title and description when refs failed to update while `pulled` others
/// were updated; `first` is the first failure.
pub fn failed_update_words(pulled: u32, first: &EngineError) -> (String, String) {
    let (mut plain, _) = explain(first);
    if pulled > 0 {
        plain = ngettext(
            "{} other update is downloaded and verified.",
            "{} other updates are downloaded and verified.",
            pulled,
        )
        .replace("{}", &pulled.to_string())
            + " "
            + &plain;
    }
    let title = if pulled > 0 {
        gettext("Some Updates Failed")
    } else {
        gettext("The Update Failed")
    };
    (title, plain)
}

/// "3.2 MB of 12.1 MB — About 5 seconds left".
pub fn download_progress_words(sample: &ProgressSample) -> String {
    let text = format::size_of(sample.bytes_done, sample.total());
    match sample.eta_seconds {
        Some(eta) => format!("{text} — {}", format::time_left(eta)),
        None => text,
    }
}

/// What one source did for the download so far: "1.2 MB · 300 kB/s", or why nothing.
pub fn source_progress_words(progress: &SourceProgress) -> String {
    if progress.state == TransferState::Dropped {
        gettext("Stopped")
    } else if progress.bytes == 0 && progress.in_flight == 0 {
        // Better sources have had everything so far.
        gettext("Not needed so far")
    } else {
        // Translators: what one source gave so far and how fast: “1.2 MB · 300 kB/s”.
        gettext("{bytes} · {rate}")
            .replace("{bytes}", &format::size(progress.bytes))
            .replace("{rate}", &format::rate(progress.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::engine::SourceLabel;

    #[test]
    fn received_words_say_where_the_update_came_from_and_what_was_saved() {
        let received = Received {
            drive_bytes: 1_900_000_000,
            drives: 1,
            nearby_bytes: 310_000_000,
            nearby: 2,
            internet_bytes: 12_000_000,
            internet: 1,
        };
        assert_eq!(
            received_words(&received).unwrap(),
            "1.9\u{a0}GB from the USB stick, 310.0\u{a0}MB from 2 nearby computers, \
             12.0\u{a0}MB from the internet — 2.2\u{a0}GB of internet saved"
        );
        let two_sticks_only = Received {
            drive_bytes: 5_000,
            drives: 2,
            ..Received::default()
        };
        assert_eq!(
            received_words(&two_sticks_only).unwrap(),
            "5.0\u{a0}kB from 2 USB sticks — 5.0\u{a0}kB of internet saved"
        );
        let internet_only = Received {
            internet_bytes: 1_000,
            internet: 1,
            ..Received::default()
        };
        // Nothing saved: no “saved” part.
        assert_eq!(
            received_words(&internet_only).unwrap(),
            "1.0\u{a0}kB from the internet"
        );
        let one_computer = Received {
            nearby_bytes: 2_000,
            nearby: 1,
            ..Received::default()
        };
        assert_eq!(
            received_words(&one_computer).unwrap(),
            "2.0\u{a0}kB from a nearby computer — 2.0\u{a0}kB of internet saved"
        );
        assert_eq!(received_words(&Received::default()), None);
    }

    #[test]
    fn history_words_name_the_version_the_sources_and_the_internet_used() {
        let mut entry = HistoryEntry {
            time: 1_700_000_000,
            refs: vec!["origin:os/stable".into()],
            version: Some("42".into()),
            commit: "0123456789abcdef".repeat(4),
            sources: vec!["KINGSTON".into(), "laptop".into()],
            received: Received {
                internet_bytes: 12_000_000,
                internet: 1,
                ..Received::default()
            },
        };
        let (title, subtitle) = history_words(&entry);
        assert_eq!(title, "Version 42");
        assert!(subtitle.ends_with(" · KINGSTON, laptop · 12.0\u{a0}MB from the internet"));
        assert!(subtitle.contains("2023"), "{subtitle}");
        entry.version = None;
        entry.received = Received::default();
        let (title, subtitle) = history_words(&entry);
        assert_eq!(title, "Update 0123456789ab");
        assert!(
            subtitle.ends_with("nothing from the internet"),
            "{subtitle}"
        );
    }

    fn known(seed: &[u8], timestamp: u64, version: &str) -> Known {
        Known {
            commit: Checksum::digest(seed),
            timestamp: Some(timestamp),
            version: Some(version.to_owned()),
        }
    }

    fn offer(k: &Known) -> OfferedRef {
        OfferedRef {
            collection_id: Some("org.example.Os".into()),
            ref_name: "os/stable".into(),
            commit: k.commit,
            timestamp: k.timestamp,
            version: k.version.clone(),
        }
    }

    fn plan(version: Option<&str>, up_to_date: bool, download: Option<u64>) -> PlanFacts<'_> {
        PlanFacts {
            version,
            timestamp: 0,
            up_to_date,
            download_bytes: download,
        }
    }

    fn source_progress(state: TransferState, bytes: u64, in_flight: usize) -> SourceProgress {
        SourceProgress {
            source: SourceLabel {
                id: "usb-1".into(),
                name: "Stick".into(),
                uri: "file:///media/stick".into(),
            },
            state,
            bytes,
            objects: 1,
            rate: 300_000,
            in_flight,
            hedged: 0,
            last_error: None,
        }
    }

    #[test]
    fn freshness_compares_with_installed_and_newest() {
        let v40 = known(b"40", 100, "40");
        let v41 = known(b"41", 200, "41");
        let v42 = known(b"42", 300, "42");
        let words = |o: &Known, mine: Option<&Known>| freshness_words(&offer(o), mine, Some(&v42));
        assert_eq!(words(&v42, Some(&v40)), "Has version 42 — newer than yours");
        assert_eq!(
            words(&v41, Some(&v40)),
            "Has version 41 — newer than yours, not the newest"
        );
        assert_eq!(words(&v40, Some(&v40)), "Has your version");
        assert_eq!(words(&v40, Some(&v41)), "Has an older version");
        // Nothing installed yet: anything is newer.
        assert_eq!(words(&v42, None), "Has version 42 — newer than yours");
        // Without a version, the newest known commit lends its own.
        let mut bare = offer(&v42);
        bare.version = None;
        assert_eq!(
            freshness_words(&bare, Some(&v40), Some(&v42)),
            "Has version 42 — newer than yours"
        );
        bare.commit = Checksum::digest(b"other");
        assert_eq!(
            freshness_words(&bare, Some(&v40), Some(&v42)),
            "Has a newer version"
        );
    }

    #[test]
    fn unusable_sources_say_why() {
        let words = unusable_source_words;
        assert_eq!(
            words(SourceState::Unreachable, false, false).as_deref(),
            Some("Not reachable")
        );
        assert_eq!(
            words(SourceState::Ready, true, true).as_deref(),
            Some("Not used: the connection is metered")
        );
        assert!(words(SourceState::Outdated, false, true).is_some_and(|w| w.contains("not signed")));
        assert_eq!(words(SourceState::Ready, false, false), None);
    }

    #[test]
    fn engine_errors_in_plain_words() {
        let (plain, detail) = explain(&EngineError::NoTrustedCommit {
            ref_name: "os/stable".into(),
            reasons: "abc from x: no signature".into(),
        });
        assert!(
            plain.starts_with("The update could not be verified"),
            "{plain}"
        );
        assert!(detail.contains("no signature"), "{detail}");
        let (plain, _) = explain(&EngineError::Cancelled);
        assert_eq!(plain, "The update was cancelled.");
        let (plain, detail) = explain(&EngineError::Local(RepoError::NoSpace {
            path: "/home/user/.local/share/ferry/repo/tmp".into(),
        }));
        assert!(plain.contains("not enough free space"), "{plain}");
        assert!(detail.contains("/home/user"), "{detail}");
    }

    #[test]
    fn checks_in_words() {
        let (status, title, description) = checked_words(&[plan(Some("42"), true, None)]);
        assert_eq!(status, Status::UpToDate);
        assert_eq!(title, "Up to Date");
        assert_eq!(description, "Version 42 is the newest.");

        let (status, title, description) = checked_words(&[plan(Some("42"), false, Some(2_000))]);
        assert_eq!(
            (status, title.as_str()),
            (Status::Available, "Update Available")
        );
        assert!(
            description.starts_with("Version 42, from "),
            "{description}"
        );
        assert!(
            description.ends_with("\n2.0\u{a0}kB to download"),
            "{description}"
        );

        // One size unknown: no download line.
        let (_, title, description) = checked_words(&[
            plan(None, false, Some(2_000)),
            plan(None, false, None),
            plan(None, true, None),
        ]);
        assert_eq!(title, "Updates Available");
        assert_eq!(description, "2 updates are available.");
    }

    #[test]
    fn downloads_in_words() {
        assert_eq!(version_words(Some("42")), "Version 42");
        assert_eq!(version_words(None), "");
        assert_eq!(
            ready_words(Some("42")),
            "Version 42 is downloaded and verified."
        );
        let (title, plain) = failed_update_words(2, &EngineError::Cancelled);
        assert_eq!(title, "Some Updates Failed");
        assert_eq!(
            plain,
            "2 other updates are downloaded and verified. The update was cancelled."
        );
        let (title, _) = failed_update_words(0, &EngineError::Cancelled);
        assert_eq!(title, "The Update Failed");

        let sample = ProgressSample {
            bytes_done: 1_000,
            bytes_total: 2_000_000,
            eta_seconds: Some(42),
            sources: Vec::new(),
        };
        assert_eq!(
            download_progress_words(&sample),
            "1.0\u{a0}kB of 2.0\u{a0}MB — About 42 seconds left"
        );
        assert_eq!(
            source_progress_words(&source_progress(TransferState::Dropped, 5, 0)),
            "Stopped"
        );
        assert_eq!(
            source_progress_words(&source_progress(TransferState::Idle, 0, 0)),
            "Not needed so far"
        );
        assert_eq!(
            source_progress_words(&source_progress(TransferState::Downloading, 1_200_000, 2)),
            "1.2\u{a0}MB · 300.0\u{a0}kB/s"
        );
    }
}
