//! [`Halo`]: a rank's part of an N-dimensional array plus ghost layers of
//! a given width per dimension, optionally periodic, refreshed with one
//! collective call and visible as one `ndarray` view — what a stencil code
//! wants (PETSc's DMDA local vectors, Global Arrays' ghost cells, DASH's
//! halo).
//!
//! The extended box of a rank is its part grown by `width[d]` on both sides
//! of every dimension `d`, corners included (so 9- and 27-point stencils
//! work), its rows padded to whole 64-byte lines
//! ([`Halo::extended_shape`]). Ghost cells inside the array are copies of the neighbours'
//! elements; ghost cells past the array's edge are wrapped around in a
//! periodic dimension, and otherwise left alone: they keep whatever the
//! program stored there (zero at first), which is how Dirichlet boundary
//! values are given ([`Halo::view_mut`]).
//!
//! The plan is made once, collectively, by [`Halo::new`]: every rank
//! knows which boxes of its part each neighbour needs, and where they land.
//! Each update then has every rank **pack** the boxes each neighbour needs,
//! contiguously per neighbour (a local copy: a ghost column, strided in its
//! owner's memory, travels as one message, not one per row), and move them
//! in one of two ways:
//!
//! * **Neighbour messages** where the backend has them
//!   ([`OneSidedComm::messages`]: MPI, threaded, Lamellar):
//!   [`Halo::update_ghosts`] sends each neighbour its boxes in one message
//!   and waits for the neighbours' messages. No barrier and no global
//!   collective: on a network, one one-way latency per update, where a
//!   `get` needs a full round trip plus a synchronisation telling the
//!   reader the data is ready (measured in BENCHMARKS.md: the Poisson CG
//!   went from 3.7 to 1.6 network round trips per iteration).
//! * **One-sided gets** elsewhere (a backend without messages): every rank packs into a
//!   staging window, a vote, **one `get` per neighbour**, a vote.
//!
//! [`Halo::refresh`] also copies the own part into the interior and ends
//! with a vote, so an error anywhere is an error everywhere. The own part
//! and any periodic wrap onto the rank itself are copied locally.
//!
//! ```
//! use distarray::{threaded, DistArray, Halo};
//! threaded::run_ok(4, |comm| {
//!     // 6 x 8, on a 2 x 2 process grid, a[i, j] = 10 i + j
//!     let a = DistArray::<i32, _, 2>::with_grid(comm.clone(), [2, 2], [6, 8])?;
//!     a.with_local_mut(|mut l| l.fill_with(|[i, j]| (10 * i + j) as i32))?;
//!     // one ghost layer in both dimensions, periodic in the second
//!     let mut h = Halo::new(&a, [1, 1], [false, true])?; // collective
//!     h.refresh(&a)?;
//!     let [rows, cols] = h.own_range();
//!     // the neighbour to the left (wrapping around at column 0)
//!     let left = (cols.start + 8 - 1) % 8;
//!     assert_eq!(h.get([rows.start as isize, cols.start as isize - 1]), Some((10 * rows.start + left) as i32));
//!     // the part and a ghost layer on each side (rows this short are not
//!     // padded to whole lines: see `extended_shape`)
//!     assert_eq!(h.view().shape(), &[rows.len() + 2, cols.len() + 2]);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::ops::Range;
use std::sync::Mutex;

use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};

use crate::array::DistArray;
use crate::comm::{Element, OneSidedComm, Request};
use crate::epoch::vote;
use crate::error::{Error, Result};
use crate::partition::{linear_offset, ContinuousPartitioning};

// The plan: which boxes each rank sends and receives (`Halo::new`).
mod plan;
// The extended box's storage: whole-line rows, the part on a line boundary.
pub(crate) mod aligned;
// Neighbour messages (`NeighbourMessages::exchange_bytes_start`).
mod messages;
// One-sided gets from a staging window (`Halo::pack`, `Halo::fetch`).
mod one_sided;
// What an update copies without communication: the own part into the
// interior, a periodic wrap onto the rank itself, and reading the own values.
mod local;

use self::plan::{Dest, Piece, Source};

/// A rank's part of an array plus ghost layers; see the [module docs](self).
pub struct Halo<T: Element, C: OneSidedComm, const N: usize> {
    part: ContinuousPartitioning<N>,
    width: [usize; N],
    own: [Range<usize>; N],
    /// The extended box's shape, the last dimension padded to whole
    /// 64-byte lines ([`aligned::padded_row`]).
    ext_shape: [usize; N],
    /// The extended box, row-major over `ext_shape`, the part's first
    /// element on a 64-byte boundary.
    data: aligned::AlignedBuf<T>,
    /// Pieces this rank copies from its own part (periodic wrap onto itself).
    local: Vec<Piece<N>>,
    /// What this rank fetches, per neighbour.
    sources: Vec<Source<N>>,
    /// The boxes of this rank's part each neighbour needs, per neighbour
    /// in rank order: the order of the messages, and of this rank's staging
    /// part.
    sends: Vec<Dest<N>>,
    /// Every rank's packed boxes.
    staging: DistArray<T, C, 1>,
    scratch: Vec<T>,
    /// The pieces of `local`, one after the other, taken from the interior
    /// when an update of a [`Ghosted`](crate::Ghosted) array starts and
    /// written to the ghost cells when it finishes, like the neighbours'
    /// messages.
    wrap: Vec<T>,
    /// Neighbour messages ([`Halo::update_ghosts`]), where the backend has
    /// them: the message to each neighbour (index = `sends`): its boxes,
    /// packed one after the other, then one status element (all-zero
    /// bytes: the sender packed them; `T::ONE`: it failed, the ghost values
    /// are void); and the buffers its neighbours' messages arrive in
    /// (index = `sources`).
    outbox: Option<Vec<Vec<T>>>,
    inbox: Vec<Vec<T>>,
    /// The exchange in flight, whose buffers are `outbox` and `inbox`:
    /// every method that touches them completes it first, and so does
    /// `Drop` (a leaked [`GhostUpdate`] cannot leave it running under
    /// freed memory).
    in_flight: Mutex<Option<Box<dyn Request>>>,
}

impl<T: Element, C: OneSidedComm, const N: usize> Drop for Halo<T, C, N> {
    fn drop(&mut self) {
        // the backend may still write `inbox` and read `outbox`
        let _ = self.complete_in_flight();
    }
}

/// A ghost update in flight, from [`Halo::start_update`]: the messages
/// travel while the caller computes what needs no ghost cell;
/// [`GhostUpdate::finish`] waits for them and fills the ghost cells.
/// Dropped unfinished, it waits for the messages (the ghost cells are then
/// not updated).
#[must_use = "call finish() to wait for the ghost cells"]
pub struct GhostUpdate<'a, T: Element, C: OneSidedComm, const N: usize> {
    halo: &'a mut Halo<T, C, N>,
    /// Where the own values come from.
    own: Own<'a, T, C, N>,
    done: bool,
}

/// Where an update reads this rank's own values from.
pub(crate) enum Own<'a, T: Element, C: OneSidedComm, const N: usize> {
    /// The array's part, through a local view.
    Array(&'a DistArray<T, C, N>),
    /// The array's part, from a view the caller holds already
    /// ([`Halo::start_update_from`]).
    Slice(&'a DistArray<T, C, N>, &'a [T]),
    /// The interior of the halo's own extended box: the storage of a
    /// [`Ghosted`](crate::Ghosted) array.
    Interior,
}

impl<T: Element, C: OneSidedComm, const N: usize> Clone for Own<'_, T, C, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> Copy for Own<'_, T, C, N> {}

impl<T: Element, C: OneSidedComm, const N: usize> Own<'_, T, C, N> {
    fn array(&self) -> Option<&DistArray<T, C, N>> {
        match self {
            Own::Array(a) | Own::Slice(a, _) => Some(a),
            Own::Interior => None,
        }
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> GhostUpdate<'_, T, C, N> {
    /// Waits for the neighbours' messages and fills the ghost cells. The
    /// errors of [`Halo::update_ghosts`].
    pub fn finish(mut self) -> Result<()> {
        self.finish_in_place()
    }

    /// [`finish`](Self::finish) that keeps the guard, so that the caller
    /// goes on reading the extended box, ghost cells filled, through
    /// [`halo_mut`](Self::halo_mut) (dropped afterwards, it does nothing
    /// more).
    pub(crate) fn finish_in_place(&mut self) -> Result<()> {
        if self.done {
            // the update completed in `start_update` (no messages), or
            // was finished already
            return Ok(());
        }
        self.done = true;
        self.halo.finish_messages(self.own)
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> GhostUpdate<'_, T, C, N> {
    /// The halo whose exchange is in flight: its extended box may be read
    /// and written meanwhile (the exchange uses the message buffers only).
    pub(crate) fn halo_mut(&mut self) -> &mut Halo<T, C, N> {
        self.halo
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> Drop for GhostUpdate<'_, T, C, N> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.halo.complete_in_flight();
        }
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> std::fmt::Debug for GhostUpdate<'_, T, C, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GhostUpdate")
            .field("halo", &self.halo)
            .finish()
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> std::fmt::Debug for Halo<T, C, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Halo")
            .field("own", &self.own)
            .field("width", &self.width)
            .field(
                "neighbours",
                &self.sources.iter().map(|s| s.rank).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> Halo<T, C, N> {
    pub(super) fn check_partition(&self, own: Own<'_, T, C, N>, what: &str) -> Result<()> {
        match own.array() {
            Some(array) if array.partitioning() != &self.part => {
                Err(Error::InvalidPartition(format!(
                    "Halo::{what}: the array is partitioned unlike the one the halo was planned for"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The communicator the halo was planned on.
    pub(crate) fn comm(&self) -> &C {
        self.staging.comm()
    }

    /// The partition the halo was planned for.
    pub(crate) fn partitioning(&self) -> &ContinuousPartitioning<N> {
        &self.part
    }

    /// The extended box, its shape and the ghost width.
    pub(crate) fn data(&self) -> (&[T], &[usize; N], &[usize; N]) {
        (&self.data[..], &self.ext_shape, &self.width)
    }

    /// The extended box (mutably), its shape and the ghost width.
    pub(crate) fn data_mut(&mut self) -> (&mut [T], &[usize; N], &[usize; N]) {
        (&mut self.data[..], &self.ext_shape, &self.width)
    }

    /// Collective: copies this rank's part into the interior and every
    /// ghost cell from its owner, then votes, so that an error on any rank
    /// is an error on every rank. With neighbour messages: the exchange of
    /// [`Halo::update_ghosts`], the interior copy, one vote. Without: each
    /// rank packs what its neighbours need ([`Halo::pack`]), a vote
    /// (barrier), each rank fetches ([`Halo::fetch`]), a vote (no rank
    /// overwrites `array` or the staging window while another still
    /// reads). `array` must be partitioned as the one the halo was planned
    /// for.
    ///
    /// A loop that refreshes every step copies the whole part each time; a
    /// [`Ghosted`](crate::Ghosted) array keeps the part inside the extended
    /// box and moves only the ghost cells.
    pub fn refresh(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        let comm = array.comm().clone();
        if self.outbox.is_some() {
            // neighbour messages, then one vote: every rank learns of an
            // error anywhere
            let updated = self
                .update_ghosts(array)
                .and_then(|_| self.copy_interior(array));
            return vote(&comm, updated);
        }
        let packed = self.pack(array);
        vote(&comm, packed)?;
        let local = self.fetch(array);
        vote(&comm, local)
    }

    /// Fills the ghost cells (not the interior) from their owners,
    /// synchronising **only with the neighbours**. Where the backend has
    /// neighbour messages ([`OneSidedComm::messages`]: MPI,
    /// threaded, Lamellar), each rank packs what each neighbour needs from its own
    /// current values and sends it in one message, then waits for its
    /// neighbours' messages: one one-way latency, no barrier and no global
    /// collective (what PETSc's ghost updates cost). Elsewhere it
    /// is [`Halo::refresh`]'s pack, vote, one `get` per neighbour and vote,
    /// without the interior.
    ///
    /// Every rank calls it, as a collective. No barrier is needed before it:
    /// each rank sends the values its own program order produced.
    ///
    /// Errors: an error on one rank (an array partitioned unlike the plan, a
    /// refused local view) is returned there and, as
    /// [`Error::PeerFailed`], on its neighbours, which still receive a
    /// message from it (nobody waits forever); ranks further away learn of
    /// it at their next collective that votes (every reduction of this
    /// library does). A loop that checks the result of its reductions stays
    /// in step on every rank.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Halo};
    /// threaded::run_ok(4, |comm| {
    ///     let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [2, 2], [4, 4])?;
    ///     a.with_local_mut(|mut l| l.fill_with(|[i, j]| (4 * i + j) as f64))?;
    ///     let mut h = Halo::new_faces(&a, [1, 1], [false, false])?;
    ///     h.update_ghosts(&a)?;
    ///     let [rows, cols] = h.own_range();
    ///     if rows.start > 0 {
    ///         // the row above the part, from the rank above
    ///         let (i, j) = (rows.start - 1, cols.start);
    ///         assert_eq!(h.get([i as isize, j as isize]), Some((4 * i + j) as f64));
    ///     }
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn update_ghosts(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        self.start_update(array)?.finish()
    }

    /// Starts [`Halo::update_ghosts`] and returns while the messages
    /// travel (MPI: the sends and receives are posted; threaded: sent, and
    /// received in `finish`), so that the caller computes what needs no
    /// ghost cell — a stencil's interior — meanwhile; the returned
    /// [`GhostUpdate::finish`] waits and fills the ghost cells. On backends
    /// without messages the whole update happens here. Every rank calls
    /// it, as a collective; the errors of `update_ghosts`.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, Halo};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<f64, _, 1>::from_fn(comm.clone(), [8], |[i]| i as f64)?;
    ///     let mut h = Halo::new(&a, [1], [true])?;
    ///     let update = h.start_update(&a)?;
    ///     // ... work on the interior of `a` here ...
    ///     update.finish()?;
    ///     let r = h.own_range()[0].clone();
    ///     // the ghost below the part wraps around
    ///     assert_eq!(h.get([r.start as isize - 1]), Some(((r.start + 7) % 8) as f64));
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn start_update<'a>(
        &'a mut self,
        array: &'a DistArray<T, C, N>,
    ) -> Result<GhostUpdate<'a, T, C, N>> {
        self.start_update_inner(Own::Array(array))
    }

    /// [`Halo::start_update`] for a caller that holds a local view of its
    /// part already (`own`: its values, e.g. `view.as_slice()`): packs from
    /// it and opens no view of its own, so the update can start, and
    /// finish, inside that view — one local epoch fewer per update on MPI.
    /// Error: `own` is not as long as this rank's part.
    pub fn start_update_from<'a>(
        &'a mut self,
        array: &'a DistArray<T, C, N>,
        own: &'a [T],
    ) -> Result<GhostUpdate<'a, T, C, N>> {
        let want: usize = self.own.iter().map(|r| r.len()).product();
        if own.len() != want {
            // every rank still takes part (nobody waits for a message)
            let r = self
                .start_update_inner(Own::Array(array))
                .map(|u| u.finish());
            drop(r);
            return Err(Error::InvalidArgument(format!(
                "Halo::start_update_from: the own part has {want} elements, not {}",
                own.len()
            )));
        }
        self.start_update_inner(Own::Slice(array, own))
    }

    pub(crate) fn start_update_inner<'a>(
        &'a mut self,
        own: Own<'a, T, C, N>,
    ) -> Result<GhostUpdate<'a, T, C, N>> {
        if self.outbox.is_none() {
            let comm = self.comm().clone();
            let packed = self.pack_from(own);
            vote(&comm, packed)?;
            if let Own::Interior = own {
                // a ghosted array: its values as they are now (the staging
                // window holds the neighbours', the wrap onto itself is
                // taken here); `finish` reads them, so the caller may
                // change the part meanwhile, as with messages
                self.snapshot_local_pieces();
                return Ok(GhostUpdate {
                    halo: self,
                    own,
                    done: false,
                });
            }
            let fetched = self.fetch_parts(false, own);
            vote(&comm, fetched)?;
            return Ok(GhostUpdate {
                halo: self,
                own,
                done: true,
            });
        }
        // a leaked GhostUpdate's exchange, if any; the messages say "failed"
        // until packed, also when that exchange failed
        let previous = self.complete_in_flight();
        if let Some(outbox) = self.outbox.as_mut() {
            for buf in outbox.iter_mut() {
                *buf.last_mut().expect("status element") = T::ONE;
            }
        }
        let packed = previous.and_then(|_| self.pack_messages(own));
        if let (Ok(()), Own::Interior) = (&packed, own) {
            // the periodic wrap onto this rank, from the same values as its
            // messages (the caller may change the part before `finish`)
            self.snapshot_local_pieces();
        }
        // started also after a local failure (the messages say so), so that
        // no neighbour waits for a message that never comes
        let comm = self.comm().clone();
        let started = self.start_messages(&comm);
        if let Err(e) = packed {
            let _ = self.complete_in_flight();
            return Err(e);
        }
        started?;
        Ok(GhostUpdate {
            halo: self,
            own,
            done: false,
        })
    }

    /// The global index ranges of this rank's own part.
    pub fn own_range(&self) -> [Range<usize>; N] {
        self.own.clone()
    }

    /// The ghost width per dimension.
    pub fn width(&self) -> [usize; N] {
        self.width
    }

    /// The ranks this rank fetches ghost cells from (one `get` each per
    /// refresh).
    pub fn neighbours(&self) -> Vec<usize> {
        self.sources.iter().map(|s| s.rank).collect()
    }

    /// The shape of the extended box: the own part plus `width[d]` on
    /// both sides of every dimension `d`, and, in the last dimension of a
    /// box of two or more dimensions, where it costs at most an eighth of
    /// the row (always for rows of 8 cache lines or more: 64 `f64`, 128
    /// `f32`), padding after the high ghost layer up to a whole number of
    /// 64-byte lines per row (up to 7 `f64`, 15 `f32`;
    /// never written by an update, zero unless the program writes it), so
    /// that every row of the box starts at the same place in a cache line.
    /// The part's first element is on a 64-byte boundary where the
    /// allocation allows it. [`as_slice`](Self::as_slice) is row-major
    /// over this shape: take strides from it, not from the part's shape.
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
        ArrayViewD::from_shape(IxDyn(&self.ext_shape), &self.data[..]).expect("shape matches")
    }

    /// The extended box, mutably (to set boundary values in non-periodic
    /// ghost layers; a refresh overwrites every other cell).
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, T> {
        ArrayViewMutD::from_shape(IxDyn(&self.ext_shape), &mut self.data[..])
            .expect("shape matches")
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

    /// The extended box's values, row-major over
    /// [`extended_shape`](Self::extended_shape) (padding included).
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The value at a global index (may be negative or past the end for
    /// ghost cells beyond the array's edge), if it lies in the part or its
    /// ghost layers (not in the padding).
    pub fn get(&self, index: [isize; N]) -> Option<T> {
        let mut rel = [0usize; N];
        for d in 0..N {
            let r = index[d] - self.own[d].start as isize + self.width[d] as isize;
            if r < 0 || r as usize >= self.own[d].len() + 2 * self.width[d] {
                return None;
            }
            rel[d] = r as usize;
        }
        Some(self.data[linear_offset(&self.ext_shape, &rel)])
    }
}
