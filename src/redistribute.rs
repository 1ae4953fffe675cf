//! Changes of partition ([`DistArray::redistribute`] and friends) and
//! [`DistArray::filter`]. All of them are collective and return a new
//! array; the source is left unchanged.
//!
//! ```
//! use distarray::{threaded, DistArray};
//! threaded::run_ok(3, |comm| {
//!     let a = DistArray::<i32, _, 2>::from_fn(comm, [4, 6], |[i, j]| (i * 6 + j) as i32)?;
//!     // from rows to columns: a 1 x 3 process grid
//!     let b = a.redistribute_grid([1, 3])?;
//!     assert_eq!(b.to_vec()?, a.to_vec()?);
//!     let evens = a.redistribute_default()?;
//!     assert_eq!(evens.partitioning(), a.partitioning());
//!     Ok(())
//! })
//! .unwrap();
//! ```

use crate::array::DistArray;
use crate::comm::{Element, OneSidedComm};
use crate::epoch::vote;
use crate::error::{Error, Result};
use crate::partition::ContinuousPartitioning;

impl<T: Element, C: OneSidedComm, const N: usize> DistArray<T, C, N> {
    /// Collective: a copy of this array with partitioning `new` (same
    /// shape, one part per rank). Each rank pulls its new part with
    /// [`DistArray::get_block_into`]: one `get` per contiguous run per
    /// source rank.
    pub fn redistribute(&self, new: ContinuousPartitioning<N>) -> Result<Self> {
        self.redistribute_result(Ok(new))
    }

    /// Collective: redistributes to explicit part sizes per dimension.
    pub fn redistribute_sizes(&self, sizes: [Vec<usize>; N]) -> Result<Self> {
        let p = ContinuousPartitioning::from_part_sizes(sizes);
        self.redistribute_result(p)
    }

    /// Collective: redistributes over a process grid (dimension `d` split
    /// evenly into `grid[d]` parts).
    pub fn redistribute_grid(&self, grid: [usize; N]) -> Result<Self> {
        let p = ContinuousPartitioning::with_grid(self.shape(), grid);
        self.redistribute_result(p)
    }

    /// Collective: a zero-filled array of this array's shape on the same
    /// process grid with contiguous parts (dimension `d` split evenly into
    /// `grid[d]` parts, as [`DistArray::with_grid`]), in which each rank's
    /// part is one box. I/O that moves each rank's part as one piece (Zarr
    /// chunks, HDF5 hyperslabs) handles a block-cyclic array through it:
    /// [`copy_from`](DistArray::copy_from) the array before writing the
    /// twin, read into the twin and copy it back (one redistribution
    /// each way; the part's size again in memory).
    ///
    /// ```
    /// use distarray::{threaded, DistArray};
    /// threaded::run_ok(4, |comm| {
    ///     let a = DistArray::<f64, _, 2>::block_cyclic(comm, [7, 5], [2, 2], [2, 2])?;
    ///     a.with_local_mut(|mut l| l.fill_with(|[i, j]| (10 * i + j) as f64))?;
    ///     let twin = a.contiguous_twin()?;
    ///     assert!(!twin.partitioning().is_block_cyclic());
    ///     assert_eq!((twin.shape(), twin.partitioning().grid()), ([7, 5], [2, 2]));
    ///     twin.copy_from(&a)?;
    ///     assert_eq!(twin.to_vec()?, a.to_vec()?);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn contiguous_twin(&self) -> Result<Self> {
        let p = ContinuousPartitioning::with_grid(self.shape(), self.partitioning().grid());
        Self::create(self.comm().clone(), p)
    }

    /// Collective: redistributes to the default partition (the first
    /// dimension split evenly).
    pub fn redistribute_default(&self) -> Result<Self> {
        let p = ContinuousPartitioning::uniform(self.shape(), self.comm().size());
        self.redistribute_result(p)
    }

    fn redistribute_result(&self, new: Result<ContinuousPartitioning<N>>) -> Result<Self> {
        let new = new.and_then(|p| {
            if p.shape() == self.shape() {
                Ok(p)
            } else {
                Err(Error::ShapeMismatch {
                    expected: self.shape().to_vec(),
                    found: p.shape().to_vec(),
                })
            }
        });
        // `create` agrees on the arguments collectively: a bad partition on
        // any rank fails on every rank, none is left waiting.
        let out = Self::create(self.comm().clone(), new)?;
        // each rank pulls its new part (the plan of `copy_from`)
        out.copy_from(self)?;
        Ok(out)
    }
}

impl<T: Element, C: OneSidedComm> DistArray<T, C, 1> {
    /// Collective: the elements for which `keep` is true, in their original
    /// order, as a new 1-D array whose parts are the survivors of each
    /// rank's part.
    pub fn filter(&self, keep: impl Fn(T) -> bool) -> Result<Self> {
        let kept = self.with_local(|l| {
            l.as_slice()
                .iter()
                .copied()
                .filter(|&x| keep(x))
                .collect::<Vec<T>>()
        });
        let kept = vote(self.comm(), kept)?;
        Self::from_local_parts(
            self.comm().clone(),
            [self.comm().size()],
            [kept.len()],
            &kept,
        )
    }
}
