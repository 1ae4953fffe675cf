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
//! The plan is made once, collectively, by [`Halo::new`]: every rank
//! knows which boxes of its part each neighbour needs, and where they land.
//! Each update then has every rank **pack** the boxes each neighbour needs,
//! contiguously per neighbour (a local copy: a ghost column, strided in its
//! owner's memory, travels as one message, not one per row), and move them
//! in one of two ways:
//!
//! * **Neighbour messages** where the backend has them
//!   ([`OneSidedComm::supports_exchange`]: MPI, threaded):
//!   [`Halo::update_ghosts`] sends each neighbour its boxes in one message
//!   and waits for the neighbours' messages. No barrier and no global
//!   collective: on a network, one one-way latency per update, where a
//!   `get` needs a full round trip plus a synchronisation telling the
//!   reader the data is ready (measured in BENCHMARKS.md: the Poisson CG
//!   went from 3.7 to 1.6 network round trips per iteration).
//! * **One-sided gets** elsewhere (Lamellar): every rank packs into a
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
//!     assert_eq!(h.view().shape(), &[rows.len() + 2, cols.len() + 2]);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::ops::Range;
use std::sync::Mutex;

use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};

use crate::array::DistArray;
use crate::block::Block;

use crate::comm::{Element, LockKind, OneSidedComm, PendingExchange, Window};
use crate::epoch::vote;
use crate::error::{Error, Result};
use crate::partition::{linear_offset, multi_index, ContinuousPartitioning};

/// A box of ghost cells: where it lies in its owner's part (global
/// indices) and where it lands in the requester's extended box.
#[derive(Debug, Clone)]
struct Piece<const N: usize> {
    /// The box, in global indices, inside the owner's part.
    src: [Range<usize>; N],
    /// Start of the box in the requester's extended-box coordinates.
    dst: [usize; N],
}

impl<const N: usize> Piece<N> {
    fn shape(&self) -> [usize; N] {
        self.src.clone().map(|r| r.len())
    }

    fn len(&self) -> usize {
        self.shape().iter().product()
    }
}

/// What this rank fetches from one neighbour: a contiguous range of the
/// neighbour's staging part, holding `pieces` one after the other.
#[derive(Debug, Clone)]
struct Source<const N: usize> {
    rank: usize,
    offset: usize,
    len: usize,
    pieces: Vec<Piece<N>>,
}

impl<const N: usize> Source<N> {
    /// Copies `buf` (this source's pieces, one after the other) into the
    /// extended box `data`.
    fn scatter_into<T: Copy>(&self, data: &mut [T], ext_shape: &[usize; N], buf: &[T]) {
        let mut at = 0;
        for piece in &self.pieces {
            let n = piece.len();
            scatter(
                data,
                ext_shape,
                &piece.dst,
                &piece.shape(),
                &buf[at..at + n],
            );
            at += n;
        }
    }
}

/// A rank's part of an array plus ghost layers; see the [module docs](self).
pub struct Halo<T: Element, C: OneSidedComm, const N: usize> {
    part: ContinuousPartitioning<N>,
    width: [usize; N],
    own: [Range<usize>; N],
    ext_shape: [usize; N],
    data: Vec<T>,
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
    in_flight: Mutex<Option<Box<dyn PendingExchange>>>,
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

/// The boxes of this rank's part one neighbour needs (global indices).
#[derive(Debug, Clone)]
struct Dest<const N: usize> {
    rank: usize,
    boxes: Vec<[Range<usize>; N]>,
}

impl<const N: usize> Dest<N> {
    fn len(&self) -> usize {
        self.boxes
            .iter()
            .map(|b| b.iter().map(|r| r.len()).product::<usize>())
            .sum()
    }
}

/// Whether a message's status element says its sender failed.
fn failed_status<T: Element>(status: &T) -> bool {
    bytemuck::bytes_of(status).iter().any(|&b| b != 0)
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

/// The pieces rank `q` needs, each with the rank that owns it, in a fixed
/// order every rank computes alike.
fn requests<const N: usize>(
    part: &ContinuousPartitioning<N>,
    q: usize,
    width: [usize; N],
    periodic: [bool; N],
    corners: bool,
) -> Result<Vec<(usize, Piece<N>)>> {
    let own = part.part_range(q)?;
    let shape = part.shape();
    let mut out = Vec::new();
    if own.iter().any(|r| r.is_empty()) {
        return Ok(out);
    }
    let segs: [Vec<(Range<usize>, Range<usize>)>; N] =
        std::array::from_fn(|d| segments(&own[d], width[d], shape[d], periodic[d]));
    let counts: [usize; N] = std::array::from_fn(|d| segs[d].len());
    let combos: usize = counts.iter().product();
    for k in 0..combos {
        let pick = multi_index(&counts, k);
        // the interior segment starts at `width` in every dimension
        let outside = (0..N)
            .filter(|&d| segs[d][pick[d]].0.start != width[d])
            .count();
        if outside == 0 || (!corners && outside > 1) {
            continue;
        }
        let dst: [Range<usize>; N] = std::array::from_fn(|d| segs[d][pick[d]].0.clone());
        let glob: [Range<usize>; N] = std::array::from_fn(|d| segs[d][pick[d]].1.clone());
        for t in Block::new(glob.clone()).plan(part)? {
            let inter = t.intersection.ranges().clone();
            let at: [usize; N] =
                std::array::from_fn(|d| dst[d].start + (inter[d].start - glob[d].start));
            out.push((
                t.rank,
                Piece {
                    src: inter,
                    dst: at,
                },
            ));
        }
    }
    Ok(out)
}

impl<T: Element, C: OneSidedComm, const N: usize> Halo<T, C, N> {
    /// Collective: plans the ghost layers of every rank's part of `array`:
    /// `width[d]` layers on both sides of dimension `d`, wrapped around
    /// where `periodic[d]`, and allocates the staging window the refreshes
    /// pack into. Errors (on every rank): a periodic width larger than the
    /// array's extent.
    pub fn new(array: &DistArray<T, C, N>, width: [usize; N], periodic: [bool; N]) -> Result<Self> {
        Self::create(array, width, periodic, true)
    }

    /// Collective: like [`Halo::new`], but only the faces: the ghost cells
    /// beside the part in one dimension, not its edges and corners (cells
    /// outside it in two dimensions or more, which keep their values). What
    /// star-shaped stencils (5-point, 7-point) read, with fewer neighbours
    /// to fetch from: 4 instead of 8 in 2-D, 6 instead of 26 in 3-D.
    pub fn new_faces(
        array: &DistArray<T, C, N>,
        width: [usize; N],
        periodic: [bool; N],
    ) -> Result<Self> {
        Self::create(array, width, periodic, false)
    }

    fn create(
        array: &DistArray<T, C, N>,
        width: [usize; N],
        periodic: [bool; N],
        corners: bool,
    ) -> Result<Self> {
        let comm = array.comm();
        let (me, p) = (comm.rank(), comm.size());
        let part = array.partitioning().clone();
        let shape = part.shape();
        let check = (0..N).try_for_each(|d| {
            if periodic[d] && width[d] > shape[d] {
                return Err(Error::InvalidArgument(format!(
                    "halo width {} in periodic dimension {d} exceeds the extent {}",
                    width[d], shape[d]
                )));
            }
            Ok(())
        });
        // the plans of all ranks: where each rank's requests sit in each
        // owner's staging part (owners pack for requesters in rank order)
        let planned = check.and_then(|_| {
            let mut staging_len = vec![0usize; p];
            let mut local = Vec::new();
            let mut sources: Vec<Source<N>> = Vec::new();
            let mut sends: Vec<Dest<N>> = Vec::new();
            for q in 0..p {
                let mut mine: Vec<Source<N>> = Vec::new();
                for (s, piece) in requests(&part, q, width, periodic, corners)? {
                    if s == q {
                        if q == me {
                            local.push(piece);
                        }
                        continue;
                    }
                    let len = piece.len();
                    if s == me {
                        match sends.last_mut() {
                            Some(d) if d.rank == q => d.boxes.push(piece.src.clone()),
                            _ => sends.push(Dest {
                                rank: q,
                                boxes: vec![piece.src.clone()],
                            }),
                        }
                    }
                    if q == me {
                        match mine.iter_mut().find(|x| x.rank == s) {
                            Some(src) => {
                                src.len += len;
                                src.pieces.push(piece);
                            }
                            None => mine.push(Source {
                                rank: s,
                                offset: staging_len[s],
                                len,
                                pieces: vec![piece],
                            }),
                        }
                    }
                    staging_len[s] += len;
                }
                if q == me {
                    sources = mine;
                }
            }
            Ok((staging_len, local, sources, sends))
        });
        let (staging_len, local, sources, sends) = vote(comm, planned)?;
        let wrap_len = local.iter().map(|l: &Piece<N>| l.len()).sum();
        let staging = DistArray::<T, C, 1>::with_part_sizes(comm.clone(), [staging_len])?;
        let own = part.part_range(me)?;
        let ext_shape: [usize; N] = std::array::from_fn(|d| own[d].len() + 2 * width[d]);
        let total: usize = ext_shape.iter().product();
        let most = sources
            .iter()
            .map(|s| s.len)
            .chain(local.iter().map(|l: &Piece<N>| l.len()))
            .max()
            .unwrap_or(0);
        // every rank runs the same backend, so all take the same branch
        let outbox = comm
            .supports_exchange()
            .then(|| sends.iter().map(|d| vec![T::ZERO; d.len() + 1]).collect());
        let inbox = sources.iter().map(|s| vec![T::ZERO; s.len + 1]).collect();
        Ok(Halo {
            outbox,
            inbox,
            in_flight: Mutex::new(None),
            part,
            width,
            own,
            ext_shape,
            data: vec![T::default(); total],
            local,
            sources,
            sends,
            staging,
            scratch: vec![T::default(); most],
            wrap: vec![T::default(); wrap_len],
        })
    }

    fn check_partition(&self, own: Own<'_, T, C, N>, what: &str) -> Result<()> {
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
    /// For each dimension, whether an update fills ghost cells below
    /// (`[d][0]`) and above (`[d][1]`) the part — from a neighbour or the
    /// periodic wrap onto this rank: the sides next to which a stencil
    /// waits for the update. The other ghost cells (past a non-periodic
    /// edge) are never written by an update.
    pub(crate) fn filled_sides(&self) -> [[bool; 2]; N] {
        let mut sides = [[false; 2]; N];
        let pieces = self
            .sources
            .iter()
            .flat_map(|s| s.pieces.iter())
            .chain(self.local.iter());
        for piece in pieces {
            let shape = piece.shape();
            if shape.contains(&0) {
                continue;
            }
            for d in 0..N {
                let (lo, hi) = (piece.dst[d], piece.dst[d] + shape[d]);
                sides[d][0] |= lo < self.width[d];
                sides[d][1] |= hi > self.width[d] + self.own[d].len();
            }
        }
        sides
    }

    pub(crate) fn comm(&self) -> &C {
        self.staging.comm()
    }

    /// The partition the halo was planned for.
    pub(crate) fn partitioning(&self) -> &ContinuousPartitioning<N> {
        &self.part
    }

    /// The extended box, its shape and the ghost width.
    pub(crate) fn data(&self) -> (&[T], &[usize; N], &[usize; N]) {
        (&self.data, &self.ext_shape, &self.width)
    }

    /// The extended box (mutably), its shape and the ghost width.
    pub(crate) fn data_mut(&mut self) -> (&mut [T], &[usize; N], &[usize; N]) {
        (&mut self.data, &self.ext_shape, &self.width)
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
    /// neighbour messages ([`OneSidedComm::supports_exchange`]: MPI,
    /// threaded), each rank packs what each neighbour needs from its own
    /// current values and sends it in one message, then waits for its
    /// neighbours' messages: one one-way latency, no barrier and no global
    /// collective (what PETSc's ghost updates cost). Elsewhere (Lamellar) it
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

    /// Packs every neighbour's message and marks it packed (the caller
    /// marked them failed before; no exchange is in flight).
    fn pack_messages(&mut self, src: Own<'_, T, C, N>) -> Result<()> {
        self.check_partition(src, "update_ghosts")?;
        let Halo {
            outbox,
            own,
            sends,
            data,
            width,
            ext_shape,
            ..
        } = self;
        let outbox = outbox.as_mut().expect("message path");
        if outbox.is_empty() {
            return Ok(());
        }
        let from = OwnValues::new(src, data, own, width, ext_shape);
        from.with(|src| {
            for (d, buf) in sends.iter().zip(outbox.iter_mut()) {
                let mut at = 0;
                for b in &d.boxes {
                    at += src.gather(b, &mut buf[at..]);
                }
                buf[at] = T::ZERO;
            }
        })
    }

    /// Waits for the exchange in flight, if any. If the wait fails, the
    /// backend may not be done with the buffers: they are leaked and
    /// replaced by new ones, never reused or freed under it.
    pub(crate) fn complete_in_flight(&mut self) -> Result<()> {
        let pending = self
            .in_flight
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let out = match pending {
            Some(p) => p.wait(),
            None => Ok(()),
        };
        if out.is_err() {
            let fresh =
                |b: &mut Vec<T>| std::mem::forget(std::mem::replace(b, vec![T::ZERO; b.len()]));
            self.inbox.iter_mut().for_each(fresh);
            if let Some(outbox) = self.outbox.as_mut() {
                outbox.iter_mut().for_each(fresh);
            }
        }
        out
    }

    /// Posts the exchange of the packed messages.
    fn start_messages(&mut self, comm: &C) -> Result<()> {
        let Halo {
            outbox,
            inbox,
            sources,
            sends,
            in_flight,
            ..
        } = self;
        let outbox = outbox.as_ref().expect("message path");
        let sends: Vec<(usize, &[u8])> = sends
            .iter()
            .zip(outbox.iter())
            .map(|(d, buf)| (d.rank, bytemuck::cast_slice::<T, u8>(buf)))
            .collect();
        let mut recvs: Vec<(usize, &mut [u8])> = sources
            .iter()
            .zip(inbox.iter_mut())
            .map(|(s, b)| (s.rank, bytemuck::cast_slice_mut::<T, u8>(b)))
            .collect();
        // SAFETY: the buffers are the heap storage of `outbox` and `inbox`,
        // which this halo owns and never resizes; the pending exchange is
        // stored in `in_flight`, and every method that reads or writes
        // those buffers (packing, unpacking, the next start) and `Drop`
        // complete it first. A leaked `GhostUpdate` leaves it there, where
        // the same rule applies; a leaked halo leaks the buffers too.
        let pending = unsafe { comm.exchange_bytes_start(&sends, &mut recvs)? };
        *in_flight.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(pending);
        Ok(())
    }

    /// Completes the exchange, checks the neighbours' status elements and
    /// fills the ghost cells.
    fn finish_messages(&mut self, src: Own<'_, T, C, N>) -> Result<()> {
        if self.outbox.is_none() {
            // one-sided, a ghosted array's update (see `start_update_inner`):
            // the gets, then a vote (nobody packs again while another reads)
            let comm = self.comm().clone();
            let fetched = self.fetch_remote().map(|_| self.scatter_local_pieces());
            return vote(&comm, fetched);
        }
        self.complete_in_flight()?;
        for (s, b) in self.sources.iter().zip(self.inbox.iter()) {
            if failed_status(b.last().expect("status element")) {
                return Err(Error::PeerFailed {
                    rank: s.rank,
                    reason: "its halo update failed (its own call returned the error)".into(),
                });
            }
        }
        let Halo {
            data,
            sources,
            inbox,
            ext_shape,
            ..
        } = self;
        for (s, buf) in sources.iter().zip(inbox.iter()) {
            s.scatter_into(data, ext_shape, buf);
        }
        match src {
            // taken when the update started
            Own::Interior => {
                self.scatter_local_pieces();
                Ok(())
            }
            _ => self.copy_local_pieces(src),
        }
    }

    /// Copies the pieces this rank needs from its own part (a periodic wrap
    /// onto itself) into its ghost cells.
    fn copy_local_pieces(&mut self, src: Own<'_, T, C, N>) -> Result<()> {
        if self.local.is_empty() {
            return Ok(());
        }
        let Halo {
            data,
            scratch,
            ext_shape,
            own,
            local,
            width,
            ..
        } = self;
        if let Own::Interior = src {
            // source and destination are the same box: through `wrap`
            self.snapshot_local_pieces();
            self.scatter_local_pieces();
            return Ok(());
        }
        let from = OwnValues::new(src, &[], own, width, ext_shape);
        from.with(|s| {
            for piece in local.iter() {
                let n = s.gather(&piece.src, scratch);
                scatter(data, ext_shape, &piece.dst, &piece.shape(), &scratch[..n]);
            }
        })
    }

    /// Copies the pieces of the periodic wrap onto this rank from the
    /// interior of the extended box into `wrap`.
    fn snapshot_local_pieces(&mut self) {
        let Halo {
            data,
            own,
            width,
            ext_shape,
            local,
            wrap,
            ..
        } = self;
        let from = Gather {
            src: data,
            shape: *ext_shape,
            shift: *width,
            part: own,
        };
        let mut at = 0;
        for piece in local.iter() {
            at += from.gather(&piece.src, &mut wrap[at..]);
        }
    }

    /// Writes `wrap` (see [`Halo::snapshot_local_pieces`]) to the ghost
    /// cells of the wrap.
    fn scatter_local_pieces(&mut self) {
        let Halo {
            data,
            ext_shape,
            local,
            wrap,
            ..
        } = self;
        let mut at = 0;
        for piece in local.iter() {
            let n = piece.len();
            scatter(
                data,
                ext_shape,
                &piece.dst,
                &piece.shape(),
                &wrap[at..at + n],
            );
            at += n;
        }
    }

    /// Copies this rank's part into the interior of the extended box.
    fn copy_interior(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        if self.own.iter().any(|r| r.is_empty()) {
            return Ok(());
        }
        let own_shape: [usize; N] = self.own.clone().map(|r| r.len());
        let Halo {
            data,
            ext_shape,
            width,
            ..
        } = self;
        array.with_local(|l| scatter(data, ext_shape, width, &own_shape, l.as_slice()))
    }

    /// One-sided (local): copies the boxes of this rank's part of `array`
    /// that its neighbours need into its staging part. The first half of
    /// [`Halo::refresh`], for loops that synchronise anyway: every rank
    /// packs, then a barrier (e.g. [`DistArray::sync`]), then every rank
    /// fetches ([`Halo::fetch`] / [`Halo::fetch_ghosts`]), and no rank packs
    /// again before every rank's fetch returned (a later collective).
    pub fn pack(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        self.pack_from(Own::Array(array))
    }

    fn pack_from(&mut self, src: Own<'_, T, C, N>) -> Result<()> {
        self.check_partition(src, "pack")?;
        if self.sends.is_empty() {
            return Ok(());
        }
        let Halo {
            own,
            sends,
            data,
            width,
            ext_shape,
            staging,
            ..
        } = self;
        // the staging part holds the neighbours' boxes one after the other
        let boxes = sends.iter().flat_map(|d| &d.boxes);
        let from = OwnValues::new(src, data, own, width, ext_shape);
        from.with(|src| {
            staging.with_local_mut(|mut st| {
                let st = st.as_mut_slice();
                let mut at = 0;
                for b in boxes {
                    at += src.gather(b, &mut st[at..]);
                }
            })
        })?
    }

    /// One-sided: the second half of [`Halo::refresh`] (see [`Halo::pack`]
    /// for the synchronisation it needs): the own part into the interior,
    /// and the ghost cells, one `get` per neighbour.
    pub fn fetch(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        self.fetch_parts(true, Own::Array(array))
    }

    /// One-sided: like [`Halo::fetch`], but fills only the ghost cells and
    /// leaves the interior of the extended box as it was: for kernels that
    /// read the own part from the array itself and only the faces from the
    /// halo ([`Halo::ghost_face`]), it saves a copy of the whole part.
    pub fn fetch_ghosts(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        self.fetch_parts(false, Own::Array(array))
    }

    fn fetch_parts(&mut self, interior: bool, src: Own<'_, T, C, N>) -> Result<()> {
        self.check_partition(src, "fetch")?;
        if self.own.iter().any(|r| r.is_empty()) {
            return Ok(());
        }
        if interior {
            if let Some(array) = src.array() {
                self.copy_interior(array)?;
            }
        }
        // periodic wrap onto this rank itself
        self.copy_local_pieces(src)?;
        self.fetch_remote()
    }

    /// One-sided: the ghost cells from the neighbours' staging parts, one
    /// `get` per neighbour.
    fn fetch_remote(&mut self) -> Result<()> {
        if self.own.iter().any(|r| r.is_empty()) {
            return Ok(());
        }
        let Halo {
            data,
            sources,
            scratch,
            ext_shape,
            staging,
            ..
        } = self;
        for s in sources.iter() {
            let buf = &mut scratch[..s.len];
            staging.with_epoch(s.rank, LockKind::Shared, |w| w.get(s.rank, s.offset, buf))?;
            s.scatter_into(data, ext_shape, buf);
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

    /// The ranks this rank fetches ghost cells from (one `get` each per
    /// refresh).
    pub fn neighbours(&self) -> Vec<usize> {
        self.sources.iter().map(|s| s.rank).collect()
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

/// This rank's own values, wherever an update reads them from
/// ([`Own`]): opened once per use, then read box by box.
struct OwnValues<'a, 's, T: Element, C: OneSidedComm, const N: usize> {
    own: Own<'a, T, C, N>,
    /// The extended box (read for [`Own::Interior`]).
    data: &'s [T],
    part: &'s [Range<usize>; N],
    width: &'s [usize; N],
    ext_shape: &'s [usize; N],
}

impl<'a, 's, T: Element, C: OneSidedComm, const N: usize> OwnValues<'a, 's, T, C, N> {
    fn new(
        own: Own<'a, T, C, N>,
        data: &'s [T],
        part: &'s [Range<usize>; N],
        width: &'s [usize; N],
        ext_shape: &'s [usize; N],
    ) -> Self {
        OwnValues {
            own,
            data,
            part,
            width,
            ext_shape,
        }
    }

    /// Runs `f` with the values open (a local view of the array, or the
    /// slice the caller passed, or the extended box).
    fn with<R>(&self, f: impl FnOnce(&Gather<'_, T, N>) -> R) -> Result<R> {
        let part_shape: [usize; N] = self.part.clone().map(|r| r.len());
        fn over_part<'t, T, const N: usize>(
            src: &'t [T],
            shape: [usize; N],
            part: &'t [Range<usize>; N],
        ) -> Gather<'t, T, N> {
            Gather {
                src,
                shape,
                shift: [0; N],
                part,
            }
        }
        match self.own {
            Own::Array(a) => a.with_local(|l| f(&over_part(l.as_slice(), part_shape, self.part))),
            Own::Slice(_, s) => Ok(f(&over_part(s, part_shape, self.part))),
            Own::Interior => Ok(f(&Gather {
                src: self.data,
                shape: *self.ext_shape,
                shift: *self.width,
                part: self.part,
            })),
        }
    }
}

/// Row-major values holding this rank's part at offset `shift` (zero for
/// the part itself, the ghost width for an extended box).
struct Gather<'s, T, const N: usize> {
    src: &'s [T],
    shape: [usize; N],
    shift: [usize; N],
    part: &'s [Range<usize>; N],
}

impl<T: Copy, const N: usize> Gather<'_, T, N> {
    /// Copies the box `b` (global indices, inside the part) into the front
    /// of `out`, row-major; returns its length.
    fn gather(&self, b: &[Range<usize>; N], out: &mut [T]) -> usize {
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
