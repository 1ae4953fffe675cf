//! Distributed linear algebra on local kernels: [`matvec`] (and its
//! transpose), [`dot`], [`norm2`] and [`axpby`].
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
use crate::collective::allreduce_vote;
use crate::comm::{AccumulateOp, Element, OneSidedComm};
use crate::error::{Error, Result};
pub use crate::matvec_plan::{MatvecPlan, Reduction, TREE_BYTES};

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
/// added in rank order, never in arrival order.
pub fn matvec<T: Element, C: OneSidedComm>(
    a: &DistArray<T, C, 2>,
    x: &DistArray<T, C, 1>,
    y: &mut DistArray<T, C, 1>,
) -> Result<()> {
    MatvecPlan::new(a, x, y)?.apply(a, x, y)
}

/// Collective: `y = Aᵀ x` (`A` is `m x n`, `x` has `m` elements, `y` `n`),
/// for any partitions, like [`matvec`] (a [`MatvecPlan::new_transpose`]
/// applied once).
pub fn matvec_transpose<T: Element, C: OneSidedComm>(
    a: &DistArray<T, C, 2>,
    x: &DistArray<T, C, 1>,
    y: &mut DistArray<T, C, 1>,
) -> Result<()> {
    MatvecPlan::new_transpose(a, x, y)?.apply(a, x, y)
}

fn check_same_partition<T: Element, U: Element, C: OneSidedComm>(
    operation: &str,
    x: &DistArray<T, C, 1>,
    y: &DistArray<U, C, 1>,
) -> Result<()> {
    if x.partitioning() != y.partitioning() {
        return Err(Error::InvalidPartition(format!(
            "{operation}: x and y must be partitioned alike: x has parts {:?}, y has parts {:?}",
            x.partitioning().part_sizes(0),
            y.partitioning().part_sizes(0)
        )));
    }
    Ok(())
}

/// Collective: `sum_i conj(x[i]) * y[i]` (conjugating `x` like BLAS
/// `zdotc`; plain `x · y` for real types), partial sums combined in a fixed
/// rank order: every rank gets the same value, bitwise reproducible run to
/// run. `x` and `y` must be partitioned alike. One collective (an allreduce
/// carrying the success vote).
pub fn dot<T: Element, C: OneSidedComm>(
    x: &DistArray<T, C, 1>,
    y: &DistArray<T, C, 1>,
) -> Result<T> {
    check_same_partition("dot", x, y)?;
    // wrapping for integers, like accumulate(Sum)
    let add = |acc: T, v: T| T::combine(AccumulateOp::Sum, acc, v);
    let local = x.try_with_local(|lx| {
        if std::ptr::eq(x, y) {
            // one array: a second view of it would be a second lock on it
            Ok(lx
                .as_slice()
                .iter()
                .fold(T::ZERO, |s, &v| add(s, v.conj() * v)))
        } else {
            y.with_local(|ly| {
                lx.as_slice()
                    .iter()
                    .zip(ly.as_slice())
                    .fold(T::ZERO, |s, (&a, &b)| add(s, a.conj() * b))
            })
        }
    });
    allreduce_vote(x.comm(), local, add)
}

/// Collective: the Euclidean norm `sqrt(sum |x[i]|²)`, as `f64`. One
/// collective; bitwise reproducible like [`dot`].
pub fn norm2<T: Element, C: OneSidedComm>(x: &DistArray<T, C, 1>) -> Result<f64> {
    let local = x.with_local(|l| l.as_slice().iter().map(|&v| v.abs2()).sum::<f64>());
    Ok(allreduce_vote(x.comm(), local, |a, b| a + b)?.sqrt())
}

/// Local (no communication): `y = alpha * x + beta * y` on every rank's
/// part; `x` and `y` must be partitioned alike. Call `sync` before other
/// ranks read `y` remotely.
pub fn axpby<T: Element, C: OneSidedComm>(
    alpha: T,
    x: &DistArray<T, C, 1>,
    beta: T,
    y: &mut DistArray<T, C, 1>,
) -> Result<()> {
    check_same_partition("axpby", x, y)?;
    x.with_local(|lx| {
        y.with_local_mut(|mut ly| {
            for (b, &a) in ly.as_mut_slice().iter_mut().zip(lx.as_slice()) {
                *b = alpha * a + beta * *b;
            }
        })
    })?
}
