//! `matmul`: products against a serial reference, the same bits for every
//! partition and rank count, transposes, every element kind, bad shapes.

use num_complex::Complex64;

use super::array::grid_2d;
use super::{expect_err, ok, Check, SplitMix};
use crate::array::DistArray;
use crate::comm::{Element, OneSidedComm};
use crate::error::Error;
use crate::matmul::{self, Op, PANEL};

pub fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        (
            "matmul_same_bits_any_partition",
            matmul_same_bits_any_partition,
        ),
        ("matmul_other_kinds", matmul_other_kinds),
        ("matmul_bad_shapes", matmul_bad_shapes),
    ]
}

/// The partitions tried for a `rows x cols` matrix on `p` ranks: row
/// bands, a process grid, and explicit row sizes where rank 0 owns nothing.
fn partitions<T: Element, C: OneSidedComm>(comm: &C, shape: [usize; 2]) -> Vec<DistArray<T, C, 2>> {
    let p = comm.size();
    let mut rows = vec![0; p];
    for i in 0..shape[0] {
        rows[if p > 1 { 1 + i % (p - 1) } else { 0 }] += 1;
    }
    vec![
        ok(comm, "new", DistArray::new(comm.clone(), shape)),
        ok(
            comm,
            "with_grid",
            DistArray::with_grid(comm.clone(), grid_2d(p), shape),
        ),
        ok(
            comm,
            "with_part_sizes",
            DistArray::with_part_sizes(comm.clone(), [rows, vec![shape[1]]]),
        ),
    ]
}

/// Fills `x` with the values of `f` at its global indices and syncs.
fn fill<T: Element, C: OneSidedComm>(
    comm: &C,
    x: &DistArray<T, C, 2>,
    f: impl Fn(usize, usize) -> T,
) {
    ok(
        comm,
        "fill",
        x.with_local_mut(|mut l| l.fill_with(|[i, j]| f(i, j))),
    );
    ok(comm, "barrier", x.barrier());
}

fn value(seed: u64, i: usize, j: usize) -> f64 {
    let mut r = SplitMix(seed ^ ((i as u64) << 32) ^ j as u64);
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

/// The serial reference: panel by panel, in the order of `k`, as the
/// distributed product adds them, on one rank's full matrices.
fn reference(m: usize, k: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for s in (0..k).step_by(PANEL) {
        let kp = PANEL.min(k - s);
        let pa: Vec<f64> = (0..m * kp).map(|x| a[(x / kp) * k + s + x % kp]).collect();
        let pb = &b[s * n..(s + kp) * n];
        // a single rank's product of the same panel: the library's kernel
        crate::threaded::run(1, |comm| {
            let pa_arr =
                DistArray::<f64, _, 2>::from_fn(comm.clone(), [m, kp], |[i, l]| pa[i * kp + l])
                    .unwrap();
            let pb_arr =
                DistArray::<f64, _, 2>::from_fn(comm.clone(), [kp, n], |[l, j]| pb[l * n + j])
                    .unwrap();
            let mut pc = DistArray::<f64, _, 2>::new(comm.clone(), [m, n]).unwrap();
            matmul::matmul(&pa_arr, &pb_arr, &mut pc).unwrap();
            pc.to_vec().unwrap()
        })
        .unwrap()[0]
            .iter()
            .zip(c.iter_mut())
            .for_each(|(x, y)| *y += x);
    }
    c
}

fn matmul_same_bits_any_partition<C: OneSidedComm>(comm: &C) {
    let me = comm.rank();
    // k spans two panels, the second partial
    let (m, k, n) = (13, PANEL + 21, 11);
    let a_full: Vec<f64> = (0..m * k).map(|x| value(1, x / k, x % k)).collect();
    let b_full: Vec<f64> = (0..k * n).map(|x| value(2, x / n, x % n)).collect();
    // within rounding of the exact product, and the same bits everywhere
    let naive: Vec<f64> = (0..m * n)
        .map(|x| {
            (0..k)
                .map(|l| a_full[(x / n) * k + l] * b_full[l * n + x % n])
                .sum()
        })
        .collect();
    let mut first: Option<Vec<f64>> = None;
    for (op_a, op_b) in [
        (Op::N, Op::N),
        (Op::T, Op::N),
        (Op::N, Op::T),
        (Op::T, Op::T),
    ] {
        let a_shape = if op_a == Op::N { [m, k] } else { [k, m] };
        let b_shape = if op_b == Op::N { [k, n] } else { [n, k] };
        // each operand in each partition, made and filled once
        let (af, bf) = (&a_full, &b_full);
        let a_parts = partitions::<f64, C>(comm, a_shape);
        for a in &a_parts {
            fill(comm, a, |i, j| match op_a {
                Op::N => af[i * k + j],
                Op::T => af[j * k + i],
            });
        }
        let b_parts = partitions::<f64, C>(comm, b_shape);
        for b in &b_parts {
            fill(comm, b, |i, j| match op_b {
                Op::N => bf[i * n + j],
                Op::T => bf[j * n + i],
            });
        }
        let mut c_parts = partitions::<f64, C>(comm, [m, n]);
        // every pair of partitions of two operands meets once (a Latin
        // square: C's partition is (pa + pb) mod 3), 9 products per pair of
        // ops rather than all 27 combinations: the MPI suite on 4
        // oversubscribed ranks stays inside its time limit
        for (pa, a) in a_parts.iter().enumerate() {
            for (pb, b) in b_parts.iter().enumerate() {
                let pc = (pa + pb) % c_parts.len();
                let c = &mut c_parts[pc];
                ok(
                    comm,
                    "matmul_with",
                    matmul::matmul_with(op_a, a, op_b, b, c),
                );
                let got = ok(comm, "to_vec", c.to_vec());
                let what = format!("rank {me}: {op_a:?}{op_b:?}, partitions {pa}/{pb}/{pc}");
                for (x, (g, w)) in got.iter().zip(&naive).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-12 * k as f64,
                        "{what}: C[{x}] = {g}, exact {w}"
                    );
                }
                // an optimised BLAS (the `blas` feature) blocks by shape
                if !cfg!(feature = "blas") {
                    match &first {
                        None => first = Some(got),
                        Some(f) => assert!(
                            f.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{what}: not the same bits as the first product"
                        ),
                    }
                }
                // every rank has read C before the next product writes it
                ok(comm, "barrier", comm.barrier());
            }
        }
    }
    // ... and the same bits as one rank's panel-by-panel product
    if me == 0 && !cfg!(feature = "blas") {
        let want = reference(m, k, n, &a_full, &b_full);
        let got = first.expect("products ran");
        assert!(
            want.iter()
                .zip(&got)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "not the same bits as one rank"
        );
    }
}

fn matmul_other_kinds<C: OneSidedComm>(comm: &C) {
    let me = comm.rank();
    let (m, k, n) = (7, 9, 5);
    // integers: exact
    let a = ok(
        comm,
        "a",
        DistArray::<i64, _, 2>::from_fn(comm.clone(), [k, m], |[i, j]| (i * 3 + j) as i64 - 10),
    );
    let b = ok(
        comm,
        "b",
        DistArray::<i64, _, 2>::from_fn(comm.clone(), [k, n], |[i, j]| (i + 2 * j) as i64),
    );
    let mut c = ok(
        comm,
        "c",
        DistArray::<i64, _, 2>::with_grid(comm.clone(), grid_2d(comm.size()), [m, n]),
    );
    ok(
        comm,
        "matmul Aᵀ B",
        matmul::matmul_with(Op::T, &a, Op::N, &b, &mut c),
    );
    for i in 0..m {
        for j in 0..n {
            let want: i64 = (0..k)
                .map(|l| ((l * 3 + i) as i64 - 10) * (l + 2 * j) as i64)
                .sum();
            assert_eq!(
                ok(comm, "get", c.get([i, j])),
                want,
                "rank {me}: C[{i}, {j}]"
            );
        }
    }
    // complex: small integers in both parts, so every sum is exact
    let z = |i: usize, j: usize| Complex64::new((i % 3) as f64 - 1.0, (j % 4) as f64);
    let a = ok(
        comm,
        "za",
        DistArray::<Complex64, _, 2>::from_fn(comm.clone(), [m, k], |[i, j]| z(i, j)),
    );
    let b = ok(
        comm,
        "zb",
        DistArray::<Complex64, _, 2>::from_fn(comm.clone(), [k, n], |[i, j]| z(j, i)),
    );
    let mut c = ok(
        comm,
        "zc",
        DistArray::<Complex64, _, 2>::new(comm.clone(), [m, n]),
    );
    ok(comm, "matmul complex", matmul::matmul(&a, &b, &mut c));
    for i in 0..m {
        for j in 0..n {
            let want: Complex64 = (0..k).map(|l| z(i, l) * z(j, l)).sum();
            assert_eq!(
                ok(comm, "get", c.get([i, j])),
                want,
                "rank {me}: complex C[{i}, {j}]"
            );
        }
    }
    ok(comm, "barrier", comm.barrier());
}

fn matmul_bad_shapes<C: OneSidedComm>(comm: &C) {
    let a = ok(comm, "a", DistArray::<f64, _, 2>::new(comm.clone(), [4, 3]));
    let b = ok(comm, "b", DistArray::<f64, _, 2>::new(comm.clone(), [4, 5]));
    let mut c = ok(comm, "c", DistArray::<f64, _, 2>::new(comm.clone(), [4, 5]));
    let shape = |e: &Error| matches!(e, Error::ShapeMismatch { .. });
    // inner dimensions differ (3 against 4)
    expect_err(
        comm,
        "A B with k mismatched",
        matmul::matmul(&a, &b, &mut c),
        shape,
    );
    // Aᵀ B fits (3 x 4 times 4 x 5) but C must then be 3 x 5
    expect_err(
        comm,
        "Aᵀ B into a 4 x 5 C",
        matmul::matmul_with(Op::T, &a, Op::N, &b, &mut c),
        shape,
    );
    let mut c35 = ok(
        comm,
        "c35",
        DistArray::<f64, _, 2>::new(comm.clone(), [3, 5]),
    );
    ok(
        comm,
        "Aᵀ B",
        matmul::matmul_with(Op::T, &a, Op::N, &b, &mut c35),
    );
    ok(comm, "barrier", comm.barrier());
}
