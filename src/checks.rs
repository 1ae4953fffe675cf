//! Backend-independent validation that every window runs before it touches
//! memory: rank and bounds checks ([`WindowLayout`]) and epoch bookkeeping
//! ([`EpochTracker`]).
//!
//! Backends call these first and only then their runtime, so the same misuse
//! gives the same [`Error`] everywhere — and never reaches MPI, where it
//! would be undefined behaviour.

use std::sync::Mutex;

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
    pub fn len_of(&self, target: usize) -> Result<usize> {
        check_rank(target, self.size())?;
        Ok(self.lens[target])
    }

    /// Checks that `offset..offset + len` lies in `target`'s part.
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
pub fn check_rank(rank: usize, size: usize) -> Result<()> {
    if rank < size {
        Ok(())
    } else {
        Err(Error::RankOutOfRange { rank, size })
    }
}

/// Checks that a buffer of `buf_len` elements matches the runs' total length.
pub fn check_runs_len(runs: &[(usize, usize)], buf_len: usize) -> Result<()> {
    let total: usize = runs.iter().map(|r| r.1).sum();
    if total != buf_len {
        return Err(Error::ShapeMismatch {
            expected: vec![total],
            found: vec![buf_len],
        });
    }
    Ok(())
}

#[derive(Debug)]
struct EpochState {
    locks: Vec<Option<LockKind>>,
    held: usize,
    fence_open: bool,
}

/// One rank's epoch bookkeeping for one window: which targets it has locked
/// (and how), and whether a fence epoch is open.
///
/// Nested epochs on *different* targets are accepted; a second lock on the
/// same target, an unlock without a lock and mixing locks with fences are
/// rejected.
#[derive(Debug)]
pub struct EpochTracker {
    state: Mutex<EpochState>,
}

impl EpochTracker {
    /// Bookkeeping for a window over `size` ranks, no epoch open.
    pub fn new(size: usize) -> Self {
        EpochTracker {
            state: Mutex::new(EpochState {
                locks: vec![None; size],
                held: 0,
                fence_open: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, EpochState> {
        // The state is updated in single assignments: a poisoned mutex still
        // holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a lock on `target` (call before taking the runtime lock, and
    /// [`EpochTracker::abandon_lock`] if that fails).
    pub fn begin_lock(&self, target: usize, kind: LockKind) -> Result<()> {
        let mut st = self.state();
        check_rank(target, st.locks.len())?;
        if st.fence_open {
            return Err(Error::EpochMismatch(format!(
                "lock on rank {target} while a fence epoch is open (call fence_end first)"
            )));
        }
        if st.locks[target].is_some() {
            return Err(Error::AlreadyLocked { target });
        }
        st.locks[target] = Some(kind);
        st.held += 1;
        Ok(())
    }

    /// Forgets a lock recorded by `begin_lock` whose runtime lock failed.
    pub fn abandon_lock(&self, target: usize) {
        let mut st = self.state();
        if st.locks[target].take().is_some() {
            st.held -= 1;
        }
    }

    /// Records the unlock of `target`; returns the kind it was locked with.
    pub fn end_lock(&self, target: usize) -> Result<LockKind> {
        let mut st = self.state();
        check_rank(target, st.locks.len())?;
        match st.locks[target].take() {
            Some(kind) => {
                st.held -= 1;
                Ok(kind)
            }
            None => Err(Error::NotLocked { target }),
        }
    }

    /// The lock this rank holds on `target`, if any.
    pub fn lock_kind(&self, target: usize) -> Result<Option<LockKind>> {
        let st = self.state();
        check_rank(target, st.locks.len())?;
        Ok(st.locks[target])
    }

    /// Checks that `target` is locked (for `flush`).
    pub fn check_locked(&self, target: usize) -> Result<LockKind> {
        self.lock_kind(target)?.ok_or(Error::NotLocked { target })
    }

    /// Checks that an RMA operation on `target` is inside an epoch.
    pub fn check_access(&self, target: usize) -> Result<()> {
        let st = self.state();
        check_rank(target, st.locks.len())?;
        if st.fence_open || st.locks[target].is_some() {
            Ok(())
        } else {
            Err(Error::NoEpoch { target })
        }
    }

    /// Checks that this rank may read its own part: a lock on itself or a
    /// fence epoch. Returns the lock kind (`None` in a fence epoch).
    pub fn check_local_read(&self, me: usize) -> Result<Option<LockKind>> {
        let st = self.state();
        if st.fence_open {
            return Ok(None);
        }
        match st.locks[me] {
            Some(kind) => Ok(Some(kind)),
            None => Err(Error::NoEpoch { target: me }),
        }
    }

    /// Checks that this rank may write its own part: an exclusive lock on
    /// itself.
    pub fn check_local_write(&self, me: usize) -> Result<()> {
        let st = self.state();
        match st.locks[me] {
            Some(LockKind::Exclusive) => Ok(()),
            Some(LockKind::Shared) => Err(Error::EpochMismatch(format!(
                "local write access on rank {me} needs an exclusive lock, not a shared one"
            ))),
            None => Err(Error::NoEpoch { target: me }),
        }
    }

    /// Records a `fence`: no locks may be held. Opens the fence epoch.
    pub fn fence(&self) -> Result<()> {
        let mut st = self.state();
        if st.held > 0 {
            return Err(Error::EpochMismatch(format!(
                "fence while {} passive-target lock(s) are held",
                st.held
            )));
        }
        st.fence_open = true;
        Ok(())
    }

    /// Records a `fence_end`: a fence epoch must be open.
    pub fn fence_end(&self) -> Result<()> {
        let mut st = self.state();
        if !st.fence_open {
            return Err(Error::EpochMismatch(
                "fence_end without an open fence epoch".into(),
            ));
        }
        st.fence_open = false;
        Ok(())
    }

    /// Targets currently locked by this rank (used to release them on drop).
    pub fn locked_targets(&self) -> Vec<usize> {
        let st = self.state();
        st.locks
            .iter()
            .enumerate()
            .filter_map(|(t, l)| l.map(|_| t))
            .collect()
    }
}
