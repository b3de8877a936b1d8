//! `ferryctl sources [--watch]`: what discovery sees.
//!
//! - `ferryctl sources` waits for discovery to settle (drives scanned, summaries
//!   fetched, LAN peers given a moment to answer) and prints the list: a table, or
//!   with `--json` a JSON array of sources.
//! - `ferryctl sources --watch` keeps running until killed and prints every
//!   change; with `--json` one object per line: `{"event":"added","source":{…}}`
//!   (`added`, `changed`, `removed`), starting with one `added` per current source.
//!
//! Repositories found on drives and refused are reported on stderr with the phrase
//! `rejected repository “PATH” on “ORIGIN”: REASON`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::sources::{
    Discovery, DiscoveryOptions, DiscoverySwitches, Source, SourceEvent, SourcesError,
};

use super::output::format_timestamp;

/// Discovery switches, global to every command that discovers sources: the
/// command-line form of [`DiscoverySwitches`].
#[derive(Debug, Clone, Default, Args)]
pub struct DiscoveryArgs {
    /// Do not look for nearby computers (DNS-SD)
    #[arg(long, global = true)]
    pub no_lan: bool,

    /// Do not look at mounted drives
    #[arg(long, global = true)]
    pub no_mounts: bool,

    /// A source given by hand: http://HOST:PORT/PATH or file:///PATH (repeatable)
    #[arg(long = "static-source", value_name = "URI", global = true)]
    pub static_sources: Vec<String>,

    /// A directory of symlinks to repositories (or drive roots), used like drives
    /// (repeatable)
    #[arg(long = "sideload-dir", value_name = "DIR", global = true)]
    pub sideload_dirs: Vec<PathBuf>,

    /// Use internet sources on a metered connection too (drives and nearby
    /// computers are always used)
    #[arg(long, global = true)]
    pub allow_metered: bool,
}

impl From<&DiscoveryArgs> for DiscoverySwitches {
    fn from(args: &DiscoveryArgs) -> Self {
        Self {
            no_lan: args.no_lan,
            no_mounts: args.no_mounts,
            static_sources: args.static_sources.clone(),
            sideload_dirs: args.sideload_dirs.clone(),
            allow_metered: args.allow_metered,
        }
    }
}

impl DiscoveryArgs {
    /// Discovery options for these switches (see [`DiscoverySwitches::options`]).
    pub fn options(&self) -> Result<DiscoveryOptions, SourcesError> {
        DiscoverySwitches::from(self).options()
    }
}

/// `ferryctl sources` arguments.
#[derive(Debug, Clone, Default, Args)]
pub struct SourcesArgs {
    /// Keep running and print every change (with --json: one JSON object per line)
    #[arg(long)]
    pub watch: bool,
}

/// Runs `ferryctl sources`.
pub fn run(
    repo: &Path,
    args: &SourcesArgs,
    discovery: &DiscoveryArgs,
    json: bool,
) -> Result<ExitCode, String> {
    let options = discovery.options().map_err(|e| e.to_string())?;
    let context = glib::MainContext::default();
    if args.watch {
        context.block_on(watch(repo, options, json))
    } else {
        context.block_on(list(repo, options, json))
    }
}

async fn list(repo: &Path, options: DiscoveryOptions, json: bool) -> Result<ExitCode, String> {
    let discovery = Discovery::start(repo, options).map_err(|e| e.to_string())?;
    discovery.settled().await;
    let sources = discovery.sources();
    discovery.stop();
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_string_pretty(&sources)
            .map_err(std::io::Error::other)
            .and_then(|s| writeln!(out, "{s}"))
    } else {
        print_table(&mut out, &sources)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(format!("cannot write to stdout: {e}")),
    }
}

async fn watch(repo: &Path, options: DiscoveryOptions, json: bool) -> Result<ExitCode, String> {
    let discovery = Discovery::start(repo, options).map_err(|e| e.to_string())?;
    // Runs until killed (SIGINT/SIGTERM end the process; every line is already
    // flushed) or until stdout is closed.
    let events = discovery.subscribe();
    let mut out = std::io::stdout();
    while let Ok(event) = events.recv().await {
        let line = if json {
            serde_json::to_string(&event).map_err(|e| e.to_string())?
        } else {
            event_line(&event)
        };
        let mut lock = out.lock();
        if writeln!(lock, "{line}")
            .and_then(|()| lock.flush())
            .is_err()
        {
            break; // stdout closed: nobody is watching any more
        }
    }
    discovery.stop();
    out.flush().ok();
    Ok(ExitCode::SUCCESS)
}

fn refs_summary(source: &Source) -> String {
    let names: Vec<String> = source
        .refs
        .iter()
        .map(|r| match &r.collection_id {
            Some(c) => format!("{c}:{}", r.ref_name),
            None => r.ref_name.clone(),
        })
        .collect();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(", ")
    }
}

fn event_line(event: &SourceEvent) -> String {
    let (what, source) = match event {
        SourceEvent::Added { source } => ("added", source),
        SourceEvent::Changed { source } => ("changed", source),
        SourceEvent::Removed { source } => ("removed", source),
    };
    format!(
        "{what:<8} {:<8} {:<11} {}  {}  [{}]",
        source.kind.as_str(),
        source.state.as_str(),
        source.name,
        refs_summary(source),
        source.id
    )
}

fn print_table(out: &mut impl Write, sources: &[Source]) -> std::io::Result<()> {
    if sources.is_empty() {
        return writeln!(out, "No sources found.");
    }
    let name_width = sources
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<8} {:<11} {:<name_width$} {:<23} URI",
        "KIND", "STATE", "NAME", "SUMMARY MODIFIED"
    )?;
    for source in sources {
        let modified = source
            .last_modified
            .map(format_timestamp)
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:<8} {:<11} {:<name_width$} {:<23} {}",
            source.kind.as_str(),
            source.state.as_str(),
            source.name,
            modified,
            source.uri
        )?;
        if let Some(error) = &source.error {
            writeln!(out, "    {error}")?;
        }
        for r in &source.refs {
            let cref = match &r.collection_id {
                Some(c) => format!("({c}, {})", r.ref_name),
                None => r.ref_name.clone(),
            };
            let when = r
                .timestamp
                .map(format_timestamp)
                .unwrap_or_else(|| "-".into());
            let version = r
                .version
                .as_deref()
                .map(|v| format!("  version {v}"))
                .unwrap_or_default();
            writeln!(
                out,
                "    {cref}  {}  {when}{version}",
                &r.commit.to_hex()[..12]
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        discovery: DiscoveryArgs,
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(Debug, clap::Subcommand)]
    enum TestCommand {
        Sources(SourcesArgs),
    }

    #[test]
    fn global_switches_parse_after_the_subcommand() {
        let cli = TestCli::parse_from([
            "ferryctl",
            "sources",
            "--watch",
            "--no-lan",
            "--static-source",
            "http://10.0.0.1:8000/0",
            "--static-source",
            "file:///srv/repo",
            "--sideload-dir",
            "/run/sideload",
            "--no-mounts",
        ]);
        let TestCommand::Sources(args) = cli.command;
        assert!(args.watch);
        assert!(cli.discovery.no_lan && cli.discovery.no_mounts);
        assert_eq!(cli.discovery.static_sources.len(), 2);
        let options = cli.discovery.options().unwrap();
        assert!(options.lan.is_off());
        assert!(!options.mounts);
        assert_eq!(options.sideload_dirs, vec![PathBuf::from("/run/sideload")]);
    }
}
