//! [`MpiComm`]: the [`OneSidedComm`] over an MPI communicator, and
//! [`MpiEnv`]: the guard that owns MPI's initialisation.
//!
//! # Lifetime of MPI
//!
//! [`MpiComm::init`] initialises MPI and returns an [`MpiEnv`] guard with a
//! communicator. Dropping the guard finalises MPI, so it must outlive every
//! communicator, array and window:
//!
//! ```no_run
//! use distarray::{DistArray, OneSidedComm};
//! use distarray_mpi::MpiComm;
//!
//! fn main() -> distarray::Result<()> {
//!     let (_env, comm) = MpiComm::init()?; // `_env`, not `_`: keep the guard
//!     let a = DistArray::<f64, _, 1>::new(comm.clone(), [100])?;
//!     a.fill(1.0)?;
//!     assert_eq!(a.sum()?, 100.0);
//!     Ok(())
//! } // `a`, then `comm`, then `_env` drop: windows are freed before MPI_Finalize
//! ```
//!
//! Locals drop in reverse order of declaration, so declaring the guard
//! first is enough. Handles that survive the guard anyway (a clone stored
//! in a global, say) do not crash at exit: once MPI is finalised (by the
//! guard, by the `mpi` crate's `Universe` or by the application: the crate
//! watches `MPI_Finalize` through an attribute on `MPI_COMM_SELF`),
//! dropping them frees nothing, and every operation (lock, get, put,
//! accumulate, fence, local views, collectives) returns
//! [`Error::Backend`] without calling MPI.
//!
//! # Threads
//!
//! [`MpiComm::init`] asks MPI for `MPI_THREAD_SERIALIZED` (and no more:
//! some one-sided components, such as Open MPI's osc/pt2pt that works over
//! TCP, refuse `MPI_THREAD_MULTIPLE`). Every MPI call of this crate is then
//! serialised by a process-wide lock, which is what makes the handles
//! `Send` and `Sync`; so a level below `MPI_THREAD_SERIALIZED` is refused
//! with an `Err` (by [`MpiComm::init_with_threading`], and by
//! [`MpiComm::world`] / [`MpiComm::from_communicator`] when the application
//! initialised MPI itself). [`MpiEnv::threading`] reports the level MPI
//! provides; an application that asks for `MPI_THREAD_MULTIPLE` and gets it
//! skips the lock. The application's own MPI calls must respect the level.
//! Collectives on one communicator (barrier, allgather, window creation,
//! fences) are ordered by a per-communicator lock, so threads of one rank
//! never run two of them at once; they still have to be called in the same
//! order on every rank.
//!
//! # Choosing the MPI implementation
//!
//! The crate builds against Open MPI and the MPICH family (MPICH, Intel MPI,
//! MVAPICH, Cray MPICH) from the same source: MPI handles and constants come
//! from a small C shim compiled by the build script against the MPI that
//! the `mpi` crate finds. That search honours `MPI_PKG_CONFIG` (a
//! pkg-config name, e.g. `mpich`), `CRAY_MPICH_DIR` and `MPICC` (the
//! compiler wrapper, e.g. `MPICC=mpicc.mpich`), then tries `mpicc` and
//! pkg-config. Use one target directory per implementation
//! (`MPICC=mpicc.mpich CARGO_TARGET_DIR=target/mpich cargo build`), and
//! launch with that implementation's `mpiexec`; a shim and bindings built
//! against two different libraries are detected at start-up and refused.
//! Library behaviours that need a workaround are found by trying them at
//! start-up, never by name ([`detected_quirks`](crate::detected_quirks)).
//!
//! # Failures
//!
//! Constructing an `MpiComm` installs a panic hook (once per process) that
//! prints the panic and then calls `MPI_Abort(MPI_COMM_WORLD, 1)`, so one
//! panicking rank ends the whole job instead of leaving the others waiting
//! in a collective forever. This includes panics that would later be caught
//! with `catch_unwind`: under MPI, a panic is fatal to the job.

use std::fmt;
use std::io::Write;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, Once};

use distarray::pending::HandleSlot;
use distarray::{Element, Error, NeighbourMessages, OneSidedComm, Result};
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};
use mpi::Threading;

use crate::lifetime;
use crate::quirks;
use crate::raw::{self, serial};
use crate::window::MpiWindow;

/// Owns MPI's initialisation: dropping it calls `MPI_Finalize`.
///
/// Returned by [`MpiComm::init`]. Keep it alive (bind it to a named
/// variable such as `_env`, declared before any communicator or array) for
/// as long as MPI is used. It is deliberately neither `Send` nor `Sync`:
/// MPI must be finalised by the thread that initialised it.
pub struct MpiEnv {
    universe: Option<Universe>,
    threading: Threading,
    _not_send: PhantomData<*const ()>,
}

impl MpiEnv {
    /// The thread level MPI provides (at least `MPI_THREAD_SERIALIZED`).
    pub fn threading(&self) -> Threading {
        self.threading
    }

    /// The MPI library's version string (`MPI_Get_library_version`, first
    /// line), e.g. "Open MPI v4.1.4, ..." or "MPICH Version: 4.0.2".
    pub fn library_version(&self) -> String {
        raw::library_version()
    }
}

impl fmt::Debug for MpiEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiEnv")
            .field("threading", &self.threading)
            .finish()
    }
}

impl Drop for MpiEnv {
    fn drop(&mut self) {
        let live = lifetime::live_windows();
        if live > 0 {
            // Finalising with windows alive is erroneous MPI: say so, and
            // free them first (see `lifetime`); their handles return
            // errors from now on.
            eprintln!(
                "distarray-mpi: MPI_Finalize with {live} window(s) still alive on this rank \
                 (freeing them); drop arrays and windows before the MpiEnv guard"
            );
        }
        let _serial = lifetime::finalize_guard();
        lifetime::finalizing_with_lock_held();
        // Dropping the universe calls MPI_Finalize (which runs the
        // crate's finalisation callback first).
        drop(self.universe.take());
    }
}

/// The per-communicator state shared by every clone of an [`MpiComm`] and
/// by the windows created on it (which keep the communicator alive).
pub(crate) struct CommInner {
    comm: Option<SimpleCommunicator>,
    /// Held for the whole of each collective on `comm`, so that threads of
    /// one rank sharing a handle never run two collectives on it at once
    /// (MPI requires collectives on a communicator to be ordered).
    collectives: Mutex<()>,
    raw: ffi::MPI_Comm,
    /// A duplicate of the communicator that carries only the messages of
    /// [`NeighbourMessages::exchange_bytes`] (freed with it).
    exchange: Option<SimpleCommunicator>,
    exchange_raw: ffi::MPI_Comm,
    rank: usize,
    size: usize,
    /// The BLACS grids made on this communicator by the ScaLAPACK
    /// wrappers, kept for later calls and freed before the communicator.
    #[cfg(feature = "scalapack")]
    pub(crate) blacs: Mutex<Vec<Arc<crate::scalapack::Grid>>>,
    /// This rank's slot for its one non-blocking block handle on the
    /// communicator: settled at the entry of every collective
    /// ([`CommInner::collective`]) and of every exchange wait, and by the
    /// windows' `WindowState` before every lock and fence.
    handles: Arc<HandleSlot>,
}

// SAFETY: an MPI communicator handle is a process-wide object, not tied to
// the thread that created it. Concurrent use from several threads is
// allowed by MPI under MPI_THREAD_MULTIPLE; below that level, every MPI call
// of this crate holds the process-wide lock of `raw::serial`, so calls never
// overlap. Collectives, which MPI requires to be ordered per communicator,
// hold `collectives` from start to end. `rank` and `size` are plain data.
unsafe impl Send for CommInner {}
// SAFETY: see `Send`; `&CommInner` only gives access to the handle, whose
// uses are serialised as described there.
unsafe impl Sync for CommInner {}

impl CommInner {
    pub(crate) fn raw(&self) -> ffi::MPI_Comm {
        self.raw
    }

    pub(crate) fn rank(&self) -> usize {
        self.rank
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    fn comm(&self) -> &SimpleCommunicator {
        self.comm.as_ref().expect("communicator present until drop")
    }

    /// Takes the lock that orders this rank's collectives on the
    /// communicator (take it before [`serial`]), after completing this
    /// rank's non-blocking handle in flight: a collective waits for every
    /// rank, and none may wait for this one's handle locks meanwhile (see
    /// [`distarray::pending`]).
    pub(crate) fn collective(&self) -> MutexGuard<'_, ()> {
        self.handles.settle();
        self.collectives.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Collective: `MPI_Allgather` of one word per rank on the private
    /// duplicate communicator (whose only other traffic is the neighbour
    /// exchange's point-to-point messages, in another matching context):
    /// the vote of a window fence, which no collective of the application
    /// on the communicator can match.
    pub(crate) fn fence_vote(&self, token: u64) -> Result<Vec<u64>> {
        let _collective = self.collective();
        raw::ensure_live()?;
        let mut all = vec![0u64; self.size];
        let _serial = raw::enter()?;
        self.exchange
            .as_ref()
            .expect("duplicate present until drop")
            .all_gather_into(&token, &mut all[..]);
        Ok(all)
    }

    /// Collective: `MPI_Barrier`.
    pub(crate) fn barrier(&self) -> Result<()> {
        let _collective = self.collective();
        let _serial = raw::enter()?;
        self.barrier_locked()
    }

    /// [`CommInner::barrier`] for callers that already hold
    /// [`CommInner::collective`] and [`serial`].
    pub(crate) fn barrier_locked(&self) -> Result<()> {
        raw::ensure_live()?;
        self.comm().barrier();
        Ok(())
    }

    /// Collective: `MPI_Allgather` of one word per rank, for callers that
    /// already hold [`CommInner::collective`] (but not [`serial`]). Like a
    /// barrier, no rank returns before every rank has called it.
    pub(crate) fn allgather_word_locked(&self, word: u64) -> Result<Vec<u64>> {
        raw::ensure_live()?;
        let mut all = vec![0u64; self.size];
        let _serial = raw::enter()?;
        self.comm().all_gather_into(&word, &mut all[..]);
        Ok(all)
    }

    /// Collective: `MPI_Allgather` of the byte counts, then
    /// `MPI_Allgatherv` of the bytes.
    pub(crate) fn allgather<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>> {
        let _collective = self.collective();
        self.allgather_locked(local)
    }

    /// [`CommInner::allgather`] for callers that already hold
    /// [`CommInner::collective`] (but not [`serial`]).
    pub(crate) fn allgather_locked<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>> {
        raw::ensure_live()?;
        let elem = std::mem::size_of::<T>();
        let too_big = || {
            Error::InvalidArgument(
                "allgather of more than 2^31 - 1 bytes per rank or in total".into(),
            )
        };
        let my_bytes = i32::try_from(std::mem::size_of_val(local)).map_err(|_| too_big())?;
        let comm = self.comm();
        let mut counts = vec![0i32; self.size];
        {
            let _serial = raw::enter()?;
            comm.all_gather_into(&my_bytes, &mut counts[..]);
        }
        let mut displs = Vec::with_capacity(counts.len());
        let mut total: i32 = 0;
        for &c in &counts {
            displs.push(total);
            total = total.checked_add(c).ok_or_else(too_big)?;
        }
        // Receive into elements of `T` (correctly aligned), viewed as bytes.
        let mut out: Vec<T> = vec![T::ZERO; total as usize / elem];
        {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut out[..]);
            let send: &[u8] = bytemuck::cast_slice(local);
            let mut partition = PartitionMut::new(bytes, &counts[..], &displs[..]);
            let _serial = raw::enter()?;
            comm.all_gather_varcount_into(send, &mut partition);
        }
        let mut parts = Vec::with_capacity(counts.len());
        for (&c, &d) in counts.iter().zip(&displs) {
            let (start, n) = (d as usize / elem, c as usize / elem);
            parts.push(out[start..start + n].to_vec());
        }
        Ok(parts)
    }
}

thread_local! {
    /// The combiner of the `MPI_Allreduce` this thread is in, and its
    /// payload length, for [`combine_trampoline`].
    static COMBINER: std::cell::Cell<Option<(*const (), usize)>> =
        const { std::cell::Cell::new(None) };
}

/// The `MPI_User_function` of [`CommInner::allreduce_bytes`]: applies the
/// combiner of the calling thread's allreduce to each of the `*len`
/// payloads (elements of the contiguous derived datatype).
unsafe extern "C" fn combine_trampoline(
    invec: *mut std::os::raw::c_void,
    inoutvec: *mut std::os::raw::c_void,
    len: *mut std::os::raw::c_int,
    _datatype: *mut ffi::MPI_Datatype,
) {
    let Some((f, bytes)) = COMBINER.with(|c| c.get()) else {
        eprintln!("distarray-mpi: reduction operator called outside its allreduce");
        abort_world(1);
    };
    // SAFETY: `f` was made in `allreduce_bytes` from a `&Combiner` that
    // outlives the MPI_Allreduce during which MPI calls this function on
    // the same thread (blocking collectives apply user operations on the
    // calling thread).
    let f: &distarray::collective::Combiner<'_> = unsafe { &*(f as *const _) };
    // SAFETY: MPI passes a valid count.
    let n = usize::try_from(unsafe { *len }).unwrap_or(0);
    for i in 0..n {
        // SAFETY: MPI passes two buffers of `*len` elements of our datatype,
        // `bytes` bytes each; they do not overlap (MPI's contract).
        let (lo, hi) = unsafe {
            (
                std::slice::from_raw_parts((invec as *const u8).add(i * bytes), bytes),
                std::slice::from_raw_parts_mut((inoutvec as *mut u8).add(i * bytes), bytes),
            )
        };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(lo, hi))).is_err() {
            // unwinding into MPI is not possible; a panic is fatal anyway
            abort_world(1);
        }
    }
}

/// The non-commutative MPI operator applying the calling thread's combiner
/// (created once per process; MPI frees it at finalisation).
fn combine_op() -> Result<ffi::MPI_Op> {
    /// An MPI operator handle, shared by every thread of the process.
    struct OpHandle(ffi::MPI_Op);
    // SAFETY: an MPI_Op is a process-wide handle (a pointer in Open MPI, an
    // int in MPICH) that MPI lets any thread use; it is only read here.
    unsafe impl Send for OpHandle {}
    // SAFETY: see `Send`.
    unsafe impl Sync for OpHandle {}
    static OP: std::sync::OnceLock<std::result::Result<OpHandle, String>> =
        std::sync::OnceLock::new();
    let made = OP.get_or_init(|| {
        let _serial = serial();
        // SAFETY: storage for the handle MPI_Op_create writes.
        let mut op: ffi::MPI_Op = unsafe { std::mem::zeroed() };
        // SAFETY: the function has the MPI_User_function signature; 0 = not
        // commutative, so MPI keeps operands in rank order.
        let rc = unsafe { ffi::MPI_Op_create(Some(combine_trampoline), 0, &mut op) };
        raw::check(rc, "MPI_Op_create")
            .map(|_| OpHandle(op))
            .map_err(|e| e.to_string())
    });
    match made {
        Ok(op) => Ok(op.0),
        Err(e) => Err(Error::Backend(e.clone())),
    }
}

impl CommInner {
    /// Collective: `MPI_Allreduce` of one element of a contiguous derived
    /// datatype covering the whole payload (so MPI never splits it) with a
    /// non-commutative user operator (so MPI keeps the rank order; its
    /// algorithm, and so the bracketing, is fixed for a given size and
    /// length).
    pub(crate) fn allreduce_bytes(
        &self,
        buf: &mut [u8],
        combine: distarray::collective::Combiner<'_>,
    ) -> Result<()> {
        let _collective = self.collective();
        raw::ensure_live()?;
        if buf.is_empty() {
            let _serial = serial();
            return self.barrier_locked();
        }
        let bytes = std::os::raw::c_int::try_from(buf.len())
            .map_err(|_| Error::InvalidArgument("allreduce of more than 2^31 - 1 bytes".into()))?;
        let send = buf.to_vec();
        let op = combine_op()?;
        let _serial = serial();
        // SAFETY: out-pointer for the new datatype handle.
        let mut dt: ffi::MPI_Datatype = unsafe { std::mem::zeroed() };
        // SAFETY: a contiguous type of `bytes` bytes over the predefined
        // byte type; committed before use and freed below.
        let rc = unsafe { ffi::MPI_Type_contiguous(bytes, ffi::RSMPI_UINT8_T, &mut dt) };
        raw::check(rc, "MPI_Type_contiguous")?;
        // SAFETY: `dt` is a valid, uncommitted datatype.
        raw::check(unsafe { ffi::MPI_Type_commit(&mut dt) }, "MPI_Type_commit")?;
        let f: *const distarray::collective::Combiner<'_> = &combine;
        COMBINER.with(|c| c.set(Some((f as *const (), buf.len()))));
        // SAFETY: `send` and `buf` each hold one element of `dt` (`bytes`
        // bytes) and do not overlap; `op` applies `combine`, which stays
        // alive (and registered for this thread) until MPI_Allreduce returns.
        let rc = unsafe {
            ffi::MPI_Allreduce(
                send.as_ptr() as *const _,
                buf.as_mut_ptr() as *mut _,
                1,
                dt,
                op,
                self.raw,
            )
        };
        COMBINER.with(|c| c.set(None));
        // SAFETY: `dt` is committed and no longer used.
        let freed = raw::check(unsafe { ffi::MPI_Type_free(&mut dt) }, "MPI_Type_free");
        raw::check(rc, "MPI_Allreduce")?;
        freed
    }

    /// Collective: `MPI_Bcast` of the bytes.
    /// Neighbour exchange: [`CommInner::exchange_start`], then its wait.
    pub(crate) fn exchange_bytes(
        self: &Arc<Self>,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()> {
        let sends = whole(sends);
        // SAFETY: the buffers stay borrowed (unmoved, unaccessed) until the
        // handle has finished, right here.
        let pending = unsafe { self.exchange_start(&sends, recvs)? };
        pending.finish()
    }

    /// Posts an `MPI_Irecv` per receive and an `MPI_Isend` per send (tag
    /// [`EXCHANGE_TAG`]) and returns; [`MpiExchange::finish`] waits for
    /// all with one `MPI_Waitall` and checks each received length.
    ///
    /// # Safety
    ///
    /// The buffers must stay valid, unmoved and unaccessed (sends: unwritten)
    /// until the returned handle has finished or dropped.
    pub(crate) unsafe fn exchange_start(
        self: &Arc<Self>,
        sends: &[(usize, &[&[u8]])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<MpiExchange> {
        use std::os::raw::c_int;
        let too_big =
            || Error::InvalidArgument("exchange message of more than 2^31 - 1 bytes".into());
        let ranks = sends.iter().map(|(r, _)| *r);
        for r in ranks.chain(recvs.iter().map(|(r, _)| *r)) {
            distarray::checks::check_rank(r, self.size)?;
        }
        let lens = sends
            .iter()
            .map(|(_, pieces)| pieces.iter().map(|p| p.len()).sum());
        for len in lens.chain(recvs.iter().map(|(_, b)| b.len())) {
            c_int::try_from(len).map_err(|_| too_big())?;
        }
        // one exchange is posted at a time per rank: messages between two
        // ranks are matched in posting order. `pending` is declared before
        // the lock of MPI calls: on an error it drops after the lock, and
        // its drop (which waits) takes that lock itself.
        let _collective = self.collective();
        let mut pending = MpiExchange {
            comm: self.clone(),
            reqs: Vec::with_capacity(sends.len() + recvs.len()),
            expect: recvs.iter().map(|(r, b)| (*r, b.len())).collect(),
            done: false,
        };
        let _serial = raw::enter()?;
        for (from, buf) in recvs.iter_mut() {
            // SAFETY: MPI_Request is a plain handle, written by MPI_Irecv.
            let mut req: ffi::MPI_Request = unsafe { std::mem::zeroed() };
            // SAFETY: `buf` holds `buf.len()` (checked to fit a c_int) bytes
            // and stays valid and unaccessed until the request completes
            // (the caller's contract); `from < size` (checked).
            let rc = unsafe {
                ffi::MPI_Irecv(
                    buf.as_mut_ptr() as *mut _,
                    buf.len() as c_int,
                    ffi::RSMPI_UINT8_T,
                    *from as c_int,
                    EXCHANGE_TAG,
                    self.exchange_raw,
                    &mut req,
                )
            };
            raw::check(rc, "MPI_Irecv")?;
            pending.reqs.push(req);
        }
        for &(to, pieces) in sends {
            // one non-empty piece (or none) goes as it is; more, as one
            // element of a type listing them, relative to the first (freed
            // once the send is posted: MPI keeps what a pending send needs)
            let mut full = pieces.iter().filter(|p| !p.is_empty());
            let (first, count, mut gathered) = match (full.next(), full.next()) {
                (None, _) => (std::ptr::null(), 0, None),
                (Some(one), None) => (one.as_ptr(), one.len() as c_int, None),
                (Some(head), Some(_)) => (head.as_ptr(), 1, Some(gather_type(pieces)?)),
            };
            // SAFETY: reading a predefined handle constant.
            let datatype = gathered.unwrap_or(unsafe { ffi::RSMPI_UINT8_T });
            // SAFETY: as above, written by MPI_Isend.
            let mut req: ffi::MPI_Request = unsafe { std::mem::zeroed() };
            // SAFETY: the pieces stay valid and unwritten until the request
            // completes (the caller's contract); `count` elements of
            // `datatype` from `first` cover exactly the pieces (a byte count
            // checked to fit a c_int, or one element of the committed type
            // whose displacements are the pieces' offsets from `first`);
            // `to < size` (checked).
            let rc = unsafe {
                ffi::MPI_Isend(
                    first as *const _,
                    count,
                    datatype,
                    to as c_int,
                    EXCHANGE_TAG,
                    self.exchange_raw,
                    &mut req,
                )
            };
            if let Some(dt) = gathered.as_mut() {
                // SAFETY: a committed type; a pending send that uses it
                // completes normally after the free (MPI 4.0, 5.1.12).
                raw::check(unsafe { ffi::MPI_Type_free(dt) }, "MPI_Type_free")?;
            }
            raw::check(rc, "MPI_Isend")?;
            pending.reqs.push(req);
        }
        Ok(pending)
    }

    pub(crate) fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        distarray::checks::check_rank(root, self.size)?;
        let _collective = self.collective();
        raw::ensure_live()?;
        let bytes = std::os::raw::c_int::try_from(buf.len())
            .map_err(|_| Error::InvalidArgument("broadcast of more than 2^31 - 1 bytes".into()))?;
        let _serial = serial();
        // SAFETY: `buf` holds `bytes` bytes of the predefined byte type;
        // `root < size` (checked above).
        let rc = unsafe {
            ffi::MPI_Bcast(
                buf.as_mut_ptr() as *mut _,
                bytes,
                ffi::RSMPI_UINT8_T,
                root as std::os::raw::c_int,
                self.raw,
            )
        };
        raw::check(rc, "MPI_Bcast")
    }
}

/// A neighbour exchange whose requests are posted: finished (one
/// `MPI_Waitall`) by [`MpiExchange::finish`], or on drop.
pub(crate) struct MpiExchange {
    comm: Arc<CommInner>,
    /// The receives' requests first, in `expect`'s order, then the sends'.
    reqs: Vec<ffi::MPI_Request>,
    /// (source, expected length) of each receive.
    expect: Vec<(usize, usize)>,
    done: bool,
}

// SAFETY: MPI requests are process-wide handles, not tied to the posting
// thread; every MPI call on them holds the process-wide lock (`serial`).
unsafe impl Send for MpiExchange {}

impl MpiExchange {
    /// Waits for every request, then checks the received lengths.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.wait_all()
    }

    fn wait_all(&mut self) -> Result<()> {
        use std::os::raw::c_int;
        self.done = true;
        // the receives wait for the neighbours: no handle locks meanwhile
        self.comm.handles.settle();
        if self.reqs.is_empty() {
            return Ok(());
        }
        // after MPI_Finalize no request is active any more
        let _serial = raw::enter()?;
        // SAFETY: MPI_Status is plain data, written by MPI_Waitall.
        let mut statuses: Vec<ffi::MPI_Status> =
            vec![unsafe { std::mem::zeroed() }; self.reqs.len()];
        raw::wait_requests(&mut self.reqs, Some(&mut statuses))?;
        for (k, &(from, len)) in self.expect.iter().enumerate() {
            let mut count: c_int = 0;
            // SAFETY: the status of a completed receive.
            let rc = unsafe { ffi::MPI_Get_count(&statuses[k], ffi::RSMPI_UINT8_T, &mut count) };
            raw::check(rc, "MPI_Get_count")?;
            if count as usize != len {
                return Err(Error::InvalidArgument(format!(
                    "exchange: rank {from} sent {count} bytes, rank {} expected {len}",
                    self.comm.rank
                )));
            }
        }
        Ok(())
    }
}

/// A committed `MPI_Type_create_hindexed` of bytes over the non-empty
/// `pieces` (at least one, each shorter than 2^31 bytes), with
/// displacements relative to the first one's start: one element of it,
/// sent from there, is the pieces one after the other. The caller frees it.
fn gather_type(pieces: &[&[u8]]) -> Result<ffi::MPI_Datatype> {
    use std::os::raw::c_int;
    let pieces: Vec<&[u8]> = pieces.iter().copied().filter(|p| !p.is_empty()).collect();
    let base = pieces[0].as_ptr() as isize;
    let lens: Vec<c_int> = pieces.iter().map(|p| p.len() as c_int).collect();
    let displs: Vec<ffi::MPI_Aint> = pieces
        .iter()
        .map(|p| (p.as_ptr() as isize).wrapping_sub(base) as ffi::MPI_Aint)
        .collect();
    // SAFETY: out-pointer for the new datatype handle.
    let mut dt: ffi::MPI_Datatype = unsafe { std::mem::zeroed() };
    // SAFETY: `lens` and `displs` hold one entry per piece; the old type is
    // the predefined byte type.
    let rc = unsafe {
        ffi::MPI_Type_create_hindexed(
            pieces.len() as c_int,
            lens.as_ptr(),
            displs.as_ptr(),
            ffi::RSMPI_UINT8_T,
            &mut dt,
        )
    };
    raw::check(rc, "MPI_Type_create_hindexed")?;
    // SAFETY: `dt` is a valid, uncommitted datatype.
    if let Err(e) = raw::check(unsafe { ffi::MPI_Type_commit(&mut dt) }, "MPI_Type_commit") {
        // SAFETY: a valid type, used by nothing.
        let _ = unsafe { ffi::MPI_Type_free(&mut dt) };
        return Err(e);
    }
    Ok(dt)
}

impl distarray::Request for MpiExchange {
    fn wait(self: Box<Self>) -> Result<()> {
        (*self).finish()
    }
}

impl Drop for MpiExchange {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.wait_all();
        }
    }
}

/// The tag of [`NeighbourMessages::exchange_bytes`] messages, on the private
/// duplicate communicator that carries nothing else.
const EXCHANGE_TAG: std::os::raw::c_int = 0x4441;

impl Drop for CommInner {
    fn drop(&mut self) {
        // the BLACS grids first (their contexts were made from `comm`)
        #[cfg(feature = "scalapack")]
        self.blacs
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        for comm in [self.exchange.take(), self.comm.take()]
            .into_iter()
            .flatten()
        {
            let _serial = serial();
            if raw::finalized() {
                // Freeing a communicator after MPI_Finalize is erroneous;
                // MPI released everything already.
                std::mem::forget(comm);
            } else {
                // MPI_Comm_free for duplicated communicators (a no-op for
                // MPI_COMM_WORLD).
                drop(comm);
            }
        }
    }
}

/// One rank's handle on an MPI communicator with RMA windows (see the
/// [module docs](self) for MPI's lifetime, threads and failure handling).
///
/// Cheap to clone (clones share the communicator). Windows are created with
/// `MPI_Win_allocate` ([`MpiWindow`]).
#[derive(Clone)]
pub struct MpiComm {
    inner: Arc<CommInner>,
}

impl fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MpiComm(rank {} of {})",
            self.inner.rank, self.inner.size
        )
    }
}

impl MpiComm {
    /// Initialises MPI, asking for `MPI_THREAD_SERIALIZED` (all this crate
    /// needs: see the [module docs](self)), and returns the guard that
    /// finalises it on drop ([`MpiEnv::threading`] tells the level MPI
    /// provides), with a duplicate of `MPI_COMM_WORLD`. Collective over all
    /// processes of the job.
    ///
    /// Errors if MPI was already initialised (use [`MpiComm::world`] then),
    /// if MPI provides less than `MPI_THREAD_SERIALIZED`, or if the crate's
    /// C shim was built against another MPI library than the `mpi` crate.
    pub fn init() -> Result<(MpiEnv, MpiComm)> {
        MpiComm::init_with_threading(Threading::Serialized)
    }

    /// Like [`MpiComm::init`], asking MPI for the thread level `threading`,
    /// which must be `Serialized` or `Multiple`: the handles are `Send` and
    /// `Sync` because this crate serialises its MPI calls with a
    /// process-wide lock, which needs `MPI_THREAD_SERIALIZED` at least.
    /// Under `MPI_THREAD_MULTIPLE` the lock is skipped (MPI locks instead).
    ///
    /// ```no_run
    /// use distarray_mpi::{MpiComm, Threading};
    ///
    /// assert!(MpiComm::init_with_threading(Threading::Funneled).is_err());
    /// let (env, _comm) = MpiComm::init_with_threading(Threading::Serialized)?;
    /// println!("{}: thread level {:?}", env.library_version(), env.threading());
    /// # Ok::<(), distarray::Error>(())
    /// ```
    pub fn init_with_threading(threading: Threading) -> Result<(MpiEnv, MpiComm)> {
        if threading < Threading::Serialized {
            return Err(Error::InvalidArgument(format!(
                "MPI thread level {threading:?} requested: distarray-mpi needs at least \
                 Threading::Serialized (its handles are Send + Sync behind one lock)"
            )));
        }
        raw::check_abi()?;
        let (universe, provided) = mpi::initialize_with_threading(threading).ok_or_else(|| {
            Error::Backend("MPI is already initialised (use MpiComm::world)".into())
        })?;
        let env = MpiEnv {
            universe: Some(universe),
            threading: provided,
            _not_send: PhantomData,
        };
        // Below Serialized, `world` refuses (and `env` finalises MPI).
        let comm = MpiComm::world()?;
        Ok((env, comm))
    }

    /// Collective: a handle on a duplicate of `MPI_COMM_WORLD` (so that
    /// distarray's collectives never interfere with the application's own
    /// traffic). MPI must be initialised, by [`MpiComm::init`] or by the
    /// application (then the application finalises it, after dropping
    /// every handle).
    pub fn world() -> Result<MpiComm> {
        raw::check_abi()?;
        raw::ensure_live()?;
        check_threading()?;
        let dup = {
            let _serial = raw::enter()?;
            SimpleCommunicator::world().duplicate()
        };
        MpiComm::from_communicator(dup)
    }

    /// A handle on `comm` (e.g. a sub-communicator or a duplicate). Window
    /// creation and the collectives of the returned handle involve exactly
    /// the processes of `comm`. The communicator is freed when the last
    /// handle (or window) using it drops.
    ///
    /// Open MPI 4 caveat: its default one-sided component on one node
    /// (osc/rdma) names the shared-memory file of a window after the
    /// communicator id, which the disjoint communicators of one
    /// `MPI_Comm_split` share; creating windows on two of them at the same
    /// time can then fail in `MPI_Win_allocate` (Open MPI issue 9492).
    /// Create such windows one group after the other, or select osc/sm
    /// (`mpirun --mca osc sm`), which is also faster on one node.
    pub fn from_communicator(comm: SimpleCommunicator) -> Result<MpiComm> {
        raw::check_abi()?;
        raw::ensure_live()?;
        lifetime::set_serialize(check_threading()?);
        lifetime::watch_finalize()?;
        quirks::detect()?;
        install_panic_hook();
        let rank =
            usize::try_from(comm.rank()).map_err(|_| Error::Backend("negative MPI rank".into()))?;
        let size =
            usize::try_from(comm.size()).map_err(|_| Error::Backend("negative MPI size".into()))?;
        let raw = comm.as_raw();
        // a private duplicate for the neighbour exchange's messages: no
        // receive of the application on `comm` (any tag) can take them
        let exchange = {
            let _serial = raw::enter()?;
            comm.duplicate()
        };
        let exchange_raw = exchange.as_raw();
        Ok(MpiComm {
            inner: Arc::new(CommInner {
                comm: Some(comm),
                exchange: Some(exchange),
                exchange_raw,
                collectives: Mutex::new(()),
                raw,
                rank,
                size,
                #[cfg(feature = "scalapack")]
                blacs: Mutex::new(Vec::new()),
                handles: Arc::default(),
            }),
        })
    }

    /// The shared communicator state (raw handle, collective lock), for
    /// the crate's own modules that call MPI-based libraries (HDF5).
    #[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
    pub(crate) fn inner(&self) -> &CommInner {
        &self.inner
    }

    /// The underlying rsmpi communicator, for the application's own MPI
    /// calls. Do not free it.
    pub fn communicator(&self) -> &SimpleCommunicator {
        self.inner
            .comm
            .as_ref()
            .expect("communicator present until drop")
    }

    /// Ends the whole job at once (`MPI_Abort` on `MPI_COMM_WORLD`): the way
    /// for a rank that cannot continue to avoid leaving the others waiting
    /// in a collective (such as freeing a window).
    pub fn abort(&self, code: i32) -> ! {
        abort_world(code)
    }
}

// SAFETY: `rank` and `size` are MPI's for the communicator; the collectives
// are MPI collectives on it, which deliver every rank's contribution; the
// handle slot is this rank's, shared by every clone of the handle.
unsafe impl OneSidedComm for MpiComm {
    type RawWindow<T: Element> = MpiWindow<T>;

    fn rank(&self) -> usize {
        self.inner.rank
    }

    fn size(&self) -> usize {
        self.inner.size
    }

    fn handle_slot(&self) -> &Arc<HandleSlot> {
        &self.inner.handles
    }

    fn barrier(&self) -> Result<()> {
        self.inner.barrier()
    }

    /// Collective: `MPI_Allgather` of the byte counts, then
    /// `MPI_Allgatherv` of the bytes.
    fn allgather<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>> {
        self.inner.allgather(local)
    }

    /// `MPI_Allreduce` with a non-commutative user operator on one element
    /// of a contiguous datatype covering the payload.
    fn allreduce_bytes(
        &self,
        buf: &mut [u8],
        combine: distarray::collective::Combiner<'_>,
    ) -> Result<()> {
        self.inner.allreduce_bytes(buf, combine)
    }

    /// `MPI_Bcast`.
    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        self.inner.broadcast_bytes(root, buf)
    }

    fn messages(&self) -> Option<&dyn NeighbourMessages> {
        Some(self)
    }

    /// `MPI_Win_allocate` of this rank's part, then a barrier.
    unsafe fn allocate_window<T: Element>(&self, lens: &[usize]) -> Result<MpiWindow<T>> {
        MpiWindow::new(self.inner.clone(), lens)
    }

    fn backend_name(&self) -> &'static str {
        "mpi"
    }
}

impl NeighbourMessages for MpiComm {
    /// `MPI_Isend` / `MPI_Irecv` per neighbour, one `MPI_Waitall`.
    fn exchange_bytes(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()> {
        self.inner.exchange_bytes(sends, recvs)
    }

    /// Posts the `MPI_Irecv`s and `MPI_Isend`s; `wait` is the `MPI_Waitall`.
    unsafe fn exchange_bytes_start(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn distarray::Request>> {
        let sends = whole(sends);
        // SAFETY: the caller's contract is this function's.
        let pending = unsafe { self.inner.exchange_start(&sends, recvs)? };
        Ok(Box::new(pending))
    }

    /// One `MPI_Isend` per message, of an `MPI_Type_create_hindexed` type
    /// over its pieces (no copy); `wait` is the `MPI_Waitall`.
    unsafe fn exchange_vectored_start(
        &self,
        sends: &[(usize, &[&[u8]])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn distarray::Request>> {
        // SAFETY: the caller's contract is this function's.
        let pending = unsafe { self.inner.exchange_start(sends, recvs)? };
        Ok(Box::new(pending))
    }
}

/// Messages sent whole, as lists of one piece each.
fn whole<'a>(sends: &'a [(usize, &'a [u8])]) -> Vec<(usize, &'a [&'a [u8]])> {
    sends
        .iter()
        .map(|(to, data)| (*to, std::slice::from_ref(data)))
        .collect()
}

/// The thread level MPI provides, or `Err` below `MPI_THREAD_SERIALIZED`.
fn check_threading() -> Result<Threading> {
    let provided = mpi::environment::threading_support();
    if provided < Threading::Serialized {
        return Err(Error::Backend(format!(
            "MPI provides thread level {provided:?}; distarray-mpi needs at least \
             MPI_THREAD_SERIALIZED (initialise MPI with MpiComm::init, or ask for \
             Threading::Serialized)"
        )));
    }
    Ok(provided)
}

/// The exit code a panicking rank passes to `MPI_Abort` (the launchers
/// return it as the job's status).
pub const ABORT_CODE: i32 = 71;

/// `MPI_Abort(MPI_COMM_WORLD, code)` after flushing stdout and stderr.
fn abort_world(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: MPI_Abort takes a valid communicator handle (the predefined
    // MPI_COMM_WORLD) and an int; it may be called from any thread once MPI
    // is initialised, and does not return (if it did, we exit below). No lock
    // is taken: the MPI lock may be held by the thread that panicked.
    unsafe {
        ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, code);
    }
    std::process::exit(code)
}

/// Installs (once per process) the panic hook that aborts the MPI job after
/// the previous hook printed the panic.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
                let rank = world_rank();
                eprintln!("distarray-mpi: rank {rank} panicked; calling MPI_Abort to end the job");
                // Give the launcher a moment to forward what this rank
                // printed: MPICH's Hydra drops a rank's last output once
                // MPI_Abort has killed the job.
                std::thread::sleep(std::time::Duration::from_millis(100));
                abort_world(ABORT_CODE);
            }
        }));
    });
}

/// This process's rank in `MPI_COMM_WORLD` (-1 if it cannot be told).
fn world_rank() -> i32 {
    let mut rank: std::os::raw::c_int = -1;
    // SAFETY: MPI is initialised and not finalised (checked by the caller);
    // MPI_Comm_rank writes one int through the valid out-pointer.
    let rc = unsafe { ffi::MPI_Comm_rank(ffi::RSMPI_COMM_WORLD, &mut rank) };
    if rc == ffi::MPI_SUCCESS as std::os::raw::c_int {
        rank
    } else {
        -1
    }
}
