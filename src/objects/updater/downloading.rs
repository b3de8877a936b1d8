//! Downloading: the update from the chosen sources, its progress (sampled by the
//! [`FerryProgress`](crate::objects::FerryProgress) model) overall and per source,
//! and how it ended.

use gettextrs::gettext;
use gtk4::{glib, prelude::*, subclass::prelude::*};

use super::text::{
    download_progress_words, explain, failed_update_words, ready_words, received_words,
    source_progress_words, version_words,
};
use super::{FerryUpdater, Status};
use crate::fetch::engine::{EngineError, EngineEvent, RefPlan, SourceBytes};
use crate::fetch::history::{self, HistoryEntry, Received};
use crate::objects::progress::ProgressSample;
use crate::sources::LOG_DOMAIN;

/// Adds an update that moved refs to the history (`ferryctl update` writes the
/// same log); a history that cannot be written is logged, not shown.
fn record_history(plans: &[RefPlan], sent: &[SourceBytes]) {
    let now = glib::real_time() / 1_000_000;
    let Some(entry) = HistoryEntry::of(plans, sent, u64::try_from(now).unwrap_or(0)) else {
        return;
    };
    let path = history::default_history_path();
    if let Err(e) = history::append(&path, &entry) {
        glib::g_warning!(
            LOG_DOMAIN,
            "could not write the history {}: {e}",
            path.display()
        );
    }
}

impl FerryUpdater {
    /// Downloads the update from the chosen sources.
    pub fn update(&self) {
        if !self.can_update() {
            return;
        }
        let obj = self.clone();
        glib::MainContext::default().spawn_local(async move { obj.update_async().await });
    }

    /// Stops the download; what is stored stays, the next update resumes it.
    pub fn cancel(&self) {
        if let Some(engine) = self.imp().engine.borrow().as_ref() {
            engine.cancel();
        }
    }

    async fn update_async(&self) {
        let imp = self.imp();
        let prepared = self
            .load_installed()
            .and_then(|targets| Ok((targets, self.engine_sources()?)))
            .and_then(|(targets, sources)| Ok((targets, sources, self.new_engine()?)));
        let (targets, sources, (engine, events)) = match prepared {
            Ok(prepared) => prepared,
            Err(blocked) => return self.show_blocked(blocked),
        };
        let version = imp
            .plans
            .borrow()
            .iter()
            .find(|p| !p.up_to_date)
            .and_then(|p| p.version.clone());
        let description = version_words(version.as_deref());
        self.set_flag(&imp.downloading, "downloading", true);
        self.show_status(
            Status::Downloading,
            &gettext("Downloading Update"),
            &description,
        );
        imp.progress.start();
        // Until the first report.
        self.set_progress(0.0, &gettext("Starting…"));
        let used: Vec<&str> = sources
            .iter()
            .filter(|s| s.state.is_usable())
            .map(|s| s.id.as_str())
            .collect();
        for item in self.items() {
            let active = used.contains(&item.id().as_str());
            item.set_if_changed("downloading", active);
            item.set_if_changed("progress-fraction", 0.0);
            item.set_if_changed("bytes", 0u64);
            item.set_if_changed("rate", 0u64);
            item.set_if_changed("progress-text", String::new());
        }
        imp.engine.replace(Some(engine.clone()));

        let weak = self.downgrade();
        let listener = glib::MainContext::default().spawn_local(async move {
            while let Ok(event) = events.recv().await {
                let Some(obj) = weak.upgrade() else { break };
                obj.engine_event(event);
            }
        });

        let result = engine.update(&targets, &sources).await;
        let sent = engine.received();

        imp.engine.take();
        drop(engine); // closes the event channel: the listener ends
        let _ = listener.await;
        imp.progress.finish();
        for item in self.items() {
            item.set_if_changed("downloading", false);
        }
        self.set_flag(&imp.downloading, "downloading", false);
        let _ = self.load_installed();
        // One ref that failed does not hide the others that were updated.
        let result = result.map(|outcomes| {
            let mut plans = Vec::new();
            let mut failed = Vec::new();
            for outcome in outcomes {
                match outcome.result {
                    Ok(plan) => plans.push(plan),
                    Err(e) => failed.push((outcome.remote, outcome.ref_name, e)),
                }
            }
            (plans, failed)
        });
        match result {
            Ok((plans, failed)) if !failed.is_empty() => {
                record_history(&plans, &sent);
                let pulled = u32::try_from(plans.iter().filter(|p| !p.up_to_date).count())
                    .unwrap_or(u32::MAX);
                let (title, plain) = failed_update_words(pulled, &failed[0].2);
                let detail = failed
                    .iter()
                    .map(|(remote, ref_name, e)| format!("{remote}:{ref_name}: {e}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                imp.plans.replace(plans);
                self.show_error(&title, &plain, &detail);
            }
            Ok((plans, _)) => {
                let pulled = plans.iter().any(|p| !p.up_to_date);
                record_history(&plans, &sent);
                imp.plans.replace(plans);
                if pulled {
                    let mut description = ready_words(version.as_deref());
                    if let Some(words) = received_words(&Received::of(&sent)) {
                        description = format!("{description}\n{words}");
                    }
                    self.show_status(Status::Ready, &gettext("Update Ready"), &description);
                } else {
                    self.show_status(
                        Status::UpToDate,
                        &gettext("Up to Date"),
                        &gettext("This computer has the newest updates."),
                    );
                }
            }
            Err(EngineError::Cancelled) => {
                self.toast(&gettext("Update cancelled"));
                self.show_status(
                    Status::Available,
                    &gettext("Update Available"),
                    &description,
                );
                self.schedule_check();
            }
            Err(error) => {
                let (plain, detail) = explain(&error);
                self.show_error(&gettext("The Update Failed"), &plain, &detail);
            }
        }
        self.refresh_freshness();
    }

    fn engine_event(&self, event: EngineEvent) {
        match event {
            EngineEvent::Progress { .. } => self.imp().progress.engine_event(&event),
            EngineEvent::SourceDropped { source, reason } => {
                glib::g_message!(LOG_DOMAIN, "stopped using {}: {reason}", source.id);
                let name = self
                    .item(&source.id)
                    .map(|(_, item)| item.name().to_string())
                    .unwrap_or(source.name);
                self.toast(&gettext("Stopped using “{}”").replace("{}", &name));
            }
            EngineEvent::Resolved { .. }
            | EngineEvent::RefUpdated { .. }
            | EngineEvent::RefResult { .. }
            | EngineEvent::ObjectFetched { .. } => {}
        }
    }

    fn set_progress(&self, fraction: f64, text: &str) {
        let imp = self.imp();
        if (imp.progress_fraction.get() - fraction).abs() > f64::EPSILON {
            imp.progress_fraction.set(fraction);
            self.notify("progress-fraction");
        }
        self.set_string(&imp.progress_text, "progress-text", text);
    }

    /// Shows a sample of the download's progress, overall and per source.
    pub(super) fn show_progress(&self, sample: &ProgressSample) {
        self.set_progress(sample.fraction(), &download_progress_words(sample));
        for progress in &sample.sources {
            let Some((_, item)) = self.item(&progress.source.id) else {
                continue;
            };
            item.set_if_changed("progress-fraction", sample.part(progress.bytes));
            item.set_if_changed("bytes", progress.bytes);
            item.set_if_changed("rate", progress.rate);
            item.set_if_changed("progress-text", source_progress_words(progress));
        }
    }
}
