//! [`LamellarWindow`]: the raw window primitives ([`RawWindow`]) over a
//! Lamellar shared memory region. Every check (ranks, bounds, epochs, the
//! access model, local views) happens before, in the checked
//! [`distarray::Window`] that wraps this raw window: misuse gives the same
//! `Err` as on the other backends before anything is sent, and this module
//! only moves data and takes locks, relying on the preconditions the trait
//! states.
//!
//! * Memory: one `SharedMemoryRegion<T>` of `max(len over PEs)` elements per
//!   PE (Lamellar regions have the same length everywhere); the checked
//!   layer bounds accesses by each PE's *true* length.
//! * `get` / `write` (put): RDMA (`get` / `get_into_buffer` / `put` /
//!   `put_buffer`), blocking at the origin; accesses to the calling PE's
//!   own part are plain copies under the part's lock (below), taken once
//!   per call (for a batch of runs too, never across a Lamellar call). Every
//!   operation is complete when it returns, so `flush` and `unlock` have
//!   nothing left to wait for, and the fence's runtime step is empty: the
//!   allgather of its vote (a barrier) orders the epoch.
//! * `get_runs` / `write_runs` with more than one non-empty run to another
//!   PE (a strided block: one run per row): ONE active message executed by
//!   the target on its own memory, which gathers the runs into one buffer
//!   and returns it, or scatters (combines) the packed data it carries (see
//!   [`crate::pack`]); a single run stays one RDMA operation (per 64 KiB
//!   chunk).
//! * `get_runs_start` / `write_runs_start` (puts): the packed active
//!   message, or for a single run an RDMA future, spawned at once (the RDMA
//!   into or out of a registered buffer); the request waits for them.
//!   Accumulates complete before returning.
//! * `lock` / `unlock`: a reader/writer lock per target PE in a small
//!   control region, manipulated with remote atomics (see
//!   [`crate::target`]); shared admits many, exclusive excludes every other
//!   PE. Waiting is polling with back-off.
//! * accumulate (`write` with an op): under the target's accumulate guard
//!   (a remote test-and-set lock), read the elements, combine them with
//!   [`Element::combine`] and write them back: element-wise atomic with
//!   respect to every other accumulate on that target.
//! * Threads of one process: the epochs do not keep two accesses by
//!   threads of this process to the same bytes apart (several threads of a
//!   PE share its lock on a target; a fence epoch takes no lock). So every
//!   access this PE's threads make to its own part outside a local view
//!   (the own-part copies here, and the packed transfers other PEs ask of
//!   it) holds the part's [`PartLock`] (see [`crate::pack`], which also
//!   says what it does not cover), and every RDMA this PE's threads issue
//!   to another PE holds the window's origin-side lock on that target
//!   ([`WindowCore::rdma`]): on `shmem` such an RDMA is a copy made by the
//!   calling thread through this process's mapping of the target's part.
//!
//! Dropping the checked window first releases, through
//! [`RawWindow::release`], the locks this PE still holds (after completing
//! the transfers of leaked requests); then this window drops and hands its
//! regions back to the communicator, which reuses them for a later window
//! once every PE has dropped this one (see `RegionCache` in
//! `comm/regions.rs`), or releases them; Lamellar's distributed reference
//! count frees the memory once no PE holds a handle. Drop does not wait for
//! the other PEs, so an early drop on one PE cannot hang the rest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use distarray::checks::run_pieces;
use distarray::comm::Completed;
use distarray::{AccumulateOp, Element, Error, LockKind, OneSidedComm, RawWindow, Request, Result};
use lamellar::active_messaging::prelude::*;
use lamellar::memregion::prelude::*;

use crate::comm::{Comm, Regions, WeakComm};
use crate::pack::{op_code, GatherRuns, PartLock, PartRead, PartWrite, ScatterRuns};
use crate::target::Ctl;

/// Bulk transfers move through a registered bounce buffer of this size per
/// window (allocated on first use from Lamellar's heap), so that the copy
/// between it and the caller's buffer stays in cache.
const CHUNK_BYTES: usize = 64 << 10;

/// The raw window of a [`LamellarComm`](crate::LamellarComm) (checked by [`distarray::Window`]).
///
/// It holds no Lamellar handle and does not keep the communicator alive:
/// its regions, buffers and transfers in flight (its core) belong to
/// the communicator, which releases them when this window drops or, for a
/// leaked window (`mem::forget`), when the communicator's last handle
/// drops — Lamellar's world waits at exit for every region handle, so a
/// leaked handle would hang the job. Every operation first reaches the
/// communicator and the core; once they are gone it returns
/// [`Error::Backend`] (no memory is touched).
pub struct LamellarWindow<T: Element> {
    comm: WeakComm,
    core: Weak<WindowCore<T>>,
    /// The core's key in the communicator's table of live windows.
    key: u64,
    rank: usize,
    /// Address of this PE's part of the data region (taken once, so that
    /// no reference to window memory is created outside a local view;
    /// valid while the core lives).
    local: usize,
    /// Length of this PE's part (the region may hold more).
    local_len: usize,
    /// Elements per bulk-transfer chunk.
    chunk: usize,
}

/// What a window holds of Lamellar, owned by the communicator's table of
/// live windows ([`Comm::keep_window`]) and reached through a weak
/// reference.
pub(crate) struct WindowCore<T: Element> {
    region: SharedMemoryRegion<T>,
    /// The regions' id, the same on every PE (for packed transfers).
    id: u64,
    /// The lock of this PE's part, shared with the packed transfers that
    /// other PEs ask of this one (see [`crate::pack`]).
    part: PartLock,
    ctl: Ctl,
    /// Per target PE: held by this PE's threads around their RDMA to that
    /// PE's part (shared for a get, exclusive for a put). On `shmem` an
    /// RDMA is a copy by the calling thread through this process's mapping
    /// of the target's part, so two threads of this PE (sharing one lock on
    /// the target, or in a fence epoch) would otherwise race on those
    /// bytes. Never held across anything that waits for another lock of
    /// this module or for this lock's holders.
    rdma: Box<[PartLock]>,
    /// Bounce buffer of `chunk` elements for bulk get / put.
    bounce: Mutex<Option<OneSidedMemoryRegion<T>>>,
    /// Returned to the communicator's cache when the window drops.
    regions: Mutex<Option<Regions>>,
    /// The registered buffers and spawned futures of non-blocking
    /// operations in flight (a request holds only its slot), completed at
    /// the latest when the core drops.
    in_flight: Mutex<Vec<Option<Transfers<T>>>>,
}

impl<T: Element> WindowCore<T> {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, Vec<Option<Transfers<T>>>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Completes the transfers of every request still in flight (leaked
    /// ones: a request completes its own when waited or dropped).
    fn complete_in_flight(&self) {
        for t in self.in_flight().iter_mut().flatten() {
            t.complete();
        }
    }
}

impl<T: Element> Drop for WindowCore<T> {
    /// No transfer outlives the buffer it reads or fills.
    fn drop(&mut self) {
        self.complete_in_flight();
    }
}

/// A window's communicator and core, reached for one operation (and kept
/// alive by it).
struct Live<'w, T: Element> {
    win: &'w LamellarWindow<T>,
    comm: Comm,
    core: Arc<WindowCore<T>>,
}

/// What one non-blocking operation has in flight.
enum Transfers<T: Element> {
    /// RDMA futures and the registered buffer they read or fill.
    Rdma {
        buf: OneSidedMemoryRegion<T>,
        tasks: Vec<lamellar::LamellarTask<()>>,
    },
    /// A packed get: its active message, then the target's reply.
    Gather {
        target: usize,
        am: Option<AmHandle<Option<Vec<u8>>>>,
        reply: Option<Vec<u8>>,
    },
    /// A packed put: its active message, then whether the target did it.
    Scatter {
        target: usize,
        am: Option<AmHandle<bool>>,
        ok: bool,
    },
}

impl<T: Element> Transfers<T> {
    fn complete(&mut self) {
        match self {
            Transfers::Rdma { tasks, .. } => {
                for t in tasks.drain(..) {
                    t.block();
                }
            }
            Transfers::Gather { am, reply, .. } => {
                if let Some(h) = am.take() {
                    *reply = h.block();
                }
            }
            Transfers::Scatter { am, ok, .. } => {
                if let Some(h) = am.take() {
                    *ok = h.block();
                }
            }
        }
    }
}

/// Whether batches of several runs to another PE move as one packed
/// active message (the default) or as one RDMA operation per run
/// (process-wide; see
/// [`LamellarComm::set_packed_transfers`](crate::LamellarComm::set_packed_transfers)).
static PACKED: AtomicBool = AtomicBool::new(true);

/// Sets [`PACKED`].
pub(crate) fn set_packed(packed: bool) {
    PACKED.store(packed, Ordering::Relaxed);
}

/// Reads [`PACKED`].
pub(crate) fn packed() -> bool {
    PACKED.load(Ordering::Relaxed)
}

/// The error of a packed transfer the target refused (an unknown region
/// or a range out of bounds: a broken contract, nothing was accessed).
fn refused(target: usize) -> Error {
    Error::Backend(format!(
        "PE {target} refused a packed transfer (no such window region there, or out of bounds)"
    ))
}

/// The non-empty runs of a batch.
fn nonempty(runs: &[(usize, usize)]) -> Vec<(usize, usize)> {
    runs.iter().copied().filter(|r| r.1 > 0).collect()
}

impl<T: Element> LamellarWindow<T> {
    /// Collective: sets up a window over `regions` (new or reused, the same
    /// on every PE). `lens` holds every PE's length.
    pub(crate) fn create(comm: Comm, lens: &[usize], regions: Regions) -> Result<Self> {
        let rank = comm.rank();
        let local_len = lens[rank];
        let need = lens.iter().copied().max().unwrap_or(0);
        let region = regions.data::<T>();
        debug_assert!(region.len() >= need);
        // SAFETY: no PE accesses this window's regions before the barrier
        // below (a reused region's previous window was dropped by every PE
        // before this collective call); the slices are this PE's parts and
        // die at the end of the block.
        unsafe {
            region.as_mut_slice()[..need].fill(T::ZERO);
            regions.ctl.as_mut_slice().fill(0);
        }
        // SAFETY: only the address is taken (no reference is created).
        let local = unsafe { region.as_mut_ptr() }
            .map_err(|e| Error::Backend(format!("window region has no local part: {e:?}")))?;
        // The lock the packed transfers of other PEs take on this part.
        // Regions are registered when allocated; were they not, no packed
        // transfer could reach them and a lock of this window's own would
        // do.
        let part = crate::pack::part_lock(regions.id).unwrap_or_default();
        comm.creation_barrier();
        let core = Arc::new(WindowCore {
            region,
            id: regions.id,
            part,
            ctl: Ctl::new(regions.ctl.clone()),
            rdma: (0..lens.len()).map(|_| PartLock::default()).collect(),
            bounce: Mutex::new(None),
            regions: Mutex::new(Some(regions)),
            in_flight: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&core);
        let key = comm.keep_window(core);
        Ok(LamellarWindow {
            comm: comm.downgrade(),
            core: weak,
            key,
            rank,
            local: local as usize,
            local_len,
            chunk: (CHUNK_BYTES / std::mem::size_of::<T>()).max(1),
        })
    }

    /// The communicator and the core, for one operation; `Err` once the
    /// communicator's last handle has dropped (which released the core).
    fn live(&self) -> Result<Live<'_, T>> {
        let comm = self.comm.upgrade()?;
        // The communicator keeps the core until this window drops.
        let core = self.core.upgrade().ok_or_else(gone)?;
        Ok(Live {
            win: self,
            comm,
            core,
        })
    }

    /// Pointer to this PE's part (valid for `self.local_len` elements
    /// while the window lives).
    fn local_ptr(&self) -> *mut T {
        self.local as *mut T
    }

    /// A handle on the data region, for benchmarks comparing with raw
    /// Lamellar calls (a handle kept past the communicator's last handle
    /// makes Lamellar's world wait for it at exit).
    #[doc(hidden)]
    pub fn raw_region(&self) -> Result<SharedMemoryRegion<T>> {
        Ok(self.live()?.core.region.clone())
    }
}

/// The error of an operation on a window whose communicator is gone.
fn gone() -> Error {
    Error::Backend(
        "the window's communicator is gone (every LamellarComm handle of this PE dropped, \
         which released the window's regions): the window is unusable"
            .into(),
    )
}

impl<T: Element> Live<'_, T> {
    /// Reads `dst.len()` elements of `target` from `offset`.
    ///
    /// # Safety
    ///
    /// The range lies in `target`'s part and no local view of it is alive
    /// (the preconditions of [`RawWindow::get`]).
    unsafe fn load(&self, target: usize, offset: usize, dst: &mut [T]) {
        if dst.is_empty() {
        } else if target == self.win.rank {
            let read = self.core.part.read();
            // SAFETY: the caller's preconditions; the part's lock is held
            // shared.
            unsafe { self.copy_out(&read, offset, dst) };
        } else if dst.len() == 1 {
            self.comm.count_data_op();
            let _rdma = self.core.rdma[target].read();
            // SAFETY: in bounds of `target`'s part (the caller's
            // precondition; the region holds max(len) elements per PE);
            // `block` returns once the value has arrived. No other thread
            // of this PE writes the element by RDMA meanwhile (`rdma`).
            dst[0] = unsafe { self.core.region.get(target, offset).block() };
        } else {
            // Through a registered bounce buffer, in cache-sized chunks:
            // RDMA into it, then copy into `dst`.
            let mut bounce = self.bounce();
            let bounce = bounce.get_or_insert_with(|| {
                self.comm
                    .world()
                    .alloc_one_sided_mem_region::<T>(self.win.chunk)
            });
            for (i, part) in dst.chunks_mut(self.win.chunk).enumerate() {
                let sub = bounce.sub_region(0..part.len());
                self.comm.count_data_op();
                // SAFETY: in bounds of `target`'s part (`offset + i * chunk +
                // part.len() <= offset + dst.len()`, the caller's
                // precondition); no other thread of this PE writes it by
                // RDMA meanwhile (`rdma`). The bounce region is this
                // window's alone (behind its mutex) and `block` returns
                // once the data has arrived.
                unsafe {
                    let buf = LamellarBuffer::from_one_sided_memory_region(sub.clone());
                    let rdma = self.core.rdma[target].read();
                    self.core
                        .region
                        .get_into_buffer(target, offset + i * self.win.chunk, buf)
                        .block();
                    drop(rdma);
                    part.copy_from_slice(sub.as_slice());
                }
            }
        }
    }

    /// Writes `src` to `target` from `offset`.
    ///
    /// # Safety
    ///
    /// The range lies in `target`'s part and no local view of it is alive
    /// (the preconditions of [`RawWindow::write`]).
    unsafe fn store(&self, target: usize, offset: usize, src: &[T]) {
        if src.is_empty() {
        } else if target == self.win.rank {
            let write = self.core.part.write();
            // SAFETY: the caller's preconditions; the part's lock is held
            // exclusively.
            unsafe { self.copy_in(&write, offset, src, None) };
        } else if src.len() == 1 {
            self.comm.count_data_op();
            let _rdma = self.core.rdma[target].write();
            // SAFETY: in bounds of `target`'s part (the caller's
            // precondition); `block` returns once the transfer is complete.
            // No other thread of this PE reads or writes the element by
            // RDMA meanwhile (`rdma`).
            unsafe { self.core.region.put(target, offset, src[0]).block() };
        } else {
            // Through the registered bounce buffer, in cache-sized chunks.
            let mut bounce = self.bounce();
            let bounce = bounce.get_or_insert_with(|| {
                self.comm
                    .world()
                    .alloc_one_sided_mem_region::<T>(self.win.chunk)
            });
            for (i, part) in src.chunks(self.win.chunk).enumerate() {
                let sub = bounce.sub_region(0..part.len());
                self.comm.count_data_op();
                // SAFETY: in bounds of `target`'s part (the caller's
                // precondition); no other thread of this PE reads or writes
                // it by RDMA meanwhile (`rdma`). The bounce region is this
                // window's alone (behind its mutex), and `block` returns
                // once the transfer is complete, before the region is
                // written again.
                unsafe {
                    sub.as_mut_slice().copy_from_slice(part);
                    let _rdma = self.core.rdma[target].write();
                    self.core
                        .region
                        .put_buffer(target, offset + i * self.win.chunk, &sub)
                        .block();
                }
            }
        }
    }

    /// Combines `src` into `target` from `offset` with `op` under the
    /// target's accumulate guard.
    ///
    /// # Safety
    ///
    /// As for [`Live::store`].
    unsafe fn combine(&self, target: usize, offset: usize, src: &[T], op: AccumulateOp) {
        if src.is_empty() {
            return;
        }
        if target == self.win.rank {
            // SAFETY: the caller's preconditions, for the one run.
            unsafe { self.combine_own(&[(offset, src.len())], src, op) };
            return;
        }
        if op == AccumulateOp::Replace && src.len() == 1 {
            // A single-element replace is one RDMA write: atomic as it is.
            self.core
                .ctl
                .with_acc_guard(target, &|| self.comm.progress(), || {
                    // SAFETY: the caller's preconditions.
                    unsafe { self.store(target, offset, src) }
                });
            return;
        }
        let mut cur = vec![T::ZERO; src.len()];
        self.core
            .ctl
            .with_acc_guard(target, &|| self.comm.progress(), || {
                // SAFETY: the caller's preconditions, for the same range.
                unsafe { self.load(target, offset, &mut cur) };
                for (c, &s) in cur.iter_mut().zip(src) {
                    *c = T::combine(op, *c, s);
                }
                // SAFETY: as above.
                unsafe { self.store(target, offset, &cur) };
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            });
    }

    /// Copies `dst.len()` elements of this PE's own part from `offset`
    /// into `dst`. `_held`: the part's lock, held shared by the caller
    /// (once for a whole batch of runs).
    ///
    /// # Safety
    ///
    /// `offset + dst.len() <= local_len`, no mutable local view is alive,
    /// and `_held` is a guard of `self.core.part`.
    unsafe fn copy_out(&self, _held: &PartRead<'_>, offset: usize, dst: &mut [T]) {
        // SAFETY: in bounds of the part (the caller's precondition), which
        // holds initialised `T`s. The caller holds the part's lock shared,
        // so no thread of this process writes them meanwhile (own-part
        // stores and accumulates, and the packed transfers of other PEs,
        // hold it exclusively); no mutable local view is alive (the
        // caller's precondition). `dst` is a separate buffer (no reference
        // into window memory escapes a local view).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.win.local_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }

    /// Writes `src` (`op` = `None`) or combines it with `op` into this
    /// PE's own part from `offset`. `_held`: the part's lock, held
    /// exclusively by the caller (once for a whole batch of runs; for an
    /// accumulate inside the accumulate guard).
    ///
    /// # Safety
    ///
    /// `offset + src.len() <= local_len`, no local view is alive, and
    /// `_held` is a guard of `self.core.part`.
    unsafe fn copy_in(
        &self,
        _held: &PartWrite<'_>,
        offset: usize,
        src: &[T],
        op: Option<AccumulateOp>,
    ) {
        let dst = self.win.local_ptr();
        match op {
            // SAFETY: in bounds of the local part and no local view is
            // alive (the caller's preconditions), so no reference into the
            // part exists; the caller holds the part's lock exclusively,
            // so no other thread of this process reads or writes it
            // meanwhile (own-part copies and the packed transfers of other
            // PEs hold the lock); `copy` tolerates overlap.
            None => unsafe { std::ptr::copy(src.as_ptr(), dst.add(offset), src.len()) },
            Some(op) => {
                for (i, &s) in src.iter().enumerate() {
                    // SAFETY: `offset + i < local_len`, and no other thread
                    // of this process accesses the element meanwhile, as
                    // above.
                    unsafe {
                        let d = dst.add(offset + i);
                        d.write(T::combine(op, d.read(), s));
                    }
                }
            }
        }
    }

    /// Combines consecutive pieces of `src` into the runs of this PE's own
    /// part with `op`, in place: under the accumulate guard (other PEs'
    /// accumulates are RDMA read-combine-writes under it), then the part's
    /// lock (in this order, as the packed accumulates of other PEs: their
    /// origin holds the guard), each taken once for all the runs.
    ///
    /// # Safety
    ///
    /// As for [`Live::store`], for every run on this PE.
    unsafe fn combine_own(&self, runs: &[(usize, usize)], src: &[T], op: AccumulateOp) {
        let me = self.win.rank;
        self.core
            .ctl
            .with_acc_guard(me, &|| self.comm.progress(), || {
                let write = self.core.part.write();
                for (offset, piece) in run_pieces(runs) {
                    // SAFETY: the caller's preconditions, for each run; the
                    // part's lock is held exclusively.
                    unsafe { self.copy_in(&write, offset, &src[piece], Some(op)) };
                }
            });
    }

    /// Keeps `t` until [`Live::finish`] of the returned slot.
    fn hold(&self, t: Transfers<T>) -> usize {
        let mut f = self.core.in_flight();
        match f.iter().position(Option::is_none) {
            Some(i) => {
                f[i] = Some(t);
                i
            }
            None => {
                f.push(Some(t));
                f.len() - 1
            }
        }
    }

    /// Completes the transfers of `slot`, then runs `after` on the data
    /// they read (before it is freed; empty for writes). `Err` if the
    /// target refused a packed transfer.
    fn finish(&self, slot: usize, after: impl FnOnce(&[u8]) -> Result<()>) -> Result<()> {
        let t = self.core.in_flight().get_mut(slot).and_then(Option::take);
        let Some(mut t) = t else { return Ok(()) };
        t.complete();
        match &t {
            Transfers::Rdma { buf, .. } => {
                // SAFETY: every transfer into or out of `buf` has
                // completed; the buffer is this request's alone.
                after(bytemuck::cast_slice(unsafe { buf.as_slice() }))
            }
            Transfers::Gather {
                reply: Some(bytes), ..
            } => after(bytes),
            Transfers::Scatter { ok: true, .. } => after(&[]),
            Transfers::Gather { target, .. } | Transfers::Scatter { target, .. } => {
                Err(refused(*target))
            }
        }
    }

    /// Whether a batch to `target` moves as one packed active message:
    /// another PE, and more than one non-empty run.
    fn packs(&self, target: usize, runs: &[(usize, usize)]) -> bool {
        target != self.win.rank
            && PACKED.load(Ordering::Relaxed)
            && runs.iter().filter(|r| r.1 > 0).nth(1).is_some()
    }

    /// Reads the runs of `target` into `dst`: one packed active message
    /// ([`Live::packs`]), else one [`Live::load`] per run.
    ///
    /// # Safety
    ///
    /// As for [`Live::load`], for every run.
    unsafe fn load_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        dst: &mut [T],
    ) -> Result<()> {
        if target == self.win.rank {
            // The part's lock once for the whole batch (copies only, no
            // Lamellar call under it).
            let read = self.core.part.read();
            for (offset, piece) in run_pieces(runs) {
                // SAFETY: the caller's preconditions, for each run; the
                // part's lock is held shared.
                unsafe { self.copy_out(&read, offset, &mut dst[piece]) };
            }
            return Ok(());
        }
        if !self.packs(target, runs) {
            for (offset, piece) in run_pieces(runs) {
                // SAFETY: the caller's preconditions, for each run.
                unsafe { self.load(target, offset, &mut dst[piece]) };
            }
            return Ok(());
        }
        self.comm.count_data_op();
        let am = GatherRuns {
            id: self.core.id,
            runs: nonempty(runs),
        };
        let reply = self.comm.world().spawn_am_pe(target, am).block();
        match reply {
            Some(bytes) if bytes.len() == std::mem::size_of_val(dst) => {
                bytemuck::cast_slice_mut::<T, u8>(dst).copy_from_slice(&bytes);
                Ok(())
            }
            _ => Err(refused(target)),
        }
    }

    /// Writes (`op` = `None`) or combines consecutive pieces of `src` into
    /// the runs of `target`: one packed active message ([`Live::packs`];
    /// an accumulate under the target's accumulate guard), else one
    /// [`Live::store`] / [`Live::combine`] per run.
    ///
    /// # Safety
    ///
    /// As for [`Live::store`], for every run.
    unsafe fn store_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        if target == self.win.rank {
            match op {
                None => {
                    // The part's lock once for the whole batch (copies
                    // only, no Lamellar call under it).
                    let write = self.core.part.write();
                    for (offset, piece) in run_pieces(runs) {
                        // SAFETY: the caller's preconditions, for each
                        // run; the part's lock is held exclusively.
                        unsafe { self.copy_in(&write, offset, &src[piece], None) };
                    }
                }
                // SAFETY: the caller's preconditions.
                Some(op) => unsafe { self.combine_own(runs, src, op) },
            }
            return Ok(());
        }
        if !self.packs(target, runs) {
            for (offset, piece) in run_pieces(runs) {
                // SAFETY: the caller's preconditions, for each run.
                unsafe {
                    match op {
                        None => self.store(target, offset, &src[piece]),
                        Some(op) => self.combine(target, offset, &src[piece], op),
                    }
                }
            }
            return Ok(());
        }
        let send = || {
            self.comm.count_data_op();
            let am = ScatterRuns {
                id: self.core.id,
                runs: nonempty(runs),
                op: op_code(op),
                bytes: bytemuck::cast_slice(src).to_vec(),
            };
            self.comm.world().spawn_am_pe(target, am).block()
        };
        let ok = match op {
            None => send(),
            Some(_) => self
                .core
                .ctl
                .with_acc_guard(target, &|| self.comm.progress(), send),
        };
        if ok {
            Ok(())
        } else {
            Err(refused(target))
        }
    }

    fn bounce(&self) -> std::sync::MutexGuard<'_, Option<OneSidedMemoryRegion<T>>> {
        self.core.bounce.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// SAFETY: locks exclude as documented (`Ctl::lock`: a reader/writer lock
// word per target manipulated with remote atomics; exclusive excludes every
// other holder, shared excludes an exclusive one). Data moves only within
// the ranges given: `load` / `store` copy exactly `offset..offset + len` of
// the target's part, which the checked layer bounds by the lengths every PE
// agreed on (the region holds `max(len)` elements per PE). Every blocking
// operation is complete when it returns (`block` on every RDMA future, a
// SeqCst fence before the unlock publishes the epoch's local writes), and a
// request's transfers read or fill only the registered buffer the window
// owns, never the caller's `src` after returning; a request's wait or drop
// (or, for leaked ones, `release` and the window's drop) completes them,
// and `dst` is written only by the wait or drop of its request. Local views
// get the pointer to this PE's part and its true length. Concurrent
// operations of several threads of this PE (which the checked layer
// admits under one lock or in a fence epoch) do not race in this process:
// own-part copies and the packed transfers other PEs ask of this PE hold
// the part's lock, and this PE's RDMA to another PE holds `rdma` (see the
// module documentation and `crate::pack` for what these do not cover).
unsafe impl<T: Element> RawWindow<T> for LamellarWindow<T> {
    unsafe fn lock(&self, target: usize, kind: LockKind) -> Result<()> {
        let l = self.live()?;
        l.core
            .ctl
            .lock(target, kind == LockKind::Exclusive, &|| l.comm.progress());
        Ok(())
    }

    unsafe fn unlock(&self, target: usize, kind: LockKind) -> Result<()> {
        // Operations are complete; publish this PE's local writes before
        // another PE can take the lock.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let l = self.live()?;
        l.core
            .ctl
            .unlock(target, kind == LockKind::Exclusive, &|| l.comm.progress());
        Ok(())
    }

    unsafe fn flush(&self, _target: usize) -> Result<()> {
        // Operations complete when they return.
        Ok(())
    }

    unsafe fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        // SAFETY: the caller's preconditions (in bounds, in an epoch, no
        // conflicting view).
        unsafe { self.live()?.load(target, offset, dst) };
        Ok(())
    }

    unsafe fn write(
        &self,
        target: usize,
        offset: usize,
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        let l = self.live()?;
        // SAFETY: the caller's preconditions (in bounds, in an epoch
        // admitting writes, no view).
        unsafe {
            match op {
                None => l.store(target, offset, src),
                Some(op) => l.combine(target, offset, src, op),
            }
        }
        Ok(())
    }

    /// One packed active message for several runs on another PE, else
    /// one RDMA get (or local copy) per run.
    unsafe fn get_runs(&self, target: usize, runs: &[(usize, usize)], dst: &mut [T]) -> Result<()> {
        // SAFETY: the caller's preconditions.
        unsafe { self.live()?.load_runs(target, runs, dst) }
    }

    unsafe fn write_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        // SAFETY: the caller's preconditions.
        unsafe { self.live()?.store_runs(target, runs, src, op) }
    }

    /// One packed active message for several runs (spawned at once; the
    /// wait blocks on it and copies the reply into `dst`), else one RDMA
    /// future per run, spawned at once, into a registered buffer of
    /// `dst.len()` elements; the wait blocks on the futures, then copies
    /// into `dst`.
    unsafe fn get_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        dst: &mut [T],
    ) -> Result<Box<dyn Request + 'w>> {
        let l = self.live()?;
        if l.packs(target, runs) {
            l.comm.count_data_op();
            let am = GatherRuns {
                id: l.core.id,
                runs: nonempty(runs),
            };
            let am = Some(l.comm.world().spawn_am_pe(target, am));
            let slot = l.hold(Transfers::Gather {
                target,
                am,
                reply: None,
            });
            return Ok(Box::new(LamellarGets {
                win: self,
                slot,
                dst: (dst.as_mut_ptr(), dst.len()),
                done: false,
            }));
        }
        let buf = l.comm.world().alloc_one_sided_mem_region::<T>(dst.len());
        let mut tasks = Vec::new();
        // On `shmem`, `spawn` makes the copy itself, under this lock; on
        // other lamellae the transfer may go on after it (the NIC's or the
        // provider's, not a thread of this PE's in Rust).
        let rdma = l.core.rdma[target].read();
        for (offset, piece) in run_pieces(runs).filter(|(_, p)| !p.is_empty()) {
            let sub = buf.sub_region(piece);
            // SAFETY: in bounds of `target`'s part (the caller's
            // precondition); `sub` is a part of this request's own
            // registered buffer, which nothing reads before the future
            // completed (in `finish`). No other thread of this PE writes
            // the runs by RDMA meanwhile (`rdma`).
            let task = unsafe {
                let lb = LamellarBuffer::from_one_sided_memory_region(sub);
                l.core.region.get_into_buffer(target, offset, lb).spawn()
            };
            l.comm.count_data_op();
            tasks.push(task);
        }
        drop(rdma);
        let slot = l.hold(Transfers::Rdma { buf, tasks });
        Ok(Box::new(LamellarGets {
            win: self,
            slot,
            dst: (dst.as_mut_ptr(), dst.len()),
            done: false,
        }))
    }

    /// Puts: for several runs one packed active message carrying a copy of
    /// `src`, else `src` copied into a registered buffer and one RDMA future
    /// per run; spawned at once (so `src` is free when this returns); the
    /// wait blocks on them. Accumulates complete before returning.
    unsafe fn write_runs_start<'w>(
        &'w self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<Box<dyn Request + 'w>> {
        if op.is_some() {
            // SAFETY: the caller's preconditions cover the blocking form.
            unsafe { self.write_runs(target, runs, src, op)? };
            return Ok(Box::new(Completed));
        }
        let l = self.live()?;
        if l.packs(target, runs) {
            l.comm.count_data_op();
            let am = ScatterRuns {
                id: l.core.id,
                runs: nonempty(runs),
                op: op_code(None),
                bytes: bytemuck::cast_slice(src).to_vec(),
            };
            let am = Some(l.comm.world().spawn_am_pe(target, am));
            let slot = l.hold(Transfers::Scatter {
                target,
                am,
                ok: false,
            });
            return Ok(Box::new(LamellarPuts {
                win: self,
                slot,
                done: false,
            }));
        }
        let buf = l.comm.world().alloc_one_sided_mem_region::<T>(src.len());
        // SAFETY: the request's own registered buffer, not yet shared with
        // any transfer; the slice dies at the end of the statement.
        unsafe { buf.as_mut_slice().copy_from_slice(src) };
        let mut tasks = Vec::new();
        // As in `get_runs_start`.
        let rdma = l.core.rdma[target].write();
        for (offset, piece) in run_pieces(runs).filter(|(_, p)| !p.is_empty()) {
            let sub = buf.sub_region(piece);
            // SAFETY: in bounds of `target`'s part (the caller's
            // precondition, in an exclusive lock epoch); `sub` is not
            // written again (the request only reads it) and lives in the
            // window's transfers until the future completed. No other
            // thread of this PE reads or writes the runs by RDMA meanwhile
            // (`rdma`).
            let task = unsafe { l.core.region.put_buffer(target, offset, &sub).spawn() };
            l.comm.count_data_op();
            tasks.push(task);
        }
        drop(rdma);
        let slot = l.hold(Transfers::Rdma { buf, tasks });
        Ok(Box::new(LamellarPuts {
            win: self,
            slot,
            done: false,
        }))
    }

    /// An allgather of the token (on the communicator's collective
    /// channel: the checked layer refuses a vote that does not name the
    /// same fence of the same window on every rank); its barriers also
    /// order the operations of the epoch (they are complete when they
    /// return).
    unsafe fn fence_vote(&self, token: u64) -> Result<Vec<u64>> {
        let all = self.comm.upgrade()?.allgather(&[token])?;
        Ok(all
            .iter()
            .map(|v| v.first().copied().unwrap_or(u64::MAX))
            .collect())
    }

    /// Nothing: the vote's allgather ordered the epoch.
    unsafe fn fence(&self, _end: bool) -> Result<()> {
        Ok(())
    }

    /// `f` on this PE's part. Every access to it is an RDMA or a copy
    /// that is complete when it returns, so there is nothing to
    /// synchronise around it. The part's lock is not taken: the epochs keep
    /// conflicting accesses out (the caller's lock on its own part excludes
    /// other PEs' writers, and the checked layer this PE's own), and `f`
    /// may wait for a packed transfer that needs the lock (see `pack.rs`).
    unsafe fn with_local<R>(
        &self,
        _mutable: bool,
        f: impl FnOnce(*mut T, usize) -> R,
    ) -> Result<R> {
        // The core (hence the region and this pointer) lives until `f`
        // returned.
        let _live = self.live()?;
        Ok(f(self.local_ptr(), self.local_len))
    }

    /// Completes the transfers of leaked requests first (their targets
    /// stay locked until they are complete, so no other PE can open a view
    /// under a late write), then releases the locks so that no other PE
    /// waits for them forever. A fence epoch holds nothing to release.
    /// Nothing to do once the communicator is gone (it completed the
    /// transfers when it released the core).
    unsafe fn release(&self, locks: &[(usize, LockKind)], _fence_open: bool) {
        let Ok(l) = self.live() else { return };
        l.core.complete_in_flight();
        for &(t, kind) in locks {
            l.core
                .ctl
                .unlock(t, kind == LockKind::Exclusive, &|| l.comm.progress());
        }
    }
}

/// Reads in flight ([`LamellarWindow::get_runs_start`]): their slot in
/// the window's transfers, and the caller's destination (written once they
/// completed).
struct LamellarGets<'w, T: Element> {
    win: &'w LamellarWindow<T>,
    slot: usize,
    dst: (*mut T, usize),
    done: bool,
}

// SAFETY: `dst` is the caller's buffer, which the contract of
// `get_runs_start` keeps valid and untouched until this request is waited
// or dropped, on whatever thread; the window is `Sync`.
unsafe impl<T: Element> Send for LamellarGets<'_, T> {}

impl<T: Element> LamellarGets<'_, T> {
    /// `Err` (`dst` untouched) once the communicator is gone, or if the
    /// target refused a packed get.
    fn finish(&mut self) -> Result<()> {
        self.done = true;
        let (ptr, len) = self.dst;
        self.win.live()?.finish(self.slot, |bytes| {
            if bytes.len() != len * std::mem::size_of::<T>() {
                return Err(Error::Backend(format!(
                    "a get returned {} bytes for {len} elements",
                    bytes.len()
                )));
            }
            // SAFETY: `ptr` / `len` is the caller's destination, valid and
            // unaliased until this request is done (the contract of
            // `get_runs_start`); `bytes` (the completed transfers' data)
            // holds exactly its `len` elements.
            unsafe {
                std::slice::from_raw_parts_mut(ptr.cast::<u8>(), bytes.len()).copy_from_slice(bytes)
            };
            Ok(())
        })
    }
}

impl<T: Element> Request for LamellarGets<'_, T> {
    fn wait(mut self: Box<Self>) -> Result<()> {
        self.finish()
    }
}

impl<T: Element> Drop for LamellarGets<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.finish();
        }
    }
}

/// Puts in flight ([`LamellarWindow::write_runs_start`]): their slot in the
/// window's transfers (which hold the registered copy of the source).
struct LamellarPuts<'w, T: Element> {
    win: &'w LamellarWindow<T>,
    slot: usize,
    done: bool,
}

// SAFETY: a slot number and a reference to a `Sync` window.
unsafe impl<T: Element> Send for LamellarPuts<'_, T> {}

impl<T: Element> Request for LamellarPuts<'_, T> {
    /// `Err` once the communicator is gone (which completed the puts), or
    /// if the target refused a packed put.
    fn wait(mut self: Box<Self>) -> Result<()> {
        self.done = true;
        self.win.live()?.finish(self.slot, |_| Ok(()))
    }
}

impl<T: Element> Drop for LamellarPuts<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            if let Ok(l) = self.win.live() {
                let _ = l.finish(self.slot, |_| Ok(()));
            }
        }
    }
}

impl<T: Element> Drop for LamellarWindow<T> {
    /// The checked window released the locks already ([`RawWindow::release`],
    /// which completed leaked requests' transfers); completing them again
    /// is harmless and covers a raw window dropped on its own. Then the
    /// communicator lets go of the core and takes the regions back. Once
    /// the communicator is gone there is nothing left to do.
    fn drop(&mut self) {
        let Ok(comm) = self.comm.upgrade() else {
            return;
        };
        if let Some(core) = comm.release_window::<T>(self.key) {
            core.complete_in_flight();
            let regions = core
                .regions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            drop(core);
            if let Some(regions) = regions {
                comm.recycle(regions);
            }
        }
    }
}
