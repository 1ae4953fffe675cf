#!/usr/bin/env bash
# Same-run comparison of distarray's matmul (backends/mpi/examples/mpi_matmul.rs,
# CBLAS kernel through the `openblas` feature) with ScaLAPACK's pdgemm
# (bench/matmul/pdgemm.c), and of both with one rank's dgemm (the floor).
#
#   bash bench/matmul/run.sh                       # n = 2000 4000, P = 1 2, 3 rounds
#   SIZES="2000" RANKS="2" ROUNDS=5 bash bench/matmul/run.sh
#
# Needs libscalapack-openmpi-dev and libopenblas-dev. Each round runs C and
# distarray back to back (alternating which goes first); OpenBLAS runs one
# thread per rank. Prints, per (n, P), the median ms of each and the median
# of the per-round ratios distarray / pdgemm.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${SIZES:-"2000 4000"}
RANKS=${RANKS:-"1 2"}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-3}
MPIRUN=${MPIRUN:-"mpirun.openmpi --oversubscribe --mca btl self,vader"}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$TARGET/cmatmul"
C_BIN=$TARGET/cmatmul/pdgemm
mpicc.openmpi -O3 -march=native -o "$C_BIN" bench/matmul/pdgemm.c -lscalapack-openmpi -lopenblas
MPICC=mpicc.openmpi cargo build -q --release -p distarray-mpi --example mpi_matmul --features openblas
OURS=$TARGET/release/examples/mpi_matmul

ms() { sed -n 's/.* ms=\([0-9.]*\).*/\1/p' | head -1; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for n in $SIZES; do
  floor=$(timeout 600 $MPIRUN -n 1 "$OURS" --n "$n" --reps "$REPS" --serial | grep serial_gemm | ms)
  echo "n=$n: one-rank dgemm (OpenBLAS, 1 thread) $floor ms"
  for p in $RANKS; do
    c_all="" o_all="" r_all=""
    for r in $(seq 1 "$ROUNDS"); do
      if [ $((r % 2)) -eq 1 ]; then
        c=$(timeout 600 $MPIRUN -n "$p" "$C_BIN" "$n" "$REPS" | ms)
        o=$(timeout 600 $MPIRUN -n "$p" "$OURS" --n "$n" --reps "$REPS" | ms)
      else
        o=$(timeout 600 $MPIRUN -n "$p" "$OURS" --n "$n" --reps "$REPS" | ms)
        c=$(timeout 600 $MPIRUN -n "$p" "$C_BIN" "$n" "$REPS" | ms)
      fi
      c_all="$c_all $c" o_all="$o_all $o"
      r_all="$r_all $(awk -v a="$o" -v b="$c" 'BEGIN {printf "%.3f", a / b}')"
    done
    cm=$(echo $c_all | tr ' ' '\n' | median)
    om=$(echo $o_all | tr ' ' '\n' | median)
    rm=$(echo $r_all | tr ' ' '\n' | median)
    echo "n=$n P=$p: pdgemm $cm ms (rounds:$c_all) | distarray matmul $om ms (rounds:$o_all) | ratio median ${rm}x (rounds:$r_all) | distarray / one-rank dgemm $(awk -v a="$om" -v b="$floor" 'BEGIN {printf "%.2f", a / b}')x"
  done
done
