//! Checks of whole-array algebra ([`crate::algebra`]) and reductions
//! ([`crate::reduce`]) against serial computations.

use super::array::grid_2d;
use super::{expect_err, ok, Check};
use crate::array::DistArray;
use crate::comm::OneSidedComm;
use crate::error::Error;
use crate::partition::{distribute, multi_index};

/// The algebra and reduction checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("algebra_elementwise", algebra_elementwise::<C>),
        ("algebra_copy_between_partitions", algebra_copy::<C>),
        ("algebra_bad_operands", algebra_bad_operands::<C>),
        ("reduce_extrema", reduce_extrema::<C>),
        ("reduce_count_mean_map", reduce_count_mean_map::<C>),
    ]
}

const SHAPE: [usize; 2] = [7, 5];

fn serial(f: impl Fn([usize; 2]) -> f64) -> Vec<f64> {
    (0..SHAPE[0] * SHAPE[1])
        .map(|k| f(multi_index(&SHAPE, k)))
        .collect()
}

/// The whole array, then a barrier: no rank overwrites it (the next
/// operation) while another still reads it.
fn read_all<T: crate::Element, C: OneSidedComm, const N: usize>(
    comm: &C,
    a: &DistArray<T, C, N>,
) -> Vec<T> {
    let v = ok(comm, "to_vec", a.to_vec());
    ok(comm, "barrier", a.barrier());
    v
}

fn algebra_elementwise<C: OneSidedComm>(comm: &C) {
    let grid = grid_2d(comm.size());
    let fx = |[i, j]: [usize; 2]| (i * 5 + j) as f64;
    let fy = |[i, j]: [usize; 2]| i as f64 - 2.0 * j as f64;
    let new = |f: &dyn Fn([usize; 2]) -> f64| {
        let a = ok(
            comm,
            "with_grid",
            DistArray::<f64, C, 2>::with_grid(comm.clone(), grid, SHAPE),
        );
        ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(f)));
        a
    };
    let x = new(&fx);
    let y = new(&fy);
    let mut z = ok(comm, "similar", x.similar::<f64>());
    ok(comm, "zip_with", z.zip_with(&x, &y, |a, b| a * b + 2.0));
    let expect = serial(|i| fx(i) * fy(i) + 2.0);
    assert_eq!(read_all(comm, &z), expect, "zip_with");
    // one array as both operands
    ok(comm, "zip_with x x", z.zip_with(&x, &x, |a, b| a - b * 0.5));
    assert_eq!(read_all(comm, &z), serial(|i| fx(i) * 0.5));
    // another element type in and out
    let xi = ok(comm, "similar", x.similar::<i32>());
    let mut xi = xi;
    ok(comm, "map_from", xi.map_from(&x, |v| v as i32 * 3));
    ok(comm, "map_from back", z.map_from(&xi, |v| v as f64 + 0.25));
    assert_eq!(read_all(comm, &z), serial(|i| 3.0 * fx(i) + 0.25));
    // n-ary, with a repeated source
    ok(
        comm,
        "zip_n",
        z.zip_n(&[&x, &y, &x], |v| v[0] * 100.0 + v[1] * 10.0 - v[2]),
    );
    assert_eq!(read_all(comm, &z), serial(|i| fx(i) * 99.0 + fy(i) * 10.0));
    // scalar and in-place forms
    ok(comm, "assign", z.assign(&x));
    ok(comm, "scale", z.scale(2.0));
    ok(comm, "add_scalar", z.add_scalar(-1.0));
    ok(comm, "axpy", z.axpy(3.0, &y));
    ok(comm, "axpby", z.axpby(1.0, &x, 0.5));
    ok(comm, "add_assign", z.add_assign(&y));
    ok(comm, "sub_assign", z.sub_assign(&x));
    ok(comm, "mul_assign", z.mul_assign(&y));
    ok(comm, "update_with", z.update_with(&xi, |t, v| t - v as f64));
    let expect = serial(|i| {
        let z = 2.0 * fx(i) - 1.0 + 3.0 * fy(i);
        let z = fx(i) + 0.5 * z;
        (z + fy(i) - fx(i)) * fy(i) - 3.0 * fx(i)
    });
    assert_eq!(read_all(comm, &z), expect, "scalar forms");
    ok(comm, "barrier", comm.barrier());
}

fn algebra_copy<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let f = |[i, j, k]: [usize; 3]| (i * 100 + j * 10 + k) as i64;
    let src = ok(
        comm,
        "from_fn",
        DistArray::<i64, C, 3>::from_fn(comm.clone(), [5, 4, 3], f),
    );
    // skewed parts over the last two dimensions: most of the data moves
    let mut cols = vec![0; p];
    cols[p - 1] = 3;
    let dst = ok(
        comm,
        "with_part_sizes",
        DistArray::<i64, C, 3>::with_part_sizes(comm.clone(), [vec![5], distribute(4, 1), cols]),
    );
    ok(comm, "copy_from", dst.copy_from(&src));
    let expect = read_all(comm, &src);
    assert_eq!(read_all(comm, &dst), expect, "copy_from");
    assert!(ok(
        comm,
        "own part",
        dst.with_local(|l| l.iter_global().all(|(i, v)| v == f(i)))
    ));
    // and back, onto an array partitioned like the source
    let back = ok(comm, "similar", src.similar::<i64>());
    ok(comm, "copy_from back", back.copy_from(&dst));
    assert_eq!(read_all(comm, &back), expect);
    ok(comm, "barrier", comm.barrier());
}

fn algebra_bad_operands<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let x = ok(comm, "new", DistArray::<f32, C, 1>::new(comm.clone(), [6]));
    let short = ok(comm, "new", DistArray::<f32, C, 1>::new(comm.clone(), [5]));
    let mut z = ok(comm, "new", DistArray::<f32, C, 1>::new(comm.clone(), [6]));
    expect_err(
        comm,
        "zip_with a short b",
        z.zip_with(&x, &short, |a, b| a + b),
        |e| {
            matches!(e, Error::OperandShape { operation: "zip_with", operand: "b", expected, found, .. }
            if *expected == [6] && *found == [5])
        },
    );
    expect_err(
        comm,
        "copy_from of another shape",
        z.copy_from(&short),
        |e| matches!(e, Error::OperandShape { operand: "src", .. }),
    );
    if p > 1 {
        let mut sizes = vec![0; p];
        sizes[0] = 6;
        let skewed = ok(
            comm,
            "with_part_sizes",
            DistArray::<f32, C, 1>::with_part_sizes(comm.clone(), [sizes]),
        );
        expect_err(
            comm,
            "zip_with a partitioned unlike",
            z.zip_with(&skewed, &x, |a, b| a * b),
            |e| matches!(e, Error::InvalidPartition(m) if m.contains("operand a")),
        );
        expect_err(
            comm,
            "assign from another partition",
            z.assign(&skewed),
            |e| matches!(e, Error::InvalidPartition(m) if m.contains("operand src")),
        );
        // copy_from accepts it
        ok(comm, "copy_from", z.copy_from(&skewed));
    }
    ok(comm, "barrier", comm.barrier());
}

fn reduce_extrema<C: OneSidedComm>(comm: &C) {
    let grid = grid_2d(comm.size());
    // ties: the minimum -3 at [1, 1] and [5, 0], the maximum 9 at [0, 4] and [6, 4]
    let value = |[i, j]: [usize; 2]| -> f64 {
        match (i, j) {
            (1, 1) | (5, 0) => -3.0,
            (0, 4) | (6, 4) => 9.0,
            (3, 2) => f64::NAN,
            _ => (i + j) as f64 / 10.0,
        }
    };
    let a = ok(
        comm,
        "with_grid",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), grid, SHAPE),
    );
    ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(value)));
    assert_eq!(ok(comm, "min", a.min()), Some(-3.0));
    assert_eq!(ok(comm, "max", a.max()), Some(9.0));
    assert_eq!(ok(comm, "argmin", a.argmin()), Some(([1, 1], -3.0)));
    assert_eq!(ok(comm, "argmax", a.argmax()), Some(([0, 4], 9.0)));
    // only NaN: nothing comparable
    ok(comm, "fill", a.fill(f64::NAN));
    assert_eq!(ok(comm, "argmin of NaN", a.argmin()), None);
    // integers, an empty array
    let e = ok(
        comm,
        "new",
        DistArray::<u8, C, 2>::new(comm.clone(), [0, 3]),
    );
    assert_eq!(ok(comm, "min of empty", e.min()), None);
    assert_eq!(ok(comm, "argmax of empty", e.argmax()), None);
    assert_eq!(ok(comm, "mean of empty", e.mean()), None);
    assert!(ok(comm, "all of empty", e.all(|_| false)));
    ok(comm, "barrier", comm.barrier());
}

fn reduce_count_mean_map<C: OneSidedComm>(comm: &C) {
    let n = 1001;
    let f = |[i]: [usize; 1]| ((i * 7919) % 1009) as f64 * 0.1 - 30.0;
    let a = ok(
        comm,
        "from_fn",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], f),
    );
    let vals: Vec<f64> = (0..n).map(|i| f([i])).collect();
    let neg = vals.iter().filter(|&&v| v < 0.0).count();
    assert_eq!(ok(comm, "count", a.count(|v| v < 0.0)), neg);
    assert!(ok(comm, "any", a.any(|v| v > 69.0)));
    assert!(!ok(comm, "any", a.any(|v| v > 1000.0)));
    assert!(ok(comm, "all", a.all(|v| v >= -30.0)));
    assert!(!ok(comm, "all", a.all(|v| v > -30.0)));
    let mean = ok(comm, "mean", a.mean()).expect("non-empty");
    let serial_mean = vals.iter().sum::<f64>() / n as f64;
    assert!((mean - serial_mean).abs() < 1e-9, "{mean} vs {serial_mean}");
    // map-reduce into another type: (count, sum of squares) as [f64; 2]
    let [cnt, sq] = ok(
        comm,
        "map_reduce",
        a.map_reduce(
            [0.0f64; 2],
            |v| [1.0, v * v],
            |x, y| [x[0] + y[0], x[1] + y[1]],
        ),
    );
    assert_eq!(cnt, n as f64);
    let serial_sq: f64 = vals.iter().map(|v| v * v).sum();
    assert!((sq - serial_sq).abs() <= 1e-9 * serial_sq);
    // bitwise reproducible: the same bits on every rank and on a second call
    let s1 = ok(
        comm,
        "map_reduce",
        a.map_reduce(0.0f64, |v| v.sin(), |x, y| x + y),
    );
    let s2 = ok(
        comm,
        "map_reduce",
        a.map_reduce(0.0f64, |v| v.sin(), |x, y| x + y),
    );
    assert_eq!(s1.to_bits(), s2.to_bits());
    let all = ok(comm, "allgather", comm.allgather(&[s1.to_bits()]));
    assert!(all.iter().all(|b| b[0] == s1.to_bits()), "ranks disagree");
    ok(comm, "barrier", comm.barrier());
}
