//! [`Halo`]: a rank's part of an N-dimensional array plus ghost layers of
//! a given width per dimension, optionally periodic, refreshed with one
//! collective call and visible as one `ndarray` view — what a stencil code
//! wants (PETSc's DMDA local vectors, Global Arrays' ghost cells, DASH's
//! halo).
//!
//! The extended box of a rank is its part grown by `width[d]` on both sides
//! of every dimension `d`, corners included (so 9- and 27-point stencils
//! work). Ghost cells inside the array are copies of the neighbours'
//! elements; ghost cells past the array's edge are wrapped around in a
//! periodic dimension, and otherwise left alone: they keep whatever the
//! program stored there (zero at first), which is how Dirichlet boundary
//! values are given ([`Halo::view_mut`]).
//!
//! The plan (which runs of which rank's memory land where) is made once by
//! [`Halo::new`]; every [`Halo::refresh`] then issues **one `get` per
//! contiguous run, in one epoch per neighbour rank**, and copies the own
//! part and any periodic self-wrap locally.
//!
//! ```
//! use distarray::{threaded, DistArray, Halo};
//! threaded::run_ok(4, |comm| {
//!     // 6 x 8, on a 2 x 2 process grid, a[i, j] = 10 i + j
//!     let a = DistArray::<i32, _, 2>::with_grid(comm.clone(), [2, 2], [6, 8])?;
//!     a.with_local_mut(|mut l| l.fill_with(|[i, j]| (10 * i + j) as i32))?;
//!     // one ghost layer in both dimensions, periodic in the second
//!     let mut h = Halo::new(&a, [1, 1], [false, true])?;
//!     h.refresh(&a)?;
//!     let [rows, cols] = h.own_range();
//!     // the neighbour to the left (wrapping around at column 0)
//!     let left = (cols.start + 8 - 1) % 8;
//!     assert_eq!(h.get([rows.start as isize, cols.start as isize - 1]), Some((10 * rows.start + left) as i32));
//!     assert_eq!(h.view().shape(), &[rows.len() + 2, cols.len() + 2]);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::ops::Range;

use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};

use crate::array::DistArray;
use crate::block::Block;
use crate::comm::{Element, LockKind, OneSidedComm, Window};
use crate::epoch::vote;
use crate::error::{Error, Result};
use crate::partition::{linear_offset, multi_index, ContinuousPartitioning};

/// A box of the source rank's memory (`runs`) and where it lands in the
/// extended box (`dst`, `shape`).
#[derive(Debug, Clone)]
struct Piece<const N: usize> {
    /// First element of the piece in the scratch buffer of its source.
    at: usize,
    /// Start of the piece in extended-box coordinates.
    dst: [usize; N],
    /// The piece's shape.
    shape: [usize; N],
}

/// Everything one rank contributes to the ghost layers.
#[derive(Debug, Clone)]
struct Source<const N: usize> {
    rank: usize,
    /// Runs `(offset, len)` of the rank's part, all pieces one after the other.
    runs: Vec<(usize, usize)>,
    pieces: Vec<Piece<N>>,
    len: usize,
}

/// A rank's part of an array plus ghost layers; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Halo<T, const N: usize> {
    part: ContinuousPartitioning<N>,
    width: [usize; N],
    periodic: [bool; N],
    own: [Range<usize>; N],
    ext_shape: [usize; N],
    data: Vec<T>,
    sources: Vec<Source<N>>,
    scratch: Vec<T>,
}

/// The part of the extended dimension `d` below, inside or above the own
/// range, as (destination range in extended coordinates, global range) —
/// `None` where it falls past a non-periodic edge or is empty.
fn segments(
    own: &Range<usize>,
    width: usize,
    n: usize,
    periodic: bool,
) -> Vec<(Range<usize>, Range<usize>)> {
    let mut out = Vec::with_capacity(3);
    // below: global own.start - width .. own.start
    let below_len = width;
    if below_len > 0 {
        if own.start >= width {
            out.push((0..width, own.start - width..own.start));
        } else {
            // the cells before index 0 wrap to the top, the rest is inside
            let outside = width - own.start;
            if periodic {
                out.push((0..outside, n - outside..n));
            }
            if own.start > 0 {
                out.push((outside..width, 0..own.start));
            }
        }
    }
    out.push((width..width + own.len(), own.clone()));
    // above: own.end .. own.end + width
    if width > 0 {
        let base = width + own.len();
        let inside = (n - own.end).min(width);
        if inside > 0 {
            out.push((base..base + inside, own.end..own.end + inside));
        }
        if inside < width && periodic {
            out.push((base + inside..base + width, 0..width - inside));
        }
    }
    out
}

impl<T: Element, const N: usize> Halo<T, N> {
    /// Plans the ghost layers of this rank's part of `array`: `width[d]`
    /// layers on both sides of dimension `d`, wrapped around where
    /// `periodic[d]`. Local (no communication). Errors: a periodic width
    /// larger than the array's extent.
    pub fn new<C: OneSidedComm>(
        array: &DistArray<T, C, N>,
        width: [usize; N],
        periodic: [bool; N],
    ) -> Result<Self> {
        let shape = array.shape();
        for d in 0..N {
            if periodic[d] && width[d] > shape[d] {
                return Err(Error::InvalidArgument(format!(
                    "halo width {} in periodic dimension {d} exceeds the extent {}",
                    width[d], shape[d]
                )));
            }
        }
        let me = array.comm().rank();
        let part = array.partitioning().clone();
        let own = part.part_range(me)?;
        let ext_shape: [usize; N] = std::array::from_fn(|d| own[d].len() + 2 * width[d]);
        let total = ext_shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .ok_or_else(|| Error::InvalidArgument("halo too large".into()))?;
        let mut halo = Halo {
            part,
            width,
            periodic,
            own: own.clone(),
            ext_shape,
            data: vec![T::default(); total],
            sources: Vec::new(),
            scratch: Vec::new(),
        };
        if own.iter().any(|r| r.is_empty()) {
            return Ok(halo);
        }
        halo.plan(shape)?;
        Ok(halo)
    }

    /// Builds the per-source plans: every combination of per-dimension
    /// segments except the all-interior one is a box of global indices,
    /// split by owner.
    fn plan(&mut self, shape: [usize; N]) -> Result<()> {
        let segs: [Vec<(Range<usize>, Range<usize>)>; N] = std::array::from_fn(|d| {
            segments(&self.own[d], self.width[d], shape[d], self.periodic[d])
        });
        let counts: [usize; N] = std::array::from_fn(|d| segs[d].len());
        let combos: usize = counts.iter().product();
        let mut sources: Vec<Source<N>> = Vec::new();
        for k in 0..combos {
            let pick = multi_index(&counts, k);
            let interior = (0..N).all(|d| segs[d][pick[d]].0.start == self.width[d]);
            if interior {
                continue;
            }
            let dst: [Range<usize>; N] = std::array::from_fn(|d| segs[d][pick[d]].0.clone());
            let glob: [Range<usize>; N] = std::array::from_fn(|d| segs[d][pick[d]].1.clone());
            for t in Block::new(glob.clone()).plan(&self.part)? {
                let inter = t.intersection.ranges();
                let piece_dst: [usize; N] =
                    std::array::from_fn(|d| dst[d].start + (inter[d].start - glob[d].start));
                let piece_shape = t.intersection.shape();
                let len = t.intersection.len();
                let src = match sources.iter_mut().find(|s| s.rank == t.rank) {
                    Some(s) => s,
                    None => {
                        sources.push(Source {
                            rank: t.rank,
                            runs: Vec::new(),
                            pieces: Vec::new(),
                            len: 0,
                        });
                        sources.last_mut().expect("just pushed")
                    }
                };
                src.pieces.push(Piece {
                    at: src.len,
                    dst: piece_dst,
                    shape: piece_shape,
                });
                src.runs.extend_from_slice(&t.runs);
                src.len += len;
            }
        }
        let most = sources.iter().map(|s| s.len).max().unwrap_or(0);
        self.scratch = vec![T::default(); most];
        self.sources = sources;
        Ok(())
    }

    /// Collective: copies this rank's part into the interior and fetches
    /// every ghost cell from its owner. Starts with a barrier (every rank's
    /// earlier writes to `array` are complete) and ends with a success vote
    /// (no rank overwrites `array` while another still reads it). `array`
    /// must be partitioned as the one the halo was planned for.
    pub fn refresh<C: OneSidedComm>(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        let comm = array.comm();
        let check = if array.partitioning() == &self.part {
            Ok(())
        } else {
            Err(Error::InvalidPartition(
                "Halo::refresh: the array is partitioned unlike the one the halo was planned for"
                    .into(),
            ))
        };
        vote(comm, check)?;
        let local = self.fetch(array);
        vote(comm, local)
    }

    /// One-sided: the data movement of [`Halo::refresh`] without its two
    /// collectives, for loops that synchronise anyway. The caller makes
    /// sure that every rank's writes to `array` are complete before (a
    /// [`DistArray::sync`]) and that no rank overwrites `array` until every
    /// rank's `fetch` returned (a later collective, e.g. the dot product of
    /// an iteration, which should also carry this call's error: see
    /// [`crate::epoch::vote`]).
    pub fn fetch<C: OneSidedComm>(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        self.fetch_parts(array, true)
    }

    /// One-sided: like [`Halo::fetch`], but fills only the ghost cells and
    /// leaves the interior of the extended box as it was: for kernels that
    /// read the own part from the array itself and only the faces from the
    /// halo ([`Halo::ghost_face`]), it saves a copy of the whole part.
    pub fn fetch_ghosts<C: OneSidedComm>(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        self.fetch_parts(array, false)
    }

    fn fetch_parts<C: OneSidedComm>(
        &mut self,
        array: &DistArray<T, C, N>,
        interior: bool,
    ) -> Result<()> {
        if array.partitioning() != &self.part {
            return Err(Error::InvalidPartition(
                "Halo::fetch: the array is partitioned unlike the one the halo was planned for"
                    .into(),
            ));
        }
        if self.own.iter().any(|r| r.is_empty()) {
            return Ok(());
        }
        let me = array.comm().rank();
        let own_shape: [usize; N] = self.own.clone().map(|r| r.len());
        let Halo {
            data,
            sources,
            scratch,
            ext_shape,
            width,
            ..
        } = self;
        // the interior: the own part, row by row
        if interior {
            array.with_local(|l| {
                scatter(data, ext_shape, width, &own_shape, l.as_slice());
            })?;
        }
        for s in sources.iter() {
            let buf = &mut scratch[..s.len];
            if s.rank == me {
                array.with_local(|l| crate::block::copy_runs(l.as_slice(), &s.runs, buf))?;
            } else {
                array.with_epoch(s.rank, LockKind::Shared, |w| {
                    w.get_runs(s.rank, &s.runs, buf)
                })?;
            }
            for p in &s.pieces {
                let n: usize = p.shape.iter().product();
                scatter(data, ext_shape, &p.dst, &p.shape, &buf[p.at..p.at + n]);
            }
        }
        Ok(())
    }

    /// The global index ranges of this rank's own part.
    pub fn own_range(&self) -> [Range<usize>; N] {
        self.own.clone()
    }

    /// The ghost width per dimension.
    pub fn width(&self) -> [usize; N] {
        self.width
    }

    /// The shape of the extended box (own part plus ghosts).
    pub fn extended_shape(&self) -> [usize; N] {
        self.ext_shape
    }

    /// The own part's position inside the extended box.
    pub fn interior(&self) -> [Range<usize>; N] {
        std::array::from_fn(|d| self.width[d]..self.width[d] + self.own[d].len())
    }

    /// The extended box as an `ndarray` view (index 0 in dimension `d` is
    /// global index `own.start - width[d]`).
    pub fn view(&self) -> ArrayViewD<'_, T> {
        ArrayViewD::from_shape(IxDyn(&self.ext_shape), &self.data).expect("shape matches")
    }

    /// The extended box, mutably (to set boundary values in non-periodic
    /// ghost layers; a refresh overwrites every other cell).
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, T> {
        ArrayViewMutD::from_shape(IxDyn(&self.ext_shape), &mut self.data).expect("shape matches")
    }

    /// The ghost layer on one side of dimension `d` (the low side, or the
    /// high one when `high`), over the own part's extent in the other
    /// dimensions: shape `width[d]` in `d`, the part's extent elsewhere (a
    /// strided view; `iter()` walks it row-major). This is what a stencil
    /// kernel that takes its neighbours face by face wants.
    ///
    /// Panics if `d >= N`.
    pub fn ghost_face(&self, d: usize, high: bool) -> ArrayViewD<'_, T> {
        let interior = self.interior();
        let w = self.width[d];
        let mut face = self.view();
        face.slice_each_axis_inplace(|ax| {
            let k = ax.axis.index();
            if k == d {
                let start = if high { interior[k].end } else { 0 };
                ndarray::Slice::from(start..start + w)
            } else {
                ndarray::Slice::from(interior[k].clone())
            }
        });
        face
    }

    /// The extended box's values, row-major.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The value at a global index (may be negative or past the end for
    /// ghost cells beyond the array's edge), if it lies in the extended box.
    pub fn get(&self, index: [isize; N]) -> Option<T> {
        let mut rel = [0usize; N];
        for d in 0..N {
            let r = index[d] - self.own[d].start as isize + self.width[d] as isize;
            if r < 0 || r as usize >= self.ext_shape[d] {
                return None;
            }
            rel[d] = r as usize;
        }
        Some(self.data[linear_offset(&self.ext_shape, &rel)])
    }
}

/// Copies `src` (row-major over `shape`) into `data` (row-major over
/// `ext_shape`) at `dst`.
fn scatter<T: Copy, const N: usize>(
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

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn segments_cover_the_extended_range() {
        // interior 2..5 of 0..8, width 2: below 0..2, above 5..7
        assert_eq!(
            segments(&(2..5), 2, 8, false),
            vec![(0..2, 0..2), (2..5, 2..5), (5..7, 5..7)]
        );
        // at the low edge, non-periodic: nothing below
        assert_eq!(
            segments(&(0..3), 1, 8, false),
            vec![(1..4, 0..3), (4..5, 3..4)]
        );
        // periodic: wraps to the top and the bottom
        assert_eq!(
            segments(&(0..8), 2, 8, true),
            vec![(0..2, 6..8), (2..10, 0..8), (10..12, 0..2)]
        );
        // width larger than the distance to the edge: split
        assert_eq!(
            segments(&(1..7), 2, 8, true),
            vec![
                (0..1, 7..8),
                (1..2, 0..1),
                (2..8, 1..7),
                (8..9, 7..8),
                (9..10, 0..1)
            ]
        );
    }
}
