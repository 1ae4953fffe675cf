//! Window allocation agreed collectively: every rank learns, from one
//! allgather or one vote, whether all ranks use the same element type and
//! layout and can allocate their parts, before anything is allocated (the
//! preconditions of [`OneSidedComm::allocate_window`]).

use std::hash::{Hash, Hasher};

use super::OneSidedComm;
use crate::element::Element;
use crate::error::{Error, Result};

/// Bytes of memory the operating system reports as available to new
/// allocations (`MemAvailable` in `/proc/meminfo`), if it can be told.
pub fn available_memory() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `Err(OutOfMemory)` if `bytes` exceed [`available_memory`] (no check
/// where it cannot be told).
pub fn check_memory(what: &str, bytes: u128) -> Result<()> {
    match available_memory() {
        Some(available) if bytes > available => Err(Error::OutOfMemory {
            what: what.to_string(),
            requested: bytes,
            available,
        }),
        _ => Ok(()),
    }
}

/// Checks a window layout every rank will see identically: one entry per
/// rank, and every part's size in bytes fits in `isize` (so every rank
/// reaches the same verdict on it).
pub fn check_window_lens(lens: &[usize], size: usize, elem_size: usize) -> Result<()> {
    if lens.len() != size {
        return Err(Error::InvalidArgument(format!(
            "a window layout needs one length per rank: {} for {}",
            crate::error::plural(lens.len(), "length"),
            crate::error::plural(size, "rank")
        )));
    }
    for (rank, &len) in lens.iter().enumerate() {
        let fits = len
            .checked_mul(elem_size)
            .is_some_and(|b| b <= isize::MAX as usize);
        if !fits {
            return Err(Error::InvalidArgument(format!(
                "rank {rank}'s part of {len} elements of {elem_size} bytes is too large to \
                 address (more than isize::MAX bytes)"
            )));
        }
    }
    Ok(())
}

/// Stable code of an element type for cross-rank agreement: kind and size.
fn element_code<T: Element>() -> [u64; 2] {
    [T::KIND as u64 + 1, std::mem::size_of::<T>() as u64]
}

/// Collective (one allgather): every rank's part length for a window of
/// `T`, after checking on every rank — from the same gathered table, so all
/// reach the same verdict — that all ranks use the same element type, every
/// part's bytes fit, and every rank can allocate its part (its
/// [`OneSidedComm::check_allocation`]).
pub fn gather_window_lens<T: Element, C: OneSidedComm>(
    comm: &C,
    local_len: usize,
) -> Result<Vec<usize>> {
    let [kind, size] = element_code::<T>();
    let mut lens_mine = vec![0; comm.size()];
    if let Some(l) = lens_mine.get_mut(comm.rank()) {
        *l = local_len;
    }
    let local_ok = check_window_lens(&[local_len], 1, size as usize)
        .and_then(|_| comm.check_allocation(&lens_mine, size as usize));
    let all = comm.allgather(&[local_len as u64, kind, size, u64::from(local_ok.is_ok())])?;
    let failed = all.iter().position(|v| v[3] == 0);
    // only when some rank failed: every rank learns its reason
    let reason = match failed {
        Some(rank) => Some(crate::collective::failure_reason(
            comm,
            rank,
            local_ok.as_ref().err(),
        )?),
        None => None,
    };
    local_ok?;
    if let Some(r) = all.iter().position(|v| v[1] != kind || v[2] != size) {
        return Err(Error::InvalidArgument(format!(
            "ranks disagree on the window's element type: rank {} uses {:?} ({size} bytes), \
             rank {r} another type",
            comm.rank(),
            T::KIND
        )));
    }
    if let (Some(rank), Some(reason)) = (failed, reason) {
        return Err(Error::PeerFailed { rank, reason });
    }
    let lens: Vec<usize> = all
        .iter()
        .map(|v| usize::try_from(v[0]).unwrap_or(usize::MAX))
        .collect();
    check_window_lens(&lens, comm.size(), size as usize)?;
    Ok(lens)
}

/// Collective (one vote): checks that every rank passed the same window
/// layout `lens` for the same element type `T` and the same `key` (a
/// fingerprint of what the caller builds, e.g. a partition), and that every
/// rank can allocate its part. `local` carries the caller's own validation:
/// if any rank's is an `Err`, every rank returns one. On `Ok`, the
/// preconditions of [`OneSidedComm::allocate_window`] hold.
pub fn agree_window<T: Element, C: OneSidedComm>(comm: &C, lens: &[usize], key: u64) -> Result<()> {
    agree_window_after::<T, C>(comm, Ok((key, lens)))
}

/// [`agree_window`] with the caller's own validation result: `local` is
/// `Ok((key, lens))`, or the caller's error, which fails the call on every
/// rank.
pub fn agree_window_after<T: Element, C: OneSidedComm>(
    comm: &C,
    local: Result<(u64, &[usize])>,
) -> Result<()> {
    let [kind, size] = element_code::<T>();
    let me = comm.rank();
    let local = local.and_then(|(key, lens)| {
        check_window_lens(lens, comm.size(), size as usize)?;
        comm.check_allocation(lens, size as usize)?;
        let mut h = std::hash::DefaultHasher::new();
        (key, kind, size, lens).hash(&mut h);
        Ok((h.finish(), lens))
    });
    // [ok, fingerprint, the length this rank will allocate]: the fingerprint
    // makes every rank reach the same verdict, the exact lengths make the
    // bounds every rank will check agree with what each rank allocates,
    // whatever the fingerprint (a hash) says.
    let mine = match &local {
        Ok((fp, lens)) => [1, *fp, lens[me] as u64],
        Err(_) => [0, 0, 0],
    };
    let all = comm.allgather(&mine)?;
    if let Some(rank) = all.iter().position(|v| v[0] == 0) {
        // only when some rank failed: every rank learns its reason
        let reason = crate::collective::failure_reason(comm, rank, local.as_ref().err())?;
        local?;
        return Err(Error::PeerFailed { rank, reason });
    }
    let (fp, lens) = local?;
    let differs = |r: usize| all[r][1] != fp || all[r][2] != lens[r] as u64;
    if let Some(r) = (0..all.len()).find(|&r| differs(r)) {
        return Err(Error::InvalidPartition(format!(
            "ranks disagree on the arguments of this collective call (element type {:?}, part \
             lengths or partition of rank {me} differ from rank {r}'s)",
            T::KIND,
        )));
    }
    Ok(())
}
