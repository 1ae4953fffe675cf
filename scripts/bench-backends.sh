#!/usr/bin/env bash
# matvec N = 5000 (plain-Rust kernel) on the three backends, P = 1, 2, 4,
# rows and columns, in one run: prints one table row per configuration.
# Build first:
#   cargo build --release --example matvec
#   cargo build --release -p distarray-mpi --examples
#   cargo build --release -p distarray-lamellar --bins --examples
set -euo pipefail
cd "$(dirname "$0")/.."
T=target/release
N=${N:-5000}
REPS=${REPS:-10}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
median() { grep -o 'median [0-9.]* ms' | head -1 | awk '{print $2}'; }
echo "| P | A by | threaded | MPI (osc/sm) | Lamellar |"
echo "|---|---|---|---|---|"
for p in 1 2 4; do
  for dist in rows cols; do
    th=$(timeout 300 $T/examples/matvec --n "$N" --dist "$dist" --reps "$REPS" --ranks "$p" | median)
    mp=$(timeout 300 mpirun --oversubscribe --mca btl self,vader --mca osc sm -n "$p" \
         $T/examples/mpi_matvec --n "$N" --dist "$dist" --reps "$REPS" | median)
    la=$(timeout 300 $T/distarray-lamellar-run -n "$p" -- $T/examples/lamellar_matvec \
         --n "$N" --dist "$dist" --reps "$REPS" | median)
    echo "| $p | $dist | $th ms | $mp ms | $la ms |"
  done
done
