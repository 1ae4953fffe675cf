//! [`Block`]s (global index ranges of an array), their communication plan
//! (the contiguous runs of window memory they cover on every rank) and
//! [`GlobalBlock`] (a local copy addressed by global indices).
//!
//! [`DistArray::get_block`] and [`DistArray::put_block`] move a block with
//! **one RMA operation per contiguous run per target rank**, inside one
//! lock epoch per target; the calling rank's own part is copied locally.
//!
//! ```
//! use distarray::{threaded, AccumulateOp, Block, DistArray};
//! threaded::run_ok(3, |comm| {
//!     let a = DistArray::<i32, _, 2>::from_fn(comm, [6, 4], |[i, j]| (10 * i + j) as i32)?;
//!     // rows 1..5 of columns 2..4 span all three ranks
//!     let mut b = a.get_block(&Block::new([1..5, 2..4]))?;
//!     assert_eq!(b.get([4, 3])?, 43);
//!     b.set([1, 2], 100)?;
//!     a.barrier()?;
//!     a.put_block(&b, AccumulateOp::Sum)?; // every rank adds its copy
//!     a.barrier()?;
//!     assert_eq!(a.get([1, 2])?, 12 + 3 * 100);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::ops::Range;

use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};

use crate::array::DistArray;
use crate::comm::{AccumulateOp, Element, LockKind, OneSidedComm};
use crate::error::{Error, Result};
use crate::partition::{linear_offset, multi_index, ContinuousPartitioning};

/// A box of global indices: one half-open range per dimension.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Block<const N: usize> {
    ranges: [Range<usize>; N],
}

/// The part of a block that one rank owns, as runs of its window memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRuns<const N: usize> {
    /// The owning rank.
    pub rank: usize,
    /// The intersection of the block with the rank's part.
    pub intersection: Block<N>,
    /// Maximal contiguous runs `(offset, len)` of the rank's window part, in
    /// increasing order; their elements, concatenated, are the intersection
    /// in row-major order.
    pub runs: Vec<(usize, usize)>,
}

impl<const N: usize> Block<N> {
    /// A block from its ranges (validated when used with an array).
    pub fn new(ranges: [Range<usize>; N]) -> Self {
        Block { ranges }
    }

    /// The whole index space of `shape`.
    pub fn full(shape: [usize; N]) -> Self {
        Block {
            ranges: shape.map(|n| 0..n),
        }
    }

    /// The ranges.
    pub fn ranges(&self) -> &[Range<usize>; N] {
        &self.ranges
    }

    /// The block's shape.
    pub fn shape(&self) -> [usize; N] {
        self.ranges.clone().map(|r| r.end.saturating_sub(r.start))
    }

    /// Number of indices in the block (saturating at `usize::MAX` for
    /// blocks too large to exist).
    pub fn len(&self) -> usize {
        self.shape()
            .iter()
            .fold(1usize, |a, &b| a.saturating_mul(b))
    }

    /// `true` if the block has no indices.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` if `index` lies in the block.
    pub fn contains(&self, index: [usize; N]) -> bool {
        (0..N).all(|d| self.ranges[d].contains(&index[d]))
    }

    /// Checks the block against an array shape: every range must satisfy
    /// `start <= end <= shape[d]`.
    pub fn validate(&self, shape: [usize; N]) -> Result<()> {
        if (0..N)
            .any(|d| self.ranges[d].start > self.ranges[d].end || self.ranges[d].end > shape[d])
        {
            return Err(Error::InvalidBlock {
                ranges: self.ranges.iter().map(|r| (r.start, r.end)).collect(),
                shape: shape.to_vec(),
            });
        }
        Ok(())
    }

    pub(crate) fn intersect(&self, other: &[Range<usize>; N]) -> Option<Block<N>> {
        let ranges: [Range<usize>; N] = std::array::from_fn(|d| {
            self.ranges[d].start.max(other[d].start)..self.ranges[d].end.min(other[d].end)
        });
        ranges
            .iter()
            .all(|r| r.start < r.end)
            .then_some(Block { ranges })
    }

    /// The ranks the block touches, each with the runs of its window memory
    /// that the block covers. Ranks whose part misses the block are left
    /// out. On a contiguous partition each rank appears once, in row-major
    /// order of the process grid; on a block-cyclic one a rank appears once
    /// per piece of the block it owns (one per combination of its blocks
    /// that the block meets), each piece with its own intersection.
    /// Errors: the block does not fit the partition's shape.
    pub fn plan(&self, part: &ContinuousPartitioning<N>) -> Result<Vec<TargetRuns<N>>> {
        self.validate(part.shape())?;
        let mut out = Vec::new();
        if self.is_empty() {
            return Ok(out);
        }
        // per dimension, the blocks of the partition that meet the block
        // (one per process coordinate on a contiguous dimension)
        let blocks: [Range<usize>; N] = std::array::from_fn(|d| {
            part.block_in_dim(d, self.ranges[d].start)
                ..part.block_in_dim(d, self.ranges[d].end - 1) + 1
        });
        let counts = blocks.clone().map(|r| r.len());
        let total: usize = counts.iter().product();
        for k in 0..total {
            let rel = multi_index(&counts, k);
            let kb: [usize; N] = std::array::from_fn(|d| blocks[d].start + rel[d]);
            let piece: [Range<usize>; N] = std::array::from_fn(|d| {
                let b = part.boundaries(d);
                b[kb[d]]..b[kb[d] + 1]
            });
            let Some(inter) = self.intersect(&piece) else {
                continue;
            };
            let coords: [usize; N] = std::array::from_fn(|d| part.coord_of_block(d, kb[d]));
            let rank = part.rank_of(coords)?;
            // where the intersection starts in the rank's part
            let local: [usize; N] = std::array::from_fn(|d| {
                part.block_local_start(d, kb[d]) + inter.ranges[d].start - piece[d].start
            });
            let runs = runs_of(&inter, local, part.part_shape(rank)?);
            out.push(TargetRuns {
                rank,
                intersection: inter,
                runs,
            });
        }
        Ok(out)
    }
}

/// Maximal contiguous runs of a part's row-major memory (of shape
/// `pshape`) covered by `inter`, a box whose first element sits at local
/// index `local` of the part.
fn runs_of<const N: usize>(
    inter: &Block<N>,
    local: [usize; N],
    pshape: [usize; N],
) -> Vec<(usize, usize)> {
    let ishape = inter.shape();
    let row = ishape[N - 1];
    let nrows: usize = ishape[..N - 1].iter().product();
    let mut rows_shape = ishape;
    rows_shape[N - 1] = 1;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for k in 0..nrows {
        let rel = multi_index(&rows_shape, k);
        let at: [usize; N] = std::array::from_fn(|d| local[d] + rel[d]);
        let off = linear_offset(&pshape, &at);
        match runs.last_mut() {
            Some(last) if last.0 + last.1 == off => last.1 += row,
            _ => runs.push((off, row)),
        }
    }
    runs
}

/// Row `k` of `inter` (all but the last index fixed) as a range of a
/// row-major buffer laid out as `outer`.
fn row_in<const N: usize>(outer: &Block<N>, inter: &Block<N>, k: usize) -> Range<usize> {
    let ishape = inter.shape();
    let mut rows_shape = ishape;
    rows_shape[N - 1] = 1;
    let rel = multi_index(&rows_shape, k);
    let o: [usize; N] =
        std::array::from_fn(|d| inter.ranges[d].start - outer.ranges[d].start + rel[d]);
    let at = linear_offset(&outer.shape(), &o);
    at..at + ishape[N - 1]
}

/// If `inter` (inside `outer`) is one contiguous range of a row-major buffer
/// laid out as `outer`, that range: the leading dimensions of `inter` have
/// length 1 up to some dimension `k`, and every dimension after `k` is full.
pub(crate) fn contiguous_in<const N: usize>(
    outer: &Block<N>,
    inter: &Block<N>,
) -> Option<Range<usize>> {
    let ishape = inter.shape();
    let k = (0..N).find(|&d| ishape[d] != 1).unwrap_or(N - 1);
    if (k + 1..N).all(|d| inter.ranges[d] == outer.ranges[d]) {
        let first = row_in(outer, inter, 0).start;
        Some(first..first + inter.len())
    } else {
        None
    }
}

/// Copies the rows of `inter` from `packed` (row-major over `inter`) into
/// `outer_buf` (row-major over `outer`).
pub(crate) fn scatter_box<T: Copy, const N: usize>(
    outer: &Block<N>,
    outer_buf: &mut [T],
    inter: &Block<N>,
    packed: &[T],
) {
    let row = inter.shape()[N - 1];
    for (k, src) in packed.chunks_exact(row.max(1)).enumerate() {
        outer_buf[row_in(outer, inter, k)].copy_from_slice(src);
    }
}

/// Copies the rows of `inter` from `outer_buf` into `packed`.
pub(crate) fn gather_box<T: Copy, const N: usize>(
    outer: &Block<N>,
    outer_buf: &[T],
    inter: &Block<N>,
    packed: &mut [T],
) {
    let row = inter.shape()[N - 1];
    for (k, dst) in packed.chunks_exact_mut(row.max(1)).enumerate() {
        dst.copy_from_slice(&outer_buf[row_in(outer, inter, k)]);
    }
}

/// Copies the rows of `inter` from `src_buf` (laid out row-major as
/// `src_outer`) into `dst_buf` (laid out as `dst_outer`); `inter` lies in
/// both. Empty intersections copy nothing.
pub(crate) fn copy_box<T: Copy, const N: usize>(
    src_outer: &Block<N>,
    src_buf: &[T],
    dst_outer: &Block<N>,
    dst_buf: &mut [T],
    inter: &Block<N>,
) {
    if inter.is_empty() {
        return;
    }
    let rows = inter.len() / inter.shape()[N - 1];
    for k in 0..rows {
        dst_buf[row_in(dst_outer, inter, k)].copy_from_slice(&src_buf[row_in(src_outer, inter, k)]);
    }
}

/// Row-major values holding this rank's part at offset `shift` (zero for
/// the part itself, the ghost width for an extended box).
pub(crate) struct Gather<'s, T, const N: usize> {
    pub(crate) src: &'s [T],
    pub(crate) shape: [usize; N],
    pub(crate) shift: [usize; N],
    pub(crate) part: &'s [Range<usize>; N],
}

impl<T: Copy, const N: usize> Gather<'_, T, N> {
    /// Copies the box `b` (global indices, inside the part) into the front
    /// of `out`, row-major; returns its length.
    pub(crate) fn gather(&self, b: &[Range<usize>; N], out: &mut [T]) -> usize {
        let shape: [usize; N] = b.clone().map(|r| r.len());
        let row = shape[N - 1];
        let len: usize = shape.iter().product();
        if len == 0 {
            return 0;
        }
        let mut rows_shape = shape;
        rows_shape[N - 1] = 1;
        for (k, chunk) in out[..len].chunks_exact_mut(row).enumerate() {
            let rel = multi_index(&rows_shape, k);
            let at: [usize; N] =
                std::array::from_fn(|d| b[d].start - self.part[d].start + self.shift[d] + rel[d]);
            let o = linear_offset(&self.shape, &at);
            chunk.copy_from_slice(&self.src[o..o + row]);
        }
        len
    }
}

/// Copies `src` (row-major over `shape`) into `data` (row-major over
/// `ext_shape`) at `dst`.
pub(crate) fn scatter<T: Copy, const N: usize>(
    data: &mut [T],
    ext_shape: &[usize; N],
    dst: &[usize; N],
    shape: &[usize; N],
    src: &[T],
) {
    let row = shape[N - 1];
    if row == 0 {
        return;
    }
    let mut rows_shape = *shape;
    rows_shape[N - 1] = 1;
    for (k, chunk) in src.chunks_exact(row).enumerate() {
        let rel = multi_index(&rows_shape, k);
        let at: [usize; N] = std::array::from_fn(|d| dst[d] + rel[d]);
        let o = linear_offset(ext_shape, &at);
        data[o..o + row].copy_from_slice(chunk);
    }
}

/// Combines consecutive pieces of `src` into the runs `(offset, len)` of
/// `dst` with `op` (`Replace` stores them).
pub(crate) fn combine_runs<T: Element>(
    dst: &mut [T],
    runs: &[(usize, usize)],
    src: &[T],
    op: AccumulateOp,
) {
    for (off, piece) in crate::checks::run_pieces(runs) {
        let len = piece.len();
        for (d, &s) in dst[off..off + len].iter_mut().zip(&src[piece]) {
            *d = T::combine(op, *d, s);
        }
    }
}

/// Copies `runs` of `src` one after the other into `dst`.
pub(crate) fn copy_runs<T: Copy>(src: &[T], runs: &[(usize, usize)], dst: &mut [T]) {
    for (off, piece) in crate::checks::run_pieces(runs) {
        dst[piece.clone()].copy_from_slice(&src[off..off + piece.len()]);
    }
}

/// A local copy of a [`Block`] of a distributed array, addressed by global
/// indices.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalBlock<T, const N: usize> {
    block: Block<N>,
    data: Vec<T>,
}

impl<T: Element, const N: usize> GlobalBlock<T, N> {
    /// A zero-filled block.
    pub fn zeros(block: Block<N>) -> Self {
        let n = block.len();
        GlobalBlock {
            block,
            data: vec![T::default(); n],
        }
    }

    /// A block over `data` (row-major, `data.len()` = the block's length).
    pub fn from_vec(block: Block<N>, data: Vec<T>) -> Result<Self> {
        if data.len() != block.len() {
            return Err(Error::ShapeMismatch {
                expected: block.shape().to_vec(),
                found: vec![data.len()],
            });
        }
        Ok(GlobalBlock { block, data })
    }

    /// The block and the values (row-major over the block).
    pub fn into_parts(self) -> (Block<N>, Vec<T>) {
        (self.block, self.data)
    }

    /// The block it copies.
    pub fn block(&self) -> &Block<N> {
        &self.block
    }

    /// The values, row-major over the block.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The values, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The values as an `ndarray` view indexed from 0.
    pub fn view(&self) -> ArrayViewD<'_, T> {
        ArrayViewD::from_shape(IxDyn(&self.block.shape()), &self.data).expect("shape matches")
    }

    /// The values as a mutable `ndarray` view indexed from 0.
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, T> {
        let shape = self.block.shape();
        ArrayViewMutD::from_shape(IxDyn(&shape), &mut self.data).expect("shape matches")
    }

    fn offset(&self, index: [usize; N]) -> Result<usize> {
        if !self.block.contains(index) {
            return Err(Error::IndexOutsideBlock {
                index: index.to_vec(),
                ranges: self.block.ranges.iter().map(|r| (r.start, r.end)).collect(),
            });
        }
        let rel: [usize; N] = std::array::from_fn(|d| index[d] - self.block.ranges[d].start);
        Ok(linear_offset(&self.block.shape(), &rel))
    }

    /// The value at a global index; `Err` outside the block.
    pub fn get(&self, index: [usize; N]) -> Result<T> {
        Ok(self.data[self.offset(index)?])
    }

    /// Sets the value at a global index; `Err` outside the block.
    pub fn set(&mut self, index: [usize; N], value: T) -> Result<()> {
        let o = self.offset(index)?;
        self.data[o] = value;
        Ok(())
    }

    /// Iterates `(global index, value)` in row-major order.
    pub fn iter(&self) -> impl Iterator<Item = ([usize; N], T)> + '_ {
        let shape = self.block.shape();
        self.data.iter().enumerate().map(move |(k, &v)| {
            let rel = multi_index(&shape, k);
            (
                std::array::from_fn(|d| self.block.ranges[d].start + rel[d]),
                v,
            )
        })
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> DistArray<T, C, N> {
    /// Checks that `block` fits the array and a buffer of `len` elements
    /// holds it exactly.
    fn check_block_buffer(&self, block: &Block<N>, len: usize) -> Result<()> {
        block.validate(self.shape())?;
        if len != block.len() {
            return Err(Error::ShapeMismatch {
                expected: block.shape().to_vec(),
                found: vec![len],
            });
        }
        Ok(())
    }

    /// One-sided: fetches `block` into a new [`GlobalBlock`]. One `get` per
    /// contiguous run per remote rank, one shared-lock epoch per rank; the
    /// own part is copied locally.
    pub fn get_block(&self, block: &Block<N>) -> Result<GlobalBlock<T, N>> {
        block.validate(self.shape())?;
        let mut gb = GlobalBlock::zeros(block.clone());
        self.get_block_into(block, &mut gb.data)?;
        Ok(gb)
    }

    /// One-sided: fetches `block` into `buf` (row-major over the block;
    /// `Err` unless `buf.len()` equals the block's length).
    pub fn get_block_into(&self, block: &Block<N>, buf: &mut [T]) -> Result<()> {
        self.check_block_buffer(block, buf.len())?;
        self.get_planned(block, &block.plan(self.partitioning())?, buf)
    }

    /// [`DistArray::get_block_into`] with the block's plan made before
    /// (`plan` = `block.plan(self.partitioning())`, `buf` checked).
    pub(crate) fn get_planned(
        &self,
        block: &Block<N>,
        plan: &[TargetRuns<N>],
        buf: &mut [T],
    ) -> Result<()> {
        let me = self.comm().rank();
        let mut packed = Vec::new();
        for t in plan {
            // straight into the caller's buffer when the piece is contiguous
            // there (always for 1-D arrays and full-width row blocks)
            let direct = contiguous_in(block, &t.intersection);
            let dst: &mut [T] = match &direct {
                Some(r) => &mut buf[r.clone()],
                None => {
                    packed.resize(t.intersection.len(), T::default());
                    &mut packed
                }
            };
            if t.rank == me {
                self.with_local(|l| copy_runs(l.as_slice(), &t.runs, dst))?;
            } else {
                self.with_epoch(t.rank, LockKind::Shared, |w| {
                    w.get_runs(t.rank, &t.runs, dst)
                })?;
            }
            if direct.is_none() {
                scatter_box(block, buf, &t.intersection, &packed);
            }
        }
        Ok(())
    }

    /// One-sided: writes a block back. `AccumulateOp::Replace` puts the
    /// values; any other op accumulates them (element-wise atomic, so many
    /// ranks may `Sum` overlapping blocks at once). One RMA operation per
    /// contiguous run per remote rank, one exclusive-lock epoch per rank
    /// (writes exclude the owner's views, see
    /// [`WindowState`](crate::checks::WindowState)); the own part is updated
    /// locally. Errors: the block does not fit.
    pub fn put_block(&self, gb: &GlobalBlock<T, N>, op: AccumulateOp) -> Result<()> {
        self.put_block_from(&gb.block, &gb.data, op)
    }

    /// Like [`DistArray::put_block`] from a plain row-major buffer.
    pub fn put_block_from(&self, block: &Block<N>, buf: &[T], op: AccumulateOp) -> Result<()> {
        crate::checks::check_op::<T>(op)?;
        self.check_block_buffer(block, buf.len())?;
        self.put_planned(block, &block.plan(self.partitioning())?, buf, op)
    }

    /// [`DistArray::put_block_from`] with the block's plan made before
    /// (`plan` = `block.plan(self.partitioning())`, `buf` and `op` checked).
    pub(crate) fn put_planned(
        &self,
        block: &Block<N>,
        plan: &[TargetRuns<N>],
        buf: &[T],
        op: AccumulateOp,
    ) -> Result<()> {
        let me = self.comm().rank();
        let mut packed = Vec::new();
        for t in plan {
            let src: &[T] = match contiguous_in(block, &t.intersection) {
                Some(r) => &buf[r],
                None => {
                    packed.resize(t.intersection.len(), T::default());
                    gather_box(block, buf, &t.intersection, &mut packed);
                    &packed
                }
            };
            if t.rank == me {
                self.with_local_mut(|mut l| combine_runs(l.as_mut_slice(), &t.runs, src, op))?;
            } else {
                // writes take the target exclusively: no read view of the
                // owner (or other reader) can see the part change under it
                self.with_epoch(t.rank, LockKind::Exclusive, |w| {
                    w.write_runs(t.rank, &t.runs, src, op)
                })?;
            }
        }
        Ok(())
    }
}
