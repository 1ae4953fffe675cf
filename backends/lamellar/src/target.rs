//! Per-target synchronisation words of a window, manipulated with remote
//! atomics: the passive-target reader/writer lock and the accumulate guard.
//!
//! Lamellar memory regions offer RDMA get/put and remote atomic
//! load / store / swap on integers, but no remote compare-and-swap and no
//! remote add. Every PE's part of a window's control region ([`Ctl`]) holds
//! three words:
//!
//! * `LOCK_GUARD` — a test-and-set spin lock (taken with `atomic_swap(1)`,
//!   released with `atomic_store(0)`) that protects `LOCK_WORD`;
//! * `LOCK_WORD` — the passive-target lock of the PE's part: the number of
//!   shared holders, or [`WRITER`] for an exclusive one. `lock` takes the
//!   guard, reads the word, updates it if the request is compatible,
//!   releases the guard, and retries with back-off if it was not;
//! * `ACC_GUARD` — a test-and-set lock held while an accumulate reads,
//!   combines ([`Element::combine`](distarray::Element::combine)) and writes
//!   back its elements: accumulates to one target are serialised, hence
//!   element-wise atomic with respect to each other (the MPI guarantee).
//!
//! An earlier version executed these read-modify-writes at the target with
//! active messages; on the `shmem` lamellae an active-message round trip
//! took 0.8–3 ms here, against about a microsecond for the remote atomics
//! and RDMA used now (see BENCHMARKS-lamellar.md).

use lamellar::memregion::prelude::*;

use crate::backoff::backoff_until;

/// Words per PE in the control region.
pub(crate) const CTL_WORDS: usize = 3;
const LOCK_GUARD: usize = 0;
const LOCK_WORD: usize = 1;
const ACC_GUARD: usize = 2;

/// `LOCK_WORD` value of an exclusive holder.
const WRITER: u64 = 1 << 63;

/// The control region of one window.
#[derive(Clone)]
pub(crate) struct Ctl {
    region: SharedMemoryRegion<u64>,
}

impl Ctl {
    /// Wraps a region of at least `CTL_WORDS` zeroed words per PE.
    pub(crate) fn new(region: SharedMemoryRegion<u64>) -> Self {
        debug_assert!(region.len() >= CTL_WORDS);
        Ctl { region }
    }

    fn swap(&self, pe: usize, word: usize, val: u64) -> u64 {
        // SAFETY: `word < CTL_WORDS <= region.len()`; `pe` was checked by the
        // caller (`EpochTracker` / `WindowLayout`). The control words are
        // only ever accessed with these atomics.
        unsafe { self.region.atomic_swap(pe, word, val).block() }
    }

    fn load(&self, pe: usize, word: usize) -> u64 {
        // SAFETY: as in `swap`.
        unsafe { self.region.atomic_load(pe, word).block() }
    }

    fn store(&self, pe: usize, word: usize, val: u64) {
        // SAFETY: as in `swap`.
        unsafe { self.region.atomic_store(pe, word, val).block() }
    }

    /// Takes the test-and-set lock `word` of `pe` (blocking).
    fn guard(&self, pe: usize, word: usize, progress: &dyn Fn()) {
        backoff_until(|| self.swap(pe, word, 1) == 0, progress);
    }

    /// One attempt to take the passive-target lock of `pe`.
    fn try_lock(&self, pe: usize, exclusive: bool, progress: &dyn Fn()) -> bool {
        self.guard(pe, LOCK_GUARD, progress);
        let w = self.load(pe, LOCK_WORD);
        let granted = if exclusive { w == 0 } else { w & WRITER == 0 };
        if granted {
            self.store(pe, LOCK_WORD, if exclusive { WRITER } else { w + 1 });
        }
        self.store(pe, LOCK_GUARD, 0);
        granted
    }

    /// Takes the passive-target lock of `pe` (blocking until compatible).
    pub(crate) fn lock(&self, pe: usize, exclusive: bool, progress: &dyn Fn()) {
        backoff_until(|| self.try_lock(pe, exclusive, progress), progress);
    }

    /// Releases a lock taken with [`Ctl::lock`].
    pub(crate) fn unlock(&self, pe: usize, exclusive: bool, progress: &dyn Fn()) {
        self.guard(pe, LOCK_GUARD, progress);
        let w = self.load(pe, LOCK_WORD);
        let new = if exclusive {
            debug_assert_eq!(w, WRITER, "exclusive unlock of a lock word {w:#x}");
            0
        } else {
            debug_assert!(
                w > 0 && w & WRITER == 0,
                "shared unlock of a lock word {w:#x}"
            );
            w.saturating_sub(1)
        };
        self.store(pe, LOCK_WORD, new);
        self.store(pe, LOCK_GUARD, 0);
    }

    /// Runs `f` while holding the accumulate guard of `pe`.
    pub(crate) fn with_acc_guard<R>(
        &self,
        pe: usize,
        progress: &dyn Fn(),
        f: impl FnOnce() -> R,
    ) -> R {
        self.guard(pe, ACC_GUARD, progress);
        // Released also if `f` panics (the process exits then anyway, but a
        // stuck guard would be worse).
        struct Release<'a>(&'a Ctl, usize);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(self.1, ACC_GUARD, 0);
            }
        }
        let _release = Release(self, pe);
        f()
    }
}
