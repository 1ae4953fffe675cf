//! Checks of blocks, ghosts, redistribution and filter, including the port
//! of MPIArrays.jl's "ArrayBlock" test set and RMA call counts (through
//! [`CountingComm`] over the backend under test).

use std::ops::Range;

use super::array::grid_2d;
use super::{expect_err, ok, Check, SplitMix};
use crate::block::{Block, GlobalBlock};
use crate::comm::{AccumulateOp, OneSidedComm};
use crate::counting::CountingComm;
use crate::error::Error;
use crate::ghost::GhostedBlock;
use crate::partition::{distribute, linear_offset};
use crate::DistArray;

/// The block-level checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("array_block", array_block::<C>),
        ("block_call_counts", block_call_counts::<C>),
        ("put_block_replace_and_sum", put_block_replace_and_sum::<C>),
        ("nonblocking_blocks", nonblocking_blocks::<C>),
        (
            "ghost_call_counts_and_reuse",
            ghost_call_counts_and_reuse::<C>,
        ),
        (
            "redistribute_tiles_columns_rows",
            redistribute_tiles_columns_rows::<C>,
        ),
        ("filter_keeps_order", filter_keeps_order::<C>),
        ("block_bad_input", block_bad_input::<C>),
    ]
}

fn value(i: usize, j: usize) -> f64 {
    (i * 1000 + j) as f64 + 0.25
}

/// MPIArrays.jl's ArrayBlock test: a random-sized matrix on a process grid.
fn array_block<C: OneSidedComm>(comm: &C) {
    let mut rng = SplitMix(0xB10C + comm.size() as u64); // same sizes on every rank
    for _ in 0..3 {
        let shape = [rng.below(12) + 1, rng.below(12) + 1];
        let a = ok(
            comm,
            "with_grid",
            DistArray::<f64, C, 2>::with_grid(comm.clone(), grid_2d(comm.size()), shape),
        );
        ok(
            comm,
            "fill",
            a.with_local_mut(|mut l| l.fill_with(|[i, j]| value(i, j))),
        );
        ok(comm, "barrier", a.barrier());
        // getblock of the local indices equals the local part
        let own = Block::new(ok(comm, "local_indices", a.local_indices(comm.rank())));
        let gb = ok(comm, "get_block", a.get_block(&own));
        let local = ok(comm, "with_local", a.with_local(|l| l.as_slice().to_vec()));
        assert_eq!(gb.as_slice(), &local[..], "rank {}: own block", comm.rank());
        // GlobalBlock indexing by global index, over a block crossing parts
        let blk = Block::new([shape[0] / 3..shape[0], shape[1] / 2..shape[1]]);
        let gb = ok(comm, "get_block", a.get_block(&blk));
        for (idx, v) in gb.iter() {
            assert_eq!(v, value(idx[0], idx[1]));
            assert_eq!(ok(comm, "GlobalBlock::get", gb.get(idx)), v);
        }
        assert_eq!(gb.iter().count(), blk.len());
        // a GhostedBlock of every index
        let all = (0..shape[0]).flat_map(|i| (0..shape[1]).map(move |j| [i, j]));
        let mut g = ok(
            comm,
            "from_global_ids",
            GhostedBlock::from_global_ids(&a, all),
        );
        ok(comm, "ghost sync", g.sync(&a));
        assert_eq!(g.len(), shape[0] * shape[1]);
        for i in 0..shape[0] {
            for j in 0..shape[1] {
                assert_eq!(ok(comm, "get_global", g.get_global([i, j])), value(i, j));
                assert_eq!(ok(comm, "get", a.get([i, j])), value(i, j));
            }
        }
        for (slot, idx) in g.global_ids().iter().enumerate() {
            assert_eq!(g.global_to_local(*idx), Some(slot));
            assert_eq!(g.values()[slot], value(idx[0], idx[1]));
        }
        ok(comm, "barrier", a.barrier());
    }
}

fn block_call_counts<C: OneSidedComm>(comm: &C) {
    let me = comm.rank();
    let cc = CountingComm::new(comm.clone());
    let grid = grid_2d(comm.size());
    let a = ok(
        comm,
        "with_grid",
        DistArray::<i32, _, 2>::with_grid(cc.clone(), grid, [9, 10]),
    );
    ok(comm, "barrier", a.barrier());
    for blk in [
        Block::new([0..9, 0..10]),
        Block::new([2..7, 3..8]),
        Block::new([4..5, 0..10]),
        Block::new([1..9, 9..10]),
    ] {
        let plan = ok(comm, "plan", blk.plan(a.partitioning()));
        let mut remote_runs = vec![0; comm.size()];
        for t in &plan {
            if t.rank != me {
                remote_runs[t.rank] = t.runs.len();
            }
            // runs are maximal: never adjacent
            assert!(t.runs.windows(2).all(|w| w[0].0 + w[0].1 < w[1].0));
        }
        cc.reset();
        let _ = ok(comm, "get_block", a.get_block(&blk));
        let c = cc.counts();
        assert_eq!(
            c.gets, remote_runs,
            "rank {me}: gets per target for {blk:?}"
        );
        let touched = remote_runs.iter().filter(|&&n| n > 0).count();
        assert_eq!(
            c.locks_total() - c.locks[me],
            touched,
            "one epoch per remote target"
        );
        // one RMA call per remote target, however many rows the block has
        // (on MPI one operation: a derived datatype)
        let one_per_target: Vec<usize> = remote_runs.iter().map(|&n| usize::from(n > 0)).collect();
        let remote_batches = |c: &crate::counting::Counts| {
            let mut b = c.batches.clone();
            b[me] = 0;
            b
        };
        assert_eq!(
            remote_batches(&c),
            one_per_target,
            "rank {me}: RMA calls per target for {blk:?}"
        );
        cc.reset();
        let gb = GlobalBlock::zeros(blk.clone());
        ok(comm, "put_block", a.put_block(&gb, AccumulateOp::Sum));
        let c = cc.counts();
        assert_eq!(
            c.accumulates, remote_runs,
            "rank {me}: accumulates per target"
        );
        assert_eq!(
            remote_batches(&c),
            one_per_target,
            "rank {me}: accumulate calls per target for {blk:?}"
        );
        assert_eq!(c.gets_total() + c.puts_total(), 0);
    }
    // a full row block on a row partition is one run per rank
    let rows = ok(
        comm,
        "new",
        DistArray::<i32, _, 2>::new(cc.clone(), [comm.size() * 2 + 1, 7]),
    );
    cc.reset();
    let _ = ok(
        comm,
        "get_block",
        rows.get_block(&Block::full(rows.shape())),
    );
    let c = cc.counts();
    for t in 0..comm.size() {
        let n = ok(comm, "part_len", rows.partitioning().part_len(t));
        let expect = usize::from(t != me && n > 0);
        assert_eq!(
            c.gets[t], expect,
            "rank {me}: full block of rows, target {t}"
        );
    }
    ok(comm, "barrier", a.barrier());
}

fn put_block_replace_and_sum<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let shape = [2 * p + 1, 5];
    let a = ok(
        comm,
        "with_grid",
        DistArray::<i64, C, 2>::with_grid(comm.clone(), grid_2d(p), shape),
    );
    // each rank replaces a band of rows it does not necessarily own
    let bands = distribute(shape[0], p);
    let start: usize = bands[..me].iter().sum();
    let blk = Block::new([start..start + bands[me], 0..5]);
    let mut gb = GlobalBlock::zeros(blk);
    for k in 0..gb.as_slice().len() {
        gb.as_mut_slice()[k] = (me * 100 + k) as i64;
    }
    ok(comm, "barrier", a.barrier());
    ok(
        comm,
        "put_block replace",
        a.put_block(&gb, AccumulateOp::Replace),
    );
    ok(comm, "barrier", a.barrier());
    let mut serial = vec![0i64; shape[0] * shape[1]];
    for (r, &n) in bands.iter().enumerate() {
        let s: usize = bands[..r].iter().sum();
        for k in 0..n * 5 {
            serial[s * 5 + k] = (r * 100 + k) as i64;
        }
    }
    assert_eq!(
        ok(comm, "to_vec", a.to_vec()),
        serial,
        "rank {me}: after Replace"
    );
    ok(comm, "barrier", a.barrier());
    // everyone sums the same overlapping block at once
    let blk = Block::new([1..shape[0], 1..4]);
    let ones = GlobalBlock::from_vec(blk.clone(), vec![me as i64 + 1; blk.len()]).unwrap();
    ok(comm, "put_block sum", a.put_block(&ones, AccumulateOp::Sum));
    ok(comm, "barrier", a.barrier());
    let add = (p * (p + 1) / 2) as i64;
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            if blk.contains([i, j]) {
                serial[linear_offset(&shape, &[i, j])] += add;
            }
        }
    }
    assert_eq!(
        ok(comm, "to_vec", a.to_vec()),
        serial,
        "rank {me}: after Sum"
    );
    ok(comm, "barrier", a.barrier());
}

/// `get_block_start` / `put_block_start`: the same values as the blocking
/// calls, with work between start and wait; handles dropped or leaked
/// unfinished neither hang nor corrupt anything.
fn nonblocking_blocks<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let shape = [2 * p + 3, 7];
    let a = ok(
        comm,
        "with_grid",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), grid_2d(p), shape),
    );
    ok(
        comm,
        "fill",
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| value(i, j))),
    );
    ok(comm, "barrier", a.barrier());
    // a block over every part, not contiguous in most of them
    let blk = Block::new([1..shape[0] - 1, 2..6]);
    let pending = ok(comm, "get_block_start", a.get_block_start(&blk));
    let local = ok(comm, "with_local", a.with_local(|l| l.as_slice().len()));
    let got = ok(comm, "PendingGet::wait", pending.wait());
    let want = ok(comm, "get_block", a.get_block(&blk));
    assert_eq!(got, want, "rank {me}");
    assert_eq!(got.get([3, 4]).unwrap(), value(3, 4));
    assert!(local <= shape[0] * shape[1]);
    // a second handle of this rank on the communicator while one is in
    // flight is refused (no cycle of handles waiting for each other's
    // locks), not a hang; the scoped form cannot leak its handle
    let first = ok(comm, "get_block_start", a.get_block_start(&blk));
    let second = a.get_block_start(&blk);
    assert!(
        matches!(second, Err(Error::HandleInFlight(_))),
        "rank {me}: {second:?}"
    );
    drop(first); // waits and unlocks
    let (again, k) = ok(
        comm,
        "get_block_overlapped",
        a.get_block_overlapped(&blk, || 7),
    );
    assert_eq!((again, k), (want.clone(), 7));
    ok(comm, "barrier", a.barrier());
    // every rank adds its rank + 1 to one overlapping block; rank 0 also
    // replaces a band and waits later
    let ones = GlobalBlock::from_vec(blk.clone(), vec![me as f64 + 1.0; blk.len()]).unwrap();
    let back = ok(
        comm,
        "put_block_start sum",
        a.put_block_start(ones, AccumulateOp::Sum),
    );
    let back = ok(comm, "PendingPut::wait", back.wait());
    assert_eq!(back.as_slice()[0], me as f64 + 1.0, "the block comes back");
    ok(comm, "barrier", a.barrier());
    let add = (p * (p + 1) / 2) as f64;
    let all = ok(comm, "to_vec", a.to_vec());
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            let want = value(i, j) + if blk.contains([i, j]) { add } else { 0.0 };
            assert_eq!(
                all[linear_offset(&shape, &[i, j])],
                want,
                "rank {me}: ({i}, {j})"
            );
        }
    }
    ok(comm, "barrier", a.barrier());
    if me == 0 {
        let band = Block::new([0..1, 0..7]);
        let gb = GlobalBlock::from_vec(band, vec![-1.0; 7]).unwrap();
        let pending = ok(
            comm,
            "put_block_start",
            a.put_block_start(gb, AccumulateOp::Replace),
        );
        drop(pending); // waits: complete at the targets
    }
    ok(comm, "barrier", a.barrier());
    assert_eq!(ok(comm, "get", a.get([0, 6])), -1.0, "rank {me}");
    ok(comm, "barrier", a.barrier());
    // a leaked read keeps its buffer and its locks; the array's drop (every
    // rank) releases them: nothing hangs, nothing is written after the free
    let b = ok(
        comm,
        "with_grid",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), grid_2d(p), shape),
    );
    std::mem::forget(ok(comm, "get_block_start", b.get_block_start(&blk)));
    ok(comm, "barrier", comm.barrier());
    drop(b);
    // bad input: a block that does not fit, an op complex numbers lack
    expect_err(
        comm,
        "get_block_start outside",
        a.get_block_start(&Block::new([0..shape[0] + 1, 0..1]))
            .map(|_| ()),
        |e| matches!(e, Error::InvalidBlock { .. }),
    );
    ok(comm, "barrier", comm.barrier());
}

fn ghost_call_counts_and_reuse<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let cc = CountingComm::new(comm.clone());
    let n = 6 * p + 5;
    let x = ok(
        comm,
        "from_fn",
        DistArray::<f64, _, 1>::from_fn(cc.clone(), [n], |[i]| i as f64),
    );
    // a scattered, duplicated index set, different on every rank
    let mut rng = SplitMix(77 + me as u64);
    let ids: Vec<[usize; 1]> = (0..3 * n).map(|_| [rng.below(n)]).collect();
    let mut g = ok(
        comm,
        "from_global_ids",
        GhostedBlock::from_global_ids(&x, ids.iter().copied()),
    );
    cc.reset();
    ok(comm, "ghost sync", g.sync(&x));
    let first = cc.counts();
    // expected: one get per run of consecutive indices on each remote rank
    let mut uniq: Vec<usize> = ids.iter().map(|i| i[0]).collect();
    uniq.sort_unstable();
    uniq.dedup();
    assert_eq!(g.len(), uniq.len());
    let mut expect = vec![0usize; p];
    for (k, &i) in uniq.iter().enumerate() {
        let (owner, _) = x.partitioning().owner([i]).unwrap();
        let continues =
            k > 0 && uniq[k - 1] + 1 == i && x.partitioning().owner([i - 1]).unwrap().0 == owner;
        if owner != me && !continues {
            expect[owner] += 1;
        }
    }
    assert_eq!(first.gets, expect, "rank {me}: ghost gets per target");
    assert_eq!(
        first.locks_total() - first.locks[me],
        expect.iter().filter(|&&c| c > 0).count()
    );
    for &i in &uniq {
        assert_eq!(ok(comm, "get_global", g.get_global([i])), i as f64);
    }
    // owners change their values; a second sync reuses the plan
    ok(comm, "barrier", x.barrier());
    ok(comm, "map_local", x.map_local(|v| -v));
    cc.reset();
    ok(comm, "ghost sync", g.sync(&x));
    assert_eq!(
        cc.counts().gets,
        first.gets,
        "repeated sync: same plan, same calls"
    );
    for &i in &uniq {
        assert_eq!(ok(comm, "get_global", g.get_global([i])), -(i as f64));
    }
    expect_err(comm, "not a ghost", g.get_global([n + 5]), |e| {
        matches!(e, Error::InvalidArgument(_))
    });
    ok(comm, "barrier", x.barrier());
}

fn redistribute_tiles_columns_rows<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let shape = [7, 2 * p + 3];
    let a = ok(
        comm,
        "with_grid",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), grid_2d(p), shape),
    );
    ok(
        comm,
        "fill",
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| value(i, j))),
    );
    ok(comm, "barrier", a.barrier());
    let serial = ok(comm, "to_vec", a.to_vec());
    let cols = ok(comm, "redistribute_grid", a.redistribute_grid([1, p]));
    assert_eq!(cols.partitioning().grid(), [1, p]);
    assert_eq!(ok(comm, "to_vec", cols.to_vec()), serial);
    ok(
        comm,
        "check local",
        cols.with_local(|l| assert!(l.iter_global().all(|([i, j], v)| v == value(i, j)))),
    );
    let sizes = {
        let mut s = vec![0; p];
        s[p - 1] = shape[0]; // everything on the last rank
        s
    };
    let last = ok(
        comm,
        "redistribute_sizes",
        cols.redistribute_sizes([sizes, vec![shape[1]]]),
    );
    assert_eq!(ok(comm, "to_vec", last.to_vec()), serial);
    let back = ok(comm, "redistribute_default", last.redistribute_default());
    assert_eq!(back.partitioning().grid(), [p, 1]);
    assert_eq!(ok(comm, "to_vec", back.to_vec()), serial);
    // wrong sizes: every rank gets the error
    expect_err(
        comm,
        "sizes not summing to the shape",
        back.redistribute_sizes([vec![2; p], vec![shape[1]]]),
        |e| matches!(e, Error::ShapeMismatch { .. }),
    );
    expect_err(
        comm,
        "grid not matching ranks",
        back.redistribute_grid([p + 1, 1]),
        |e| matches!(e, Error::InvalidPartition(_)),
    );
    ok(comm, "barrier", a.barrier());
}

fn filter_keeps_order<C: OneSidedComm>(comm: &C) {
    let n = 5 * comm.size() + 4;
    let a = ok(
        comm,
        "from_fn",
        DistArray::<i32, C, 1>::from_fn(comm.clone(), [n], |[i]| ((i * 7) % 11) as i32),
    );
    let f = ok(comm, "filter", a.filter(|x| x % 2 == 0));
    let serial: Vec<i32> = (0..n)
        .map(|i| ((i * 7) % 11) as i32)
        .filter(|x| x % 2 == 0)
        .collect();
    assert_eq!(f.shape(), [serial.len()]);
    assert_eq!(ok(comm, "to_vec", f.to_vec()), serial);
    let none = ok(comm, "filter", a.filter(|x| x > 100));
    assert!(none.is_empty());
}

fn block_bad_input<C: OneSidedComm>(comm: &C) {
    let a = ok(
        comm,
        "new",
        DistArray::<f32, C, 2>::new(comm.clone(), [5, 4]),
    );
    let oob = |e: &Error| matches!(e, Error::IndexOutOfBounds { .. });
    let bad_block = |e: &Error| matches!(e, Error::InvalidBlock { .. });
    expect_err(
        comm,
        "block past the end",
        a.get_block(&Block::new([0..6, 0..4])),
        bad_block,
    );
    expect_err(
        comm,
        "reversed block",
        a.get_block(&Block::new([Range { start: 3, end: 2 }, 0..4])),
        bad_block,
    );
    let gb = GlobalBlock::zeros(Block::new([0..5, 2..5]));
    expect_err(
        comm,
        "block too large to exist",
        a.get_block(&Block::new([0..usize::MAX, 0..usize::MAX])),
        bad_block,
    );
    expect_err(
        comm,
        "put_block past the end",
        a.put_block(&gb, AccumulateOp::Replace),
        bad_block,
    );
    let mut buf = vec![0f32; 3];
    expect_err(
        comm,
        "buffer of the wrong size",
        a.get_block_into(&Block::new([0..2, 0..2]), &mut buf),
        |e| matches!(e, Error::ShapeMismatch { .. }),
    );
    expect_err(
        comm,
        "GlobalBlock from a wrong vec",
        GlobalBlock::from_vec(Block::new([0..2, 0..2]), vec![0f32; 3]),
        |e| matches!(e, Error::ShapeMismatch { .. }),
    );
    let gb = ok(comm, "get_block", a.get_block(&Block::new([1..3, 1..3])));
    // the error names the block's real extent [1..3, 1..3]
    expect_err(comm, "GlobalBlock index outside", gb.get([0, 0]), |e| {
        matches!(e, Error::IndexOutsideBlock { ranges, .. } if *ranges == [(1, 3), (1, 3)])
            && e.to_string().contains("[1..3, 1..3]")
    });
    let mut g = GhostedBlock::new(&a);
    expect_err(comm, "ghost push out of bounds", g.push([5, 0]), oob);
    ok(comm, "push", g.push([4, 3]));
    expect_err(comm, "ghost read before sync", g.get_global([4, 3]), |e| {
        matches!(e, Error::InvalidArgument(_))
    });
    let other = ok(
        comm,
        "new",
        DistArray::<f32, C, 2>::with_grid(comm.clone(), [1, comm.size()], [5, 4]),
    );
    if comm.size() > 1 {
        expect_err(
            comm,
            "ghost sync on another partition",
            g.sync(&other),
            |e| matches!(e, Error::InvalidPartition(_)),
        );
    }
    ok(comm, "barrier", a.barrier());
}
