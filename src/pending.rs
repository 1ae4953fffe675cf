//! Non-blocking block reads and writes: [`DistArray::get_block_start`] and
//! [`DistArray::put_block_start`] issue the RMA operations of a block and
//! return a handle at once; the program computes while the data moves, and
//! the handle's `wait` completes them. They map to MPI's request-based RMA
//! (`MPI_Rget`, `MPI_Rput`, `MPI_Raccumulate`), to Lamellar's RDMA futures,
//! and on the threaded backend complete before returning (the same
//! results, no overlap).
//!
//! A handle holds the locks of its targets until it completes (shared for
//! reads, exclusive for writes), taken in increasing rank order, and a rank
//! has at most one handle in flight per array (a second start is an
//! error), so handles alone never wait for each other in a cycle. In
//! between, do local work — that is what the handle is for: a rank that
//! waits for another lock or enters a collective while its handle is in
//! flight may wait for a rank that waits for the handle's locks (the
//! threaded backend reports this as [`Error::Deadlock`];
//! an MPI or Lamellar run would hang). Wait first, then synchronise.
//! [`DistArray::get_block_overlapped`] scopes the handle to a closure.
//!
//! The handles own their buffers, so they are memory-safe however they
//! end: `wait` returns the block; dropping a handle (also when unwinding)
//! waits for its operations and releases its locks; leaking one
//! (`mem::forget`) leaks its buffers with it, so the backend never writes
//! freed memory — but its targets stay locked until the array is dropped,
//! and other ranks that need those parts wait for them. Do not leak
//! handles.
//!
//! ```
//! use distarray::{threaded, AccumulateOp, Block, DistArray, OneSidedComm};
//! threaded::run_ok(3, |comm| {
//!     let a = DistArray::<f64, _, 1>::from_fn(comm.clone(), [30], |[i]| i as f64)?;
//!     // read the whole array from every rank, work meanwhile, then wait
//!     let pending = a.get_block_start(&Block::new([0..30]))?;
//!     let local_sum = a.with_local(|l| l.as_slice().iter().sum::<f64>())?;
//!     let all = pending.wait()?;
//!     assert_eq!(all.as_slice()[29], 29.0);
//!     assert!(local_sum >= 0.0);
//!     a.sync()?;
//!     // every rank adds 1 to elements 10..20, without waiting at once
//!     let ones = distarray::GlobalBlock::from_vec(Block::new([10..20]), vec![1.0; 10])?;
//!     a.put_block_start(ones, AccumulateOp::Sum)?.wait()?;
//!     a.sync()?;
//!     assert_eq!(a.get([15])?, 15.0 + comm.size() as f64);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use crate::array::DistArray;
use crate::block::{
    combine_runs, contiguous_in, copy_runs, gather_box, scatter_box, Block, GlobalBlock,
};
use crate::comm::{AccumulateOp, Element, LockKind, OneSidedComm, Window};
use crate::error::{Error, Result};
use crate::overlap::Epochs;
use std::sync::atomic::Ordering;

/// The requests and locks of one non-blocking block operation, and the
/// buffers they use (owned here, so that they outlive the operations).
struct InFlight<'a, T: Element, C: OneSidedComm, const N: usize> {
    array: &'a DistArray<T, C, N>,
    block: Block<N>,
    /// The block's values, row-major.
    data: Vec<T>,
    /// Pieces that are not contiguous in `data`: their intersection and a
    /// buffer of their own (scattered into `data` at the end of a read).
    packed: Vec<(Block<N>, Vec<T>)>,
    /// The targets' lock epochs and the requests issued in them.
    epochs: Epochs<'a, T, C::Window<T>>,
    done: bool,
}

impl<'a, T: Element, C: OneSidedComm, const N: usize> InFlight<'a, T, C, N> {
    /// Claims `array`'s one slot for a handle in flight. Error: another
    /// handle of this rank is in flight on it (or was leaked).
    fn new(array: &'a DistArray<T, C, N>, block: Block<N>, data: Vec<T>) -> Result<Self> {
        if array
            .handle_in_flight
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::EpochMismatch(
                "a non-blocking block operation of this rank is already in flight on this array \
                 (wait for it first; a leaked one keeps the slot until the array is dropped)"
                    .into(),
            ));
        }
        Ok(InFlight {
            array,
            block,
            data,
            packed: Vec::new(),
            epochs: Epochs::new(array.window()),
            done: false,
        })
    }

    /// Waits for every request and unlocks every target; the first error.
    /// After an error the buffers are leaked: an operation that did not
    /// complete cleanly must never write freed memory.
    fn complete(&mut self) -> Result<()> {
        self.done = true;
        let out = self.epochs.close();
        if out.is_err() {
            std::mem::forget(std::mem::take(&mut self.data));
            for (_, b) in self.packed.drain(..) {
                std::mem::forget(b);
            }
        }
        self.array.handle_in_flight.store(false, Ordering::Release);
        out
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> Drop for InFlight<'_, T, C, N> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.complete();
        }
    }
}

/// A block read in flight, from [`DistArray::get_block_start`].
#[must_use = "call wait() to get the block (dropping it waits and discards the values)"]
pub struct PendingGet<'a, T: Element, C: OneSidedComm, const N: usize> {
    op: InFlight<'a, T, C, N>,
}

/// A block write in flight, from [`DistArray::put_block_start`].
#[must_use = "call wait() to complete the write (dropping it waits too)"]
pub struct PendingPut<'a, T: Element, C: OneSidedComm, const N: usize> {
    op: InFlight<'a, T, C, N>,
}

impl<T: Element, C: OneSidedComm, const N: usize> PendingGet<'_, T, C, N> {
    /// Waits for the reads and returns the block.
    pub fn wait(mut self) -> Result<GlobalBlock<T, N>> {
        self.op.complete()?;
        let op = &mut self.op;
        for (inter, buf) in &op.packed {
            scatter_box(&op.block, &mut op.data, inter, buf);
        }
        GlobalBlock::from_vec(op.block.clone(), std::mem::take(&mut op.data))
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> PendingPut<'_, T, C, N> {
    /// Waits until the writes are complete at their targets (their epochs
    /// are closed) and returns the block, whose buffer can be reused.
    pub fn wait(mut self) -> Result<GlobalBlock<T, N>> {
        self.op.complete()?;
        GlobalBlock::from_vec(self.op.block.clone(), std::mem::take(&mut self.op.data))
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> std::fmt::Debug for PendingGet<'_, T, C, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingGet")
            .field("block", &self.op.block)
            .field("targets", &self.op.epochs.targets())
            .finish()
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> std::fmt::Debug for PendingPut<'_, T, C, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingPut")
            .field("block", &self.op.block)
            .field("targets", &self.op.epochs.targets())
            .finish()
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> DistArray<T, C, N> {
    /// One-sided, non-blocking [`DistArray::get_block`]: locks every remote
    /// owner of `block` (shared), issues its reads and returns; the own part
    /// is copied meanwhile. [`PendingGet::wait`] completes the reads,
    /// releases the locks and returns the block. See the
    /// [module docs](crate::pending). Errors: those of `get_block`, before
    /// or at the wait.
    pub fn get_block_start(&self, block: &Block<N>) -> Result<PendingGet<'_, T, C, N>> {
        block.validate(self.shape())?;
        let plan = block.plan(self.partitioning())?;
        let me = self.comm().rank();
        let mut op = InFlight::new(self, block.clone(), vec![T::default(); block.len()])?;
        let base = op.data.as_mut_ptr();
        // in increasing rank order, the own part at its turn: every rank
        // takes its locks in one global order, so two ranks' handles can
        // never wait for each other's locks in a cycle
        let mut plan = plan;
        plan.sort_by_key(|t| t.rank);
        for t in &plan {
            let dst: &mut [T] = match contiguous_in(block, &t.intersection) {
                // SAFETY: `r` lies in `data` (the block's row-major buffer)
                // and the pieces of a plan are disjoint, so no two live
                // slices overlap; `data` is never resized, and `op` keeps it
                // alive (or leaks it) until the operations are complete.
                Some(r) => unsafe { std::slice::from_raw_parts_mut(base.add(r.start), r.len()) },
                None => {
                    op.packed.push((
                        t.intersection.clone(),
                        vec![T::default(); t.intersection.len()],
                    ));
                    let buf = &mut op.packed.last_mut().expect("just pushed").1;
                    // SAFETY: a buffer of its own, kept (or leaked) by `op`
                    // like `data`; moving the Vec into `packed` does not
                    // move its heap storage.
                    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr(), buf.len()) }
                }
            };
            if t.rank == me {
                self.with_local(|l| copy_runs(l.as_slice(), &t.runs, dst))?;
                continue;
            }
            op.epochs.lock(t.rank, LockKind::Shared)?;
            // SAFETY: `dst` (see above) is neither read nor written by us
            // until `op.complete` has waited for the request; `op` owns the
            // buffer and leaks it if the request could not complete.
            let req = unsafe { self.window().get_runs_start(t.rank, &t.runs, dst)? };
            op.epochs.push(req);
        }
        Ok(PendingGet { op })
    }

    /// One-sided: [`DistArray::get_block`] with `compute` run while the
    /// reads are in flight ([`DistArray::get_block_start`], `compute`,
    /// [`PendingGet::wait`]); the handle cannot outlive the call. `compute`
    /// should be local work (see the [module docs](crate::pending)).
    ///
    /// ```
    /// use distarray::{threaded, Block, DistArray, OneSidedComm};
    /// threaded::run_ok(2, |comm| {
    ///     let a = DistArray::<f64, _, 1>::from_fn(comm.clone(), [10], |[i]| i as f64)?;
    ///     let (all, n) = a.get_block_overlapped(&Block::new([0..10]), || 2 + 2)?;
    ///     assert_eq!((all.as_slice()[9], n), (9.0, 4));
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn get_block_overlapped<R>(
        &self,
        block: &Block<N>,
        compute: impl FnOnce() -> R,
    ) -> Result<(GlobalBlock<T, N>, R)> {
        let pending = self.get_block_start(block)?;
        let out = compute();
        Ok((pending.wait()?, out))
    }

    /// One-sided, non-blocking [`DistArray::put_block`]: takes `gb`, locks
    /// every remote owner of its block (exclusive), issues the writes
    /// (`Replace`: puts; any other op: element-wise atomic accumulates) and
    /// returns; the own part is updated meanwhile. [`PendingPut::wait`]
    /// completes the writes at their targets, releases the locks and gives
    /// `gb` back. Errors: those of `put_block`, before or at the wait.
    pub fn put_block_start(
        &self,
        gb: GlobalBlock<T, N>,
        op: AccumulateOp,
    ) -> Result<PendingPut<'_, T, C, N>> {
        crate::checks::check_op::<T>(op)?;
        let (block, data) = gb.into_parts();
        block.validate(self.shape())?;
        let plan = block.plan(self.partitioning())?;
        let me = self.comm().rank();
        let mut fl = InFlight::new(self, block.clone(), data)?;
        let base = fl.data.as_ptr();
        // in increasing rank order, the own part at its turn (see
        // `get_block_start`)
        let mut plan = plan;
        plan.sort_by_key(|t| t.rank);
        for t in &plan {
            let src: &[T] = match contiguous_in(&block, &t.intersection) {
                // SAFETY: `r` lies in `data`; shared slices, and `data` is
                // not written, resized or freed while the writes are in
                // flight (`fl` owns it, or leaks it).
                Some(r) => unsafe { std::slice::from_raw_parts(base.add(r.start), r.len()) },
                None => {
                    let mut buf = vec![T::default(); t.intersection.len()];
                    gather_box(&block, &fl.data, &t.intersection, &mut buf);
                    fl.packed.push((t.intersection.clone(), buf));
                    let buf = &fl.packed.last().expect("just pushed").1;
                    // SAFETY: a buffer of its own, kept (or leaked) by `fl`.
                    unsafe { std::slice::from_raw_parts(buf.as_ptr(), buf.len()) }
                }
            };
            if t.rank == me {
                self.with_local_mut(|mut l| combine_runs(l.as_mut_slice(), &t.runs, src, op))?;
                continue;
            }
            fl.epochs.lock(t.rank, LockKind::Exclusive)?;
            // SAFETY: `src` is not written until `fl.complete` has waited
            // for the request; `fl` owns the buffer and leaks it if the
            // request could not complete.
            let req = unsafe { self.window().write_runs_start(t.rank, &t.runs, src, op)? };
            fl.epochs.push(req);
        }
        Ok(PendingPut { op: fl })
    }
}
