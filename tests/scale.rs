//! Per-rank communication costs at P = 64 and 256 (threads, tiny arrays),
//! counted with `CountingComm` and the threaded backend's traffic counters:
//! reductions are one collective of a fixed size whatever P and cost
//! O(log P) messages per rank; a CG iteration costs at most 3 collectives
//! (the Poisson example's, 2); a ghost sync, a halo update and a planned
//! matvec cost O(neighbours) messages, the halo update no collective.

use distarray::collective::allreduce_vote;
use distarray::counting::{CountingComm, Counts};
use distarray::linalg::{axpby, dot, norm2, MatvecPlan};
use distarray::threaded::{self, ThreadedComm};
use distarray::{DistArray, GhostedBlock, Halo, OneSidedComm, Result};
use distarray_apps::poisson as poisson_app;
use rstest::rstest;

fn ceil_log2(p: usize) -> usize {
    p.next_power_of_two().trailing_zeros() as usize
}

/// Runs `f` on P threads, each with a `CountingComm`, and unwraps.
fn run<R: Send>(p: usize, f: impl Fn(CountingComm<ThreadedComm>) -> Result<R> + Sync) -> Vec<R> {
    threaded::run(p, |comm| f(CountingComm::new(comm)))
        .unwrap()
        .into_iter()
        .collect::<Result<Vec<_>>>()
        .unwrap()
}

/// The counts of `f` alone (counters reset before it).
fn counted<R>(
    comm: &CountingComm<ThreadedComm>,
    f: impl FnOnce() -> Result<R>,
) -> Result<(R, Counts)> {
    comm.reset();
    let r = f()?;
    Ok((r, comm.counts()))
}

#[rstest]
fn reductions_are_one_collective_of_fixed_size(#[values(64, 256)] p: usize) {
    let out = run(p, |comm| {
        let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [3 * p], |[i]| i as f64)?;
        let before = comm.inner().traffic();
        let mut per_op = Vec::new();
        let (d, c) = counted(&comm, || dot(&x, &x))?;
        per_op.push(c);
        let (s, c) = counted(&comm, || x.sum())?;
        per_op.push(c);
        let (_, c) = counted(&comm, || norm2(&x))?;
        per_op.push(c);
        let (_, c) = counted(&comm, || {
            allreduce_vote(&comm, Ok(comm.rank() as u64), |a, b| a.min(b))
        })?;
        per_op.push(c);
        let after = comm.inner().traffic();
        let n = (3 * p) as f64;
        assert_eq!(s, n * (n - 1.0) / 2.0);
        assert_eq!(d, (0..3 * p).map(|i| (i * i) as f64).sum::<f64>());
        Ok((
            per_op,
            after.messages - before.messages,
            after.bytes - before.bytes,
        ))
    });
    let mut total_messages = 0;
    for (per_op, messages, bytes) in &out {
        for c in per_op {
            assert_eq!(c.collectives, 1, "one collective per reduction: {c:?}");
            assert_eq!(c.allgathers, 0);
            // 8 bytes of vote + 8 of value, at P = 64 as at P = 256
            assert_eq!(c.collective_bytes, 16);
        }
        // 4 allreduces: at most one message up and ceil(log2 P) down each
        assert!(*messages <= 4 * (1 + ceil_log2(p)), "{messages} messages");
        assert_eq!(*bytes, messages * 16);
        total_messages += messages;
    }
    // a binomial tree sends 2 (P - 1) messages per allreduce in all
    assert_eq!(total_messages, 4 * 2 * (p - 1));
}

/// Exact reductions: a vote of the ordered path's size (`8 + 8` bytes: the
/// collective in which ranks whose modes differ meet the ordered path and
/// refuse), then the exact allreduce (`8 + 280` bytes per exact sum: two
/// for `dot` and `sum`, three for `norm2`), whatever P.
#[rstest]
fn exact_reductions_cost_a_vote_and_one_allreduce(#[values(64)] p: usize) {
    let out = run(p, |comm| {
        let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [3 * p], |[i]| i as f64)?
            .with_summation(distarray::Summation::Exact);
        let (_, d) = counted(&comm, || dot(&x, &x))?;
        let (_, s) = counted(&comm, || x.sum())?;
        let (_, n) = counted(&comm, || norm2(&x))?;
        Ok([(d, 2), (s, 2), (n, 3)])
    });
    for per_op in &out {
        for (c, sums) in per_op {
            assert_eq!(c.collectives, 2, "{c:?}");
            assert_eq!(c.allgathers, 0);
            assert_eq!(c.collective_bytes, 16 + 8 + 280 * sums, "{c:?}");
        }
    }
}

/// Matrix-free CG on the 1-D Laplacian (the Poisson example's pattern):
/// per iteration a barrier before the ghost exchange, two dot products.
#[rstest]
fn cg_iteration_costs_at_most_three_collectives(#[values(64, 256)] p: usize) {
    let n = 4 * p;
    let out = run(p, |comm| {
        let mut x = DistArray::<f64, _, 1>::new(comm.clone(), [n])?;
        let mut r =
            DistArray::<f64, _, 1>::from_fn(comm.clone(), [n], |[i]| ((i % 7) as f64) - 3.0)?;
        let mut pv =
            DistArray::<f64, _, 1>::from_fn(comm.clone(), [n], |[i]| ((i % 7) as f64) - 3.0)?;
        let q = DistArray::<f64, _, 1>::new(comm.clone(), [n])?;
        let range = pv.local_indices(comm.rank())?[0].clone();
        let mut ghosts = GhostedBlock::new(&pv);
        if range.start > 0 {
            ghosts.push([range.start - 1])?;
        }
        if range.end < n {
            ghosts.push([range.end])?;
        }
        let mut rr = dot(&r, &r)?;
        let rr0 = rr;
        let mut per_iter = Vec::new();
        for _ in 0..8 {
            let (_, c) = counted(&comm, || {
                // q = A p
                pv.barrier()?;
                // the interior rows while the two ghost values are in flight
                ghosts.sync_overlapped(&pv, || {
                    pv.with_local(|lp| {
                        q.with_local_mut(|mut lq| {
                            let (p_, q_) = (lp.as_slice(), lq.as_mut_slice());
                            for k in 1..p_.len().saturating_sub(1) {
                                q_[k] = 2.0 * p_[k] - p_[k - 1] - p_[k + 1];
                            }
                        })
                    })
                })???;
                let g = |i: usize| ghosts.get_global([i]);
                let (lo, hi) = (range.start, range.end);
                let left = if lo > 0 { g(lo - 1)? } else { 0.0 };
                let right = if hi < n { g(hi)? } else { 0.0 };
                // then the boundary rows
                pv.with_local(|lp| {
                    q.with_local_mut(|mut lq| {
                        let (p_, q_) = (lp.as_slice(), lq.as_mut_slice());
                        let last = p_.len() - 1;
                        for k in [0, last] {
                            let l = if k == 0 { left } else { p_[k - 1] };
                            let r = if k == last { right } else { p_[k + 1] };
                            q_[k] = 2.0 * p_[k] - l - r;
                        }
                    })
                })??;
                let alpha = rr / dot(&pv, &q)?;
                axpby(alpha, &pv, 1.0, &mut x)?;
                axpby(-alpha, &q, 1.0, &mut r)?;
                let rr_new = dot(&r, &r)?;
                axpby(1.0, &r, rr_new / rr, &mut pv)?;
                rr = rr_new;
                Ok(())
            })?;
            per_iter.push(c);
        }
        Ok((per_iter, rr / rr0))
    });
    for (per_iter, reduction) in &out {
        assert!(*reduction < 1.0, "CG made progress");
        for c in per_iter {
            assert!(
                c.collectives <= 3,
                "{} collectives per iteration",
                c.collectives
            );
            assert_eq!(c.allgathers, 0);
            // the ghost exchange: one get per neighbour
            assert!(c.messages <= 2, "{} messages per ghost sync", c.messages);
        }
    }
}

/// A planned matvec on a √P x √P grid: gets from the owners of x that its
/// column block needs and puts to the owners of y its rows reach —
/// O(√P) messages per rank, not O(P) — and 3 collectives.
#[rstest]
fn planned_matvec_costs_neighbour_messages(#[values(64, 256)] p: usize) {
    let side = (p as f64).sqrt() as usize;
    assert_eq!(side * side, p);
    let n = 2 * p;
    let out = run(p, |comm| {
        let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [side, side], [n, n])?;
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i + 2 * j) as f64))?;
        let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [n], |_| 1.0)?;
        let mut y = DistArray::<f64, _, 1>::new(comm.clone(), [n])?;
        let mut plan = MatvecPlan::new(&a, &x, &y)?;
        let expected = plan.messages_per_apply();
        let (_, c) = counted(&comm, || plan.apply(&a, &x, &mut y))?;
        let (_, c2) = counted(&comm, || plan.apply(&a, &x, &mut y))?;
        let got = y.to_vec()?;
        let want: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| (i + 2 * j) as f64).sum())
            .collect();
        Ok((c, c2, expected, got == want))
    });
    for (c, c2, expected, right) in &out {
        assert!(right, "wrong product");
        assert_eq!(c, c2, "the same counts every time");
        assert_eq!(c.messages, *expected);
        // x: the √P owners of the column block; y: the owners of the rows
        assert!(c.messages <= 2 * (side + 1), "{} messages", c.messages);
        assert_eq!(c.collectives, 3);
        assert_eq!(c.allgathers, 0);
        assert_eq!(
            c.accumulates_total(),
            0,
            "puts into staging, no accumulates"
        );
    }
}

/// The Poisson example's CG (the measurement): two collectives per
/// iteration (the two reductions; no barrier before the ghost update) —
/// one with `--single-reduction` — none of them an allgather, and one
/// neighbour exchange of at most 4 messages per rank (a tile's faces) —
/// measured as the difference between two runs with different tolerances.
#[rstest]
fn poisson_example_costs_two_collectives_per_iteration(
    #[values(4, 16)] p: usize,
    #[values(false, true)] single_reduction: bool,
) {
    let counts = |tol: f64| {
        let out = threaded::run(p, |comm| {
            let comm = CountingComm::new(comm);
            let o = poisson_app::Opts {
                n: 32,
                tol,
                ranks: p,
                compare: false,
                baseline: false,
                overlap: true,
                single_reduction,
                exact: false,
            };
            let (iters, _, _) = poisson_app::run(comm.clone(), &o)?;
            Ok::<_, distarray::Error>((iters, comm.counts()))
        })
        .unwrap();
        out.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>()
    };
    let (short, long) = (counts(1e-2), counts(1e-10));
    for ((k1, c1), (k2, c2)) in short.iter().zip(&long) {
        assert!(k2 > k1, "the tighter tolerance takes more iterations");
        let iters = (k2 - k1) as f64;
        let per_iter = (c2.collectives - c1.collectives) as f64 / iters;
        // Chronopoulos-Gear CG: its two sums in one allreduce
        let want = if single_reduction { 1.0 } else { 2.0 };
        assert_eq!(per_iter, want, "collectives per CG iteration");
        assert_eq!(c2.allgathers, c1.allgathers, "no allgather per iteration");
        let exchanges = (c2.exchanges - c1.exchanges) as f64 / iters;
        assert_eq!(exchanges, 1.0, "ghost updates per CG iteration");
        let messages = (c2.messages - c1.messages) as f64 / iters;
        assert!(messages <= 4.0, "{messages} messages per CG iteration");
    }
}

/// A planned matvec with A split by columns only (every rank contributes to
/// every row) and a short y: one allreduce of the partial vectors, so
/// O(log P) messages per rank instead of one put per owner (P − 1).
#[rstest]
fn column_split_matvec_costs_log_p_messages(#[values(64, 256)] p: usize) {
    let n = 2 * p;
    let m = 16;
    let out = run(p, |comm| {
        let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, p], [m, n])?;
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i + 2 * j) as f64))?;
        let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [n], |_| 1.0)?;
        let mut y = DistArray::<f64, _, 1>::new(comm.clone(), [m])?;
        let mut plan = MatvecPlan::new(&a, &x, &y)?;
        let before = comm.inner().traffic();
        let (_, c) = counted(&comm, || plan.apply(&a, &x, &mut y))?;
        let after = comm.inner().traffic();
        let got = y.to_vec()?;
        let want: Vec<f64> = (0..m)
            .map(|i| (0..n).map(|j| (i + 2 * j) as f64).sum())
            .collect();
        Ok((
            plan.reduction(),
            c,
            after.messages - before.messages,
            got == want,
        ))
    });
    for (reduction, c, tree_messages, right) in &out {
        assert!(right, "wrong product");
        assert_eq!(*reduction, distarray::linalg::Reduction::Tree);
        assert_eq!(c.collectives, 3);
        assert_eq!(c.messages, 0, "x is local, no staging puts");
        // 3 allreduces (two votes and the partial vectors)
        assert!(
            *tree_messages <= 3 * (1 + ceil_log2(p)),
            "{tree_messages} messages"
        );
    }
}

/// The same column split with a long `y` (too long for one allreduce):
/// a reduce-scatter by recursive halving — ⌈log2 P⌉ neighbour exchanges,
/// at most 2 messages each per rank, about `y`'s length in bytes per rank,
/// where one put per owner would cost P − 1 messages.
#[rstest]
fn long_column_split_matvec_costs_log_p_messages(#[values(64, 256)] p: usize) {
    let n = 2 * p;
    let m = 8 * p; // 8 m bytes > TREE_BYTES
    let out = run(p, |comm| {
        let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, p], [m, n])?;
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i + 2 * j) as f64))?;
        let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [n], |_| 1.0)?;
        let mut y = DistArray::<f64, _, 1>::new(comm.clone(), [m])?;
        let mut plan = MatvecPlan::new(&a, &x, &y)?;
        let (_, c) = counted(&comm, || plan.apply(&a, &x, &mut y))?;
        let first = y.to_vec()?;
        plan.apply(&a, &x, &mut y)?;
        let again = y.to_vec()?;
        let want: Vec<f64> = (0..m)
            .map(|i| (0..n).map(|j| (i + 2 * j) as f64).sum())
            .collect();
        Ok((plan.reduction(), c, first == want, first == again))
    });
    for (reduction, c, right, same) in &out {
        assert!(right, "wrong product");
        assert!(same, "the same bits every time");
        assert_eq!(*reduction, distarray::linalg::Reduction::Halving);
        assert_eq!(c.collectives, 3, "{c:?}");
        assert_eq!(c.exchanges, ceil_log2(p));
        assert!(c.messages <= 2 * ceil_log2(p), "{} messages", c.messages);
        // m/2 + m/4 + ... values of 8 bytes
        assert!(c.bytes <= 8 * m, "{} bytes", c.bytes);
    }
}

/// Without neighbour messages (as on Lamellar), the long column split
/// takes one allreduce of the partial vectors instead: still O(log P) tree
/// messages per rank, not one put per owner.
#[rstest]
fn long_column_split_without_messages_is_one_allreduce(#[values(64, 256)] p: usize) {
    let n = 2 * p;
    let m = 8 * p;
    let out = threaded::run(p, |comm| {
        let cc = CountingComm::without_exchange(comm.clone());
        let a = DistArray::<f64, _, 2>::with_grid(cc.clone(), [1, p], [m, n])?;
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i + 2 * j) as f64))?;
        let x = DistArray::<f64, _, 1>::from_fn(cc.clone(), [n], |_| 1.0)?;
        let mut y = DistArray::<f64, _, 1>::new(cc.clone(), [m])?;
        let mut plan = MatvecPlan::new(&a, &x, &y)?;
        let before = comm.traffic();
        cc.reset();
        plan.apply(&a, &x, &mut y)?;
        let c = cc.counts();
        let after = comm.traffic();
        let want: Vec<f64> = (0..m)
            .map(|i| (0..n).map(|j| (i + 2 * j) as f64).sum())
            .collect();
        Ok::<_, distarray::Error>((
            plan.reduction(),
            c,
            after.messages - before.messages,
            y.to_vec()? == want,
        ))
    })
    .unwrap();
    for r in out {
        let (reduction, c, tree_messages, right) = r.unwrap();
        assert!(right, "wrong product");
        assert_eq!(reduction, distarray::linalg::Reduction::Tree);
        assert_eq!(c.collectives, 3);
        assert_eq!(c.messages, 0, "no staging puts");
        assert!(
            tree_messages <= 3 * (1 + ceil_log2(p)),
            "{tree_messages} messages"
        );
    }
}

/// A ghost update of a 2-D halo on a √P x √P process grid: no collective,
/// one neighbour exchange, a message per neighbour (4 faces, 8 with the
/// corners), and bytes per rank fixed by the tile, not by P.
#[rstest]
fn halo_update_costs_neighbour_messages_only(#[values(64, 256)] p: usize) {
    let side = (p as f64).sqrt() as usize;
    assert_eq!(side * side, p);
    let n = 4 * side;
    let out = run(p, |comm| {
        let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [side, side], [n, n])?;
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i * n + j) as f64))?;
        let mut faces = Halo::new_faces(&a, [1, 1], [true, true])?;
        let mut full = Halo::new(&a, [1, 1], [true, true])?;
        let (_, c_faces) = counted(&comm, || faces.update_ghosts(&a))?;
        let (_, c_full) = counted(&comm, || full.update_ghosts(&a))?;
        let [rows, cols] = full.own_range();
        // the periodic corner above-left comes from the diagonal neighbour
        let (i, j) = ((rows.start + n - 1) % n, (cols.start + n - 1) % n);
        let corner = full.get([rows.start as isize - 1, cols.start as isize - 1]);
        Ok((c_faces, c_full, corner == Some((i * n + j) as f64)))
    });
    for (faces, full, corner_right) in &out {
        assert!(corner_right, "wrong corner value");
        for (c, neighbours) in [(faces, 4), (full, 8)] {
            assert_eq!(c.collectives, 0, "{c:?}");
            assert_eq!(c.exchanges, 1);
            assert_eq!(c.messages, neighbours);
            // 4 x 4 tiles: each face 4 values, each corner 1, plus a status
            // element per message
            let values = if neighbours == 4 { 16 } else { 20 };
            assert_eq!(c.bytes, 8 * (values + neighbours));
        }
    }
}
