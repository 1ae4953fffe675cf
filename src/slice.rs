//! [`Slice`]: a patch of a distributed array that remembers where its data
//! lives (Julia's `A[1:3, :]`, Global Arrays' patches). Made with
//! [`DistArray::slice`] and the [`s!`](crate::s) macro; the plan (which runs
//! of which rank's memory the patch covers) is computed once, and every
//! read and write reuses it: one RMA call per contiguous run per rank, like
//! blocks.
//!
//! ```
//! use distarray::{s, threaded, AccumulateOp, DistArray, OneSidedComm};
//! threaded::run_ok(3, |comm| {
//!     let a = DistArray::<i64, _, 2>::from_fn(comm.clone(), [6, 4], |[i, j]| (10 * i + j) as i64)?;
//!     let rows = a.slice(s![1..3, ..])?; // rows 1 and 2, every column
//!     assert_eq!(rows.shape(), [2, 4]);
//!     let patch = rows.read()?; // a GlobalBlock: global indices
//!     assert_eq!(patch.get([2, 3])?, 23);
//!     let corner = a.slice(s![4.., 2])?; // rows 4.., column 2
//!     assert_eq!(corner.read()?.as_slice(), &[42, 52]);
//!     a.barrier()?;
//!     if comm.rank() == 0 {
//!         corner.write(&[-1, -2])?;
//!     }
//!     a.barrier()?;
//!     assert_eq!(a.get([5, 2])?, -2);
//!     a.barrier()?;
//!     corner.accumulate(&[1, 1], AccumulateOp::Sum)?; // every rank adds 1
//!     a.barrier()?;
//!     assert_eq!(a.get([4, 2])?, -1 + 3);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::ops::{Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};

use crate::array::DistArray;
use crate::block::{Block, GlobalBlock, TargetRuns};
use crate::comm::{AccumulateOp, Element, OneSidedComm};
use crate::error::{Error, Result};

/// One dimension of a slice: a range with optional ends, or one index.
/// Made from Rust's range expressions and `usize` (see [`s!`](crate::s)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SliceRange {
    start: usize,
    end: Option<usize>,
}

impl SliceRange {
    /// The range in a dimension of extent `n`; `None` unless
    /// `start <= end <= n`.
    pub fn resolve(self, n: usize) -> Option<Range<usize>> {
        let end = self.end.unwrap_or(n);
        (self.start <= end && end <= n).then_some(self.start..end)
    }
}

impl From<Range<usize>> for SliceRange {
    fn from(r: Range<usize>) -> Self {
        SliceRange {
            start: r.start,
            end: Some(r.end),
        }
    }
}

impl From<RangeInclusive<usize>> for SliceRange {
    fn from(r: RangeInclusive<usize>) -> Self {
        SliceRange {
            start: *r.start(),
            end: Some(r.end().saturating_add(1)),
        }
    }
}

impl From<RangeFrom<usize>> for SliceRange {
    fn from(r: RangeFrom<usize>) -> Self {
        SliceRange {
            start: r.start,
            end: None,
        }
    }
}

impl From<RangeTo<usize>> for SliceRange {
    fn from(r: RangeTo<usize>) -> Self {
        SliceRange {
            start: 0,
            end: Some(r.end),
        }
    }
}

impl From<RangeToInclusive<usize>> for SliceRange {
    fn from(r: RangeToInclusive<usize>) -> Self {
        SliceRange {
            start: 0,
            end: Some(r.end.saturating_add(1)),
        }
    }
}

impl From<RangeFull> for SliceRange {
    fn from(_: RangeFull) -> Self {
        SliceRange {
            start: 0,
            end: None,
        }
    }
}

impl From<usize> for SliceRange {
    /// One index: a range of length 1 (the dimension is kept).
    fn from(i: usize) -> Self {
        SliceRange {
            start: i,
            end: Some(i.saturating_add(1)),
        }
    }
}

/// `s![1..3, .., 4]`: one [`SliceRange`] per dimension, from range
/// expressions and indices, for [`DistArray::slice`] (like ndarray's `s!`;
/// an index keeps its dimension, with length 1).
#[macro_export]
macro_rules! s {
    ($($r:expr),+ $(,)?) => {
        [$($crate::slice::SliceRange::from($r)),+]
    };
}

/// A patch of a [`DistArray`] with its plan; see the [module docs](self).
pub struct Slice<'a, T: Element, C: OneSidedComm, const N: usize> {
    array: &'a DistArray<T, C, N>,
    block: Block<N>,
    plan: Vec<TargetRuns<N>>,
}

impl<T: Element, C: OneSidedComm, const N: usize> DistArray<T, C, N> {
    /// A patch of this array (one-sided, no communication): `ranges` from
    /// [`s!`](crate::s), e.g. `a.slice(s![r0..r1, ..])`. Errors: a range
    /// past the shape or ending before it starts.
    pub fn slice(&self, ranges: [SliceRange; N]) -> Result<Slice<'_, T, C, N>> {
        let shape = self.shape();
        let mut resolved: [Range<usize>; N] = std::array::from_fn(|_| 0..0);
        for d in 0..N {
            resolved[d] = ranges[d]
                .resolve(shape[d])
                .ok_or_else(|| Error::InvalidBlock {
                    ranges: ranges
                        .iter()
                        .zip(shape)
                        .map(|(r, n)| (r.start, r.end.unwrap_or(n)))
                        .collect(),
                    shape: shape.to_vec(),
                })?;
        }
        self.patch(Block::new(resolved))
    }

    /// A patch of this array covering `block` (see [`DistArray::slice`]).
    pub fn patch(&self, block: Block<N>) -> Result<Slice<'_, T, C, N>> {
        let plan = block.plan(self.partitioning())?;
        Ok(Slice {
            array: self,
            block,
            plan,
        })
    }
}

impl<'a, T: Element, C: OneSidedComm, const N: usize> Slice<'a, T, C, N> {
    /// The array it belongs to.
    pub fn array(&self) -> &'a DistArray<T, C, N> {
        self.array
    }

    /// The patch's global index ranges.
    pub fn block(&self) -> &Block<N> {
        &self.block
    }

    /// The patch's shape.
    pub fn shape(&self) -> [usize; N] {
        self.block.shape()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.block.len()
    }

    /// `true` for an empty patch.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    /// The ranks whose parts the patch touches.
    pub fn owners(&self) -> Vec<usize> {
        self.plan.iter().map(|t| t.rank).collect()
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if len != self.len() {
            return Err(Error::ShapeMismatch {
                expected: self.shape().to_vec(),
                found: vec![len],
            });
        }
        Ok(())
    }

    /// One-sided: the patch's values as a [`GlobalBlock`] (global indices).
    pub fn read(&self) -> Result<GlobalBlock<T, N>> {
        let mut data = vec![T::default(); self.len()];
        self.read_into(&mut data)?;
        GlobalBlock::from_vec(self.block.clone(), data)
    }

    /// One-sided: the patch's values into `buf` (row-major over the patch).
    pub fn read_into(&self, buf: &mut [T]) -> Result<()> {
        self.check_len(buf.len())?;
        self.array.get_planned(&self.block, &self.plan, buf)
    }

    /// One-sided: writes `values` (row-major over the patch) into the array.
    pub fn write(&self, values: &[T]) -> Result<()> {
        self.accumulate(values, AccumulateOp::Replace)
    }

    /// One-sided: combines `values` into the array with `op` (element-wise
    /// atomic, so many ranks may `Sum` into one patch at once).
    pub fn accumulate(&self, values: &[T], op: AccumulateOp) -> Result<()> {
        crate::checks::check_op::<T>(op)?;
        self.check_len(values.len())?;
        self.array.put_planned(&self.block, &self.plan, values, op)
    }

    /// One-sided: writes a [`GlobalBlock`] of exactly this patch's block.
    pub fn write_block(&self, values: &GlobalBlock<T, N>) -> Result<()> {
        if values.block() != &self.block {
            return Err(Error::InvalidArgument(format!(
                "block {:?} written to a slice over {:?}",
                values.block().ranges(),
                self.block.ranges()
            )));
        }
        self.write(values.as_slice())
    }
}
