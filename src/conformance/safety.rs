//! Checks of the access model and of the collective agreement that make
//! safe programs race-free and keep bad requests from allocating anything
//! (see [`WindowState`](crate::checks::WindowState)): every backend must
//! refuse the same programs with the same errors.

use std::time::Duration;

use super::{expect_err, ok, Check};
use crate::array::DistArray;
use crate::block::Block;
use crate::comm::{AccumulateOp, LockKind, OneSidedComm};
use crate::error::Error;

/// The safety checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        (
            "writes_need_exclusive_lock",
            writes_need_exclusive_lock::<C>,
        ),
        ("view_keeps_its_lock", view_keeps_its_lock::<C>),
        (
            "view_stable_under_remote_write",
            view_stable_under_remote_write::<C>,
        ),
        ("runs_checked_before_issue", runs_checked_before_issue::<C>),
        ("element_type_agreed", element_type_agreed::<C>),
        ("part_bytes_overflow", part_bytes_overflow::<C>),
        ("allocation_too_large", allocation_too_large::<C>),
    ]
}

fn is_mismatch(e: &Error) -> bool {
    matches!(e, Error::EpochMismatch(_))
}

/// Put and accumulate under a shared lock are refused (a shared lock admits
/// the owner's read-only view), before anything is written.
fn writes_need_exclusive_lock<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let t = (me + 1) % p;
    let w = ok(comm, "create_window", comm.create_window::<i32>(4));
    ok(comm, "lock", w.lock(t, LockKind::Shared));
    expect_err(
        comm,
        "put under shared lock",
        w.put(t, 0, &[7]),
        is_mismatch,
    );
    expect_err(
        comm,
        "accumulate under shared lock",
        w.accumulate(t, 1, &[7], AccumulateOp::Sum),
        is_mismatch,
    );
    expect_err(
        comm,
        "put_runs under shared lock",
        w.put_runs(t, &[(2, 1)], &[7]),
        is_mismatch,
    );
    expect_err(
        comm,
        "accumulate_runs under shared lock",
        w.accumulate_runs(t, &[(3, 1)], &[7], AccumulateOp::Max),
        is_mismatch,
    );
    // reads are fine under a shared lock
    let mut v = [0i32; 4];
    ok(comm, "get", w.get(t, 0, &mut v));
    ok(comm, "unlock", w.unlock(t));
    expect_err(
        comm,
        "put_locked with a shared lock",
        w.put_locked(t, LockKind::Shared, 0, &[7]),
        is_mismatch,
    );
    ok(comm, "barrier", comm.barrier());
    // nothing was written anywhere
    ok(
        comm,
        "get_locked",
        w.get_locked(t, LockKind::Shared, 0, &mut v),
    );
    assert_eq!(v, [0; 4], "rank {me}: a refused write landed");
    // the exclusive forms work
    ok(comm, "barrier", comm.barrier());
    ok(
        comm,
        "put_locked",
        w.put_locked(t, LockKind::Exclusive, 0, &[me as i32 + 1]),
    );
    ok(comm, "barrier", comm.barrier());
    ok(
        comm,
        "get_locked",
        w.get_locked(me, LockKind::Shared, 0, &mut v),
    );
    let prev = (me + p - 1) % p;
    assert_eq!(v[0], prev as i32 + 1, "rank {me}: exclusive put");
    ok(comm, "barrier", comm.barrier());
}

/// The lock on the own part cannot be released while a local view relies
/// on it (else other ranks could write into a live slice).
fn view_keeps_its_lock<C: OneSidedComm>(comm: &C) {
    let me = comm.rank();
    let w = ok(comm, "create_window", comm.create_window::<u8>(3));
    ok(comm, "lock", w.lock(me, LockKind::Exclusive));
    let inner = ok(
        comm,
        "with_local_mut",
        w.with_local_mut(|s| {
            s[0] = 1;
            w.unlock(me)
        }),
    );
    expect_err(comm, "unlock inside with_local_mut", inner, |e| {
        matches!(e, Error::Conflict { .. })
    });
    ok(comm, "unlock after the view", w.unlock(me));
    ok(comm, "lock", w.lock(me, LockKind::Shared));
    let inner = ok(comm, "with_local", w.with_local(|_| w.unlock(me)));
    expect_err(comm, "unlock inside with_local", inner, |e| {
        matches!(e, Error::Conflict { .. })
    });
    // own writes inside a read view are refused too
    let inner = ok(comm, "with_local", w.with_local(|_| w.put(me, 0, &[9])));
    expect_err(comm, "own put inside with_local", inner, |e| {
        matches!(e, Error::Conflict { .. }) || is_mismatch(e)
    });
    ok(comm, "unlock", w.unlock(me));
    // views are refused in fence epochs
    ok(comm, "fence", w.fence());
    expect_err(
        comm,
        "with_local in a fence epoch",
        w.with_local(|_| ()),
        is_mismatch,
    );
    ok(comm, "fence_end", w.fence_end());
    ok(comm, "barrier", comm.barrier());
}

/// A rank reads its view twice around a pause while another rank writes
/// its part: both reads agree (the write waits for the view), and the write
/// lands afterwards.
fn view_stable_under_remote_write<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    if p < 2 {
        return;
    }
    let a = ok(
        comm,
        "new",
        DistArray::<i64, C, 1>::new(comm.clone(), [2 * p]),
    );
    ok(comm, "barrier", a.barrier());
    if me == 1 {
        let (first, second) = ok(
            comm,
            "with_local",
            a.with_local(|l| {
                let first = l.as_slice()[0];
                std::thread::sleep(Duration::from_millis(150));
                (first, l.as_slice()[0])
            }),
        );
        assert_eq!(first, second, "rank 1: its view changed under it");
    } else if me == 0 {
        std::thread::sleep(Duration::from_millis(30));
        // rank 1 owns elements 2..4
        let elems = 2..4;
        let mut b = ok(comm, "get_block", a.get_block(&Block::new([elems])));
        b.as_mut_slice().fill(5);
        ok(comm, "put_block Sum", a.put_block(&b, AccumulateOp::Sum));
        // the element-level epoch API refuses a write under a shared lock
        let epoch = ok(comm, "lock", a.lock(1, LockKind::Shared));
        expect_err(
            comm,
            "Epoch::put under shared lock",
            epoch.put(0, &[1]),
            is_mismatch,
        );
        ok(comm, "unlock", epoch.unlock());
    }
    ok(comm, "barrier", a.barrier());
    assert_eq!(
        ok(comm, "get", a.get([2])),
        5,
        "rank {me}: the write landed"
    );
    ok(comm, "barrier", a.barrier());
}

/// A batch whose later run is out of range is refused before its first run
/// moves any data.
fn runs_checked_before_issue<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let t = (me + 1) % p;
    let w = ok(comm, "create_window", comm.create_window::<u16>(4));
    let oob = |e: &Error| matches!(e, Error::OutOfBounds { .. });
    ok(comm, "lock", w.lock(t, LockKind::Exclusive));
    expect_err(
        comm,
        "put_runs with a bad second run",
        w.put_runs(t, &[(0, 2), (3, 2)], &[1, 2, 3, 4]),
        oob,
    );
    expect_err(
        comm,
        "accumulate_runs with a bad second run",
        w.accumulate_runs(t, &[(1, 1), (4, 1)], &[1, 2], AccumulateOp::Sum),
        oob,
    );
    let mut dst = [9u16; 3];
    expect_err(
        comm,
        "get_runs with a bad second run",
        w.get_runs(t, &[(0, 2), (4, 1)], &mut dst),
        oob,
    );
    assert_eq!(dst, [9; 3], "rank {me}: get_runs wrote before refusing");
    ok(comm, "unlock", w.unlock(t));
    ok(comm, "barrier", comm.barrier());
    let mut v = [7u16; 4];
    ok(
        comm,
        "get_locked",
        w.get_locked(me, LockKind::Shared, 0, &mut v),
    );
    assert_eq!(v, [0; 4], "rank {me}: a refused batch wrote its first run");
    ok(comm, "barrier", comm.barrier());
}

/// Ranks that create windows or arrays of different element types get an
/// `Err` on every rank, before anything is allocated.
fn element_type_agreed<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    if p < 2 {
        return;
    }
    let disagree = |e: &Error| {
        matches!(
            e,
            Error::InvalidArgument(_) | Error::InvalidPartition(_) | Error::PeerFailed { .. }
        )
    };
    let r = if me == 0 {
        DistArray::<f64, C, 1>::new(comm.clone(), [6 * p]).map(drop)
    } else {
        DistArray::<i32, C, 1>::new(comm.clone(), [6 * p]).map(drop)
    };
    expect_err(comm, "arrays of different element types", r, disagree);
    // same size, other kind
    let r = if me == p - 1 {
        comm.create_window::<u32>(4).map(drop)
    } else {
        comm.create_window::<f32>(4).map(drop)
    };
    expect_err(comm, "windows of different element types", r, disagree);
    let r = if me == 0 {
        comm.create_window_with_lens::<i64>(&vec![3; p]).map(drop)
    } else {
        comm.create_window_with_lens::<i64>(&vec![4; p]).map(drop)
    };
    expect_err(comm, "windows with different layouts", r, disagree);
    // the communicator still works
    let a = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [p]));
    ok(comm, "fill", a.fill(1.0));
    assert_eq!(ok(comm, "sum", a.sum()), p as f64);
}

/// A part whose size in bytes overflows fails on every rank, including the
/// ranks whose own part is small.
fn part_bytes_overflow<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let mut sizes = vec![10usize; p];
    sizes[0] = 1 << 61;
    let r = DistArray::<f64, C, 1>::with_part_sizes(comm.clone(), [sizes]);
    expect_err(comm, "part of 2^61 f64", r.map(drop), |e| {
        matches!(e, Error::InvalidArgument(_) | Error::InvalidPartition(_))
    });
    let len = if comm.rank() == 0 { usize::MAX / 4 } else { 1 };
    let r = comm.create_window::<u64>(len);
    expect_err(
        comm,
        "window part of usize::MAX / 4 u64",
        r.map(drop),
        |e| matches!(e, Error::InvalidArgument(_) | Error::PeerFailed { .. }),
    );
    ok(comm, "barrier", comm.barrier());
}

/// An allocation larger than the machine's memory is an `Err` on every
/// rank, not an abort (or the kernel's OOM killer).
fn allocation_too_large<C: OneSidedComm>(comm: &C) {
    let oom = |e: &Error| matches!(e, Error::OutOfMemory { .. } | Error::PeerFailed { .. });
    let r = DistArray::<f64, C, 1>::new(comm.clone(), [1 << 40]);
    expect_err(comm, "array of 2^40 f64", r.map(drop), oom);
    let len = if comm.rank() == comm.size() - 1 {
        1 << 42
    } else {
        8
    };
    let r = comm.create_window::<u8>(len);
    expect_err(comm, "window part of 4 TiB", r.map(drop), oom);
    // still usable
    let a = ok(comm, "new", DistArray::<u8, C, 1>::new(comm.clone(), [8]));
    ok(comm, "fill", a.fill(1));
    ok(comm, "barrier", comm.barrier());
}
