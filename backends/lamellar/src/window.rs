//! [`LamellarWindow`]: a window over a Lamellar shared memory region.
//!
//! * Memory: one `SharedMemoryRegion<T>` of `max(len over PEs)` elements per
//!   PE (Lamellar regions have the same length everywhere); accesses are
//!   checked against each PE's *true* length with [`WindowLayout`].
//! * `get` / `put`: RDMA (`get` / `get_buffer` / `put` / `put_buffer`),
//!   blocking at the origin; accesses to the calling PE's own part are
//!   plain copies.
//! * `lock` / `unlock`: a reader/writer lock per target PE, manipulated at
//!   the target by active messages (see [`crate::target`]); shared admits
//!   many, exclusive excludes every other PE. Waiting is polling with
//!   back-off.
//! * `accumulate`: an active message applying [`Element::combine`] at the
//!   target under its accumulate mutex. Remote accumulates are sent without
//!   waiting; `flush`, `unlock`, `fence` and `fence_end` wait for them.
//! * Every operation first runs the backend-independent checks
//!   ([`EpochTracker`], [`WindowLayout`]), so misuse gives the same `Err`
//!   as on the other backends, before anything is sent.
//!
//! Dropping a window releases the locks this PE still holds and waits for
//! its accumulates; the memory is freed by Lamellar's distributed reference
//! count once every PE has dropped its handle. Drop does not block on the
//! other PEs, so an early drop on one PE cannot hang the rest.

use std::sync::Mutex;

use distarray::checks::{EpochTracker, WindowLayout};
use distarray::{AccumulateOp, Element, Error, LockKind, Result, Window};
use lamellar::active_messaging::prelude::*;
use lamellar::darc::prelude::*;
use lamellar::memregion::prelude::*;
use lamellar::LamellarTask;

use crate::comm::LamellarComm;
use crate::target::{
    acquire, op_code, DistarrayAccumulateAm, DistarrayLockAm, DistarrayUnlockAm, TargetState,
};

/// One window of a [`LamellarComm`].
pub struct LamellarWindow<T: Element> {
    comm: LamellarComm,
    rank: usize,
    layout: WindowLayout,
    epochs: EpochTracker,
    region: SharedMemoryRegion<T>,
    state: Darc<TargetState>,
    /// Accumulate messages in flight, per target.
    pending: Mutex<Vec<Vec<LamellarTask<()>>>>,
    /// Local views alive (`with_local` / `with_local_mut`).
    views: Mutex<Views>,
}

#[derive(Debug, Default)]
struct Views {
    shared: usize,
    mutable: bool,
}

/// Unregisters a local view when dropped (also on unwind).
struct ViewGuard<'a, T: Element> {
    win: &'a LamellarWindow<T>,
    mutable: bool,
}

impl<T: Element> Drop for ViewGuard<'_, T> {
    fn drop(&mut self) {
        let mut v = self.win.views();
        if self.mutable {
            v.mutable = false;
        } else {
            v.shared -= 1;
        }
    }
}

impl<T: Element> LamellarWindow<T> {
    /// Collective: allocates the region and the per-PE state. `lens` holds
    /// every PE's length (gathered by the caller).
    pub(crate) fn create(comm: LamellarComm, lens: Vec<usize>) -> Result<Self> {
        let world = comm.world();
        let rank = world.my_pe();
        let size = world.num_pes();
        debug_assert_eq!(lens.len(), size);
        // Lamellar regions cannot be empty: at least one element per PE.
        let alloc_len = lens.iter().copied().max().unwrap_or(0).max(1);
        let region = world
            .try_alloc_shared_mem_region::<T>(alloc_len)
            .block()
            .map_err(|e| {
                Error::Backend(format!("allocating a window of {alloc_len} elements: {e}"))
            })?;
        // SAFETY: the region is new and no other PE accesses it before the
        // barrier at the end of this function; the slice is this PE's part.
        let base = unsafe {
            let local = region.as_mut_slice();
            local.fill(T::ZERO);
            local.as_mut_ptr()
        };
        // SAFETY: `base` points to this PE's `alloc_len >= lens[rank]`
        // zeroed, aligned `T`s (the region was allocated with `T`'s
        // alignment), kept alive by the region clone stored in the state.
        let state = unsafe {
            TargetState::new(
                base as *mut u8,
                lens[rank],
                T::KIND,
                Box::new(region.clone()),
            )
        };
        let state = Darc::new(world, state)
            .block()
            .map_err(|e| Error::Backend(format!("creating the window state: {e:?}")))?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        world.barrier();
        Ok(LamellarWindow {
            rank,
            layout: WindowLayout::new(lens),
            epochs: EpochTracker::new(size),
            region,
            state,
            pending: Mutex::new((0..size).map(|_| Vec::new()).collect()),
            views: Mutex::new(Views::default()),
            comm,
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Vec<LamellarTask<()>>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the accumulates in flight to `target`.
    fn complete(&self, target: usize) {
        let tasks = std::mem::take(&mut self.pending()[target]);
        for t in tasks {
            t.block();
        }
    }

    /// Waits for the accumulates in flight to every target.
    fn complete_all(&self) {
        let all: Vec<_> = self.pending().iter_mut().map(std::mem::take).collect();
        for t in all.into_iter().flatten() {
            t.block();
        }
    }

    /// Takes the runtime lock on `target` (blocking).
    fn acquire(&self, target: usize, kind: LockKind) {
        let exclusive = kind == LockKind::Exclusive;
        if target == self.rank {
            acquire(|| self.state.try_lock(exclusive));
        } else {
            let world = self.comm.world();
            acquire(|| {
                let am = DistarrayLockAm {
                    state: self.state.clone(),
                    exclusive,
                };
                world.exec_am_pe(target, am).block()
            });
        }
    }

    /// Releases the runtime lock on `target`.
    fn release(&self, target: usize, kind: LockKind) {
        let exclusive = kind == LockKind::Exclusive;
        if target == self.rank {
            self.state.release(exclusive);
        } else {
            let am = DistarrayUnlockAm {
                state: self.state.clone(),
                exclusive,
            };
            self.comm.world().exec_am_pe(target, am).block();
        }
    }

    /// Pointer to this PE's part (valid for `self.local_len()` elements).
    fn local_ptr(&self) -> *mut T {
        // SAFETY: only the address is taken; no reference is created.
        unsafe { self.region.as_mut_slice().as_mut_ptr() }
    }

    fn views(&self) -> std::sync::MutexGuard<'_, Views> {
        self.views.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(Conflict)` if a local view is alive that an access to the own
    /// part would race with (any view for a write, a mutable one for a
    /// read).
    fn check_no_view(&self, write: bool) -> Result<()> {
        let v = self.views();
        if v.mutable || (write && v.shared > 0) {
            return Err(Error::Conflict {
                target: self.rank,
                reason: "access to the own part while a local view of it is alive".into(),
            });
        }
        Ok(())
    }

    /// Registers a local view until the returned guard drops.
    fn open_view(&self, mutable: bool) -> Result<ViewGuard<'_, T>> {
        let mut v = self.views();
        if v.mutable || (mutable && v.shared > 0) {
            return Err(Error::Conflict {
                target: self.rank,
                reason: "a local view inside a conflicting local view".into(),
            });
        }
        if mutable {
            v.mutable = true;
        } else {
            v.shared += 1;
        }
        Ok(ViewGuard { win: self, mutable })
    }

    /// The region, for benchmarks comparing with raw Lamellar calls.
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
        self.layout.size()
    }

    fn len_of(&self, target: usize) -> Result<usize> {
        self.layout.len_of(target)
    }

    fn lock(&self, target: usize, kind: LockKind) -> Result<()> {
        self.epochs.begin_lock(target, kind)?;
        self.acquire(target, kind);
        Ok(())
    }

    fn unlock(&self, target: usize) -> Result<()> {
        if target == self.rank && self.epochs.lock_kind(target)?.is_some() {
            self.check_no_view(true)?;
        }
        let kind = self.epochs.end_lock(target)?;
        self.complete(target);
        self.release(target, kind);
        Ok(())
    }

    fn flush(&self, target: usize) -> Result<()> {
        self.epochs.check_locked(target)?;
        self.complete(target);
        Ok(())
    }

    fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        self.epochs.check_access(target)?;
        self.layout.check(target, offset, dst.len())?;
        if dst.is_empty() {
            return Ok(());
        }
        if target == self.rank {
            self.check_no_view(false)?;
            // SAFETY: `offset + dst.len() <= local_len()` (checked above),
            // and the local part holds that many initialised `T`s; `dst` is
            // a separate buffer, so the ranges do not overlap. Concurrent
            // writers are excluded by the epoch the caller holds (a race
            // with a conflicting remote put is the caller's error, as in
            // MPI).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.local_ptr().add(offset),
                    dst.as_mut_ptr(),
                    dst.len(),
                );
            }
        } else if dst.len() == 1 {
            // SAFETY: in bounds of `target`'s part (checked above, and the
            // region holds max(len) elements per PE); `block` returns once
            // the value has arrived.
            dst[0] = unsafe { self.region.get(target, offset).block() };
        } else {
            // SAFETY: as above, for `dst.len()` elements.
            let data = unsafe { self.region.get_buffer(target, offset, dst.len()).block() };
            dst.copy_from_slice(&data);
        }
        Ok(())
    }

    fn put(&self, target: usize, offset: usize, src: &[T]) -> Result<()> {
        self.epochs.check_access(target)?;
        self.layout.check(target, offset, src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        if target == self.rank {
            self.check_no_view(true)?;
            // SAFETY: in bounds of the local part (checked above). No local
            // view is alive (checked), so no reference into the part exists;
            // `src` is only read and `copy` tolerates overlap anyway.
            unsafe {
                std::ptr::copy(src.as_ptr(), self.local_ptr().add(offset), src.len());
            }
        } else if src.len() == 1 {
            // SAFETY: in bounds of `target`'s part (checked above); `block`
            // returns once the transfer is complete.
            unsafe { self.region.put(target, offset, src[0]).block() };
        } else {
            // SAFETY: as above; the source is copied by Lamellar.
            unsafe { self.region.put_buffer(target, offset, src).block() };
        }
        Ok(())
    }

    fn accumulate(&self, target: usize, offset: usize, src: &[T], op: AccumulateOp) -> Result<()> {
        self.epochs.check_access(target)?;
        self.layout.check(target, offset, src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        let bytes: &[u8] = bytemuck::cast_slice(src);
        if target == self.rank {
            self.check_no_view(true)?;
            self.state.accumulate(offset, op, bytes);
        } else {
            let am = DistarrayAccumulateAm {
                state: self.state.clone(),
                offset,
                op: op_code(op),
                data: bytes.to_vec(),
            };
            let task = self.comm.world().exec_am_pe(target, am).spawn();
            self.pending()[target].push(task);
        }
        Ok(())
    }

    fn fence(&self) -> Result<()> {
        self.epochs.fence()?;
        self.check_no_view(true)?;
        self.complete_all();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.comm.world().barrier();
        Ok(())
    }

    fn fence_end(&self) -> Result<()> {
        self.check_no_view(true)?;
        self.epochs.fence_end()?;
        self.complete_all();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.comm.world().barrier();
        Ok(())
    }

    fn with_local<R>(&self, f: impl FnOnce(&[T]) -> R) -> Result<R> {
        self.epochs.check_local_read(self.rank)?;
        let _view = self.open_view(false)?;
        // SAFETY: the local part holds `local_len()` initialised `T`s. The
        // caller holds a lock on this PE (or a fence epoch) that cannot end
        // while the view is registered, and this PE's own writes to the part
        // fail meanwhile; remote writes during a read view are forbidden by
        // the contract (as in MPI).
        let slice =
            unsafe { std::slice::from_raw_parts(self.local_ptr() as *const T, self.local_len()) };
        Ok(f(slice))
    }

    fn with_local_mut<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        self.epochs.check_local_write(self.rank)?;
        let _view = self.open_view(true)?;
        // SAFETY: the local part holds `local_len()` initialised `T`s. This
        // PE holds the exclusive lock on itself, so no other PE accesses the
        // part, and the lock cannot be released while the view is
        // registered (`unlock` fails with `Conflict`); this PE's own RMA
        // calls on the part fail too. The slice is the only access.
        let slice = unsafe { std::slice::from_raw_parts_mut(self.local_ptr(), self.local_len()) };
        Ok(f(slice))
    }
}

impl<T: Element> Drop for LamellarWindow<T> {
    fn drop(&mut self) {
        self.complete_all();
        for t in self.epochs.locked_targets() {
            if let Ok(kind) = self.epochs.end_lock(t) {
                self.release(t, kind);
            }
        }
    }
}
