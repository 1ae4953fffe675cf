//! Local kernels against naive references, and CG-style use of the
//! distributed operations on the threaded backend.

use approx::assert_relative_eq;
use distarray::linalg::{axpby, dot, gemv_local, gemv_rust, gemv_transpose_local, matvec, norm2};
use distarray::{threaded, DistArray, OneSidedComm};
use proptest::prelude::*;
use rstest::rstest;

fn naive(a: &[f64], rows: usize, cols: usize, x: &[f64]) -> Vec<f64> {
    (0..rows)
        .map(|i| (0..cols).map(|j| a[i * cols + j] * x[j]).sum())
        .collect()
}

proptest! {
    #[test]
    fn rust_kernel_matches_naive(rows in 0usize..13, cols in 0usize..13, seed in 0u64..1000) {
        let a: Vec<f64> = (0..rows * cols).map(|k| ((k as u64 * 2654435761 + seed) % 97) as f64 - 48.0).collect();
        let x: Vec<f64> = (0..cols).map(|k| ((k as u64 * 40503 + seed) % 13) as f64 - 6.0).collect();
        let mut y = vec![f64::NAN; rows];
        gemv_rust(&a, rows, cols, &x, &mut y);
        // small integers: exact in any summation order
        prop_assert_eq!(&y, &naive(&a, rows, cols, &x));
        let mut y2 = vec![f64::NAN; rows];
        gemv_local(&a, rows, cols, &x, &mut y2);
        prop_assert_eq!(&y2, &y);
        let xt: Vec<f64> = (0..rows).map(|k| k as f64 - 2.0).collect();
        let mut yt = vec![f64::NAN; cols];
        gemv_transpose_local(&a, rows, cols, &xt, &mut yt);
        let expect: Vec<f64> = (0..cols).map(|j| (0..rows).map(|i| a[i * cols + j] * xt[i]).sum()).collect();
        prop_assert_eq!(yt, expect);
    }
}

#[test]
fn integer_and_f32_kernels() {
    let a: Vec<i32> = (0..15).collect();
    let mut y = vec![0i32; 3];
    gemv_local(&a, 3, 5, &[1, 1, 1, 1, 1], &mut y);
    assert_eq!(y, vec![10, 35, 60]);
    let a: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let mut y = vec![0f32; 2];
    gemv_local(&a, 2, 6, &[0.5; 6], &mut y);
    assert_eq!(y, vec![7.5, 25.5]);
}

/// The matmul port at P = 1..4 (the conformance suite runs it to P = 8 too).
#[rstest]
fn matmul_port(#[values(1, 2, 3, 4)] p: usize) {
    threaded::run(p, |comm| {
        distarray::conformance::matvec_distributions(&comm)
    })
    .unwrap();
}

/// Conjugate gradients on a small SPD matrix (tridiagonal 2, -1) built from
/// the distributed operations, against the known solution.
#[rstest]
fn conjugate_gradients_small(#[values(1, 2, 3)] p: usize) {
    let n = 40;
    let iters = threaded::run(p, |comm| -> distarray::Result<usize> {
        let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, comm.size()], [n, n])?;
        a.with_local_mut(|mut l| {
            l.fill_with(|[i, j]| match i.abs_diff(j) {
                0 => 2.0,
                1 => -1.0,
                _ => 0.0,
            })
        })?;
        // the exact solution u[i] = i (i + 1) is reached from b = A u
        let u = DistArray::<f64, _, 1>::from_fn(comm.clone(), [n], |[i]| (i * (i + 1)) as f64)?;
        let mut b = u.similar::<f64>()?;
        matvec(&a, &u, &mut b)?;
        let mut x = u.similar::<f64>()?;
        let mut r = u.similar::<f64>()?;
        axpby(1.0, &b, 0.0, &mut r)?;
        let mut pdir = u.similar::<f64>()?;
        axpby(1.0, &r, 0.0, &mut pdir)?;
        let mut ap = u.similar::<f64>()?;
        let mut rr = dot(&r, &r)?;
        let mut k = 0;
        while rr.sqrt() > 1e-10 * norm2(&b)? && k < 2 * n {
            matvec(&a, &pdir, &mut ap)?;
            let alpha = rr / dot(&pdir, &ap)?;
            axpby(alpha, &pdir, 1.0, &mut x)?;
            axpby(-alpha, &ap, 1.0, &mut r)?;
            let rr_new = dot(&r, &r)?;
            axpby(1.0, &r, rr_new / rr, &mut pdir)?;
            rr = rr_new;
            k += 1;
        }
        x.barrier()?;
        let got = x.to_vec()?;
        for (i, v) in got.iter().enumerate() {
            assert_relative_eq!(
                *v,
                (i * (i + 1)) as f64,
                max_relative = 1e-8,
                epsilon = 1e-8
            );
        }
        Ok(k)
    })
    .unwrap();
    for k in iters {
        // CG on an n x n SPD matrix converges in at most n steps (exact arithmetic)
        assert!(k.unwrap() <= n + 2);
    }
}
