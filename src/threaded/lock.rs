//! Passive-target locks: a segment's lock state ([`PassiveLock`]), and
//! acquiring (with deadlock detection) and releasing it.

use std::sync::Arc;

use super::deadlock::WaitRegistration;
use super::window::ThreadedWindow;
use super::world::{relock, POLL};
use crate::comm::{Element, LockKind};
use crate::error::{Error, Result};

/// Passive-target lock state of one segment.
#[derive(Default)]
pub(super) struct PassiveLock {
    exclusive: Option<usize>,
    shared: Vec<usize>,
}

impl<T: Element> ThreadedWindow<T> {
    pub(super) fn release_lock(&self, target: usize) {
        let seg = &self.segments[target];
        let mut l = relock(&seg.lock);
        if l.exclusive == Some(self.rank) {
            l.exclusive = None;
        } else if let Some(i) = l.shared.iter().position(|&r| r == self.rank) {
            l.shared.swap_remove(i);
        }
        seg.lock_cv.notify_all();
        self.world.wake();
    }

    /// Blocks until the passive lock on `target` is granted.
    pub(super) fn acquire(&self, target: usize, kind: LockKind) -> Result<()> {
        let seg = &self.segments[target];
        let mut l = relock(&seg.lock);
        // Registered in the wait graph after the first wait times out.
        let mut registered: Option<WaitRegistration<'_>> = None;
        let mut waited = false;
        let is_free = |l: &PassiveLock| match kind {
            LockKind::Shared => l.exclusive.is_none(),
            LockKind::Exclusive => l.exclusive.is_none() && l.shared.is_empty(),
        };
        loop {
            if is_free(&l) {
                match kind {
                    LockKind::Shared => l.shared.push(self.rank),
                    LockKind::Exclusive => l.exclusive = Some(self.rank),
                }
                return Ok(());
            }
            self.world.check_failed()?;
            let holders = l.exclusive.iter().chain(l.shared.iter());
            if let Some(&gone) = holders.clone().find(|&&r| self.world.is_finished(r)) {
                return Err(Error::Aborted {
                    rank: gone,
                    message: format!("rank {gone} returned while holding a lock on rank {target}"),
                });
            }
            // A holder waiting in a collective needs this rank to join it,
            // and this rank waits for the holder: a certain deadlock (each
            // rank is one thread). Report it instead of hanging.
            if let Some(&h) = holders
                .clone()
                .find(|&&r| self.world.blocked_in_collective(r, self.rank))
            {
                return Err(Error::Deadlock(format!(
                    "rank {} waits for a lock on rank {target} held by rank {h}, which waits in a \
                     collective operation that needs rank {} (do not call collectives while \
                     holding a lock, e.g. inside with_local / with_local_mut)",
                    self.rank, self.rank
                )));
            }
            if let Some(s) = &self.world.sched {
                drop(l);
                s.wait(self.rank, || format!("a {kind:?} lock on rank {target}"))?;
                l = relock(&seg.lock);
            } else {
                if waited {
                    // Still waiting after a poll: look for a lock-order
                    // cycle (without holding this lock's mutex, which the
                    // graph reads).
                    drop(l);
                    let graph = &self.world.waits;
                    if registered.is_none() {
                        let seg = seg.clone();
                        graph.begin(
                            self.rank,
                            format!("a {kind:?} lock on rank {target}"),
                            Arc::new(move || {
                                let l = relock(&seg.lock);
                                match kind {
                                    LockKind::Shared => l.exclusive.iter().copied().collect(),
                                    LockKind::Exclusive => {
                                        l.exclusive.iter().chain(&l.shared).copied().collect()
                                    }
                                }
                            }),
                        );
                        registered = Some(WaitRegistration {
                            graph,
                            rank: self.rank,
                        });
                    }
                    if let Some(cycle) = graph.cycle_through(self.rank) {
                        return Err(Error::Deadlock(cycle));
                    }
                    l = relock(&seg.lock);
                    if is_free(&l) {
                        continue;
                    }
                }
                l = seg
                    .lock_cv
                    .wait_timeout(l, POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                waited = true;
            }
        }
    }
}
