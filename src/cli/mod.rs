//! The `ferryctl` command line. Builds without GTK.
//!
//! Errors from the engine are printed as one plain sentence; `--json` output is a
//! documented contract (see the README).

mod output;
mod repo_cmds;
pub mod share;
pub mod sources;
mod update;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::fetch::engine::DownloadLimit;

#[derive(Debug, Parser)]
#[command(name = "ferryctl", version, about = "Ferry: updates from nearby")]
pub struct Cli {
    /// The local repository (default: $XDG_DATA_HOME/ferry/repo)
    #[arg(long, global = true, value_name = "PATH", env = "FERRY_REPO")]
    pub repo: Option<PathBuf>,

    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub discovery: sources::DiscoveryArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the local repository
    Init {
        /// The repository's own collection ID
        #[arg(long, value_name = "ID")]
        collection_id: Option<String>,
    },
    /// Configure remotes (as `ostree remote` does)
    #[command(subcommand)]
    Remote(repo_cmds::RemoteCommand),
    /// Keep REF of REMOTE up to date
    Track { remote: String, ref_name: String },
    /// Pull REF from one source only (a path, file://, http:// or https:// URI)
    Pull {
        source_uri: String,
        ref_name: String,
        /// The remote the ref belongs to (default: the one whose collection ID the source offers)
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
    },
    /// List refs
    Refs,
    /// Show the history of a ref or commit
    Log { rev: String },
    /// Check every object and every commit's closure
    Fsck,
    /// Regenerate the summary file
    Summary {
        /// Update the summary (the only mode for now, as `ostree summary -u`)
        #[arg(short = 'u', long = "update", required = true)]
        update: bool,
    },
    /// List the sources discovery sees
    Sources(sources::SourcesArgs),
    /// Find the newest trusted commit of every tracked ref
    Check {
        /// Use only this source (repeatable; ids as `ferryctl sources` shows)
        #[arg(long = "source", value_name = "ID")]
        sources: Vec<String>,
    },
    /// Pull every tracked ref from the best sources, with live progress
    Update {
        /// Use only this source (repeatable; ids as `ferryctl sources` shows)
        #[arg(long = "source", value_name = "ID")]
        sources: Vec<String>,
        /// With --json, also report every object and which source served it
        #[arg(long)]
        object_events: bool,
        /// Download at most RATE bytes a second from all sources together
        /// (5M, 500k, 2MiB/s); drives are not limited
        #[arg(long, value_name = "RATE", value_parser = crate::share::parse_rate)]
        max_rate: Option<u64>,
        /// Apply --max-rate to internet sources only (nearby computers go at full speed)
        #[arg(long, requires = "max_rate")]
        max_rate_internet_only: bool,
    },
    /// Sign a commit with an ed25519 secret key (base64, 64 bytes: seed then public key)
    Sign {
        rev: String,
        #[arg(long, value_name = "FILE")]
        ed25519_secret: PathBuf,
    },
    /// Check a commit out into a new directory
    Checkout { rev: String, destination: PathBuf },
    /// Share the repository with nearby computers over HTTP
    Serve(share::ServeArgs),
    /// Copy updates onto a USB drive (as `ostree create-usb` does)
    PrepareUsb(share::PrepareUsbArgs),
}

pub fn main() -> ExitCode {
    // GLib logs to stdout by default, which would corrupt `--json` output.
    // SAFETY: called once, before any other thread exists or logs.
    unsafe { glib::log_writer_default_set_use_stderr(true) };
    let cli = Cli::parse();
    let repo = cli
        .repo
        .clone()
        .unwrap_or_else(crate::repo::default_repo_path);
    let result = match cli.command {
        Command::Init { collection_id } => repo_cmds::init(&repo, collection_id.as_deref()),
        Command::Remote(cmd) => repo_cmds::remote(&repo, cmd, cli.json),
        Command::Track { remote, ref_name } => repo_cmds::track(&repo, &remote, &ref_name),
        Command::Pull {
            source_uri,
            ref_name,
            remote,
        } => repo_cmds::pull(&repo, &source_uri, &ref_name, remote.as_deref(), cli.json),
        Command::Refs => repo_cmds::refs(&repo, cli.json),
        Command::Log { rev } => repo_cmds::log(&repo, &rev, cli.json),
        Command::Fsck => repo_cmds::fsck(&repo, cli.json),
        Command::Summary { .. } => repo_cmds::summary_update(&repo),
        Command::Sources(args) => sources::run(&repo, &args, &cli.discovery, cli.json),
        Command::Check { sources } => update::check(&repo, &cli.discovery, &sources, cli.json),
        Command::Update {
            sources,
            object_events,
            max_rate,
            max_rate_internet_only,
        } => {
            let limit = DownloadLimit {
                bytes_per_second: max_rate.unwrap_or(0),
                internet_only: max_rate_internet_only,
            };
            let options = update::UpdateOptions {
                only: &sources,
                json: cli.json,
                object_events,
                limit,
            };
            update::update(&repo, &cli.discovery, options)
        }
        Command::Sign {
            rev,
            ed25519_secret,
        } => repo_cmds::sign(&repo, &rev, &ed25519_secret),
        Command::Checkout { rev, destination } => repo_cmds::checkout(&repo, &rev, &destination),
        Command::Serve(args) => share::run_serve(&repo, &args, cli.json),
        Command::PrepareUsb(args) => share::run_prepare_usb(&repo, &args, cli.json),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("ferryctl: {message}");
            ExitCode::FAILURE
        }
    }
}
