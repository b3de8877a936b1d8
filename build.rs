//! Generates `config.rs` from `src/config.rs.in` and, for the GUI, compiles the
//! gresource bundle. Both land in OUT_DIR so the source tree stays clean.

use std::env;
use std::fs;
use std::path::Path;

const BASE_ID: &str = "io.github.ferry_updates.Ferry";

/// A build setting: `FERRY_<NAME>` from the environment (meson sets these), or a default.
fn setting(name: &str, default: &str) -> String {
    let var = format!("FERRY_{name}");
    println!("cargo:rerun-if-env-changed={var}");
    env::var(&var).unwrap_or_else(|_| default.to_owned())
}

fn main() {
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");

    let profile = setting("PROFILE", "default");
    let app_id = if profile == "development" {
        format!("{BASE_ID}.Devel")
    } else {
        BASE_ID.to_owned()
    };
    let prefix = setting("PREFIX", "/usr/local");
    let values = [
        ("APP_ID", app_id),
        (
            "VERSION",
            env::var("CARGO_PKG_VERSION").expect("cargo sets the version"),
        ),
        ("GETTEXT_PACKAGE", "ferry".to_owned()),
        (
            "LOCALEDIR",
            setting("LOCALEDIR", &format!("{prefix}/share/locale")),
        ),
        (
            "PKGDATADIR",
            setting("PKGDATADIR", &format!("{prefix}/share/ferry")),
        ),
        ("PROFILE", profile),
    ];

    println!("cargo:rerun-if-changed=src/config.rs.in");
    let mut config = fs::read_to_string("src/config.rs.in").expect("read src/config.rs.in");
    for (name, value) in values {
        // Values end up inside a string literal: escape quotes and backslashes.
        config = config.replace(&format!("@{name}@"), &value.escape_default().to_string());
    }
    fs::write(Path::new(&out_dir).join("config.rs"), config).expect("write config.rs");

    // Only the GUI embeds resources; ferryctl must build without GTK tooling.
    if env::var_os("CARGO_FEATURE_GUI").is_some() {
        glib_build_tools::compile_resources(
            &["data/resources", "data"],
            "data/resources/resources.gresource.xml",
            "resources.gresource",
        );
        compile_schema(&out_dir);
    }
}

/// Compiles the GSettings schema into OUT_DIR: the GUI embeds it for runs of a
/// Ferry that is not installed, and `GSETTINGS_SCHEMA_DIR=OUT_DIR` works too.
fn compile_schema(out_dir: &str) {
    let schema = format!("data/{BASE_ID}.gschema.xml");
    println!("cargo:rerun-if-changed={schema}");
    let staging = Path::new(out_dir).join("schema-source");
    fs::create_dir_all(&staging).expect("make the schema directory");
    fs::copy(&schema, staging.join(format!("{BASE_ID}.gschema.xml"))).expect("copy the schema");
    let status = std::process::Command::new("glib-compile-schemas")
        .arg("--strict")
        .arg(format!("--targetdir={out_dir}"))
        .arg(&staging)
        .status()
        .expect("run glib-compile-schemas (install libglib2.0-bin)");
    assert!(status.success(), "glib-compile-schemas failed on {schema}");
}
