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
//! * Every operation first runs the backend-independent checks
//!   ([`EpochTracker`], [`WindowLayout`]), so misuse gives the same `Err`
//!   as on the other backends, before anything is sent.
//!
//! Dropping a window releases the locks this PE still holds and hands its
//! regions back to the communicator, which reuses them for a later window
//! once every PE has dropped this one (see `RegionCache` in `comm.rs`), or
//! releases them; Lamellar's distributed reference count frees the memory
//! once no PE holds a handle. Drop does not wait for the other PEs, so an
//! early drop on one PE cannot hang the rest.

use std::sync::Mutex;

use distarray::checks::{EpochTracker, LocalViews, ViewGuard, WindowLayout};
use distarray::{AccumulateOp, Element, Error, LockKind, OneSidedComm, Result, Window};
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
    layout: WindowLayout,
    epochs: EpochTracker,
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
    /// Local views alive (`with_local` / `with_local_mut`).
    views: LocalViews,
}

impl<T: Element> LamellarWindow<T> {
    /// Collective: sets up a window over `regions` (new or reused, the same
    /// on every PE). `lens` holds every PE's length.
    pub(crate) fn create(comm: LamellarComm, lens: Vec<usize>, regions: Regions) -> Result<Self> {
        let rank = comm.rank();
        let size = comm.size();
        debug_assert_eq!(lens.len(), size);
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
            layout: WindowLayout::new(lens),
            epochs: EpochTracker::new(size),
            region,
            ctl: Ctl::new(regions.ctl.clone()),
            views: LocalViews::default(),
            regions: Some(regions),
            comm,
        })
    }

    /// Pointer to this PE's part (valid for `self.local_len()` elements
    /// while the window lives).
    fn local_ptr(&self) -> *mut T {
        self.local as *mut T
    }

    /// `Err(Conflict)` if a local view is alive that an access to the own
    /// part would race with (any view for a write, a mutable one for a
    /// read).
    fn check_no_view(&self, write: bool) -> Result<()> {
        self.views.check_access(self.rank, write)
    }

    /// Registers a local view until the returned guard drops.
    fn open_view(&self, mutable: bool) -> Result<ViewGuard<'_>> {
        self.views.open(self.rank, mutable)
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
        let views = self.check_no_view(true);
        let voted = self.epochs.fence_collectively(end, |ok| {
            let all = self.comm.allgather(&[u8::from(ok && views.is_ok())])?;
            Ok(all.iter().map(|v| v[0] == 1).collect())
        });
        views?;
        voted
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
        self.layout.size()
    }

    fn len_of(&self, target: usize) -> Result<usize> {
        self.layout.len_of(target)
    }

    fn lock(&self, target: usize, kind: LockKind) -> Result<()> {
        self.epochs.begin_lock(target, kind)?;
        self.ctl.lock(target, kind == LockKind::Exclusive, &|| {
            self.comm.progress()
        });
        Ok(())
    }

    fn unlock(&self, target: usize) -> Result<()> {
        if target == self.rank && self.epochs.lock_kind(target)?.is_some() {
            // The lock must outlive every local view it protects.
            self.check_no_view(true)?;
        }
        let kind = self.epochs.end_lock(target)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.ctl.unlock(target, kind == LockKind::Exclusive, &|| {
            self.comm.progress()
        });
        Ok(())
    }

    fn flush(&self, target: usize) -> Result<()> {
        // Operations complete when they return.
        self.epochs.check_locked(target)?;
        Ok(())
    }

    fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        self.epochs.check_access(target)?;
        self.layout.check(target, offset, dst.len())?;
        if target == self.rank {
            self.check_no_view(false)?;
        }
        self.read(target, offset, dst);
        Ok(())
    }

    fn put(&self, target: usize, offset: usize, src: &[T]) -> Result<()> {
        self.epochs.check_access(target)?;
        self.layout.check(target, offset, src.len())?;
        if target == self.rank {
            self.check_no_view(true)?;
        }
        self.write(target, offset, src);
        Ok(())
    }

    fn accumulate(&self, target: usize, offset: usize, src: &[T], op: AccumulateOp) -> Result<()> {
        self.epochs.check_access(target)?;
        self.layout.check(target, offset, src.len())?;
        if target == self.rank {
            self.check_no_view(true)?;
        }
        if src.is_empty() {
            return Ok(());
        }
        if op == AccumulateOp::Replace && src.len() == 1 {
            // A single-element replace is one RDMA write: atomic as it is.
            self.ctl
                .with_acc_guard(target, &|| self.comm.progress(), || {
                    self.write(target, offset, src)
                });
            return Ok(());
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
        Ok(())
    }

    fn fence(&self) -> Result<()> {
        self.fence_vote(false)
    }

    fn fence_end(&self) -> Result<()> {
        self.fence_vote(true)
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
        // Release the locks this PE still holds (an early return or `?`
        // inside an epoch) so that no other PE waits for them forever.
        for t in self.epochs.locked_targets() {
            if let Ok(kind) = self.epochs.end_lock(t) {
                self.ctl
                    .unlock(t, kind == LockKind::Exclusive, &|| self.comm.progress());
            }
        }
        if let Some(regions) = self.regions.take() {
            self.comm.recycle(regions);
        }
    }
}
