//! The all-ranks rendezvous ([`World::rendezvous`]): every rank contributes
//! a value and every rank gets all of them. Barriers, allgathers, window
//! creation and the fences' votes go through it.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::clock::VClock;
use super::world::{relock, World, POLL};
use crate::error::{Error, Result};

type Shared = Arc<dyn Any + Send + Sync>;

#[derive(Default)]
pub(super) struct RendezvousState {
    pub(super) generation: u64,
    pub(super) slots: Vec<Option<Shared>>,
    pub(super) arrived: usize,
    pub(super) last: Option<Arc<Vec<Shared>>>,
    /// Checking mode: the clocks the ranks published on arrival, and their
    /// join once the exchange completed (every rank acquires it).
    pub(super) clocks: Vec<Option<VClock>>,
    pub(super) last_clock: Option<VClock>,
    /// Set once a rank returned while others waited for it in a collective:
    /// the communicator is broken and every later collective fails too.
    pub(super) broken: Option<Error>,
}

impl World {
    /// The collective primitive: every rank contributes a value, every rank
    /// gets all values (index = rank).
    pub(super) fn rendezvous(&self, rank: usize, value: Shared) -> Result<Arc<Vec<Shared>>> {
        self.point(rank);
        self.check_failed()?;
        self.entered[rank].fetch_add(1, Ordering::SeqCst);
        let mut ex = relock(&self.rendezvous);
        if let Some(e) = &ex.broken {
            return Err(e.clone());
        }
        let generation = ex.generation;
        ex.slots[rank] = Some(value);
        if let Some(c) = &self.clocks {
            ex.clocks[rank] = Some(c.release(rank));
        }
        ex.arrived += 1;
        // an arrival may complete the exchange, and makes this rank "in a
        // collective" for lock waiters' deadlock check
        self.wake();
        if ex.arrived == self.size {
            let all: Vec<Shared> = ex
                .slots
                .iter_mut()
                .map(|s| s.take().expect("arrived"))
                .collect();
            let all = Arc::new(all);
            ex.last = Some(all.clone());
            if let Some(c) = &self.clocks {
                let mut joined = VClock::zero(self.size);
                for v in ex.clocks.iter_mut().filter_map(Option::take) {
                    joined.join(&v);
                }
                c.acquire(rank, &joined);
                ex.last_clock = Some(joined);
            }
            ex.arrived = 0;
            ex.generation += 1;
            self.rendezvous_cv.notify_all();
            return Ok(all);
        }
        loop {
            if let Some(s) = &self.sched {
                drop(ex);
                let waited = s.wait(rank, || "the other ranks to join a collective".into());
                ex = relock(&self.rendezvous);
                if let (Err(e), true) = (waited, ex.generation == generation) {
                    ex.slots[rank] = None;
                    ex.clocks[rank] = None;
                    ex.arrived -= 1;
                    return Err(e);
                }
            } else {
                let (guard, _) = self
                    .rendezvous_cv
                    .wait_timeout(ex, POLL)
                    .unwrap_or_else(|e| e.into_inner());
                ex = guard;
            }
            if ex.generation != generation {
                if let (Some(c), Some(joined)) = (&self.clocks, &ex.last_clock) {
                    c.acquire(rank, joined);
                }
                return Ok(ex.last.clone().expect("completed exchange"));
            }
            if let Err(e) = self.check_failed() {
                ex.slots[rank] = None;
                ex.clocks[rank] = None;
                ex.arrived -= 1;
                return Err(e);
            }
            if ex.broken.is_none() {
                if let Some(gone) =
                    (0..self.size).find(|&r| ex.slots[r].is_none() && self.is_finished(r))
                {
                    self.wake();
                    ex.broken = Some(Error::Aborted {
                        rank: gone,
                        message: "rank returned without joining a collective the others entered"
                            .into(),
                    });
                }
            }
            if let Some(e) = ex.broken.clone() {
                ex.slots[rank] = None;
                ex.clocks[rank] = None;
                ex.arrived -= 1;
                return Err(e);
            }
        }
    }
}
