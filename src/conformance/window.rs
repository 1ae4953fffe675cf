//! Checks of the [`OneSidedComm`] / [`Window`] contract itself.

use super::{expect_err, ok, Check};
use crate::comm::{AccumulateOp, Element, LockKind, OneSidedComm};
use crate::error::Error;

/// The window-level checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("rank_and_size", rank_and_size::<C>),
        ("allgather_varying_counts", allgather_varying_counts::<C>),
        ("window_lengths", window_lengths::<C>),
        ("get_put_all_pairs", get_put_all_pairs::<C>),
        ("runs", runs::<C>),
        ("accumulate_concurrent", accumulate_concurrent::<C>),
        ("accumulate_ops", accumulate_ops::<C>),
        ("exclusive_lock_excludes", exclusive_lock_excludes::<C>),
        ("nested_epochs_on_different_targets", nested_epochs::<C>),
        ("fence_epochs", fence_epochs::<C>),
        ("epoch_errors", epoch_errors::<C>),
        ("fence_disagreement", fence_disagreement::<C>),
        ("fence_steps_must_match", fence_steps_must_match::<C>),
        ("bounds_errors", bounds_errors::<C>),
        ("all_element_kinds", all_element_kinds::<C>),
    ]
}

fn rank_and_size<C: OneSidedComm>(comm: &C) {
    assert!(comm.size() >= 1);
    assert!(comm.rank() < comm.size());
    let ranks = ok(comm, "allgather", comm.allgather(&[comm.rank() as u64]));
    let expect: Vec<Vec<u64>> = (0..comm.size() as u64).map(|r| vec![r]).collect();
    assert_eq!(ranks, expect, "allgather of ranks");
    ok(comm, "barrier", comm.barrier());
}

fn allgather_varying_counts<C: OneSidedComm>(comm: &C) {
    let r = comm.rank();
    // rank r contributes r + 1 values (and rank 1 none at all, if present)
    let n = if r == 1 { 0 } else { r + 1 };
    let mine: Vec<f64> = (0..n).map(|i| (r * 100 + i) as f64 + 0.5).collect();
    let all = ok(comm, "allgather", comm.allgather(&mine));
    assert_eq!(all.len(), comm.size());
    for (q, part) in all.iter().enumerate() {
        let n = if q == 1 { 0 } else { q + 1 };
        let expect: Vec<f64> = (0..n).map(|i| (q * 100 + i) as f64 + 0.5).collect();
        assert_eq!(part, &expect, "rank {r}: allgather part of rank {q}");
    }
}

/// Length of rank `r`'s part in the windows of these checks (one rank may
/// have zero).
fn test_len(r: usize) -> usize {
    if r == 2 {
        0
    } else {
        3 + r
    }
}

fn window_lengths<C: OneSidedComm>(comm: &C) {
    let w = ok(
        comm,
        "create_window",
        comm.create_window::<i32>(test_len(comm.rank())),
    );
    assert_eq!(w.rank(), comm.rank());
    assert_eq!(w.size(), comm.size());
    for t in 0..comm.size() {
        assert_eq!(ok(comm, "len_of", w.len_of(t)), test_len(t));
    }
    assert_eq!(w.local_len(), test_len(comm.rank()));
    expect_err(comm, "len_of(size)", w.len_of(comm.size()), |e| {
        matches!(e, Error::RankOutOfRange { .. })
    });
    // fresh windows are zero
    ok(comm, "lock", w.lock(comm.rank(), LockKind::Shared));
    let zero = ok(
        comm,
        "with_local",
        w.with_local(|s| s.iter().all(|&x| x == 0)),
    );
    assert!(zero, "new window is not zero-filled");
    ok(comm, "unlock", w.unlock(comm.rank()));
    ok(comm, "barrier", comm.barrier());
}

fn get_put_all_pairs<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    // every rank owns p slots; rank `me` writes slot `me` of every target
    let w = ok(comm, "create_window", comm.create_window::<u64>(p));
    for t in 0..p {
        ok(comm, "lock", w.lock(t, LockKind::Exclusive));
        ok(comm, "put", w.put(t, me, &[(me * 1000 + t) as u64]));
        ok(comm, "unlock", w.unlock(t));
    }
    ok(comm, "barrier", comm.barrier());
    // local view sees what everybody wrote
    ok(comm, "lock", w.lock(me, LockKind::Shared));
    let local = ok(comm, "with_local", w.with_local(|s| s.to_vec()));
    ok(comm, "unlock", w.unlock(me));
    let expect: Vec<u64> = (0..p).map(|src| (src * 1000 + me) as u64).collect();
    assert_eq!(
        local, expect,
        "rank {me}: local part after puts from all ranks"
    );
    // and every rank reads every target remotely
    for t in 0..p {
        let mut buf = vec![0u64; p];
        ok(comm, "lock", w.lock(t, LockKind::Shared));
        ok(comm, "get", w.get(t, 0, &mut buf));
        ok(comm, "unlock", w.unlock(t));
        let expect: Vec<u64> = (0..p).map(|src| (src * 1000 + t) as u64).collect();
        assert_eq!(buf, expect, "rank {me}: get of rank {t}'s part");
    }
    ok(comm, "barrier", comm.barrier());
    // the owner writes its own part through a mutable view; others see it
    ok(comm, "lock", w.lock(me, LockKind::Exclusive));
    ok(
        comm,
        "with_local_mut",
        w.with_local_mut(|s| s.iter_mut().for_each(|x| *x += 1)),
    );
    ok(comm, "unlock", w.unlock(me));
    ok(comm, "barrier", comm.barrier());
    let t = (me + 1) % p;
    let mut buf = vec![0u64; p];
    ok(comm, "lock", w.lock(t, LockKind::Shared));
    ok(comm, "get", w.get(t, 0, &mut buf));
    ok(comm, "unlock", w.unlock(t));
    let expect: Vec<u64> = (0..p).map(|src| (src * 1000 + t) as u64 + 1).collect();
    assert_eq!(buf, expect, "rank {me}: get after owner's local update");
    ok(comm, "barrier", comm.barrier());
}

fn runs<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let w = ok(comm, "create_window", comm.create_window::<i64>(20));
    let t = (me + 1) % p;
    // write two runs of the next rank: 2..5 and 10..12, values me*100 + k
    let src: Vec<i64> = (0..5).map(|k| (me * 100 + k) as i64).collect();
    ok(comm, "lock", w.lock(t, LockKind::Exclusive));
    ok(comm, "put_runs", w.put_runs(t, &[(2, 3), (10, 2)], &src));
    ok(comm, "unlock", w.unlock(t));
    ok(comm, "barrier", comm.barrier());
    let prev = (me + p - 1) % p;
    let mut back = vec![0i64; 5];
    ok(comm, "lock", w.lock(me, LockKind::Shared));
    ok(
        comm,
        "get_runs",
        w.get_runs(me, &[(10, 2), (2, 3)], &mut back),
    );
    let local = ok(comm, "with_local", w.with_local(|s| s.to_vec()));
    ok(comm, "unlock", w.unlock(me));
    let v = |k: usize| (prev * 100 + k) as i64;
    assert_eq!(
        back,
        vec![v(3), v(4), v(0), v(1), v(2)],
        "rank {me}: get_runs order"
    );
    let mut expect = vec![0i64; 20];
    expect[2..5].copy_from_slice(&[v(0), v(1), v(2)]);
    expect[10..12].copy_from_slice(&[v(3), v(4)]);
    assert_eq!(local, expect, "rank {me}: put_runs placement");
    ok(comm, "barrier", comm.barrier());
    // accumulate_runs from everyone into rank 0
    ok(comm, "lock", w.lock(0, LockKind::Exclusive));
    ok(
        comm,
        "accumulate_runs",
        w.accumulate_runs(0, &[(0, 1), (19, 1)], &[1, 2], AccumulateOp::Sum),
    );
    ok(comm, "unlock", w.unlock(0));
    ok(comm, "barrier", comm.barrier());
    if me == 0 {
        let mut ends = [0i64; 2];
        ok(comm, "lock", w.lock(0, LockKind::Shared));
        ok(
            comm,
            "get_runs",
            w.get_runs(0, &[(0, 1), (19, 1)], &mut ends),
        );
        ok(comm, "unlock", w.unlock(0));
        // offsets 0 and 19 were untouched by put_runs: only the accumulates count
        assert_eq!(ends, [p as i64, 2 * p as i64], "accumulate_runs totals");
    }
    ok(comm, "barrier", comm.barrier());
}

fn accumulate_concurrent<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    const LEN: usize = 16;
    const ROUNDS: usize = 40;
    let wi = ok(comm, "create_window", comm.create_window::<i64>(LEN));
    let wf = ok(comm, "create_window", comm.create_window::<f64>(LEN));
    // everyone hammers the same elements of every target at once, in one
    // fence epoch (no locks: the accumulates themselves must be atomic)
    ok(comm, "fence", wi.fence());
    ok(comm, "fence", wf.fence());
    for round in 0..ROUNDS {
        let t = (me + round) % p;
        let inc_i = vec![(me + 1) as i64; LEN];
        let inc_f = [0.25 * (me + 1) as f64; LEN];
        ok(
            comm,
            "accumulate",
            wi.accumulate(t, 0, &inc_i, AccumulateOp::Sum),
        );
        for k in 0..LEN {
            ok(
                comm,
                "accumulate",
                wf.accumulate(t, k, &inc_f[k..k + 1], AccumulateOp::Sum),
            );
        }
    }
    ok(comm, "fence_end", wi.fence_end());
    ok(comm, "fence_end", wf.fence_end());
    ok(comm, "barrier", comm.barrier());
    // rank q receives from rank r in rounds where (r + round) % p == q
    let mut expect_i = 0i64;
    let mut expect_f = 0.0f64;
    for r in 0..p {
        let hits = (0..ROUNDS).filter(|round| (r + round) % p == me).count();
        expect_i += (hits * (r + 1)) as i64;
        expect_f += hits as f64 * 0.25 * (r + 1) as f64;
    }
    ok(comm, "lock", wi.lock(me, LockKind::Shared));
    let li = ok(comm, "with_local", wi.with_local(|s| s.to_vec()));
    ok(comm, "unlock", wi.unlock(me));
    ok(comm, "lock", wf.lock(me, LockKind::Shared));
    let lf = ok(comm, "with_local", wf.with_local(|s| s.to_vec()));
    ok(comm, "unlock", wf.unlock(me));
    assert!(
        li.iter().all(|&x| x == expect_i),
        "rank {me}: integer sums {li:?} != {expect_i}"
    );
    // quarters are exact in binary: any summation order gives the same value
    assert!(
        lf.iter().all(|&x| x == expect_f),
        "rank {me}: float sums {lf:?} != {expect_f}"
    );
    ok(comm, "barrier", comm.barrier());
}

fn accumulate_ops<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let w = ok(comm, "create_window", comm.create_window::<i32>(4));
    // offsets: 0 = Min, 1 = Max, 2 = Prod (starts at 1), 3 = Replace by rank 0 only
    if me == 0 {
        ok(comm, "lock", w.lock(0, LockKind::Exclusive));
        ok(comm, "put", w.put(0, 0, &[1000, -1000, 1, 0]));
        ok(comm, "unlock", w.unlock(0));
    }
    ok(comm, "barrier", comm.barrier());
    let v = me as i32 + 1;
    ok(comm, "lock", w.lock(0, LockKind::Exclusive));
    ok(
        comm,
        "acc min",
        w.accumulate(0, 0, &[10 * v], AccumulateOp::Min),
    );
    ok(
        comm,
        "acc max",
        w.accumulate(0, 1, &[10 * v], AccumulateOp::Max),
    );
    ok(
        comm,
        "acc prod",
        w.accumulate(0, 2, &[-2], AccumulateOp::Prod),
    );
    if me == p - 1 {
        ok(
            comm,
            "acc replace",
            w.accumulate(0, 3, &[77], AccumulateOp::Replace),
        );
    }
    ok(comm, "unlock", w.unlock(0));
    ok(comm, "barrier", comm.barrier());
    let mut got = [0i32; 4];
    ok(comm, "lock", w.lock(0, LockKind::Shared));
    ok(comm, "get", w.get(0, 0, &mut got));
    ok(comm, "unlock", w.unlock(0));
    let prod = (-2i32).pow(p as u32);
    assert_eq!(
        got,
        [10, 10 * p as i32, prod, 77],
        "rank {me}: Min/Max/Prod/Replace"
    );
    ok(comm, "barrier", comm.barrier());
}

fn exclusive_lock_excludes<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    const ROUNDS: u64 = 25;
    let w = ok(comm, "create_window", comm.create_window::<u64>(1));
    // a read-modify-write that is only correct if exclusive locks exclude
    for _ in 0..ROUNDS {
        let target = 0;
        ok(comm, "lock", w.lock(target, LockKind::Exclusive));
        let mut c = [0u64];
        ok(comm, "get", w.get(target, 0, &mut c));
        std::thread::yield_now();
        ok(comm, "put", w.put(target, 0, &[c[0] + 1]));
        ok(comm, "unlock", w.unlock(target));
    }
    ok(comm, "barrier", comm.barrier());
    if me == 0 {
        let mut c = [0u64];
        ok(comm, "lock", w.lock(0, LockKind::Shared));
        ok(comm, "get", w.get(0, 0, &mut c));
        ok(comm, "unlock", w.unlock(0));
        assert_eq!(
            c[0],
            ROUNDS * p as u64,
            "lost updates under exclusive locks"
        );
    }
    ok(comm, "barrier", comm.barrier());
}

fn nested_epochs<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let w = ok(comm, "create_window", comm.create_window::<i16>(1));
    ok(comm, "lock", w.lock(me, LockKind::Exclusive));
    ok(
        comm,
        "with_local_mut",
        w.with_local_mut(|s| s[0] = me as i16 + 1),
    );
    ok(comm, "unlock", w.unlock(me));
    ok(comm, "barrier", comm.barrier());
    // shared locks on every target at once, then read them all
    for t in 0..p {
        ok(comm, "lock", w.lock(t, LockKind::Shared));
    }
    for t in (0..p).rev() {
        let mut v = [0i16];
        ok(comm, "get", w.get(t, 0, &mut v));
        assert_eq!(v[0], t as i16 + 1);
        ok(comm, "flush", w.flush(t));
    }
    for t in 0..p {
        ok(comm, "unlock", w.unlock(t));
    }
    ok(comm, "barrier", comm.barrier());
}

fn fence_epochs<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let w = ok(comm, "create_window", comm.create_window::<f32>(2 * p));
    ok(comm, "fence", w.fence());
    // no locks needed inside a fence epoch; the put and the accumulate go
    // to different elements (a put and an accumulate to one element in one
    // epoch race: MPI does not order them)
    let t = (me + 1) % p;
    ok(comm, "put", w.put(t, me, &[me as f32 + 0.5]));
    ok(
        comm,
        "accumulate",
        w.accumulate(0, p + me, &[1.0], AccumulateOp::Sum),
    );
    ok(comm, "fence", w.fence());
    // no local views in a fence epoch: others may write the part unlocked
    expect_err(
        comm,
        "with_local in fence epoch",
        w.with_local(|_| ()),
        |e| matches!(e, Error::EpochMismatch(_)),
    );
    let mut local = vec![0.0f32; 2 * p];
    ok(comm, "get own part", w.get(me, 0, &mut local));
    let prev = (me + p - 1) % p;
    let mut expect = vec![0.0f32; 2 * p];
    expect[prev] += prev as f32 + 0.5;
    if me == 0 {
        expect[p..].iter_mut().for_each(|x| *x += 1.0);
    }
    assert_eq!(local, expect, "rank {me}: after fence epoch");
    ok(comm, "fence_end", w.fence_end());
    // outside the epoch again: locks required
    let mut v = [0.0f32];
    expect_err(comm, "get after fence_end", w.get(t, 0, &mut v), |e| {
        matches!(e, Error::NoEpoch { .. })
    });
    ok(comm, "barrier", comm.barrier());
}

fn epoch_errors<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let w = ok(comm, "create_window", comm.create_window::<f64>(4));
    let t = (me + 1) % p;
    let mut buf = [0.0; 2];
    let is_no_epoch = |e: &Error| matches!(e, Error::NoEpoch { target } if *target == t);
    expect_err(
        comm,
        "get outside epoch",
        w.get(t, 0, &mut buf),
        is_no_epoch,
    );
    expect_err(comm, "put outside epoch", w.put(t, 0, &buf), is_no_epoch);
    expect_err(
        comm,
        "accumulate outside epoch",
        w.accumulate(t, 0, &buf, AccumulateOp::Sum),
        is_no_epoch,
    );
    expect_err(
        comm,
        "get_runs outside epoch",
        w.get_runs(t, &[(0, 2)], &mut buf),
        is_no_epoch,
    );
    expect_err(comm, "unlock without lock", w.unlock(t), |e| {
        matches!(e, Error::NotLocked { .. })
    });
    expect_err(comm, "flush without lock", w.flush(t), |e| {
        matches!(e, Error::NotLocked { .. })
    });
    expect_err(
        comm,
        "local read without lock",
        w.with_local(|s| s.len()),
        |e| matches!(e, Error::NoEpoch { .. }),
    );
    expect_err(
        comm,
        "local write without lock",
        w.with_local_mut(|s| s.len()),
        |e| matches!(e, Error::NoEpoch { .. }),
    );
    expect_err(comm, "fence_end without fence", w.fence_end(), |e| {
        matches!(e, Error::EpochMismatch(_))
    });
    // double lock on one target, and a write view under a shared lock
    ok(comm, "lock", w.lock(me, LockKind::Shared));
    expect_err(comm, "second lock", w.lock(me, LockKind::Shared), |e| {
        matches!(e, Error::AlreadyLocked { .. })
    });
    expect_err(
        comm,
        "second lock (exclusive)",
        w.lock(me, LockKind::Exclusive),
        |e| matches!(e, Error::AlreadyLocked { .. }),
    );
    expect_err(
        comm,
        "local write under shared lock",
        w.with_local_mut(|s| s.len()),
        |e| matches!(e, Error::EpochMismatch(_)),
    );
    expect_err(comm, "fence while locked", w.fence(), |e| {
        matches!(e, Error::EpochMismatch(_))
    });
    ok(comm, "unlock", w.unlock(me));
    expect_err(comm, "double unlock", w.unlock(me), |e| {
        matches!(e, Error::NotLocked { .. })
    });
    // mixing: a lock inside a fence epoch
    ok(comm, "fence", w.fence());
    expect_err(
        comm,
        "lock in fence epoch",
        w.lock(t, LockKind::Shared),
        |e| matches!(e, Error::EpochMismatch(_)),
    );
    ok(comm, "fence_end", w.fence_end());
    // the window still works after all those errors
    ok(comm, "lock", w.lock(t, LockKind::Exclusive));
    ok(comm, "put", w.put(t, 0, &[1.0, 2.0]));
    ok(comm, "unlock", w.unlock(t));
    ok(comm, "barrier", comm.barrier());
}

fn bounds_errors<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let w = ok(
        comm,
        "create_window",
        comm.create_window::<u32>(test_len(me)),
    );
    let bad_rank =
        |e: &Error| matches!(e, Error::RankOutOfRange { rank, size } if *rank == p && *size == p);
    expect_err(comm, "lock bad rank", w.lock(p, LockKind::Shared), bad_rank);
    expect_err(comm, "unlock bad rank", w.unlock(p + 7), |e| {
        matches!(e, Error::RankOutOfRange { .. })
    });
    let mut buf = [0u32; 3];
    expect_err(comm, "get bad rank", w.get(p, 0, &mut buf), bad_rank);
    for t in 0..p {
        let n = test_len(t);
        ok(comm, "lock", w.lock(t, LockKind::Exclusive));
        let oob = |e: &Error| matches!(e, Error::OutOfBounds { target, window_len, .. } if *target == t && *window_len == n);
        let mut big = vec![0u32; n + 1];
        expect_err(comm, "get too long", w.get(t, 0, &mut big), oob);
        expect_err(comm, "get past end", w.get(t, n, &mut buf[..1]), oob);
        expect_err(
            comm,
            "put past end",
            w.put(t, n.saturating_sub(1), &[1, 2]),
            oob,
        );
        expect_err(
            comm,
            "accumulate past end",
            w.accumulate(t, usize::MAX, &[1], AccumulateOp::Sum),
            oob,
        );
        expect_err(
            comm,
            "put_runs past end",
            w.put_runs(t, &[(0, 0), (n, 1)], &[1]),
            oob,
        );
        expect_err(
            comm,
            "get_runs length mismatch",
            w.get_runs(t, &[(0, 1)], &mut buf),
            |e| matches!(e, Error::ShapeMismatch { .. }),
        );
        expect_err(
            comm,
            "runs overflowing usize",
            w.get_runs(t, &[(0, usize::MAX), (0, 2)], &mut buf[..1]),
            |e| matches!(e, Error::ShapeMismatch { .. } | Error::OutOfBounds { .. }),
        );
        // an empty access at the end is fine
        ok(comm, "empty get", w.get(t, n, &mut []));
        ok(comm, "unlock", w.unlock(t));
    }
    ok(comm, "barrier", comm.barrier());
}

fn roundtrip<T: Element, C: OneSidedComm>(comm: &C, vals: [T; 3]) {
    let (me, p) = (comm.rank(), comm.size());
    let w = ok(comm, "create_window", comm.create_window::<T>(3));
    let t = (me + 1) % p;
    ok(comm, "lock", w.lock(t, LockKind::Exclusive));
    ok(comm, "put", w.put(t, 0, &vals[..2]));
    ok(comm, "unlock", w.unlock(t));
    ok(comm, "barrier", comm.barrier());
    ok(comm, "lock", w.lock(0, LockKind::Exclusive));
    ok(
        comm,
        "accumulate",
        w.accumulate(0, 2, &[vals[2]], AccumulateOp::Sum),
    );
    ok(comm, "unlock", w.unlock(0));
    ok(comm, "barrier", comm.barrier());
    let mut got = [T::default(); 3];
    ok(comm, "lock", w.lock(me, LockKind::Shared));
    ok(comm, "get", w.get(me, 0, &mut got));
    ok(comm, "unlock", w.unlock(me));
    let mut sum = T::ZERO;
    for _ in 0..p {
        sum = T::combine(AccumulateOp::Sum, sum, vals[2]);
    }
    let third = if me == 0 { sum } else { T::ZERO };
    assert_eq!(
        got,
        [vals[0], vals[1], third],
        "rank {me}: {:?} roundtrip",
        T::KIND
    );
    ok(comm, "barrier", comm.barrier());
}

fn all_element_kinds<C: OneSidedComm>(comm: &C) {
    roundtrip::<i8, C>(comm, [-5, 7, 3]);
    roundtrip::<i16, C>(comm, [-300, 301, 100]);
    roundtrip::<i32, C>(comm, [i32::MIN, i32::MAX, -9]);
    roundtrip::<i64, C>(comm, [i64::MIN, i64::MAX, 1 << 40]);
    roundtrip::<isize, C>(comm, [-1, 1, 11]);
    roundtrip::<u8, C>(comm, [0, 255, 200]);
    roundtrip::<u16, C>(comm, [1, u16::MAX, 9]);
    roundtrip::<u32, C>(comm, [2, u32::MAX, 7]);
    roundtrip::<u64, C>(comm, [3, u64::MAX, u64::MAX / 3]);
    roundtrip::<usize, C>(comm, [4, usize::MAX, 5]);
    roundtrip::<f32, C>(comm, [-1.5, f32::MAX, 0.125]);
    roundtrip::<f64, C>(comm, [f64::MIN_POSITIVE, -2.5e300, 0.375]);
}

/// One rank still holds a lock when all call `fence`: every rank gets an
/// error (none waits alone in the fence) and the window stays usable.
fn fence_disagreement<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let w = ok(comm, "create_window", comm.create_window::<u16>(2));
    let culprit = p - 1;
    if me == culprit {
        ok(comm, "lock", w.lock(0, LockKind::Shared));
    }
    let r = w.fence();
    if me == culprit {
        expect_err(comm, "fence with a lock held", r, |e| {
            matches!(e, Error::EpochMismatch(_))
        });
        ok(comm, "unlock", w.unlock(0));
    } else {
        expect_err(
            comm,
            "fence with a lock held elsewhere",
            r,
            |e| matches!(e, Error::PeerFailed { rank, reason } if *rank == culprit && reason.contains("passive-target lock")),
        );
    }
    // no fence epoch is open anywhere: a lock works, then a real fence
    ok(comm, "lock", w.lock(me, LockKind::Exclusive));
    ok(comm, "unlock", w.unlock(me));
    ok(comm, "fence", w.fence());
    ok(comm, "put", w.put((me + 1) % p, 0, &[7]));
    ok(comm, "fence", w.fence());
    ok(comm, "fence_end", w.fence_end());
    expect_err(comm, "fence_end twice", w.fence_end(), |e| {
        matches!(e, Error::EpochMismatch(_))
    });
    ok(comm, "barrier", comm.barrier());
}

/// Ranks in different fence steps (one `fence_end` against the others'
/// `fence`), or fencing different windows, get an `Err` on every rank and
/// nothing changes: no rank goes on into an epoch the others did not open
/// (where its writes could land under another rank's local view).
fn fence_steps_must_match<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    if p == 1 {
        return; // one rank is always in step with itself
    }
    let mismatch = |e: &Error| matches!(e, Error::EpochMismatch(m) if m.contains("same"));
    let w = ok(comm, "create_window", comm.create_window::<u16>(2));
    ok(comm, "fence", w.fence());
    let r = if me == 0 { w.fence_end() } else { w.fence() };
    expect_err(comm, "fence_end against fence", r, mismatch);
    // the epoch is still open everywhere, and the fence counts in step
    ok(comm, "put in the epoch", w.put((me + 1) % p, 0, &[3]));
    ok(comm, "fence", w.fence());
    ok(comm, "fence_end", w.fence_end());
    // two windows: rank 0 fences one, the others the other
    let (a, b) = (
        ok(comm, "create_window a", comm.create_window::<u16>(2)),
        ok(comm, "create_window b", comm.create_window::<u16>(2)),
    );
    let r = if me == 0 { a.fence() } else { b.fence() };
    expect_err(comm, "fences of two windows", r, mismatch);
    for w in [&a, &b] {
        assert!(ok(comm, "lock", w.lock(me, LockKind::Shared).map(|_| true)));
        ok(comm, "unlock", w.unlock(me));
        ok(comm, "fence", w.fence());
        ok(comm, "fence_end", w.fence_end());
    }
    ok(comm, "barrier", comm.barrier());
}
