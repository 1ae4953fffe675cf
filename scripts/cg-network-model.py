#!/usr/bin/env python3
"""Network round trips of one Poisson CG iteration for P = 2 ... 4096
(BENCHMARKS.md, "Emulated cluster"): a latency model fitted to what the
emulated cluster measured at P = 2, for the designs distarray went
through and for PETSc's CG.

    python3 scripts/cg-network-model.py [RT_US]

RT_US: one network round trip in microseconds (default 466.9, the
ping-pong round trip at 200 us per packet). Per step of a collective or
per message the model charges half a round trip (one one-way latency),
which is what 2 ranks measured: an allreduce or barrier 0.50 RT, a
neighbour exchange of messages 0.45-0.49 RT, a passive-target epoch with
one get 2.0 RT over osc/pt2pt. On P ranks a recursive-doubling allreduce
or barrier takes ceil(log2 P) steps; a neighbour exchange stays one step
(messages to the 2-4 neighbours of a tile go out at once); a lock epoch
stays 2 RT per neighbour, the epochs to different neighbours in sequence.
Compute and bandwidth are left out (a 64 x 64 grid: both are small next
to a round trip of hundreds of microseconds). Beyond P = 2 every figure
is a model, not a measurement.
"""
import math
import sys

rt = float(sys.argv[1]) if len(sys.argv) > 1 else 466.9


def lg(p):
    return max(1, math.ceil(math.log2(p)))


def designs(p, neighbours):
    half = 0.5
    coll = lg(p) * half  # one allreduce / barrier, in RT
    return {
        # 4 allgathers (2 MPI collectives each) + barrier + one get epoch per neighbour
        "allgather design": 8 * coll + coll + 2.0 * neighbours,
        # 2 allreduces + barrier + one get epoch per neighbour
        "one allreduce per reduction": 2 * coll + coll + 2.0 * neighbours,
        # 2 allreduces + one neighbour exchange (this session)
        "neighbour exchange (now)": 2 * coll + half,
        # 3 allreduces + one neighbour exchange
        "PETSc KSPCG": 3 * coll + half,
    }


rows = []
print(f"round trips per CG iteration (RT = {rt:.1f} us); ms per iteration in brackets")
names = list(designs(2, 1))
print("| P | neighbours | " + " | ".join(names) + " | now / PETSc |")
print("|---:|---:|" + "---:|" * len(names) + "---:|")
for p in [2, 16, 64, 256, 1024, 4096]:
    nb = 1 if p == 2 else 4  # row bands on 2 ranks, 2-D tiles beyond
    d = designs(p, nb)
    cells = " | ".join(f"{v:.1f} ({v * rt / 1000:.2f})" for v in d.values())
    print(f"| {p} | {nb} | {cells} | {d['neighbour exchange (now)'] / d['PETSc KSPCG']:.2f} |")
