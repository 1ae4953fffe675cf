//! Controlled schedules: ranks run one at a time and switch only at
//! communication calls, the next rank chosen by a seeded PCT-style
//! scheduler, so that a seed names one interleaving and replays it exactly
//! ([`check`](super::check), [`replay`](super::replay)).
//!
//! # The scheduler
//!
//! A baton: exactly one rank thread runs; the others sleep in
//! [`Scheduler`]'s condition variable. At every *schedule point* (the entry
//! of each RMA operation, lock, unlock, flush, collective and local view,
//! and the close of a view) the running rank hands the baton to the
//! runnable rank of highest priority. Priorities follow PCT (Burckhardt et
//! al., ASPLOS 2010): a random permutation at the start, and at random
//! *change points* the running rank drops below every other. Instead of
//! PCT's fixed number of change points over a known step count, each step
//! is a change point with probability 2^-k, k = 1 + seed mod 9: the step
//! count is not known in advance, and the choice must depend on the seed
//! alone for replay. Small k switches often (fine interleavings), large k
//! runs long stretches of one rank (the classic "one thread overtakes
//! another" bugs).
//!
//! A rank that must wait (a lock held by another, a collective not yet
//! complete) is marked *blocked* and yields; it becomes runnable again when
//! the baton holder changes state a waiter can wait for (releases a lock,
//! arrives in a collective, fails, finishes: [`Scheduler::wake_all`]), and
//! then re-checks its condition. When every unfinished rank is blocked,
//! nothing can ever change: the waiting rank gets
//! [`Error::Deadlock`] instead of hanging — this is how lock-order cycles
//! (A holds x and waits for y, B holds y and waits for x) are reported in
//! this mode.
//!
//! Everything else a rank does is deterministic given the order of schedule
//! points, so the seed reproduces the run: same interleaving, same results,
//! same error, every time.
//!
//! # Why not `shuttle`
//!
//! `shuttle` (awslabs) implements the same PCT idea, but for code written on
//! *its* `sync`/`thread` types: it switches at every mutex, atomic and
//! condition-variable operation, runs `'static` closures on its own
//! threads, and controls the whole test body. Using it would mean compiling
//! this backend's internals (the exchange, the lock tables, the view
//! registry, the epoch atomics) against shuttle's types behind a feature
//! flag, so a user could not call `check` from an ordinary test; it would
//! switch inside our bookkeeping, multiplying the schedules by internal
//! steps that no user program can observe instead of switching only at
//! communication calls; and our waits poll with time-outs, which shuttle
//! cannot model. The ranks already block only at a few wait points of our
//! own (collective exchange, lock grant), so a baton over those points is
//! a small, dependency-free scheduler that switches exactly where the issue
//! asks.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// A small deterministic generator (SplitMix64): the schedule must depend
/// on the seed only, not on a library's version of an algorithm.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

const NOBODY: usize = usize::MAX;

#[derive(Debug)]
struct State {
    /// The rank holding the baton (`NOBODY` when all finished).
    current: usize,
    finished: Vec<bool>,
    /// Waiting for a condition that has not changed since it last failed.
    blocked: Vec<bool>,
    /// What each blocked rank waits for (for the deadlock report).
    waiting_for: Vec<String>,
    priority: Vec<u64>,
    /// The next priority handed out at a change point (below all others).
    next_low: u64,
    /// A step is a change point when `rng & mask == 0`.
    change_mask: u64,
    rng: SplitMix64,
    steps: u64,
}

impl State {
    fn pick(&self) -> Option<usize> {
        (0..self.priority.len())
            .filter(|&r| !self.finished[r] && !self.blocked[r])
            .max_by_key(|&r| self.priority[r])
    }
}

/// The baton-passing scheduler of one controlled run.
#[derive(Debug)]
pub(crate) struct Scheduler {
    state: Mutex<State>,
    /// One per rank: a rank sleeps on its own, so a switch wakes only the
    /// rank that gets the baton.
    cvs: Vec<Condvar>,
}

impl Scheduler {
    /// A scheduler for `p` ranks whose every choice follows from `seed`.
    pub(crate) fn new(p: usize, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        // Random permutation of high priorities (Fisher-Yates).
        let mut order: Vec<u64> = (0..p as u64).collect();
        for i in (1..p).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let base = u64::MAX / 2;
        let priority: Vec<u64> = order.iter().map(|&o| base + 1 + o).collect();
        let k = 1 + seed % 9;
        let mut st = State {
            current: NOBODY,
            finished: vec![false; p],
            blocked: vec![false; p],
            waiting_for: vec![String::new(); p],
            priority,
            next_low: base,
            change_mask: (1u64 << k) - 1,
            rng,
            steps: 0,
        };
        st.current = st.pick().unwrap_or(NOBODY);
        Scheduler {
            state: Mutex::new(st),
            cvs: (0..p).map(|_| Condvar::new()).collect(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Short, non-panicking critical sections.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_for_baton<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        rank: usize,
    ) -> MutexGuard<'a, State> {
        while st.current != rank {
            st = self.cvs[rank].wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st
    }

    /// Called by a rank thread before it runs any user code.
    pub(crate) fn start(&self, rank: usize) {
        let st = self.lock();
        drop(self.wait_for_baton(st, rank));
    }

    /// A schedule point (a communication call about to start or a view
    /// closing): hands the baton on and waits for it.
    pub(crate) fn point(&self, rank: usize) {
        // Never fails: this rank itself stays runnable.
        let _ = self.step(rank, None);
    }

    /// The baton holder changed state a waiting rank may wait for: every
    /// blocked rank re-checks its condition when next picked.
    pub(crate) fn wake_all(&self) {
        self.lock().blocked.iter_mut().for_each(|b| *b = false);
    }

    /// A wait whose condition failed: yields until some rank made
    /// progress. `Err(Deadlock)` when every unfinished rank is waiting.
    pub(crate) fn wait(&self, rank: usize, what: impl FnOnce() -> String) -> Result<()> {
        self.step(rank, Some(what()))
    }

    fn step(&self, rank: usize, waiting: Option<String>) -> Result<()> {
        let mut st = self.lock();
        debug_assert_eq!(st.current, rank, "only the baton holder runs");
        st.steps += 1;
        if let Some(what) = waiting {
            st.blocked[rank] = true;
            st.waiting_for[rank] = what;
        }
        if st.rng.next() & st.change_mask == 0 {
            let low = st.next_low;
            st.priority[rank] = low;
            st.next_low -= 1;
        }
        match st.pick() {
            None => {
                // Every unfinished rank waits and nobody can change
                // anything: report instead of hanging.
                st.blocked[rank] = false;
                let waits: Vec<String> = (0..st.priority.len())
                    .filter(|&r| !st.finished[r])
                    .map(|r| format!("rank {r} waits for {}", st.waiting_for[r]))
                    .collect();
                Err(Error::Deadlock(format!(
                    "no rank can proceed: {}",
                    waits.join("; ")
                )))
            }
            Some(next) => {
                if next != rank {
                    st.current = next;
                    self.cvs[next].notify_one();
                    drop(self.wait_for_baton(st, rank));
                }
                Ok(())
            }
        }
    }

    /// The rank's closure returned (or unwound): hands the baton on for good.
    pub(crate) fn finish(&self, rank: usize) {
        let mut st = self.lock();
        st.finished[rank] = true;
        st.blocked.iter_mut().for_each(|b| *b = false);
        st.current = st.pick().unwrap_or(NOBODY);
        if st.current != NOBODY {
            self.cvs[st.current].notify_one();
        }
    }
}

/// The first failing schedule found by [`check`](super::check): its seed
/// (pass it to [`replay`](super::replay) to run that interleaving again)
/// and the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleFailure {
    /// The seed of the failing schedule.
    pub seed: u64,
    /// What went wrong (the run's error, or the first rank's error).
    pub error: Error,
}

impl std::fmt::Display for ScheduleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "schedule with seed {} failed (replay it with threaded::replay(p, {}, f)): {}",
            self.seed, self.seed, self.error
        )
    }
}

impl std::error::Error for ScheduleFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_fixes_priorities() {
        let a = Scheduler::new(5, 7);
        let b = Scheduler::new(5, 7);
        assert_eq!(a.lock().priority, b.lock().priority);
        let seeds_differ =
            (0..20).any(|s| Scheduler::new(5, s).lock().priority != a.lock().priority);
        assert!(seeds_differ);
    }

    #[test]
    fn all_blocked_is_a_deadlock() {
        let s = Scheduler::new(1, 0);
        let e = s.wait(0, || "a lock".into()).unwrap_err();
        assert!(matches!(e, Error::Deadlock(m) if m.contains("rank 0 waits for a lock")));
    }
}
