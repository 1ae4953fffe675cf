//! [`ThreadedComm`]: the in-process backend, `P` ranks as `P` threads of one
//! process. It is the embedded default for examples and the backend of the
//! unit tests: deterministic, no system libraries, and **strict** — it
//! reports every misuse the [`Window`] contract forbids as an `Err`,
//! including conflicting accesses MPI would silently let through.
//!
//! ```
//! use distarray::{threaded, OneSidedComm};
//! let ranks = threaded::run(3, |comm| comm.rank() * 10).unwrap();
//! assert_eq!(ranks, vec![0, 10, 20]);
//! ```
//!
//! # Failure handling
//!
//! If a rank panics, or returns while others still wait for it in a
//! collective or for a lock it holds, every pending and future wait on the
//! other ranks fails with [`Error::Aborted`] instead of blocking, and
//! [`run`] returns [`Error::RankPanicked`] naming the first rank that
//! panicked and its message. A test using this backend never hangs on a
//! failed rank.
//!
//! # Memory model
//!
//! Each rank's part of a window is a `Segment`: elements in `UnsafeCell`s,
//! a passive-target lock (shared count / exclusive holder) and a *view
//! state* behind an `RwLock`. Every RMA copy takes that `RwLock` (read for
//! `get`, write for `put` / `accumulate`, which makes accumulates atomic)
//! and checks the view state; local views register in the view state before
//! handing out a slice. The rules that keep every slice sound:
//!
//! * a mutable local view excludes every RMA access and every other view;
//! * a shared local view excludes every RMA write;
//!
//! a violating access returns [`Error::Conflict`] instead of racing.
//!
//! # Deadlocks
//!
//! A rank that waits for a lock held by a rank which itself waits in a
//! collective (a barrier inside `with_local_mut`, say) gets
//! [`Error::Deadlock`] instead of hanging. Each rank is assumed to be one
//! thread: that is what makes the wait certain to deadlock. So does a rank
//! in a lock-order cycle (rank 0 holds a lock on x and waits for one on y,
//! rank 1 holds y and waits for x; any length): waiting ranks publish what
//! they wait for, and a cycle seen consistently is reported (the `deadlock`
//! module's source documentation says why it is never a false report).
//!
//! # Checking mode
//!
//! [`run_checked`], [`check`] and [`replay`] also detect **RMA data
//! races**: two conflicting accesses to one element by different ranks (or
//! by one rank without a flush between them) that no synchronisation
//! orders — put/put, put/get, accumulates with different operations,
//! local views against remote accesses — are reported as [`Error::Race`]
//! naming both ranks, both operations and the element. The order is
//! happens-before over vector clocks (unlock → lock of the same target,
//! fences, barriers and every other collective), so a race is found in
//! every run in which both accesses happen, not only when the timing made
//! them collide. Same-operation accumulates and concurrent reads are not
//! races (MPI's rules). The rules in detail are in the `race` module's
//! source documentation. The default [`run`] does none of this and pays
//! nothing for it (one never-taken branch per call).
//!
//! Under this backend's access rules (writes need an exclusive lock or a
//! fence epoch, local views a lock on the own part and no fence epoch),
//! most races are refused before they happen; what remains for the
//! detector are conflicting operations in one fence epoch and a put or
//! accumulate followed by a conflicting operation of the same origin
//! before a flush.
//!
//! # Controlled schedules
//!
//! [`replay`] runs the ranks one at a time, switching only at
//! communication calls (RMA operations, lock, unlock, flush, collectives,
//! opening and closing a local view); a PCT-style randomized scheduler
//! seeded by the seed picks the next rank, so one seed is one
//! interleaving, reproduced exactly on every run. [`check`] runs many seeds
//! and reports the first failing one. A wait that no rank can ever end —
//! a lock-order cycle (rank 0 holds x and waits for y, rank 1 holds y and
//! waits for x), a collective some rank never joins while others wait for
//! its lock — returns [`Error::Deadlock`] instead of hanging. The
//! scheduler is a baton passed between the rank threads at our own wait
//! points; the `schedule` module's source documentation says why it is not
//! built on the `shuttle` crate.

use std::any::Any;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

mod clock;
mod deadlock;
mod race;
mod schedule;

use self::clock::{Clocks, VClock};
use self::deadlock::WaitGraph;
use self::race::{AccessKind, SegShadow};
pub use self::schedule::ScheduleFailure;
use self::schedule::Scheduler;
use crate::checks::{run_pieces, Access, WindowState};
use crate::collective::{self, Combiner, Phase, Transport};
use crate::comm::{AccumulateOp, Element, LockKind, OneSidedComm, PendingExchange, Window};
use crate::error::{Error, Result};
use crate::pending::HandleSlot;

/// No rank (see `World::awaiting`).
const NOBODY: usize = usize::MAX;

/// How often a blocked wait re-checks whether another rank failed.
const POLL: Duration = Duration::from_millis(5);

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Internal state is only changed in short critical sections that do not
    // panic; a poisoned mutex (a panic elsewhere) still holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Shared = Arc<dyn Any + Send + Sync>;

#[derive(Default)]
struct Exchange {
    generation: u64,
    slots: Vec<Option<Shared>>,
    arrived: usize,
    last: Option<Arc<Vec<Shared>>>,
    /// Checking mode: the clocks the ranks published on arrival, and their
    /// join once the exchange completed (every rank acquires it).
    clocks: Vec<Option<VClock>>,
    last_clock: Option<VClock>,
    /// Set once a rank returned while others waited for it in a collective:
    /// the communicator is broken and every later collective fails too.
    broken: Option<Error>,
}

/// State shared by all ranks of one [`run`].
struct World {
    size: usize,
    exchange: Mutex<Exchange>,
    exchange_cv: Condvar,
    /// The first failure: (rank, message).
    failure: Mutex<Option<(usize, String)>>,
    failed: AtomicBool,
    /// `finished[r]`: rank `r`'s closure has returned (or unwound).
    finished: Vec<AtomicBool>,
    /// Who waits for which lock (lock-order cycle detection).
    waits: WaitGraph,
    /// Controlled-schedule mode ([`replay`], [`check`]).
    sched: Option<Scheduler>,
    /// Checking mode: happens-before clocks for race detection.
    clocks: Option<Clocks>,
    /// Point-to-point mailboxes of the tree collectives (index = receiver).
    mailboxes: Vec<Mailbox>,
    /// `entered[r]`: collectives rank `r` has entered so far.
    entered: Vec<AtomicU64>,
    /// `blocked[r]`: the number (`entered` value) of the tree collective
    /// rank `r` waits in, 0 when it waits in none.
    blocked: Vec<AtomicU64>,
    /// Messages and bytes each rank has sent in tree collectives.
    sent: Vec<(AtomicUsize, AtomicUsize)>,
    /// Neighbour exchanges: per (sender, receiver), how many messages the
    /// sender has sent and how many the receiver has claimed.
    exchange_sent: Mutex<std::collections::HashMap<(usize, usize), u64>>,
    /// `awaiting[r]`: the rank whose exchange message rank `r` waits for
    /// ([`NOBODY`] when none): an exchange waits for its neighbours only,
    /// not for everybody as a collective does.
    awaiting: Vec<AtomicUsize>,
    exchange_claimed: Mutex<std::collections::HashMap<(usize, usize), u64>>,
}

/// One message of a tree collective.
struct Message {
    from: usize,
    phase: Phase,
    data: Vec<u8>,
    /// The sender's vector clock (checking mode): receiving it orders the
    /// receiver after everything the sender did before sending.
    clock: Option<VClock>,
    /// For [`Phase::Exchange`]: the number of the exchange between this
    /// sender and receiver (0, 1, ...), in the order the sender started
    /// them; the receiver matches the number it expects, fixed when it
    /// started its side (MPI's posting order). 0 for tree messages.
    seq: u64,
}

/// The messages waiting for one rank.
#[derive(Default)]
struct Mailbox {
    queue: Mutex<Vec<Message>>,
    cv: Condvar,
}

impl World {
    fn new(size: usize, mode: Mode) -> Self {
        World {
            size,
            exchange: Mutex::new(Exchange {
                slots: vec![None; size],
                clocks: vec![None; size],
                ..Exchange::default()
            }),
            exchange_cv: Condvar::new(),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            finished: (0..size).map(|_| AtomicBool::new(false)).collect(),
            waits: WaitGraph::new(size),
            sched: mode.seed.map(|seed| Scheduler::new(size, seed)),
            clocks: mode.checked.then(|| Clocks::new(size)),
            mailboxes: (0..size).map(|_| Mailbox::default()).collect(),
            entered: (0..size).map(|_| AtomicU64::new(0)).collect(),
            blocked: (0..size).map(|_| AtomicU64::new(0)).collect(),
            sent: (0..size)
                .map(|_| (AtomicUsize::new(0), AtomicUsize::new(0)))
                .collect(),
            exchange_sent: Mutex::new(Default::default()),
            awaiting: (0..size).map(|_| AtomicUsize::new(NOBODY)).collect(),
            exchange_claimed: Mutex::new(Default::default()),
        }
    }

    /// The next number of the exchange messages `from` sends `to`.
    fn next_sent(&self, from: usize, to: usize) -> u64 {
        let mut m = relock(&self.exchange_sent);
        let n = m.entry((from, to)).or_insert(0);
        *n += 1;
        *n - 1
    }

    /// The number of the next exchange message `to` receives from `from`,
    /// claimed when `to` starts its side.
    fn next_claimed(&self, from: usize, to: usize) -> u64 {
        let mut m = relock(&self.exchange_claimed);
        let n = m.entry((from, to)).or_insert(0);
        *n += 1;
        *n - 1
    }

    /// A schedule point (controlled-schedule mode; nothing otherwise).
    #[inline]
    fn point(&self, rank: usize) {
        if let Some(s) = &self.sched {
            s.point(rank);
        }
    }

    /// Controlled-schedule mode: state a waiting rank may wait for changed.
    #[inline]
    fn wake(&self) {
        if let Some(s) = &self.sched {
            s.wake_all();
        }
    }

    /// Wakes every thread waiting on a condition variable (mailboxes and
    /// the exchange) after a failure or a rank's return.
    fn notify_waiters(&self) {
        self.exchange_cv.notify_all();
        for m in &self.mailboxes {
            m.cv.notify_all();
        }
    }

    /// The communicator is broken (a rank returned while others waited
    /// for it): the error every collective reports from now on.
    fn broken(&self) -> Option<Error> {
        relock(&self.exchange).broken.clone()
    }

    fn set_broken(&self, e: Error) {
        let mut ex = relock(&self.exchange);
        if ex.broken.is_none() {
            ex.broken = Some(e);
        }
        drop(ex);
        self.notify_waiters();
        self.wake();
    }

    fn fail(&self, rank: usize, message: String) {
        let mut f = relock(&self.failure);
        if f.is_none() {
            *f = Some((rank, message));
        }
        self.failed.store(true, Ordering::SeqCst);
        self.notify_waiters();
        self.wake();
    }

    /// `Err(Aborted)` if some rank failed.
    fn check_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            let (rank, message) = relock(&self.failure).clone().unwrap_or_default();
            return Err(Error::Aborted { rank, message });
        }
        Ok(())
    }

    /// `true` while `rank` waits in a collective that has not completed
    /// and that `me` has not entered yet (so `rank` waits for `me`).
    fn blocked_in_collective(&self, rank: usize, me: usize) -> bool {
        // in an exchange `rank` waits for one neighbour's message: for `me`
        // only if that neighbour is `me` and its message is not there yet
        let awaited = self.awaiting[rank].load(Ordering::SeqCst);
        if awaited != NOBODY {
            return awaited == me
                && !relock(&self.mailboxes[rank].queue)
                    .iter()
                    .any(|m| m.from == me && m.phase == Phase::Exchange);
        }
        let tree = self.blocked[rank].load(Ordering::SeqCst);
        (tree != 0 && self.entered[me].load(Ordering::SeqCst) < tree)
            || relock(&self.exchange).slots[rank].is_some()
    }

    fn is_finished(&self, rank: usize) -> bool {
        self.finished[rank].load(Ordering::SeqCst)
    }

    /// The collective primitive: every rank contributes a value, every rank
    /// gets all values (index = rank).
    fn exchange(&self, rank: usize, value: Shared) -> Result<Arc<Vec<Shared>>> {
        self.point(rank);
        self.check_failed()?;
        self.entered[rank].fetch_add(1, Ordering::SeqCst);
        let mut ex = relock(&self.exchange);
        if let Some(e) = &ex.broken {
            return Err(e.clone());
        }
        let generation = ex.generation;
        ex.slots[rank] = Some(value);
        if let Some(c) = &self.clocks {
            ex.clocks[rank] = Some(c.release(rank));
        }
        ex.arrived += 1;
        // an arrival may complete the exchange, and makes this rank "in a
        // collective" for lock waiters' deadlock check
        self.wake();
        if ex.arrived == self.size {
            let all: Vec<Shared> = ex
                .slots
                .iter_mut()
                .map(|s| s.take().expect("arrived"))
                .collect();
            let all = Arc::new(all);
            ex.last = Some(all.clone());
            if let Some(c) = &self.clocks {
                let mut joined = VClock::zero(self.size);
                for v in ex.clocks.iter_mut().filter_map(Option::take) {
                    joined.join(&v);
                }
                c.acquire(rank, &joined);
                ex.last_clock = Some(joined);
            }
            ex.arrived = 0;
            ex.generation += 1;
            self.exchange_cv.notify_all();
            return Ok(all);
        }
        loop {
            if let Some(s) = &self.sched {
                drop(ex);
                let waited = s.wait(rank, || "the other ranks to join a collective".into());
                ex = relock(&self.exchange);
                if let (Err(e), true) = (waited, ex.generation == generation) {
                    ex.slots[rank] = None;
                    ex.clocks[rank] = None;
                    ex.arrived -= 1;
                    return Err(e);
                }
            } else {
                let (guard, _) = self
                    .exchange_cv
                    .wait_timeout(ex, POLL)
                    .unwrap_or_else(|e| e.into_inner());
                ex = guard;
            }
            if ex.generation != generation {
                if let (Some(c), Some(joined)) = (&self.clocks, &ex.last_clock) {
                    c.acquire(rank, joined);
                }
                return Ok(ex.last.clone().expect("completed exchange"));
            }
            if let Err(e) = self.check_failed() {
                ex.slots[rank] = None;
                ex.clocks[rank] = None;
                ex.arrived -= 1;
                return Err(e);
            }
            if ex.broken.is_none() {
                if let Some(gone) =
                    (0..self.size).find(|&r| ex.slots[r].is_none() && self.is_finished(r))
                {
                    self.wake();
                    ex.broken = Some(Error::Aborted {
                        rank: gone,
                        message: "rank returned without joining a collective the others entered"
                            .into(),
                    });
                }
            }
            if let Some(e) = ex.broken.clone() {
                ex.slots[rank] = None;
                ex.clocks[rank] = None;
                ex.arrived -= 1;
                return Err(e);
            }
        }
    }
}

/// Runs `f` on `p` ranks, each a thread with its own [`ThreadedComm`], and
/// returns every rank's result (index = rank).
///
/// If a rank panics, the others' pending collectives and lock waits fail
/// with [`Error::Aborted`] and `run` returns [`Error::RankPanicked`] for the
/// first rank that panicked.
///
/// Closures that return a `Result` (most do) are easier with [`run_ok`],
/// which flattens the per-rank results into one.
///
///
/// ```
/// use distarray::{threaded, Error, OneSidedComm};
/// let r = threaded::run(2, |comm| {
///     if comm.rank() == 1 {
///         panic!("boom");
///     }
///     comm.barrier() // would wait forever for rank 1; fails instead
/// });
/// assert!(matches!(r, Err(Error::RankPanicked { rank: 1, .. })));
/// ```
pub fn run<R, F>(p: usize, f: F) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(ThreadedComm) -> R + Sync,
{
    run_mode(p, Mode::default(), f)
}

/// Like [`run`], in *checking mode*: every window access is checked for
/// data races ([`Error::Race`]: two conflicting accesses to one element
/// that no synchronisation orders, see the [module docs](self#checking-mode)).
/// The ranks run on OS threads as in [`run`]; [`check`] and [`replay`] also
/// control the interleaving.
///
/// ```
/// use distarray::{threaded, Error, OneSidedComm, Window};
/// let out = threaded::run_checked(3, |comm| -> distarray::Result<()> {
///     let win = comm.create_window::<i32>(4)?;
///     win.fence()?;
///     if comm.rank() != 1 {
///         // ranks 0 and 2 both write element 0 of rank 1 in one fence epoch
///         win.put(1, 0, &[comm.rank() as i32])?;
///     }
///     win.fence_end()
/// })
/// .unwrap();
/// // whichever put ran second reports the race
/// assert!(out.iter().any(|r| matches!(r, Err(Error::Race { target: 1, offset: 0, .. }))));
/// ```
pub fn run_checked<R, F>(p: usize, f: F) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(ThreadedComm) -> R + Sync,
{
    run_mode(
        p,
        Mode {
            checked: true,
            seed: None,
        },
        f,
    )
}

/// Runs `f` on `p` ranks in checking mode under the controlled schedule
/// named by `seed`: the ranks run one at a time and switch only at
/// communication calls, in the order a seeded PCT-style scheduler chooses
/// (see the [module docs](self#controlled-schedules)). The same seed gives
/// the same interleaving, results and errors every time, as long as `f`
/// itself depends on nothing but its inputs (no clocks, no randomness of
/// its own, one thread per rank); pass the seed [`check`] reported.
///
/// ```
/// use distarray::{threaded, OneSidedComm};
/// let a = threaded::replay(3, 42, |comm| comm.rank()).unwrap();
/// assert_eq!(a, vec![0, 1, 2]);
/// ```
pub fn replay<R, F>(p: usize, seed: u64, f: F) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(ThreadedComm) -> R + Sync,
{
    run_mode(
        p,
        Mode {
            checked: true,
            seed: Some(seed),
        },
        f,
    )
}

/// Runs `f` on `p` ranks under `schedules` controlled schedules (seeds
/// `0..schedules`, each as [`replay`] runs it, races checked) and returns
/// the first failing one: its seed and its error (a panic, a race, a
/// deadlock, or the first `Err` a rank returned — preferring an error
/// that is not merely [`Error::PeerFailed`] / [`Error::Aborted`] caused by
/// another rank's failure).
///
/// ```
/// use distarray::{threaded, Error, OneSidedComm, Window};
/// // Two ranks increment a counter on rank 0 in one fence epoch: a lost
/// // update in some interleavings, and a race (get/put) in all of them.
/// let increment = |comm: threaded::ThreadedComm| -> distarray::Result<()> {
///     let win = comm.create_window::<u64>(1)?;
///     win.fence()?;
///     let mut v = [0u64];
///     win.get(0, 0, &mut v)?;
///     win.put(0, 0, &[v[0] + 1])?;
///     win.fence_end()
/// };
/// let failure = threaded::check(2, 20, increment).unwrap_err();
/// assert!(matches!(failure.error, Error::Race { target: 0, offset: 0, .. }));
/// // the seed reproduces it
/// let again = threaded::replay(2, failure.seed, increment).unwrap();
/// assert!(again.iter().any(|r| matches!(r, Err(Error::Race { .. }))));
/// ```
pub fn check<R, F>(p: usize, schedules: u64, f: F) -> std::result::Result<(), ScheduleFailure>
where
    R: Send,
    F: Fn(ThreadedComm) -> Result<R> + Sync,
{
    for seed in 0..schedules {
        let error = match replay(p, seed, &f) {
            Err(e) => Some(e),
            Ok(results) => first_error(results),
        };
        if let Some(error) = error {
            return Err(ScheduleFailure { seed, error });
        }
    }
    Ok(())
}

/// The most telling error of a run's results: the first one that is not a
/// consequence of another rank's failure, else the first.
fn first_error<R>(results: Vec<Result<R>>) -> Option<Error> {
    let errors: Vec<Error> = results.into_iter().filter_map(|r| r.err()).collect();
    let secondary = |e: &Error| matches!(e, Error::PeerFailed { .. } | Error::Aborted { .. });
    errors
        .iter()
        .find(|e| !secondary(e))
        .or(errors.first())
        .cloned()
}

/// How a run is executed.
#[derive(Debug, Clone, Copy, Default)]
struct Mode {
    /// Race detection on.
    checked: bool,
    /// Controlled schedule with this seed.
    seed: Option<u64>,
}

fn run_mode<R, F>(p: usize, mode: Mode, f: F) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(ThreadedComm) -> R + Sync,
{
    if p == 0 {
        return Err(Error::InvalidArgument(
            "threaded::run needs at least one rank".into(),
        ));
    }
    let world = Arc::new(World::new(p, mode));
    let mut results: Vec<Option<R>> = (0..p).map(|_| None).collect();
    let mut first_panic: Option<(usize, String)> = None;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..p)
            .map(|rank| {
                let comm = ThreadedComm {
                    world: world.clone(),
                    rank,
                    handles: Arc::default(),
                };
                let world = world.clone();
                let f = &f;
                std::thread::Builder::new()
                    .name(format!("rank-{rank}"))
                    .stack_size(16 << 20)
                    .spawn_scoped(s, move || {
                        if let Some(s) = &world.sched {
                            s.start(rank);
                        }
                        let out =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(comm)));
                        if let Err(payload) = &out {
                            world.fail(rank, panic_message(payload.as_ref()));
                        }
                        world.finished[rank].store(true, Ordering::SeqCst);
                        world.notify_waiters();
                        if let Some(s) = &world.sched {
                            s.finish(rank);
                        }
                        out
                    })
                    .expect("spawn rank thread")
            })
            .collect();
        for (rank, h) in handles.into_iter().enumerate() {
            if let Ok(Ok(r)) = h.join() {
                results[rank] = Some(r);
            }
        }
    });
    if let Some((rank, message)) = relock(&world.failure).take() {
        first_panic = Some((rank, message));
    }
    if let Some((rank, message)) = first_panic {
        return Err(Error::RankPanicked { rank, message });
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every rank returned"))
        .collect())
}

/// Like [`run`] for closures that return a [`Result`]: every rank's value
/// (index = rank) when every rank succeeded, otherwise one error.
///
/// The error returned is the root cause: a panic ([`Error::RankPanicked`]),
/// else the error of the lowest rank whose error is its own (not
/// [`Error::PeerFailed`] / [`Error::Aborted`], which only report that some
/// other rank failed), else the lowest rank's error.
///
/// ```
/// use distarray::{threaded, DistArray, OneSidedComm};
/// let sums = threaded::run_ok(4, |comm| {
///     let a = DistArray::<f64, _, 1>::new(comm, [10])?;
///     a.fill(1.5)?;
///     a.sum()
/// })
/// .unwrap();
/// assert_eq!(sums, vec![15.0; 4]);
///
/// // rank 2 fails; the others see `PeerFailed`, `run_ok` returns rank 2's error
/// let e = threaded::run_ok(3, |comm| {
///     let n = if comm.rank() == 2 { usize::MAX } else { 4 };
///     DistArray::<u8, _, 2>::with_part_sizes(comm.clone(), [vec![n, 1, 1], vec![2]]).map(|_| ())
/// })
/// .unwrap_err();
/// assert!(e.to_string().contains("overflow"), "{e}");
/// ```
pub fn run_ok<R, F>(p: usize, f: F) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(ThreadedComm) -> Result<R> + Sync,
{
    let results = run(p, f)?;
    if results.iter().any(|r| r.is_err()) {
        return Err(first_error(results).expect("some rank failed"));
    }
    Ok(results.into_iter().filter_map(|r| r.ok()).collect())
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// One rank's handle on a threaded communicator (see the [module docs](self)).
#[derive(Clone)]
pub struct ThreadedComm {
    world: Arc<World>,
    rank: usize,
    /// This rank's non-blocking handle slot (settled before every wait for
    /// another rank: the collectives here, locks and fences in the
    /// windows' `WindowState`).
    handles: Arc<HandleSlot>,
}

impl std::fmt::Debug for ThreadedComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadedComm(rank {} of {})", self.rank, self.world.size)
    }
}

/// Point-to-point traffic of one rank's tree collectives (allreduce,
/// broadcast), from [`ThreadedComm::traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages this rank has sent.
    pub messages: usize,
    /// Payload bytes this rank has sent.
    pub bytes: usize,
}

impl ThreadedComm {
    /// The messages and bytes this rank has sent in tree collectives so
    /// far: what a network would carry for them. Tests use it to check
    /// that reductions cost O(log P) messages per rank.
    pub fn traffic(&self) -> Traffic {
        let (m, b) = &self.world.sent[self.rank];
        Traffic {
            messages: m.load(Ordering::SeqCst),
            bytes: b.load(Ordering::SeqCst),
        }
    }

    /// Back in the exchange this rank entered last (to receive what it
    /// started with `exchange_bytes_start`), without entering a new
    /// collective.
    fn resume_transport(&self) -> TreeTransport<'_> {
        self.world.point(self.rank);
        // an exchange waits for its neighbours only (`World::awaiting`)
        self.world.blocked[self.rank].store(0, Ordering::SeqCst);
        TreeTransport {
            world: &self.world,
            rank: self.rank,
        }
    }

    /// The sending half of a neighbour exchange: the checks, entering it,
    /// claiming the numbers of the messages to receive (now, in start
    /// order, as MPI posts its receives), then the sends.
    fn send_exchange(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &[(usize, &mut [u8])],
    ) -> Result<(TreeTransport<'_>, Vec<u64>)> {
        crate::checks::check_exchange(sends, recvs, self.world.size)?;
        let t = self.transport()?;
        // an exchange waits for its neighbours only (`World::awaiting`)
        self.world.blocked[self.rank].store(0, Ordering::SeqCst);
        let seqs = recvs
            .iter()
            .map(|(from, _)| self.world.next_claimed(*from, self.rank))
            .collect();
        for &(to, data) in sends {
            t.send(to, Phase::Exchange, data)?;
        }
        Ok((t, seqs))
    }

    /// Enters a tree collective: the transport, which marks this rank as
    /// waiting in it until dropped.
    fn transport(&self) -> Result<TreeTransport<'_>> {
        self.world.point(self.rank);
        self.world.check_failed()?;
        if let Some(e) = self.world.broken() {
            return Err(e);
        }
        let seq = self.world.entered[self.rank].fetch_add(1, Ordering::SeqCst) + 1;
        self.world.blocked[self.rank].store(seq, Ordering::SeqCst);
        // this rank is now "in a collective" for lock waiters' deadlock check
        self.world.wake();
        Ok(TreeTransport {
            world: &self.world,
            rank: self.rank,
        })
    }
}

/// The receives of an exchange started by
/// [`ThreadedComm::exchange_bytes_start`]: the caller's buffers, written in
/// `wait` (or on drop).
struct PendingReceives {
    comm: ThreadedComm,
    /// (source, buffer, length, the number of the message to match).
    recvs: Vec<(usize, *mut u8, usize, u64)>,
    done: bool,
}

// SAFETY: the raw pointers are the caller's receive buffers, which the
// contract of `exchange_bytes_start` keeps valid and untouched by anyone
// else until this handle is waited or dropped, on whatever thread.
unsafe impl Send for PendingReceives {}

impl PendingReceives {
    fn finish(&mut self) -> Result<()> {
        self.done = true;
        self.comm.handles.settle();
        let t = self.comm.resume_transport();
        for &(from, ptr, len, seq) in &self.recvs {
            // SAFETY: `ptr` points to `len` bytes of a receive buffer that
            // the caller of `exchange_bytes_start` keeps valid, unmoved and
            // unaccessed until this handle is done (its safety contract);
            // nothing else refers to it meanwhile.
            let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
            t.recv_seq(from, Phase::Exchange, seq, buf)?;
        }
        Ok(())
    }
}

impl PendingExchange for PendingReceives {
    fn wait(mut self: Box<Self>) -> Result<()> {
        self.finish()
    }
}

impl Drop for PendingReceives {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.finish();
        }
    }
}

/// Marks a rank as waiting for one neighbour's exchange message until
/// dropped.
struct Awaiting<'a> {
    world: &'a World,
    rank: usize,
}

impl<'a> Awaiting<'a> {
    fn new(world: &'a World, rank: usize, from: usize) -> Self {
        world.awaiting[rank].store(from, Ordering::SeqCst);
        // lock waiters re-check whether this rank now waits for them
        world.wake();
        Awaiting { world, rank }
    }
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        self.world.awaiting[self.rank].store(NOBODY, Ordering::SeqCst);
    }
}

/// The mailboxes of one rank during one tree collective.
struct TreeTransport<'a> {
    world: &'a World,
    rank: usize,
}

impl Drop for TreeTransport<'_> {
    fn drop(&mut self) {
        self.world.blocked[self.rank].store(0, Ordering::SeqCst);
    }
}

impl Transport for TreeTransport<'_> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.world.size
    }

    fn send(&self, to: usize, phase: Phase, data: &[u8]) -> Result<()> {
        let (m, b) = &self.world.sent[self.rank];
        m.fetch_add(1, Ordering::SeqCst);
        b.fetch_add(data.len(), Ordering::SeqCst);
        let mb = &self.world.mailboxes[to];
        let seq = if phase == Phase::Exchange {
            self.world.next_sent(self.rank, to)
        } else {
            0
        };
        relock(&mb.queue).push(Message {
            from: self.rank,
            phase,
            data: data.to_vec(),
            clock: self.world.clocks.as_ref().map(|c| c.release(self.rank)),
            seq,
        });
        mb.cv.notify_all();
        self.world.wake();
        Ok(())
    }

    fn recv(&self, from: usize, phase: Phase, buf: &mut [u8]) -> Result<()> {
        self.recv_seq(from, phase, 0, buf)
    }
}

impl TreeTransport<'_> {
    /// Receives the message of `phase` number `seq` from `from` (tree
    /// messages all carry 0 and arrive in order).
    fn recv_seq(&self, from: usize, phase: Phase, seq: u64, buf: &mut [u8]) -> Result<()> {
        let _awaiting =
            (phase == Phase::Exchange).then(|| Awaiting::new(self.world, self.rank, from));
        let mb = &self.world.mailboxes[self.rank];
        let mut q = relock(&mb.queue);
        loop {
            if let Some(i) = q
                .iter()
                .position(|m| m.from == from && m.phase == phase && m.seq == seq)
            {
                let m = q.remove(i);
                if m.data.len() != buf.len() {
                    // a broken contract: fail every collective from now on
                    // (the others may wait in this one)
                    drop(q);
                    let e = Error::InvalidArgument(format!(
                        "collective payloads differ in length: rank {from} sent {} bytes, rank {} \
                         expected {}",
                        m.data.len(),
                        self.rank,
                        buf.len()
                    ));
                    self.world.set_broken(e.clone());
                    return Err(e);
                }
                buf.copy_from_slice(&m.data);
                if let (Some(c), Some(vc)) = (&self.world.clocks, &m.clock) {
                    c.acquire(self.rank, vc);
                }
                return Ok(());
            }
            self.world.check_failed()?;
            // Checked under the mailbox lock: a sender pushes before it
            // returns, so a finished sender with no message never sent it.
            if self.world.is_finished(from) {
                let e = Error::Aborted {
                    rank: from,
                    message: "rank returned without joining a collective the others entered".into(),
                };
                drop(q);
                self.world.set_broken(e.clone());
                return Err(e);
            }
            if let Some(e) = self.world.broken() {
                return Err(e);
            }
            if let Some(sched) = &self.world.sched {
                drop(q);
                sched.wait(self.rank, || {
                    format!("a message from rank {from} in a collective")
                })?;
                q = relock(&mb.queue);
            } else {
                q = mb
                    .cv
                    .wait_timeout(q, POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
}

impl OneSidedComm for ThreadedComm {
    type Window<T: Element> = ThreadedWindow<T>;

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.world.size
    }

    fn handle_slot(&self) -> &Arc<HandleSlot> {
        &self.handles
    }

    fn barrier(&self) -> Result<()> {
        self.handles.settle();
        self.world.exchange(self.rank, Arc::new(())).map(|_| ())
    }

    fn supports_exchange(&self) -> bool {
        true
    }

    /// Through the rank mailboxes of the tree collectives: a message per
    /// neighbour, which (in checking mode) orders the receiver after
    /// everything the sender did before sending.
    fn exchange_bytes(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()> {
        self.handles.settle();
        let (t, seqs) = self.send_exchange(sends, recvs)?;
        for ((from, buf), seq) in recvs.iter_mut().zip(seqs) {
            t.recv_seq(*from, Phase::Exchange, seq, buf)?;
        }
        Ok(())
    }

    /// Sends at once; the receives happen in `wait`.
    unsafe fn exchange_bytes_start(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn PendingExchange>> {
        self.handles.settle();
        let (t, seqs) = self.send_exchange(sends, recvs)?;
        drop(t);
        let recvs = recvs
            .iter_mut()
            .zip(seqs)
            .map(|((r, b), seq)| (*r, b.as_mut_ptr(), b.len(), seq))
            .collect();
        Ok(Box::new(PendingReceives {
            comm: self.clone(),
            recvs,
            done: false,
        }))
    }

    fn allgather<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>> {
        self.handles.settle();
        let all = self.world.exchange(self.rank, Arc::new(local.to_vec()))?;
        Ok(all
            .iter()
            .map(|v| {
                v.downcast_ref::<Vec<T>>()
                    .expect("same type on every rank")
                    .clone()
            })
            .collect())
    }

    /// The binomial tree of [`collective::tree_allreduce`] over in-process
    /// mailboxes: `2 ⌈log2 P⌉` rounds, no rank touches more than two
    /// payloads per round.
    fn allreduce_bytes(&self, buf: &mut [u8], combine: Combiner<'_>) -> Result<()> {
        self.handles.settle();
        let t = self.transport()?;
        collective::tree_allreduce(&t, buf, combine)
    }

    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        crate::checks::check_rank(root, self.world.size)?;
        self.handles.settle();
        let t = self.transport()?;
        collective::tree_broadcast(&t, root, buf)
    }

    /// Each rank allocates its own segment (failing with
    /// [`Error::OutOfMemory`] instead of aborting when the allocator cannot
    /// serve it); one exchange hands every rank all segments, or tells every
    /// rank that one could not allocate.
    unsafe fn allocate_window<T: Element>(&self, lens: &[usize]) -> Result<ThreadedWindow<T>> {
        self.handles.settle();
        let state = WindowState::new(self.rank, lens.to_vec(), self.handles.clone())?;
        let mine: Option<Arc<Segment<T>>> = Segment::new(lens[self.rank]).ok().map(Arc::new);
        let all = self.world.exchange(self.rank, Arc::new(mine))?;
        let mut segments = Vec::with_capacity(all.len());
        for (rank, s) in all.iter().enumerate() {
            let seg = s
                .downcast_ref::<Option<Arc<Segment<T>>>>()
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "rank {rank} created a window of another element type"
                    ))
                })?
                .clone();
            match seg {
                Some(seg) if seg.len() == lens[rank] => segments.push(seg),
                Some(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "rank {rank} created a window with another layout"
                    )))
                }
                None if rank == self.rank => {
                    return Err(Error::OutOfMemory {
                        what: "this rank's part of a window".into(),
                        requested: lens[rank] as u128 * std::mem::size_of::<T>() as u128,
                        available: crate::checks::available_memory().unwrap_or(0),
                    })
                }
                None => {
                    return Err(Error::PeerFailed {
                        rank,
                        reason: format!("rank {rank} could not allocate its part of the window"),
                    })
                }
            }
        }
        let shadows = match &self.world.clocks {
            None => None,
            Some(_) => {
                let mine = Arc::new(SegShadow::new(self.world.size, self.rank, lens[self.rank]));
                let all = self.world.exchange(self.rank, mine)?;
                Some(
                    all.iter()
                        .map(|s| s.clone().downcast::<SegShadow>().expect("shadow"))
                        .collect(),
                )
            }
        };
        Ok(ThreadedWindow {
            world: self.world.clone(),
            rank: self.rank,
            state,
            segments,
            shadows,
        })
    }

    /// All ranks live in this process: the whole window must fit.
    fn check_allocation(&self, lens: &[usize], elem_size: usize) -> Result<()> {
        let total: u128 = lens.iter().map(|&l| l as u128 * elem_size as u128).sum();
        crate::checks::check_memory("a threaded window (all ranks' parts in one process)", total)
    }

    fn backend_name(&self) -> &'static str {
        "threaded"
    }
}

/// Passive-target lock state of one segment.
#[derive(Default)]
struct PassiveLock {
    exclusive: Option<usize>,
    shared: Vec<usize>,
}

/// Local views currently handed out on one segment.
#[derive(Default)]
struct ViewState {
    shared_views: usize,
    mut_view: bool,
}

/// One rank's part of a threaded window.
struct Segment<T> {
    data: Box<[UnsafeCell<T>]>,
    lock: Mutex<PassiveLock>,
    lock_cv: Condvar,
    views: RwLock<ViewState>,
}

// SAFETY: the elements are only touched (1) by RMA copies, which hold
// `views` (read lock to read, write lock to write) so no two copies race, and
// which fail while a local view excludes them; (2) through slices handed out
// by `with_local` / `with_local_mut`, which first register in `views` under
// its write lock, so no RMA copy that could race with the slice proceeds
// while it lives. `T: Element` is `Send + Sync` plain data.
unsafe impl<T: Element> Sync for Segment<T> {}
// SAFETY: see `Sync`; the segment owns plain-data elements.
unsafe impl<T: Element> Send for Segment<T> {}

impl<T: Element> Segment<T> {
    /// A zeroed segment of `len` elements, or `Err` if the allocator cannot
    /// serve it (instead of aborting the process).
    fn new(len: usize) -> std::result::Result<Self, std::collections::TryReserveError> {
        let mut data: Vec<UnsafeCell<T>> = Vec::new();
        data.try_reserve_exact(len)?;
        data.extend((0..len).map(|_| UnsafeCell::new(T::default())));
        Ok(Segment {
            data: data.into_boxed_slice(),
            lock: Mutex::new(PassiveLock::default()),
            lock_cv: Condvar::new(),
            views: RwLock::new(ViewState::default()),
        })
    }

    fn len(&self) -> usize {
        self.data.len()
    }

    fn ptr(&self) -> *mut T {
        // `UnsafeCell<T>` has the layout of `T`.
        UnsafeCell::raw_get(self.data.as_ptr())
    }
}

/// One rank's handle on a threaded window.
pub struct ThreadedWindow<T: Element> {
    world: Arc<World>,
    rank: usize,
    /// Approves every operation (the same rules as every backend).
    state: WindowState,
    segments: Vec<Arc<Segment<T>>>,
    /// Checking mode: every part's race-detection shadow.
    shadows: Option<Vec<Arc<SegShadow>>>,
}

impl<T: Element> ThreadedWindow<T> {
    /// Checking mode: checks and records an access (see [`race`]).
    #[inline]
    fn record(&self, target: usize, offset: usize, len: usize, kind: AccessKind) -> Result<()> {
        match (&self.shadows, &self.world.clocks) {
            (Some(sh), Some(c)) => sh[target].access(c, self.rank, offset, len, kind),
            _ => Ok(()),
        }
    }

    /// Checking mode: checks and records an access to several runs.
    fn record_runs(&self, target: usize, runs: &[(usize, usize)], kind: AccessKind) -> Result<()> {
        if self.shadows.is_some() {
            for &(offset, len) in runs {
                self.record(target, offset, len, kind)?;
            }
        }
        Ok(())
    }

    /// Checking mode: the operations of this rank complete at every target
    /// (a fence).
    fn complete_all(&self) {
        if let (Some(sh), Some(c)) = (&self.shadows, &self.world.clocks) {
            for s in sh {
                s.complete(c, self.rank);
            }
        }
    }

    /// Checking mode: records the release of this rank's lock on `target`
    /// (before it is released).
    fn record_release(&self, target: usize, kind: LockKind) {
        if let (Some(sh), Some(c)) = (&self.shadows, &self.world.clocks) {
            sh[target].released(c, self.rank, kind);
        }
    }

    /// Every rank's flag (a barrier).
    fn all_ok(&self, ok: bool) -> Result<Vec<bool>> {
        let all = self.world.exchange(self.rank, Arc::new(ok))?;
        Ok(all
            .iter()
            .map(|v| *v.downcast_ref::<bool>().expect("flag"))
            .collect())
    }

    fn conflict(target: usize, reason: &str) -> Error {
        Error::Conflict {
            target,
            reason: reason.to_string(),
        }
    }

    fn release(&self, target: usize) {
        let seg = &self.segments[target];
        let mut l = relock(&seg.lock);
        if l.exclusive == Some(self.rank) {
            l.exclusive = None;
        } else if let Some(i) = l.shared.iter().position(|&r| r == self.rank) {
            l.shared.swap_remove(i);
        }
        seg.lock_cv.notify_all();
        self.world.wake();
    }

    /// Blocks until the passive lock on `target` is granted.
    fn acquire(&self, target: usize, kind: LockKind) -> Result<()> {
        let seg = &self.segments[target];
        let mut l = relock(&seg.lock);
        // Registered in the wait graph after the first wait times out.
        let mut registered: Option<WaitRegistration<'_>> = None;
        let mut waited = false;
        let is_free = |l: &PassiveLock| match kind {
            LockKind::Shared => l.exclusive.is_none(),
            LockKind::Exclusive => l.exclusive.is_none() && l.shared.is_empty(),
        };
        loop {
            if is_free(&l) {
                match kind {
                    LockKind::Shared => l.shared.push(self.rank),
                    LockKind::Exclusive => l.exclusive = Some(self.rank),
                }
                return Ok(());
            }
            self.world.check_failed()?;
            let holders = l.exclusive.iter().chain(l.shared.iter());
            if let Some(&gone) = holders.clone().find(|&&r| self.world.is_finished(r)) {
                return Err(Error::Aborted {
                    rank: gone,
                    message: format!("rank {gone} returned while holding a lock on rank {target}"),
                });
            }
            // A holder waiting in a collective needs this rank to join it,
            // and this rank waits for the holder: a certain deadlock (each
            // rank is one thread). Report it instead of hanging.
            if let Some(&h) = holders
                .clone()
                .find(|&&r| self.world.blocked_in_collective(r, self.rank))
            {
                return Err(Error::Deadlock(format!(
                    "rank {} waits for a lock on rank {target} held by rank {h}, which waits in a \
                     collective operation that needs rank {} (do not call collectives while \
                     holding a lock, e.g. inside with_local / with_local_mut)",
                    self.rank, self.rank
                )));
            }
            if let Some(s) = &self.world.sched {
                drop(l);
                s.wait(self.rank, || format!("a {kind:?} lock on rank {target}"))?;
                l = relock(&seg.lock);
            } else {
                if waited {
                    // Still waiting after a poll: look for a lock-order
                    // cycle (without holding this lock's mutex, which the
                    // graph reads).
                    drop(l);
                    let graph = &self.world.waits;
                    if registered.is_none() {
                        let seg = seg.clone();
                        graph.begin(
                            self.rank,
                            format!("a {kind:?} lock on rank {target}"),
                            Arc::new(move || {
                                let l = relock(&seg.lock);
                                match kind {
                                    LockKind::Shared => l.exclusive.iter().copied().collect(),
                                    LockKind::Exclusive => {
                                        l.exclusive.iter().chain(&l.shared).copied().collect()
                                    }
                                }
                            }),
                        );
                        registered = Some(WaitRegistration {
                            graph,
                            rank: self.rank,
                        });
                    }
                    if let Some(cycle) = graph.cycle_through(self.rank) {
                        return Err(Error::Deadlock(cycle));
                    }
                    l = relock(&seg.lock);
                    if is_free(&l) {
                        continue;
                    }
                }
                l = seg
                    .lock_cv
                    .wait_timeout(l, POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                waited = true;
            }
        }
    }
}

/// Removes a rank's entry from the wait graph when its lock wait ends.
struct WaitRegistration<'a> {
    graph: &'a WaitGraph,
    rank: usize,
}

impl Drop for WaitRegistration<'_> {
    fn drop(&mut self) {
        self.graph.end(self.rank);
    }
}

impl<T: Element> ThreadedWindow<T> {
    /// Copies `dst.len()` elements of `target` from `offset` (approved).
    fn read(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        let seg = &self.segments[target];
        let views = seg.views.read().unwrap_or_else(|e| e.into_inner());
        if views.mut_view {
            return Err(Self::conflict(
                target,
                "read while the owner holds a mutable local view",
            ));
        }
        // SAFETY: `offset + dst.len() <= seg.len()` (approved by the window
        // state). We hold the view read lock and no mutable view exists, so
        // no one writes these elements meanwhile (writers need the write
        // lock); `dst` is a separate `&mut` buffer, so the ranges do not
        // overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(seg.ptr().add(offset), dst.as_mut_ptr(), dst.len());
        }
        Ok(())
    }

    /// Reads `runs` of `target` one after the other into `dst` (approved)
    /// under one hold of the view lock: many short runs (a ghost column)
    /// cost one lock round trip, not one each.
    fn read_runs(&self, target: usize, runs: &[(usize, usize)], dst: &mut [T]) -> Result<()> {
        let seg = &self.segments[target];
        let views = seg.views.read().unwrap_or_else(|e| e.into_inner());
        if views.mut_view {
            return Err(Self::conflict(
                target,
                "read while the owner holds a mutable local view",
            ));
        }
        for (offset, piece) in run_pieces(runs) {
            let out = &mut dst[piece];
            // SAFETY: as in `read`: every run lies in the segment (approved
            // by the window state, which checked the runs against the
            // target's length and their total against `dst`); we hold the
            // view read lock and no mutable view exists, so nobody writes
            // these elements meanwhile; `dst` is a separate buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(seg.ptr().add(offset), out.as_mut_ptr(), out.len());
            }
        }
        Ok(())
    }

    /// Writes `src` to `target` from `offset`, combined with `op` (approved).
    fn write(
        &self,
        target: usize,
        offset: usize,
        src: &[T],
        op: Option<AccumulateOp>,
    ) -> Result<()> {
        let seg = &self.segments[target];
        let views = seg.views.write().unwrap_or_else(|e| e.into_inner());
        if views.mut_view || views.shared_views > 0 {
            return Err(Self::conflict(
                target,
                "write while the owner holds a local view",
            ));
        }
        let base = seg.ptr();
        match op {
            // SAFETY: in bounds (approved); we hold the view write lock and
            // no local view exists, so nothing else reads or writes the
            // segment meanwhile; `src` is a shared borrow of other memory (no
            // slice of window memory is alive outside a view).
            None => unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(offset), src.len());
            },
            Some(op) => {
                for (i, &v) in src.iter().enumerate() {
                    // SAFETY: `offset + i < seg.len()` (approved); the view
                    // write lock makes this the only access to the segment,
                    // so the read-modify-write is atomic with respect to all
                    // others.
                    unsafe {
                        let p = base.add(offset + i);
                        *p = T::combine(op, *p, v);
                    }
                }
            }
        }
        Ok(())
    }
}

impl<T: Element> Window<T> for ThreadedWindow<T> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.state.size()
    }

    fn len_of(&self, target: usize) -> Result<usize> {
        self.state.len_of(target)
    }

    fn lock(&self, target: usize, kind: LockKind) -> Result<()> {
        self.world.point(self.rank);
        let locking = self.state.lock(target, kind)?;
        // if the runtime lock fails, dropping `locking` forgets the lock
        self.acquire(target, kind)?;
        locking.granted();
        if let (Some(sh), Some(c)) = (&self.shadows, &self.world.clocks) {
            sh[target].acquired(c, self.rank, kind);
        }
        Ok(())
    }

    fn unlock(&self, target: usize) -> Result<()> {
        self.world.point(self.rank);
        let unlocking = self.state.unlock(target)?;
        self.record_release(target, unlocking.kind());
        self.release(target);
        Ok(())
    }

    fn flush(&self, target: usize) -> Result<()> {
        self.world.point(self.rank);
        // Operations complete when they return.
        let _pin = self.state.flush(target)?;
        if let (Some(sh), Some(c)) = (&self.shadows, &self.world.clocks) {
            sh[target].complete(c, self.rank);
        }
        Ok(())
    }

    fn get(&self, target: usize, offset: usize, dst: &mut [T]) -> Result<()> {
        self.world.point(self.rank);
        let _own = self
            .state
            .approve(target, Access::Read, offset, dst.len())?;
        self.record(target, offset, dst.len(), AccessKind::Get)?;
        self.read(target, offset, dst)
    }

    fn put(&self, target: usize, offset: usize, src: &[T]) -> Result<()> {
        self.world.point(self.rank);
        let _own = self
            .state
            .approve(target, Access::Write, offset, src.len())?;
        self.record(target, offset, src.len(), AccessKind::Put)?;
        self.write(target, offset, src, None)
    }

    fn accumulate(&self, target: usize, offset: usize, src: &[T], op: AccumulateOp) -> Result<()> {
        self.world.point(self.rank);
        crate::checks::check_op::<T>(op)?;
        let _own = self
            .state
            .approve(target, Access::Write, offset, src.len())?;
        self.record(target, offset, src.len(), AccessKind::Acc(op))?;
        self.write(target, offset, src, Some(op))
    }

    fn get_runs(&self, target: usize, runs: &[(usize, usize)], dst: &mut [T]) -> Result<()> {
        self.world.point(self.rank);
        let _own = self
            .state
            .approve_runs(target, Access::Read, runs, dst.len())?;
        self.record_runs(target, runs, AccessKind::Get)?;
        self.read_runs(target, runs, dst)
    }

    fn put_runs(&self, target: usize, runs: &[(usize, usize)], src: &[T]) -> Result<()> {
        self.world.point(self.rank);
        let _own = self
            .state
            .approve_runs(target, Access::Write, runs, src.len())?;
        self.record_runs(target, runs, AccessKind::Put)?;
        run_pieces(runs)
            .try_for_each(|(offset, piece)| self.write(target, offset, &src[piece], None))
    }

    fn accumulate_runs(
        &self,
        target: usize,
        runs: &[(usize, usize)],
        src: &[T],
        op: AccumulateOp,
    ) -> Result<()> {
        self.world.point(self.rank);
        crate::checks::check_op::<T>(op)?;
        let _own = self
            .state
            .approve_runs(target, Access::Write, runs, src.len())?;
        self.record_runs(target, runs, AccessKind::Acc(op))?;
        run_pieces(runs)
            .try_for_each(|(offset, piece)| self.write(target, offset, &src[piece], Some(op)))
    }

    fn fence(&self) -> Result<()> {
        // Operations complete when they return: the exchange (a barrier)
        // orders them.
        self.complete_all();
        self.state
            .fence_collectively(false, |ok| self.all_ok(ok), || Ok(()))
    }

    fn fence_end(&self) -> Result<()> {
        self.complete_all();
        self.state
            .fence_collectively(true, |ok| self.all_ok(ok), || Ok(()))
    }

    fn with_local<R>(&self, f: impl FnOnce(&[T]) -> R) -> Result<R> {
        self.world.point(self.rank);
        let _view = self.state.open_view(false)?;
        let seg = &self.segments[self.rank];
        self.record(self.rank, 0, seg.len(), AccessKind::ViewRead)?;
        {
            let mut views = seg.views.write().unwrap_or_else(|e| e.into_inner());
            if views.mut_view {
                return Err(Self::conflict(
                    self.rank,
                    "shared view inside a mutable view",
                ));
            }
            views.shared_views += 1;
        }
        let _release = ViewRelease {
            seg,
            mutable: false,
        };
        // SAFETY: the shared view is registered in the segment, so every RMA
        // write to it fails until `_release` drops (after `f` returns or
        // unwinds) — and the window state keeps remote writers out anyway
        // (they need an exclusive lock, and this rank holds a lock on its
        // part that cannot be released while `_view` lives); concurrent
        // readers only read. The pointer covers `seg.len()` initialised
        // elements.
        let slice = unsafe { std::slice::from_raw_parts(seg.ptr() as *const T, seg.len()) };
        let out = f(slice);
        self.world.point(self.rank);
        Ok(out)
    }

    fn with_local_mut<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        self.world.point(self.rank);
        let _view = self.state.open_view(true)?;
        let seg = &self.segments[self.rank];
        self.record(self.rank, 0, seg.len(), AccessKind::ViewWrite)?;
        {
            let mut views = seg.views.write().unwrap_or_else(|e| e.into_inner());
            if views.mut_view || views.shared_views > 0 {
                return Err(Self::conflict(
                    self.rank,
                    "mutable view while another view is alive",
                ));
            }
            views.mut_view = true;
        }
        let _release = ViewRelease { seg, mutable: true };
        // SAFETY: the mutable view is registered, so every RMA access and
        // every other view of this segment fails until `_release` drops (and
        // this rank holds the exclusive lock on it, approved by the window
        // state); the slice is therefore the only access to these
        // `seg.len()` elements.
        let slice = unsafe { std::slice::from_raw_parts_mut(seg.ptr(), seg.len()) };
        let out = f(slice);
        self.world.point(self.rank);
        Ok(out)
    }
}

/// Unregisters a local view when dropped (also on unwind).
struct ViewRelease<'a, T> {
    seg: &'a Segment<T>,
    mutable: bool,
}

impl<T> Drop for ViewRelease<'_, T> {
    fn drop(&mut self) {
        let mut views = self.seg.views.write().unwrap_or_else(|e| e.into_inner());
        if self.mutable {
            views.mut_view = false;
        } else {
            views.shared_views -= 1;
        }
    }
}

impl<T: Element> Drop for ThreadedWindow<T> {
    fn drop(&mut self) {
        // Release the locks this rank still holds so that no other rank
        // waits for them forever. Memory is freed when the last rank's
        // handle drops: there is nothing collective to wait for.
        let (locks, _fence) = self.state.release_all();
        for (t, kind) in locks {
            self.record_release(t, kind);
            self.release(t);
        }
    }
}

impl<T: Element> std::fmt::Debug for ThreadedWindow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedWindow")
            .field("rank", &self.rank)
            .field("layout", self.state.layout())
            .finish()
    }
}
