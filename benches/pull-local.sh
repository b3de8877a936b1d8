#!/usr/bin/env bash
# Side-by-side benchmark: `ferryctl pull file://` vs `ostree pull-local` and
# `ostree pull file://`, on (a) 5,000 small files of 1-16 KiB and (b) 20 files of
# 20 MiB (half random, half compressible). Reports wall time, peak RSS and ratios.
#
# The source repository sits on its own loop-mounted ext4 image, as a USB drive
# would, so neither tool can hardlink objects across. Every run starts with an
# empty destination and warm caches (the source is read once beforehand).
# Needs root (loop mount). Usage: sudo benches/pull-local.sh [RUNS]
set -euo pipefail

runs=${1:-3}
top=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --no-default-features --bin ferryctl --manifest-path "$top/Cargo.toml" >&2
ferryctl="$top/target/release/ferryctl"

work=$(mktemp -d /var/tmp/ferry-bench.XXXXXX)
mnt="$work/usb"
cleanup() {
    umount "$mnt" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

truncate -s 2G "$work/usb.img"
mkfs.ext4 -q -L FERRYBENCH "$work/usb.img"
mkdir -p "$mnt"
mount -o loop "$work/usb.img" "$mnt"

make_small() {
    python3 - "$1" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
for i in range(5000):
    d = os.path.join(root, f"d{i % 50:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 16384)))
PY
}

make_large() {
    python3 - "$1" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(7)
os.makedirs(root, exist_ok=True)
text = b"".join(b"line %d of a compressible file\n" % i for i in range(400000))[: 10 << 20]
for i in range(20):
    with open(os.path.join(root, f"big{i:02d}"), "wb") as f:
        f.write(rng.randbytes(10 << 20))
        f.write(text)
PY
}

# Prints "seconds peak_kib" for one command.
measure() {
    /usr/bin/time -o "$work/time" -f "%e %M" "$@" >/dev/null 2>"$work/stderr" ||
        { cat "$work/stderr" >&2; return 1; }
    cat "$work/time"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bench_dataset() {
    local name=$1 maker=$2
    local src="$mnt/$name-repo" tree="$work/$name-tree"
    $maker "$tree"
    ostree --repo="$src" init --mode=archive --collection-id=org.example.Bench
    ostree --repo="$src" commit -b os/bench --tree=dir="$tree" -s bench >/dev/null
    rm -rf "$tree"
    cat "$src"/objects/*/* >/dev/null  # warm the cache for every contender alike

    declare -A times rss
    for tool in ferry ostree-pull-local ostree-pull; do
        local t_list="" r_list=""
        for _ in $(seq "$runs"); do
            local dest="$work/dest"
            rm -rf "$dest"
            case $tool in
            ferry)
                "$ferryctl" --repo "$dest" init >/dev/null
                "$ferryctl" --repo "$dest" remote add origin "file://$src" --collection-id org.example.Bench --no-verify 2>/dev/null
                read -r t r < <(measure "$ferryctl" --repo "$dest" pull "file://$src" os/bench --remote origin)
                [ "$(ostree --repo="$dest" rev-parse origin:os/bench)" = "$(ostree --repo="$src" rev-parse os/bench)" ]
                ;;
            ostree-pull-local)
                ostree --repo="$dest" init --mode=archive
                read -r t r < <(measure ostree --repo="$dest" pull-local "$src" os/bench)
                ;;
            ostree-pull)
                ostree --repo="$dest" init --mode=archive
                ostree --repo="$dest" remote add origin "file://$src" --no-gpg-verify
                read -r t r < <(measure ostree --repo="$dest" pull origin os/bench)
                ;;
            esac
            t_list+="$t"$'\n'
            r_list+="$r"$'\n'
        done
        times[$tool]=$(printf '%s' "$t_list" | median)
        rss[$tool]=$(printf '%s' "$r_list" | median)
    done
    for tool in ferry ostree-pull-local ostree-pull; do
        awk -v n="$name" -v tool="$tool" -v t="${times[$tool]}" -v r="${rss[$tool]}" \
            -v tp="${times[ostree-pull-local]}" -v tq="${times[ostree-pull]}" \
            'BEGIN { printf "| %s | %s | %.2f s | %.1f MiB | %.2f× | %.2f× |\n", n, tool, t, r / 1024, t / tp, t / tq }'
    done
}

echo "| dataset | tool | wall (median of $runs) | peak RSS | vs pull-local | vs pull file:// |"
echo "|---|---|---|---|---|---|"
bench_dataset small make_small
bench_dataset large make_large
