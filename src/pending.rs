//! Non-blocking block reads and writes: [`DistArray::get_block_start`] and
//! [`DistArray::put_block_start`] issue the RMA operations of a block and
//! return a handle at once; the program computes while the data moves, and
//! the handle's `wait` completes them. They map to MPI's request-based RMA
//! (`MPI_Rget`, `MPI_Rput`, `MPI_Raccumulate`), to Lamellar's RDMA futures,
//! and on the threaded backend complete before returning (the same
//! results, no overlap).
//!
//! # Handles never take part in a deadlock
//!
//! A handle holds the locks of its targets from its start until its
//! operations are complete (shared for reads, exclusive for writes), so
//! handles could wait for each other: ranks 0 and 1 each start a `Sum` on
//! arrays A and B towards rank 2, in opposite orders; each holds one of
//! rank 2's parts exclusively and waits for the other one — forever on MPI
//! (issue 21). Two rules exclude this and every other cycle through a
//! handle's locks, on every backend:
//!
//! 1. **At most one handle in flight per rank and communicator**, across
//!    all of its arrays and element types (the communicator's
//!    [`HandleSlot`]). A start while another handle of the rank is in
//!    flight returns [`Error::HandleInFlight`](crate::Error::HandleInFlight) before it locks anything. A
//!    start takes its locks in increasing rank order (its own part, copied
//!    at once under a lock of its own, at its turn).
//! 2. **A rank never waits for another rank while its handle holds locks.**
//!    Every call that may wait for another rank first completes the handle
//!    in flight ([`HandleSlot::settle`]: its operations are waited for and
//!    its locks released; its `wait` then returns at once): a lock on any
//!    window of the communicator (element access, blocking blocks and
//!    slices, ghosts, local views, explicit epochs), a fence, every
//!    collective (barrier, reductions, constructors, neighbour exchanges and
//!    their waits) and dropping an array. The checked layer does it for
//!    locks and fences ([`WindowState`](crate::checks::WindowState)); every
//!    backend does it at the entry of its collectives.
//!
//! Why no cycle can pass through a handle: a rank waits for another one
//! either in a collective, which it enters only after rule 2 released its
//! handle's locks, or for a lock. The holder of the lock is (a) a rank
//! whose handle holds it: by rule 2 that rank is not waiting for anyone —
//! it computes, and releases the lock at its next waiting call (or its
//! `wait`, or the array's drop), so the chain ends there; or (b) a rank in
//! the middle of a start, of a multi-target read (ghosts, matvec plans) or
//! of a one-target operation, which waits (if at all) only for a lock of a
//! *higher* rank of the same window, since all of them lock in increasing
//! rank order and a start first had its previous handle completed (rule 2)
//! or refused (rule 1). Along a chain of such waits the target rank only
//! grows, so the chain ends too. Collectives themselves are called in the
//! same order on every rank. What remains outside the argument is code that
//! waits for other ranks *inside* a lock of its own making — an explicit
//! epoch ([`DistArray::lock`], [`DistArray::with_epoch`]) or a local view
//! whose closure waits for another rank — which can deadlock without any
//! handle and is documented there (the threaded backend reports it as
//! [`Error::Deadlock`](crate::Error::Deadlock)).
//!
//! Leaking a handle (`mem::forget`) leaks its buffers, not its locks: the
//! operation stays in the slot, and rule 2 completes it at the rank's next
//! call that may wait for another rank (at the latest when the array is
//! dropped), so other ranks wait for a leaked lock only while the leaker
//! computes. Until then a new start on the communicator returns
//! [`Error::HandleInFlight`](crate::Error::HandleInFlight). The backend never writes freed memory: a
//! leaked handle's buffers are never freed, a dropped handle first
//! completes its operations (also when unwinding), and an operation that
//! failed leaks its buffers.
//!
//! What the rules cost: one block in flight per rank at a time (the pieces
//! of one block, on all its targets, still move together), and a handle
//! completes at the rank's next lock or collective — so between start and
//! wait, do work that needs no lock and no other rank (computing on data
//! already fetched, on a copy of the own part, on a [`GlobalBlock`]); a
//! `with_local` there is correct but ends the overlap.
//!
//! Two other designs were weighed. Ordering all locks of a rank globally
//! (by window, then rank) fails because handles start at different times:
//! a later handle on a lower window would have to wait while holding, which
//! needs rule 2 anyway. Accumulates under *shared* locks (element-wise
//! atomic in MPI) would let `Sum` handles never wait for each other, but a
//! shared lock admits the owner's read-only view, and a remote accumulate
//! under it would change memory a live `&[T]` points to (undefined
//! behaviour in Rust); it needs a lock kind MPI does not have, and leaves
//! `Replace` handles crossing. The measured cost of the exclusive locks for
//! many ranks accumulating into one part is in `BENCHMARKS.md`.
//!
//! ```
//! use distarray::{threaded, AccumulateOp, Block, DistArray, Error, OneSidedComm};
//! threaded::run_ok(3, |comm| {
//!     let a = DistArray::<f64, _, 1>::from_fn(comm.clone(), [30], |[i]| i as f64)?;
//!     // read the whole array from every rank, work meanwhile, then wait
//!     let pending = a.get_block_start(&Block::new([0..30]))?;
//!     let local_work: f64 = (0..1000).map(|k| k as f64).sum();
//!     // one handle at a time per communicator (any array): refused
//!     assert!(matches!(a.get_block_start(&Block::new([0..3])), Err(Error::HandleInFlight(_))));
//!     let all = pending.wait()?;
//!     assert_eq!(all.as_slice()[29], 29.0);
//!     assert!(local_work > 0.0);
//!     a.barrier()?;
//!     // every rank adds 1 to elements 10..20, without waiting at once
//!     let ones = distarray::GlobalBlock::from_vec(Block::new([10..20]), vec![1.0; 10])?;
//!     let pending = a.put_block_start(ones, AccumulateOp::Sum)?;
//!     a.barrier()?; // a collective completes the handle first
//!     pending.wait()?; // returns at once
//!     assert_eq!(a.get([15])?, 15.0 + comm.size() as f64);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::sync::Arc;

use crate::array::DistArray;
use crate::block::{
    combine_runs, contiguous_in, copy_runs, gather_box, scatter_box, Block, GlobalBlock,
};
use crate::comm::{AccumulateOp, Element, LockKind, OneSidedComm};
use crate::error::Result;
use crate::overlap::Epochs;
pub use crate::rma::handles::HandleSlot;
use crate::rma::handles::{Claim, Flight, Outcome};
use crate::rma::{RawWindow, Window};

/// The lock epochs and requests of one handle, and the window they borrow.
struct Held<T: Element, R: RawWindow<T>> {
    // Declared (so dropped) first: its requests and locks refer to `*win`.
    epochs: Epochs<'static, T, R>,
    /// Keeps the window alive while `epochs` refers to it (never read).
    _win: Arc<Window<T, R>>,
}

impl<T: Element, R: RawWindow<T>> Flight for Held<T, R> {
    fn close(mut self: Box<Self>) -> Result<()> {
        self.epochs.close()
    }
}

/// The buffers of one handle (the slot holds its locks and requests).
struct Handle<'a, T: Element, C: OneSidedComm, const N: usize> {
    array: &'a DistArray<T, C, N>,
    block: Block<N>,
    /// The block's values, row-major.
    data: Vec<T>,
    /// Pieces that are not contiguous in `data`: their intersection and a
    /// buffer of their own (scattered into `data` at the end of a read).
    packed: Vec<(Block<N>, Vec<T>)>,
    /// The remote targets, for `Debug`.
    targets: Vec<usize>,
    outcome: Arc<Outcome>,
    done: bool,
}

impl<T: Element, C: OneSidedComm, const N: usize> Handle<'_, T, C, N> {
    /// Completes the operations (unless a waiting call of this rank did
    /// already) and returns their outcome. After an error the buffers are
    /// leaked: an operation that did not complete cleanly must never write
    /// freed memory.
    fn complete(&mut self) -> Result<()> {
        self.done = true;
        let out = self.array.comm().handle_slot().settle_handle(&self.outcome);
        if out.is_err() {
            std::mem::forget(std::mem::take(&mut self.data));
            for (_, b) in self.packed.drain(..) {
                std::mem::forget(b);
            }
        }
        out
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> Drop for Handle<'_, T, C, N> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.complete();
        }
    }
}

/// A start in progress: the claimed slot, the buffers and the epochs
/// opened so far. Dropped on an error (or unwinding), it waits for what
/// was issued and unlocks (`epochs`, declared last, drops first), then
/// frees the buffers — or leaks them if that wait failed — and empties the
/// slot.
struct Start<'a, T: Element, C: OneSidedComm, const N: usize> {
    array: &'a DistArray<T, C, N>,
    claim: Option<Claim<'a>>,
    block: Block<N>,
    data: Vec<T>,
    packed: Vec<(Block<N>, Vec<T>)>,
    epochs: Epochs<'static, T, C::RawWindow<T>>,
}

impl<'a, T: Element, C: OneSidedComm, const N: usize> Start<'a, T, C, N> {
    /// Claims `array`'s communicator's slot (error: a handle is in flight)
    /// for a handle on `block` whose values are `data`.
    fn new(array: &'a DistArray<T, C, N>, block: Block<N>, data: Vec<T>) -> Result<Self> {
        let claim = array.comm().handle_slot().claim()?;
        // SAFETY: the window lives in `array.win`'s allocation, which stays
        // alive as long as one of its `Arc`s: `array`'s own for as long as
        // this start runs (`array` is borrowed), then the clone that
        // `finish` puts beside the epochs in the slot (`Held`, which drops
        // the epochs — and with them every request and lock that refers to
        // the window — before that clone). Nothing else keeps this
        // reference.
        let win: &'static crate::WindowOf<C, T> = unsafe { &*Arc::as_ptr(array.window_arc()) };
        Ok(Start {
            array,
            claim: Some(claim),
            block,
            data,
            packed: Vec::new(),
            epochs: Epochs::new(win),
        })
    }

    /// Hands the epochs to the slot and the buffers to a handle.
    fn finish(mut self) -> Handle<'a, T, C, N> {
        let win = self.epochs.window();
        let epochs = std::mem::replace(&mut self.epochs, Epochs::new(win));
        let targets = epochs.targets().to_vec();
        let claim = self.claim.take().expect("claimed until finished");
        let outcome = claim.install(Box::new(Held {
            epochs,
            _win: self.array.window_arc().clone(),
        }));
        Handle {
            array: self.array,
            block: self.block.clone(),
            data: std::mem::take(&mut self.data),
            packed: std::mem::take(&mut self.packed),
            targets,
            outcome,
            done: false,
        }
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> Drop for Start<'_, T, C, N> {
    fn drop(&mut self) {
        if self.epochs.close().is_err() {
            std::mem::forget(std::mem::take(&mut self.data));
            for (_, b) in self.packed.drain(..) {
                std::mem::forget(b);
            }
        }
        // then `claim` (if still held) empties the slot
    }
}

/// A block read in flight, from [`DistArray::get_block_start`].
#[must_use = "call wait() to get the block (dropping it waits and discards the values)"]
pub struct PendingGet<'a, T: Element, C: OneSidedComm, const N: usize> {
    op: Handle<'a, T, C, N>,
}

/// A block write in flight, from [`DistArray::put_block_start`].
#[must_use = "call wait() to complete the write (dropping it waits too)"]
pub struct PendingPut<'a, T: Element, C: OneSidedComm, const N: usize> {
    op: Handle<'a, T, C, N>,
}

impl<T: Element, C: OneSidedComm, const N: usize> PendingGet<'_, T, C, N> {
    /// Waits for the reads (unless a waiting call of this rank completed
    /// them already) and returns the block.
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
    /// are closed; a waiting call of this rank may have done it already)
    /// and returns the block, whose buffer can be reused.
    pub fn wait(mut self) -> Result<GlobalBlock<T, N>> {
        self.op.complete()?;
        GlobalBlock::from_vec(self.op.block.clone(), std::mem::take(&mut self.op.data))
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> std::fmt::Debug for PendingGet<'_, T, C, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingGet")
            .field("block", &self.op.block)
            .field("targets", &self.op.targets)
            .finish()
    }
}

impl<T: Element, C: OneSidedComm, const N: usize> std::fmt::Debug for PendingPut<'_, T, C, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingPut")
            .field("block", &self.op.block)
            .field("targets", &self.op.targets)
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
        let mut op = Start::new(self, block.clone(), vec![T::default(); block.len()])?;
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
                // slices overlap; `data` is never resized, and it is freed
                // only once the operations are complete (the start's drop,
                // then the handle's, waits for them first) or never (a
                // leaked handle, a failed wait: leaked with it).
                Some(r) => unsafe { std::slice::from_raw_parts_mut(base.add(r.start), r.len()) },
                None => {
                    op.packed.push((
                        t.intersection.clone(),
                        vec![T::default(); t.intersection.len()],
                    ));
                    let buf = &mut op.packed.last_mut().expect("just pushed").1;
                    // SAFETY: a buffer of its own, kept (or leaked) like
                    // `data`; moving the Vec into `packed` (or `packed`
                    // into the handle) does not move its heap storage.
                    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr(), buf.len()) }
                }
            };
            if t.rank == me {
                self.with_local(|l| copy_runs(l.as_slice(), &t.runs, dst))?;
                continue;
            }
            op.epochs.lock(t.rank, LockKind::Shared)?;
            // SAFETY: `dst` (see above) is neither read nor written by us
            // until the request has been waited for (by the handle's
            // `complete` or the slot's settle), and it is freed only after
            // that wait (or leaked). The request refers to the window through
            // `op.epochs`, which the slot keeps beside an `Arc` of it.
            let req = unsafe { op.epochs.window().get_runs_start(t.rank, &t.runs, dst)? };
            op.epochs.push(req);
        }
        Ok(PendingGet { op: op.finish() })
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
        let mut fl = Start::new(self, block.clone(), data)?;
        let base = fl.data.as_ptr();
        // in increasing rank order, the own part at its turn (see
        // `get_block_start`)
        let mut plan = plan;
        plan.sort_by_key(|t| t.rank);
        for t in &plan {
            let src: &[T] = match contiguous_in(&block, &t.intersection) {
                // SAFETY: `r` lies in `data`; shared slices, and `data` is
                // not written, resized or freed while the writes are in
                // flight (the start, then the handle, owns it, frees it only
                // after the wait, or leaks it).
                Some(r) => unsafe { std::slice::from_raw_parts(base.add(r.start), r.len()) },
                None => {
                    let mut buf = vec![T::default(); t.intersection.len()];
                    gather_box(&block, &fl.data, &t.intersection, &mut buf);
                    fl.packed.push((t.intersection.clone(), buf));
                    let buf = &fl.packed.last().expect("just pushed").1;
                    // SAFETY: a buffer of its own, kept (or leaked) like
                    // `data`.
                    unsafe { std::slice::from_raw_parts(buf.as_ptr(), buf.len()) }
                }
            };
            if t.rank == me {
                self.with_local_mut(|mut l| combine_runs(l.as_mut_slice(), &t.runs, src, op))?;
                continue;
            }
            fl.epochs.lock(t.rank, LockKind::Exclusive)?;
            // SAFETY: `src` is not written, and freed only after the
            // request has been waited for (by the handle's `complete` or the
            // slot's settle), or leaked; the request refers to the window
            // through `fl.epochs` (see `get_block_start`).
            let req = unsafe {
                fl.epochs
                    .window()
                    .write_runs_start(t.rank, &t.runs, src, op)?
            };
            fl.epochs.push(req);
        }
        Ok(PendingPut { op: fl.finish() })
    }
}
