//! Checks of the distributed linear algebra, including the port of
//! MPIArrays.jl's matmul test (row and column distributions against the
//! serial product).

use super::array::grid_2d;
use super::{expect_err, ok, Check};
use crate::comm::AccumulateOp;
use crate::comm::OneSidedComm;
use crate::error::Error;
use crate::linalg::{
    axpby, axpy_dot, cg_update, dot, gemv_local, matvec, matvec_transpose, norm2, sum_over_ranks,
};
use crate::DistArray;

/// The linear-algebra checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("matvec_rows_columns_tiles", matvec_distributions::<C>),
        ("matvec_transpose", matvec_transpose_check::<C>),
        ("dot_norm_axpby", dot_norm_axpby::<C>),
        (
            "norm2_scaled_and_fused_updates",
            norm2_scaled_and_fused_updates::<C>,
        ),
        ("linalg_bad_input", linalg_bad_input::<C>),
    ]
}

fn a_elem(i: usize, j: usize) -> f64 {
    ((i * 31 + j * 17) % 23) as f64 - 11.0
}

fn x_elem(j: usize) -> f64 {
    ((j * 7) % 5) as f64 + 0.5
}

/// Collective: the `m x n` test matrix `a_elem` on process grid `grid`.
fn test_matrix<C: OneSidedComm>(
    comm: &C,
    grid: [usize; 2],
    m: usize,
    n: usize,
) -> DistArray<f64, C, 2> {
    let a = ok(
        comm,
        "with_grid",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), grid, [m, n]),
    );
    ok(
        comm,
        "fill A",
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| a_elem(i, j))),
    );
    a
}

/// Compares with a relative tolerance (summation order differs).
fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + x.abs().max(y.abs())))
}

/// The matmul port: y = A x for A row-, column- and tile-distributed, x and
/// y with the default and with skewed partitions.
pub fn matvec_distributions<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    for &(m, n) in &[(150usize, 120usize), (7, 13), (1, 5)] {
        let serial_a: Vec<f64> = (0..m * n).map(|k| a_elem(k / n, k % n)).collect();
        let serial_x: Vec<f64> = (0..n).map(x_elem).collect();
        let mut serial_y = vec![0.0; m];
        gemv_local(&serial_a, m, n, &serial_x, &mut serial_y);
        for grid in [[p, 1], [1, p], grid_2d(p)] {
            let a = test_matrix(comm, grid, m, n);
            let x = ok(
                comm,
                "from_fn",
                DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], |[j]| x_elem(j)),
            );
            // y starts with garbage: matvec overwrites it
            let mut y = ok(
                comm,
                "from_fn",
                DistArray::<f64, C, 1>::from_fn(comm.clone(), [m], |_| 99.0),
            );
            ok(comm, "matvec", matvec(&a, &x, &mut y));
            let got = ok(comm, "to_vec", y.to_vec());
            assert!(
                close(&got, &serial_y),
                "rank {}: matvec {m}x{n} on grid {grid:?}",
                comm.rank()
            );
            // skewed vector partitions: everything of x on rank 0, y on the last rank
            let mut xs = vec![0; p];
            xs[0] = n;
            let mut ys = vec![0; p];
            ys[p - 1] = m;
            let x2 = ok(comm, "redistribute", x.redistribute_sizes([xs]));
            let mut y2 = ok(
                comm,
                "with_part_sizes",
                DistArray::<f64, C, 1>::with_part_sizes(comm.clone(), [ys]),
            );
            ok(comm, "matvec", matvec(&a, &x2, &mut y2));
            let got = ok(comm, "to_vec", y2.to_vec());
            assert!(
                close(&got, &serial_y),
                "rank {}: skewed matvec on grid {grid:?}",
                comm.rank()
            );
            // repeated products give the same answer
            ok(comm, "matvec", matvec(&a, &x, &mut y));
            ok(comm, "matvec", matvec(&a, &x, &mut y));
            assert!(close(&ok(comm, "to_vec", y.to_vec()), &serial_y));
        }
    }
}

fn matvec_transpose_check<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let (m, n) = (11, 9);
    let x_serial: Vec<f64> = (0..m).map(x_elem).collect();
    let expect: Vec<f64> = (0..n)
        .map(|j| (0..m).map(|i| a_elem(i, j) * x_serial[i]).sum())
        .collect();
    for grid in [[p, 1], [1, p], grid_2d(p)] {
        let a = test_matrix(comm, grid, m, n);
        let x = ok(
            comm,
            "from_fn",
            DistArray::<f64, C, 1>::from_fn(comm.clone(), [m], |[i]| x_elem(i)),
        );
        let mut y = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [n]));
        ok(comm, "matvec_transpose", matvec_transpose(&a, &x, &mut y));
        assert!(
            close(&ok(comm, "to_vec", y.to_vec()), &expect),
            "transpose on grid {grid:?}"
        );
    }
}

fn dot_norm_axpby<C: OneSidedComm>(comm: &C) {
    let n = 4 * comm.size() + 3;
    let x = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], |[i]| i as f64),
    );
    let mut y = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], |[i]| 2.0 - i as f64),
    );
    let expect: f64 = (0..n).map(|i| i as f64 * (2.0 - i as f64)).sum();
    assert_eq!(ok(comm, "dot", dot(&x, &y)), expect);
    let xx: f64 = (0..n).map(|i| (i * i) as f64).sum();
    assert_eq!(ok(comm, "dot self", dot(&x, &x)), xx);
    assert!((ok(comm, "norm2", norm2(&x)) - xx.sqrt()).abs() < 1e-12);
    // y = 2 x - 0.5 y
    ok(comm, "axpby", axpby(2.0, &x, -0.5, &mut y));
    ok(comm, "barrier", y.barrier());
    let expect: Vec<f64> = (0..n)
        .map(|i| 2.0 * i as f64 - 0.5 * (2.0 - i as f64))
        .collect();
    assert_eq!(ok(comm, "to_vec", y.to_vec()), expect);
    let ints = ok(
        comm,
        "from_fn",
        DistArray::<i64, C, 1>::from_fn(comm.clone(), [n], |[i]| i as i64 - 3),
    );
    let expect: i64 = (0..n as i64).map(|i| (i - 3) * (i - 3)).sum();
    assert_eq!(ok(comm, "integer dot", dot(&ints, &ints)), expect);
}

/// `norm2` cannot overflow (8 x 1e200 is 2.83e200, not inf) and is `+0.0`
/// on an empty vector; `axpy_dot` / `cg_update` return bitwise what `dot`
/// returns after the unfused updates; `reduce_op`; `sum_over_ranks`.
fn norm2_scaled_and_fused_updates<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let big = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [8], |_| 1e200),
    );
    let n = ok(comm, "norm2 of 8 x 1e200", norm2(&big));
    assert!(
        (n / (1e200 * 8f64.sqrt()) - 1.0).abs() < 1e-15,
        "norm2 of 8 x 1e200 is {n}"
    );
    let tiny = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [8], |_| 1e-200),
    );
    let n = ok(comm, "norm2 of 8 x 1e-200", norm2(&tiny));
    assert!((n / (1e-200 * 8f64.sqrt()) - 1.0).abs() < 1e-15, "{n}");
    let empty = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [0]));
    let n = ok(comm, "norm2 of an empty vector", norm2(&empty));
    assert!(n == 0.0 && n.is_sign_positive(), "norm2 of [] is {n:?}");

    let len = 5000 + 3 * p;
    let f = |seed: usize| {
        move |[i]: [usize; 1]| ((i * 7919 + seed * 104729) % 1013) as f64 / 101.0 - 5.0
    };
    let pv = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [len], f(1)),
    );
    let qv = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [len], f(2)),
    );
    let mk = |seed| {
        ok(
            comm,
            "from_fn",
            DistArray::<f64, C, 1>::from_fn(comm.clone(), [len], f(seed)),
        )
    };
    let (mut x1, mut r1, mut x2, mut r2) = (mk(3), mk(4), mk(3), mk(4));
    let alpha = 0.625;
    let rr = ok(
        comm,
        "cg_update",
        cg_update(alpha, &pv, &qv, &mut x1, &mut r1),
    );
    ok(comm, "axpby", axpby(alpha, &pv, 1.0, &mut x2));
    ok(comm, "axpby", axpby(-alpha, &qv, 1.0, &mut r2));
    assert_eq!(
        rr.to_bits(),
        ok(comm, "dot", dot(&r2, &r2)).to_bits(),
        "cg_update's r . r"
    );
    ok(comm, "barrier", x1.barrier());
    assert_eq!(
        ok(comm, "to_vec", x1.to_vec()),
        ok(comm, "to_vec", x2.to_vec())
    );
    assert_eq!(
        ok(comm, "to_vec", r1.to_vec()),
        ok(comm, "to_vec", r2.to_vec())
    );
    // everyone has read x1 and r1 before anyone changes them again
    ok(comm, "barrier", x1.barrier());
    // p and q the same array
    let rr = ok(
        comm,
        "cg_update p = q",
        cg_update(alpha, &pv, &pv, &mut x1, &mut r1),
    );
    ok(comm, "axpby", axpby(-alpha, &pv, 1.0, &mut r2));
    assert_eq!(rr.to_bits(), ok(comm, "dot", dot(&r2, &r2)).to_bits());
    let yy = ok(comm, "axpy_dot", axpy_dot(-0.5, &qv, &mut r1));
    ok(comm, "axpby", axpby(-0.5, &qv, 1.0, &mut r2));
    assert_eq!(
        yy.to_bits(),
        ok(comm, "dot", dot(&r2, &r2)).to_bits(),
        "axpy_dot's y . y"
    );

    // reduce_op over parts of which some may be empty
    let ints = ok(
        comm,
        "from_fn",
        DistArray::<i64, C, 1>::from_fn(comm.clone(), [3], |[i]| 10 - 4 * i as i64),
    );
    assert_eq!(
        ok(comm, "reduce_op max", ints.reduce_op(AccumulateOp::Max)),
        10
    );
    assert_eq!(
        ok(comm, "reduce_op min", ints.reduce_op(AccumulateOp::Min)),
        2
    );
    assert_eq!(
        ok(comm, "reduce_op sum", ints.reduce_op(AccumulateOp::Sum)),
        18
    );
    assert_eq!(
        ok(comm, "reduce_op prod", ints.reduce_op(AccumulateOp::Prod)),
        120
    );
    let invalid = |e: &Error| matches!(e, Error::InvalidArgument(_));
    expect_err(
        comm,
        "max of an empty array",
        empty.reduce_op(AccumulateOp::Max),
        invalid,
    );
    expect_err(
        comm,
        "reduce_op Replace",
        ints.reduce_op(AccumulateOp::Replace),
        invalid,
    );
    assert_eq!(
        ok(
            comm,
            "sum of an empty array",
            empty.reduce_op(AccumulateOp::Sum)
        ),
        0.0
    );

    let total = ok(
        comm,
        "sum_over_ranks",
        sum_over_ranks(comm, Ok(comm.rank() as u64 + 1)),
    );
    assert_eq!(total, (p * (p + 1) / 2) as u64);
    let failed: crate::Result<u64> = if comm.rank() == p - 1 {
        Err(Error::InvalidArgument("this rank fails".into()))
    } else {
        Ok(1)
    };
    expect_err(
        comm,
        "sum_over_ranks with a failing rank",
        sum_over_ranks(comm, failed),
        |_| true,
    );
    ok(comm, "barrier", comm.barrier());
}

fn linalg_bad_input<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let a = ok(
        comm,
        "new",
        DistArray::<f64, C, 2>::new(comm.clone(), [6, 4]),
    );
    let x = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [5]));
    let mut y = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [6]));
    // the error names the operand that is wrong and its expected length
    let bad = |name: &'static str, len: usize| {
        move |e: &Error| {
            matches!(e, Error::OperandShape { operand, expected, .. }
                if *operand == name && expected == &[len])
                && e.to_string().contains(&format!("operand {name}"))
        }
    };
    expect_err(
        comm,
        "x of the wrong length",
        matvec(&a, &x, &mut y),
        bad("x", 4),
    );
    let x4 = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [4]));
    let mut y5 = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [5]));
    expect_err(
        comm,
        "y of the wrong length",
        matvec(&a, &x4, &mut y5),
        bad("y", 6),
    );
    expect_err(
        comm,
        "transpose with wrong x",
        matvec_transpose(&a, &x4, &mut y),
        bad("x", 6),
    );
    if p > 1 {
        let mut sizes = vec![0; p];
        sizes[0] = 6;
        let skewed = ok(
            comm,
            "with_part_sizes",
            DistArray::<f64, C, 1>::with_part_sizes(comm.clone(), [sizes]),
        );
        let part = |e: &Error| matches!(e, Error::InvalidPartition(m) if m.contains("x and y must be partitioned alike"));
        expect_err(
            comm,
            "dot of differently partitioned vectors",
            dot(&y, &skewed),
            part,
        );
        expect_err(
            comm,
            "axpby of differently partitioned vectors",
            axpby(1.0, &skewed, 1.0, &mut y),
            part,
        );
    }
    ok(comm, "barrier", comm.barrier());
}
