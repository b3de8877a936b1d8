//! `ferryctl --sysroot S status|apply|rollback` against `ostree admin`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::http::{ServeOptions, Server};
use crate::common::repo::{ostree_commit, ostree_init, run, run_ok, write_file};
use crate::common::{ferryctl_bare, ostree, tempdir, REF};

/// The stateroot of the test system.
const OS: &str = "demo";

/// An OSTree sysroot with v1 deployed from `origin:REF`, an edit in v1's `/etc`
/// and a kernel argument; an archive upstream the commits come from.
struct TestSysroot {
    /// Removed (with every deployment: they are mutable) when the test ends.
    _dir: tempfile::TempDir,
    sysroot: PathBuf,
    upstream: PathBuf,
    tree: PathBuf,
    v1: String,
    /// The upstream over HTTP on loopback, when the remote points there.
    _server: Option<Server>,
}

/// `ostree admin ARGS --sysroot S`, deployments mutable so they can be removed.
fn admin(sysroot: &Path) -> Command {
    let mut cmd = Command::new("ostree");
    cmd.arg("admin")
        .arg(format!("--sysroot={}", sysroot.display()))
        .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments");
    cmd
}

impl TestSysroot {
    /// The remote is the upstream's directory (`file://`).
    fn new() -> Self {
        Self::with_remote(false)
    }

    /// The remote is the upstream served over HTTP on loopback.
    fn over_http() -> Self {
        Self::with_remote(true)
    }

    fn with_remote(over_http: bool) -> Self {
        let dir = tempdir();
        let sysroot = dir.path().join("sysroot");
        fs::create_dir(&sysroot).unwrap();
        run_ok(admin(&sysroot).args(["init-fs", "--modern"]).arg(&sysroot));
        run_ok(admin(&sysroot).args(["os-init", OS]));
        let repo = sysroot.join("ostree/repo");
        run_ok(ostree(&repo).args(["config", "set", "sysroot.bootloader", "none"]));

        let upstream = dir.path().join("upstream");
        ostree_init(&upstream);
        let tree = dir.path().join("tree");
        write_file(
            &tree.join("usr/lib/modules/6.1.0/vmlinuz"),
            b"kernel\n",
            0o644,
        );
        write_file(
            &tree.join("usr/lib/modules/6.1.0/initramfs.img"),
            b"initramfs\n",
            0o644,
        );
        write_file(
            &tree.join("usr/lib/os-release"),
            b"ID=demo\nPRETTY_NAME=\"Demo OS\"\n",
            0o644,
        );
        write_file(&tree.join("usr/etc/hostname"), b"demo\n", 0o644);
        write_file(&tree.join("usr/bin/hello"), b"v1\n", 0o755);
        let v1 = Self::commit(&upstream, &tree, "1");

        let server = over_http.then(|| Server::start(&upstream, ServeOptions::default()));
        let url = match &server {
            Some(server) => server.url(),
            None => format!("file://{}", upstream.display()),
        };
        // The remote as `ostree remote add --repo=S/ostree/repo` writes it.
        run_ok(ostree(&repo).args(["remote", "add", "--no-gpg-verify", "origin", &url]));
        let s = Self {
            _dir: dir,
            sysroot,
            upstream,
            tree,
            v1,
            _server: server,
        };
        s.pull_into_system_repo();
        run_ok(
            admin(&s.sysroot)
                .args(["deploy", "--os", OS, "--karg=quiet"])
                .arg(format!("origin:{REF}")),
        );
        write_file(
            &s.deployment_dir(&s.v1).join("etc/ferry-edit.conf"),
            b"mine\n",
            0o644,
        );
        s
    }

    /// Commits the tree as `version` and updates the upstream's summary.
    fn commit(upstream: &Path, tree: &Path, version: &str) -> String {
        let commit = ostree_commit(
            upstream,
            REF,
            tree,
            &[
                "--bootable",
                "-s",
                &format!("v{version}"),
                &format!("--add-metadata-string=version={version}"),
            ],
        );
        run_ok(ostree(upstream).args(["summary", "-u"]));
        commit
    }

    /// Publishes v2 upstream.
    fn publish_v2(&self) -> String {
        write_file(&self.tree.join("usr/bin/hello"), b"v2\n", 0o755);
        Self::commit(&self.upstream, &self.tree, "2")
    }

    /// What an update leaves in the system repository: the upstream's newest
    /// commit at `origin:REF`.
    fn pull_into_system_repo(&self) {
        run_ok(
            ostree(&self.sysroot.join("ostree/repo"))
                .args(["pull-local", "--remote=origin"])
                .arg(&self.upstream)
                .arg(REF),
        );
    }

    fn deployment_dir(&self, commit: &str) -> PathBuf {
        self.sysroot
            .join(format!("ostree/deploy/{OS}/deploy/{commit}.0"))
    }

    fn ferryctl(&self) -> Command {
        let mut cmd = ferryctl_bare();
        cmd.arg("--sysroot")
            .arg(&self.sysroot)
            .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments");
        cmd
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = run_ok(self.ferryctl().arg("--json").args(args));
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
    }

    /// The commit of each deployment, as `ostree admin status` lists them.
    fn ostree_status(&self) -> Vec<String> {
        let out = run_ok(admin(&self.sysroot).arg("status"));
        out.stdout
            .lines()
            .filter_map(|l| l.get(2..)?.split(' ').nth(1)?.split_once('.'))
            .map(|(commit, _)| commit.to_owned())
            .collect()
    }
}

#[test]
fn apply_deploys_the_new_commit_keeping_etc_and_kernel_arguments_and_rollback_undoes_it() {
    let s = TestSysroot::new();
    let status = s.json(&["status"]);
    assert_eq!(status[0]["commit"], s.v1.as_str(), "{status:#}");
    assert_eq!(status[0]["version"], "1");
    assert_eq!(status[0]["refspec"], format!("origin:{REF}"));

    // Nothing new yet.
    let report = s.json(&["apply"]);
    assert_eq!(report["applied"], false, "{report:#}");

    let v2 = s.publish_v2();
    s.pull_into_system_repo();
    let report = s.json(&["apply"]);
    assert_eq!(report["applied"], true, "{report:#}");
    assert_eq!(report["deployment"]["commit"], v2.as_str());
    assert_eq!(report["deployment"]["version"], "2");
    assert_eq!(s.ostree_status(), [v2.clone(), s.v1.clone()]);

    // libostree merged /etc and the kernel arguments into the new deployment.
    let v2_dir = s.deployment_dir(&v2);
    assert_eq!(
        fs::read(v2_dir.join("etc/ferry-edit.conf")).unwrap(),
        b"mine\n"
    );
    assert_eq!(fs::read(v2_dir.join("usr/bin/hello")).unwrap(), b"v2\n");
    let entries = s.sysroot.join("boot/loader/entries");
    let default_entry = fs::read_dir(&entries)
        .unwrap()
        .flatten()
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .find(|text| text.contains("(ostree:0)"))
        .unwrap_or_else(|| panic!("no boot entry for the default in {}", entries.display()));
    assert!(
        default_entry
            .lines()
            .any(|l| l.starts_with("options ") && l.contains("quiet")),
        "{default_entry}"
    );
    run_ok(ostree(&s.sysroot.join("ostree/repo")).arg("fsck"));

    // Applying again changes nothing.
    assert_eq!(s.json(&["apply"])["applied"], false);
    assert_eq!(s.ostree_status(), [v2.clone(), s.v1.clone()]);

    // Rollback: v1 is the default again, with its own /etc.
    let back = s.json(&["rollback"]);
    assert_eq!(back["commit"], s.v1.as_str(), "{back:#}");
    assert_eq!(s.ostree_status(), std::slice::from_ref(&s.v1));
    assert!(s.deployment_dir(&s.v1).join("etc/ferry-edit.conf").exists());
    let out = run(s.ferryctl().arg("rollback"));
    assert!(!out.success, "a second rollback succeeded");
    assert!(
        out.stderr.contains("no earlier deployment of demo"),
        "{}",
        out.stderr
    );
}

#[test]
fn update_pulls_into_the_bare_system_repository_then_apply_deploys_it() {
    let s = TestSysroot::over_http();
    let v2 = s.publish_v2();
    // Only the upstream: no drives, no nearby computers.
    let discovery = ["--no-lan", "--no-mounts"];
    let plan = s.json(&[&discovery[..], &["check"]].concat());
    assert!(
        plan.to_string().contains(&v2),
        "check does not offer v2: {plan:#}"
    );

    run_ok(s.ferryctl().args(discovery).args(["update"]));
    // One copy: the commit is in the system repository (bare), verified.
    let repo = s.sysroot.join("ostree/repo");
    let pulled = run_ok(ostree(&repo).args(["rev-parse", &format!("origin:{REF}")]));
    assert_eq!(pulled.stdout.trim(), v2);
    run_ok(ostree(&repo).arg("fsck"));

    let report = s.json(&["apply"]);
    assert_eq!(report["applied"], true, "{report:#}");
    assert_eq!(s.ostree_status(), [v2.clone(), s.v1.clone()]);
    assert_eq!(
        fs::read(s.deployment_dir(&v2).join("usr/bin/hello")).unwrap(),
        b"v2\n"
    );
}

#[test]
fn a_directory_that_is_not_a_sysroot_is_refused_plainly() {
    let dir = tempdir();
    let out = run(ferryctl_bare()
        .arg("--sysroot")
        .arg(dir.path())
        .arg("status"));
    assert!(!out.success);
    assert!(
        out.stderr.contains("is not an OSTree sysroot"),
        "{}",
        out.stderr
    );
}
