# Shared by the benchmark scripts: datasets, measurement, medians.
# Sourced after the script has set $work (its scratch directory).

# make_small DIR: 5,000 random files of 1-16 KiB in 50 directories.
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

# make_large DIR COUNT MIB: COUNT files of MIB MiB, each half random, half text.
make_large() {
    python3 - "$1" "$2" "$3" <<'PY'
import os, random, sys
root, count, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
os.makedirs(root, exist_ok=True)
half = (mib << 20) // 2
text = b"".join(b"line %d of a compressible file\n" % i for i in range(half // 20))[:half]
for i in range(count):
    with open(os.path.join(root, f"big{i:02d}"), "wb") as f:
        f.write(rng.randbytes(half))
        f.write(text)
PY
}

# measure OUTFILE CMD...: runs CMD, writes "seconds peak_kib" to OUTFILE.
measure() {
    local out=$1
    shift
    /usr/bin/time -o "$out" -f "%e %M" "$@" >"${work:?}/stdout" 2>"$work/stderr" ||
        { cat "$work/stderr" >&2; return 1; }
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
