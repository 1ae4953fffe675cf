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

/// A mask of the first `lanes` lanes (all eight from 8 up).
#[inline(always)]
fn first(lanes: usize) -> u8 {
    if lanes >= L {
        !0
    } else {
        ((1u16 << lanes) - 1) as u8
    }
}

/// `out[j] (+)= Σ_k w[k] · input[starts[k] + j]` for every `j` in
/// `0..out.len()`: whole vectors, then one masked vector for the last
/// `out.len() % 8` values.
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
    let base = input.as_ptr();
    let o = out.as_mut_ptr();
    let wv: [__m512d; K] = std::array::from_fn(|k| _mm512_set1_pd(w[k]));
    // The centre row is read as vectors at columns j - 8, j, j + 8; each
    // holds the row's values inside `input[c - R .. c + n + R]` (the
    // rows of the points `c - R` and `c + R`, inside `input`) and zeros
    // outside it (masked off: not read, so addresses beyond the slice,
    // formed with wrapping arithmetic, are never accessed).
    //
    // SAFETY: the lanes 8 - R .. 8 of the vector ending at column 0 are
    // `input[c - R .. c]` (see above).
    let mut prev =
        unsafe { _mm512_maskz_loadu_pd(!0u8 << (L - R), base.wrapping_add(c).wrapping_sub(L)) };
    // SAFETY: the lanes read are `input[c .. c + min(8, n + R)]` (see above).
    let mut cur = unsafe { _mm512_maskz_loadu_pd(first(n + R), base.add(c)) };
    // one vector of output values from column `j`, `lanes` of them stored
    // (the loads of the points off the row masked alike)
    macro_rules! vector {
        ($j:expr, $lanes:expr) => {{
            let (j, lanes): (usize, usize) = ($j, $lanes);
            // a whole vector: plain loads and stores (a constant per call
            // site: the branches fold)
            let whole = lanes == L;
            let mask = first(lanes);
            // the next vector of the centre row, the lanes inside its
            // rows (above)
            let next = if j + 2 * L <= n + R {
                // SAFETY: `c + j + 16 <= c + n + R <= input.len()`.
                unsafe { _mm512_loadu_pd(base.add(c + j + L)) }
            } else if j + L < n + R {
                // SAFETY: the lanes read are `input[c + j + 8 .. c + n +
                // R]`, inside `input` (above).
                unsafe { _mm512_maskz_loadu_pd(first(n + R - j - L), base.add(c + j + L)) }
            } else {
                _mm512_setzero_pd()
            };
            let mut a = _mm512_mul_pd(wv[0], cur);
            for k in 1..K - 2 * R {
                // SAFETY: the lanes read are `starts[k] + j ..
                // starts[k] + j + lanes`, with `j + lanes <= n` and
                // `starts[k] + n <= input.len()`.
                let v = unsafe {
                    let p = base.add(starts[k] + j);
                    if whole {
                        _mm512_loadu_pd(p)
                    } else {
                        _mm512_maskz_loadu_pd(mask, p)
                    }
                };
                a = _mm512_fmadd_pd(wv[k], v, a);
            }
            for i in 0..2 * R {
                // the offset along the row: -R .. -1, then 1 .. R
                let d = if i < R {
                    i as isize - R as isize
                } else {
                    (i + 1 - R) as isize
                };
                let v = shifted!(prev, cur, next, d);
                a = _mm512_fmadd_pd(wv[K - 2 * R + i], v, a);
            }
            // SAFETY: the lanes written (and read) are `out[j .. j +
            // lanes]`, `j + lanes <= n = out.len()`.
            unsafe {
                let p = o.add(j);
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
            next
        }};
    }
    let mut j = 0;
    while j + L <= n {
        let next = vector!(j, L);
        prev = cur;
        cur = next;
        j += L;
    }
    if j < n {
        vector!(j, n - j);
    }
}
