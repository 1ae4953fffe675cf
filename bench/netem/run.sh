#!/usr/bin/env bash
# The CG comparison on an emulated cluster (issue 13): distarray's Poisson
# CG example (MPI backend) and PETSc's matrix-free CG on the same system
# (bench/petsc/poisson_cg.c, shared with bench/petsc/run.sh),
# 2 ranks, Open MPI over TCP in a private network namespace whose loopback
# packets are each held DELAY microseconds (bench/netem/with-delay.sh).
#
#   bench/netem/run.sh                 # delays 0 50 100 200 us, n = 64
#   DELAYS="0 200" REPS=7 N=64 RANKS_RT=0 bench/netem/run.sh
#   OURS_ARGS=--single-reduction bench/netem/run.sh   # Chronopoulos-Gear CG
#
# Builds what it needs (the delay program, bench/netem's C programs, the
# release example), then, at each delay, in one namespace: the MPI
# ping-pong and per-call latencies (mpi_lat) and one run of each CG; REPS
# rounds over all delays. Prints a table of the least times over the rounds
# (the machine is shared: the least time is the one least disturbed by
# other work) and the network round trips per iteration fitted from the
# slope of time per iteration against the measured ping-pong round trip
# (least squares over the delays); then mpi_lat's per-call latencies at the
# smallest and largest delay; then (PROFILE=0 skips it)
# bench/netem/profile.sh at the largest delay: MPI calls and time per CG
# iteration, per MPI function. Everything stays in the namespace (loopback
# only); needs root. Raw outputs go to target/netem/logs/.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
here=$root/bench/netem
out=$root/target/netem
logs=$out/logs
DELAYS=${DELAYS:-"0 50 100 200"}
REPS=${REPS:-5}
N=${N:-64}
LAT_REPS=${LAT_REPS:-100}
# The ranks run SCHED_FIFO at this priority (the delay process at 50, above
# them), so that work elsewhere on the shared machine cannot come between a
# packet's arrival and the rank that polls for it: Open MPI's TCP transport
# busy-polls and yields, and at normal priority on a loaded 2-core machine
# every yield costs milliseconds. Each launch is bounded by a timeout, and
# the kernel keeps 5 % of the CPU for other work (sched_rt_runtime_us).
# RANKS_RT=0 runs the ranks at normal priority.
RANKS_RT=${RANKS_RT:-10}
# PETSc solves per launch (bench/petsc/poisson_cg.c reports their median).
PETSC_SOLVES=${PETSC_SOLVES:-3}

[[ $(id -u) == 0 ]] || { echo "$0: needs root (network namespace, iptables)" >&2; exit 2; }

# --- build ---------------------------------------------------------------
need=()
[[ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ]] || need+=(libnetfilter-queue-dev)
command -v iptables >/dev/null || need+=(iptables)
pkg-config --exists PETSc 2>/dev/null || need+=(petsc-dev)
command -v mpicc >/dev/null || need+=(libopenmpi-dev openmpi-bin)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
mkdir -p "$out" "$logs"
cc -O2 -Wall -o "$out/delay" "$here/delay.c" -lnetfilter_queue -lnfnetlink
mpicc -O2 -Wall -o "$out/mpi_lat" "$here/mpi_lat.c"
# shellcheck disable=SC2046
mpicc -O3 -o "$out/petsc_cg" "$root/bench/petsc/poisson_cg.c" $(pkg-config --cflags --libs PETSc) -lm
cargo build --release -q -p distarray-mpi --example mpi_poisson_cg
ours=$root/target/release/examples/mpi_poisson_cg

# --- measure -------------------------------------------------------------
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# TCP only, on the namespace's loopback; osc/pt2pt is Open MPI 4.1's only
# one-sided component that works over TCP.
rt=
if [[ "$RANKS_RT" != 0 ]] && chrt -f "$RANKS_RT" true 2>/dev/null; then
    rt="chrt -f $RANKS_RT"
fi
mpirun_tcp="timeout 120 $rt mpirun --oversubscribe -n 2 --mca btl self,tcp \
--mca btl_tcp_if_include lo --mca oob_tcp_if_include lo --mca osc pt2pt"
# extra options of the example, e.g. OURS_ARGS=--single-reduction
OURS_ARGS=${OURS_ARGS:-}
export mpirun_tcp ours out N REPS LAT_REPS PETSC_SOLVES OURS_ARGS

# Repetitions outermost, so that load from elsewhere on the machine falls on
# every delay alike.
rm -f "$logs"/delay-*.log
for r in $(seq "$REPS"); do
    for d in $DELAYS; do
        echo "round $r of $REPS, delay $d us ..." >&2
        "$here/with-delay.sh" "$d" bash -c '
            set -e
            $mpirun_tcp "$out/mpi_lat" "$LAT_REPS"
            echo "## ours"
            $mpirun_tcp "$ours" --n "$N" --no-baseline $OURS_ARGS
            echo "## petsc"
            $mpirun_tcp "$out/petsc_cg" -n "$N" -reps "$PETSC_SOLVES"
        ' >"$logs/run.log" 2>&1 || {
            echo "$0: the run at delay $d us failed; its output:" >&2
            cat "$logs/run.log" >&2
            if grep -q mpi-thread-multiple-not-supported "$logs/run.log"; then
                echo "$0: osc/pt2pt (the only one-sided component over TCP) refuses" \
                    "MPI_THREAD_MULTIPLE: the example must initialise MPI with" \
                    "Threading::Serialized (MpiComm::init does from the mpi branch on)" >&2
            fi
            exit 1
        }
        cat "$logs/run.log" >>"$logs/delay-$d.log"
    done
done

# --- report --------------------------------------------------------------
python3 - "$logs" "$N" "$REPS" $DELAYS <<'EOF'
import re, statistics, sys

logs, n, reps = sys.argv[1], sys.argv[2], sys.argv[3]
delays = [int(d) for d in sys.argv[4:]]
rows = []
lat = {}
for d in delays:
    text = open(f"{logs}/delay-{d}.log").read()
    calls = {}
    for m in re.finditer(r"^(\S.*?)\s+mean\s+([\d.]+) us\s+median\s+([\d.]+) us", text, re.M):
        mean, med = float(m.group(2)), float(m.group(3))
        old = calls.get(m.group(1).strip(), (mean, med))
        calls[m.group(1).strip()] = (min(old[0], mean), min(old[1], med))
    lat[d] = calls
    rt = calls["ping-pong (round trip)"][1]  # least median round trip, us
    times = {"ours": [], "petsc": []}
    iters = {"ours": set(), "petsc": set()}
    who = None
    for line in text.splitlines():
        if line.startswith("## "):
            who = line[3:].strip()
        m = (re.search(r"CG: (\d+) iterations.*\(([\d.]+) ms/iteration\)", line)
             or re.search(r"^petsc_cg .*iterations=(\d+) .*ms_per_iteration=([\d.]+)", line))
        if m and who:
            iters[who].add(int(m.group(1)))
            times[who].append(float(m.group(2)))
    for k in times:
        if not times[k]:
            sys.exit(f"no CG timing for {k} at delay {d} (see {logs}/delay-{d}.log)")
    rows.append((d, rt, min(times["ours"]), min(times["petsc"]), iters))

def slope(xs, ys):
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else float("nan")

its = lambda k: ", ".join(str(i) for i in sorted(set().union(*(r[4][k] for r in rows))))
print(f"CG on a {n} x {n} grid, 2 ranks: {its('ours')} iterations (ours), "
      f"{its('petsc')} (PETSc); least time of {reps} runs at each delay")
print()
print("| delay | ping-pong RT | ours s/iter | PETSc s/iter | ours / PETSc |"
      " ours RT/iter vs 0 | PETSc RT/iter vs 0 |")
print("|---|---|---|---|---|---|---|")
d0 = rows[0]
for d, rt, o, p, _ in rows:
    if d == d0[0]:
        inc_o = inc_p = "-"
    else:
        inc_o = f"{(o - d0[2]) * 1e3 / (rt - d0[1]):.2f}"
        inc_p = f"{(p - d0[3]) * 1e3 / (rt - d0[1]):.2f}"
    print(f"| {d} us | {rt:.1f} us | {o * 1e-3:.3e} | {p * 1e-3:.3e} | {o / p:.2f}x |"
          f" {inc_o} | {inc_p} |")
if len(rows) >= 2:
    xs = [r[1] for r in rows]
    cal = slope([r[0] for r in rows], xs)
    print()
    print(f"calibration: the ping-pong round trip grows by {cal:.2f} us per us of delay "
          f"(2 packets per round trip, plus the delay process's wake-up lateness)")
    if not 1.8 <= cal <= 3.0:
        sys.exit(f"the delay is not acting as expected (slope {cal:.2f}, expected about 2): "
                 f"see {logs}/")
    so = slope(xs, [r[2] * 1e3 for r in rows])
    sp = slope(xs, [r[3] * 1e3 for r in rows])
    print()
    print(f"fitted network round trips per iteration (slope of s/iter against the "
          f"ping-pong round trip): ours {so:.2f}, PETSc {sp:.2f}")
print()
for d in (delays[0], delays[-1]) if len(delays) > 1 else delays[:1]:
    print(f"per-call latencies at delay {d} us (2 ranks; least over the runs of: the mean of "
          f"back-to-back calls / the median single call):")
    for name, (mean, med) in lat[d].items():
        print(f"  {name:26s} {mean:9.1f} us  {med:9.1f} us")
EOF

# --- where the round trips go (PMPI profile at the largest delay) ---------
if [[ "${PROFILE:-1}" == 1 ]]; then
    echo
    DELAY=${DELAYS##* } N=$N RANKS_RT=$RANKS_RT "$here/profile.sh"
fi
