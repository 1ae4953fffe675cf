//! One rank's part of a threaded window ([`Segment`]): its elements, its
//! passive-target lock and the local views handed out on it, and the RMA
//! copies into and out of it under the view lock (see the
//! [memory model](super#memory-model)).

use std::cell::UnsafeCell;
use std::sync::{Condvar, Mutex, RwLock};

use super::lock::PassiveLock;
use super::window::ThreadedWindow;
use crate::checks::run_pieces;
use crate::comm::{AccumulateOp, Element};
use crate::error::Result;

/// Local views currently handed out on one segment.
#[derive(Default)]
pub(super) struct ViewState {
    pub(super) shared_views: usize,
    pub(super) mut_view: bool,
}

/// One rank's part of a threaded window.
pub(super) struct Segment<T> {
    data: Box<[UnsafeCell<T>]>,
    pub(super) lock: Mutex<PassiveLock>,
    pub(super) lock_cv: Condvar,
    pub(super) views: RwLock<ViewState>,
}

// SAFETY: the elements are only touched (1) by RMA copies, which hold
// `views` (read lock to read, write lock to write) so no two copies race, and
// which fail while a local view excludes them; (2) through slices handed out
// by `with_local` / `with_local_mut`, which first register in `views` under
// its write lock, so no RMA copy that could race with the slice proceeds
// while it lives. `T: Element` is `Send + Sync` plain data.
unsafe impl<T: Element> Sync for Segment<T> {}
// SAFETY: see `Sync`; the segment owns plain-data elements.
unsafe impl<T: Element> Send for Segment<T> {}

impl<T: Element> Segment<T> {
    /// A zeroed segment of `len` elements, or `Err` if the allocator cannot
    /// serve it (instead of aborting the process).
    pub(super) fn new(len: usize) -> std::result::Result<Self, std::collections::TryReserveError> {
        let mut data: Vec<UnsafeCell<T>> = Vec::new();
        data.try_reserve_exact(len)?;
        data.extend((0..len).map(|_| UnsafeCell::new(T::default())));
        Ok(Segment {
            data: data.into_boxed_slice(),
            lock: Mutex::new(PassiveLock::default()),
            lock_cv: Condvar::new(),
            views: RwLock::new(ViewState::default()),
        })
    }

    pub(super) fn len(&self) -> usize {
        self.data.len()
    }

    pub(super) fn ptr(&self) -> *mut T {
        // `UnsafeCell<T>` has the layout of `T`.
        UnsafeCell::raw_get(self.data.as_ptr())
    }
}

impl<T: Element> ThreadedWindow<T> {
    /// Copies `dst.len()` elements of `target` from `offset` (approved).
    pub(super) fn read(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        let seg = &self.segments[target];
        let views = seg.views.read().unwrap_or_else(|e| e.into_inner());
        if views.mut_view {
            return Err(Self::conflict(
                target,
                "read while the owner holds a mutable local view",
            ));
        }
        // SAFETY: `offset + dst.len() <= seg.len()` (approved by the window
        // state). We hold the view read lock and no mutable view exists, so
        // no one writes these elements meanwhile (writers need the write
        // lock); `dst` is a separate `&mut` buffer, so the ranges do not
        // overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(seg.ptr().add(offset), dst.as_mut_ptr(), dst.len());
        }
        Ok(())
    }

    /// Reads `runs` of `target` one after the other into `dst` (approved)
    /// under one hold of the view lock: many short runs (a ghost column)
    /// cost one lock round trip, not one each.
    pub(super) fn read_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        dst: &mut [T],
    ) -> Result<()> {
        let seg = &self.segments[target];
        let views = seg.views.read().unwrap_or_else(|e| e.into_inner());
        if views.mut_view {
            return Err(Self::conflict(
                target,
                "read while the owner holds a mutable local view",
            ));
        }
        for (offset, piece) in run_pieces(runs) {
            let out = &mut dst[piece];
            // SAFETY: as in `read`: every run lies in the segment (approved
            // by the window state, which checked the runs against the
            // target's length and their total against `dst`); we hold the
            // view read lock and no mutable view exists, so nobody writes
            // these elements meanwhile; `dst` is a separate buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(seg.ptr().add(offset), out.as_mut_ptr(), out.len());
            }
        }
        Ok(())
    }

    /// Writes `src` to `target` from `offset`, combined with `op` (approved).
    pub(super) fn store(
        &self,
        target: usize,
        offset: usize,
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        let seg = &self.segments[target];
        let views = seg.views.write().unwrap_or_else(|e| e.into_inner());
        if views.mut_view || views.shared_views > 0 {
            return Err(Self::conflict(
                target,
                "write while the owner holds a local view",
            ));
        }
        let base = seg.ptr();
        match op {
            // SAFETY: in bounds (approved); we hold the view write lock and
            // no local view exists, so nothing else reads or writes the
            // segment meanwhile; `src` is a shared borrow of other memory (no
            // slice of window memory is alive outside a view).
            None => unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(offset), src.len());
            },
            Some(op) => {
                for (i, &v) in src.iter().enumerate() {
                    // SAFETY: `offset + i < seg.len()` (approved); the view
                    // write lock makes this the only access to the segment,
                    // so the read-modify-write is atomic with respect to all
                    // others.
                    unsafe {
                        let p = base.add(offset + i);
                        *p = T::combine(op, *p, v);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Unregisters a local view when dropped (also on unwind).
pub(super) struct ViewRelease<'a, T> {
    pub(super) seg: &'a Segment<T>,
    pub(super) mutable: bool,
}

impl<T> Drop for ViewRelease<'_, T> {
    fn drop(&mut self) {
        let mut views = self.seg.views.write().unwrap_or_else(|e| e.into_inner());
        if self.mutable {
            views.mut_view = false;
        } else {
            views.shared_views -= 1;
        }
    }
}
