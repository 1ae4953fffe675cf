//! The barrier of a [`LamellarComm`](crate::LamellarComm): a
//! dissemination barrier over remote atomics, one flag word per round in
//! each PE's part of the barrier region.

use std::sync::atomic::Ordering;

use super::Comm;
use crate::backoff::backoff_until;

/// Words per PE of the barrier region: one flag per dissemination round.
pub(super) const BAR_WORDS: usize = 64;

impl Comm {
    /// Collective barrier for window creation (the guard is held).
    pub(crate) fn creation_barrier(&self) {
        self.sync();
    }

    /// Dissemination barrier over remote atomics (the caller holds the
    /// collective guard).
    ///
    /// Round `r`: tell PE `me + 2^r` that this PE reached barrier `e`, wait
    /// until PE `me - 2^r` told us the same. Lamellar's own barrier costs
    /// milliseconds here (its waiting thread runs runtime tasks); this one
    /// costs a few RDMA atomics per round.
    pub(super) fn sync(&self) {
        let inner = &*self.inner;
        let (me, n) = (inner.rank, inner.size);
        let e = inner.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        std::sync::atomic::fence(Ordering::SeqCst);
        let mut dist = 1;
        let mut round = 0;
        while dist < n {
            let to = (me + dist) % n;
            // SAFETY: `round < BAR_WORDS` (2^64 PEs are not possible); word
            // `round` of a PE is written only by its round-`round` partner,
            // and only with these atomics.
            unsafe { inner.bar.atomic_store(to, round, e).block() };
            // SAFETY: as above, on this PE's own part.
            backoff_until(
                || unsafe { inner.bar.atomic_load(me, round).block() } >= e,
                &|| self.progress(),
            );
            dist *= 2;
            round += 1;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        // every PE has completed every tree collective before this barrier
        inner
            .tree_safe
            .store(inner.tree_seq.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}
