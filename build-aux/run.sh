#!/usr/bin/env bash
# Build Ferry (release) and launch the GUI. Arguments are passed to `ferry`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build-aux/setup-deps.sh
if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

cargo build --release
exec target/release/ferry "$@"
