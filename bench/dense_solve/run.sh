#!/usr/bin/env bash
# Same-run comparison of distarray_mpi::scalapack::gesv
# (backends/mpi/examples/mpi_dense_solve.rs) with C calling ScaLAPACK's
# pdgesv (bench/dense_solve/pdgesv.c): the same matrix, grid and blocks.
#
#   bash bench/dense_solve/run.sh                    # n = 2000, P = 1 2 4, 3 rounds
#   SIZES="1000 2000" RANKS="2" ROUNDS=5 bash bench/dense_solve/run.sh
#   PIVOT=1 bash bench/dense_solve/run.sh            # a matrix on which the LU pivots
#
# Needs libscalapack-openmpi-dev and libopenblas-dev. Each round runs C and
# distarray back to back (alternating which goes first); OpenBLAS one thread
# per rank. Prints, per (n, P), the median ms of each and the median of the
# per-round ratios distarray / pdgesv.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${SIZES:-"2000"}
RANKS=${RANKS:-"1 2 4"}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-3}
NB=${NB:-64}
PIVOT=${PIVOT:-0}   # 1: rows of A permuted, every LU step pivots
MPIRUN=${MPIRUN:-"mpirun.openmpi --oversubscribe --mca btl self,vader"}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$TARGET/cdense"
C_BIN=$TARGET/cdense/pdgesv
mpicc.openmpi -O3 -march=native -o "$C_BIN" bench/dense_solve/pdgesv.c -lscalapack-openmpi -lopenblas -lm
MPICC=mpicc.openmpi cargo build -q --release -p distarray-mpi --example mpi_dense_solve --features scalapack,openblas
OURS=$TARGET/release/examples/mpi_dense_solve

ms() { sed -n 's/.* ms=\([0-9.]*\).*/\1/p' | head -1; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for n in $SIZES; do
  for p in $RANKS; do
    cs=(); ds=(); rs=()
    for r in $(seq 1 "$ROUNDS"); do
      if [ $((r % 2)) = 1 ]; then
        c=$(timeout 600 $MPIRUN -n "$p" "$C_BIN" "$n" "$REPS" "$NB" "$PIVOT" | ms)
        d=$(timeout 600 $MPIRUN -n "$p" "$OURS" --n "$n" --reps "$REPS" --nb "$NB" --pivot "$PIVOT" | ms)
      else
        d=$(timeout 600 $MPIRUN -n "$p" "$OURS" --n "$n" --reps "$REPS" --nb "$NB" --pivot "$PIVOT" | ms)
        c=$(timeout 600 $MPIRUN -n "$p" "$C_BIN" "$n" "$REPS" "$NB" "$PIVOT" | ms)
      fi
      cs+=("$c"); ds+=("$d"); rs+=("$(echo "$d / $c" | bc -l)")
    done
    printf 'n=%s P=%s pdgesv_ms=%s distarray_ms=%s ratio=%.3f\n' "$n" "$p" \
      "$(printf '%s\n' "${cs[@]}" | median)" "$(printf '%s\n' "${ds[@]}" | median)" \
      "$(printf '%s\n' "${rs[@]}" | median)"
  done
done
