//! `ferryctl --sysroot DIR [--os NAME] status|apply|rollback`: the deployments of
//! an OSTree sysroot, as root, with no daemon.

use std::path::Path;
use std::process::ExitCode;

use super::output::print_json;
use super::repo_cmds::CmdResult;
use crate::repo::refs::{read_ref, RefKind};
use crate::system::{split_refspec, Deployment, Sysroot};

/// The sysroot `ferryctl` works on: `--sysroot`, or `/` on an OSTree-booted
/// computer.
pub fn sysroot(path: Option<&Path>, os: Option<&str>) -> Result<Sysroot, String> {
    let path = path.unwrap_or(Path::new("/"));
    Sysroot::open(path, os).map_err(|e| e.to_string())
}

/// One line about a deployment: version (or commit), then what it is.
fn describe(d: &Deployment) -> String {
    let what = d.version.as_ref().map_or_else(
        || format!("commit {}", &d.commit[..12]),
        |v| format!("version {v} ({})", &d.commit[..12]),
    );
    let mut roles = Vec::new();
    if d.index == 0 {
        roles.push("default");
    }
    for (on, role) in [
        (d.booted, "running"),
        (d.staged, "staged, finished at shutdown"),
        (d.pending, "starts at the next boot"),
        (d.pinned, "pinned"),
    ] {
        if on {
            roles.push(role);
        }
    }
    let roles = if roles.is_empty() {
        String::new()
    } else {
        format!(" [{}]", roles.join(", "))
    };
    format!("{} {what}{roles}", d.os)
}

pub fn status(sysroot: &Sysroot, json: bool) -> CmdResult {
    let deployments = sysroot.deployments().map_err(|e| e.to_string())?;
    if json {
        print_json(&deployments);
    } else if deployments.is_empty() {
        println!("No deployments in {}", sysroot.path().display());
    } else {
        for d in &deployments {
            println!("{}", describe(d));
            if let Some(refspec) = &d.refspec {
                println!("    follows {refspec}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Deploys the newest commit of what the default deployment follows, if it is not
/// the default already.
pub fn apply(sysroot: &Sysroot, json: bool) -> CmdResult {
    let (current, refspec) = sysroot.default_origin().map_err(|e| e.to_string())?;
    let (remote, ref_name) = split_refspec(&refspec);
    let kind = remote.map_or(RefKind::Head, |r| RefKind::Remote(r.to_owned()));
    let newest = read_ref(&sysroot.repo_path(), &kind, ref_name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{refspec} is not in the system repository: run update first"))?;
    let applied = newest.to_hex() != current.commit;
    let deployment = if applied {
        sysroot
            .deploy(&current.os, &refspec)
            .map_err(|e| e.to_string())?
    } else {
        current
    };
    if json {
        print_json(&serde_json::json!({ "applied": applied, "deployment": deployment }));
    } else if applied {
        println!("Deployed {}", describe(&deployment));
        println!("It starts at the next boot; the previous deployment stays as the fallback.");
    } else {
        println!(
            "Nothing to apply: {} is already the newest of {refspec}.",
            describe(&deployment)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rollback(sysroot: &Sysroot, json: bool) -> CmdResult {
    let deployment = sysroot.rollback().map_err(|e| e.to_string())?;
    if json {
        print_json(&deployment);
    } else {
        println!("The default is again {}", describe(&deployment));
    }
    Ok(ExitCode::SUCCESS)
}

/// On a sysroot, `check` and `update` keep up to date what the default deployment
/// follows (its origin `REMOTE:REF`): tracked in the system repository's config
/// (`[ferry] tracked-refs`, a group `ostree` ignores), so discovery and the engine
/// see it as any tracked ref.
pub fn track_origin(sysroot: &Sysroot) -> Result<(), String> {
    let (_, refspec) = sysroot.default_origin().map_err(|e| e.to_string())?;
    let (remote, ref_name) = split_refspec(&refspec);
    let remote = remote.ok_or_else(|| {
        format!(
            "the default deployment follows {refspec}, which names no remote; Ferry updates \
             from a remote (switch to one with “ostree admin switch REMOTE:{refspec}”)"
        )
    })?;
    let mut config =
        crate::repo::config::RepoConfig::load(sysroot.repo_path()).map_err(|e| e.to_string())?;
    if config.track(remote, ref_name).map_err(|e| e.to_string())? {
        config.save().map_err(|e| e.to_string())?;
    }
    Ok(())
}
