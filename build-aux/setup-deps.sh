#!/usr/bin/env bash
# Install everything Ferry needs to build, run and test on Debian/Ubuntu.
# Idempotent: packages already installed are skipped, so a second run is quick
# and needs no network.
set -euo pipefail

packages=(
    # build
    pkg-config meson gettext libglib2.0-dev libglib2.0-dev-bin libglib2.0-bin
    libgtk-4-dev libadwaita-1-dev libsoup-3.0-dev liblzma-dev
    # data file validators used by the tests
    desktop-file-utils appstream
    # the reference implementation and tools the integration tests drive
    ostree gnupg curl python3 python3-cryptography python3-nacl
    # NetworkManager's D-Bus API on a test system bus (metered connections)
    python3-dbusmock
    # a real tree nobody here wrote (tests/engine/real_trees.rs pulls /usr/share/man)
    manpages
    # fake USB drives (loop mounts) and LANs (network namespaces, mDNS)
    mount util-linux e2fsprogs iproute2 avahi-daemon avahi-utils
    # a screen for GUI tests and demos; the accessibility bus the GUI tests drive
    # the window through; screenshots
    xvfb dbus-x11 dbus-daemon at-spi2-core python3-pyatspi gir1.2-atspi-2.0 imagemagick
)

# Run as root directly, otherwise through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        as_root apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Rust toolchain with rustfmt and clippy. Distribution cargo packages are older
# than Cargo.toml's rust-version, so rustup is the supported way.
if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 ||
        rustup component add rustfmt clippy
elif ! command -v cargo >/dev/null 2>&1; then
    echo "setup-deps: no Rust toolchain found; install one with rustup (https://rustup.rs)" >&2
    exit 1
fi

echo "setup-deps: all dependencies present"
