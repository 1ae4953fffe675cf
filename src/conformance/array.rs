//! Checks of [`DistArray`] basics, including the port of MPIArrays.jl's
//! "ArrayInterface" test set.

use super::{expect_err, ok, Check};
use crate::array::DistArray;
use crate::comm::OneSidedComm;
use crate::error::Error;
use crate::partition::linear_offset;

/// The array-level checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("array_interface_1d", array_interface_1d::<C>),
        ("array_interface_2d_grid", array_interface_2d::<C>),
        ("array_interface_3d", array_interface_3d::<C>),
        ("array_manual_distribution", array_manual_distribution::<C>),
        ("array_similar", array_similar::<C>),
        ("array_fill_sum_reduce", array_fill_sum_reduce::<C>),
        ("array_from_local_parts", array_from_local_parts::<C>),
        ("array_bad_input", array_bad_input::<C>),
        ("array_local_views", array_local_views::<C>),
        ("array_early_drop", array_early_drop::<C>),
    ]
}

/// A process grid `[p1, p2]` with `p1 * p2 = p`, as square as possible.
pub fn grid_2d(p: usize) -> [usize; 2] {
    let p1 = (1..=p)
        .filter(|d| p.is_multiple_of(*d) && d * d <= p)
        .max()
        .unwrap_or(1);
    [p1, p / p1]
}

/// The ArrayInterface check, for any dimension: every element set by its
/// owner equals the serial reference, read back one element at a time by
/// every rank; then the last rank overwrites every element remotely and
/// everyone sees the new values.
fn interface_check<C: OneSidedComm, const N: usize>(comm: &C, a: DistArray<i64, C, N>) {
    let shape = a.shape();
    let first = |i: [usize; N]| 7 + 3 * linear_offset(&shape, &i) as i64;
    let second = |i: [usize; N]| -(linear_offset(&shape, &i) as i64) * 11 - 1;
    ok(
        comm,
        "fill local",
        a.with_local_mut(|mut l| l.fill_with(first)),
    );
    ok(comm, "barrier", a.barrier());
    let serial: Vec<i64> = (0..a.len())
        .map(|k| first(crate::partition::multi_index(&shape, k)))
        .collect();
    for (k, &expect) in serial.iter().enumerate() {
        let idx = crate::partition::multi_index(&shape, k);
        assert_eq!(
            ok(comm, "get", a.get(idx)),
            expect,
            "rank {}: element {idx:?}",
            comm.rank()
        );
    }
    assert_eq!(ok(comm, "to_vec", a.to_vec()), serial);
    ok(comm, "barrier", a.barrier());
    if comm.rank() == comm.size() - 1 {
        for k in 0..a.len() {
            let idx = crate::partition::multi_index(&shape, k);
            ok(comm, "set", a.set(idx, second(idx)));
        }
    }
    ok(comm, "barrier", a.barrier());
    let serial2: Vec<i64> = (0..a.len())
        .map(|k| second(crate::partition::multi_index(&shape, k)))
        .collect();
    assert_eq!(ok(comm, "to_vec", a.to_vec()), serial2);
    let local_ok = ok(
        comm,
        "with_local",
        a.with_local(|l| l.iter_global().all(|(i, v)| v == second(i))),
    );
    assert!(
        local_ok,
        "rank {}: local part after remote overwrite",
        comm.rank()
    );
    assert_eq!(ok(comm, "sum", a.sum()), serial2.iter().sum::<i64>());
    ok(comm, "barrier", a.barrier());
}

fn array_interface_1d<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let a = ok(
        comm,
        "new",
        DistArray::<i64, C, 1>::new(comm.clone(), [10 * p + 3]),
    );
    assert_eq!(a.partitioning().grid(), [p]);
    let sizes = crate::partition::distribute(10 * p + 3, p);
    assert_eq!(a.local_shape(), [sizes[comm.rank()]]);
    interface_check(comm, a);
}

fn array_interface_2d<C: OneSidedComm>(comm: &C) {
    let grid = grid_2d(comm.size());
    let a = ok(
        comm,
        "with_grid",
        DistArray::<i64, C, 2>::with_grid(comm.clone(), grid, [7, 9]),
    );
    assert_eq!(a.partitioning().grid(), grid);
    let g = a.partitioning().grid_index(comm.rank()).unwrap();
    let rows = crate::partition::distribute(7, grid[0]);
    let cols = crate::partition::distribute(9, grid[1]);
    assert_eq!(a.local_shape(), [rows[g[0]], cols[g[1]]]);
    interface_check(comm, a);
}

fn array_interface_3d<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let a = ok(
        comm,
        "with_grid",
        DistArray::<i64, C, 3>::with_grid(comm.clone(), [1, 1, p], [3, 4, 2 * p + 1]),
    );
    interface_check(comm, a);
}

fn array_manual_distribution<C: OneSidedComm>(comm: &C) {
    // rows: 5 per rank, columns whole: [5; P] x [10]
    let p = comm.size();
    let a = ok(
        comm,
        "with_part_sizes",
        DistArray::<i64, C, 2>::with_part_sizes(comm.clone(), [vec![5; p], vec![10]]),
    );
    assert_eq!(a.shape(), [5 * p, 10]);
    assert_eq!(
        ok(comm, "local_indices", a.local_indices(comm.rank())),
        [5 * comm.rank()..5 * comm.rank() + 5, 0..10]
    );
    interface_check(comm, a);
}

fn array_similar<C: OneSidedComm>(comm: &C) {
    let grid = grid_2d(comm.size());
    let a = ok(
        comm,
        "with_grid",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), grid, [6, 5]),
    );
    ok(comm, "fill", a.fill(3.0));
    let b = ok(comm, "similar", a.similar::<i32>());
    assert_eq!(b.shape(), a.shape());
    assert_eq!(b.partitioning(), a.partitioning());
    assert_eq!(ok(comm, "sum", b.sum()), 0, "similar is zero-filled");
    let c = ok(
        comm,
        "similar_with_shape",
        a.similar_with_shape::<u8, 1>([11]),
    );
    assert_eq!(c.shape(), [11]);
    assert_eq!(c.partitioning().grid(), [comm.size()]);
    assert_eq!(
        ok(comm, "sum", a.sum()),
        90.0,
        "similar leaves the original alone"
    );
}

fn array_fill_sum_reduce<C: OneSidedComm>(comm: &C) {
    let a = ok(comm, "new", DistArray::<f64, C, 1>::new(comm.clone(), [37]));
    ok(comm, "fill", a.fill(0.5));
    assert_eq!(ok(comm, "sum", a.sum()), 18.5);
    ok(comm, "map_local", a.map_local(|x| x * 4.0));
    assert_eq!(ok(comm, "sum", a.sum()), 74.0);
    let b = ok(
        comm,
        "from_fn",
        DistArray::<i32, C, 1>::from_fn(comm.clone(), [37], |[i]| i as i32 - 20),
    );
    let max = ok(
        comm,
        "reduce",
        b.reduce(|l| l.iter().copied().max().unwrap_or(i32::MIN), i32::max),
    );
    assert_eq!(max, 16);
    let text = b.to_string();
    assert!(
        text.contains("-20, -19"),
        "Display prints small arrays whole: {text}"
    );
    let big = ok(
        comm,
        "new",
        DistArray::<u8, C, 1>::new(comm.clone(), [5000]),
    );
    assert!(big.to_string().contains("too large"));
}

fn array_from_local_parts<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    // 1-D: rank r contributes r + 1 elements
    let data: Vec<u32> = (0..me + 1).map(|k| (me * 10 + k) as u32).collect();
    let a = ok(
        comm,
        "from_local_parts",
        DistArray::from_local_parts(comm.clone(), [p], [me + 1], &data),
    );
    assert_eq!(a.shape(), [p * (p + 1) / 2]);
    let expect: Vec<u32> = (0..p)
        .flat_map(|r| (0..r + 1).map(move |k| (r * 10 + k) as u32))
        .collect();
    assert_eq!(ok(comm, "to_vec", a.to_vec()), expect);
    // 2-D over [p, 1]: rows r + 1, 3 columns everywhere
    let data: Vec<f32> = vec![me as f32; (me + 1) * 3];
    let b = ok(
        comm,
        "from_local_parts",
        DistArray::from_local_parts(comm.clone(), [p, 1], [me + 1, 3], &data),
    );
    assert_eq!(b.shape(), [p * (p + 1) / 2, 3]);
    // parts in one column slab disagreeing on their width: an error on every rank
    if p > 1 {
        let cols = if me == 0 { 3 } else { 4 };
        let data = vec![0f32; cols];
        expect_err(
            comm,
            "inconsistent local parts",
            DistArray::from_local_parts(comm.clone(), [p, 1], [1, cols], &data),
            |e| matches!(e, Error::InvalidPartition(_)),
        );
    }
    // a wrong data length on one rank only: still an error on every rank
    let n = if me == 0 { 2 } else { 1 };
    expect_err(
        comm,
        "wrong local data length",
        DistArray::from_local_parts(comm.clone(), [p], [1], &vec![0u8; n]),
        |e| match e {
            Error::ShapeMismatch { .. } => me == 0,
            // the other ranks learn rank 0's own reason
            Error::PeerFailed { rank: 0, reason } => me != 0 && reason.contains("shape mismatch"),
            _ => false,
        },
    );
    ok(comm, "barrier", comm.barrier());
}

fn array_bad_input<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    expect_err(
        comm,
        "grid not matching ranks",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), [p + 1, 1], [4, 4]),
        |e| matches!(e, Error::InvalidPartition(_)),
    );
    expect_err(
        comm,
        "zero grid",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), [0, p], [4, 4]),
        |e| matches!(e, Error::InvalidPartition(_)),
    );
    expect_err(
        comm,
        "part sizes not summing to shape",
        DistArray::<f64, C, 2>::with_part_sizes_checked(
            comm.clone(),
            [10, 3],
            [vec![1; p], vec![3]],
        ),
        |e| matches!(e, Error::InvalidPartition(_)),
    );
    expect_err(
        comm,
        "part count not matching ranks",
        DistArray::<f64, C, 1>::with_part_sizes(comm.clone(), [vec![2; p + 1]]),
        |e| matches!(e, Error::InvalidPartition(_)),
    );
    // ranks disagreeing on the shape: detected collectively, no wrong answers
    if p > 1 {
        let n = if comm.rank() == 0 { 10 } else { 11 };
        expect_err(
            comm,
            "ranks disagree on shape",
            DistArray::<f64, C, 1>::new(comm.clone(), [n]),
            |e| matches!(e, Error::InvalidPartition(_)),
        );
    }
    let a = ok(
        comm,
        "new",
        DistArray::<f64, C, 2>::new(comm.clone(), [4, 3]),
    );
    let oob = |e: &Error| matches!(e, Error::IndexOutOfBounds { .. });
    expect_err(comm, "get out of bounds", a.get([4, 0]), oob);
    expect_err(comm, "get out of bounds", a.get([0, 3]), oob);
    expect_err(comm, "set out of bounds", a.set([9, 9], 1.0), oob);
    expect_err(comm, "local_indices bad rank", a.local_indices(p), |e| {
        matches!(e, Error::RankOutOfRange { .. })
    });
    ok(comm, "barrier", comm.barrier());
}

fn array_local_views<C: OneSidedComm>(comm: &C) {
    let grid = grid_2d(comm.size());
    let a = ok(
        comm,
        "with_grid",
        DistArray::<i32, C, 2>::with_grid(comm.clone(), grid, [5, 6]),
    );
    let range = a.local_indices(comm.rank()).unwrap();
    ok(
        comm,
        "fill",
        a.with_local_mut(|mut l| {
            let mut v = l.view_mut();
            for ((i, j), x) in v.indexed_iter_mut().map(|(ix, x)| ((ix[0], ix[1]), x)) {
                *x = ((range[0].start + i) * 10 + range[1].start + j) as i32;
            }
        }),
    );
    ok(comm, "barrier", a.barrier());
    ok(
        comm,
        "check",
        a.with_local(|l| {
            assert_eq!(l.view().shape(), &l.shape()[..]);
            for (k, &v) in l.as_slice().iter().enumerate() {
                let [i, j] = l.global_index(k);
                assert_eq!(v, (i * 10 + j) as i32);
                assert_eq!(l.local_offset([i, j]), Some(k));
                assert_eq!(l.get([i, j]), Some(v));
            }
            assert_eq!(l.get([5, 0]), None);
        }),
    );
    let r = ok(
        comm,
        "with_local_mut",
        a.with_local_mut(|mut l| l.set([range[0].end, 0], 1)),
    );
    // the error reports the part's real extent, not just its range ends
    let part_ranges: Vec<(usize, usize)> = range.iter().map(|r| (r.start, r.end)).collect();
    expect_err(
        comm,
        "set outside own part",
        r,
        |e| matches!(e, Error::IndexOutsideBlock { ranges, .. } if *ranges == part_ranges),
    );
    // a view of an empty part is fine
    ok(comm, "barrier", a.barrier());
}

/// One rank drops an array while the others still read it (including the
/// dropped rank's part), then drop theirs: no hang, right values (on MPI
/// the early drop waits in the collective free until the others drop).
fn array_early_drop<C: OneSidedComm>(comm: &C) {
    let n = 3 * comm.size() + 1;
    let a = ok(
        comm,
        "from_fn",
        DistArray::<i64, C, 1>::from_fn(comm.clone(), [n], |[i]| 5 * i as i64),
    );
    if comm.rank() == 0 {
        drop(a);
    } else {
        for i in 0..n {
            assert_eq!(ok(comm, "get", a.get([i])), 5 * i as i64);
        }
        drop(a);
    }
    ok(comm, "barrier", comm.barrier());
    // later arrays are unaffected
    let b = ok(comm, "new", DistArray::<i64, C, 1>::new(comm.clone(), [n]));
    ok(comm, "fill", b.fill(2));
    assert_eq!(ok(comm, "sum", b.sum()), 2 * n as i64);
}
