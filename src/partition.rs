//! [`ContinuousPartitioning`]: how an N-dimensional index space is
//! distributed over a process grid, dimension by dimension.
//!
//! Each dimension `d` is distributed over `grid[d]` process coordinates in
//! one of two ways:
//!
//! * **contiguous** (the default): cut into `grid[d]` consecutive ranges,
//!   one per coordinate (uniform, or explicit part sizes);
//! * **block-cyclic** ([`ContinuousPartitioning::block_cyclic`], as in
//!   ScaLAPACK): cut into blocks of `nb` indices, block `k` going to
//!   coordinate `k mod grid[d]` (block size 1 = cyclic; a block size of at
//!   least `⌈n / grid[d]⌉` is the contiguous layout, and is stored as one).
//!
//! A rank owns the Cartesian product of what its coordinates own in each
//! dimension, stored row-major in its part, in increasing global order per
//! dimension. Ranks are laid out on the process grid in row-major order
//! (the last grid dimension varies fastest), like the elements of an
//! array. All indices are 0-based and ranges half-open.
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

use std::hash::{Hash, Hasher};
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

/// How many of `n` indices, cut into blocks of `nb` dealt round-robin over
/// `p` process coordinates (block `k` to coordinate `k mod p`), coordinate
/// `c` owns: ScaLAPACK's `NUMROC` with the first block on coordinate 0.
///
/// ```
/// use distarray::partition::block_cyclic_extent;
/// // 10 indices in blocks of 3 over 2: {0,1,2,6,7,8} and {3,4,5,9}
/// assert_eq!(block_cyclic_extent(10, 3, 0, 2), 6);
/// assert_eq!(block_cyclic_extent(10, 3, 1, 2), 4);
/// ```
pub fn block_cyclic_extent(n: usize, nb: usize, c: usize, p: usize) -> usize {
    // whole cycles, then what is left of the last one
    let nblocks = n / nb;
    let mut len = (nblocks / p) * nb;
    let extra = nblocks % p;
    if c < extra {
        len += nb;
    } else if c == extra {
        len += n % nb;
    }
    len
}

/// A partition of an N-dimensional index space into one box per rank; see
/// the [module docs](self).
///
/// Its [`Hash`] covers the shape, the grid, the block sizes and the
/// boundaries of the contiguous dimensions (O(N + grid), whatever the
/// block count: a block-cyclic dimension's boundaries follow from its
/// extent and block size), so collective calls can compare a
/// fingerprint of the partition across ranks cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuousPartitioning<const N: usize> {
    shape: [usize; N],
    grid: [usize; N],
    /// `bounds[d]`: the boundaries of dimension `d`'s blocks, from 0 to
    /// `shape[d]`: `grid[d] + 1` of them (block `k` is coordinate `k`'s
    /// range) for a contiguous dimension, `⌈shape[d] / nb⌉ + 1` for a
    /// block-cyclic one.
    bounds: [Vec<usize>; N],
    /// `cyclic[d]`: the block size `nb` of a block-cyclic dimension (block
    /// `k` belongs to coordinate `k mod grid[d]`), 0 for a contiguous one.
    cyclic: [usize; N],
}

impl<const N: usize> Hash for ContinuousPartitioning<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // equal partitions hash equally (every field hashed here is compared
        // by `Eq`); a block-cyclic dimension's `bounds` are determined by
        // `shape[d]` and `cyclic[d]`, so they are left out
        self.shape.hash(state);
        self.grid.hash(state);
        self.cyclic.hash(state);
        for (bounds, &nb) in self.bounds.iter().zip(&self.cyclic) {
            if nb == 0 {
                bounds.hash(state);
            }
        }
    }
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
            cyclic: [0; N],
        })
    }

    /// The 2-D block-cyclic layout of ScaLAPACK (and its N-D form): each
    /// dimension `d` cut into blocks of `block[d]` indices dealt round-robin
    /// to the `grid[d]` coordinates of the process grid (block `k` to
    /// coordinate `k mod grid[d]`); the last block may be short. Block size 1
    /// is the cyclic layout; a block size of at least `⌈shape[d] /
    /// grid[d]⌉` gives each coordinate at most one block, which is the
    /// contiguous layout (and is stored as one). Errors: a block size of 0,
    /// a grid dimension of 0.
    ///
    /// ```
    /// use distarray::ContinuousPartitioning;
    /// // 10 rows in blocks of 2 over 2 process rows: rows {0,1,4,5,8,9} and {2,3,6,7}
    /// let p = ContinuousPartitioning::block_cyclic([10, 4], [2, 1], [2, 4]).unwrap();
    /// assert!(p.is_block_cyclic());
    /// assert_eq!(p.part_shape(0).unwrap(), [6, 4]);
    /// assert_eq!(p.part_intervals(1).unwrap()[0], vec![2..4, 6..8]);
    /// assert_eq!(p.owner([6, 1]).unwrap(), (1, 2 * 4 + 1)); // rank 1, local row 2
    /// ```
    pub fn block_cyclic(shape: [usize; N], grid: [usize; N], block: [usize; N]) -> Result<Self> {
        let mut sizes: [Vec<usize>; N] = std::array::from_fn(|_| Vec::new());
        let mut cyclic = [0; N];
        for d in 0..N {
            let (n, p, nb) = (shape[d], grid[d], block[d]);
            if p == 0 || nb == 0 {
                return Err(Error::InvalidPartition(format!(
                    "block-cyclic layout needs a positive grid and block size in every                      dimension: grid {grid:?}, blocks {block:?}"
                )));
            }
            if nb.saturating_mul(p) >= n {
                // at most one block per coordinate: the contiguous layout
                sizes[d] = (0..p).map(|c| block_cyclic_extent(n, nb, c, p)).collect();
            } else {
                cyclic[d] = nb;
                // one size per process coordinate (for the checks below);
                // the bounds are replaced by the blocks' right after
                sizes[d] = vec![0; p];
            }
        }
        let mut part = Self::from_part_sizes(sizes)?;
        for d in 0..N {
            if cyclic[d] > 0 {
                let (n, nb) = (shape[d], cyclic[d]);
                part.shape[d] = n;
                part.bounds[d] = (0..n.div_ceil(nb)).map(|k| k * nb).chain([n]).collect();
            }
        }
        if part
            .shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .is_none()
        {
            return Err(Error::InvalidPartition(format!(
                "shape {shape:?} overflows usize"
            )));
        }
        part.cyclic = cyclic;
        Ok(part)
    }

    /// Whether some dimension is block-cyclic with more than one block per
    /// process coordinate: then a rank's part is not one box of the index
    /// space ([`ContinuousPartitioning::part_range`] is an error; use
    /// [`ContinuousPartitioning::part_intervals`]).
    pub fn is_block_cyclic(&self) -> bool {
        self.cyclic.iter().any(|&nb| nb > 0)
    }

    /// The block size of dimension `d` if it is block-cyclic.
    pub fn block_size(&self, d: usize) -> Option<usize> {
        self.cyclic.get(d).copied().filter(|&nb| nb > 0)
    }

    /// The process coordinate that owns block `k` of dimension `d` (see
    /// [`ContinuousPartitioning::boundaries`]).
    #[inline]
    pub(crate) fn coord_of_block(&self, d: usize, k: usize) -> usize {
        if self.cyclic[d] > 0 {
            k % self.grid[d]
        } else {
            k
        }
    }

    /// The block of dimension `d` containing `i` (`i < shape[d]`).
    #[inline]
    pub(crate) fn block_in_dim(&self, d: usize, i: usize) -> usize {
        i.checked_div(self.cyclic[d])
            .unwrap_or_else(|| self.part_in_dim(d, i))
    }

    /// How many indices of dimension `d` coordinate `c` owns.
    fn dim_extent(&self, d: usize, c: usize) -> usize {
        let (n, nb, p) = (self.shape[d], self.cyclic[d], self.grid[d]);
        if nb == 0 {
            self.bounds[d][c + 1] - self.bounds[d][c]
        } else {
            block_cyclic_extent(n, nb, c, p)
        }
    }

    /// The coordinate owning index `i` of dimension `d` and its local index
    /// there.
    #[inline]
    fn dim_local(&self, d: usize, i: usize) -> (usize, usize) {
        let (nb, p) = (self.cyclic[d], self.grid[d]);
        match i.checked_div(nb) {
            Some(k) => (k % p, (k / p) * nb + i % nb),
            None => {
                let c = self.part_in_dim(d, i);
                (c, i - self.bounds[d][c])
            }
        }
    }

    /// The global index of local index `l` of coordinate `c` in dimension
    /// `d`.
    #[inline]
    fn dim_global(&self, d: usize, c: usize, l: usize) -> usize {
        let nb = self.cyclic[d];
        match l.checked_div(nb) {
            Some(kk) => (kk * self.grid[d] + c) * nb + l % nb,
            None => self.bounds[d][c] + l,
        }
    }

    /// The local index in coordinate `coord_of_block(d, k)`'s part of the
    /// first index of block `k` of dimension `d`.
    #[inline]
    pub(crate) fn block_local_start(&self, d: usize, k: usize) -> usize {
        if self.cyclic[d] > 0 {
            (k / self.grid[d]) * self.cyclic[d]
        } else {
            0
        }
    }

    /// The global index intervals `rank` owns in each dimension, in
    /// increasing order (the order of its part's storage): one per
    /// dimension for a contiguous dimension, one per block for a
    /// block-cyclic one. Empty intervals are left out.
    pub fn part_intervals(&self, rank: usize) -> Result<[Vec<Range<usize>>; N]> {
        let g = self.grid_index(rank)?;
        Ok(std::array::from_fn(|d| {
            let b = &self.bounds[d];
            let blocks: Box<dyn Iterator<Item = usize>> = if self.cyclic[d] > 0 {
                Box::new((g[d]..b.len() - 1).step_by(self.grid[d]))
            } else {
                Box::new(std::iter::once(g[d]))
            };
            blocks
                .map(|k| b[k]..b[k + 1])
                .filter(|r| !r.is_empty())
                .collect()
        }))
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

    /// Boundaries of the blocks of dimension `d`, from 0 to `shape[d]`.
    /// For a contiguous dimension there are `grid[d] + 1` of them and part
    /// (coordinate) `i` covers `b[i]..b[i + 1]`; for a block-cyclic one,
    /// block `k` covers `b[k]..b[k + 1]` and belongs to coordinate `k mod
    /// grid[d]`.
    pub fn boundaries(&self, d: usize) -> &[usize] {
        &self.bounds[d]
    }

    /// How many indices of dimension `d` each process coordinate owns.
    pub fn part_sizes(&self, d: usize) -> Vec<usize> {
        (0..self.grid[d]).map(|c| self.dim_extent(d, c)).collect()
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

    /// The global index ranges owned by `rank`: its part is one box.
    /// Error: a block-cyclic partition, where a part is not one box (see
    /// [`ContinuousPartitioning::part_intervals`]); the operations that
    /// need boxes (ghosts, halos, transposes, matvec plans, local views
    /// with global ranges) give this error on such arrays.
    pub fn part_range(&self, rank: usize) -> Result<[Range<usize>; N]> {
        let g = self.grid_index(rank)?;
        if self.is_block_cyclic() {
            return Err(Error::InvalidPartition(format!(
                "the array is block-cyclic (block sizes {:?}): rank {rank}'s part is not one box \
                 of the index space; this operation needs a contiguous partition (redistribute \
                 the array first)",
                self.cyclic
            )));
        }
        Ok(std::array::from_fn(|d| {
            self.bounds[d][g[d]]..self.bounds[d][g[d] + 1]
        }))
    }

    /// The shape of `rank`'s part.
    pub fn part_shape(&self, rank: usize) -> Result<[usize; N]> {
        let g = self.grid_index(rank)?;
        Ok(std::array::from_fn(|d| self.dim_extent(d, g[d])))
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
    /// (`i < shape[d]`), by binary search: O(log `grid[d]`).
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
            let (c, l) = self.dim_local(d, index[d]);
            rank = rank * self.grid[d] + c;
            offset = offset * self.dim_extent(d, c) + l;
        }
        Ok((rank, offset))
    }

    /// The global index of the element at row-major `offset` in `rank`'s part.
    pub fn local_to_global(&self, rank: usize, offset: usize) -> Result<[usize; N]> {
        let g = self.grid_index(rank)?;
        let pshape = self.part_shape(rank)?;
        let len: usize = pshape.iter().product();
        if offset >= len {
            return Err(Error::IndexOutOfBounds {
                index: vec![offset],
                shape: vec![len],
            });
        }
        let li = multi_index(&pshape, offset);
        Ok(std::array::from_fn(|d| self.dim_global(d, g[d], li[d])))
    }

    /// `rank`'s part as boxes of the index space: every combination of its
    /// intervals per dimension ([`ContinuousPartitioning::part_intervals`]),
    /// each with the local index (per dimension) of its first element in
    /// the part. One box for a contiguous partition.
    pub(crate) fn part_pieces(&self, rank: usize) -> Result<Vec<Piece<N>>> {
        let ivs = self.part_intervals(rank)?;
        let counts = ivs.clone().map(|v| v.len());
        let total: usize = counts.iter().product();
        // local start of each interval: the lengths of those before it
        let starts: [Vec<usize>; N] = ivs.clone().map(|v| {
            v.iter()
                .scan(0, |at, r| {
                    let s = *at;
                    *at += r.len();
                    Some(s)
                })
                .collect()
        });
        Ok((0..total)
            .map(|k| {
                let rel = multi_index(&counts, k);
                (
                    std::array::from_fn(|d| ivs[d][rel[d]].clone()),
                    std::array::from_fn(|d| starts[d][rel[d]]),
                )
            })
            .collect())
    }

    /// The global index of local index `local` (per dimension) in the part
    /// of the rank at grid position `coords` (no checks).
    #[inline]
    pub(crate) fn global_of_local(&self, coords: [usize; N], local: [usize; N]) -> [usize; N] {
        std::array::from_fn(|d| self.dim_global(d, coords[d], local[d]))
    }

    /// The local index (per dimension) of global `index` if the rank at
    /// grid position `coords` owns it (no bounds checks on `index`).
    #[inline]
    pub(crate) fn local_of_global(
        &self,
        coords: [usize; N],
        index: [usize; N],
    ) -> Option<[usize; N]> {
        let mut local = [0; N];
        for d in 0..N {
            if index[d] >= self.shape[d] {
                return None;
            }
            let (c, l) = self.dim_local(d, index[d]);
            if c != coords[d] {
                return None;
            }
            local[d] = l;
        }
        Some(local)
    }
}

pub(crate) use crate::error::plural;

/// A box of a rank's part: its global index ranges, and the local index
/// (per dimension) of its first element in the part.
pub(crate) type Piece<const N: usize> = ([Range<usize>; N], [usize; N]);

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

#[cfg(test)]
mod tests {
    use super::block_cyclic_extent;

    #[test]
    fn block_cyclic_extent_counts_the_owned_indices() {
        for (n, nb, p) in [
            (10, 3, 2),
            (7, 1, 3),
            (5, 8, 2),
            (12, 2, 4),
            (0, 3, 2),
            (9, 2, 5),
        ] {
            for c in 0..p {
                let owned = (0..n).filter(|i| (i / nb) % p == c).count();
                assert_eq!(
                    block_cyclic_extent(n, nb, c, p),
                    owned,
                    "n {n} nb {nb} p {p} c {c}"
                );
            }
        }
    }

    #[test]
    fn hash_tells_layouts_apart_and_matches_equal_ones() {
        use super::ContinuousPartitioning as P;
        use std::hash::{DefaultHasher, Hash, Hasher};
        let h = |p: &P<2>| {
            let mut s = DefaultHasher::new();
            p.hash(&mut s);
            s.finish()
        };
        let rows = P::with_grid([8, 5], [2, 1]).unwrap();
        let cyclic = P::block_cyclic([8, 5], [2, 1], [1, 5]).unwrap();
        let all = [
            rows.clone(),
            P::with_grid([8, 5], [1, 2]).unwrap(),
            P::from_part_sizes([vec![5, 3], vec![5]]).unwrap(),
            cyclic.clone(),
            P::block_cyclic([8, 5], [2, 1], [2, 5]).unwrap(),
            P::with_grid([8, 6], [2, 1]).unwrap(),
        ];
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                assert_eq!(a == b, h(a) == h(b), "partitions {i} and {j}");
            }
        }
        // equal partitions made in other ways hash alike (here: a block
        // size covering each part is the contiguous layout)
        let same = P::block_cyclic([8, 5], [2, 1], [4, 5]).unwrap();
        assert_eq!(same, rows);
        assert_eq!(h(&same), h(&rows));
        assert_eq!(h(&cyclic), h(&cyclic.clone()));
    }
}
