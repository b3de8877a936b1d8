#!/usr/bin/env python3
"""Writes the offline cargo sources for the Flatpak build from Cargo.lock.

    build-aux/flatpak-cargo-sources.py [Cargo.lock] [-o flatpak/cargo-sources.json]

For every crates.io package in the lock file: an `archive` source
(https://static.crates.io/crates/NAME/NAME-VERSION.crate, sha256 = the lock's
checksum) unpacked into `cargo/vendor/NAME-VERSION`, and the
`.cargo-checksum.json` cargo wants beside it; then the cargo config that replaces
crates.io with that directory. This is what flatpak-cargo-generator writes for a
lock file without git dependencies; the manifest sets CARGO_HOME to the `cargo`
directory. The output is deterministic: tests/packaging/flatpak.rs regenerates it and
compares.
"""

import argparse
import json
import sys
import tomllib

CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
VENDOR = "cargo/vendor"
CARGO_CONFIG = f"""[source.vendored-sources]
directory = "{VENDOR}"

[source.crates-io]
replace-with = "vendored-sources"
"""


def sources(lock):
    out = []
    packages = sorted(lock.get("package", []), key=lambda p: (p["name"], p["version"]))
    for package in packages:
        source = package.get("source")
        if source is None:
            continue  # the workspace's own packages
        if source != CRATES_IO:
            sys.exit(f"{package['name']} {package['version']}: only crates.io packages "
                     f"are supported, not {source}")
        name, version, checksum = package["name"], package["version"], package["checksum"]
        dest = f"{VENDOR}/{name}-{version}"
        out.append({
            "type": "archive",
            "archive-type": "tar-gzip",
            "url": f"https://static.crates.io/crates/{name}/{name}-{version}.crate",
            "sha256": checksum,
            "dest": dest,
        })
        out.append({
            "type": "inline",
            "contents": json.dumps({"package": checksum, "files": {}}),
            "dest": dest,
            "dest-filename": ".cargo-checksum.json",
        })
    out.append({
        "type": "inline",
        "contents": CARGO_CONFIG,
        "dest": "cargo",
        "dest-filename": "config.toml",
    })
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lock", nargs="?", default="Cargo.lock")
    parser.add_argument("-o", "--output", default="flatpak/cargo-sources.json")
    args = parser.parse_args()
    with open(args.lock, "rb") as f:
        lock = tomllib.load(f)
    text = json.dumps(sources(lock), indent=4) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
