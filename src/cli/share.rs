//! `ferryctl serve` and `ferryctl prepare-usb`: passing updates on.
//!
//! - `ferryctl serve [--port N] [--address ADDR]... [--advertise]
//!   [--bandwidth-limit RATE]` serves the repository read-only over HTTP until
//!   SIGINT/SIGTERM, on the given addresses or else on those of the interfaces
//!   `FERRY_LAN_INTERFACES` allows (loopback only when it is `none`), and with
//!   `--advertise` publishes it there (DNS-SD), withdrawing the advertisement on
//!   exit. With
//!   `--json` it prints one JSON object per line: `{"event":"serving",…}`,
//!   `{"event":"advertised",…}`, `{"event":"summary-changed",…}`,
//!   `{"event":"withdrawn"}`, `{"event":"stopped"}`.
//! - `ferryctl prepare-usb MOUNT [REF]... [--destination-repo DIR]` copies refs
//!   (`REMOTE:REF` or tracked ref names; default every tracked ref) onto a drive as
//!   `ostree create-usb` does. With `--json` it prints JSON lines (`planned`,
//!   `ref-started`, `progress`, `ref-copied`) and finally `{"event":"done",…}`.

use std::cell::Cell;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::cli::output::{format_size, format_timestamp, print_json_line, PrintPacer};
use crate::repo::summary::SummaryRef;
use crate::share::server::{Listen, ServedSummary, ServerConfig};
use crate::share::usb::{self, UsbEvent, UsbOptions};
use crate::share::{parse_rate, Sharing, DEFAULT_PORT};
use crate::signals::on_stop_signals;
use crate::sources::LanInterfaces;

/// `ferryctl serve` arguments.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TCP port to serve on (0 picks a free one)
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Listen on this address (repeatable; loopback included) instead of on the
    /// addresses of the interfaces FERRY_LAN_INTERFACES allows
    #[arg(long = "address", value_name = "ADDR")]
    pub addresses: Vec<IpAddr>,

    /// Announce the repository to nearby computers (DNS-SD on the interfaces
    /// FERRY_LAN_INTERFACES allows; default every non-loopback interface)
    #[arg(long)]
    pub advertise: bool,

    /// Upload at most RATE bytes per second across all downloads (e.g. 5M, 500k,
    /// 2MiB)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub bandwidth_limit: Option<u64>,
}

/// `ferryctl prepare-usb` arguments.
#[derive(Debug, Clone, Args)]
pub struct PrepareUsbArgs {
    /// Where the drive is mounted
    pub mount: PathBuf,

    /// Refs to copy: REMOTE:REF or the name of a tracked ref (default: every
    /// tracked ref)
    #[arg(value_name = "REF")]
    pub refs: Vec<String>,

    /// Put the repository at DIR inside the drive (linked from
    /// .ostree/repos.d) instead of .ostree/repo
    #[arg(long, value_name = "DIR")]
    pub destination_repo: Option<PathBuf>,
}

/// The refs a summary offers, each once: a plain ref that repeats a
/// collection-ref (listed for plain `ostree pull`) is not shown again.
fn offered_refs(summary: &ServedSummary) -> Vec<(Option<&str>, &SummaryRef)> {
    let all: Vec<(Option<&str>, &SummaryRef)> = summary.summary.all_refs().collect();
    all.iter()
        .filter(|(collection, r)| {
            collection.is_some()
                || !all.iter().any(|(c, other)| {
                    c.is_some() && other.name == r.name && other.checksum == r.checksum
                })
        })
        .copied()
        .collect()
}

fn refs_json(summary: &ServedSummary) -> Vec<serde_json::Value> {
    offered_refs(summary)
        .into_iter()
        .map(|(collection, r)| {
            json!({
                "collection_id": collection,
                "ref": r.name,
                "commit": r.checksum,
                "timestamp": r.timestamp,
                "version": r.version,
            })
        })
        .collect()
}

/// Runs `ferryctl serve` until SIGINT or SIGTERM.
pub fn run_serve(repo: &Path, args: &ServeArgs, json: bool) -> Result<ExitCode, String> {
    // Read before anything starts, so a bad value stops us before we listen. The
    // interfaces decide where to listen (unless addresses are given) and where to
    // advertise.
    let lan = if args.advertise || args.addresses.is_empty() {
        LanInterfaces::from_env().map_err(|e| e.to_string())?
    } else {
        LanInterfaces::Off
    };
    let interfaces = if args.advertise {
        lan.clone()
    } else {
        LanInterfaces::Off
    };
    let listen = if args.addresses.is_empty() {
        if lan.is_off() {
            eprintln!("WARNING: FERRY_LAN_INTERFACES turns LAN sharing off: serving to this computer only (loopback); give --address to serve elsewhere.");
        }
        Listen::Interfaces(lan.clone())
    } else {
        Listen::Addresses(args.addresses.clone())
    };
    if let LanInterfaces::Only(names) = &lan {
        for name in names {
            let exists = std::ffi::CString::new(name.as_str())
                // SAFETY: a NUL-terminated interface name.
                .is_ok_and(|c| unsafe { libc::if_nametoindex(c.as_ptr()) } != 0);
            if !exists {
                eprintln!("WARNING: FERRY_LAN_INTERFACES names “{name}”, which this computer does not have.");
            }
        }
    }
    // From here on SIGINT/SIGTERM stop serving cleanly: the advertisement is
    // withdrawn. A signal before the main loop runs is seen once it does.
    let stop_requested = Rc::new(Cell::new(false));
    let main_loop = glib::MainLoop::new(None, false);
    let _stop_signals = on_stop_signals(glib::clone!(
        #[strong]
        stop_requested,
        #[strong]
        main_loop,
        move || {
            stop_requested.set(true);
            main_loop.quit();
        }
    ));
    let mut config = ServerConfig::new(repo);
    config.port = args.port;
    config.listen = listen;
    config.bandwidth_limit = args.bandwidth_limit;
    let sharing = Sharing::start(config, &interfaces).map_err(|e| e.to_string())?;
    let port = sharing.port();
    let summary = sharing.server().summary();
    if json {
        print_json_line(&json!({
            "event": "serving",
            "repo": repo,
            "port": port,
            "repo_index": sharing.server().repo_index(),
            "urls": sharing.urls(),
            "bandwidth_limit": args.bandwidth_limit,
            "summary_last_modified": summary.last_modified,
            "refs": refs_json(&summary),
        }));
    } else {
        println!(
            "Serving {} ({} ref(s)) on port {port}:",
            repo.display(),
            offered_refs(&summary).len()
        );
        for url in sharing.urls() {
            println!("  {url}");
        }
        if sharing.urls().is_empty() {
            println!("  (no address yet: waiting for the network)");
        }
        if let Some(rate) = args.bandwidth_limit {
            println!("Uploads limited to {}/s", format_size(rate));
        }
    }

    if args.advertise && interfaces.is_off() {
        eprintln!("WARNING: not advertising: FERRY_LAN_INTERFACES turns LAN sharing off.");
    }
    if let Some((fullname, settings)) = sharing.advertisement() {
        if json {
            print_json_line(&json!({
                "event": "advertised",
                "name": fullname,
                "host": settings.host,
                "port": port,
                "summary_last_modified": summary.last_modified,
            }));
        } else {
            println!("Advertising “{}” to nearby computers", settings.instance);
        }
    }
    sharing.connect_summary_changed(move |summary, advert_error| {
        if let Some(e) = advert_error {
            eprintln!("ferryctl: {e}");
        }
        if json {
            print_json_line(&json!({
                "event": "summary-changed",
                "summary_last_modified": summary.last_modified,
                "refs": refs_json(summary),
            }));
        } else {
            println!(
                "Now serving {} ref(s) (summary of {})",
                offered_refs(summary).len(),
                format_timestamp(summary.last_modified)
            );
        }
    });
    if !json {
        println!("Press Ctrl+C to stop.");
    }

    // Quitting before `run` would be forgotten: a signal that came while starting
    // has set the flag.
    if !stop_requested.get() {
        main_loop.run();
    }

    match sharing.stop() {
        Err(e) => eprintln!("ferryctl: {e}"),
        Ok(true) if json => print_json_line(&json!({ "event": "withdrawn" })),
        Ok(true) => println!("Withdrew the advertisement"),
        Ok(false) => {}
    }
    if json {
        print_json_line(&json!({ "event": "stopped" }));
    } else {
        println!("Stopped serving");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `ferryctl prepare-usb`.
pub fn run_prepare_usb(repo: &Path, args: &PrepareUsbArgs, json: bool) -> Result<ExitCode, String> {
    let options = UsbOptions {
        repo: repo.to_owned(),
        mount: args.mount.clone(),
        refs: args.refs.clone(),
        destination_repo: args.destination_repo.clone(),
    };
    let terminal = std::io::stderr().is_terminal();
    let pacer = Mutex::new(PrintPacer::new(Duration::from_millis(if terminal {
        200
    } else {
        2000
    })));
    let on_event = |event: &UsbEvent| {
        if json {
            if matches!(event, UsbEvent::Progress { .. }) && !pacer.lock().expect("lock").ready() {
                return;
            }
            print_json_line(event);
            return;
        }
        match event {
            UsbEvent::Planned { plan } => eprintln!(
                "Copying {} ref(s) to {}: {} object(s), {} to write ({} free)",
                plan.refs.len(),
                plan.destination.display(),
                plan.objects_missing,
                format_size(plan.bytes_missing),
                format_size(plan.bytes_available)
            ),
            UsbEvent::RefStarted {
                index,
                total,
                target,
            } => eprintln!(
                "[{}/{total}] {}:{} ({}) {}",
                index + 1,
                target.remote,
                target.ref_name,
                target.collection_id,
                target.commit
            ),
            UsbEvent::Progress {
                objects_done,
                objects_total,
                bytes_done,
                bytes_total,
                ..
            } => {
                if pacer.lock().expect("lock").ready() {
                    let line = format!(
                        "  {objects_done}/{objects_total} files, {} of {}",
                        format_size(*bytes_done),
                        format_size(*bytes_total)
                    );
                    if terminal {
                        eprint!("\r{line}   ");
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
            UsbEvent::RefCopied {
                objects_copied,
                bytes_copied,
                ..
            } => {
                if terminal {
                    eprintln!();
                }
                eprintln!(
                    "  copied {objects_copied} object(s), {}",
                    format_size(*bytes_copied)
                );
            }
        }
    };
    let report = usb::prepare_usb(&options, &on_event).map_err(|e| e.to_string())?;
    if json {
        let mut value = serde_json::to_value(&report).map_err(|e| e.to_string())?;
        value["event"] = json!("done");
        print_json_line(&value);
    } else {
        println!(
            "The drive is ready: {} ref(s) in {} ({} object(s), {} copied)",
            report.refs.len(),
            report.destination.display(),
            report.objects_copied,
            format_size(report.bytes_copied)
        );
        if let Some(link) = &report.symlink {
            println!("Linked from {}", link.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(Debug, clap::Subcommand)]
    enum TestCommand {
        Serve(ServeArgs),
        PrepareUsb(PrepareUsbArgs),
    }

    #[test]
    fn arguments_parse() {
        let cli = TestCli::parse_from([
            "ferryctl",
            "serve",
            "--port",
            "0",
            "--advertise",
            "--bandwidth-limit",
            "5M",
            "--address",
            "127.0.0.1",
            "--address",
            "::1",
        ]);
        let TestCommand::Serve(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.port, 0);
        assert_eq!(
            args.addresses,
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert!(args.advertise);
        assert_eq!(args.bandwidth_limit, Some(5_000_000));
        let cli = TestCli::parse_from(["ferryctl", "serve"]);
        let TestCommand::Serve(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.port, DEFAULT_PORT);
        assert!(
            TestCli::try_parse_from(["ferryctl", "serve", "--bandwidth-limit", "fast"]).is_err()
        );

        let cli = TestCli::parse_from([
            "ferryctl",
            "prepare-usb",
            "/media/stick",
            "origin:os/stable",
            "os/beta",
            "--destination-repo",
            "updates",
        ]);
        let TestCommand::PrepareUsb(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.mount, PathBuf::from("/media/stick"));
        assert_eq!(args.refs, vec!["origin:os/stable", "os/beta"]);
        assert_eq!(args.destination_repo, Some(PathBuf::from("updates")));
    }
}
