//! For backend implementors: the validation every window runs before it
//! touches memory. [`WindowState`] is the one object that approves every
//! window operation (lock, unlock, flush, fence, local views, every RMA
//! operation with all its runs) and states the access model that makes safe
//! programs race-free on every backend; it is built from the rank and
//! bounds checks ([`WindowLayout`]), the epoch bookkeeping
//! ([`EpochTracker`]) and the local-view registry ([`LocalViews`]).
//! Window creation is agreed collectively first ([`gather_window_lens`](crate::comm::agree::gather_window_lens),
//! [`agree_window`](crate::comm::agree::agree_window)): element type, part sizes in bytes and available
//! memory, so that a bad request fails on every rank before any allocation.
//!
//! Backends call these first and only then their runtime, so the same misuse
//! gives the same [`Error`] everywhere — and never reaches MPI, where it
//! would be undefined behaviour. Applications do not need this module.

use crate::error::{Error, Result};

mod epochs;
mod state;
mod views;

pub use epochs::{EpochKind, EpochTracker, Fencing, Locking, Pin, Unlocking};
pub use state::{Access, Approval, OneShot, ViewApproval, WindowState};
pub use views::{AccessGuard, LocalViews, ViewGuard};

/// The lengths of every rank's part of one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowLayout {
    lens: Vec<usize>,
}

impl WindowLayout {
    /// A layout from the per-rank lengths (index = rank).
    pub fn new(lens: Vec<usize>) -> Self {
        WindowLayout { lens }
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.lens.len()
    }

    /// Length of `target`'s part.
    #[inline]
    pub fn len_of(&self, target: usize) -> Result<usize> {
        check_rank(target, self.size())?;
        Ok(self.lens[target])
    }

    /// Checks that `offset..offset + len` lies in `target`'s part.
    #[inline]
    pub fn check(&self, target: usize, offset: usize, len: usize) -> Result<()> {
        check_in_part(target, offset, len, self.len_of(target)?)
    }

    /// Checks every run `(offset, len)` and that their total is `buf_len`.
    pub fn check_runs(&self, target: usize, runs: &[(usize, usize)], buf_len: usize) -> Result<()> {
        check_runs_len(runs, buf_len)?;
        runs.iter()
            .try_for_each(|&(offset, len)| self.check(target, offset, len))
    }
}

/// The ranks of a neighbour exchange's messages (sends and receives)
/// against the number of ranks: the checks of
/// [`NeighbourMessages::exchange_bytes`](crate::NeighbourMessages::exchange_bytes)
/// before anything is sent.
pub fn check_exchange(
    sends: &[(usize, &[u8])],
    recvs: &[(usize, &mut [u8])],
    size: usize,
) -> Result<()> {
    for &(r, _) in sends {
        check_rank(r, size)?;
    }
    for (r, _) in recvs {
        check_rank(*r, size)?;
    }
    Ok(())
}

/// Checks `rank < size`.
#[inline]
pub fn check_rank(rank: usize, size: usize) -> Result<()> {
    if rank < size {
        Ok(())
    } else {
        Err(Error::RankOutOfRange { rank, size })
    }
}

/// Checks that accumulate `op` is defined for `T` ([`ElementKind::supports`]:
/// complex numbers have no `Min` / `Max`).
///
/// [`ElementKind::supports`]: crate::ElementKind::supports
#[inline]
pub fn check_op<T: crate::element::Element>(op: crate::element::AccumulateOp) -> Result<()> {
    if T::KIND.supports(op) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "accumulate {op:?} is not defined for {:?} elements (complex numbers have no order)",
            T::KIND
        )))
    }
}

/// Checks that a buffer of `buf_len` elements matches the runs' total length.
pub fn check_runs_len(runs: &[(usize, usize)], buf_len: usize) -> Result<()> {
    let total = runs.iter().try_fold(0usize, |a, r| a.checked_add(r.1));
    if total != Some(buf_len) {
        let total = total.unwrap_or(usize::MAX);
        return Err(Error::ShapeMismatch {
            expected: vec![total],
            found: vec![buf_len],
        });
    }
    Ok(())
}

/// The runs `(offset, len)` of a batch, each with its piece of the buffer
/// that holds them one after the other: `(offset, at..at + len)`. The one
/// walk every `*_runs` implementation (and the own-part copies) shares.
pub fn run_pieces(
    runs: &[(usize, usize)],
) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> + '_ {
    runs.iter().scan(0usize, |at, &(offset, len)| {
        let piece = *at..*at + len;
        *at += len;
        Some((offset, piece))
    })
}

/// `offset..offset + len` lies in a part of `window_len` elements of
/// `target` (checked arithmetic), else [`Error::OutOfBounds`].
#[inline]
fn check_in_part(target: usize, offset: usize, len: usize, window_len: usize) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= window_len => Ok(()),
        _ => Err(Error::OutOfBounds {
            target,
            offset,
            len,
            window_len,
        }),
    }
}
