//! Backend-independent validation that every window runs before it touches
//! memory: rank and bounds checks ([`WindowLayout`]) and epoch bookkeeping
//! ([`EpochTracker`]).
//!
//! Backends call these first and only then their runtime, so the same misuse
//! gives the same [`Error`] everywhere — and never reaches MPI, where it
//! would be undefined behaviour.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::comm::LockKind;
use crate::error::{Error, Result};

/// The lengths of every rank's part of one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowLayout {
    lens: Vec<usize>,
}

impl WindowLayout {
    /// A layout from the per-rank lengths (index = rank).
    pub fn new(lens: Vec<usize>) -> Self {
        WindowLayout { lens }
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.lens.len()
    }

    /// Length of `target`'s part.
    #[inline]
    pub fn len_of(&self, target: usize) -> Result<usize> {
        check_rank(target, self.size())?;
        Ok(self.lens[target])
    }

    /// Checks that `offset..offset + len` lies in `target`'s part.
    #[inline]
    pub fn check(&self, target: usize, offset: usize, len: usize) -> Result<()> {
        let window_len = self.len_of(target)?;
        match offset.checked_add(len) {
            Some(end) if end <= window_len => Ok(()),
            _ => Err(Error::OutOfBounds {
                target,
                offset,
                len,
                window_len,
            }),
        }
    }

    /// Checks every run `(offset, len)` and that their total is `buf_len`.
    pub fn check_runs(&self, target: usize, runs: &[(usize, usize)], buf_len: usize) -> Result<()> {
        check_runs_len(runs, buf_len)?;
        runs.iter()
            .try_for_each(|&(offset, len)| self.check(target, offset, len))
    }
}

/// Checks `rank < size`.
#[inline]
pub fn check_rank(rank: usize, size: usize) -> Result<()> {
    if rank < size {
        Ok(())
    } else {
        Err(Error::RankOutOfRange { rank, size })
    }
}

/// Checks that a buffer of `buf_len` elements matches the runs' total length.
pub fn check_runs_len(runs: &[(usize, usize)], buf_len: usize) -> Result<()> {
    let total = runs.iter().try_fold(0usize, |a, r| a.checked_add(r.1));
    if total != Some(buf_len) {
        let total = total.unwrap_or(usize::MAX);
        return Err(Error::ShapeMismatch {
            expected: vec![total],
            found: vec![buf_len],
        });
    }
    Ok(())
}

const UNLOCKED: u8 = 0;
const SHARED: u8 = 1;
const EXCLUSIVE: u8 = 2;

fn kind_code(kind: LockKind) -> u8 {
    match kind {
        LockKind::Shared => SHARED,
        LockKind::Exclusive => EXCLUSIVE,
    }
}

fn code_kind(code: u8) -> Option<LockKind> {
    match code {
        SHARED => Some(LockKind::Shared),
        EXCLUSIVE => Some(LockKind::Exclusive),
        _ => None,
    }
}

/// One rank's epoch bookkeeping for one window: which targets it has locked
/// (and how), and whether a fence epoch is open.
///
/// Nested epochs on *different* targets are accepted; a second lock on the
/// same target, an unlock without a lock and mixing locks with fences are
/// rejected.
///
/// It sits on the hot path of every RMA call (an element `get` checks it
/// three times), so it is lock-free: one atomic per target, claimed with a
/// compare-exchange and released with a swap (two atomic read-modify-writes
/// per epoch); checks are plain loads.
#[derive(Debug)]
pub struct EpochTracker {
    locks: Vec<AtomicU8>,
    fence_open: AtomicBool,
}

impl EpochTracker {
    /// Bookkeeping for a window over `size` ranks, no epoch open.
    pub fn new(size: usize) -> Self {
        EpochTracker {
            locks: (0..size).map(|_| AtomicU8::new(UNLOCKED)).collect(),
            fence_open: AtomicBool::new(false),
        }
    }

    #[inline]
    fn slot(&self, target: usize) -> Result<&AtomicU8> {
        self.locks.get(target).ok_or(Error::RankOutOfRange {
            rank: target,
            size: self.locks.len(),
        })
    }

    /// Records a lock on `target` (call before taking the runtime lock, and
    /// [`EpochTracker::abandon_lock`] if that fails).
    #[inline]
    pub fn begin_lock(&self, target: usize, kind: LockKind) -> Result<()> {
        let slot = self.slot(target)?;
        if self.fence_open.load(Ordering::Acquire) {
            return Err(Error::EpochMismatch(format!(
                "lock on rank {target} while a fence epoch is open (call fence_end first)"
            )));
        }
        slot.compare_exchange(
            UNLOCKED,
            kind_code(kind),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .map_err(|_| Error::AlreadyLocked { target })?;
        Ok(())
    }

    /// Checks what [`EpochTracker::begin_lock`] checks without recording a
    /// lock: for one-shot epochs (lock, one operation, unlock inside one
    /// call), whose backend-level lock is never visible to other calls.
    #[inline]
    pub fn check_can_lock(&self, target: usize) -> Result<()> {
        let slot = self.slot(target)?;
        if self.fence_open.load(Ordering::Acquire) {
            return Err(Error::EpochMismatch(format!(
                "lock on rank {target} while a fence epoch is open (call fence_end first)"
            )));
        }
        if slot.load(Ordering::Acquire) != UNLOCKED {
            return Err(Error::AlreadyLocked { target });
        }
        Ok(())
    }

    /// Forgets a lock recorded by `begin_lock` whose runtime lock failed.
    #[inline]
    pub fn abandon_lock(&self, target: usize) {
        if let Ok(slot) = self.slot(target) {
            slot.store(UNLOCKED, Ordering::Release);
        }
    }

    /// Records the unlock of `target`; returns the kind it was locked with.
    #[inline]
    pub fn end_lock(&self, target: usize) -> Result<LockKind> {
        let slot = self.slot(target)?;
        match code_kind(slot.swap(UNLOCKED, Ordering::AcqRel)) {
            Some(kind) => Ok(kind),
            None => Err(Error::NotLocked { target }),
        }
    }

    /// The lock this rank holds on `target`, if any.
    #[inline]
    pub fn lock_kind(&self, target: usize) -> Result<Option<LockKind>> {
        Ok(code_kind(self.slot(target)?.load(Ordering::Acquire)))
    }

    /// Checks that `target` is locked (for `flush`).
    #[inline]
    pub fn check_locked(&self, target: usize) -> Result<LockKind> {
        self.lock_kind(target)?.ok_or(Error::NotLocked { target })
    }

    /// Checks that an RMA operation on `target` is inside an epoch.
    #[inline]
    pub fn check_access(&self, target: usize) -> Result<()> {
        let locked = self.slot(target)?.load(Ordering::Acquire) != UNLOCKED;
        if locked || self.fence_open.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Error::NoEpoch { target })
        }
    }

    /// Checks that this rank may read its own part: a lock on itself or a
    /// fence epoch. Returns the lock kind (`None` in a fence epoch).
    #[inline]
    pub fn check_local_read(&self, me: usize) -> Result<Option<LockKind>> {
        if self.fence_open.load(Ordering::Acquire) {
            return Ok(None);
        }
        match self.lock_kind(me)? {
            Some(kind) => Ok(Some(kind)),
            None => Err(Error::NoEpoch { target: me }),
        }
    }

    /// Checks that this rank may write its own part: an exclusive lock on
    /// itself.
    #[inline]
    pub fn check_local_write(&self, me: usize) -> Result<()> {
        match self.lock_kind(me)? {
            Some(LockKind::Exclusive) => Ok(()),
            Some(LockKind::Shared) => Err(Error::EpochMismatch(format!(
                "local write access on rank {me} needs an exclusive lock, not a shared one"
            ))),
            None => Err(Error::NoEpoch { target: me }),
        }
    }

    /// Records a `fence`: no locks may be held. Opens the fence epoch.
    pub fn fence(&self) -> Result<()> {
        let held = self.locked_targets().len();
        if held > 0 {
            return Err(Error::EpochMismatch(format!(
                "fence while {held} passive-target lock(s) are held"
            )));
        }
        self.fence_open.store(true, Ordering::Release);
        Ok(())
    }

    /// Records a `fence_end`: a fence epoch must be open.
    pub fn fence_end(&self) -> Result<()> {
        if !self.fence_open.swap(false, Ordering::AcqRel) {
            return Err(Error::EpochMismatch(
                "fence_end without an open fence epoch".into(),
            ));
        }
        Ok(())
    }

    /// Collective `fence` (or `fence_end` when `end`) bookkeeping that keeps
    /// ranks in step: records it locally, then `all_ok` (the backend's
    /// allgather of one flag per rank) tells whether every rank could. If
    /// any could not, every rank returns an error ([`Error::PeerFailed`] on
    /// the ranks whose own check passed) and the tracker is left as before,
    /// so no rank waits in a fence the others skipped.
    pub fn fence_collectively(
        &self,
        end: bool,
        all_ok: impl FnOnce(bool) -> Result<Vec<bool>>,
    ) -> Result<()> {
        let was_open = self.fence_open.load(Ordering::Acquire);
        let local = if end { self.fence_end() } else { self.fence() };
        let flags = all_ok(local.is_ok())?;
        local?;
        if let Some(rank) = flags.iter().position(|ok| !ok) {
            self.fence_open.store(was_open, Ordering::Release);
            return Err(Error::PeerFailed { rank });
        }
        Ok(())
    }

    /// Targets currently locked by this rank (used to release them on drop).
    pub fn locked_targets(&self) -> Vec<usize> {
        self.locks
            .iter()
            .enumerate()
            .filter(|(_, l)| l.load(Ordering::Acquire) != UNLOCKED)
            .map(|(t, _)| t)
            .collect()
    }
}

#[derive(Debug, Default)]
struct ViewCounts {
    shared: usize,
    mutable: bool,
}

/// The local views (`with_local` / `with_local_mut`) a rank has open on its
/// own part of one window, for backends whose RMA to the own part could
/// race with a view: an access or a new view that would conflict with a
/// live view is an [`Error::Conflict`] instead of a data race.
#[derive(Debug, Default)]
pub struct LocalViews {
    counts: Mutex<ViewCounts>,
}

impl LocalViews {
    fn counts(&self) -> MutexGuard<'_, ViewCounts> {
        // Single-field updates: a poisoned mutex still holds consistent data.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that an RMA access of rank `me` to its own part does not race
    /// with a live view: any view excludes a write, a mutable view a read.
    pub fn check_access(&self, me: usize, write: bool) -> Result<()> {
        let v = self.counts();
        if v.mutable || (write && v.shared > 0) {
            return Err(Error::Conflict {
                target: me,
                reason: if write {
                    "write while the owner holds a local view".into()
                } else {
                    "read while the owner holds a mutable local view".into()
                },
            });
        }
        Ok(())
    }

    /// Registers a view of rank `me`'s part until the returned guard drops
    /// (also on unwind). A mutable view excludes every other view.
    pub fn open(&self, me: usize, mutable: bool) -> Result<ViewGuard<'_>> {
        let mut v = self.counts();
        if v.mutable || (mutable && v.shared > 0) {
            return Err(Error::Conflict {
                target: me,
                reason: "a local view inside a conflicting local view".into(),
            });
        }
        if mutable {
            v.mutable = true;
        } else {
            v.shared += 1;
        }
        Ok(ViewGuard {
            views: self,
            mutable,
        })
    }
}

/// A registered local view; unregisters it when dropped.
#[derive(Debug)]
pub struct ViewGuard<'a> {
    views: &'a LocalViews,
    mutable: bool,
}

impl Drop for ViewGuard<'_> {
    fn drop(&mut self) {
        let mut v = self.views.counts();
        if self.mutable {
            v.mutable = false;
        } else {
            v.shared -= 1;
        }
    }
}
