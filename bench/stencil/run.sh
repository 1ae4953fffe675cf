#!/usr/bin/env bash
# The radius-2 star stencil (PRK style: OUT += S(IN), IN += 1) on a 2-D
# process grid: hand-written C MPI (bench/stencil/stencil.c) against
# distarray's idiomatic Ghosted form (backends/mpi/examples/mpi_stencil.rs)
# and the older Halo::refresh idiom, on Open MPI over shared memory,
# alternating, REPS times each; prints every run and the median ratios.
#
#   bash bench/stencil/run.sh [REPS] [ITERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=${1:-5}
iters=${2:-50}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpicc.openmpi -O3 -march=native -DRADIUS=2 -o target/c_stencil bench/stencil/stencil.c
MPICC=mpicc.openmpi cargo build -q --release -p distarray-mpi --example mpi_stencil
run() { timeout 600 mpirun.openmpi --oversubscribe --mca btl self,vader -n "$@" | sed -n 's/.*per_iter_ms=\([0-9.]*\).*/\1/p'; }
for n in 1000 4000; do
  it=$iters
  [ "$n" = 4000 ] && it=$((iters / 5 + 1))
  for p in 1 2; do
    c=(); g=(); h=()
    for _ in $(seq "$reps"); do
      c+=("$(run "$p" target/c_stencil "$n" "$it" 2)")
      g+=("$(run "$p" target/release/examples/mpi_stencil "$n" "$it" 2)")
      h+=("$(run "$p" target/release/examples/mpi_stencil "$n" "$it" 2 --halo)")
    done
    python3 - "$n" "$p" "${c[*]}" "${g[*]}" "${h[*]}" <<'PY'
import sys, statistics as st
n, p = sys.argv[1], sys.argv[2]
c, g, h = ([float(x) for x in a.split()] for a in sys.argv[3:6])
rg = [b / a for a, b in zip(c, g)]
rh = [b / a for a, b in zip(c, h)]
print(f"n={n} P={p}: C {st.median(c):.3f} ms, Ghosted {st.median(g):.3f} ms, Halo::refresh {st.median(h):.3f} ms per iteration;"
      f" Ghosted/C median {st.median(rg):.2f} (range {min(rg):.2f}-{max(rg):.2f}),"
      f" Halo/C median {st.median(rh):.2f} (range {min(rh):.2f}-{max(rh):.2f})")
PY
  done
done
