//! Checks of [`DistArray::permute_into`]: every permutation of a 3-D
//! array's axes between contiguous, grid and block-cyclic distributions,
//! element by element, and bad axes or shapes refused on every rank.

use super::{expect_err, ok, Check};
use crate::comm::OneSidedComm;
use crate::error::Error;
use crate::partition::ContinuousPartitioning;
use crate::DistArray;

/// The permutation checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("permute_axes", permute_axes::<C>),
        ("permute_errors", permute_errors::<C>),
        ("transpose_block_cyclic", transpose_block_cyclic::<C>),
    ]
}

/// The six permutations of `[0, 1, 2]`.
const PERMS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

fn value([i, j, k]: [usize; 3]) -> i64 {
    (10_000 * i + 100 * j + k) as i64
}

fn permute_axes<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let shape = [5, 3, 7];
    let sources = [
        ("rows", ContinuousPartitioning::with_grid(shape, [p, 1, 1])),
        (
            "block-cyclic",
            ContinuousPartitioning::block_cyclic(shape, [1, 1, p], [1, 1, 2]),
        ),
    ];
    for (sname, sp) in sources {
        let sp = ok(comm, sname, sp);
        let a = ok(
            comm,
            "a",
            DistArray::<i64, C, 3>::with_partitioning(comm.clone(), sp),
        );
        ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(value)));
        for axes in PERMS {
            let out_shape: [usize; 3] = std::array::from_fn(|d| shape[axes[d]]);
            let outs = [
                ("default", ContinuousPartitioning::uniform(out_shape, p)),
                (
                    "last axis",
                    ContinuousPartitioning::with_grid(out_shape, [1, 1, p]),
                ),
                (
                    "block-cyclic",
                    ContinuousPartitioning::block_cyclic(out_shape, [p, 1, 1], [2, 1, 1]),
                ),
            ];
            for (oname, op) in outs {
                // every permutation into the default layout, two into the others
                if oname != "default" && !matches!(axes, [2, 0, 1] | [1, 0, 2]) {
                    continue;
                }
                let op = ok(comm, oname, op);
                let mut out = ok(
                    comm,
                    "out",
                    DistArray::<i64, C, 3>::with_partitioning(comm.clone(), op),
                );
                ok(comm, "fill out", out.fill(-1));
                ok(comm, "permute_into", a.permute_into(&mut out, axes));
                let got = ok(comm, "to_vec", out.to_vec());
                for (n, &v) in got.iter().enumerate() {
                    let i = crate::partition::multi_index(&out_shape, n);
                    let mut src = [0usize; 3];
                    for d in 0..3 {
                        src[axes[d]] = i[d];
                    }
                    assert_eq!(
                        v,
                        value(src),
                        "rank {}: {sname} -> {oname}, axes {axes:?}, at {i:?}",
                        comm.rank()
                    );
                }
                ok(comm, "barrier", comm.barrier());
            }
        }
        // permute into a new array
        let t = ok(comm, "permute", a.permute([2, 0, 1]));
        assert_eq!(t.shape(), [7, 5, 3]);
        assert_eq!(ok(comm, "get", t.get([6, 4, 2])), value([4, 2, 6]));
    }
    // one dimension: the identity
    let v = ok(
        comm,
        "1-D",
        DistArray::<f32, C, 1>::from_fn(comm.clone(), [9], |[i]| i as f32),
    );
    let w = ok(comm, "permute 1-D", v.permute([0]));
    assert_eq!(
        ok(comm, "to_vec", w.to_vec()),
        ok(comm, "to_vec", v.to_vec())
    );
}

fn permute_errors<C: OneSidedComm>(comm: &C) {
    let a = ok(
        comm,
        "a",
        DistArray::<f64, C, 3>::from_fn(comm.clone(), [2, 3, 4], |[i, j, k]| (i + j + k) as f64),
    );
    let mut out = ok(
        comm,
        "out",
        DistArray::<f64, C, 3>::new(comm.clone(), [4, 3, 2]),
    );
    for bad in [[0, 0, 1], [0, 1, 3], [2, 2, 2]] {
        expect_err(
            comm,
            "axes not a permutation",
            a.permute_into(&mut out, bad),
            |e| matches!(e, Error::InvalidArgument(_)),
        );
        expect_err(comm, "permute", a.permute(bad), |e| {
            matches!(e, Error::InvalidArgument(_))
        });
    }
    expect_err(
        comm,
        "wrong output shape",
        a.permute_into(&mut out, [0, 2, 1]),
        |e| matches!(e, Error::OperandShape { expected, .. } if expected == &vec![2, 4, 3]),
    );
    // still usable
    ok(comm, "permute_into", a.permute_into(&mut out, [2, 1, 0]));
    assert_eq!(ok(comm, "get", out.get([3, 2, 1])), 6.0);
}

/// `transpose_into` / `transpose_add_into` / `transpose` with block-cyclic
/// arrays on either side (the permutation path): every element.
fn transpose_block_cyclic<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let (n0, n1) = (7, 5);
    let f = |i: usize, j: usize| (10 * i + j) as i32;
    let bc = |shape: [usize; 2]| {
        ok(
            comm,
            "block-cyclic",
            ContinuousPartitioning::block_cyclic(shape, [p, 1], [2, 1]),
        )
    };
    let a = ok(
        comm,
        "a",
        DistArray::<i32, C, 2>::with_partitioning(comm.clone(), bc([n0, n1])),
    );
    ok(
        comm,
        "fill",
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| f(i, j))),
    );
    let plain = ok(
        comm,
        "plain",
        DistArray::<i32, C, 2>::from_fn(comm.clone(), [n0, n1], |[i, j]| f(i, j)),
    );
    for (name, src) in [("block-cyclic", &a), ("contiguous", &plain)] {
        for target in ["block-cyclic", "contiguous"] {
            let mut out = if target == "block-cyclic" {
                ok(
                    comm,
                    "out",
                    DistArray::<i32, C, 2>::with_partitioning(comm.clone(), bc([n1, n0])),
                )
            } else {
                ok(
                    comm,
                    "out",
                    DistArray::<i32, C, 2>::new(comm.clone(), [n1, n0]),
                )
            };
            ok(comm, "fill", out.fill(i32::MAX));
            ok(
                comm,
                "transpose_add_into",
                src.transpose_add_into(&mut out, 2),
            );
            let got = ok(comm, "to_vec", out.to_vec());
            ok(comm, "barrier", comm.barrier());
            for (k, &v) in got.iter().enumerate() {
                let (j, i) = (k / n0, k % n0);
                assert_eq!(
                    v,
                    i32::MAX.wrapping_add(2 * f(i, j)),
                    "rank {}: {name} -> {target}: [{j}, {i}]",
                    comm.rank()
                );
            }
            if name == "block-cyclic" || target == "block-cyclic" {
                ok(comm, "transpose_into", src.transpose_into(&mut out));
                let got = ok(comm, "to_vec", out.to_vec());
                ok(comm, "barrier", comm.barrier());
                for (k, &v) in got.iter().enumerate() {
                    assert_eq!(
                        v,
                        f(k % n0, k / n0),
                        "rank {}: {name} -> {target}",
                        comm.rank()
                    );
                }
            }
        }
    }
    let t = ok(comm, "transpose", a.transpose());
    assert_eq!(ok(comm, "get", t.get([4, 6])), f(6, 4));
}
