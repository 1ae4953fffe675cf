//! `y = A x` and `y = Aᵀ x` when any of the three arrays is block-cyclic
//! (the [`MatvecPlan`](crate::linalg::MatvecPlan) needs one box per rank):
//! every rank reads the whole of `x` (one `get` per rank), multiplies each
//! of its blocks of `A` by the matching piece of `x` into a full-length
//! partial result, and the partial results are summed over the ranks in
//! rank order (one allreduce of `y`'s length, carrying the vote); each rank
//! then keeps its pieces of `y`. Meant for dense matrices, where the
//! `m · n / P` multiply-adds dwarf the `O(m + n)` vectors moved.
//!
//! Reproducible run to run for the same distributions and rank count
//! (each row's terms are added block by block in column order, the ranks'
//! sums in rank order); across distributions the grouping of a row's
//! terms changes, as for a column split.

use crate::array::DistArray;
use crate::collective::allreduce_slice_vote;
use crate::comm::{AccumulateOp, Element, OneSidedComm};
use crate::epoch::vote;
use crate::error::Result;
use crate::kernels;

/// `y = A x`, or `y = Aᵀ x` with `transpose`, for any distributions (see
/// the [module docs](self)), once every rank agreed on the operands
/// ([`agree_operands`](crate::matvec_plan::agree_operands), whose vote is
/// also the barrier that makes `x` complete everywhere before anyone
/// reads it).
pub(crate) fn matvec_agreed<T: Element, C: OneSidedComm>(
    a: &DistArray<T, C, 2>,
    x: &DistArray<T, C, 1>,
    y: &mut DistArray<T, C, 1>,
    transpose: bool,
) -> Result<()> {
    let [m, n] = a.shape();
    let n_out = if transpose { n } else { m };
    let add = |s: T, v: T| T::combine(AccumulateOp::Sum, s, v);
    let me = a.comm().rank();
    let partial = x.to_vec().and_then(|xs| {
        let pieces = a.partitioning().part_pieces(me)?;
        let mut acc = vec![T::ZERO; n_out];
        a.with_local(|l| {
            let la = l.as_slice();
            let width = l.shape()[1];
            for ([rows, cols], [r0, c0]) in &pieces {
                for (k, i) in rows.clone().enumerate() {
                    let at = (r0 + k) * width + c0;
                    let row = &la[at..at + cols.len()];
                    if transpose {
                        // y[j] += A[i, j] x[i], rows in order
                        let xi = xs[i];
                        for (s, &v) in acc[cols.clone()].iter_mut().zip(row) {
                            *s = add(*s, T::combine(AccumulateOp::Prod, v, xi));
                        }
                    } else {
                        acc[i] = add(acc[i], kernels::dot(row, &xs[cols.clone()]));
                    }
                }
            }
        })?;
        Ok(acc)
    });
    let mut sum = match &partial {
        Ok(v) => v.clone(),
        Err(_) => vec![T::ZERO; n_out],
    };
    allreduce_slice_vote(a.comm(), partial.map(|_| ()), &mut sum, add)?;
    let kept = y.partitioning().part_pieces(me).and_then(|pieces| {
        y.with_local_mut(|mut l| {
            let l = l.as_mut_slice();
            for ([g], [at]) in &pieces {
                l[*at..at + g.len()].copy_from_slice(&sum[g.clone()]);
            }
        })
    });
    vote(a.comm(), kept)
}
