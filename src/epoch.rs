//! RAII access epochs ([`Epoch`]) and the collective success vote
//! ([`vote`]) that keeps ranks in step when one of them fails.

use crate::comm::{AccumulateOp, Element, LockKind, OneSidedComm};
use crate::error::{Error, Result};
use crate::rma::{RawWindow, Window};

/// A passive-target epoch on one target of one window: the lock is taken
/// when the guard is made and released when it is dropped (also when the
/// code using it panics), or explicitly with [`Epoch::unlock`], which
/// reports the unlock's error.
///
/// Offsets are element offsets into the target's part (row-major for a
/// `DistArray`'s part).
///
/// ```
/// use distarray::{threaded, DistArray, LockKind, OneSidedComm};
/// threaded::run_ok(2, |comm| {
///     let a = DistArray::<u32, _, 1>::from_fn(comm.clone(), [4], |[i]| i as u32)?;
///     let other = 1 - comm.rank();
///     let epoch = a.lock(other, LockKind::Shared)?;
///     let mut two = [0u32; 2];
///     epoch.get(0, &mut two)?; // the first two elements of the other rank's part
///     epoch.unlock()?;
///     assert_eq!(two, [2 * other as u32, 2 * other as u32 + 1]);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct Epoch<'a, T: Element, R: RawWindow<T>> {
    win: &'a Window<T, R>,
    target: usize,
    locked: bool,
    _t: std::marker::PhantomData<T>,
}

impl<'a, T: Element, R: RawWindow<T>> Epoch<'a, T, R> {
    /// Locks `target` of `win` and returns the guard.
    pub fn new(win: &'a Window<T, R>, target: usize, kind: LockKind) -> Result<Self> {
        win.lock(target, kind)?;
        Ok(Epoch {
            win,
            target,
            locked: true,
            _t: std::marker::PhantomData,
        })
    }

    /// The target rank.
    pub fn target(&self) -> usize {
        self.target
    }

    /// The window.
    pub fn window(&self) -> &'a Window<T, R> {
        self.win
    }

    /// [`Window::get`] on the target.
    pub fn get(&self, offset: usize, dst: &mut [T]) -> Result<()> {
        self.win.get(self.target, offset, dst)
    }

    /// [`Window::put`] on the target.
    pub fn put(&self, offset: usize, src: &[T]) -> Result<()> {
        self.win.put(self.target, offset, src)
    }

    /// [`Window::accumulate`] on the target.
    pub fn accumulate(&self, offset: usize, src: &[T], op: AccumulateOp) -> Result<()> {
        self.win.accumulate(self.target, offset, src, op)
    }

    /// [`Window::flush`] on the target.
    pub fn flush(&self) -> Result<()> {
        self.win.flush(self.target)
    }

    /// Closes the epoch, reporting the unlock's error.
    pub fn unlock(mut self) -> Result<()> {
        self.locked = false;
        self.win.unlock(self.target)
    }
}

impl<T: Element, R: RawWindow<T>> Drop for Epoch<'_, T, R> {
    /// Unlocks. If the lock cannot be released because a local view still
    /// relies on it (the guard was dropped inside `with_local`), this
    /// panics instead of leaking a lock other ranks would wait for forever:
    /// a panicking rank ends the job on every backend, a leaked lock would
    /// hang it.
    fn drop(&mut self) {
        if self.locked {
            // Other errors could only be backend failures, which the next
            // operation reports.
            if let Err(e @ Error::Conflict { .. }) = self.win.unlock(self.target) {
                if !std::thread::panicking() {
                    panic!("Epoch dropped while its lock is still needed: {e}");
                }
            }
        }
    }
}

/// Collective: every rank contributes whether its part of a collective
/// operation succeeded. Returns this rank's own error, or
/// [`Error::PeerFailed`] (naming the first failing rank and carrying its own
/// error message) if another rank failed, or `local`'s value: every rank
/// leaves the operation with the same verdict, and none goes on into a later
/// collective the others skip. Acts as a barrier.
///
/// On success this is one allreduce of one word
/// ([`collective::vote`](crate::collective::vote)); only when some rank
/// failed does a second collective ([`failure_reason`]: a broadcast of at
/// most [`REASON_MAX`] bytes from the failing rank) carry its message.
///
/// ```
/// use distarray::{epoch::vote, threaded, Error, OneSidedComm};
/// let r = threaded::run(3, |comm| {
///     let mine = if comm.rank() == 1 { Err(Error::InvalidArgument("bad n".into())) } else { Ok(()) };
///     vote(&comm, mine)
/// })
/// .unwrap();
/// assert!(matches!(&r[0], Err(Error::PeerFailed { rank: 1, reason }) if reason.contains("bad n")));
/// assert!(matches!(&r[1], Err(Error::InvalidArgument(_))));
/// ```
pub fn vote<C: OneSidedComm, V>(comm: &C, local: Result<V>) -> Result<V> {
    crate::collective::vote(comm, local)
}

pub use crate::collective::{failure_reason, REASON_MAX};
