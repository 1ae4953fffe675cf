//! The backend contract: [`OneSidedComm`] (collectives, window allocation,
//! the optional [`NeighbourMessages`] capability) and the collectives
//! written once on it ([`collective`], [`agree`]). A backend implements
//! this trait and [`RawWindow`]; the checked [`Window`]
//! over its raw windows lives in [`crate::rma`], the [`Element`] types in
//! [`crate::element`]. The trait and its collectives are one layer (the
//! trait's default methods call them): nothing here depends on arrays.
//!
//! Everything above this module (arrays, blocks, ghosts, linear algebra) is
//! written once against these traits. Backends (the in-process
//! [`threaded`](crate::threaded) one, MPI, Lamellar) implement them and
//! nothing else; the `conformance` module (feature
//! `conformance`) checks that they honour the semantics documented here.
//!
//! # The model
//!
//! A communicator has `size()` ranks. A [`Window`] is created collectively:
//! every rank exposes a part of `local_len` elements (lengths may differ
//! between ranks). Any rank may then read ([`Window::get`]), write
//! ([`Window::put`]) or combine ([`Window::accumulate`]) elements of any
//! rank's part, *one-sidedly*: the target does not take part.
//!
//! Accesses must happen inside an **access epoch** on the target:
//!
//! * *passive target*: [`Window::lock`] / [`Window::unlock`] on one target.
//!   A [`LockKind::Shared`] lock admits other shared lockers, an
//!   [`LockKind::Exclusive`] lock excludes every other rank. A rank may hold
//!   locks on several targets at once, but at most one on each.
//! * *active target*: [`Window::fence`] (collective) opens an epoch on all
//!   targets at once; the next `fence` completes every operation issued
//!   since, and [`Window::fence_end`] closes the fence epoch.
//!
//! Passive and active synchronisation must not be mixed on one window.
//!
//! # Access rules (every backend)
//!
//! Reads need a lock of either kind on the target (or a fence epoch);
//! **writes** (`put`, `accumulate`) need an **exclusive** lock on the target
//! (or a fence epoch). Local views (`with_local`, `with_local_mut`) need a
//! lock on the own part (exclusive for a mutable view), are refused in
//! fence epochs, and keep that lock until they end. Together these make
//! every safe program race-free: no write ever reaches memory that a live
//! slice points to. [`WindowState`](crate::checks::WindowState) enforces
//! them for every backend.
//!
//! # Completion
//!
//! The safe API is *blocking at the origin*: when `get` returns, the
//! destination buffer holds the data; when `put` / `accumulate` return, the
//! source buffer may be reused. Remote completion (visibility at the target
//! for other ranks) is guaranteed at [`Window::unlock`], [`Window::flush`] or
//! the next [`Window::fence`]. The `*_runs` methods batch many contiguous
//! runs to one target (one RMA operation per run) so that backends can wait
//! once for the whole batch.
//!
//! # Errors instead of undefined behaviour
//!
//! A target rank `>= size()`, an access outside the target's part, a buffer
//! whose length does not match, an operation outside an epoch, a second lock
//! on the same target and an unlock without a lock all return an
//! [`Error`](crate::Error) *before* anything is sent, on every backend.

use std::sync::Arc;

pub mod agree;
pub mod collective;

pub use crate::element::{AccumulateOp, Element, ElementKind, RealElement};
use crate::error::Result;
use crate::rma::handles::HandleSlot;
pub use crate::rma::raw::LockKind;
pub use crate::rma::request::{Completed, Request};
use crate::rma::{RawWindow, Window};

/// A communicator with one-sided (RMA) windows.
///
/// Handles are cheap to clone; each rank holds its own. Methods marked
/// *collective* must be called by every rank of the communicator, in the
/// same order; the others are local.
///
/// # Waiting for other ranks
///
/// Every method that may wait for another rank — the collectives, the
/// neighbour exchange (and its [`Request::wait`]), window
/// allocation — must call [`HandleSlot::settle`] on
/// [`OneSidedComm::handle_slot`] before it waits, and every window must be
/// given that slot ([`WindowState::new`](crate::checks::WindowState::new)),
/// which settles it before every lock and fence: a rank never waits for
/// another one while its non-blocking handle holds locks (see
/// [`crate::pending`]). The conformance checks `crossing_handles` and
/// `leaked_handle_does_not_hang` hang on a backend that skips it.
///
/// # Safety
///
/// The checked window layer trusts what a communicator reports: `rank()`
/// and `size()` are this rank's true place in the communicator (the same
/// on every clone), the collectives deliver every rank's true contribution
/// (the window lengths every rank allocates for are agreed through
/// `allgather`), and `handle_slot()` is this rank's one slot on the
/// communicator. A communicator that lies about them could make the
/// checked layer hand out another rank's memory or bound accesses wrongly,
/// so implementing the trait is `unsafe`. Wrappers that forward every
/// method (like [`CountingComm`](crate::counting::CountingComm)) keep the
/// promises of what they wrap.
pub unsafe trait OneSidedComm: Clone + Send + Sync + 'static {
    /// The raw window primitives of this backend ([`RawWindow`]); the
    /// checked layer over them is [`Window`] (see [`WindowOf`]).
    type RawWindow<T: Element>: RawWindow<T>;

    /// This rank, in `0..size()`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn size(&self) -> usize;

    /// This rank's slot for its one non-blocking block handle on this
    /// communicator ([`crate::pending`]), shared by every clone of this
    /// handle (and by wrappers such as
    /// [`CountingComm`](crate::counting::CountingComm)): one per rank and
    /// communicator.
    fn handle_slot(&self) -> &Arc<HandleSlot>;

    /// Collective: returns once every rank has entered the barrier.
    ///
    /// Returns [`Error::Aborted`](crate::Error::Aborted) instead of blocking
    /// forever when another rank has failed (where the backend can tell).
    fn barrier(&self) -> Result<()>;

    /// Collective: every rank contributes `local` (lengths may differ);
    /// every rank receives all contributions, indexed by rank.
    fn allgather<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>>;

    /// Collective: combines every rank's `buf` with `combine` and leaves the
    /// result in every rank's `buf`. `buf` has the same length on every
    /// rank; `combine(lower, higher)` stores `lower ∘ higher` in `higher`
    /// (see [`Combiner`](crate::collective::Combiner)) and must be
    /// associative (it need not be commutative).
    ///
    /// Contract: contributions are combined **in rank order** (the left
    /// operand always covers lower ranks than the right one) with a
    /// bracketing fixed by the number of ranks and the length alone, and
    /// every rank receives the same bytes, so results are bitwise
    /// reproducible run to run. O(log P) rounds and O(`buf.len()`) bytes per
    /// message; never O(P) data per rank. The combiner runs on the calling
    /// thread. Payloads are meant to be small (scalars, votes, a few words).
    ///
    /// Most code uses the typed [`allreduce_vote`](crate::collective::allreduce_vote),
    /// which carries the success vote in the same call.
    fn allreduce_bytes(
        &self,
        buf: &mut [u8],
        combine: crate::collective::Combiner<'_>,
    ) -> Result<()>;

    /// Collective: copies `root`'s `buf` into every rank's `buf` (same length
    /// on every rank). O(log P) rounds. Error: `root >= size()` (on every
    /// rank). Typed, with the root's success carried along:
    /// [`broadcast_vote`](crate::collective::broadcast_vote).
    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()>;

    /// The neighbour-message capability ([`NeighbourMessages`]), where this
    /// backend has point-to-point messages (MPI, threaded, Lamellar);
    /// `None` (the default) where it has not, and callers such as
    /// [`Halo`](crate::Halo) then use one-sided gets. A capability a
    /// backend implements or not, rather than a flag beside methods that
    /// fail: code that holds a `&dyn NeighbourMessages` can send.
    fn messages(&self) -> Option<&dyn NeighbourMessages> {
        None
    }

    /// Collective: creates a window in which this rank exposes `local_len`
    /// elements, initialised to `T::default()` (zero). Lengths may differ
    /// between ranks, and may be zero.
    ///
    /// One collective gathers every rank's length, element kind and whether
    /// it can allocate its part, so that a rank with another element type, a
    /// part whose size in bytes overflows or does not fit in memory fails
    /// the call on **every** rank ([`Error::InvalidArgument`],
    /// [`Error::OutOfMemory`], [`Error::PeerFailed`]) before anything is
    /// allocated.
    ///
    /// [`Error::InvalidArgument`]: crate::Error::InvalidArgument
    /// [`Error::OutOfMemory`]: crate::Error::OutOfMemory
    /// [`Error::PeerFailed`]: crate::Error::PeerFailed
    fn create_window<T: Element>(&self, local_len: usize) -> Result<WindowOf<Self, T>> {
        let lens = agree::gather_window_lens::<T, Self>(self, local_len)?;
        // SAFETY: every rank passed the same `lens` (one allgather) and the
        // same element kind and size (checked on every rank from the same
        // gathered table), every part's byte size fits and every rank could
        // allocate its part.
        let raw = unsafe { self.allocate_window::<T>(&lens)? };
        checked_window(self, raw, lens)
    }

    /// Collective: creates a window with the per-rank lengths `lens` (index
    /// = rank), which every rank must pass identically, as a constructor
    /// that already agreed on them does. One vote checks that every rank
    /// passed the same lengths and element type and can allocate its part;
    /// if not, every rank returns an `Err` and nothing is allocated.
    fn create_window_with_lens<T: Element>(&self, lens: &[usize]) -> Result<WindowOf<Self, T>> {
        agree::agree_window::<T, Self>(self, lens, 0)?;
        // SAFETY: the vote above established that every rank passed the same
        // lengths and element type and that every rank can allocate its part.
        let raw = unsafe { self.allocate_window::<T>(lens)? };
        checked_window(self, raw, lens.to_vec())
    }

    /// Collective, for backends: allocates the raw window with the per-rank
    /// lengths `lens`, zero-filled. Called by [`OneSidedComm::create_window`]
    /// and [`OneSidedComm::create_window_with_lens`] once every rank agreed,
    /// which wrap it in the checked [`Window`]; never call it directly.
    ///
    /// # Safety
    ///
    /// Every rank calls it with the same `lens` (one entry per rank) and the
    /// same `T`; every part's size in bytes fits in `isize`; every rank's
    /// [`OneSidedComm::check_allocation`] for its part succeeded. A backend
    /// relies on this to bound other ranks' accesses by `lens`.
    unsafe fn allocate_window<T: Element>(&self, lens: &[usize]) -> Result<Self::RawWindow<T>>;

    /// Local: checks that this rank can allocate its part of a window whose
    /// parts hold `lens` elements of `elem_size` bytes each, without
    /// allocating; [`Error::OutOfMemory`](crate::Error::OutOfMemory) if not.
    /// The default compares this rank's part with the memory the operating
    /// system reports as available; backends with other limits (a shared
    /// memory file system, all ranks in one process) refine it.
    fn check_allocation(&self, lens: &[usize], elem_size: usize) -> Result<()> {
        let mine = lens.get(self.rank()).copied().unwrap_or(0);
        agree::check_memory(
            "this rank's part of a window",
            mine as u128 * elem_size as u128,
        )
    }

    /// A short name of the backend, for reports ("threaded", "mpi", ...).
    fn backend_name(&self) -> &'static str;
}

/// The checked window type of communicator `C` for elements `T`.
pub type WindowOf<C, T> = Window<T, <C as OneSidedComm>::RawWindow<T>>;

/// Wraps a freshly allocated raw window in the checked layer, with a
/// window state for `lens` and `comm`'s handle slot.
pub(crate) fn checked_window<C: OneSidedComm, T: Element>(
    comm: &C,
    raw: C::RawWindow<T>,
    lens: Vec<usize>,
) -> Result<WindowOf<C, T>> {
    let state = crate::checks::WindowState::new(comm.rank(), lens, comm.handle_slot().clone())?;
    Ok(Window::new(raw, state))
}

/// Point-to-point messages between neighbours: the capability a halo
/// update, a transpose or a reduce-scatter wants, which a backend has
/// (MPI, threaded, Lamellar's active messages) or not. Reached through
/// [`OneSidedComm::messages`]; [`messages_of`] turns its absence into an
/// error.
pub trait NeighbourMessages: Send + Sync {
    /// Collective: a sparse exchange of byte messages between neighbours,
    /// what a halo update needs. This rank sends each `sends[i].1` to rank
    /// `sends[i].0` and receives, from each rank `recvs[j].0`, exactly
    /// `recvs[j].1.len()` bytes into `recvs[j].1`. Every rank calls it the
    /// same number of times (with empty lists where it has no neighbours);
    /// the messages between two ranks are matched in the order their calls
    /// were made (for [`NeighbourMessages::exchange_bytes_start`], started), so
    /// the sender's and the receiver's lists must agree (both derived from
    /// one agreed plan, as [`Halo`](crate::Halo) does).
    ///
    /// Why messages and not RMA: a `get` needs a round trip (request, then
    /// reply) *and* a synchronisation telling the reader that the owner's
    /// data is ready; a message carries both in one one-way latency, and
    /// only between neighbours (PETSc's scatters, MPI's neighbourhood
    /// collectives). MPI sends each message with `MPI_Isend` and waits for
    /// all with one `MPI_Waitall`.
    ///
    /// Errors: a rank out of range (before anything is sent), a message
    /// whose length differs from the receiver's buffer (at the receiver).
    fn exchange_bytes(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()>;

    /// Starts [`NeighbourMessages::exchange_bytes`] and returns without waiting
    /// where the backend can, so that the caller computes while the
    /// messages travel; [`Request::wait`] completes it. MPI posts
    /// its `MPI_Irecv`s and `MPI_Isend`s and returns (the `MPI_Waitall` is
    /// in `wait`); the threaded backend sends at once and receives in
    /// `wait`. The default runs the whole exchange before returning. Same
    /// rules, checks and errors as `exchange_bytes` (some errors only
    /// appear at `wait`).
    ///
    /// The safe way to use it is [`Halo::start_update`](crate::Halo::start_update).
    ///
    /// # Safety
    ///
    /// The backend may read the `sends` buffers and write the `recvs`
    /// buffers until the returned handle's `wait` has returned or the
    /// handle has been dropped (dropping it waits too): until then the
    /// caller must not write the `sends` buffers, nor read, write, move or
    /// free the `recvs` buffers. Leaking the handle (`mem::forget`) leaves
    /// the exchange in flight for good, so its buffers must then be leaked
    /// as well.
    unsafe fn exchange_bytes_start(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn Request>> {
        self.exchange_bytes(sends, recvs)?;
        Ok(Box::new(Completed))
    }

    /// [`NeighbourMessages::exchange_bytes_start`] with each message
    /// gathered from several pieces, sent one after the other as **one**
    /// message (`sends[i].1` is the list of pieces): the receiver sees their
    /// concatenation, and cannot tell it from a message sent whole. For
    /// data that lives in two places, e.g. rows of an array's own storage
    /// followed by a status element, without copying them together first.
    /// MPI sends each message as one `MPI_Isend` of an `MPI_Type_create_hindexed`
    /// type over the pieces; the default copies each message's pieces into
    /// one buffer (kept in the returned handle until it completes) and calls
    /// `exchange_bytes_start`.
    ///
    /// # Safety
    ///
    /// As for [`NeighbourMessages::exchange_bytes_start`], for every piece.
    unsafe fn exchange_vectored_start(
        &self,
        sends: &[(usize, &[&[u8]])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn Request>> {
        let joined: Vec<Vec<u8>> = sends.iter().map(|(_, pieces)| pieces.concat()).collect();
        let flat: Vec<(usize, &[u8])> = sends
            .iter()
            .zip(&joined)
            .map(|((to, _), buf)| (*to, &buf[..]))
            .collect();
        // SAFETY: the receive buffers carry the caller's guarantees; the
        // send buffers are `joined`'s heap storage, which the returned
        // handle owns, unwritten, until the exchange has completed (its
        // `inner` is waited for, or dropped, before `buffers` drop).
        let inner = unsafe { self.exchange_bytes_start(&flat, recvs)? };
        drop(flat);
        Ok(Box::new(JoinedSends {
            inner,
            buffers: joined,
        }))
    }
}

/// The handle of the default [`NeighbourMessages::exchange_vectored_start`]:
/// the exchange in flight and the buffers it sends from.
struct JoinedSends {
    /// Declared first: dropped (which waits) before `buffers`.
    inner: Box<dyn Request>,
    buffers: Vec<Vec<u8>>,
}

impl Request for JoinedSends {
    fn wait(self: Box<Self>) -> Result<()> {
        let JoinedSends { inner, buffers } = *self;
        let done = inner.wait();
        drop(buffers);
        done
    }
}

/// The neighbour-message capability of `comm`, or [`Error::Backend`](crate::Error::Backend)
/// naming the backend that has none.
pub fn messages_of<C: OneSidedComm>(comm: &C) -> Result<&dyn NeighbourMessages> {
    comm.messages().ok_or_else(|| {
        crate::Error::Backend(format!(
            "the {} backend has no point-to-point messages (NeighbourMessages)",
            comm.backend_name()
        ))
    })
}
