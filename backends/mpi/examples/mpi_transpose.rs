//! The PRK transpose kernel on the MPI backend with the idiomatic API, the
//! distarray side of `bench/transpose/run.sh` (the C side is
//! `bench/transpose/transpose.c`, a hand-written MPI transpose).
//!
//! `A` and `B` are `n x n` `f64`, both split by columns (a `1 x P` process
//! grid); each iteration is `B += Aᵀ; A += 1` in one call
//! ([`TransposePlan::transpose_add_map`]: one message per rank pair, no
//! vote, `A` read and updated in the same pass).
//! The first iteration is a warm-up and not timed, as in the PRK and the C
//! version; the result is checked exactly.
//!
//! ```text
//! MPICC=mpicc.openmpi cargo build --release -p distarray-mpi --example mpi_transpose
//! mpirun -n 2 target/release/examples/mpi_transpose --n 4000 --iters 10
//! ```
//!
//! Prints `distarray_transpose n=... ranks=... iterations=...
//! ms_per_iteration=...` (mean over the timed iterations, slowest rank),
//! then, with `--parts`, the times of the fused call, and of
//! `transpose_add` and `add_scalar` (the unfused form) apart, and with
//! `--count`, the operations one iteration costs per rank, counted by
//! [`CountingComm`] on a small array (they do not depend on `n`).

use std::time::Instant;

use distarray::collective::allreduce_vote;
use distarray::counting::CountingComm;
use distarray::{DistArray, Error, OneSidedComm, Result, TransposePlan};
use distarray_mpi::MpiComm;

struct Opts {
    n: usize,
    iters: usize,
    count: bool,
    parts: bool,
}

fn opts() -> Result<Opts> {
    let mut o = Opts {
        n: 1000,
        iters: 10,
        count: false,
        parts: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<usize> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::InvalidArgument(format!("{name} needs a number")))
        };
        match a.as_str() {
            "--n" => o.n = value("--n")?,
            "--iters" => o.iters = value("--iters")?,
            "--count" => o.count = true,
            "--parts" => o.parts = true,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown option {other} (--n N, --iters K, --count, --parts)"
                )))
            }
        }
    }
    Ok(o)
}

/// Runs `iters + 1` iterations of `B += Aᵀ; A += 1` on a `1 x P` grid and
/// returns the seconds of the last `iters` on this rank, and the sum of
/// |B - expected| over this rank's part.
fn prk<C: OneSidedComm>(comm: &C, n: usize, iters: usize, parts: bool) -> Result<(f64, f64)> {
    let p = comm.size();
    let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, p], [n, n])?;
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i * n + j) as f64))?;
    let mut b = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, p], [n, n])?;
    let mut plan = TransposePlan::new(&a, &b)?;
    let mut start = Instant::now();
    for it in 0..=iters {
        if it == 1 {
            comm.barrier()?;
            start = Instant::now();
        }
        plan.transpose_add_map(&a, &mut b, 1.0, |v| v + 1.0)?;
    }
    let secs = start.elapsed().as_secs_f64();
    if parts {
        // the two halves of an iteration timed apart (A and B change, so
        // the result is not checked)
        let half = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
            comm.barrier()?;
            let t = Instant::now();
            for _ in 0..iters {
                f()?;
            }
            Ok(1e3 * t.elapsed().as_secs_f64() / iters as f64)
        };
        let fused = half(&mut || plan.transpose_add_map(&a, &mut b, 1.0, |v| v + 1.0))?;
        let tr = half(&mut || plan.transpose_add(&a, &mut b, 1.0))?;
        let ad = half(&mut || a.add_scalar(1.0))?;
        println!(
            "rank {}: transpose_add_map {fused:.3} ms; unfused: transpose_add {tr:.3} ms, \
             add_scalar {ad:.3} ms per call",
            comm.rank()
        );
        return Ok((secs, 0.0));
    }
    // B[i, j] = sum_{k=0..iters} (A0[j, i] + k)
    let (k1, add) = ((iters + 1) as f64, (iters * (iters + 1)) as f64 / 2.0);
    let err = b.with_local(|l| {
        l.iter_global()
            .map(|([i, j], v)| (v - (k1 * (j * n + i) as f64 + add)).abs())
            .sum::<f64>()
    })?;
    Ok((secs, err))
}

fn main() -> Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let o = opts()?;
    let (me, p) = (comm.rank(), comm.size());
    let (secs, err) = prk(&comm, o.n, o.iters, o.parts)?;
    let [secs, err] = allreduce_vote(&comm, Ok([secs, err]), |a, b| [a[0].max(b[0]), a[1] + b[1]])?;
    if me == 0 {
        println!(
            "distarray_transpose n={} ranks={p} iterations={} ms_per_iteration={:.4} error={err}",
            o.n,
            o.iters,
            1e3 * secs / o.iters as f64
        );
    }
    if o.count {
        // one iteration on a counting communicator (a small array: the
        // counts do not depend on n)
        let cc = CountingComm::new(comm.clone());
        let m = 8 * p;
        let a = DistArray::<f64, _, 2>::with_grid(cc.clone(), [1, p], [m, m])?;
        let mut b = DistArray::<f64, _, 2>::with_grid(cc.clone(), [1, p], [m, m])?;
        let mut plan = TransposePlan::new(&a, &b)?;
        cc.barrier()?;
        cc.reset();
        plan.transpose_add_map(&a, &mut b, 1.0, |v| v + 1.0)?;
        let c = cc.counts();
        println!(
            "rank {me}: per iteration: {} messages ({} bytes) in {} neighbour exchange(s), \
             {} gets, {} puts, {} collectives ({} bytes), {} lock epochs (own part)",
            c.messages,
            c.bytes,
            c.exchanges,
            c.gets_total(),
            c.puts_total(),
            c.collectives,
            c.collective_bytes,
            c.locks_total()
        );
        drop((a, b));
    }
    if err != 0.0 {
        return Err(Error::InvalidArgument(format!("wrong result: error {err}")));
    }
    Ok(())
}
