#!/usr/bin/env bash
# Side-by-side benchmark: `ferryctl pull file://` (and `ferryctl update` from a
# remote whose URL is the same file:// repository) vs `ostree pull-local`,
# `ostree pull file://` and `ostree pull-local --untrusted`, on (a) 5,000 small
# files of 1-16 KiB and (b) 20 files of 20 MiB (half random, half compressible).
# Reports wall time, peak RSS and ratios, plus the cost of sha256 over the
# dataset's content on one core: the part of Ferry's work that ostree skips
# unless told --untrusted.
#
# The source repository sits on its own loop-mounted ext4 image, as a USB drive
# would, so neither tool can hardlink objects across. Every run starts with a new,
# empty destination, warm caches (the source is read once beforehand) and no dirty
# pages left by the run before (sync).
#
# DEST says where the destinations go: `disk` (default), new directories on the
# filesystem holding /var/tmp, like a system repository; or `image`, a new ext4
# image per dataset, loop-mounted with direct I/O, so no earlier activity on the
# disk can weigh on a run. Nothing is deleted while a dataset is measured: ext4
# creates files slowly next to thousands it has just deleted (it skips recently
# freed inodes), so on `disk`, results are only clean when the filesystem has not
# just deleted many files (wait a few minutes after a previous run).
# Needs root (loop mounts). Usage: sudo benches/pull-local.sh [RUNS] [disk|image]
set -euo pipefail

runs=${1:-3}
dest_fs=${2:-disk}
top=$(cd "$(dirname "$0")/.." && pwd)
# FERRYCTL=PATH measures that binary instead (e.g. an A/B of two builds).
if [ -n "${FERRYCTL:-}" ]; then
    ferryctl=$FERRYCTL
else
    cargo build --release --no-default-features --bin ferryctl --manifest-path "$top/Cargo.toml" >&2
    ferryctl="$top/target/release/ferryctl"
fi

work=$(mktemp -d /var/tmp/ferry-bench.XXXXXX)
mnt="$work/usb"
cleanup() {
    umount "$mnt" 2>/dev/null || true
    umount "$work/dest-fs" 2>/dev/null || true
    [ -z "${dest_loop:-}" ] || losetup -d "$dest_loop" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=benches/lib.sh
source "$top/benches/lib.sh"

truncate -s 2G "$work/usb.img"
mkfs.ext4 -q -L FERRYBENCH "$work/usb.img"
mkdir -p "$mnt"
mount -o loop "$work/usb.img" "$mnt"

# sha256_seconds TREE: seconds to hash every file of TREE on one core (page cache).
sha256_seconds() {
    python3 - "$1" <<'PY'
import hashlib, os, sys, time
paths = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs]
blobs = [open(p, "rb").read() for p in paths]
start = time.perf_counter()
for blob in blobs:
    hashlib.sha256(blob).digest()
print(f"{time.perf_counter() - start:.3f} {sum(map(len, blobs))}")
PY
}

tools=(ferry ferry-update ostree-pull-local ostree-pull ostree-pull-local-untrusted)

bench_dataset() {
    local name=$1 maker=$2 tree="$work/$1-tree" src="$mnt/$1-repo"
    shift 2
    "$maker" "$tree" "$@"
    read -r hash_seconds content_bytes < <(sha256_seconds "$tree")
    ostree --repo="$src" init --mode=archive --collection-id=org.example.Bench
    ostree --repo="$src" commit -b os/bench --tree=dir="$tree" -s bench >/dev/null
    ostree --repo="$src" summary -u >/dev/null # `ferryctl update` needs one (rule 4)
    rm -rf "$tree"
    cat "$src"/objects/*/* >/dev/null # warm the cache for every contender alike

    # Round-robin over the tools, so drift in the machine's state hits all alike.
    # Every run gets a new destination, deleted only after the dataset.
    local dest_root="$work/dest-fs"
    mkdir -p "$dest_root"
    if [ "$dest_fs" = image ]; then
        truncate -s 8G "$work/dest.img"
        mkfs.ext4 -q "$work/dest.img"
        dest_loop=$(losetup --direct-io=on -f --show "$work/dest.img")
        mount "$dest_loop" "$dest_root"
    fi
    declare -A t_lists r_lists
    local tool run dest
    for run in $(seq "$runs"); do
        for tool in "${tools[@]}"; do
            dest="$dest_root/$name-$tool-$run"
            case $tool in
            ferry)
                "$ferryctl" --repo "$dest" init >/dev/null
                "$ferryctl" --repo "$dest" remote add origin "file://$src" --collection-id org.example.Bench --no-verify 2>/dev/null
                command=("$ferryctl" --repo "$dest" pull "file://$src" os/bench --remote origin)
                ;;
            ferry-update)
                "$ferryctl" --repo "$dest" init >/dev/null
                "$ferryctl" --repo "$dest" remote add origin "file://$src" --collection-id org.example.Bench --no-verify 2>/dev/null
                "$ferryctl" --repo "$dest" track origin os/bench >/dev/null
                command=(env FERRY_LAN_INTERFACES=none "$ferryctl" --repo "$dest" --no-lan --no-mounts update)
                ;;
            ostree-pull-local)
                ostree --repo="$dest" init --mode=archive
                command=(ostree --repo="$dest" pull-local "$src" os/bench)
                ;;
            ostree-pull)
                ostree --repo="$dest" init --mode=archive
                ostree --repo="$dest" remote add origin "file://$src" --no-gpg-verify
                command=(ostree --repo="$dest" pull origin os/bench)
                ;;
            ostree-pull-local-untrusted)
                ostree --repo="$dest" init --mode=archive
                command=(ostree --repo="$dest" pull-local --untrusted "$src" os/bench)
                ;;
            esac
            sync
            measure "$work/m" "${command[@]}"
            read -r t r <"$work/m"
            [ "$(ostree --repo="$dest" rev-parse "$(ostree --repo="$dest" refs | head -n1)")" = \
                "$(ostree --repo="$src" rev-parse os/bench)" ]
            t_lists[$tool]+="$t"$'\n'
            r_lists[$tool]+="$r"$'\n'
        done
    done
    if [ "$dest_fs" = image ]; then
        umount "$dest_root"
        losetup -d "$dest_loop"
        dest_loop=
        rm -f "$work/dest.img"
    fi
    rm -rf "$dest_root"
    declare -A times rss
    for tool in "${tools[@]}"; do
        times[$tool]=$(printf '%s' "${t_lists[$tool]}" | median)
        rss[$tool]=$(printf '%s' "${r_lists[$tool]}" | median)
    done
    for tool in "${tools[@]}"; do
        awk -v n="$name" -v tool="$tool" -v t="${times[$tool]}" -v r="${rss[$tool]}" \
            -v a="${times[ostree-pull-local]}" -v b="${times[ostree-pull]}" \
            -v c="${times[ostree-pull-local-untrusted]}" \
            'BEGIN { printf "| %s | %s | %.2f s | %.1f MiB | %.2f× | %.2f× | %.2f× |\n", n, tool, t, r / 1024, t / a, t / b, t / c }'
    done
    awk -v n="$name" -v s="$hash_seconds" -v bytes="$content_bytes" -v a="${times[ostree-pull-local]}" \
        'BEGIN { printf "| %s | sha256 of %.0f MiB of content, one core | %.2f s | | %.2f× | | |\n", n, bytes / 1048576, s, s / a }'
}

echo "Destinations on: $dest_fs"
echo
echo "| dataset | tool | wall (median of $runs) | peak RSS | vs pull-local | vs pull file:// | vs pull-local --untrusted |"
echo "|---|---|---|---|---|---|---|"
bench_dataset small make_small
bench_dataset large make_large 20 20
