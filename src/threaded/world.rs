//! The state shared by all ranks of one run ([`World`]): who has failed
//! or returned, the schedule points and wake-ups of the controlled
//! schedule, and the broken-communicator state every wait checks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::clock::Clocks;
use super::deadlock::WaitGraph;
use super::rendezvous::RendezvousState;
use super::run::Mode;
use super::schedule::Scheduler;
use super::tree::Mailbox;
use crate::error::{Error, Result};

/// No rank (see `World::awaiting`).
pub(super) const NOBODY: usize = usize::MAX;

/// How often a blocked wait re-checks whether another rank failed.
pub(super) const POLL: Duration = Duration::from_millis(5);

pub(super) fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Internal state is only changed in short critical sections that do not
    // panic; a poisoned mutex (a panic elsewhere) still holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State shared by all ranks of one [`run`](super::run::run).
pub(super) struct World {
    pub(super) size: usize,
    pub(super) rendezvous: Mutex<RendezvousState>,
    pub(super) rendezvous_cv: Condvar,
    /// The first failure: (rank, message).
    pub(super) failure: Mutex<Option<(usize, String)>>,
    failed: AtomicBool,
    /// `finished[r]`: rank `r`'s closure has returned (or unwound).
    pub(super) finished: Vec<AtomicBool>,
    /// Who waits for which lock (lock-order cycle detection).
    pub(super) waits: WaitGraph,
    /// Controlled-schedule mode ([`replay`](super::run::replay),
    /// [`check`](super::run::check)).
    pub(super) sched: Option<Scheduler>,
    /// Checking mode: happens-before clocks for race detection.
    pub(super) clocks: Option<Clocks>,
    /// Point-to-point mailboxes of the tree collectives (index = receiver).
    pub(super) mailboxes: Vec<Mailbox>,
    /// `entered[r]`: collectives rank `r` has entered so far.
    pub(super) entered: Vec<AtomicU64>,
    /// `blocked[r]`: the number (`entered` value) of the tree collective
    /// rank `r` waits in, 0 when it waits in none.
    pub(super) blocked: Vec<AtomicU64>,
    /// Messages and bytes each rank has sent in tree collectives.
    pub(super) sent: Vec<(AtomicUsize, AtomicUsize)>,
    /// Neighbour exchanges: per (sender, receiver), how many messages the
    /// sender has sent and how many the receiver has claimed.
    pub(super) exchange_sent: Mutex<std::collections::HashMap<(usize, usize), u64>>,
    /// `awaiting[r]`: the rank whose exchange message rank `r` waits for
    /// ([`NOBODY`] when none): an exchange waits for its neighbours only,
    /// not for everybody as a collective does.
    pub(super) awaiting: Vec<AtomicUsize>,
    pub(super) exchange_claimed: Mutex<std::collections::HashMap<(usize, usize), u64>>,
}

impl World {
    pub(super) fn new(size: usize, mode: Mode) -> Self {
        World {
            size,
            rendezvous: Mutex::new(RendezvousState {
                slots: vec![None; size],
                clocks: vec![None; size],
                ..RendezvousState::default()
            }),
            rendezvous_cv: Condvar::new(),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            finished: (0..size).map(|_| AtomicBool::new(false)).collect(),
            waits: WaitGraph::new(size),
            sched: mode.seed.map(|seed| Scheduler::new(size, seed)),
            clocks: mode.checked.then(|| Clocks::new(size)),
            mailboxes: (0..size).map(|_| Mailbox::default()).collect(),
            entered: (0..size).map(|_| AtomicU64::new(0)).collect(),
            blocked: (0..size).map(|_| AtomicU64::new(0)).collect(),
            sent: (0..size)
                .map(|_| (AtomicUsize::new(0), AtomicUsize::new(0)))
                .collect(),
            exchange_sent: Mutex::new(Default::default()),
            awaiting: (0..size).map(|_| AtomicUsize::new(NOBODY)).collect(),
            exchange_claimed: Mutex::new(Default::default()),
        }
    }

    /// A schedule point (controlled-schedule mode; nothing otherwise).
    #[inline]
    pub(super) fn point(&self, rank: usize) {
        if let Some(s) = &self.sched {
            s.point(rank);
        }
    }

    /// Controlled-schedule mode: state a waiting rank may wait for changed.
    #[inline]
    pub(super) fn wake(&self) {
        if let Some(s) = &self.sched {
            s.wake_all();
        }
    }

    /// Wakes every thread waiting on a condition variable (mailboxes and
    /// the exchange) after a failure or a rank's return.
    pub(super) fn notify_waiters(&self) {
        self.rendezvous_cv.notify_all();
        for m in &self.mailboxes {
            m.cv.notify_all();
        }
    }

    /// The communicator is broken (a rank returned while others waited
    /// for it): the error every collective reports from now on.
    pub(super) fn broken(&self) -> Option<Error> {
        relock(&self.rendezvous).broken.clone()
    }

    pub(super) fn set_broken(&self, e: Error) {
        let mut ex = relock(&self.rendezvous);
        if ex.broken.is_none() {
            ex.broken = Some(e);
        }
        drop(ex);
        self.notify_waiters();
        self.wake();
    }

    pub(super) fn fail(&self, rank: usize, message: String) {
        let mut f = relock(&self.failure);
        if f.is_none() {
            *f = Some((rank, message));
        }
        self.failed.store(true, Ordering::SeqCst);
        self.notify_waiters();
        self.wake();
    }

    /// `Err(Aborted)` if some rank failed.
    pub(super) fn check_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            let (rank, message) = relock(&self.failure).clone().unwrap_or_default();
            return Err(Error::Aborted { rank, message });
        }
        Ok(())
    }

    pub(super) fn is_finished(&self, rank: usize) -> bool {
        self.finished[rank].load(Ordering::SeqCst)
    }
}
