//! [`GhostedBlock`]: a local copy of an arbitrary set of global entries of a
//! distributed array (the "ghost" or halo entries a stencil or a sparse
//! operator needs), fetched with the minimal number of RMA operations.
//!
//! Entries are deduplicated and ordered by owner rank and then by position
//! in the owner's part, so that [`GhostedBlock::sync`] issues **one `get`
//! per contiguous run of indices owned by one rank, in one epoch per rank**;
//! entries the calling rank owns are copied locally. The plan is built once
//! and reused by every later `sync` until new indices are pushed.
//!
//! ```
//! use distarray::{threaded, DistArray, GhostedBlock, OneSidedComm};
//! threaded::run_ok(2, |comm| {
//!     let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [10], |[i]| i as f64)?;
//!     let r = x.local_indices(comm.rank())?[0].clone();
//!     // the neighbours just outside this rank's range
//!     let mut g = GhostedBlock::new(&x);
//!     if r.start > 0 { g.push([r.start - 1])?; }
//!     if r.end < 10 { g.push([r.end])?; }
//!     g.sync(&x)?;
//!     if comm.rank() == 0 {
//!         assert_eq!(g.get_global([5])?, 5.0);
//!     }
//!     Ok(())
//! })
//! .unwrap();
//! ```

use crate::array::DistArray;
use crate::block::copy_runs;
use crate::comm::{Element, LockKind, OneSidedComm};
use crate::error::{Error, Result};
use crate::overlap::OpenReads;
use crate::partition::{linear_offset, ContinuousPartitioning};

/// The entries one rank owns, as runs of its window memory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GhostTarget {
    rank: usize,
    /// First slot of this rank's entries.
    first_slot: usize,
    /// Number of entries.
    count: usize,
    /// Runs `(offset, len)` of the rank's window part.
    runs: Vec<(usize, usize)>,
}

/// A set of global entries of a distributed array with local copies of
/// their values; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct GhostedBlock<T, const N: usize> {
    part: ContinuousPartitioning<N>,
    pending: Vec<[usize; N]>,
    ids: Vec<[usize; N]>,
    /// `(global linear index, slot)`, sorted by the index.
    lookup: Vec<(usize, usize)>,
    plan: Vec<GhostTarget>,
    values: Vec<T>,
    synced: bool,
}

impl<T: Element, const N: usize> GhostedBlock<T, N> {
    /// An empty ghost set for arrays partitioned like `array`.
    pub fn new<C: OneSidedComm>(array: &DistArray<T, C, N>) -> Self {
        GhostedBlock {
            part: array.partitioning().clone(),
            pending: Vec::new(),
            ids: Vec::new(),
            lookup: Vec::new(),
            plan: Vec::new(),
            values: Vec::new(),
            synced: false,
        }
    }

    /// A ghost set of the given global indices (duplicates allowed).
    pub fn from_global_ids<C: OneSidedComm>(
        array: &DistArray<T, C, N>,
        ids: impl IntoIterator<Item = [usize; N]>,
    ) -> Result<Self> {
        let mut g = Self::new(array);
        for i in ids {
            g.push(i)?;
        }
        Ok(g)
    }

    /// Adds a global index (checked against the shape); the values are
    /// fetched at the next [`GhostedBlock::sync`].
    pub fn push(&mut self, index: [usize; N]) -> Result<()> {
        self.part.check_index(index)?;
        self.pending.push(index);
        self.synced = false;
        Ok(())
    }

    /// Merges pushed indices and rebuilds the communication plan.
    fn replan(&mut self) -> Result<()> {
        let mut all: Vec<(usize, usize, [usize; N])> =
            Vec::with_capacity(self.ids.len() + self.pending.len());
        for &i in self.ids.iter().chain(&self.pending) {
            let (rank, off) = self.part.owner(i)?;
            all.push((rank, off, i));
        }
        self.pending.clear();
        all.sort_unstable_by_key(|&(r, o, _)| (r, o));
        all.dedup_by_key(|&mut (r, o, _)| (r, o));
        self.ids = all.iter().map(|e| e.2).collect();
        let shape = self.part.shape();
        self.lookup = self
            .ids
            .iter()
            .enumerate()
            .map(|(slot, i)| (linear_offset(&shape, i), slot))
            .collect();
        self.lookup.sort_unstable();
        self.plan.clear();
        for (slot, &(rank, off, _)) in all.iter().enumerate() {
            match self.plan.last_mut() {
                Some(t) if t.rank == rank => {
                    t.count += 1;
                    let last = t.runs.last_mut().expect("non-empty");
                    if last.0 + last.1 == off {
                        last.1 += 1;
                    } else {
                        t.runs.push((off, 1));
                    }
                }
                _ => self.plan.push(GhostTarget {
                    rank,
                    first_slot: slot,
                    count: 1,
                    runs: vec![(off, 1)],
                }),
            }
        }
        self.values = vec![T::default(); self.ids.len()];
        Ok(())
    }

    /// One-sided: fetches the current values of every entry from `array`
    /// (which must be partitioned like the array the set was made for).
    /// One `get` per contiguous run per remote rank; own entries are copied
    /// locally. Call it after the owners' writes are complete (e.g. after
    /// `array.barrier()`).
    pub fn sync<C: OneSidedComm>(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        if array.partitioning() != &self.part {
            return Err(Error::InvalidPartition(
                "GhostedBlock::sync with an array partitioned differently from the one it was built for".into(),
            ));
        }
        if !self.pending.is_empty() || self.values.len() != self.ids.len() {
            self.replan()?;
        }
        let me = array.comm().rank();
        for t in &self.plan {
            let dst = &mut self.values[t.first_slot..t.first_slot + t.count];
            if t.rank == me {
                array.with_local(|l| copy_runs(l.as_slice(), &t.runs, dst))?;
            } else {
                array.with_epoch(t.rank, LockKind::Shared, |w| {
                    w.get_runs(t.rank, &t.runs, dst)
                })?;
            }
        }
        self.synced = true;
        Ok(())
    }

    /// One-sided, like [`GhostedBlock::sync`], overlapping the transfer
    /// with `compute`: opens a shared epoch on every remote owner, issues
    /// all the gets (one per contiguous run; on MPI they are in flight
    /// together), copies the own entries, runs `compute` (say, a stencil on
    /// the interior of the local part, which needs no ghost) and only then
    /// completes the transfers (unlock). Returns what `compute` returned.
    ///
    /// The ghost values cannot be read before they are complete: `self` is
    /// borrowed until this returns. The epochs are closed also when
    /// `compute` panics. While they are open, `compute` must not wait for
    /// other ranks (no collectives) nor write `array` remotely.
    ///
    /// ```
    /// use distarray::{threaded, DistArray, GhostedBlock, OneSidedComm};
    /// threaded::run(3, |comm| -> distarray::Result<()> {
    ///     let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [9], |[i]| i as f64)?;
    ///     let r = x.local_indices(comm.rank())?[0].clone();
    ///     let mut g = GhostedBlock::new(&x);
    ///     if r.start > 0 { g.push([r.start - 1])?; }
    ///     if r.end < 9 { g.push([r.end])?; }
    ///     // the interior sum while the neighbours' values are in flight
    ///     let interior = g.sync_overlapped(&x, || x.with_local(|l| l.as_slice().iter().sum::<f64>()))??;
    ///     assert_eq!(interior, r.clone().map(|i| i as f64).sum::<f64>());
    ///     if r.end < 9 {
    ///         assert_eq!(g.get_global([r.end])?, r.end as f64);
    ///     }
    ///     Ok(())
    /// })
    /// .unwrap()
    /// .into_iter()
    /// .collect::<distarray::Result<Vec<_>>>()
    /// .unwrap();
    /// ```
    pub fn sync_overlapped<C: OneSidedComm, R>(
        &mut self,
        array: &DistArray<T, C, N>,
        compute: impl FnOnce() -> R,
    ) -> Result<R> {
        if array.partitioning() != &self.part {
            return Err(Error::InvalidPartition(
                "GhostedBlock::sync_overlapped with an array partitioned differently from the one it was built for".into(),
            ));
        }
        if !self.pending.is_empty() || self.values.len() != self.ids.len() {
            self.replan()?;
        }
        self.synced = false;
        let me = array.comm().rank();
        let win = array.window();
        let mut open = OpenReads::new(win);
        let total = self.values.len();
        let mut rest: &mut [T] = &mut self.values;
        let mut pieces = Vec::with_capacity(self.plan.len());
        for t in &self.plan {
            debug_assert_eq!(total - rest.len(), t.first_slot, "plan in slot order");
            let (dst, tail) = std::mem::take(&mut rest).split_at_mut(t.count);
            rest = tail;
            pieces.push((t, dst));
        }
        // locks in increasing rank order, the own part (its own lock, taken
        // and released) at its turn, as every multi-target operation does:
        // no cycle with another rank's ordered locks (see crate::pending)
        pieces.sort_by_key(|(t, _)| t.rank);
        for (t, dst) in pieces {
            if t.rank == me {
                array.with_local(|l| copy_runs(l.as_slice(), &t.runs, dst))?;
            } else {
                open.read(t.rank, &t.runs, dst)?;
            }
        }
        let out = compute();
        open.close()?;
        self.synced = true;
        Ok(out)
    }

    /// The slot of a global index in [`GhostedBlock::values`], if it is in
    /// the set (and the set has been synced since it was pushed).
    pub fn global_to_local(&self, index: [usize; N]) -> Option<usize> {
        if index.iter().zip(self.part.shape()).any(|(&i, n)| i >= n) {
            return None;
        }
        let key = linear_offset(&self.part.shape(), &index);
        self.lookup
            .binary_search_by_key(&key, |&(k, _)| k)
            .ok()
            .map(|p| self.lookup[p].1)
    }

    /// The value of a global index as of the last sync. Errors: not synced
    /// since indices were pushed, or the index is not in the set.
    pub fn get_global(&self, index: [usize; N]) -> Result<T> {
        if !self.synced {
            return Err(Error::InvalidArgument(
                "GhostedBlock read before sync (call sync after pushing indices)".into(),
            ));
        }
        self.global_to_local(index)
            .map(|s| self.values[s])
            .ok_or_else(|| {
                Error::InvalidArgument(format!("index {index:?} is not in this GhostedBlock"))
            })
    }

    /// The global indices, in slot order (by owner rank, then position in
    /// the owner's part), as of the last sync.
    pub fn global_ids(&self) -> &[[usize; N]] {
        &self.ids
    }

    /// The values, in slot order, as of the last sync.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// Number of distinct entries (as of the last sync).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// `true` if there are no entries (as of the last sync, like
    /// [`GhostedBlock::len`]).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Indices pushed since the last sync (not yet deduplicated).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The runs `(rank, runs)` the last sync fetched from each rank, for
    /// inspection and tests.
    pub fn plan(&self) -> Vec<(usize, Vec<(usize, usize)>)> {
        self.plan.iter().map(|t| (t.rank, t.runs.clone())).collect()
    }
}
