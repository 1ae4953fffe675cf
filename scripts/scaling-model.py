#!/usr/bin/env python3
"""Scaling model of one CG iteration's collectives (BENCHMARKS.md, "Scaling
model"): the allreduce design of issue 13 against the allgather design it
replaced, for P = 16 ... 4096, from per-step latencies and a bandwidth.

    python3 scripts/scaling-model.py ALPHA_AR_US ALPHA_BAR_US ALPHA_AG_US GBPS

ALPHA_*: one step (one message latency) of an allreduce, a barrier and an
allgather, in microseconds (measured at P = 2, where each is one step);
GBPS: bandwidth per rank in GB/s. Beyond P = 2 every figure is a model.
"""
import math
import sys

a_ar, a_bar, a_ag, gbps = (float(v) for v in sys.argv[1:5])
beta = 1e-3 / gbps  # microseconds per byte


def lg(p):
    return math.ceil(math.log2(p))


def old(p, ring):
    """barrier + 2 dots, each a vote and a value, each an allgather made of
    MPI_Allgather of the byte counts (log P steps) and MPI_Allgatherv of
    the bytes: log P steps (Bruck) or P - 1 steps (ring / neighbour
    exchange, `ring`); P * s bytes in either way."""
    bar = lg(p) * a_bar
    v_steps = (p - 1) if ring else lg(p)
    def allgather(s):
        return lg(p) * a_ag + 4 * p * beta + v_steps * a_ag + s * p * beta
    per_dot = allgather(1) + allgather(8)
    msgs = 2 * 2 * (lg(p) + v_steps)
    bytes_in = 2 * (2 * 4 * p + 9 * p)
    return bar + 2 * per_dot, msgs, bytes_in


def new(p, tree):
    """barrier + 2 dots, each one allreduce of 16 bytes (8 vote + 8 value):
    MPI's recursive doubling (log P steps) or the binomial reduce +
    broadcast of the threaded / Lamellar backends (2 log P steps)."""
    steps = (2 if tree else 1) * lg(p)
    bar = lg(p) * a_bar
    ar = steps * (a_ar + 16 * beta)
    return bar + 2 * ar, 2 * steps, 2 * steps * 16


print("| P | allgather design, log-step allgatherv: µs / msgs / bytes | same, ring allgatherv: µs / msgs | "
      "allreduce (MPI): µs / msgs / bytes | allreduce (tree backends): µs / msgs / bytes | "
      "old / new (MPI) |")
print("|---:|---:|---:|---:|---:|---:|")
for p in [2, 16, 64, 256, 1024, 4096]:
    o, om, ob = old(p, False)
    r, rm, _ = old(p, True)
    n, nm, nb = new(p, False)
    t, tm, tb = new(p, True)
    print(f"| {p} | {o:.1f} / {om} / {ob} | {r:.1f} / {rm} | {n:.1f} / {nm} / {nb} | "
          f"{t:.1f} / {tm} / {tb} | {o / n:.1f} – {r / n:.1f} |")
