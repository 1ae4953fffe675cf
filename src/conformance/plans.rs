//! Checks of [`MatvecPlan`]: reuse over many products (including after the
//! operands changed), `apply_dot`, the transpose plan, and bad input
//! (wrong lengths, other partitions) failing on every rank.

use super::array::grid_2d;
use super::{expect_err, ok, Check};
use crate::comm::OneSidedComm;
use crate::error::Error;
use crate::linalg::{dot, MatvecPlan};
use crate::DistArray;

/// The plan checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("matvec_plan_reuse_and_apply_dot", reuse::<C>),
        ("matvec_plan_bad_input", bad_input::<C>),
    ]
}

fn a_elem(i: usize, j: usize) -> i64 {
    ((i * 5 + j * 3) % 7) as i64 - 3
}

fn reuse<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let n = 9;
    for grid in [[p, 1], [1, p], grid_2d(p)] {
        // integers: exact, so any order gives the same answer to compare with
        let a = ok(
            comm,
            "with_grid",
            DistArray::<i64, C, 2>::with_grid(comm.clone(), grid, [n, n]),
        );
        ok(
            comm,
            "fill",
            a.with_local_mut(|mut l| l.fill_with(|[i, j]| a_elem(i, j))),
        );
        let x = ok(
            comm,
            "from_fn",
            DistArray::<i64, C, 1>::from_fn(comm.clone(), [n], |[j]| j as i64 + 1),
        );
        let mut y = ok(comm, "new", DistArray::<i64, C, 1>::new(comm.clone(), [n]));
        let mut plan = ok(comm, "plan", MatvecPlan::new(&a, &x, &y));
        let mut tplan = ok(comm, "plan", MatvecPlan::new_transpose(&a, &x, &y));
        for round in 0..3i64 {
            // the operands change between products; the plan stays valid
            ok(comm, "map", x.map_local(|v| v + round));
            let xs = ok(comm, "to_vec", x.to_vec());
            let want: Vec<i64> = (0..n)
                .map(|i| (0..n).map(|j| a_elem(i, j) * xs[j]).sum())
                .collect();
            let d = ok(comm, "apply_dot", plan.apply_dot(&a, &x, &mut y));
            assert_eq!(ok(comm, "to_vec", y.to_vec()), want, "grid {grid:?}");
            let want_dot: i64 = want.iter().zip(&xs).map(|(a, b)| a * b).sum();
            assert_eq!(d, want_dot, "apply_dot on grid {grid:?}");
            assert_eq!(ok(comm, "dot", dot(&x, &y)), d);
            let want_t: Vec<i64> = (0..n)
                .map(|j| (0..n).map(|i| a_elem(i, j) * xs[i]).sum())
                .collect();
            ok(comm, "apply transpose", tplan.apply(&a, &x, &mut y));
            assert_eq!(
                ok(comm, "to_vec", y.to_vec()),
                want_t,
                "transpose, grid {grid:?}"
            );
        }
    }
}

fn bad_input<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let a = ok(
        comm,
        "new",
        DistArray::<f64, C, 2>::new(comm.clone(), [6, 4]),
    );
    let x = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [4]));
    let y = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [6]));
    // the error names the operand that does not fit
    let shape = |e: &Error| matches!(e, Error::OperandShape { operand: "x", .. });
    expect_err(
        comm,
        "plan with x for y",
        MatvecPlan::new(&a, &y, &x),
        shape,
    );
    expect_err(
        comm,
        "transpose plan with x, y swapped",
        MatvecPlan::new_transpose(&a, &x, &y),
        shape,
    );
    let mut plan = ok(comm, "plan", MatvecPlan::new(&a, &x, &y));
    if p > 1 {
        // same shapes, other partitions: every rank gets an error
        let mut sizes = vec![0; p];
        sizes[0] = 6;
        let mut y2 = ok(
            comm,
            "with_part_sizes",
            DistArray::<f64, C, 1>::with_part_sizes(comm.clone(), [sizes]),
        );
        let part = |e: &Error| matches!(e, Error::InvalidPartition(_));
        expect_err(
            comm,
            "plan applied to another partition",
            plan.apply(&a, &x, &mut y2),
            part,
        );
        // apply_dot needs x and y partitioned alike
        let sq = ok(
            comm,
            "new",
            DistArray::<f64, C, 2>::new(comm.clone(), [6, 6]),
        );
        let x6 = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [6]));
        let mut sq_plan = ok(comm, "plan", MatvecPlan::new(&sq, &x6, &y2));
        expect_err(
            comm,
            "apply_dot of unlike partitions",
            sq_plan.apply_dot(&sq, &x6, &mut y2),
            part,
        );
    }
    // the plan still works after the failed calls
    let mut y = y;
    ok(comm, "apply", plan.apply(&a, &x, &mut y));
    ok(comm, "barrier", comm.barrier());
}
