//! [`LamellarComm`]: the [`OneSidedComm`] of one Lamellar world.
//!
//! One world per process (Lamellar allows no second one), created from the
//! environment: with `LAMELLAR_NUM_PES` set (as the launcher
//! `distarray-lamellar-run` does) the `shmem` lamellae joins the job named by
//! `LAMELLAR_PE_ID` / `LAMELLAR_JOB_ID`; without it a single PE runs on the
//! `local` lamellae.
//!
//! The communicator's collectives live in the submodules: the barrier
//! (`barrier`), the allgather (`allgather`) and the tree collectives'
//! transport (`tree`); the windows' regions and their reuse in `regions`;
//! building the world in `builder`.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use distarray::collective::{self, Combiner};
use distarray::pending::HandleSlot;
use distarray::{Element, Error, OneSidedComm, Result};
use lamellar::active_messaging::prelude::*;
use lamellar::memregion::prelude::*;

use crate::window::{LamellarWindow, WindowCore};

// Building the world and the communicator's regions.
mod builder;
// The dissemination barrier.
mod barrier;
// The allgather through a scratch region.
mod allgather;
// The transport of the tree collectives (allreduce, broadcast).
mod tree;
// Windows' regions and their reuse.
mod regions;
// Neighbour messages: the dispatch and the active-message transport.
mod messages;
// Neighbour messages over RDMA mailboxes.
mod mailboxes;

pub use self::builder::LamellarCommBuilder;
pub(crate) use self::regions::Regions;
use self::regions::{shm_free_bytes, RegionCache};
use self::tree::SLOT_WORDS;

/// The Lamellar backend's communicator: a cheap handle on the world of this
/// process.
///
/// Collective operations (`barrier`, `allgather`, `create_window`, window
/// `fence`s) must be called by every PE in the same order, from one thread
/// per PE.
///
/// # Lifetime
///
/// The world lives while a handle of this PE lives (every clone counts,
/// also those inside arrays) and is torn down when the last one drops.
/// If handles were leaked (`mem::forget` of an array, of a clone or of a
/// request) but the handle that [`LamellarComm::from_env`] /
/// [`LamellarCommBuilder::build`] returned (or wherever it was moved) has
/// dropped, the world is torn down when the process exits (an `atexit`
/// hook): the windows of leaked arrays are released, then the world shuts
/// down with the other PEs, so that a leak on some PEs cannot make the job
/// wait forever at exit. (A process that exits while that first handle
/// lives, e.g. `process::exit` in the middle of the work or the
/// exit-on-panic hook, exits without waiting for the others, as before.)
/// After the teardown every operation through a remaining handle, its
/// windows and arrays returns [`Error::Backend`]; no memory is touched.
pub struct LamellarComm {
    user: Arc<UserHandle>,
    /// This is the handle the builder returned (clones are not).
    first: bool,
}

impl Clone for LamellarComm {
    fn clone(&self) -> Self {
        LamellarComm {
            user: self.user.clone(),
            first: false,
        }
    }
}

impl Drop for LamellarComm {
    /// The first handle's drop arms the exit-time teardown.
    fn drop(&mut self) {
        if self.first {
            FIRST_DROPPED.store(true, Ordering::SeqCst);
        }
    }
}

/// The handle the builder returned has dropped (see [`LamellarComm`]'s
/// lifetime).
static FIRST_DROPPED: AtomicBool = AtomicBool::new(false);

/// What every clone of this PE's [`LamellarComm`] shares: its place in the
/// job and a weak reference to the communicator. Its drop (the last user
/// handle's) tears the world down.
struct UserHandle {
    rank: usize,
    size: usize,
    /// The communicator has neighbour messages (its `transport` is not
    /// `Off`).
    messages: bool,
    handles: Arc<HandleSlot>,
    comm: WeakComm,
}

impl Drop for UserHandle {
    fn drop(&mut self) {
        tear_down();
    }
}

/// The one lasting strong reference to this process's communicator (the
/// others live only for the duration of an operation): dropped by the last
/// user handle's drop or at the process's exit ([`tear_down`]).
static OWNER: Mutex<Option<Arc<CommInner>>> = Mutex::new(None);

/// Drops [`OWNER`]: the communicator (its windows' cores, regions and the
/// world) drops now, or when the operation in progress that still holds it
/// returns.
fn tear_down() {
    let owner = OWNER.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(owner);
}

/// The `atexit` hook: tears the world down if leaked handles kept it and
/// the first handle has dropped.
extern "C" fn tear_down_at_exit() {
    if FIRST_DROPPED.load(Ordering::SeqCst) {
        // Unwinding out of an `extern "C"` function aborts; a panic is
        // reported by the hook and the exit goes on.
        let _ = std::panic::catch_unwind(tear_down);
    }
}

/// The crate's own strong handle on the communicator, held by operations
/// in progress (and by nothing that outlives them: windows and requests
/// hold a [`WeakComm`]). Not counted as a user handle.
#[derive(Clone)]
pub(crate) struct Comm {
    inner: Arc<CommInner>,
}

pub(crate) struct CommInner {
    rank: usize,
    size: usize,
    /// This PE's slot for its one non-blocking block handle on the
    /// communicator: settled at the entry of every collective
    /// ([`Comm::coll_guard`]) and by the checked
    /// [`distarray::Window`] before every lock and fence.
    handles: Arc<HandleSlot>,
    /// Serialises collectives issued from several threads of one PE.
    coll: Mutex<()>,
    /// Number of barriers entered so far.
    epoch: AtomicU64,
    /// Word `r` of a PE's part: the latest barrier its partner of round `r`
    /// has reached.
    bar: SharedMemoryRegion<u64>,
    /// Regions of dropped windows, for reuse by later windows.
    cache: Mutex<RegionCache>,
    /// The cores (regions, buffers, transfers) of this PE's live windows,
    /// by key: windows hold only weak references, so that a leaked window
    /// keeps neither the communicator nor a Lamellar handle alive.
    live: Mutex<HashMap<u64, Arc<dyn Any + Send + Sync>>>,
    /// The key of the next window in `live`.
    next_window: AtomicU64,
    /// Data transfers this PE's windows have issued to other PEs (RDMA
    /// gets and puts, packed active messages), for tests and benchmarks.
    data_ops: AtomicU64,
    /// Word 0 of each PE's part: the byte length of its contribution;
    /// words 1.. its bytes (when they fit).
    scratch: SharedMemoryRegion<u64>,
    /// Message slots of the tree collectives (see
    /// [`TREE_WORDS`](tree::TREE_WORDS)).
    tree: SharedMemoryRegion<u64>,
    /// Registered source buffer of this PE's tree messages.
    tree_out: Mutex<OneSidedMemoryRegion<u64>>,
    /// Tree collectives entered so far (their sequence number).
    tree_seq: AtomicU64,
    /// Every PE has completed the tree collectives up to this number.
    tree_safe: AtomicU64,
    /// Per-pair numbers of the neighbour messages (see `messages`).
    seqs: Mutex<messages::Sequences>,
    /// Word `q` of a PE's part: PE `q` has dropped its communicator (see
    /// `messages`).
    gone: SharedMemoryRegion<u64>,
    /// The transport of the neighbour messages (see the builder).
    transport: messages::Transport,
    /// The RDMA mailboxes, with the `Mailboxes` transport.
    mail: Option<mailboxes::Mailboxes>,
    // Declared last: dropped after the region above.
    world: LamellarWorld,
}

impl Drop for CommInner {
    /// Releases the cores of windows still alive (leaked ones: a window
    /// that drops takes its core out first), completing their transfers,
    /// so that Lamellar's world, dropped after, finds no handle left; then
    /// marks this PE departed for the neighbour messages.
    fn drop(&mut self) {
        let live = std::mem::take(self.live.get_mut().unwrap_or_else(|e| e.into_inner()));
        drop(live);
        self.depart();
    }
}

/// A handle on a communicator that does not keep it alive: what windows
/// hold.
#[derive(Clone)]
pub(crate) struct WeakComm(Weak<CommInner>);

impl WeakComm {
    /// The communicator, or `Err` once it was torn down (see
    /// [`LamellarComm`]'s lifetime).
    pub(crate) fn upgrade(&self) -> Result<Comm> {
        self.0.upgrade().map(|inner| Comm { inner }).ok_or_else(|| {
            Error::Backend(
                "the window's communicator is gone (every LamellarComm handle of this PE \
                     dropped, which released the window's regions): the window is unusable"
                    .into(),
            )
        })
    }
}

/// A future that is pending once (waking itself): `block_on` of it runs
/// the executor's queued tasks before it completes.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

impl LamellarComm {
    /// Builds the world from the environment with default settings (see
    /// [`LamellarCommBuilder::build`]).
    pub fn from_env() -> Result<Self> {
        LamellarCommBuilder::default().build()
    }

    /// A builder for non-default settings.
    pub fn builder() -> LamellarCommBuilder {
        LamellarCommBuilder::default()
    }

    /// The first user handle on a new communicator, which becomes the
    /// [`OWNER`]; registers the exit hook (once per process: one world per
    /// process).
    pub(super) fn own(inner: Arc<CommInner>) -> Self {
        let user = UserHandle {
            rank: inner.rank,
            size: inner.size,
            messages: inner.transport != messages::Transport::Off,
            handles: inner.handles.clone(),
            comm: WeakComm(Arc::downgrade(&inner)),
        };
        *OWNER.lock().unwrap_or_else(|e| e.into_inner()) = Some(inner);
        // SAFETY: registers a function without arguments that never
        // unwinds; `atexit` has no other precondition.
        let rc = unsafe { libc::atexit(tear_down_at_exit) };
        if rc != 0 {
            eprintln!("distarray-lamellar: atexit failed; a leaked array may hang the exit");
        }
        LamellarComm {
            user: Arc::new(user),
            first: true,
        }
    }

    /// Collective: tears the world down now, as the exit hook does for a
    /// process whose handles were leaked (every PE must call it; this
    /// handle, its clones, windows and arrays stay and return `Err` from
    /// then on). For tests of that state.
    #[doc(hidden)]
    pub fn tear_down_world(&self) {
        tear_down();
    }

    /// The communicator, for one operation; `Err` once it was torn down.
    pub(crate) fn strong(&self) -> Result<Comm> {
        self.user.comm.upgrade()
    }

    /// A handle on the underlying Lamellar world (for code that mixes
    /// distarray with raw Lamellar calls, e.g. benchmarks); `Err` once the
    /// world was torn down. A handle kept past the last communicator
    /// handle delays the world's shutdown until it drops.
    pub fn world(&self) -> Result<LamellarWorld> {
        Ok(self.strong()?.inner.world.clone())
    }

    /// Number of data transfers this PE's windows have issued to other
    /// PEs so far: each RDMA get or put (a bulk transfer moves in 64 KiB
    /// chunks, one each) and each packed active message counts one; locks,
    /// accumulate guards and collectives do not count. For tests and
    /// benchmarks (0 once the world was torn down).
    #[doc(hidden)]
    pub fn remote_data_ops(&self) -> u64 {
        self.strong()
            .map_or(0, |c| c.inner.data_ops.load(Ordering::Relaxed))
    }

    /// Whether a window's transfer of several runs to another PE (a
    /// strided block) moves as one packed active message (the default) or
    /// as one RDMA operation per run. Process-wide; for benchmarks
    /// comparing the two.
    #[doc(hidden)]
    pub fn set_packed_transfers(&self, packed: bool) {
        crate::window::set_packed(packed);
    }

    /// The transport of this communicator's neighbour messages:
    /// `"active messages"`, `"rdma mailboxes"` or `"off"` (see
    /// `DISTARRAY_LAMELLAR_MESSAGES`). For tests and benchmarks.
    #[doc(hidden)]
    pub fn message_transport(&self) -> &'static str {
        match self.strong().map(|c| c.inner.transport) {
            Ok(messages::Transport::ActiveMessages) => "active messages",
            Ok(messages::Transport::Mailboxes) => "rdma mailboxes",
            _ => "off",
        }
    }

    /// Whether strided transfers are packed (see
    /// [`LamellarComm::set_packed_transfers`]; off on a network lamellae,
    /// see the builder).
    #[doc(hidden)]
    pub fn packed_transfers(&self) -> bool {
        crate::window::packed()
    }
}

impl Comm {
    /// The underlying Lamellar world.
    pub(crate) fn world(&self) -> &LamellarWorld {
        &self.inner.world
    }

    /// Lets the Lamellar runtime of this PE run the tasks it has pending
    /// (incoming messages, e.g. reference-count updates of regions other
    /// PEs dropped), as it does while this thread waits in a Lamellar call.
    /// Called from every waiting loop of this crate.
    pub(crate) fn progress(&self) {
        self.inner.world.block_on(YieldOnce(false));
    }

    /// Counts one data transfer issued to another PE (see
    /// [`LamellarComm::remote_data_ops`]).
    pub(crate) fn count_data_op(&self) {
        self.inner.data_ops.fetch_add(1, Ordering::Relaxed);
    }

    /// A handle that does not keep the communicator alive.
    pub(crate) fn downgrade(&self) -> WeakComm {
        WeakComm(Arc::downgrade(&self.inner))
    }

    /// Keeps a new window's core until [`Comm::release_window`] of
    /// the returned key (the window's drop) or the communicator's drop.
    pub(crate) fn keep_window<T: Element>(&self, core: Arc<WindowCore<T>>) -> u64 {
        let key = self.inner.next_window.fetch_add(1, Ordering::Relaxed);
        self.live().insert(key, core);
        key
    }

    /// Takes the core of window `key` out of the table.
    pub(crate) fn release_window<T: Element>(&self, key: u64) -> Option<Arc<WindowCore<T>>> {
        self.live().remove(&key)?.downcast().ok()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<dyn Any + Send + Sync>>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the lock that serialises this PE's collectives, after
    /// completing its non-blocking handle in flight: a collective waits for every PE, and none may wait for this one's
    /// handle locks meanwhile (see [`distarray::pending`]).
    fn coll_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.handles.settle();
        self.inner.coll.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// SAFETY: every method is the communicator's (below), reached for the
// call; `rank`, `size` and the handle slot are copies of its own.
unsafe impl OneSidedComm for LamellarComm {
    type RawWindow<T: Element> = LamellarWindow<T>;

    fn rank(&self) -> usize {
        self.user.rank
    }

    fn size(&self) -> usize {
        self.user.size
    }

    fn handle_slot(&self) -> &Arc<HandleSlot> {
        &self.user.handles
    }

    fn barrier(&self) -> Result<()> {
        self.strong()?.barrier()
    }

    fn messages(&self) -> Option<&dyn distarray::NeighbourMessages> {
        self.user.messages.then_some(self as _)
    }

    fn allgather<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>> {
        self.strong()?.allgather(local)
    }

    fn allreduce_bytes(&self, buf: &mut [u8], combine: Combiner<'_>) -> Result<()> {
        self.strong()?.allreduce_bytes(buf, combine)
    }

    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        self.strong()?.broadcast_bytes(root, buf)
    }

    unsafe fn allocate_window<T: Element>(&self, lens: &[usize]) -> Result<LamellarWindow<T>> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { self.strong()?.allocate_window(lens) }
    }

    fn check_allocation(&self, lens: &[usize], elem_size: usize) -> Result<()> {
        self.strong()?.check_allocation(lens, elem_size)
    }

    fn backend_name(&self) -> &'static str {
        "lamellar"
    }
}

// SAFETY: `rank` and `size` are the PE's place in its team; the collectives
// deliver every PE's contribution (registered regions and barriers of the
// team); the handle slot is this PE's, shared by every clone.
unsafe impl OneSidedComm for Comm {
    type RawWindow<T: Element> = LamellarWindow<T>;

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
        // A failed PE ends the whole job (exit-on-panic hook + launcher), so
        // a barrier never has to report `Error::Aborted` here.
        let _g = self.coll_guard();
        self.sync();
        Ok(())
    }

    /// RDMA mailboxes (the default), or active messages into a mailbox per
    /// PE; see the `messages` module: per-pair sequence numbers, no
    /// collective. None with `DISTARRAY_LAMELLAR_MESSAGES=off`.
    fn messages(&self) -> Option<&dyn distarray::NeighbourMessages> {
        (self.inner.transport != messages::Transport::Off).then_some(self as _)
    }

    fn allgather<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>> {
        let parts = self.allgather_bytes(bytemuck::cast_slice(local))?;
        parts
            .into_iter()
            .map(|bytes| {
                if bytes.len() % std::mem::size_of::<T>() != 0 {
                    return Err(Error::Backend(format!(
                        "allgather received {} bytes, not a whole number of {:?} elements",
                        bytes.len(),
                        T::KIND
                    )));
                }
                let mut v = vec![T::ZERO; bytes.len() / std::mem::size_of::<T>()];
                bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(&bytes);
                Ok(v)
            })
            .collect()
    }

    /// The binomial tree of [`collective::tree_allreduce`] over remote
    /// puts and atomics (2 ⌈log2 P⌉ rounds); payloads larger than a slot
    /// (4 KiB) run the same tree over a temporary region with
    /// payload-sized slots (`big_tree_allreduce`), so the bits are the same
    /// either way and no PE ever holds more than two payloads.
    fn allreduce_bytes(&self, buf: &mut [u8], combine: Combiner<'_>) -> Result<()> {
        let _g = self.coll_guard();
        if buf.len() > SLOT_WORDS * 8 {
            return self.big_tree_allreduce(buf, combine);
        }
        self.tree_collective(true, |t| collective::tree_allreduce(t, buf, combine))
    }

    /// The binomial tree of [`collective::tree_broadcast`], in slot-sized
    /// pieces.
    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        distarray::checks::check_rank(root, self.inner.size)?;
        let _g = self.coll_guard();
        if buf.is_empty() {
            return self.tree_collective(false, |t| collective::tree_broadcast(t, root, buf));
        }
        for piece in buf.chunks_mut(SLOT_WORDS * 8) {
            self.tree_collective(false, |t| collective::tree_broadcast(t, root, piece))?;
        }
        Ok(())
    }

    /// Reuses cached regions that every PE has free (one allgather of their
    /// ids), or allocates new ones of `max(lens)` elements per PE.
    unsafe fn allocate_window<T: Element>(&self, lens: &[usize]) -> Result<LamellarWindow<T>> {
        let _g = self.coll_guard();
        // Contribution: [0, ids of this PE's free regions of type T].
        let mut mine = vec![0u64];
        {
            let cache = self.cache();
            let t = TypeId::of::<T>();
            mine.extend(cache.free.iter().filter(|r| r.type_id == t).map(|r| r.id));
        }
        let parts = self.allgather_bytes_locked(bytemuck::cast_slice(&mine))?;
        let parts: Vec<Vec<u64>> = parts
            .iter()
            .map(|b| {
                let mut v = vec![0u64; b.len() / 8];
                bytemuck::cast_slice_mut::<u64, u8>(&mut v).copy_from_slice(b);
                v
            })
            .collect();
        // Lamellar regions cannot be empty: at least one element per PE.
        let need = lens.iter().copied().max().unwrap_or(0).max(1);
        // Every PE computes the same choice from the same gathered lists
        // (capacities are the same on every PE for the same id).
        let regions = {
            let mut cache = self.cache();
            let chosen = cache
                .free
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.type_id == TypeId::of::<T>()
                        && r.cap >= need
                        && parts.iter().all(|p| p[1..].contains(&r.id))
                })
                .min_by_key(|(_, r)| (r.cap, r.id))
                .map(|(i, _)| i);
            chosen.map(|i| cache.free.swap_remove(i))
        };
        let regions = match regions {
            Some(r) => r,
            None => self.alloc_regions::<T>(need)?,
        };
        LamellarWindow::create(self.clone(), lens, regions)
    }

    /// Every PE's region holds `max(lens)` elements (Lamellar regions have
    /// one length everywhere) and, with the shared-memory lamellae, every
    /// PE of the job maps its region on this node: the whole job's regions
    /// must fit in the free space of `/dev/shm` and in available memory, or
    /// Lamellar would grow its heap until the kernel's OOM killer ends
    /// processes on the whole machine.
    fn check_allocation(&self, lens: &[usize], elem_size: usize) -> Result<()> {
        let per_pe = lens.iter().copied().max().unwrap_or(0).max(1) as u128 * elem_size as u128;
        let total = per_pe * self.size() as u128;
        if let Some(free) = shm_free_bytes() {
            if total > free {
                return Err(Error::OutOfMemory {
                    what: format!(
                        "a Lamellar window ({} PEs x {per_pe} bytes in /dev/shm)",
                        self.size()
                    ),
                    requested: total,
                    available: free,
                });
            }
        }
        distarray::comm::agree::check_memory("a Lamellar window (all PEs of this node)", total)
    }

    fn backend_name(&self) -> &'static str {
        "lamellar"
    }
}

impl std::fmt::Debug for LamellarComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LamellarComm")
            .field("rank", &self.user.rank)
            .field("size", &self.user.size)
            .finish()
    }
}
