//! Strided transfers in one active message per target ("pack").
//!
//! A batch of runs to one remote PE (a 2-D block: one run per row) would
//! otherwise be one RDMA operation per run, i.e. one network operation per
//! row on a network lamellae. Instead the origin sends one active message
//! that the target PE's runtime executes on its own memory:
//!
//! * [`GatherRuns`] copies the runs of the target's part into one buffer
//!   and returns it (a get);
//! * [`ScatterRuns`] carries the packed data and copies it into the runs,
//!   or combines it element-wise with an [`AccumulateOp`] (a put or an
//!   accumulate).
//!
//! The target finds the memory through a process-wide table of this PE's
//! window regions ([`register`]), keyed by the regions' id (the same on
//! every PE: regions are allocated collectively). An entry lives exactly
//! as long as its regions (`Regions`' drop removes it), and regions are
//! reused or freed only once every PE has dropped their window, so a
//! message from an origin still in an epoch on the window always finds its
//! memory. Bounds are checked again at the target (a message out of
//! bounds or for an unknown region is refused, never executed).
//!
//! # Synchronisation
//!
//! The window's epochs do not make a message the only access to the
//! elements it touches: the origin holds its lock on the target (shared
//! for a get, exclusive for a write, plus the accumulate guard for an
//! accumulate) for the whole exchange, but several threads of the origin
//! share that one lock (the checked layer lets them issue operations
//! concurrently under it), and in a fence epoch puts and accumulates take
//! no lock at all. Two messages, or a message and this PE's own copy into
//! or out of its part (`Live::load` / `Live::store` in `window.rs`), may
//! then touch the same bytes; both run on threads of this process (the
//! runtime's workers, or any thread of this PE driving the runtime), so
//! unsynchronised that would be a data race, not just MPI's "undefined
//! outcome". Every entry therefore carries the part's [`PartLock`], and
//! every access to the part made by a thread of this process outside a
//! local view holds it: shared to read (a gather, the own part's load),
//! exclusive to write (a scatter, the own part's store and accumulate).
//! A message holds it across all its runs, and so does a batch of runs of
//! this PE to its own part (`get_runs` / `write_runs` on the own rank),
//! taking it once rather than once per run. Hence, on this PE:
//!
//! * no two of these accesses race;
//! * a packed put or accumulate, and a batch of own-part writes, is
//!   applied whole, and a packed get or a batch of own-part reads sees its
//!   runs at one instant, with respect to the other messages and this
//!   PE's own copies of its part. Which of two conflicting writes lands
//!   last is still unspecified, as in MPI; accumulates to the same target
//!   stay element-wise atomic with respect to each other through the
//!   accumulate guard.
//!
//! What the lock does not cover:
//!
//! * Local views ([`RawWindow::with_local`](distarray::RawWindow::with_local))
//!   take no part lock: a view needs this PE's own lock on its part (never
//!   a fence epoch), which excludes every other PE's writer (and a mutable
//!   one every reader), and the checked layer keeps this PE's own
//!   conflicting operations out while it lives. Taking the lock there could
//!   deadlock: the view's closure may wait for a message that needs it.
//! * RDMA of other PEs into or out of this part: on `shmem` a copy made by
//!   another process through its own mapping of the segment; on a network
//!   lamellae the NIC, or a provider that emulates RDMA in software (e.g.
//!   libfabric's `tcp`) in its progress engine, which may run on a thread
//!   of this process but in C, under no lock of ours. Only the epochs order
//!   these against the accesses here. A conflicting pair in one fence epoch
//!   (say a single-run RDMA put of PE 1 and a packed put of PE 2 to the
//!   same elements) gives unspecified bytes (every bit pattern is a value
//!   of a plain-data [`Element`]), as with MPI; such accesses lie outside
//!   what Rust's memory model describes, and this module claims nothing
//!   more for them. (This PE's own threads' RDMA to another PE, on `shmem`
//!   copies through this process's mapping of that PE's part, holds a lock
//!   of the window's instead: `WindowCore::rdma` in `window.rs`.)
//!
//! The lock is held only around copies and combines: no Lamellar call, no
//! wait and no other lock is taken while it is held (the table's mutex is
//! released before it is taken; the accumulate guard is taken before it),
//! so a thread blocked on it waits only for a bounded copy, never for the
//! runtime, and a message blocked on it cannot hold up its holder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use distarray::{AccumulateOp, Element};
use lamellar::active_messaging::prelude::*;

/// Serialises the accesses of this process's threads to one part of a
/// window region (see the module documentation): shared to read, exclusive
/// to write. Shared by the region's entry in the table and every window
/// over the region.
#[derive(Clone, Default)]
pub(crate) struct PartLock(Arc<RwLock<()>>);

/// A shared hold of a [`PartLock`].
pub(crate) type PartRead<'a> = RwLockReadGuard<'a, ()>;
/// An exclusive hold of a [`PartLock`].
pub(crate) type PartWrite<'a> = RwLockWriteGuard<'a, ()>;

impl PartLock {
    /// Held while reading the part. Never hold it across a Lamellar call,
    /// a wait or another lock.
    pub(crate) fn read(&self) -> PartRead<'_> {
        // The lock guards no data of its own: a panic under it leaves
        // nothing inconsistent to protect.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Held while writing the part (as [`PartLock::read`]).
    pub(crate) fn write(&self) -> PartWrite<'_> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// This PE's part of one window's data region.
#[derive(Clone)]
struct Part {
    /// Address of the part.
    base: usize,
    /// Elements in the part (the region's per-PE capacity).
    cap: usize,
    /// Bytes per element.
    elem: usize,
    /// Combines `src` (packed elements) into `dst` element-wise.
    combine: unsafe fn(AccumulateOp, *mut u8, &[u8]),
    /// Held around every access to the part.
    lock: PartLock,
}

/// This PE's window regions, by id (see the module documentation).
static PARTS: Mutex<Option<HashMap<u64, Part>>> = Mutex::new(None);

fn parts() -> MutexGuard<'static, Option<HashMap<u64, Part>>> {
    PARTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Combines the packed elements `src` into the `T`s at `dst`.
///
/// # Safety
///
/// `dst` is valid for reads and writes of `src.len() / size_of::<T>()`
/// aligned `T`s that no one else accesses meanwhile.
unsafe fn combine_as<T: Element>(op: AccumulateOp, dst: *mut u8, src: &[u8]) {
    let size = std::mem::size_of::<T>();
    let dst = dst.cast::<T>();
    for (i, s) in src.chunks_exact(size).enumerate() {
        let s: T = bytemuck::pod_read_unaligned(s);
        // SAFETY: `i < src.len() / size`, inside the caller's range.
        unsafe {
            let d = dst.add(i);
            d.write(T::combine(op, d.read(), s));
        }
    }
}

/// Makes this PE's part of the data region `id` (at `base`, `cap`
/// elements of `T`) reachable by [`GatherRuns`] / [`ScatterRuns`], with a
/// new [`PartLock`] (see [`part_lock`]).
pub(crate) fn register<T: Element>(id: u64, base: *mut T, cap: usize) {
    parts().get_or_insert_with(HashMap::new).insert(
        id,
        Part {
            base: base as usize,
            cap,
            elem: std::mem::size_of::<T>(),
            combine: combine_as::<T>,
            lock: PartLock::default(),
        },
    );
}

/// The lock of this PE's part of the registered region `id`, which every
/// window over the region takes around its own accesses to the part.
pub(crate) fn part_lock(id: u64) -> Option<PartLock> {
    Some(parts().as_ref()?.get(&id)?.lock.clone())
}

/// Removes the region `id` (its memory is about to be released).
pub(crate) fn unregister(id: u64) {
    if let Some(p) = parts().as_mut() {
        p.remove(&id);
    }
}

/// The part `id` and the total bytes of `runs`, if every run lies in it.
fn part_for(id: u64, runs: &[(usize, usize)]) -> Option<(Part, usize)> {
    // Cloned: the table's mutex is released before the part's lock is
    // taken.
    let p = parts().as_ref()?.get(&id)?.clone();
    let mut total = 0usize;
    for &(o, l) in runs {
        if o.checked_add(l)? > p.cap {
            return None;
        }
        // `l * elem` fits: the run lies in the part, which is in memory.
        total = total.checked_add(l * p.elem)?;
    }
    Some((p, total))
}

/// Wire code of an optional accumulate op (`None`: a put).
pub(crate) fn op_code(op: Option<AccumulateOp>) -> u8 {
    match op {
        None => 0,
        Some(AccumulateOp::Replace) => 1,
        Some(AccumulateOp::Sum) => 2,
        Some(AccumulateOp::Prod) => 3,
        Some(AccumulateOp::Min) => 4,
        Some(AccumulateOp::Max) => 5,
    }
}

fn op_of(code: u8) -> Option<Option<AccumulateOp>> {
    Some(match code {
        0 => None,
        1 => Some(AccumulateOp::Replace),
        2 => Some(AccumulateOp::Sum),
        3 => Some(AccumulateOp::Prod),
        4 => Some(AccumulateOp::Min),
        5 => Some(AccumulateOp::Max),
        _ => return None,
    })
}

/// Gathers the runs `(offset, len)` (in elements) of this PE's part of
/// region `id` into one buffer; `None` for an unknown region or a run out
/// of bounds.
fn gather(id: u64, runs: &[(usize, usize)]) -> Option<Vec<u8>> {
    let (p, total) = part_for(id, runs)?;
    let mut out = Vec::with_capacity(total);
    let _read = p.lock.read();
    for &(o, l) in runs {
        // SAFETY: `o + l <= cap` (checked by `part_for`), so the bytes lie
        // in this PE's part, which lives while the entry is registered (the
        // table's mutex is not needed past the check: the origin's epoch
        // keeps the regions alive, see the module documentation). We hold
        // the part's lock shared, so no thread of this process writes them
        // meanwhile (every such write holds it exclusively), and no local
        // view that could write them is alive (a mutable view needs this
        // PE's exclusive lock on its part, which excludes the origin's
        // epoch). The slice dies before the lock is released.
        let src =
            unsafe { std::slice::from_raw_parts((p.base + o * p.elem) as *const u8, l * p.elem) };
        out.extend_from_slice(src);
    }
    Some(out)
}

/// Copies (or combines with `op`) the packed `bytes` into the runs of
/// this PE's part of region `id`; `false` (nothing written) for an unknown
/// region, a run out of bounds or a length mismatch.
fn scatter(id: u64, runs: &[(usize, usize)], op: u8, bytes: &[u8]) -> bool {
    let (Some((p, total)), Some(op)) = (part_for(id, runs), op_of(op)) else {
        return false;
    };
    if total != bytes.len() {
        return false;
    }
    let _write = p.lock.write();
    let mut at = 0;
    for &(o, l) in runs {
        let n = l * p.elem;
        // `at + n <= total == bytes.len()`: the sum did not overflow.
        let src = &bytes[at..at + n];
        let dst = (p.base + o * p.elem) as *mut u8;
        // SAFETY: `o + l <= cap` (checked by `part_for`): the `n` bytes lie
        // in this PE's part, alive (see `gather`). We hold the part's lock
        // exclusively, so no thread of this process reads or writes them
        // meanwhile (every such access holds the lock), and no local view
        // of them is alive (a view needs this PE's lock on its part, which
        // excludes the origin's write epoch; a fence epoch has no views).
        // `src` is a separate buffer (the message's), exactly `n` bytes.
        unsafe {
            match op {
                None => std::ptr::copy_nonoverlapping(src.as_ptr(), dst, n),
                Some(op) => (p.combine)(op, dst, src),
            }
        }
        at += n;
    }
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    true
}

/// A packed get: the runs of the target's part of region `id`, returned in
/// one buffer (`None`: refused).
#[lamellar::AmData(Debug, Clone)]
pub(crate) struct GatherRuns {
    pub(crate) id: u64,
    /// `(offset, len)` in elements.
    pub(crate) runs: Vec<(usize, usize)>,
}

#[lamellar::am]
impl LamellarAM for GatherRuns {
    async fn exec(self) -> Option<Vec<u8>> {
        gather(self.id, &self.runs)
    }
}

/// A packed put or accumulate: `bytes` written into (or combined with
/// [`op_code`] `op` into) the runs of the target's part of region `id`
/// (`false`: refused, nothing written).
#[lamellar::AmData(Debug, Clone)]
pub(crate) struct ScatterRuns {
    pub(crate) id: u64,
    /// `(offset, len)` in elements.
    pub(crate) runs: Vec<(usize, usize)>,
    pub(crate) op: u8,
    pub(crate) bytes: Vec<u8>,
}

#[lamellar::am]
impl LamellarAM for ScatterRuns {
    async fn exec(self) -> bool {
        scatter(self.id, &self.runs, self.op, &self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn gather_and_scatter_check_bounds_and_combine() {
        let mut mem = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        register::<f64>(9001, mem.as_mut_ptr(), mem.len());
        let got = gather(9001, &[(1, 2), (4, 1)]).unwrap();
        assert_eq!(bytemuck::cast_slice::<u8, f64>(&got), &[2.0, 3.0, 5.0]);
        assert!(gather(9001, &[(5, 2)]).is_none(), "out of bounds");
        assert!(gather(9001, &[(usize::MAX, 2)]).is_none(), "wrapping run");
        assert!(gather(9002, &[(0, 1)]).is_none(), "unknown region");
        let add = bytemuck::cast_slice::<f64, u8>(&[10.0, 20.0]).to_vec();
        assert!(scatter(
            9001,
            &[(0, 1), (5, 1)],
            op_code(Some(AccumulateOp::Sum)),
            &add
        ));
        assert!(
            !scatter(9001, &[(0, 1)], op_code(None), &add),
            "length mismatch"
        );
        assert!(scatter(9001, &[(2, 2)], op_code(None), &add));
        unregister(9001);
        assert!(gather(9001, &[(0, 1)]).is_none());
        assert_eq!(mem, [11.0, 2.0, 10.0, 20.0, 5.0, 26.0]);
    }

    /// Several threads scatter whole messages of their own values into the
    /// same overlapping runs (as the messages of several origin threads,
    /// or of several PEs in a fence epoch, run concurrently on a target's
    /// workers) while others gather them: every gather sees one writer's
    /// message whole (the part's lock is held across all runs of a
    /// message), never a mix, and so does the end state. The readers
    /// gather until the last writer is done, one of them the runs in the
    /// reverse order: without the lock (a data race) it sees a mix whenever
    /// it overlaps a write at all.
    #[test]
    fn concurrent_scatters_and_gathers_are_whole() {
        const ID: u64 = 9101;
        const RUN: usize = 1 << 14;
        const WRITERS: u64 = 3;
        const ROUNDS: usize = 100;
        // two runs with a gap, the second one overlapping nothing else
        let runs = [(0, RUN), (RUN + 7, RUN)];
        let mut mem = vec![0u64; 2 * RUN + 7];
        register::<u64>(ID, mem.as_mut_ptr(), mem.len());
        let lock = part_lock(ID).expect("registered");
        let writing = &AtomicU64::new(WRITERS);
        // writer `w`'s value in its rounds `k`, `k + 2`, ...
        let value = |w: u64, k: usize| w * 1000 + k as u64;
        std::thread::scope(|s| {
            for w in 1..=WRITERS {
                s.spawn(move || {
                    // built once: the writers spend their time in scatters
                    // (each changes every value: the previous write was
                    // another writer's or this one's other value)
                    let values = [0, 1].map(|k| vec![value(w, k); 2 * RUN]);
                    let zero = vec![0u8; 2 * RUN * 8];
                    for r in 0..ROUNDS {
                        let bytes = bytemuck::cast_slice::<u64, u8>(&values[r % 2]);
                        assert!(scatter(ID, &runs, op_code(None), bytes));
                        if r % 8 == 0 {
                            // an accumulate in between: +0 keeps the value
                            let op = op_code(Some(AccumulateOp::Sum));
                            assert!(scatter(ID, &runs, op, &zero));
                        }
                    }
                    writing.fetch_sub(1, Ordering::SeqCst);
                });
            }
            // one reader in the writers' order, one in the reverse order
            // (which sees a mix whenever it overlaps a write at all)
            for order in [runs, [runs[1], runs[0]]] {
                s.spawn(move || loop {
                    let done = writing.load(Ordering::SeqCst) == 0;
                    let got = gather(ID, &order).unwrap();
                    let got = bytemuck::cast_slice::<u8, u64>(&got);
                    assert!(
                        got.iter().all(|&x| x == got[0]),
                        "a gather saw a mix of writers: {} then {}",
                        got[0],
                        got.iter().find(|&&x| x != got[0]).unwrap()
                    );
                    if done {
                        break;
                    }
                });
            }
        });
        // the same lock serves the windows over the region
        drop(lock.write());
        unregister(ID);
        assert!(part_lock(ID).is_none());
        let v = mem[0];
        assert!(
            (1..=WRITERS).any(|w| v == value(w, (ROUNDS - 1) % 2)),
            "{v}"
        );
        assert!(mem[..RUN].iter().all(|&x| x == v));
        assert!(mem[RUN..RUN + 7].iter().all(|&x| x == 0));
        assert!(mem[RUN + 7..].iter().all(|&x| x == v));
    }
}
