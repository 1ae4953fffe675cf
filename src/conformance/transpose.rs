//! Checks of the distributed transpose ([`crate::transpose`]): every pair
//! of partitions (rows, columns, a 2-D grid, uneven explicit part sizes
//! with a rank that owns nothing), `f64`, `i32` and `Complex64` compared
//! exactly, the accumulating form through a reused plan (the PRK kernel),
//! errors on every rank, and one message (or one `get`) per rank pair
//! that shares data.

use super::array::grid_2d;
use super::{expect_err, ok, Check};
use crate::comm::{Element, OneSidedComm};
use crate::counting::CountingComm;
use crate::error::Error;
use crate::partition::ContinuousPartitioning;
use crate::{Complex64, DistArray, TransposePlan};

/// The transpose checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("transpose_partitions", transpose_partitions::<C>),
        ("transpose_accumulate", transpose_accumulate::<C>),
        ("transpose_errors", transpose_errors::<C>),
        ("transpose_messages", transpose_messages::<C>),
    ]
}

/// `n` split into `p` uneven parts: the first part empty when `p > 1`,
/// the others growing (1, 2, 3, ... with the remainder in the last).
fn uneven(n: usize, p: usize) -> Vec<usize> {
    if p == 1 {
        return vec![n];
    }
    let mut v = vec![0usize; p];
    let mut left = n;
    for (k, x) in v.iter_mut().enumerate().skip(1).take(p - 2) {
        let want = k.min(left);
        *x = want;
        left -= want;
    }
    v[p - 1] = left;
    v
}

/// The partitions of a `shape` every check runs through, with a name:
/// rows, columns, a 2-D grid, uneven rows with rank 0 owning nothing,
/// uneven columns with the last rank owning nothing.
fn partitions(shape: [usize; 2], p: usize) -> Vec<(&'static str, ContinuousPartitioning<2>)> {
    let [n0, n1] = shape;
    let mut cols_uneven = uneven(n1, p);
    cols_uneven.reverse();
    let parts = [
        ("rows", ContinuousPartitioning::with_grid(shape, [p, 1])),
        ("cols", ContinuousPartitioning::with_grid(shape, [1, p])),
        ("grid", ContinuousPartitioning::with_grid(shape, grid_2d(p))),
        (
            "uneven rows",
            ContinuousPartitioning::from_part_sizes([uneven(n0, p), vec![n1]]),
        ),
        (
            "uneven cols",
            ContinuousPartitioning::from_part_sizes([vec![n0], cols_uneven]),
        ),
    ];
    parts
        .into_iter()
        .map(|(name, part)| (name, part.expect("valid partition")))
        .collect()
}

/// Transposes `a[i, j] = f(i, j)` of `shape` into `out` for every pair of
/// partitions and compares every element exactly with `f(i, j)` at `[j, i]`.
fn all_pairs<T: Element, C: OneSidedComm>(
    comm: &C,
    shape: [usize; 2],
    f: impl Fn(usize, usize) -> T,
) {
    let p = comm.size();
    let [n0, n1] = shape;
    for (an, ap) in partitions(shape, p) {
        let a = ok(
            comm,
            "a",
            DistArray::<T, C, 2>::with_partitioning(comm.clone(), ap),
        );
        ok(
            comm,
            "fill a",
            a.with_local_mut(|mut l| l.fill_with(|[i, j]| f(i, j))),
        );
        for (bn, bp) in partitions([n1, n0], p) {
            let mut b = ok(
                comm,
                "b",
                DistArray::<T, C, 2>::with_partitioning(comm.clone(), bp),
            );
            // stale values everywhere: the transpose must overwrite them all
            ok(comm, "fill b", b.fill(T::ONE + T::ONE));
            ok(comm, "transpose_into", a.transpose_into(&mut b));
            let got = ok(comm, "to_vec", b.to_vec());
            for j in 0..n1 {
                for i in 0..n0 {
                    assert_eq!(
                        got[j * n0 + i],
                        f(i, j),
                        "rank {}: {an} -> {bn}, {shape:?}, element [{j}, {i}]",
                        comm.rank()
                    );
                }
            }
            ok(comm, "barrier", b.barrier());
        }
    }
}

/// Every pair of partitions, three element types, a small shape and one
/// larger than the 32 x 32 tiles of the local transpose.
fn transpose_partitions<C: OneSidedComm>(comm: &C) {
    all_pairs::<f64, C>(comm, [7, 5], |i, j| (100 * i + j) as f64 + 0.25);
    all_pairs::<i32, C>(comm, [6, 9], |i, j| -(100 * i as i32) - j as i32);
    all_pairs::<Complex64, C>(comm, [5, 4], |i, j| {
        Complex64::new(i as f64 - 0.5, j as f64 * 3.0)
    });
    all_pairs::<f64, C>(comm, [70, 45], |i, j| (1000 * i + j) as f64);
    // the new-array form
    let a = ok(
        comm,
        "from_fn",
        DistArray::<i32, C, 2>::from_fn(comm.clone(), [3, 8], |[i, j]| (10 * i + j) as i32),
    );
    let t = ok(comm, "transpose", a.transpose());
    assert_eq!(t.shape(), [8, 3]);
    let got = ok(comm, "to_vec", t.to_vec());
    for (k, v) in got.iter().enumerate() {
        let (j, i) = (k / 3, k % 3);
        assert_eq!(*v, (10 * i + j) as i32, "rank {}", comm.rank());
    }
}

/// `out += alpha · aᵀ` over every pair of partitions (one-shot, `alpha` =
/// 2), and the PRK kernel `B += Aᵀ; A += 1` through one plan, three
/// iterations, for `f64`, `i32` and `Complex64`.
fn transpose_accumulate<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let shape = [6, 5];
    let [n0, n1] = shape;
    let f = |i: usize, j: usize| (10 * i + j) as f64;
    let g = |j: usize, i: usize| (1000 + 7 * j + i) as f64;
    for (an, ap) in partitions(shape, p) {
        let a = ok(
            comm,
            "a",
            DistArray::<f64, C, 2>::with_partitioning(comm.clone(), ap),
        );
        ok(
            comm,
            "fill a",
            a.with_local_mut(|mut l| l.fill_with(|[i, j]| f(i, j))),
        );
        for (bn, bp) in partitions([n1, n0], p) {
            let mut b = ok(
                comm,
                "b",
                DistArray::<f64, C, 2>::with_partitioning(comm.clone(), bp),
            );
            ok(
                comm,
                "fill b",
                b.with_local_mut(|mut l| l.fill_with(|[j, i]| g(j, i))),
            );
            ok(
                comm,
                "transpose_add_into",
                a.transpose_add_into(&mut b, 2.0),
            );
            let got = ok(comm, "to_vec", b.to_vec());
            for j in 0..n1 {
                for i in 0..n0 {
                    assert_eq!(
                        got[j * n0 + i],
                        g(j, i) + 2.0 * f(i, j),
                        "rank {}: {an} -> {bn}, element [{j}, {i}]",
                        comm.rank()
                    );
                }
            }
            ok(comm, "barrier", b.barrier());
            // the PRK kernel through one plan
            ok(comm, "zero b", b.fill(0.0));
            let mut plan = ok(comm, "plan", TransposePlan::new(&a, &b));
            for _ in 0..3 {
                ok(comm, "transpose_add", plan.transpose_add(&a, &mut b, 1.0));
                ok(comm, "add_scalar", a.add_scalar(1.0));
            }
            ok(comm, "reset a", a.add_scalar(-3.0));
            let got = ok(comm, "to_vec", b.to_vec());
            for j in 0..n1 {
                for i in 0..n0 {
                    assert_eq!(
                        got[j * n0 + i],
                        3.0 * f(i, j) + 3.0,
                        "rank {}: PRK {an} -> {bn}, element [{j}, {i}]",
                        comm.rank()
                    );
                }
            }
            ok(comm, "barrier", b.barrier());
            // the same kernel with A's update fused into the transpose:
            // every element of A updated exactly once per call
            ok(comm, "zero b", b.fill(0.0));
            for _ in 0..3 {
                ok(
                    comm,
                    "transpose_add_map",
                    plan.transpose_add_map(&a, &mut b, 1.0, |v| 2.0 * v + 1.0),
                );
            }
            // the plan's calls complete this rank's part only
            ok(comm, "barrier", b.barrier());
            let got = ok(comm, "to_vec", b.to_vec());
            let got_a = ok(comm, "to_vec a", a.to_vec());
            for i in 0..n0 {
                for j in 0..n1 {
                    // A: v, 2v + 1, 4v + 3, then 8v + 7; B: the sum of the first three
                    let v = f(i, j);
                    let label = format!("rank {}: fused {an} -> {bn}, [{i}, {j}]", comm.rank());
                    assert_eq!(got[j * n0 + i], 7.0 * v + 4.0, "{label}");
                    assert_eq!(got_a[i * n1 + j], 8.0 * v + 7.0, "{label}");
                }
            }
            // every rank has read A before anyone resets it
            ok(comm, "barrier", b.barrier());
            ok(comm, "reset a", a.map_local(|v| (v - 7.0) / 8.0));
        }
    }
    // integers (wrapping) and complex numbers, columns -> grid
    let a = ok(
        comm,
        "a i32",
        DistArray::<i32, C, 2>::with_grid(comm.clone(), [1, p], [5, 7]),
    );
    ok(
        comm,
        "fill",
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| (10 * i + j) as i32)),
    );
    let mut b = ok(
        comm,
        "b i32",
        DistArray::<i32, C, 2>::with_grid(comm.clone(), grid_2d(p), [7, 5]),
    );
    ok(comm, "fill", b.fill(i32::MAX));
    ok(
        comm,
        "transpose_add_into i32",
        a.transpose_add_into(&mut b, -3),
    );
    let got = ok(comm, "to_vec", b.to_vec());
    for (k, v) in got.iter().enumerate() {
        let (j, i) = (k / 5, k % 5);
        assert_eq!(*v, i32::MAX.wrapping_add(-3 * (10 * i + j) as i32));
    }
    let z = |i: usize, j: usize| Complex64::new(i as f64, -(j as f64));
    let a = ok(
        comm,
        "a c64",
        DistArray::<Complex64, C, 2>::from_fn(comm.clone(), [4, 6], |[i, j]| z(i, j)),
    );
    let mut b = ok(
        comm,
        "b c64",
        DistArray::<Complex64, C, 2>::with_grid(comm.clone(), [1, p], [6, 4]),
    );
    ok(comm, "fill", b.fill(Complex64::new(1.0, 1.0)));
    let alpha = Complex64::new(0.0, 1.0);
    ok(
        comm,
        "transpose_add_into c64",
        a.transpose_add_into(&mut b, alpha),
    );
    let got = ok(comm, "to_vec", b.to_vec());
    for (k, v) in got.iter().enumerate() {
        let (j, i) = (k / 4, k % 4);
        assert_eq!(*v, Complex64::new(1.0, 1.0) + alpha * z(i, j));
    }
}

/// A wrong output shape, a plan used with arrays partitioned otherwise:
/// `Err` on every rank, and the arrays stay usable.
fn transpose_errors<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let a = ok(
        comm,
        "a",
        DistArray::<f64, C, 2>::from_fn(comm.clone(), [4, 3], |[i, j]| (i + j) as f64),
    );
    let mut same = ok(comm, "same shape", a.similar::<f64>());
    expect_err(
        comm,
        "transpose_into a 4 x 3 output",
        a.transpose_into(&mut same),
        |e| matches!(e, Error::OperandShape { expected, .. } if expected == &vec![3, 4]),
    );
    expect_err(
        comm,
        "transpose_add_into a 4 x 3 output",
        a.transpose_add_into(&mut same, 1.0),
        |e| matches!(e, Error::OperandShape { .. }),
    );
    expect_err(
        comm,
        "TransposePlan::new",
        TransposePlan::new(&a, &same),
        |e| matches!(e, Error::OperandShape { .. }),
    );
    // a plan made for rows -> rows used with a column-split output
    let rows = ok(
        comm,
        "rows",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), [p, 1], [3, 4]),
    );
    let mut plan = ok(comm, "plan", TransposePlan::new(&a, &rows));
    let mut cols = ok(
        comm,
        "cols",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), [1, p], [3, 4]),
    );
    if p > 1 {
        expect_err(
            comm,
            "plan with another partition",
            plan.transpose(&a, &mut cols),
            |e| matches!(e, Error::InvalidPartition(_)),
        );
    }
    // a refused local view on rank 0 only (the caller holds its part of A):
    // rank 0 reports the view's error, every rank it sends a tile to an
    // error (`PeerFailed` with messages), nobody waits forever, and the
    // plan works afterwards; split by rows (tiles packed) and by columns
    // (tiles sent from the part itself)
    for grid in [[p, 1], [1, p]].into_iter().filter(|_| p > 1) {
        let me = comm.rank();
        let a = ok(
            comm,
            "a 8 x 8",
            DistArray::<f64, C, 2>::with_grid(comm.clone(), grid, [8, 8]),
        );
        ok(
            comm,
            "fill a 8 x 8",
            a.with_local_mut(|mut l| l.fill_with(|[i, j]| (8 * i + j) as f64)),
        );
        let mut b = ok(comm, "b 8 x 8", a.similar::<f64>());
        let mut plan = ok(comm, "plan 8 x 8", TransposePlan::new(&a, &b));
        let r = if me == 0 {
            a.with_local_mut(|_| plan.transpose_add_map(&a, &mut b, 1.0, |v| v + 1.0))
                .and_then(|r| r)
        } else {
            plan.transpose_add_map(&a, &mut b, 1.0, |v| v + 1.0)
        };
        match r {
            Err(Error::PeerFailed { rank: 0, .. }) if me != 0 => {}
            // the staging path votes: the view's error on every rank
            Err(_) if me == 0 || comm.messages().is_none() => {}
            other => {
                panic!("rank {me}, grid {grid:?}: transpose with rank 0's view refused: {other:?}")
            }
        }
        ok(comm, "barrier", a.barrier());
        ok(
            comm,
            "fill a",
            a.with_local_mut(|mut l| l.fill_with(|[i, j]| (8 * i + j) as f64)),
        );
        ok(comm, "zero b", b.fill(0.0));
        ok(
            comm,
            "transpose after the error",
            plan.transpose(&a, &mut b),
        );
        // the plan's calls complete this rank's part only: synchronise
        // before reading another rank's
        ok(comm, "barrier", b.barrier());
        assert_eq!(ok(comm, "get", b.get([7, 2])), 23.0);
    }
    // still usable after the errors
    let mut rows = rows;
    ok(comm, "plan.transpose", plan.transpose(&a, &mut rows));
    ok(comm, "barrier", rows.barrier());
    assert_eq!(ok(comm, "get", rows.get([2, 3])), 5.0);
    ok(comm, "transpose_into cols", a.transpose_into(&mut cols));
    assert_eq!(ok(comm, "get", cols.get([1, 3])), 4.0);
}

/// The ranks whose part of `b` (shape `[n1, n0]`) needs some of `me`'s part
/// of `a` (other than `me`), computed element by element.
fn pairs_brute_force(
    a: &ContinuousPartitioning<2>,
    b: &ContinuousPartitioning<2>,
    me: usize,
) -> Vec<usize> {
    let [rows, cols] = a.part_range(me).expect("rank in range");
    let mut out = Vec::new();
    for i in rows {
        for j in cols.clone() {
            let (s, _) = b.owner([j, i]).expect("in range");
            if s != me && !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Each call sends one message to each rank that shares data with this
/// rank (rows -> rows at P = 2: one per pair) in one neighbour exchange,
/// and nothing else; without neighbour messages, one `get` per source rank
/// and two votes.
fn transpose_messages<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let me = comm.rank();
    for exchange in [true, false] {
        let cc = if exchange && comm.messages().is_some() {
            CountingComm::new(comm.clone())
        } else {
            CountingComm::without_exchange(comm.clone())
        };
        let messages = cc.messages().is_some();
        let shape = [8, 12];
        for (an, ap) in partitions(shape, p) {
            let a = ok(
                comm,
                "a",
                DistArray::<f64, _, 2>::with_partitioning(cc.clone(), ap.clone()),
            );
            ok(
                comm,
                "fill",
                a.with_local_mut(|mut l| l.fill_with(|[i, j]| (i * 12 + j) as f64)),
            );
            for (bn, bp) in partitions([12, 8], p) {
                let mut b = ok(
                    comm,
                    "b",
                    DistArray::<f64, _, 2>::with_partitioning(cc.clone(), bp.clone()),
                );
                let mut plan = ok(comm, "plan", TransposePlan::new(&a, &b));
                let dests = pairs_brute_force(&ap, &bp, me);
                assert_eq!(plan.destinations(), dests, "rank {me}: {an} -> {bn}");
                let sources: Vec<usize> = (0..p)
                    .filter(|&r| pairs_brute_force(&ap, &bp, r).contains(&me))
                    .collect();
                assert_eq!(plan.sources(), sources, "rank {me}: {an} -> {bn}");
                for _ in 0..2 {
                    ok(comm, "sync", cc.barrier());
                    cc.reset();
                    ok(comm, "transpose", plan.transpose(&a, &mut b));
                    let c = cc.counts();
                    if messages {
                        // one exchange when there is anything to move
                        let moves = usize::from(!dests.is_empty() || !sources.is_empty());
                        assert_eq!(c.exchanges, moves, "rank {me}: {an} -> {bn}: {c:?}");
                        assert_eq!(c.messages, dests.len(), "rank {me}: {an} -> {bn}: {c:?}");
                        assert_eq!(c.gets_total(), 0, "rank {me}: {c:?}");
                        // nothing else: no vote, like a hand-written transpose
                        assert_eq!(c.collectives, 0, "rank {me}: {an} -> {bn}: {c:?}");
                    } else {
                        assert_eq!(c.gets_total(), sources.len(), "rank {me}: {c:?}");
                        for &r in &sources {
                            assert_eq!(c.gets[r], 1, "rank {me}: {an} -> {bn}: {c:?}");
                        }
                        assert_eq!(c.messages, sources.len(), "rank {me}: {c:?}");
                        assert_eq!(c.puts_total() + c.accumulates_total(), 0);
                        // two votes
                        assert_eq!(c.collectives, 2, "rank {me}: {an} -> {bn}: {c:?}");
                    }
                }
                if an == "rows" && bn == "rows" {
                    // every pair shares data
                    assert_eq!(dests.len(), p - 1);
                }
                ok(comm, "barrier", b.barrier());
                let got = ok(comm, "to_vec", b.to_vec());
                for (k, v) in got.iter().enumerate() {
                    let (j, i) = (k / 8, k % 8);
                    assert_eq!(*v, (i * 12 + j) as f64, "rank {me}: {an} -> {bn}");
                }
                ok(comm, "barrier", b.barrier());
            }
        }
    }
}
