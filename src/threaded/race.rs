//! RMA race detection for the threaded backend's checking mode
//! ([`run_checked`](super::run_checked), [`check`](super::check),
//! [`replay`](super::replay)).
//!
//! # What is a race
//!
//! Two accesses to the same element of a window race when they *conflict*
//! and neither happens before the other. Conflicting, following MPI's RMA
//! rules:
//!
//! * anything against a write (`put`, a local write through
//!   `with_local_mut`);
//! * a read (`get`, a local read through `with_local`) against an
//!   `accumulate`;
//! * two `accumulate`s with different operations.
//!
//! Two reads never conflict, and neither do two accumulates with the same
//! operation (they are element-wise atomic).
//!
//! # Happens-before
//!
//! One vector clock per rank ([`super::clock`]). Edges: unlock → a later
//! lock of the same target (an exclusive unlock orders every later lock; any
//! unlock orders a later *exclusive* lock; two shared epochs stay
//! concurrent, because MPI lets them overlap), and every collective (barrier,
//! allgather, fence, window creation) orders everything before it on every
//! rank before everything after it.
//!
//! A `put` or `accumulate` counts at its *completion*, not its issue: it
//! completes at the origin's next `flush` or `unlock` of that target or its
//! next `fence`. So a `put` followed by a barrier without an unlock still
//! races with a read after the barrier (the put may land later on MPI), and
//! a `put` followed by a conflicting operation of the same origin in the
//! same epoch without a flush between them races (MPI does not order them),
//! except two accumulates (MPI's default accumulate ordering). A `get` is
//! blocking at the origin (the data is in the buffer when it returns, MPI's
//! `MPI_Get` + `MPI_Win_flush_local`), so it completes at once, like local
//! view accesses.
//!
//! The check is about the order, not the timing: a race is reported
//! whenever the two accesses are concurrent in happens-before, whichever
//! order the schedule ran them in, so one run finds it.
//!
//! # Shadow memory
//!
//! Per element, at most one record per (rank, kind of access) since the last
//! plain write, which replaces them all (every earlier record was checked
//! against it and found ordered). A later record of a rank dominates an
//! earlier one of the same kind: it is issued later and completes no
//! earlier, so anything concurrent with the earlier one is concurrent with
//! it too. Memory is allocated on the first access of a part.

use std::sync::{Mutex, MutexGuard};

use super::clock::{Clocks, VClock};
use crate::comm::{AccumulateOp, LockKind};
use crate::error::{Error, Result};

/// What an access does to an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessKind {
    /// `Window::get`.
    Get,
    /// `Window::put`.
    Put,
    /// `Window::accumulate` with this operation.
    Acc(AccumulateOp),
    /// A local read view (`with_local`) of the owner.
    ViewRead,
    /// A local write view (`with_local_mut`) of the owner.
    ViewWrite,
}

impl AccessKind {
    fn is_read(self) -> bool {
        matches!(self, AccessKind::Get | AccessKind::ViewRead)
    }

    /// Complete when the call returns: local accesses, and `get`, which
    /// is blocking at the origin (the data has been read when it returns;
    /// MPI: `MPI_Get` + `MPI_Win_flush_local`). A `put` or `accumulate`
    /// returns when its source buffer may be reused, but lands at the
    /// target only by the next flush, unlock or fence.
    fn completes_at_once(self) -> bool {
        matches!(
            self,
            AccessKind::Get | AccessKind::ViewRead | AccessKind::ViewWrite
        )
    }

    fn is_plain_write(self) -> bool {
        matches!(self, AccessKind::Put | AccessKind::ViewWrite)
    }

    fn describe(self) -> String {
        match self {
            AccessKind::Get => "get".into(),
            AccessKind::Put => "put".into(),
            AccessKind::Acc(op) => format!("accumulate({op:?})"),
            AccessKind::ViewRead => "local read (with_local)".into(),
            AccessKind::ViewWrite => "local write (with_local_mut)".into(),
        }
    }
}

/// MPI's conflict rule (see the module docs).
fn conflicts(a: AccessKind, b: AccessKind) -> bool {
    if a.is_read() && b.is_read() {
        return false;
    }
    !matches!((a, b), (AccessKind::Acc(x), AccessKind::Acc(y)) if x == y)
}

/// One access remembered in the shadow of an element.
#[derive(Debug, Clone, Copy)]
struct Record {
    rank: usize,
    kind: AccessKind,
    /// `put` / `accumulate`: index of the origin's first completion on
    /// this target after the issue (the number of completions before it).
    gen: usize,
    /// Accesses that complete at once: the rank's clock stamp then.
    stamp: u64,
}

#[derive(Debug)]
struct SegState {
    len: usize,
    /// Join of the clocks published by every unlock of this target.
    release_all: VClock,
    /// Join of the clocks published by exclusive unlocks of this target.
    release_excl: VClock,
    /// Per origin: the origin's clock stamp at each completion (flush,
    /// unlock, fence) of its operations on this target.
    completions: Vec<Vec<u64>>,
    /// Per element; empty until the first access.
    elems: Vec<Vec<Record>>,
}

impl SegState {
    /// The stamp at which `r` completed, if it has.
    fn done(&self, r: &Record) -> Option<u64> {
        if r.kind.completes_at_once() {
            Some(r.stamp)
        } else {
            self.completions[r.rank].get(r.gen).copied()
        }
    }
}

/// The race-detection shadow of one rank's part of one window: its
/// elements' access records and its lock's release clocks.
#[derive(Debug)]
pub(crate) struct SegShadow {
    target: usize,
    state: Mutex<SegState>,
}

impl SegShadow {
    /// The shadow of `target`'s part of `len` elements, in a run of `p` ranks.
    pub(crate) fn new(p: usize, target: usize, len: usize) -> Self {
        SegShadow {
            target,
            state: Mutex::new(SegState {
                len,
                release_all: VClock::zero(p),
                release_excl: VClock::zero(p),
                completions: vec![Vec::new(); p],
                elems: Vec::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, SegState> {
        // Updates under this mutex do not panic halfway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `rank` was granted a `kind` lock on this target: it is ordered after
    /// the unlocks the lock excludes.
    pub(crate) fn acquired(&self, clocks: &Clocks, rank: usize, kind: LockKind) {
        let st = self.state();
        match kind {
            LockKind::Exclusive => clocks.acquire(rank, &st.release_all),
            LockKind::Shared => clocks.acquire(rank, &st.release_excl),
        }
    }

    /// `rank` unlocks its `kind` lock on this target: completes its
    /// operations and publishes its clock. Call before the lock is
    /// actually released.
    pub(crate) fn released(&self, clocks: &Clocks, rank: usize, kind: LockKind) {
        let mut st = self.state();
        let now = clocks.now(rank);
        st.completions[rank].push(now);
        let published = clocks.release(rank);
        st.release_all.join(&published);
        if kind == LockKind::Exclusive {
            st.release_excl.join(&published);
        }
    }

    /// `rank`'s operations on this target complete (flush, fence).
    pub(crate) fn complete(&self, clocks: &Clocks, rank: usize) {
        let mut st = self.state();
        let now = clocks.now(rank);
        st.completions[rank].push(now);
    }

    /// Checks an access of `rank` to elements `offset..offset + len` against
    /// the accesses recorded so far and records it. Returns
    /// [`Error::Race`] for the first element where it races.
    pub(crate) fn access(
        &self,
        clocks: &Clocks,
        rank: usize,
        offset: usize,
        len: usize,
        kind: AccessKind,
    ) -> Result<()> {
        let mut st = self.state();
        if st.elems.is_empty() {
            let n = st.len;
            st.elems = vec![Vec::new(); n];
        }
        let me = clocks.snapshot(rank);
        let new = Record {
            rank,
            kind,
            gen: st.completions[rank].len(),
            stamp: me.get(rank),
        };
        for i in offset..offset + len {
            for old in st.elems[i].iter() {
                if !conflicts(old.kind, kind) {
                    continue;
                }
                let done = st.done(old);
                let ordered = if old.rank == rank {
                    // Program order, once the older access completed (or
                    // both are accumulates: MPI orders those by default).
                    done.is_some()
                        || matches!((old.kind, kind), (AccessKind::Acc(_), AccessKind::Acc(_)))
                } else {
                    done.is_some_and(|d| me.get(old.rank) >= d)
                };
                if !ordered {
                    return Err(Error::Race {
                        target: self.target,
                        offset: i,
                        first_rank: old.rank,
                        first_op: old.kind.describe(),
                        second_rank: rank,
                        second_op: kind.describe(),
                    });
                }
            }
            let recs = &mut st.elems[i];
            if kind.is_plain_write() {
                // Every earlier record conflicts with a plain write and was
                // found ordered before it.
                recs.clear();
            } else {
                recs.retain(|r| !(r.rank == rank && r.kind == kind));
            }
            recs.push(new);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn race(r: Result<()>) -> bool {
        matches!(r, Err(Error::Race { .. }))
    }

    #[test]
    fn conflict_rules() {
        use AccessKind::*;
        assert!(!conflicts(Get, Get));
        assert!(!conflicts(Get, ViewRead));
        assert!(conflicts(Get, Put));
        assert!(conflicts(Get, Acc(AccumulateOp::Sum)));
        assert!(!conflicts(Acc(AccumulateOp::Sum), Acc(AccumulateOp::Sum)));
        assert!(conflicts(Acc(AccumulateOp::Sum), Acc(AccumulateOp::Max)));
        assert!(conflicts(ViewWrite, Get));
    }

    #[test]
    fn unsynchronised_puts_race_and_an_exclusive_unlock_orders_them() {
        let clocks = Clocks::new(3);
        let s = SegShadow::new(3, 1, 4);
        s.access(&clocks, 0, 0, 1, AccessKind::Put).unwrap();
        // rank 0's put is not completed: rank 2's put races with it.
        assert!(race(s.access(&clocks, 2, 0, 1, AccessKind::Put)));
        // a different element does not
        s.access(&clocks, 2, 1, 1, AccessKind::Put).unwrap();

        let clocks = Clocks::new(3);
        let s = SegShadow::new(3, 1, 4);
        s.acquired(&clocks, 0, LockKind::Exclusive);
        s.access(&clocks, 0, 0, 1, AccessKind::Put).unwrap();
        s.released(&clocks, 0, LockKind::Exclusive);
        s.acquired(&clocks, 2, LockKind::Shared);
        s.access(&clocks, 2, 0, 1, AccessKind::Get).unwrap();
    }

    #[test]
    fn shared_epochs_stay_concurrent() {
        let clocks = Clocks::new(3);
        let s = SegShadow::new(3, 1, 4);
        s.acquired(&clocks, 0, LockKind::Shared);
        s.access(&clocks, 0, 2, 1, AccessKind::Put).unwrap();
        s.released(&clocks, 0, LockKind::Shared);
        // Ran after it, but nothing orders a shared epoch after another.
        s.acquired(&clocks, 2, LockKind::Shared);
        assert!(race(s.access(&clocks, 2, 2, 1, AccessKind::Get)));
    }

    #[test]
    fn same_origin_needs_a_flush_between_conflicting_operations() {
        let clocks = Clocks::new(2);
        let s = SegShadow::new(2, 1, 4);
        s.access(&clocks, 0, 0, 1, AccessKind::Put).unwrap();
        assert!(race(s.access(&clocks, 0, 0, 1, AccessKind::Get)));
        // a get completes when it returns: a put after it is ordered
        let s = SegShadow::new(2, 1, 4);
        s.access(&clocks, 0, 0, 1, AccessKind::Get).unwrap();
        s.access(&clocks, 0, 0, 1, AccessKind::Put).unwrap();
        let s = SegShadow::new(2, 1, 4);
        s.access(&clocks, 0, 0, 1, AccessKind::Put).unwrap();
        s.complete(&clocks, 0);
        s.access(&clocks, 0, 0, 1, AccessKind::Get).unwrap();
        // accumulates of one origin are ordered
        let s = SegShadow::new(2, 1, 4);
        s.access(&clocks, 0, 0, 1, AccessKind::Acc(AccumulateOp::Sum))
            .unwrap();
        s.access(&clocks, 0, 0, 1, AccessKind::Acc(AccumulateOp::Max))
            .unwrap();
    }

    #[test]
    fn same_op_accumulates_do_not_race_but_hide_no_later_put() {
        let clocks = Clocks::new(3);
        let s = SegShadow::new(3, 1, 4);
        let sum = AccessKind::Acc(AccumulateOp::Sum);
        s.access(&clocks, 0, 0, 1, sum).unwrap();
        s.access(&clocks, 2, 0, 1, sum).unwrap();
        assert!(race(s.access(&clocks, 1, 0, 1, AccessKind::ViewRead)));
    }
}
