//! MPI's lifetime as this crate sees it: the process-wide lock that
//! serialises its MPI calls, the watch on `MPI_Finalize` (whoever calls
//! it), the windows still alive then, and the local views that must end
//! before window memory goes away.
//!
//! # Finalisation
//!
//! The first `MpiComm` sets an attribute on `MPI_COMM_SELF` whose delete
//! callback MPI runs at the start of `MPI_Finalize`, while MPI still works
//! (MPI standard, "Allowing User Functions at Process Termination"). The
//! callback ([`on_finalize`]):
//!
//! 1. takes the call lock, or under `MPI_THREAD_MULTIPLE` the exclusive
//!    hold on the calls in flight (so no MPI call of this crate is in
//!    flight on another thread), and sets the finalising flag: every later operation
//!    of a window or communicator handle returns [`Error::Backend`] without
//!    calling MPI ([`enter`]);
//! 2. waits until local views open on other threads have ended (window
//!    memory must outlive every slice handed out; a view open on the
//!    finalising thread itself cannot end first, so that aborts the
//!    process rather than free memory under it);
//! 3. frees the windows still alive, in creation order (the same order on
//!    every rank, as creation is collective), after releasing their locks.
//!    MPI would release them anyway, but MPICH with UCX aborts in
//!    `MPI_Finalize` when windows are still alive.

use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use distarray::{Error, Result};
use mpi::ffi;

use crate::raw::{check, shim};

/// `true` when MPI calls must be serialised by [`serial`] (MPI provides
/// `MPI_THREAD_SERIALIZED`, not `MPI_THREAD_MULTIPLE`).
static SERIALIZE: AtomicBool = AtomicBool::new(true);
/// The lock that serialises MPI calls when [`SERIALIZE`] is set.
static MPI_CALLS: Mutex<()> = Mutex::new(());
/// Under `MPI_THREAD_MULTIPLE`, where [`MPI_CALLS`] is not taken: held
/// shared by every MPI call of this crate ([`serial`], [`enter`]) and
/// exclusively by finalisation, so that `MPI_Finalize` cannot start while
/// another thread is inside an MPI call of this crate (or using a handle,
/// such as a cached datatype, that finalisation frees).
static IN_FLIGHT: RwLock<()> = RwLock::new(());
/// Set at the start of `MPI_Finalize` (by whoever calls it), before MPI
/// releases anything: from then on no MPI call of this crate may start.
static FINALIZING: AtomicBool = AtomicBool::new(false);
/// Set by the `MpiEnv` guard, which holds the call lock while it calls
/// `MPI_Finalize` (so the callback must not take it again).
static FINALIZE_HOLDS_LOCK: AtomicBool = AtomicBool::new(false);

/// Records whether MPI calls need serialising, from the thread level MPI
/// provides (at least `MPI_THREAD_SERIALIZED`: checked by the caller).
pub(crate) fn set_serialize(provided: mpi::Threading) {
    SERIALIZE.store(provided < mpi::Threading::Multiple, Ordering::Relaxed);
}

/// What a thread holds while it calls MPI: the call lock (thread level
/// `MPI_THREAD_SERIALIZED`), a shared hold on [`IN_FLIGHT`]
/// (`MPI_THREAD_MULTIPLE`: calls run concurrently, but not beside
/// finalisation), or, while MPI is being finalised, the exclusive one.
#[must_use]
pub(crate) struct CallGuard(#[allow(dead_code)] Hold);

/// The lock a [`CallGuard`] holds (held, never read: its drop releases it).
#[allow(dead_code)]
enum Hold {
    Serial(MutexGuard<'static, ()>),
    Shared(RwLockReadGuard<'static, ()>),
    Exclusive(RwLockWriteGuard<'static, ()>),
}

/// Serialises this thread's MPI calls with every other thread's (the call
/// lock) if MPI provides only `MPI_THREAD_SERIALIZED`, so that `MpiComm` /
/// `MpiWindow` can be `Sync`; under `MPI_THREAD_MULTIPLE` only keeps
/// finalisation out until the guard drops. Use [`enter`] for calls that
/// must not run after `MPI_Finalize`. Never taken twice by one thread.
#[inline]
pub(crate) fn serial() -> CallGuard {
    if SERIALIZE.load(Ordering::Relaxed) {
        CallGuard(Hold::Serial(
            MPI_CALLS.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    } else {
        CallGuard(Hold::Shared(
            IN_FLIGHT.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// [`serial`], then `Err` if MPI has been (or is being) finalised: every
/// MPI call on a window or communicator handle starts with this, so
/// handles that outlive `MPI_Finalize` return [`Error::Backend`] instead
/// of calling MPI (or handing out freed window memory). Finalisation sets
/// the flag while it holds the call lock or [`IN_FLIGHT`] exclusively,
/// so a guard obtained here keeps MPI alive until it drops, at any thread
/// level.
#[inline]
pub(crate) fn enter() -> Result<CallGuard> {
    let guard = serial();
    if FINALIZING.load(Ordering::Acquire) {
        return Err(finalized_error());
    }
    Ok(guard)
}

/// What the `MpiEnv` guard holds while it calls `MPI_Finalize`: the call
/// lock, or [`IN_FLIGHT`] exclusively (waiting for the calls in flight on
/// other threads to end).
pub(crate) fn finalize_guard() -> CallGuard {
    if SERIALIZE.load(Ordering::Relaxed) {
        serial()
    } else {
        CallGuard(Hold::Exclusive(
            IN_FLIGHT.write().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

fn finalized_error() -> Error {
    Error::Backend("MPI has already been finalised (the MpiEnv guard was dropped)".into())
}

/// Called by the `MpiEnv` guard, holding [`finalize_guard`], right before
/// it calls `MPI_Finalize`.
pub(crate) fn finalizing_with_lock_held() {
    FINALIZE_HOLDS_LOCK.store(true, Ordering::SeqCst);
}

/// Called by the shim at the start of `MPI_Finalize` (see the module
/// docs). Must not unwind.
extern "C" fn on_finalize() {
    let _serial = if FINALIZE_HOLDS_LOCK.load(Ordering::SeqCst) {
        None
    } else {
        Some(finalize_guard())
    };
    FINALIZING.store(true, Ordering::SeqCst);
    wait_for_views();
    free_live_windows();
}

/// Arranges (once per process; MPI initialised) for [`on_finalize`] to run
/// at the start of `MPI_Finalize`, whoever calls it: the `MpiEnv` guard,
/// the `mpi` crate's `Universe` or the application.
pub(crate) fn watch_finalize() -> Result<()> {
    static WATCH: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    WATCH
        .get_or_init(|| {
            let _serial = serial();
            // SAFETY: MPI is initialised and not finalised (the caller
            // checked); the shim creates a keyval and sets an attribute on
            // MPI_COMM_SELF whose delete callback calls `on_finalize`, a
            // non-unwinding `extern "C" fn` with static lifetime.
            let rc = unsafe { shim::distarray_mpi_watch_finalize(on_finalize) };
            check(rc, "MPI_Comm_set_attr(MPI_COMM_SELF)").map_err(|e| e.to_string())
        })
        .clone()
        .map_err(Error::Backend)
}

/// `true` once MPI has been finalised or has started to finalise (then
/// nothing may call MPI but `MPI_Initialized` / `MPI_Finalized`).
pub(crate) fn finalized() -> bool {
    FINALIZING.load(Ordering::Acquire) || mpi::environment::is_finalized()
}

/// `Err` unless MPI is initialised and not yet finalised.
pub(crate) fn ensure_live() -> Result<()> {
    if !mpi::environment::is_initialized() {
        return Err(Error::Backend(
            "MPI is not initialised (use MpiComm::init)".into(),
        ));
    }
    if finalized() {
        return Err(finalized_error());
    }
    Ok(())
}

/// Local views (slices of window memory) open in this process.
static OPEN_VIEWS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Local views open on this thread.
    static THREAD_VIEWS: Cell<usize> = const { Cell::new(0) };
}

/// Keeps window memory from being freed by `MPI_Finalize` while a local
/// view is alive: taken before a slice of window memory is made, dropped
/// after it ends.
pub(crate) struct ViewPin(());

impl ViewPin {
    /// `Err` if MPI is finalising (no slice may be made any more).
    pub(crate) fn new() -> Result<ViewPin> {
        OPEN_VIEWS.fetch_add(1, Ordering::SeqCst);
        THREAD_VIEWS.with(|n| n.set(n.get() + 1));
        let pin = ViewPin(());
        // Checked after counting the view: either `on_finalize` sees the
        // count and waits for this view, or this sees its flag.
        if FINALIZING.load(Ordering::SeqCst) {
            return Err(finalized_error());
        }
        Ok(pin)
    }
}

impl Drop for ViewPin {
    fn drop(&mut self) {
        THREAD_VIEWS.with(|n| n.set(n.get() - 1));
        OPEN_VIEWS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (in `MPI_Finalize`, flag set) until the views open on other
/// threads end. A view open on this thread would outlive the memory under
/// it: that ends the process instead.
fn wait_for_views() {
    if THREAD_VIEWS.with(|n| n.get()) > 0 {
        eprintln!(
            "distarray-mpi: MPI_Finalize called inside a local view (with_local / \
             with_local_mut) of a window: its memory would be freed under the view; aborting"
        );
        std::process::abort();
    }
    while OPEN_VIEWS.load(Ordering::SeqCst) > 0 {
        std::thread::yield_now();
    }
}

/// The passive-target locks this rank holds on one window as MPI sees
/// them (set right after `MPI_Win_lock` / `MPI_Win_lock_all` succeed,
/// cleared right before the unlock), so that finalisation can release
/// them: MPICH asserts on an unlock of a target that is not locked.
/// Plain relaxed stores: every change happens under the call lock, or
/// under `MPI_THREAD_MULTIPLE` on the window's own thread discipline.
pub(crate) struct HeldLocks {
    targets: Box<[AtomicBool]>,
    all: AtomicBool,
}

impl HeldLocks {
    pub(crate) fn new(size: usize) -> Arc<HeldLocks> {
        Arc::new(HeldLocks {
            targets: (0..size).map(|_| AtomicBool::new(false)).collect(),
            all: AtomicBool::new(false),
        })
    }

    /// Records a lock on `target` (`held`) or its release.
    #[inline]
    pub(crate) fn set(&self, target: usize, held: bool) {
        if let Some(t) = self.targets.get(target) {
            t.store(held, Ordering::Relaxed);
        }
    }

    /// Records `MPI_Win_lock_all` (`held`) or `MPI_Win_unlock_all`.
    #[inline]
    pub(crate) fn set_all(&self, held: bool) {
        self.all.store(held, Ordering::Relaxed);
    }
}

/// A window not yet freed: its handle and the locks this rank holds on it.
struct LiveWindow {
    win: ffi::MPI_Win,
    locks: Arc<HeldLocks>,
}

// SAFETY: an MPI window handle is a process-wide value, not tied to a
// thread; it is only used under the call lock.
unsafe impl Send for LiveWindow {}

/// Windows alive in this process, in creation order.
static LIVE: Mutex<Vec<LiveWindow>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<LiveWindow>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a window just created (with the record of its locks).
pub(crate) fn register_window(win: ffi::MPI_Win, locks: Arc<HeldLocks>) {
    live().push(LiveWindow { win, locks });
}

/// Forgets a window that its handle frees now (or that finalisation
/// freed already).
pub(crate) fn unregister_window(win: ffi::MPI_Win) {
    live().retain(|w| w.win != win);
}

/// Number of windows alive in this process.
pub(crate) fn live_windows() -> usize {
    live().len()
}

/// Frees the windows still alive, in creation order (in `MPI_Finalize`,
/// flag set, call lock held, no view open).
fn free_live_windows() {
    let windows = std::mem::take(&mut *live());
    for mut w in windows {
        // Release what this rank still holds (errors are returned, not
        // fatal: the window has MPI_ERRORS_RETURN; they are ignored).
        for (t, held) in w.locks.targets.iter().enumerate() {
            if held.load(Ordering::Relaxed) {
                // SAFETY: a valid window on which this rank holds a lock
                // on `t` (recorded right after MPI_Win_lock succeeded).
                let _ = unsafe { ffi::MPI_Win_unlock(t as c_int, w.win) };
            }
        }
        if w.locks.all.load(Ordering::Relaxed) {
            // SAFETY: as above, for MPI_Win_lock_all.
            let _ = unsafe { ffi::MPI_Win_unlock_all(w.win) };
        }
        // SAFETY: a valid window with no epoch of this rank open; its
        // handle will not use it again (every operation fails once the
        // flag is set, and its Drop skips MPI_Win_free). Collective: every
        // rank frees its live windows in the same (creation) order.
        let _ = unsafe { ffi::MPI_Win_free(&mut w.win) };
    }
}
