//! How this crate's collective calls into other parallel libraries
//! (parallel HDF5, ScaLAPACK) make sure no rank enters one alone or with
//! other arguments than the rest: the two votes every such call makes.
//!
//! 1. [`agree`], before any view of an array is taken: every rank's own
//!    argument checks *and* a fingerprint of the arguments that must be
//!    the same everywhere (a name, the arrays' global shapes, block sizes,
//!    process grids, element type, scalars), in one allreduce of a status
//!    and the `(min, max)` of the fingerprints. A failed check is every
//!    rank's `Err` (the rank's own, [`Error::PeerFailed`] on the others);
//!    fingerprints that differ are the caller's error on every rank.
//! 2. [`gated`]: the call takes its views and passes the [`Gate`] (one
//!    vote) inside them, before the first collective call of the library;
//!    a rank whose view is refused votes that error in the gate's place, so
//!    every rank returns an error instead of waiting in the library for a
//!    rank that never comes.

use distarray::{Error, Result};

use crate::MpiComm;

/// The two pieces of the first vote (the core crate's): a fingerprint of
/// the arguments, and the vote that agrees the checks and compares the
/// fingerprints (`agree(comm, local, differs)`).
pub(crate) use distarray::collective::{agree_fingerprints as agree, fingerprint};

/// The door to a parallel library's collectives (see the [module
/// docs](self)): a rank passes it (one vote) once it holds every view its
/// call needs, and every rank learns whether all did.
pub(crate) struct Gate<'a> {
    comm: &'a MpiComm,
    reached: bool,
}

impl Gate<'_> {
    /// Collective: every rank holds its views; `Err` if one did not (then
    /// no rank may go on into the library). Call it once, inside the views.
    pub(crate) fn pass(&mut self) -> Result<()> {
        self.reached = true;
        distarray::epoch::vote(self.comm, Ok(()))
    }
}

/// Runs `run`, which takes this rank's views and calls [`Gate::pass`]
/// inside them before any collective call of the library. A rank that
/// returns without reaching the gate (its view was refused) votes its
/// error in the gate's place, so every rank returns an error. Once past
/// the gate every rank is inside the call: a failure that one rank alone
/// can see must be voted by `run` itself before its next collective.
pub(crate) fn gated<R>(comm: &MpiComm, run: impl FnOnce(&mut Gate<'_>) -> Result<R>) -> Result<R> {
    let mut gate = Gate {
        comm,
        reached: false,
    };
    let r = run(&mut gate);
    if gate.reached {
        return r;
    }
    let e = r.err().unwrap_or_else(|| {
        Error::Backend("a collective call returned without passing its gate".into())
    });
    Err(distarray::epoch::vote(comm, Err::<(), _>(e)).unwrap_err())
}
