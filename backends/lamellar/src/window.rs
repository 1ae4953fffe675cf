//! [`LamellarWindow`]: a window over a Lamellar shared memory region.
//!
//! * Memory: one `SharedMemoryRegion<T>` of `max(len over PEs)` elements per
//!   PE (Lamellar regions have the same length everywhere); accesses are
//!   checked against each PE's *true* length with [`WindowLayout`].
//! * `get` / `put`: RDMA (`get` / `get_buffer` / `put` / `put_buffer`),
//!   blocking at the origin; accesses to the calling PE's own part are
//!   plain copies. Every operation is complete when it returns, so `flush`
//!   and `unlock` have nothing left to wait for.
//! * `lock` / `unlock`: a reader/writer lock per target PE in a small
//!   control region, manipulated with remote atomics (see
//!   [`crate::target`]); shared admits many, exclusive excludes every other
//!   PE. Waiting is polling with back-off.
//! * `accumulate`: under the target's accumulate guard (a remote
//!   test-and-set lock), read the elements, combine them with
//!   [`Element::combine`] and write them back: element-wise atomic with
//!   respect to every other accumulate on that target.
//! * Every operation is first approved by the backend-independent
//!   [`WindowState`] (bounds, epochs, the access model: writes need an
//!   exclusive lock or a fence epoch, views keep their lock), so misuse
//!   gives the same `Err` as on the other backends, before anything is
//!   sent.
//!
//! Dropping a window releases the locks this PE still holds and hands its
//! regions back to the communicator, which reuses them for a later window
//! once every PE has dropped this one (see `RegionCache` in `comm/regions.rs`), or
//! releases them; Lamellar's distributed reference count frees the memory
//! once no PE holds a handle. Drop does not wait for the other PEs, so an
//! early drop on one PE cannot hang the rest.

use std::sync::Mutex;

use distarray::checks::{run_pieces, Access, WindowState};
use distarray::comm::Completed;
use distarray::{AccumulateOp, Element, Error, LockKind, OneSidedComm, Request, Result, Window};
use lamellar::memregion::prelude::*;

use crate::comm::{LamellarComm, Regions};
use crate::target::Ctl;

/// Bulk transfers move through a registered bounce buffer of this size per
/// window (allocated on first use from Lamellar's heap), so that the copy
/// between it and the caller's buffer stays in cache.
const CHUNK_BYTES: usize = 64 << 10;

/// One window of a [`LamellarComm`].
pub struct LamellarWindow<T: Element> {
    comm: LamellarComm,
    rank: usize,
    /// Approves every operation (the same rules on every backend).
    state: WindowState,
    region: SharedMemoryRegion<T>,
    /// Address of this PE's part of `region` (taken once, so that no
    /// reference to window memory is created outside a local view).
    local: usize,
    ctl: Ctl,
    /// Elements per bulk-transfer chunk.
    chunk: usize,
    /// Bounce buffer of `chunk` elements for bulk get / put.
    bounce: Mutex<Option<OneSidedMemoryRegion<T>>>,
    /// Returned to the communicator's cache on drop.
    regions: Option<Regions>,
    /// The registered buffers and spawned futures of non-blocking
    /// operations in flight, owned here (a request holds only its slot), so
    /// that a leaked request leaks no Lamellar handle — Lamellar's world
    /// waits for every one at exit — and its transfers are completed at the
    /// latest when the window drops.
    in_flight: Mutex<Vec<Option<Transfers<T>>>>,
}

/// The futures of one non-blocking operation and the registered buffer
/// they read or fill.
struct Transfers<T: Element> {
    buf: OneSidedMemoryRegion<T>,
    tasks: Vec<lamellar::LamellarTask<()>>,
}

impl<T: Element> Transfers<T> {
    fn complete(&mut self) {
        for t in self.tasks.drain(..) {
            t.block();
        }
    }
}

impl<T: Element> LamellarWindow<T> {
    /// Collective: sets up a window over `regions` (new or reused, the same
    /// on every PE). `lens` holds every PE's length.
    pub(crate) fn create(comm: LamellarComm, lens: Vec<usize>, regions: Regions) -> Result<Self> {
        let rank = comm.rank();
        let state = WindowState::new(rank, lens.clone(), comm.handle_slot().clone())?;
        let need = lens.iter().copied().max().unwrap_or(0);
        let region = regions.data::<T>();
        debug_assert!(region.len() >= need);
        // SAFETY: no PE accesses this window's regions before the barrier
        // below (a reused region's previous window was dropped by every PE
        // before this collective call); the slices are this PE's parts and
        // die at the end of the block.
        unsafe {
            region.as_mut_slice()[..need].fill(T::ZERO);
            regions.ctl.as_mut_slice().fill(0);
        }
        // SAFETY: only the address is taken (no reference is created).
        let local = unsafe { region.as_mut_ptr() }
            .map_err(|e| Error::Backend(format!("window region has no local part: {e:?}")))?;
        comm.creation_barrier();
        Ok(LamellarWindow {
            local: local as usize,
            chunk: (CHUNK_BYTES / std::mem::size_of::<T>()).max(1),
            bounce: Mutex::new(None),
            rank,
            state,
            region,
            ctl: Ctl::new(regions.ctl.clone()),
            regions: Some(regions),
            in_flight: Mutex::new(Vec::new()),
            comm,
        })
    }

    /// Pointer to this PE's part (valid for `self.local_len()` elements
    /// while the window lives).
    fn local_ptr(&self) -> *mut T {
        self.local as *mut T
    }

    /// Reads `dst.len()` elements of `target` from `offset` (bounds checked
    /// by the caller).
    fn read(&self, target: usize, offset: usize, dst: &mut [T]) {
        if dst.is_empty() {
        } else if target == self.rank {
            // SAFETY: `offset + dst.len() <= local_len()` (checked by the
            // caller) and the part holds that many initialised `T`s; `dst`
            // is a separate buffer (no reference into window memory escapes
            // a local view, and none is alive: checked by the caller).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.local_ptr().add(offset),
                    dst.as_mut_ptr(),
                    dst.len(),
                );
            }
        } else if dst.len() == 1 {
            // SAFETY: in bounds of `target`'s part (checked by the caller;
            // the region holds max(len) elements per PE); `block` returns
            // once the value has arrived.
            dst[0] = unsafe { self.region.get(target, offset).block() };
        } else {
            // Through a registered bounce buffer, in cache-sized chunks:
            // RDMA into it, then copy into `dst`.
            let mut bounce = self.bounce();
            let bounce = bounce.get_or_insert_with(|| {
                self.comm
                    .world()
                    .alloc_one_sided_mem_region::<T>(self.chunk)
            });
            for (i, part) in dst.chunks_mut(self.chunk).enumerate() {
                let sub = bounce.sub_region(0..part.len());
                // SAFETY: in bounds of `target`'s part (`offset + i * chunk +
                // part.len() <= offset + dst.len()`, checked by the caller).
                // The bounce region is this window's alone (behind its
                // mutex) and `block` returns once the data has arrived.
                unsafe {
                    let buf = LamellarBuffer::from_one_sided_memory_region(sub.clone());
                    self.region
                        .get_into_buffer(target, offset + i * self.chunk, buf)
                        .block();
                    part.copy_from_slice(sub.as_slice());
                }
            }
        }
    }

    /// Writes `src` to `target` from `offset` (bounds checked by the
    /// caller).
    fn write(&self, target: usize, offset: usize, src: &[T]) {
        if src.is_empty() {
        } else if target == self.rank {
            // SAFETY: in bounds of the local part (checked by the caller);
            // no local view is alive (checked by the caller), so no
            // reference into the part exists; `copy` tolerates overlap.
            unsafe { std::ptr::copy(src.as_ptr(), self.local_ptr().add(offset), src.len()) };
        } else if src.len() == 1 {
            // SAFETY: in bounds of `target`'s part (checked by the caller);
            // `block` returns once the transfer is complete.
            unsafe { self.region.put(target, offset, src[0]).block() };
        } else {
            // Through the registered bounce buffer, in cache-sized chunks.
            let mut bounce = self.bounce();
            let bounce = bounce.get_or_insert_with(|| {
                self.comm
                    .world()
                    .alloc_one_sided_mem_region::<T>(self.chunk)
            });
            for (i, part) in src.chunks(self.chunk).enumerate() {
                let sub = bounce.sub_region(0..part.len());
                // SAFETY: in bounds of `target`'s part (checked by the
                // caller); the bounce region is this window's alone (behind
                // its mutex), and `block` returns once the transfer is
                // complete, before the region is written again.
                unsafe {
                    sub.as_mut_slice().copy_from_slice(part);
                    self.region
                        .put_buffer(target, offset + i * self.chunk, &sub)
                        .block();
                }
            }
        }
    }

    /// Collective `fence` / `fence_end` (`end`): every PE learns whether
    /// all could (an allgather of one flag, whose barriers also order the
    /// operations of the epoch: they are complete when they return). If one
    /// could not, every PE returns an error and none is left waiting.
    fn fence_vote(&self, end: bool) -> Result<()> {
        self.state.fence_collectively(
            end,
            |ok| {
                let all = self.comm.allgather(&[u8::from(ok)])?;
                Ok(all.iter().map(|v| v[0] == 1).collect())
            },
            // the allgather's barriers order the epoch's operations
            || Ok(()),
        )
    }

    /// Combines `src` into `target` from `offset` with `op` under the
    /// target's accumulate guard (approved by the caller).
    fn combine(&self, target: usize, offset: usize, src: &[T], op: AccumulateOp) {
        if src.is_empty() {
            return;
        }
        if op == AccumulateOp::Replace && src.len() == 1 {
            // A single-element replace is one RDMA write: atomic as it is.
            self.ctl
                .with_acc_guard(target, &|| self.comm.progress(), || {
                    self.write(target, offset, src)
                });
            return;
        }
        let mut cur = vec![T::ZERO; src.len()];
        self.ctl
            .with_acc_guard(target, &|| self.comm.progress(), || {
                self.read(target, offset, &mut cur);
                for (c, &s) in cur.iter_mut().zip(src) {
                    *c = T::combine(op, *c, s);
                }
                self.write(target, offset, &cur);
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            });
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, Vec<Option<Transfers<T>>>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `t` until [`LamellarWindow::finish`] of the returned slot.
    fn hold(&self, t: Transfers<T>) -> usize {
        let mut f = self.in_flight();
        match f.iter().position(Option::is_none) {
            Some(i) => {
                f[i] = Some(t);
                i
            }
            None => {
                f.push(Some(t));
                f.len() - 1
            }
        }
    }

    /// Completes the transfers of `slot`, then runs `after` on their buffer
    /// (before it is freed).
    fn finish(&self, slot: usize, after: impl FnOnce(&OneSidedMemoryRegion<T>)) {
        let t = self.in_flight().get_mut(slot).and_then(Option::take);
        if let Some(mut t) = t {
            t.complete();
            after(&t.buf);
        }
    }

    fn bounce(&self) -> std::sync::MutexGuard<'_, Option<OneSidedMemoryRegion<T>>> {
        self.bounce.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The data region, for benchmarks comparing with raw Lamellar calls.
    #[doc(hidden)]
    pub fn raw_region(&self) -> &SharedMemoryRegion<T> {
        &self.region
    }
}

impl<T: Element> Window<T> for LamellarWindow<T> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.state.size()
    }

    fn len_of(&self, target: usize) -> Result<usize> {
        self.state.len_of(target)
    }

    fn lock(&self, target: usize, kind: LockKind) -> Result<()> {
        let locking = self.state.lock(target, kind)?;
        self.ctl.lock(target, kind == LockKind::Exclusive, &|| {
            self.comm.progress()
        });
        locking.granted();
        Ok(())
    }

    fn unlock(&self, target: usize) -> Result<()> {
        // nothing else of this PE can use `target` until `unlocking` drops
        let unlocking = self.state.unlock(target)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.ctl
            .unlock(target, unlocking.kind() == LockKind::Exclusive, &|| {
                self.comm.progress()
            });
        Ok(())
    }

    fn flush(&self, target: usize) -> Result<()> {
        // Operations complete when they return.
        let _pin = self.state.flush(target)?;
        Ok(())
    }

    fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        let _own = self
            .state
            .approve(target, Access::Read, offset, dst.len())?;
        self.read(target, offset, dst);
        Ok(())
    }

    fn put(&self, target: usize, offset: usize, src: &[T]) -> Result<()> {
        let _own = self
            .state
            .approve(target, Access::Write, offset, src.len())?;
        self.write(target, offset, src);
        Ok(())
    }

    fn accumulate(&self, target: usize, offset: usize, src: &[T], op: AccumulateOp) -> Result<()> {
        distarray::checks::check_op::<T>(op)?;
        let _own = self
            .state
            .approve(target, Access::Write, offset, src.len())?;
        self.combine(target, offset, src, op);
        Ok(())
    }

    fn get_runs(&self, target: usize, runs: &[(usize, usize)], dst: &mut [T]) -> Result<()> {
        let _own = self
            .state
            .approve_runs(target, Access::Read, runs, dst.len())?;
        for (offset, piece) in run_pieces(runs) {
            self.read(target, offset, &mut dst[piece]);
        }
        Ok(())
    }

    /// One RDMA future per run, spawned at once, into a registered buffer
    /// of `dst.len()` elements; the wait blocks on the futures, then copies
    /// into `dst`. The own part, and fence epochs, take the blocking path.
    unsafe fn get_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        dst: &mut [T],
    ) -> Result<Box<dyn Request + 'w>> {
        if target == self.rank || self.state.fence_is_open() || dst.is_empty() {
            self.get_runs(target, runs, dst)?;
            return Ok(Box::new(Completed));
        }
        let approval = self
            .state
            .approve_runs(target, Access::Read, runs, dst.len())?;
        let buf = self.comm.world().alloc_one_sided_mem_region::<T>(dst.len());
        let mut tasks = Vec::new();
        for (offset, piece) in run_pieces(runs).filter(|(_, p)| !p.is_empty()) {
            let sub = buf.sub_region(piece);
            // SAFETY: in bounds of `target`'s part (approved); `sub` is a
            // part of this request's own registered buffer, which nothing
            // reads before the future completed (in `wait`).
            let task = unsafe {
                let lb = LamellarBuffer::from_one_sided_memory_region(sub);
                self.region.get_into_buffer(target, offset, lb).spawn()
            };
            tasks.push(task);
        }
        let slot = self.hold(Transfers { buf, tasks });
        Ok(Box::new(LamellarGets {
            _approval: approval,
            win: self,
            slot,
            dst: (dst.as_mut_ptr(), dst.len()),
            done: false,
        }))
    }

    /// Puts: `src` copied into a registered buffer, then one RDMA future
    /// per run, spawned at once (so `src` is free when this returns); the
    /// wait blocks on them. Accumulates (read, combine, write under the
    /// target's guard), the own part and fence epochs take the blocking
    /// path.
    unsafe fn write_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: AccumulateOp,
    ) -> Result<Box<dyn Request + 'w>> {
        if op != AccumulateOp::Replace
            || target == self.rank
            || self.state.fence_is_open()
            || src.is_empty()
        {
            self.write_runs(target, runs, src, op)?;
            return Ok(Box::new(Completed));
        }
        let approval = self
            .state
            .approve_runs(target, Access::Write, runs, src.len())?;
        let buf = self.comm.world().alloc_one_sided_mem_region::<T>(src.len());
        // SAFETY: the request's own registered buffer, not yet shared with
        // any transfer; the slice dies at the end of the statement.
        unsafe { buf.as_mut_slice().copy_from_slice(src) };
        let mut tasks = Vec::new();
        for (offset, piece) in run_pieces(runs).filter(|(_, p)| !p.is_empty()) {
            let sub = buf.sub_region(piece);
            // SAFETY: in bounds of `target`'s part (approved for writes);
            // `sub` is not written again
            // (the request only reads it) and lives in the request until
            // the future completed.
            let task = unsafe { self.region.put_buffer(target, offset, &sub).spawn() };
            tasks.push(task);
        }
        let slot = self.hold(Transfers { buf, tasks });
        Ok(Box::new(LamellarPuts {
            _approval: approval,
            win: self,
            slot,
            done: false,
        }))
    }

    fn put_runs(&self, target: usize, runs: &[(usize, usize)], src: &[T]) -> Result<()> {
        let _own = self
            .state
            .approve_runs(target, Access::Write, runs, src.len())?;
        for (offset, piece) in run_pieces(runs) {
            self.write(target, offset, &src[piece]);
        }
        Ok(())
    }

    fn accumulate_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: AccumulateOp,
    ) -> Result<()> {
        distarray::checks::check_op::<T>(op)?;
        let _own = self
            .state
            .approve_runs(target, Access::Write, runs, src.len())?;
        for (offset, piece) in run_pieces(runs) {
            self.combine(target, offset, &src[piece], op);
        }
        Ok(())
    }

    fn fence(&self) -> Result<()> {
        self.fence_vote(false)
    }

    fn fence_end(&self) -> Result<()> {
        self.fence_vote(true)
    }

    fn with_local<R>(&self, f: impl FnOnce(&[T]) -> R) -> Result<R> {
        let _view = self.state.open_view(false)?;
        // SAFETY: the local part holds `local_len()` initialised `T`s. The
        // window state approved the view: this PE holds a lock on its part
        // (no fence epoch), which it cannot release while `_view` lives;
        // other PEs' writes need an exclusive lock on the part, which the
        // lock protocol does not grant meanwhile; this PE's own writes to
        // the part are refused until `_view` drops.
        let slice =
            unsafe { std::slice::from_raw_parts(self.local_ptr() as *const T, self.local_len()) };
        Ok(f(slice))
    }

    fn with_local_mut<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        let _view = self.state.open_view(true)?;
        // SAFETY: the local part holds `local_len()` initialised `T`s. This
        // PE holds the exclusive lock on itself, so no other PE accesses the
        // part, and the lock cannot be released while the view is
        // registered (`unlock` fails with `Conflict`); this PE's own RMA
        // calls on the part fail too. The slice is the only access.
        let slice = unsafe { std::slice::from_raw_parts_mut(self.local_ptr(), self.local_len()) };
        Ok(f(slice))
    }
}

/// Reads in flight ([`LamellarWindow::get_runs_start`]): their slot in
/// the window's transfers, and the caller's destination (written once they
/// completed).
struct LamellarGets<'w, T: Element> {
    _approval: distarray::checks::Approval<'w>,
    win: &'w LamellarWindow<T>,
    slot: usize,
    dst: (*mut T, usize),
    done: bool,
}

// SAFETY: `dst` is the caller's buffer, which the contract of
// `get_runs_start` keeps valid and untouched until this request is waited
// or dropped, on whatever thread; the window is `Sync`; the approval is a
// set of counters.
unsafe impl<T: Element> Send for LamellarGets<'_, T> {}

impl<T: Element> LamellarGets<'_, T> {
    fn finish(&mut self) {
        self.done = true;
        let (ptr, len) = self.dst;
        self.win.finish(self.slot, |buf| {
            // SAFETY: every transfer into `buf` has completed; `ptr` / `len`
            // is the caller's destination, valid and unaliased until this
            // request is done (the contract of `get_runs_start`); `buf`
            // holds `len` elements and nothing else accesses it.
            unsafe { std::slice::from_raw_parts_mut(ptr, len).copy_from_slice(buf.as_slice()) };
        });
    }
}

impl<T: Element> Request for LamellarGets<'_, T> {
    fn wait(mut self: Box<Self>) -> Result<()> {
        self.finish();
        Ok(())
    }
}

impl<T: Element> Drop for LamellarGets<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.finish();
        }
    }
}

/// Puts in flight ([`LamellarWindow::write_runs_start`]): their slot in the
/// window's transfers (which hold the registered copy of the source).
struct LamellarPuts<'w, T: Element> {
    _approval: distarray::checks::Approval<'w>,
    win: &'w LamellarWindow<T>,
    slot: usize,
    done: bool,
}

// SAFETY: a slot number, a reference to a `Sync` window and counters.
unsafe impl<T: Element> Send for LamellarPuts<'_, T> {}

impl<T: Element> Request for LamellarPuts<'_, T> {
    fn wait(mut self: Box<Self>) -> Result<()> {
        self.done = true;
        self.win.finish(self.slot, |_| ());
        Ok(())
    }
}

impl<T: Element> Drop for LamellarPuts<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.win.finish(self.slot, |_| ());
        }
    }
}

impl<T: Element> Drop for LamellarWindow<T> {
    fn drop(&mut self) {
        // Transfers of leaked requests first: their targets stay locked
        // until they are complete, so no other PE can open a view under a
        // late write, and their buffers outlive them.
        for t in self.in_flight().iter_mut().flatten() {
            t.complete();
        }
        // Release the locks this PE still holds (an early return or `?`
        // inside an epoch, a leaked request) so that no other PE waits for
        // them forever.
        let (locks, _fence) = self.state.release_all();
        for (t, kind) in locks {
            self.ctl
                .unlock(t, kind == LockKind::Exclusive, &|| self.comm.progress());
        }
        if let Some(regions) = self.regions.take() {
            self.comm.recycle(regions);
        }
    }
}
