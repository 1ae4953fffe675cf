//! The 2-D Poisson conjugate-gradient driver, generic over the backend:
//! shared by the threaded example (`examples/poisson_cg.rs`) and the MPI /
//! Lamellar ones.
//!
//! The unknowns of an `n x n` grid are a 2-D `DistArray` tiled over a 2-D
//! process grid (as square as the number of ranks allows, rows split
//! first). The 5-point
//! operator reads one ghost layer around a rank's tile through a [`Halo`]
//! (planned once; each rank sends each neighbour the face it needs, one
//! message each, no barrier: [`Halo::start_update`]; one `get` per
//! neighbour where the backend has no messages), computes the rows that
//! need no ghost row while the faces travel, and applies the library's
//! branch-free stencil kernel, which
//! also returns `p · A p`. CG then needs only two more passes per
//! iteration: the fused update `x += alpha p, r -= alpha q` that returns
//! `r · r` (`linalg::cg_update`) and `p = r + beta p` (`linalg::axpby`).
//! Every reduction runs in a fixed order, so a run's iterates are bitwise
//! the same every time. With `--exact` every dot product and norm is the
//! correctly rounded exact sum (`Summation::Exact`), so the residual
//! history and the solution have the **same bits on any number of ranks**,
//! on the 2-D tiles and on the row bands alike, and on every backend; the
//! rows that need no ghost are then not computed ahead of the ghosts
//! (`--exact` implies `--no-overlap`: the overlapped apply adds a tile
//! edge's west / east ghost term last, which rounds those points
//! differently for different tilings).
//!
//! `--compare` also solves the same system with the previous layout (the
//! grid as a 1-D array of whole rows, ghost rows through a `GhostedBlock`)
//! in the same run and prints both times per iteration.

use std::time::Instant;

use distarray::exact_sum::{self, ExactParts, ExactSum};
use distarray::kernels::{self, Block2, Stencil5};
use distarray::linalg::{axpby, cg_update, dot, norm2, sum_over_ranks};
use distarray::partition::distribute;
use distarray::{DistArray, GhostedBlock, Halo, OneSidedComm, Result, Summation};

/// Options of the Poisson driver.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Grid size n (n x n unknowns).
    pub n: usize,
    /// Relative residual tolerance.
    pub tol: f64,
    /// Ranks (threaded backend only).
    pub ranks: usize,
    /// Also solve with the row-band layout and compare (same run).
    pub compare: bool,
    /// MPI example: also run the plain-MPI baseline (`--no-baseline` skips
    /// it, e.g. under a profiler that should see only distarray's calls).
    #[allow(dead_code)]
    pub baseline: bool,
    /// Compute the rows that need no ghost row while the faces travel
    /// (`--no-overlap`: update the ghosts first, then the whole tile).
    pub overlap: bool,
    /// Chronopoulos–Gear CG (`--single-reduction`): one allreduce per
    /// iteration instead of two (the same iterates in exact arithmetic).
    pub single_reduction: bool,
    /// Exact dot products and norms (`--exact`): the same bits on any
    /// number of ranks and either layout; implies no overlap.
    pub exact: bool,
}

impl Opts {
    /// Parses `--n N --tol T --ranks P` (all optional).
    pub fn from_args() -> Opts {
        let mut o = Opts {
            n: 64,
            tol: 1e-8,
            ranks: 2,
            compare: false,
            baseline: true,
            overlap: true,
            single_reduction: false,
            exact: false,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || {
                it.next()
                    .unwrap_or_else(|| panic!("{a} needs a value"))
                    .clone()
            };
            match a.as_str() {
                "--n" => o.n = val().parse().expect("--n takes a number"),
                "--tol" => o.tol = val().parse().expect("--tol takes a number"),
                "--ranks" | "-p" => o.ranks = val().parse().expect("--ranks takes a number"),
                "--compare" => o.compare = true,
                "--no-baseline" => o.baseline = false,
                "--no-overlap" => o.overlap = false,
                "--single-reduction" => o.single_reduction = true,
                "--exact" => o.exact = true,
                "--help" | "-h" => {
                    println!(
                        "options: --n N (64) --tol T (1e-8) --ranks P (2, threaded only) \
                         --compare (also the row-band layout, same run) \
                         --no-baseline (MPI only: skip the plain-MPI baseline) \
                         --no-overlap (ghosts first, then the whole tile) \
                         --single-reduction (Chronopoulos-Gear CG: one allreduce per iteration) \
                         --exact (exact dot products: the same bits on any number of ranks)"
                    );
                    std::process::exit(0);
                }
                other => panic!("unknown option {other} (try --help)"),
            }
        }
        o
    }
}

/// The manufactured solution u*(i, j) on the grid.
pub fn exact(n: usize, i: usize, j: usize) -> f64 {
    let h = 1.0 / (n + 1) as f64;
    let (x, y) = ((i + 1) as f64 * h, (j + 1) as f64 * h);
    (std::f64::consts::PI * x).sin() * (2.0 * std::f64::consts::PI * y).sin() + x * y
}

/// A distributed 5-point operator on arrays of dimension `N`: `y = A u`,
/// returning `u · y` summed over the ranks. Collective.
trait Operator<C: OneSidedComm, const N: usize> {
    /// `y = A u`, returning this rank's part of `u · y` (no reduction).
    fn apply_local(
        &mut self,
        u: &DistArray<f64, C, N>,
        y: &mut DistArray<f64, C, N>,
    ) -> Result<f64>;

    /// `y = A u`, returning `u · y` summed over the ranks (one allreduce,
    /// whose vote also carries an error of any rank's apply).
    fn apply_dot(&mut self, u: &DistArray<f64, C, N>, y: &mut DistArray<f64, C, N>) -> Result<f64> {
        let local = self.apply_local(u, y);
        if u.summation() == Summation::Exact {
            // the kernel's local dot is in a fixed order: take it exactly
            let [uy] = exact_sum::allreduce(u.comm(), local.and_then(|_| exact_dots(u, &[y])))?;
            return Ok(uy.to_f64());
        }
        sum_over_ranks(u.comm(), local)
    }
}

/// This rank's exact parts of `u · v` for each `v` (no communication).
fn exact_dots<C: OneSidedComm, const N: usize, const K: usize>(
    u: &DistArray<f64, C, N>,
    vs: &[&DistArray<f64, C, N>; K],
) -> Result<[ExactSum; K]> {
    let mut out = [ExactSum::new(); K];
    for (acc, v) in out.iter_mut().zip(vs) {
        let mut parts = ExactParts::new();
        if std::ptr::eq(u, *v) {
            u.with_local(|l| parts.add_dot(l.as_slice(), l.as_slice()))?;
        } else {
            u.try_with_local(|lu| v.with_local(|lv| parts.add_dot(lu.as_slice(), lv.as_slice())))?;
        }
        *acc = parts.re;
    }
    Ok(out)
}

/// The 2-D layout: a tile per rank, one ghost layer from a [`Halo`].
struct GridLaplacian<C: OneSidedComm> {
    n: usize,
    overlap: bool,
    halo: Halo<f64, C, 2>,
    west: Vec<f64>,
    east: Vec<f64>,
}

impl<C: OneSidedComm> GridLaplacian<C> {
    fn new(u: &DistArray<f64, C, 2>, n: usize) -> Result<Self> {
        // Dirichlet boundaries: nothing past the grid's edge (not periodic)
        let halo = Halo::new_faces(u, [1, 1], [false, false])?;
        Ok(GridLaplacian {
            n,
            overlap: true,
            halo,
            west: Vec::new(),
            east: Vec::new(),
        })
    }
}

impl<C: OneSidedComm> Operator<C, 2> for GridLaplacian<C> {
    /// This rank's tile of `y = A u` and its part of `u · y`, computed
    /// while the ghost cells travel: the neighbours' faces are sent (one
    /// message each, no barrier: every rank sends its own current values);
    /// meanwhile the rows that need no ghost row are computed without their
    /// west / east ghost columns; then, once the faces are in, those
    /// columns' terms and the first and last rows.
    fn apply_local(
        &mut self,
        u: &DistArray<f64, C, 2>,
        y: &mut DistArray<f64, C, 2>,
    ) -> Result<f64> {
        let n = self.n;
        let [rows_r, cols_r] = self.halo.own_range();
        let (rows, cols) = (rows_r.len(), cols_r.len());
        if rows == 0 || cols == 0 {
            return self.halo.update_ghosts(u).map(|_| 0.0);
        }
        let st = Stencil5::laplacian();
        let GridLaplacian {
            halo,
            west,
            east,
            overlap,
            ..
        } = self;
        let overlap = *overlap;
        // one view of u and one of y for the whole apply; the update packs
        // from the view of u
        u.try_with_local(|lu| {
            let lu = lu.as_slice();
            y.try_with_local_mut(|mut ly| {
                let ly = ly.as_mut_slice();
                let update = halo.start_update_from(u, lu)?;
                // rows 1 .. rows - 1 while the faces travel: their north and
                // south rows are the tile's own
                let mut dot = if overlap && rows > 2 {
                    let block = Block2 {
                        rows: rows - 2,
                        cols,
                        u: &lu[cols..(rows - 1) * cols],
                        north: Some(&lu[..cols]),
                        south: Some(&lu[(rows - 1) * cols..]),
                        west: None,
                        east: None,
                    };
                    kernels::stencil5_dot(&st, &block, &mut ly[cols..(rows - 1) * cols])?
                } else {
                    0.0
                };
                update.finish()?;
                let ext = halo.as_slice();
                let e1 = cols + 2;
                let north = (rows_r.start > 0).then(|| &ext[1..1 + cols]);
                let south =
                    (rows_r.end < n).then(|| &ext[(rows + 1) * e1 + 1..(rows + 1) * e1 + 1 + cols]);
                west.clear();
                east.clear();
                if cols_r.start > 0 {
                    west.extend((1..=rows).map(|i| ext[i * e1]));
                }
                if cols_r.end < n {
                    east.extend((1..=rows).map(|i| ext[i * e1 + cols + 1]));
                }
                let (west, east) = (
                    (cols_r.start > 0).then_some(&west[..]),
                    (cols_r.end < n).then_some(&east[..]),
                );
                if !overlap {
                    // the whole tile in one pass, its ghosts all in
                    let block = Block2 {
                        rows,
                        cols,
                        u: lu,
                        north,
                        south,
                        west,
                        east,
                    };
                    return kernels::stencil5_dot(&st, &block, ly);
                }
                // the west / east terms of rows 1 .. rows - 1
                for i in 1..rows.saturating_sub(1) {
                    for (ghost, coef, j) in [(west, st.west, 0), (east, st.east, cols - 1)] {
                        if let Some(g) = ghost {
                            let term = coef * g[i];
                            ly[i * cols + j] += term;
                            dot += lu[i * cols + j] * term;
                        }
                    }
                }
                // the first and the last row, whole
                let edge_rows: &[usize] = if rows == 1 { &[0] } else { &[0, rows - 1] };
                for &i in edge_rows {
                    let block = Block2 {
                        rows: 1,
                        cols,
                        u: &lu[i * cols..(i + 1) * cols],
                        north: if i == 0 {
                            north
                        } else {
                            Some(&lu[(i - 1) * cols..i * cols])
                        },
                        south: if i == rows - 1 {
                            south
                        } else {
                            Some(&lu[(i + 1) * cols..(i + 2) * cols])
                        },
                        west: west.map(|w| &w[i..i + 1]),
                        east: east.map(|e| &e[i..i + 1]),
                    };
                    dot += kernels::stencil5_dot(&st, &block, &mut ly[i * cols..(i + 1) * cols])?;
                }
                Ok(dot)
            })
        })
    }
}

/// The previous layout (for `--compare`): the grid as a 1-D array of whole
/// rows, the ghost rows through a `GhostedBlock`.
struct Laplacian {
    n: usize,
    ghosts: GhostedBlock<f64, 1>,
    above: Option<usize>,
    below: Option<usize>,
}

impl Laplacian {
    fn new<C: OneSidedComm>(u: &DistArray<f64, C, 1>, n: usize) -> Result<Self> {
        let r = u.local_indices(u.comm().rank())?[0].clone();
        let mut ghosts = GhostedBlock::new(u);
        let (first, end) = (r.start / n, r.end / n);
        let has_rows = !r.is_empty();
        let above = has_rows && first > 0;
        let below = has_rows && end < n;
        for j in 0..n {
            if above {
                ghosts.push([(first - 1) * n + j])?;
            }
            if below {
                ghosts.push([end * n + j])?;
            }
        }
        ghosts.sync(u)?;
        let above = above.then(|| {
            ghosts
                .global_to_local([(first - 1) * n])
                .expect("ghost row above")
        });
        let below = below.then(|| ghosts.global_to_local([end * n]).expect("ghost row below"));
        Ok(Laplacian {
            n,
            ghosts,
            above,
            below,
        })
    }
}

impl<C: OneSidedComm> Operator<C, 1> for Laplacian {
    fn apply_local(
        &mut self,
        u: &DistArray<f64, C, 1>,
        y: &mut DistArray<f64, C, 1>,
    ) -> Result<f64> {
        u.sync()?; // neighbours' updates of u are complete
        self.ghosts.sync(u)?;
        let n = self.n;
        let vals = self.ghosts.values();
        let above = self.above.map(|s| &vals[s..s + n]);
        let below = self.below.map(|s| &vals[s..s + n]);
        let local = u.with_local(|lu| {
            let lu = lu.as_slice();
            let block = Block2::rows(lu.len() / n.max(1), n, lu, above, below);
            y.with_local_mut(|mut ly| {
                kernels::stencil5_dot(&Stencil5::laplacian(), &block, ly.as_mut_slice())
            })?
        });
        local.and_then(|r| r)
    }
}

/// Serial CG on the same system, for checking small grids.
fn serial_cg(n: usize, b: &[f64], tol: f64) -> Vec<f64> {
    let apply = |u: &[f64], y: &mut [f64]| {
        kernels::stencil5(
            &Stencil5::laplacian(),
            &Block2::rows(n, n, u, None, None),
            y,
        )
        .expect("n x n grid")
    };
    let d = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut x = vec![0.0; b.len()];
    let mut r = b.to_vec();
    let mut p = r.clone();
    let mut ap = vec![0.0; b.len()];
    let mut rr = d(&r, &r);
    let bn = rr.sqrt();
    for _ in 0..10 * b.len() {
        if rr.sqrt() <= tol * bn {
            break;
        }
        apply(&p, &mut ap);
        let alpha = rr / d(&p, &ap);
        x.iter_mut().zip(&p).for_each(|(x, p)| *x += alpha * p);
        r.iter_mut().zip(&ap).for_each(|(r, a)| *r -= alpha * a);
        let rr2 = d(&r, &r);
        p.iter_mut()
            .zip(&r)
            .for_each(|(p, r)| *p = r + rr2 / rr * *p);
        rr = rr2;
    }
    x
}

/// What a CG run returns: the solution, the iterations, `r · r` after each
/// iteration (the first entry before the first), the seconds.
type Solved<C, const N: usize> = (DistArray<f64, C, N>, usize, Vec<f64>, f64);

/// CG from x = 0 on `A x = b`.
fn cg<C: OneSidedComm, const N: usize>(
    op: &mut impl Operator<C, N>,
    b: &DistArray<f64, C, N>,
    tol: f64,
    max_iters: usize,
) -> Result<Solved<C, N>> {
    let t = Instant::now();
    let mut x = b.similar::<f64>()?;
    let mut r = b.similar::<f64>()?;
    let mut pd = b.similar::<f64>()?;
    let mut ap = b.similar::<f64>()?;
    r.assign(b)?;
    pd.assign(b)?;
    let bnorm = norm2(b)?;
    let mut rr = dot(&r, &r)?;
    let mut history = vec![rr];
    let mut iters = 0;
    while rr.sqrt() > tol * bnorm && iters < max_iters {
        // ap = A p and p . ap in one pass
        let alpha = rr / op.apply_dot(&pd, &mut ap)?;
        // x += alpha p, r -= alpha ap and r . r in one pass
        let rr2 = cg_update(alpha, &pd, &ap, &mut x, &mut r)?;
        axpby(1.0, &r, rr2 / rr, &mut pd)?;
        rr = rr2;
        history.push(rr);
        iters += 1;
    }
    Ok((x, iters, history, t.elapsed().as_secs_f64()))
}

/// Chronopoulos–Gear CG from x = 0 on `A x = b` (the same iterates as
/// [`cg`] in exact arithmetic): per iteration one fused pass updating `p`,
/// `s = A p`, `x` and `r` and computing `r · r`, one apply `w = A r`, and
/// **one** allreduce of `(r · r, w · r)` where CG needs two — on a network,
/// half the reductions' latency. With exact sums the two are exact parts
/// merged in the same single allreduce.
fn cg_single_reduction<C: OneSidedComm, const N: usize>(
    op: &mut impl Operator<C, N>,
    b: &DistArray<f64, C, N>,
    tol: f64,
    max_iters: usize,
) -> Result<Solved<C, N>> {
    let t = Instant::now();
    let x = b.similar::<f64>()?;
    let mut r = b.similar::<f64>()?;
    let p = b.similar::<f64>()?;
    let s = b.similar::<f64>()?;
    let mut w = b.similar::<f64>()?;
    r.assign(b)?;
    let bnorm = norm2(b)?;
    let exact = b.summation() == Summation::Exact;
    // the two sums of an iteration (r · r, w · r) in one allreduce (with
    // the vote): fixed-order local sums, or exact parts
    let reduce2 =
        |comm: &C, r: &DistArray<f64, C, N>, w: &DistArray<f64, C, N>, local: Result<[f64; 2]>| {
            if exact {
                let parts = local.and_then(|_| exact_dots(r, &[r, w]));
                let [rr, wr] = exact_sum::allreduce(comm, parts)?;
                return Ok([rr.to_f64(), wr.to_f64()]);
            }
            distarray::collective::allreduce_vote(comm, local, |a, b| [a[0] + b[0], a[1] + b[1]])
        };
    let comm = b.comm().clone();
    let rr_local =
        |r: &DistArray<f64, C, N>| r.with_local(|l| kernels::dot(l.as_slice(), l.as_slice()));
    let first = rr_local(&r).and_then(|rr| Ok([rr, op.apply_local(&r, &mut w)?]));
    let [mut gamma, delta] = reduce2(&comm, &r, &w, first)?;
    let mut history = vec![gamma];
    let mut alpha = gamma / delta;
    let mut beta = 0.0;
    let mut iters = 0;
    while gamma.sqrt() > tol * bnorm && iters < max_iters {
        // p = r + beta p, s = w + beta s, x += alpha p, r -= alpha s, r . r
        let rr = r.try_with_local_mut(|mut lr| {
            let lr = lr.as_mut_slice();
            w.try_with_local(|lw| {
                let lw = lw.as_slice();
                p.try_with_local_mut(|mut lp| {
                    let lp = lp.as_mut_slice();
                    s.try_with_local_mut(|mut ls| {
                        let ls = ls.as_mut_slice();
                        x.with_local_mut(|mut lx| {
                            let lx = lx.as_mut_slice();
                            let mut rr = 0.0;
                            for i in 0..lr.len() {
                                lp[i] = lr[i] + beta * lp[i];
                                ls[i] = lw[i] + beta * ls[i];
                                lx[i] += alpha * lp[i];
                                lr[i] -= alpha * ls[i];
                                rr += lr[i] * lr[i];
                            }
                            rr
                        })
                    })
                })
            })
        });
        let local = rr.and_then(|rr| Ok([rr, op.apply_local(&r, &mut w)?]));
        let [gamma_new, delta] = reduce2(&comm, &r, &w, local)?;
        beta = gamma_new / gamma;
        alpha = gamma_new / (delta - beta * gamma_new / alpha);
        gamma = gamma_new;
        history.push(gamma);
        iters += 1;
    }
    Ok((x, iters, history, t.elapsed().as_secs_f64()))
}

/// A process grid `[p1, p2]` with `p1 * p2 = p`, as square as possible,
/// with more parts over the rows than over the columns when it cannot be
/// square: a tile's west and east ghost columns cost one `get` per row,
/// its north and south rows one `get` each.
fn grid_2d(p: usize) -> [usize; 2] {
    let p2 = (1..=p)
        .filter(|&d| d * d <= p && p / d * d == p)
        .max()
        .unwrap_or(1);
    [p / p2, p2]
}

/// The summation mode of the options.
fn mode(o: &Opts) -> Summation {
    if o.exact {
        Summation::Exact
    } else {
        Summation::Ordered
    }
}

/// The system on the 2-D tiles: the operator and `b = A u*` (so that the
/// discrete solution is exactly `u*`).
fn grid_problem<C: OneSidedComm>(
    comm: &C,
    o: &Opts,
) -> Result<(GridLaplacian<C>, DistArray<f64, C, 2>)> {
    let n = o.n;
    let ustar = DistArray::<f64, _, 2>::with_grid(comm.clone(), grid_2d(comm.size()), [n, n])?
        .with_summation(mode(o));
    ustar.with_local_mut(|mut l| l.fill_with(|[i, j]| exact(n, i, j)))?;
    let mut op = GridLaplacian::new(&ustar, n)?;
    op.overlap = o.overlap && !o.exact;
    let mut b = ustar.similar::<f64>()?;
    op.apply_dot(&ustar, &mut b)?;
    Ok((op, b))
}

/// The same system on the row bands (a 1-D array of whole grid rows).
fn band_problem<C: OneSidedComm>(comm: &C, o: &Opts) -> Result<(Laplacian, DistArray<f64, C, 1>)> {
    let n = o.n;
    let sizes: Vec<usize> = distribute(n, comm.size())
        .into_iter()
        .map(|r| r * n)
        .collect();
    let ustar1 =
        DistArray::<f64, _, 1>::with_part_sizes(comm.clone(), [sizes])?.with_summation(mode(o));
    ustar1.with_local_mut(|mut l| l.fill_with(|[k]| exact(n, k / n, k % n)))?;
    let mut op1 = Laplacian::new(&ustar1, n)?;
    let mut b1 = ustar1.similar::<f64>()?;
    op1.apply_dot(&ustar1, &mut b1)?;
    Ok((op1, b1))
}

/// The CG of the options (plain or single-reduction).
fn solve_with<C: OneSidedComm, const N: usize>(
    op: &mut impl Operator<C, N>,
    b: &DistArray<f64, C, N>,
    o: &Opts,
) -> Result<Solved<C, N>> {
    if o.single_reduction {
        cg_single_reduction(op, b, o.tol, 10 * o.n * o.n)
    } else {
        cg(op, b, o.tol, 10 * o.n * o.n)
    }
}

/// Collective: one solve on the 2-D tiles (`bands == false`) or on the row
/// bands: (`r · r` before each iteration and at the end, the solution in
/// global row-major order). For the reproducibility tests.
#[allow(dead_code)] // used by tests/examples.rs, not by the example binaries
pub fn solve<C: OneSidedComm>(comm: C, o: &Opts, bands: bool) -> Result<(Vec<f64>, Vec<f64>)> {
    let (history, x) = if bands {
        let (mut op, b) = band_problem(&comm, o)?;
        let (x, _, h, _) = solve_with(&mut op, &b, o)?;
        x.sync()?;
        (h, x.to_vec()?)
    } else {
        let (mut op, b) = grid_problem(&comm, o)?;
        let (x, _, h, _) = solve_with(&mut op, &b, o)?;
        x.sync()?;
        (h, x.to_vec()?)
    };
    Ok((history, x))
}

/// Collective: a hash of the bits of every element of `x` with its global
/// position, combined by wrapping addition (order-free: the same on any
/// number of ranks for the same values).
fn bits_hash<C: OneSidedComm>(x: &DistArray<f64, C, 2>) -> Result<u64> {
    let n = x.shape()[1] as u64;
    let local = x.with_local(|l| {
        l.iter_global().fold(0u64, |h, ([i, j], v)| {
            let mut z = (i as u64 * n + j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ v.to_bits();
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            h.wrapping_add(z ^ (z >> 29))
        })
    });
    sum_over_ranks(x.comm(), local)
}

/// Solves the system, prints a report on rank 0 and returns (iterations,
/// relative residual, max error against the discrete solution). Collective.
pub fn run<C: OneSidedComm>(comm: C, o: &Opts) -> Result<(usize, f64, f64)> {
    let (n, p, me) = (o.n, comm.size(), comm.rank());
    let grid = grid_2d(p);
    let (mut op, b) = grid_problem(&comm, o)?;
    let bnorm = norm2(&b)?;
    // --compare: the same system on the row-band layout, same run; the
    // two solves alternate, three times each, and the fastest of each is
    // kept (the machine may be shared)
    let mut bands = None;
    if o.compare {
        bands = Some(band_problem(&comm, o)?);
    }
    let rounds = if o.compare { 3 } else { 1 };
    let mut best = f64::INFINITY;
    let mut best1 = f64::INFINITY;
    let mut iters1 = 0;
    let mut solved = None;
    for _ in 0..rounds {
        if let Some((op1, b1)) = bands.as_mut() {
            let (_, it1, _, t1) = solve_with(op1, b1, o)?;
            iters1 = it1;
            best1 = best1.min(t1 / it1.max(1) as f64);
        }
        let (x, iters, history, elapsed) = solve_with(&mut op, &b, o)?;
        best = best.min(elapsed / iters.max(1) as f64);
        solved = Some((x, iters, history, elapsed));
    }
    let (x, iters, history, elapsed) = solved.expect("one solve at least");
    let rr = *history.last().expect("r · r before the first iteration");
    x.sync()?;
    let local_err = x.with_local(|l| {
        l.iter_global()
            .map(|([i, j], v)| (v - exact(n, i, j)).abs())
            .fold(0.0, f64::max)
    })?;
    let err = comm
        .allgather(&[local_err])?
        .iter()
        .map(|e| e[0])
        .fold(0.0, f64::max);
    let resid = rr.sqrt() / bnorm;
    let hash = bits_hash(&x)?;
    let per_iter = 1e3 * best;
    if me == 0 {
        println!(
            "Poisson 5-point, {n} x {n} grid on a {grid:?} process grid, {p} rank(s) of the {} backend",
            comm.backend_name()
        );
        println!(
            "  CG: {iters} iterations, relative residual {resid:?}, {elapsed:.3} s ({per_iter:.3} ms/iteration)"
        );
        println!(
            "  sums: {}; solution bits hash {hash:016x}",
            if o.exact {
                "exact (the same bits on any number of ranks)"
            } else {
                "fixed order (the same bits run to run for this rank count)"
            }
        );
        println!("  max error against the discrete solution: {err:.2e}");
        if o.compare {
            println!(
                "  row bands + GhostedBlock (previous layout), same run: {iters1} iterations, \
                 {:.3} ms/iteration; grid / bands time per iteration: {:.2}",
                1e3 * best1,
                best / best1
            );
        }
    }
    if n <= 64 {
        // compare with a serial solve of the same system
        let bfull = b.to_vec()?;
        let serial = serial_cg(n, &bfull, o.tol);
        let dist = x.to_vec()?;
        let diff = serial
            .iter()
            .zip(&dist)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        if me == 0 {
            println!("  max difference from a serial CG solve: {diff:.2e}");
        }
        if diff > 1e3 * o.tol {
            return Err(distarray::Error::InvalidArgument(format!(
                "distributed and serial solutions differ by {diff}"
            )));
        }
    }
    Ok((iters, resid, err))
}
