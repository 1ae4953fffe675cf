//! Checks of complex elements ([`Complex32`] / [`Complex64`]): window
//! round trips, accumulate `Sum` from every rank, `Min` refused, and
//! matvec / dot (conjugated) / norm against serial computations. Values are
//! small integers, so every result is exact whatever the summation order.

use super::array::grid_2d;
use super::{expect_err, ok, Check};
use crate::comm::{AccumulateOp, Element, LockKind, OneSidedComm};
use crate::error::Error;
use crate::linalg::{dot, matvec, norm2};
use crate::{Complex32, Complex64, DistArray};

/// The complex-element checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("complex_accumulate", complex_accumulate::<C>),
        ("complex_matvec_dot", complex_matvec_dot::<C>),
    ]
}

fn accumulate_kind<T: Element, C: OneSidedComm>(comm: &C, unit: T) {
    let (me, p) = (comm.rank(), comm.size());
    let w = ok(comm, "create_window", comm.create_window::<T>(3));
    // every rank adds (me + 1) * unit to every element of every rank
    let mine: T = num_traits::cast::<usize, T>(me + 1).expect("small") * unit;
    for t in 0..p {
        ok(comm, "lock", w.lock(t, LockKind::Exclusive));
        ok(
            comm,
            "accumulate",
            w.accumulate(t, 0, &[mine; 3], AccumulateOp::Sum),
        );
        ok(comm, "unlock", w.unlock(t));
    }
    // Min / Max are not defined on complex numbers: refused, nothing sent
    ok(comm, "lock", w.lock(me, LockKind::Exclusive));
    expect_err(
        comm,
        "accumulate Min on complex",
        w.accumulate(me, 0, &[unit], AccumulateOp::Min),
        |e| matches!(e, Error::InvalidArgument(m) if m.contains("Min")),
    );
    ok(comm, "unlock", w.unlock(me));
    ok(comm, "barrier", comm.barrier());
    let total: T = num_traits::cast::<usize, T>(p * (p + 1) / 2).expect("small") * unit;
    for t in 0..p {
        let mut got = [T::ZERO; 3];
        ok(comm, "get", w.get_locked(t, LockKind::Shared, 0, &mut got));
        assert_eq!(got, [total; 3], "rank {me}: accumulated sums on rank {t}");
    }
    ok(comm, "barrier", comm.barrier());
}

fn complex_accumulate<C: OneSidedComm>(comm: &C) {
    accumulate_kind(comm, Complex64::new(1.0, -2.0));
    accumulate_kind(comm, Complex32::new(-0.5, 3.0));
}

fn complex_matvec_dot<C: OneSidedComm>(comm: &C) {
    let (m, n) = (9, 7);
    let a_of = |i: usize, j: usize| {
        Complex64::new(((i * 3 + j) % 5) as f64 - 2.0, ((i + 2 * j) % 3) as f64)
    };
    let x_of = |j: usize| Complex64::new(j as f64 - 3.0, 1.0 - (j % 2) as f64);
    for grid in [[comm.size(), 1], [1, comm.size()], grid_2d(comm.size())] {
        let a = ok(
            comm,
            "with_grid",
            DistArray::<Complex64, C, 2>::with_grid(comm.clone(), grid, [m, n]),
        );
        ok(
            comm,
            "fill",
            a.with_local_mut(|mut l| l.fill_with(|[i, j]| a_of(i, j))),
        );
        let x = ok(
            comm,
            "from_fn",
            DistArray::<Complex64, C, 1>::from_fn(comm.clone(), [n], |[j]| x_of(j)),
        );
        let mut y = ok(
            comm,
            "new",
            DistArray::<Complex64, C, 1>::new(comm.clone(), [m]),
        );
        ok(comm, "matvec", matvec(&a, &x, &mut y));
        let expect: Vec<Complex64> = (0..m)
            .map(|i| (0..n).map(|j| a_of(i, j) * x_of(j)).sum())
            .collect();
        assert_eq!(ok(comm, "to_vec", y.to_vec()), expect, "grid {grid:?}");
        ok(comm, "barrier", y.barrier());
    }
    // dot conjugates its first argument (zdotc)
    let x = ok(
        comm,
        "from_fn",
        DistArray::<Complex64, C, 1>::from_fn(comm.clone(), [n], |[j]| x_of(j)),
    );
    let z = ok(
        comm,
        "from_fn",
        DistArray::<Complex64, C, 1>::from_fn(comm.clone(), [n], |[j]| a_of(1, j)),
    );
    let expect: Complex64 = (0..n).map(|j| x_of(j).conj() * a_of(1, j)).sum();
    assert_eq!(ok(comm, "dot", dot(&x, &z)), expect);
    let xx: f64 = (0..n).map(|j| x_of(j).norm_sqr()).sum();
    assert_eq!(ok(comm, "dot x x", dot(&x, &x)), Complex64::new(xx, 0.0));
    // a scaled norm (no overflow) may round differently in the last bit
    let nrm = ok(comm, "norm2", norm2(&x));
    assert!(
        (nrm - xx.sqrt()).abs() <= 1e-14 * xx.sqrt(),
        "{nrm} vs {}",
        xx.sqrt()
    );
    ok(comm, "barrier", comm.barrier());
}
