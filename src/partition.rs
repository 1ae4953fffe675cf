//! [`ContinuousPartitioning`]: how an N-dimensional index space is cut into
//! one contiguous box per rank.
//!
//! Dimension `d` is cut into `grid[d]` consecutive ranges; a rank owns the
//! Cartesian product of one range per dimension. Ranks are laid out on the
//! process grid in row-major order (the last grid dimension varies fastest),
//! like the elements of an array. All indices are 0-based and ranges
//! half-open.
//!
//! ```
//! use distarray::ContinuousPartitioning;
//! // rows cut [2, 5, 3], columns cut [2, 3]: a 3 x 2 process grid
//! let p = ContinuousPartitioning::from_part_sizes([vec![2, 5, 3], vec![2, 3]]).unwrap();
//! assert_eq!(p.shape(), [10, 5]);
//! let rank = p.rank_of([2, 1]).unwrap(); // grid position (3, 2) in 1-based terms
//! assert_eq!(p.part_range(rank).unwrap(), [7..10, 2..5]);
//! assert_eq!(p.owner([8, 3]).unwrap(), (rank, 1 * 3 + 1));
//! ```

// Index arithmetic walks several per-dimension arrays in lockstep: indexed
// loops read better than zipped iterators here.
#![allow(clippy::needless_range_loop)]

use std::ops::Range;

use crate::error::{Error, Result};

/// Splits `n` items into `parts` consecutive sizes that differ by at most
/// one, the remainder going to the first parts.
///
/// ```
/// assert_eq!(distarray::partition::distribute(10, 3), vec![4, 3, 3]);
/// assert_eq!(distarray::partition::distribute(2, 4), vec![1, 1, 0, 0]);
/// ```
pub fn distribute(n: usize, parts: usize) -> Vec<usize> {
    if parts == 0 {
        return Vec::new();
    }
    let (q, r) = (n / parts, n % parts);
    (0..parts).map(|i| q + usize::from(i < r)).collect()
}

/// A partition of an N-dimensional index space into one box per rank; see
/// the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContinuousPartitioning<const N: usize> {
    shape: [usize; N],
    grid: [usize; N],
    /// `bounds[d]`: `grid[d] + 1` boundaries, from 0 to `shape[d]`.
    bounds: [Vec<usize>; N],
}

impl<const N: usize> ContinuousPartitioning<N> {
    /// The partition with explicit part sizes per dimension; the shape is
    /// their sums and the grid their counts. Every dimension needs at least
    /// one part.
    pub fn from_part_sizes(sizes: [Vec<usize>; N]) -> Result<Self> {
        if N == 0 {
            return Err(Error::InvalidPartition(
                "arrays need at least one dimension".into(),
            ));
        }
        let mut shape = [0; N];
        let mut grid = [0; N];
        let mut overflow = false;
        let bounds = sizes.map(|s| {
            let mut b = Vec::with_capacity(s.len() + 1);
            b.push(0);
            let mut acc = 0usize;
            for x in s {
                acc = acc.checked_add(x).unwrap_or_else(|| {
                    overflow = true;
                    0
                });
                b.push(acc);
            }
            b
        });
        if overflow {
            return Err(Error::InvalidPartition("part sizes overflow usize".into()));
        }
        for d in 0..N {
            grid[d] = bounds[d].len() - 1;
            shape[d] = *bounds[d].last().expect("non-empty");
            if grid[d] == 0 {
                return Err(Error::InvalidPartition(format!(
                    "dimension {d} has no parts"
                )));
            }
        }
        let fits = shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .is_some()
            && grid
                .iter()
                .try_fold(1usize, |a, &b| a.checked_mul(b))
                .is_some();
        if !fits {
            return Err(Error::InvalidPartition(format!(
                "shape {shape:?} or grid {grid:?} overflows usize"
            )));
        }
        Ok(ContinuousPartitioning {
            shape,
            grid,
            bounds,
        })
    }

    /// Cuts each dimension `d` evenly into `grid[d]` parts ([`distribute`]).
    pub fn with_grid(shape: [usize; N], grid: [usize; N]) -> Result<Self> {
        let mut sizes: [Vec<usize>; N] = std::array::from_fn(|_| Vec::new());
        for d in 0..N {
            if grid[d] == 0 {
                return Err(Error::InvalidPartition(format!(
                    "process grid {grid:?} has no parts in dimension {d}"
                )));
            }
            sizes[d] = distribute(shape[d], grid[d]);
        }
        Self::from_part_sizes(sizes)
    }

    /// Cuts the first dimension evenly into `nranks` parts.
    pub fn uniform(shape: [usize; N], nranks: usize) -> Result<Self> {
        let mut grid = [1; N];
        if N > 0 {
            grid[0] = nranks;
        }
        Self::with_grid(shape, grid)
    }

    /// Checks that this partition has exactly one part per rank of a
    /// communicator of `nranks`.
    pub fn check_nparts(&self, nranks: usize) -> Result<()> {
        if self.nparts() != nranks {
            return Err(Error::InvalidPartition(format!(
                "process grid {:?} has {} but the communicator has {}",
                self.grid,
                plural(self.nparts(), "part"),
                plural(nranks, "rank")
            )));
        }
        Ok(())
    }

    /// The global shape.
    pub fn shape(&self) -> [usize; N] {
        self.shape
    }

    /// Number of parts per dimension.
    pub fn grid(&self) -> [usize; N] {
        self.grid
    }

    /// Total number of parts (ranks).
    pub fn nparts(&self) -> usize {
        self.grid.iter().product()
    }

    /// Boundaries of dimension `d`: `grid[d] + 1` values from 0 to `shape[d]`;
    /// part `i` covers `b[i]..b[i + 1]`.
    pub fn boundaries(&self, d: usize) -> &[usize] {
        &self.bounds[d]
    }

    /// Part sizes of dimension `d`.
    pub fn part_sizes(&self, d: usize) -> Vec<usize> {
        self.bounds[d].windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The grid position of `rank` (row-major).
    pub fn grid_index(&self, rank: usize) -> Result<[usize; N]> {
        crate::checks::check_rank(rank, self.nparts())?;
        let mut idx = [0; N];
        let mut r = rank;
        for d in (0..N).rev() {
            idx[d] = r % self.grid[d];
            r /= self.grid[d];
        }
        Ok(idx)
    }

    /// The rank at grid position `idx` (row-major).
    pub fn rank_of(&self, idx: [usize; N]) -> Result<usize> {
        let mut rank = 0;
        for d in 0..N {
            if idx[d] >= self.grid[d] {
                return Err(Error::IndexOutOfBounds {
                    index: idx.to_vec(),
                    shape: self.grid.to_vec(),
                });
            }
            rank = rank * self.grid[d] + idx[d];
        }
        Ok(rank)
    }

    /// The global index ranges owned by `rank`.
    pub fn part_range(&self, rank: usize) -> Result<[Range<usize>; N]> {
        let g = self.grid_index(rank)?;
        Ok(std::array::from_fn(|d| {
            self.bounds[d][g[d]]..self.bounds[d][g[d] + 1]
        }))
    }

    /// The shape of `rank`'s part.
    pub fn part_shape(&self, rank: usize) -> Result<[usize; N]> {
        Ok(self.part_range(rank)?.map(|r| r.len()))
    }

    /// Number of elements of `rank`'s part.
    pub fn part_len(&self, rank: usize) -> Result<usize> {
        Ok(self.part_shape(rank)?.iter().product())
    }

    /// Checks that `index` lies in the shape.
    pub fn check_index(&self, index: [usize; N]) -> Result<()> {
        if index.iter().zip(&self.shape).any(|(i, n)| i >= n) {
            return Err(Error::IndexOutOfBounds {
                index: index.to_vec(),
                shape: self.shape.to_vec(),
            });
        }
        Ok(())
    }

    /// The part (grid coordinate) of dimension `d` containing `i`
    /// (`i < shape[d]`), by binary search: O(log grid[d]).
    pub(crate) fn part_in_dim(&self, d: usize, i: usize) -> usize {
        let b = &self.bounds[d];
        // Last part whose start is <= i; empty parts before it are skipped
        // because their start equals the next part's start.
        b[..b.len() - 1].partition_point(|&s| s <= i) - 1
    }

    /// The owner of global `index` and the row-major offset of the element in
    /// the owner's local part. O(N log P).
    pub fn owner(&self, index: [usize; N]) -> Result<(usize, usize)> {
        self.check_index(index)?;
        let mut rank = 0;
        let mut offset = 0;
        for d in 0..N {
            let p = self.part_in_dim(d, index[d]);
            rank = rank * self.grid[d] + p;
            let (lo, hi) = (self.bounds[d][p], self.bounds[d][p + 1]);
            offset = offset * (hi - lo) + (index[d] - lo);
        }
        Ok((rank, offset))
    }

    /// The global index of the element at row-major `offset` in `rank`'s part.
    pub fn local_to_global(&self, rank: usize, offset: usize) -> Result<[usize; N]> {
        let range = self.part_range(rank)?;
        let len: usize = range.iter().map(|r| r.len()).product();
        if offset >= len {
            return Err(Error::IndexOutOfBounds {
                index: vec![offset],
                shape: vec![len],
            });
        }
        let mut idx = [0; N];
        let mut o = offset;
        for d in (0..N).rev() {
            let n = range[d].len();
            idx[d] = range[d].start + o % n;
            o /= n;
        }
        Ok(idx)
    }
}

pub(crate) use crate::error::plural;

/// Row-major linear offset of `index` in an array of `shape` (no checks).
#[inline]
pub fn linear_offset<const N: usize>(shape: &[usize; N], index: &[usize; N]) -> usize {
    let mut off = 0;
    for d in 0..N {
        off = off * shape[d] + index[d];
    }
    off
}

/// Row-major multi-index of linear `offset` in an array of `shape` (no checks).
#[inline]
pub fn multi_index<const N: usize>(shape: &[usize; N], mut offset: usize) -> [usize; N] {
    let mut idx = [0; N];
    for d in (0..N).rev() {
        if shape[d] > 0 {
            idx[d] = offset % shape[d];
            offset /= shape[d];
        }
    }
    idx
}
