//! Checks of [`Ghosted`] arrays: every cell of the extended box after each
//! kind of update (periodic and not, corners or faces, widths larger than a
//! neighbour's part, empty parts), stencils giving the serial bits on any
//! rank count, and bad input refused on every rank.

use std::ops::Range;

use super::array::grid_2d;
use super::halo::{dims_outside, wrapped};
use super::{expect_err, ok, Check};
use crate::comm::OneSidedComm;
use crate::error::Error;
use crate::partition::{linear_offset, multi_index};
use crate::stencil::{self, Stencil};
use crate::{linalg, DistArray, Ghosted, Summation};

/// The ghosted-array checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("ghosted_cells", ghosted_cells::<C>),
        ("ghosted_stencils", ghosted_stencils::<C>),
        ("ghosted_overlapped_apply", ghosted_overlapped_apply::<C>),
        ("ghosted_vector_ops", ghosted_vector_ops::<C>),
        (
            "ghosted_exact_dot_of_long_rows",
            exact_dot_of_long_rows::<C>,
        ),
        ("ghosted_bad_input", ghosted_bad_input::<C>),
    ]
}

/// Fills a ghosted copy of `a` with `f` and compares every cell of the
/// extended box after an update, an overlapped update (whose work adds 1
/// to the part) and a store back into `a`.
fn check_cells<C: OneSidedComm, const N: usize>(
    comm: &C,
    a: &DistArray<i64, C, N>,
    f: impl Fn([usize; N]) -> i64,
    width: [usize; N],
    periodic: [bool; N],
    corners: bool,
) where
    ndarray::Dim<[usize; N]>: ndarray::Dimension,
{
    const BOUNDARY: i64 = -7;
    let shape = a.shape();
    ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(&f)));
    let mut g = if corners {
        ok(comm, "Ghosted::new", Ghosted::new(a, width, periodic))
    } else {
        ok(
            comm,
            "Ghosted::new_faces",
            Ghosted::new_faces(a, width, periodic),
        )
    };
    let own = g.own_range();
    let empty = own.iter().any(|r| r.is_empty());
    let ext = g.extended_shape();
    if !empty && ext[N - 1] > own[N - 1].len() + 2 * width[N - 1] {
        // padded rows: the part's first element starts a cache line
        let first = crate::partition::linear_offset(&ext, &width);
        let at = g.as_slice()[first..].as_ptr() as usize;
        assert_eq!(at % 64, 0, "rank {}: the part on a line", comm.rank());
    }
    // the boundary value in every ghost cell, the part untouched
    let part: Vec<i64> = g.interior().iter().copied().collect();
    g.view_mut().fill(BOUNDARY);
    g.interior_mut()
        .iter_mut()
        .zip(&part)
        .for_each(|(v, &p)| *v = p);
    const SCRIBBLE: i64 = -11;
    let g_ext = g.extended_shape();
    for round in 0..2i64 {
        if round == 0 {
            ok(comm, "update_ghosts", g.update_ghosts());
        } else {
            // the work adds 1 to the part and scribbles over every ghost
            // cell: the finished update overwrites those it fills (from
            // the neighbours and the periodic wrap onto this rank alike)
            let r = g.update_ghosts_with(|mut v| {
                let ext = g_ext;
                let vals = v.as_slice_mut().expect("standard layout");
                let mut inside = 0;
                for (k, x) in vals.iter_mut().enumerate() {
                    let rel = multi_index(&ext, k);
                    if dims_outside(&rel, width, &own) == 0 {
                        *x += 1;
                        inside += 1;
                    } else {
                        *x = SCRIBBLE;
                    }
                }
                inside
            });
            let n = ok(comm, "update_ghosts_with", r);
            assert_eq!(n, own.iter().map(|r| r.len()).product::<usize>());
            // the work ran after the faces were sent: the neighbours hold
            // round 0's values, this rank's part holds round 1's
        }
        // the part and its ghost layers (the rows of the extended box are
        // padded past them)
        let boxed: [usize; N] = std::array::from_fn(|d| own[d].len() + 2 * width[d]);
        let total: usize = if empty { 0 } else { boxed.iter().product() };
        let view = g.view().into_dyn();
        for k in 0..total {
            let rel = multi_index(&boxed, k);
            let gi: [isize; N] = std::array::from_fn(|d| {
                own[d].start as isize - width[d] as isize + rel[d] as isize
            });
            let beyond = dims_outside(&rel, width, &own);
            // cells no update fills keep the boundary value, or what the
            // work of round 1 wrote there
            let unfilled = if round == 0 { BOUNDARY } else { SCRIBBLE };
            let expect = match wrapped(gi, shape, periodic) {
                None => unfilled,
                Some(_) if !corners && beyond > 1 => unfilled,
                Some(inside) if beyond == 0 => f(inside) + round,
                // a ghost cell, a copy of a part as it was when sent
                Some(inside) => f(inside),
            };
            assert_eq!(
                g.get(gi),
                Some(expect),
                "rank {}: round {round}, cell {gi:?} (width {width:?}, periodic {periodic:?})",
                comm.rank()
            );
            assert_eq!(view[rel.as_slice()], expect);
        }
    }
    // back into the array: f + 1 everywhere
    ok(comm, "store", g.store(a));
    let back = ok(comm, "to_vec", a.to_vec());
    ok(comm, "barrier", comm.barrier());
    for (k, &v) in back.iter().enumerate() {
        assert_eq!(v, f(multi_index(&shape, k)) + 1);
    }
    ok(comm, "barrier", comm.barrier());
}

fn ghosted_cells<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let a = ok(
        comm,
        "with_grid",
        DistArray::<i64, C, 2>::with_grid(comm.clone(), grid_2d(p), [7, 9]),
    );
    let f2 = |[i, j]: [usize; 2]| (i * 100 + j) as i64;
    check_cells(comm, &a, f2, [2, 1], [true, false], true);
    check_cells(comm, &a, f2, [1, 3], [false, true], true);
    check_cells(comm, &a, f2, [2, 2], [false, false], false);
    // rows padded to whole lines (71 + 2 x 1 i64 -> 80), the part's first
    // element on a line boundary
    let wide = ok(
        comm,
        "wide",
        DistArray::<i64, C, 2>::with_grid(comm.clone(), [p, 1], [2 * p + 1, 71]),
    );
    check_cells(comm, &wide, f2, [1, 1], [true, true], true);
    // 3-D split over the first dimension: with more ranks than planes
    // some parts are empty; widths reach past a neighbour's part
    let b = ok(
        comm,
        "new",
        DistArray::<i64, C, 3>::new(comm.clone(), [3, 3, 5]),
    );
    let f3 = |[i, j, k]: [usize; 3]| (i * 10_000 + j * 100 + k) as i64;
    check_cells(comm, &b, f3, [2, 1, 2], [true, true, false], true);
    check_cells(comm, &b, f3, [1, 1, 1], [false, false, true], false);
    let c = ok(comm, "new", DistArray::<i64, C, 1>::new(comm.clone(), [11]));
    check_cells(comm, &c, |[i]| i as i64 * 3, [3], [true], true);
}

/// The serial stencil over the whole array (periodic where asked, zero
/// past the other edges), at the points of `within`.
fn serial<const N: usize>(
    st: &Stencil<f64, N>,
    f: &impl Fn([usize; N]) -> f64,
    shape: [usize; N],
    periodic: [bool; N],
    within: &[Range<usize>; N],
) -> Vec<f64> {
    let w = st.reach();
    let ext: [usize; N] = std::array::from_fn(|d| shape[d] + 2 * w[d]);
    let total: usize = ext.iter().product();
    let mut input = vec![0.0; total];
    for (k, v) in input.iter_mut().enumerate() {
        let rel = multi_index(&ext, k);
        let gi: [isize; N] = std::array::from_fn(|d| rel[d] as isize - w[d] as isize);
        if let Some(at) = wrapped(gi, shape, periodic) {
            *v = f(at);
        }
    }
    let region: [Range<usize>; N] =
        std::array::from_fn(|d| within[d].start + w[d]..within[d].end + w[d]);
    let mut out = vec![0.0; within.iter().map(|r| r.len()).product()];
    stencil::apply(st, &input, ext, region, &mut out, false).expect("serial stencil");
    out
}

/// Stencils of radius 1..3, star and box, applied to ghosted arrays give
/// the serial result bit for bit at every point, on any rank count and
/// partition; `apply_within` leaves the other points alone; `apply_dot`
/// returns the dot product of the input with the result.
#[allow(clippy::single_range_in_vec_init)] // a 1-D region is `[a..b]`
fn ghosted_stencils<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let shape = [19, 23];
    let f = |[i, j]: [usize; 2]| ((i * 7919 + j * 104_729) % 1009) as f64 * 0.013 - 6.0;
    for (layout, a) in [
        (
            "grid",
            DistArray::<f64, C, 2>::with_grid(comm.clone(), grid_2d(p), shape),
        ),
        ("rows", DistArray::<f64, C, 2>::new(comm.clone(), shape)),
    ] {
        let a = ok(comm, layout, a);
        ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(f)));
        for r in 1..=3usize {
            for (kind, st) in [
                (
                    "star",
                    Stencil::<f64, 2>::star(r, |o| 0.25 + (o[0] * 3 - o[1]) as f64 / 7.0).unwrap(),
                ),
                (
                    "box",
                    Stencil::<f64, 2>::cube(r, |o| 1.0 / (10.0 + (o[0] + 2 * o[1]) as f64))
                        .unwrap(),
                ),
            ] {
                let periodic = [r == 2, r != 1];
                let mut g = ok(comm, "Ghosted::new", Ghosted::new(&a, [r, r], periodic));
                ok(comm, "update_ghosts", g.update_ghosts());
                let out = ok(
                    comm,
                    "out",
                    DistArray::<f64, C, 2>::with_partitioning(
                        comm.clone(),
                        a.partitioning().clone(),
                    ),
                );
                ok(comm, "apply", g.apply(&st, &out, false));
                // apply is local: a barrier before others read the results
                ok(comm, "barrier", out.barrier());
                let all = shape.map(|n| 0..n);
                let want = serial(&st, &f, shape, periodic, &all);
                let got = ok(comm, "to_vec", out.to_vec());
                // nobody changes `out` before every rank has read it
                ok(comm, "barrier", comm.barrier());
                assert_eq!(
                    got,
                    want,
                    "rank {}: {layout} {kind} radius {r}",
                    comm.rank()
                );
                // accumulate at the points r away from the edges only
                let within: [Range<usize>; 2] = shape.map(|n| r..n - r);
                ok(
                    comm,
                    "apply_within",
                    g.apply_within(&st, &out, within.clone(), true),
                );
                ok(comm, "barrier", out.barrier());
                let inner = serial(&st, &f, shape, periodic, &within);
                let got = ok(comm, "to_vec", out.to_vec());
                ok(comm, "barrier", comm.barrier());
                let wshape = within.clone().map(|x| x.len());
                for (k, &v) in got.iter().enumerate() {
                    let [i, j] = multi_index(&shape, k);
                    let e = if within[0].contains(&i) && within[1].contains(&j) {
                        let wk = linear_offset(&wshape, &[i - r, j - r]);
                        want[k] + inner[wk]
                    } else {
                        want[k]
                    };
                    assert_eq!(
                        v,
                        e,
                        "rank {}: {layout} {kind} r {r} at {i},{j}",
                        comm.rank()
                    );
                }
                // the fused dot product: u · (S u)
                let d = ok(comm, "apply_dot", g.apply_dot(&st, &out));
                let reference: f64 = (0..want.len())
                    .map(|k| f(multi_index(&shape, k)) * want[k])
                    .sum();
                assert!(
                    (d - reference).abs() <= 1e-12 * reference.abs().max(1.0),
                    "{d} vs {reference}"
                );
                // the stencil and a map of the part in one pass: the
                // serial bits at the inner points, every value of the part
                // mapped once, the ghost cells left alone
                let mut h = ok(comm, "Ghosted::new", Ghosted::new(&a, [r, r], periodic));
                ok(comm, "update_ghosts", h.update_ghosts());
                let ghosts_before = h.view().to_owned();
                let fused = ok(comm, "fused out", a.similar::<f64>());
                ok(
                    comm,
                    "apply_within_map",
                    h.apply_within_map(&st, &fused, within.clone(), true, |v| 2.0 * v - 1.0),
                );
                let mapped = ok(comm, "mapped", a.similar::<f64>());
                ok(comm, "store", h.store(&mapped));
                let got = ok(comm, "to_vec", fused.to_vec());
                let got_mapped = ok(comm, "to_vec", mapped.to_vec());
                ok(comm, "barrier", comm.barrier());
                for (k, &v) in got.iter().enumerate() {
                    let [i, j] = multi_index(&shape, k);
                    let e = if within[0].contains(&i) && within[1].contains(&j) {
                        inner[linear_offset(&wshape, &[i - r, j - r])]
                    } else {
                        0.0
                    };
                    let label = format!(
                        "rank {}: fused {layout} {kind} r {r} at {i},{j}",
                        comm.rank()
                    );
                    assert_eq!(v, e, "{label}");
                    assert_eq!(got_mapped[k], 2.0 * f([i, j]) - 1.0, "{label}");
                }
                let w = [r, r];
                let own = h.own_range();
                for ((i, j), &v) in h.view().indexed_iter() {
                    let at = [i, j];
                    let inside = (0..2).all(|d| at[d] >= w[d] && at[d] < w[d] + own[d].len());
                    if !inside {
                        assert_eq!(
                            v,
                            ghosts_before[at],
                            "rank {}: ghost cell {at:?}",
                            comm.rank()
                        );
                    }
                }
            }
        }
    }
    // one dimension: the stencil and the map in one call, every value of
    // the part mapped once (the map of a 1-D part once ran once per value
    // of the box), the output the serial stencil's
    let n = 29;
    let g1 = |[i]: [usize; 1]| ((i * 7919) % 101) as f64 * 0.5 - 20.0;
    let a1 = ok(
        comm,
        "1-D",
        DistArray::<f64, C, 1>::from_fn(comm.clone(), [n], g1),
    );
    let st1 = Stencil::<f64, 1>::star(2, |o| 0.5 + o[0] as f64 / 4.0).unwrap();
    let mut h1 = ok(comm, "Ghosted::new 1-D", Ghosted::new(&a1, [2], [false]));
    ok(comm, "update_ghosts 1-D", h1.update_ghosts());
    let out1 = ok(comm, "1-D out", a1.similar::<f64>());
    ok(
        comm,
        "apply_within_map 1-D",
        h1.apply_within_map(&st1, &out1, [2..n - 2], false, |v| v + 1.0),
    );
    let mapped1 = ok(comm, "1-D mapped", a1.similar::<f64>());
    ok(comm, "store 1-D", h1.store(&mapped1));
    ok(comm, "barrier", comm.barrier());
    let got_out = ok(comm, "to_vec", out1.to_vec());
    let got_mapped = ok(comm, "to_vec", mapped1.to_vec());
    ok(comm, "barrier", comm.barrier());
    let inner = serial(&st1, &g1, [n], [false], &[2..n - 2]);
    for i in 0..n {
        let e = if (2..n - 2).contains(&i) {
            inner[i - 2]
        } else {
            0.0
        };
        assert_eq!(got_out[i], e, "rank {}: 1-D fused out at {i}", comm.rank());
        assert_eq!(
            got_mapped[i],
            g1([i]) + 1.0,
            "rank {}: 1-D mapped at {i}",
            comm.rank()
        );
    }
    ok(comm, "barrier", comm.barrier());
}

/// `update_ghosts_and_apply_dot` (the update overlapping the inner
/// points) on arrays whose ghost cells were never filled: the serial bits
/// at every point, for stars and boxes of radius 1 and 2, periodic or not,
/// on the 2-D grid and on row bands (thin and empty parts included); its
/// dot product close to the reference, and with exact sums the exact one
/// (as `apply_dot` and `linalg::dot`); `apply_dot_local` summed over the
/// ranks is `apply_dot`.
fn ghosted_overlapped_apply<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let shape = [7, 12];
    let f = |[i, j]: [usize; 2]| ((i * 31 + j * 17) % 23) as f64 * 0.37 - 4.0;
    for (layout, a) in [
        (
            "grid",
            DistArray::<f64, C, 2>::with_grid(comm.clone(), grid_2d(p), shape),
        ),
        ("rows", DistArray::<f64, C, 2>::new(comm.clone(), shape)),
    ] {
        let a = ok(comm, layout, a);
        ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(f)));
        for r in 1..=2usize {
            for (kind, st) in [
                ("neg_laplacian", Stencil::<f64, 2>::neg_laplacian()),
                (
                    "star",
                    Stencil::<f64, 2>::star(r, |o| 0.5 + (o[0] - 2 * o[1]) as f64 / 9.0).unwrap(),
                ),
                (
                    "box",
                    Stencil::<f64, 2>::cube(r, |o| 1.0 / (20.0 + (o[0] * 3 + o[1]) as f64))
                        .unwrap(),
                ),
            ] {
                let periodic = [r == 2, kind == "box"];
                let mut g = ok(comm, "Ghosted::new", Ghosted::new(&a, [r, r], periodic));
                let out = ok(comm, "similar", a.similar::<f64>());
                let d = ok(
                    comm,
                    "update_ghosts_and_apply_dot",
                    g.update_ghosts_and_apply_dot(&st, &out),
                );
                ok(comm, "barrier", out.barrier());
                let all = shape.map(|n| 0..n);
                let want = serial(&st, &f, shape, periodic, &all);
                let got = ok(comm, "to_vec", out.to_vec());
                ok(comm, "barrier", comm.barrier());
                assert_eq!(
                    got,
                    want,
                    "rank {}: {layout} {kind} radius {r}",
                    comm.rank()
                );
                let reference: f64 = (0..want.len())
                    .map(|k| f(multi_index(&shape, k)) * want[k])
                    .sum();
                assert!(
                    (d - reference).abs() <= 1e-12 * reference.abs().max(1.0),
                    "{d} vs {reference}"
                );
                // the ordered dot of apply_dot is its local parts summed
                let mine = ok(comm, "apply_dot_local", g.apply_dot_local(&st, &out));
                let summed = ok(comm, "sum", linalg::sum_over_ranks(comm, Ok(mine)));
                let whole = ok(comm, "apply_dot", g.apply_dot(&st, &out));
                assert_eq!(summed, whole, "{layout} {kind} radius {r}");
                // exact sums: both forms give linalg::dot's exact bits
                let exact =
                    ok(comm, "similar", a.similar::<f64>()).with_summation(Summation::Exact);
                let want_exact = {
                    ok(comm, "apply", g.apply(&st, &exact, false));
                    ok(comm, "barrier", exact.barrier());
                    ok(comm, "dot", linalg::dot(&a, &exact))
                };
                let e1 = ok(comm, "apply_dot exact", g.apply_dot(&st, &exact));
                let e2 = ok(
                    comm,
                    "update_ghosts_and_apply_dot exact",
                    g.update_ghosts_and_apply_dot(&st, &exact),
                );
                assert_eq!(e1, want_exact, "{layout} {kind} radius {r}");
                assert_eq!(e2, want_exact, "{layout} {kind} radius {r}");
            }
        }
    }
    ok(comm, "barrier", comm.barrier());
}

/// The exact dot product of `apply_dot` on long rows, which go to the
/// exact sum a few at a time: the bits of `linalg::dot`.
fn exact_dot_of_long_rows<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let shape = [2 * p + 5, 1500];
    let f =
        |[i, j]: [usize; 2]| ((i * 131 + j * 7) % 61) as f64 * 1e-3 - 0.02 + (j % 3) as f64 * 1e9;
    let a = ok(
        comm,
        "new",
        DistArray::<f64, C, 2>::new(comm.clone(), shape),
    );
    ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(f)));
    let mut g = ok(
        comm,
        "Ghosted::new_faces",
        Ghosted::new_faces(&a, [1, 1], [false, true]),
    );
    ok(comm, "update_ghosts", g.update_ghosts());
    let out = ok(comm, "similar", a.similar::<f64>()).with_summation(Summation::Exact);
    let st = Stencil::<f64, 2>::neg_laplacian();
    let d = ok(comm, "apply_dot", g.apply_dot(&st, &out));
    ok(comm, "barrier", out.barrier());
    assert_eq!(d, ok(comm, "dot", linalg::dot(&a, &out)));
    ok(comm, "barrier", comm.barrier());
}

/// The vector operations between a ghosted array and plain arrays
/// partitioned alike — `axpby`, `cg_update`, `zip_rows` — give the bits of
/// the same operations on plain arrays (`linalg`), touch no ghost cell,
/// and refuse other partitions or a repeated array on every rank.
fn ghosted_vector_ops<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    // more ranks than rows: row bands leave some parts empty
    let shape = [5, 11];
    let val = |seed: usize| {
        move |[i, j]: [usize; 2]| {
            ((i * 13 + j * 7 + seed * 5) % 17) as f64 * 0.61 - 3.0 + seed as f64
        }
    };
    for (layout, a) in [
        (
            "grid",
            DistArray::<f64, C, 2>::with_grid(comm.clone(), grid_2d(p), shape),
        ),
        ("rows", DistArray::<f64, C, 2>::new(comm.clone(), shape)),
    ] {
        let a = ok(comm, layout, a);
        let alike = |seed: usize| {
            let b = ok(comm, "similar", a.similar::<f64>());
            ok(
                comm,
                "fill",
                b.with_local_mut(|mut l| l.fill_with(val(seed))),
            );
            b
        };
        ok(comm, "fill", a.with_local_mut(|mut l| l.fill_with(val(0))));
        let interior_bits = |g: &Ghosted<f64, C, 2>| {
            let out = ok(comm, "similar", a.similar::<f64>());
            ok(comm, "store", g.store(&out));
            let v = ok(comm, "to_vec", out.to_vec());
            ok(comm, "barrier", comm.barrier());
            v
        };
        // the ghost cells stay zero (never updated)
        let ghosts_zero = |g: &Ghosted<f64, C, 2>| {
            let w = g.width();
            let own = g.own_range();
            if own.iter().any(|r| r.is_empty()) {
                return;
            }
            for ((i, j), &v) in g.view().indexed_iter() {
                let at = [i, j];
                let inside = (0..2).all(|d| at[d] >= w[d] && at[d] - w[d] < own[d].len());
                if !inside {
                    assert_eq!(v, 0.0, "ghost cell {at:?} written");
                }
            }
        };

        // axpby: u = 1.5 x - 0.25 u
        let mut g = ok(
            comm,
            "Ghosted::new",
            Ghosted::new(&a, [1, 2], [false, false]),
        );
        let x = alike(1);
        ok(comm, "axpby", g.axpby(1.5, &x, -0.25));
        let (mut plain, x2) = (alike(0), alike(1));
        ok(
            comm,
            "linalg::axpby",
            linalg::axpby(1.5, &x2, -0.25, &mut plain),
        );
        // local writes: a barrier before others read them
        ok(comm, "barrier", plain.barrier());
        let want = ok(comm, "to_vec", plain.to_vec());
        assert_eq!(interior_bits(&g), want, "axpby, {layout}");
        ghosts_zero(&g);

        // cg_update with the ghosted array as p, ordered and exact sums
        for mode in [Summation::Ordered, Summation::Exact] {
            let g = ok(
                comm,
                "Ghosted::new",
                Ghosted::new(&a, [1, 1], [true, false]),
            );
            let q = alike(2);
            let (mut x, mut r) = (alike(3).with_summation(mode), alike(4).with_summation(mode));
            let rr = ok(comm, "cg_update", g.cg_update(0.75, &q, &mut x, &mut r));
            let (mut x2, mut r2) = (alike(3).with_summation(mode), alike(4).with_summation(mode));
            let rr2 = ok(
                comm,
                "linalg::cg_update",
                linalg::cg_update(0.75, &a, &q, &mut x2, &mut r2),
            );
            for (name, got, want) in [("x", &x, &x2), ("r", &r, &r2)] {
                let (got, want) = (
                    ok(comm, "to_vec", got.to_vec()),
                    ok(comm, "to_vec", want.to_vec()),
                );
                assert_eq!(got, want, "cg_update: {name}, {layout}, {mode:?}");
            }
            if mode == Summation::Exact {
                assert_eq!(rr, rr2, "cg_update: exact r · r, {layout}");
            } else {
                // summed row by row: close to the flat sum, not its bits
                assert!((rr - rr2).abs() <= 1e-12 * rr2.abs(), "{rr} vs {rr2}");
            }
            ok(comm, "barrier", comm.barrier());
        }

        // zip_rows: v = 2 u, w += u, u = -u; no array; the local sums
        let mut g = ok(
            comm,
            "Ghosted::new",
            Ghosted::new_faces(&a, [2, 1], [true, true]),
        );
        let (v, w) = (alike(5), alike(6));
        let mut count = 0usize;
        ok(
            comm,
            "zip_rows",
            g.zip_rows([&v, &w], |lu, [lv, lw]| {
                assert!(lu.len() == lv.len() && lu.len() == lw.len());
                for k in 0..lu.len() {
                    lv[k] = 2.0 * lu[k];
                    lw[k] += lu[k];
                    lu[k] = -lu[k];
                }
                count += lu.len();
            }),
        );
        let part: usize = g.own_range().iter().map(|r| r.len()).product();
        assert_eq!(count, part);
        ok(comm, "barrier", v.barrier());
        ok(comm, "barrier", w.barrier());
        let mut rows_seen = 0usize;
        ok(
            comm,
            "zip_rows, no array",
            g.zip_rows([], |_, []| rows_seen += 1),
        );
        let own = g.own_range();
        assert_eq!(rows_seen, if own[1].is_empty() { 0 } else { own[0].len() });
        let (vv, ww) = (
            ok(comm, "to_vec", v.to_vec()),
            ok(comm, "to_vec", w.to_vec()),
        );
        let u = interior_bits(&g);
        for k in 0..shape[0] * shape[1] {
            let at = multi_index(&shape, k);
            let u0 = val(0)(at);
            assert_eq!(vv[k], 2.0 * u0);
            assert_eq!(ww[k], val(6)(at) + u0);
            assert_eq!(u[k], -u0);
        }
        ghosts_zero(&g);
        expect_err(
            comm,
            "zip_rows, an array twice",
            g.zip_rows([&v, &v], |_, _| {}),
            |e| matches!(e, Error::InvalidArgument(_)),
        );
        ok(comm, "barrier", comm.barrier());
    }
}

/// Bad input is refused on every rank, and the array stays usable.
fn ghosted_bad_input<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let a = ok(
        comm,
        "with_grid",
        DistArray::<f64, C, 2>::with_grid(comm.clone(), grid_2d(p), [8, 6]),
    );
    let mut g = ok(
        comm,
        "Ghosted::new",
        Ghosted::new(&a, [1, 1], [false, false]),
    );
    // another partition (explicit part sizes: all rows on rank 0)
    let mut rows = vec![0usize; p];
    rows[0] = 8;
    let other = ok(
        comm,
        "with_part_sizes",
        DistArray::<f64, C, 2>::with_part_sizes(comm.clone(), [rows, vec![6]]),
    );
    if p > 1 {
        expect_err(comm, "store to another partition", g.store(&other), |e| {
            matches!(e, Error::InvalidPartition(_))
        });
        expect_err(comm, "load from another partition", g.load(&other), |e| {
            matches!(e, Error::InvalidPartition(_))
        });
    }
    if p > 1 {
        let mut x = ok(comm, "similar", a.similar::<f64>());
        let st = Stencil::<f64, 2>::neg_laplacian();
        expect_err(
            comm,
            "axpby of another partition",
            g.axpby(1.0, &other, 1.0),
            |e| matches!(e, Error::InvalidPartition(_)),
        );
        let mut other_r = ok(comm, "similar", other.similar::<f64>());
        expect_err(
            comm,
            "cg_update of another partition",
            g.cg_update(1.0, &a, &mut x, &mut other_r),
            |e| matches!(e, Error::InvalidPartition(_)),
        );
        expect_err(
            comm,
            "zip_rows of another partition",
            g.zip_rows([&other], |_, _| {}),
            |e| matches!(e, Error::InvalidPartition(_)),
        );
        // refused, and the update ran on every rank (nobody waits)
        expect_err(
            comm,
            "update_ghosts_and_apply_dot into another partition",
            g.update_ghosts_and_apply_dot(&st, &other),
            |e| matches!(e, Error::InvalidPartition(_)),
        );
        expect_err(
            comm,
            "apply_dot_local into another partition",
            g.apply_dot_local(&st, &other),
            |e| matches!(e, Error::InvalidPartition(_)),
        );
    }
    // a stencil that reaches further than the ghosts
    let wide = Stencil::<f64, 2>::star(2, |_| 1.0).unwrap();
    expect_err(
        comm,
        "reach beyond the width",
        g.apply(&wide, &a, false),
        |e| matches!(e, Error::InvalidArgument(_)),
    );
    // a box past the array
    let st = Stencil::<f64, 2>::neg_laplacian();
    expect_err(
        comm,
        "box past the array",
        g.apply_within(&st, &a, [0..9, 0..6], false),
        |e| matches!(e, Error::InvalidArgument(_)),
    );
    // a periodic width beyond the extent
    expect_err(
        comm,
        "too wide",
        Ghosted::new(&a, [9, 0], [true, false]),
        |e| matches!(e, Error::InvalidArgument(_)),
    );
    expect_err(
        comm,
        "overlapped: reach beyond the width",
        g.update_ghosts_and_apply_dot(&wide, &a),
        |e| matches!(e, Error::InvalidArgument(_)),
    );
    // still usable
    g.fill_with(|[i, j]| (i + j) as f64);
    ok(comm, "update_ghosts", g.update_ghosts());
    ok(comm, "apply", g.apply(&st, &a, false));
    ok(
        comm,
        "update_ghosts_and_apply_dot",
        g.update_ghosts_and_apply_dot(&st, &a),
    );
    ok(comm, "barrier", comm.barrier());
}
