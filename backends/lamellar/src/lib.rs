//! Lamellar backend for distarray: the same arrays on a PGAS runtime.
//!
//! [`LamellarComm`] implements [`distarray::OneSidedComm`] on one Lamellar
//! world per process; its windows ([`LamellarWindow`]) live in Lamellar
//! shared memory regions and are accessed with RDMA. Passive-target locks
//! (a reader/writer lock word per target) and accumulates (read, combine,
//! write back under a per-target guard) use Lamellar's remote atomics; the
//! barrier is a dissemination barrier over remote atomics; windows reuse
//! the regions of dropped windows. Neighbour messages
//! ([`distarray::NeighbourMessages`], e.g. a `Halo`'s ghost updates) are
//! per-pair RDMA mailboxes (puts flagged with remote atomics, with flow
//! control), matched by per-pair sequence numbers, with no collective
//! (`DISTARRAY_LAMELLAR_MESSAGES=am` selects Lamellar active messages
//! instead, `off` none). The source files `window.rs`, `target.rs`
//! and `comm/` document the design, `BENCHMARKS-lamellar.md` the figures
//! behind it (Lamellar's active messages and barrier cost milliseconds
//! here, the remote atomics microseconds).
//!
//! # Running
//!
//! Lamellar's own launcher (`#[lamellar::main]`) needs PMIx/PRRTE and does
//! not build offline, so this crate brings a launcher for one node,
//! `distarray-lamellar-run`, which starts P processes on the `shmem`
//! lamellae:
//!
//! ```text
//! cargo build -p distarray-lamellar --bins
//! target/debug/distarray-lamellar-run -n 4 -- target/debug/distarray-lamellar-conformance
//! ```
//!
//! By default the launcher selects Lamellar's `single_thread` executor: no
//! worker threads, the PE's own thread drives the runtime whenever it waits
//! in a Lamellar call or in this crate's waiting loops. Lamellar's default
//! work-stealing workers poll without pause and, on a node with fewer spare
//! cores than PEs, take the cores from the computation (`--threads T`
//! selects them anyway).
//!
//! A program started without the launcher runs as a single PE on the
//! `local` lamellae.
//!
//! ```no_run
//! use distarray::{LockKind, OneSidedComm};
//! use distarray_lamellar::LamellarComm;
//!
//! let comm = LamellarComm::from_env().unwrap();
//! let w = comm.create_window::<f64>(10).unwrap();
//! let next = (comm.rank() + 1) % comm.size();
//! w.lock(next, LockKind::Exclusive).unwrap();
//! w.put(next, 0, &[comm.rank() as f64]).unwrap();
//! w.unlock(next).unwrap();
//! comm.barrier().unwrap();
//! ```
//!
//! # Failure
//!
//! Lamellar cannot survive a panicking PE (its peers block in the next
//! collective, and the panicking process blocks in the runtime's shutdown).
//! By default [`LamellarComm::from_env`] installs a panic hook that prints
//! the message and exits the process with status 101; the launcher then
//! kills the other PEs and exits non-zero.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod backoff;
mod comm;
mod pack;
mod target;
mod window;

pub use comm::{LamellarComm, LamellarCommBuilder};
pub use window::LamellarWindow;

/// Re-export of the Lamellar crate this backend is built on.
pub use lamellar;
