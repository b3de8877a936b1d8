//! The systemd user unit.

use super::*;

#[test]
fn serve_unit_is_valid() {
    let unit =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ferry-serve.service"))
            .expect("data/ferry-serve.service");
    assert!(
        unit.contains("\nExecStart=ferryctl serve --advertise\n"),
        "{unit}"
    );
    assert!(unit.contains("\nWantedBy=default.target\n"), "{unit}");
    // systemd-analyze checks it, with the binary this build made.
    let dir = tempdir();
    let runtime = dir.path().join("runtime");
    fs::create_dir(&runtime).unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.path().join("ferry-serve.service");
    fs::write(
        &path,
        unit.replace(
            "ExecStart=ferryctl ",
            &format!("ExecStart={} ", ferryctl_path()),
        ),
    )
    .unwrap();
    let out = output(
        Command::new("systemd-analyze")
            .env("XDG_RUNTIME_DIR", &runtime)
            .args(["verify", "--user"])
            .arg(&path),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
