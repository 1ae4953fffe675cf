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
//!
//! [`run`]: fn@run
//! [`Window`]: crate::Window
//! [`Error::Aborted`]: crate::Error::Aborted
//! [`Error::RankPanicked`]: crate::Error::RankPanicked
//! [`Error::Conflict`]: crate::Error::Conflict
//! [`Error::Deadlock`]: crate::Error::Deadlock
//! [`Error::Race`]: crate::Error::Race

// The runners (`run`, `run_ok`, `run_checked`, `replay`, `check`).
mod run;
// The state all ranks of one run share, and how a rank's failure reaches
// the others' waits.
mod world;
// The all-ranks rendezvous behind barriers, allgathers and window creation.
mod rendezvous;
// The rank mailboxes and the point-to-point transport of the tree
// collectives.
mod tree;
// Neighbour exchanges over the same mailboxes.
mod neighbour;
// `ThreadedComm`, the communicator.
mod comm;
// One rank's part of a window and the copies into and out of it.
mod segment;
// Passive-target locks on a segment.
mod lock;
// `ThreadedWindow`.
mod window;
// Deadlock detection: lock-order cycles, waits for a rank in a collective.
mod deadlock;
// Checking mode: vector clocks and race detection.
mod clock;
mod race;
// Controlled schedules.
mod schedule;

pub use self::comm::{ThreadedComm, Traffic};
pub use self::run::{check, replay, run, run_checked, run_ok};
pub use self::schedule::ScheduleFailure;
pub use self::window::ThreadedWindow;
