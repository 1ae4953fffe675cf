#!/usr/bin/env bash
# The radius-2 star stencil (PRK style: OUT += S(IN), IN += 1) on a 2-D
# process grid: hand-written C MPI (bench/stencil/stencil.c) against
# distarray's idiomatic Ghosted form (backends/mpi/examples/mpi_stencil.rs:
# update_ghosts, then apply_within_map: the stencil and IN += 1 in one
# pass), the same in two passes (--unfused: apply_within, map_inplace)
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
    c=(); g=(); u=(); h=()
    for _ in $(seq "$reps"); do
      c+=("$(run "$p" target/c_stencil "$n" "$it" 2)")
      g+=("$(run "$p" target/release/examples/mpi_stencil "$n" "$it" 2)")
      u+=("$(run "$p" target/release/examples/mpi_stencil "$n" "$it" 2 --unfused)")
      h+=("$(run "$p" target/release/examples/mpi_stencil "$n" "$it" 2 --halo)")
    done
    python3 - "$n" "$p" "${c[*]}" "${g[*]}" "${u[*]}" "${h[*]}" <<'PY'
import sys, statistics as st
n, p = sys.argv[1], sys.argv[2]
c, g, u, h = ([float(x) for x in a.split()] for a in sys.argv[3:7])
ratios = lambda xs: [b / a for a, b in zip(c, xs)]
fmt = lambda r: f"{st.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"
print(f"n={n} P={p}: C {st.median(c):.3f} ms, Ghosted {st.median(g):.3f} ms, unfused {st.median(u):.3f} ms,"
      f" Halo::refresh {st.median(h):.3f} ms per iteration; per repetition / C, median (range):"
      f" Ghosted {fmt(ratios(g))}, unfused {fmt(ratios(u))}, Halo {fmt(ratios(h))}")
PY
  done
done
