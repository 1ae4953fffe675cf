//! # distarray
//!
//! Distributed N-dimensional arrays built on one-sided communication (remote
//! memory access), generic over the communication backend.
//!
//! * [`OneSidedComm`] / [`Window`]: the backend contract (rank, size,
//!   barrier, allgather, windows with passive-target locks, get, put,
//!   accumulate, fence).
//! * [`DistArray`]: an array whose parts live in window memory, with
//!   element access by global index, local views and collective operations.
//! * [`ContinuousPartitioning`]: the per-dimension cut into one box per rank.
//! * Whole-array operations: element-wise algebra and copies
//!   ([`algebra`]), reductions ([`reduce`]), linear algebra ([`linalg`]),
//!   the distributed transpose of 2-D arrays ([`transpose`]), the
//!   matrix-matrix product ([`matmul`]).
//! * [`kernels`]: local slice kernels (fixed-order reductions, fused vector
//!   updates, the 5-point stencil) that the distributed operations use.
//! * Backends: [`threaded`] (in process, the embedded default); MPI
//!   (`distarray-mpi`) and Lamellar (`distarray-lamellar`) live in their own
//!   crates.
//!
//! ```
//! use distarray::{threaded, DistArray, OneSidedComm};
//!
//! // Four ranks as four threads. The same closure runs unchanged on MPI.
//! let sums = threaded::run_ok(4, |comm| {
//!     // a 6 x 4 matrix on a 2 x 2 process grid, a[i, j] = i + j
//!     let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [2, 2], [6, 4])?;
//!     a.with_local_mut(|mut local| local.fill_with(|[i, j]| (i + j) as f64))?;
//!     a.barrier()?;
//!     // any rank reads any element one-sidedly
//!     assert_eq!(a.get([5, 3])?, 8.0);
//!     a.sum()
//! })
//! .unwrap();
//! assert_eq!(sums, vec![96.0; 4]);
//! ```
//!
//! # Safety
//!
//! No safe program races, writes out of bounds, or allocates more than the
//! node has, on any backend: writes need an exclusive lock on their target,
//! local views hold a lock on their own part, every batch is checked before
//! it is issued, and window creation is agreed by every rank (element type,
//! layout, byte sizes, memory) before anything is allocated. Backends
//! implement only raw `unsafe` primitives ([`RawWindow`]); the checked
//! layer over them ([`Window`]) is written once here and approves every
//! operation with [`checks::WindowState`] before a backend sees it (see
//! [`rma`]).
//!
//! # Bitwise reproducibility
//!
//! **Run to run**, in every mode: for the same backend, number of ranks,
//! partitions and inputs, every library operation gives the same bits run
//! after run: reductions combine per-rank results in a fixed rank order
//! ([`collective`]), `matvec` and `matvec_transpose` add partial sums in
//! rank order ([`linalg::MatvecPlan`]), copies (`redistribute`, `filter`,
//! ghosts) move values unchanged. Only raw `accumulate(Sum)` calls of
//! several ranks into the same elements apply in arrival order.
//!
//! **On any number of ranks, any partition and any backend**, the same
//! global data give the same bits for:
//!
//! * the floating-point and complex sums of arrays in
//!   [`Summation::Exact`] mode (a per-array setting,
//!   [`DistArray::with_summation`]; arrays made by `similar` inherit it):
//!   [`sum`](DistArray::sum), [`reduce_op`](DistArray::reduce_op)`(Sum)`,
//!   [`mean`](DistArray::mean), [`map_sum`](DistArray::map_sum),
//!   [`linalg::dot`] (real and complex), [`linalg::norm2`],
//!   [`linalg::axpy_dot`] and [`linalg::cg_update`]. Each rank sums its
//!   part exactly into an integer superaccumulator ([`exact_sum`]), the
//!   accumulators are merged by exact integer addition in one allreduce
//!   (after a small vote that agrees the mode between the ranks: a mode
//!   that differs between ranks is an [`Error::InvalidArgument`] on every
//!   rank), and the total is rounded once: the correctly rounded exact sum
//!   (error at most 0.5 ulp; `dot` sums the rounded products exactly,
//!   `norm2` the rounded squares). A Krylov solver whose vectors are in
//!   this mode (the Poisson example with `--exact`) has the same residual
//!   history and solution bits on 1, 2, 3 or 4 ranks;
//! * whatever the mode: integer sums and products (wrapping, exact),
//!   `min`, `max`, `argmin`, `argmax`, `count`, `any`, `all`; element-wise
//!   operations ([`algebra`], `axpby`, the update halves of the fused
//!   kernels, stencils fed the same neighbour values); copies;
//! * `matvec` with `A` split by rows only (`x` fetched whole; every `y[i]`
//!   is one local kernel call over the whole row: the plain-Rust kernel's
//!   per-row order depends only on the row length; a CBLAS provider may
//!   differ).
//!
//! **Not** independent of the rank count or partition: the default
//! [`Summation::Ordered`] float reductions (the fixed-order [`kernels`],
//! whose blocking follows the local part, combined in the rank order of
//! the backend's tree — the default because the exact sums take
//! 1.3–1.8x the time of these memory-bound kernels, see `BENCHMARKS.md`); float folds through the
//! closures of [`reduce`](DistArray::reduce) /
//! [`map_reduce`](DistArray::map_reduce) and
//! [`linalg::sum_over_ranks`] of per-rank values; `matvec` /
//! `matvec_transpose` whenever a row's (column's) terms are split over
//! several ranks (`A` split by columns for `matvec`, by rows for
//! `matvec_transpose`), whose partial sums are added in rank order — the
//! grouping of the terms follows the partition.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// The `openblas` convenience feature links system OpenBLAS as the CBLAS
// provider; with plain `blas` the final binary chooses one.
#[cfg(feature = "openblas")]
extern crate blas_src;

pub mod algebra;
pub mod array;
pub mod block;
pub mod comm;
pub use comm::collective;
pub use rma::checks;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod counting;
pub mod element;
pub mod epoch;
pub mod error;
pub mod exact_sum;
pub mod ghost;
pub mod ghosted;
pub mod halo;
#[cfg(feature = "zarr")]
pub mod io;
pub mod kernels;
pub mod linalg;
pub mod matmul;
mod matvec_cyclic;
mod matvec_plan;
mod overlap;
pub mod partition;
pub mod pending;
pub mod permute;
pub mod redistribute;
pub mod reduce;
pub mod rma;
pub mod slice;
pub mod stencil;
pub mod threaded;
pub mod transpose;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use array::{DistArray, LocalView, LocalViewMut};
pub use block::{Block, GlobalBlock};
pub use comm::{
    messages_of, AccumulateOp, Element, ElementKind, LockKind, NeighbourMessages, OneSidedComm,
    RealElement, Request, WindowOf,
};
pub use epoch::Epoch;
pub use error::{Error, Result};
pub use exact_sum::Summation;
pub use ghost::GhostedBlock;
pub use ghosted::Ghosted;
pub use halo::Halo;
/// Complex elements (`num_complex::Complex<f32>` / `<f64>`).
pub use num_complex::{Complex32, Complex64};
pub use partition::ContinuousPartitioning;
pub use pending::{PendingGet, PendingPut};
pub use rma::{RawWindow, Window};
pub use slice::{Slice, SliceRange};
pub use transpose::TransposePlan;
