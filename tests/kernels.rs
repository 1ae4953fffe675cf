//! The local kernels: the documented fixed summation order (checked against
//! an independent reference of that order, bit for bit), accuracy, the
//! scaled norm, the fused updates against their unfused equivalents, and
//! the 5-point stencil against a plain per-point reference.

use distarray::kernels::{self, Block2, Stencil5, BLOCK, LANES};
use distarray::{AccumulateOp, Error};

/// Deterministic pseudo-random values in [-1, 1) with varied exponents.
fn data(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let m = (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            m * [1.0, 1e-3, 1e3, 0.5][(s & 3) as usize]
        })
        .collect()
}

/// The documented order, written independently (recursively): leaves of
/// BLOCK elements, a run of b > 1 leaves split after the largest power of
/// two below b, lanes k % LANES within a leaf, lanes as a binary tree.
fn reference_sum(t: &[f64]) -> f64 {
    if t.len() > BLOCK {
        let blocks = t.len().div_ceil(BLOCK);
        let mut m = 1;
        while 2 * m < blocks {
            m *= 2;
        }
        let mid = m * BLOCK;
        return reference_sum(&t[..mid]) + reference_sum(&t[mid..]);
    }
    let mut lanes = [0.0; LANES];
    for (k, v) in t.iter().enumerate() {
        lanes[k % LANES] += v;
    }
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            lanes[l] += lanes[l + w];
        }
        w /= 2;
    }
    lanes[0]
}

const LENGTHS: [usize; 16] = [
    0, 1, 2, 15, 16, 17, 100, 2047, 2048, 2049, 4096, 6145, 10_000, 14_337, 100_003, 262_144,
];

#[test]
fn sum_and_dot_follow_the_documented_order_bit_for_bit() {
    for n in LENGTHS {
        let x = data(n, 1);
        let y = data(n, 2);
        assert_eq!(
            kernels::sum(&x).to_bits(),
            reference_sum(&x).to_bits(),
            "sum, n = {n}"
        );
        let prod: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
        assert_eq!(
            kernels::dot(&x, &y).to_bits(),
            reference_sum(&prod).to_bits(),
            "dot, n = {n}"
        );
        let squares: Vec<f64> = x.iter().map(|a| a * a).collect();
        assert_eq!(
            kernels::dot(&x, &x).to_bits(),
            reference_sum(&squares).to_bits(),
            "dot of a slice with itself, n = {n}"
        );
        // the order depends on the length only, not on where the data lies
        let mut shifted = vec![0.0; n + 3];
        shifted[3..].copy_from_slice(&x);
        assert_eq!(
            kernels::sum(&shifted[3..]).to_bits(),
            kernels::sum(&x).to_bits()
        );
    }
}

#[test]
fn pairwise_sum_is_more_accurate_than_a_running_sum() {
    // 10^6 times 0.1: a running sum is off by ~1e-6 relative, pairwise ~1e-15
    let x = vec![0.1f64; 1_000_000];
    let exact = 100_000.0;
    let running: f64 = x.iter().fold(0.0, |s, v| s + v);
    let pairwise = kernels::sum(&x);
    assert!(
        (running - exact).abs() > 1e-7,
        "running sum error {}",
        running - exact
    );
    assert!(
        (pairwise - exact).abs() < 1e-9,
        "pairwise error {}",
        pairwise - exact
    );
}

#[test]
fn integer_reductions_wrap() {
    let x = vec![200u8; 1000];
    assert_eq!(kernels::sum(&x), (200u32 * 1000 % 256) as u8);
    let y: Vec<i64> = (0..5000).map(|i| i - 2500).collect();
    assert_eq!(kernels::dot(&y, &y), y.iter().map(|v| v * v).sum::<i64>());
    let big = vec![i64::MAX; 3];
    assert_eq!(kernels::sum(&big), i64::MAX.wrapping_mul(3));
}

#[test]
fn norm2_does_not_overflow_or_underflow() {
    // issue 11, item 11: 8 x 1e200 gave inf
    let big = [1e200f64; 8];
    let n = kernels::norm2(&big);
    assert!(
        (n / (1e200 * 8f64.sqrt()) - 1.0).abs() < 4.0 * f64::EPSILON,
        "norm2 of 8 x 1e200 = {n}"
    );
    let tiny = [1e-200f64; 8];
    let n = kernels::norm2(&tiny);
    assert!(
        (n / (1e-200 * 8f64.sqrt()) - 1.0).abs() < 4.0 * f64::EPSILON,
        "{n}"
    );
    // subnormal elements
    let sub = [f64::MIN_POSITIVE / 1024.0; 4];
    assert_eq!(kernels::norm2(&sub), f64::MIN_POSITIVE / 512.0);
    // the largest finite value, twice: the norm overflows, correctly
    assert_eq!(kernels::norm2(&[f64::MAX, f64::MAX]), f64::INFINITY);
    assert_eq!(kernels::norm2(&[f64::MAX / 2.0, 0.0]), f64::MAX / 2.0);
    assert_eq!(kernels::norm2(&[3e300, 4e300]), 5e300);
    let n = kernels::norm2(&[3e-300, 4e-300]);
    assert!((n / 5e-300 - 1.0).abs() < 4.0 * f64::EPSILON, "{n}");
    // one huge and many ordinary values
    let mut mixed = vec![1.0f64; 100];
    mixed[50] = 1e300;
    assert_eq!(kernels::norm2(&mixed), 1e300);
    assert!(kernels::norm2(&[1.0, f64::NAN, f64::INFINITY]).is_nan());
    assert_eq!(kernels::norm2(&[1.0, f64::NEG_INFINITY]), f64::INFINITY);
    assert_eq!(kernels::norm2(&[-7.5f64]), 7.5);
    assert_eq!(kernels::norm2(&[0.0f64; 10]), 0.0);
    // f32 data, ints
    assert_eq!(kernels::norm2(&[3.0f32, 4.0]), 5.0);
    assert_eq!(kernels::norm2(&[3i32, -4]), 5.0);
}

#[test]
fn norm2_of_an_empty_slice_is_positive_zero() {
    let n = kernels::norm2::<f64>(&[]);
    assert_eq!(n, 0.0);
    assert!(n.is_sign_positive(), "norm2 of an empty slice is {n:?}");
}

#[test]
fn norm2_in_the_ordinary_range_is_the_root_of_the_fixed_order_dot() {
    for n in LENGTHS {
        let x = data(n, 3);
        if n >= 2 {
            assert_eq!(
                kernels::norm2(&x).to_bits(),
                kernels::dot(&x, &x).sqrt().to_bits(),
                "n = {n}"
            );
        }
        let naive = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((kernels::norm2(&x) - naive).abs() <= 1e-12 * naive.max(1.0));
    }
}

#[test]
fn reduce_ops() {
    let x = data(10_000, 4);
    let max = x.iter().copied().fold(f64::MIN, f64::max);
    let min = x.iter().copied().fold(f64::MAX, f64::min);
    assert_eq!(kernels::reduce(&x, AccumulateOp::Max).unwrap(), Some(max));
    assert_eq!(kernels::reduce(&x, AccumulateOp::Min).unwrap(), Some(min));
    assert_eq!(
        kernels::reduce(&x, AccumulateOp::Sum)
            .unwrap()
            .unwrap()
            .to_bits(),
        kernels::sum(&x).to_bits()
    );
    let small: Vec<i64> = (1..=20).collect();
    assert_eq!(
        kernels::reduce(&small, AccumulateOp::Prod).unwrap(),
        Some((1..=20i64).product())
    );
    assert_eq!(
        kernels::reduce::<f64>(&[], AccumulateOp::Max).unwrap(),
        None
    );
    assert!(matches!(
        kernels::reduce(&x, AccumulateOp::Replace),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn fused_updates_equal_their_unfused_equivalents_bit_for_bit() {
    for n in LENGTHS {
        let (p, q, x0, r0) = (data(n, 5), data(n, 6), data(n, 7), data(n, 8));
        let alpha = 0.37;
        // axpy_dot: y += alpha x, returns y . y
        let mut y = r0.clone();
        let yy = kernels::axpy_dot(alpha, &p, &mut y);
        let mut y2 = r0.clone();
        kernels::axpby(alpha, &p, 1.0, &mut y2);
        assert_eq!(y, y2, "axpy_dot update, n = {n}");
        assert_eq!(
            yy.to_bits(),
            kernels::dot(&y2, &y2).to_bits(),
            "axpy_dot, n = {n}"
        );
        // cg_update: x += alpha p, r -= alpha q, returns r . r
        let (mut x, mut r) = (x0.clone(), r0.clone());
        let rr = kernels::cg_update(alpha, &p, &q, &mut x, &mut r);
        let (mut x2, mut r2) = (x0.clone(), r0.clone());
        kernels::axpby(alpha, &p, 1.0, &mut x2);
        kernels::axpby(-alpha, &q, 1.0, &mut r2);
        assert_eq!(x, x2, "cg_update x, n = {n}");
        assert_eq!(r, r2, "cg_update r, n = {n}");
        assert_eq!(
            rr.to_bits(),
            kernels::dot(&r2, &r2).to_bits(),
            "cg_update, n = {n}"
        );
    }
    // integers wrap instead of panicking in debug builds
    let mut r = vec![u32::MAX; 40];
    let rr = kernels::cg_update(3u32, &[1; 40], &[1; 40], &mut [0; 40], &mut r);
    assert_eq!(r, vec![u32::MAX - 3; 40]);
    assert_eq!(
        rr,
        (u32::MAX - 3).wrapping_mul(u32::MAX - 3).wrapping_mul(40)
    );
}

/// Per-point reference of the stencil with the documented term order.
#[allow(clippy::too_many_arguments)]
fn reference_stencil(st: &Stencil5<f64>, b: &Block2<'_, f64>) -> Vec<f64> {
    let (rows, cols) = (b.rows, b.cols);
    let mut y = vec![0.0; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            let mut v = st.center * b.u[i * cols + j];
            let w = if j > 0 {
                Some(b.u[i * cols + j - 1])
            } else {
                b.west.map(|c| c[i])
            };
            let e = if j + 1 < cols {
                Some(b.u[i * cols + j + 1])
            } else {
                b.east.map(|c| c[i])
            };
            let n = if i > 0 {
                Some(b.u[(i - 1) * cols + j])
            } else {
                b.north.map(|r| r[j])
            };
            let s = if i + 1 < rows {
                Some(b.u[(i + 1) * cols + j])
            } else {
                b.south.map(|r| r[j])
            };
            for (c, v2) in [(st.west, w), (st.east, e), (st.north, n), (st.south, s)] {
                if let Some(v2) = v2 {
                    v += c * v2;
                }
            }
            y[i * cols + j] = v;
        }
    }
    y
}

#[test]
fn stencil_matches_the_per_point_reference() {
    let st = Stencil5 {
        center: 4.5,
        west: -1.25,
        east: -0.75,
        north: -1.5,
        south: -0.5,
    };
    for (rows, cols) in [
        (1, 1),
        (1, 2),
        (2, 1),
        (3, 3),
        (7, 13),
        (1, 5000),
        (5000, 1),
        (40, 100),
        (33, 257),
        (64, 64),
    ] {
        let u = data(rows * cols, 9);
        let (nr, sr) = (data(cols, 10), data(cols, 11));
        let (wc, ec) = (data(rows, 12), data(rows, 13));
        for mask in 0..16 {
            let b = Block2 {
                rows,
                cols,
                u: &u,
                north: (mask & 1 != 0).then_some(&nr[..]),
                south: (mask & 2 != 0).then_some(&sr[..]),
                west: (mask & 4 != 0).then_some(&wc[..]),
                east: (mask & 8 != 0).then_some(&ec[..]),
            };
            let want = reference_stencil(&st, &b);
            let mut y = vec![f64::NAN; rows * cols];
            kernels::stencil5(&st, &b, &mut y).unwrap();
            assert_eq!(y, want, "{rows} x {cols}, halo mask {mask}");
            let mut y2 = vec![f64::NAN; rows * cols];
            let d = kernels::stencil5_dot(&st, &b, &mut y2).unwrap();
            assert_eq!(
                y2, want,
                "stencil5_dot values, {rows} x {cols}, mask {mask}"
            );
            assert_eq!(
                d.to_bits(),
                kernels::dot(&u, &want).to_bits(),
                "stencil5_dot, {rows} x {cols}, mask {mask}"
            );
        }
    }
}

#[test]
fn laplacian_stencil_is_the_minus_laplacian() {
    // constant field: interior points give 0, edges count missing neighbours
    let u = vec![1.0f64; 12];
    let mut y = vec![0.0; 12];
    kernels::stencil5(
        &Stencil5::laplacian(),
        &Block2::rows(3, 4, &u, None, None),
        &mut y,
    )
    .unwrap();
    assert_eq!(
        y,
        vec![2.0, 1.0, 1.0, 2.0, 1.0, 0.0, 0.0, 1.0, 2.0, 1.0, 1.0, 2.0]
    );
    let ui = vec![1i64; 12];
    let mut yi = vec![0i64; 12];
    kernels::stencil5(
        &Stencil5::laplacian(),
        &Block2::rows(3, 4, &ui, None, None),
        &mut yi,
    )
    .unwrap();
    assert_eq!(yi, vec![2, 1, 1, 2, 1, 0, 0, 1, 2, 1, 1, 2]);
}

#[test]
fn stencil_rejects_inconsistent_shapes() {
    let u = vec![0.0f64; 12];
    let st = Stencil5::laplacian();
    let bad = |r: Result<(), Error>| matches!(r, Err(Error::InvalidArgument(_)));
    let mut y = vec![0.0; 12];
    assert!(bad(kernels::stencil5(
        &st,
        &Block2::rows(3, 5, &u, None, None),
        &mut y
    )));
    let mut y11 = vec![0.0; 11];
    assert!(bad(kernels::stencil5(
        &st,
        &Block2::rows(3, 4, &u, None, None),
        &mut y11
    )));
    let short = [0.0; 3];
    assert!(bad(kernels::stencil5(
        &st,
        &Block2::rows(3, 4, &u, Some(&short), None),
        &mut y
    )));
    let b = Block2 {
        west: Some(&short[..2]),
        ..Block2::rows(3, 4, &u, None, None)
    };
    assert!(bad(kernels::stencil5(&st, &b, &mut y)));
    assert!(
        kernels::stencil5_dot(&st, &Block2::rows(usize::MAX, 2, &u, None, None), &mut y).is_err()
    );
}
