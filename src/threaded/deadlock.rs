//! Lock-order cycles on OS threads: a rank waiting for a passive-target
//! lock publishes what it waits for in a [`WaitGraph`]; while it waits it
//! looks for a cycle through itself (rank 0 waits for a lock rank 1 holds,
//! rank 1 waits for a lock rank 0 holds, ...) and reports it as
//! [`Error::Deadlock`](crate::Error::Deadlock) instead of hanging.
//! (Under a controlled schedule the scheduler sees the same situation as
//! "every rank waits" and reports it itself.)
//!
//! # Why a reported cycle is real
//!
//! The graph is read without a global lock, so a single pass could mix
//! states of different moments. A cycle is reported only if it is seen by
//! three passes: the wait numbers of all its ranks (pass A), then the lock
//! holders of every edge (pass B), then the wait numbers again (pass C).
//! A rank whose wait number is the same in A and C waited the whole time
//! between, and a waiting rank takes and releases no lock, so what pass B
//! saw it hold it held throughout. At any moment between the end of A and
//! the start of C every rank of the cycle waits for a lock that the next
//! one holds and will never release: a deadlock.
//!
//! # Waiting for a rank that waits in a collective
//!
//! The other certain deadlock: a lock holder that waits in a collective
//! (or for a neighbour's exchange message) which needs the rank waiting
//! for its lock. [`World::blocked_in_collective`] tells.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::world::{relock, World, NOBODY};
use crate::collective::Phase;

/// The ranks currently holding a lock in a mode incompatible with a
/// waiter's request (read live from the lock).
pub(crate) type Holders = Arc<dyn Fn() -> Vec<usize> + Send + Sync>;

#[derive(Clone)]
struct Wait {
    seq: u64,
    holders: Holders,
    what: String,
}

/// Who waits for which lock (one slot per rank).
pub(crate) struct WaitGraph {
    waits: Vec<Mutex<Option<Wait>>>,
    next_seq: AtomicU64,
}

impl WaitGraph {
    pub(crate) fn new(p: usize) -> Self {
        WaitGraph {
            waits: (0..p).map(|_| Mutex::new(None)).collect(),
            next_seq: AtomicU64::new(1),
        }
    }

    fn slot(&self, r: usize) -> std::sync::MutexGuard<'_, Option<Wait>> {
        // Plain stores under this mutex: never poisoned halfway.
        self.waits[r].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `rank` starts waiting for a lock (`what`, e.g. "an Exclusive lock on
    /// rank 1"); `holders` reads the ranks blocking it.
    pub(crate) fn begin(&self, rank: usize, what: String, holders: Holders) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        *self.slot(rank) = Some(Wait { seq, holders, what });
    }

    /// `rank` stopped waiting (granted or failed).
    pub(crate) fn end(&self, rank: usize) {
        *self.slot(rank) = None;
    }

    fn wait_of(&self, r: usize) -> Option<Wait> {
        self.slot(r).clone()
    }

    /// A lock-order cycle through `me` (which must be waiting), described
    /// for the error message, or `None`.
    pub(crate) fn cycle_through(&self, me: usize) -> Option<String> {
        // Pass A: find a path of waits me -> ... -> me (depth-first).
        let start = self.wait_of(me)?;
        let mut path: Vec<(usize, Wait)> = vec![(me, start)];
        let found = self.extend(&mut path, me);
        if !found {
            return None;
        }
        // Pass B: every edge still holds.
        for (i, (_, wait)) in path.iter().enumerate() {
            let next = path.get(i + 1).map_or(me, |(r, _)| *r);
            if !(wait.holders)().contains(&next) {
                return None;
            }
        }
        // Pass C: every rank still in the same wait.
        for (r, wait) in &path {
            if self.wait_of(*r).map(|w| w.seq) != Some(wait.seq) {
                return None;
            }
        }
        let links: Vec<String> = path
            .iter()
            .enumerate()
            .map(|(i, (r, w))| {
                let next = path.get(i + 1).map_or(me, |(n, _)| *n);
                format!("rank {r} waits for {} held by rank {next}", w.what)
            })
            .collect();
        Some(format!("lock-order cycle: {}", links.join(", ")))
    }

    /// Depth-first: extends `path` (ending at a waiting rank) to a cycle
    /// back to `me`.
    fn extend(&self, path: &mut Vec<(usize, Wait)>, me: usize) -> bool {
        let holders = (path.last().expect("non-empty").1.holders)();
        for h in holders {
            if h == me {
                return true;
            }
            if path.iter().any(|(r, _)| *r == h) {
                continue;
            }
            if let Some(w) = self.wait_of(h) {
                path.push((h, w));
                if self.extend(path, me) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
}

/// Removes a rank's entry from the wait graph when its lock wait ends.
pub(super) struct WaitRegistration<'a> {
    pub(super) graph: &'a WaitGraph,
    pub(super) rank: usize,
}

impl Drop for WaitRegistration<'_> {
    fn drop(&mut self) {
        self.graph.end(self.rank);
    }
}

impl World {
    /// `true` while `rank` waits in a collective that has not completed
    /// and that `me` has not entered yet (so `rank` waits for `me`).
    pub(super) fn blocked_in_collective(&self, rank: usize, me: usize) -> bool {
        // in an exchange `rank` waits for one neighbour's message: for `me`
        // only if that neighbour is `me` and its message is not there yet
        let awaited = self.awaiting[rank].load(Ordering::SeqCst);
        if awaited != NOBODY {
            return awaited == me
                && !relock(&self.mailboxes[rank].queue)
                    .iter()
                    .any(|m| m.from == me && m.phase == Phase::Exchange);
        }
        let tree = self.blocked[rank].load(Ordering::SeqCst);
        (tree != 0 && self.entered[me].load(Ordering::SeqCst) < tree)
            || relock(&self.rendezvous).slots[rank].is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_ranks_waiting_for_each_other_form_a_cycle() {
        let g = WaitGraph::new(3);
        g.begin(0, "lock x".into(), Arc::new(|| vec![1]));
        assert!(g.cycle_through(0).is_none(), "rank 1 is not waiting");
        g.begin(1, "lock y".into(), Arc::new(|| vec![2]));
        assert!(g.cycle_through(0).is_none(), "rank 2 is not waiting");
        g.begin(2, "lock z".into(), Arc::new(|| vec![0]));
        let c = g.cycle_through(0).unwrap();
        assert!(c.contains("rank 2 waits for lock z held by rank 0"), "{c}");
        g.end(2);
        assert!(g.cycle_through(0).is_none());
    }
}
