#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): install what is needed, check
# formatting and lints for both feature sets, run every test, and make sure
# ferryctl builds without GTK.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build-aux/setup-deps.sh
if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

step() {
    printf '\n==> %s\n' "$*"
}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (default features)"
cargo clippy --all-targets -- -D warnings

step "cargo clippy (--no-default-features)"
cargo clippy --no-default-features --all-targets -- -D warnings

step "ferryctl builds and links without GTK"
cargo build --no-default-features --bin ferryctl
# Capture first: with pipefail, `ldd | grep -q` could fail on SIGPIPE and pass wrongly.
libs=$(ldd target/debug/ferryctl)
if grep -q gtk <<<"$libs"; then
    echo "error: ferryctl built with --no-default-features links GTK:" >&2
    grep gtk <<<"$libs" >&2
    exit 1
fi

# The tests make loop mounts and network namespaces, which need root. A non-root
# user builds first, so that target/ does not fill with files owned by root.
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
else
    cargo test --all-targets --no-run
    as_root=(sudo -E env "PATH=$PATH" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}"
        "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}")
fi

step "cargo test (all targets)"
"${as_root[@]}" cargo test --all-targets --no-fail-fast

step "cargo test --doc"
"${as_root[@]}" cargo test --doc --no-fail-fast

printf '\ntest.sh: all checks passed\n'
