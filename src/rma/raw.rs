//! [`RawWindow`]: the small set of primitives a backend implements for one
//! rank's handle on a window. Every precondition is the caller's, and the
//! only caller is the checked [`Window`](super::Window), written once in
//! this crate: a backend never approves, batches or falls back on its own.

use super::request::{Completed, Request};
use crate::element::{AccumulateOp, Element};
use crate::error::Result;

/// Kind of a passive-target lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// Admits other shared lockers at the same time.
    Shared,
    /// Excludes every other rank while held.
    Exclusive,
}

/// The raw RMA primitives of one rank's handle on a window: what a backend
/// implements (MPI RMA, Lamellar RDMA, the threaded backend's shared
/// segments, a counting wrapper). It knows nothing of arrays and checks
/// nothing: ranks, bounds, epochs, the access model and local views are
/// checked by [`Window`](super::Window) before any method is called, which
/// is why every method is `unsafe` to call and states what its caller
/// guarantees.
///
/// What every call may assume (the checked layer's guarantees, besides
/// those each method lists):
///
/// * every `target` is `< size` and every element range lies in
///   `target`'s part, as given to the allocation;
/// * every buffer is non-empty and the sum of a batch's run lengths equals
///   its buffer's length (runs of length zero may occur in a batch);
/// * no other thread of this rank calls `lock`, `unlock` or a one-shot
///   method on the same target at the same time, and nothing runs on a
///   target while it is being unlocked;
/// * no `&[T]` / `&mut [T]` of the local part handed out by
///   [`RawWindow::with_local`] is alive while an operation could write it
///   (or, for a mutable view, read it).
///
/// # Safety
///
/// For implementors: the checked layer relies on every implementation to do what each
/// method says: locks exclude as documented (an exclusive lock excludes
/// every other rank's lock on the target, a shared one every exclusive
/// lock), data moves only within the ranges given, operations are complete
/// when their method says so, and a request's buffers are no longer used
/// once it has been waited or dropped. A wrong implementation breaks the
/// safety of safe code, so implementing the trait is `unsafe`.
///
/// Operations are blocking at the origin unless they return a
/// [`Request`]: a read's data is in `dst` and a write's `src` is reusable
/// when the method returns.
pub unsafe trait RawWindow<T: Element>: Send + Sync + 'static {
    /// Takes the runtime lock `kind` on `target` (waits while another rank
    /// holds an incompatible one).
    ///
    /// # Safety
    ///
    /// This rank holds no lock on `target` and no fence epoch is open.
    unsafe fn lock(&self, target: usize, kind: LockKind) -> Result<()>;

    /// Releases this rank's lock `kind` on `target`; every operation issued
    /// to `target` in the epoch is complete at the target when it returns.
    ///
    /// # Safety
    ///
    /// This rank holds the lock `kind` on `target` (taken by
    /// [`RawWindow::lock`]); no operation or request on `target` is in
    /// progress.
    unsafe fn unlock(&self, target: usize, kind: LockKind) -> Result<()>;

    /// Completes every operation issued to `target` so far, at the target.
    ///
    /// # Safety
    ///
    /// This rank holds a lock on `target`.
    unsafe fn flush(&self, target: usize) -> Result<()>;

    /// Reads `dst.len()` elements of `target` from `offset`.
    ///
    /// # Safety
    ///
    /// An epoch that admits reads of `target` is open (a lock, or the fence
    /// epoch) for the whole call.
    unsafe fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()>;

    /// Writes `src` into `target` from `offset`: a put (`op` = `None`) or
    /// an element-wise atomic accumulate with `op` (defined for `T`).
    ///
    /// # Safety
    ///
    /// An epoch that admits writes to `target` is open (an exclusive lock,
    /// or the fence epoch) for the whole call.
    unsafe fn write(
        &self,
        target: usize,
        offset: usize,
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()>;

    /// Reads the runs `(offset, len)` of `target` into `dst`, one after the
    /// other. The default issues one [`RawWindow::get`] per non-empty run;
    /// backends that move a batch in fewer operations override it.
    ///
    /// # Safety
    ///
    /// As for [`RawWindow::get`], for every run.
    unsafe fn get_runs(&self, target: usize, runs: &[(usize, usize)], dst: &mut [T]) -> Result<()> {
        for (offset, piece) in crate::checks::run_pieces(runs) {
            if !piece.is_empty() {
                // SAFETY: the caller's guarantees, for each run.
                unsafe { self.get(target, offset, &mut dst[piece])? };
            }
        }
        Ok(())
    }

    /// Writes consecutive pieces of `src` to the runs `(offset, len)` of
    /// `target` (see [`RawWindow::write`]). The default issues one
    /// [`RawWindow::write`] per non-empty run.
    ///
    /// # Safety
    ///
    /// As for [`RawWindow::write`], for every run.
    unsafe fn write_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        for (offset, piece) in crate::checks::run_pieces(runs) {
            if !piece.is_empty() {
                // SAFETY: the caller's guarantees, for each run.
                unsafe { self.write(target, offset, &src[piece], op)? };
            }
        }
        Ok(())
    }

    /// An epoch of one read: lock `kind` on `target`, read, unlock; the
    /// lock is released also when the read fails. The default calls the
    /// three methods; backends override it with fewer synchronisations.
    ///
    /// # Safety
    ///
    /// As for [`RawWindow::lock`]; the target belongs to this call until it
    /// returns.
    unsafe fn get_locked(
        &self,
        target: usize,
        kind: LockKind,
        offset: usize,
        dst: &mut [T],
    ) -> Result<()> {
        // SAFETY: the caller's guarantees: no lock on `target` before, ours
        // after `lock` succeeded, released below.
        unsafe {
            self.lock(target, kind)?;
            let out = self.get(target, offset, dst);
            out.and(self.unlock(target, kind))
        }
    }

    /// An epoch of one write (`kind` exclusive): lock, put, unlock, like
    /// [`RawWindow::get_locked`].
    ///
    /// # Safety
    ///
    /// As for [`RawWindow::get_locked`], and `kind` is exclusive.
    unsafe fn put_locked(
        &self,
        target: usize,
        kind: LockKind,
        offset: usize,
        src: &[T],
    ) -> Result<()> {
        // SAFETY: as in `get_locked`; the exclusive lock admits the write.
        unsafe {
            self.lock(target, kind)?;
            let out = self.write(target, offset, src, None);
            out.and(self.unlock(target, kind))
        }
    }

    /// Non-blocking [`RawWindow::get_runs`]: issues the reads and returns a
    /// request whose [`Request::wait`] completes them (the data is in
    /// `dst`); dropping the request waits too. The default completes the
    /// reads before returning.
    ///
    /// # Safety
    ///
    /// As for [`RawWindow::get_runs`], in a lock epoch on `target` (never
    /// the fence epoch) on another rank; the lock stays held until the
    /// request has been waited or dropped. The backend may write `dst`
    /// until then: the caller does not read, write, move or free it
    /// meanwhile, and leaks it if it leaks the request.
    unsafe fn get_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        dst: &mut [T],
    ) -> Result<Box<dyn Request + 'w>> {
        // SAFETY: the caller's guarantees cover the blocking form.
        unsafe { self.get_runs(target, runs, dst)? };
        Ok(Box::new(Completed))
    }

    /// Non-blocking [`RawWindow::write_runs`]: the request's wait completes
    /// the writes at the origin (`src` reusable); the epoch's unlock or
    /// flush at the target. The default completes them before returning.
    ///
    /// # Safety
    ///
    /// As for [`RawWindow::write_runs`], in an exclusive lock epoch on
    /// another rank held until the request is done; the backend may read
    /// `src` until then (the caller does not write, move or free it, and
    /// leaks it with the request).
    unsafe fn write_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<Box<dyn Request + 'w>> {
        // SAFETY: the caller's guarantees cover the blocking form.
        unsafe { self.write_runs(target, runs, src, op)? };
        Ok(Box::new(Completed))
    }

    /// Collective, the first step of every `fence` / `fence_end`: an
    /// allgather of one word per rank (`token`: which window, fence and
    /// step this rank is in, and whether its checks passed), indexed by
    /// rank. It is a barrier; backends whose operations are complete when
    /// they return may let it order the fence epoch (their
    /// [`RawWindow::fence`] then has nothing to do). Where it can, a
    /// backend runs it on a channel no other collective uses (MPI: a
    /// private duplicate of the communicator), so that it can only match
    /// another rank's fence vote.
    ///
    /// # Safety
    ///
    /// Called only by the checked layer's fence, as the first step of a
    /// fence of this window on every rank.
    unsafe fn fence_vote(&self, token: u64) -> Result<Vec<u64>>;

    /// Collective, the runtime step of a fence once every rank voted yes:
    /// completes every operation of the epoch and opens (or continues) the
    /// fence epoch, or closes it (`end`).
    ///
    /// # Safety
    ///
    /// Every rank calls it for the same fence of the same window with the
    /// same `end` (the vote established it); this rank holds no lock; with
    /// `end`, a fence epoch is open; no operation is in progress.
    unsafe fn fence(&self, end: bool) -> Result<()>;

    /// Runs `f` on a pointer to this rank's part and its length (dangling
    /// when the part is empty), with whatever the backend needs around a
    /// local access (MPI: the window's public and private copies made to
    /// agree before, and after a mutable access).
    ///
    /// The implementation guarantees that the pointer is non-null,
    /// aligned and valid for the part's `len` initialised elements (the
    /// agreed length of this rank's part), writable when `mutable`, for the
    /// whole call of `f`, and that no other rank writes them meanwhile
    /// (other ranks' writes need an exclusive lock on the part, which the
    /// runtime does not grant while this rank holds its lock).
    ///
    /// # Safety
    ///
    /// This rank holds a lock on its own part (exclusive when `mutable`)
    /// for the whole call, and no write of this rank to its own part (for
    /// a mutable view: no access at all) runs meanwhile.
    unsafe fn with_local<R>(&self, mutable: bool, f: impl FnOnce(*mut T, usize) -> R) -> Result<R>;

    /// Releases what a dropped handle still holds: the locks `(target,
    /// kind)` and, with `fence_open`, the fence epoch. Called at most once,
    /// from the checked window's `Drop`, before the raw window drops (a
    /// backend whose free is collective frees in its own `Drop`). A raw
    /// window can also drop without it (its checked window was never made,
    /// or a panic unwound through that `Drop`): its own `Drop` must then
    /// not assume the epochs are closed.
    ///
    /// # Safety
    ///
    /// This rank holds exactly these locks; nothing is in progress except
    /// leaked requests.
    unsafe fn release(&self, locks: &[(usize, LockKind)], fence_open: bool);
}
