//! The distributed matrix-matrix product `C = op(A) op(B)` of 2-D arrays,
//! for any partitions of `A`, `B` and `C`.
//!
//! # Algorithm
//!
//! A one-sided SUMMA: each rank computes its own part of `C`, rows `I` and
//! columns `J`, as a sum over panels of the inner dimension, `K` split into
//! panels of [`PANEL`] columns at fixed global positions. For each panel it
//! reads the piece `op(A)[I, panel]` and `op(B)[panel, J]` it needs with
//! one-sided block reads (one RMA operation per owner: a strided block is
//! one `MPI_Get` with a vector datatype on MPI), and adds their product to
//! its part with the local kernel. SUMMA's panel broadcasts over process
//! rows and columns become reads by the ranks that need the panel; the
//! volume each rank receives is the same (its rows of `A` and its columns
//! of `B`, once), and no rank waits for another to send.
//!
//! The local kernel is `matrixmultiply`'s `dgemm` / `sgemm` for `f64` and
//! `f32` (blocked and vectorised, at run time AVX2/FMA where the CPU has
//! them), CBLAS `dgemm` / `sgemm` with the `blas` feature, and a plain Rust
//! loop for the integers and complex types.
//! Transposed operands cost nothing extra: the panels are read as stored
//! and handed to the kernel with swapped strides.
//!
//! # Reproducibility
//!
//! Every element of `C` adds its products panel by panel in the order of
//! `K`, each panel in the kernel's fixed order, and the panels sit at the
//! same global positions whatever the partition: the result has the **same
//! bits for any number of ranks and any partitions** of `A`, `B` and `C`
//! (on one machine: `matrixmultiply` chooses FMA or not by the CPU). With
//! the `blas` feature the bits are the BLAS library's: an optimised BLAS
//! may block the inner dimension differently for different shapes.
//!
//! ```
//! use distarray::{matmul, threaded, DistArray};
//!
//! let traces = threaded::run_ok(4, |comm| {
//!     // A = 1 + i (6 x 4), B = j (4 x 5), C = A B on a 2 x 2 grid
//!     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [6, 4], |[i, _]| (1 + i) as f64)?;
//!     let b = DistArray::<f64, _, 2>::from_fn(comm.clone(), [4, 5], |[_, j]| j as f64)?;
//!     let mut c = DistArray::<f64, _, 2>::with_grid(comm.clone(), [2, 2], [6, 5])?;
//!     matmul::matmul(&a, &b, &mut c)?;
//!     // C[i, j] = 4 (1 + i) j
//!     assert_eq!(c.get([5, 4])?, 4.0 * 6.0 * 4.0);
//!     c.sum()
//! })
//! .unwrap();
//! assert_eq!(traces[0], 4.0 * 21.0 * 10.0);
//! ```

use std::ops::Range;

use crate::array::DistArray;
use crate::block::Block;
use crate::collective::{agree_fingerprints, fingerprint, vote};
use crate::comm::{Element, ElementKind, OneSidedComm};
use crate::error::{Error, Result};

/// Width of the panels of the inner dimension (fixed global positions:
/// the summation order, and so the bits, do not depend on the partition).
pub const PANEL: usize = 256;

/// Whether an operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// As stored.
    N,
    /// Transposed (`Aᵀ`). For complex types, not conjugated.
    T,
}

impl Op {
    /// The shape of `op(X)` for `X` of `shape`.
    fn shape(self, shape: [usize; 2]) -> [usize; 2] {
        match self {
            Op::N => shape,
            Op::T => [shape[1], shape[0]],
        }
    }

    /// The block of `X` holding `op(X)[rows, cols]`.
    fn block(self, rows: Range<usize>, cols: Range<usize>) -> Block<2> {
        match self {
            Op::N => Block::new([rows, cols]),
            Op::T => Block::new([cols, rows]),
        }
    }
}

/// Collective: `C = A B`. See [`matmul_with`].
///
/// # Errors
///
/// Those of [`matmul_with`].
pub fn matmul<T: Element, C: OneSidedComm>(
    a: &DistArray<T, C, 2>,
    b: &DistArray<T, C, 2>,
    c: &mut DistArray<T, C, 2>,
) -> Result<()> {
    matmul_with(Op::N, a, Op::N, b, c)
}

/// Collective: `C = op_a(A) op_b(B)` for `op(A)` of `m x k`, `op(B)` of
/// `k x n` and `C` of `m x n`, each with any partition (the
/// [module docs](self) give the algorithm). `A` and `B` must be complete
/// (their writers' epochs closed): the vote at the start orders them, and
/// the vote at the end makes `C` complete on every rank. `C` may not be
/// `A` or `B` (the borrow checker sees to it).
///
/// # Errors
///
/// On every rank (the failing rank's own error, [`Error::PeerFailed`] on
/// the others): [`Error::ShapeMismatch`] if the shapes do not fit;
/// [`Error::InvalidArgument`] if `op_a`, `op_b` or the partition of `a`,
/// `b` or `c` differ between ranks (agreed in the vote at the start);
/// errors of the reads (voted).
pub fn matmul_with<T: Element, C: OneSidedComm>(
    op_a: Op,
    a: &DistArray<T, C, 2>,
    op_b: Op,
    b: &DistArray<T, C, 2>,
    c: &mut DistArray<T, C, 2>,
) -> Result<()> {
    let [m, k] = op_a.shape(a.shape());
    let [kb, n] = op_b.shape(b.shape());
    let shapes = if k != kb || c.shape() != [m, n] {
        Err(Error::ShapeMismatch {
            expected: vec![m, kb, n],
            found: vec![m, k, c.shape()[0], c.shape()[1]],
        })
    } else {
        Ok(())
    };
    let comm = c.comm().clone();
    // A and B complete: their writers' epochs end before anyone reads; and
    // every rank checked the shapes and passed the same operations on
    // arrays partitioned alike (a rank whose shapes fail, or whose arrays
    // differ, must not leave the others in this collective alone)
    let key = fingerprint(&(
        op_a,
        op_b,
        a.partitioning(),
        b.partitioning(),
        c.partitioning(),
    ));
    agree_fingerprints(&comm, shapes.map(|()| ((), key)), || {
        Error::InvalidArgument(
            "matmul: the operations or the partition of a, b or c differ between ranks (every \
             rank must pass the same operations and arrays partitioned alike to this collective \
             call)"
                .into(),
        )
    })?;
    let local = local_product(op_a, a, op_b, b, c);
    vote(&comm, local)
}

/// This rank's part of `C`: the panels read and multiplied.
fn local_product<T: Element, C: OneSidedComm>(
    op_a: Op,
    a: &DistArray<T, C, 2>,
    op_b: Op,
    b: &DistArray<T, C, 2>,
    c: &DistArray<T, C, 2>,
) -> Result<()> {
    let me = c.comm().rank();
    // C's part: one box, or the blocks of a block-cyclic layout, each
    // computed on its own and stored at its place in the part
    let pieces = c.partitioning().part_pieces(me)?;
    if let [([rows, cols], _)] = pieces.as_slice() {
        let acc = piece_product(op_a, a, op_b, b, rows.clone(), cols.clone())?;
        return c.with_local_mut(|mut l| l.as_mut_slice().copy_from_slice(&acc));
    }
    let width = c.local_shape()[1];
    let mut part = vec![T::ZERO; c.local_shape().iter().product()];
    for ([rows, cols], [r0, c0]) in pieces {
        let nj = cols.len();
        let acc = piece_product(op_a, a, op_b, b, rows, cols)?;
        for (i, row) in acc.chunks_exact(nj.max(1)).enumerate() {
            let at = (r0 + i) * width + c0;
            part[at..at + nj].copy_from_slice(row);
        }
    }
    c.with_local_mut(|mut l| l.as_mut_slice().copy_from_slice(&part))
}

/// The `rows x cols` piece of `C = op_a(A) op_b(B)`, row-major: the
/// panels of `A` and `B` it needs read with `get_block` and multiplied.
fn piece_product<T: Element, C: OneSidedComm>(
    op_a: Op,
    a: &DistArray<T, C, 2>,
    op_b: Op,
    b: &DistArray<T, C, 2>,
    rows: Range<usize>,
    cols: Range<usize>,
) -> Result<Vec<T>> {
    let k = op_a.shape(a.shape())[1];
    let (mi, nj) = (rows.len(), cols.len());
    let mut acc = vec![T::ZERO; mi * nj];
    if mi > 0 && nj > 0 && k > 0 {
        let panels: Vec<Range<usize>> = (0..k)
            .step_by(PANEL)
            .map(|s| s..(s + PANEL).min(k))
            .collect();
        let mut pa = vec![T::ZERO; mi * PANEL.min(k)];
        let mut pb = vec![T::ZERO; PANEL.min(k) * nj];
        for p in &panels {
            let kp = p.len();
            let (pa, pb) = (&mut pa[..mi * kp], &mut pb[..kp * nj]);
            a.get_block_into(&op_a.block(rows.clone(), p.clone()), pa)?;
            b.get_block_into(&op_b.block(p.clone(), cols.clone()), pb)?;
            // strides (row, column) of op(A)'s panel (mi x kp) and op(B)'s
            // (kp x nj) as read: transposes swap them
            let sa = match op_a {
                Op::N => (kp, 1),
                Op::T => (1, mi),
            };
            let sb = match op_b {
                Op::N => (nj, 1),
                Op::T => (1, kp),
            };
            gemm_acc(mi, kp, nj, pa, sa, pb, sb, &mut acc);
        }
    }
    Ok(acc)
}

/// The local kernel: `c += a b` for row-major `a` (`m x k`), `b` (`k x n`)
/// and `c` (`m x n`), as [`matmul`] uses it on each panel (the one-rank
/// floor the benchmarks compare with).
///
/// ```
/// let (a, b) = ([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 0.0, 1.0]);
/// let mut c = [1.0; 4];
/// distarray::matmul::gemm_local(2, 2, 2, &a, &b, &mut c);
/// assert_eq!(c, [2.0, 3.0, 4.0, 5.0]);
/// ```
///
/// # Panics
///
/// If the slices are shorter than the shapes say, or `c` is not `m x n`.
pub fn gemm_local<T: Element>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T]) {
    gemm_acc(m, k, n, a, (k, 1), b, (n, 1), c);
}

/// `c += a b` for `a` of `m x k` (strides `sa`), `b` of `k x n` (strides
/// `sb`) and `c` of `m x n` row-major: `matrixmultiply` for `f64` / `f32`,
/// a fixed-order loop (the products of each element added in the order of
/// `k`) for the other types.
#[allow(clippy::too_many_arguments)]
fn gemm_acc<T: Element>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    sa: (usize, usize),
    b: &[T],
    sb: (usize, usize),
    c: &mut [T],
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() == m * n,
        "gemm operands"
    );
    assert!(
        (m == 0 || k == 0 || (m - 1) * sa.0 + (k - 1) * sa.1 < a.len())
            && (k == 0 || n == 0 || (k - 1) * sb.0 + (n - 1) * sb.1 < b.len()),
        "gemm strides inside the operands"
    );
    #[cfg(feature = "blas")]
    if blas::gemm_acc(m, k, n, a, sa, b, sb, c) {
        return;
    }
    let stride = |s: usize| s as isize;
    // the same call for f64 and f32, on the element type's own slices
    macro_rules! gemm {
        ($t:ty, $f:path) => {{
            let (a, b) = (
                bytemuck::cast_slice::<T, $t>(a),
                bytemuck::cast_slice::<T, $t>(b),
            );
            let c = bytemuck::cast_slice_mut::<T, $t>(c);
            // SAFETY: `a` holds `op(A)`'s `m x k` values at `i * sa.0 + l *
            // sa.1` and `b` `op(B)`'s `k x n` at `l * sb.0 + j * sb.1`, all
            // inside the slices (asserted above); `c` is `m x n` row-major
            // (stride `n`, 1), exclusively borrowed and not overlapping
            // `a` or `b`.
            unsafe {
                $f(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    stride(sa.0),
                    stride(sa.1),
                    b.as_ptr(),
                    stride(sb.0),
                    stride(sb.1),
                    1.0,
                    c.as_mut_ptr(),
                    stride(n),
                    1,
                )
            }
        }};
    }
    match T::KIND {
        ElementKind::F64 => gemm!(f64, matrixmultiply::dgemm),
        ElementKind::F32 => gemm!(f32, matrixmultiply::sgemm),
        _ => {
            for i in 0..m {
                let row = &mut c[i * n..(i + 1) * n];
                for l in 0..k {
                    let x = a[i * sa.0 + l * sa.1];
                    for (j, cj) in row.iter_mut().enumerate() {
                        *cj = *cj + x * b[l * sb.0 + j * sb.1];
                    }
                }
            }
        }
    }
}

#[cfg(feature = "blas")]
mod blas {
    use crate::comm::{Element, ElementKind};

    /// CBLAS `?gemm` (`c += a b`, operands as in [`super::gemm_acc`], each
    /// stored with unit stride along one dimension) for `f64` / `f32`;
    /// `false` for other element types or sizes beyond `i32`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_acc<T: Element>(
        m: usize,
        k: usize,
        n: usize,
        a: &[T],
        sa: (usize, usize),
        b: &[T],
        sb: (usize, usize),
        c: &mut [T],
    ) -> bool {
        // (transpose flag, leading dimension) of an operand read row-major
        let layout = |s: (usize, usize), cols: usize| match s {
            (ld, 1) if ld >= cols.max(1) => Some((cblas::Transpose::None, ld)),
            (1, ld) => Some((cblas::Transpose::Ordinary, ld)),
            _ => None,
        };
        let (Some((ta, lda)), Some((tb, ldb))) = (layout(sa, k), layout(sb, n)) else {
            return false;
        };
        let int = |x: usize| i32::try_from(x).ok();
        let (Some(m), Some(k), Some(n), Some(lda), Some(ldb)) =
            (int(m), int(k), int(n), int(lda), int(ldb))
        else {
            return false;
        };
        if m == 0 || n == 0 || k == 0 {
            return true;
        }
        // the same call for f64 and f32, on the element type's own slices
        macro_rules! gemm {
            ($t:ty, $f:path) => {{
                let (a, b): (&[$t], &[$t]) = (bytemuck::cast_slice(a), bytemuck::cast_slice(b));
                let c: &mut [$t] = bytemuck::cast_slice_mut(c);
                // SAFETY: `a` and `b` hold op(A) (m x k) and op(B) (k x n)
                // with the leading dimensions given, `c` is m x n row-major
                // with leading dimension n (checked by the caller): every
                // access of the gemm is in bounds.
                unsafe {
                    $f(
                        cblas::Layout::RowMajor,
                        ta,
                        tb,
                        m,
                        n,
                        k,
                        1.0,
                        a,
                        lda.max(1),
                        b,
                        ldb.max(1),
                        1.0,
                        c,
                        n,
                    )
                };
                true
            }};
        }
        match T::KIND {
            ElementKind::F64 => gemm!(f64, cblas::dgemm),
            ElementKind::F32 => gemm!(f32, cblas::sgemm),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn local_kernel_with_transposed_strides() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|x| (x % 5) as f64).collect();
        let b: Vec<f64> = (0..k * n).map(|x| (x % 3) as f64 - 1.0).collect();
        let want = naive(m, k, n, &a, &b);
        let mut c = vec![0.0; m * n];
        gemm_acc(m, k, n, &a, (k, 1), &b, (n, 1), &mut c);
        assert_eq!(c, want);
        // the transposes stored, read with swapped strides
        let at: Vec<f64> = (0..k * m).map(|x| a[(x % m) * k + x / m]).collect();
        let bt: Vec<f64> = (0..n * k).map(|x| b[(x % k) * n + x / k]).collect();
        let mut c2 = vec![0.0; m * n];
        gemm_acc(m, k, n, &at, (1, m), &bt, (1, k), &mut c2);
        assert_eq!(c2, want);
        // integers through the plain loop, accumulating
        let ai: Vec<i64> = a.iter().map(|&x| x as i64).collect();
        let bi: Vec<i64> = b.iter().map(|&x| x as i64).collect();
        let mut ci = vec![1i64; m * n];
        gemm_acc(m, k, n, &ai, (k, 1), &bi, (n, 1), &mut ci);
        let wi: Vec<i64> = want.iter().map(|&x| x as i64 + 1).collect();
        assert_eq!(ci, wi);
    }
}
