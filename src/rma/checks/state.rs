//! [`WindowState`]: the one object that approves every operation on one
//! rank's handle of a window, on every backend.

use super::epochs::{EpochKind, EpochTracker, Locking, Pin, Unlocking};
use super::views::{AccessGuard, LocalViews, ViewGuard};
use super::{check_rank, WindowLayout};
use crate::error::{Error, Result};
use crate::rma::handles::HandleSlot;
use crate::rma::raw::LockKind;
use std::sync::Arc;

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
///
/// # Threads of one rank
///
/// Window handles are `Send + Sync`: several threads of a rank may use one
/// handle. Every approval returns a guard that *pins* the epoch it relies on
/// until the operation is complete (the backend holds it across its runtime
/// call): a lock cannot be released, nor a fence epoch closed, under an
/// operation or a view of another thread; an RMA operation is approved
/// only once the runtime epoch exists (after the runtime lock or fence
/// returned), and a lock and a fence epoch never overlap (see
/// [`EpochTracker`]).
///
/// # Non-blocking handles
///
/// Before it approves a lock (also a one-shot epoch) or a fence, it
/// completes this rank's non-blocking handle in flight on the communicator
/// ([`HandleSlot::settle`]): a rank never waits for a lock or a fence while
/// its handle holds locks, which is what keeps handles out of deadlocks
/// (see [`crate::pending`]).
#[derive(Debug)]
pub struct WindowState {
    me: usize,
    /// The window's serial number on its communicator (the same on every
    /// rank), carried by its fences' votes.
    serial: u64,
    /// Fence calls on this handle so far (every rank calls them in the
    /// same order), carried by the votes too.
    fences: std::sync::atomic::AtomicU64,
    layout: WindowLayout,
    epochs: EpochTracker,
    views: LocalViews,
    handles: Arc<HandleSlot>,
}

/// An approved RMA operation: hold it until the operation is complete (the
/// pin keeps its epoch from ending; for the own part, the access guard
/// keeps conflicting local views out).
#[derive(Debug)]
#[must_use = "hold the approval until the operation is complete"]
pub struct Approval<'a> {
    _pin: Pin<'a>,
    _own: Option<AccessGuard<'a>>,
}

/// An approved local view: the lock on the own part is pinned and the view
/// registered until it drops.
#[derive(Debug)]
#[must_use = "the view is approved only while the guard lives"]
pub struct ViewApproval<'a> {
    // dropped in order: the view registration, then the pin on the lock
    _view: ViewGuard<'a>,
    _pin: Pin<'a>,
}

/// An approved one-shot epoch (lock, one operation, unlock in one call):
/// the target belongs to the call until the guard drops, after the runtime
/// unlock.
#[derive(Debug)]
#[must_use = "drop it after the runtime unlock"]
pub struct OneShot<'a> {
    // the own-part access guard is released before the target
    _own: Option<AccessGuard<'a>>,
    _target: Unlocking<'a>,
}

impl WindowState {
    /// The state of rank `me`'s handle on a window whose parts have the
    /// lengths `lens` (index = rank), on a communicator whose
    /// [`HandleSlot`] for this rank is `handles`
    /// ([`OneSidedComm::handle_slot`](crate::OneSidedComm::handle_slot)).
    /// Error: `me` out of range.
    pub fn new(me: usize, lens: Vec<usize>, handles: Arc<HandleSlot>) -> Result<Self> {
        check_rank(me, lens.len())?;
        let size = lens.len();
        Ok(WindowState {
            me,
            serial: handles.next_window_serial(),
            fences: std::sync::atomic::AtomicU64::new(0),
            layout: WindowLayout::new(lens),
            epochs: EpochTracker::new(size),
            views: LocalViews::default(),
            handles,
        })
    }

    /// This rank's slot for non-blocking handles on the communicator.
    #[inline]
    pub fn handles(&self) -> &Arc<HandleSlot> {
        &self.handles
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

    /// Approves a lock on `target`. The backend then takes its runtime lock
    /// and calls [`Locking::granted`]; if the runtime lock fails (or
    /// panics), dropping the guard forgets the lock.
    ///
    /// First completes this rank's non-blocking handle in flight, if any
    /// (the lock may wait for other ranks).
    #[inline]
    pub fn lock(&self, target: usize, kind: LockKind) -> Result<Locking<'_>> {
        self.handles.settle();
        self.epochs.begin_lock(target, kind)
    }

    /// Approves the unlock of `target`; the backend runs its runtime unlock
    /// while holding the guard ([`Unlocking::kind`] says how it was locked).
    /// Refused while an operation or a local view relies on the lock.
    #[inline]
    pub fn unlock(&self, target: usize) -> Result<Unlocking<'_>> {
        self.epochs.begin_unlock(target)
    }

    /// Approves a `flush` of `target` (it must be locked); hold the pin
    /// across the runtime flush.
    #[inline]
    pub fn flush(&self, target: usize) -> Result<Pin<'_>> {
        self.epochs.pin_lock(target).map(|(_, pin)| pin)
    }

    /// Approves one RMA operation on `offset..offset + len` of `target`.
    #[inline]
    pub fn approve(
        &self,
        target: usize,
        access: Access,
        offset: usize,
        len: usize,
    ) -> Result<Approval<'_>> {
        self.layout.check(target, offset, len)?;
        self.approve_checked(target, access)
    }

    /// Approves a batch of runs `(offset, len)` of `target` moving
    /// `buf_len` elements: every run is checked before the first is issued.
    pub fn approve_runs(
        &self,
        target: usize,
        access: Access,
        runs: &[(usize, usize)],
        buf_len: usize,
    ) -> Result<Approval<'_>> {
        self.layout.check_runs(target, runs, buf_len)?;
        self.approve_checked(target, access)
    }

    #[inline]
    fn approve_checked(&self, target: usize, access: Access) -> Result<Approval<'_>> {
        let (kind, pin) = self.epochs.pin(target)?;
        if access == Access::Write && kind == EpochKind::Lock(LockKind::Shared) {
            return Err(shared_write_error(target));
        }
        let own = self.own_access(target, access)?;
        Ok(Approval {
            _pin: pin,
            _own: own,
        })
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

    /// Approves a one-shot epoch (lock, one operation, unlock in one call):
    /// the target belongs to this call until the guard drops, which the
    /// backend lets happen after its runtime unlock (also after an error).
    /// Like [`WindowState::lock`], first completes this rank's handle in
    /// flight.
    #[inline]
    pub fn begin_one_shot(
        &self,
        target: usize,
        kind: LockKind,
        access: Access,
        offset: usize,
        len: usize,
    ) -> Result<OneShot<'_>> {
        self.handles.settle();
        self.layout.check(target, offset, len)?;
        if access == Access::Write && kind == LockKind::Shared {
            return Err(shared_write_error(target));
        }
        let target_guard = self.epochs.begin_one_shot(target, kind)?;
        let own = self.own_access(target, access)?;
        Ok(OneShot {
            _own: own,
            _target: target_guard,
        })
    }

    /// Collective `fence` (or `fence_end` when `end`): this rank's checks,
    /// the vote, then the backend's `runtime` step; see
    /// [`EpochTracker::fence_collectively`]. Operations of the fence epoch
    /// are approved only once `runtime` has opened it, and none after
    /// `fence_end` began. First completes this rank's handle in flight (a
    /// fence waits for every rank).
    ///
    /// The vote (`vote`: the backend's allgather of one word per rank)
    /// carries, besides whether this rank's checks passed, which window,
    /// which of its fence calls and which step (`fence` or `fence_end`)
    /// this rank is in: unless every rank is in the same step of the same
    /// fence of the same window, every rank returns
    /// [`Error::EpochMismatch`] and nothing changes, so ranks that called
    /// different fences (or a fence against another collective) never go
    /// on into epochs the others did not open.
    pub fn fence_collectively(
        &self,
        end: bool,
        vote: impl FnOnce(u64) -> Result<Vec<u64>>,
        runtime: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.handles.settle();
        let seq = self
            .fences
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // bit 0: this rank's checks passed; bit 1: fence_end; then the
        // fence's number (32 bits) and the window's serial number
        let step = (self.serial << 34) | ((seq & 0xFFFF_FFFF) << 2) | (u64::from(end) << 1);
        self.epochs.fence_collectively(
            end,
            |ok| {
                let tokens = vote(step | u64::from(ok))?;
                if let Some(r) = tokens.iter().position(|&t| t & !1 != step) {
                    // every rank of the vote sees the mismatch and takes
                    // its call back: the counts stay in step
                    self.fences
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(Error::EpochMismatch(format!(
                        "rank {r} is not in the same {} of this window as rank {} (ranks must \
                         call fence / fence_end on the same window in the same order)",
                        if end { "fence_end" } else { "fence" },
                        self.me
                    )));
                }
                Ok(tokens.iter().map(|&t| t & 1 == 1).collect())
            },
            runtime,
        )
    }

    /// Whether a fence epoch is open (or opening / closing) on this handle.
    #[inline]
    pub fn fence_is_open(&self) -> bool {
        self.epochs.fence_is_open()
    }

    /// Approves a local view of the own part and registers it until the
    /// guard drops: a lock on the own part (exclusive for `mutable`), pinned
    /// for the view's life; no fence epoch; no conflicting view or own RMA
    /// in progress.
    pub fn open_view(&self, mutable: bool) -> Result<ViewApproval<'_>> {
        let me = self.me;
        if self.epochs.fence_is_open() {
            return Err(Error::EpochMismatch(format!(
                "local view of rank {me} in a fence epoch, where other ranks may write the part \
                 without a lock: call fence_end and lock the own part first"
            )));
        }
        let (kind, pin) = self.epochs.pin_lock(me).map_err(|e| match e {
            Error::NotLocked { target } => Error::NoEpoch { target },
            e => e,
        })?;
        if mutable && kind == LockKind::Shared {
            return Err(Error::EpochMismatch(format!(
                "local write access on rank {me} needs an exclusive lock, not a shared one"
            )));
        }
        let view = self.views.open(me, mutable)?;
        Ok(ViewApproval {
            _view: view,
            _pin: pin,
        })
    }

    /// Forgets every lock and the fence epoch of this handle, returning the
    /// locks as `(target, kind)` and whether a fence epoch was open: for a
    /// backend's `Drop` (exclusive access), which must release them in its
    /// runtime.
    pub fn release_all(&mut self) -> (Vec<(usize, LockKind)>, bool) {
        self.epochs.release_all()
    }
}

fn shared_write_error(target: usize) -> Error {
    Error::EpochMismatch(format!(
        "put/accumulate on rank {target} under a shared lock: writes need an exclusive lock (or \
         a fence epoch), since a shared lock admits the owner's local views"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(s: &WindowState, t: usize, kind: LockKind) {
        s.lock(t, kind).unwrap().granted();
    }

    #[test]
    fn a_view_pins_the_own_lock() {
        let s = WindowState::new(0, vec![4], Arc::default()).unwrap();
        locked(&s, 0, LockKind::Exclusive);
        let v = s.open_view(true).unwrap();
        assert!(matches!(s.unlock(0), Err(Error::Conflict { .. })));
        drop(v);
        drop(s.unlock(0).unwrap());
        assert!(matches!(s.open_view(false), Err(Error::NoEpoch { .. })));
    }

    #[test]
    fn writes_need_an_exclusive_lock() {
        let s = WindowState::new(0, vec![4, 4], Arc::default()).unwrap();
        locked(&s, 1, LockKind::Shared);
        assert!(s.approve(1, Access::Read, 0, 4).is_ok());
        assert!(matches!(
            s.approve(1, Access::Write, 0, 1),
            Err(Error::EpochMismatch(_))
        ));
        assert!(matches!(
            s.begin_one_shot(0, LockKind::Shared, Access::Write, 0, 1),
            Err(Error::EpochMismatch(_))
        ));
    }

    #[test]
    fn views_and_unlocks_race_safely_across_threads() {
        // one thread opens and closes mutable views, another tries to
        // unlock: the unlock must never succeed while a view is alive
        let s = WindowState::new(0, vec![1], Arc::default()).unwrap();
        locked(&s, 0, LockKind::Exclusive);
        let alive = std::sync::atomic::AtomicBool::new(false);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                for _ in 0..20_000 {
                    if let Ok(v) = s.open_view(true) {
                        alive.store(true, std::sync::atomic::Ordering::SeqCst);
                        std::hint::spin_loop();
                        alive.store(false, std::sync::atomic::Ordering::SeqCst);
                        drop(v);
                    }
                }
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            sc.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(u) = s.unlock(0) {
                        assert!(
                            !alive.load(std::sync::atomic::Ordering::SeqCst),
                            "unlocked under a live view"
                        );
                        drop(u);
                        locked(&s, 0, LockKind::Exclusive);
                    }
                }
            });
        });
    }
}
