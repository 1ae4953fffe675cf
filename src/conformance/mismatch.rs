//! Ranks passing differently partitioned arrays to one collective call (a
//! broken contract) where the partition chooses the path: `matvec`,
//! `matvec_transpose` and their plans, `transpose_into`,
//! `transpose_add_into`, `TransposePlan::new`, `permute_into`,
//! `copy_from` and `matmul`; and `dot`, whose partition check returned
//! before its allreduce on the ranks that failed it. Also arrays whose
//! [`Summation`] mode differs between ranks (`mismatched_summation_*`:
//! every reduction that reads the mode; the ranks chose the exact or the
//! ordered allreduce, of different lengths, from their own arrays), and
//! `reduce_op` with another operation on rank 0. The
//! ranks used to choose their path (block-cyclic or a plan, and the
//! plan's messages) from their own arguments and then wait for each other
//! in different collectives, or finish with a wrong answer. Each check
//! wants [`Error::InvalidArgument`] on every rank, then a good call that
//! shows the ranks are still in step. On one rank nothing can differ: the
//! calls succeed with the right values. One check per case, so that a
//! run of each alone tells which ones fail.

use super::{expect_err, ok, Check};
use crate::comm::OneSidedComm;
use crate::error::{Error, Result};
use crate::linalg::{matvec, matvec_transpose, MatvecPlan};
use crate::matmul::matmul;
use crate::stencil::Stencil;
use crate::{AccumulateOp, DistArray, Ghosted, Summation, TransposePlan};

/// The mismatch checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("mismatched_matvec_cyclic", matvec_cyclic::<C>),
        (
            "mismatched_matvec_transpose_cyclic",
            matvec_transpose_cyclic::<C>,
        ),
        ("mismatched_matvec_plans", matvec_plans::<C>),
        ("mismatched_matvec_operation", matvec_operation::<C>),
        ("mismatched_matvec_plan_new", matvec_plan_new::<C>),
        (
            "mismatched_matvec_plan_new_transpose",
            matvec_plan_new_transpose::<C>,
        ),
        ("mismatched_transpose_cyclic", transpose_cyclic::<C>),
        ("mismatched_transpose_add_cyclic", transpose_add_cyclic::<C>),
        ("mismatched_transpose_outputs", transpose_outputs::<C>),
        ("mismatched_transpose_operation", transpose_operation::<C>),
        ("mismatched_transpose_plan_new", transpose_plan_new::<C>),
        ("mismatched_permute_axes", permute_axes::<C>),
        ("mismatched_permute_outputs", permute_outputs::<C>),
        ("mismatched_copy_from", copy_from_paths::<C>),
        ("mismatched_matmul", matmul_outputs::<C>),
        ("mismatched_dot", dot_pairs::<C>),
        ("mismatched_summation_sum", summation_sum::<C>),
        ("mismatched_summation_reduce_op", summation_reduce_op::<C>),
        ("mismatched_reduce_op", reduce_ops::<C>),
        ("mismatched_summation_map_sum", summation_map_sum::<C>),
        ("mismatched_summation_dot", summation_dot::<C>),
        ("mismatched_summation_norm2", summation_norm2::<C>),
        ("mismatched_summation_axpy_dot", summation_axpy_dot::<C>),
        ("mismatched_summation_cg_update", summation_cg_update::<C>),
        (
            "mismatched_summation_ghosted_dot",
            summation_ghosted_dot::<C>,
        ),
        (
            "mismatched_summation_ghosted_cg_update",
            summation_ghosted_cg_update::<C>,
        ),
    ]
}

fn value(i: usize, j: usize) -> f64 {
    ((i * 7 + j * 3) % 11) as f64 - 5.0
}

/// Collective: the `m x n` matrix of [`value`] dealt element-cyclically by
/// rows (a part of many boxes on every rank count), split into row blocks,
/// and split into column blocks.
fn three_layouts<C: OneSidedComm>(comm: &C, m: usize, n: usize) -> [DistArray<f64, C, 2>; 3] {
    let p = comm.size();
    let f = |[i, j]: [usize; 2]| value(i, j);
    let cyclic = ok(
        comm,
        "block_cyclic",
        DistArray::<f64, C, 2>::block_cyclic(comm.clone(), [m, n], [p, 1], [1, 1]),
    );
    assert!(cyclic.partitioning().is_block_cyclic());
    ok(comm, "fill", cyclic.with_local_mut(|mut l| l.fill_with(f)));
    let rows = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 2>::from_fn(comm.clone(), [m, n], f),
    );
    let cols = ok(
        comm,
        "with_grid",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), [1, p], [m, n]),
    );
    ok(comm, "fill", cols.with_local_mut(|mut l| l.fill_with(f)));
    [cyclic, rows, cols]
}

/// `on_0` on rank 0, `elsewhere` on the others.
fn pick<'a, A>(comm: &impl OneSidedComm, on_0: &'a A, elsewhere: &'a A) -> &'a A {
    if comm.rank() == 0 {
        on_0
    } else {
        elsewhere
    }
}

/// A call refused on every rank by the agreement of the arguments (not by
/// a backend that saw a broken collective) on more than one rank; on one
/// rank (nothing can differ) a call that succeeds.
fn refused_unless_alone<T: std::fmt::Debug, C: OneSidedComm>(
    comm: &C,
    what: &str,
    r: Result<T>,
) -> Option<T> {
    if comm.size() == 1 {
        return Some(ok(comm, what, r));
    }
    expect_err(
        comm,
        what,
        r,
        |e| matches!(e, Error::InvalidArgument(m) if m.contains("between ranks")),
    );
    None
}

/// The operands of the products: `A` (`n x n`, `n = 4 P`, square so that
/// `A x` and `Aᵀ x` have the same shapes) in three layouts, `x`, `y`, and
/// the expected `A x` and `Aᵀ x`.
struct Products<C: OneSidedComm> {
    cyclic: DistArray<f64, C, 2>,
    rows: DistArray<f64, C, 2>,
    cols: DistArray<f64, C, 2>,
    x: DistArray<f64, C, 1>,
    y: DistArray<f64, C, 1>,
    want: Vec<f64>,
    want_t: Vec<f64>,
}

/// Collective: the [`Products`] fixture.
fn products<C: OneSidedComm>(comm: &C) -> Products<C> {
    let n = 4 * comm.size();
    let [cyclic, rows, cols] = three_layouts(comm, n, n);
    let xv = |j: usize| (j % 3) as f64 + 1.0;
    let x = ok(
        comm,
        "x",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], |[j]| xv(j)),
    );
    let y = ok(comm, "y", DistArray::<f64, C, 1>::new(comm.clone(), [n]));
    let want = (0..n)
        .map(|i| (0..n).map(|j| value(i, j) * xv(j)).sum())
        .collect();
    let want_t = (0..n)
        .map(|j| (0..n).map(|i| value(i, j) * xv(i)).sum())
        .collect();
    Products {
        cyclic,
        rows,
        cols,
        x,
        y,
        want,
        want_t,
    }
}

impl<C: OneSidedComm> Products<C> {
    /// `y` is `want`.
    fn expect(&self, comm: &C, want: &[f64]) {
        assert_eq!(ok(comm, "to_vec", self.y.to_vec()), want);
    }

    /// Still in step: good products on both paths.
    fn in_step(mut self, comm: &C) {
        ok(
            comm,
            "matvec block-cyclic",
            matvec(&self.cyclic, &self.x, &mut self.y),
        );
        self.expect(comm, &self.want);
        ok(
            comm,
            "matvec columns",
            matvec(&self.cols, &self.x, &mut self.y),
        );
        self.expect(comm, &self.want);
    }
}

/// `A` block-cyclic on rank 0 only: the ranks used to take the
/// block-cyclic path on rank 0 and a plan elsewhere.
fn matvec_cyclic<C: OneSidedComm>(comm: &C) {
    let mut t = products(comm);
    let r = matvec(pick(comm, &t.cyclic, &t.rows), &t.x, &mut t.y);
    if refused_unless_alone(comm, "matvec: block-cyclic on rank 0 only", r).is_some() {
        t.expect(comm, &t.want);
    }
    t.in_step(comm);
}

/// [`matvec_cyclic`] for the transpose.
fn matvec_transpose_cyclic<C: OneSidedComm>(comm: &C) {
    let mut t = products(comm);
    let r = matvec_transpose(pick(comm, &t.cyclic, &t.rows), &t.x, &mut t.y);
    if refused_unless_alone(comm, "matvec_transpose: block-cyclic on rank 0 only", r).is_some() {
        t.expect(comm, &t.want_t);
    }
    t.in_step(comm);
}

/// `A` split by rows on rank 0 and by columns elsewhere: two plans that
/// combine their results differently.
fn matvec_plans<C: OneSidedComm>(comm: &C) {
    let mut t = products(comm);
    let r = matvec(pick(comm, &t.rows, &t.cols), &t.x, &mut t.y);
    if refused_unless_alone(comm, "matvec: rows on rank 0, columns elsewhere", r).is_some() {
        t.expect(comm, &t.want);
    }
    t.in_step(comm);
}

/// `matvec` on rank 0, `matvec_transpose` elsewhere.
fn matvec_operation<C: OneSidedComm>(comm: &C) {
    let mut t = products(comm);
    let r = if comm.rank() == 0 {
        matvec(&t.cols, &t.x, &mut t.y)
    } else {
        matvec_transpose(&t.cols, &t.x, &mut t.y)
    };
    if refused_unless_alone(comm, "matvec on rank 0, matvec_transpose elsewhere", r).is_some() {
        t.expect(comm, &t.want);
    }
    t.in_step(comm);
}

/// `MatvecPlan::new` with `A` split by rows on rank 0 and by columns
/// elsewhere.
fn matvec_plan_new<C: OneSidedComm>(comm: &C) {
    let mut t = products(comm);
    let a = pick(comm, &t.rows, &t.cols);
    let r = MatvecPlan::new(a, &t.x, &t.y);
    if let Some(mut plan) = refused_unless_alone(comm, "MatvecPlan::new: rows and columns", r) {
        ok(comm, "apply", plan.apply(a, &t.x, &mut t.y));
        t.expect(comm, &t.want);
    }
    t.in_step(comm);
}

/// [`matvec_plan_new`] for the transpose.
fn matvec_plan_new_transpose<C: OneSidedComm>(comm: &C) {
    let mut t = products(comm);
    let a = pick(comm, &t.rows, &t.cols);
    let r = MatvecPlan::new_transpose(a, &t.x, &t.y);
    if let Some(mut plan) =
        refused_unless_alone(comm, "MatvecPlan::new_transpose: rows and columns", r)
    {
        ok(comm, "apply", plan.apply(a, &t.x, &mut t.y));
        t.expect(comm, &t.want_t);
    }
    t.in_step(comm);
}

/// The arrays of the transposes: `A` (`4 P x 5`) in three layouts, the
/// output split by rows and by columns, and the expected `Aᵀ`.
struct Transposes<C: OneSidedComm> {
    cyclic: DistArray<f64, C, 2>,
    rows: DistArray<f64, C, 2>,
    out_rows: DistArray<f64, C, 2>,
    out_cols: DistArray<f64, C, 2>,
    want: Vec<f64>,
}

/// Collective: the [`Transposes`] fixture.
fn transposes<C: OneSidedComm>(comm: &C) -> Transposes<C> {
    let p = comm.size();
    let (m, n) = (4 * p, 5);
    let [cyclic, rows, _] = three_layouts(comm, m, n);
    let out_rows = ok(
        comm,
        "out",
        DistArray::<f64, C, 2>::new(comm.clone(), [n, m]),
    );
    let out_cols = ok(
        comm,
        "out",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), [1, p], [n, m]),
    );
    let want = (0..n)
        .flat_map(|j| (0..m).map(move |i| value(i, j)))
        .collect();
    Transposes {
        cyclic,
        rows,
        out_rows,
        out_cols,
        want,
    }
}

impl<C: OneSidedComm> Transposes<C> {
    /// `out` is `want`.
    fn expect(&self, comm: &C, out: &DistArray<f64, C, 2>) {
        assert_eq!(ok(comm, "to_vec", out.to_vec()), self.want);
    }

    /// Still in step: good transposes on both paths.
    fn in_step(mut self, comm: &C) {
        ok(
            comm,
            "transpose_into block-cyclic",
            self.cyclic.transpose_into(&mut self.out_cols),
        );
        self.expect(comm, &self.out_cols);
        ok(
            comm,
            "transpose_into",
            self.rows.transpose_into(&mut self.out_rows),
        );
        self.expect(comm, &self.out_rows);
    }
}

/// The source block-cyclic on rank 0 only: the ranks used to take the
/// general permutation on rank 0 and a message plan elsewhere.
fn transpose_cyclic<C: OneSidedComm>(comm: &C) {
    let mut t = transposes(comm);
    let r = pick(comm, &t.cyclic, &t.rows).transpose_into(&mut t.out_rows);
    if refused_unless_alone(comm, "transpose_into: block-cyclic on rank 0 only", r).is_some() {
        t.expect(comm, &t.out_rows);
    }
    t.in_step(comm);
}

/// [`transpose_cyclic`] for `transpose_add_into`.
fn transpose_add_cyclic<C: OneSidedComm>(comm: &C) {
    let mut t = transposes(comm);
    let r = pick(comm, &t.cyclic, &t.rows).transpose_add_into(&mut t.out_rows, 1.0);
    if refused_unless_alone(comm, "transpose_add_into: block-cyclic on rank 0 only", r).is_some() {
        t.expect(comm, &t.out_rows);
    }
    t.in_step(comm);
}

/// The output split by rows on rank 0 and by columns elsewhere: plans
/// whose messages do not match.
fn transpose_outputs<C: OneSidedComm>(comm: &C) {
    let mut t = transposes(comm);
    let r = if comm.rank() == 0 {
        t.rows.transpose_into(&mut t.out_rows)
    } else {
        t.rows.transpose_into(&mut t.out_cols)
    };
    if refused_unless_alone(comm, "transpose_into: rows on rank 0, columns elsewhere", r).is_some()
    {
        t.expect(comm, &t.out_rows);
    }
    t.in_step(comm);
}

/// `transpose_into` on rank 0, `transpose_add_into` elsewhere (on
/// block-cyclic arrays they make different collective calls).
fn transpose_operation<C: OneSidedComm>(comm: &C) {
    let mut t = transposes(comm);
    let r = if comm.rank() == 0 {
        t.cyclic.transpose_into(&mut t.out_rows)
    } else {
        t.cyclic.transpose_add_into(&mut t.out_rows, 1.0)
    };
    if refused_unless_alone(comm, "transpose_into against transpose_add_into", r).is_some() {
        t.expect(comm, &t.out_rows);
    }
    t.in_step(comm);
}

/// `TransposePlan::new` with the output split by rows on rank 0 and by
/// columns elsewhere.
fn transpose_plan_new<C: OneSidedComm>(comm: &C) {
    let mut t = transposes(comm);
    let r = TransposePlan::new(&t.rows, pick(comm, &t.out_rows, &t.out_cols));
    if let Some(mut plan) = refused_unless_alone(comm, "TransposePlan::new: rows and columns", r) {
        ok(comm, "transpose", plan.transpose(&t.rows, &mut t.out_cols));
        ok(comm, "barrier", comm.barrier());
        t.expect(comm, &t.out_cols);
    }
    t.in_step(comm);
}

/// The square `A` (`2 P x 2 P`) split by rows and by columns, and the
/// expected `Aᵀ`.
fn square<C: OneSidedComm>(comm: &C) -> (DistArray<f64, C, 2>, DistArray<f64, C, 2>, Vec<f64>) {
    let n = 2 * comm.size();
    let [_, rows, cols] = three_layouts(comm, n, n);
    let want = (0..n)
        .flat_map(|j| (0..n).map(move |i| value(i, j)))
        .collect();
    (rows, cols, want)
}

/// `permute_into` with other axes on rank 0 than elsewhere.
fn permute_axes<C: OneSidedComm>(comm: &C) {
    let (rows, _, want) = square(comm);
    let mut out = ok(comm, "out", rows.similar::<f64>());
    let axes = if comm.rank() == 0 { [1, 0] } else { [0, 1] };
    let r = rows.permute_into(&mut out, axes);
    if refused_unless_alone(comm, "permute_into: the axes differ", r).is_some() {
        assert_eq!(ok(comm, "to_vec", out.to_vec()), want);
    }
    ok(comm, "permute_into", rows.permute_into(&mut out, [1, 0]));
    assert_eq!(ok(comm, "to_vec", out.to_vec()), want);
}

/// `permute_into` with the output split by rows on rank 0 and by columns
/// elsewhere.
fn permute_outputs<C: OneSidedComm>(comm: &C) {
    let (rows, cols, want) = square(comm);
    let mut out_rows = ok(comm, "out", rows.similar::<f64>());
    let mut out_cols = ok(comm, "out", cols.similar::<f64>());
    let r = if comm.rank() == 0 {
        rows.permute_into(&mut out_rows, [1, 0])
    } else {
        rows.permute_into(&mut out_cols, [1, 0])
    };
    if refused_unless_alone(comm, "permute_into: the outputs differ", r).is_some() {
        assert_eq!(ok(comm, "to_vec", out_rows.to_vec()), want);
    }
    ok(
        comm,
        "permute_into",
        rows.permute_into(&mut out_cols, [1, 0]),
    );
    assert_eq!(ok(comm, "to_vec", out_cols.to_vec()), want);
}

/// `copy_from` between arrays partitioned alike on rank 0 (a local copy
/// and one vote) and differently elsewhere (a vote, the pulls, a vote):
/// the ranks used to wait for each other in different votes.
fn copy_from_paths<C: OneSidedComm>(comm: &C) {
    let (rows, cols, _) = square(comm);
    let target = ok(comm, "target", rows.similar::<f64>());
    let want = ok(comm, "to_vec", rows.to_vec());
    let r = target.copy_from(pick(comm, &rows, &cols));
    if refused_unless_alone(comm, "copy_from: alike on rank 0 only", r).is_some() {
        assert_eq!(ok(comm, "to_vec", target.to_vec()), want);
    }
    // still in step: both paths
    ok(comm, "copy_from", target.copy_from(&cols));
    assert_eq!(ok(comm, "to_vec", target.to_vec()), want);
    ok(comm, "copy_from", target.copy_from(&rows));
    assert_eq!(ok(comm, "to_vec", target.to_vec()), want);
}

/// `matmul` with the output split by rows on rank 0 and by columns
/// elsewhere: each rank used to fill its part of its own output.
fn matmul_outputs<C: OneSidedComm>(comm: &C) {
    let (rows, cols, _) = square(comm);
    let n = rows.shape()[0];
    let want: Vec<f64> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            (0..n).map(|l| value(i, l) * value(l, j)).sum()
        })
        .collect();
    let mut c_rows = ok(comm, "c", rows.similar::<f64>());
    let mut c_cols = ok(comm, "c", cols.similar::<f64>());
    let r = if comm.rank() == 0 {
        matmul(&rows, &cols, &mut c_rows)
    } else {
        matmul(&rows, &cols, &mut c_cols)
    };
    if refused_unless_alone(comm, "matmul: the outputs differ", r).is_some() {
        assert_eq!(ok(comm, "to_vec", c_rows.to_vec()), want);
    }
    // still in step
    ok(comm, "matmul", matmul(&rows, &cols, &mut c_cols));
    assert_eq!(ok(comm, "to_vec", c_cols.to_vec()), want);
}

/// `linalg::dot` of a pair partitioned alike on rank 0 and unlike
/// elsewhere: the ranks whose pair differs report the partition error, and
/// rank 0 an error too (it used to wait in the allreduce the others had
/// left).
fn dot_pairs<C: OneSidedComm>(comm: &C) {
    let (rows, cols, _) = square(comm);
    let want = ok(comm, "dot", crate::linalg::dot(&rows, &rows));
    let r = crate::linalg::dot(&rows, pick(comm, &rows, &cols));
    match (comm.size(), comm.rank()) {
        (1, _) => assert_eq!(ok(comm, "dot alone", r), want),
        (_, 0) => assert!(r.is_err(), "rank 0: dot with others' pairs unlike: {r:?}"),
        (_, me) => assert!(
            matches!(r, Err(Error::InvalidPartition(_))),
            "rank {me}: dot of a pair unlike: {r:?}"
        ),
    }
    // still in step
    assert_eq!(ok(comm, "dot", crate::linalg::dot(&rows, &rows)), want);
    ok(comm, "dot", crate::linalg::dot(&cols, &cols));
}

/// The mode on rank 0 ([`Summation::Exact`]; [`Summation::Ordered`]
/// elsewhere): a mode that differs between ranks when there are several.
fn exact_on_0(comm: &impl OneSidedComm) -> Summation {
    if comm.rank() == 0 {
        Summation::Exact
    } else {
        Summation::Ordered
    }
}

/// Small integers: every sum, dot product and update of the summation
/// checks is exact, so both modes give the same values.
fn small(i: usize) -> f64 {
    (i % 7) as f64 - 3.0
}

/// Collective: a vector of `5 P + 3` elements `f(i)` in mode `mode`.
fn vector<C: OneSidedComm>(
    comm: &C,
    f: impl Fn(usize) -> f64,
    mode: Summation,
) -> DistArray<f64, C, 1> {
    let n = 5 * comm.size() + 3;
    ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], |[i]| f(i)),
    )
    .with_summation(mode)
}

/// Collective: `x` and `r` back to the values the `cg_update` checks start
/// from (`x = 0`, `r[i] = small(i + 3)`), every rank's fill done.
fn reset_cg_vectors<C: OneSidedComm>(
    comm: &C,
    x: &mut DistArray<f64, C, 1>,
    r: &mut DistArray<f64, C, 1>,
) {
    ok(comm, "fill", x.with_local_mut(|mut l| l.fill_with(|_| 0.0)));
    ok(
        comm,
        "fill",
        r.with_local_mut(|mut l| l.fill_with(|[i]| small(i + 3))),
    );
    ok(comm, "barrier", comm.barrier());
}

/// A reduction refused on every rank because the summation modes differ
/// (on one rank, nothing differs: it succeeds with `want`).
fn refused_modes<T: std::fmt::Debug + PartialEq, C: OneSidedComm>(
    comm: &C,
    what: &str,
    r: Result<T>,
    want: T,
) {
    if comm.size() == 1 {
        assert_eq!(ok(comm, what, r), want, "{what} alone");
        return;
    }
    expect_err(
        comm,
        what,
        r,
        |e| matches!(e, Error::InvalidArgument(m) if m.contains("summation") && m.contains("between ranks")),
    );
}

/// `sum` of a vector in [`Summation::Exact`] on rank 0 and
/// [`Summation::Ordered`] elsewhere: the ranks entered the exact and the
/// ordered allreduce (payloads of different lengths).
fn summation_sum<C: OneSidedComm>(comm: &C) {
    let mut x = vector(comm, small, exact_on_0(comm));
    let want: f64 = (0..x.len()).map(small).sum();
    refused_modes(comm, "sum: modes differ", x.sum(), want);
    // still in step, in either mode
    for mode in [Summation::Ordered, Summation::Exact] {
        x.set_summation(mode);
        assert_eq!(ok(comm, "sum", x.sum()), want, "{mode:?}");
    }
    // the mode is the array's: an integer array's too (its sums are exact
    // in both modes, but the contract is the same)
    let k = ok(
        comm,
        "from_fn",
        DistArray::<i64, C, 1>::from_fn(comm.clone(), [7], |[i]| i as i64),
    )
    .with_summation(exact_on_0(comm));
    refused_modes(comm, "integer sum: modes differ", k.sum(), 21);
    assert_eq!(
        ok(comm, "sum", k.with_summation(Summation::Exact).sum()),
        21
    );
}

/// `reduce_op(Sum)` (and `Max`, which the mode does not change) of a
/// vector in [`Summation::Exact`] on rank 0 only.
fn summation_reduce_op<C: OneSidedComm>(comm: &C) {
    let mut x = vector(comm, small, exact_on_0(comm));
    let want: f64 = (0..x.len()).map(small).sum();
    let r = x.reduce_op(AccumulateOp::Sum);
    refused_modes(comm, "reduce_op(Sum): modes differ", r, want);
    let r = x.reduce_op(AccumulateOp::Max);
    refused_modes(comm, "reduce_op(Max): modes differ", r, 3.0);
    for mode in [Summation::Ordered, Summation::Exact] {
        x.set_summation(mode);
        let s = ok(comm, "reduce_op(Sum)", x.reduce_op(AccumulateOp::Sum));
        assert_eq!(s, want, "{mode:?}");
        let m = ok(comm, "reduce_op(Max)", x.reduce_op(AccumulateOp::Max));
        assert_eq!(m, 3.0, "{mode:?}");
    }
}

/// `reduce_op(Sum)` on rank 0 and `reduce_op(Max)` elsewhere: one
/// allreduce of the same length, combined with each rank's own operation
/// (a wrong value, not an error).
fn reduce_ops<C: OneSidedComm>(comm: &C) {
    let x = vector(comm, small, Summation::Ordered);
    let want: f64 = (0..x.len()).map(small).sum();
    let op = if comm.rank() == 0 {
        AccumulateOp::Sum
    } else {
        AccumulateOp::Max
    };
    let r = x.reduce_op(op);
    if let Some(v) = refused_unless_alone(comm, "reduce_op: Sum on rank 0, Max elsewhere", r) {
        assert_eq!(v, want);
    }
    assert_eq!(ok(comm, "reduce_op", x.reduce_op(AccumulateOp::Sum)), want);
    assert_eq!(ok(comm, "reduce_op", x.reduce_op(AccumulateOp::Max)), 3.0);
}

/// `map_sum` and `mean` of a vector in [`Summation::Exact`] on rank 0
/// only: the ranks entered the exact allreduce and the ordered path's
/// vote and allgather.
fn summation_map_sum<C: OneSidedComm>(comm: &C) {
    let mut x = vector(comm, small, exact_on_0(comm));
    let n = x.len();
    let want: f64 = (0..n).map(|i| small(i) * small(i)).sum();
    refused_modes(comm, "map_sum: modes differ", x.map_sum(|v| v * v), want);
    let mean = (0..n).map(small).sum::<f64>() / n as f64;
    refused_modes(comm, "mean: modes differ", x.mean(), Some(mean));
    for mode in [Summation::Ordered, Summation::Exact] {
        x.set_summation(mode);
        assert_eq!(ok(comm, "map_sum", x.map_sum(|v| v * v)), want, "{mode:?}");
        assert_eq!(ok(comm, "mean", x.mean()), Some(mean), "{mode:?}");
    }
}

/// `linalg::dot` with `x` in [`Summation::Exact`] on rank 0 only, and
/// with `x` exact on rank 0 but `y` exact elsewhere (both take the exact
/// path, but the arrays' modes differ all the same).
fn summation_dot<C: OneSidedComm>(comm: &C) {
    let mut x = vector(comm, small, exact_on_0(comm));
    let mut y = vector(comm, |i| small(i + 2), Summation::Ordered);
    let want: f64 = (0..x.len()).map(|i| small(i) * small(i + 2)).sum();
    let r = crate::linalg::dot(&x, &y);
    refused_modes(comm, "dot: x's mode differs", r, want);
    let r = crate::linalg::dot(&x, &x);
    let xx: f64 = (0..x.len()).map(|i| small(i) * small(i)).sum();
    refused_modes(comm, "dot(x, x): modes differ", r, xx);
    if comm.rank() != 0 {
        x.set_summation(Summation::Ordered);
        y.set_summation(Summation::Exact);
    }
    let r = crate::linalg::dot(&x, &y);
    refused_modes(comm, "dot: x exact on rank 0, y elsewhere", r, want);
    for (mx, my) in [
        (Summation::Ordered, Summation::Ordered),
        (Summation::Exact, Summation::Ordered),
        (Summation::Ordered, Summation::Exact),
    ] {
        x.set_summation(mx);
        y.set_summation(my);
        assert_eq!(ok(comm, "dot", crate::linalg::dot(&x, &y)), want);
    }
}

/// `linalg::norm2` of a vector in [`Summation::Exact`] on rank 0 only.
fn summation_norm2<C: OneSidedComm>(comm: &C) {
    // every element 2: the norm is 2 sqrt(n) in either mode
    let mut x = vector(comm, |_| 2.0, exact_on_0(comm));
    let want = 2.0 * (x.len() as f64).sqrt();
    refused_modes(comm, "norm2: modes differ", crate::linalg::norm2(&x), want);
    for mode in [Summation::Ordered, Summation::Exact] {
        x.set_summation(mode);
        let got = ok(comm, "norm2", crate::linalg::norm2(&x));
        assert!(
            (got - want).abs() <= 1e-15 * want,
            "{mode:?}: {got} != {want}"
        );
    }
}

/// `linalg::axpy_dot` with `y` in [`Summation::Exact`] on rank 0 only.
fn summation_axpy_dot<C: OneSidedComm>(comm: &C) {
    let x = vector(comm, small, Summation::Ordered);
    let mut y = vector(comm, |i| small(i + 2), exact_on_0(comm));
    let n = x.len();
    let after: Vec<f64> = (0..n).map(|i| small(i + 2) + 2.0 * small(i)).collect();
    let want: f64 = after.iter().map(|v| v * v).sum();
    let r = crate::linalg::axpy_dot(2.0, &x, &mut y);
    refused_modes(comm, "axpy_dot: modes differ", r, want);
    for mode in [Summation::Ordered, Summation::Exact] {
        y.set_summation(mode);
        ok(
            comm,
            "fill",
            y.with_local_mut(|mut l| l.fill_with(|[i]| small(i + 2))),
        );
        ok(comm, "barrier", comm.barrier());
        let got = ok(comm, "axpy_dot", crate::linalg::axpy_dot(2.0, &x, &mut y));
        assert_eq!(got, want, "{mode:?}");
        ok(comm, "barrier", comm.barrier());
        assert_eq!(ok(comm, "to_vec", y.to_vec()), after, "{mode:?}");
        // every rank has read before the next fill
        ok(comm, "barrier", comm.barrier());
    }
}

/// `linalg::cg_update` with `p` (not the array whose product it returns)
/// in [`Summation::Exact`] on rank 0 only.
fn summation_cg_update<C: OneSidedComm>(comm: &C) {
    let mut p = vector(comm, small, exact_on_0(comm));
    let q = vector(comm, |i| small(i + 1), Summation::Ordered);
    let mut x = vector(comm, |_| 0.0, Summation::Ordered);
    let mut r = vector(comm, |i| small(i + 3), Summation::Ordered);
    let n = p.len();
    let r_after: Vec<f64> = (0..n).map(|i| small(i + 3) - 2.0 * small(i + 1)).collect();
    let x_after: Vec<f64> = (0..n).map(|i| 2.0 * small(i)).collect();
    let want: f64 = r_after.iter().map(|v| v * v).sum();
    let got = crate::linalg::cg_update(2.0, &p, &q, &mut x, &mut r);
    refused_modes(comm, "cg_update: modes differ", got, want);
    for mode in [Summation::Ordered, Summation::Exact] {
        p.set_summation(mode);
        reset_cg_vectors(comm, &mut x, &mut r);
        let got = crate::linalg::cg_update(2.0, &p, &q, &mut x, &mut r);
        assert_eq!(ok(comm, "cg_update", got), want, "{mode:?}");
        ok(comm, "barrier", comm.barrier());
        assert_eq!(ok(comm, "to_vec", x.to_vec()), x_after, "{mode:?}");
        assert_eq!(ok(comm, "to_vec", r.to_vec()), r_after, "{mode:?}");
        ok(comm, "barrier", comm.barrier());
    }
}

/// `Ghosted::apply_dot` and `update_ghosts_and_apply_dot` with the output
/// in [`Summation::Exact`] on rank 0 only (Ghosted's own reduction).
fn summation_ghosted_dot<C: OneSidedComm>(comm: &C) {
    let a = vector(comm, small, Summation::Ordered);
    let mut u = ok(comm, "Ghosted::new", Ghosted::new(&a, [1], [false]));
    ok(comm, "update_ghosts", u.update_ghosts());
    let st = Stencil::<f64, 1>::neg_laplacian();
    let mut out = ok(comm, "similar", a.similar::<f64>());
    // u · (A u) of the 1-D Laplacian with zero outside: small integers
    let n = a.len();
    let at = |i: usize| small(i);
    let want: f64 = (0..n)
        .map(|i| {
            let left = if i > 0 { at(i - 1) } else { 0.0 };
            let right = if i + 1 < n { at(i + 1) } else { 0.0 };
            at(i) * (2.0 * at(i) - left - right)
        })
        .sum();
    out.set_summation(exact_on_0(comm));
    refused_modes(
        comm,
        "apply_dot: modes differ",
        u.apply_dot(&st, &out),
        want,
    );
    let r = u.update_ghosts_and_apply_dot(&st, &out);
    refused_modes(comm, "update_ghosts_and_apply_dot: modes differ", r, want);
    for mode in [Summation::Ordered, Summation::Exact] {
        out.set_summation(mode);
        assert_eq!(
            ok(comm, "apply_dot", u.apply_dot(&st, &out)),
            want,
            "{mode:?}"
        );
        let r = u.update_ghosts_and_apply_dot(&st, &out);
        assert_eq!(ok(comm, "update_ghosts_and_apply_dot", r), want, "{mode:?}");
    }
}

/// `Ghosted::cg_update` with `q` in [`Summation::Exact`] on rank 0 only.
fn summation_ghosted_cg_update<C: OneSidedComm>(comm: &C) {
    let a = vector(comm, small, Summation::Ordered);
    let p = ok(comm, "Ghosted::new", Ghosted::new(&a, [1], [false]));
    let mut q = vector(comm, |i| small(i + 1), exact_on_0(comm));
    let mut x = vector(comm, |_| 0.0, Summation::Ordered);
    let mut r = vector(comm, |i| small(i + 3), Summation::Ordered);
    let n = a.len();
    let r_after: Vec<f64> = (0..n).map(|i| small(i + 3) - 2.0 * small(i + 1)).collect();
    let want: f64 = r_after.iter().map(|v| v * v).sum();
    let got = p.cg_update(2.0, &q, &mut x, &mut r);
    refused_modes(comm, "Ghosted::cg_update: modes differ", got, want);
    for mode in [Summation::Ordered, Summation::Exact] {
        q.set_summation(mode);
        reset_cg_vectors(comm, &mut x, &mut r);
        let got = p.cg_update(2.0, &q, &mut x, &mut r);
        assert_eq!(ok(comm, "Ghosted::cg_update", got), want, "{mode:?}");
        ok(comm, "barrier", comm.barrier());
        assert_eq!(ok(comm, "to_vec", r.to_vec()), r_after, "{mode:?}");
        ok(comm, "barrier", comm.barrier());
    }
}
