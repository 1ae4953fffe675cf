//! Checks of [`crate::Slice`]: every range form of `s!`, reads against the
//! serial array, writes and accumulates through the cached plan, bad
//! ranges and lengths.

use super::array::grid_2d;
use super::{expect_err, ok, Check};
use crate::comm::{AccumulateOp, OneSidedComm};
use crate::error::Error;
use crate::{s, DistArray};

/// The slice checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![("slice_read_write", slice_read_write::<C>)]
}

fn slice_read_write<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let (m, n) = (7, 6);
    let f = |i: usize, j: usize| (i * 10 + j) as i32;
    let a = ok(
        comm,
        "with_grid",
        DistArray::<i32, C, 2>::with_grid(comm.clone(), grid_2d(p), [m, n]),
    );
    ok(
        comm,
        "fill",
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| f(i, j))),
    );
    ok(comm, "barrier", a.barrier());
    let cases = [
        (s![1..3, ..], [1..3, 0..n]),
        (s![..=2, 4..], [0..3, 4..n]),
        (s![5, ..4], [5..6, 0..4]),
        (s![.., 2..=2], [0..m, 2..3]),
        (s![2..2, ..], [2..2, 0..n]),
    ];
    for (ranges, expect) in &cases {
        let sl = ok(comm, "slice", a.slice(*ranges));
        assert_eq!(sl.block().ranges(), expect);
        let got = ok(comm, "read", sl.read());
        for ([i, j], v) in got.iter() {
            assert_eq!(v, f(i, j), "rank {me}: slice {expect:?} at [{i}, {j}]");
        }
        assert_eq!(got.as_slice().len(), sl.len());
        // reading again through the same plan gives the same
        assert_eq!(ok(comm, "read again", sl.read()), got);
    }
    // the last rank writes a column through a slice, everyone sees it
    let col = ok(comm, "slice", a.slice(s![.., 3]));
    ok(comm, "barrier", a.barrier());
    if me == p - 1 {
        let vals: Vec<i32> = (0..m as i32).map(|i| -i).collect();
        ok(comm, "write", col.write(&vals));
    }
    ok(comm, "barrier", a.barrier());
    for i in 0..m {
        assert_eq!(ok(comm, "get", a.get([i, 3])), -(i as i32));
    }
    ok(comm, "barrier", a.barrier());
    // every rank adds into one row slice at once
    let row = ok(comm, "slice", a.slice(s![6, ..]));
    ok(
        comm,
        "accumulate",
        row.accumulate(&[1; 6], AccumulateOp::Sum),
    );
    ok(comm, "barrier", a.barrier());
    let after = ok(comm, "read", row.read());
    for ([i, j], v) in after.iter() {
        let before = if j == 3 { -(i as i32) } else { f(i, j) };
        assert_eq!(v, before + p as i32, "rank {me}: [{i}, {j}]");
    }
    // bad ranges and lengths
    let bad_block = |e: &Error| matches!(e, Error::InvalidBlock { .. });
    expect_err(
        comm,
        "past the end",
        a.slice(s![0..8, ..]).map(|_| ()),
        bad_block,
    );
    expect_err(
        comm,
        "reversed",
        a.slice(s![std::ops::Range { start: 3, end: 2 }, ..])
            .map(|_| ()),
        bad_block,
    );
    expect_err(
        comm,
        "index past the end",
        a.slice(s![.., 6]).map(|_| ()),
        bad_block,
    );
    expect_err(comm, "wrong length", row.write(&[0; 5]), |e| {
        matches!(e, Error::ShapeMismatch { .. })
    });
    ok(comm, "barrier", comm.barrier());
}
