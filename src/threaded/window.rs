//! [`ThreadedWindow`]: one rank's handle on a threaded window, its
//! [`RawWindow`] implementation and the checking mode's records of its
//! accesses.

use std::sync::Arc;

use super::race::{AccessKind, SegShadow};
use super::segment::{Segment, ViewRelease};
use super::world::World;
use crate::checks::run_pieces;
use crate::comm::{AccumulateOp, Element, LockKind};
use crate::error::{Error, Result};
use crate::rma::RawWindow;

/// One rank's handle on a threaded window.
pub struct ThreadedWindow<T: Element> {
    pub(super) world: Arc<World>,
    pub(super) rank: usize,
    pub(super) segments: Vec<Arc<Segment<T>>>,
    /// Checking mode: every part's race-detection shadow.
    pub(super) shadows: Option<Vec<Arc<SegShadow>>>,
}

impl<T: Element> ThreadedWindow<T> {
    /// Checking mode: checks and records an access (see [`race`](super::race)).
    #[inline]
    fn record(&self, target: usize, offset: usize, len: usize, kind: AccessKind) -> Result<()> {
        match (&self.shadows, &self.world.clocks) {
            (Some(sh), Some(c)) => sh[target].access(c, self.rank, offset, len, kind),
            _ => Ok(()),
        }
    }

    /// Checking mode: checks and records an access to several runs.
    fn record_runs(&self, target: usize, runs: &[(usize, usize)], kind: AccessKind) -> Result<()> {
        if self.shadows.is_some() {
            for &(offset, len) in runs {
                self.record(target, offset, len, kind)?;
            }
        }
        Ok(())
    }

    /// Checking mode: the operations of this rank complete at every target
    /// (a fence).
    fn complete_all(&self) {
        if let (Some(sh), Some(c)) = (&self.shadows, &self.world.clocks) {
            for s in sh {
                s.complete(c, self.rank);
            }
        }
    }

    /// Checking mode: records the release of this rank's lock on `target`
    /// (before it is released).
    fn record_release(&self, target: usize, kind: LockKind) {
        if let (Some(sh), Some(c)) = (&self.shadows, &self.world.clocks) {
            sh[target].released(c, self.rank, kind);
        }
    }

    pub(super) fn conflict(target: usize, reason: &str) -> Error {
        Error::Conflict {
            target,
            reason: reason.to_string(),
        }
    }
}

// SAFETY: locks exclude as documented (`acquire`: exclusive excludes every
// other holder, shared excludes an exclusive one); copies stay within the
// ranges given (the checked layer bounds them by the segments' lengths,
// which every rank agreed on); every operation is complete when it returns
// (plain copies under the segment's view lock); the segment's own view
// registration refuses an RMA copy under a live local slice even if a
// caller broke its precondition.
unsafe impl<T: Element> RawWindow<T> for ThreadedWindow<T> {
    unsafe fn lock(&self, target: usize, kind: LockKind) -> Result<()> {
        self.world.point(self.rank);
        self.acquire(target, kind)?;
        if let (Some(sh), Some(c)) = (&self.shadows, &self.world.clocks) {
            sh[target].acquired(c, self.rank, kind);
        }
        Ok(())
    }

    unsafe fn unlock(&self, target: usize, kind: LockKind) -> Result<()> {
        self.world.point(self.rank);
        self.record_release(target, kind);
        self.release_lock(target);
        Ok(())
    }

    unsafe fn flush(&self, target: usize) -> Result<()> {
        self.world.point(self.rank);
        // Operations complete when they return.
        if let (Some(sh), Some(c)) = (&self.shadows, &self.world.clocks) {
            sh[target].complete(c, self.rank);
        }
        Ok(())
    }

    unsafe fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        self.world.point(self.rank);
        self.record(target, offset, dst.len(), AccessKind::Get)?;
        self.read(target, offset, dst)
    }

    unsafe fn write(
        &self,
        target: usize,
        offset: usize,
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        self.world.point(self.rank);
        let kind = op.map_or(AccessKind::Put, AccessKind::Acc);
        self.record(target, offset, src.len(), kind)?;
        self.store(target, offset, src, op)
    }

    unsafe fn get_runs(&self, target: usize, runs: &[(usize, usize)], dst: &mut [T]) -> Result<()> {
        self.world.point(self.rank);
        self.record_runs(target, runs, AccessKind::Get)?;
        self.read_runs(target, runs, dst)
    }

    unsafe fn write_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        self.world.point(self.rank);
        let kind = op.map_or(AccessKind::Put, AccessKind::Acc);
        self.record_runs(target, runs, kind)?;
        run_pieces(runs).try_for_each(|(offset, piece)| self.store(target, offset, &src[piece], op))
    }

    /// Operations complete when they return: the rendezvous (a barrier)
    /// orders them, once this rank's are recorded as complete.
    unsafe fn fence_vote(&self, token: u64) -> Result<Vec<u64>> {
        self.complete_all();
        let all = self.world.rendezvous(self.rank, Arc::new(token))?;
        Ok(all
            .iter()
            .map(|v| v.downcast_ref::<u64>().copied().unwrap_or(u64::MAX))
            .collect())
    }

    unsafe fn fence(&self, _end: bool) -> Result<()> {
        Ok(())
    }

    unsafe fn with_local<R>(&self, mutable: bool, f: impl FnOnce(*mut T, usize) -> R) -> Result<R> {
        self.world.point(self.rank);
        let seg = &self.segments[self.rank];
        let kind = if mutable {
            AccessKind::ViewWrite
        } else {
            AccessKind::ViewRead
        };
        self.record(self.rank, 0, seg.len(), kind)?;
        {
            let mut views = seg.views.write().unwrap_or_else(|e| e.into_inner());
            if views.mut_view || (mutable && views.shared_views > 0) {
                return Err(Self::conflict(
                    self.rank,
                    "local view while a conflicting view is alive",
                ));
            }
            if mutable {
                views.mut_view = true;
            } else {
                views.shared_views += 1;
            }
        }
        // the registration refuses every conflicting RMA copy until it drops
        let _release = ViewRelease { seg, mutable };
        let out = f(seg.ptr(), seg.len());
        self.world.point(self.rank);
        Ok(out)
    }

    /// Releases the locks so that no other rank waits for them forever.
    /// Memory is freed when the last rank's handle drops: there is nothing
    /// collective to wait for.
    unsafe fn release(&self, locks: &[(usize, LockKind)], _fence_open: bool) {
        for &(t, kind) in locks {
            self.record_release(t, kind);
            self.release_lock(t);
        }
    }
}

impl<T: Element> std::fmt::Debug for ThreadedWindow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedWindow")
            .field("rank", &self.rank)
            .field("parts", &self.segments.len())
            .finish()
    }
}
