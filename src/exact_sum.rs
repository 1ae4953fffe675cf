//! Exact floating-point summation: the same bits for any number of ranks,
//! any partition and any backend.
//!
//! [`ExactSum`] is a fixed-size integer **superaccumulator**: a 2176-bit
//! two's-complement integer whose bit 0 weighs `2^-1074` (the smallest
//! subnormal `f64`), so every finite `f64` is an integer multiple of it and
//! the exact sum of up to `2^77` finite `f64` values fits. Adding values
//! into it is exact, so the accumulated value is the exact mathematical sum
//! whatever the order, the grouping, the number of parts or the rank count;
//! two accumulators combine by exact integer addition ([`ExactSum::merge`]),
//! which is associative and commutative, so any reduction tree gives the
//! same integer. The total is rounded **once** ([`ExactSum::to_f64`],
//! [`ExactSum::to_f32`]), to nearest, ties to even: the result is the
//! **correctly rounded exact sum**, error at most 0.5 ulp of the result
//! (`|result - exact| <= ulp(result) / 2`, the best any `f64` can do), where
//! a recursive `f64` sum of `n` terms may be off by up to
//! `(n - 1) u Σ|x_i|` (`u = 2^-53`) — which for a sum with cancellation is
//! any number of ulps.
//!
//! # The method (fast path)
//!
//! Adding each element into the big integer (a shift and a carry chain per
//! element) would cost far more than reading it. Instead the input is cut
//! into chunks of at most [`CHUNK`] = 1024 elements, and each chunk is
//! split exactly into a few **bins** with floating-point operations only
//! (Rump, Ogita and Oishi's error-free extraction, *Accurate floating-point
//! summation*, SIAM J. Sci. Comput. 31, 2008):
//!
//! 1. one pass (the only one that reads memory; the others run on the
//!    chunk in L1) finds `M = max |x_i|`, the smallest nonzero magnitude
//!    and whether any element is NaN or infinite; let `2^e <= M < 2^(e+1)`
//!    and `σ = 2^(e+1+11)`;
//! 2. for each element `q_i = (σ + x_i) - σ` and `r_i = x_i - q_i`. Both are
//!    exact: `σ + x_i` lies in `[σ/2, 2σ]`, so the subtraction of `σ` is
//!    exact (Sterbenz), and `r_i` is the rounding error of `σ + x_i`, which
//!    is representable; `q_i` is a multiple of `2^(s-53)` (`σ = 2^s`) with
//!    `|q_i| <= 2^(s-11) + 2^(s-53)`, and `|r_i| <= 2^(s-53)`;
//! 3. any partial sum of at most 1024 such `q_i` is a multiple of `2^(s-53)`
//!    below `1024 (2^(s-11) + 2^(s-53)) < 2^s` in magnitude, i.e. a 53-bit
//!    integer times `2^(s-53)`: **the `f64` sum of the `q_i` is exact in any
//!    order** (so it runs in independent SIMD lanes);
//! 4. when the chunk is **narrow** — its smallest nonzero magnitude within
//!    `2^32` of its largest, as for most real data — the remainders are
//!    summed in `f64` directly, which is exact too (they are multiples of
//!    the smallest element's last bit and below `2^(s-53)`: at most 53 bits
//!    for 1024 of them; proof at `ExactSum::add_chunk`): one pass of 5
//!    flops per element after the max/min pass;
//! 5. otherwise the remainders `r_i` are split again with `σ' = 2^(s-42)`
//!    (the next 42 bits), and so on. This path does two levels in one fused pass
//!    (84 bits below the chunk's top: every element within `2^31` of the
//!    chunk's largest is covered); when some remainder is still nonzero the
//!    chunk is redone with as many levels as needed, each in place, until
//!    every remainder is zero (they are multiples of `2^-1074` smaller than
//!    `2^(s-53)`, so this ends by `s ≈ -1021` at the latest).
//!
//! The few bin sums per chunk — exact `f64` values — are then added into the
//! integer accumulator (a shift and a short carry chain each). Chunks whose
//! largest element is at least `2^1000` or below `2^-1000`, where `σ` would
//! leave the `f64` range, add their elements to the integer one at a time
//! (exact too, just slower).
//!
//! # Across ranks
//!
//! A distributed reduction ([`Summation::Exact`], used by
//! [`DistArray::sum`](crate::DistArray::sum), `linalg::dot`, ...) fills one
//! accumulator per rank from its part and merges them with [`allreduce`]:
//! an allreduce (with the success vote) carrying `8 + 280` bytes per real
//! sum, where the ordered path's carries `8 + 8` for an `f64`. The ranks
//! must agree on the mode before their paths part: the exact path opens
//! with a vote of the ordered path's size (`8 + 8` bytes for an `f64`
//! sum) that is the very collective the ordered path reduces its value in,
//! and both carry the operands' modes in the vote word, so
//! ranks whose modes differ all get
//! [`Error::InvalidArgument`](crate::Error::InvalidArgument) there (one
//! small collective more on the exact path; none on the ordered one).
//! Integer addition makes the
//! merged integer independent of the backend's reduction tree, so every
//! rank, every rank count, every partition and every backend round the
//! same integer to the same bits.
//!
//! # Special values
//!
//! As IEEE addition would give: NaN if any term is NaN or if both `+inf`
//! and `-inf` occur, otherwise `±inf` if any term is infinite; `-0.0` if
//! every term is `-0.0` (and there is at least one), `+0.0` for any other
//! exact zero (IEEE's `x + (-x) = +0.0`) and for no terms at all. A finite
//! exact sum beyond `f64::MAX` rounds to `±inf`, as its correct rounding.
//!
//! # Products and norms
//!
//! [`ExactSum::add_products`] adds the **rounded** products `fl(x_i y_i)`
//! exactly: the product is a function of the element alone, so the result
//! still does not depend on the partition, and it is the correctly rounded
//! `Σ fl(x_i y_i)` — error at most `0.5 ulp(result) + u Σ |x_i y_i|`. For
//! `f32` data the products are formed in `f64`, where they are exact
//! (24 + 24 bits), so an `f32` dot product is the correctly rounded exact
//! dot. [`ExactNorm`] does the same with squares, kept in three exactly
//! scaled magnitude classes so that no square overflows or underflows
//! where the norm is representable (see its docs).
//!
//! ```
//! use distarray::exact_sum::ExactSum;
//! let x = [1e16, 1.0, -1e16, 1e-3, 3.0];
//! assert_eq!(x.iter().sum::<f64>(), 3.001); // recursive summation loses the 1.0
//! let mut acc = ExactSum::new();
//! acc.add_slice(&x);
//! assert_eq!(acc.to_f64(), 4.001); // the correctly rounded exact sum
//! // any split, any order, merged: the same bits
//! let (mut a, mut b) = (ExactSum::new(), ExactSum::new());
//! a.add_slice(&x[3..]);
//! b.add_slice(&x[..3]);
//! a.merge(&b);
//! assert_eq!(a.to_f64().to_bits(), acc.to_f64().to_bits());
//! ```

use crate::comm::{Element, ElementKind};

/// Runs `$body` compiled for AVX-512 or AVX2 when the CPU has them, and for
/// the baseline otherwise (as the [`kernels`](crate::kernels) do with
/// AVX2). The results are exact whatever the vector width, so every path
/// gives the same bits.
macro_rules! dispatch {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) $body
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $body
                if std::arch::is_x86_feature_detected!("avx512f")
                    && !crate::kernels::force_baseline()
                {
                    // SAFETY: the CPU supports AVX-512F (checked just
                    // above), the only requirement of calling an
                    // `#[target_feature(enable = "avx512f")]` function.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && !crate::kernels::force_baseline() {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            #[allow(clippy::needless_return)]
            $body
        }
    };
}

/// 64-bit limbs of the accumulator: 2176 bits, bit 0 weighing `2^-1074`.
/// The largest finite `f64` reaches bit 2097, the sign is bit 2175: 77 bits
/// of headroom for carries.
pub const LIMBS: usize = 34;

/// Weight of the accumulator's bit 0: `2^LSB_EXP`.
const LSB_EXP: i32 = -1074;

/// Largest chunk split by the floating-point extraction (a power of two:
/// the headroom below needs `CHUNK · (2^-HEADROOM + 2^-53) < 1`).
pub const CHUNK: usize = 1024;

/// `σ = 2^(e + 1 + HEADROOM)` for a chunk whose largest magnitude is below
/// `2^(e+1)`.
const HEADROOM: i32 = 11;

/// Bits extracted per level: the next `σ` is `2^(s - STEP)`.
const STEP: i32 = 53 - HEADROOM;

/// A chunk whose nonzero magnitudes all lie within `2^NARROW` of its
/// largest needs a single split (see [`ExactSum::add_chunk`]).
const NARROW: i32 = 32;

/// Independent SIMD lanes of the chunk passes.
const LANES: usize = 16;

/// Bits of an infinite `f64` with the sign cleared (and the smallest NaN
/// magnitude is above it).
const INF_BITS: u64 = 0x7ff0_0000_0000_0000;

/// Flag: a term was NaN.
const F_NAN: u64 = 1;
/// Flag: a term was `+inf`.
const F_POS_INF: u64 = 2;
/// Flag: a term was `-inf`.
const F_NEG_INF: u64 = 4;
/// Flag: a term was something else than `-0.0`.
const F_NOT_NEG_ZERO: u64 = 8;
/// Flag: there was a term.
const F_TERM: u64 = 16;

/// An exact sum of `f64` values (see the [module docs](self)): add values
/// in any order and grouping, [`merge`](Self::merge) accumulators in any
/// order, and [`to_f64`](Self::to_f64) gives the same bits — the correctly
/// rounded exact sum.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExactSum {
    /// Two's complement, little-endian limbs.
    limbs: [u64; LIMBS],
    /// `F_*` flags, combined with `|`.
    flags: u64,
}

/// The plain-old-data form of an [`ExactSum`] (limbs, then flags), for
/// collectives.
pub type Wire = [u64; LIMBS + 1];

impl Default for ExactSum {
    fn default() -> Self {
        Self::new()
    }
}

/// `2^s` for `-1074 <= s <= 1023` (subnormal below `-1022`).
#[inline(always)]
fn pow2(s: i32) -> f64 {
    debug_assert!((-1074..=1023).contains(&s));
    if s >= -1022 {
        f64::from_bits(((s + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (s + 1074))
    }
}

/// `x · 2^e` with one final rounding (exact when the result is
/// representable; `±inf` beyond the range).
fn ldexp(mut x: f64, mut e: i32) -> f64 {
    while e > 1000 {
        x *= pow2(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= pow2(-1000);
        e += 1000;
    }
    x * pow2(e)
}

/// Exponent `e` of a finite nonzero magnitude given by its bits:
/// `2^e <= v < 2^(e+1)`.
#[inline(always)]
fn exponent_of_bits(abs_bits: u64) -> i32 {
    let ef = (abs_bits >> 52) as i32;
    if ef != 0 {
        ef - 1023
    } else {
        63 - abs_bits.leading_zeros() as i32 - 1074
    }
}

/// The largest `|x_i|` as bits (`>= INF_BITS` if some element is NaN or
/// infinite) and the smallest nonzero one (`u64::MAX` if there is none).
#[inline(always)]
fn abs_bits_range(xs: &[f64]) -> (u64, u64) {
    let (mut hi, mut lo) = ([0i64; LANES], [i64::MAX; LANES]);
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        // this pass is the one that reads memory: the kernels' prefetch
        crate::kernels::prefetch_ahead(c);
        for l in 0..LANES {
            let b = (c[l].to_bits() & !(1u64 << 63)) as i64;
            hi[l] = if b > hi[l] { b } else { hi[l] };
            let nz = if b == 0 { i64::MAX } else { b };
            lo[l] = if nz < lo[l] { nz } else { lo[l] };
        }
    }
    let mut hi = hi.iter().copied().max().unwrap_or(0);
    let mut lo = lo.iter().copied().min().unwrap_or(i64::MAX);
    for &v in rest {
        let b = (v.to_bits() & !(1u64 << 63)) as i64;
        hi = hi.max(b);
        if b != 0 {
            lo = lo.min(b);
        }
    }
    (hi as u64, if lo == i64::MAX { u64::MAX } else { lo as u64 })
}

/// Lane sums (any order: the sums are exact) and lane maxima.
#[inline(always)]
fn fold(t: [f64; LANES]) -> f64 {
    t.iter().fold(0.0, |a, &b| a + b)
}

#[inline(always)]
fn fold_max(m: [f64; LANES]) -> f64 {
    m.iter().fold(0.0, |a: f64, &b| if b > a { b } else { a })
}

/// One split with `σ = 2^s` of a narrow chunk (nonzero magnitudes within
/// `2^NARROW` of the largest): the exact sums of the extracted parts and of
/// the remainders, both exact in `f64` (see [`ExactSum::add_chunk`]).
#[inline(always)]
fn one_split(xs: &[f64], s: f64) -> (f64, f64) {
    let (mut t1, mut t2, mut any) = ([0.0f64; LANES], [0.0f64; LANES], [0u64; LANES]);
    // the same body for the whole chunks and the zero-padded tail (a
    // macro, not a closure: a closure may stay out of line, compiled
    // without the caller's vector features). Noting whether a remainder
    // is nonzero saves adding a zero sum — and this form is the one LLVM
    // vectorises (without it, it keeps the loop scalar).
    macro_rules! step {
        ($c:expr) => {
            let c: &[f64; LANES] = $c;
            for l in 0..LANES {
                let p = c[l];
                let q = (s + p) - s;
                let r = p - q;
                t1[l] += q;
                t2[l] += r;
                any[l] |= r.to_bits();
            }
        };
    }
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        step!(c.try_into().expect("chunk of LANES"));
    }
    if !rest.is_empty() {
        let mut last = [0.0; LANES];
        last[..rest.len()].copy_from_slice(rest);
        step!(&last);
    }
    let any = any.iter().fold(0, |a, &b| a | b) & !(1u64 << 63);
    (fold(t1), if any == 0 { 0.0 } else { fold(t2) })
}

/// Two extraction levels (`σ1 = 2^s`, `σ2 = 2^(s - STEP)`) in one pass:
/// the exact sums of both levels' parts and whether a remainder is left.
#[inline(always)]
fn two_levels(xs: &[f64], s1: f64, s2: f64) -> (f64, f64, bool) {
    let (mut t1, mut t2, mut any) = ([0.0f64; LANES], [0.0f64; LANES], [0u64; LANES]);
    macro_rules! step {
        ($c:expr) => {
            let c: &[f64; LANES] = $c;
            for l in 0..LANES {
                let p = c[l];
                let q1 = (s1 + p) - s1;
                let r1 = p - q1;
                t1[l] += q1;
                let q2 = (s2 + r1) - s2;
                t2[l] += q2;
                // a nonzero remainder shows in the bits below the sign
                any[l] |= (r1 - q2).to_bits();
            }
        };
    }
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        step!(c.try_into().expect("chunk of LANES"));
    }
    if !rest.is_empty() {
        let mut last = [0.0; LANES];
        last[..rest.len()].copy_from_slice(rest);
        step!(&last);
    }
    let any = any.iter().fold(0, |a, &b| a | b) & !(1u64 << 63);
    (fold(t1), fold(t2), any != 0)
}

/// One extraction level with `σ = 2^s`, in place: `buf` becomes the
/// remainders; returns the exact sum of the extracted parts and the
/// largest remainder.
#[inline(always)]
fn level_in_place(buf: &mut [f64], s: f64) -> (f64, f64) {
    let (mut t, mut m) = ([0.0f64; LANES], [0.0f64; LANES]);
    let mut chunks = buf.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            let p = c[l];
            let q = (s + p) - s;
            let r = p - q;
            c[l] = r;
            t[l] += q;
            m[l] = if r.abs() > m[l] { r.abs() } else { m[l] };
        }
    }
    let (mut tail_t, mut tail_m) = (0.0f64, 0.0f64);
    for p in chunks.into_remainder() {
        let q = (s + *p) - s;
        let r = *p - q;
        *p = r;
        tail_t += q;
        tail_m = tail_m.max(r.abs());
    }
    (fold(t) + tail_t, fold_max(m).max(tail_m))
}

impl ExactSum {
    /// The empty sum (`+0.0`).
    pub const fn new() -> Self {
        ExactSum {
            limbs: [0; LIMBS],
            flags: 0,
        }
    }

    /// Adds one value (any `f64`, NaN and infinities included).
    pub fn add(&mut self, x: f64) {
        let abs = x.to_bits() & !(1u64 << 63);
        self.flags |= F_TERM;
        if x.to_bits() != 1u64 << 63 {
            self.flags |= F_NOT_NEG_ZERO;
        }
        if abs > INF_BITS {
            self.flags |= F_NAN;
        } else if abs == INF_BITS {
            self.flags |= if x > 0.0 { F_POS_INF } else { F_NEG_INF };
        } else {
            self.add_finite(x);
        }
    }

    /// Adds a finite `x` into the integer (no flags).
    #[inline(always)]
    fn add_finite(&mut self, x: f64) {
        let b = x.to_bits();
        let ef = ((b >> 52) & 0x7ff) as u32;
        let mut m = b & ((1u64 << 52) - 1);
        let pos = if ef == 0 {
            0
        } else {
            m |= 1u64 << 52;
            ef - 1
        };
        if m == 0 {
            return;
        }
        let i = (pos / 64) as usize;
        let v = (m as u128) << (pos % 64);
        let (lo, hi) = (v as u64, (v >> 64) as u64);
        if b >> 63 == 0 {
            let (s, c1) = self.limbs[i].overflowing_add(lo);
            self.limbs[i] = s;
            let (s, c2) = self.limbs[i + 1].overflowing_add(hi);
            let (s, c3) = s.overflowing_add(u64::from(c1));
            self.limbs[i + 1] = s;
            let mut carry = c2 || c3;
            let mut j = i + 2;
            while carry && j < LIMBS {
                let (s, c) = self.limbs[j].overflowing_add(1);
                self.limbs[j] = s;
                carry = c;
                j += 1;
            }
        } else {
            let (s, b1) = self.limbs[i].overflowing_sub(lo);
            self.limbs[i] = s;
            let (s, b2) = self.limbs[i + 1].overflowing_sub(hi);
            let (s, b3) = s.overflowing_sub(u64::from(b1));
            self.limbs[i + 1] = s;
            let mut borrow = b2 || b3;
            let mut j = i + 2;
            while borrow && j < LIMBS {
                let (s, c) = self.limbs[j].overflowing_sub(1);
                self.limbs[j] = s;
                borrow = c;
                j += 1;
            }
        }
    }

    /// Adds one chunk (at most [`CHUNK`] values) whose largest magnitude
    /// has the bits `max_bits` and whose smallest nonzero one `min_bits`
    /// (see the module docs).
    ///
    /// A **narrow** chunk (`e_min >= e - NARROW` for the exponents `e_min`
    /// of the smallest nonzero and `e` of the largest magnitude) takes one
    /// split and sums both halves in `f64`: every element is a multiple of
    /// `2^L`, `L >= e_min - 52`, and so is every remainder `r_i` (the parts
    /// `q_i` are multiples of `2^(s-53) >= 2^L`); `|r_i| <= 2^(s-53)`, so a
    /// partial sum of at most 1024 of them is below `2^(s-43)` — a multiple
    /// of `2^L` with at most `s - 43 - L <= 53` bits when
    /// `L >= s - 96 = e - 84`, which `e_min >= e - 32` guarantees. Exact.
    #[inline(always)]
    fn add_chunk(&mut self, xs: &[f64], max_bits: u64, min_bits: u64) {
        debug_assert!(xs.len() <= CHUNK);
        if xs.is_empty() {
            return;
        }
        if max_bits >= INF_BITS {
            for &x in xs {
                self.add(x);
            }
            return;
        }
        self.flags |= F_TERM;
        if max_bits == 0 {
            // only zeros: is any of them +0.0?
            if xs.iter().any(|x| x.to_bits() == 0) {
                self.flags |= F_NOT_NEG_ZERO;
            }
            return;
        }
        self.flags |= F_NOT_NEG_ZERO;
        let e = exponent_of_bits(max_bits);
        if !(-1000..1000).contains(&e) {
            for &x in xs {
                self.add_finite(x);
            }
            return;
        }
        let s1 = e + 1 + HEADROOM;
        if exponent_of_bits(min_bits) >= e - NARROW {
            let (t1, t2) = one_split(xs, pow2(s1));
            self.add_finite(t1);
            self.add_finite(t2);
            return;
        }
        let (t1, t2, rest) = two_levels(xs, pow2(s1), pow2(s1 - STEP));
        if !rest {
            self.add_finite(t1);
            self.add_finite(t2);
            return;
        }
        // wider than two levels: redo the chunk level by level, in place
        let mut buf = [0.0f64; CHUNK];
        let buf = &mut buf[..xs.len()];
        buf.copy_from_slice(xs);
        let mut s = s1;
        loop {
            let (t, m) = level_in_place(buf, pow2(s));
            self.add_finite(t);
            if m == 0.0 {
                break;
            }
            s -= STEP;
        }
    }

    /// Adds `n` terms that `fill(start, out)` writes for the indices
    /// `start..start + out.len()`, chunk by chunk through a buffer in cache.
    #[inline(always)]
    fn add_terms(&mut self, n: usize, fill: impl Fn(usize, &mut [f64])) {
        let mut buf = [0.0f64; CHUNK];
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            let b = &mut buf[..len];
            fill(start, b);
            let (hi, lo) = abs_bits_range(b);
            self.add_chunk(b, hi, lo);
            start += len;
        }
    }

    /// Merges `other` into `self`: afterwards `self` holds the exact sum of
    /// both (exact integer addition: associative and commutative).
    pub fn merge(&mut self, other: &ExactSum) {
        let mut carry = false;
        for (a, &b) in self.limbs.iter_mut().zip(&other.limbs) {
            let (s, c1) = a.overflowing_add(b);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            *a = s;
            carry = c1 || c2;
        }
        self.flags |= other.flags;
    }

    /// The plain-old-data form, for collectives.
    pub fn to_wire(&self) -> Wire {
        let mut w = [0u64; LIMBS + 1];
        w[..LIMBS].copy_from_slice(&self.limbs);
        w[LIMBS] = self.flags;
        w
    }

    /// The accumulator of a [`to_wire`](Self::to_wire) form.
    pub fn from_wire(w: &Wire) -> Self {
        let mut limbs = [0u64; LIMBS];
        limbs.copy_from_slice(&w[..LIMBS]);
        ExactSum {
            limbs,
            flags: w[LIMBS],
        }
    }

    /// The special result (NaN or an infinity) if there is one.
    fn special(&self) -> Option<f64> {
        let f = self.flags;
        if f & F_NAN != 0 || (f & F_POS_INF != 0 && f & F_NEG_INF != 0) {
            Some(f64::NAN)
        } else if f & F_POS_INF != 0 {
            Some(f64::INFINITY)
        } else if f & F_NEG_INF != 0 {
            Some(f64::NEG_INFINITY)
        } else {
            None
        }
    }

    /// The signed zero of an exact zero sum.
    fn zero(&self) -> f64 {
        if self.flags & F_TERM != 0 && self.flags & F_NOT_NEG_ZERO == 0 {
            -0.0
        } else {
            0.0
        }
    }

    /// `(negative, |integer|)`.
    fn magnitude(&self) -> (bool, [u64; LIMBS]) {
        let neg = self.limbs[LIMBS - 1] >> 63 == 1;
        let mut m = self.limbs;
        if neg {
            let mut carry = true;
            for l in &mut m {
                let (s, c) = (!*l).overflowing_add(u64::from(carry));
                *l = s;
                carry = c;
            }
        }
        (neg, m)
    }

    /// The finite part times `2^k`, rounded to nearest (ties to even) to
    /// `prec` bits with the smallest bit weighing at least `2^min_lsb`,
    /// returned as an `f64` that holds the rounded value exactly (or `±inf`
    /// beyond the `f64` range). `None` for zero.
    fn round_scaled(&self, prec: i32, min_lsb: i32, k: i32) -> Option<f64> {
        let (neg, m) = self.magnitude();
        let top_limb = m.iter().rposition(|&l| l != 0)?;
        let t = (top_limb * 64) as i32 + 63 - m[top_limb].leading_zeros() as i32;
        let bit = |i: i32| (m[(i / 64) as usize] >> (i % 64)) & 1;
        let bits = |lo: i32, count: i32| -> u64 {
            // bits lo .. lo + count (count <= 64), all at most t
            let (li, sh) = ((lo / 64) as usize, lo % 64);
            let lo_word = m[li] as u128 | (m.get(li + 1).copied().unwrap_or(0) as u128) << 64;
            let v = (lo_word >> sh) as u64;
            if count >= 64 {
                v
            } else {
                v & ((1u64 << count) - 1)
            }
        };
        let sticky = |below: i32| {
            // any bit with index < below
            let li = (below / 64) as usize;
            m[..li].iter().any(|&l| l != 0)
                || (below % 64 != 0 && m[li] & ((1u64 << (below % 64)) - 1) != 0)
        };
        let lo = (t - (prec - 1)).max(min_lsb - LSB_EXP - k);
        let (q, exp) = if lo <= 0 {
            (bits(0, t + 1), LSB_EXP + k)
        } else {
            let mut q = if lo > t { 0 } else { bits(lo, t - lo + 1) };
            let round = lo - 1 <= t && bit(lo - 1) == 1;
            if round && (q & 1 == 1 || sticky(lo - 1)) {
                q += 1;
            }
            (q, lo + LSB_EXP + k)
        };
        let v = ldexp(q as f64, exp);
        Some(if neg { -v } else { v })
    }

    /// The correctly rounded sum as `f64` (to nearest, ties to even; the
    /// special values as in the [module docs](self)).
    pub fn to_f64(&self) -> f64 {
        if let Some(s) = self.special() {
            return s;
        }
        self.round_scaled(53, -1074, 0)
            .unwrap_or_else(|| self.zero())
    }

    /// The correctly rounded sum as `f32` (one rounding from the exact
    /// value, not via `f64`).
    pub fn to_f32(&self) -> f32 {
        if let Some(s) = self.special() {
            return s as f32;
        }
        // the 24-bit result is exact in f64; `as` keeps it (or overflows
        // to ±inf beyond f32's range)
        // (a nonzero sum below half of f32's smallest subnormal rounds to
        // a zero of its sign)
        self.round_scaled(24, -149, 0)
            .map(|v| v as f32)
            .unwrap_or_else(|| self.zero() as f32)
    }

    /// The exponent `E` of the exact finite sum's magnitude
    /// (`2^E <= |sum| < 2^(E+1)`), `None` if it is zero.
    fn exponent(&self) -> Option<i32> {
        let (_, m) = self.magnitude();
        let top = m.iter().rposition(|&l| l != 0)?;
        Some((top * 64) as i32 + 63 - m[top].leading_zeros() as i32 + LSB_EXP)
    }
}

dispatch! {
    /// Adds the `f64` values of `xs` into `acc`.
    fn add_f64s(acc: &mut ExactSum, xs: &[f64]) {
        for c in xs.chunks(CHUNK) {
            let (hi, lo) = abs_bits_range(c);
            acc.add_chunk(c, hi, lo);
        }
    }
}

dispatch! {
    /// Adds the `f32` values of `xs` into `acc` (converted exactly).
    fn add_f32s(acc: &mut ExactSum, xs: &[f32]) {
        acc.add_terms(xs.len(), |s, out| {
            for (o, &x) in out.iter_mut().zip(&xs[s..]) {
                *o = f64::from(x);
            }
        })
    }
}

dispatch! {
    /// Adds `fl(x[k] * y[k])` into `acc`.
    fn add_products_f64(acc: &mut ExactSum, x: &[f64], y: &[f64]) {
        acc.add_terms(x.len(), |s, out| {
            for ((o, &a), &b) in out.iter_mut().zip(&x[s..]).zip(&y[s..]) {
                *o = a * b;
            }
        })
    }
}

dispatch! {
    /// Adds the exact products `x[k] * y[k]` of `f32` values (formed in
    /// `f64`, where they are exact) into `acc`.
    fn add_products_f32(acc: &mut ExactSum, x: &[f32], y: &[f32]) {
        acc.add_terms(x.len(), |s, out| {
            for ((o, &a), &b) in out.iter_mut().zip(&x[s..]).zip(&y[s..]) {
                *o = f64::from(a) * f64::from(b);
            }
        })
    }
}

dispatch! {
    /// Adds `sign * fl(x[k] * y[k ^ 1])` (`sign` alternating `+`, `-` from
    /// an even index): the imaginary part of a conjugated complex dot
    /// product on interleaved (re, im) data, `x.re y.im - x.im y.re`.
    fn add_cross_f64(acc: &mut ExactSum, x: &[f64], y: &[f64]) {
        acc.add_terms(x.len(), |s, out| {
            for (k, o) in out.iter_mut().enumerate() {
                let i = s + k;
                let v = x[i] * y[i ^ 1];
                *o = if i % 2 == 0 { v } else { -v };
            }
        })
    }
}

dispatch! {
    /// [`add_cross_f64`] for `f32` data, products exact in `f64`.
    fn add_cross_f32(acc: &mut ExactSum, x: &[f32], y: &[f32]) {
        acc.add_terms(x.len(), |s, out| {
            for (k, o) in out.iter_mut().enumerate() {
                let i = s + k;
                let v = f64::from(x[i]) * f64::from(y[i ^ 1]);
                *o = if i % 2 == 0 { v } else { -v };
            }
        })
    }
}

dispatch! {
    /// Adds every other value of `xs`, from index `first` (0 or 1): the real
    /// or imaginary parts of interleaved complex data.
    fn add_every_other_f64(acc: &mut ExactSum, xs: &[f64], first: usize) {
        let n = (xs.len() + 1 - first) / 2;
        acc.add_terms(n, |s, out| {
            for (k, o) in out.iter_mut().enumerate() {
                *o = xs[2 * (s + k) + first];
            }
        })
    }
}

dispatch! {
    /// [`add_every_other_f64`] for `f32` data.
    fn add_every_other_f32(acc: &mut ExactSum, xs: &[f32], first: usize) {
        let n = (xs.len() + 1 - first) / 2;
        acc.add_terms(n, |s, out| {
            for (k, o) in out.iter_mut().enumerate() {
                *o = f64::from(xs[2 * (s + k) + first]);
            }
        })
    }
}

impl ExactSum {
    /// Adds every value of `xs` (AVX2 code where the CPU has it; the result
    /// is exact either way).
    pub fn add_slice(&mut self, xs: &[f64]) {
        add_f64s(self, xs)
    }

    /// Adds every value of an `f32` slice (each converted to `f64`
    /// exactly).
    pub fn add_slice_f32(&mut self, xs: &[f32]) {
        add_f32s(self, xs)
    }

    /// Adds the rounded products `fl(x[k] * y[k])` (see the module docs).
    ///
    /// # Panics
    ///
    /// If the lengths differ.
    pub fn add_products(&mut self, x: &[f64], y: &[f64]) {
        assert_eq!(
            x.len(),
            y.len(),
            "add_products: slices of different lengths"
        );
        add_products_f64(self, x, y)
    }

    /// Adds the exact products `x[k] * y[k]` of `f32` values.
    ///
    /// # Panics
    ///
    /// If the lengths differ.
    pub fn add_products_f32(&mut self, x: &[f32], y: &[f32]) {
        assert_eq!(
            x.len(),
            y.len(),
            "add_products_f32: slices of different lengths"
        );
        add_products_f32(self, x, y)
    }
}

/// An exact sum of the elements of any [`Element`] type with a floating-
/// point kind (`f32`, `f64`, `Complex32`, `Complex64`): one [`ExactSum`]
/// for the real part and one for the imaginary part (unused for real
/// types). Integer kinds are not summed here: their wrapping sums are exact
/// already.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ExactParts {
    /// The real parts' sum.
    pub re: ExactSum,
    /// The imaginary parts' sum.
    pub im: ExactSum,
}

/// The plain-old-data form of [`ExactParts`].
pub type PartsWire = [u64; 2 * (LIMBS + 1)];

/// `true` for the element kinds [`ExactParts`] sums (floats and complex).
pub fn is_float_kind(kind: ElementKind) -> bool {
    kind.is_float() || kind.is_complex()
}

impl ExactParts {
    /// The empty sum.
    pub const fn new() -> Self {
        ExactParts {
            re: ExactSum::new(),
            im: ExactSum::new(),
        }
    }

    /// Adds the elements of `x`.
    ///
    /// # Panics
    ///
    /// If `T` is an integer type.
    pub fn add_slice<T: Element>(&mut self, x: &[T]) {
        match T::KIND {
            ElementKind::F64 => self.re.add_slice(bytemuck::cast_slice(x)),
            ElementKind::F32 => self.re.add_slice_f32(bytemuck::cast_slice(x)),
            ElementKind::C64 => {
                let v: &[f64] = bytemuck::cast_slice(x);
                add_every_other_f64(&mut self.re, v, 0);
                add_every_other_f64(&mut self.im, v, 1);
            }
            ElementKind::C32 => {
                let v: &[f32] = bytemuck::cast_slice(x);
                add_every_other_f32(&mut self.re, v, 0);
                add_every_other_f32(&mut self.im, v, 1);
            }
            k => panic!("ExactParts::add_slice: {k:?} is not a floating-point kind"),
        }
    }

    /// Adds the products `conj(x[k]) * y[k]` (conjugating `x` like BLAS
    /// `zdotc`): for real types the rounded products (exact for `f32`, see
    /// the module docs); for complex types the real part
    /// `Σ (x.re y.re + x.im y.im)` and the imaginary part
    /// `Σ (x.re y.im - x.im y.re)`, every single product rounded (exact for
    /// `Complex32`) and then summed exactly.
    ///
    /// # Panics
    ///
    /// If the lengths differ or `T` is an integer type.
    pub fn add_dot<T: Element>(&mut self, x: &[T], y: &[T]) {
        assert_eq!(x.len(), y.len(), "dot: slices of different lengths");
        match T::KIND {
            ElementKind::F64 | ElementKind::C64 => {
                let (a, b): (&[f64], &[f64]) = (bytemuck::cast_slice(x), bytemuck::cast_slice(y));
                self.re.add_products(a, b);
                if matches!(T::KIND, ElementKind::C64) {
                    add_cross_f64(&mut self.im, a, b);
                }
            }
            ElementKind::F32 | ElementKind::C32 => {
                let (a, b): (&[f32], &[f32]) = (bytemuck::cast_slice(x), bytemuck::cast_slice(y));
                self.re.add_products_f32(a, b);
                if matches!(T::KIND, ElementKind::C32) {
                    add_cross_f32(&mut self.im, a, b);
                }
            }
            k => panic!("ExactParts::add_dot: {k:?} is not a floating-point kind"),
        }
    }

    /// Merges `other` into `self` (exact).
    pub fn merge(&mut self, other: &ExactParts) {
        self.re.merge(&other.re);
        self.im.merge(&other.im);
    }

    /// The correctly rounded sum as a `T` (each part rounded once).
    ///
    /// # Panics
    ///
    /// If `T` is an integer type.
    pub fn round<T: Element>(&self) -> T {
        match T::KIND {
            ElementKind::F64 => bytemuck::cast(self.re.to_f64()),
            ElementKind::F32 => bytemuck::cast(self.re.to_f32()),
            ElementKind::C64 => bytemuck::cast([self.re.to_f64(), self.im.to_f64()]),
            ElementKind::C32 => bytemuck::cast([self.re.to_f32(), self.im.to_f32()]),
            k => panic!("ExactParts::round: {k:?} is not a floating-point kind"),
        }
    }

    /// The plain-old-data form, for collectives.
    pub fn to_wire(&self) -> PartsWire {
        let mut w = [0u64; 2 * (LIMBS + 1)];
        w[..LIMBS + 1].copy_from_slice(&self.re.to_wire());
        w[LIMBS + 1..].copy_from_slice(&self.im.to_wire());
        w
    }

    /// The sum of a [`to_wire`](Self::to_wire) form.
    pub fn from_wire(w: &PartsWire) -> Self {
        let (a, b) = w.split_at(LIMBS + 1);
        ExactParts {
            re: ExactSum::from_wire(a.try_into().expect("wire length")),
            im: ExactSum::from_wire(b.try_into().expect("wire length")),
        }
    }
}

/// Magnitudes at or above `2^BIG_EXP` have their squares taken scaled by
/// `2^-SCALE_EXP` (the "big" class).
const BIG_EXP: i32 = 500;
/// Nonzero magnitudes below `2^-BIG_EXP` have their squares taken scaled by
/// `2^SCALE_EXP` (the "small" class).
const SCALE_EXP: i32 = 600;

/// An exact sum of squares for a Euclidean norm that neither overflows nor
/// underflows where the norm is representable (see [`norm`](Self::norm)).
///
/// Each value `v` falls in one of three classes by its magnitude alone, so
/// the class — and the rounded square added — depends on the value only,
/// never on the partition: `|v| < 2^-500` (nonzero) adds `fl((v 2^600)²)`
/// to `small`, `|v| >= 2^500` adds `fl((v 2^-600)²)` to `big`, any other
/// (zero included) adds `fl(v²)` to `mid`; the scalings are exact powers
/// of two and no scaled square leaves the normal range. The norm is then
/// `sqrt(small 2^-1200 + mid + big 2^1200)`, evaluated as the sum of the
/// three classes' correctly rounded values, each scaled to the top class's
/// magnitude, then a square root. The squares are rounded (relative error
/// `u = 2^-53` each, all positive), the sum rounded once and the root
/// rounded once: a relative error of at most about `1.5 u` (like a careful
/// `dnrm2`), and the same bits for any partition.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ExactNorm {
    /// `[small, mid, big]`.
    classes: [ExactSum; 3],
}

/// The plain-old-data form of [`ExactNorm`].
pub type NormWire = [u64; 3 * (LIMBS + 1)];

dispatch! {
    /// Adds the squares of `xs` into the classes: the mid class through
    /// the chunked kernel, the rare others one at a time.
    fn add_squares(classes: &mut [ExactSum; 3], xs: &[f64]) {
        let (small, big) = (pow2(-BIG_EXP).to_bits(), pow2(BIG_EXP).to_bits());
        let mut buf = [0.0f64; CHUNK];
        for c in xs.chunks(CHUNK) {
            let (max, min_nonzero) = abs_bits_range(c);
            if max < big && min_nonzero >= small {
                // every value in the mid class (and finite): the squares,
                // whose largest is the square of the largest (rounding is
                // monotonic)
                let b = &mut buf[..c.len()];
                for (o, &v) in b.iter_mut().zip(c) {
                    *o = v * v;
                }
                // (min_nonzero is u64::MAX when all are zero: then
                // max is 0 and add_chunk does not read it)
                let (m, lo) = (f64::from_bits(max), f64::from_bits(min_nonzero.min(max)));
                classes[1].add_chunk(b, (m * m).to_bits(), (lo * lo).to_bits());
            } else {
                for &v in c {
                    add_square_slow(classes, v);
                }
            }
        }
    }
}

/// The square of one value, into its class (NaN and infinities mark the
/// mid class).
fn add_square_slow(classes: &mut [ExactSum; 3], v: f64) {
    let a = v.abs();
    if a < pow2(BIG_EXP) && (a >= pow2(-BIG_EXP) || a == 0.0) {
        classes[1].add(a * a);
    } else if a.is_nan() {
        classes[1].add(f64::NAN);
    } else if a.is_infinite() {
        classes[1].add(f64::INFINITY);
    } else if a >= pow2(BIG_EXP) {
        let s = a * pow2(-SCALE_EXP);
        classes[2].add(s * s);
    } else if a != 0.0 && a < pow2(-BIG_EXP) {
        let s = a * pow2(SCALE_EXP);
        classes[0].add(s * s);
    }
}

impl ExactNorm {
    /// The norm of nothing (`+0.0`).
    pub const fn new() -> Self {
        ExactNorm {
            classes: [ExactSum::new(); 3],
        }
    }

    /// Adds the squares of `xs`.
    pub fn add_slice(&mut self, xs: &[f64]) {
        add_squares(&mut self.classes, xs)
    }

    /// Adds the squared moduli of the elements of `x`: real types by their
    /// absolute value as `f64` (exact for floats), complex types as their
    /// real and imaginary parts (`|z|² = re² + im²`).
    pub fn add_elements<T: Element>(&mut self, x: &[T]) {
        match T::KIND {
            ElementKind::F64 | ElementKind::C64 => self.add_slice(bytemuck::cast_slice(x)),
            ElementKind::F32 | ElementKind::C32 => {
                let v: &[f32] = bytemuck::cast_slice(x);
                let mut buf = [0.0f64; CHUNK];
                for c in v.chunks(CHUNK) {
                    for (o, &a) in buf.iter_mut().zip(c) {
                        *o = f64::from(a);
                    }
                    self.add_slice(&buf[..c.len()]);
                }
            }
            _ => {
                let mut buf = [0.0f64; CHUNK];
                for c in x.chunks(CHUNK) {
                    for (o, &a) in buf.iter_mut().zip(c) {
                        *o = a.modulus();
                    }
                    self.add_slice(&buf[..c.len()]);
                }
            }
        }
    }

    /// Merges `other` into `self` (exact).
    pub fn merge(&mut self, other: &ExactNorm) {
        for (a, b) in self.classes.iter_mut().zip(&other.classes) {
            a.merge(b);
        }
    }

    /// The Euclidean norm (see the type's docs): NaN if a value was NaN,
    /// `inf` if one was infinite, `+0.0` if all were zero or there were
    /// none.
    pub fn norm(&self) -> f64 {
        let mid = &self.classes[1];
        if let Some(s) = mid.special() {
            return s.abs();
        }
        // weights 2^-1200, 1, 2^1200; the total's exponent W
        let weight = [-2 * SCALE_EXP, 0, 2 * SCALE_EXP];
        let Some(w) = (0..3)
            .rev()
            .find_map(|c| self.classes[c].exponent().map(|e| e + weight[c]))
        else {
            return 0.0;
        };
        // total 2^(-2j) in [1, 4): sum the classes scaled by that
        let j = w.div_euclid(2);
        let v = (0..3).fold(0.0, |acc, c| {
            acc + self.classes[c]
                .round_scaled(53, -1074, weight[c] - 2 * j)
                .unwrap_or(0.0)
        });
        ldexp(v.sqrt(), j)
    }

    /// The plain-old-data form, for collectives.
    pub fn to_wire(&self) -> NormWire {
        let mut w = [0u64; 3 * (LIMBS + 1)];
        for (c, chunk) in self.classes.iter().zip(w.chunks_exact_mut(LIMBS + 1)) {
            chunk.copy_from_slice(&c.to_wire());
        }
        w
    }

    /// The accumulator of a [`to_wire`](Self::to_wire) form.
    pub fn from_wire(w: &NormWire) -> Self {
        let mut n = ExactNorm::new();
        for (c, chunk) in n.classes.iter_mut().zip(w.chunks_exact(LIMBS + 1)) {
            *c = ExactSum::from_wire(chunk.try_into().expect("wire length"));
        }
        n
    }
}

/// How a floating-point reduction of a [`DistArray`](crate::DistArray)
/// adds: a per-array setting
/// ([`DistArray::with_summation`](crate::DistArray::with_summation)), read by
/// `sum`, `reduce_op(Sum)`, `mean`, `map_sum`, and by `linalg::dot`,
/// `norm2`, `axpy_dot` and `cg_update` (exact when any operand asks for
/// it), and by `Ghosted`'s `apply_dot`, `update_ghosts_and_apply_dot` and
/// `cg_update` (the mode of their plain-array operands). Integer
/// reductions are exact in both modes.
///
/// Like every argument of a collective, an array's mode must be the same
/// on every rank, and the library checks it: each of those reductions
/// agrees its operands' modes between the ranks in its first collective
/// (in the vote word that every rank's success rides in: no extra
/// collective in the ordered mode, one small vote before the exact
/// allreduce), and a mode that differs between ranks — on any operand,
/// also an integer array's, also where both would sum exactly — is an
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) on every
/// rank; the arrays and the communicator stay usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Summation {
    /// The fixed-order kernels ([`crate::kernels`]) and a rank-ordered
    /// combination: the same bits run after run for the same backend, rank
    /// count and partition, at the full memory bandwidth. The default.
    #[default]
    Ordered,
    /// The exact accumulation of this module: the correctly rounded exact
    /// sum, so the **same bits for any rank count, partition and backend**
    /// (and at most 0.5 ulp from the exact value). Costs more local work:
    /// 1.3–1.8x the time of the ordered kernels from memory on one core
    /// (`BENCHMARKS.md`, "Exact sums").
    Exact,
}

/// The [`Summation`] modes of the operands of one reduction (`K` of them),
/// which its first collective agrees between the ranks: the key of an
/// [`allreduce_vote_keyed`](crate::collective::allreduce_vote_keyed) on the
/// ordered path, of a
/// [`vote_keyed_as`](crate::collective::vote_keyed_as) of the same
/// payload before the exact path's allreduce. Ranks whose arrays'
/// modes differ would take different paths, or the same path with an
/// array whose mode differs: either way every rank gets
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
pub(crate) struct Modes<'a, const K: usize> {
    /// The operation, for the error message.
    pub(crate) operation: &'a str,
    /// Each operand's name and mode.
    pub(crate) operands: [(&'a str, Summation); K],
}

impl<const K: usize> Modes<'_, K> {
    /// The vote key: one bit per operand in [`Summation::Exact`].
    pub(crate) fn key(&self) -> u32 {
        self.operands
            .iter()
            .enumerate()
            .map(|(k, (_, m))| u32::from(*m == Summation::Exact) << k)
            .sum()
    }

    /// The error of every rank when the modes differ between ranks.
    pub(crate) fn differ(&self) -> crate::Error {
        let names: Vec<&str> = self.operands.iter().map(|(n, _)| *n).collect();
        let here: Vec<String> = self
            .operands
            .iter()
            .map(|(n, m)| format!("{n} {m:?}"))
            .collect();
        crate::Error::InvalidArgument(format!(
            "{}: the summation mode of {} differs between ranks (on this rank {}); \
             set the same Summation on every rank",
            self.operation,
            names.join(", "),
            here.join(", ")
        ))
    }
}

/// Collective: merges every rank's accumulators (exact integer addition:
/// the result does not depend on the reduction tree) and votes on success
/// in the same collective, like
/// [`allreduce_vote`](crate::collective::allreduce_vote): if any rank's
/// `local` is an `Err`, every rank returns an `Err`. Every rank gets the
/// same merged accumulators. One allreduce of `8 + 280 K` bytes.
///
/// ```
/// use distarray::exact_sum::{self, ExactSum};
/// use distarray::{threaded, OneSidedComm};
/// let r = threaded::run_ok(3, |comm| {
///     let mut acc = ExactSum::new();
///     acc.add_slice(&[1e16, comm.rank() as f64, -1e16]);
///     let [total] = exact_sum::allreduce(&comm, Ok([acc]))?;
///     Ok(total.to_f64())
/// })
/// .unwrap();
/// assert_eq!(r, vec![3.0; 3]); // 0 + 1 + 2, exactly
/// ```
pub fn allreduce<C: crate::OneSidedComm, const K: usize>(
    comm: &C,
    local: crate::Result<[ExactSum; K]>,
) -> crate::Result<[ExactSum; K]> {
    let wire = local.map(|l| l.map(|a| a.to_wire()));
    let merged = crate::collective::allreduce_vote(comm, wire, |a, b| {
        std::array::from_fn(|k| {
            let mut x = ExactSum::from_wire(&a[k]);
            x.merge(&ExactSum::from_wire(&b[k]));
            x.to_wire()
        })
    })?;
    Ok(merged.map(|w| ExactSum::from_wire(&w)))
}

/// Collective: [`allreduce`] for [`ExactParts`].
pub fn allreduce_parts<C: crate::OneSidedComm>(
    comm: &C,
    local: crate::Result<ExactParts>,
) -> crate::Result<ExactParts> {
    let [re, im] = allreduce(comm, local.map(|p| [p.re, p.im]))?;
    Ok(ExactParts { re, im })
}

/// Collective: [`allreduce`] for [`ExactNorm`].
pub fn allreduce_norm<C: crate::OneSidedComm>(
    comm: &C,
    local: crate::Result<ExactNorm>,
) -> crate::Result<ExactNorm> {
    Ok(ExactNorm {
        classes: allreduce(comm, local.map(|n| n.classes))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums, products, strided parts and norms of data that needs one, two
    /// and many extraction levels, with special values in some chunks.
    fn everything() -> Vec<u64> {
        let n = 5000;
        let x: Vec<f64> = (0..n)
            .map(|k| {
                let v = ((k * 7919) % 1000) as f64 * 1.37e-3 - 0.6;
                match k % 997 {
                    5 => v * 1e-200,
                    9 => v * 1e250,
                    _ => v,
                }
            })
            .collect();
        let y: Vec<f64> = x.iter().rev().map(|v| v * 3.0 + 1e-9).collect();
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut out = Vec::new();
        let mut a = ExactSum::new();
        a.add_slice(&x);
        out.push(a.to_f64().to_bits());
        let mut a = ExactSum::new();
        a.add_products(&x, &y);
        out.push(a.to_f64().to_bits());
        let mut a = ExactSum::new();
        a.add_products_f32(&xf, &xf);
        out.push(a.to_f64().to_bits());
        let mut a = ExactSum::new();
        a.add_slice_f32(&xf);
        out.push(u64::from(a.to_f32().to_bits()));
        let mut p = ExactParts::new();
        let z: &[crate::Complex64] = bytemuck::cast_slice(&x);
        let w: &[crate::Complex64] = bytemuck::cast_slice(&y);
        p.add_dot(z, w);
        p.add_slice(z);
        let c: crate::Complex64 = p.round();
        out.extend([c.re.to_bits(), c.im.to_bits()]);
        let mut nrm = ExactNorm::new();
        nrm.add_slice(&x);
        out.push(nrm.norm().to_bits());
        let mut s = x.clone();
        s[4000] = f64::INFINITY;
        let mut a = ExactSum::new();
        a.add_slice(&s);
        out.push(a.to_f64().to_bits());
        out
    }

    #[test]
    fn every_vector_width_gives_the_same_bits() {
        let fast = everything();
        let base = crate::kernels::on_baseline(everything);
        assert_eq!(fast, base);
        // and one value at a time agrees
        let x: Vec<f64> = (0..3000)
            .map(|k| (k as f64).sin() * 10f64.powi(k % 40 - 20))
            .collect();
        let mut a = ExactSum::new();
        a.add_slice(&x);
        let mut b = ExactSum::new();
        x.iter().for_each(|&v| b.add(v));
        assert_eq!(a.to_f64().to_bits(), b.to_f64().to_bits());
        assert_eq!(a, b);
    }
}
