//! [`Window`]: the checked layer over a backend's [`RawWindow`], written
//! once for every backend. Every operation is approved by the rank's
//! [`WindowState`] (ranks, bounds, epochs, the access model, local views)
//! before the backend sees it, so misuse gives the same `Err` on every
//! backend and no backend can skip a check.

use std::marker::PhantomData;

use super::raw::LockKind;
use super::raw::RawWindow;
use super::request::{Completed, Request};
use crate::checks::{check_op, Access, Approval, WindowState};
use crate::element::{AccumulateOp, Element};
use crate::error::Result;

/// One rank's handle on a window of a
/// [`OneSidedComm`](crate::OneSidedComm): each rank's exposed part plus
/// this rank's epoch bookkeeping, over the backend's raw primitives `R`.
/// Made by [`OneSidedComm::create_window`](crate::OneSidedComm::create_window).
/// Dropping it releases this rank's locks and frees the window; for
/// backends whose free is collective (MPI), every rank must drop its
/// handle.
///
/// # The access model
///
/// * `get` needs a lock (shared or exclusive) on the target, or a fence
///   epoch;
/// * `put` and `accumulate` need an **exclusive** lock on the target, or a
///   fence epoch (a shared lock admits the owner's read-only view);
/// * a read-only local view needs a lock on the own part, a mutable one an
///   exclusive lock; views are refused in fence epochs; the lock on the own
///   part cannot be released while a view is alive;
/// * a rank's own RMA on its own part never overlaps a view it could race
///   with.
///
/// So no safe program writes memory a live slice points to, on any rank
/// (see [`WindowState`]).
///
/// ```
/// use distarray::{threaded, LockKind, OneSidedComm};
/// threaded::run_ok(2, |comm| {
///     let w = comm.create_window::<u64>(4)?;
///     let other = 1 - comm.rank();
///     w.lock(other, LockKind::Exclusive)?;
///     w.put(other, 1, &[comm.rank() as u64 + 10])?;
///     w.unlock(other)?;
///     comm.barrier()?;
///     w.lock(comm.rank(), LockKind::Shared)?;
///     let mine = w.with_local(|part| part[1])?;
///     w.unlock(comm.rank())?;
///     assert_eq!(mine, other as u64 + 10);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct Window<T: Element, R: RawWindow<T>> {
    state: WindowState,
    raw: R,
    _elements: PhantomData<fn() -> T>,
}

/// Requests of a raw window holding the approval that pins their epoch:
/// the target cannot be unlocked before they are complete.
struct Approved<'w> {
    // dropped first: waits for the operations
    req: Box<dyn Request + 'w>,
    _approval: Approval<'w>,
}

impl Request for Approved<'_> {
    fn wait(self: Box<Self>) -> Result<()> {
        let Approved { req, _approval } = *self;
        req.wait()
    }
}

impl<T: Element, R: RawWindow<T>> Window<T, R> {
    /// The checked handle over `raw`, whose bookkeeping is `state` (made
    /// for the same layout). Called by
    /// [`OneSidedComm::create_window`](crate::OneSidedComm::create_window)
    /// once every rank agreed on the layout.
    pub(crate) fn new(raw: R, state: WindowState) -> Self {
        Window {
            state,
            raw,
            _elements: PhantomData,
        }
    }

    /// The backend's raw handle, for its own inspection methods (such as
    /// the MPI window handle). Its primitives are `unsafe`: calls that
    /// bypass this layer bypass its checks.
    pub fn backend(&self) -> &R {
        &self.raw
    }

    /// This rank.
    #[inline]
    pub fn rank(&self) -> usize {
        self.state.me()
    }

    /// Number of ranks.
    #[inline]
    pub fn size(&self) -> usize {
        self.state.size()
    }

    /// Length of `target`'s part (every rank knows every length).
    #[inline]
    pub fn len_of(&self, target: usize) -> Result<usize> {
        self.state.len_of(target)
    }

    /// Length of this rank's own part.
    #[inline]
    pub fn local_len(&self) -> usize {
        self.state
            .len_of(self.rank())
            .expect("own rank is in range")
    }

    /// Opens a passive-target access epoch on `target`. Blocks while the
    /// lock is incompatible with locks other ranks hold. Errors: bad rank,
    /// already locked by this rank, a fence epoch open.
    pub fn lock(&self, target: usize, kind: LockKind) -> Result<()> {
        let locking = self.state.lock(target, kind)?;
        // SAFETY: approved: `target` is in range, not locked by this rank
        // (nor being locked by another thread: `locking` reserves it) and
        // no fence epoch is open. If the runtime lock fails, dropping
        // `locking` forgets the lock.
        unsafe { self.raw.lock(target, kind)? };
        locking.granted();
        Ok(())
    }

    /// Closes the epoch on `target`; every operation issued in it is
    /// complete at the target when this returns. Errors: `target` not
    /// locked; an operation, request or local view still relies on the
    /// lock.
    pub fn unlock(&self, target: usize) -> Result<()> {
        let unlocking = self.state.unlock(target)?;
        // SAFETY: approved: this rank holds the lock `unlocking.kind()` on
        // `target` and nothing pins it (no operation, request or view);
        // `unlocking` keeps every other use of `target` out until the
        // runtime unlock returned.
        unsafe { self.raw.unlock(target, unlocking.kind()) }
    }

    /// Completes every operation issued to `target` so far, keeping the
    /// lock. Error: `target` not locked.
    pub fn flush(&self, target: usize) -> Result<()> {
        let _pin = self.state.flush(target)?;
        // SAFETY: this rank holds a lock on `target`, pinned by `_pin`.
        unsafe { self.raw.flush(target) }
    }

    /// An epoch of one read: `lock(target, kind)`, [`Window::get`],
    /// `unlock(target)` in one call — the element-access path. The lock is
    /// released even when the read fails. Backends implement it with fewer
    /// synchronisations where they can (MPI skips the separate local
    /// flush).
    pub fn get_locked(
        &self,
        target: usize,
        kind: LockKind,
        offset: usize,
        dst: &mut [T],
    ) -> Result<()> {
        let _one_shot = self
            .state
            .begin_one_shot(target, kind, Access::Read, offset, dst.len())?;
        // SAFETY: approved: in range and in bounds, no lock of this rank on
        // `target` and no fence epoch; `_one_shot` gives `target` to this
        // call until the raw unlock returned.
        unsafe {
            if dst.is_empty() {
                self.raw.lock(target, kind)?;
                self.raw.unlock(target, kind)
            } else {
                self.raw.get_locked(target, kind, offset, dst)
            }
        }
    }

    /// An epoch of one write: `lock(target, kind)`, [`Window::put`],
    /// `unlock(target)` in one call, like [`Window::get_locked`]. Error:
    /// `kind` shared (writes need an exclusive lock).
    pub fn put_locked(
        &self,
        target: usize,
        kind: LockKind,
        offset: usize,
        src: &[T],
    ) -> Result<()> {
        let _one_shot =
            self.state
                .begin_one_shot(target, kind, Access::Write, offset, src.len())?;
        // SAFETY: as in `get_locked`; the window state refused a shared
        // `kind` for a write.
        unsafe {
            if src.is_empty() {
                self.raw.lock(target, kind)?;
                self.raw.unlock(target, kind)
            } else {
                self.raw.put_locked(target, kind, offset, src)
            }
        }
    }

    /// Reads `dst.len()` elements of `target`'s part starting at `offset`.
    /// Needs a lock on `target` or a fence epoch.
    pub fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        let _approval = self
            .state
            .approve(target, Access::Read, offset, dst.len())?;
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: approved (in bounds, an epoch admitting reads, pinned
        // by `_approval` until the read returned; no conflicting view of
        // the own part).
        unsafe { self.raw.get(target, offset, dst) }
    }

    /// Writes `src` into `target`'s part starting at `offset`. Needs an
    /// exclusive lock on `target` or a fence epoch.
    pub fn put(&self, target: usize, offset: usize, src: &[T]) -> Result<()> {
        self.write(target, offset, src, None)
    }

    /// Combines `src` element-wise into `target`'s part starting at
    /// `offset`. Needs an exclusive lock on `target` or a fence epoch;
    /// concurrent accumulates to the same elements in one fence epoch are
    /// element-wise atomic. Error: `op` not defined for `T` (`Min` / `Max`
    /// of complex numbers).
    pub fn accumulate(
        &self,
        target: usize,
        offset: usize,
        src: &[T],
        op: AccumulateOp,
    ) -> Result<()> {
        check_op::<T>(op)?;
        self.write(target, offset, src, Some(op))
    }

    fn write(
        &self,
        target: usize,
        offset: usize,
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        let _approval = self
            .state
            .approve(target, Access::Write, offset, src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        // SAFETY: approved (in bounds, an epoch admitting writes, pinned
        // until the write returned; no view of the own part alive).
        unsafe { self.raw.write(target, offset, src, op) }
    }

    /// Reads several runs `(offset, len)` of `target` into `dst`, one after
    /// the other (`dst.len()` must equal the sum of the lengths). Every run
    /// is checked before the first is moved; the backend moves the batch in
    /// as few operations as it can (MPI: one per group of equal rows at
    /// equal distances).
    pub fn get_runs(&self, target: usize, runs: &[(usize, usize)], dst: &mut [T]) -> Result<()> {
        let _approval = self
            .state
            .approve_runs(target, Access::Read, runs, dst.len())?;
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: approved: every run in bounds, their total is
        // `dst.len()`, an epoch admitting reads is pinned until they return.
        unsafe { self.raw.get_runs(target, runs, dst) }
    }

    /// Writes consecutive pieces of `src` to the runs `(offset, len)` of
    /// `target`.
    pub fn put_runs(&self, target: usize, runs: &[(usize, usize)], src: &[T]) -> Result<()> {
        self.write_runs_op(target, runs, src, None)
    }

    /// Accumulates consecutive pieces of `src` into the runs `(offset,
    /// len)` of `target`.
    pub fn accumulate_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: AccumulateOp,
    ) -> Result<()> {
        check_op::<T>(op)?;
        self.write_runs_op(target, runs, src, Some(op))
    }

    /// [`Window::put_runs`] for `op` = `Replace`, else
    /// [`Window::accumulate_runs`] with `op`.
    pub fn write_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: AccumulateOp,
    ) -> Result<()> {
        match op {
            AccumulateOp::Replace => self.put_runs(target, runs, src),
            _ => self.accumulate_runs(target, runs, src, op),
        }
    }

    fn write_runs_op(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        let _approval = self
            .state
            .approve_runs(target, Access::Write, runs, src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        // SAFETY: approved: every run in bounds, their total is
        // `src.len()`, an epoch admitting writes is pinned until they
        // return.
        unsafe { self.raw.write_runs(target, runs, src, op) }
    }

    /// Non-blocking [`Window::get_runs`]: issues the reads and returns a
    /// request; [`Request::wait`] completes them (the data is in `dst`).
    /// MPI issues request-based reads (`MPI_Rget`), Lamellar spawns RDMA
    /// futures into a registered buffer; the threaded backend completes
    /// them before returning, and so does every backend on the own part
    /// and in a fence epoch (request-based RMA is for lock epochs). While
    /// the request lives, the target's lock cannot be released (the
    /// request pins it). Checks and errors are those of `get_runs`.
    ///
    /// The safe interface is [`DistArray::get_block_start`](crate::DistArray::get_block_start).
    ///
    /// # Safety
    ///
    /// The backend may write `dst` until the request has been waited or
    /// dropped (dropping waits too): until then the caller must not read,
    /// write, move or free `dst`. If the request is leaked
    /// (`mem::forget`), `dst` must be leaked too.
    pub unsafe fn get_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        dst: &mut [T],
    ) -> Result<Box<dyn Request + 'w>> {
        let approval = self
            .state
            .approve_runs(target, Access::Read, runs, dst.len())?;
        if dst.is_empty() {
            return Ok(Box::new(Completed));
        }
        if target == self.rank() || self.state.fence_is_open() {
            // SAFETY: approved, as in `get_runs`.
            unsafe { self.raw.get_runs(target, runs, dst)? };
            return Ok(Box::new(Completed));
        }
        // SAFETY: approved, on another rank, in a lock epoch (the pinned
        // epoch is not the fence's) that `approval` keeps from being
        // released until the request is done; the caller keeps `dst` as
        // the raw method requires.
        let req = unsafe { self.raw.get_runs_start(target, runs, dst)? };
        Ok(Box::new(Approved {
            req,
            _approval: approval,
        }))
    }

    /// Non-blocking [`Window::put_runs`] (`op` = `Replace`) or
    /// [`Window::accumulate_runs`]: issues the writes and returns a
    /// request; [`Request::wait`] completes them at the origin (`src` may
    /// be reused), the target's `unlock` or `flush` at the target. Same
    /// epochs, pinning, checks and errors as [`Window::get_runs_start`].
    ///
    /// # Safety
    ///
    /// The backend may read `src` until the request has been waited or
    /// dropped: until then the caller must not write, move or free `src`;
    /// if the request is leaked, `src` must be leaked too.
    pub unsafe fn write_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: AccumulateOp,
    ) -> Result<Box<dyn Request + 'w>> {
        check_op::<T>(op)?;
        let op = (op != AccumulateOp::Replace).then_some(op);
        let approval = self
            .state
            .approve_runs(target, Access::Write, runs, src.len())?;
        if src.is_empty() {
            return Ok(Box::new(Completed));
        }
        if target == self.rank() || self.state.fence_is_open() {
            // SAFETY: approved, as in `put_runs`.
            unsafe { self.raw.write_runs(target, runs, src, op)? };
            return Ok(Box::new(Completed));
        }
        // SAFETY: as in `get_runs_start`, for writes (the approval refused
        // a shared lock).
        let req = unsafe { self.raw.write_runs_start(target, runs, src, op)? };
        Ok(Box::new(Approved {
            req,
            _approval: approval,
        }))
    }

    /// Collective: completes every operation issued on this window since
    /// the previous fence and opens (or continues) a fence epoch, in which
    /// operations on any target need no lock. Error: locks held (on every
    /// rank: the ranks vote first, so none waits alone).
    pub fn fence(&self) -> Result<()> {
        self.fence_step(false)
    }

    /// Collective: completes every operation of the fence epoch and closes
    /// it. Error: no fence epoch open.
    pub fn fence_end(&self) -> Result<()> {
        self.fence_step(true)
    }

    fn fence_step(&self, end: bool) -> Result<()> {
        self.state.fence_collectively(
            end,
            // SAFETY: the first step of this window's fence on this rank;
            // the window state checks that every rank's token names the
            // same window, fence and step.
            |token| unsafe { self.raw.fence_vote(token) },
            // SAFETY: every rank voted yes in the same step of the same
            // fence of this window: each holds no lock and (for `end`) has
            // a fence epoch open; nothing is in progress (the window state
            // refuses the fence while an operation of the epoch is pinned,
            // and approves none until it is done).
            || unsafe { self.raw.fence(end) },
        )
    }

    /// Runs `f` on this rank's part, read-only. Requires a lock (shared or
    /// exclusive) on this rank, which cannot be released while `f` runs;
    /// refused in a fence epoch. Other ranks cannot write the part
    /// meanwhile (writes need an exclusive lock); this rank's own writes to
    /// it fail with [`Error::Conflict`](crate::Error::Conflict).
    pub fn with_local<V>(&self, f: impl FnOnce(&[T]) -> V) -> Result<V> {
        let _view = self.state.open_view(false)?;
        let view = |ptr: *mut T, len: usize| {
            // SAFETY: `ptr` points to this rank's `len` initialised elements
            // (dangling when empty), alive with the window; other ranks'
            // writes need an exclusive lock, which the runtime does not
            // grant while this rank's lock is held, and this rank's own
            // writes fail while `_view` lives: no write happens under the
            // slice.
            f(unsafe { std::slice::from_raw_parts(ptr as *const T, len) })
        };
        // SAFETY: the view is approved: this rank holds a lock on its part,
        // pinned while `_view` lives, and its own RMA on the part is refused
        // meanwhile.
        unsafe { self.raw.with_local(false, view) }
    }

    /// Runs `f` on this rank's part, mutably. Requires an exclusive lock on
    /// this rank, so that no other rank can access the part meanwhile.
    pub fn with_local_mut<V>(&self, f: impl FnOnce(&mut [T]) -> V) -> Result<V> {
        let _view = self.state.open_view(true)?;
        let view = |ptr: *mut T, len: usize| {
            // SAFETY: as in `with_local`; the exclusive lock keeps every
            // other rank out, and the registered mutable view every other
            // access of this rank: the slice is the only access.
            f(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
        };
        // SAFETY: the mutable view is approved: this rank holds the
        // exclusive lock on its part, pinned while `_view` lives, and every
        // other view and own RMA access of the part is refused meanwhile.
        unsafe { self.raw.with_local(true, view) }
    }
}

impl<T: Element, R: RawWindow<T>> Drop for Window<T, R> {
    /// Releases the locks this rank still holds and closes its fence
    /// epoch, so that no other rank waits for them forever; then the raw
    /// window drops (and frees, collectively on MPI).
    fn drop(&mut self) {
        // complete this rank's handle in flight first: its requests pin
        // locks this drop releases
        self.state.handles().settle();
        let (locks, fence_open) = self.state.release_all();
        // SAFETY: `release_all` returned exactly the locks this rank holds
        // and whether its fence epoch is open; `&mut self` means no
        // operation or view of this handle is in progress (leaked requests
        // aside, which the backend completes).
        unsafe { self.raw.release(&locks, fence_open) };
    }
}

impl<T: Element, R: RawWindow<T> + std::fmt::Debug> std::fmt::Debug for Window<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("rank", &self.rank())
            .field("kind", &T::KIND)
            .field("layout", self.state.layout())
            .field("backend", &self.raw)
            .finish()
    }
}
