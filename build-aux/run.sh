#!/usr/bin/env bash
# Build Ferry (release) and launch the GUI. Arguments are passed to `ferry`; with
# none and no repository set up, Ferry shows its demonstration (`ferry --demo`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build-aux/setup-deps.sh
if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

cargo build --release
# Settings persist between uninstalled runs with the schema compiled next to the
# binary. With no repository configured, Ferry opens its demonstration.
mkdir -p target/schemas
glib-compile-schemas --strict --targetdir=target/schemas data
export GSETTINGS_SCHEMA_DIR="$PWD/target/schemas"
exec target/release/ferry "$@"
