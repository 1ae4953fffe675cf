//! # distarray-mpi
//!
//! The MPI backend of [`distarray`]: [`MpiComm`] implements
//! [`OneSidedComm`](distarray::OneSidedComm) over an MPI communicator, with
//! RMA windows ([`MpiWindow`]) from `MPI_Win_allocate`, passive-target
//! locks, `MPI_Get` / `MPI_Put` / `MPI_Accumulate` and fences. The same
//! generic code that runs on distarray's threaded backend runs here under
//! `mpirun`:
//!
//! ```no_run
//! use distarray::{DistArray, OneSidedComm};
//! use distarray_mpi::MpiComm;
//!
//! fn main() -> distarray::Result<()> {
//!     let (_env, comm) = MpiComm::init()?;
//!     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [8, 8], |[i, j]| (i * 8 + j) as f64)?;
//!     if comm.rank() == 0 {
//!         println!("a[7, 7] = {} on {} ranks", a.get([7, 7])?, comm.size());
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Run it with e.g. `mpirun -n 4 ./target/release/examples/...`.
//!
//! * [`comm`]: [`MpiComm`] and the [`MpiEnv`] guard (MPI's lifetime,
//!   threads, the panic hook that aborts the job).
//! * [`window`]: [`MpiWindow`] (completion, how fence epochs map to MPI,
//!   local access, collective free).
//! * `hdf5` (feature `hdf5`): `Hdf5File`, arrays as datasets of one
//!   parallel HDF5 file, each rank's part one hyperslab in one collective
//!   MPI-IO transfer; readable by h5py and any HDF5 tool.
//!
//! Arguments are validated by [`distarray::checks`] before any MPI call, so
//! misuse gives the same [`Error`](distarray::Error) as on the threaded
//! backend; MPI's own errors come back as
//! [`Error::Backend`](distarray::Error::Backend) with the MPI error string.
//!
//! # Failures
//!
//! A panic on any rank ends the whole job at once (the panic hook calls
//! `MPI_Abort`), so no rank is left waiting. Returning an `Err` that only
//! some ranks see is different: the ranks that return early free their
//! windows (`MPI_Win_free` is collective) and finalise MPI, and wait there
//! for the others, which may be waiting for them in a collective. So
//! errors that are not collective should end the job: panic (e.g.
//! `.expect(..)`) or call [`MpiComm::abort`].
//!
//! # Which MPI
//!
//! Open MPI and the MPICH family (MPICH, Intel MPI, MVAPICH, Cray MPICH)
//! from the same source: the build script compiles a small C shim
//! (`csrc/shim.c`) against the MPI library that the `mpi` crate finds, so
//! no symbol or handle layout of one implementation is assumed. Pick the
//! implementation as for the `mpi` crate (`MPICC=mpicc.mpich`,
//! `MPI_PKG_CONFIG=mpich`, `CRAY_MPICH_DIR`), one target directory each:
//!
//! ```text
//! cargo build --release                                      # Open MPI (Debian's default mpicc)
//! MPICC=mpicc.mpich CARGO_TARGET_DIR=target/mpich cargo build --release   # MPICH
//! mpiexec.mpich -n 4 target/mpich/release/examples/...
//! ```
//!
//! Building needs an MPI library with its headers (Debian: `libopenmpi-dev
//! openmpi-bin`, or `libmpich-dev mpich`), a C compiler and libclang
//! (`libclang-dev`) for the `mpi` crate's bindings. Library behaviours that
//! need a workaround (Open MPI's saturating 8/16-bit reductions) are
//! detected at start-up by trying them ([`detected_quirks`]); the thread
//! level and the other start-up choices are described in [`comm`].
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(any(feature = "hdf5", feature = "scalapack"))]
mod agree;
pub mod comm;
#[cfg(feature = "hdf5")]
pub mod hdf5;
mod lifetime;
mod quirks;
mod raw;
#[cfg(feature = "scalapack")]
pub mod scalapack;
pub mod window;

pub use comm::{MpiComm, MpiEnv, ABORT_CODE};
pub use mpi::Threading;
pub use quirks::detected as detected_quirks;
#[doc(hidden)]
#[cfg(feature = "fault-injection")]
pub use raw::fault_injection;
pub use raw::{check as mpi_result, library_version};
pub use window::{datatypes_created, MpiWindow};
