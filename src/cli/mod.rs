//! The `ferryctl` command line. Builds without GTK.
//!
//! Errors from the engine are printed as one plain sentence; `--json` output is a
//! documented contract (see the README).

mod output;
mod repo_cmds;
pub mod share;
pub mod sources;
mod system;
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

    /// Work on this OSTree sysroot (its `ostree/repo` and deployments), as root
    #[arg(long, global = true, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,

    /// The operating system (stateroot) in the sysroot (default: the default deployment's)
    #[arg(long, global = true, value_name = "NAME")]
    pub os: Option<String>,

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
        /// How file objects are stored, as `ostree init --mode` (bare needs root)
        #[arg(long, default_value = "archive", value_parser = ["archive", "bare", "bare-user", "bare-user-only"])]
        mode: String,
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
    /// Apply a static delta (as `ostree static-delta apply-offline`): PATH is its
    /// directory or its superblock file; its objects and commit are stored, no ref moves
    ApplyDelta { path: PathBuf },
    /// Check a commit out into a new directory
    Checkout { rev: String, destination: PathBuf },
    /// List the sysroot's deployments, the default first
    Status,
    /// Deploy the newest commit of what the default deployment follows (after update)
    Apply,
    /// Make the previous deployment the default again (the current one is removed)
    Rollback,
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
    // On a sysroot, its system repository is the repository.
    let repo = cli
        .repo
        .clone()
        .or_else(|| cli.sysroot.as_ref().map(|s| s.join("ostree/repo")))
        .unwrap_or_else(crate::repo::default_repo_path);
    let sysroot = || system::sysroot(cli.sysroot.as_deref(), cli.os.as_deref());
    // On a sysroot, check and update follow what the default deployment follows.
    if matches!(cli.command, Command::Check { .. } | Command::Update { .. })
        && cli.sysroot.is_some()
    {
        if let Err(message) = sysroot().and_then(|s| system::track_origin(&s)) {
            eprintln!("ferryctl: {message}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Status => sysroot().and_then(|s| system::status(&s, cli.json)),
        Command::Apply => sysroot().and_then(|s| system::apply(&s, cli.json)),
        Command::Rollback => sysroot().and_then(|s| system::rollback(&s, cli.json)),
        Command::Init {
            collection_id,
            mode,
        } => repo_cmds::init(&repo, &mode, collection_id.as_deref()),
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
        Command::ApplyDelta { path } => repo_cmds::apply_delta(&repo, &path, cli.json),
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
