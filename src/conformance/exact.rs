//! [`Summation::Exact`]: results that do not depend on the number of ranks,
//! the partition or the backend. The suite runs at one rank count at a
//! time, so every check compares the distributed result with a reference
//! computed serially in the same process from the global data: either an
//! independent exact integer sum (`i128`, rounded by the correctly rounded
//! `i128 -> f64` conversion) or, for dot products, norms and a CG solve,
//! the same exact method applied to the whole vector at once. Equal bits
//! at every `P` on every backend are equal bits across them.

use super::array::grid_2d;
use super::{ok, Check, SplitMix};
use crate::comm::OneSidedComm;
use crate::exact_sum::{ExactNorm, ExactParts, ExactSum, Summation};
use crate::linalg::{axpby, cg_update, dot, norm2};
use crate::{AccumulateOp, Complex64, DistArray, Halo};

/// The exact-summation checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        (
            "exact_sums_match_an_integer_reference",
            integer_reference::<C>,
        ),
        ("exact_reductions_any_partition", any_partition::<C>),
        ("exact_cg_same_bits_as_serial", cg_same_bits::<C>),
    ]
}

/// `N` values `k_i 2^-40` with `k_i` in `±2^62` and small ones between:
/// an ill-conditioned sum whose exact value `Σ k_i 2^-40` an `i128` holds.
const N: usize = 1000;

fn integer_values() -> Vec<i64> {
    let mut g = SplitMix(2024);
    (0..N)
        .map(|i| {
            let big = (g.next_u64() >> 2) as i64; // < 2^62
            match i % 3 {
                0 => big,
                1 => (g.next_u64() % 1_000_000) as i64 - 500_000,
                _ => -big + (g.next_u64() % 64) as i64,
            }
        })
        .collect()
}

/// The exact sum of the 1000 values (`k_i 2^-40` rounded to `f64`: every
/// one an integer multiple of `2^-40`), against an `i128` sum of those
/// integers rounded once by the correctly rounded `i128 -> f64`
/// conversion; also `reduce_op(Sum)` and `mean`, on uneven parts.
fn integer_reference<C: OneSidedComm>(comm: &C) {
    let ks = integer_values();
    let scale = 2f64.powi(-40);
    let vals: Vec<f64> = ks.iter().map(|&k| k as f64 * scale).collect();
    // the exact sum of the f64 values as an integer in units of 2^-40
    // (every value is an integer multiple of 2^-40: |k| < 2^62 rounds to a
    // multiple of a power of two >= 1), rounded once by i128 -> f64
    let total: i128 = vals.iter().map(|&v| (v / scale) as i128).sum();
    let want = total as f64 * scale;
    let p = comm.size();
    // rows split unevenly: rank r owns r + 1 shares, the last the rest
    let mut sizes: Vec<usize> = (0..p)
        .map(|r| (r + 1) * N / (p * (p + 1) / 2 + 1))
        .collect();
    sizes[p - 1] += N - sizes.iter().sum::<usize>();
    let a = ok(
        comm,
        "with_part_sizes",
        DistArray::<f64, _, 1>::with_part_sizes(comm.clone(), [sizes]),
    )
    .with_summation(Summation::Exact);
    ok(
        comm,
        "fill",
        a.with_local_mut(|mut l| l.fill_with(|[i]| vals[i])),
    );
    let got = ok(comm, "sum", a.sum());
    assert_eq!(
        got.to_bits(),
        want.to_bits(),
        "rank {}: exact sum {got:?}, the i128 reference {want:?}",
        comm.rank()
    );
    // the ordered kernel is far off here (huge cancellation), exact is not
    let got = ok(comm, "reduce_op(Sum)", a.reduce_op(AccumulateOp::Sum));
    assert_eq!(
        got.to_bits(),
        want.to_bits(),
        "rank {}: reduce_op(Sum)",
        comm.rank()
    );
    let mean = ok(comm, "mean", a.mean()).expect("not empty");
    assert_eq!(
        mean.to_bits(),
        (want / N as f64).to_bits(),
        "rank {}: mean",
        comm.rank()
    );
}

/// A value by global index, over many magnitudes.
fn value(k: usize, seed: u64) -> f64 {
    let mut g = SplitMix(k as u64 * 7919 + seed);
    let mant = (g.next_u64() % 1_000_000) as f64 / 1e6 + 0.05;
    let e = g.below(30) as i32 - 15;
    let s = if g.below(2) == 0 { 1.0 } else { -1.0 };
    s * mant * 10f64.powi(e)
}

/// Sum, dot (real and complex), norm and `map_sum` on three partitions of
/// a 2-D array (rows, the 2-D grid, explicit parts with an empty rank):
/// the bits of the serial exact reference.
fn any_partition<C: OneSidedComm>(comm: &C) {
    let (m, n) = (23, 17);
    let p = comm.size();
    let g = |seed| -> Vec<f64> { (0..m * n).map(|k| value(k, seed)).collect() };
    let (xs, ys) = (g(1), g(2));
    let exact_sum = |v: &[f64]| {
        let mut a = ExactSum::new();
        a.add_slice(v);
        a.to_f64()
    };
    let exact_dot = |a: &[f64], b: &[f64]| {
        let mut acc = ExactSum::new();
        acc.add_products(a, b);
        acc.to_f64()
    };
    let mut nrm = ExactNorm::new();
    nrm.add_slice(&xs);
    let zs: Vec<Complex64> = xs
        .iter()
        .zip(&ys)
        .map(|(&a, &b)| Complex64::new(a, b))
        .collect();
    let mut zd = ExactParts::new();
    zd.add_dot(&zs, &zs[..].iter().rev().copied().collect::<Vec<_>>());
    let want = [
        exact_sum(&xs).to_bits(),
        exact_dot(&xs, &ys).to_bits(),
        nrm.norm().to_bits(),
        exact_sum(&xs.iter().map(|v| v * 3.0).collect::<Vec<_>>()).to_bits(),
        zd.round::<Complex64>().re.to_bits(),
        zd.round::<Complex64>().im.to_bits(),
    ];
    let mut empty_rows = vec![0; p];
    empty_rows[0] = m; // everything on rank 0, the others own nothing
    let layouts: [(&str, crate::Result<DistArray<f64, C, 2>>); 3] = [
        ("rows", DistArray::new(comm.clone(), [m, n])),
        (
            "grid",
            DistArray::with_grid(comm.clone(), grid_2d(p), [m, n]),
        ),
        (
            "parts",
            DistArray::with_part_sizes(comm.clone(), [empty_rows, vec![n]]),
        ),
    ];
    for (name, x) in layouts {
        let x = ok(comm, name, x).with_summation(Summation::Exact);
        ok(
            comm,
            "fill x",
            x.with_local_mut(|mut l| l.fill_with(|[i, j]| xs[i * n + j])),
        );
        let y = ok(comm, "similar", x.similar::<f64>());
        ok(
            comm,
            "fill y",
            y.with_local_mut(|mut l| l.fill_with(|[i, j]| ys[i * n + j])),
        );
        let z = ok(comm, "similar", x.similar::<Complex64>());
        ok(
            comm,
            "fill z",
            z.with_local_mut(|mut l| l.fill_with(|[i, j]| zs[i * n + j])),
        );
        let w = ok(comm, "similar", x.similar::<Complex64>());
        ok(
            comm,
            "fill w",
            w.with_local_mut(|mut l| l.fill_with(|[i, j]| zs[m * n - 1 - (i * n + j)])),
        );
        let zw = ok(comm, "complex dot", dot(&z, &w));
        let got = [
            ok(comm, "sum", x.sum()).to_bits(),
            ok(comm, "dot", dot(&x, &y)).to_bits(),
            ok(comm, "norm2", norm2(&x)).to_bits(),
            ok(comm, "map_sum", x.map_sum(|v| v * 3.0)).to_bits(),
            zw.re.to_bits(),
            zw.im.to_bits(),
        ];
        assert_eq!(
            got,
            want,
            "rank {}: layout {name}: not the serial exact bits",
            comm.rank()
        );
    }
}

/// Grid size of the CG check.
const GRID: usize = 12;
/// CG iterations of the check (fixed: no tolerance test).
const ITERS: usize = 20;

/// `y = 4 u - (west + east + north + south)`, zero outside the grid: the
/// same expression, in the same order, for the serial and the distributed
/// operator.
#[inline]
fn stencil(c: f64, w: f64, e: f64, n: f64, s: f64) -> f64 {
    4.0 * c - w - e - n - s
}

/// A fixed number of CG iterations on the 5-point Laplacian, serially:
/// (`r · r` per iteration, the solution).
fn serial_cg(b: &[f64]) -> (Vec<u64>, Vec<u64>) {
    let n = GRID;
    let at = |u: &[f64], i: isize, j: isize| {
        if i < 0 || j < 0 || i >= n as isize || j >= n as isize {
            0.0
        } else {
            u[i as usize * n + j as usize]
        }
    };
    let apply = |u: &[f64]| -> Vec<f64> {
        (0..n * n)
            .map(|k| {
                let (i, j) = ((k / n) as isize, (k % n) as isize);
                stencil(
                    at(u, i, j),
                    at(u, i, j - 1),
                    at(u, i, j + 1),
                    at(u, i - 1, j),
                    at(u, i + 1, j),
                )
            })
            .collect()
    };
    let dot = |a: &[f64], b: &[f64]| {
        let mut acc = ExactSum::new();
        acc.add_products(a, b);
        acc.to_f64()
    };
    let (mut x, mut r, mut p) = (vec![0.0; n * n], b.to_vec(), b.to_vec());
    let mut rr = dot(&r, &r);
    let mut history = vec![rr.to_bits()];
    for _ in 0..ITERS {
        let ap = apply(&p);
        let alpha = rr / dot(&p, &ap);
        let minus_alpha = -alpha; // the kernel's alpha * (-1), the same bits
        for k in 0..n * n {
            x[k] += alpha * p[k];
            r[k] += minus_alpha * ap[k];
        }
        let rr2 = dot(&r, &r);
        let beta = rr2 / rr;
        for k in 0..n * n {
            p[k] = 1.0 * r[k] + beta * p[k];
        }
        rr = rr2;
        history.push(rr.to_bits());
    }
    (history, x.iter().map(|v| v.to_bits()).collect())
}

/// CG on a `GRID x GRID` grid tiled over the process grid (a [`Halo`] of
/// one layer, not periodic), with exact dot products: the residual history
/// and the solution have the serial run's bits.
fn cg_same_bits<C: OneSidedComm>(comm: &C) {
    let n = GRID;
    let bvals: Vec<f64> = (0..n * n).map(|k| value(k, 7)).collect();
    let (want_hist, want_x) = serial_cg(&bvals);
    let b = ok(
        comm,
        "with_grid",
        DistArray::<f64, _, 2>::with_grid(comm.clone(), grid_2d(comm.size()), [n, n]),
    )
    .with_summation(Summation::Exact);
    ok(
        comm,
        "fill b",
        b.with_local_mut(|mut l| l.fill_with(|[i, j]| bvals[i * n + j])),
    );
    let mk = || ok(comm, "similar", b.similar::<f64>());
    let (mut x, mut r, mut p, ap) = (mk(), mk(), mk(), mk());
    ok(comm, "assign", r.assign(&b));
    ok(comm, "assign", p.assign(&b));
    let mut halo = ok(
        comm,
        "Halo::new",
        Halo::new_faces(&p, [1, 1], [false, false]),
    );
    let mut rr = ok(comm, "dot", dot(&r, &r));
    let mut history = vec![rr.to_bits()];
    for _ in 0..ITERS {
        ok(comm, "refresh", halo.refresh(&p));
        let ext = halo.view();
        let [rows, cols] = p.local_shape();
        ok(
            comm,
            "apply",
            ap.with_local_mut(|mut l| {
                let out = l.as_mut_slice();
                for i in 0..rows {
                    for j in 0..cols {
                        let (a, c) = (i + 1, j + 1);
                        out[i * cols + j] = stencil(
                            ext[[a, c]],
                            ext[[a, c - 1]],
                            ext[[a, c + 1]],
                            ext[[a - 1, c]],
                            ext[[a + 1, c]],
                        );
                    }
                }
            }),
        );
        let alpha = rr / ok(comm, "dot", dot(&p, &ap));
        let rr2 = ok(comm, "cg_update", cg_update(alpha, &p, &ap, &mut x, &mut r));
        ok(comm, "axpby", axpby(1.0, &r, rr2 / rr, &mut p));
        rr = rr2;
        history.push(rr.to_bits());
    }
    assert_eq!(history, want_hist, "rank {}: residual history", comm.rank());
    ok(comm, "barrier", x.barrier());
    let got_x: Vec<u64> = ok(comm, "to_vec", x.to_vec())
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(got_x, want_x, "rank {}: solution bits", comm.rank());
}
