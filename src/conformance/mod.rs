//! The backend-generic conformance suite (feature `conformance`).
//!
//! Every check is a function generic over `C: OneSidedComm` that every rank
//! calls with its own handle; a failed check panics on the rank that saw
//! the failure (which, by the failure contract, ends the run on every
//! backend). The threaded backend runs the suite for 1 to 8 ranks in
//! `cargo test`; the MPI and Lamellar backends run the very same functions
//! under `mpirun` / their launcher through [`run_all`].
//!
//! ```
//! use distarray::{conformance, threaded};
//! threaded::run(3, |comm| conformance::run_all(&comm)).unwrap();
//! ```

use std::fmt::Debug;

use crate::comm::OneSidedComm;
use crate::error::{Error, Result};

mod algebra;
mod array;
mod block_cyclic;
mod blocks;
mod collectives;
mod complex;
mod exact;
mod ghosted;
mod halo;
mod handles;
#[cfg(feature = "zarr")]
mod io;
mod linalg;
mod matmul;
mod mismatch;
mod permute;
mod plans;
mod reproducible;
mod safety;
mod slice;
mod transpose;

pub use linalg::matvec_distributions;
pub use reproducible::REPEATS;
mod window;

/// A named check.
pub type Check<C> = (&'static str, fn(&C));

/// Every check of the suite, in the order [`run_all`] runs them.
pub fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    let mut v = window::checks::<C>();
    v.extend(collectives::checks::<C>());
    v.extend(array::checks::<C>());
    v.extend(blocks::checks::<C>());
    v.extend(block_cyclic::checks::<C>());
    v.extend(handles::checks::<C>());
    v.extend(linalg::checks::<C>());
    v.extend(matmul::checks::<C>());
    v.extend(plans::checks::<C>());
    v.extend(reproducible::checks::<C>());
    v.extend(exact::checks::<C>());
    v.extend(safety::checks::<C>());
    v.extend(algebra::checks::<C>());
    v.extend(complex::checks::<C>());
    v.extend(halo::checks::<C>());
    v.extend(ghosted::checks::<C>());
    v.extend(slice::checks::<C>());
    v.extend(transpose::checks::<C>());
    v.extend(permute::checks::<C>());
    v.extend(mismatch::checks::<C>());
    #[cfg(feature = "zarr")]
    v.extend(io::checks::<C>());
    v
}

/// Runs every check on this rank (collective: all ranks call it), with a
/// barrier between checks. Panics on the first failure; returns the number
/// of checks run.
pub fn run_all<C: OneSidedComm>(comm: &C) -> usize {
    let all = checks::<C>();
    for (name, check) in &all {
        comm.barrier()
            .unwrap_or_else(|e| panic!("barrier before check {name}: {e}"));
        check(comm);
    }
    comm.barrier().expect("final barrier");
    all.len()
}

/// Unwraps with the rank in the message.
pub(crate) fn ok<T, C: OneSidedComm>(comm: &C, what: &str, r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("rank {}: {what}: unexpected error: {e}", comm.rank()))
}

/// Asserts that `r` is an `Err` matching `pred`.
pub(crate) fn expect_err<T: Debug, C: OneSidedComm>(
    comm: &C,
    what: &str,
    r: Result<T>,
    pred: impl Fn(&Error) -> bool,
) {
    match r {
        Err(e) if pred(&e) => {}
        Err(e) => panic!("rank {}: {what}: wrong error: {e:?}", comm.rank()),
        Ok(v) => panic!(
            "rank {}: {what}: expected an error, got Ok({v:?})",
            comm.rank()
        ),
    }
}

/// A tiny deterministic generator (SplitMix64), so that every rank and
/// every backend draws the same "random" sizes from the same seed.
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
