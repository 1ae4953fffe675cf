//! Bitwise reproducibility: every library operation run [`REPEATS`] times
//! on the same inputs gives the same bits each time (and reductions give
//! the same bits on every rank). The inputs span many orders of magnitude,
//! so any change of summation order shows in the low bits.

use super::array::grid_2d;
use super::{ok, Check, SplitMix};
use crate::comm::OneSidedComm;
use crate::linalg::{dot, matvec, matvec_transpose, norm2, MatvecPlan};
use crate::{DistArray, GhostedBlock};

/// How often each operation is repeated.
pub const REPEATS: usize = 20;

/// The reproducibility checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("reproducible_reductions", reductions::<C>),
        ("reproducible_matvec", matvecs::<C>),
        ("reproducible_copies", copies::<C>),
    ]
}

/// A value whose magnitude depends wildly on `k` (1e-8 .. 1e8, both signs).
fn wild(k: usize) -> f64 {
    let mut g = SplitMix(k as u64 * 0x9E37 + 17);
    let mant = (g.next_u64() % 1_000_000) as f64 / 1_000_000.0 + 0.1;
    let exp = (g.below(17) as i32) - 8;
    let sign = if g.below(2) == 0 { 1.0 } else { -1.0 };
    sign * mant * 10f64.powi(exp)
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs `f` [`REPEATS`] times and asserts every run gives the first run's
/// bits; returns them.
fn same_bits<C: OneSidedComm>(comm: &C, what: &str, mut f: impl FnMut() -> Vec<u64>) -> Vec<u64> {
    let first = f();
    for run in 1..REPEATS {
        let again = f();
        assert_eq!(
            again,
            first,
            "rank {}: {what}: run {run} differs from run 0 in its bits",
            comm.rank()
        );
    }
    first
}

/// Asserts every rank holds the same bits.
fn same_on_every_rank<C: OneSidedComm>(comm: &C, what: &str, v: &[u64]) {
    let all = ok(comm, "allgather", comm.allgather(v));
    assert!(
        all.iter().all(|w| w == v),
        "rank {}: {what}: ranks hold different bits",
        comm.rank()
    );
}

fn reductions<C: OneSidedComm>(comm: &C) {
    let n = 97 * comm.size() + 5;
    let x = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], |[i]| wild(i)),
    );
    let y = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], |[i]| wild(i + n)),
    );
    let r = same_bits(comm, "sum", || vec![ok(comm, "sum", x.sum()).to_bits()]);
    same_on_every_rank(comm, "sum", &r);
    let r = same_bits(comm, "reduce (max |x|)", || {
        let m = x.reduce(|l| l.iter().fold(0.0f64, |m, v| m.max(v.abs())), f64::max);
        vec![ok(comm, "reduce", m).to_bits()]
    });
    same_on_every_rank(comm, "reduce", &r);
    let r = same_bits(comm, "dot", || vec![ok(comm, "dot", dot(&x, &y)).to_bits()]);
    same_on_every_rank(comm, "dot", &r);
    let r = same_bits(comm, "norm2", || {
        vec![ok(comm, "norm2", norm2(&x)).to_bits()]
    });
    same_on_every_rank(comm, "norm2", &r);
}

fn matvecs<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let (m, n) = (37, 41);
    for grid in [[p, 1], [1, p], grid_2d(p)] {
        let a = ok(
            comm,
            "with_grid",
            DistArray::<f64, C, 2>::with_grid(comm.clone(), grid, [m, n]),
        );
        ok(
            comm,
            "fill A",
            a.with_local_mut(|mut l| l.fill_with(|[i, j]| wild(i * n + j))),
        );
        let x = ok(
            comm,
            "from_fn",
            DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], |[j]| wild(7 * j + 3)),
        );
        let xt = ok(
            comm,
            "from_fn",
            DistArray::<f64, C, 1>::from_fn(comm.clone(), [m], |[i]| wild(5 * i + 1)),
        );
        let mut y = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [m]));
        let mut yt = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [n]));
        let wrapped = same_bits(comm, &format!("matvec on grid {grid:?}"), || {
            ok(comm, "matvec", matvec(&a, &x, &mut y));
            bits(&ok(comm, "to_vec", y.to_vec()))
        });
        let mut plan = ok(comm, "plan", MatvecPlan::new(&a, &x, &y));
        let planned = same_bits(comm, &format!("MatvecPlan on grid {grid:?}"), || {
            ok(comm, "apply", plan.apply(&a, &x, &mut y));
            bits(&ok(comm, "to_vec", y.to_vec()))
        });
        assert_eq!(
            wrapped, planned,
            "matvec and its plan differ on grid {grid:?}"
        );
        same_bits(comm, &format!("matvec_transpose on grid {grid:?}"), || {
            ok(comm, "matvec_transpose", matvec_transpose(&a, &xt, &mut yt));
            bits(&ok(comm, "to_vec", yt.to_vec()))
        });
    }
}

fn copies<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let n = 13 * p + 4;
    let x = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], |[i]| wild(i)),
    );
    let expect = bits(&(0..n).map(wild).collect::<Vec<_>>());
    let mut sizes = vec![0; p];
    sizes[p - 1] = n;
    let got = same_bits(comm, "redistribute", || {
        let r = ok(comm, "redistribute", x.redistribute_sizes([sizes.clone()]));
        bits(&ok(comm, "to_vec", r.to_vec()))
    });
    assert_eq!(got, expect, "redistribute changed values");
    let kept: Vec<u64> = (0..n)
        .map(wild)
        .filter(|v| *v > 0.0)
        .map(f64::to_bits)
        .collect();
    let got = same_bits(comm, "filter", || {
        let f = ok(comm, "filter", x.filter(|v| v > 0.0));
        bits(&ok(comm, "to_vec", f.to_vec()))
    });
    assert_eq!(got, kept, "filter kept the wrong values");
    let r = ok(comm, "local_indices", x.local_indices(comm.rank()))[0].clone();
    let ids: Vec<[usize; 1]> = [r.start.wrapping_sub(1), r.end, 0, n - 1]
        .into_iter()
        .filter(|&i| i < n)
        .map(|i| [i])
        .collect();
    let mut g = ok(
        comm,
        "ghosts",
        GhostedBlock::from_global_ids(&x, ids.clone()),
    );
    let got = same_bits(comm, "ghost sync", || {
        ok(comm, "sync", g.sync(&x));
        bits(g.values())
    });
    let want: Vec<u64> = g
        .global_ids()
        .iter()
        .map(|&[i]| wild(i).to_bits())
        .collect();
    assert_eq!(got, want, "ghosts hold the wrong values");
    // the overlapped sync: the same values, while the rank computes
    let mut g2 = ok(
        comm,
        "ghosts",
        GhostedBlock::from_global_ids(&x, ids.clone()),
    );
    let local_sum: f64 = r.clone().map(wild).sum();
    let got = same_bits(comm, "overlapped ghost sync", || {
        let s = ok(
            comm,
            "sync_overlapped",
            g2.sync_overlapped(&x, || x.with_local(|l| l.as_slice().iter().sum::<f64>())),
        );
        assert_eq!(ok(comm, "interior", s).to_bits(), local_sum.to_bits());
        bits(g2.values())
    });
    assert_eq!(got, want, "overlapped ghosts hold the wrong values");
    ok(comm, "barrier", comm.barrier());
}
