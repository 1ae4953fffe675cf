//! Axis permutation of N-dimensional arrays:
//! [`DistArray::permute_into`] (`out = self` with its axes reordered, like
//! NumPy's `a.transpose(axes)` or Julia's `permutedims`) and
//! [`DistArray::permute`] (into a new array), between any two
//! distributions of the two arrays — contiguous or block-cyclic.
//!
//! # Communication
//!
//! Every rank pulls the box of `self` that its part of `out` needs: one
//! [`get_block`](DistArray::get_block) per piece of its part (one piece for
//! contiguous distributions), which reads each owner with one operation
//! per contiguous run (on MPI one operation per owner, with a derived
//! datatype), then permutes the values into its part locally. Two votes:
//! before (so that `self` is complete everywhere before anyone reads it)
//! and after (nobody changes `self` before every rank has read it; an
//! error on any rank is an error on every rank). For the 2-D transpose in
//! a loop, [`TransposePlan`](crate::TransposePlan) sends one message per
//! rank pair and needs no vote.
//!
//! ```
//! use distarray::{threaded, DistArray};
//! threaded::run_ok(3, |comm| {
//!     // a 2 x 3 x 4 array, split along its first axis
//!     let a = DistArray::<i32, _, 3>::from_fn(comm.clone(), [2, 3, 4], |[i, j, k]| (100 * i + 10 * j + k) as i32)?;
//!     // axes (2, 0, 1): out[k, i, j] = a[i, j, k]
//!     let p = a.permute([2, 0, 1])?;
//!     assert_eq!(p.shape(), [4, 2, 3]);
//!     assert_eq!(p.get([3, 1, 2])?, 123);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::ops::Range;

use crate::array::DistArray;
use crate::block::Block;
use crate::collective::{agree_fingerprints, fingerprint};
use crate::comm::{Element, OneSidedComm};
use crate::epoch::vote;
use crate::error::{Error, Result};

/// `Ok` if `axes` is a permutation of `0..N` and `out` has `a`'s shape
/// permuted by it, on a communicator of the same size.
fn check<T: Element, C: OneSidedComm, const N: usize>(
    a: &DistArray<T, C, N>,
    out: &DistArray<T, C, N>,
    axes: [usize; N],
) -> Result<()> {
    let mut seen = [false; N];
    for &x in &axes {
        if x >= N || std::mem::replace(&mut seen[x], true) {
            return Err(Error::InvalidArgument(format!(
                "permute: the axes {axes:?} are not a permutation of 0..{N}"
            )));
        }
    }
    let (ca, cb) = (a.comm(), out.comm());
    if ca.size() != cb.size() || ca.rank() != cb.rank() {
        return Err(Error::InvalidArgument(
            "permute: the arrays live on different communicators".into(),
        ));
    }
    let shape = a.shape();
    let want: [usize; N] = std::array::from_fn(|d| shape[axes[d]]);
    if out.shape() != want {
        return Err(Error::OperandShape {
            operation: "permute_into",
            operand: "out",
            expected: want.to_vec(),
            found: out.shape().to_vec(),
            rule: format!("out's axis d has the length of the source's axis axes[d] ({axes:?})")
                .into(),
        });
    }
    Ok(())
}

impl<T: Element, C: OneSidedComm, const N: usize> DistArray<T, C, N> {
    /// Collective: `out[i] = self[j]` with `j[axes[d]] = i[d]` — `out`
    /// is `self` with its axes reordered (`out` has shape `[n[axes[0]],
    /// n[axes[1]], ...]`), for any distributions of the two arrays. See
    /// the [module docs](crate::permute) for the communication.
    ///
    /// Errors, on every rank: `axes` is not a permutation of `0..N`
    /// ([`Error::InvalidArgument`]), `out` has the wrong shape
    /// ([`Error::OperandShape`]), `axes`, the element type or the
    /// partition of either array differ between ranks
    /// ([`Error::InvalidArgument`]), a failure of any rank's part.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Error};
    /// threaded::run_ok(4, |comm| {
    ///     let a = DistArray::<f64, _, 3>::from_fn(comm.clone(), [4, 3, 2], |[i, j, k]| (i + 10 * j + 100 * k) as f64)?;
    ///     // out on a 2 x 2 x 1 grid: out[k, j, i] = a[i, j, k]
    ///     let mut out = DistArray::<f64, _, 3>::with_grid(comm.clone(), [2, 2, 1], [2, 3, 4])?;
    ///     a.permute_into(&mut out, [2, 1, 0])?;
    ///     assert_eq!(out.get([1, 2, 3])?, 123.0);
    ///     // not a permutation: refused on every rank
    ///     assert!(matches!(a.permute_into(&mut out, [2, 2, 0]), Err(Error::InvalidArgument(_))));
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn permute_into(&self, out: &mut DistArray<T, C, N>, axes: [usize; N]) -> Result<()> {
        // also the barrier that makes self complete everywhere before
        // anyone reads it
        let key = fingerprint(&(axes, T::KIND, self.partitioning(), out.partitioning()));
        agree_fingerprints(
            self.comm(),
            check(self, out, axes).map(|()| ((), key)),
            || {
                Error::InvalidArgument(
                "permute_into: the axes, element type or partition of the arrays differ between \
                 ranks (every rank must pass the same axes and arrays partitioned alike to this \
                 collective call)"
                    .into(),
            )
            },
        )?;
        self.permute_agreed(out, axes)
    }

    /// Collective: [`permute_into`](Self::permute_into) once every rank
    /// checked `out` and `axes` and agreed on them, in a vote that is also
    /// the barrier after which `self` is complete everywhere.
    pub(crate) fn permute_agreed(
        &self,
        out: &mut DistArray<T, C, N>,
        axes: [usize; N],
    ) -> Result<()> {
        let pieces = out.partitioning().part_pieces(out.comm().rank());
        let pulled = pieces.and_then(|pieces| {
            out.try_with_local_mut(|mut l| {
                let part_shape: [usize; N] = std::array::from_fn(|d| l.shape()[d]);
                for (global, local) in &pieces {
                    // the box of self that this piece needs
                    let mut src: [Range<usize>; N] = std::array::from_fn(|_| 0..0);
                    for d in 0..N {
                        src[axes[d]] = global[d].clone();
                    }
                    if src.iter().any(|r| r.is_empty()) {
                        continue;
                    }
                    let values = self.get_block(&Block::new(src.clone()))?;
                    let bs: [usize; N] = std::array::from_fn(|d| global[d].len());
                    // a step along out's axis d is a step along the
                    // source box's axis axes[d]
                    let src_shape = src.map(|r| r.len());
                    let step: [usize; N] =
                        std::array::from_fn(|d| src_shape[axes[d] + 1..].iter().product::<usize>());
                    permute_copy(
                        values.as_slice(),
                        step,
                        l.as_mut_slice(),
                        part_shape,
                        *local,
                        bs,
                    );
                }
                Ok(())
            })
        });
        // nobody changes self before every rank has read it
        vote(self.comm(), pulled)
    }

    /// Collective: `self` with its axes reordered by `axes` (see
    /// [`permute_into`](Self::permute_into)) as a new array, split over
    /// its first dimension (the default partition), with this array's
    /// [`Summation`](crate::Summation) mode.
    pub fn permute(&self, axes: [usize; N]) -> Result<Self> {
        let shape = self.shape();
        // an invalid `axes` is reported by permute_into, on every rank
        let permuted: [usize; N] = std::array::from_fn(|d| shape[axes[d].min(N - 1)]);
        let mut out =
            DistArray::new(self.comm().clone(), permuted)?.with_summation(self.summation());
        self.permute_into(&mut out, axes)?;
        Ok(out)
    }
}

/// Copies the values of the box `bs` (out's shape of the piece) into
/// `dst` (a part of shape `part_shape`, the piece at `at`), reading them
/// from `src` with the strides `step` (`step[d]`: how far one step along
/// out's axis `d` moves in `src`), row by row of `dst`.
fn permute_copy<T: Copy, const N: usize>(
    src: &[T],
    step: [usize; N],
    dst: &mut [T],
    part_shape: [usize; N],
    at: [usize; N],
    bs: [usize; N],
) {
    if N == 0 || bs.contains(&0) {
        return;
    }
    let dstride: [usize; N] = std::array::from_fn(|d| part_shape[d + 1..].iter().product());
    let (inner, si) = (bs[N - 1], step[N - 1]);
    let mut idx = [0usize; N];
    loop {
        let s0: usize = (0..N - 1).map(|d| idx[d] * step[d]).sum();
        let d0: usize = (0..N).map(|d| (at[d] + idx[d]) * dstride[d]).sum();
        let row = &mut dst[d0..d0 + inner];
        if si == 1 {
            row.copy_from_slice(&src[s0..s0 + inner]);
        } else {
            for (k, v) in row.iter_mut().enumerate() {
                *v = src[s0 + k * si];
            }
        }
        // the odometer over out's axes 0 .. N - 1
        let mut d = N - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < bs[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}
