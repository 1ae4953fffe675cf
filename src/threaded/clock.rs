//! Vector clocks: the happens-before order between ranks that the race
//! detector ([`super::race`]) checks accesses against.
//!
//! Every rank owns one clock ([`Clocks`]). A *release* (unlock, entering a
//! collective) publishes a copy of the clock and then advances the rank's
//! own component; an *acquire* (a lock granted, leaving a collective) joins
//! the published copies it synchronises with. Event `a` of rank `r`
//! happened before the current point of rank `s` iff `a`'s own-component
//! stamp is at most `s`'s clock entry for `r`.

use std::sync::{Mutex, MutexGuard};

/// One vector clock: entry `r` is the latest event of rank `r` known here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VClock(Vec<u64>);

impl VClock {
    /// A clock that knows nothing (all zero) over `p` ranks.
    pub(crate) fn zero(p: usize) -> Self {
        VClock(vec![0; p])
    }

    /// Entry of rank `r`.
    #[inline]
    pub(crate) fn get(&self, r: usize) -> u64 {
        self.0[r]
    }

    /// Element-wise maximum with `other`.
    pub(crate) fn join(&mut self, other: &VClock) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a = (*a).max(*b);
        }
    }
}

/// The clocks of every rank of one run.
#[derive(Debug)]
pub(crate) struct Clocks {
    clocks: Vec<Mutex<VClock>>,
}

impl Clocks {
    /// Clocks of `p` ranks; rank `r` starts at 1 in its own entry, so
    /// that its first events are not "known" (0) to anyone else.
    pub(crate) fn new(p: usize) -> Self {
        Clocks {
            clocks: (0..p)
                .map(|r| {
                    let mut c = VClock::zero(p);
                    c.0[r] = 1;
                    Mutex::new(c)
                })
                .collect(),
        }
    }

    fn of(&self, r: usize) -> MutexGuard<'_, VClock> {
        // Only short, non-panicking updates happen under this mutex.
        self.clocks[r].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of rank `r`'s clock.
    pub(crate) fn snapshot(&self, r: usize) -> VClock {
        self.of(r).clone()
    }

    /// Rank `r`'s own entry: the stamp of its current event.
    pub(crate) fn now(&self, r: usize) -> u64 {
        self.of(r).0[r]
    }

    /// Release: returns the clock to publish and advances `r`'s own entry.
    pub(crate) fn release(&self, r: usize) -> VClock {
        let mut c = self.of(r);
        let published = c.clone();
        c.0[r] += 1;
        published
    }

    /// Acquire: joins a published clock into `r`'s clock.
    pub(crate) fn acquire(&self, r: usize, published: &VClock) {
        self.of(r).join(published);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_then_acquire_orders_events() {
        let c = Clocks::new(2);
        let stamp = c.now(0);
        assert!(c.snapshot(1).get(0) < stamp, "not yet ordered");
        let published = c.release(0);
        c.acquire(1, &published);
        assert!(c.snapshot(1).get(0) >= stamp, "ordered after the acquire");
        // Events of rank 0 after its release are not ordered before rank 1.
        assert!(c.now(0) > c.snapshot(1).get(0));
    }
}
