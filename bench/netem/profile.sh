#!/usr/bin/env bash
# Where the network round trips of a CG iteration go: distarray's Poisson CG
# example and PETSc's CG (bench/petsc/poisson_cg.c) on the emulated network
# at one delay, each run twice (to tolerances 1e-8 and 1e-2) under the
# PMPI profiling library bench/netem/mpi_profile.c; the difference of the
# two runs divided by the difference of their iteration counts gives the
# MPI calls and the time in each MPI function per iteration, without the
# set-up. Times are also given in round trips (the ping-pong round trip
# measured in the same namespace). The call counts are exact; the times
# overlap if an MPI call is made from inside another (then "total in MPI"
# exceeds the loop's time per iteration, which the example prints and
# target/netem/logs/profile-DELAY.log keeps).
#
#   bench/netem/profile.sh            # delay 200 us, n = 64
#   DELAY=100 N=64 bench/netem/profile.sh
#
# Expects bench/netem/run.sh's build (target/netem/, the release example);
# BUILD=1 builds first. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
here=$root/bench/netem
out=$root/target/netem
DELAY=${DELAY:-200}
N=${N:-64}
RANKS_RT=${RANKS_RT:-10}

[[ $(id -u) == 0 ]] || { echo "$0: needs root (network namespace, iptables)" >&2; exit 2; }
mkdir -p "$out/logs"
if [[ "${BUILD:-0}" == 1 || ! -x "$out/delay" || ! -x "$out/mpi_lat" || ! -x "$out/petsc_cg" ]]; then
    cc -O2 -Wall -o "$out/delay" "$here/delay.c" -lnetfilter_queue -lnfnetlink
    mpicc -O2 -Wall -o "$out/mpi_lat" "$here/mpi_lat.c"
    # shellcheck disable=SC2046
    mpicc -O3 -o "$out/petsc_cg" "$root/bench/petsc/poisson_cg.c" $(pkg-config --cflags --libs PETSc) -lm
    cargo build --release -q -p distarray-mpi --example mpi_poisson_cg
fi
mpicc -O2 -Wall -shared -fPIC -o "$out/libmpi_profile.so" "$here/mpi_profile.c"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rt=
if [[ "$RANKS_RT" != 0 ]] && chrt -f "$RANKS_RT" true 2>/dev/null; then
    rt="chrt -f $RANKS_RT"
fi
# See run.sh for the transport options and the real-time priority.
mpirun_tcp="timeout 120 $rt mpirun --oversubscribe -n 2 --mca btl self,tcp \
--mca btl_tcp_if_include lo --mca oob_tcp_if_include lo --mca osc pt2pt"
ours=$root/target/release/examples/mpi_poisson_cg
export mpirun_tcp ours out N
log=$out/logs/profile-$DELAY.log
"$here/with-delay.sh" "$DELAY" bash -c '
    set -e
    $mpirun_tcp "$out/mpi_lat" 100
    prof="-x LD_PRELOAD=$out/libmpi_profile.so"
    for tol in 1e-8 1e-2; do
        echo "## ours $tol"
        $mpirun_tcp $prof "$ours" --n "$N" --tol "$tol" --no-baseline
        echo "## petsc $tol"
        $mpirun_tcp $prof "$out/petsc_cg" -n "$N" -ksp_rtol "$tol"
    done
' >"$log" 2>&1 || { echo "$0: failed; output:" >&2; cat "$log" >&2; exit 1; }

python3 - "$log" "$DELAY" "$N" <<'EOF'
import re, sys

text = open(sys.argv[1]).read()
delay, n = sys.argv[2], sys.argv[3]
rt = float(re.search(r"^ping-pong \(round trip\)\s+mean\s+[\d.]+ us\s+median\s+([\d.]+) us",
                     text, re.M).group(1))
runs = {}
for block in re.split(r"^## ", text, flags=re.M)[1:]:
    head, body = block.split("\n", 1)
    who, tol = head.split()
    m = (re.search(r"CG: (\d+) iterations", body)
         or re.search(r"^petsc_cg .*iterations=(\d+)", body, re.M))
    prof = {f: (int(c), float(t)) for f, c, t in
            re.findall(r"^mpi_profile (\S+) calls=(\d+) time_us=([\d.]+)", body, re.M)}
    runs[(who, tol)] = (int(m.group(1)), prof)

print(f"MPI calls per CG iteration at delay {delay} us (ping-pong round trip {rt:.1f} us), "
      f"{n} x {n} grid, 2 ranks, rank 0; runs to 1e-8 minus runs to 1e-2")
for who, name in (("ours", "distarray"), ("petsc", "PETSc")):
    (i1, p1), (i2, p2) = runs[(who, "1e-8")], runs[(who, "1e-2")]
    di = i1 - i2
    print()
    print(f"{name}: {i1} - {i2} = {di} iterations")
    print("| MPI function | calls/iter | us/iter | round trips/iter |")
    print("|---|---|---|---|")
    total = 0.0
    for f in sorted(set(p1) | set(p2)):
        c = (p1.get(f, (0, 0.0))[0] - p2.get(f, (0, 0.0))[0]) / di
        t = (p1.get(f, (0, 0.0))[1] - p2.get(f, (0, 0.0))[1]) / di
        if abs(c) < 1e-9 and abs(t) < 0.05 * rt:
            continue
        total += t
        print(f"| {f} | {c:.2f} | {t:.1f} | {t / rt:.2f} |")
    print(f"| total in MPI | | {total:.1f} | {total / rt:.2f} |")
EOF
