#!/usr/bin/env bash
# Side-by-side benchmarks of the fetch engine (`ferryctl update`) against `ostree
# pull`, in one run, with ratios:
#   1. one HTTP source (nginx on loopback): small files (5,000 × 1–16 KiB) and
#      large files (20 × 20 MiB, half random);
#   2. three LAN peers in network namespaces, each link limited to 50 Mbit/s with
#      tc: Ferry from all three vs Ferry from one vs `ostree pull` from one;
#   3. a stale USB drive (previous commit, loop-mounted ext4) plus an upstream
#      limited to 20 Mbit/s, for a new commit sharing ~90% of its objects: bytes
#      taken from upstream vs the truly new bytes;
#   4. peak RSS of every Ferry run.
# Traffic stays on loopback and inside namespaces this script creates and removes.
# Needs root. Usage: sudo [CLIENT_MODE=bare-user] benches/engine.sh [RUNS]
# CLIENT_MODE: the mode of the repositories Ferry and ostree pull into (archive).
set -euo pipefail

runs=${1:-3}
top=$(cd "$(dirname "$0")/.." && pwd)
command -v nginx >/dev/null || apt-get install -y -q nginx-light >/dev/null
# FERRYCTL=PATH measures that binary instead (e.g. an A/B of two builds).
if [ -n "${FERRYCTL:-}" ]; then
    ferryctl=$FERRYCTL
else
    cargo build --release --no-default-features --bin ferryctl --manifest-path "$top/Cargo.toml" >&2
    ferryctl="$top/target/release/ferryctl"
fi
export FERRY_LAN_INTERFACES=none
client_mode=${CLIENT_MODE:-archive}

work=$(mktemp -d /var/tmp/ferry-bench-engine.XXXXXX)
chmod 755 "$work"  # nginx workers read the repos as www-data
suffix=$$
namespaces=()
pids=()
mounts=()
cleanup() {
    [ -d "$work/gnupg" ] && GNUPGHOME="$work/gnupg" gpgconf --kill all 2>/dev/null
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=benches/lib.sh
source "$top/benches/lib.sh"

# nginx serving DIR on ADDR:PORT, optionally inside a namespace.
start_nginx() {
    local dir=$1 addr=$2 port=$3 ns=${4:-}
    local conf="$work/nginx-$addr-$port.conf"
    cat >"$conf" <<CONF
daemon off;
worker_processes 2;
pid $work/nginx-$addr-$port.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    server { listen $addr:$port; root $dir; }
}
CONF
    if [ -n "$ns" ]; then
        ip netns exec "$ns" nginx -c "$conf" &
    else
        nginx -c "$conf" &
    fi
    pids+=($!)
    for _ in $(seq 50); do
        if { [ -n "$ns" ] && ip netns exec "$ns" bash -c "echo >/dev/tcp/$addr/$port" 2>/dev/null; } ||
            { [ -z "$ns" ] && bash -c "echo >/dev/tcp/$addr/$port" 2>/dev/null; }; then
            return 0
        fi
        sleep 0.1
    done
    echo "nginx did not start on $addr:$port" >&2
    return 1
}

# new_repo DIR TREE: an ostree archive repo with one commit of TREE on os/bench.
new_repo() {
    ostree --repo="$1" init --mode=archive --collection-id=org.example.Bench
    ostree --repo="$1" commit -b os/bench --tree=dir="$2" -s bench >/dev/null
    ostree --repo="$1" summary -u >/dev/null
}

# fresh_dir LINK: points LINK at a new, empty directory. Earlier ones are kept until
# the script ends: ext4 creates files slowly next to thousands it has just deleted,
# which would weigh on whichever tool runs next.
fresh_dir() {
    rm -f "$1"
    ln -s "$(mktemp -d "$work/run.XXXXXX")" "$1"
}

# ferry_client DIR URL [KEYRING]: a Ferry repo tracking os/bench of a remote at URL,
# verifying commits with KEYRING when given (drives serve only verifying remotes).
ferry_client() {
    fresh_dir "$1"
    "$ferryctl" --repo "$1" init --mode "$client_mode" >/dev/null
    local trust=(--no-verify)
    [ -n "${3:-}" ] && trust=(--gpg-import "$3")
    "$ferryctl" --repo "$1" remote add origin "$2" --collection-id org.example.Bench "${trust[@]}" 2>/dev/null
    "$ferryctl" --repo "$1" track origin os/bench >/dev/null
}

# A throwaway signing key for the commits a drive carries.
bench_key() {
    export GNUPGHOME="$work/gnupg"
    mkdir -m 700 "$GNUPGHOME"
    gpg --batch --passphrase '' --quick-gen-key bench@example.org ed25519 sign never 2>/dev/null
    gpg --export bench@example.org >"$work/bench-key.gpg" 2>/dev/null
    gpg --with-colons --list-keys bench@example.org 2>/dev/null | awk -F: '/^fpr/ { print $10; exit }'
}

ostree_client() {
    fresh_dir "$1"
    ostree --repo="$1" init --mode="$client_mode"
    ostree --repo="$1" remote add origin "$2" --no-gpg-verify
}

# runs_of LABEL CMD...: median wall time and RSS of RUNS runs; a `prepare` function
# set by the caller resets the destination before each run.
runs_of() {
    local label=$1
    shift
    local t_list="" r_list=""
    for _ in $(seq "$runs"); do
        prepare
        sync
        measure "$work/m" "$@"
        read -r t r <"$work/m"
        t_list+="$t"$'\n'
        r_list+="$r"$'\n'
    done
    echo "$label $(printf '%s' "$t_list" | median) $(printf '%s' "$r_list" | median)"
}

echo "## 1. One HTTP source on loopback (nginx), median of $runs"
echo
echo "| dataset | ferryctl update | ostree pull | ratio | Ferry peak RSS | ostree peak RSS |"
echo "|---|---|---|---|---|---|"
for dataset in small large; do
    tree="$work/$dataset-tree"
    if [ $dataset = small ]; then make_small "$tree"; else make_large "$tree" 20 20; fi
    new_repo "$work/$dataset-repo" "$tree"
    rm -rf "$tree"
    start_nginx "$work/$dataset-repo" 127.0.0.1 18080
    url=http://127.0.0.1:18080/
    prepare() { ferry_client "$work/dest" "$url"; }
    read -r _ ft fr < <(runs_of ferry "$ferryctl" --repo "$work/dest" --no-lan --no-mounts update)
    [ "$(ostree --repo="$work/dest" rev-parse origin:os/bench)" = "$(ostree --repo="$work/$dataset-repo" rev-parse os/bench)" ]
    prepare() { ostree_client "$work/dest" "$url"; }
    read -r _ ot or < <(runs_of ostree ostree --repo="$work/dest" pull origin os/bench)
    kill "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null || true
    awk -v d=$dataset -v ft="$ft" -v ot="$ot" -v fr="$fr" -v or="$or" \
        'BEGIN { printf "| %s | %.2f s | %.2f s | %.2f× | %.1f MiB | %.1f MiB |\n", d, ft, ot, ft / ot, fr / 1024, or / 1024 }'
done

echo
echo "## 2. Three LAN peers, 50 Mbit/s each (network namespaces + tc), median of $runs"
echo
client=ferry-bc-$suffix
ip netns add "$client"
namespaces+=("$client")
ip -n "$client" link set lo up
make_large "$work/lan-tree" 60 1
new_repo "$work/lan-repo" "$work/lan-tree"
rm -rf "$work/lan-tree"
lan_bytes=$(du -sb "$work/lan-repo/objects" | cut -f1)
peers=()
for n in 1 2 3; do
    ns=ferry-bp$n-$suffix
    ip netns add "$ns"
    namespaces+=("$ns")
    ip link add "bp$n-$suffix" type veth peer name "bc$n-$suffix"
    ip link set "bp$n-$suffix" netns "$ns"
    ip link set "bc$n-$suffix" netns "$client"
    ip -n "$ns" addr add "10.78.$n.1/24" dev "bp$n-$suffix"
    ip -n "$client" addr add "10.78.$n.2/24" dev "bc$n-$suffix"
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "bp$n-$suffix" up
    ip -n "$client" link set "bc$n-$suffix" up
    ip netns exec "$ns" tc qdisc add dev "bp$n-$suffix" root tbf rate 50mbit burst 64kb latency 50ms
    start_nginx "$work/lan-repo" "10.78.$n.1" 8000 "$ns"
    peers+=("http://10.78.$n.1:8000/")
done
# The peers are given as static sources (what discovery would find over DNS-SD);
# the configured upstream refuses connections, as when the internet is down.
prepare() { ferry_client "$work/dest" http://127.0.0.1:9/; }
read -r _ f3 f3r < <(runs_of ferry3 ip netns exec "$client" "$ferryctl" --repo "$work/dest" --no-lan --no-mounts \
    --static-source "${peers[0]}" --static-source "${peers[1]}" --static-source "${peers[2]}" update)
read -r _ f1 f1r < <(runs_of ferry1 ip netns exec "$client" "$ferryctl" --repo "$work/dest" --no-lan --no-mounts \
    --static-source "${peers[0]}" update)
prepare() { ostree_client "$work/dest" "${peers[0]}"; }
read -r _ o1 o1r < <(runs_of ostree1 ip netns exec "$client" ostree --repo="$work/dest" pull origin os/bench)
echo "| run | wall | throughput | vs Ferry from one peer | peak RSS |"
echo "|---|---|---|---|---|"
for row in "ferryctl update, 3 peers:$f3:$f3r" "ferryctl update, 1 peer:$f1:$f1r" "ostree pull, 1 peer:$o1:$o1r"; do
    IFS=: read -r label t r <<<"$row"
    awk -v l="$label" -v t="$t" -v r="$r" -v b="$lan_bytes" -v f1="$f1" \
        'BEGIN { printf "| %s | %.2f s | %.1f Mbit/s | %.2f× | %.1f MiB |\n", l, t, b * 8 / t / 1e6, f1 / t, r / 1024 }'
done

echo
echo "## 3. Stale USB drive + upstream at 20 Mbit/s, new commit sharing ~90% of objects"
echo
up=ferry-bu-$suffix
ip netns add "$up"
namespaces+=("$up")
ip link add "bu-$suffix" type veth peer name "bcu-$suffix"
ip link set "bu-$suffix" netns "$up"
ip link set "bcu-$suffix" netns "$client"
ip -n "$up" addr add 10.78.9.1/24 dev "bu-$suffix"
ip -n "$client" addr add 10.78.9.2/24 dev "bcu-$suffix"
ip -n "$up" link set lo up
ip -n "$up" link set "bu-$suffix" up
ip -n "$client" link set "bcu-$suffix" up
ip netns exec "$up" tc qdisc add dev "bu-$suffix" root tbf rate 20mbit burst 32kb latency 50ms
tree="$work/stale-tree"
make_large "$tree" 20 2
new_repo "$work/stale-up" "$tree"
old=$(ostree --repo="$work/stale-up" rev-parse os/bench)
key=$(bench_key)
export GNUPGHOME="$work/gnupg"
ostree --repo="$work/stale-up" gpg-sign os/bench "$key" --gpg-homedir="$GNUPGHOME"
# The USB drive holds the previous commit.
truncate -s 512M "$work/usb.img"
mkfs.ext4 -q -L FERRYUSB "$work/usb.img"
mkdir -p "$work/usb"
mount -o loop "$work/usb.img" "$work/usb"
mounts+=("$work/usb")
ostree --repo="$work/stale-up" create-usb "$work/usb" org.example.Bench os/bench >/dev/null
# The new commit replaces 2 of the 20 files.
python3 -c "
import random, sys
rng = random.Random(99)
for i in (3, 11):
    open(f'$tree/big{i:02d}', 'wb').write(rng.randbytes(2 << 20))
"
ostree --repo="$work/stale-up" commit -b os/bench --tree=dir="$tree" -s new >/dev/null
ostree --repo="$work/stale-up" gpg-sign os/bench "$key" --gpg-homedir="$GNUPGHOME"
ostree --repo="$work/stale-up" summary -u >/dev/null
new=$(ostree --repo="$work/stale-up" rev-parse os/bench)
# Truly new bytes: objects of the new commit that the old one lacks.
new_bytes=$(python3 - "$work/stale-up" "$old" "$new" <<'PY'
import os, subprocess, sys
repo, old, new = sys.argv[1:]
def objects(rev):
    out = subprocess.run(["ostree", f"--repo={repo}", "ls", "-R", "-C", rev],
                         check=True, capture_output=True, text=True).stdout
    return {line.split()[4] for line in out.splitlines() if line.startswith("-")}
fresh = objects(new) - objects(old)
print(sum(os.path.getsize(f"{repo}/objects/{c[:2]}/{c[2:]}.filez") for c in fresh))
PY
)
start_nginx "$work/stale-up" 10.78.9.1 8000 "$up"
ferry_client "$work/dest" http://10.78.9.1:8000/ "$work/bench-key.gpg"
# A fresh client: the drive (as a sideload entry) holds the previous commit.
mkdir -p "$work/sideload"
ln -sfn "$work/usb" "$work/sideload/usb"
measure "$work/m" ip netns exec "$client" "$ferryctl" --repo "$work/dest" --json --no-lan --no-mounts \
    --sideload-dir "$work/sideload" update
read -r st sr <"$work/m"
[ "$(ostree --repo="$work/dest" rev-parse origin:os/bench)" = "$new" ]
from_up=$(python3 - "$work/stdout" <<'PY'
import json, sys
last = {}
for line in open(sys.argv[1]):
    event = json.loads(line)
    if event.get("event") == "progress":
        for s in event["sources"]:
            last[s["id"]] = s["bytes"]
print(sum(b for i, b in last.items() if i.startswith("upstream:")))
PY
)
awk -v u="$from_up" -v n="$new_bytes" -v t="$st" -v r="$sr" \
    'BEGIN { printf "| truly new bytes | from upstream | ratio | wall | Ferry peak RSS |\n|---|---|---|---|---|\n| %d | %d | %.2f× | %.2f s | %.1f MiB |\n", n, u, u / n, t, r / 1024 }'
