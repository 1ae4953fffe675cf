//! Collective agreement on arguments: every rank must pass the same path
//! and options to a collective I/O call. A mismatch is found by comparing
//! a 64-bit hash of the arguments (one allreduce of the `(min, max)` hash,
//! O(log P), whatever the path length) and reported on every rank.

use std::hash::Hash;

use crate::collective::{agree_fingerprints, broadcast_vote, fingerprint};
use crate::comm::OneSidedComm;
use crate::error::{Error, Result};

/// Collective: `Ok` if every rank passed the same `args` (and `local` is
/// `Ok` everywhere); otherwise an `Err` on every rank naming `what`.
pub(crate) fn agree<C: OneSidedComm, A: Hash>(
    comm: &C,
    what: &str,
    args: &A,
    local: Result<()>,
) -> Result<()> {
    agree_fingerprints(comm, local.map(|()| ((), fingerprint(args))), || {
        Error::InvalidArgument(format!(
            "{what} differs between ranks (every rank must pass the same value to this \
             collective call)"
        ))
    })
}

/// Collective: `root`'s string (or its error) on every rank. Two
/// broadcasts: the length with the root's success vote, then the bytes.
pub(crate) fn broadcast_string<C: OneSidedComm>(
    comm: &C,
    root: usize,
    local: Result<String>,
) -> Result<String> {
    let len = broadcast_vote(
        comm,
        root,
        local.as_ref().map(|s| s.len() as u64).map_err(Clone::clone),
    )?;
    let mut buf = vec![0u8; len as usize];
    if let Ok(s) = &local {
        if comm.rank() == root {
            buf.copy_from_slice(s.as_bytes());
        }
    }
    comm.broadcast_bytes(root, &mut buf)?;
    String::from_utf8(buf).map_err(|e| Error::Backend(format!("broadcast string: {e}")))
}
