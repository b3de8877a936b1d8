//! Interoperability with layouts `ostree` made.

use super::*;

/// `python3 -m http.server`, killed on drop.
struct PlainHttp(std::process::Child);

impl Drop for PlainHttp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn interop_ostree_repo_served_by_plain_python_http_server() {
    // Few files: http.server speaks HTTP/1.0 with a listen backlog of 5, so bursts
    // of new connections wait for SYN retransmits (1 s each).
    let up = Upstream::new(30, 900);
    let commit = up.latest().to_owned();
    let port = refused_port();
    let server = PlainHttp(
        Command::new(python())
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&up.repo)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "python3 -m http.server did not start"
    );
    let client = Client::new(&format!("http://127.0.0.1:{port}"), Trust::None);
    let run = client.update(&[], &[]).ok();
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    assert_installed(&client, &commit);
    assert_checkout_matches(&client, &up.tree);
    // Nothing new: nothing is fetched.
    let again = client.update(&[], &[]).ok();
    assert_eq!(again.plan()["up_to_date"], true, "{}", again.plan());
    assert!(again.fetched().is_empty(), "{:?}", again.fetched());
    drop(server);
}

#[test]
fn interop_ostree_create_usb_layout_on_a_drive() {
    let up = Upstream::new(80, 900);
    let commit = up.latest().to_owned();
    // Drives are used only for remotes that verify commits (tests/trust/policy.rs).
    let signer = Signer::new("interop@example.org");
    signer.sign(&up.repo, &commit);
    let drive = LoopDrive::builder("FERRYUSB").size_mib(32).build();
    drive.mount();
    run_ok(
        ostree(&up.repo)
            .arg("create-usb")
            .arg(&drive.mount_point)
            .args([COLLECTION, REF]),
    );
    assert!(drive
        .mount_point
        .join(".ostree/repo/refs/mirrors")
        .join(COLLECTION)
        .join(REF)
        .exists());
    let sideload = up.dir.path().join("sideload");
    fs::create_dir(&sideload).unwrap();
    symlink(&drive.mount_point, &sideload.join("stick"));
    // The configured remote is unreachable: the drive is all there is.
    let client = Client::new(
        &format!("http://127.0.0.1:{}", refused_port()),
        Trust::Gpg(&signer.public),
    );
    let discovery = ["--sideload-dir", sideload.to_str().unwrap()];

    let started = Instant::now();
    let run = client.update(&discovery, &[]).ok();
    let plan_sources = run.plan_sources();
    assert_eq!(plan_sources.len(), 1, "{plan_sources:?}");
    assert!(plan_sources[0].starts_with("usb:"), "{plan_sources:?}");
    run.assert_fetched_exactly(&closure(&up.repo, &commit));
    assert_eq!(
        run.counts().keys().collect::<Vec<_>>(),
        vec![&plan_sources[0]]
    );
    assert_installed(&client, &commit);
    assert_checkout_matches(&client, &up.tree);
    eprintln!("create-usb pull took {:?}", started.elapsed());
}

#[test]
fn size_index_forecasts_the_download_as_ostree_counts_it() {
    let up = Upstream::new(20, 3000);
    let fresh = Server::start(&up.repo, ServeOptions::default());
    let client = Client::new(&fresh.url(), Trust::None);
    // A commit without `ostree.sizes`: the download size is unknown, not zero.
    let plans = client.check(&[]);
    assert!(plans[0]["download"].is_null(), "{plans}");
    client.update(&[], &[]).ok();
    let old = up.latest().to_owned();
    let installed = up.snapshot("installed");

    change_tree(&up.tree, 4, 99);
    let new = stdout_of(
        ostree(&up.repo)
            .args(["commit", "-b", REF, "--generate-sizes", "-s", "v2"])
            .arg(format!("--tree=dir={}", up.tree.display()))
            .arg(format!("--timestamp=@{}", T0 + 5000)),
    );
    ostree_summary(&up.repo);

    // Expected: the objects of the new closure the client lacks, at their stored size.
    let lacking: Vec<String> = closure(&up.repo, &new)
        .difference(&closure(&up.repo, &old))
        .filter(|o| !o.ends_with(".commit"))
        .cloned()
        .collect();
    let bytes: u64 = lacking
        .iter()
        .map(|o| fs::metadata(up.repo.join(object_path(o))).unwrap().len())
        .sum();
    let plans = client.check(&[]);
    let download = &plans[0]["download"];
    assert_eq!(download["objects"], lacking.len() as u64, "{plans}");
    assert_eq!(download["bytes"], bytes, "{plans}");

    // ostree counts the same from the index, against a repository holding what the
    // client holds plus the new commit object.
    let commit_object = object_path(&format!("{new}.commit"));
    fs::create_dir_all(installed.join(&commit_object).parent().unwrap()).unwrap();
    fs::copy(up.repo.join(&commit_object), installed.join(&commit_object)).unwrap();
    let sizes = stdout_of(ostree(&installed).args(["show", "--print-sizes", &new]));
    let needed_objects = format!("Number of objects (needed/total): {}/", lacking.len());
    assert!(sizes.contains(&needed_objects), "{sizes}");
    let needed_bytes = format!(
        "Compressed size (needed/total): {}/",
        glib::format_size(bytes)
    );
    assert!(sizes.contains(&needed_bytes), "{sizes}");

    // The progress total is the forecast from the first event on, and exact.
    let run = client.update(&[], &[]).ok();
    let progress = run.of_kind("progress");
    assert_eq!(
        progress[0]["overall"]["bytes_total"],
        bytes,
        "{}",
        run.debug()
    );
    let last = &progress.last().unwrap()["overall"];
    assert_eq!(last["bytes_done"], bytes, "{}", run.debug());
    assert_installed(&client, &new);
}
