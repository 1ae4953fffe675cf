#!/usr/bin/env bash
# Same-run comparison of distarray's transpose (the PRK kernel B += A^T;
# A += 1 through TransposePlan::transpose_add and add_scalar,
# backends/mpi/examples/mpi_transpose.rs) with a hand-written C MPI
# transpose (bench/transpose/transpose.c: one Isend/Irecv per rank pair,
# cache-blocked local transpose, mpicc -O3 -march=native).
#
#   bash bench/transpose/run.sh                          # n = 1000 4000, P = 1 2, 5 rounds
#   SIZES="1000" RANKS="2" ROUNDS=3 ITERS=20 bash bench/transpose/run.sh
#   OURS_BIN=/path/to/mpi_transpose bash bench/transpose/run.sh   # skip the cargo build
#
# Each round runs C and distarray back to back (alternating which goes
# first), so both see the same machine load. Prints, per (n, P): the median
# and the range of ms per iteration of each, and the median and range of
# the per-round ratios distarray / C. Writes bench-results/transpose.csv.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${SIZES:-"1000 4000"}
RANKS=${RANKS:-"1 2"}
ROUNDS=${ROUNDS:-5}
ITERS=${ITERS:-10}
MPIRUN=${MPIRUN:-"mpirun --oversubscribe --mca btl self,vader"}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TARGET=${CARGO_TARGET_DIR:-target}

mkdir -p "$TARGET/ctranspose" bench-results
C_BIN=$TARGET/ctranspose/transpose
mpicc -O3 -march=native -o "$C_BIN" bench/transpose/transpose.c -lm
if [ -z "${OURS_BIN:-}" ]; then
  MPICC=${MPICC:-mpicc.openmpi} cargo build --release -p distarray-mpi --example mpi_transpose
  OURS_BIN=$TARGET/release/examples/mpi_transpose
fi

csv=bench-results/transpose.csv
echo "n,ranks,round,impl,ms_per_iteration" >"$csv"

run_one() { # impl n ranks round
  local impl=$1 n=$2 p=$3 r=$4 out ms
  case $impl in
    c) out=$(timeout 300 $MPIRUN -n "$p" "$C_BIN" --n "$n" --iters "$ITERS") ;;
    distarray) out=$(timeout 300 $MPIRUN -n "$p" "$OURS_BIN" --n "$n" --iters "$ITERS") ;;
  esac
  if ! echo "$out" | grep -q 'error=0$'; then
    echo "$impl n=$n P=$p: wrong result or no output: $out" >&2
    exit 1
  fi
  ms=$(echo "$out" | sed -n 's/.*ms_per_iteration=\([0-9.]*\).*/\1/p')
  echo "$n,$p,$r,$impl,$ms" >>"$csv"
  printf '  n=%-5s P=%s round %s %-9s %9.4f ms/iteration\n' "$n" "$p" "$r" "$impl" "$ms"
}

for r in $(seq 1 "$ROUNDS"); do
  for n in $SIZES; do
    for p in $RANKS; do
      if [ $((r % 2)) = 1 ]; then order="c distarray"; else order="distarray c"; fi
      for impl in $order; do run_one "$impl" "$n" "$p" "$r"; done
    done
  done
done

echo
echo "ms/iteration over $ROUNDS rounds ($ITERS timed iterations each): median [min, max];"
echo "ratio = distarray / C per round (both back to back), median [min, max]:"
python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
keys = sorted({(int(r["n"]), int(r["ranks"])) for r in rows})
def times(n, p, impl):
    return {int(r["round"]): float(r["ms_per_iteration"]) for r in rows
            if int(r["n"]) == n and int(r["ranks"]) == p and r["impl"] == impl}
fmt = lambda xs: f"{statistics.median(xs):9.3f} [{min(xs):.3f}, {max(xs):.3f}]"
print(f"{'n':>5} {'P':>2} {'C ms':>28} {'distarray ms':>28} {'ratio':>24}")
for n, p in keys:
    c, d = times(n, p, "c"), times(n, p, "distarray")
    ratios = [d[k] / c[k] for k in c if k in d]
    print(f"{n:>5} {p:>2} {fmt(list(c.values())):>28} {fmt(list(d.values())):>28} "
          f"{statistics.median(ratios):8.3f} [{min(ratios):.3f}, {max(ratios):.3f}]")
PY
