//! A LAN for the integration tests: network namespaces joined by a veth pair, and
//! real avahi-daemons inside them. A support module includes this file next to
//! `cmd.rs`, which it uses as `super::cmd`:
//!
//! ```ignore
//! #[path = "../common/cmd.rs"]
//! mod cmd;
//! #[path = "../common/lan.rs"]
//! mod lan;
//! ```
//!
//! Traffic and mDNS stay inside the namespaces made here. Every namespace is
//! deleted and every daemon killed (by process group) by a Drop guard, also when a
//! test fails.

#![allow(dead_code)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::cmd::{kill_group, output, run, text};

/// Six random hex digits, for names that must not collide between test runs.
pub fn random_suffix() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// A network namespace (with `lo` up), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Self {
        run(Command::new("ip").args(["netns", "add", name]));
        let ns = Self {
            name: name.to_owned(),
        };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `argv` inside the namespace, asserts success, returns stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let mut cmd = self.command(argv[0]);
        cmd.args(&argv[1..]);
        run(&mut cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub const ADDR_A: &str = "10.77.0.1";
pub const ADDR_B: &str = "10.77.0.2";

/// Two namespaces (two computers) joined by a veth pair with random names:
/// `a` (`veth_a`, 10.77.0.1/24) and `b` (`veth_b`, 10.77.0.2/24).
pub struct Lan {
    pub suffix: String,
    pub veth_a: String,
    pub veth_b: String,
    // Deleting a namespace deletes its end of the pair.
    pub a: Netns,
    pub b: Netns,
}

impl Lan {
    /// Namespaces `ferry-<random>-a` and `-b`, veths `fva<random>` and `fvb<random>`.
    pub fn new() -> Self {
        Self::named("ferry", "fv")
    }

    /// Namespaces `<ns_prefix>-<random>-a` and `-b`, veths `<veth_prefix>a<random>`
    /// and `<veth_prefix>b<random>` (interface names have at most 15 bytes).
    pub fn named(ns_prefix: &str, veth_prefix: &str) -> Self {
        let suffix = random_suffix();
        let a = Netns::new(&format!("{ns_prefix}-{suffix}-a"));
        let b = Netns::new(&format!("{ns_prefix}-{suffix}-b"));
        let (veth_a, veth_b) = (
            format!("{veth_prefix}a{suffix}"),
            format!("{veth_prefix}b{suffix}"),
        );
        run(Command::new("ip").args([
            "link", "add", &veth_a, "type", "veth", "peer", "name", &veth_b,
        ]));
        // Moved into the namespaces, the pair is deleted with them.
        let moved = [(&veth_a, &a), (&veth_b, &b)].iter().all(|(veth, ns)| {
            Command::new("ip")
                .args(["link", "set", veth, "netns", &ns.name])
                .status()
                .is_ok_and(|s| s.success())
        });
        if !moved {
            let _ = Command::new("ip").args(["link", "del", &veth_a]).status();
            panic!("cannot move the veth pair into the namespaces");
        }
        a.exec_ok(&["ip", "addr", "add", &format!("{ADDR_A}/24"), "dev", &veth_a]);
        b.exec_ok(&["ip", "addr", "add", &format!("{ADDR_B}/24"), "dev", &veth_b]);
        a.exec_ok(&["ip", "link", "set", &veth_a, "up"]);
        b.exec_ok(&["ip", "link", "set", &veth_b, "up"]);
        Self {
            suffix,
            veth_a,
            veth_b,
            a,
            b,
        }
    }
}

/// How to start an [`Avahi`].
#[derive(Clone, Debug, Default)]
pub struct AvahiOptions {
    /// `host-name=` in avahi-daemon.conf; avahi's default (the system's host name)
    /// if `None`.
    pub host_name: Option<String>,
    /// Start a `dbus-daemon --system` on the private `/run/dbus` first, and let
    /// avahi publish its D-Bus API there (what libostree's LAN finder talks to).
    pub system_bus: bool,
}

/// A real avahi-daemon inside a namespace, in a private mount namespace whose
/// `/run/avahi-daemon`, `/etc/avahi/services` and `/run/dbus` are directories of
/// our own (so neither it nor anything run with [`Avahi::command`] reaches the
/// host's system bus). Services are static `.service` files in
/// [`Avahi::services_dir`].
pub struct Avahi {
    child: Child,
    dir: tempfile::TempDir,
}

impl Avahi {
    /// avahi-daemon on `interface` of `ns`, with default options.
    pub fn start(ns: &Netns, interface: &str) -> Self {
        Self::start_with(ns, interface, AvahiOptions::default())
    }

    pub fn start_with(ns: &Netns, interface: &str, options: AvahiOptions) -> Self {
        Self::start_inner(ns, interface, options, &[])
    }

    /// avahi-daemon with default options and a static hosts file of our own
    /// (`/etc/avahi/hosts` in its mount namespace): `(address, host name)` pairs
    /// avahi answers for with that address, whatever it is.
    pub fn start_with_static_hosts(ns: &Netns, interface: &str, hosts: &[(&str, &str)]) -> Self {
        Self::start_inner(ns, interface, AvahiOptions::default(), hosts)
    }

    fn start_inner(
        ns: &Netns,
        interface: &str,
        options: AvahiOptions,
        static_hosts: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ferry-avahi-")
            .tempdir()
            .expect("tempdir");
        for sub in ["run", "services", "dbus"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let host_name = options
            .host_name
            .map(|name| format!("host-name={name}\n"))
            .unwrap_or_default();
        fs::write(
            dir.path().join("avahi-daemon.conf"),
            format!(
                "[server]\n{host_name}use-ipv4=yes\nuse-ipv6=yes\n\
                 allow-interfaces={interface}\nenable-dbus={}\n\
                 ratelimit-interval-usec=1000000\nratelimit-burst=1000\n\
                 [wide-area]\nenable-wide-area=no\n\
                 [publish]\npublish-hinfo=no\npublish-workstation=no\n",
                if options.system_bus { "yes" } else { "no" }
            ),
        )
        .unwrap();
        // The host must have the directories to bind over.
        for d in ["/run/avahi-daemon", "/run/dbus"] {
            fs::create_dir_all(d).unwrap();
        }
        let d = dir.path().display();
        let hosts = if static_hosts.is_empty() {
            String::new()
        } else {
            let lines: String = static_hosts
                .iter()
                .map(|(address, name)| format!("{address} {name}\n"))
                .collect();
            fs::write(dir.path().join("hosts"), lines).unwrap();
            format!("mount --bind {d}/hosts /etc/avahi/hosts; ")
        };
        let bus = if options.system_bus {
            "dbus-daemon --system --nofork --nopidfile & \
             for i in $(seq 100); do [ -S /run/dbus/system_bus_socket ] && break; sleep 0.05; done; "
        } else {
            ""
        };
        let script = format!(
            "set -e; mount --make-rprivate /; \
             mount --bind {d}/run /run/avahi-daemon; \
             mount --bind {d}/dbus /run/dbus; \
             mount --bind {d}/services /etc/avahi/services; \
             {hosts}{bus}exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f {d}/avahi-daemon.conf"
        );
        let mut cmd = ns.command("unshare");
        cmd.args(["-m", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("avahi.log")).unwrap());
        cmd.process_group(0);
        let child = cmd.spawn().expect("avahi-daemon");
        // From here on the guard kills it, also if it never starts.
        let avahi = Self { child, dir };
        // Wait until it runs (it answers queries once its host name is established).
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = avahi.log();
            if log.contains("Server startup complete") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "avahi-daemon did not start:\n{log}"
            );
            thread::sleep(Duration::from_millis(50));
        }
        avahi
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("avahi.log")).unwrap_or_default()
    }

    pub fn services_dir(&self) -> PathBuf {
        self.dir.path().join("services")
    }

    /// Publishes a static service with binary TXT records (value bytes base64).
    pub fn publish(&self, file: &str, instance: &str, port: u16, txt: &[(String, Vec<u8>)]) {
        self.publish_on(file, instance, None, port, txt);
    }

    /// As [`Avahi::publish`], on `host` (e.g. one of the static hosts) instead of
    /// avahi's own host name when given.
    pub fn publish_on(
        &self,
        file: &str,
        instance: &str,
        host: Option<&str>,
        port: u16,
        txt: &[(String, Vec<u8>)],
    ) {
        use base64::Engine;
        let records: String = txt
            .iter()
            .map(|(k, v)| {
                format!(
                    "    <txt-record value-format=\"binary-base64\">{k}={}</txt-record>\n",
                    base64::engine::general_purpose::STANDARD.encode(v)
                )
            })
            .collect();
        let host = host
            .map(|h| format!("    <host-name>{h}</host-name>\n"))
            .unwrap_or_default();
        let xml = format!(
            "<?xml version=\"1.0\" standalone='no'?>\n\
             <!DOCTYPE service-group SYSTEM \"avahi-service.dtd\">\n\
             <service-group>\n  <name>{instance}</name>\n  <service>\n\
             <type>_ostree_repo._tcp</type>\n    <port>{port}</port>\n{host}{records}  </service>\n\
             </service-group>\n"
        );
        // Write then rename, so avahi never reads half a file.
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        fs::write(&tmp, xml).unwrap();
        fs::rename(&tmp, self.services_dir().join(file)).unwrap();
        self.reload();
    }

    /// Removes a static service: avahi withdraws it (mDNS goodbye).
    pub fn withdraw(&self, file: &str) {
        fs::remove_file(self.services_dir().join(file)).unwrap();
        self.reload();
    }

    fn reload(&self) {
        // avahi-daemon is the process the script exec'd into.
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP);
        }
    }

    /// Waits until the log says `instance` was established.
    pub fn wait_established(&self, instance: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let needle = format!("Service \"{instance}\"");
        loop {
            let log = self.log();
            if log
                .lines()
                .any(|l| l.contains(&needle) && l.contains("successfully established"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "avahi did not establish {instance}:\n{log}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `program` run "on that computer": in avahi's network and mount namespaces
    /// (nsenter; relative paths do not work there).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.child.id().to_string(), "-m", "-n", program]);
        cmd
    }

    /// `avahi-browse -rpt _ostree_repo._tcp`: the resolved lines (`=;…`).
    pub fn browse(&self) -> Vec<String> {
        let out = output(
            self.command("avahi-browse")
                .args(["-rpt", "_ostree_repo._tcp"]),
        );
        text(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('='))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until `pred` holds for the resolved services.
    pub fn wait_browse(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.browse();
            if pred(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "avahi-browse never saw what was expected; last:\n{}\navahi log:\n{}",
                lines.join("\n"),
                self.log()
            );
            thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Avahi {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
