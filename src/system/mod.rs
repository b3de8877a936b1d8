//! The operating system Ferry updates: an OSTree sysroot (`/` on an OSTree-booted
//! computer, or a directory) and its deployments.
//!
//! Everything that touches the sysroot itself (bootloader entries, the `/etc`
//! merge, kernel arguments, staging on a booted system) is libostree's work, done
//! through its own `ostree admin` command rather than by hand. The command, not
//! the C library: it is libostree's reference front end (the same calls
//! `rpm-ostree` and `eos-updater` make, `ostree_sysroot_deploy_tree` /
//! `stage_tree` and `ostree_sysroot_simple_write_deployment`), it is already what
//! Ferry's tests check against, and it keeps libostree's C code out of Ferry's
//! process (no unsafe bindings, no `-dev` package to build against; a crash or an
//! abort in the C code is a failed command, not a dead daemon). What it prints is
//! parsed in one place, [`status::parse`].

mod status;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use status::{parse as parse_status, Deployment};

/// The marker libostree's initramfs leaves on a computer booted from OSTree.
pub const OSTREE_BOOTED: &str = "/run/ostree-booted";

/// Why a sysroot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("{0} is not an OSTree sysroot (it has no ostree/repo)")]
    NotASysroot(PathBuf),
    #[error("the sysroot has no deployment{}", .os.as_ref().map(|os| format!(" of {os}")).unwrap_or_default())]
    NoDeployment { os: Option<String> },
    #[error(
        "the default deployment ({commit}) has no origin refspec, so there is no update to apply"
    )]
    NoOrigin { commit: String },
    #[error("there is no earlier deployment of {os} to roll back to")]
    NothingToRollBack { os: String },
    #[error("`{command}` failed: {stderr}")]
    Admin { command: String, stderr: String },
    #[error("cannot run ostree: {0}")]
    Spawn(std::io::Error),
}

/// An OSTree sysroot and the operating system in it Ferry updates.
#[derive(Clone, Debug)]
pub struct Sysroot {
    path: PathBuf,
    /// `--os`: the stateroot; by default the default deployment's.
    os: Option<String>,
}

impl Sysroot {
    /// The sysroot at `path` (it must hold `ostree/repo`).
    pub fn open(path: &Path, os: Option<&str>) -> Result<Self, SystemError> {
        if !path.join("ostree/repo/config").is_file() {
            return Err(SystemError::NotASysroot(path.to_owned()));
        }
        Ok(Self {
            path: path.to_owned(),
            os: os.map(str::to_owned),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The system repository: `ostree/repo` (bare).
    pub fn repo_path(&self) -> PathBuf {
        self.path.join("ostree/repo")
    }

    /// Whether this sysroot is the running system: new deployments are then
    /// staged and finished at shutdown (`ostree-finalize-staged.service`).
    pub fn is_booted(&self) -> bool {
        self.path == Path::new("/") && Path::new(OSTREE_BOOTED).exists()
    }

    /// Every deployment, the default first (`ostree admin status`).
    pub fn deployments(&self) -> Result<Vec<Deployment>, SystemError> {
        let out = self.admin(&["status"])?;
        Ok(status::parse(&out))
    }

    /// The deployments of the operating system Ferry updates, the default first.
    pub fn os_deployments(&self) -> Result<Vec<Deployment>, SystemError> {
        let all = self.deployments()?;
        let os = match &self.os {
            Some(os) => os.clone(),
            None => match all.first() {
                Some(first) => first.os.clone(),
                None => return Err(SystemError::NoDeployment { os: None }),
            },
        };
        let mine: Vec<_> = all.into_iter().filter(|d| d.os == os).collect();
        if mine.is_empty() {
            return Err(SystemError::NoDeployment { os: Some(os) });
        }
        Ok(mine)
    }

    /// The deployment the next boot starts.
    pub fn default_deployment(&self) -> Result<Deployment, SystemError> {
        Ok(self.os_deployments()?.remove(0))
    }

    /// The default deployment and the refspec it follows (its origin).
    pub fn default_origin(&self) -> Result<(Deployment, String), SystemError> {
        let current = self.default_deployment()?;
        match current.refspec.clone() {
            Some(refspec) => Ok((current, refspec)),
            None => Err(SystemError::NoOrigin {
                commit: current.commit,
            }),
        }
    }

    /// Deploys the commit `refspec` names in the system repository as the new
    /// default (staged on a booted system), keeping the origin refspec; libostree
    /// merges `/etc` and the kernel arguments from the current default. Returns
    /// the new default deployment.
    pub fn deploy(&self, os: &str, refspec: &str) -> Result<Deployment, SystemError> {
        let mut args = vec!["deploy", "--os", os];
        if self.is_booted() {
            args.push("--stage");
        }
        args.push(refspec);
        self.admin(&args)?;
        self.default_deployment()
    }

    /// Makes the previous deployment of the operating system the default again,
    /// removing the current default (`ostree admin undeploy`): libostree's CLI has
    /// no reordering, and the removed commit stays in the repository until pruned,
    /// so applying it again needs no download.
    pub fn rollback(&self) -> Result<Deployment, SystemError> {
        let mine = self.os_deployments()?;
        if mine.len() < 2 {
            return Err(SystemError::NothingToRollBack {
                os: mine[0].os.clone(),
            });
        }
        self.admin(&["undeploy", &mine[0].index.to_string()])?;
        self.default_deployment()
    }

    /// Runs `ostree admin ARGS --sysroot PATH` and returns its stdout.
    fn admin(&self, args: &[&str]) -> Result<String, SystemError> {
        let mut command = Command::new("ostree");
        command
            .arg("admin")
            .args(args)
            .arg(format!("--sysroot={}", self.path.display()))
            // Ferry parses the output: the C locale's words.
            .env("LC_ALL", "C");
        let out = command.output().map_err(SystemError::Spawn)?;
        if !out.status.success() {
            return Err(SystemError::Admin {
                command: format!("ostree admin {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `REMOTE:REF` or `REF`: the remote (if any) and the ref.
pub fn split_refspec(refspec: &str) -> (Option<&str>, &str) {
    match refspec.split_once(':') {
        Some((remote, ref_name)) => (Some(remote), ref_name),
        None => (None, refspec),
    }
}
