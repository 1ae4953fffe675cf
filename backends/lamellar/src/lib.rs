//! Lamellar backend for distarray: the same arrays on a PGAS runtime.
//!
//! [`LamellarComm`] implements [`distarray::OneSidedComm`] on one Lamellar
//! world per process; its windows ([`LamellarWindow`]) live in Lamellar
//! shared memory regions and are accessed with RDMA, with passive-target
//! locks and accumulates executed at the target by active messages (see the
//! module docs of `window` and `target` for the design).
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
//! A program started without the launcher runs as a single PE on the
//! `local` lamellae.
//!
//! ```no_run
//! use distarray::{OneSidedComm, Window, LockKind};
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

mod comm;
mod target;
mod window;

pub use comm::{LamellarComm, LamellarCommBuilder};
pub use window::LamellarWindow;

/// Re-export of the Lamellar crate this backend is built on.
pub use lamellar;
