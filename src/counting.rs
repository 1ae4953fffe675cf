//! [`CountingComm`]: a wrapper backend that counts, per rank, RMA operations
//! per kind and per target rank, the messages and bytes they send to other
//! ranks, and the collectives called (with their payload bytes), over any
//! [`OneSidedComm`]. Tests use it to assert that blocks, ghosts and
//! redistribution use the minimal number of calls and that reductions and
//! solvers cost a bounded number of collectives whatever `P`.
//!
//! ```
//! use distarray::counting::CountingComm;
//! use distarray::{threaded, Block, DistArray, OneSidedComm};
//! threaded::run(2, |comm| {
//!     let comm = CountingComm::new(comm);
//!     let a = DistArray::<f64, _, 2>::new(comm.clone(), [4, 5]).unwrap();
//!     comm.reset();
//!     // rows 1..3: one contiguous run on each rank; only rank 1's is remote for rank 0
//!     let _ = a.get_block(&Block::new([1..3, 0..5])).unwrap();
//!     let c = comm.counts();
//!     assert_eq!(c.gets_total(), 1);
//!     assert_eq!(c.gets[1 - comm.rank()], 1);
//! })
//! .unwrap();
//! ```

use std::sync::{Arc, Mutex};

use crate::collective::Combiner;
use crate::comm::{AccumulateOp, Element, LockKind, NeighbourMessages, OneSidedComm};
use crate::error::Result;
use crate::rma::RawWindow;

/// Operation counts of one rank, per target (index = target rank). A `*_runs`
/// call counts one operation per run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// `get` operations.
    pub gets: Vec<usize>,
    /// `put` operations.
    pub puts: Vec<usize>,
    /// `accumulate` operations.
    pub accumulates: Vec<usize>,
    /// `lock` calls (epochs opened).
    pub locks: Vec<usize>,
    /// RMA calls as the program issued them: one per `get`, `put` or
    /// `accumulate` and one per `*_runs` batch, whatever its number of runs
    /// (a strided block is one batch per target). The MPI backend issues a
    /// batch of several runs as one operation (a derived datatype), so on
    /// MPI this is its count of RMA operations; the threaded and Lamellar
    /// backends move each run on its own (counted in `gets`, `puts` and
    /// `accumulates`).
    pub batches: Vec<usize>,
    /// Elements moved by gets, puts and accumulates.
    pub elements: usize,
    /// Gets, puts and accumulates to *other* ranks (one per run), and the
    /// messages of neighbour exchanges: what this rank sends over a network.
    pub messages: usize,
    /// Bytes moved by those messages.
    pub bytes: usize,
    /// Collective calls of every kind (barrier, allgather, allreduce,
    /// broadcast, window creation, fence).
    pub collectives: usize,
    /// Of those, allgathers (O(P) data per rank each).
    pub allgathers: usize,
    /// Payload bytes this rank passed to collectives (its contribution to
    /// an allgather, allreduce or broadcast; none for barriers).
    pub collective_bytes: usize,
    /// Neighbour exchanges ([`NeighbourMessages::exchange_bytes`]): every rank
    /// calls them, but they synchronise only neighbours, so they are not
    /// counted as collectives; their messages are in `messages`.
    pub exchanges: usize,
}

impl Counts {
    fn new(size: usize) -> Self {
        Counts {
            gets: vec![0; size],
            puts: vec![0; size],
            accumulates: vec![0; size],
            locks: vec![0; size],
            batches: vec![0; size],
            elements: 0,
            messages: 0,
            bytes: 0,
            collectives: 0,
            allgathers: 0,
            collective_bytes: 0,
            exchanges: 0,
        }
    }

    /// Total gets.
    pub fn gets_total(&self) -> usize {
        self.gets.iter().sum()
    }

    /// Total puts.
    pub fn puts_total(&self) -> usize {
        self.puts.iter().sum()
    }

    /// Total accumulates.
    pub fn accumulates_total(&self) -> usize {
        self.accumulates.iter().sum()
    }

    /// Total RMA calls (see [`Counts::batches`]).
    pub fn batches_total(&self) -> usize {
        self.batches.iter().sum()
    }

    /// Total lock epochs.
    pub fn locks_total(&self) -> usize {
        self.locks.iter().sum()
    }
}

/// A communicator that forwards to `C` and counts this rank's RMA calls.
#[derive(Clone)]
pub struct CountingComm<C> {
    inner: C,
    counts: Arc<Mutex<Counts>>,
    /// Hide the backend's neighbour exchange ([`CountingComm::without_exchange`]).
    no_exchange: bool,
}

impl<C: OneSidedComm> CountingComm<C> {
    /// Wraps `inner` with zeroed counters.
    pub fn new(inner: C) -> Self {
        let size = inner.size();
        CountingComm {
            inner,
            counts: Arc::new(Mutex::new(Counts::new(size))),
            no_exchange: false,
        }
    }

    /// Like [`CountingComm::new`], but as if the backend had no neighbour
    /// exchange ([`OneSidedComm::messages`] `None`,
    /// no `NeighbourMessages`): runs the one-sided fallbacks (the halo's
    /// gets) on a backend that has messages, e.g. to test them on the
    /// threaded backend.
    pub fn without_exchange(inner: C) -> Self {
        CountingComm {
            no_exchange: true,
            ..CountingComm::new(inner)
        }
    }

    /// A snapshot of this rank's counts (over all windows of this handle).
    pub fn counts(&self) -> Counts {
        self.lock_counts().clone()
    }

    /// Zeroes the counters.
    pub fn reset(&self) {
        let size = self.inner.size();
        *self.lock_counts() = Counts::new(size);
    }

    /// The wrapped communicator.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    fn lock_counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one exchange of `messages` messages carrying `bytes` bytes.
    fn count_exchange(&self, messages: usize, bytes: usize) {
        let mut c = self.lock_counts();
        c.exchanges += 1;
        c.messages += messages;
        c.bytes += bytes;
    }

    fn collective(&self, bytes: usize) {
        let mut c = self.lock_counts();
        c.collectives += 1;
        c.collective_bytes += bytes;
    }
}

// SAFETY: every method forwards to `C` unchanged (and counts).
unsafe impl<C: OneSidedComm> OneSidedComm for CountingComm<C> {
    type RawWindow<T: Element> = CountingWindow<C::RawWindow<T>>;

    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    /// The wrapped communicator's slot: the same rank and communicator.
    fn handle_slot(&self) -> &std::sync::Arc<crate::rma::handles::HandleSlot> {
        self.inner.handle_slot()
    }

    fn barrier(&self) -> Result<()> {
        self.collective(0);
        self.inner.barrier()
    }

    fn allgather<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>> {
        self.collective(std::mem::size_of_val(local));
        self.lock_counts().allgathers += 1;
        self.inner.allgather(local)
    }

    fn allreduce_bytes(&self, buf: &mut [u8], combine: Combiner<'_>) -> Result<()> {
        self.collective(buf.len());
        self.inner.allreduce_bytes(buf, combine)
    }

    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        self.collective(buf.len());
        self.inner.broadcast_bytes(root, buf)
    }

    fn messages(&self) -> Option<&dyn NeighbourMessages> {
        if self.no_exchange || self.inner.messages().is_none() {
            None
        } else {
            Some(self)
        }
    }

    unsafe fn allocate_window<T: Element>(&self, lens: &[usize]) -> Result<Self::RawWindow<T>> {
        self.collective(0);
        Ok(CountingWindow {
            // SAFETY: forwarded with the caller's guarantees unchanged.
            inner: unsafe { self.inner.allocate_window(lens)? },
            rank: self.inner.rank(),
            counts: self.counts.clone(),
        })
    }

    fn check_allocation(&self, lens: &[usize], elem_size: usize) -> Result<()> {
        self.inner.check_allocation(lens, elem_size)
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}

/// Counts the messages of the inner backend's exchanges (present only where
/// the inner backend has messages and `without_exchange` did not hide them).
impl<C: OneSidedComm> NeighbourMessages for CountingComm<C> {
    fn exchange_bytes(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()> {
        let inner = crate::comm::messages_of(&self.inner)?;
        self.count_exchange(sends.len(), sends.iter().map(|(_, d)| d.len()).sum());
        inner.exchange_bytes(sends, recvs)
    }

    unsafe fn exchange_bytes_start(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn crate::comm::Request>> {
        let inner = crate::comm::messages_of(&self.inner)?;
        self.count_exchange(sends.len(), sends.iter().map(|(_, d)| d.len()).sum());
        // SAFETY: forwarded with the caller's guarantees unchanged.
        unsafe { inner.exchange_bytes_start(sends, recvs) }
    }

    unsafe fn exchange_vectored_start(
        &self,
        sends: &[(usize, &[&[u8]])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn crate::comm::Request>> {
        let inner = crate::comm::messages_of(&self.inner)?;
        let bytes = sends
            .iter()
            .flat_map(|(_, pieces)| pieces.iter())
            .map(|p| p.len());
        self.count_exchange(sends.len(), bytes.sum());
        // SAFETY: forwarded with the caller's guarantees unchanged.
        unsafe { inner.exchange_vectored_start(sends, recvs) }
    }
}

/// A raw window that forwards to `W` and counts the successful operations
/// the checked layer issues (what reaches the backend: empty transfers and
/// refused operations do not).
pub struct CountingWindow<W> {
    inner: W,
    rank: usize,
    counts: Arc<Mutex<Counts>>,
}

impl<W> CountingWindow<W> {
    fn record(
        &self,
        target: usize,
        f: impl FnOnce(&mut Counts) -> &mut Vec<usize>,
        n: usize,
        elements: usize,
    ) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.elements += elements;
        f(&mut c)[target] += n;
    }

    /// Records a put (`op` = `None`) or an accumulate of `n` runs.
    fn record_write(&self, target: usize, op: Option<AccumulateOp>, n: usize, elements: usize) {
        match op {
            None => self.record(target, |c| &mut c.puts, n, elements),
            Some(_) => self.record(target, |c| &mut c.accumulates, n, elements),
        }
    }

    /// Records one RMA call (of any number of runs) to `target`.
    fn batch(&self, target: usize) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .batches[target] += 1;
    }

    /// Records `n` RMA messages of `bytes` in all when `target` is remote.
    fn message(&self, target: usize, n: usize, bytes: usize) {
        if target != self.rank {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            c.messages += n;
            c.bytes += bytes;
        }
    }

    fn collective(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .collectives += 1;
    }
}

// SAFETY: every method forwards to the inner raw window with the caller's
// guarantees unchanged and only counts afterwards.
unsafe impl<T: Element, W: RawWindow<T>> RawWindow<T> for CountingWindow<W> {
    unsafe fn lock(&self, target: usize, kind: LockKind) -> Result<()> {
        // SAFETY: forwarded (see the impl).
        unsafe { self.inner.lock(target, kind)? };
        self.record(target, |c| &mut c.locks, 1, 0);
        Ok(())
    }
    unsafe fn unlock(&self, target: usize, kind: LockKind) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.inner.unlock(target, kind) }
    }
    unsafe fn flush(&self, target: usize) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.inner.flush(target) }
    }
    unsafe fn get_locked(
        &self,
        target: usize,
        kind: LockKind,
        offset: usize,
        dst: &mut [T],
    ) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.inner.get_locked(target, kind, offset, dst)? };
        self.record(target, |c| &mut c.locks, 1, 0);
        self.record(target, |c| &mut c.gets, 1, dst.len());
        self.batch(target);
        self.message(target, 1, std::mem::size_of_val(dst));
        Ok(())
    }
    unsafe fn put_locked(
        &self,
        target: usize,
        kind: LockKind,
        offset: usize,
        src: &[T],
    ) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.inner.put_locked(target, kind, offset, src)? };
        self.record(target, |c| &mut c.locks, 1, 0);
        self.record(target, |c| &mut c.puts, 1, src.len());
        self.batch(target);
        self.message(target, 1, std::mem::size_of_val(src));
        Ok(())
    }
    unsafe fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.inner.get(target, offset, dst)? };
        self.record(target, |c| &mut c.gets, 1, dst.len());
        self.batch(target);
        self.message(target, 1, std::mem::size_of_val(dst));
        Ok(())
    }
    unsafe fn write(
        &self,
        target: usize,
        offset: usize,
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.inner.write(target, offset, src, op)? };
        self.record_write(target, op, 1, src.len());
        self.batch(target);
        self.message(target, 1, std::mem::size_of_val(src));
        Ok(())
    }
    unsafe fn get_runs(&self, target: usize, runs: &[(usize, usize)], dst: &mut [T]) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.inner.get_runs(target, runs, dst)? };
        self.record(target, |c| &mut c.gets, runs.len(), dst.len());
        self.batch(target);
        self.message(target, runs.len(), std::mem::size_of_val(dst));
        Ok(())
    }
    unsafe fn write_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.inner.write_runs(target, runs, src, op)? };
        self.record_write(target, op, runs.len(), src.len());
        self.batch(target);
        self.message(target, runs.len(), std::mem::size_of_val(src));
        Ok(())
    }
    unsafe fn get_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        dst: &mut [T],
    ) -> Result<Box<dyn crate::comm::Request + 'w>> {
        let n = dst.len();
        let bytes = std::mem::size_of_val(dst);
        // SAFETY: forwarded.
        let req = unsafe { self.inner.get_runs_start(target, runs, dst)? };
        self.record(target, |c| &mut c.gets, runs.len(), n);
        self.batch(target);
        self.message(target, runs.len(), bytes);
        Ok(req)
    }
    unsafe fn write_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<Box<dyn crate::comm::Request + 'w>> {
        // SAFETY: forwarded.
        let req = unsafe { self.inner.write_runs_start(target, runs, src, op)? };
        self.record_write(target, op, runs.len(), src.len());
        self.batch(target);
        self.message(target, runs.len(), std::mem::size_of_val(src));
        Ok(req)
    }
    unsafe fn fence_vote(&self, token: u64) -> Result<Vec<u64>> {
        self.collective();
        // SAFETY: forwarded.
        unsafe { self.inner.fence_vote(token) }
    }
    unsafe fn fence(&self, end: bool) -> Result<()> {
        // SAFETY: forwarded.
        unsafe { self.inner.fence(end) }
    }
    unsafe fn with_local<R>(&self, mutable: bool, f: impl FnOnce(*mut T, usize) -> R) -> Result<R> {
        // SAFETY: forwarded.
        unsafe { self.inner.with_local(mutable, f) }
    }
    unsafe fn release(&self, locks: &[(usize, LockKind)], fence_open: bool) {
        // SAFETY: forwarded.
        unsafe { self.inner.release(locks, fence_open) }
    }
}
