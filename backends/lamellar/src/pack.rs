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
//! Synchronisation is the window's: the origin holds its lock on the target
//! (shared for a get, exclusive for a write; the accumulate guard for an
//! accumulate) for the whole exchange and waits for the message's reply,
//! so the target's memory is accessed under the same exclusion as an RDMA
//! operation of the origin would be. No local view of the target's part
//! can be alive meanwhile: a mutable view needs the target's own exclusive
//! lock, which the origin's lock excludes, and an active message never
//! writes under a shared lock.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use distarray::{AccumulateOp, Element};
use lamellar::active_messaging::prelude::*;

/// This PE's part of one window's data region.
#[derive(Clone, Copy)]
struct Part {
    /// Address of the part.
    base: usize,
    /// Elements in the part (the region's per-PE capacity).
    cap: usize,
    /// Bytes per element.
    elem: usize,
    /// Combines `src` (packed elements) into `dst` element-wise.
    combine: unsafe fn(AccumulateOp, *mut u8, &[u8]),
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
/// elements of `T`) reachable by [`GatherRuns`] / [`ScatterRuns`].
pub(crate) fn register<T: Element>(id: u64, base: *mut T, cap: usize) {
    parts().get_or_insert_with(HashMap::new).insert(
        id,
        Part {
            base: base as usize,
            cap,
            elem: std::mem::size_of::<T>(),
            combine: combine_as::<T>,
        },
    );
}

/// Removes the region `id` (its memory is about to be released).
pub(crate) fn unregister(id: u64) {
    if let Some(p) = parts().as_mut() {
        p.remove(&id);
    }
}

/// The part `id`, if every run lies in it.
fn part_for(id: u64, runs: &[(usize, usize)]) -> Option<Part> {
    let p = *parts().as_ref()?.get(&id)?;
    runs.iter()
        .all(|&(o, l)| o.checked_add(l).is_some_and(|end| end <= p.cap))
        .then_some(p)
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
    let p = part_for(id, runs)?;
    let total: usize = runs.iter().map(|r| r.1).sum();
    let mut out = Vec::with_capacity(total * p.elem);
    for &(o, l) in runs {
        // SAFETY: `o + l <= cap` (checked above), so the bytes lie in this
        // PE's part, which lives while the entry is registered (the
        // table's lock is not needed past the check: the origin's epoch
        // keeps the regions alive, see the module documentation); the
        // origin's lock excludes every writer of these elements.
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
    let (Some(p), Some(op)) = (part_for(id, runs), op_of(op)) else {
        return false;
    };
    let total: usize = runs.iter().map(|r| r.1).sum();
    if total * p.elem != bytes.len() {
        return false;
    }
    let mut at = 0;
    for &(o, l) in runs {
        let n = l * p.elem;
        let dst = (p.base + o * p.elem) as *mut u8;
        // SAFETY: `o + l <= cap`: the bytes lie in this PE's part, alive
        // (see `gather`); the origin holds the exclusive lock (or, for an
        // accumulate, the accumulate guard inside an epoch admitting
        // writes), so nothing else accesses them; `bytes[at..at + n]` is a
        // separate buffer.
        unsafe {
            match op {
                None => std::ptr::copy_nonoverlapping(bytes[at..].as_ptr(), dst, n),
                Some(op) => (p.combine)(op, dst, &bytes[at..at + n]),
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
    use super::*;

    #[test]
    fn gather_and_scatter_check_bounds_and_combine() {
        let mut mem = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        register::<f64>(9001, mem.as_mut_ptr(), mem.len());
        let got = gather(9001, &[(1, 2), (4, 1)]).unwrap();
        assert_eq!(bytemuck::cast_slice::<u8, f64>(&got), &[2.0, 3.0, 5.0]);
        assert!(gather(9001, &[(5, 2)]).is_none(), "out of bounds");
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
}
