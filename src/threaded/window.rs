//! [`ThreadedWindow`]: one rank's handle on a threaded window, its
//! [`Window`] implementation and the checking mode's records of its
//! accesses.

use std::sync::Arc;

use super::race::{AccessKind, SegShadow};
use super::segment::{Segment, ViewRelease};
use super::world::World;
use crate::checks::{run_pieces, Access, WindowState};
use crate::comm::{AccumulateOp, Element, LockKind, Window};
use crate::error::{Error, Result};

/// One rank's handle on a threaded window.
pub struct ThreadedWindow<T: Element> {
    pub(super) world: Arc<World>,
    pub(super) rank: usize,
    /// Approves every operation (the same rules as every backend).
    pub(super) state: WindowState,
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

    /// Every rank's flag (a barrier).
    fn all_ok(&self, ok: bool) -> Result<Vec<bool>> {
        let all = self.world.exchange(self.rank, Arc::new(ok))?;
        Ok(all
            .iter()
            .map(|v| *v.downcast_ref::<bool>().expect("flag"))
            .collect())
    }

    pub(super) fn conflict(target: usize, reason: &str) -> Error {
        Error::Conflict {
            target,
            reason: reason.to_string(),
        }
    }
}

impl<T: Element> Window<T> for ThreadedWindow<T> {
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
        self.world.point(self.rank);
        let locking = self.state.lock(target, kind)?;
        // if the runtime lock fails, dropping `locking` forgets the lock
        self.acquire(target, kind)?;
        locking.granted();
        if let (Some(sh), Some(c)) = (&self.shadows, &self.world.clocks) {
            sh[target].acquired(c, self.rank, kind);
        }
        Ok(())
    }

    fn unlock(&self, target: usize) -> Result<()> {
        self.world.point(self.rank);
        let unlocking = self.state.unlock(target)?;
        self.record_release(target, unlocking.kind());
        self.release(target);
        Ok(())
    }

    fn flush(&self, target: usize) -> Result<()> {
        self.world.point(self.rank);
        // Operations complete when they return.
        let _pin = self.state.flush(target)?;
        if let (Some(sh), Some(c)) = (&self.shadows, &self.world.clocks) {
            sh[target].complete(c, self.rank);
        }
        Ok(())
    }

    fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        self.world.point(self.rank);
        let _own = self
            .state
            .approve(target, Access::Read, offset, dst.len())?;
        self.record(target, offset, dst.len(), AccessKind::Get)?;
        self.read(target, offset, dst)
    }

    fn put(&self, target: usize, offset: usize, src: &[T]) -> Result<()> {
        self.world.point(self.rank);
        let _own = self
            .state
            .approve(target, Access::Write, offset, src.len())?;
        self.record(target, offset, src.len(), AccessKind::Put)?;
        self.write(target, offset, src, None)
    }

    fn accumulate(&self, target: usize, offset: usize, src: &[T], op: AccumulateOp) -> Result<()> {
        self.world.point(self.rank);
        crate::checks::check_op::<T>(op)?;
        let _own = self
            .state
            .approve(target, Access::Write, offset, src.len())?;
        self.record(target, offset, src.len(), AccessKind::Acc(op))?;
        self.write(target, offset, src, Some(op))
    }

    fn get_runs(&self, target: usize, runs: &[(usize, usize)], dst: &mut [T]) -> Result<()> {
        self.world.point(self.rank);
        let _own = self
            .state
            .approve_runs(target, Access::Read, runs, dst.len())?;
        self.record_runs(target, runs, AccessKind::Get)?;
        self.read_runs(target, runs, dst)
    }

    fn put_runs(&self, target: usize, runs: &[(usize, usize)], src: &[T]) -> Result<()> {
        self.world.point(self.rank);
        let _own = self
            .state
            .approve_runs(target, Access::Write, runs, src.len())?;
        self.record_runs(target, runs, AccessKind::Put)?;
        run_pieces(runs)
            .try_for_each(|(offset, piece)| self.write(target, offset, &src[piece], None))
    }

    fn accumulate_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: AccumulateOp,
    ) -> Result<()> {
        self.world.point(self.rank);
        crate::checks::check_op::<T>(op)?;
        let _own = self
            .state
            .approve_runs(target, Access::Write, runs, src.len())?;
        self.record_runs(target, runs, AccessKind::Acc(op))?;
        run_pieces(runs)
            .try_for_each(|(offset, piece)| self.write(target, offset, &src[piece], Some(op)))
    }

    fn fence(&self) -> Result<()> {
        // Operations complete when they return: the exchange (a barrier)
        // orders them.
        self.complete_all();
        self.state
            .fence_collectively(false, |ok| self.all_ok(ok), || Ok(()))
    }

    fn fence_end(&self) -> Result<()> {
        self.complete_all();
        self.state
            .fence_collectively(true, |ok| self.all_ok(ok), || Ok(()))
    }

    fn with_local<R>(&self, f: impl FnOnce(&[T]) -> R) -> Result<R> {
        self.world.point(self.rank);
        let _view = self.state.open_view(false)?;
        let seg = &self.segments[self.rank];
        self.record(self.rank, 0, seg.len(), AccessKind::ViewRead)?;
        {
            let mut views = seg.views.write().unwrap_or_else(|e| e.into_inner());
            if views.mut_view {
                return Err(Self::conflict(
                    self.rank,
                    "shared view inside a mutable view",
                ));
            }
            views.shared_views += 1;
        }
        let _release = ViewRelease {
            seg,
            mutable: false,
        };
        // SAFETY: the shared view is registered in the segment, so every RMA
        // write to it fails until `_release` drops (after `f` returns or
        // unwinds) — and the window state keeps remote writers out anyway
        // (they need an exclusive lock, and this rank holds a lock on its
        // part that cannot be released while `_view` lives); concurrent
        // readers only read. The pointer covers `seg.len()` initialised
        // elements.
        let slice = unsafe { std::slice::from_raw_parts(seg.ptr() as *const T, seg.len()) };
        let out = f(slice);
        self.world.point(self.rank);
        Ok(out)
    }

    fn with_local_mut<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        self.world.point(self.rank);
        let _view = self.state.open_view(true)?;
        let seg = &self.segments[self.rank];
        self.record(self.rank, 0, seg.len(), AccessKind::ViewWrite)?;
        {
            let mut views = seg.views.write().unwrap_or_else(|e| e.into_inner());
            if views.mut_view || views.shared_views > 0 {
                return Err(Self::conflict(
                    self.rank,
                    "mutable view while another view is alive",
                ));
            }
            views.mut_view = true;
        }
        let _release = ViewRelease { seg, mutable: true };
        // SAFETY: the mutable view is registered, so every RMA access and
        // every other view of this segment fails until `_release` drops (and
        // this rank holds the exclusive lock on it, approved by the window
        // state); the slice is therefore the only access to these
        // `seg.len()` elements.
        let slice = unsafe { std::slice::from_raw_parts_mut(seg.ptr(), seg.len()) };
        let out = f(slice);
        self.world.point(self.rank);
        Ok(out)
    }
}

impl<T: Element> Drop for ThreadedWindow<T> {
    fn drop(&mut self) {
        // Release the locks this rank still holds so that no other rank
        // waits for them forever. Memory is freed when the last rank's
        // handle drops: there is nothing collective to wait for.
        let (locks, _fence) = self.state.release_all();
        for (t, kind) in locks {
            self.record_release(t, kind);
            self.release(t);
        }
    }
}

impl<T: Element> std::fmt::Debug for ThreadedWindow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedWindow")
            .field("rank", &self.rank)
            .field("layout", self.state.layout())
            .finish()
    }
}
