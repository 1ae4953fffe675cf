//! One output row of a **star** stencil with AVX-512, for `f64`: the
//! centre row's neighbours `-R..=R` are formed from three vectors of that
//! row by lane shifts (`valignq`) instead of being loaded again at
//! unaligned addresses (each such 64-byte load spans two cache lines).
//! Used for cache-resident inputs, where the kernel is bound by its loads;
//! the same operations in the same order as the generic kernel, so the
//! same bits (see the [module docs](super)).

use std::arch::x86_64::*;

/// The star pattern of a stencil's flat offsets (relative to the centre),
/// in evaluation order: the centre first, then any points off the centre
/// row, then the row's own `-R, ..., -1, 1, ..., R` last — the order of
/// [`Stencil::star`](super::Stencil::star) in any number of dimensions.
/// Returns `R`.
pub(super) fn star_radius(offsets: &[isize]) -> Option<usize> {
    let k = offsets.len();
    if offsets.first() != Some(&0) {
        return None;
    }
    (1..=MAX_R).find(|&r| {
        k > 2 * r
            && offsets[k - 2 * r..]
                .iter()
                .copied()
                .eq((-(r as isize)..0).chain(1..=r as isize))
    })
}

/// The largest radius along the row this kernel takes (a shift stays
/// within the neighbouring vector).
const MAX_R: usize = 7;

/// `f64` lanes per vector.
const L: usize = 8;

/// Whether this CPU runs [`row`].
/// (Unit tests can force the baseline paths, this one included.)
pub(super) fn available() -> bool {
    !crate::kernels::force_baseline() && std::arch::is_x86_feature_detected!("avx512f")
}

/// The row's values at columns `j + d ..` for `d` in `-7..=7`, `d != 0`,
/// from the vectors at `j - 8`, `j`, `j + 8` (the shift is a constant
/// once the caller's loop unrolls, and the `match` folds away).
macro_rules! shifted {
    ($prev:expr, $cur:expr, $next:expr, $d:expr) => {{
        let (prev, cur, next) = (
            _mm512_castpd_si512($prev),
            _mm512_castpd_si512($cur),
            _mm512_castpd_si512($next),
        );
        let (hi, lo, s) = if $d < 0 {
            (cur, prev, $d + L as isize)
        } else {
            (next, cur, $d)
        };
        _mm512_castsi512_pd(match s {
            1 => _mm512_alignr_epi64::<1>(hi, lo),
            2 => _mm512_alignr_epi64::<2>(hi, lo),
            3 => _mm512_alignr_epi64::<3>(hi, lo),
            4 => _mm512_alignr_epi64::<4>(hi, lo),
            5 => _mm512_alignr_epi64::<5>(hi, lo),
            6 => _mm512_alignr_epi64::<6>(hi, lo),
            7 => _mm512_alignr_epi64::<7>(hi, lo),
            _ => unreachable!("a shift within one vector"),
        })
    }};
}

/// The lanes `l` of a vector whose lane 0 is point `lo` (relative to the
/// row's first output) for which `from <= lo + l < to`.
#[inline(always)]
fn lanes(lo: isize, from: isize, to: isize) -> u8 {
    let a = (from - lo).clamp(0, L as isize) as u32;
    let b = (to - lo).clamp(0, L as isize) as u32;
    if b <= a {
        0
    } else {
        (((1u16 << b) - 1) & !((1u16 << a) - 1)) as u8
    }
}

/// `out[j] (+)= Σ_k w[k] · input[starts[k] + j]` for every `j` in
/// `0..out.len()`, in vectors of eight values that start on 64-byte
/// boundaries of the input's centre row (loads that do not straddle cache
/// lines; with rows a whole number of lines apart, as `Halo` stores them,
/// every row's loads are aligned, and the output's too when it has the
/// same place in its line): a masked vector where the row begins inside
/// one, whole vectors, a masked vector at the end.
///
/// # Safety
///
/// The CPU has AVX-512F; `starts` and `w` follow the star pattern of
/// [`star_radius`] with radius `R` (`starts[0]` the centre `c`, the last
/// `2R` starts `c - R, ..., c - 1, c + 1, ..., c + R`), and every start
/// `s` has `s + out.len() <= input.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn row<const K: usize, const R: usize>(
    input: &[f64],
    starts: &[usize; K],
    w: &[f64; K],
    out: &mut [f64],
    accumulate: bool,
) {
    const { assert!(K > 2 * R && R >= 1 && R <= MAX_R) };
    let n = out.len();
    if n == 0 {
        return;
    }
    let c = starts[0];
    let (ni, ri) = (n as isize, R as isize);
    let centre = input.as_ptr().wrapping_add(c);
    let o = out.as_mut_ptr();
    let wv: [__m512d; K] = std::array::from_fn(|k| _mm512_set1_pd(w[k]));
    // The centre row's values the row reads: points -R .. n + R (relative
    // to the first output), inside `input` (the pattern's starts c - R and
    // c + R with `s + n <= len`). A vector whose lane 0 is point `lo` reads
    // only its lanes inside that range (`lanes`): masked lanes are not
    // accessed, so a vector may begin before `input` or end past it.
    let load_centre = |lo: isize| -> __m512d {
        let m = lanes(lo, -ri, ni + ri);
        let p = centre.wrapping_offset(lo);
        if m == !0 {
            // SAFETY: every lane is a point in -R .. n + R (the mask is
            // full): inside `input`, see above.
            unsafe { _mm512_loadu_pd(p) }
        } else {
            // SAFETY: the lanes read are points in -R .. n + R, inside
            // `input`; the others are not accessed.
            unsafe { _mm512_maskz_loadu_pd(m, p) }
        }
    };
    // the first vector starts at the 64-byte boundary at or before the
    // centre (an f64 is 8 bytes: `s` lanes before it)
    let s = (centre as usize / 8) % L;
    let mut lo = -(s as isize);
    let mut prev = load_centre(lo - L as isize);
    let mut cur = load_centre(lo);
    let l = L as isize;
    // One vector: `fast` where its outputs are all points of 0 .. n and
    // the next vector's centre values all points of -R .. n + R (no mask to
    // compute: the middle of the row), masked otherwise.
    macro_rules! step {
        ($fast:expr) => {{
            let fast: bool = $fast;
            let next = if fast {
                // SAFETY: points lo + 8 .. lo + 16, inside -R .. n + R
                // (the caller's condition for `fast`): inside `input`.
                unsafe { _mm512_loadu_pd(centre.wrapping_offset(lo + l)) }
            } else {
                load_centre(lo + l)
            };
            // the outputs of this vector: points 0 .. n
            let mask = if fast { !0 } else { lanes(lo, 0, ni) };
            let whole = mask == !0;
            let mut a = _mm512_mul_pd(wv[0], cur);
            for k in 1..K - 2 * R {
                let p = input.as_ptr().wrapping_add(starts[k]).wrapping_offset(lo);
                // SAFETY: the lanes read are points 0 .. n of row
                // `starts[k]`, inside `input` (`starts[k] + n <= len`); with
                // a full mask the vector is all such points; masked lanes
                // are not accessed.
                let v = unsafe {
                    if whole {
                        _mm512_loadu_pd(p)
                    } else {
                        _mm512_maskz_loadu_pd(mask, p)
                    }
                };
                a = _mm512_fmadd_pd(wv[k], v, a);
            }
            for i in 0..2 * R {
                let d = if i < R {
                    i as isize - R as isize
                } else {
                    (i + 1 - R) as isize
                };
                let v = shifted!(prev, cur, next, d);
                a = _mm512_fmadd_pd(wv[K - 2 * R + i], v, a);
            }
            let p = o.wrapping_offset(lo);
            // SAFETY: the lanes written (and read, to accumulate) are
            // outputs 0 .. n, inside `out`; masked lanes are not accessed.
            unsafe {
                match (whole, accumulate) {
                    (true, true) => _mm512_storeu_pd(p, _mm512_add_pd(_mm512_loadu_pd(p), a)),
                    (true, false) => _mm512_storeu_pd(p, a),
                    (false, true) => {
                        let v = _mm512_add_pd(_mm512_maskz_loadu_pd(mask, p), a);
                        _mm512_mask_storeu_pd(p, mask, v);
                    }
                    (false, false) => _mm512_mask_storeu_pd(p, mask, a),
                }
            }
            prev = cur;
            cur = next;
            lo += l;
        }};
    }
    // the vector the row begins inside (when it does not begin on a line)
    if lo < 0 {
        step!(false);
    }
    // the middle: lo >= 0, and lo + 16 <= n + R, so that this vector's
    // outputs (lo + 8 <= n + R - 8 < n, as R < 8) and the next vector's
    // centre values are all in range
    while lo + 2 * l <= ni + ri {
        step!(true);
    }
    while lo < ni {
        step!(false);
    }
}
