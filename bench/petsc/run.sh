#!/usr/bin/env bash
# Same-run comparison of distarray's Poisson CG example on the MPI backend
# (backends/mpi/examples/mpi_poisson_cg.rs) with a matrix-free PETSc CG on
# the same system (bench/petsc/poisson_cg.c: DMDA + MatShell 5-point
# stencil, KSPCG, PCNONE, rtol 1e-8, b = A u*).
#
#   bash bench/petsc/run.sh                      # n = 512, 1 and 2 ranks, 5 rounds
#   N=256 RANKS="1 2 4" ROUNDS=3 bash bench/petsc/run.sh
#   BASELINE_BIN=/path/to/older/mpi_poisson_cg bash bench/petsc/run.sh   # a third column
#   OURS_BIN=/path/to/mpi_poisson_cg bash bench/petsc/run.sh    # skip the cargo build
#   PETSC_ONLY=1 N=1024 bash bench/petsc/run.sh                 # PETSc alone
#
# Each round runs PETSc and distarray (and the optional baseline binary)
# back to back, alternating, so that both see the same machine load; the
# summary gives the median time per iteration of each and the ratio.
# Needs Debian's petsc-dev (installed when run as root) and Open MPI.
# Writes bench-results/petsc_cg.csv (one row per run) and prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-512}
RANKS=${RANKS:-"1 2"}
ROUNDS=${ROUNDS:-5}
MPIRUN=${MPIRUN:-"mpirun --oversubscribe --mca btl self,vader"}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

if ! pkg-config --exists petsc 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq petsc-dev >/dev/null
  else
    echo "PETSc (Debian petsc-dev) is not installed" >&2
    exit 1
  fi
fi
mkdir -p target/petsc bench-results
PETSC_BIN=target/petsc/poisson_cg
# shellcheck disable=SC2046
mpicc -O3 -o "$PETSC_BIN" bench/petsc/poisson_cg.c $(pkg-config --cflags --libs petsc) -lm
if [ -z "${OURS_BIN:-}" ] && [ -z "${PETSC_ONLY:-}" ]; then
  cargo build --release -p distarray-mpi --example mpi_poisson_cg
  OURS_BIN=target/release/examples/mpi_poisson_cg
fi

csv=bench-results/petsc_cg.csv
echo "n,ranks,round,solver,iterations,time_s,ms_per_iteration" >"$csv"

# prints "iterations ms_per_iteration time_s" from either program's output
parse() {
  awk '
    /^petsc_cg/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                  print v["iterations"], v["ms_per_iteration"], v["time_s"]; exit }
    /CG: [0-9]+ iterations/ { it = $2; t = $(NF-3); ms = $(NF-1); gsub(/[()]/, "", ms)
                  print it, ms, t; exit }'
}

run_one() { # solver ranks round
  local solver=$1 p=$2 r=$3 out
  case $solver in
    petsc) out=$(timeout 300 $MPIRUN -n "$p" "$PETSC_BIN" -n "$N") ;;
    distarray) out=$(timeout 300 $MPIRUN -n "$p" "$OURS_BIN" --n "$N") ;;
    baseline) out=$(timeout 300 $MPIRUN -n "$p" "$BASELINE_BIN" --n "$N") ;;
  esac
  read -r it ms t < <(echo "$out" | parse)
  echo "$N,$p,$r,$solver,$it,$t,$ms" >>"$csv"
  printf '  n=%s ranks=%s round %s %-9s %5s iterations %8.4f ms/iteration\n' "$N" "$p" "$r" "$solver" "$it" "$ms"
}

solvers="petsc distarray"
[ -n "${PETSC_ONLY:-}" ] && solvers="petsc"
[ -n "${BASELINE_BIN:-}" ] && solvers="$solvers baseline"
for r in $(seq 1 "$ROUNDS"); do
  for p in $RANKS; do
    for s in $solvers; do run_one "$s" "$p" "$r"; done
  done
done

echo
echo "ms/iteration over $ROUNDS rounds (n = $N): median and best (the least disturbed run);"
echo "ratios to PETSc's matrix-free CG of the same statistic, and the median of the"
echo "per-round ratios (each round runs both back to back):"
stat() { # ranks solver -> "median best"
  awk -F, -v p="$1" -v s="$2" 'NR > 1 && $2 == p && $4 == s { print $7 }' "$csv" | sort -g |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1] }'
}
for p in $RANKS; do
  read -r pmed pbest < <(stat "$p" petsc)
  for s in $solvers; do
    read -r med best < <(stat "$p" "$s")
    its=$(awk -F, -v p="$p" -v s="$s" 'NR > 1 && $2 == p && $4 == s { print $5; exit }' "$csv")
    printf '  ranks=%s %-9s %5s iterations  median %8.4f  best %8.4f ms/iteration' "$p" "$s" "$its" "$med" "$best"
    if [ "$s" = petsc ]; then echo; else
      # the median of the per-round ratios: each round's pair ran back to
      # back, so load that drifts between rounds cancels out
      paired=$(awk -F, -v p="$p" -v s="$s" 'NR > 1 && $2 == p && ($4 == s || $4 == "petsc") { v[$3, $4] = $7; r[$3] = 1 }
        END { for (k in r) print v[k, s] / v[k, "petsc"] }' "$csv" | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
      awk -v a="$med" -v b="$pmed" -v c="$best" -v d="$pbest" -v e="$paired" \
        'BEGIN { printf "  %.2fx / %.2fx PETSc, per-round median %.2fx\n", a / b, c / d, e }'
    fi
  done
done
echo "wrote $csv"
