//! `ferryctl check` and `ferryctl update`: resolve the tracked refs across every
//! source discovery finds, and pull them with live per-source progress.
//!
//! With `--json`, `update` prints one JSON object per line: the engine's events
//! (`source-dropped`, `resolved`, `progress`, `object-fetched` with
//! `--object-events`, `ref-updated`, `ref-result` for every ref), then
//! `{"event":"done"}` when every ref succeeded, else `{"event":"error","message":…}`
//! (and exit status 1). One failed ref does not stop the others.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::cli::output::{format_size, format_timestamp, print_json, print_json_line};
use crate::cli::sources::DiscoveryArgs;
use crate::fetch::engine::{
    DownloadLimit, Engine, EngineError, EngineEvent, EngineSettings, RefOutcome, RefPlan,
    RefStatus, SourceBytes, Target, UnusedReason,
};
use crate::fetch::history::{self, HistoryEntry, Received};
use crate::repo::config::RepoConfig;
use crate::repo::store::Repo;
use crate::signals::on_stop_signals;
use crate::sources::{Discovery, Source};

fn targets(config: &RepoConfig) -> Result<Vec<Target>, String> {
    let targets = Target::tracked(config).map_err(|e| e.to_string())?;
    if targets.is_empty() {
        return Err("nothing is tracked yet: add a ref with “ferryctl track REMOTE REF”".into());
    }
    Ok(targets)
}

/// The sources discovery settled on, restricted to `only` when given.
async fn discover(
    repo: &Path,
    args: &DiscoveryArgs,
    only: &[String],
) -> Result<(Discovery, Vec<Source>), String> {
    let options = args.options().map_err(|e| e.to_string())?;
    let discovery = Discovery::start(repo, options).map_err(|e| e.to_string())?;
    discovery.settled().await;
    let mut sources = discovery.sources();
    if !only.is_empty() {
        for id in only {
            if !sources.iter().any(|s| &s.id == id) {
                discovery.stop();
                return Err(format!(
                    "there is no source “{id}” (see “ferryctl sources”)"
                ));
            }
        }
        sources.retain(|s| only.contains(&s.id));
    }
    Ok((discovery, sources))
}

fn describe_plan(plan: &RefPlan) -> String {
    let version = plan
        .version
        .as_deref()
        .map(|v| format!("version {v}, "))
        .unwrap_or_default();
    if plan.up_to_date {
        format!(
            "{}:{} is up to date ({version}{})",
            plan.remote, plan.ref_name, plan.commit
        )
    } else {
        let download = plan
            .download
            .map(|d| format!(", {} to download", format_size(d.bytes)))
            .unwrap_or_default();
        format!(
            "{}:{} → {} ({version}{}{download}), from {}",
            plan.remote,
            plan.ref_name,
            plan.commit,
            format_timestamp(plan.timestamp),
            plan.sources.join(", ")
        )
    }
}

pub fn check(
    repo_path: &Path,
    args: &DiscoveryArgs,
    only: &[String],
    json: bool,
) -> Result<ExitCode, String> {
    let repo = Repo::open(repo_path).map_err(|e| e.to_string())?;
    let config = RepoConfig::load(repo_path).map_err(|e| e.to_string())?;
    let targets = targets(&config)?;
    glib::MainContext::default().block_on(async {
        let (discovery, sources) = discover(repo_path, args, only).await?;
        let (sender, _receiver) = async_channel::unbounded();
        let settings = EngineSettings {
            named_sources: only.to_vec(),
            allow_metered: args.allow_metered,
            ..EngineSettings::default()
        };
        let engine = Engine::new(repo, settings, sender);
        let plans = engine.check(&targets, &sources).await;
        discovery.stop();
        let plans = plans.map_err(|e| e.to_string())?;
        if json {
            print_json(&plans);
        } else {
            for plan in &plans {
                println!("{}", describe_plan(plan));
                for r in &plan.rejected {
                    println!("  refused {} from {}: {}", r.commit, r.source, r.reason);
                }
                for u in &plan.unused_sources {
                    let hint = match u.reason {
                        UnusedReason::MeteredConnection => " (--allow-metered uses it)",
                        UnusedReason::RemoteNotVerified => "",
                    };
                    println!("  not using {}: {}{hint}", u.source, u.message);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Live per-source bars on a terminal.
struct TerminalProgress {
    multi: MultiProgress,
    overall: ProgressBar,
    per_source: HashMap<String, ProgressBar>,
}

impl TerminalProgress {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        overall.set_prefix("total");
        Self {
            multi,
            overall,
            per_source: HashMap::new(),
        }
    }

    fn show(&mut self, event: &EngineEvent) {
        match event {
            EngineEvent::Progress {
                overall, sources, ..
            } => {
                self.overall
                    .set_length(overall.bytes_total.max(overall.bytes_done));
                self.overall.set_position(overall.bytes_done);
                let eta = overall
                    .eta_seconds
                    .map(|s| format!(", {s} s left"))
                    .unwrap_or_default();
                self.overall.set_message(format!(
                    "{}/{} objects{eta}",
                    overall.objects_done, overall.objects_total
                ));
                for s in sources {
                    let bar = self
                        .per_source
                        .entry(s.source.id.clone())
                        .or_insert_with(|| {
                            let bar = self.multi.add(ProgressBar::new_spinner());
                            bar.set_style(
                                ProgressStyle::with_template("{prefix:>12} {msg}")
                                    .expect("static template"),
                            );
                            bar.set_prefix(s.source.name.chars().take(12).collect::<String>());
                            bar
                        });
                    let error = s
                        .last_error
                        .as_deref()
                        .map(|e| format!(" — {e}"))
                        .unwrap_or_default();
                    bar.set_message(format!(
                        "{:<11} {:>10} {:>6} objects {:>10}/s{error}",
                        s.state,
                        format_size(s.bytes),
                        s.objects,
                        format_size(s.rate)
                    ));
                }
            }
            EngineEvent::SourceDropped { source, reason } => {
                let _ = self.multi.println(format!(
                    "Stopped using {} ({}): {reason}",
                    source.name, source.uri
                ));
            }
            EngineEvent::Resolved { plan } => {
                let _ = self.multi.println(describe_plan(plan));
            }
            EngineEvent::RefUpdated {
                remote,
                ref_name,
                commit,
                ..
            } => {
                let _ = self
                    .multi
                    .println(format!("Updated {remote}:{ref_name} to {commit}"));
            }
            EngineEvent::RefResult {
                remote,
                ref_name,
                status: RefStatus::Failed,
                error,
                ..
            } => {
                let _ = self.multi.println(format!(
                    "Could not update {remote}:{ref_name}: {}",
                    error.as_deref().unwrap_or_default()
                ));
            }
            EngineEvent::ObjectFetched { .. } | EngineEvent::RefResult { .. } => {}
        }
    }
}

/// What `ferryctl update` was asked besides discovery.
pub struct UpdateOptions<'a> {
    /// `--source` ids; empty: every source.
    pub only: &'a [String],
    pub json: bool,
    pub object_events: bool,
    pub limit: DownloadLimit,
}

pub fn update(
    repo_path: &Path,
    args: &DiscoveryArgs,
    options: UpdateOptions<'_>,
) -> Result<ExitCode, String> {
    let UpdateOptions {
        only,
        json,
        object_events,
        limit,
    } = options;
    let repo = Repo::open(repo_path).map_err(|e| e.to_string())?;
    let config = RepoConfig::load(repo_path).map_err(|e| e.to_string())?;
    let targets = targets(&config)?;
    let context = glib::MainContext::default();
    let result = context.block_on(async {
        let (discovery, sources) = discover(repo_path, args, only).await?;
        let (sender, receiver) = async_channel::unbounded();
        let settings = EngineSettings {
            object_events,
            named_sources: only.to_vec(),
            allow_metered: args.allow_metered,
            download_limit: limit,
            ..EngineSettings::default()
        };
        let engine = Rc::new(Engine::new(repo, settings, sender));
        // Ctrl-C (or SIGTERM) cancels; the repository stays consistent.
        // (Weak: the engine must go when the update ends, to close its events.)
        let cancel_engine = Rc::downgrade(&engine);
        let stop_signals = on_stop_signals(move || {
            if let Some(engine) = cancel_engine.upgrade() {
                engine.cancel();
            }
        });
        let terminal = (!json && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .then(|| Rc::new(RefCell::new(TerminalProgress::new())));
        let printer_terminal = terminal.clone();
        let printer = glib::MainContext::default().spawn_local(async move {
            while let Ok(event) = receiver.recv().await {
                if json {
                    print_json_line(&event);
                } else if let Some(t) = &printer_terminal {
                    t.borrow_mut().show(&event);
                } else {
                    print_event_line(&event);
                }
            }
        });
        let result = engine.update(&targets, &sources).await;
        let received = engine.received();
        drop(engine);
        let _ = printer.await;
        if let Some(t) = terminal {
            let _ = t.borrow().multi.clear();
        }
        discovery.stop();
        // Until here a signal still cancels rather than kills: nothing is cut short.
        drop(stop_signals);
        Ok((result.map_err(|e: EngineError| e.to_string()), received))
    });
    let (result, sent) = match result {
        Ok(done) => done,
        Err(message) => (Err(message), Vec::new()),
    };
    let (plans, failure) = match result {
        Ok(outcomes) => split_outcomes(outcomes),
        Err(message) => (Vec::new(), Some(message)),
    };
    let received = Received::of(&sent);
    record_history(&plans, &sent);
    if !json && received.total() > 0 {
        println!("{}", received_sentence(&received));
    }
    match failure {
        None => {
            if json {
                print_json_line(&json!({
                    "event": "done",
                    "plans": plans,
                    "received": received_json(&received),
                }));
            } else if plans.iter().all(|p| p.up_to_date) {
                println!("Everything is up to date.");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(message) => {
            if json {
                print_json_line(&json!({
                    "event": "error",
                    "message": message,
                    "plans": plans,
                    "received": received_json(&received),
                }));
            }
            Err(message)
        }
    }
}

/// Appends this update to the history the window lists too; a history that
/// cannot be written does not fail the update.
fn record_history(plans: &[RefPlan], sent: &[SourceBytes]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Some(entry) = HistoryEntry::of(plans, sent, now) {
        let path = history::default_history_path();
        if let Err(e) = history::append(&path, &entry) {
            eprintln!(
                "ferryctl: could not add this update to the history {}: {e}",
                path.display()
            );
        }
    }
}

/// `received` in `update --json`: bytes and sources per kind, and the internet
/// saved.
fn received_json(received: &Received) -> serde_json::Value {
    json!({
        "usb": { "bytes": received.drive_bytes, "sources": received.drives },
        "nearby": { "bytes": received.nearby_bytes, "sources": received.nearby },
        "internet": { "bytes": received.internet_bytes, "sources": received.internet },
        "internet_saved": received.internet_saved(),
    })
}

/// "1.9 GB from the USB stick, 310 MB from 2 nearby computers, 12 MB from the
/// internet — 2.2 GB of internet saved." (the window says the same, translated:
/// `objects::updater::text::received_words`).
fn received_sentence(received: &Received) -> String {
    let mut parts = Vec::new();
    if received.drives > 0 {
        parts.push(match received.drives {
            1 => format!("{} from the USB stick", format_size(received.drive_bytes)),
            n => format!("{} from {n} USB sticks", format_size(received.drive_bytes)),
        });
    }
    if received.nearby > 0 {
        parts.push(match received.nearby {
            1 => format!(
                "{} from a nearby computer",
                format_size(received.nearby_bytes)
            ),
            n => format!(
                "{} from {n} nearby computers",
                format_size(received.nearby_bytes)
            ),
        });
    }
    if received.internet > 0 {
        parts.push(format!(
            "{} from the internet",
            format_size(received.internet_bytes)
        ));
    }
    let mut sentence = parts.join(", ");
    if received.internet_saved() > 0 {
        sentence.push_str(&format!(
            " — {} of internet saved",
            format_size(received.internet_saved())
        ));
    }
    sentence + "."
}

/// The plans of the refs that succeeded, and one sentence naming each failed ref
/// if any failed.
fn split_outcomes(outcomes: Vec<RefOutcome>) -> (Vec<RefPlan>, Option<String>) {
    let total = outcomes.len();
    let mut plans = Vec::new();
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome.result {
            Ok(plan) => plans.push(plan),
            Err(e) => failures.push(format!("{}:{}: {e}", outcome.remote, outcome.ref_name)),
        }
    }
    let message = match failures.len() {
        0 => None,
        _ if total == 1 => failures.pop(),
        n => Some(format!(
            "{n} of {total} refs could not be updated: {}",
            failures.join("; ")
        )),
    };
    (plans, message)
}

/// Without a terminal: one line per notable event, none for progress.
fn print_event_line(event: &EngineEvent) {
    match event {
        EngineEvent::SourceDropped { source, reason } => {
            println!("Stopped using {} ({}): {reason}", source.name, source.uri)
        }
        EngineEvent::Resolved { plan } => println!("{}", describe_plan(plan)),
        EngineEvent::RefUpdated {
            remote,
            ref_name,
            commit,
            ..
        } => {
            println!("Updated {remote}:{ref_name} to {commit}")
        }
        EngineEvent::RefResult {
            remote,
            ref_name,
            status: RefStatus::Failed,
            error,
            ..
        } => println!(
            "Could not update {remote}:{ref_name}: {}",
            error.as_deref().unwrap_or_default()
        ),
        EngineEvent::Progress { .. }
        | EngineEvent::ObjectFetched { .. }
        | EngineEvent::RefResult { .. } => {}
    }
}
