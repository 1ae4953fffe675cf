//! The runners: [`run`], [`run_ok`], [`run_checked`], [`replay`] and
//! [`check`] start one thread per rank, each with its own
//! [`ThreadedComm`], and collect the results or the first failure.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::comm::ThreadedComm;
use super::schedule::ScheduleFailure;
use super::world::{relock, World};
use crate::error::{Error, Result};

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
/// that no synchronisation orders, see the [module docs](super#checking-mode)).
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
/// (see the [module docs](super#controlled-schedules)). The same seed gives
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
pub(super) struct Mode {
    /// Race detection on.
    pub(super) checked: bool,
    /// Controlled schedule with this seed.
    pub(super) seed: Option<u64>,
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
