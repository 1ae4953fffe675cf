//! Output rows of a **star** stencil with AVX-512, for `f64`, one row or
//! a block of rows at a time: the centre row's neighbours `-R..=R` are
//! formed from three vectors of that row by lane shifts (`valignq`)
//! instead of being loaded again at unaligned addresses (each such 64-byte
//! load spans two cache lines), and a block's rows take their neighbours
//! along the dimension before the row from the vectors the block already
//! holds. The same operations in the same order as the generic kernel, so
//! the same bits (see the [module docs](super)).

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

/// Whether this CPU runs [`rows`].
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

/// How far ahead of the vectors being computed the streaming kernel
/// prefetches its entering rows and its outputs (bytes). Measured on the
/// radius-2 star from memory (2048², 4 rows a block): 1–2 KiB 0.42–0.44 ns
/// per point, 3 KiB 0.49, 8 KiB 0.55, 16 KiB 0.59 — far prefetches are
/// evicted or crowd the line-fill buffers before they are used.
const PREFETCH_BYTES: usize = 2048;

/// The output rows `b` in `0..B` of a block, each `out[outs[b] + j] (+)=
/// Σ_k w[k] · input[starts[k] + b·pitch + j]` for every `j` in `0..n`, in
/// vectors of eight values that start on 64-byte boundaries of the first
/// centre row (loads that do not straddle cache lines; with rows a whole
/// number of lines apart, as `Halo` stores them, every row's loads are
/// aligned, and the output's too when it has the same place in its line):
/// a masked vector where the rows begin inside one, whole vectors, a
/// masked vector at the end.
///
/// With `B > 1` the rows share their loads (register blocking): the
/// stencil's `2R` points along the dimension before the row (offsets
/// `q·pitch`, `q` in `-R..=R`, `q != 0`) are, for output row `b`, the
/// centre rows `b + q` of the block, kept in registers, or one of the `2R`
/// rows just above or below it, loaded once for the whole block. Each input
/// vector is then loaded once per block instead of once per point that
/// reads it, which halves the loads in cache and the traffic from the
/// second-level cache when streaming. Every value's operations and their
/// order are those of the generic kernel: the same bits.
///
/// With `PREFETCH` (inputs larger than the caches) each vector step hints
/// the line [`PREFETCH_BYTES`] ahead in every row that enters the stencil's
/// window with this block (the row of the largest start) and in every
/// output row.
///
/// # Safety
///
/// The CPU has AVX-512F; `starts` and `w` follow the star pattern of
/// [`star_radius`] with radius `R` (`starts[0]` the centre `c`, the last
/// `2R` starts `c - R, ..., c - 1, c + 1, ..., c + R`); when `B > 1`, the
/// `2R` starts before those are `c + q·pitch` (exact, not wrapping) for
/// `q = -R, ..., -1, 1, ..., R` in that order; every start `s` has `s + (B -
/// 1)·pitch + n <= input.len()`; every `outs[b] + n <= out.len()` and the
/// output rows do not overlap (`outs[b] + n <= outs[b + 1]`).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn rows<const K: usize, const R: usize, const B: usize, const PREFETCH: bool>(
    input: &[f64],
    starts: &[usize; K],
    pitch: usize,
    w: &[f64; K],
    out: &mut [f64],
    outs: &[usize; B],
    n: usize,
    accumulate: bool,
) {
    const { assert!(K > 2 * R && R >= 1 && R <= MAX_R && B >= 1) };
    // points along the dimension before the row, shared by a block's rows:
    // the 2R before the row's own (a star of two or more dimensions)
    const { assert!(B == 1 || K > 4 * R) };
    if n == 0 {
        return;
    }
    let c = starts[0];
    let (ni, ri) = (n as isize, R as isize);
    let base = input.as_ptr();
    // the centre row of output row b
    let centre: [*const f64; B] = std::array::from_fn(|b| base.wrapping_add(c + b * pitch));
    // one pointer from `out`, the rows' derived from it (a fresh
    // `as_mut_ptr` per row would retag `out` and, under Stacked Borrows,
    // invalidate the pointers taken before)
    let out_base = out.as_mut_ptr();
    let o: [*mut f64; B] = std::array::from_fn(|b| out_base.wrapping_add(outs[b]));
    // the rows that enter the window with this block (prefetched; not
    // looked for without prefetch)
    let lead = if PREFETCH {
        starts.iter().copied().max().unwrap_or(c)
    } else {
        c
    };
    let leads: [*const f64; B] = std::array::from_fn(|b| base.wrapping_add(lead + b * pitch));
    let wv: [__m512d; K] = std::array::from_fn(|k| _mm512_set1_pd(w[k]));
    // the first shared point, when the rows share loads (none for one row)
    let first_shared = if B > 1 { K - 4 * R } else { K };
    let shared = |k: usize| B > 1 && k >= first_shared && k < K - 2 * R;
    // the shared point k's row offset q from its output row
    let q_of = |k: usize| -> isize {
        let i = (k - first_shared) as isize;
        if i < ri {
            i - ri
        } else {
            i - ri + 1
        }
    };
    // The centre rows' values the block reads: points -R .. n + R
    // (relative to the first output) of each centre row, inside `input`
    // (the pattern's starts c - R and c + R, and `s + (B - 1)·pitch + n <=
    // len`). A vector whose lane 0 is point `lo` reads only its lanes inside
    // that range (`lanes`): masked lanes are not accessed, so a vector may
    // begin before `input` or end past it.
    // (Macros, not closures: a closure is not compiled with this
    // function's target features, and its intrinsics then are calls.)
    macro_rules! load_centre {
        ($b:expr, $lo:expr) => {{
            let (b, lo): (usize, isize) = ($b, $lo);
            let m = lanes(lo, -ri, ni + ri);
            let p = centre[b].wrapping_offset(lo);
            if m == !0 {
                // SAFETY: every lane is a point in -R .. n + R of centre
                // row b (the mask is full): inside `input`, see above.
                unsafe { _mm512_loadu_pd(p) }
            } else {
                // SAFETY: the lanes read are points in -R .. n + R of
                // centre row b, inside `input`; the others are not
                // accessed.
                unsafe { _mm512_maskz_loadu_pd(m, p) }
            }
        }};
    }
    // Points 0 .. n of the row starting at `start` (a start of the
    // pattern, plus b·pitch for some b < B: inside `input`) under the
    // output mask.
    macro_rules! load_row {
        ($start:expr, $lo:expr, $mask:expr) => {{
            let (start, lo, mask): (usize, isize, u8) = ($start, $lo, $mask);
            let p = base.wrapping_add(start).wrapping_offset(lo);
            // SAFETY: the lanes read are points 0 .. n of a row whose start
            // `s` has `s + n <= input.len()` (the contract: every start
            // plus (B - 1)·pitch); with a full mask the vector is all such
            // points; masked lanes are not accessed.
            unsafe {
                if mask == !0 {
                    _mm512_loadu_pd(p)
                } else {
                    _mm512_maskz_loadu_pd(mask, p)
                }
            }
        }};
    }
    // the first vector starts at the 64-byte boundary at or before the
    // first centre (an f64 is 8 bytes: `s` lanes before it)
    let s = (centre[0] as usize / 8) % L;
    let mut lo = -(s as isize);
    let mut prev = [_mm512_setzero_pd(); B];
    let mut cur = [_mm512_setzero_pd(); B];
    for b in 0..B {
        prev[b] = load_centre!(b, lo - L as isize);
        cur[b] = load_centre!(b, lo);
    }
    let l = L as isize;
    // One vector of every row: `fast` where its outputs are all points of
    // 0 .. n and the next vector's centre values all points of -R .. n + R
    // (no mask to compute: the middle of the rows), masked otherwise.
    macro_rules! step {
        ($fast:expr) => {{
            let fast: bool = $fast;
            if PREFETCH {
                for b in 0..B {
                    // the address PREFETCH_BYTES ahead (wrapping arithmetic:
                    // it may lie outside the buffers)
                    let ahead = |p: *const f64| {
                        p.wrapping_offset(lo)
                            .cast::<i8>()
                            .wrapping_add(PREFETCH_BYTES)
                    };
                    // a hint: it never faults, for any address
                    _mm_prefetch::<_MM_HINT_T0>(ahead(leads[b]));
                    _mm_prefetch::<_MM_HINT_T0>(ahead(o[b]));
                }
            }
            let mut next = [_mm512_setzero_pd(); B];
            for b in 0..B {
                next[b] = if fast {
                    // SAFETY: points lo + 8 .. lo + 16 of centre row b,
                    // inside -R .. n + R (the caller's condition for
                    // `fast`): inside `input`.
                    unsafe { _mm512_loadu_pd(centre[b].wrapping_offset(lo + l)) }
                } else {
                    load_centre!(b, lo + l)
                };
            }
            // the outputs of this vector: points 0 .. n
            let mask = if fast { !0 } else { lanes(lo, 0, ni) };
            // the rows just above and below the block (shared points only):
            // above[i] is block row i - R, below[i] block row B + i
            let mut above = [_mm512_setzero_pd(); R];
            let mut below = [_mm512_setzero_pd(); R];
            if B > 1 {
                for i in 0..R {
                    // above[i] starts at `starts[K - 4R + i]` (c - (R -
                    // i)·pitch), below[i] at `starts[K - 3R + i] + (B -
                    // 1)·pitch` (c + (i + 1)·pitch + (B - 1)·pitch): the
                    // shared points' pattern of the contract
                    above[i] = load_row!(c - (R - i) * pitch, lo, mask);
                    below[i] = load_row!(c + (B + i) * pitch, lo, mask);
                }
            }
            for b in 0..B {
                let mut a = _mm512_mul_pd(wv[0], cur[b]);
                for k in 1..K - 2 * R {
                    let v = if shared(k) {
                        let r = b as isize + q_of(k);
                        if r < 0 {
                            above[(r + ri) as usize]
                        } else if r >= B as isize {
                            below[(r - B as isize) as usize]
                        } else {
                            cur[r as usize]
                        }
                    } else {
                        load_row!(starts[k] + b * pitch, lo, mask)
                    };
                    a = _mm512_fmadd_pd(wv[k], v, a);
                }
                for i in 0..2 * R {
                    let d = if i < R {
                        i as isize - R as isize
                    } else {
                        (i + 1 - R) as isize
                    };
                    let v = shifted!(prev[b], cur[b], next[b], d);
                    a = _mm512_fmadd_pd(wv[K - 2 * R + i], v, a);
                }
                let p = o[b].wrapping_offset(lo);
                // SAFETY: the lanes written (and read, to accumulate) are
                // outputs 0 .. n of output row b, inside `out` and no other
                // row's; masked lanes are not accessed.
                unsafe {
                    match (mask == !0, accumulate) {
                        (true, true) => _mm512_storeu_pd(p, _mm512_add_pd(_mm512_loadu_pd(p), a)),
                        (true, false) => _mm512_storeu_pd(p, a),
                        (false, true) => {
                            let v = _mm512_add_pd(_mm512_maskz_loadu_pd(mask, p), a);
                            _mm512_mask_storeu_pd(p, mask, v);
                        }
                        (false, false) => _mm512_mask_storeu_pd(p, mask, a),
                    }
                }
            }
            prev = cur;
            cur = next;
            lo += l;
        }};
    }
    // the vector the rows begin inside (when they do not begin on a line)
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
