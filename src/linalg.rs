//! Distributed linear algebra on local kernels: [`matvec`] (and its
//! transpose), [`dot`], [`norm2`], [`axpby`] and the fused operations of
//! Krylov solvers ([`axpy_dot`], [`cg_update`]). The vector operations run
//! the [`kernels`] on each rank's part (fixed summation
//! order: bitwise reproducible run to run) and combine per-rank results in
//! rank order; on arrays in [`Summation::Exact`](crate::Summation::Exact)
//! mode `dot`, `norm2`, `axpy_dot` and `cg_update` sum exactly instead
//! ([`crate::exact_sum`]): the same bits on any number of ranks. These
//! four agree their operands' modes between the ranks in their first
//! collective (the vote word of the ordered path's one allreduce; a vote
//! before the exact allreduce): a mode that differs between ranks is an
//! [`Error::InvalidArgument`] on every rank.
//!
//! The local matrix-vector kernel is CBLAS `?gemv` for `f64` / `f32` when the
//! `blas` feature is on (the final binary links a provider, e.g. with this
//! crate's `openblas` feature), and otherwise a plain-Rust kernel that
//! works on 4 rows at a time with 4 accumulators per row — close to
//! OpenBLAS on this memory-bound operation, and the default, so nothing
//! needs a system library.
//!
//! ```
//! use distarray::{linalg, threaded, DistArray};
//! threaded::run_ok(2, |comm| {
//!     // A = [[1, 2], [3, 4], [5, 6]] over 2 ranks by columns
//!     let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, 2], [3, 2])?;
//!     a.with_local_mut(|mut l| l.fill_with(|[i, j]| (2 * i + j + 1) as f64))?;
//!     let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [2], |_| 1.0)?;
//!     let mut y = DistArray::<f64, _, 1>::new(comm.clone(), [3])?;
//!     linalg::matvec(&a, &x, &mut y)?;
//!     assert_eq!(y.to_vec()?, vec![3.0, 7.0, 11.0]);
//!     assert_eq!(linalg::dot(&y, &y)?, 179.0);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use crate::array::DistArray;
use crate::collective::{allreduce_vote, allreduce_vote_keyed, vote_keyed_as};
use crate::comm::{AccumulateOp, Element, OneSidedComm};
use crate::error::{Error, Result};
use crate::exact_sum::{self, ExactNorm, ExactParts, Modes};
use crate::kernels;
use crate::matvec_plan::{agree_operands, check_operands};
pub use crate::matvec_plan::{MatvecPlan, Reduction, TREE_BYTES};

/// Whether [`gemv_local`] calls CBLAS `?gemv` for `f64` / `f32` (this
/// crate's `blas` feature) rather than the plain-Rust kernel: for reports
/// that name the local kernel.
pub const GEMV_USES_BLAS: bool = cfg!(feature = "blas");

/// `y[i] = sum_j a[i, j] * x[j]` for a row-major `rows x cols` matrix `a`
/// (overwrites `y`).
pub fn gemv_local<T: Element>(a: &[T], rows: usize, cols: usize, x: &[T], y: &mut [T]) {
    assert_eq!(a.len(), rows * cols, "matrix length");
    assert_eq!(x.len(), cols, "x length");
    assert_eq!(y.len(), rows, "y length");
    if rows == 0 {
        return;
    }
    if cols == 0 {
        y.fill(T::ZERO);
        return;
    }
    #[cfg(feature = "blas")]
    if blas::gemv(a, rows, cols, x, y) {
        return;
    }
    gemv_rust(a, rows, cols, x, y);
}

/// The plain-Rust kernel: 4 rows at a time, 4 accumulators per row.
pub fn gemv_rust<T: Element>(a: &[T], rows: usize, cols: usize, x: &[T], y: &mut [T]) {
    let main = cols / 4 * 4;
    let mut i = 0;
    while i + 4 <= rows {
        let r: [&[T]; 4] = std::array::from_fn(|k| &a[(i + k) * cols..(i + k + 1) * cols]);
        let mut acc = [[T::ZERO; 4]; 4];
        let mut j = 0;
        while j < main {
            let xs = [x[j], x[j + 1], x[j + 2], x[j + 3]];
            for k in 0..4 {
                for l in 0..4 {
                    acc[k][l] = acc[k][l] + r[k][j + l] * xs[l];
                }
            }
            j += 4;
        }
        for k in 0..4 {
            let mut s = (acc[k][0] + acc[k][1]) + (acc[k][2] + acc[k][3]);
            for jj in main..cols {
                s = s + r[k][jj] * x[jj];
            }
            y[i + k] = s;
        }
        i += 4;
    }
    while i < rows {
        let row = &a[i * cols..(i + 1) * cols];
        let mut acc = [T::ZERO; 4];
        let mut j = 0;
        while j < main {
            for l in 0..4 {
                acc[l] = acc[l] + row[j + l] * x[j + l];
            }
            j += 4;
        }
        let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for jj in main..cols {
            s = s + row[jj] * x[jj];
        }
        y[i] = s;
        i += 1;
    }
}

/// `y[j] = sum_i a[i, j] * x[i]` for a row-major `rows x cols` matrix `a`
/// (overwrites `y`).
pub fn gemv_transpose_local<T: Element>(a: &[T], rows: usize, cols: usize, x: &[T], y: &mut [T]) {
    assert_eq!(a.len(), rows * cols, "matrix length");
    assert_eq!(x.len(), rows, "x length");
    assert_eq!(y.len(), cols, "y length");
    y.fill(T::ZERO);
    for (row, &xi) in a.chunks_exact(cols.max(1)).zip(x) {
        for (yj, &aij) in y.iter_mut().zip(row) {
            *yj = *yj + aij * xi;
        }
    }
}

#[cfg(feature = "blas")]
mod blas {
    use crate::comm::{Element, ElementKind};

    /// CBLAS `?gemv` for `f64` / `f32`; `false` for other element types.
    pub(super) fn gemv<T: Element>(
        a: &[T],
        rows: usize,
        cols: usize,
        x: &[T],
        y: &mut [T],
    ) -> bool {
        let (Ok(m), Ok(n)) = (i32::try_from(rows), i32::try_from(cols)) else {
            return false;
        };
        match T::KIND {
            ElementKind::F64 => {
                let (a, x): (&[f64], &[f64]) = (bytemuck::cast_slice(a), bytemuck::cast_slice(x));
                let y: &mut [f64] = bytemuck::cast_slice_mut(y);
                // SAFETY: `a` holds `rows * cols` elements row-major with
                // leading dimension `cols`, `x` holds `cols` and `y` `rows`
                // (checked by the caller), unit strides: every access of
                // dgemv is in bounds.
                unsafe {
                    cblas::dgemv(
                        cblas::Layout::RowMajor,
                        cblas::Transpose::None,
                        m,
                        n,
                        1.0,
                        a,
                        n,
                        x,
                        1,
                        0.0,
                        y,
                        1,
                    )
                };
                true
            }
            ElementKind::F32 => {
                let (a, x): (&[f32], &[f32]) = (bytemuck::cast_slice(a), bytemuck::cast_slice(x));
                let y: &mut [f32] = bytemuck::cast_slice_mut(y);
                // SAFETY: as for dgemv above.
                unsafe {
                    cblas::sgemv(
                        cblas::Layout::RowMajor,
                        cblas::Transpose::None,
                        m,
                        n,
                        1.0,
                        a,
                        n,
                        x,
                        1,
                        0.0,
                        y,
                        1,
                    )
                };
                true
            }
            _ => false,
        }
    }
}

/// Collective: `y = A x` for any 2-D partition of `A` and any 1-D partitions
/// of `x` and `y` (`A` is `m x n`, `x` has `n` elements, `y` `m`).
///
/// A convenience wrapper: makes a [`MatvecPlan`] and applies it once. For
/// repeated products with the same partitions make the plan once and call
/// [`MatvecPlan::apply`] (no re-planning, no staging window per call).
/// Bitwise reproducible: with `A` split by columns the partial sums are
/// added in rank order, never in arrival order — the same bits run to run
/// for the same partitions. Across rank counts the bits are the same only
/// when `A` is split by rows alone (each `y[i]` one local kernel call over
/// its whole row); with a column split the grouping of a row's terms
/// follows the column parts (see the crate docs, "Bitwise
/// reproducibility"). Block-cyclic operands take another path (no plan:
/// each rank multiplies its blocks by the whole of `x`, one allreduce of
/// `y`'s length sums the ranks' results in rank order). Either path opens
/// with one vote that checks the operands and agrees them between the
/// ranks.
///
/// Errors, on every rank (the failing rank's own error,
/// [`Error::PeerFailed`] on the others): wrong lengths of `x` or `y`
/// ([`Error::OperandShape`]); the element type or the partition of `a`,
/// `x` or `y` differing between ranks, or one rank calling `matvec` and
/// another [`matvec_transpose`] ([`Error::InvalidArgument`]); a failure of
/// any rank's part.
pub fn matvec<T: Element, C: OneSidedComm>(
    a: &DistArray<T, C, 2>,
    x: &DistArray<T, C, 1>,
    y: &mut DistArray<T, C, 1>,
) -> Result<()> {
    product(a, x, y, false)
}

/// Collective: `y = Aᵀ x` (`A` is `m x n`, `x` has `m` elements, `y` `n`),
/// for any partitions, like [`matvec`] (a [`MatvecPlan::new_transpose`]
/// applied once); the same errors.
pub fn matvec_transpose<T: Element, C: OneSidedComm>(
    a: &DistArray<T, C, 2>,
    x: &DistArray<T, C, 1>,
    y: &mut DistArray<T, C, 1>,
) -> Result<()> {
    product(a, x, y, true)
}

/// [`matvec`], or [`matvec_transpose`] with `transpose`.
fn product<T: Element, C: OneSidedComm>(
    a: &DistArray<T, C, 2>,
    x: &DistArray<T, C, 1>,
    y: &mut DistArray<T, C, 1>,
    transpose: bool,
) -> Result<()> {
    // the path is chosen from this rank's operands, so the vote that opens
    // either path agrees them first (their partitions, hence the path)
    let cyclic = any_block_cyclic(a, x, y);
    let local = check_operands(a, x, y, transpose).and_then(|()| {
        if cyclic {
            Ok(None)
        } else {
            MatvecPlan::layout(a, x, y, transpose).map(Some)
        }
    });
    match agree_operands(a, x, y, transpose, local)? {
        None => crate::matvec_cyclic::matvec_agreed(a, x, y, transpose),
        Some(laid) => MatvecPlan::finish(laid)?.apply_agreed(a, x, y),
    }
}

/// Whether any operand of a product is block-cyclic (no matvec plan).
fn any_block_cyclic<T: Element, C: OneSidedComm>(
    a: &DistArray<T, C, 2>,
    x: &DistArray<T, C, 1>,
    y: &DistArray<T, C, 1>,
) -> bool {
    a.partitioning().is_block_cyclic()
        || x.partitioning().is_block_cyclic()
        || y.partitioning().is_block_cyclic()
}

fn check_same_partition<T: Element, U: Element, C: OneSidedComm, const N: usize>(
    operation: &str,
    (xn, x): (&str, &DistArray<T, C, N>),
    (yn, y): (&str, &DistArray<U, C, N>),
) -> Result<()> {
    if x.partitioning() != y.partitioning() {
        return Err(Error::InvalidPartition(format!(
            "{operation}: {xn} and {yn} must be partitioned alike: {xn} has parts {:?}, {yn} has parts {:?}",
            (0..N)
                .map(|d| x.partitioning().part_sizes(d))
                .collect::<Vec<_>>(),
            (0..N)
                .map(|d| y.partitioning().part_sizes(d))
                .collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// Collective: the sum of one value per rank in the backend's fixed rank
/// order (every rank gets the same bits, run to run), voting on `local` in
/// the same collective: if any rank's `local` is an `Err`, every rank
/// returns an `Err` (its own, or [`Error::PeerFailed`]). Integers wrap.
/// One collective ([`allreduce_vote`]). This is how [`dot`] and the fused
/// operations combine their per-rank results (their vote also agrees the
/// operands' [`Summation`](crate::Summation) modes); solvers use it for dot
/// products they compute themselves with [`kernels`] (e.g.
/// [`kernels::stencil5_dot`]).
pub fn sum_over_ranks<T: Element, C: OneSidedComm>(comm: &C, local: Result<T>) -> Result<T> {
    allreduce_vote(comm, local, |a, b| T::combine(AccumulateOp::Sum, a, b))
}

/// Collective: `sum_i conj(x[i]) * y[i]` (conjugating `x` like BLAS
/// `zdotc`; plain `x · y` for real types): each rank's part with
/// [`kernels::dot`] (fixed order), the partial sums combined in a fixed
/// rank order, so every rank gets the same value, bitwise reproducible run
/// to run. `x` and `y` must be partitioned alike. One collective (an
/// allreduce carrying the success vote and the operands' modes).
///
/// With [`Summation::Exact`](crate::Summation::Exact) on `x` or `y` (and a
/// floating-point or complex `T`) the rounded products are summed exactly
/// and rounded once ([`crate::exact_sum`]): the same bits for any rank
/// count, partition and backend (complex: every real product rounded,
/// `f32`: exact products, so an exactly rounded dot). Two collectives
/// then: a vote of the ordered path's size agreeing the modes, and the
/// exact allreduce.
///
/// # Errors
///
/// On every rank: `x` and `y` partitioned unlike on some rank
/// ([`Error::InvalidPartition`] there, [`Error::PeerFailed`] elsewhere);
/// the [`Summation`](crate::Summation) mode of `x` or of `y` differing
/// between ranks ([`Error::InvalidArgument`]).
pub fn dot<T: Element, C: OneSidedComm, const N: usize>(
    x: &DistArray<T, C, N>,
    y: &DistArray<T, C, N>,
) -> Result<T> {
    // the check joins the allreduce's vote: a rank whose pair differs
    // fails every rank, none waits in an allreduce the others left; the
    // vote word carries the modes (which choose the path)
    let checked = check_same_partition("dot", ("x", x), ("y", y));
    let modes = Modes {
        operation: "dot",
        operands: [("x", x.summation()), ("y", y.summation())],
    };
    if x.sums_exactly() || y.sums_exactly() {
        return exact_dot(x, y, checked, &modes);
    }
    let local = checked.and_then(|_| {
        x.try_with_local(|lx| {
            if std::ptr::eq(x, y) {
                // one array: a second view of it would be a second lock on it
                Ok(kernels::dot(lx.as_slice(), lx.as_slice()))
            } else {
                y.with_local(|ly| kernels::dot(lx.as_slice(), ly.as_slice()))
            }
        })
    });
    sum_agreed(x.comm(), local, &modes)
}

/// Collective: [`sum_over_ranks`] whose vote also agrees the operands'
/// summation `modes` (in the vote word: the same one collective of the
/// same bytes). The ordered path of the reductions of `T`s; their exact
/// path opens with [`agree_exact`], the same collective.
pub(crate) fn sum_agreed<T: Element, C: OneSidedComm, const K: usize>(
    comm: &C,
    local: Result<T>,
    modes: &Modes<'_, K>,
) -> Result<T> {
    allreduce_vote_keyed(
        comm,
        local,
        modes.key(),
        |a, b| T::combine(AccumulateOp::Sum, a, b),
        || modes.differ(),
    )
}

/// Collective: the exact path's agreement of `modes` (and vote on
/// `local`), in the collective that [`sum_agreed`] makes on the ordered
/// path (a vote of a `T`'s payload): ranks that chose different paths all
/// refuse there. `local` if every rank succeeded in one mode. One small
/// collective more than the exact allreduce that follows.
pub(crate) fn agree_exact<T: Element, C: OneSidedComm, V, const K: usize>(
    comm: &C,
    local: Result<V>,
    modes: &Modes<'_, K>,
) -> Result<V> {
    vote_keyed_as::<T, _, _>(comm, local, modes.key(), || modes.differ())
}

/// Collective: the exact path of a reduction of `T`s: [`agree_exact`] of
/// the operands' `modes` (and of every rank's success), then every rank's
/// `parts` merged in the exact allreduce and rounded once.
pub(crate) fn sum_exact_agreed<T: Element, C: OneSidedComm, const K: usize>(
    comm: &C,
    parts: Result<ExactParts>,
    modes: &Modes<'_, K>,
) -> Result<T> {
    let parts = agree_exact::<T, _, _, K>(comm, parts, modes)?;
    Ok(exact_sum::allreduce_parts(comm, Ok(parts))?.round())
}

/// Collective: [`dot`] with [`Summation::Exact`](crate::exact_sum::Summation::Exact): every rank's products
/// summed into an [`ExactParts`], merged in one allreduce, rounded once.
/// `checked`: this rank's argument checks, which join the vote that agrees
/// the `modes` first.
fn exact_dot<T: Element, C: OneSidedComm, const N: usize>(
    x: &DistArray<T, C, N>,
    y: &DistArray<T, C, N>,
    checked: Result<()>,
    modes: &Modes<'_, 2>,
) -> Result<T> {
    let local = checked.and_then(|_| {
        x.try_with_local(|lx| {
            let mut acc = ExactParts::new();
            if std::ptr::eq(x, y) {
                acc.add_dot(lx.as_slice(), lx.as_slice());
            } else {
                y.with_local(|ly| acc.add_dot(lx.as_slice(), ly.as_slice()))?;
            }
            Ok(acc)
        })
    });
    sum_exact_agreed(x.comm(), local, modes)
}

/// Collective: the exact `v · v` of a local part that an update kernel has
/// just written (its own fixed-order dot ignored), merged over the ranks
/// once the operands' `modes` are agreed.
fn exact_self_dot<T: Element, C: OneSidedComm, const N: usize, const K: usize>(
    v: &DistArray<T, C, N>,
    updated: Result<()>,
    modes: &Modes<'_, K>,
) -> Result<T> {
    let local = updated.and_then(|_| {
        v.with_local(|l| {
            let mut acc = ExactParts::new();
            acc.add_dot(l.as_slice(), l.as_slice());
            acc
        })
    });
    sum_exact_agreed(v.comm(), local, modes)
}

/// Collective: the Euclidean norm `sqrt(sum |x[i]|²)`, as `f64`, scaled so that it
/// cannot overflow or underflow where the norm itself is representable
/// (like BLAS `dnrm2`; `8 x 1e200` gives `2.83e200`). Each rank computes
/// its part's norm with [`kernels::norm2`]; the per-rank norms are combined
/// in the backend's fixed rank order by the same kernel (the norm of two
/// norms), so the result is bitwise reproducible run to run. `+0.0` for an
/// empty vector. One collective.
///
/// With [`Summation::Exact`](crate::Summation::Exact) the squares are
/// summed exactly ([`ExactNorm`]: no overflow or underflow either), so the
/// result has the same bits for any rank count, partition and backend (a
/// vote agreeing the mode, then the exact allreduce). A mode that differs
/// between ranks is an [`Error::InvalidArgument`] on every rank.
pub fn norm2<T: Element, C: OneSidedComm, const N: usize>(x: &DistArray<T, C, N>) -> Result<f64> {
    let modes = Modes {
        operation: "norm2",
        operands: [("x", x.summation())],
    };
    if x.sums_exactly() {
        let local = x.with_local(|l| {
            let mut acc = ExactNorm::new();
            acc.add_elements(l.as_slice());
            acc
        });
        // the ordered path's collective: a vote of an f64
        let local = agree_exact::<f64, _, _, 1>(x.comm(), local, &modes)?;
        return Ok(exact_sum::allreduce_norm(x.comm(), Ok(local))?.norm());
    }
    let local = x.with_local(|l| kernels::norm2(l.as_slice()));
    allreduce_vote_keyed(
        x.comm(),
        local,
        modes.key(),
        |a, b| kernels::norm2(&[a, b]),
        || modes.differ(),
    )
}

/// Local (no communication): `y = alpha * x + beta * y` on every rank's
/// part ([`kernels::axpby`]: one pass); `x` and `y` must be partitioned
/// alike. Call `y.barrier()` before other ranks read `y` remotely.
pub fn axpby<T: Element, C: OneSidedComm, const N: usize>(
    alpha: T,
    x: &DistArray<T, C, N>,
    beta: T,
    y: &mut DistArray<T, C, N>,
) -> Result<()> {
    check_same_partition("axpby", ("x", x), ("y", y))?;
    x.with_local(|lx| {
        y.with_local_mut(|mut ly| kernels::axpby(alpha, lx.as_slice(), beta, ly.as_mut_slice()))
    })?
}

/// Collective: `y = y + alpha * x`, returning the new `y · y` — one pass
/// over each part ([`kernels::axpy_dot`]) and one combination over the
/// ranks; the result is bitwise what [`dot`]`(y, y)` returns after the
/// update. For a residual update that needs the residual's norm. Exact
/// (as [`dot`]) when `x` or `y` has [`Summation::Exact`](crate::Summation::Exact):
/// the update is the same, the dot product is then taken exactly in a
/// second pass over `y`. The modes are agreed as in [`dot`]: one that
/// differs between ranks is an [`Error::InvalidArgument`] on every rank,
/// returned after the update (made alike on every rank).
pub fn axpy_dot<T: Element, C: OneSidedComm, const N: usize>(
    alpha: T,
    x: &DistArray<T, C, N>,
    y: &mut DistArray<T, C, N>,
) -> Result<T> {
    let local = check_same_partition("axpy_dot", ("x", x), ("y", y)).and_then(|_| {
        x.with_local(|lx| {
            y.with_local_mut(|mut ly| kernels::axpy_dot(alpha, lx.as_slice(), ly.as_mut_slice()))
        })?
    });
    let modes = Modes {
        operation: "axpy_dot",
        operands: [("x", x.summation()), ("y", y.summation())],
    };
    if x.sums_exactly() || y.sums_exactly() {
        return exact_self_dot(y, local.map(|_| ()), &modes);
    }
    sum_agreed(x.comm(), local, &modes)
}

/// Collective: the conjugate-gradient update `x = x + alpha * p`,
/// `r = r - alpha * q`, returning the new `r · r` — one pass over each part
/// ([`kernels::cg_update`]) and one combination over the ranks (bitwise
/// what [`dot`]`(r, r)` returns after the update). All four arrays must be
/// partitioned alike; `p` and `q` may be the same array. Exact (as
/// [`dot`]) when any of the four has
/// [`Summation::Exact`](crate::Summation::Exact): the update is the same,
/// `r · r` is then taken exactly in a second pass over `r`. The four modes
/// are agreed as in [`dot`]: one that differs between ranks is an
/// [`Error::InvalidArgument`] on every rank, returned after the update
/// (made alike on every rank).
///
/// ```
/// use distarray::{linalg, threaded, DistArray};
/// threaded::run(2, |comm| -> distarray::Result<()> {
///     let p = DistArray::<f64, _, 1>::from_fn(comm.clone(), [5], |[i]| i as f64)?;
///     let q = DistArray::<f64, _, 1>::from_fn(comm.clone(), [5], |_| 1.0)?;
///     let mut x = p.similar::<f64>()?;
///     let mut r = DistArray::<f64, _, 1>::from_fn(comm.clone(), [5], |_| 3.0)?;
///     let rr = linalg::cg_update(2.0, &p, &q, &mut x, &mut r)?;
///     assert_eq!(rr, 5.0); // r = 1 everywhere
///     assert_eq!(x.to_vec()?, vec![0.0, 2.0, 4.0, 6.0, 8.0]);
///     Ok(())
/// })
/// .unwrap()
/// .into_iter()
/// .collect::<distarray::Result<Vec<_>>>()
/// .unwrap();
/// ```
pub fn cg_update<T: Element, C: OneSidedComm, const N: usize>(
    alpha: T,
    p: &DistArray<T, C, N>,
    q: &DistArray<T, C, N>,
    x: &mut DistArray<T, C, N>,
    r: &mut DistArray<T, C, N>,
) -> Result<T> {
    let local = check_same_partition("cg_update", ("p", p), ("q", q))
        .and_then(|_| check_same_partition("cg_update", ("p", p), ("x", x)))
        .and_then(|_| check_same_partition("cg_update", ("p", p), ("r", r)))
        .and_then(|_| {
            p.with_local(|lp| {
                let update = |lq: &[T]| {
                    x.with_local_mut(|mut lx| {
                        r.with_local_mut(|mut lr| {
                            kernels::cg_update(
                                alpha,
                                lp.as_slice(),
                                lq,
                                lx.as_mut_slice(),
                                lr.as_mut_slice(),
                            )
                        })
                    })?
                };
                if std::ptr::eq(p, q) {
                    update(lp.as_slice())
                } else {
                    q.with_local(|lq| update(lq.as_slice()))?
                }
            })?
        });
    let modes = Modes {
        operation: "cg_update",
        operands: [
            ("p", p.summation()),
            ("q", q.summation()),
            ("x", x.summation()),
            ("r", r.summation()),
        ],
    };
    if [
        p.sums_exactly(),
        q.sums_exactly(),
        x.sums_exactly(),
        r.sums_exactly(),
    ]
    .contains(&true)
    {
        return exact_self_dot(r, local.map(|_| ()), &modes);
    }
    sum_agreed(p.comm(), local, &modes)
}
