//! [`LamellarComm`]: the [`OneSidedComm`] of one Lamellar world.
//!
//! One world per process (Lamellar allows no second one), created from the
//! environment: with `LAMELLAR_NUM_PES` set (as the launcher
//! `distarray-lamellar-run` does) the `shmem` lamellae joins the job named by
//! `LAMELLAR_PE_ID` / `LAMELLAR_JOB_ID`; without it a single PE runs on the
//! `local` lamellae.

use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use distarray::collective::{self, Combiner, Phase, Transport};
use distarray::pending::HandleSlot;
use distarray::{Element, Error, OneSidedComm, Result};
use lamellar::active_messaging::prelude::*;
use lamellar::memregion::prelude::*;
use lamellar::Backend;

use crate::target::{backoff_until, CTL_WORDS};
use crate::window::LamellarWindow;

/// Words per PE of the barrier region: one flag per dissemination round.
const BAR_WORDS: usize = 64;
/// At most this many bytes per PE of dropped windows are kept for reuse.
const CACHE_BYTES: usize = 256 << 20;
/// At most this many dropped windows are kept for reuse.
const CACHE_ENTRIES: usize = 64;

/// Payload words of one message slot of the tree collectives; larger
/// allreduce payloads go through a temporary region with payload-sized
/// slots (same tree), larger broadcasts in slot-sized pieces.
const SLOT_WORDS: usize = 512;
/// Words of one slot: the sequence number of the collective whose message
/// it holds, then the payload.
const SLOT: usize = 1 + SLOT_WORDS;
/// Reduction rounds with a slot each (up to 2^24 PEs).
const ROUNDS: usize = 24;
/// Word of a PE's tree region holding the last tree collective it
/// completed.
const DONE_WORD: usize = (2 + ROUNDS) * SLOT;
/// Words per PE of the tree region: two broadcast slots (by parity of the
/// sequence number), one slot per reduction round, the done word.
const TREE_WORDS: usize = DONE_WORD + 1;

/// Bytes per PE that [`OneSidedComm::allgather`] moves through the
/// persistent scratch region; larger contributions use a temporary region.
const SCRATCH_BYTES: usize = 64 * 1024;
const SCRATCH_WORDS: usize = SCRATCH_BYTES / 8;

/// The Lamellar backend's communicator: a cheap handle on the world of this
/// process.
///
/// Collective operations (`barrier`, `allgather`, `create_window`, window
/// `fence`s) must be called by every PE in the same order, from one thread
/// per PE.
#[derive(Clone)]
pub struct LamellarComm {
    inner: Arc<CommInner>,
}

struct CommInner {
    rank: usize,
    size: usize,
    /// This PE's slot for its one non-blocking block handle on the
    /// communicator: settled at the entry of every collective
    /// ([`LamellarComm::coll_guard`]) and by the windows' `WindowState`
    /// before every lock and fence.
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
    /// Word 0 of each PE's part: the byte length of its contribution;
    /// words 1.. its bytes (when they fit).
    scratch: SharedMemoryRegion<u64>,
    /// Message slots of the tree collectives (see [`TREE_WORDS`]).
    tree: SharedMemoryRegion<u64>,
    /// Registered source buffer of this PE's tree messages.
    tree_out: Mutex<OneSidedMemoryRegion<u64>>,
    /// Tree collectives entered so far (their sequence number).
    tree_seq: AtomicU64,
    /// Every PE has completed the tree collectives up to this number.
    tree_safe: AtomicU64,
    // Declared last: dropped after the region above.
    world: LamellarWorld,
}

/// The data and control regions of a window, identified by a sequence
/// number that is the same on every PE (regions are created collectively).
pub(crate) struct Regions {
    pub(crate) id: u64,
    type_id: TypeId,
    /// Elements per PE.
    pub(crate) cap: usize,
    bytes: usize,
    /// A `SharedMemoryRegion<T>` for the window's `T`.
    data: Box<dyn Any + Send + Sync>,
    pub(crate) ctl: SharedMemoryRegion<u64>,
}

impl Regions {
    /// The data region as a region of `T`s.
    pub(crate) fn data<T: Element>(&self) -> SharedMemoryRegion<T> {
        self.data
            .downcast_ref::<SharedMemoryRegion<T>>()
            .expect("window regions of the right type")
            .clone()
    }
}

/// Windows' regions whose window this PE has dropped.
///
/// Allocating a Lamellar region is slow (tens of milliseconds on `shmem`:
/// new shared-memory segments and internal barriers), so `create_window`
/// reuses the regions of dropped windows. A region may be reused only once
/// *every* PE has dropped its window: creation gathers each PE's list of
/// free region ids and picks one that is free everywhere, so all PEs pick
/// the same. Every PE's accesses to the old window were complete when it
/// dropped it, before it entered the collective creation.
#[derive(Default)]
struct RegionCache {
    next_id: u64,
    free: Vec<Regions>,
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

/// How the world of a [`LamellarComm`] is built.
#[derive(Debug, Clone)]
pub struct LamellarCommBuilder {
    threads: Option<usize>,
    exit_on_panic: bool,
}

impl Default for LamellarCommBuilder {
    fn default() -> Self {
        LamellarCommBuilder {
            threads: None,
            exit_on_panic: true,
        }
    }
}

impl LamellarCommBuilder {
    /// Number of Lamellar worker threads (default: `LAMELLAR_THREADS`, else
    /// Lamellar's default, the number of cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Whether a panic anywhere in this process ends it at once (default
    /// `true`). Lamellar cannot recover from a panicking PE: its peers
    /// block in the next collective and the panicking process itself hangs
    /// in the runtime's shutdown. Exiting lets the launcher see the failure
    /// and stop the other PEs. The hook prints the usual panic message
    /// first and then exits with status 101 (the status of a panicking
    /// Rust `main`).
    pub fn exit_on_panic(mut self, yes: bool) -> Self {
        self.exit_on_panic = yes;
        self
    }

    /// Builds the world (collective over the job) and its communicator.
    ///
    /// Uses the lamellae named by `LAMELLAR_BACKEND` when it is set (as
    /// Lamellar does), else the `shmem` lamellae when `LAMELLAR_NUM_PES` is
    /// set (a job of `distarray-lamellar-run`), else the `local` one (a
    /// single PE). Must be called once per
    /// process: a second call returns an error (clone the communicator
    /// instead). Lamellar insists on being
    /// started from the thread that first touched it, normally `main`.
    pub fn build(self) -> Result<LamellarComm> {
        let backend = if std::env::var_os("LAMELLAR_BACKEND").is_some() {
            // An explicit choice (e.g. a network lamellae on a cluster,
            // with the job started by that lamellae's launcher).
            Backend::default()
        } else if let Ok(n) = std::env::var("LAMELLAR_NUM_PES") {
            for var in ["LAMELLAR_NUM_PES", "LAMELLAR_PE_ID", "LAMELLAR_JOB_ID"] {
                let val = std::env::var(var).map_err(|_| {
                    Error::Backend(format!(
                        "LAMELLAR_NUM_PES={n} is set but {var} is not: start the job \
                         with distarray-lamellar-run"
                    ))
                })?;
                val.parse::<usize>()
                    .map_err(|_| Error::Backend(format!("{var}={val:?} is not a number")))?;
            }
            Backend::Shmem
        } else {
            Backend::Local
        };
        static BUILT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if BUILT.swap(true, Ordering::SeqCst) {
            return Err(Error::Backend(
                "a LamellarComm was already built in this process (Lamellar allows one world \
                 per process): clone the first one"
                    .into(),
            ));
        }
        let default_hook = std::panic::take_hook();
        let mut builder = LamellarWorldBuilder::new().with_lamellae(backend);
        if let Some(t) = self.threads {
            builder = builder.set_num_threads(t);
        }
        let world = builder.build();
        if self.exit_on_panic {
            // Replaces Lamellar's hook (which tries a forced shutdown that
            // the shmem lamellae does not implement).
            let rank = world.my_pe();
            std::panic::set_hook(Box::new(move |info| {
                default_hook(info);
                eprintln!("distarray-lamellar: PE {rank} panicked; exiting so that the job ends");
                std::process::exit(101);
            }));
        } else {
            // Lamellar's own hook stays; keep ours unused.
            drop(default_hook);
        }
        let scratch = world
            .try_alloc_shared_mem_region::<u64>(SCRATCH_WORDS + 1)
            .block()
            .map_err(|e| Error::Backend(format!("allocating the allgather scratch region: {e}")))?;
        let bar = world
            .try_alloc_shared_mem_region::<u64>(BAR_WORDS)
            .block()
            .map_err(|e| Error::Backend(format!("allocating the barrier region: {e}")))?;
        let tree = world
            .try_alloc_shared_mem_region::<u64>(TREE_WORDS)
            .block()
            .map_err(|e| Error::Backend(format!("allocating the collectives' region: {e}")))?;
        let tree_out = world.alloc_one_sided_mem_region::<u64>(SLOT_WORDS);
        // SAFETY: the regions are new; nobody accesses them before the
        // barrier.
        unsafe {
            bar.as_mut_slice().fill(0);
            tree.as_mut_slice().fill(0);
        }
        world.barrier();
        Ok(LamellarComm {
            inner: Arc::new(CommInner {
                rank: world.my_pe(),
                size: world.num_pes(),
                coll: Mutex::new(()),
                epoch: AtomicU64::new(0),
                bar,
                cache: Mutex::new(RegionCache::default()),
                scratch,
                tree,
                tree_out: Mutex::new(tree_out),
                tree_seq: AtomicU64::new(0),
                tree_safe: AtomicU64::new(0),
                handles: Arc::default(),
                world,
            }),
        })
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

    /// The underlying Lamellar world (for code that mixes distarray with raw
    /// Lamellar calls, e.g. benchmarks).
    pub fn world(&self) -> &LamellarWorld {
        &self.inner.world
    }

    /// Lets the Lamellar runtime of this PE run the tasks it has pending
    /// (incoming messages, e.g. reference-count updates of regions other
    /// PEs dropped), as it does while this thread waits in a Lamellar call.
    /// Called from every waiting loop of this crate.
    pub(crate) fn progress(&self) {
        self.inner.world.block_on(YieldOnce(false));
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, RegionCache> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Collective: allocates new regions for a window of `need` elements
    /// per PE (rounded up to a power of two, for reuse, below 1 Mi).
    fn alloc_regions<T: Element>(&self, need: usize) -> Result<Regions> {
        let world = &self.inner.world;
        let cap = if need <= 1 << 20 {
            need.next_power_of_two()
        } else {
            need
        };
        let data = world
            .try_alloc_shared_mem_region::<T>(cap)
            .block()
            .map_err(|e| Error::Backend(format!("allocating a window of {cap} elements: {e}")))?;
        let ctl = world
            .try_alloc_shared_mem_region::<u64>(CTL_WORDS)
            .block()
            .map_err(|e| Error::Backend(format!("allocating a window's control words: {e}")))?;
        let id = {
            let mut cache = self.cache();
            cache.next_id += 1;
            cache.next_id
        };
        Ok(Regions {
            id,
            type_id: TypeId::of::<T>(),
            cap,
            bytes: cap * std::mem::size_of::<T>(),
            data: Box::new(data),
            ctl,
        })
    }

    /// Keeps the regions of a window this PE dropped for reuse (or frees
    /// them, oldest first, beyond the cache limits).
    pub(crate) fn recycle(&self, regions: Regions) {
        let mut cache = self.cache();
        cache.free.push(regions);
        let mut total: usize = cache.free.iter().map(|r| r.bytes).sum();
        while cache.free.len() > CACHE_ENTRIES || (total > CACHE_BYTES && cache.free.len() > 1) {
            let oldest = (0..cache.free.len())
                .min_by_key(|&i| cache.free[i].id)
                .expect("non-empty");
            total -= cache.free[oldest].bytes;
            cache.free.swap_remove(oldest);
        }
    }

    /// Collective barrier for window creation (the guard is held).
    pub(crate) fn creation_barrier(&self) {
        self.sync();
    }

    /// Takes the lock that serialises this PE's collectives, after
    /// completing its non-blocking handle in flight: a collective waits for every PE, and none may wait for this one's
    /// handle locks meanwhile (see [`distarray::pending`]).
    fn coll_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.handles.settle();
        self.inner.coll.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Dissemination barrier over remote atomics (the caller holds the
    /// collective guard).
    ///
    /// Round `r`: tell PE `me + 2^r` that this PE reached barrier `e`, wait
    /// until PE `me - 2^r` told us the same. Lamellar's own barrier costs
    /// milliseconds here (its waiting thread runs runtime tasks); this one
    /// costs a few RDMA atomics per round.
    fn sync(&self) {
        let inner = &*self.inner;
        let (me, n) = (inner.rank, inner.size);
        let e = inner.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        std::sync::atomic::fence(Ordering::SeqCst);
        let mut dist = 1;
        let mut round = 0;
        while dist < n {
            let to = (me + dist) % n;
            // SAFETY: `round < BAR_WORDS` (2^64 PEs are not possible); word
            // `round` of a PE is written only by its round-`round` partner,
            // and only with these atomics.
            unsafe { inner.bar.atomic_store(to, round, e).block() };
            // SAFETY: as above, on this PE's own part.
            backoff_until(
                || unsafe { inner.bar.atomic_load(me, round).block() } >= e,
                &|| self.progress(),
            );
            dist *= 2;
            round += 1;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        // every PE has completed every tree collective before this barrier
        inner
            .tree_safe
            .store(inner.tree_seq.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Runs a tree collective (the caller holds the collective guard):
    /// numbers it and publishes its completion.
    fn tree_collective<R>(&self, full: bool, f: impl FnOnce(&TreeTransport<'_>) -> R) -> R {
        let inner = &*self.inner;
        let seq = inner.tree_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let out = f(&TreeTransport { comm: self, seq });
        if full {
            // every PE entered this allreduce: all completed the previous one
            inner.tree_safe.fetch_max(seq - 1, Ordering::SeqCst);
        }
        // SAFETY: the done word of this PE's part is written only here
        // (atomically) and read by other PEs with atomic loads.
        unsafe { inner.tree.atomic_store(inner.rank, DONE_WORD, seq).block() };
        out
    }

    /// Allreduce of a payload larger than a tree slot (collective; the
    /// caller holds the guard): the same binomial tree, hence the same
    /// combination order, over a temporary region with one message slot
    /// per round — O(log P) messages of the payload's size per PE, where
    /// an allgather would move P payloads.
    fn big_tree_allreduce(&self, buf: &mut [u8], combine: Combiner<'_>) -> Result<()> {
        let inner = &*self.inner;
        let words = buf.len().div_ceil(8);
        let rounds = (usize::BITS - (inner.size - 1).leading_zeros()) as usize;
        let slot_words = 1 + words;
        let region = inner
            .world
            .try_alloc_shared_mem_region::<u64>((1 + rounds) * slot_words)
            .block()
            .map_err(|e| Error::Backend(format!("allocating an allreduce region: {e}")))?;
        // SAFETY: the region is new and no PE writes to it before the
        // barrier below; the slice is this PE's part and dies here.
        unsafe { region.as_mut_slice().fill(0) };
        self.sync();
        let out = inner.world.alloc_one_sided_mem_region::<u64>(words);
        let t = BigTransport {
            comm: self,
            region: &region,
            out: &out,
            slot_words,
        };
        collective::tree_allreduce(&t, buf, combine)
    }

    /// Allgather of byte strings (collective).
    fn allgather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let _g = self.coll_guard();
        self.allgather_bytes_locked(mine)
    }

    /// Allgather of byte strings (collective; the caller holds the guard).
    fn allgather_bytes_locked(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let inner = &*self.inner;
        let (me, n) = (inner.rank, inner.size);
        // Nobody still reads the scratch region from the previous call.
        self.sync();
        let fits = mine.len() <= SCRATCH_BYTES;
        // SAFETY: this PE's part of the scratch region is written only here,
        // between two barriers during which no PE reads it; the slice is
        // dropped before the second barrier.
        unsafe {
            let words = inner.scratch.as_mut_slice();
            words[0] = mine.len() as u64;
            if fits {
                let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut words[1..]);
                dst[..mine.len()].copy_from_slice(mine);
            }
        }
        self.sync();
        let mut lens = Vec::with_capacity(n);
        for pe in 0..n {
            let len = if pe == me {
                mine.len()
            } else {
                // SAFETY: word 0 of `pe`'s part exists (the region has
                // SCRATCH_WORDS + 1 words) and is not written until the next
                // call's first barrier.
                unsafe { inner.scratch.get(pe, 0).block() as usize }
            };
            lens.push(len);
        }
        let max = lens.iter().copied().max().unwrap_or(0);
        let mut out = Vec::with_capacity(n);
        if max <= SCRATCH_BYTES {
            for (pe, &len) in lens.iter().enumerate() {
                if pe == me {
                    out.push(mine.to_vec());
                } else if len == 0 {
                    out.push(Vec::new());
                } else {
                    // SAFETY: words 1..=ceil(len / 8) of `pe`'s part were
                    // written before the barrier and stay unchanged until the
                    // next call's first barrier.
                    let words = unsafe { inner.scratch.get_buffer(pe, 1, len.div_ceil(8)).block() };
                    out.push(bytemuck::cast_slice::<u64, u8>(&words)[..len].to_vec());
                }
            }
            return Ok(out);
        }
        // Every PE saw the same lengths, so every PE takes this branch: a
        // temporary region large enough for the largest contribution.
        // Lamellar frees it once every PE has dropped its handle.
        let big = inner
            .world
            .try_alloc_shared_mem_region::<u64>(max.div_ceil(8))
            .block()
            .map_err(|e| Error::Backend(format!("allocating an allgather region: {e}")))?;
        // SAFETY: the region is new; only this PE writes its part, before the
        // barrier below, after which it is only read.
        unsafe {
            let dst: &mut [u8] = bytemuck::cast_slice_mut(big.as_mut_slice());
            dst[..mine.len()].copy_from_slice(mine);
        }
        self.sync();
        for (pe, &len) in lens.iter().enumerate() {
            if pe == me {
                out.push(mine.to_vec());
            } else if len == 0 {
                out.push(Vec::new());
            } else {
                // SAFETY: in bounds (the region holds `max >= len` bytes per
                // PE); written before the barrier, read-only afterwards.
                let words = unsafe { big.get_buffer(pe, 0, len.div_ceil(8)).block() };
                out.push(bytemuck::cast_slice::<u64, u8>(&words)[..len].to_vec());
            }
        }
        Ok(out)
    }
}

/// The point-to-point messages of one tree collective: the sender puts the
/// payload into its slot of the receiver's tree region, then stores the
/// collective's sequence number into the slot's first word, on which the
/// receiver waits.
///
/// A reduction slot of round `k` is written only by PE `r + 2^k` in
/// allreduces, and that PE cannot enter the next allreduce before the
/// receiver consumed the message (the result it waits for needs it). A
/// broadcast slot (by parity of the sequence number) may be written by
/// different parents: before writing, the sender makes sure the receiver
/// has completed collective `seq - 2` (known after any barrier or
/// allreduce, otherwise read from the receiver's done word).
struct TreeTransport<'a> {
    comm: &'a LamellarComm,
    seq: u64,
}

impl TreeTransport<'_> {
    fn slot(&self, phase: Phase) -> usize {
        match phase {
            Phase::Broadcast => (self.seq % 2) as usize * SLOT,
            Phase::Reduce(k) => (2 + k as usize) * SLOT,
            // refused by `send` before a slot is needed
            Phase::Exchange => 0,
        }
    }
}

impl Transport for TreeTransport<'_> {
    fn rank(&self) -> usize {
        self.comm.inner.rank
    }

    fn size(&self) -> usize {
        self.comm.inner.size
    }

    fn send(&self, to: usize, phase: Phase, data: &[u8]) -> Result<()> {
        let inner = &*self.comm.inner;
        if phase == Phase::Exchange {
            return Err(Error::Backend(
                "the Lamellar backend has no neighbour exchange".into(),
            ));
        }
        if let Phase::Reduce(k) = phase {
            if k as usize >= ROUNDS {
                return Err(Error::Backend(
                    "more PEs than the tree collectives support".into(),
                ));
            }
        }
        if data.len() > SLOT_WORDS * 8 {
            return Err(Error::Backend("tree message larger than a slot".into()));
        }
        let slot = self.slot(phase);
        if phase == Phase::Broadcast && inner.tree_safe.load(Ordering::SeqCst) + 2 < self.seq {
            let need = self.seq - 2;
            // SAFETY: the done word exists on every PE and is only accessed
            // atomically.
            backoff_until(
                || unsafe { inner.tree.atomic_load(to, DONE_WORD).block() } >= need,
                &|| self.comm.progress(),
            );
        }
        let out = inner.tree_out.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `out` is this PE's registered buffer of SLOT_WORDS words
        // (behind the mutex), `data` fits (checked above); the slot lies in
        // `to`'s tree region, whose payload `to` does not read before the
        // sequence number is stored; the first word is accessed only
        // atomically.
        unsafe { write_slot(&inner.tree, &out, to, slot, data, self.seq) };
        Ok(())
    }

    fn recv(&self, _from: usize, phase: Phase, buf: &mut [u8]) -> Result<()> {
        let inner = &*self.comm.inner;
        let me = inner.rank;
        let slot = self.slot(phase);
        // SAFETY: this PE's own slot word, accessed only atomically.
        backoff_until(
            || unsafe { inner.tree.atomic_load(me, slot).block() } == self.seq,
            &|| self.comm.progress(),
        );
        std::sync::atomic::fence(Ordering::SeqCst);
        // SAFETY: the sender completed its put before storing the sequence
        // number, and no PE writes this slot again before this PE completes
        // the collective (see the type's docs).
        unsafe { read_slot(&inner.tree, slot + 1, buf) }
    }
}

/// Sends `data` into the slot at word `word` of `to`'s part of `region`:
/// copied into the registered buffer `out`, put into words `word + 1 ..`
/// (nothing for an empty message), then `flag` stored atomically into word
/// `word`, on which the receiver waits.
///
/// # Safety
///
/// `out` is the caller's alone during the call and holds at least
/// `ceil(data.len() / 8)` words; the slot's words lie in the region and the
/// receiver reads the payload only after it sees `flag`; the flag word is
/// accessed only atomically.
unsafe fn write_slot(
    region: &SharedMemoryRegion<u64>,
    out: &OneSidedMemoryRegion<u64>,
    to: usize,
    word: usize,
    data: &[u8],
    flag: u64,
) {
    if !data.is_empty() {
        let sub = out.sub_region(0..data.len().div_ceil(8));
        // SAFETY: `sub` is the caller's registered buffer (its contract);
        // the put lands in the slot's payload words, in bounds, unread by
        // the receiver until the flag; `block` returns once it is complete.
        unsafe {
            let dst: &mut [u8] = bytemuck::cast_slice_mut(sub.as_mut_slice());
            dst[..data.len()].copy_from_slice(data);
            region.put_buffer(to, word + 1, &sub).block();
        }
    }
    std::sync::atomic::fence(Ordering::SeqCst);
    // SAFETY: the flag word, accessed only atomically (the caller's
    // contract).
    unsafe { region.atomic_store(to, word, flag).block() };
}

/// Copies `buf.len()` bytes from this PE's part of `region` at word
/// `word` into `buf`, through a slice over those words only (other PEs may
/// be writing other words of the part meanwhile).
///
/// # Safety
///
/// The words `word .. word + ceil(len / 8)` lie in the region and no one
/// writes them during the call.
unsafe fn read_slot(region: &SharedMemoryRegion<u64>, word: usize, buf: &mut [u8]) -> Result<()> {
    let words = buf.len().div_ceil(8);
    debug_assert!(word + words <= region.len());
    // SAFETY: only the address of this PE's part is taken.
    let base = unsafe { region.as_mut_ptr() }
        .map_err(|e| Error::Backend(format!("collective region has no local part: {e:?}")))?;
    // SAFETY: in bounds and unwritten during the call (the caller's
    // contract); a shared slice over just these words.
    let src = unsafe { std::slice::from_raw_parts(base.add(word), words) };
    buf.copy_from_slice(&bytemuck::cast_slice::<u64, u8>(src)[..buf.len()]);
    Ok(())
}

/// The messages of one large allreduce ([`LamellarComm::big_tree_allreduce`]):
/// a fresh region with a slot per message a PE can receive (the broadcast,
/// and one per reduction round), each written once, by one sender: the
/// payload, then a flag word set to 1, on which the receiver waits.
struct BigTransport<'a> {
    comm: &'a LamellarComm,
    region: &'a SharedMemoryRegion<u64>,
    /// This PE's registered send buffer, one payload long.
    out: &'a OneSidedMemoryRegion<u64>,
    slot_words: usize,
}

impl BigTransport<'_> {
    fn slot(&self, phase: Phase) -> Result<usize> {
        match phase {
            Phase::Broadcast => Ok(0),
            Phase::Reduce(k) => Ok((1 + k as usize) * self.slot_words),
            Phase::Exchange => Err(Error::Backend(
                "the Lamellar backend has no neighbour exchange".into(),
            )),
        }
    }
}

impl Transport for BigTransport<'_> {
    fn rank(&self) -> usize {
        self.comm.inner.rank
    }

    fn size(&self) -> usize {
        self.comm.inner.size
    }

    fn send(&self, to: usize, phase: Phase, data: &[u8]) -> Result<()> {
        let slot = self.slot(phase)?;
        if data.len().div_ceil(8) + 1 > self.slot_words {
            return Err(Error::Backend(
                "allreduce message larger than its slot".into(),
            ));
        }
        // SAFETY: `out` is this PE's own registered buffer of a payload's
        // words, used by one message at a time; the slot lies in `to`'s
        // part, which `to` does not read before the flag; the flag word is
        // accessed only atomically.
        unsafe { write_slot(self.region, self.out, to, slot, data, 1) };
        Ok(())
    }

    fn recv(&self, _from: usize, phase: Phase, buf: &mut [u8]) -> Result<()> {
        let slot = self.slot(phase)?;
        let me = self.comm.inner.rank;
        // SAFETY: this PE's own flag word, accessed only atomically.
        backoff_until(
            || unsafe { self.region.atomic_load(me, slot).block() } == 1,
            &|| self.comm.progress(),
        );
        std::sync::atomic::fence(Ordering::SeqCst);
        // SAFETY: the sender's put completed before it set the flag, and
        // nobody writes this slot again (one message per slot and call).
        unsafe { read_slot(self.region, slot + 1, buf) }
    }
}

impl OneSidedComm for LamellarComm {
    type Window<T: Element> = LamellarWindow<T>;

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
        let lens = lens.to_vec();
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
        distarray::checks::check_memory("a Lamellar window (all PEs of this node)", total)
    }

    fn backend_name(&self) -> &'static str {
        "lamellar"
    }
}

/// Free bytes of the file system behind `/dev/shm`, if it can be told.
fn shm_free_bytes() -> Option<u128> {
    let path = std::ffi::CString::new("/dev/shm").ok()?;
    // SAFETY: `statvfs` is plain old data, for which all-zero bytes are a
    // valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `st` a valid,
    // exclusively borrowed out-parameter of the right type.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u128 * st.f_frsize as u128)
}

impl std::fmt::Debug for LamellarComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LamellarComm")
            .field("rank", &self.inner.rank)
            .field("size", &self.inner.size)
            .finish()
    }
}
