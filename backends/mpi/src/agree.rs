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

use distarray::collective::allreduce_vote;
use distarray::{Error, Result};

use crate::MpiComm;

/// A 64-bit fingerprint of arguments that must be equal on every rank
/// (FNV-1a, the core crate's).
pub(crate) use distarray::collective::fingerprint;

/// Collective (one allreduce): votes on this rank's checks `local` — its
/// value and the [`fingerprint`] of the arguments every rank must pass
/// alike — and compares the fingerprints in the same collective. Returns
/// the value if every rank's checks passed with one fingerprint; this
/// rank's own error or [`Error::PeerFailed`] if some rank's failed;
/// `differs()` on every rank if the fingerprints differ.
pub(crate) fn agree<V>(
    comm: &MpiComm,
    local: Result<(V, u64)>,
    differs: impl FnOnce() -> Error,
) -> Result<V> {
    let (value, key) = match local {
        Ok((v, key)) => (Ok(v), Ok([key, key])),
        Err(e) => (Err(e.clone()), Err(e)),
    };
    let [lo, hi] = allreduce_vote(comm, key, |a, b| [a[0].min(b[0]), a[1].max(b[1])])?;
    if lo != hi {
        return Err(differs());
    }
    value
}

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
