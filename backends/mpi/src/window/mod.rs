//! [`MpiWindow`]: the [`RawWindow`] primitives on an MPI window from
//! `MPI_Win_allocate`.
//!
//! Each rank's part starts on a 64-byte line where its element size allows
//! (Open MPI 4 places window memory 8 bytes past a line, which left every
//! vector load and store of a local kernel straddling lines): the window
//! allocates a line more and moves the part's start to the line; the ranks
//! exchange these offsets when the window is created (in the collective
//! that already ended creation), and every RMA call adds the target's
//! ([`MpiWindow::displacement`], which applications calling MPI on
//! [`MpiWindow::raw`] use too).
//!
//! This file only maps primitives to MPI calls: every operation reaches it
//! after the checked [`distarray::Window`] approved it (rank, bounds,
//! epoch, views), so misuse returns the same [`Error`] as on every other
//! backend and never reaches MPI. MPI errors that still happen
//! (the window has `MPI_ERRORS_RETURN`) come back as
//! [`Error::Backend`] with the MPI error string.
//!
//! # Completion
//!
//! The safe API is blocking at the origin: `get` issues its MPI
//! operation(s) and then `MPI_Win_flush` on the target (not
//! `MPI_Win_flush_local`, which Open MPI's osc/pt2pt returns from before
//! get replies arrive), `put` and `accumulate` then `MPI_Win_flush_local`,
//! so the buffer is complete (get) or reusable (put, accumulate) when they
//! return; also when a later chunk of a long transfer fails, what was
//! issued is completed before the error is returned. The `*_runs` variants issue one MPI operation per run
//! and flush once. Remote completion is at `unlock`, `flush` or `fence`.
//!
//! # Fence epochs
//!
//! `MPI_Win_flush_local` (and every other way to complete one operation) is
//! only allowed in passive-target epochs; inside an `MPI_Win_fence` epoch a
//! `get` would complete only at the next fence, long after the safe API has
//! handed the destination buffer back to the caller. So the fence epoch is
//! built from passive-target calls with the same semantics:
//!
//! * the first [`Window::fence`](distarray::Window::fence): `MPI_Barrier`, then `MPI_Win_lock_all`
//!   (a shared lock on every target, held for the whole fence epoch);
//! * later fences: `MPI_Win_flush_all` (every operation of the epoch is
//!   complete at its target), `MPI_Win_sync`, `MPI_Barrier`, `MPI_Win_sync`;
//! * [`Window::fence_end`](distarray::Window::fence_end): `MPI_Win_unlock_all`, `MPI_Barrier`.
//!
//! That is exactly what a fence promises (everything issued before it is
//! complete and visible everywhere after it), while each operation stays
//! blocking at the origin. Accumulates in a fence epoch run under shared
//! locks, so they stay element-wise atomic.
//!
//! # Local access
//!
//! `with_local` / `with_local_mut` hand out the memory `MPI_Win_allocate`
//! returned, under a lock on this rank (exclusive for writing), with
//! `MPI_Win_sync` around the access so the public and private copies of the
//! window agree. The checked layer's `WindowState` approves every
//! operation: other ranks' writes need an exclusive lock on the part, which MPI does not grant
//! while the owner's view holds its lock; the owner cannot release that lock
//! while the view lives; views are refused in fence epochs; and this rank's
//! own RMA on its own part is refused while a view it would race with is
//! alive ([`Error::Conflict`]). So no safe program writes a part under a
//! live slice of it.
//!
//! # Freeing
//!
//! Dropping an `MpiWindow` is **collective**: it releases the locks this
//! rank still holds, closes an open fence epoch and calls `MPI_Win_free`,
//! which waits for every rank of the communicator to free the window too.
//! A rank that leaves early (an error return) while others still use the
//! window therefore waits; a panic does not wait (the panic hook aborts the
//! job), and a rank that cannot continue should call
//! [`MpiComm::abort`](crate::MpiComm::abort).

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::os::raw::{c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use distarray::{AccumulateOp, Element, Error, LockKind, RawWindow, Request, Result};
use mpi::ffi;

use crate::comm::CommInner;
use crate::lifetime::{self, HeldLocks, ViewPin};
use crate::quirks;
use crate::raw::{self, check, fault_injection, serial};

mod requests;
mod vector;

use requests::{push_request, MpiRequests};
pub use vector::datatypes_created;
use vector::{datatypes_enabled, vector_runs, TypeCache, VectorRun};

/// One rank's handle on an MPI RMA window of `T` (see the
/// [module docs](self)). Created collectively by
/// [`OneSidedComm::create_window`](distarray::OneSidedComm::create_window) on an [`MpiComm`](crate::MpiComm); dropping it is
/// collective too.
pub struct MpiWindow<T: Element> {
    comm: Arc<CommInner>,
    win: ffi::MPI_Win,
    /// Start of this rank's part (`local_len` elements), inside the memory
    /// of `MPI_Win_allocate`, on a 64-byte line where the element size
    /// allows (see [`line_pad`]); dangling (never dereferenced) when the
    /// part is empty.
    base: NonNull<T>,
    /// Every rank's part starts this many elements into its window memory:
    /// the displacement of its first element (`pads[target] + offset` in
    /// every RMA call).
    pads: Vec<usize>,
    /// Every rank's part length, in elements.
    part_lens: Vec<usize>,
    datatype: ffi::MPI_Datatype,
    /// Length of this rank's part, in elements.
    local_len: usize,
    /// `MPI_Win_lock_all` is held for a fence epoch.
    all_locked: AtomicBool,
    /// The MPI locks this rank holds, for finalisation (see
    /// [`crate::lifetime`]).
    held: Arc<HeldLocks>,
    /// The vector types of strided transfers, kept for reuse.
    types: TypeCache,
    /// The elements are shared with other ranks (and MPI) behind `base`.
    _elements: PhantomData<UnsafeCell<T>>,
}

// SAFETY: the window handle is a process-wide MPI object, usable from any
// thread under MPI_THREAD_MULTIPLE, and every MPI call of this crate is
// serialised by `raw::serial` below that level. `base` points into memory
// owned by the MPI window (not by a thread); it is only dereferenced in
// `with_local` / `with_local_mut`, under the `views` bookkeeping that keeps
// the slices handed out from aliasing mutably. The remaining fields are
// `Sync` on their own.
unsafe impl<T: Element> Send for MpiWindow<T> {}
// SAFETY: see `Send`.
unsafe impl<T: Element> Sync for MpiWindow<T> {}

impl<T: Element> fmt::Debug for MpiWindow<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiWindow")
            .field("rank", &self.comm.rank())
            .field("kind", &T::KIND)
            .field("local_len", &self.local_len)
            .finish()
    }
}

/// Converts a rank (already checked `< size`, and MPI sizes are `int`s).
fn rank_c(target: usize) -> c_int {
    target as c_int
}

/// The line size that parts start on where the element size allows.
const LINE: usize = 64;

/// The elements to skip from `addr` (an allocation of `elem`-byte elements)
/// to the next 64-byte line: 0 when `addr` is on a line, or when no whole
/// number of elements reaches one (an element size that does not divide 64,
/// or an address not a multiple of it).
fn line_pad(addr: usize, elem: usize) -> usize {
    if elem == 0 || !LINE.is_multiple_of(elem) || !addr.is_multiple_of(elem) {
        return 0;
    }
    (LINE - addr % LINE) % LINE / elem
}

impl<T: Element> MpiWindow<T> {
    /// Collective: `MPI_Win_allocate` of `lens[rank]` elements (and a line
    /// more, see [`line_pad`]) on every rank, zero-filled, with
    /// `MPI_ERRORS_RETURN`, then an allgather of the parts' offsets in
    /// their memory (no rank accesses the window before every rank has
    /// zeroed its part). `lens` is the layout every rank agreed on (the
    /// caller's guarantee).
    pub(crate) fn new(comm: Arc<CommInner>, lens: &[usize]) -> Result<Self> {
        let inner = comm.clone();
        let _collective = inner.collective();
        raw::ensure_live()?;
        let local_len = lens[comm.rank()];
        let elem = std::mem::size_of::<T>();
        // a part of elements plus room to move its start onto a line
        let bytes = local_len
            .checked_mul(elem)
            .and_then(|b| b.checked_add(if local_len > 0 { LINE } else { 0 }))
            .and_then(|b| ffi::MPI_Aint::try_from(b).ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!("window of {local_len} elements is too large"))
            })?;
        let mut base: *mut T = std::ptr::null_mut();
        // SAFETY: reading an extern static that rsmpi's C shim initialises
        // to MPI_WIN_NULL and never writes again.
        let mut win = unsafe { ffi::RSMPI_WIN_NULL };
        {
            let _serial = raw::enter()?;
            // `base` receives a pointer (baseptr is `void*` pointing to a
            // `T*`); failures name the likely cause and the fix.
            raw::win_allocate(
                comm.raw(),
                bytes,
                elem as c_int,
                (&mut base as *mut *mut T).cast::<c_void>(),
                &mut win,
            )?;
        }
        let size = comm.size();
        let mut w = MpiWindow {
            comm,
            win,
            base: NonNull::dangling(),
            datatype: raw::datatype(T::KIND),
            local_len,
            pads: Vec::new(),
            part_lens: lens.to_vec(),
            all_locked: AtomicBool::new(false),
            held: HeldLocks::new(size),
            types: TypeCache::default(),
            _elements: PhantomData,
        };
        // From here on, `w`'s Drop frees the window on error.
        {
            let _serial = raw::enter()?;
            // SAFETY: `win` is the valid window just created;
            // MPI_ERRORS_RETURN is a predefined error handler.
            let rc = unsafe { ffi::MPI_Win_set_errhandler(w.win, ffi::RSMPI_ERRORS_RETURN) };
            check(rc, "MPI_Win_set_errhandler")?;
            // freed at MPI_Finalize if its handle is still alive then
            lifetime::register_window(w.win, w.held.clone());
        }
        let mut pad = 0;
        if local_len > 0 {
            let allocated = NonNull::new(base).ok_or_else(|| {
                Error::Backend("MPI_Win_allocate returned a null base pointer".into())
            })?;
            pad = line_pad(allocated.as_ptr() as usize, elem);
            // SAFETY: `pad * elem < LINE` bytes, and the allocation holds
            // `local_len * elem + LINE` bytes: the part stays inside it.
            w.base = unsafe { allocated.add(pad) };
            let me = rank_c(w.comm.rank());
            let _serial = raw::enter()?;
            // SAFETY: valid window and own rank; an exclusive lock on our own
            // part while we zero it (nobody else can access the window yet).
            let rc = unsafe { ffi::MPI_Win_lock(ffi::MPI_LOCK_EXCLUSIVE as c_int, me, 0, w.win) };
            check(rc, "MPI_Win_lock")?;
            // SAFETY: `w.base` points to `local_len * size_of::<T>()` bytes
            // inside the memory MPI_Win_allocate allocated for this rank
            // (above), which no one else accesses yet; all-zero bytes are a
            // valid `T` (Pod).
            unsafe { std::ptr::write_bytes(w.base.as_ptr(), 0, local_len) };
            // SAFETY: we hold the lock taken above.
            check(unsafe { ffi::MPI_Win_unlock(me, w.win) }, "MPI_Win_unlock")?;
        }
        // every rank's pad, which also keeps every rank from accessing the
        // window before all have zeroed their parts (as a barrier)
        w.pads = w
            .comm
            .allgather_word_locked(pad as u64)?
            .into_iter()
            .map(|p| p as usize)
            .collect();
        Ok(w)
    }

    /// The raw MPI window handle, for the application's own MPI calls. Do
    /// not free it, keep the epoch rules (calls that bypass this type also
    /// bypass its checks), and address elements through
    /// [`Self::displacement`]: a part does not start at displacement 0.
    pub fn raw(&self) -> ffi::MPI_Win {
        self.win
    }

    /// The displacement, in the raw window ([`Self::raw`]; in elements, the
    /// window's displacement unit), of element `offset` of `target`'s part:
    /// each rank's part starts a few elements into its window memory, on a
    /// 64-byte line where the element size allows (Open MPI places window
    /// memory 8 bytes past a line). Application calls on the raw window
    /// address elements through this.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `target` is not a rank of the window's
    /// communicator or `offset` is past the end of its part (the part's
    /// length is a valid offset: one past the last element).
    pub fn displacement(&self, target: usize, offset: usize) -> Result<ffi::MPI_Aint> {
        let Some(&part) = self.part_lens.get(target) else {
            return Err(Error::InvalidArgument(format!(
                "displacement: rank {target} out of range (the window has {} ranks)",
                self.part_lens.len()
            )));
        };
        if offset > part {
            return Err(Error::InvalidArgument(format!(
                "displacement: offset {offset} past the end of rank {target}'s part of {part} \
                 elements"
            )));
        }
        Ok(self.disp(target, offset))
    }

    /// [`Self::displacement`] (ranks and offsets validated by the callers).
    fn disp(&self, target: usize, offset: usize) -> ffi::MPI_Aint {
        (self.pads[target] + offset) as ffi::MPI_Aint
    }

    fn me(&self) -> usize {
        self.comm.rank()
    }

    /// `MPI_Win_flush(target)`, which completes gets: the destination
    /// buffers hold the data. (Not `MPI_Win_flush_local`: Open MPI 4's
    /// osc/pt2pt, the one-sided component that works over TCP, returns
    /// from it before the replies of earlier gets have arrived, so the data
    /// would land in the buffer after `get` returned it to the caller:
    /// measured as lost updates under exclusive locks on 3 ranks. For gets
    /// the two complete the same operations everywhere else.)
    fn flush_gets(&self, target: usize) -> Result<()> {
        // SAFETY: valid window, rank checked by the caller, inside an epoch
        // (lock on target or lock_all).
        let rc = unsafe { ffi::MPI_Win_flush(rank_c(target), self.win) };
        check(rc, "MPI_Win_flush")
    }

    /// `MPI_Win_flush_local(target)`: the origin buffers of every operation
    /// to `target` are complete.
    fn flush_local(&self, target: usize) -> Result<()> {
        // SAFETY: valid window, rank checked by the caller, inside an epoch
        // (lock on target or lock_all).
        let rc = unsafe { ffi::MPI_Win_flush_local(rank_c(target), self.win) };
        check(rc, "MPI_Win_flush_local")
    }

    /// `MPI_Win_lock` on `target`. The caller has checked that `target` is
    /// in range and that the window state gave it the target (`lock` or
    /// `begin_one_shot`).
    #[inline]
    fn raw_lock(&self, target: usize, kind: LockKind) -> Result<()> {
        let lock_type = match kind {
            LockKind::Shared => ffi::MPI_LOCK_SHARED,
            LockKind::Exclusive => ffi::MPI_LOCK_EXCLUSIVE,
        } as c_int;
        let _serial = raw::enter()?;
        self.lock_held(target, lock_type)
    }

    /// [`Self::raw_lock`] for callers that hold [`raw::enter`]'s guard
    /// (`lock_type`: `MPI_LOCK_SHARED` / `MPI_LOCK_EXCLUSIVE`).
    #[inline]
    fn lock_held(&self, target: usize, lock_type: c_int) -> Result<()> {
        // SAFETY: valid window; `target < size` and no epoch of this rank on
        // `target` (both checked by the caller), so this is a correct
        // MPI_Win_lock; with MPI_ERRORS_RETURN a racing second lock from
        // another thread of this rank returns an error code, reported below.
        let rc = unsafe { ffi::MPI_Win_lock(lock_type, rank_c(target), 0, self.win) };
        check(rc, "MPI_Win_lock")?;
        self.held.set(target, true);
        Ok(())
    }

    /// `MPI_Win_unlock` on `target`, which the caller locked.
    #[inline]
    fn raw_unlock(&self, target: usize) -> Result<()> {
        let _serial = raw::enter()?;
        self.unlock_held(target)
    }

    /// [`Self::raw_unlock`] for callers that hold [`raw::enter`]'s guard.
    #[inline]
    fn unlock_held(&self, target: usize) -> Result<()> {
        self.held.set(target, false);
        // SAFETY: valid window; this rank holds a lock on `target` (the
        // caller's invariant).
        let rc = unsafe { ffi::MPI_Win_unlock(rank_c(target), self.win) };
        check(rc, "MPI_Win_unlock")
    }

    /// A one-shot epoch on `target` (approved by the caller): lock, `op`,
    /// unlock under one hold of the MPI call lock (one lock/unlock pair of
    /// the process-wide mutex per element access instead of three); the
    /// unlock completes `op`, also after an error.
    #[inline]
    fn one_shot(
        &self,
        target: usize,
        kind: LockKind,
        op: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let lock_type = match kind {
            LockKind::Shared => ffi::MPI_LOCK_SHARED,
            LockKind::Exclusive => ffi::MPI_LOCK_EXCLUSIVE,
        } as c_int;
        // (the caller's one-shot guard ends the epoch in the window state)
        raw::enter().and_then(|_serial| {
            self.lock_held(target, lock_type)?;
            let issued = op();
            let unlocked = self.unlock_held(target);
            issued.and(unlocked)
        })
    }

    /// `MPI_Get` of `dst.len()` elements (already validated), in chunks of
    /// at most `MAX_COUNT`; no flush. With `reqs`, request-based
    /// (`MPI_Rget`, one request per chunk pushed to `reqs`). On an error,
    /// the chunks before the failing one are issued: the caller completes
    /// them (flush / unlock, or waiting for `reqs`) before `dst` is
    /// released.
    fn raw_get(
        &self,
        target: usize,
        offset: usize,
        dst: &mut [T],
        mut reqs: Option<&mut Vec<ffi::MPI_Request>>,
    ) -> Result<()> {
        let chunk_len = fault_injection::chunk_len();
        for (i, chunk) in dst.chunks_mut(chunk_len).enumerate() {
            fault_injection::check_chunk(i)?;
            let n = chunk.len() as c_int;
            let at = offset + i * chunk_len;
            self.get_one(target, chunk, at, (n, self.datatype), reqs.as_deref_mut())?;
        }
        Ok(())
    }

    /// One `MPI_Get` (with `reqs`: `MPI_Rget`, its request pushed to
    /// `reqs`) of `dst.len()` (<= `MAX_COUNT`) contiguous elements from
    /// `target`'s part at element `offset`, laid out there as `layout` (a
    /// count of a datatype holding `dst.len()` elements of the window's
    /// type: contiguous, or a committed vector type). The caller has
    /// validated the target range and holds the epoch; it completes the
    /// operation (flush / unlock, or the wait of the request) before `dst`
    /// is released, also on error.
    fn get_one(
        &self,
        target: usize,
        dst: &mut [T],
        offset: usize,
        layout: (c_int, ffi::MPI_Datatype),
        reqs: Option<&mut Vec<ffi::MPI_Request>>,
    ) -> Result<()> {
        let (ptr, n) = (dst.as_mut_ptr().cast::<c_void>(), dst.len() as c_int);
        let (dt, win, from) = (self.datatype, self.win, rank_c(target));
        let (disp, (tn, tdt)) = (self.disp(target, offset), layout);
        // SAFETY (both calls): `dst` is a valid, exclusively borrowed buffer
        // of `n` elements of `dt`; `layout` covers `n` elements of `dt` in
        // `target`'s part (bounds checked by the caller); we are in an
        // epoch on `target` (checked: a pinned lock epoch for the
        // request-based form) and the caller completes the operation
        // (MPI_Win_flush_local / MPI_Win_unlock, or the wait of the
        // request) before `dst`'s borrow ends, also on error.
        let call = if reqs.is_some() {
            "MPI_Rget"
        } else {
            "MPI_Get"
        };
        let rc = match reqs {
            // SAFETY: see the comment above this match.
            None => unsafe { ffi::MPI_Get(ptr, n, dt, from, disp, tn, tdt, win) },
            // SAFETY: see the comment above this match.
            Some(reqs) => push_request(reqs, |r| unsafe {
                ffi::MPI_Rget(ptr, n, dt, from, disp, tn, tdt, win, r)
            }),
        };
        check(rc, call)
    }

    /// `MPI_Put` (or `MPI_Accumulate` with `op`) of `src` (validated), in
    /// chunks (shorter ones for reductions that the MPI library gets wrong
    /// on long runs: see [`crate::detected_quirks`]); no flush. With
    /// `reqs`, request-based (`MPI_Rput` / `MPI_Raccumulate`, one request
    /// per chunk pushed to `reqs`). On an error, the chunks before the
    /// failing one are issued: the caller completes them (flush / unlock,
    /// or waiting for `reqs`) before `src` is released.
    fn raw_put(
        &self,
        target: usize,
        offset: usize,
        src: &[T],
        op: Option<AccumulateOp>,
        mut reqs: Option<&mut Vec<ffi::MPI_Request>>,
    ) -> Result<()> {
        let mut chunk_len = fault_injection::chunk_len();
        if let Some(op) = op {
            if let Some(max) = quirks::max_run(T::KIND, op)? {
                chunk_len = chunk_len.min(max);
            }
        }
        for (i, chunk) in src.chunks(chunk_len).enumerate() {
            fault_injection::check_chunk(i)?;
            let n = chunk.len() as c_int;
            let at = offset + i * chunk_len;
            self.put_one(
                target,
                chunk,
                at,
                (n, self.datatype),
                op,
                reqs.as_deref_mut(),
            )?;
        }
        Ok(())
    }

    /// One `MPI_Put` (`MPI_Accumulate` with `op`; with `reqs`, `MPI_Rput` /
    /// `MPI_Raccumulate`, its request pushed to `reqs`) of `src.len()`
    /// (<= `MAX_COUNT`) contiguous elements into `target`'s part at element
    /// `offset`, laid out there as `layout` (as for [`Self::get_one`]). The
    /// caller has validated the target range and holds the epoch; `src`
    /// stays borrowed until it completes the operation, also on error.
    fn put_one(
        &self,
        target: usize,
        src: &[T],
        offset: usize,
        layout: (c_int, ffi::MPI_Datatype),
        op: Option<AccumulateOp>,
        reqs: Option<&mut Vec<ffi::MPI_Request>>,
    ) -> Result<()> {
        let (ptr, n) = (src.as_ptr().cast::<c_void>(), src.len() as c_int);
        let (dt, win, to) = (self.datatype, self.win, rank_c(target));
        let (disp, (tn, tdt)) = (self.disp(target, offset), layout);
        let call = match (op.is_some(), reqs.is_some()) {
            (false, false) => "MPI_Put",
            (true, false) => "MPI_Accumulate",
            (false, true) => "MPI_Rput",
            (true, true) => "MPI_Raccumulate",
        };
        // SAFETY (all four calls): `src` is a valid buffer of `n` elements
        // of `dt`, borrowed until the caller completes the operation
        // (MPI_Win_flush_local / MPI_Win_unlock, or the wait of the
        // request), also on error; `layout` covers `n` elements of `dt` (the
        // same predefined type, as accumulates require; a vector type's
        // blocks ascending without overlap) in `target`'s part (bounds
        // checked by the caller); we are in an epoch (checked: a pinned
        // lock epoch approved for writes for the request-based form);
        // `raw::op` is a predefined operation valid for every predefined
        // datatype we use.
        let rc = match (op, reqs) {
            // SAFETY: see the comment above this match.
            (None, None) => unsafe { ffi::MPI_Put(ptr, n, dt, to, disp, tn, tdt, win) },
            // SAFETY: see the comment above this match.
            (Some(op), None) => unsafe {
                ffi::MPI_Accumulate(ptr, n, dt, to, disp, tn, tdt, raw::op(op), win)
            },
            // SAFETY: see the comment above this match.
            (None, Some(reqs)) => push_request(reqs, |r| unsafe {
                ffi::MPI_Rput(ptr, n, dt, to, disp, tn, tdt, win, r)
            }),
            // SAFETY: see the comment above this match.
            (Some(op), Some(reqs)) => push_request(reqs, |r| unsafe {
                ffi::MPI_Raccumulate(ptr, n, dt, to, disp, tn, tdt, raw::op(op), win, r)
            }),
        };
        check(rc, call)
    }

    /// The runs of a batch into `dst` (validated, in an epoch as for
    /// [`Self::raw_get`]): one `MPI_Get` / `MPI_Rget` per [`VectorRun`]
    /// (a vector target type where it holds several runs; one call per run
    /// with `DISTARRAY_MPI_DATATYPES=0`). No flush; on an error, what was
    /// issued is the caller's to complete, as for `raw_get`.
    fn raw_get_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        dst: &mut [T],
        mut reqs: Option<&mut Vec<ffi::MPI_Request>>,
    ) -> Result<()> {
        for g in self.groups_of(runs, None)? {
            if g.count == 1 {
                self.raw_get(target, g.offset, &mut dst[g.piece], reqs.as_deref_mut())?;
                continue;
            }
            fault_injection::check_chunk(0)?;
            // kept by the window; our reference keeps it until issued
            let ty = self.types.vector(&g, self.datatype)?;
            self.get_one(
                target,
                &mut dst[g.piece],
                g.offset,
                (1, ty.0),
                reqs.as_deref_mut(),
            )?;
        }
        Ok(())
    }

    /// The runs of a batch from `src` (validated, in an epoch as for
    /// [`Self::raw_put`]): one `MPI_Put` / `MPI_Accumulate` (or its
    /// request-based form) per [`VectorRun`]. No flush; on an error, what
    /// was issued is the caller's to complete, as for `raw_put`.
    fn raw_put_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
        mut reqs: Option<&mut Vec<ffi::MPI_Request>>,
    ) -> Result<()> {
        for g in self.groups_of(runs, op)? {
            if g.count == 1 {
                self.raw_put(target, g.offset, &src[g.piece], op, reqs.as_deref_mut())?;
                continue;
            }
            fault_injection::check_chunk(0)?;
            // kept by the window; our reference keeps it until issued
            let ty = self.types.vector(&g, self.datatype)?;
            self.put_one(
                target,
                &src[g.piece],
                g.offset,
                (1, ty.0),
                op,
                reqs.as_deref_mut(),
            )?;
        }
        Ok(())
    }

    /// How a batch is issued: [`vector_runs`] of it, or one group per run
    /// where derived types are off ([`datatypes_enabled`]) or the MPI
    /// library computes long runs of this accumulate wrongly
    /// ([`crate::detected_quirks`]: their runs stay short, one call each).
    fn groups_of(
        &self,
        runs: &[(usize, usize)],
        op: Option<AccumulateOp>,
    ) -> Result<Vec<VectorRun>> {
        let quirk = match op {
            Some(op) => quirks::max_run(T::KIND, op)?.is_some(),
            None => false,
        };
        // the fault-injection hook's chunks bound a group too
        let max_len = if !datatypes_enabled() || quirk {
            0
        } else {
            fault_injection::chunk_len()
        };
        Ok(vector_runs(runs, max_len))
    }

    /// Completes the puts / accumulates just issued to `target`: at the
    /// origin (`MPI_Win_flush_local`, the buffer may be reused), and for
    /// this rank's own part also at the target (`MPI_Win_flush`), so that
    /// no own write is still landing when a local view of the part opens.
    fn complete_writes(&self, target: usize) -> Result<()> {
        if target == self.me() {
            // SAFETY: valid window, inside an epoch on `target` (approved).
            let rc = unsafe { ffi::MPI_Win_flush(rank_c(target), self.win) };
            check(rc, "MPI_Win_flush")
        } else {
            self.flush_local(target)
        }
    }

    /// `MPI_Win_sync`: synchronises the public and private copies of this
    /// rank's part (valid inside a passive-target epoch).
    fn win_sync(&self) -> Result<()> {
        // SAFETY: valid window; called only with a lock on self or lock_all.
        check(unsafe { ffi::MPI_Win_sync(self.win) }, "MPI_Win_sync")
    }
}

// SAFETY: every primitive is the MPI call with the semantics the trait
// states: `MPI_Win_lock` shared / exclusive excludes as documented; data
// moves only within the ranges given (the window was allocated with the
// agreed lengths, so MPI's own bounds match the checked layer's); gets are
// complete in `dst` when they return (`MPI_Win_flush`), writes' sources
// reusable (`MPI_Win_flush_local`, also after an error: what was issued is
// completed first); requests are waited for (also when dropped) before
// their buffers are given back; the fence epoch is built from
// passive-target calls (see the module docs).
unsafe impl<T: Element> RawWindow<T> for MpiWindow<T> {
    /// `MPI_Win_lock` (`MPI_LOCK_SHARED` / `MPI_LOCK_EXCLUSIVE`).
    unsafe fn lock(&self, target: usize, kind: LockKind) -> Result<()> {
        self.raw_lock(target, kind)
    }

    /// `MPI_Win_unlock`: completes every operation on `target`.
    unsafe fn unlock(&self, target: usize, _kind: LockKind) -> Result<()> {
        self.raw_unlock(target)
    }

    /// `MPI_Win_flush`.
    unsafe fn flush(&self, target: usize) -> Result<()> {
        let _serial = raw::enter()?;
        // SAFETY: valid window; this rank holds a lock on `target` (the
        // caller's guarantee).
        let rc = unsafe { ffi::MPI_Win_flush(rank_c(target), self.win) };
        check(rc, "MPI_Win_flush")
    }

    /// `MPI_Get` + `MPI_Win_flush` (see `flush_gets`).
    unsafe fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        let _serial = raw::enter()?;
        // Complete what was issued even after an error: `dst` is released
        // when we return.
        let issued = self.raw_get(target, offset, dst, None);
        let flushed = self.flush_gets(target);
        issued.and(flushed)
    }

    /// `MPI_Put` or `MPI_Accumulate` (`MPI_REPLACE`, `MPI_SUM`, `MPI_PROD`,
    /// `MPI_MIN`, `MPI_MAX`), then `MPI_Win_flush_local` (see
    /// `complete_writes`).
    unsafe fn write(
        &self,
        target: usize,
        offset: usize,
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        let _serial = raw::enter()?;
        // Complete what was issued even after an error: `src` is released
        // when we return.
        let issued = self.raw_put(target, offset, src, op, None);
        let flushed = self.complete_writes(target);
        issued.and(flushed)
    }

    /// One `MPI_Get` per group of equal rows at equal distances (an
    /// `MPI_Type_vector` target type), one `MPI_Win_flush` (see
    /// `flush_gets`: leaving the reads to the epoch's `unlock` hangs Open
    /// MPI 4's osc/pt2pt when a rank holds read epochs on several targets
    /// at once).
    unsafe fn get_runs(&self, target: usize, runs: &[(usize, usize)], dst: &mut [T]) -> Result<()> {
        let _serial = raw::enter()?;
        // stops at the first failed run; what was issued is completed
        let issued = self.raw_get_runs(target, runs, dst, None);
        let flushed = self.flush_gets(target);
        issued.and(flushed)
    }

    /// One `MPI_Put` / `MPI_Accumulate` per group of equal rows (a vector
    /// target type), one `MPI_Win_flush_local`.
    unsafe fn write_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        let _serial = raw::enter()?;
        // stops at the first failed run; what was issued is completed
        let issued = self.raw_put_runs(target, runs, src, op, None);
        let flushed = self.complete_writes(target);
        issued.and(flushed)
    }

    /// Lock, `MPI_Get`, unlock under one hold of the MPI call lock: the
    /// unlock completes the get, no separate flush.
    unsafe fn get_locked(
        &self,
        target: usize,
        kind: LockKind,
        offset: usize,
        dst: &mut [T],
    ) -> Result<()> {
        self.one_shot(target, kind, || self.raw_get(target, offset, dst, None))
    }

    /// Lock, `MPI_Put`, unlock: the unlock completes the put.
    unsafe fn put_locked(
        &self,
        target: usize,
        kind: LockKind,
        offset: usize,
        src: &[T],
    ) -> Result<()> {
        self.one_shot(target, kind, || {
            self.raw_put(target, offset, src, None, None)
        })
    }

    /// One `MPI_Rget` per group of equal rows at equal distances (a vector
    /// target type; a lone run: one per chunk); the request's wait is one
    /// `MPI_Waitall`.
    unsafe fn get_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        dst: &mut [T],
    ) -> Result<Box<dyn Request + 'w>> {
        let mut req = MpiRequests { reqs: Vec::new() };
        let _serial = raw::enter()?;
        // on an error, dropping `req` waits for what was issued
        self.raw_get_runs(target, runs, dst, Some(&mut req.reqs))?;
        Ok(Box::new(req))
    }

    /// One `MPI_Rput` / `MPI_Raccumulate` per group of equal rows (a
    /// vector target type; a lone run: one per chunk); the request's wait
    /// is one `MPI_Waitall` (the source may be reused; the unlock completes
    /// the writes at the target).
    unsafe fn write_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<Box<dyn Request + 'w>> {
        let mut req = MpiRequests { reqs: Vec::new() };
        let _serial = raw::enter()?;
        // on an error, dropping `req` waits for what was issued
        self.raw_put_runs(target, runs, src, op, Some(&mut req.reqs))?;
        Ok(Box::new(req))
    }

    /// An allgather of the tokens on the communicator's private duplicate
    /// (which carries no other collective, so only another rank's fence
    /// vote can match it): no rank waits alone in the runtime step.
    unsafe fn fence_vote(&self, token: u64) -> Result<Vec<u64>> {
        self.comm.fence_vote(token)
    }

    /// Opens or continues the fence epoch, or closes it (`end`); see the
    /// module docs for how it maps to MPI.
    unsafe fn fence(&self, end: bool) -> Result<()> {
        let _collective = self.comm.collective();
        let _serial = raw::enter()?;
        if end {
            if self.all_locked.swap(false, Ordering::SeqCst) {
                self.held.set_all(false);
                // SAFETY: valid window; this rank holds lock_all (flag).
                let rc = unsafe { ffi::MPI_Win_unlock_all(self.win) };
                check(rc, "MPI_Win_unlock_all")?;
            }
            self.comm.barrier_locked()
        } else if self.all_locked.load(Ordering::SeqCst) {
            // SAFETY: valid window inside the lock_all epoch.
            let rc = unsafe { ffi::MPI_Win_flush_all(self.win) };
            check(rc, "MPI_Win_flush_all")?;
            self.win_sync()?;
            self.comm.barrier_locked()?;
            self.win_sync()
        } else {
            // Every rank has closed its passive epochs (the caller's
            // guarantee, checked on each rank) once it reaches the barrier.
            self.comm.barrier_locked()?;
            // SAFETY: valid window; this rank holds no lock on it.
            let rc = unsafe { ffi::MPI_Win_lock_all(0, self.win) };
            check(rc, "MPI_Win_lock_all")?;
            self.held.set_all(true);
            self.all_locked.store(true, Ordering::SeqCst);
            self.win_sync()
        }
    }

    /// `MPI_Win_sync` before the access (this rank's own writes to its part
    /// are complete at the target when they return, see
    /// `complete_writes`, so none is still landing under the view) and
    /// after a mutable one (the local stores become visible in the public
    /// copy); the memory stays allocated meanwhile even if another thread
    /// calls `MPI_Finalize` (a view pin).
    unsafe fn with_local<R>(&self, mutable: bool, f: impl FnOnce(*mut T, usize) -> R) -> Result<R> {
        // keeps MPI_Finalize from freeing the memory under the slice
        let _pin = ViewPin::new()?;
        {
            let _serial = raw::enter()?;
            self.win_sync()?;
        }
        let out = f(self.base.as_ptr(), self.local_len);
        if mutable {
            let _serial = raw::enter()?;
            self.win_sync()?;
        }
        Ok(out)
    }

    /// `MPI_Win_unlock` of each lock and `MPI_Win_unlock_all` of an open
    /// fence epoch (nothing after `MPI_Finalize`, which freed the window).
    unsafe fn release(&self, locks: &[(usize, LockKind)], _fence_open: bool) {
        let _serial = serial();
        if raw::finalized() {
            return;
        }
        for &(t, _) in locks {
            self.held.set(t, false);
            // SAFETY: valid window; this rank holds a lock on `t`.
            let _ = unsafe { ffi::MPI_Win_unlock(rank_c(t), self.win) };
        }
        if self.all_locked.swap(false, Ordering::SeqCst) {
            self.held.set_all(false);
            // SAFETY: valid window; this rank holds lock_all.
            let _ = unsafe { ffi::MPI_Win_unlock_all(self.win) };
        }
    }
}

impl<T: Element> Drop for MpiWindow<T> {
    /// Collective: `MPI_Win_free`, which waits for every rank to free the
    /// window too (the checked layer released this rank's locks and fence
    /// epoch first, see [`RawWindow::release`]).
    fn drop(&mut self) {
        let _serial = serial();
        lifetime::unregister_window(self.win);
        if raw::finalized() {
            // MPI_Finalize already freed the window and the types; calling
            // MPI now would be erroneous.
            self.types.forget();
            return;
        }
        self.types.free();
        // SAFETY: `win` is a valid window that no other handle refers to
        // (each rank has one `MpiWindow` per window); every epoch of this
        // rank was closed by `release`; no slice of its memory outlives
        // `&mut self`. MPI_Win_free is collective: it returns once every
        // rank freed it.
        let rc = unsafe { ffi::MPI_Win_free(&mut self.win) };
        if let Err(e) = check(rc, "MPI_Win_free") {
            eprintln!("distarray-mpi: {e}");
        }
    }
}

#[cfg(test)]
mod line_pad_tests {
    use super::line_pad;

    /// Parts move to the next 64-byte line by whole elements where they
    /// can (Open MPI's window memory starts 8 bytes past a line), and stay
    /// where they are otherwise.
    #[test]
    fn parts_move_to_the_next_line_by_whole_elements() {
        assert_eq!(line_pad(4096 + 8, 8), 7);
        assert_eq!(line_pad(4096, 8), 0);
        assert_eq!(line_pad(4096 + 8, 4), 14);
        assert_eq!(line_pad(4096 + 8, 1), 56);
        assert_eq!(line_pad(4096 + 56, 8), 1);
        // 16-byte elements from 8 past a line never reach one; 24-byte
        // elements do not divide a line; an address off the element size
        assert_eq!(line_pad(4096 + 8, 16), 0);
        assert_eq!(line_pad(4096 + 16, 16), 3);
        assert_eq!(line_pad(4096 + 8, 24), 0);
        assert_eq!(line_pad(4096 + 4, 8), 0);
        assert_eq!(line_pad(4096 + 8, 0), 0);
    }
}
