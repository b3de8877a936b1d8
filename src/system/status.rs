//! What `ostree admin status` (2022.7) prints, parsed: per deployment a line
//! `M OS CHECKSUM.SERIAL[ (staged|pending|rollback)]` (`M` is `*` when booted),
//! then indented `Version:`, `Pinned: yes`, `origin refspec:` lines (and others
//! Ferry does not need, such as `GPG:` and `Unlocked:`).

use serde::Serialize;

/// One deployment, as `ostree admin status` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// Its index in the boot order (0: the default).
    pub index: usize,
    /// The stateroot (`--os`).
    pub os: String,
    pub commit: String,
    pub serial: u32,
    /// The commit's `version` metadata.
    pub version: Option<String>,
    /// What it follows (`origin refspec`), e.g. `origin:os/stable`.
    pub refspec: Option<String>,
    /// The running system.
    pub booted: bool,
    /// Deployed on the running system, finished at shutdown.
    pub staged: bool,
    /// Newer than the booted one: starts at the next boot.
    pub pending: bool,
    /// Older than the booted one.
    pub rollback: bool,
    pub pinned: bool,
}

/// Parses `ostree admin status` output; lines it does not know are skipped.
pub fn parse(text: &str) -> Vec<Deployment> {
    let mut out: Vec<Deployment> = Vec::new();
    for line in text.lines() {
        if let Some(detail) = line.strip_prefix("    ") {
            let Some(current) = out.last_mut() else {
                continue;
            };
            if let Some(version) = detail.strip_prefix("Version: ") {
                current.version = Some(version.to_owned());
            } else if let Some(refspec) = detail.strip_prefix("origin refspec: ") {
                current.refspec = Some(refspec.to_owned());
            } else if detail == "Pinned: yes" {
                current.pinned = true;
            }
            continue;
        }
        let Some(deployment) = parse_heading(line, out.len()) else {
            continue;
        };
        out.push(deployment);
    }
    out
}

fn parse_heading(line: &str, index: usize) -> Option<Deployment> {
    let (marker, rest) = (line.get(..2)?, line.get(2..)?);
    let booted = match marker {
        "* " => true,
        "  " => false,
        _ => return None,
    };
    let mut words = rest.split(' ');
    let os = words.next()?.to_owned();
    let (commit, serial) = words.next()?.split_once('.')?;
    if commit.len() != 64 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut deployment = Deployment {
        index,
        os,
        commit: commit.to_owned(),
        serial: serial.parse().ok()?,
        booted,
        ..Deployment::default()
    };
    for word in words {
        match word {
            "(staged)" => deployment.staged = true,
            "(pending)" => deployment.pending = true,
            "(rollback)" => deployment.rollback = true,
            _ => {}
        }
    }
    Some(deployment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_ostree_admin_status_prints() {
        let a = "0d2893db096609e5b5112e6cac52a7e04618f952efbe6cfcde7cad3ea8c49e80";
        let b = "a3d274c3066522ae99a9bb66477deca6b699022f71fc7a1b17f07c311c314dac";
        let text = format!(
            "  debian {a}.0 (staged)\n    Version: 2\n    origin refspec: origin:debian/stable\n\
             * debian {b}.1\n    Version: 1\n    Pinned: yes\n    origin refspec: debian/stable\n    \
             GPG: Signature made …\n  other {a}.0 (rollback)\n    origin: none\n"
        );
        let d = parse(&text);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].commit, a);
        assert!(d[0].staged && !d[0].booted);
        assert_eq!(d[0].version.as_deref(), Some("2"));
        assert_eq!(d[0].refspec.as_deref(), Some("origin:debian/stable"));
        assert!(d[1].booted && d[1].pinned && d[1].serial == 1 && d[1].index == 1);
        assert_eq!(d[2].os, "other");
        assert!(d[2].rollback && d[2].refspec.is_none());
        assert!(parse("No deployments.\n").is_empty());
    }
}
