#!/usr/bin/env bash
# Parallel HDF5: distarray (backends/mpi/examples/hdf5_bench.rs) against raw
# collective H5Dwrite / H5Dread in C (h5bench.c), same array, same file,
# same run, alternating C and Rust ROUNDS times at each rank count.
#
#   bash bench/hdf5/run.sh [ROWS COLS REPS ROUNDS]   # default 16384 8192 5 3: 1 GiB of f64
#
# Open MPI and Debian's libhdf5-openmpi-dev. The file goes to $BENCH_DIR
# (default target/hdf5-bench); it is a page-cache figure unless the file
# is larger than the free memory.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-16384} COLS=${2:-8192} REPS=${3:-5} ROUNDS=${4:-3}
DIR=${BENCH_DIR:-target/hdf5-bench}
mkdir -p "$DIR"
export HDF5_DIR="/usr/lib/$(gcc -dumpmachine)/hdf5/openmpi"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# (h5pcc leaves its object file in the working directory: build in $DIR)
(src="$PWD/bench/hdf5/h5bench.c"; cd "$DIR" && h5pcc.openmpi -O3 -o h5bench "$src")
MPICC=mpicc.openmpi cargo build --release -q -p distarray-mpi --features hdf5 --example hdf5_bench
LOG="$DIR/run.log"
: > "$LOG"
for P in 1 2; do
  for _ in $(seq "$ROUNDS"); do
    for prog in "$DIR/h5bench" target/release/examples/hdf5_bench; do
      timeout 900 mpirun.openmpi --oversubscribe --mca btl self,vader -n "$P" \
        "$prog" "$DIR/bench.h5" "$ROWS" "$COLS" "$REPS" | tee -a "$LOG"
    done
  done
done
rm -f "$DIR/bench.h5"
# Summary: per P, the median over the rounds of each program's median
# time, and distarray / C. (A tiny array, e.g. `run.sh 64 64 101 3`,
# shows the fixed cost of a call instead of the bandwidth.)
python3 - "$LOG" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(c|rust)\s+P=(\d+) .*write median ([\d.]+) ms.*read median ([\d.]+) ms", line)
    if m:
        runs.setdefault((int(m[2]), m[1]), []).append((float(m[3]), float(m[4])))
for p in sorted({p for p, _ in runs}):
    c, r = runs[(p, "c")], runs[(p, "rust")]
    for i, what in enumerate(["write", "read"]):
        mc = statistics.median(t[i] for t in c)
        mr = statistics.median(t[i] for t in r)
        print(f"summary P={p} {what}: C {mc:.2f} ms, distarray {mr:.2f} ms, ratio {mr / mc:.3f} "
              f"({len(c)} rounds each)")
PY
