//! `Summation::Exact`: the same bits on 1, 2, 3 and 4 ranks of the
//! threaded backend, for row bands, 2-D process grids and explicit part
//! sizes with ranks that own nothing, equal to a serial exact sum of the
//! global data (itself checked against an independent big-integer
//! reference in `tests/exact_sum.rs`).

use distarray::exact_sum::{ExactNorm, ExactParts, ExactSum};
use distarray::{linalg, threaded, AccumulateOp, Complex64, DistArray, OneSidedComm, Summation};
use proptest::prelude::*;

const ROWS: usize = 37;
const COLS: usize = 29;

/// Values over many magnitudes and both signs, by global index.
fn value(i: usize, j: usize, seed: u64) -> f64 {
    let mut z = (i as u64 * 1_000_003 + j as u64 * 7919 + seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^= z >> 29;
    z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 32;
    let mant = (z % 1_000_000) as f64 / 1e6 + 0.1;
    let e = ((z >> 20) % 40) as i32 - 20;
    let s = if (z >> 40) & 1 == 1 { -1.0 } else { 1.0 };
    s * mant * 10f64.powi(e)
}

/// The layouts of a `ROWS x COLS` array on `p` ranks.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Rows,
    Grid,
    /// Explicit row part sizes, some ranks owning nothing.
    PartsWithEmpty,
}

fn make<C: OneSidedComm>(
    comm: &C,
    layout: Layout,
    seed: u64,
) -> distarray::Result<DistArray<f64, C, 2>> {
    let p = comm.size();
    let a = match layout {
        Layout::Rows => DistArray::<f64, _, 2>::new(comm.clone(), [ROWS, COLS])?,
        Layout::Grid => {
            let g = if p == 4 { [2, 2] } else { [1, p] };
            DistArray::<f64, _, 2>::with_grid(comm.clone(), g, [ROWS, COLS])?
        }
        Layout::PartsWithEmpty => {
            // everything on the last rank but a few rows on rank 0
            let mut rows = vec![0; p];
            rows[0] = if p > 1 { 5 } else { ROWS };
            if p > 1 {
                rows[p - 1] = ROWS - 5;
            }
            DistArray::<f64, _, 2>::with_part_sizes(comm.clone(), [rows, vec![COLS]])?
        }
    };
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| value(i, j, seed)))?;
    Ok(a.with_summation(Summation::Exact))
}

/// Every exact reduction's bits on one run.
fn reductions<C: OneSidedComm>(comm: C, layout: Layout) -> distarray::Result<Vec<u64>> {
    let x = make(&comm, layout, 1)?;
    let y = make(&comm, layout, 2)?;
    let mut out = vec![
        x.sum()?.to_bits(),
        x.reduce_op(AccumulateOp::Sum)?.to_bits(),
        linalg::dot(&x, &y)?.to_bits(),
        linalg::dot(&x, &x)?.to_bits(),
        linalg::norm2(&x)?.to_bits(),
        x.mean()?.unwrap().to_bits(),
        x.map_sum(|v| v * v * v)?.to_bits(),
    ];
    // f32 and complex elements on the same layout
    let xf = x.similar::<f32>()?;
    xf.with_local_mut(|mut m| m.fill_with(|[i, j]| value(i, j, 3) as f32))?;
    out.push(u64::from(xf.sum()?.to_bits()));
    let z = x.similar::<Complex64>()?;
    z.with_local_mut(|mut m| m.fill_with(|[i, j]| Complex64::new(value(i, j, 4), value(i, j, 5))))?;
    let d = linalg::dot(
        &z,
        &z.similar::<Complex64>().and_then(|w| {
            w.with_local_mut(|mut m| {
                m.fill_with(|[i, j]| Complex64::new(value(i, j, 6), -value(i, j, 7)))
            })?;
            Ok(w)
        })?,
    )?;
    out.extend([d.re.to_bits(), d.im.to_bits()]);
    let s = z.sum()?;
    out.extend([s.re.to_bits(), s.im.to_bits()]);
    // the fused updates return exact dot products too
    let mut r = x.similar::<f64>()?;
    r.assign(&y)?;
    out.push(linalg::axpy_dot(0.5, &x, &mut r)?.to_bits());
    out.push(linalg::dot(&r, &r)?.to_bits());
    let (mut xx, mut rr) = (x.similar::<f64>()?, x.similar::<f64>()?);
    rr.assign(&x)?;
    out.push(linalg::cg_update(0.25, &y, &x, &mut xx, &mut rr)?.to_bits());
    // integer sums, extrema and counts are order-free in both modes
    let xi = x.similar::<i64>()?;
    xi.with_local_mut(|mut m| m.fill_with(|[i, j]| (value(i, j, 8) * 1e3) as i64))?;
    out.push(xi.sum()? as u64);
    out.push(x.max()?.unwrap().to_bits());
    out.push(
        x.argmin()?
            .unwrap()
            .0
            .iter()
            .fold(0, |a, &b| a * 1000 + b as u64),
    );
    out.push(x.count(|v| v > 0.0)? as u64);
    Ok(out)
}

/// The same values computed serially on the global data.
fn serial_reference() -> Vec<u64> {
    let g = |seed| -> Vec<f64> {
        (0..ROWS * COLS)
            .map(|k| value(k / COLS, k % COLS, seed))
            .collect()
    };
    let (x, y) = (g(1), g(2));
    let sum = |v: &[f64]| {
        let mut a = ExactSum::new();
        a.add_slice(v);
        a.to_f64()
    };
    let dot = |a: &[f64], b: &[f64]| {
        let mut acc = ExactSum::new();
        acc.add_products(a, b);
        acc.to_f64()
    };
    let mut norm = ExactNorm::new();
    norm.add_slice(&x);
    let cubes: Vec<f64> = x.iter().map(|v| v * v * v).collect();
    let xf: Vec<f32> = (0..ROWS * COLS)
        .map(|k| value(k / COLS, k % COLS, 3) as f32)
        .collect();
    let mut f = ExactSum::new();
    f.add_slice_f32(&xf);
    let z: Vec<Complex64> = (0..ROWS * COLS)
        .map(|k| Complex64::new(value(k / COLS, k % COLS, 4), value(k / COLS, k % COLS, 5)))
        .collect();
    let w: Vec<Complex64> = (0..ROWS * COLS)
        .map(|k| Complex64::new(value(k / COLS, k % COLS, 6), -value(k / COLS, k % COLS, 7)))
        .collect();
    let mut zd = ExactParts::new();
    zd.add_dot(&z, &w);
    let d: Complex64 = zd.round();
    let mut zs = ExactParts::new();
    zs.add_slice(&z);
    let s: Complex64 = zs.round();
    let r: Vec<f64> = y.iter().zip(&x).map(|(y, x)| y + 0.5 * x).collect();
    let rr2: Vec<f64> = x.iter().zip(&x).map(|(r, q)| r - 0.25 * q).collect();
    let xi: i64 = (0..ROWS * COLS)
        .map(|k| (value(k / COLS, k % COLS, 8) * 1e3) as i64)
        .fold(0i64, |a, b| a.wrapping_add(b));
    let (mut amin, mut vmin, mut vmax) = (0, f64::INFINITY, f64::NEG_INFINITY);
    for (k, &v) in x.iter().enumerate() {
        if v < vmin {
            (amin, vmin) = (k, v);
        }
        vmax = vmax.max(v);
    }
    vec![
        sum(&x).to_bits(),
        sum(&x).to_bits(),
        dot(&x, &y).to_bits(),
        dot(&x, &x).to_bits(),
        norm.norm().to_bits(),
        (sum(&x) / (ROWS * COLS) as f64).to_bits(),
        sum(&cubes).to_bits(),
        u64::from(f.to_f32().to_bits()),
        d.re.to_bits(),
        d.im.to_bits(),
        s.re.to_bits(),
        s.im.to_bits(),
        dot(&r, &r).to_bits(),
        dot(&r, &r).to_bits(),
        dot(&rr2, &rr2).to_bits(),
        xi as u64,
        vmax.to_bits(),
        ((amin / COLS) * 1000 + amin % COLS) as u64,
        x.iter().filter(|&&v| v > 0.0).count() as u64,
    ]
}

#[test]
fn exact_reductions_have_the_same_bits_on_1_to_4_ranks_and_every_layout() {
    let want = serial_reference();
    for layout in [Layout::Rows, Layout::Grid, Layout::PartsWithEmpty] {
        for p in 1..=4 {
            let got = threaded::run_ok(p, |comm| reductions(comm, layout)).unwrap();
            for (rank, g) in got.iter().enumerate() {
                assert_eq!(g, &want, "P = {p}, {layout:?}, rank {rank}");
            }
        }
    }
}

#[test]
fn ordered_mode_is_the_default_and_unchanged() {
    // the fixed-order result is what the kernels give on one rank
    let r = threaded::run_ok(1, |comm| {
        let x = DistArray::<f64, _, 1>::from_fn(comm, [1000], |[i]| value(i, 0, 9))?;
        assert_eq!(x.summation(), Summation::Ordered);
        let s = x.sum()?;
        let local = x.with_local(|l| distarray::kernels::sum(l.as_slice()))?;
        Ok(s.to_bits() == local.to_bits())
    })
    .unwrap();
    assert!(r[0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random data on random part sizes (zeros allowed) over 1..=4 ranks:
    /// the same bits as the serial exact sum and dot.
    #[test]
    fn random_partitions_give_the_serial_exact_bits(
        data in prop::collection::vec(any::<u64>(), 0..3000),
        p in 1usize..=4,
        weights in prop::collection::vec(0usize..4, 4),
    ) {
        let n = data.len();
        let x: Vec<f64> = data.iter().map(|&b| {
            let mant = (b & ((1 << 52) - 1)) as f64 / (1u64 << 52) as f64 + 1.0;
            let e = ((b >> 52) % 121) as i32 - 60;
            if b >> 63 == 1 { -mant * 2f64.powi(e) } else { mant * 2f64.powi(e) }
        }).collect();
        // part sizes from the weights (a rank with weight 0 owns nothing)
        let total: usize = weights[..p].iter().sum::<usize>().max(1);
        let mut sizes: Vec<usize> = weights[..p].iter().map(|w| n * w / total).collect();
        let rest = n - sizes.iter().sum::<usize>();
        let last = (0..p).rev().find(|&r| weights[r] > 0).unwrap_or(p - 1);
        sizes[last] += rest;
        let mut s = ExactSum::new();
        s.add_slice(&x);
        let mut d = ExactSum::new();
        d.add_products(&x, &x);
        let mut nn = ExactNorm::new();
        nn.add_slice(&x);
        let want = [s.to_f64().to_bits(), d.to_f64().to_bits(), nn.norm().to_bits()];
        let xs = &x;
        let got = threaded::run_ok(p, |comm| {
            let a = DistArray::<f64, _, 1>::with_part_sizes(comm, [sizes.clone()])?
                .with_summation(Summation::Exact);
            a.with_local_mut(|mut l| l.fill_with(|[i]| xs[i]))?;
            Ok([a.sum()?.to_bits(), linalg::dot(&a, &a)?.to_bits(), linalg::norm2(&a)?.to_bits()])
        }).unwrap();
        for g in got {
            prop_assert_eq!(g, want);
        }
    }
}

/// `matvec` with `A` split by rows only: every `y[i]` is one kernel call
/// over the whole row, so the bits do not depend on the rank count (the
/// crate docs' claim), also when `x` and `y` are partitioned differently
/// from `A`'s rows.
#[test]
fn matvec_with_rows_split_has_the_same_bits_on_1_to_4_ranks() {
    let (m, n) = (41, 53);
    let mut first: Option<Vec<u64>> = None;
    for p in 1..=4 {
        let got = threaded::run_ok(p, |comm| {
            let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [p, 1], [m, n])?;
            a.with_local_mut(|mut l| l.fill_with(|[i, j]| value(i, j, 11)))?;
            let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [n], |[j]| value(j, 0, 12))?;
            // y with every row on the last rank
            let mut sizes = vec![0; p];
            sizes[p - 1] = m;
            let mut y = DistArray::<f64, _, 1>::with_part_sizes(comm.clone(), [sizes])?;
            linalg::matvec(&a, &x, &mut y)?;
            y.barrier()?;
            Ok(y.to_vec()?.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        })
        .unwrap();
        for g in got {
            match &first {
                None => first = Some(g),
                Some(want) => assert_eq!(&g, want, "P = {p}"),
            }
        }
    }
}
