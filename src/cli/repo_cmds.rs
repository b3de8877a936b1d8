//! `ferryctl` commands on the local repository: init, remote, track, pull, refs,
//! log, fsck, summary, checkout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;

use crate::cli::output::{format_size, format_timestamp, print_json, PrintPacer};
use crate::fetch::engine::{Engine, EngineEvent, EngineSettings, Target};
use crate::repo::config::{RemoteConfig, RepoConfig, RepoMode};
use crate::repo::refs::{self, RefKind};
use crate::repo::store::Repo;
use crate::repo::{
    checkout as checkout_mod, closure, fsck as fsck_mod, Checksum, ObjectName, ObjectType,
};
use crate::sources::{read_named_source, Source};
use crate::transport::HttpClient;
use crate::trust::{self, TrustPolicy};

pub type CmdResult = Result<ExitCode, String>;

#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Add a remote, as `ostree remote add` does
    Add {
        name: String,
        url: String,
        /// The collection ID the remote's refs belong to
        #[arg(long, value_name = "ID")]
        collection_id: String,
        /// Import GPG public keys (armored or binary) for verifying this remote
        #[arg(long, value_name = "FILE")]
        gpg_import: Option<PathBuf>,
        /// Require ed25519 signatures made by this key (base64)
        #[arg(long, value_name = "B64")]
        sign_verify_key: Option<String>,
        /// Accept unsigned commits from this remote (dangerous)
        #[arg(long)]
        no_verify: bool,
    },
    /// List remotes
    List,
}

fn open_repo(path: &Path) -> Result<Repo, String> {
    let repo = Repo::open(path).map_err(|e| e.to_string())?;
    RepoConfig::load(path).map_err(|e| e.to_string())?;
    Ok(repo)
}

fn load_config(path: &Path) -> Result<RepoConfig, String> {
    RepoConfig::load(path).map_err(|e| e.to_string())
}

pub fn init(path: &Path, mode: &str, collection_id: Option<&str>) -> CmdResult {
    if path.join("config").exists() {
        return Err(format!("{} is already a repository", path.display()));
    }
    // `--mode=archive` writes `archive-z2`, as `ostree init` does.
    let mode = match RepoMode::parse(mode).map_err(|e| e.to_string())? {
        RepoMode::Archive => RepoMode::ArchiveZ2,
        other => other,
    };
    let config = RepoConfig::with_mode(path, mode, collection_id).map_err(|e| e.to_string())?;
    Repo::create_layout_for(path, mode).map_err(|e| e.to_string())?;
    config.save().map_err(|e| e.to_string())?;
    let kind = if mode.is_archive() {
        "an archive".to_owned()
    } else {
        format!("a {mode}")
    };
    println!("Created {kind} repository at {}", path.display());
    Ok(ExitCode::SUCCESS)
}

pub fn remote(path: &Path, command: RemoteCommand, json: bool) -> CmdResult {
    open_repo(path)?;
    let mut config = load_config(path)?;
    match command {
        RemoteCommand::Add {
            name,
            url,
            collection_id,
            gpg_import,
            sign_verify_key,
            no_verify,
        } => {
            let mut remote = RemoteConfig::new(&name, &url);
            remote.collection_id = Some(collection_id);
            remote.gpg_verify = !no_verify && sign_verify_key.is_none();
            remote.sign_verify = !no_verify && sign_verify_key.is_some();
            remote.verification_ed25519_key = sign_verify_key;
            config.add_remote(&remote).map_err(|e| e.to_string())?;
            if let Some(file) = &gpg_import {
                // Keys first: a remote that cannot verify anything is not saved.
                let keys = trust::import_keys(path, &name, file).map_err(|e| e.to_string())?;
                eprintln!("Imported {} GPG key(s) for {name}", keys.len());
            }
            config.save().map_err(|e| e.to_string())?;
            if no_verify {
                eprintln!(
                    "WARNING: remote {name} accepts unsigned commits: anyone who can serve it \
                     updates can install anything."
                );
            }
        }
        RemoteCommand::List => {
            let remotes = config.remotes().map_err(|e| e.to_string())?;
            if json {
                print_json(&remotes);
            } else {
                for r in remotes {
                    let collection = r.collection_id.as_deref().unwrap_or("-");
                    println!("{}\t{}\t{collection}", r.name, r.url);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn track(path: &Path, remote: &str, ref_name: &str) -> CmdResult {
    open_repo(path)?;
    let mut config = load_config(path)?;
    config.remote(remote).map_err(|e| e.to_string())?;
    refs::validate_ref_name(ref_name).map_err(|e| e.to_string())?;
    if config.track(remote, ref_name).map_err(|e| e.to_string())? {
        config.save().map_err(|e| e.to_string())?;
        println!("Tracking {remote}:{ref_name}");
    } else {
        println!("Already tracking {remote}:{ref_name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The remote a pull from `source` belongs to: the one named, or the single remote
/// whose collection the source offers `ref_name` for.
fn choose_remote(
    config: &RepoConfig,
    source: &Source,
    ref_name: &str,
    named: Option<&str>,
) -> Result<RemoteConfig, String> {
    if let Some(name) = named {
        return config.remote(name).map_err(|e| e.to_string());
    }
    let remotes = config.remotes().map_err(|e| e.to_string())?;
    let matching: Vec<RemoteConfig> = remotes
        .into_iter()
        .filter(|r| {
            r.collection_id.is_some()
                && source
                    .refs
                    .iter()
                    .any(|o| o.ref_name == ref_name && o.collection_id == r.collection_id)
        })
        .collect();
    match matching.len() {
        1 => Ok(matching.into_iter().next().expect("one")),
        0 => Err(format!(
            "no configured remote has a collection that {} offers {ref_name} for; name one with --remote",
            source.name
        )),
        _ => Err(format!(
            "several remotes match {}; name one with --remote",
            source.name
        )),
    }
}

#[derive(Serialize)]
struct PullReport<'a> {
    source: &'a str,
    remote: &'a str,
    #[serde(rename = "ref")]
    ref_name: &'a str,
    commit: Checksum,
    previous: Option<Checksum>,
    objects_fetched: u64,
    bytes_fetched: u64,
    /// Objects of the closure that were already stored.
    objects_present: u64,
}

/// `ferryctl pull URI REF`: the engine with that one source, no discovery. A
/// repository on disk is read by the engine's drive transport
/// (`fetch::engine::drive`: a pool of worker threads), HTTP(S) by its HTTP one.
pub fn pull(
    path: &Path,
    source_uri: &str,
    ref_name: &str,
    remote: Option<&str>,
    json: bool,
) -> CmdResult {
    let repo = open_repo(path)?;
    let config = load_config(path)?;
    refs::validate_ref_name(ref_name).map_err(|e| e.to_string())?;
    // A relative path names a directory here, as it does for `ostree pull-local`.
    let source_uri = if source_uri.contains("://") || source_uri.starts_with('/') {
        source_uri.to_owned()
    } else {
        std::path::absolute(source_uri)
            .map_err(|e| format!("{source_uri}: {e}"))?
            .display()
            .to_string()
    };
    let show_progress = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    glib::MainContext::default().block_on(async {
        let settings = EngineSettings::default();
        let http = HttpClient::new(&settings.http);
        let mut source = read_named_source(&source_uri, &http)
            .await
            .map_err(|e| e.to_string())?;
        let remote = choose_remote(&config, &source, ref_name, remote)?;
        // Named for this remote: its refs without a collection id are the remote's.
        source.remote = Some(remote.name.clone());
        let policy =
            TrustPolicy::for_remote(path, &remote).map_err(|e| e.to_string())?;
        if policy.allows_unsigned_commits() {
            eprintln!(
                "WARNING: remote {} does not verify signatures: the commit is not checked for who made it.",
                remote.name
            );
        }
        let (sender, receiver) = async_channel::unbounded();
        let settings = EngineSettings {
            named_sources: vec![source.id.clone()],
            ..settings
        };
        let engine = Engine::new(repo.clone(), settings, sender);
        let target = Target {
            remote: remote.clone(),
            ref_name: ref_name.to_owned(),
        };
        let pacer = PrintPacer::new(Duration::from_millis(500));
        let progress = glib::MainContext::default().spawn_local(watch_pull(
            receiver,
            show_progress.then_some(pacer),
        ));
        let outcome = engine.update(&[target], std::slice::from_ref(&source)).await;
        drop(engine);
        let watched = progress.await.unwrap_or_default();
        if show_progress {
            eprintln!();
        }
        let outcome = outcome
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .ok_or_else(|| "the engine pulled nothing".to_owned())?;
        let plan = outcome.result.map_err(|e| e.to_string())?;
        let kind = RefKind::Remote(remote.name.clone());
        // Up to date: nothing moved, the ref was already there.
        let previous = match watched.previous {
            Some(previous) => previous,
            None => refs::read_ref(repo.root(), &kind, ref_name).map_err(|e| e.to_string())?,
        };
        let closure = closure::closure(&repo, &plan.commit).map_err(|e| e.to_string())?;
        let mut report = PullReport {
            source: &source.name,
            remote: &remote.name,
            ref_name,
            commit: plan.commit,
            previous,
            objects_fetched: watched.objects,
            bytes_fetched: watched.bytes,
            objects_present: 0,
        };
        if !plan.up_to_date {
            // The commit itself travels with the plan, not as a fetched object.
            let commit_object = repo.object_path(&ObjectName::new(plan.commit, ObjectType::Commit));
            report.objects_fetched += 1;
            report.bytes_fetched += std::fs::metadata(&commit_object).map_or(0, |m| m.len());
        }
        // The closure less the commit, its signatures and what was fetched.
        let tree_objects = closure
            .iter()
            .filter(|n| !matches!(n.kind, ObjectType::Commit | ObjectType::CommitMeta))
            .count() as u64;
        report.objects_present = tree_objects.saturating_sub(watched.objects);
        print_pull_report(&report, json);
        Ok(ExitCode::SUCCESS)
    })
}

fn print_pull_report(report: &PullReport<'_>, json: bool) {
    if json {
        print_json(report);
    } else {
        println!(
            "{}:{} → {} ({} objects, {} fetched; {} already present)",
            report.remote,
            report.ref_name,
            report.commit,
            report.objects_fetched,
            format_size(report.bytes_fetched),
            report.objects_present
        );
    }
}

/// What a pull's events said: objects and bytes fetched, and the ref's previous
/// commit when it moved.
#[derive(Default)]
struct WatchedPull {
    objects: u64,
    bytes: u64,
    previous: Option<Option<Checksum>>,
}

/// Follows the engine's events until it is gone; prints progress when given a pacer.
async fn watch_pull(
    events: async_channel::Receiver<EngineEvent>,
    mut pacer: Option<PrintPacer>,
) -> WatchedPull {
    let mut watched = WatchedPull::default();
    while let Ok(event) = events.recv().await {
        match event {
            EngineEvent::Progress { overall, .. } => {
                watched.objects = overall.objects_done;
                watched.bytes = overall.bytes_done;
                if pacer.as_mut().is_some_and(|p| p.ready()) {
                    eprint!(
                        "\r{}/{} objects, {} of {}   ",
                        overall.objects_done,
                        overall.objects_total,
                        format_size(overall.bytes_done),
                        format_size(overall.bytes_total)
                    );
                }
            }
            EngineEvent::RefUpdated { previous, .. } => watched.previous = Some(previous),
            _ => {}
        }
    }
    watched
}

#[derive(Serialize)]
struct RefEntry {
    #[serde(flatten)]
    kind: RefKind,
    #[serde(rename = "ref")]
    name: String,
    commit: Checksum,
}

pub fn refs(path: &Path, json: bool) -> CmdResult {
    let repo = open_repo(path)?;
    let all = refs::list_refs(repo.root()).map_err(|e| e.to_string())?;
    if json {
        let entries: Vec<RefEntry> = all
            .into_iter()
            .map(|(kind, name, commit)| RefEntry { kind, name, commit })
            .collect();
        print_json(&entries);
        return Ok(ExitCode::SUCCESS);
    }
    for (kind, name, commit) in all {
        match kind {
            RefKind::Head => println!("{name}\t{commit}"),
            RefKind::Remote(remote) => println!("{remote}:{name}\t{commit}"),
            RefKind::Mirror(collection) => println!("({collection}, {name})\t{commit}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A checksum, `REMOTE:REF`, or a ref of the repository's own.
fn resolve_rev(repo: &Repo, rev: &str) -> Result<Checksum, String> {
    if let Ok(checksum) = rev.parse::<Checksum>() {
        return Ok(checksum);
    }
    let (remote, name) = refs::parse_refspec(rev).map_err(|e| e.to_string())?;
    let kind = remote.map_or(RefKind::Head, RefKind::Remote);
    refs::read_ref(repo.root(), &kind, &name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no ref {rev} in {}", repo.root().display()))
}

#[derive(Serialize)]
struct LogEntry {
    commit: Checksum,
    timestamp: u64,
    subject: String,
    body: String,
    version: Option<String>,
    parent: Option<Checksum>,
}

pub fn log(path: &Path, rev: &str, json: bool) -> CmdResult {
    let repo = open_repo(path)?;
    let mut next = Some(resolve_rev(&repo, rev)?);
    let mut entries = Vec::new();
    while let Some(checksum) = next {
        // History is often shallow: stop where the parent was never pulled.
        if !repo.has_object(&ObjectName::new(checksum, ObjectType::Commit)) && !entries.is_empty() {
            break;
        }
        let (commit, _) = repo.load_commit(&checksum).map_err(|e| e.to_string())?;
        next = commit.parent;
        entries.push(LogEntry {
            commit: checksum,
            timestamp: commit.timestamp,
            version: commit.version(),
            subject: commit.subject,
            body: commit.body,
            parent: commit.parent,
        });
    }
    if json {
        print_json(&entries);
    } else {
        for e in entries {
            println!("commit {}", e.commit);
            println!("Date:  {}", format_timestamp(e.timestamp));
            if let Some(v) = &e.version {
                println!("Version: {v}");
            }
            println!("\n    {}\n", e.subject);
            if !e.body.is_empty() {
                println!("    {}\n", e.body);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn fsck(path: &Path, json: bool) -> CmdResult {
    let repo = open_repo(path)?;
    let report =
        fsck_mod::fsck(&repo, crate::fetch::default_workers()).map_err(|e| e.to_string())?;
    if json {
        print_json(&report);
    } else {
        println!(
            "Checked {} objects and {} commits",
            report.objects_checked, report.commits_checked
        );
        for c in &report.partial_commits {
            println!("Commit {c} is partial (its pull has not finished)");
        }
        for p in &report.problems {
            println!("Error: {p}");
        }
    }
    if report.is_clean() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("{} problem(s) found", report.problems.len()))
    }
}

pub fn summary_update(path: &Path) -> CmdResult {
    let repo = open_repo(path)?;
    crate::repo::summary_gen::update_summary(&repo).map_err(|e| e.to_string())?;
    println!("Updated {}", repo.root().join("summary").display());
    Ok(ExitCode::SUCCESS)
}

pub fn apply_delta(path: &Path, delta: &Path, json: bool) -> CmdResult {
    let repo = open_repo(path)?;
    let (commit, stats) = crate::repo::delta::apply_offline(&repo, delta)
        .map_err(|e| format!("cannot apply the delta {}: {e}", delta.display()))?;
    if json {
        print_json(&serde_json::json!({
            "commit": commit,
            "parts-applied": stats.parts_applied,
            "parts-skipped": stats.parts_skipped,
            "objects": stats.objects,
        }));
    } else {
        println!(
            "Stored commit {commit} and {} objects from {} delta parts ({} parts had nothing new)",
            stats.objects, stats.parts_applied, stats.parts_skipped
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn checkout(path: &Path, rev: &str, destination: &Path) -> CmdResult {
    let repo = open_repo(path)?;
    let commit = resolve_rev(&repo, rev)?;
    checkout_mod::checkout(&repo, &commit, destination).map_err(|e| e.to_string())?;
    println!("Checked out {commit} to {}", destination.display());
    Ok(ExitCode::SUCCESS)
}

/// Adds an ed25519 signature to a commit's detached metadata, as `ostree sign`
/// does (for publishers, and for tests: Debian's `ostree` has no ed25519).
pub fn sign(path: &Path, rev: &str, secret_file: &Path) -> CmdResult {
    let repo = open_repo(path)?;
    let commit = resolve_rev(&repo, rev)?;
    let secret = std::fs::read_to_string(secret_file)
        .map_err(|e| format!("cannot read {}: {e}", secret_file.display()))?;
    let secret = secret.trim();
    let (_, commit_bytes) = repo.load_commit(&commit).map_err(|e| e.to_string())?;
    let signature = trust::sign_ed25519(secret, &commit_bytes).map_err(|e| e.to_string())?;
    let existing = repo
        .load_detached_metadata(&commit)
        .map_err(|e| e.to_string())?
        .map(|bytes| trust::parse_detached_metadata(&bytes))
        .transpose()
        .map_err(|e| e.to_string())?;
    let metadata = trust::append_ed25519_signature(existing.as_ref(), &signature)
        .map_err(|e| e.to_string())?;
    // Detached metadata is named by its commit, not its content: staging and
    // renaming it replaces the old signatures atomically.
    let txn = repo.begin().map_err(|e| e.to_string())?;
    txn.stage_bytes(
        &ObjectName::new(commit, ObjectType::CommitMeta),
        metadata.data(),
    )
    .map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())?;
    let public = trust::public_key_from_secret(secret).map_err(|e| e.to_string())?;
    println!("Signed {commit} with ed25519 key {public}");
    Ok(ExitCode::SUCCESS)
}
