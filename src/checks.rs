//! For backend implementors: the validation every window runs before it
//! touches memory. [`WindowState`] is the one object that approves every
//! window operation (lock, unlock, flush, fence, local views, every RMA
//! operation with all its runs) and states the access model that makes safe
//! programs race-free on every backend; it is built from the rank and
//! bounds checks ([`WindowLayout`]), the epoch bookkeeping
//! ([`EpochTracker`]) and the local-view registry ([`LocalViews`]).
//! Window creation is agreed collectively first ([`gather_window_lens`],
//! [`agree_window`]): element type, part sizes in bytes and available
//! memory, so that a bad request fails on every rank before any allocation.
//!
//! Backends call these first and only then their runtime, so the same misuse
//! gives the same [`Error`] everywhere — and never reaches MPI, where it
//! would be undefined behaviour. Applications do not need this module.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::comm::{Element, LockKind, OneSidedComm, Window};
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

/// Checks that accumulate `op` is defined for `T` ([`ElementKind::supports`]:
/// complex numbers have no `Min` / `Max`).
///
/// [`ElementKind::supports`]: crate::ElementKind::supports
#[inline]
pub fn check_op<T: crate::Element>(op: crate::AccumulateOp) -> Result<()> {
    if T::KIND.supports(op) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "accumulate {op:?} is not defined for {:?} elements (complex numbers have no order)",
            T::KIND
        )))
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

/// Checks, before anything is issued, that every run `(offset, len)` lies
/// in `target`'s part of `win` and that the runs' total is `buf_len`: for
/// the default `*_runs` methods of [`Window`], so that a bad
/// run late in a batch is refused before the first run is moved.
pub fn check_runs_up_front<T: Element, W: Window<T> + ?Sized>(
    win: &W,
    target: usize,
    runs: &[(usize, usize)],
    buf_len: usize,
) -> Result<()> {
    check_runs_len(runs, buf_len)?;
    let window_len = win.len_of(target)?;
    for &(offset, len) in runs {
        match offset.checked_add(len) {
            Some(end) if end <= window_len => {}
            _ => {
                return Err(Error::OutOfBounds {
                    target,
                    offset,
                    len,
                    window_len,
                })
            }
        }
    }
    Ok(())
}

/// Bytes of memory the operating system reports as available to new
/// allocations (`MemAvailable` in `/proc/meminfo`), if it can be told.
pub fn available_memory() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `Err(OutOfMemory)` if `bytes` exceed [`available_memory`] (no check
/// where it cannot be told).
pub fn check_memory(what: &str, bytes: u128) -> Result<()> {
    match available_memory() {
        Some(available) if bytes > available => Err(Error::OutOfMemory {
            what: what.to_string(),
            requested: bytes,
            available,
        }),
        _ => Ok(()),
    }
}

/// Checks a window layout every rank will see identically: one entry per
/// rank, and every part's size in bytes fits in `isize` (so every rank
/// reaches the same verdict on it).
pub fn check_window_lens(lens: &[usize], size: usize, elem_size: usize) -> Result<()> {
    if lens.len() != size {
        return Err(Error::InvalidArgument(format!(
            "a window layout needs one length per rank: {} for {}",
            crate::partition::plural(lens.len(), "length"),
            crate::partition::plural(size, "rank")
        )));
    }
    for (rank, &len) in lens.iter().enumerate() {
        let fits = len
            .checked_mul(elem_size)
            .is_some_and(|b| b <= isize::MAX as usize);
        if !fits {
            return Err(Error::InvalidArgument(format!(
                "rank {rank}'s part of {len} elements of {elem_size} bytes is too large to \
                 address (more than isize::MAX bytes)"
            )));
        }
    }
    Ok(())
}

/// Stable code of an element type for cross-rank agreement: kind and size.
fn element_code<T: Element>() -> [u64; 2] {
    [T::KIND as u64 + 1, std::mem::size_of::<T>() as u64]
}

/// Collective (one allgather): every rank's part length for a window of
/// `T`, after checking on every rank — from the same gathered table, so all
/// reach the same verdict — that all ranks use the same element type, every
/// part's bytes fit, and every rank can allocate its part (its
/// [`OneSidedComm::check_allocation`]).
pub fn gather_window_lens<T: Element, C: OneSidedComm>(
    comm: &C,
    local_len: usize,
) -> Result<Vec<usize>> {
    let [kind, size] = element_code::<T>();
    let mut lens_mine = vec![0; comm.size()];
    if let Some(l) = lens_mine.get_mut(comm.rank()) {
        *l = local_len;
    }
    let local_ok = check_window_lens(&[local_len], 1, size as usize)
        .and_then(|_| comm.check_allocation(&lens_mine, size as usize));
    let all = comm.allgather(&[local_len as u64, kind, size, u64::from(local_ok.is_ok())])?;
    let failed = all.iter().position(|v| v[3] == 0);
    // only when some rank failed: every rank learns its reason
    let reason = match failed {
        Some(rank) => Some(crate::epoch::failure_reason(
            comm,
            rank,
            local_ok.as_ref().err(),
        )?),
        None => None,
    };
    local_ok?;
    if let Some(r) = all.iter().position(|v| v[1] != kind || v[2] != size) {
        return Err(Error::InvalidArgument(format!(
            "ranks disagree on the window's element type: rank {} uses {:?} ({size} bytes), \
             rank {r} another type",
            comm.rank(),
            T::KIND
        )));
    }
    if let (Some(rank), Some(reason)) = (failed, reason) {
        return Err(Error::PeerFailed { rank, reason });
    }
    let lens: Vec<usize> = all
        .iter()
        .map(|v| usize::try_from(v[0]).unwrap_or(usize::MAX))
        .collect();
    check_window_lens(&lens, comm.size(), size as usize)?;
    Ok(lens)
}

/// Collective (one vote): checks that every rank passed the same window
/// layout `lens` for the same element type `T` and the same `key` (a
/// fingerprint of what the caller builds, e.g. a partition), and that every
/// rank can allocate its part. `local` carries the caller's own validation:
/// if any rank's is an `Err`, every rank returns one. On `Ok`, the
/// preconditions of [`OneSidedComm::allocate_window`] hold.
pub fn agree_window<T: Element, C: OneSidedComm>(comm: &C, lens: &[usize], key: u64) -> Result<()> {
    agree_window_after::<T, C>(comm, Ok((key, lens)))
}

/// [`agree_window`] with the caller's own validation result: `local` is
/// `Ok((key, lens))`, or the caller's error, which fails the call on every
/// rank.
pub fn agree_window_after<T: Element, C: OneSidedComm>(
    comm: &C,
    local: Result<(u64, &[usize])>,
) -> Result<()> {
    let [kind, size] = element_code::<T>();
    let local = local.and_then(|(key, lens)| {
        check_window_lens(lens, comm.size(), size as usize)?;
        comm.check_allocation(lens, size as usize)?;
        let mut h = std::hash::DefaultHasher::new();
        (key, kind, size, lens).hash(&mut h);
        Ok(h.finish())
    });
    let mine = match &local {
        Ok(fp) => [1, *fp],
        Err(_) => [0, 0],
    };
    let all = comm.allgather(&mine)?;
    if let Some(rank) = all.iter().position(|v| v[0] == 0) {
        // only when some rank failed: every rank learns its reason
        let reason = crate::epoch::failure_reason(comm, rank, local.as_ref().err())?;
        local?;
        return Err(Error::PeerFailed { rank, reason });
    }
    let fp = local?;
    if let Some(r) = all.iter().position(|v| v[1] != fp) {
        return Err(Error::InvalidPartition(format!(
            "ranks disagree on the arguments of this collective call (element type {:?}, part \
             lengths or partition of rank {} differ from rank {r}'s)",
            T::KIND,
            comm.rank()
        )));
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
            return Err(Error::PeerFailed {
                rank,
                // the one way each call fails locally (see `fence` and
                // `fence_end`), so the reason is known without a transfer
                reason: if end {
                    format!("epoch mismatch: fence_end on rank {rank} without an open fence epoch")
                } else {
                    format!(
                        "epoch mismatch: fence on rank {rank} while it held passive-target locks"
                    )
                },
            });
        }
        Ok(())
    }

    /// `true` while a fence epoch is open.
    #[inline]
    pub fn fence_is_open(&self) -> bool {
        self.fence_open.load(Ordering::Acquire)
    }

    /// Closes the fence epoch without the collective protocol (for a
    /// backend's `Drop`); returns whether one was open.
    pub fn close_fence(&self) -> bool {
        self.fence_open.swap(false, Ordering::AcqRel)
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
    /// Read-only local views alive.
    shared: usize,
    /// A mutable local view is alive.
    mutable: bool,
    /// RMA reads of the own part in progress (between approval and return).
    reads: usize,
    /// RMA writes of the own part in progress.
    writes: usize,
}

/// The local views (`with_local` / `with_local_mut`) a rank has open on its
/// own part of one window, and the RMA operations of that rank on its own
/// part that are in progress: a view and an access that could race (any view
/// against a write, a mutable view against anything) never coexist — the
/// later one is an [`Error::Conflict`]. Only accesses of a rank to its *own*
/// part go through here; other ranks are kept out by the locks (see
/// [`WindowState`]).
#[derive(Debug, Default)]
pub struct LocalViews {
    counts: Mutex<ViewCounts>,
}

impl LocalViews {
    fn counts(&self) -> MutexGuard<'_, ViewCounts> {
        // Counter updates only: a poisoned mutex still holds consistent data.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an RMA access of rank `me` to its own part until the
    /// returned guard drops; fails if it would race with a live view.
    pub fn begin_access(&self, me: usize, write: bool) -> Result<AccessGuard<'_>> {
        let mut v = self.counts();
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
        if write {
            v.writes += 1;
        } else {
            v.reads += 1;
        }
        Ok(AccessGuard { views: self, write })
    }

    /// `true` while a local view is alive.
    pub fn any_open(&self) -> bool {
        let v = self.counts();
        v.mutable || v.shared > 0
    }

    /// Registers a view of rank `me`'s part until the returned guard drops
    /// (also on unwind). A mutable view excludes every other view and every
    /// RMA access in progress; a shared one excludes writes.
    pub fn open(&self, me: usize, mutable: bool) -> Result<ViewGuard<'_>> {
        let mut v = self.counts();
        let busy = v.mutable || v.writes > 0 || (mutable && (v.shared > 0 || v.reads > 0));
        if busy {
            return Err(Error::Conflict {
                target: me,
                reason: "a local view that conflicts with another local view or with an RMA \
                         operation of this rank on its own part"
                    .into(),
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

/// A registered RMA access of a rank to its own part; unregisters it when
/// dropped.
#[derive(Debug)]
pub struct AccessGuard<'a> {
    views: &'a LocalViews,
    write: bool,
}

impl Drop for AccessGuard<'_> {
    fn drop(&mut self) {
        let mut v = self.views.counts();
        if self.write {
            v.writes -= 1;
        } else {
            v.reads -= 1;
        }
    }
}

/// What an RMA operation does to the target's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `get`: reads the target.
    Read,
    /// `put` / `accumulate`: writes the target.
    Write,
}

/// The one object that approves every operation on one rank's handle of a
/// window, on every backend: rank and bounds checks ([`WindowLayout`]),
/// epochs ([`EpochTracker`]) and local views ([`LocalViews`]). Backends call
/// it before they touch their runtime and issue nothing it refuses, so all
/// of them enforce the same rules with the same errors.
///
/// # The access model
///
/// Safe code can never write memory that a live `&[T]` / `&mut [T]` local
/// view points to, on any rank:
///
/// * `get` needs a lock (shared or exclusive) on the target, or a fence
///   epoch;
/// * `put` and `accumulate` need an **exclusive** lock on the target, or a
///   fence epoch (a shared lock admits the owner's read-only view);
/// * a read-only local view needs a lock on the own part, a mutable one an
///   exclusive lock; views are refused in fence epochs (where other ranks
///   may write the part without a lock); the lock on the own part cannot
///   be released while a view is alive;
/// * a rank's own RMA on its own part never overlaps a view that it could
///   race with (any view against a write, a mutable view against a read).
///
/// So a remote write and a view of the same part are always separated by
/// the target's lock (or cannot coexist at all, in fence epochs), and every
/// `*_runs` batch is checked whole before its first run is issued.
#[derive(Debug)]
pub struct WindowState {
    me: usize,
    layout: WindowLayout,
    epochs: EpochTracker,
    views: LocalViews,
}

impl WindowState {
    /// The state of rank `me`'s handle on a window whose parts have the
    /// lengths `lens` (index = rank). Error: `me` out of range.
    pub fn new(me: usize, lens: Vec<usize>) -> Result<Self> {
        check_rank(me, lens.len())?;
        let size = lens.len();
        Ok(WindowState {
            me,
            layout: WindowLayout::new(lens),
            epochs: EpochTracker::new(size),
            views: LocalViews::default(),
        })
    }

    /// This rank.
    #[inline]
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of ranks.
    #[inline]
    pub fn size(&self) -> usize {
        self.layout.size()
    }

    /// The lengths of every part.
    #[inline]
    pub fn layout(&self) -> &WindowLayout {
        &self.layout
    }

    /// Length of `target`'s part.
    #[inline]
    pub fn len_of(&self, target: usize) -> Result<usize> {
        self.layout.len_of(target)
    }

    /// Approves and records a lock on `target`. The backend then takes its
    /// runtime lock, and calls [`WindowState::abandon_lock`] if that fails.
    #[inline]
    pub fn lock(&self, target: usize, kind: LockKind) -> Result<()> {
        self.epochs.begin_lock(target, kind)
    }

    /// Forgets a lock approved by [`WindowState::lock`] whose runtime lock
    /// failed.
    #[inline]
    pub fn abandon_lock(&self, target: usize) {
        self.epochs.abandon_lock(target)
    }

    /// Approves and records the unlock of `target`; returns how it was
    /// locked. Refused while a local view relies on the lock (the own part).
    #[inline]
    pub fn unlock(&self, target: usize) -> Result<LockKind> {
        if target == self.me && self.views.any_open() {
            return Err(Error::Conflict {
                target,
                reason: "unlock of the own part while a local view of it is alive".into(),
            });
        }
        self.epochs.end_lock(target)
    }

    /// Approves a `flush` of `target` (it must be locked).
    #[inline]
    pub fn flush(&self, target: usize) -> Result<LockKind> {
        self.epochs.check_locked(target)
    }

    #[inline]
    fn check_epoch(&self, target: usize, access: Access) -> Result<()> {
        match self.epochs.lock_kind(target)? {
            Some(LockKind::Exclusive) => Ok(()),
            Some(LockKind::Shared) if access == Access::Read => Ok(()),
            Some(LockKind::Shared) => Err(shared_write_error(target)),
            None if self.epochs.fence_is_open() => Ok(()),
            None => Err(Error::NoEpoch { target }),
        }
    }

    /// Approves one RMA operation on `offset..offset + len` of `target`.
    /// When `target` is this rank, the returned guard keeps conflicting
    /// local views out until it drops: hold it until the operation is
    /// complete.
    #[inline]
    pub fn approve(
        &self,
        target: usize,
        access: Access,
        offset: usize,
        len: usize,
    ) -> Result<Option<AccessGuard<'_>>> {
        self.check_epoch(target, access)?;
        self.layout.check(target, offset, len)?;
        self.own_access(target, access)
    }

    /// Approves a batch of runs `(offset, len)` of `target` moving
    /// `buf_len` elements: every run is checked before the first is issued.
    pub fn approve_runs(
        &self,
        target: usize,
        access: Access,
        runs: &[(usize, usize)],
        buf_len: usize,
    ) -> Result<Option<AccessGuard<'_>>> {
        self.check_epoch(target, access)?;
        self.layout.check_runs(target, runs, buf_len)?;
        self.own_access(target, access)
    }

    #[inline]
    fn own_access(&self, target: usize, access: Access) -> Result<Option<AccessGuard<'_>>> {
        if target == self.me {
            self.views
                .begin_access(target, access == Access::Write)
                .map(Some)
        } else {
            Ok(None)
        }
    }

    /// Approves a one-shot epoch (lock, one operation, unlock in one call)
    /// and records its lock, so that no other thread of this rank opens a
    /// second epoch on `target` meanwhile. Call [`WindowState::end_one_shot`]
    /// after the runtime unlock (or when the runtime lock failed), and hold
    /// the returned guard (own part only) until then.
    #[inline]
    pub fn begin_one_shot(
        &self,
        target: usize,
        kind: LockKind,
        access: Access,
        offset: usize,
        len: usize,
    ) -> Result<Option<AccessGuard<'_>>> {
        self.layout.check(target, offset, len)?;
        if access == Access::Write && kind == LockKind::Shared {
            return Err(shared_write_error(target));
        }
        self.epochs.begin_lock(target, kind)?;
        self.own_access(target, access)
            .inspect_err(|_| self.epochs.abandon_lock(target))
    }

    /// Ends a one-shot epoch begun by [`WindowState::begin_one_shot`].
    #[inline]
    pub fn end_one_shot(&self, target: usize) {
        self.epochs.abandon_lock(target);
    }

    /// Collective `fence` (or `fence_end` when `end`): see
    /// [`EpochTracker::fence_collectively`].
    pub fn fence_collectively(
        &self,
        end: bool,
        all_ok: impl FnOnce(bool) -> Result<Vec<bool>>,
    ) -> Result<()> {
        self.epochs.fence_collectively(end, all_ok)
    }

    /// Approves a local view of the own part and registers it until the
    /// guard drops: a lock on the own part (exclusive for `mutable`), no
    /// fence epoch, no conflicting view or own RMA in progress.
    pub fn open_view(&self, mutable: bool) -> Result<ViewGuard<'_>> {
        let me = self.me;
        if self.epochs.fence_is_open() {
            return Err(Error::EpochMismatch(format!(
                "local view of rank {me} in a fence epoch, where other ranks may write the part \
                 without a lock: call fence_end and lock the own part first"
            )));
        }
        match self.epochs.lock_kind(me)? {
            None => return Err(Error::NoEpoch { target: me }),
            Some(LockKind::Shared) if mutable => {
                return Err(Error::EpochMismatch(format!(
                    "local write access on rank {me} needs an exclusive lock, not a shared one"
                )))
            }
            Some(_) => {}
        }
        self.views.open(me, mutable)
    }

    /// `true` while a fence epoch is open.
    #[inline]
    pub fn fence_is_open(&self) -> bool {
        self.epochs.fence_is_open()
    }

    /// Forgets every lock and the fence epoch of this handle, returning the
    /// locks as `(target, kind)` and whether a fence epoch was open: for a
    /// backend's `Drop`, which must release them in its runtime.
    pub fn release_all(&self) -> (Vec<(usize, LockKind)>, bool) {
        let locks = self
            .epochs
            .locked_targets()
            .into_iter()
            .filter_map(|t| self.epochs.end_lock(t).ok().map(|k| (t, k)))
            .collect();
        (locks, self.epochs.close_fence())
    }
}

fn shared_write_error(target: usize) -> Error {
    Error::EpochMismatch(format!(
        "put/accumulate on rank {target} under a shared lock: writes need an exclusive lock (or \
         a fence epoch), since a shared lock admits the owner's local views"
    ))
}
