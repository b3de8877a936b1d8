#!/bin/sh
# Called by meson: build both binaries with cargo, then copy them where meson
# expects its outputs.
# Usage: cargo-build.sh CARGO debug|release TARGET_DIR OUTDIR [CARGO_OPTION]...
set -eu

cargo=$1 profile=$2 target_dir=$3 outdir=$4
shift 4

if [ "$profile" = release ]; then
    "$cargo" build --release "$@"
else
    "$cargo" build "$@"
fi

cp "$target_dir/$profile/ferry" "$target_dir/$profile/ferryctl" "$outdir/"
