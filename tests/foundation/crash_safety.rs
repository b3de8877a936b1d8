//! Crash safety: pulls killed at random moments, and pulls running at once.

use super::*;

/// What the threads of a process are doing (state and kernel wait channel).
fn process_state(pid: u32) -> String {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            let wchan = fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
            out.push(format!(
                "{} {} {wchan}",
                task.file_name().to_string_lossy(),
                state.unwrap_or("?")
            ));
        }
    }
    out.join(", ")
}

/// Staging directories Ferry left under `tmp/`.
fn staging_dirs(repo: &Path) -> Vec<PathBuf> {
    fs::read_dir(repo.join("tmp"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("staging-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pull_killed_at_random_moments_leaves_a_valid_repository() {
    pull_killed_at_random_moments("archive", 25);
}

/// The same into the bare modes, where a staged object is a file with its owner,
/// mode and xattrs already applied (or a symlink) rather than a `.filez` copy.
#[test]
fn pull_into_bare_modes_killed_at_random_moments_leaves_a_valid_repository() {
    for mode in ["bare", "bare-user", "bare-user-only"] {
        pull_killed_at_random_moments(mode, 10);
    }
}

/// `ferryctl pull` into a fresh repository of `mode`, SIGKILLed `iterations`
/// times at random moments (and at the moment objects first appear): after each,
/// `ostree fsck` is clean and the ref names only a complete closure; a last pull
/// completes and leaves no staging behind.
fn pull_killed_at_random_moments(mode: &str, iterations: usize) {
    let setup = Instant::now();
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    let src = tmp.path().join("src");
    make_dir(&tree, 0o755);
    for d in 0..40 {
        let dir = tree.join(format!("dir-{d:02}"));
        make_dir(&dir, 0o755);
        for f in 0..50 {
            let content = format!("file {d} {f}\n{}", "x".repeat(f * 37 + d));
            write_file(&dir.join(format!("f{f:02}")), content.as_bytes(), 0o644);
        }
    }
    for (i, size) in [3_000_000, 2_000_000, 1_000_000].into_iter().enumerate() {
        write_random_file(&tree.join(format!("blob-{i}")), 100 + i as u64, size, 0o644);
    }
    ostree_init(&src);
    let commit = ostree_commit(&src, REF, &tree, &[]);
    let src_objects = object_names(&src);
    assert!(src_objects.len() > 2000);
    eprintln!("crash test: source made in {:?}", setup.elapsed());

    let pristine = tmp.path().join("pristine");
    ferry_init_unverified_mode(&pristine, mode);

    // How long an uninterrupted pull takes here, so the kills cover all of it.
    let timed = tmp.path().join("timed");
    copy_tree(&pristine, &timed);
    let started = Instant::now();
    ferry_pull(&timed, &src, REF);
    let full = started.elapsed();
    fs::remove_dir_all(&timed).unwrap();
    let max_delay = (full.as_millis() as u64 * 6 / 5).max(300);

    let ferry = tmp.path().join("ferry");
    copy_tree(&pristine, &ferry);
    let mut rng = rand::rng();
    let mut interrupted = 0;
    let mut completed = 0;
    let loop_started = Instant::now();
    for iteration in 0..iterations {
        // Every third kill aims at the end of the pull, where the store is updated
        // and the ref written: a few milliseconds after the first object appears in
        // `objects/` of a repository that had none. The others come at random.
        let aimed = iteration % 3 == 2;
        if aimed && !object_files(&ferry).is_empty() {
            fs::remove_dir_all(&ferry).unwrap();
            copy_tree(&pristine, &ferry);
        }
        let mut child = ferryctl(&ferry)
            .arg("pull")
            .arg(file_uri(&src))
            .arg(REF)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = if aimed {
            let waiting = Instant::now();
            while object_files(&ferry).is_empty() && child.try_wait().unwrap().is_none() {
                if waiting.elapsed() > Duration::from_secs(120) {
                    let state = process_state(child.id());
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("iteration {iteration}: the pull hangs; its threads: {state}");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let extra = Duration::from_millis(rng.random_range(0..=15));
            std::thread::sleep(extra);
            waiting.elapsed()
        } else {
            let delay = Duration::from_millis(rng.random_range(0..=max_delay));
            std::thread::sleep(delay);
            delay
        };
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(
                    status.success(),
                    "iteration {iteration}: pull failed: {status}"
                )
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
            }
        }
        assert_ostree_fsck(&ferry);
        match origin_ref(&ferry) {
            None => interrupted += 1,
            Some(found) => {
                assert_eq!(found, commit, "iteration {iteration}: ref points elsewhere");
                let have = object_names(&ferry);
                let missing: Vec<_> = src_objects.difference(&have).collect();
                assert!(
                    missing.is_empty(),
                    "iteration {iteration} ({delay:?}): the ref moved before the closure was \
                     stored; {} objects missing, e.g. {:?}",
                    missing.len(),
                    missing.first()
                );
                completed += 1;
                // Start over, to keep interrupting pulls.
                fs::remove_dir_all(&ferry).unwrap();
                copy_tree(&pristine, &ferry);
            }
        }
    }
    eprintln!(
        "crash test ({mode}): full pull {full:?}; {iterations} kills in {:?}: {interrupted} \
         interrupted, {completed} completed",
        loop_started.elapsed()
    );
    assert!(
        interrupted >= iterations / 5,
        "only {interrupted} pulls were interrupted"
    );

    // A rerun completes, reusing what survived, and cleans up after the dead ones.
    let t = Instant::now();
    let report = ferry_pull(&ferry, &src, REF);
    eprintln!("final pull {:?}", t.elapsed());
    assert_eq!(report["commit"], commit.as_str());
    assert_eq!(origin_ref(&ferry).as_deref(), Some(commit.as_str()));
    assert_ostree_fsck(&ferry);
    eprintln!("final ostree fsck {:?}", t.elapsed());
    run_ok(ferryctl(&ferry).arg("fsck"));
    eprintln!("final ferry fsck {:?}", t.elapsed());
    assert!(src_objects.is_subset(&object_names(&ferry)));
    assert_eq!(
        staging_dirs(&ferry),
        Vec::<PathBuf>::new(),
        "staging left behind"
    );
    let partial: Vec<_> = fs::read_dir(ferry.join("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(partial.is_empty(), "state/ still has {partial:?}");
}

/// Pulls running at the same time into one repository (the GUI and `ferryctl`, say)
/// each complete: starting a transaction clears away only the staging of dead
/// processes, never that of a live one.
#[test]
fn concurrent_pulls_into_one_repository_all_succeed() {
    const ROUNDS: usize = 10;
    const PULLS: usize = 6;
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    let src = tmp.path().join("src");
    make_dir(&tree, 0o755);
    for i in 0..200 {
        write_file(
            &tree.join(format!("f{i:03}")),
            format!("file {i}\n").as_bytes(),
            0o644,
        );
    }
    ostree_init(&src);
    let commit = ostree_commit(&src, REF, &tree, &[]);
    let pristine = tmp.path().join("pristine");
    ferry_init_unverified(&pristine);
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let ferry = tmp.path().join(format!("ferry-{round}"));
        copy_tree(&pristine, &ferry);
        let children: Vec<_> = (0..PULLS)
            .map(|_| {
                ferryctl(&ferry)
                    .arg("pull")
                    .arg(file_uri(&src))
                    .arg(REF)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "round {round}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        assert_ostree_fsck(&ferry);
        assert_eq!(origin_ref(&ferry).as_deref(), Some(commit.as_str()));
        fs::remove_dir_all(&ferry).unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {} concurrent pulls failed:\n{}",
        failures.len(),
        ROUNDS * PULLS,
        failures.join("\n")
    );
}
