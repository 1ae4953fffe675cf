//! [`EpochTracker`]: one rank's epochs on one window, as a state machine
//! that stays consistent when several threads of the rank share the window.
//!
//! Each target has one atomic word: its phase (unlocked, locking, locked,
//! unlocking, or held by a one-shot call), the lock kind, and a count of
//! *pins* — operations and local views in progress that rely on the lock.
//! The fence epoch has one more word of the same shape. Every transition is
//! one compare-exchange on such a word, so:
//!
//! * an RMA operation is approved only while the runtime epoch really
//!   exists (locked, or fence open), and pins it until the operation is
//!   complete: an `unlock` (or `fence_end`) while anything is pinned is
//!   refused, never run underneath it;
//! * a lock and a fence exclude each other: each sets its own word first,
//!   then checks the other (sequentially consistent), and backs out on
//!   conflict, so at least one of two racing threads fails;
//! * a one-shot epoch (`get_locked`, `put_locked`) owns its target's word
//!   for its whole duration; no other call can use, flush or unlock it.
//!
//! The hot path (an element access) costs two compare-exchanges on one
//! word plus one for the pin, all uncontended.

use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Release, SeqCst},
};

use crate::error::{Error, Result};
use crate::rma::raw::LockKind;

// Phase of a target word (bits 0..3) or of the fence word.
const UNLOCKED: u64 = 0;
const LOCKING: u64 = 1;
const LOCKED: u64 = 2;
const UNLOCKING: u64 = 3;
const ONE_SHOT: u64 = 4;
const PHASE: u64 = 0b111;
/// Bit 3: the lock is exclusive.
const EXCL: u64 = 1 << 3;
/// Pins are counted from bit 16.
const PIN: u64 = 1 << 16;

// Fence phases.
const CLOSED: u64 = 0;
const OPENING: u64 = 1;
const OPEN: u64 = 2;
const CLOSING: u64 = 3;

fn kind_bits(kind: LockKind) -> u64 {
    match kind {
        LockKind::Shared => 0,
        LockKind::Exclusive => EXCL,
    }
}

fn word_kind(w: u64) -> LockKind {
    if w & EXCL != 0 {
        LockKind::Exclusive
    } else {
        LockKind::Shared
    }
}

fn pins(w: u64) -> u64 {
    w / PIN
}

fn fence_mix_error(target: usize) -> Error {
    Error::EpochMismatch(format!(
        "lock on rank {target} while a fence epoch is open (call fence_end first)"
    ))
}

/// What a target's word says to an operation that needs an epoch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochKind {
    /// A passive-target lock of this kind.
    Lock(LockKind),
    /// The fence epoch.
    Fence,
}

/// One rank's epoch bookkeeping for one window (see the module docs).
///
/// Nested epochs on *different* targets are accepted; a second lock on the
/// same target, an unlock without a lock, an unlock while operations or
/// views rely on the lock, and mixing locks with fences are rejected.
#[derive(Debug)]
pub struct EpochTracker {
    slots: Vec<AtomicU64>,
    fence: AtomicU64,
}

/// A pin on an epoch (a target's lock or the fence epoch): while it lives,
/// the epoch cannot end. Released on drop.
#[derive(Debug)]
#[must_use = "the epoch is pinned only while the guard lives"]
pub struct Pin<'a> {
    word: &'a AtomicU64,
}

impl Drop for Pin<'_> {
    #[inline]
    fn drop(&mut self) {
        self.word.fetch_sub(PIN, Release);
    }
}

/// A lock being taken: the caller takes its runtime lock and calls
/// [`Locking::granted`]; dropped without that (the runtime lock failed, or
/// a panic), the lock is forgotten again.
#[derive(Debug)]
#[must_use = "call granted() once the runtime lock is held"]
pub struct Locking<'a> {
    word: &'a AtomicU64,
    kind: LockKind,
    done: bool,
}

impl Locking<'_> {
    /// The runtime lock is held: operations on the target may be approved.
    pub fn granted(mut self) {
        self.word.store(LOCKED | kind_bits(self.kind), Release);
        self.done = true;
    }
}

impl Drop for Locking<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.done {
            self.word.store(UNLOCKED, Release);
        }
    }
}

/// An unlock (or the end of a one-shot epoch) in progress: the target can
/// be neither used nor locked again until the caller's runtime unlock has
/// returned and this guard drops.
#[derive(Debug)]
#[must_use = "the target is released when the guard drops, after the runtime unlock"]
pub struct Unlocking<'a> {
    word: &'a AtomicU64,
    kind: LockKind,
}

impl Unlocking<'_> {
    /// The kind the target was locked with.
    pub fn kind(&self) -> LockKind {
        self.kind
    }
}

impl Drop for Unlocking<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release suffices: only the claim of a lock and the start of a
        // fence need sequential consistency (each sets its word, then reads
        // the other's); a stale non-unlocked value only makes a racing
        // fence fail.
        self.word.store(UNLOCKED, Release);
    }
}

/// A fence or fence-end transition in progress (see
/// [`EpochTracker::begin_fence`]).
#[derive(Debug)]
#[must_use = "call done() once the runtime fence epoch is in place"]
pub struct Fencing<'a> {
    tracker: &'a EpochTracker,
    /// The fence phase to go back to if the transition is abandoned.
    before: u64,
    /// The fence phase once the runtime step is done.
    after: u64,
    finished: bool,
}

impl Fencing<'_> {
    /// The runtime fence epoch is in place (opened, continued or closed).
    pub fn done(mut self) {
        self.tracker.fence.store(self.after, SeqCst);
        self.finished = true;
    }
}

impl Drop for Fencing<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.finished {
            self.tracker.fence.store(self.before, SeqCst);
        }
    }
}

impl EpochTracker {
    /// Bookkeeping for a window over `size` ranks, no epoch open.
    pub fn new(size: usize) -> Self {
        EpochTracker {
            slots: (0..size).map(|_| AtomicU64::new(UNLOCKED)).collect(),
            fence: AtomicU64::new(CLOSED),
        }
    }

    #[inline]
    fn slot(&self, target: usize) -> Result<&AtomicU64> {
        self.slots.get(target).ok_or(Error::RankOutOfRange {
            rank: target,
            size: self.slots.len(),
        })
    }

    /// Claims `target`'s word in `phase` (from unlocked), then checks that
    /// no fence epoch is open or opening (backing out if one is).
    #[inline]
    fn claim(&self, target: usize, phase: u64, kind: LockKind) -> Result<&AtomicU64> {
        let slot = self.slot(target)?;
        slot.compare_exchange(UNLOCKED, phase | kind_bits(kind), SeqCst, Acquire)
            .map_err(|_| Error::AlreadyLocked { target })?;
        if self.fence.load(SeqCst) & PHASE != CLOSED {
            slot.store(UNLOCKED, Release);
            return Err(fence_mix_error(target));
        }
        Ok(slot)
    }

    /// Starts a lock on `target`: see [`Locking`].
    #[inline]
    pub fn begin_lock(&self, target: usize, kind: LockKind) -> Result<Locking<'_>> {
        let word = self.claim(target, LOCKING, kind)?;
        Ok(Locking {
            word,
            kind,
            done: false,
        })
    }

    /// Starts a one-shot epoch (lock, one operation, unlock in one call)
    /// on `target`; the returned guard releases the target after the
    /// caller's runtime unlock. No other call can use the target meanwhile.
    #[inline]
    pub fn begin_one_shot(&self, target: usize, kind: LockKind) -> Result<Unlocking<'_>> {
        let word = self.claim(target, ONE_SHOT, kind)?;
        Ok(Unlocking { word, kind })
    }

    /// Starts the unlock of `target`. Refused if it is not locked (by this
    /// rank, through `lock`), or while operations or local views pinned to
    /// the lock are in progress.
    #[inline]
    pub fn begin_unlock(&self, target: usize) -> Result<Unlocking<'_>> {
        let word = self.slot(target)?;
        let w = word.load(SeqCst);
        if w & PHASE != LOCKED {
            return Err(Error::NotLocked { target });
        }
        if pins(w) > 0 {
            return Err(Error::Conflict {
                target,
                reason: "unlock while an operation or a local view relies on the lock".into(),
            });
        }
        word.compare_exchange(w, UNLOCKING | (w & EXCL), SeqCst, SeqCst)
            .map_err(|_| Error::Conflict {
                target,
                reason: "unlock while another thread of this rank uses the lock".into(),
            })?;
        Ok(Unlocking {
            word,
            kind: word_kind(w),
        })
    }

    /// Pins the epoch on `target` (its lock, or the fence epoch) for one
    /// operation and returns how it is held; the operation must complete
    /// before the pin drops.
    #[inline]
    pub fn pin(&self, target: usize) -> Result<(EpochKind, Pin<'_>)> {
        let word = self.slot(target)?;
        let mut w = word.load(SeqCst);
        loop {
            if w & PHASE == LOCKED {
                match word.compare_exchange_weak(w, w + PIN, Acquire, Acquire) {
                    Ok(_) => return Ok((EpochKind::Lock(word_kind(w)), Pin { word })),
                    Err(now) => w = now,
                }
            } else if w & PHASE == UNLOCKED {
                return match self.pin_fence() {
                    Some(pin) => Ok((EpochKind::Fence, pin)),
                    None => Err(Error::NoEpoch { target }),
                };
            } else {
                // locking, unlocking, or a one-shot epoch of another call
                return Err(Error::NoEpoch { target });
            }
        }
    }

    /// Pins the lock on `target` only (not a fence epoch): for `flush` and
    /// local views.
    #[inline]
    pub fn pin_lock(&self, target: usize) -> Result<(LockKind, Pin<'_>)> {
        let word = self.slot(target)?;
        let mut w = word.load(SeqCst);
        loop {
            if w & PHASE != LOCKED {
                return Err(Error::NotLocked { target });
            }
            match word.compare_exchange_weak(w, w + PIN, Acquire, Acquire) {
                Ok(_) => return Ok((word_kind(w), Pin { word })),
                Err(now) => w = now,
            }
        }
    }

    fn pin_fence(&self) -> Option<Pin<'_>> {
        let mut f = self.fence.load(SeqCst);
        loop {
            if f & PHASE != OPEN {
                return None;
            }
            match self.fence.compare_exchange_weak(f, f + PIN, SeqCst, SeqCst) {
                Ok(_) => return Some(Pin { word: &self.fence }),
                Err(now) => f = now,
            }
        }
    }

    /// The lock this rank holds on `target` (`None` also while it is being
    /// taken or released, or held by a one-shot call).
    #[inline]
    pub fn lock_kind(&self, target: usize) -> Result<Option<LockKind>> {
        let w = self.slot(target)?.load(SeqCst);
        Ok((w & PHASE == LOCKED).then(|| word_kind(w)))
    }

    /// `true` while a fence epoch is open (or opening, or closing).
    #[inline]
    pub fn fence_is_open(&self) -> bool {
        self.fence.load(SeqCst) & PHASE != CLOSED
    }

    /// Starts this rank's part of a collective `fence` (`end = false`) or
    /// `fence_end`: the local checks (no lock held for a first fence; a
    /// fence epoch open and nothing pinned to it for `fence_end`). While the
    /// transition runs, no lock can be taken and no operation approved on
    /// the fence epoch; the caller votes, does its runtime step, then calls
    /// [`Fencing::done`]; dropped without that, the fence state is as
    /// before.
    pub fn begin_fence(&self, end: bool) -> Result<Fencing<'_>> {
        let f = self.fence.load(SeqCst);
        let phase = f & PHASE;
        if end {
            if phase != OPEN {
                return Err(Error::EpochMismatch(
                    "fence_end without an open fence epoch".into(),
                ));
            }
            if pins(f) > 0 {
                return Err(Error::EpochMismatch(
                    "fence_end while an operation of the fence epoch is in progress".into(),
                ));
            }
            self.fence
                .compare_exchange(f, CLOSING, SeqCst, SeqCst)
                .map_err(|_| {
                    Error::EpochMismatch("fence_end while another thread uses the fence".into())
                })?;
            return Ok(Fencing {
                tracker: self,
                before: OPEN,
                after: CLOSED,
                finished: false,
            });
        }
        match phase {
            OPEN => {
                // a continued fence: nothing of the epoch may be in progress
                // (the runtime step completes the epoch's operations), and
                // none is approved until it is done (OPENING refuses pins)
                if pins(f) > 0 {
                    return Err(Error::EpochMismatch(
                        "fence while an operation of the fence epoch is in progress".into(),
                    ));
                }
                self.fence
                    .compare_exchange(f, OPENING, SeqCst, SeqCst)
                    .map_err(|_| {
                        Error::EpochMismatch("fence while another thread uses the fence".into())
                    })?;
                Ok(Fencing {
                    tracker: self,
                    before: OPEN,
                    after: OPEN,
                    finished: false,
                })
            }
            CLOSED => {
                self.fence
                    .compare_exchange(CLOSED, OPENING, SeqCst, SeqCst)
                    .map_err(|_| {
                        Error::EpochMismatch("fence while another thread uses the fence".into())
                    })?;
                let held = self
                    .slots
                    .iter()
                    .filter(|s| s.load(SeqCst) & PHASE != UNLOCKED)
                    .count();
                if held > 0 {
                    self.fence.store(CLOSED, SeqCst);
                    return Err(Error::EpochMismatch(format!(
                        "fence while {held} passive-target lock(s) are held"
                    )));
                }
                Ok(Fencing {
                    tracker: self,
                    before: CLOSED,
                    after: OPEN,
                    finished: false,
                })
            }
            _ => Err(Error::EpochMismatch(
                "fence while another thread of this rank is fencing".into(),
            )),
        }
    }

    /// Collective `fence` (or `fence_end` when `end`) that keeps ranks in
    /// step: [`EpochTracker::begin_fence`] locally, then `all_ok` (the
    /// backend's collective vote of one flag per rank) tells whether every
    /// rank could, then `runtime` (the backend's own fence step) runs. If
    /// any rank could not, every rank returns an error
    /// ([`Error::PeerFailed`] on the ranks whose own check passed) and the
    /// state is left as before, so no rank waits in a fence the others
    /// skipped.
    pub fn fence_collectively(
        &self,
        end: bool,
        all_ok: impl FnOnce(bool) -> Result<Vec<bool>>,
        runtime: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let local = self.begin_fence(end);
        let flags = all_ok(local.is_ok())?;
        let fencing = local?;
        if let Some(rank) = flags.iter().position(|ok| !ok) {
            return Err(Error::PeerFailed {
                rank,
                reason: format!(
                    "rank {rank}'s fence bookkeeping refused the {} (a fence needs every rank \
                     to hold no passive-target lock; fence_end needs an open fence epoch)",
                    if end { "fence_end" } else { "fence" }
                ),
            });
        }
        match runtime() {
            Ok(()) => {
                fencing.done();
                Ok(())
            }
            Err(e) => {
                // the runtime's state is unknown: closing is the safe side
                // (no operation is approved without a fence epoch)
                drop(fencing);
                self.fence.store(CLOSED, SeqCst);
                Err(e)
            }
        }
    }

    /// Forgets every lock and the fence epoch (for a backend's `Drop`, which
    /// has exclusive access): the locks as `(target, kind)`, and whether a
    /// fence epoch was open.
    pub fn release_all(&mut self) -> (Vec<(usize, LockKind)>, bool) {
        let locks = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(t, s)| {
                let w = std::mem::replace(s.get_mut(), UNLOCKED);
                (w & PHASE == LOCKED).then(|| (t, word_kind(w)))
            })
            .collect();
        let fence = std::mem::replace(self.fence.get_mut(), CLOSED) & PHASE == OPEN;
        (locks, fence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_lock_cannot_be_released() {
        let t = EpochTracker::new(2);
        t.begin_lock(1, LockKind::Exclusive).unwrap().granted();
        let (kind, pin) = t.pin(1).unwrap();
        assert_eq!(kind, EpochKind::Lock(LockKind::Exclusive));
        assert!(matches!(t.begin_unlock(1), Err(Error::Conflict { .. })));
        drop(pin);
        let u = t.begin_unlock(1).unwrap();
        // while unlocking, the target can be neither used nor locked
        assert!(matches!(t.pin(1), Err(Error::NoEpoch { .. })));
        assert!(matches!(
            t.begin_lock(1, LockKind::Shared),
            Err(Error::AlreadyLocked { .. })
        ));
        drop(u);
        t.begin_lock(1, LockKind::Shared).unwrap().granted();
    }

    #[test]
    fn one_shot_epochs_belong_to_their_call() {
        let t = EpochTracker::new(2);
        let one = t.begin_one_shot(1, LockKind::Exclusive).unwrap();
        assert!(matches!(t.begin_unlock(1), Err(Error::NotLocked { .. })));
        assert!(matches!(t.pin(1), Err(Error::NoEpoch { .. })));
        assert!(matches!(t.pin_lock(1), Err(Error::NotLocked { .. })));
        drop(one);
        assert!(matches!(t.pin(1), Err(Error::NoEpoch { .. })));
    }

    #[test]
    fn nothing_is_approved_before_the_runtime_lock_is_held() {
        let t = EpochTracker::new(1);
        let locking = t.begin_lock(0, LockKind::Exclusive).unwrap();
        assert!(matches!(t.pin(0), Err(Error::NoEpoch { .. })));
        drop(locking); // the runtime lock failed
        assert_eq!(t.lock_kind(0).unwrap(), None);
    }

    #[test]
    fn a_continued_fence_waits_for_no_pin_and_refuses_new_ones() {
        let t = EpochTracker::new(2);
        t.begin_fence(false).unwrap().done();
        // an operation of the epoch in progress: no continued fence
        let pin = t.pin(1).unwrap();
        assert!(matches!(t.begin_fence(false), Err(Error::EpochMismatch(_))));
        drop(pin);
        // during the continued fence nothing is approved, and its end
        // restores the open epoch with no pin counted
        let fencing = t.begin_fence(false).unwrap();
        assert!(t.pin(1).is_err(), "no operation during a fence");
        assert!(t.begin_fence(true).is_err(), "no fence_end during a fence");
        fencing.done();
        let pin = t.pin(1).unwrap();
        assert!(t.begin_fence(true).is_err(), "fence_end under a pin");
        drop(pin);
        t.begin_fence(true).unwrap().done();
        assert!(!t.fence_is_open());
    }

    #[test]
    fn fence_epoch_approves_only_once_open_and_not_while_closing() {
        let t = EpochTracker::new(2);
        let f = t.begin_fence(false).unwrap();
        // opening: no operation, no lock
        assert!(t.pin(1).is_err());
        assert!(t.begin_lock(1, LockKind::Shared).is_err());
        f.done();
        let (kind, pin) = t.pin(1).unwrap();
        assert_eq!(kind, EpochKind::Fence);
        assert!(t.begin_fence(true).is_err(), "fence_end under a pinned op");
        drop(pin);
        let end = t.begin_fence(true).unwrap();
        assert!(t.pin(1).is_err(), "closing: nothing approved");
        assert!(t.begin_lock(1, LockKind::Shared).is_err());
        end.done();
        t.begin_lock(1, LockKind::Shared).unwrap().granted();
        assert!(t.begin_fence(false).is_err(), "fence while locked");
    }

    #[test]
    fn lock_and_fence_exclude_each_other_across_threads() {
        // many rounds of a racing lock and fence: never both succeed
        for _ in 0..2000 {
            let t = EpochTracker::new(1);
            let (a, b) = std::thread::scope(|s| {
                let a = s.spawn(|| {
                    t.begin_lock(0, LockKind::Exclusive)
                        .map(|l| l.granted())
                        .is_ok()
                });
                let b = s.spawn(|| t.begin_fence(false).map(|f| f.done()).is_ok());
                (a.join().unwrap(), b.join().unwrap())
            });
            assert!(!(a && b), "a lock and a fence epoch were both granted");
        }
    }
}
