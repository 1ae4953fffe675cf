//! Local kernels on plain slices: reductions in a fixed order, fused vector
//! updates for Krylov solvers and the 5-point stencil.
//!
//! Everything here works on one rank's data and communicates nothing; the
//! distributed operations ([`linalg::dot`](crate::linalg::dot),
//! [`linalg::norm2`](crate::linalg::norm2),
//! [`DistArray::sum`](crate::DistArray::sum), ...) call these kernels on
//! each rank's part and then combine the per-rank results. Any solver can
//! call them directly on the slices of a local view.
//!
//! # Summation order: bitwise reproducible
//!
//! Floating-point addition is not associative, so a reduction's bits depend
//! on its order. Every reduction here ([`sum`], [`dot`], [`norm2`],
//! [`reduce`], and the dot products returned by the fused kernels) uses one
//! order that depends **only on the length** of the data — not on
//! alignment, on the machine's vector width or on the run:
//!
//! * the index range is cut into leaves of [`BLOCK`] elements (the last
//!   one shorter); the leaves' results are combined as a binary tree: a
//!   run of `b > 1` leaves is split after its first `m` leaves, `m` the
//!   largest power of two below `b`, both parts are combined that way, and
//!   then the two results (left, right);
//! * within a leaf, element `k` (counted from the leaf's start) goes to
//!   lane `k % LANES` of [`LANES`] independent accumulators, in increasing
//!   `k`; the lanes are then combined as a binary tree
//!   (`lane[i] = lane[i] + lane[i + w]` for `w = LANES/2, ..., 1`).
//!
//! The independent lanes let the compiler keep several additions in flight
//! and use SIMD instructions (the additions within a lane stay in order, so
//! this is legal without fast-math); the blocked pairwise tree makes the
//! rounding error grow like `log(len)` instead of `len`. No fused
//! multiply-add is used and every lane does the same operations whatever
//! the vector width, so the bits are also the same on every machine: on
//! x86-64 the kernels run AVX2 code when the CPU has it (detected at run
//! time) and SSE2 code otherwise, with identical results. The fused
//! kernels ([`axpy_dot`], [`cg_update`], [`stencil5_dot`]) accumulate their
//! dot product in the very same order, so they return exactly what [`dot`]
//! returns on their output.
//!
//! Integer reductions wrap on overflow (like [`AccumulateOp::Sum`]);
//! integer addition is associative, so their result does not depend on the
//! order at all.
//!
//! ```
//! use distarray::kernels;
//! let x: Vec<f64> = (0..10_000).map(|i| 0.1 * i as f64).collect();
//! let y = vec![2.0; 10_000];
//! assert_eq!(kernels::dot(&x, &y), 2.0 * kernels::sum(&x));
//! assert!((kernels::sum(&x) - 4_999_500.0).abs() < 1e-6);
//! // norm2 is scaled: no overflow where the squares would overflow
//! let n = kernels::norm2(&[3e200, 4e200]); // the squares are 1e401: inf
//! assert!((n / 5e200 - 1.0).abs() < 1e-15);
//! ```

use crate::comm::{AccumulateOp, Element};
use crate::error::{Error, Result};

/// Independent accumulators per leaf (see the module docs).
pub const LANES: usize = 16;

/// Largest leaf of the blocked pairwise summation, in elements (a multiple
/// of [`LANES`]); see the module docs.
pub const BLOCK: usize = 2048;

#[inline(always)]
fn add<T: Element>(a: T, b: T) -> T {
    T::combine(AccumulateOp::Sum, a, b)
}

#[inline(always)]
fn mul<T: Element>(a: T, b: T) -> T {
    T::combine(AccumulateOp::Prod, a, b)
}

/// Combines the lanes as a binary tree (`w = LANES/2, ..., 1`).
#[inline(always)]
fn fold_lanes<A: Copy>(mut acc: [A; LANES], f: impl Fn(A, A) -> A) -> A {
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            acc[l] = f(acc[l], acc[l + w]);
        }
        w /= 2;
    }
    acc[0]
}

/// Visits the leaves of `0..len` left to right and combines their results
/// as the documented tree: a binary counter keeps one partial result per
/// complete power-of-two run of leaves (at most 64), which gives exactly
/// the "split after the largest power of two below `b`" tree.
#[inline(always)]
fn tree<A: Copy>(
    len: usize,
    zero: A,
    mut leaf: impl FnMut(usize, usize) -> A,
    combine: impl Fn(A, A) -> A,
) -> A {
    if len <= BLOCK {
        return leaf(0, len);
    }
    // stack[i] holds the result of a run of size[i] leaves (a power of two),
    // sizes strictly decreasing from the bottom
    let mut stack = [zero; 64];
    let mut size = [0usize; 64];
    let mut top = 0;
    let mut start = 0;
    while start < len {
        let end = (start + BLOCK).min(len);
        let mut v = leaf(start, end);
        let mut n = 1;
        while top > 0 && size[top - 1] == n {
            top -= 1;
            v = combine(stack[top], v);
            n *= 2;
        }
        stack[top] = v;
        size[top] = n;
        top += 1;
        start = end;
    }
    let mut v = stack[top - 1];
    for i in (0..top - 1).rev() {
        v = combine(stack[i], v);
    }
    v
}

/// Runs `$body` (an expression calling `#[inline(always)]` code) compiled
/// for AVX2 and FMA when the CPU has them, and for the baseline otherwise.
/// Both give the same bits: each lane's operations are the same at any
/// vector width, and the compiler never fuses a multiply and an add by
/// itself (only an explicit `mul_add`, correctly rounded everywhere, is
/// an FMA).
macro_rules! dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident<$($g:ident: $b:path),*>($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$m])*
        $vis fn $name<$($g: $b),*>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<$($g: $b),*>($($arg: $ty),*) -> $ret $body
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && !$crate::kernels::force_baseline()
                {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just
                    // above), the only requirement of calling an
                    // `#[target_feature(enable = "avx2,fma")]` function.
                    return unsafe { avx2($($arg),*) };
                }
            }
            #[allow(clippy::needless_return)]
            $body
        }
    };
}

/// [`dispatch!`] with an AVX-512 tier first (AVX-512F and FMA, where the
/// CPU has them): for kernels bound by their vector loads and arithmetic
/// rather than by memory, where twice the lanes pay (the stencils). The
/// bits are the same on every tier (each value's operations do not depend
/// on the vector width).
macro_rules! dispatch_wide {
    ($(#[$m:meta])* $vis:vis fn $name:ident<$($g:ident: $b:path),*>($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$m])*
        $vis fn $name<$($g: $b),*>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512<$($g: $b),*>($($arg: $ty),*) -> $ret $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<$($g: $b),*>($($arg: $ty),*) -> $ret $body
                if !$crate::kernels::force_baseline()
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("avx2")
                {
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        // SAFETY: the CPU supports AVX-512F, AVX2 and FMA
                        // (checked here), the only requirement of calling
                        // this `#[target_feature]` function.
                        return unsafe { avx512($($arg),*) };
                    }
                    // SAFETY: the CPU supports AVX2 and FMA (checked here),
                    // as `avx2` requires.
                    return unsafe { avx2($($arg),*) };
                }
            }
            #[allow(clippy::needless_return)]
            $body
        }
    };
}

pub(crate) use dispatch_wide;

dispatch_wide! {
    /// `v = f(v)` over the rows of `len` values starting at `rows` in
    /// `data`, compiled for the widest vectors the CPU has (a map over
    /// cache-resident rows, where the vector width shows).
    pub(crate) fn map_rows<T: Element, F: Fn(T) -> T>(data: &mut [T], rows: &[usize], len: usize, f: &F) -> () {
        for &o in rows {
            for v in &mut data[o..o + len] {
                *v = f(*v);
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Unit tests set this to run the baseline (SSE2) code on an AVX2 CPU.
    static BASELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the baseline (SSE2) code paths forced, for unit tests of
/// other modules' dispatched code.
#[cfg(test)]
pub(crate) fn on_baseline<R>(f: impl FnOnce() -> R) -> R {
    BASELINE.with(|b| b.set(true));
    let r = f();
    BASELINE.with(|b| b.set(false));
    r
}

/// `true` when a unit test asks for the baseline code path.
#[inline(always)]
pub(crate) fn force_baseline() -> bool {
    #[cfg(test)]
    return BASELINE.with(|b| b.get());
    #[cfg(not(test))]
    false
}

/// Sum of `term(a[k])` over one leaf, in lanes. The last partial chunk is
/// padded with `pad`, whose term must leave a lane unchanged (`+0.0` for a
/// float sum — a lane that starts at `+0.0` never holds `-0.0`, so adding
/// `+0.0` changes no bits —, `1` for a product, an element of `a` for min
/// and max): the padding keeps the lanes in registers, where a tail loop
/// indexing the lanes would force them to memory.
#[inline(always)]
fn leaf1<T: Copy, U: Copy>(
    a: &[U],
    pad: U,
    zero: T,
    term: impl Fn(U) -> T,
    plus: impl Fn(T, T) -> T,
) -> T {
    let mut acc = [zero; LANES];
    let chunks = a.chunks_exact(LANES);
    let rest = chunks.remainder();
    let mut step = |c: &[U; LANES]| {
        for l in 0..LANES {
            acc[l] = plus(acc[l], term(c[l]));
        }
    };
    for c in chunks {
        prefetch_ahead(c);
        step(c.try_into().expect("chunk of LANES"));
    }
    if !rest.is_empty() {
        let mut last = [pad; LANES];
        last[..rest.len()].copy_from_slice(rest);
        step(&last);
    }
    fold_lanes(acc, plus)
}

/// Bytes ahead of the current chunk that [`leaf1`] and [`dot_leaf`] ask the
/// cache to fetch.
const PREFETCH_DISTANCE: usize = 4096;

/// Hints the CPU to fetch the two cache lines [`PREFETCH_DISTANCE`] bytes
/// after `chunk`. A single-stream loop with a multiply per element (the
/// squares of `norm2`) has more instructions in flight per byte than the
/// reorder buffer can hold for DRAM latency; the hint keeps the memory
/// busy without occupying it.
#[inline(always)]
pub(crate) fn prefetch_ahead<U>(chunk: &[U]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = chunk.as_ptr().cast::<i8>();
        // SAFETY: a prefetch is only a hint: it never faults and has no
        // effect the program can observe, whatever the address (computed
        // with wrapping arithmetic, so no out-of-bounds pointer is formed
        // by `add`); SSE is part of the x86-64 baseline.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_DISTANCE));
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_DISTANCE + 64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = chunk;
}

/// Hints the CPU to fetch the cache line holding `p` (any address: it is
/// never dereferenced). For access patterns the hardware prefetchers do
/// not follow, such as the rows of the next tile of a transpose.
#[inline(always)]
pub(crate) fn prefetch_line<U>(p: *const U) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint: it never faults and has no
        // effect the program can observe, whatever the address; SSE is
        // part of the x86-64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Sum of `a[k] * b[k]` over one leaf, in lanes (the tail padded with
/// zeros, as in [`leaf1`]).
#[inline(always)]
fn dot_leaf<T: Element>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    let mut step = |ca: &[T; LANES], cb: &[T; LANES]| {
        for l in 0..LANES {
            acc[l] = add(acc[l], mul(ca[l].conj(), cb[l]));
        }
    };
    for (ca, cb) in ac.zip(bc) {
        prefetch_ahead(ca);
        prefetch_ahead(cb);
        step(
            ca.try_into().expect("chunk of LANES"),
            cb.try_into().expect("chunk of LANES"),
        );
    }
    if !ar.is_empty() {
        let (mut la, mut lb) = ([T::ZERO; LANES], [T::ZERO; LANES]);
        la[..ar.len()].copy_from_slice(ar);
        lb[..br.len()].copy_from_slice(br);
        step(&la, &lb);
    }
    fold_lanes(acc, add)
}

/// Sum of `|a[k]|²` over one leaf (`dot_leaf(a, a)`, reading `a` once).
#[inline(always)]
fn sq_leaf<T: Element>(a: &[T]) -> T {
    leaf1(a, T::ZERO, T::ZERO, |v| mul(v.conj(), v), add)
}

dispatch! {
    /// The sum of `x` (wrapping for integers), in the documented fixed order.
    /// `0` for an empty slice.
    pub fn sum<T: Element>(x: &[T]) -> T {
        tree(x.len(), T::ZERO, |s, e| leaf1(&x[s..e], T::ZERO, T::ZERO, |v| v, add), add)
    }
}

dispatch! {
    /// The dot product `sum_k conj(x[k]) * y[k]` (conjugating `x` like BLAS
    /// `zdotc`; `x[k] * y[k]` for real types, wrapping for integers), in the
    /// documented fixed order.
    ///
    /// # Panics
    ///
    /// If the lengths differ.
    pub fn dot<T: Element>(x: &[T], y: &[T]) -> T {
        assert_eq!(x.len(), y.len(), "dot: slices of different lengths");
        if std::ptr::eq(x, y) {
            return tree(x.len(), T::ZERO, |s, e| sq_leaf(&x[s..e]), add);
        }
        tree(x.len(), T::ZERO, |s, e| dot_leaf(&x[s..e], &y[s..e]), add)
    }
}

dispatch! {
    /// `sum_k (s1 * s2 * x[k])²` in `f64`, in the documented order.
    fn sum_sq_scaled<T: Element>(x: &[T], s1: f64, s2: f64) -> f64 {
        let plus = |a: f64, b: f64| a + b;
        let sq = |v: T| {
            let v = v.modulus() * s1 * s2;
            v * v
        };
        tree(x.len(), 0.0, |s, e| leaf1(&x[s..e], T::ZERO, 0.0, sq, plus), plus)
    }
}

dispatch! {
    /// `sum_k x[k]²` in `f64`, in the documented order.
    fn sum_sq<T: Element>(x: &[T]) -> f64 {
        let plus = |a: f64, b: f64| a + b;
        let sq = |v: T| v.abs2();
        tree(x.len(), 0.0, |s, e| leaf1(&x[s..e], T::ZERO, 0.0, sq, plus), plus)
    }
}

/// `2^k` for `-1022 <= k <= 1023`.
fn pow2(k: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&k));
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// The binary exponent `e` of a finite `v > 0`: `2^e <= v < 2^(e+1)`.
fn exponent(v: f64) -> i32 {
    if v >= f64::MIN_POSITIVE {
        ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023
    } else {
        exponent(v * pow2(64)) - 64
    }
}

/// The Euclidean norm `sqrt(sum_k x[k]²)` in `f64`, computed so that it
/// cannot overflow or underflow where the result itself is representable
/// (like reference BLAS `dnrm2`): `norm2(&[1e200; 8])` is `2.83e200`, not
/// `inf`. `+0.0` for an empty slice; NaN if an element is NaN, `inf` if an
/// element is infinite (and none is NaN).
///
/// One pass sums the squares in the documented fixed order; when that sum
/// overflows, or is so small that squares may have underflowed
/// (`< len · f64::MIN_POSITIVE`), a second pass finds the largest
/// magnitude and a third sums the squares scaled by a power of two near
/// its inverse (exact scaling, so only the squares round). The result
/// depends only on the data, never on the run.
pub fn norm2<T: Element>(x: &[T]) -> f64 {
    match x.len() {
        0 => return 0.0,
        1 => return x[0].modulus(),
        _ => {}
    }
    let s = sum_sq(x);
    if s.is_nan() {
        return f64::NAN;
    }
    if s.is_finite() && s >= x.len() as f64 * f64::MIN_POSITIVE {
        return s.sqrt();
    }
    let amax = x.iter().fold(0.0f64, |m, v| m.max(v.modulus()));
    if amax == 0.0 || amax.is_infinite() {
        return amax;
    }
    // scale by 2^k with amax * 2^k in [1, 2); k may exceed one f64's
    // exponent range (subnormal amax), so it is applied as two factors
    let k = -exponent(amax);
    let (k1, k2) = (k / 2, k - k / 2);
    let scaled = sum_sq_scaled(x, pow2(k1), pow2(k2));
    scaled.sqrt() * pow2(-k1) * pow2(-k2)
}

/// Reduces `x` with `op` in the documented fixed order (lanes, then the
/// blocked pairwise tree): [`AccumulateOp::Sum`] and
/// [`AccumulateOp::Prod`] (wrapping for integers), [`AccumulateOp::Min`]
/// and [`AccumulateOp::Max`]. `None` for an empty slice.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for [`AccumulateOp::Replace`], which is not a
/// reduction.
pub fn reduce<T: Element>(x: &[T], op: AccumulateOp) -> Result<Option<T>> {
    if op == AccumulateOp::Replace {
        return Err(Error::InvalidArgument(
            "AccumulateOp::Replace is not a reduction".into(),
        ));
    }
    let Some(&first) = x.first() else {
        return Ok(None);
    };
    Ok(Some(reduce_nonempty(x, op, first)))
}

dispatch! {
    /// [`reduce`] of a non-empty slice whose first element is `first`.
    fn reduce_nonempty<T: Element>(x: &[T], op: AccumulateOp, first: T) -> T {
        let f = |a: T, b: T| T::combine(op, a, b);
        // the identity of Sum / Prod; Min and Max start from an element of
        // x (idempotent, so counting it twice changes nothing)
        let zero = match op {
            AccumulateOp::Sum => T::ZERO,
            AccumulateOp::Prod => T::ONE,
            _ => first,
        };
        tree(x.len(), zero, |s, e| leaf1(&x[s..e], zero, zero, |v| v, f), f)
    }
}

dispatch! {
    /// `y = alpha * x + beta * y`, streaming each slice once.
    ///
    /// # Panics
    ///
    /// If the lengths differ.
    pub fn axpby<T: Element>(alpha: T, x: &[T], beta: T, y: &mut [T]) -> () {
        assert_eq!(x.len(), y.len(), "axpby: slices of different lengths");
        for (b, &a) in y.iter_mut().zip(x) {
            *b = add(mul(alpha, a), mul(beta, *b));
        }
    }
}

dispatch! {
    /// `y = y + alpha * x`, then returns the new `y · y` (one pass over both
    /// slices; the dot product is bitwise what [`dot`]`(y, y)` returns after
    /// the update). For a residual update `r -= alpha q` that also needs
    /// `r · r`.
    ///
    /// # Panics
    ///
    /// If the lengths differ.
    pub fn axpy_dot<T: Element>(alpha: T, x: &[T], y: &mut [T]) -> T {
        assert_eq!(x.len(), y.len(), "axpy_dot: slices of different lengths");
        tree(
            x.len(),
            T::ZERO,
            |s, e| {
                let y = &mut y[s..e];
                for (b, &a) in y.iter_mut().zip(&x[s..e]) {
                    *b = add(*b, mul(alpha, a));
                }
                sq_leaf(y)
            },
            add,
        )
    }
}

dispatch! {
    /// The conjugate-gradient update in one pass: `x = x + alpha * p`,
    /// `r = r + (-alpha) * q`, and returns the new `r · r` (bitwise what
    /// [`dot`]`(r, r)` returns after the update).
    ///
    /// # Panics
    ///
    /// If the lengths differ.
    pub fn cg_update<T: Element>(alpha: T, p: &[T], q: &[T], x: &mut [T], r: &mut [T]) -> T {
        let n = p.len();
        assert!(
            q.len() == n && x.len() == n && r.len() == n,
            "cg_update: slices of different lengths"
        );
        let minus_alpha = mul(alpha, neg_one::<T>());
        tree(
            n,
            T::ZERO,
            |s, e| {
                let (x, r) = (&mut x[s..e], &mut r[s..e]);
                // one sweep over the four streams (the prefetchers see
                // them all at once), then r . r while r is in L1
                let pairs = x.iter_mut().zip(r.iter_mut());
                for ((xi, ri), (&pi, &qi)) in pairs.zip(p[s..e].iter().zip(&q[s..e])) {
                    *xi = add(*xi, mul(alpha, pi));
                    *ri = add(*ri, mul(minus_alpha, qi));
                }
                sq_leaf(r)
            },
            add,
        )
    }
}

/// `-1` in `T`: all bits set for integers (two's complement `-1`, the
/// wrapping `-1` of unsigned types, so that `a * -1` wraps to `-a`).
#[inline(always)]
fn neg_one<T: Element>() -> T {
    if T::KIND.is_float() {
        T::ZERO - T::ONE
    } else {
        let mut v = T::ZERO;
        bytemuck::bytes_of_mut(&mut v).fill(0xff);
        v
    }
}

/// Coefficients of a 5-point stencil:
/// `y[i, j] = center·u[i, j] + west·u[i, j-1] + east·u[i, j+1]
///  + north·u[i-1, j] + south·u[i+1, j]`, added in that order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stencil5<T> {
    /// Coefficient of `u[i, j]`.
    pub center: T,
    /// Coefficient of `u[i, j - 1]`.
    pub west: T,
    /// Coefficient of `u[i, j + 1]`.
    pub east: T,
    /// Coefficient of `u[i - 1, j]` (the row above).
    pub north: T,
    /// Coefficient of `u[i + 1, j]` (the row below).
    pub south: T,
}

impl<T: Element> Stencil5<T> {
    /// Floats whose four neighbour coefficients are all `-1` (as in
    /// [`laplacian`](Self::laplacian)): the kernel subtracts instead of
    /// multiplying, with the same bits.
    #[inline(always)]
    fn unit_neighbours(&self) -> bool {
        let m = neg_one::<T>();
        T::KIND.is_float() && self.west == m && self.east == m && self.north == m && self.south == m
    }

    /// The negative 5-point Laplacian `4 u - (four neighbours)` (grid
    /// spacing 1), symmetric positive definite with zero Dirichlet
    /// boundaries.
    pub fn laplacian() -> Self {
        let four = T::ONE + T::ONE + T::ONE + T::ONE;
        let m = neg_one::<T>();
        Stencil5 {
            center: four,
            west: m,
            east: m,
            north: m,
            south: m,
        }
    }
}

/// A local 2-D block of `rows x cols` values (row-major) with the halo the
/// 5-point stencil reads around it. A halo side that is `None` lies outside
/// the domain: zero (Dirichlet) there, and its term is left out.
#[derive(Debug, Clone, Copy)]
pub struct Block2<'a, T> {
    /// Rows of the block.
    pub rows: usize,
    /// Columns of the block.
    pub cols: usize,
    /// The block's values, `rows * cols`, row-major.
    pub u: &'a [T],
    /// The row above the block (`cols` values), if any.
    pub north: Option<&'a [T]>,
    /// The row below the block (`cols` values), if any.
    pub south: Option<&'a [T]>,
    /// The column left of the block (`rows` values, top to bottom), if any.
    pub west: Option<&'a [T]>,
    /// The column right of the block (`rows` values, top to bottom), if any.
    pub east: Option<&'a [T]>,
}

impl<'a, T: Element> Block2<'a, T> {
    /// A block with only north / south halo rows (whole grid rows: nothing
    /// west or east), as for a grid split into bands of rows.
    pub fn rows(
        rows: usize,
        cols: usize,
        u: &'a [T],
        north: Option<&'a [T]>,
        south: Option<&'a [T]>,
    ) -> Self {
        Block2 {
            rows,
            cols,
            u,
            north,
            south,
            west: None,
            east: None,
        }
    }

    fn check(&self, y: &[T]) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidArgument(format!("stencil5: {what}")));
        let len = self.rows.checked_mul(self.cols);
        if len != Some(self.u.len()) {
            return bad(&format!(
                "u holds {} values, not rows x cols = {} x {}",
                self.u.len(),
                self.rows,
                self.cols
            ));
        }
        if y.len() != self.u.len() {
            return bad(&format!("y holds {} values, u {}", y.len(), self.u.len()));
        }
        for (name, side, want) in [
            ("north", self.north, self.cols),
            ("south", self.south, self.cols),
            ("west", self.west, self.rows),
            ("east", self.east, self.rows),
        ] {
            if let Some(s) = side {
                if s.len() != want {
                    return bad(&format!("{name} halo holds {} values, not {want}", s.len()));
                }
            }
        }
        Ok(())
    }
}

/// One row segment, columns `c0..c1`, of the stencil; `N` / `S` say whether
/// there is a row above / below. The interior columns run in one
/// branch-free loop over equal-length slices, which the compiler
/// vectorises; the first and last column of the block are done apart.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn stencil_row<T: Element, const N: bool, const S: bool>(
    st: &Stencil5<T>,
    row: &[T],
    up: &[T],
    down: &[T],
    west: Option<T>,
    east: Option<T>,
    c0: usize,
    c1: usize,
    out: &mut [T],
) {
    let cols = row.len();
    let point = |c: usize, w: Option<T>, e: Option<T>| {
        let mut v = mul(st.center, row[c]);
        if let Some(w) = w {
            v = add(v, mul(st.west, w));
        }
        if let Some(e) = e {
            v = add(v, mul(st.east, e));
        }
        if N {
            v = add(v, mul(st.north, up[c]));
        }
        if S {
            v = add(v, mul(st.south, down[c]));
        }
        v
    };
    let west_of = |c: usize| if c == 0 { west } else { Some(row[c - 1]) };
    let east_of = |c: usize| {
        if c + 1 == cols {
            east
        } else {
            Some(row[c + 1])
        }
    };
    // out covers columns c0..c1
    let lo = c0.max(1);
    let hi = c1.min(cols.saturating_sub(1)).max(lo);
    if c0 == 0 && c1 > 0 {
        out[0] = point(0, west, east_of(0));
    }
    if lo < hi {
        let m = hi - lo;
        let o = &mut out[lo - c0..hi - c0];
        let (l, mid, r) = (&row[lo - 1..hi - 1], &row[lo..hi], &row[lo + 1..hi + 1]);
        let u = if N { &up[lo..hi] } else { &[][..] };
        let dn = if S { &down[lo..hi] } else { &[][..] };
        assert!(o.len() == m && l.len() == m && mid.len() == m && r.len() == m);
        assert!((!N || u.len() == m) && (!S || dn.len() == m));
        if st.unit_neighbours() {
            // `v + (-1) * x` is `v - x` to the bit for floats: one
            // multiplication per point instead of five
            for k in 0..m {
                let mut v = mul(st.center, mid[k]) - l[k] - r[k];
                if N {
                    v = v - u[k];
                }
                if S {
                    v = v - dn[k];
                }
                o[k] = v;
            }
        } else {
            for k in 0..m {
                let mut v = mul(st.center, mid[k]);
                v = add(v, mul(st.west, l[k]));
                v = add(v, mul(st.east, r[k]));
                if N {
                    v = add(v, mul(st.north, u[k]));
                }
                if S {
                    v = add(v, mul(st.south, dn[k]));
                }
                o[k] = v;
            }
        }
    }
    // column cols - 1 (when it is not column 0) is in c0..c1 iff c1 == cols
    if c1 == cols && cols > 1 {
        out[cols - 1 - c0] = point(cols - 1, west_of(cols - 1), east);
    }
}

/// The stencil on the flat index range `s..e` of the block.
#[inline(always)]
fn stencil_span<T: Element>(st: &Stencil5<T>, b: &Block2<'_, T>, s: usize, e: usize, y: &mut [T]) {
    let cols = b.cols;
    let mut k = s;
    while k < e {
        let r = k / cols;
        let c0 = k % cols;
        let c1 = (e - r * cols).min(cols);
        let row = &b.u[r * cols..(r + 1) * cols];
        let up = if r > 0 {
            Some(&b.u[(r - 1) * cols..r * cols])
        } else {
            b.north
        };
        let down = if r + 1 < b.rows {
            Some(&b.u[(r + 1) * cols..(r + 2) * cols])
        } else {
            b.south
        };
        let (w, ea) = (b.west.map(|v| v[r]), b.east.map(|v| v[r]));
        let out = &mut y[k - s..k - s + (c1 - c0)];
        match (up, down) {
            (Some(u), Some(d)) => stencil_row::<T, true, true>(st, row, u, d, w, ea, c0, c1, out),
            (Some(u), None) => stencil_row::<T, true, false>(st, row, u, &[], w, ea, c0, c1, out),
            (None, Some(d)) => stencil_row::<T, false, true>(st, row, &[], d, w, ea, c0, c1, out),
            (None, None) => stencil_row::<T, false, false>(st, row, &[], &[], w, ea, c0, c1, out),
        }
        k += c1 - c0;
    }
}

/// `y = S u` for the 5-point stencil `st` on the block `b` (its halo rows
/// and columns supply the neighbours across the block's edges).
///
/// The boundary columns are computed apart and every row picks its
/// variant (row above / below present or not) once, so the loop over a
/// row's interior has no branch and vectorises.
///
/// # Errors
///
/// [`Error::InvalidArgument`] if `b.u` does not hold `rows * cols` values,
/// `y` not as many, or a halo side has the wrong length.
///
/// ```
/// use distarray::kernels::{stencil5, Block2, Stencil5};
/// // a 2 x 3 block whose row above is given (a rank's band of rows)
/// let u = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let above = [1.0; 3];
/// let mut y = [0.0; 6];
/// stencil5(&Stencil5::laplacian(), &Block2::rows(2, 3, &u, Some(&above), None), &mut y).unwrap();
/// assert_eq!(y[0], 4.0 * 1.0 - 2.0 - 1.0 - 4.0); // no west neighbour
/// assert_eq!(y[4], 4.0 * 5.0 - 4.0 - 6.0 - 2.0); // no row below
/// ```
pub fn stencil5<T: Element>(st: &Stencil5<T>, b: &Block2<'_, T>, y: &mut [T]) -> Result<()> {
    b.check(y)?;
    stencil_all(st, b, y);
    Ok(())
}

dispatch! {
    /// [`stencil5`] after its checks.
    fn stencil_all<T: Element>(st: &Stencil5<T>, b: &Block2<'_, T>, y: &mut [T]) -> () {
        stencil_span(st, b, 0, y.len(), y)
    }
}

/// [`stencil5`] that also returns `u · y` (for CG's `p · A p`), computed
/// leaf by leaf while the values are in cache: bitwise what
/// [`dot`]`(u, y)` returns.
///
/// # Errors
///
/// As [`stencil5`].
pub fn stencil5_dot<T: Element>(st: &Stencil5<T>, b: &Block2<'_, T>, y: &mut [T]) -> Result<T> {
    b.check(y)?;
    Ok(stencil_dot_all(st, b, y))
}

dispatch! {
    /// [`stencil5_dot`] after its checks.
    fn stencil_dot_all<T: Element>(st: &Stencil5<T>, b: &Block2<'_, T>, y: &mut [T]) -> T {
        tree(
            y.len(),
            T::ZERO,
            |s, e| {
                stencil_span(st, b, s, e, &mut y[s..e]);
                dot_leaf(&b.u[s..e], &y[s..e])
            },
            add,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on the AVX2 path (where the CPU has it) and on the
    /// baseline path.
    fn both<R>(f: impl Fn() -> R) -> (R, R) {
        let fast = f();
        BASELINE.with(|b| b.set(true));
        let base = f();
        BASELINE.with(|b| b.set(false));
        (fast, base)
    }

    fn data(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * [1.0, 1e-3, 1e3][(s % 3) as usize]
            })
            .collect()
    }

    #[test]
    fn vector_width_does_not_change_the_bits() {
        for n in [0, 1, 17, 2048, 2049, 10_000, 70_001] {
            let (x, y) = (data(n, 1), data(n, 2));
            let bits = |v: f64| v.to_bits();
            let (a, b) = both(|| bits(sum(&x)));
            assert_eq!(a, b, "sum, n = {n}");
            let (a, b) = both(|| bits(dot(&x, &y)));
            assert_eq!(a, b, "dot, n = {n}");
            let (a, b) = both(|| bits(dot(&x, &x)));
            assert_eq!(a, b, "dot(x, x), n = {n}");
            let (a, b) = both(|| bits(norm2(&x)));
            assert_eq!(a, b, "norm2, n = {n}");
            let (a, b) = both(|| reduce(&x, AccumulateOp::Max).unwrap().map(bits));
            assert_eq!(a, b, "max, n = {n}");
            let (a, b) = both(|| {
                let mut r = y.clone();
                let rr = axpy_dot(0.3, &x, &mut r);
                (bits(rr), r)
            });
            assert_eq!(a, b, "axpy_dot, n = {n}");
            let (a, b) = both(|| {
                let (mut xx, mut r) = (y.clone(), x.clone());
                let rr = cg_update(0.7, &x, &y, &mut xx, &mut r);
                (bits(rr), xx, r)
            });
            assert_eq!(a, b, "cg_update, n = {n}");
            let (a, b) = both(|| {
                let mut z = y.clone();
                axpby(0.3, &x, -1.5, &mut z);
                z
            });
            assert_eq!(a, b, "axpby, n = {n}");
        }
        let (rows, cols) = (37, 301);
        let u = data(rows * cols, 3);
        let (north, south) = (data(cols, 4), data(cols, 5));
        let block = Block2::rows(rows, cols, &u, Some(&north), Some(&south));
        let st = Stencil5::laplacian();
        let (a, b) = both(|| {
            let mut y = vec![0.0; rows * cols];
            let d = stencil5_dot(&st, &block, &mut y).unwrap();
            (d.to_bits(), y)
        });
        assert_eq!(a, b, "stencil5_dot");
    }
}
