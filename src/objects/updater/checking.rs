//! Checking: what is installed for the tracked refs, and the newest commit of
//! each across the sources, checked again whenever the sources change.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use gettextrs::gettext;
use gtk4::{glib, prelude::*, subclass::prelude::*};

use super::text::{checked_words, explain, PlanFacts};
use super::{FerryUpdater, Status};
use crate::fetch::engine::{Engine, EngineError, EngineEvent, EngineSettings, RefPlan};
use crate::repo::config::RepoConfig;
use crate::repo::store::Repo;
use crate::repo::Checksum;
use crate::sources::Target;

/// Source changes are collected this long before checking again.
const CHECK_DELAY: Duration = Duration::from_millis(300);

/// What is installed for one tracked ref.
#[derive(Clone, Debug)]
pub(super) struct Installed {
    pub(super) target: Target,
    pub(super) commit: Option<Checksum>,
    pub(super) timestamp: Option<u64>,
}

/// Why a check or an update could not start.
pub(super) enum Blocked {
    NothingTracked,
    ChosenSourceMissing,
    NoSources,
    Failed(String),
}

impl FerryUpdater {
    /// Reads the tracked refs and what is installed for them.
    pub(super) fn load_installed(&self) -> Result<Vec<Target>, Blocked> {
        let path = PathBuf::from(self.repo_path());
        let config = RepoConfig::load(&path).map_err(|e| Blocked::Failed(e.to_string()))?;
        let targets = Target::tracked(&config).map_err(|e| Blocked::Failed(e.to_string()))?;
        if targets.is_empty() {
            return Err(Blocked::NothingTracked);
        }
        let repo = Repo::open(&path).map_err(|e| Blocked::Failed(e.to_string()))?;
        let installed = targets
            .iter()
            .map(|target| {
                let installed = repo
                    .installed(&target.remote.name, &target.ref_name)
                    .ok()
                    .flatten();
                Installed {
                    target: target.clone(),
                    commit: installed.as_ref().map(|(checksum, _)| *checksum),
                    timestamp: installed.map(|(_, commit)| commit.timestamp),
                }
            })
            .collect();
        self.imp().installed.replace(installed);
        Ok(targets)
    }

    pub(super) fn new_engine(
        &self,
    ) -> Result<(Rc<Engine>, async_channel::Receiver<EngineEvent>), Blocked> {
        let repo =
            Repo::open(Path::new(&self.repo_path())).map_err(|e| Blocked::Failed(e.to_string()))?;
        let (sender, receiver) = async_channel::unbounded();
        let settings = EngineSettings {
            named_sources: self.named_sources(),
            allow_metered: self.use_metered(),
            download_limit: self.engine_download_limit(),
            ..EngineSettings::default()
        };
        Ok((Rc::new(Engine::new(repo, settings, sender)), receiver))
    }

    pub(super) fn show_blocked(&self, blocked: Blocked) {
        match blocked {
            Blocked::NothingTracked => self.show_status(
                Status::NothingTracked,
                &gettext("Nothing to Update"),
                &gettext("This computer does not keep anything up to date with Ferry yet."),
            ),
            Blocked::ChosenSourceMissing => self.show_error(
                &gettext("The Chosen Source Is Not Here"),
                &gettext("Choose another source, or “Automatic” to use every source."),
                "",
            ),
            Blocked::NoSources => self.show_status(
                Status::NoSources,
                &gettext("No Updates Found"),
                &gettext("Insert a USB stick with updates, or connect to a network with a computer or server that has them."),
            ),
            Blocked::Failed(detail) => self.show_error(
                &gettext("Something Went Wrong"),
                &gettext("The update store on this computer could not be read."),
                &detail,
            ),
        }
    }

    /// Checks again soon, once source changes have settled.
    pub(super) fn schedule_check(&self) {
        let imp = self.imp();
        if !imp.settled.get() || imp.stopped.get() {
            return;
        }
        if let Some(timer) = imp.check_timer.take() {
            timer.remove();
        }
        let obj = self.downgrade();
        let timer = glib::timeout_add_local_once(CHECK_DELAY, move || {
            if let Some(obj) = obj.upgrade() {
                obj.imp().check_timer.take();
                glib::MainContext::default().spawn_local(async move { obj.check_now().await });
            }
        });
        imp.check_timer.replace(Some(timer));
    }

    /// Resolves the newest commit of every tracked ref across the sources.
    pub(super) async fn check_now(&self) {
        let imp = self.imp();
        if imp.downloading.get() {
            return; // the update checks when it ends
        }
        if imp.checking.replace(true) {
            imp.check_again.set(true);
            return;
        }
        loop {
            imp.check_again.set(false);
            let outcome = self.run_check().await;
            if imp.downloading.get() {
                break;
            }
            match outcome {
                Ok(Ok(plans)) => self.show_plans(plans),
                Ok(Err(EngineError::NoSource { .. })) => self.show_blocked(Blocked::NoSources),
                Ok(Err(error)) => {
                    let (plain, detail) = explain(&error);
                    self.show_error(&gettext("Updates Could Not Be Checked"), &plain, &detail);
                }
                Err(blocked) => self.show_blocked(blocked),
            }
            self.refresh_freshness();
            if !imp.check_again.get() {
                break;
            }
        }
        imp.checking.set(false);
    }

    async fn run_check(&self) -> Result<Result<Vec<RefPlan>, EngineError>, Blocked> {
        let targets = self.load_installed()?;
        let sources = self.engine_sources()?;
        let (engine, _events) = self.new_engine()?;
        Ok(engine.check(&targets, &sources).await)
    }

    fn show_plans(&self, plans: Vec<RefPlan>) {
        let imp = self.imp();
        let pending = plans.iter().any(|p| !p.up_to_date);
        // A downloaded update stays "ready" until something newer comes.
        if pending || imp.status.get() != Status::Ready {
            let facts: Vec<PlanFacts> = plans.iter().map(PlanFacts::from).collect();
            let (status, title, description) = checked_words(&facts);
            self.show_status(status, &title, &description);
        }
        imp.plans.replace(plans);
    }
}
