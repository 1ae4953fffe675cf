//! [`Ghosted`]: a distributed array whose storage on each rank is its part
//! **plus** ghost margins — the layout of PETSc's DMDA local vectors and of
//! hand-written MPI stencil codes.
//!
//! A rank's values live in the interior of its extended box (the part grown
//! by `width[d]` on both sides of every dimension `d`; rows padded to
//! whole 64-byte lines where that costs at most an eighth of the row, and
//! the part's first element on a line boundary, see
//! [`Halo::extended_shape`], so that a
//! stencil's vector loads do not straddle cache lines); the margins hold
//! copies of the neighbours' values. [`Ghosted::update_ghosts`] moves only
//! the ghost cells — one message per neighbour where the backend has
//! neighbour messages (MPI, threaded), one `get` per neighbour otherwise
//! (Lamellar) — and nothing is copied per step: a stencil reads part and
//! ghosts through one typed view ([`Ghosted::view`], an
//! `ndarray::ArrayView` with the array's fixed dimension), or through
//! [`Ghosted::apply`] with a [`Stencil`] of any radius.
//!
//! [`Ghosted::update_ghosts_and_apply_dot`] overlaps the update with the
//! points that read no ghost cell. A solver keeps the one vector its
//! operator reads ghosted (CG's search direction) and the others plain
//! arrays: [`Ghosted::cg_update`], [`Ghosted::axpby`] and, for other fused
//! updates, [`Ghosted::zip_rows`] walk the part's rows beside the arrays'
//! parts, in one pass, without a copy (`apps/src/poisson.rs`).
//!
//! Where [`Halo`] adds ghost layers to a [`DistArray`] (the
//! array stays the storage, each refresh copies the part into the halo), a
//! `Ghosted` array *is* the storage: [`Ghosted::load`] and
//! [`Ghosted::store`] copy between the two forms, for I/O and for the
//! operations defined on `DistArray`.
//!
//! ```
//! use distarray::{threaded, DistArray, Ghosted, stencil::Stencil};
//! threaded::run_ok(4, |comm| {
//!     // u = i + j on a 2 x 2 process grid, 2 ghost layers for a radius-2 star
//!     let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [2, 2], [16, 16])?;
//!     let mut u = Ghosted::new(&a, [2, 2], [false, false])?;
//!     u.fill_with(|[i, j]| (i + j) as f64);
//!     u.update_ghosts()?; // collective: the faces only
//!     // the 9-point star of the second differences along both axes
//!     let lap = Stencil::star(2, |o| match o {
//!         [0, 0] => -5.0,
//!         [0, k] | [k, 0] if k.abs() == 1 => 4.0 / 3.0,
//!         _ => -1.0 / 12.0,
//!     })?;
//!     let out = DistArray::<f64, _, 2>::with_grid(comm.clone(), [2, 2], [16, 16])?;
//!     // at the points two cells away from the array's edge (the rest keep 0)
//!     u.apply_within(&lap, &out, [2..14, 2..14], false)?;
//!     // the Laplacian of a linear function is zero
//!     assert!(out.map_reduce(0.0, f64::abs, f64::max)? < 1e-12);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::ops::Range;

use ndarray::{ArrayView, ArrayViewMut, Dim, Dimension, IxDyn};

use crate::array::DistArray;
use crate::block::{copy_box, Block};
use crate::comm::{AccumulateOp, Element, OneSidedComm};
use crate::epoch::vote;
use crate::error::{Error, Result};
use crate::exact_sum::{self, ExactParts, Modes};
use crate::halo::{Halo, Own};
use crate::partition::{linear_offset, multi_index, ContinuousPartitioning};
use crate::stencil::{self, Stencil};

/// A distributed array stored with ghost margins; see the
/// [module docs](self).
pub struct Ghosted<T: Element, C: OneSidedComm, const N: usize> {
    halo: Halo<T, C, N>,
    /// Where each row (last dimension) of the part starts in the extended
    /// box, in row-major order.
    rows: Vec<usize>,
}

impl<T: Element, C: OneSidedComm, const N: usize> std::fmt::Debug for Ghosted<T, C, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ghosted").field("halo", &self.halo).finish()
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> Ghosted<T, C, N> {
    /// Collective: a ghosted array partitioned like `array`, holding its
    /// values, with `width[d]` ghost layers on both sides of dimension `d`
    /// (wrapped around where `periodic[d]`), corners included (box
    /// stencils). The ghost cells are zero until the first
    /// [`update_ghosts`](Self::update_ghosts); those past a non-periodic
    /// edge stay whatever the program stores there (boundary values).
    ///
    /// # Errors
    ///
    /// On every rank: a periodic width larger than the array's extent.
    pub fn new(array: &DistArray<T, C, N>, width: [usize; N], periodic: [bool; N]) -> Result<Self> {
        Self::from_halo(array, Halo::new(array, width, periodic)?)
    }

    /// Collective: like [`new`](Self::new), but the updates fill only the
    /// faces (cells beside the part in one dimension), not edges and
    /// corners: what star stencils read, from fewer neighbours (4 instead
    /// of 8 in 2-D, 6 instead of 26 in 3-D).
    ///
    /// # Errors
    ///
    /// Those of [`new`](Self::new).
    pub fn new_faces(
        array: &DistArray<T, C, N>,
        width: [usize; N],
        periodic: [bool; N],
    ) -> Result<Self> {
        Self::from_halo(array, Halo::new_faces(array, width, periodic)?)
    }

    fn from_halo(array: &DistArray<T, C, N>, halo: Halo<T, C, N>) -> Result<Self> {
        let shape = halo.own_range().map(|r| r.len());
        let (_, ext, width) = halo.data();
        let mut rows = Vec::new();
        for_rows(&shape, ext, width, |o, _| rows.push(o));
        let mut g = Ghosted { halo, rows };
        g.load(array)?;
        Ok(g)
    }

    fn check_partition(&self, array: &DistArray<T, C, N>, what: &str) -> Result<()> {
        if array.partitioning() != self.halo.partitioning() {
            return Err(Error::InvalidPartition(format!(
                "Ghosted::{what}: the array is partitioned unlike the ghosted one"
            )));
        }
        Ok(())
    }

    /// Collective: copies `array`'s values into the interior (this rank's
    /// part); the ghost cells keep theirs.
    ///
    /// # Errors
    ///
    /// On every rank: `array` is partitioned unlike this one.
    pub fn load(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        let (part, ext) = self.boxes();
        let copied = self.check_partition(array, "load").and_then(|_| {
            array.with_local(|l| copy_box(&part, l.as_slice(), &ext, self.halo.data_mut().0, &part))
        });
        vote(self.comm(), copied)
    }

    /// Collective: copies the interior into `array`'s parts, e.g. to use
    /// the operations of [`DistArray`] (reductions, I/O) on the values.
    ///
    /// # Errors
    ///
    /// On every rank: `array` is partitioned unlike this one.
    pub fn store(&self, array: &DistArray<T, C, N>) -> Result<()> {
        let (part, ext) = self.boxes();
        let copied = self.check_partition(array, "store").and_then(|_| {
            array.with_local_mut(|mut l| {
                copy_box(&ext, self.halo.data().0, &part, l.as_mut_slice(), &part)
            })
        });
        vote(self.comm(), copied)
    }

    /// This rank's part and its extended box as blocks, in global
    /// indices shifted by the ghost width (so that the extended box starts
    /// at zero or above): the layouts [`copy_box`] copies between.
    fn boxes(&self) -> (Block<N>, Block<N>) {
        let own = self.own_range();
        let width = self.width();
        let part = Block::new(std::array::from_fn(|d| {
            own[d].start + width[d]..own[d].end + width[d]
        }));
        let ext_shape = self.extended_shape();
        let ext = Block::new(std::array::from_fn(|d| {
            own[d].start..own[d].start + ext_shape[d]
        }));
        (part, ext)
    }

    /// Collective: fills every ghost cell inside the array (or wrapped
    /// around a periodic edge) from its owner. Moves only the ghost cells:
    /// one message per neighbour and no global synchronisation where the
    /// backend has neighbour messages (MPI, threaded); one `get` per
    /// neighbour between two votes elsewhere (Lamellar).
    ///
    /// # Errors
    ///
    /// Those of [`Halo::update_ghosts`]: a failure on one rank is reported
    /// there and, as [`Error::PeerFailed`], on its neighbours; nobody waits
    /// forever.
    pub fn update_ghosts(&mut self) -> Result<()> {
        self.halo.start_update_inner(Own::Interior)?.finish()
    }

    /// Collective: [`update_ghosts`](Self::update_ghosts) with `work`
    /// overlapping the messages: the update starts (this rank's faces are
    /// packed and sent), `work` runs on the extended box — typically the
    /// stencil on the points that need no ghost cell — and then the update
    /// finishes, overwriting the ghost cells with the neighbours' values.
    /// `work` may read and write the interior; what it writes to ghost
    /// cells inside the array is overwritten.
    ///
    /// # Errors
    ///
    /// Those of [`update_ghosts`](Self::update_ghosts); `work` has run when
    /// the start succeeded.
    pub fn update_ghosts_with<R>(
        &mut self,
        work: impl FnOnce(ArrayViewMut<'_, T, Dim<[usize; N]>>) -> R,
    ) -> Result<R>
    where
        Dim<[usize; N]>: Dimension,
    {
        let mut update = self.halo.start_update_inner(Own::Interior)?;
        // the exchange in flight reads and writes the halo's message
        // buffers, never the extended box
        let r = work(typed_mut(update.halo_mut()));
        update.finish()?;
        Ok(r)
    }

    /// Local (no communication): applies `st` at every point of this rank's part, reading
    /// the interior and ghost cells, and writes the results to `out`'s part
    /// (or adds them, with `accumulate`). Call
    /// [`update_ghosts`](Self::update_ghosts) first. The ghost width must
    /// cover the stencil's [`reach`](Stencil::reach). Ghost cells past a
    /// non-periodic edge are read as they are (boundary values, zero by
    /// default); [`apply_within`](Self::apply_within) restricts the points.
    ///
    /// The same bits on any rank count: see [`crate::stencil`]. Other ranks
    /// see the results after a synchronising call (a collective, or
    /// [`DistArray::barrier`]), as after any local write.
    ///
    /// # Errors
    ///
    /// `out` partitioned unlike this array; a width smaller than the
    /// stencil's reach. Every rank that passes the same arguments gets the
    /// same error (nothing is communicated, so nobody waits).
    pub fn apply(
        &self,
        st: &Stencil<T, N>,
        out: &DistArray<T, C, N>,
        accumulate: bool,
    ) -> Result<()> {
        let all = self.halo.partitioning().shape().map(|n| 0..n);
        self.apply_within(st, out, all, accumulate)
    }

    /// Local: [`apply`](Self::apply) at the points of this rank's part
    /// that lie in the global box `within` (e.g. the points at least the
    /// stencil's radius away from the array's edge); `out`'s other values
    /// are left alone.
    ///
    /// # Errors
    ///
    /// Those of [`apply`](Self::apply), and a box reaching past the array.
    pub fn apply_within(
        &self,
        st: &Stencil<T, N>,
        out: &DistArray<T, C, N>,
        within: [Range<usize>; N],
        accumulate: bool,
    ) -> Result<()> {
        let region = self.check_apply(st, out, &within)?;
        out.try_with_local_mut(|mut l| {
            apply_region(
                &self.halo,
                st,
                &region,
                l.as_mut_slice(),
                self.part_shape(),
                [0; N],
                accumulate,
                false,
            )
        })
        .map(|_| ())
    }

    /// Local: [`apply_within`](Self::apply_within), then every value of
    /// this rank's part becomes `f(v)` (the ghost cells are left alone) —
    /// in one pass over memory: the stencil runs slab by slab of the first
    /// dimension and each slab of the part is mapped as soon as the
    /// stencil has read it for the last time, while it is still in cache.
    /// The results are those of `apply_within` followed by
    /// [`map_inplace`](Self::map_inplace), bit for bit; the PRK stencil's
    /// `OUT += S(IN); IN += 1` is one call.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Ghosted, stencil::Stencil};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [6, 6], |[i, j]| (i + j) as f64)?;
    ///     let out = a.similar::<f64>()?;
    ///     let mut input = Ghosted::new_faces(&a, [1, 1], [false, false])?;
    ///     let st = Stencil::<f64, 2>::star(1, |o| if o == [0, 0] { 0.0 } else { 0.25 })?;
    ///     for _ in 0..2 {
    ///         input.update_ghosts()?;
    ///         // OUT += S(IN) at the points one away from the edge; IN += 1
    ///         input.apply_within_map(&st, &out, [1..5, 1..5], true, |v| v + 1.0)?;
    ///     }
    ///     out.barrier()?;
    ///     // the average of the neighbours of [2, 3] is 5, then 6
    ///     assert_eq!(out.get([2, 3])?, 11.0);
    ///     assert_eq!(out.get([0, 0])?, 0.0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`apply_within`](Self::apply_within); after an error
    /// nothing has been mapped.
    pub fn apply_within_map(
        &mut self,
        st: &Stencil<T, N>,
        out: &DistArray<T, C, N>,
        within: [Range<usize>; N],
        accumulate: bool,
        f: impl Fn(T) -> T,
    ) -> Result<()> {
        let region = self.check_apply(st, out, &within)?;
        let own = self.own_range();
        let part_shape = self.part_shape();
        let (data, ext, width) = self.halo.data_mut();
        let (ext, width) = (*ext, *width);
        // the region and the part in the extended box's coordinates, and
        // where the region starts in the part
        let interior: [Range<usize>; N] =
            std::array::from_fn(|d| width[d]..width[d] + part_shape[d]);
        let empty = region.iter().any(|r| r.is_empty());
        let in_ext: [Range<usize>; N] = std::array::from_fn(|d| {
            if empty {
                return 0..0;
            }
            let s = region[d].start - own[d].start + width[d];
            s..s + region[d].len()
        });
        let start: [usize; N] = std::array::from_fn(|d| in_ext[d].start.saturating_sub(width[d]));
        out.try_with_local_mut(|mut l| {
            stencil::apply_into_then_map(
                st,
                data,
                ext,
                in_ext,
                interior,
                l.as_mut_slice(),
                part_shape,
                start,
                accumulate,
                f,
            )
        })
    }

    /// Local: [`apply`](Self::apply) into the part of another ghosted
    /// array (partitioned alike; its ghost cells are left alone): one step
    /// of a time-stepping scheme, `next = S(u)`, with no copy.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Ghosted, stencil::Stencil};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<f64, _, 1>::from_fn(comm.clone(), [8], |[i]| (i % 2) as f64)?;
    ///     let mut u = Ghosted::new(&a, [1], [true])?;
    ///     let mut next = Ghosted::new(&a, [1], [true])?;
    ///     let smooth = Stencil::<f64, 1>::star(1, |o| if o == [0] { 0.5 } else { 0.25 })?;
    ///     u.update_ghosts()?;
    ///     u.apply_to(&smooth, &mut next, false)?; // 0 1 0 1 ... becomes 0.5 everywhere
    ///     assert!(next.interior().iter().all(|&v| v == 0.5));
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`apply`](Self::apply).
    pub fn apply_to(
        &self,
        st: &Stencil<T, N>,
        out: &mut Ghosted<T, C, N>,
        accumulate: bool,
    ) -> Result<()> {
        if out.partitioning() != self.partitioning() {
            return Err(Error::InvalidPartition(
                "Ghosted::apply_to: the output is partitioned unlike the input".into(),
            ));
        }
        let all = self.partitioning().shape().map(|n| 0..n);
        let region = self.check_reach(st, &all)?;
        let (out_data, out_ext, out_width) = out.halo.data_mut();
        let (out_ext, out_width) = (*out_ext, *out_width);
        apply_region(
            &self.halo, st, &region, out_data, out_ext, out_width, accumulate, false,
        )
        .map(|_| ())
    }

    /// Collective: [`apply`](Self::apply) (overwriting `out`) and the dot
    /// product of this array with the result, `u · (S u)` summed over all
    /// ranks — `p · A p` of a conjugate-gradient step in one pass. The
    /// local sums follow [`stencil::apply_dot`]'s fixed order (row by row,
    /// the rows in row-major order) and the ranks' sums are combined in
    /// the backend's fixed order: the same bits run after run for one
    /// partition. When `out` has [`Summation::Exact`](crate::Summation::Exact)
    /// the dot product is the correctly rounded exact sum (as
    /// [`linalg::dot`](crate::linalg::dot)), taken in a second pass over
    /// the part: the same bits on any rank count and partition. `out`'s
    /// mode is agreed between the ranks as in `linalg::dot`.
    ///
    /// ```
    /// use distarray::{stencil::Stencil, threaded, DistArray, Ghosted, Summation};
    /// threaded::run_ok(3, |comm| {
    ///     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [6, 5], |[i, j]| (i * j) as f64)?;
    ///     let mut u = Ghosted::new_faces(&a, [1, 1], [false, false])?;
    ///     u.update_ghosts()?;
    ///     let q = a.similar::<f64>()?.with_summation(Summation::Exact);
    ///     let uq = u.apply_dot(&Stencil::neg_laplacian(), &q)?; // q = A u, u · q
    ///     assert_eq!(uq, distarray::linalg::dot(&a.with_summation(Summation::Exact), &q)?);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`apply`](Self::apply), on every rank; and
    /// [`Error::InvalidArgument`] on every rank when `out`'s
    /// [`Summation`](crate::Summation) mode differs between ranks.
    pub fn apply_dot(&self, st: &Stencil<T, N>, out: &DistArray<T, C, N>) -> Result<T> {
        let exact = out.sums_exactly();
        let all = self.halo.partitioning().shape().map(|n| 0..n);
        let local = self.check_apply(st, out, &all).and_then(|region| {
            out.try_with_local_mut(|mut l| {
                let o = l.as_mut_slice();
                let shape = self.part_shape();
                let d = apply_region(&self.halo, st, &region, o, shape, [0; N], false, !exact)?;
                Ok(if exact {
                    LocalDot::Exact(Box::new(exact_parts(
                        self.halo.data().0,
                        &self.rows,
                        shape,
                        o,
                    )))
                } else {
                    LocalDot::Ordered(d)
                })
            })
        });
        self.reduce_dot(exact, local, &out.modes("apply_dot"))
    }

    /// Local: [`apply_dot`](Self::apply_dot) without the sum over the
    /// ranks — this rank's part of `u · (S u)`, in the same fixed order —
    /// for a caller that sums it with other values in one reduction (e.g.
    /// with [`collective::allreduce_vote`](crate::collective::allreduce_vote):
    /// the two dot products of a single-reduction CG in one allreduce).
    /// Never exact: with exact sums, sum the parts yourself
    /// ([`zip_rows`](Self::zip_rows) and
    /// [`ExactParts`]).
    ///
    /// ```
    /// use distarray::{linalg, stencil::Stencil, threaded, DistArray, Ghosted};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<f64, _, 1>::from_fn(comm.clone(), [9], |[i]| i as f64)?;
    ///     let mut u = Ghosted::new(&a, [1], [true])?;
    ///     u.update_ghosts()?;
    ///     let st = Stencil::<f64, 1>::neg_laplacian();
    ///     let mine = u.apply_dot_local(&st, &a.similar::<f64>()?)?;
    ///     let out = a.similar::<f64>()?;
    ///     assert_eq!(linalg::sum_over_ranks(&comm, Ok(mine))?, u.apply_dot(&st, &out)?);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`apply`](Self::apply).
    pub fn apply_dot_local(&self, st: &Stencil<T, N>, out: &DistArray<T, C, N>) -> Result<T> {
        let all = self.halo.partitioning().shape().map(|n| 0..n);
        self.check_apply(st, out, &all).and_then(|region| {
            out.try_with_local_mut(|mut l| {
                apply_region(
                    &self.halo,
                    st,
                    &region,
                    l.as_mut_slice(),
                    self.part_shape(),
                    [0; N],
                    false,
                    true,
                )
            })
        })
    }

    /// Collective: [`update_ghosts`](Self::update_ghosts) and
    /// [`apply_dot`](Self::apply_dot) in one call, the update overlapping
    /// the computation: this rank's faces are sent, the stencil runs at the
    /// points that read no ghost cell the update fills (their neighbourhood
    /// lies inside the part, or reaches past a non-periodic edge of the
    /// array) while the faces travel, then the update finishes and the
    /// stencil runs on the rest, the frame of the part as wide as the
    /// stencil's reach on the sides that have neighbours (PETSc's
    /// `DMGlobalToLocalBegin`, interior, `DMGlobalToLocalEnd`, boundary).
    /// Every point is computed whole by
    /// the same kernel, so `out` has the same bits as after
    /// `update_ghosts` and `apply_dot`; the local dot product adds the
    /// inner points first, then the frame (a fixed order for one
    /// partition; exact with [`Summation::Exact`](crate::Summation::Exact)
    /// as in `apply_dot`).
    ///
    /// ```
    /// use distarray::{stencil::Stencil, threaded, DistArray, Ghosted};
    /// threaded::run_ok(4, |comm| {
    ///     let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [2, 2], [8, 8])?;
    ///     let mut u = Ghosted::new_faces(&a, [1, 1], [false, false])?;
    ///     u.fill_with(|[i, j]| (i * 8 + j) as f64);
    ///     let (q1, q2) = (a.similar::<f64>()?, a.similar::<f64>()?);
    ///     let st = Stencil::neg_laplacian();
    ///     u.update_ghosts_and_apply_dot(&st, &q1)?; // overlapped
    ///     u.update_ghosts()?;
    ///     u.apply_dot(&st, &q2)?; // in turn
    ///     assert_eq!(q1.to_vec()?, q2.to_vec()?);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`update_ghosts`](Self::update_ghosts) and
    /// [`apply`](Self::apply), on every rank (the update runs also when the
    /// arguments are refused, so that no neighbour waits); and
    /// [`Error::InvalidArgument`] on every rank when `out`'s
    /// [`Summation`](crate::Summation) mode differs between ranks.
    pub fn update_ghosts_and_apply_dot(
        &mut self,
        st: &Stencil<T, N>,
        out: &DistArray<T, C, N>,
    ) -> Result<T> {
        let exact = out.sums_exactly();
        let all = self.halo.partitioning().shape().map(|n| 0..n);
        let checked = self.check_apply(st, out, &all);
        let part_shape = self.part_shape();
        // the inner box keeps the stencil's reach away from the sides whose
        // ghost cells the update fills (none past a non-periodic edge)
        let reach = st.reach();
        let sides = self.halo.filled_sides();
        let margins: [[usize; 2]; N] = std::array::from_fn(|d| {
            [
                if sides[d][0] { reach[d] } else { 0 },
                if sides[d][1] { reach[d] } else { 0 },
            ]
        });
        let Ghosted { halo, rows } = self;
        let mut update = halo.start_update_inner(Own::Interior)?;
        let local = out.try_with_local_mut(|mut l| {
            let o = l.as_mut_slice();
            let region = match &checked {
                Ok(region) => region.clone(),
                Err(_) => return Ok(LocalDot::Ordered(T::ZERO)),
            };
            let (inner, frame) = split_frame(&region, margins);
            // the exchange in flight uses the message buffers only: the
            // interior of the extended box can be read meanwhile
            let first = apply_region(
                update.halo_mut(),
                st,
                &inner,
                o,
                part_shape,
                [0; N],
                false,
                !exact,
            );
            update.finish_in_place()?;
            let mut dot = first?;
            for piece in &frame {
                let d = apply_region(
                    update.halo_mut(),
                    st,
                    piece,
                    o,
                    part_shape,
                    [0; N],
                    false,
                    !exact,
                )?;
                dot = T::combine(AccumulateOp::Sum, dot, d);
            }
            Ok(if exact {
                LocalDot::Exact(Box::new(exact_parts(
                    update.halo_mut().data().0,
                    rows,
                    part_shape,
                    o,
                )))
            } else {
                LocalDot::Ordered(dot)
            })
        });
        // finishes the update if the view could not be opened (a no-op
        // otherwise): every rank takes part in it
        let finished = update.finish_in_place();
        drop(update);
        let local = checked.and(finished).and(local);
        self.reduce_dot(exact, local, &out.modes("update_ghosts_and_apply_dot"))
    }

    /// Collective: the sum over the ranks of the local dot products (a vote
    /// on `local`), or of the exact parts when `exact`; the output's
    /// summation `modes` agreed in the vote (the ordered path's one
    /// collective; a vote before the exact parts' allreduce).
    fn reduce_dot(
        &self,
        exact: bool,
        local: Result<LocalDot<T>>,
        modes: &Modes<'_, 1>,
    ) -> Result<T> {
        if exact {
            let parts = local.map(|l| match l {
                LocalDot::Exact(parts) => *parts,
                LocalDot::Ordered(_) => ExactParts::new(), // never: refused then
            });
            return crate::linalg::sum_exact_agreed(self.comm(), parts, modes);
        }
        let local = local.map(|l| match l {
            LocalDot::Ordered(d) => d,
            LocalDot::Exact(parts) => parts.round(),
        });
        crate::linalg::sum_agreed(self.comm(), local, modes)
    }

    /// Local: `u = alpha x + beta u` on this rank's part, row by row
    /// ([`kernels::axpby`](crate::kernels::axpby): the same bits as
    /// [`linalg::axpby`](crate::linalg::axpby) on the stored values); the
    /// ghost cells are left alone. `x` must be partitioned like this array.
    /// CG's `p = r + beta p` with `p` ghosted and `r` a plain array.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Ghosted};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [4, 3], |[i, j]| (i + j) as f64)?;
    ///     let mut p = Ghosted::new(&a, [1, 1], [false, false])?;
    ///     let r = DistArray::<f64, _, 2>::from_fn(comm.clone(), [4, 3], |_| 1.0)?;
    ///     p.axpby(1.0, &r, 0.5)?; // p = r + p / 2
    ///     p.store(&a)?;
    ///     assert_eq!(a.get([3, 2])?, 1.0 + 2.5);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `x` partitioned unlike this array (on every rank: nothing is
    /// communicated).
    pub fn axpby(&mut self, alpha: T, x: &DistArray<T, C, N>, beta: T) -> Result<()> {
        self.check_partition(x, "axpby")?;
        let len = self.part_shape()[N - 1];
        let (data, _, _) = self.halo.data_mut();
        x.with_local(|l| {
            let lx = l.as_slice();
            for (k, &o) in self.rows.iter().enumerate() {
                let y = &mut data[o..o + len];
                crate::kernels::axpby(alpha, &lx[k * len..(k + 1) * len], beta, y);
            }
        })
    }

    /// Collective: the conjugate-gradient update with this array as the
    /// search direction `p`: `x = x + alpha p`, `r = r - alpha q`, returning
    /// the new `r · r` — one pass over the parts, row by row
    /// ([`kernels::cg_update`](crate::kernels::cg_update): `x` and `r` get
    /// the same bits as from [`linalg::cg_update`](crate::linalg::cg_update)
    /// on the stored values; `r · r` is summed row by row, the rows in
    /// row-major order, then over the ranks in the backend's fixed order).
    /// Exact, as [`linalg::cg_update`](crate::linalg::cg_update), when `q`,
    /// `x` or `r` has [`Summation::Exact`](crate::Summation::Exact). `q`,
    /// `x` and `r` must be partitioned like this array.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Ghosted};
    /// threaded::run_ok(2, |comm| {
    ///     let ones = DistArray::<f64, _, 2>::from_fn(comm.clone(), [3, 4], |_| 1.0)?;
    ///     let p = Ghosted::new(&ones, [1, 1], [false, false])?;
    ///     let q = DistArray::<f64, _, 2>::from_fn(comm.clone(), [3, 4], |_| 2.0)?;
    ///     let mut x = ones.similar::<f64>()?;
    ///     let mut r = DistArray::<f64, _, 2>::from_fn(comm.clone(), [3, 4], |_| 5.0)?;
    ///     let rr = p.cg_update(2.0, &q, &mut x, &mut r)?; // x = 2, r = 5 - 4
    ///     assert_eq!(rr, 12.0);
    ///     assert_eq!(x.get([2, 3])?, 2.0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// On every rank: an array partitioned unlike this one; the
    /// [`Summation`](crate::Summation) mode of `q`, `x` or `r` differing
    /// between ranks ([`Error::InvalidArgument`], after the update).
    pub fn cg_update(
        &self,
        alpha: T,
        q: &DistArray<T, C, N>,
        x: &mut DistArray<T, C, N>,
        r: &mut DistArray<T, C, N>,
    ) -> Result<T> {
        let local = self
            .check_partition(q, "cg_update")
            .and_then(|_| self.check_partition(x, "cg_update"))
            .and_then(|_| self.check_partition(r, "cg_update"))
            .and_then(|_| {
                q.try_with_local(|lq| {
                    x.try_with_local_mut(|mut lx| {
                        r.with_local_mut(|mut lr| {
                            let (lq, lx, lr) =
                                (lq.as_slice(), lx.as_mut_slice(), lr.as_mut_slice());
                            let len = self.part_shape()[N - 1];
                            let p = self.halo.data().0;
                            let mut rr = T::ZERO;
                            for (k, &o) in self.rows.iter().enumerate() {
                                let at = k * len..(k + 1) * len;
                                let d = crate::kernels::cg_update(
                                    alpha,
                                    &p[o..o + len],
                                    &lq[at.clone()],
                                    &mut lx[at.clone()],
                                    &mut lr[at],
                                );
                                rr = T::combine(AccumulateOp::Sum, rr, d);
                            }
                            rr
                        })
                    })
                })
            });
        let modes = Modes {
            operation: "Ghosted::cg_update",
            operands: [
                ("q", q.summation()),
                ("x", x.summation()),
                ("r", r.summation()),
            ],
        };
        if q.sums_exactly() || x.sums_exactly() || r.sums_exactly() {
            let parts = local.and_then(|_| {
                r.with_local(|l| {
                    let mut acc = ExactParts::new();
                    acc.add_dot(l.as_slice(), l.as_slice());
                    acc
                })
            });
            return crate::linalg::sum_exact_agreed(self.comm(), parts, &modes);
        }
        crate::linalg::sum_agreed(self.comm(), local, &modes)
    }

    /// Local: runs `f` on every row (last dimension) of this rank's part,
    /// in row-major order, together with the same row of each array of
    /// `arrays` (their parts, partitioned like this array, opened for
    /// writing): the fused vector updates of a solver whose one vector is
    /// ghosted and the others plain arrays, in one pass and without a copy.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Ghosted};
    /// threaded::run_ok(3, |comm| {
    ///     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [5, 4], |[i, j]| (i * 4 + j) as f64)?;
    ///     let mut u = Ghosted::new_faces(&a, [1, 1], [true, true])?;
    ///     let (v, w) = (a.similar::<f64>()?, a.similar::<f64>()?);
    ///     // v = 2 u, w = u + 1, then u = -u; and this rank's sum of v
    ///     let mut sum = 0.0;
    ///     u.zip_rows([&v, &w], |lu, [lv, lw]| {
    ///         for k in 0..lu.len() {
    ///             lv[k] = 2.0 * lu[k];
    ///             lw[k] = lu[k] + 1.0;
    ///             lu[k] = -lu[k];
    ///             sum += lv[k];
    ///         }
    ///     })?;
    ///     assert_eq!(distarray::linalg::sum_over_ranks(&comm, Ok(sum))?, 2.0 * 190.0);
    ///     assert_eq!(w.get([4, 3])?, 20.0);
    ///     u.store(&a)?;
    ///     assert_eq!(a.get([1, 0])?, -4.0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// An array partitioned unlike this one, or the same array twice
    /// (before `f` runs; on every rank that passes the same arrays); a
    /// local view refused.
    pub fn zip_rows<const K: usize>(
        &mut self,
        arrays: [&DistArray<T, C, N>; K],
        mut f: impl FnMut(&mut [T], [&mut [T]; K]),
    ) -> Result<()> {
        for (k, a) in arrays.iter().enumerate() {
            self.check_partition(a, "zip_rows")?;
            if arrays[..k].iter().any(|b| std::ptr::eq(*a, *b)) {
                return Err(Error::InvalidArgument(format!(
                    "Ghosted::zip_rows: array {k} appears twice"
                )));
            }
        }
        let len = self.part_shape()[N - 1];
        let Ghosted { halo, rows } = self;
        let data = halo.data_mut().0;
        with_parts(&arrays, Vec::with_capacity(K), &mut |parts| {
            let mut others: Vec<_> = parts.iter_mut().map(|p| p.chunks_mut(len.max(1))).collect();
            for &o in rows.iter() {
                let others: [&mut [T]; K] =
                    std::array::from_fn(|k| others[k].next().expect("a row of each part"));
                f(&mut data[o..o + len], others);
            }
        })
    }

    /// Checks the arguments of an apply; returns this rank's points, as a
    /// global box.
    fn check_apply(
        &self,
        st: &Stencil<T, N>,
        out: &DistArray<T, C, N>,
        within: &[Range<usize>; N],
    ) -> Result<[Range<usize>; N]> {
        self.check_partition(out, "apply")?;
        self.check_reach(st, within)
    }

    /// Checks the stencil's reach against the ghost width and `within`
    /// against the array; returns this rank's points, as a global box.
    fn check_reach(
        &self,
        st: &Stencil<T, N>,
        within: &[Range<usize>; N],
    ) -> Result<[Range<usize>; N]> {
        let width = self.width();
        let reach = st.reach();
        if (0..N).any(|d| reach[d] > width[d]) {
            return Err(Error::InvalidArgument(format!(
                "Ghosted::apply: the stencil reaches {reach:?}, the ghost width is {width:?}"
            )));
        }
        let shape = self.halo.partitioning().shape();
        if (0..N).any(|d| within[d].start > within[d].end || within[d].end > shape[d]) {
            return Err(Error::InvalidArgument(format!(
                "Ghosted::apply_within: {within:?} is not a box inside the array's shape {shape:?}"
            )));
        }
        let own = self.own_range();
        Ok(std::array::from_fn(|d| {
            let s = own[d].start.max(within[d].start);
            s..own[d].end.min(within[d].end).max(s)
        }))
    }

    /// Local: sets every value of this rank's part from its global index
    /// (the ghost cells are left alone).
    pub fn fill_with(&mut self, f: impl Fn([usize; N]) -> T) {
        let own = self.own_range();
        let shape = self.part_shape();
        let (data, ext, width) = self.halo.data_mut();
        let count: usize = shape.iter().product();
        for k in 0..count {
            let rel = multi_index(&shape, k);
            let at: [usize; N] = std::array::from_fn(|d| rel[d] + width[d]);
            data[linear_offset(ext, &at)] = f(std::array::from_fn(|d| own[d].start + rel[d]));
        }
    }

    /// Local: maps every value of this rank's part (the ghost cells are
    /// left alone), row by row.
    pub fn map_inplace(&mut self, f: impl Fn(T) -> T) {
        let len = self.part_shape()[N - 1];
        let data = self.halo.data_mut().0;
        crate::kernels::map_rows(data, &self.rows, len, &f);
    }

    /// Local: runs `f` on every row (last dimension) of this rank's part
    /// in the extended box, in row-major order.
    pub fn for_each_row(&mut self, mut f: impl FnMut(&mut [T])) {
        let len = self.part_shape()[N - 1];
        let data = self.halo.data_mut().0;
        for &o in &self.rows {
            f(&mut data[o..o + len]);
        }
    }

    /// The extended box (part and ghost cells) as a typed `ndarray` view:
    /// index `w[d]` in dimension `d` is the part's first element (global
    /// index `own_range()[d].start`).
    pub fn view(&self) -> ArrayView<'_, T, Dim<[usize; N]>>
    where
        Dim<[usize; N]>: Dimension,
    {
        let (data, ext, _) = self.halo.data();
        ArrayView::from_shape(IxDyn(ext), data)
            .expect("the extended box matches its shape")
            .into_dimensionality()
            .expect("N dimensions")
    }

    /// The extended box, mutably (to set boundary values in the ghost
    /// cells past a non-periodic edge, or to compute in place).
    pub fn view_mut(&mut self) -> ArrayViewMut<'_, T, Dim<[usize; N]>>
    where
        Dim<[usize; N]>: Dimension,
    {
        typed_mut(&mut self.halo)
    }

    /// This rank's part: the interior of the extended box, a typed view.
    pub fn interior(&self) -> ArrayView<'_, T, Dim<[usize; N]>>
    where
        Dim<[usize; N]>: Dimension,
    {
        let inner = self.halo.interior();
        let mut v = self.view();
        v.slice_each_axis_inplace(|ax| ndarray::Slice::from(inner[ax.axis.index()].clone()));
        v
    }

    /// This rank's part, mutably.
    pub fn interior_mut(&mut self) -> ArrayViewMut<'_, T, Dim<[usize; N]>>
    where
        Dim<[usize; N]>: Dimension,
    {
        let inner = self.halo.interior();
        let mut v = self.view_mut();
        v.slice_each_axis_inplace(|ax| ndarray::Slice::from(inner[ax.axis.index()].clone()));
        v
    }

    /// The extended box's values, row-major over
    /// [`extended_shape`](Self::extended_shape): what a kernel that
    /// computes its own offsets reads.
    pub fn as_slice(&self) -> &[T] {
        self.halo.data().0
    }

    /// The extended box's values, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.halo.data_mut().0
    }

    /// The value at a global index (negative or past the end for ghost
    /// cells beyond the array's edge), if it lies in the extended box.
    pub fn get(&self, index: [isize; N]) -> Option<T> {
        self.halo.get(index)
    }

    /// The global index ranges of this rank's part.
    pub fn own_range(&self) -> [Range<usize>; N] {
        self.halo.own_range()
    }

    /// The shape of this rank's part.
    fn part_shape(&self) -> [usize; N] {
        self.own_range().map(|r| r.len())
    }

    /// The ghost width per dimension.
    pub fn width(&self) -> [usize; N] {
        self.halo.width()
    }

    /// The shape of the extended box: the part and its ghost layers, the
    /// last dimension (in two or more dimensions, where that costs at most
    /// an eighth of the row) padded to whole 64-byte lines past the high
    /// ghost layer
    /// ([`Halo::extended_shape`]; the padding is never written by an
    /// update). Take strides from it, not from the part's shape.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Ghosted};
    /// threaded::run_ok(1, |comm| {
    ///     let a = DistArray::<f64, _, 2>::new(comm, [10, 1000])?;
    ///     let g = Ghosted::new_faces(&a, [2, 2], [false, false])?;
    ///     // 1000 + 2 + 2 values, padded to 1008 (126 lines of 8 f64)
    ///     assert_eq!(g.extended_shape(), [14, 1008]);
    ///     // the part's first element on a line boundary
    ///     let first = 2 * 1008 + 2;
    ///     assert_eq!(g.as_slice()[first..].as_ptr() as usize % 64, 0);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn extended_shape(&self) -> [usize; N] {
        self.halo.extended_shape()
    }

    /// The ranks this rank receives ghost cells from.
    pub fn neighbours(&self) -> Vec<usize> {
        self.halo.neighbours()
    }

    /// The partition (that of the array it was made from).
    pub fn partitioning(&self) -> &ContinuousPartitioning<N> {
        self.halo.partitioning()
    }

    /// The communicator.
    pub fn comm(&self) -> &C {
        self.halo.comm()
    }
}

/// The halo's extended box as a typed mutable view.
fn typed_mut<T: Element, C: OneSidedComm, const N: usize>(
    halo: &mut Halo<T, C, N>,
) -> ArrayViewMut<'_, T, Dim<[usize; N]>>
where
    Dim<[usize; N]>: Dimension,
{
    let (data, ext, _) = halo.data_mut();
    let ext = *ext;
    ArrayViewMut::from_shape(IxDyn(&ext), data)
        .expect("the extended box matches its shape")
        .into_dimensionality()
        .expect("N dimensions")
}

/// Calls `f(offset, len)` for every row (last dimension) of the box of
/// shape `shape` at `start` in row-major values of shape `outer`.
fn for_rows<const N: usize>(
    shape: &[usize; N],
    outer: &[usize; N],
    start: &[usize; N],
    mut f: impl FnMut(usize, usize),
) {
    let row = shape[N - 1];
    let count: usize = shape.iter().product();
    if row == 0 || count == 0 {
        return;
    }
    let mut rows_shape = *shape;
    rows_shape[N - 1] = 1;
    for k in 0..count / row {
        let rel = multi_index(&rows_shape, k);
        let at: [usize; N] = std::array::from_fn(|d| start[d] + rel[d]);
        f(linear_offset(outer, &at), row);
    }
}

/// A rank's part of a dot product: summed in the fixed order, or exact.
enum LocalDot<T> {
    Ordered(T),
    Exact(Box<ExactParts>),
}

/// This rank's exact parts of `u · y`: `u`'s rows start at `rows` in
/// `data`, `y` is a part of shape `shape` stored row-major. The exact sum
/// takes its terms a chunk ([`exact_sum::CHUNK`]) at a time, so short rows
/// go to it in runs of about four chunks: copied one after the other, beside
/// the same rows of `y`, which are consecutive.
fn exact_parts<T: Element, const N: usize>(
    data: &[T],
    rows: &[usize],
    shape: [usize; N],
    y: &[T],
) -> ExactParts {
    let len = shape[N - 1];
    let mut acc = ExactParts::new();
    let per_run = (4 * exact_sum::CHUNK / len.max(1)).max(1);
    let mut run: Vec<T> = Vec::with_capacity(per_run * len);
    for (r, rows) in rows.chunks(per_run).enumerate() {
        run.clear();
        for &o in rows {
            run.extend_from_slice(&data[o..o + len]);
        }
        let at = r * per_run * len;
        acc.add_dot(&run, &y[at..at + run.len()]);
    }
    acc
}

/// The stencil at the points `region` (global, inside the part) of
/// `halo`'s extended box into `out`, row-major over `out_shape`, holding
/// this rank's part at offset `out_shift` (zero for a part, the ghost
/// width for an extended box); returns the local dot product when `dot`.
#[allow(clippy::too_many_arguments)]
fn apply_region<T: Element, C: OneSidedComm, const N: usize>(
    halo: &Halo<T, C, N>,
    st: &Stencil<T, N>,
    region: &[Range<usize>; N],
    out: &mut [T],
    out_shape: [usize; N],
    out_shift: [usize; N],
    accumulate: bool,
    dot: bool,
) -> Result<T> {
    if region.iter().any(|r| r.is_empty()) {
        return Ok(T::ZERO);
    }
    let (data, ext, width) = halo.data();
    let own = halo.own_range();
    let in_ext: [Range<usize>; N] = std::array::from_fn(|d| {
        let s = region[d].start - own[d].start + width[d];
        s..s + region[d].len()
    });
    let start: [usize; N] = std::array::from_fn(|d| region[d].start - own[d].start + out_shift[d]);
    stencil::apply_into(
        st, data, *ext, in_ext, out, out_shape, start, accumulate, dot,
    )
}

/// Splits the box `region` into the inner box, `margins[d][0]` away from
/// its low face in dimension `d` and `margins[d][1]` from its high face,
/// and the frame around it: for each dimension `d`, the slabs at its low
/// and high end, as long as the inner box in the dimensions before `d` and
/// whole in those after (disjoint; together with the inner box, the whole
/// box; the empty ones left out).
fn split_frame<const N: usize>(
    region: &[Range<usize>; N],
    margins: [[usize; 2]; N],
) -> ([Range<usize>; N], Vec<[Range<usize>; N]>) {
    let inner: [Range<usize>; N] = std::array::from_fn(|d| {
        let r = &region[d];
        let lo = (r.start + margins[d][0]).min(r.end);
        lo..r.end.saturating_sub(margins[d][1]).max(lo)
    });
    let mut frame = Vec::with_capacity(2 * N);
    for d in 0..N {
        for slab in [region[d].start..inner[d].start, inner[d].end..region[d].end] {
            if slab.is_empty() {
                continue;
            }
            frame.push(std::array::from_fn(|k| match k.cmp(&d) {
                std::cmp::Ordering::Less => inner[k].clone(),
                std::cmp::Ordering::Equal => slab.clone(),
                std::cmp::Ordering::Greater => region[k].clone(),
            }));
        }
    }
    (inner, frame)
}

/// Runs `f` with the local parts of `arrays`, opened for writing one
/// inside the other, after those in `acc`.
fn with_parts<'a, T: Element, C: OneSidedComm, const N: usize>(
    arrays: &[&DistArray<T, C, N>],
    acc: Vec<&'a mut [T]>,
    f: &mut dyn FnMut(&mut Vec<&mut [T]>),
) -> Result<()> {
    match arrays.split_first() {
        None => {
            let mut acc = acc;
            f(&mut acc);
            Ok(())
        }
        Some((a, rest)) => a.try_with_local_mut(|mut l| {
            let mut acc: Vec<&mut [T]> = acc;
            acc.push(l.as_mut_slice());
            with_parts(rest, acc, f)
        }),
    }
}
