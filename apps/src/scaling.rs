//! The scaling driver, generic over the backend: measures the per-call
//! costs the scaling model of BENCHMARKS.md is built from, and the
//! column-split matvec of the reproducible plan against the accumulate-based
//! product it replaced, all in one run:
//!
//! * `reduce_new`: one `dot` (one allreduce carrying the vote);
//! * `reduce_old`: the reduction of the allgather design (a vote as an
//!   allgather of one flag, then an allgather of the value, combined
//!   locally), written with the same public calls as before;
//! * `barrier`, `get8` (lock + 8-byte get + unlock on the next rank),
//!   `get1m` (1 MiB get, for the bandwidth);
//! * `mv_accumulate`: `y = A x` with `A` split by columns as the old
//!   `matvec` did it (zero y, fetch x, local gemv, one `accumulate(Sum)`
//!   per owner of the rows, in arrival order);
//! * `mv_plan`: the same product with a [`MatvecPlan`] made once
//!   (staging slots, rank-ordered sums); `mv_wrapper`: `linalg::matvec`
//!   (a plan per call).
//!
//! Rank 0 prints medians and the number of distinct bit patterns of `y`
//! each matvec variant produced over its repetitions.

use std::collections::HashSet;
use std::time::Instant;

use distarray::epoch::vote;
use distarray::linalg::{dot, gemv_local, matvec, MatvecPlan};
use distarray::{AccumulateOp, Block, DistArray, LockKind, OneSidedComm};

/// Options of the scaling driver.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Matrix size N (N x N) of the matvec part.
    pub n: usize,
    /// Repetitions of each matvec variant.
    pub reps: usize,
    /// Repetitions of each latency measurement.
    pub iters: usize,
    /// Ranks (threaded backend only).
    pub ranks: usize,
}

impl Opts {
    /// Parses `--n N --reps R --iters I --ranks P` (all optional).
    pub fn from_args() -> Opts {
        let mut o = Opts {
            n: 2000,
            reps: 20,
            iters: 2000,
            ranks: 2,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i + 1 < args.len() {
            let v: usize = args[i + 1].parse().unwrap_or_else(|_| {
                eprintln!("bad value {:?} for {}", args[i + 1], args[i]);
                std::process::exit(2)
            });
            match args[i].as_str() {
                "--n" => o.n = v,
                "--reps" => o.reps = v,
                "--iters" => o.iters = v,
                "--ranks" => o.ranks = v,
                other => {
                    eprintln!("unknown option {other}");
                    std::process::exit(2)
                }
            }
            i += 2;
        }
        o
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `f` over `n` calls, each preceded by a barrier;
/// the median of every rank's median is rank 0's figure (reduced with the
/// new allreduce, outside the timing).
fn time<C: OneSidedComm>(comm: &C, n: usize, mut f: impl FnMut()) -> f64 {
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        comm.barrier().expect("barrier");
        let s = Instant::now();
        f();
        t.push(s.elapsed().as_secs_f64());
    }
    let mine = median(t);
    distarray::collective::allreduce_vote(comm, Ok(mine), f64::max).expect("max")
}

/// The reduction of the allgather design: a vote (allgather of one flag),
/// then an allgather of the partial sums, added in rank order.
fn old_dot<C: OneSidedComm>(x: &DistArray<f64, C, 1>) -> f64 {
    let comm = x.comm();
    let local = x
        .with_local(|l| l.as_slice().iter().map(|v| v * v).sum::<f64>())
        .expect("local");
    let flags = comm.allgather(&[1u8]).expect("vote");
    assert!(flags.iter().all(|f| f[0] == 1));
    comm.allgather(&[local])
        .expect("allgather")
        .into_iter()
        .map(|v| v[0])
        .sum()
}

/// `y = A x` as the accumulate-based `matvec` did it.
fn accumulate_matvec<C: OneSidedComm>(
    a: &DistArray<f64, C, 2>,
    x: &DistArray<f64, C, 1>,
    y: &mut DistArray<f64, C, 1>,
    xs: &mut [f64],
    part: &mut [f64],
) -> distarray::Result<()> {
    let comm = a.comm();
    let [rows, cols] = a.local_indices(comm.rank())?;
    a.barrier()?;
    let local = y
        .with_local_mut(|mut l| l.as_mut_slice().fill(0.0))
        .and_then(|_| {
            x.get_block_into(&Block::new([cols.clone()]), xs)?;
            a.with_local(|la| gemv_local(la.as_slice(), rows.len(), cols.len(), xs, part))
        });
    vote(comm, local)?;
    let added = if rows.is_empty() {
        Ok(())
    } else {
        y.put_block_from(&Block::new([rows]), part, AccumulateOp::Sum)
    };
    vote(comm, added)
}

/// Runs every measurement; rank 0 prints the figures.
pub fn run<C: OneSidedComm>(comm: C, o: &Opts) -> distarray::Result<()> {
    let (me, p) = (comm.rank(), comm.size());
    let say = |s: String| {
        if me == 0 {
            println!("{s}");
        }
    };
    say(format!(
        "scaling: backend {}, P = {p}, N = {}, reps {}, iters {}",
        comm.backend_name(),
        o.n,
        o.reps,
        o.iters
    ));

    // per-call latencies
    let v = DistArray::<f64, C, 1>::from_fn(comm.clone(), [64 * p], |[i]| i as f64 * 0.5)?;
    let new = time(&comm, o.iters, || {
        std::hint::black_box(dot(&v, &v).expect("dot"));
    });
    let old = time(&comm, o.iters, || {
        std::hint::black_box(old_dot(&v));
    });
    let bar = time(&comm, o.iters, || comm.barrier().expect("barrier"));
    let next = (me + 1) % p;
    let w = DistArray::<f64, C, 1>::new(comm.clone(), [(1 << 17) * p])?;
    let mut one = [0.0];
    let get8 = time(&comm, o.iters, || {
        w.window()
            .get_locked(next, LockKind::Shared, 0, &mut one)
            .expect("get");
    });
    let mut big = vec![0.0; 1 << 17];
    let get1m = time(&comm, (o.iters / 20).max(5), || {
        w.with_epoch(next, LockKind::Shared, |win| win.get(next, 0, &mut big))
            .expect("get");
    });
    say(format!(
        "reduce_new {:.2} us | reduce_old {:.2} us (ratio old/new {:.2}) | barrier {:.2} us | \
         get8 {:.2} us | get1m {:.1} us ({:.2} GB/s)",
        new * 1e6,
        old * 1e6,
        old / new,
        bar * 1e6,
        get8 * 1e6,
        get1m * 1e6,
        (8 << 17) as f64 / get1m / 1e9
    ));

    // column-split matvec: accumulate-based vs plan vs wrapper
    let n = o.n;
    let a = DistArray::<f64, C, 2>::with_grid(comm.clone(), [1, p], [n, n])?;
    a.with_local_mut(|mut l| {
        l.fill_with(|[i, j]| ((i * 7 + j * 3) % 11) as f64 * 0.1 - 0.5 + 1e-9 * j as f64)
    })?;
    let x = DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], |[j]| 1.0 / (j + 1) as f64)?;
    let mut y = DistArray::<f64, C, 1>::new(comm.clone(), [n])?;
    let [rows, cols] = a.local_indices(me)?;
    let (mut xs, mut part) = (vec![0.0; cols.len()], vec![0.0; rows.len()]);
    let mut plan = MatvecPlan::new(&a, &x, &y)?;
    type Variant = (&'static str, Vec<f64>, HashSet<Vec<u64>>);
    let mut variants: Vec<Variant> = vec![
        ("mv_accumulate", vec![], HashSet::new()),
        ("mv_plan", vec![], HashSet::new()),
        ("mv_wrapper", vec![], HashSet::new()),
    ];
    for _ in 0..o.reps {
        // alternate the variants so that machine noise hits all alike
        for (k, (_, times, patterns)) in variants.iter_mut().enumerate() {
            comm.barrier()?;
            let s = Instant::now();
            match k {
                0 => accumulate_matvec(&a, &x, &mut y, &mut xs, &mut part)?,
                1 => plan.apply(&a, &x, &mut y)?,
                _ => matvec(&a, &x, &mut y)?,
            }
            times.push(s.elapsed().as_secs_f64());
            let bits: Vec<u64> = y.to_vec()?.iter().map(|v| v.to_bits()).collect();
            patterns.insert(bits);
        }
    }
    let mut medians = Vec::new();
    for (_, times, _) in &variants {
        let t = median(times.clone());
        medians.push(distarray::collective::allreduce_vote(
            &comm,
            Ok(t),
            f64::max,
        )?);
    }
    let base = medians[0];
    for ((name, _, patterns), &t) in variants.iter().zip(&medians) {
        say(format!(
            "{name}: {:.3} ms (ratio to mv_accumulate {:.2}), {} distinct bit pattern(s) of y \
             in {} runs",
            t * 1e3,
            t / base,
            patterns.len(),
            o.reps
        ));
    }
    Ok(())
}
