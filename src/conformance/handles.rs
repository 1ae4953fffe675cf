//! Checks that non-blocking block handles ([`crate::pending`]) never make
//! ranks wait for each other in a cycle (issue 21): two ranks starting
//! handles on two arrays towards one owner in opposite orders, a blocking
//! write while a handle is in flight, and leaked handles. Each check either
//! completes or returns an `Err` on every rank; on a backend that breaks the
//! rule it hangs (MPI, Lamellar) or reports [`Error::Deadlock`] (threaded).

use super::{expect_err, ok, Check};
use crate::array::DistArray;
use crate::block::{Block, GlobalBlock};
use crate::comm::{AccumulateOp, OneSidedComm};
use crate::error::Error;

/// The handle checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("crossing_handles", crossing_handles::<C>),
        (
            "leaked_handle_does_not_hang",
            leaked_handle_does_not_hang::<C>,
        ),
    ]
}

/// Two zeroed 1-D arrays of `i64` with 4 elements per rank, and the block
/// of the last rank's part (the common target).
fn two_arrays<C: OneSidedComm>(comm: &C) -> (DistArray<i64, C, 1>, DistArray<i64, C, 1>, Block<1>) {
    let p = comm.size();
    let a = ok(
        comm,
        "new",
        DistArray::<i64, C, 1>::new(comm.clone(), [4 * p]),
    );
    let b = ok(
        comm,
        "new",
        DistArray::<i64, C, 1>::new(comm.clone(), [4 * p]),
    );
    let [part] = ok(comm, "local_indices", a.local_indices(p - 1));
    (a, b, Block::new([part]))
}

/// Local work between a start and the next call: long enough that both
/// starters hold their first handle before either makes its second write
/// (the interleaving that crosses the locks), without any communication.
fn hold() {
    std::thread::sleep(std::time::Duration::from_millis(100));
}

fn ones(blk: &Block<1>) -> GlobalBlock<i64, 1> {
    GlobalBlock::from_vec(blk.clone(), vec![1; blk.len()]).expect("length matches")
}

/// Every element of `x` is `inside` in `blk` and 0 elsewhere.
fn assert_values<C: OneSidedComm>(comm: &C, x: &DistArray<i64, C, 1>, blk: &Block<1>, inside: i64) {
    let all = ok(comm, "to_vec", x.to_vec());
    for (i, v) in all.iter().enumerate() {
        let want = if blk.contains([i]) { inside } else { 0 };
        assert_eq!(*v, want, "rank {}: element {i}", comm.rank());
    }
}

/// The program of issue 21: ranks 0 and 1 each start a `Sum` handle on two
/// arrays whose block is owned by the last rank, in opposite orders (rank
/// 0: A then B; rank 1: B then A), then wait for both. Each handle locks
/// the owner exclusively, so if the second start waited for its lock while
/// the first handle holds the other array's, the two ranks would wait for
/// each other forever. The second start may be refused
/// ([`Error::HandleInFlight`], then the rank writes after its first wait),
/// never hang. Then the same with a *blocking* `put_block` as the second
/// write while the first handle is in flight. Meanwhile the owner reads its
/// part through local views. The sums are exact at the end.
fn crossing_handles<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let (a, b, blk) = two_arrays(comm);
    let starters = p.min(2);
    let owner = p - 1;
    ok(comm, "barrier", a.barrier());
    // round 1: start, start, wait, wait
    if me < starters {
        let (first, second) = if me == 0 { (&a, &b) } else { (&b, &a) };
        let h1 = ok(
            comm,
            "first put_block_start",
            first.put_block_start(ones(&blk), AccumulateOp::Sum),
        );
        hold();
        let h2 = match second.put_block_start(ones(&blk), AccumulateOp::Sum) {
            Ok(h) => Some(h),
            Err(Error::HandleInFlight(_)) => None,
            Err(e) => panic!("rank {me}: second put_block_start: unexpected error: {e}"),
        };
        let back = ok(comm, "first wait", h1.wait());
        assert_eq!(back.as_slice(), ones(&blk).as_slice(), "rank {me}");
        match h2 {
            Some(h) => drop(ok(comm, "second wait", h.wait())),
            None => ok(
                comm,
                "put_block after the refused start",
                second.put_block(&ones(&blk), AccumulateOp::Sum),
            ),
        }
    }
    if me == owner {
        // the owner's views wait for the writers' locks, never forever
        let n = ok(comm, "with_local", a.with_local(|l| l.as_slice().len()));
        let m = ok(comm, "with_local", b.with_local(|l| l.as_slice().len()));
        assert_eq!((n, m), (blk.len(), blk.len()));
    }
    ok(comm, "barrier", a.barrier());
    assert_values(comm, &a, &blk, starters as i64);
    assert_values(comm, &b, &blk, starters as i64);
    ok(comm, "barrier", a.barrier());
    // round 2: start, then a blocking write to the same owner on the other
    // array while the handle is in flight, then wait
    if me < starters {
        let (first, second) = if me == 0 { (&a, &b) } else { (&b, &a) };
        let h = ok(
            comm,
            "put_block_start",
            first.put_block_start(ones(&blk), AccumulateOp::Sum),
        );
        hold();
        ok(
            comm,
            "put_block while a handle is in flight",
            second.put_block(&ones(&blk), AccumulateOp::Sum),
        );
        drop(ok(comm, "wait", h.wait()));
    }
    ok(comm, "barrier", a.barrier());
    assert_values(comm, &a, &blk, 2 * starters as i64);
    assert_values(comm, &b, &blk, 2 * starters as i64);
    ok(comm, "barrier", a.barrier());
}

/// A leaked handle (`mem::forget`) hangs no other rank: rank 0 leaks a
/// `Sum` handle that locks the last rank's part exclusively, rank 1 writes
/// the same part with a blocking `put_block` and the owner opens a view of
/// it — both wait for the leaked lock — and every rank then enters a
/// barrier. The leaked write is complete (and visible) after the barrier,
/// and rank 0 can start handles again. Finally a leaked read is followed
/// by the collective drop of its array.
fn leaked_handle_does_not_hang<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let (a, b, blk) = two_arrays(comm);
    let owner = p - 1;
    ok(comm, "barrier", a.barrier());
    if me == 0 {
        std::mem::forget(ok(
            comm,
            "put_block_start",
            a.put_block_start(ones(&blk), AccumulateOp::Sum),
        ));
        // the leaked handle keeps this rank's slot until its next call
        // that may wait for another rank
        expect_err(
            comm,
            "get_block_start after a leaked handle",
            b.get_block_start(&blk).map(|_| ()),
            |e| matches!(e, Error::HandleInFlight(_)),
        );
    }
    if me == 1 {
        ok(
            comm,
            "put_block",
            a.put_block(&ones(&blk), AccumulateOp::Sum),
        );
    }
    if me == owner {
        ok(comm, "with_local", a.with_local(|l| l.as_slice().len()));
    }
    ok(comm, "barrier", comm.barrier());
    assert_values(comm, &a, &blk, p.min(2) as i64);
    ok(comm, "barrier", a.barrier());
    if me == 0 {
        let got = ok(comm, "get_block_start", b.get_block_start(&blk));
        let got = ok(comm, "wait", got.wait());
        assert!(got.as_slice().iter().all(|&v| v == 0), "rank {me}");
        std::mem::forget(ok(comm, "get_block_start", a.get_block_start(&blk)));
    }
    drop(a);
    ok(comm, "barrier", b.barrier());
}
