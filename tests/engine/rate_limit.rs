//! The download limit (`ferryctl update --max-rate`): one limit shared by every
//! source of a pull, or applied to internet sources only. A behaviour test of a
//! limit, so it measures time: 20 MiB of incompressible files from two HTTP
//! sources on loopback (which without a limit take a second or two).

use super::*;

const FILES: usize = 80;
const FILE_SIZE: usize = 256 * 1024;

/// One commit of 20 MiB that does not compress, in a repository and a copy.
struct TwentyMebibytes {
    repo: std::path::PathBuf,
    copy: std::path::PathBuf,
    commit: String,
    _dir: tempfile::TempDir,
}

impl TwentyMebibytes {
    fn new() -> Self {
        let dir = tempdir();
        let tree = dir.path().join("tree");
        fs::create_dir_all(&tree).unwrap();
        for i in 0..FILES {
            fs::write(
                tree.join(format!("f{i:03}")),
                pseudo_random(i as u64 + 1, FILE_SIZE),
            )
            .unwrap();
        }
        let repo = dir.path().join("repo");
        ostree_init(&repo);
        let commit = ostree_commit(&repo, REF, &tree, "v1", T0);
        ostree_summary(&repo);
        let copy = dir.path().join("copy");
        copy_tree(&repo, &copy);
        Self {
            repo,
            copy,
            commit,
            _dir: dir,
        }
    }
}

/// Bytes each source sent, from the `object-fetched` events.
fn bytes_by_source(run: &UpdateRun) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in run.of_kind("object-fetched") {
        *out.entry(e["source"].as_str().unwrap().to_owned())
            .or_default() += e["bytes"].as_u64().unwrap();
    }
    out
}

#[test]
fn max_rate_2m_keeps_a_20_mib_pull_from_two_sources_between_9_and_12_seconds() {
    let data = TwentyMebibytes::new();
    // Two nearby computers (static sources on loopback): equals, so both serve.
    let first = Server::start(&data.repo, ServeOptions::default());
    let second = Server::start(&data.copy, ServeOptions::default());
    let client = Client::new(&first.url(), Trust::None);
    let run = client
        .update(
            &[
                "--static-source",
                &first.url(),
                "--static-source",
                &second.url(),
            ],
            &["--max-rate", "2M"],
        )
        .ok();
    client.assert_at(&data.commit);
    let bytes = bytes_by_source(&run);
    let total: u64 = bytes.values().sum();
    assert!(total >= (FILES * FILE_SIZE) as u64, "{bytes:?}");
    for server in [&first, &second] {
        assert!(
            bytes.get(&server.static_id()).copied().unwrap_or(0) > 1024 * 1024,
            "both sources share the limit: {bytes:?}"
        );
    }
    let secs = run.elapsed.as_secs_f64();
    eprintln!("--max-rate 2M, two sources: {secs:.1} s for {bytes:?}");
    assert!(
        (9.0..=12.0).contains(&secs),
        "20 MiB at 2 MB/s took {secs:.1} s: {bytes:?}"
    );
}

#[test]
fn max_rate_internet_only_limits_the_upstream_and_not_the_nearby_computer() {
    let data = TwentyMebibytes::new();
    // The nearby computer lacks half of the files: those come from the upstream.
    let files = files_of(&closure(&data.repo, &data.commit));
    let from_upstream: Vec<String> = files.iter().step_by(2).cloned().collect();
    let upstream = Server::start(&data.repo, ServeOptions::default());
    let peer = Server::start(
        &data.copy,
        ServeOptions {
            missing: from_upstream.iter().map(|o| object_path(o)).collect(),
            ..Default::default()
        },
    );
    let client = Client::new(&upstream.url(), Trust::None);
    let run = client
        .update(
            &["--static-source", &peer.url()],
            &["--max-rate", "2M", "--max-rate-internet-only"],
        )
        .ok();
    client.assert_at(&data.commit);
    let bytes = bytes_by_source(&run);
    let secs = run.elapsed.as_secs_f64();
    let upstream_bytes = bytes.get("upstream:origin").copied().unwrap_or(0);
    assert!(
        upstream_bytes >= (from_upstream.len() * FILE_SIZE) as u64,
        "{bytes:?}"
    );
    // The upstream's 10 MiB at 2 MB/s take over 5 s; the peer's 10 MiB, not
    // limited, add nearly nothing (a shared limit would make it over 10 s).
    let limited_secs = upstream_bytes as f64 / 2_000_000.0;
    eprintln!("--max-rate 2M --max-rate-internet-only: {secs:.1} s for {bytes:?}");
    assert!(
        secs >= limited_secs * 0.9 && secs < limited_secs + 3.0,
        "took {secs:.1} s for {bytes:?}"
    );
}
