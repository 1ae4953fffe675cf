//! The exact accumulator against an independent exact reference (a big
//! integer in base 2^32 and the hardware's correctly rounded `u64 -> f64`
//! conversion), on random data, random splits and merge orders, special
//! values and ill-conditioned sums.

use distarray::exact_sum::{ExactNorm, ExactParts, ExactSum};
use distarray::{kernels, Complex64};
use proptest::prelude::*;

/// An exact sum of floats as a big integer in units of `2^lsb`, base-2^32
/// digits (carry-save until [`Big::normalise`]).
struct Big {
    lsb: i32,
    d: Vec<i64>,
}

impl Big {
    fn new(lsb: i32) -> Self {
        Big {
            lsb,
            d: vec![0; 80],
        }
    }

    /// Adds `m * 2^e` (`m` up to 2^53, `e >= lsb`).
    fn add_parts(&mut self, neg: bool, m: u64, e: i32) {
        let pos = (e - self.lsb) as usize;
        let v = (m as u128) << (pos % 32);
        for k in 0..3 {
            let digit = ((v >> (32 * k)) & 0xffff_ffff) as i64;
            self.d[pos / 32 + k] += if neg { -digit } else { digit };
        }
    }

    fn add_f64(&mut self, x: f64) {
        assert!(x.is_finite());
        let b = x.to_bits();
        let ef = ((b >> 52) & 0x7ff) as i32;
        let frac = b & ((1 << 52) - 1);
        let (m, e) = if ef == 0 {
            (frac, -1074)
        } else {
            (frac | 1 << 52, ef - 1075)
        };
        self.add_parts(b >> 63 == 1, m, e);
    }

    fn add_f32(&mut self, x: f32) {
        assert!(x.is_finite());
        let b = x.to_bits();
        let ef = ((b >> 23) & 0xff) as i32;
        let frac = (b & ((1 << 23) - 1)) as u64;
        let (m, e) = if ef == 0 {
            (frac, -149)
        } else {
            (frac | 1 << 23, ef - 150)
        };
        self.add_parts(b >> 31 == 1, m, e);
    }

    /// (negative, magnitude digits in 0..2^32).
    fn normalise(&self) -> (bool, Vec<i64>) {
        let carry = |d: &mut Vec<i64>| {
            for k in 0..d.len() - 1 {
                let c = d[k] >> 32; // floor
                d[k] -= c << 32;
                d[k + 1] += c;
            }
        };
        let mut d = self.d.clone();
        carry(&mut d);
        let neg = *d.last().unwrap() < 0;
        if neg {
            d.iter_mut().for_each(|v| *v = -*v);
            carry(&mut d);
        }
        (neg, d)
    }

    /// The top 64 bits of the magnitude (bit 0 ORed with every bit below:
    /// a sticky bit) and their shift: `|S| ≈ top * 2^shift` units.
    fn top64(&self) -> (bool, u64, i32) {
        let (neg, d) = self.normalise();
        let bits: Vec<bool> = d
            .iter()
            .flat_map(|&v| (0..32).map(move |i| (v >> i) & 1 == 1))
            .collect();
        let Some(t) = bits.iter().rposition(|&b| b) else {
            return (neg, 0, 0);
        };
        if t < 64 {
            let v = (0..=t).fold(0u64, |a, i| a | (bits[i] as u64) << i);
            return (neg, v, 0);
        }
        let lo = t - 63;
        let mut v = (lo..=t).fold(0u64, |a, i| a | (bits[i] as u64) << (i - lo));
        if bits[..lo].iter().any(|&b| b) {
            v |= 1;
        }
        (neg, v, lo as i32)
    }

    /// The correctly rounded `f64` (`+0.0` for zero).
    fn to_f64(&self) -> f64 {
        let (neg, top, shift) = self.top64();
        let e = shift + self.lsb;
        let v = (top as f64) * 2f64.powi(e / 2) * 2f64.powi(e - e / 2);
        if neg {
            -v
        } else {
            v
        }
    }

    /// The correctly rounded `f32`.
    fn to_f32(&self) -> f32 {
        let (neg, top, shift) = self.top64();
        let e = shift + self.lsb;
        let v = (top as f32) * 2f32.powi(e / 2) * 2f32.powi(e - e / 2);
        if neg {
            -v
        } else {
            v
        }
    }
}

fn reference(x: &[f64]) -> f64 {
    let mut b = Big::new(-1074);
    x.iter().for_each(|&v| b.add_f64(v));
    b.to_f64()
}

fn exact(x: &[f64]) -> f64 {
    let mut a = ExactSum::new();
    a.add_slice(x);
    a.to_f64()
}

/// A finite f64 from random bits, exponents spread over `-range..range`.
fn wide(bits: u64, range: i32) -> f64 {
    let mant = (bits & ((1 << 52) - 1)) as f64 / (1u64 << 52) as f64 + 1.0;
    let e = ((bits >> 52) % (2 * range as u64 + 1)) as i32 - range;
    let s = if bits >> 63 == 1 { -1.0 } else { 1.0 };
    s * mant * 2f64.powi(e)
}

#[test]
fn reference_itself_is_right_on_small_cases() {
    assert_eq!(reference(&[1.0, 2.0, 3.5]), 6.5);
    assert_eq!(reference(&[1e16, 1.0, -1e16]), 1.0);
    assert_eq!(reference(&[f64::MAX, f64::MAX]), f64::INFINITY);
    assert_eq!(reference(&[5e-324, 5e-324]), 1e-323);
    assert_eq!(reference(&[1.0, 2f64.powi(-53)]), 1.0); // tie to even
    assert_eq!(
        reference(&[1.0, 2f64.powi(-53), 2f64.powi(-100)]),
        1.0 + f64::EPSILON
    );
}

#[test]
fn special_values_follow_ieee() {
    assert!(exact(&[1.0, f64::NAN, 2.0]).is_nan());
    assert!(exact(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
    assert_eq!(exact(&[f64::INFINITY, -1e308, -1e308]), f64::INFINITY);
    assert_eq!(exact(&[f64::NEG_INFINITY, 1.0]), f64::NEG_INFINITY);
    // -0.0 only when every term is -0.0
    assert_eq!(exact(&[-0.0, -0.0]).to_bits(), (-0.0f64).to_bits());
    assert_eq!(exact(&[-0.0, 0.0]).to_bits(), 0);
    assert_eq!(exact(&[1.5, -1.5]).to_bits(), 0);
    assert_eq!(exact(&[]).to_bits(), 0);
    // many -0.0 in a chunk of the fast path, and a +0.0 among them
    let mut z = vec![-0.0; 3000];
    assert_eq!(exact(&z).to_bits(), (-0.0f64).to_bits());
    z[2500] = 0.0;
    assert_eq!(exact(&z).to_bits(), 0);
    // subnormals and the largest values, exactly
    let tiny = [5e-324, 1e-310, -2e-320, 3e-315];
    assert_eq!(exact(&tiny), reference(&tiny));
    assert_eq!(exact(&[f64::MAX, f64::MAX, -f64::MAX]), f64::MAX);
    assert_eq!(exact(&[f64::MAX, f64::MAX]), f64::INFINITY);
    assert_eq!(exact(&[-f64::MAX, -f64::MAX]), f64::NEG_INFINITY);
    // NaN in the fast path's chunk scan
    let mut v = vec![1.0; 5000];
    v[4321] = f64::NAN;
    assert!(exact(&v).is_nan());
}

#[test]
fn ill_conditioned_sums_are_exact_and_better_than_the_ordered_kernel() {
    // alternating ±1e16 with small values: huge cancellation
    let mut x = Vec::new();
    for k in 0..100_000 {
        let s = if k % 2 == 0 { 1e16 } else { -1e16 };
        x.push(s);
        x.push(0.1 * (k % 7) as f64 + 1e-3);
        x.push(-s * (1.0 + f64::EPSILON * (k % 3) as f64));
    }
    let want = reference(&x);
    let got = exact(&x);
    assert_eq!(got.to_bits(), want.to_bits());
    let ordered = kernels::sum(&x);
    assert!(
        (got - want).abs() <= (ordered - want).abs(),
        "exact {got} ordered {ordered} reference {want}"
    );
    // ordered summation is far off here, exact is not
    assert!(
        (ordered - want).abs() > 1.0,
        "ordered {ordered} want {want}"
    );
    // a sum that cancels to a tiny value: 1e300 - 1e300 + 1e-300
    let y = [1e300, 1e-300, -1e300, 3e-310];
    assert_eq!(exact(&y), reference(&y));
    assert_eq!(exact(&y), 1e-300 + 3e-310);
}

#[test]
fn f32_and_complex_round_once() {
    let x: Vec<f32> = (0..5000)
        .map(|k| 1.0 / (k as f32 + 1.0) * if k % 3 == 0 { -1e7 } else { 1.0 })
        .collect();
    let mut big = Big::new(-149);
    x.iter().for_each(|&v| big.add_f32(v));
    let mut acc = ExactSum::new();
    acc.add_slice_f32(&x);
    assert_eq!(acc.to_f32().to_bits(), big.to_f32().to_bits());
    let mut p = ExactParts::new();
    p.add_slice(&x);
    assert_eq!(p.round::<f32>().to_bits(), big.to_f32().to_bits());
    // exact f32 dot: products exact in f64
    let mut d = ExactParts::new();
    d.add_dot(&x, &x);
    let mut bd = Big::new(-1074);
    x.iter()
        .for_each(|&v| bd.add_f64(f64::from(v) * f64::from(v)));
    let mut b32 = Big::new(-298);
    // the same exact value in units of 2^-298 (f32 squares) rounded to f32
    x.iter().for_each(|&v| {
        let sq = f64::from(v) * f64::from(v);
        let b = sq.to_bits();
        let ef = ((b >> 52) & 0x7ff) as i32;
        let (m, e) = (b & ((1 << 52) - 1) | 1 << 52, ef - 1075);
        b32.add_parts(false, m, e);
    });
    assert_eq!(d.round::<f32>().to_bits(), b32.to_f32().to_bits());
    // complex: conj(z) · w, real and imaginary parts of rounded products
    let z: Vec<Complex64> = (0..3000)
        .map(|k| Complex64::new(wide(k * 77 + 1, 40), wide(k * 91 + 5, 40)))
        .collect();
    let w: Vec<Complex64> = (0..3000)
        .map(|k| Complex64::new(wide(k * 13 + 2, 40), wide(k * 29 + 7, 40)))
        .collect();
    let mut c = ExactParts::new();
    c.add_dot(&z, &w);
    let (mut re, mut im) = (Big::new(-1074), Big::new(-1074));
    for (a, b) in z.iter().zip(&w) {
        re.add_f64(a.re * b.re);
        re.add_f64(a.im * b.im);
        im.add_f64(a.re * b.im);
        im.add_f64(-(a.im * b.re));
    }
    let got = c.round::<Complex64>();
    assert_eq!(got.re.to_bits(), re.to_f64().to_bits());
    assert_eq!(got.im.to_bits(), im.to_f64().to_bits());
    let mut s = ExactParts::new();
    s.add_slice(&z);
    let (mut sre, mut sim) = (Big::new(-1074), Big::new(-1074));
    z.iter().for_each(|v| {
        sre.add_f64(v.re);
        sim.add_f64(v.im)
    });
    assert_eq!(
        s.round::<Complex64>(),
        Complex64::new(sre.to_f64(), sim.to_f64())
    );
}

#[test]
fn norm_has_no_overflow_or_underflow_and_is_partition_independent() {
    // the squares are rounded: within 2 ulps (relative 1.5 u at most)
    let close = |got: f64, want: f64| (got - want).abs() <= 2.0 * (want.next_up() - want);
    let mut n = ExactNorm::new();
    n.add_slice(&[3e200, 4e200]);
    assert!(close(n.norm(), 5e200), "{}", n.norm());
    let mut n = ExactNorm::new();
    n.add_slice(&[3e-200, 4e-200]);
    assert!(close(n.norm(), 5e-200), "{}", n.norm());
    // split anywhere, merged: the same bits
    let x: Vec<f64> = (0..7000).map(|k| wide(k * 0x9E37_79B9 + 3, 700)).collect();
    let mut whole = ExactNorm::new();
    whole.add_slice(&x);
    for cut in [0, 1, 999, 1024, 3500, 6999] {
        let (mut a, mut b) = (ExactNorm::new(), ExactNorm::new());
        a.add_slice(&x[cut..]);
        b.add_slice(&x[..cut]);
        a.merge(&b);
        assert_eq!(a.norm().to_bits(), whole.norm().to_bits());
        assert_eq!(ExactNorm::from_wire(&a.to_wire()), a);
    }
    assert!(whole.norm().is_finite() && whole.norm() > 0.0);
    let mut n = ExactNorm::new();
    n.add_slice(&[1e300, 1e-300, 3.0, 4.0]);
    assert_eq!(n.norm(), 1e300);
    let mut n = ExactNorm::new();
    n.add_slice(&[3.0, 4.0]);
    assert_eq!(n.norm(), 5.0);
    let mut n = ExactNorm::new();
    n.add_slice(&[1.0, f64::INFINITY]);
    assert_eq!(n.norm(), f64::INFINITY);
    n.add_slice(&[f64::NAN]);
    assert!(n.norm().is_nan());
    assert_eq!(ExactNorm::new().norm(), 0.0);
    // the norm of 2^20 ones is 1024 exactly; a subnormal vector's too
    let mut n = ExactNorm::new();
    n.add_slice(&vec![1.0; 1 << 20]);
    assert_eq!(n.norm(), 1024.0);
    let mut n = ExactNorm::new();
    n.add_slice(&[5e-324; 4]);
    assert_eq!(n.norm(), 1e-323);
}

/// Random values for the properties: ordinary, wide-range, with zeros.
fn values() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<u64>().prop_map(|b| wide(b, 30)),
            2 => any::<u64>().prop_map(|b| wide(b, 1000)),
            1 => any::<u64>().prop_map(|b| wide(b, 2) * 1e16),
            1 => Just(0.0),
            1 => Just(-0.0),
            1 => any::<u64>().prop_map(|b| f64::from_bits(b & ((1 << 52) - 1))), // subnormal
        ],
        0..5000,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random data cut into random parts, summed per part and merged in a
    /// random order: the same bits as one accumulator, and the correctly
    /// rounded exact sum.
    #[test]
    fn any_split_any_order_same_bits(x in values(), cuts in prop::collection::vec(any::<usize>(), 0..8), order in any::<u64>()) {
        let whole = exact(&x);
        let want = reference(&x);
        prop_assert_eq!(whole.to_bits(), want.to_bits());
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (x.len() + 1)).collect();
        bounds.push(0);
        bounds.push(x.len());
        bounds.sort();
        let mut parts: Vec<ExactSum> = bounds.windows(2).map(|w| {
            let mut a = ExactSum::new();
            a.add_slice(&x[w[0]..w[1]]);
            a
        }).collect();
        // a random merge order: rotate and reverse by the seed
        let shift = (order as usize) % parts.len();
        parts.rotate_left(shift);
        if order & 1 == 1 {
            parts.reverse();
        }
        let mut total = ExactSum::new();
        for p in &parts {
            total.merge(p);
        }
        prop_assert_eq!(total.to_f64().to_bits(), want.to_bits());
        // the wire form round-trips
        prop_assert_eq!(ExactSum::from_wire(&total.to_wire()), total);
        // one at a time agrees too
        let mut one = ExactSum::new();
        x.iter().rev().for_each(|&v| one.add(v));
        prop_assert_eq!(one.to_f64().to_bits(), want.to_bits());
    }

    /// Chunks at the edge of the one-split path: magnitudes exactly at the
    /// largest and the smallest exponent it accepts (32 apart) and one
    /// just beyond, full mantissas, random signs, whole chunks.
    #[test]
    fn narrow_chunks_at_the_bound(bits in prop::collection::vec(any::<u64>(), 1024..3100), e in -900i32..900, beyond in any::<bool>()) {
        let x: Vec<f64> = bits.iter().enumerate().map(|(k, &b)| {
            let mant = f64::from_bits(0x3ff0_0000_0000_0000 | (b & ((1 << 52) - 1))); // [1, 2)
            let ex = match k % 3 { 0 => e, 1 => e - 32, _ => if beyond { e - 33 } else { e - 1 } };
            let v = mant * 2f64.powi(ex);
            if b >> 63 == 1 { -v } else { v }
        }).collect();
        prop_assert_eq!(exact(&x).to_bits(), reference(&x).to_bits());
    }

    /// Products: the correctly rounded sum of the rounded products.
    #[test]
    fn products_are_summed_exactly(x in values(), seed in any::<u64>()) {
        let y: Vec<f64> = (0..x.len()).map(|k| wide(seed.wrapping_add(k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15), 20)).collect();
        let mut a = ExactSum::new();
        a.add_products(&x, &y);
        let prods: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
        if prods.iter().all(|p| p.is_finite()) {
            prop_assert_eq!(a.to_f64().to_bits(), reference(&prods).to_bits());
        }
    }
}
