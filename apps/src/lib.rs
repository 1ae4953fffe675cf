//! # distarray-apps
//!
//! The example drivers shared by every backend's examples and tests;
//! generic over [`OneSidedComm`](distarray::OneSidedComm). Each module is
//! one application: its options (`Opts`, parsed from the command line)
//! and a collective `run(comm, &opts)` that every rank calls with its
//! communicator. The threaded examples (`examples/*.rs`), the MPI and
//! Lamellar examples, and the tests of all three call the same code.
//!
//! * [`heat`]: the 2-D heat equation with checkpoint/restart (the `zarr`
//!   feature);
//! * [`matvec`]: the distributed matrix-vector product;
//! * [`poisson`]: the 2-D Poisson conjugate-gradient solver;
//! * [`scaling`]: per-call costs of the collectives and of the
//!   column-split matvec variants;
//! * [`stencil3d`]: the 3-D periodic diffusion stencil.

#![warn(missing_docs)]

#[cfg(feature = "zarr")]
pub mod heat;
pub mod matvec;
pub mod poisson;
pub mod scaling;
pub mod stencil3d;
