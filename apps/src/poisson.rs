//! The 2-D Poisson conjugate-gradient driver, generic over the backend:
//! shared by the threaded example (`examples/poisson_cg.rs`) and the MPI /
//! Lamellar ones.
//!
//! The unknowns of an `n x n` grid are 2-D `DistArray`s tiled over a 2-D
//! process grid (as square as the number of ranks allows, rows split
//! first). The vector the operator is applied to — CG's search direction
//! `p` — is a [`Ghosted`] array: each rank's tile stored inside one ghost
//! layer, which stays zero past the grid's edge (the Dirichlet boundary).
//! A CG iteration is then four library calls, each one pass over memory:
//!
//! ```text
//! p.update_ghosts()?;                                  // faces only, one message per neighbour
//! let alpha = rr / p.apply_dot(&laplacian, &q)?;       // q = A p and p · q
//! let rr_new = p.cg_update(alpha, &q, &mut x, &mut r)?; // x += alpha p, r -= alpha q, r · r
//! p.axpby(1.0, &r, rr_new / rr)?;                      // p = r + beta p
//! ```
//!
//! with no copy of `p` and no hand-written tile code (`x`, `r`, `q` stay
//! plain `DistArray`s; the ghosted operations walk `p`'s rows beside
//! theirs). By default the first two calls are one,
//! `p.update_ghosts_and_apply_dot(&laplacian, &q)`, which computes the
//! points that read no ghost cell while the faces travel, then the tile's
//! frame; `--no-overlap` makes the two calls in turn. Both give `q` the
//! same bits (every point is computed whole, by the same kernel).
//!
//! Every reduction runs in a fixed order, so a run's iterates are bitwise
//! the same every time. With `--exact` every dot product and norm is the
//! correctly rounded exact sum (`Summation::Exact`), so the residual
//! history and the solution have the **same bits on any number of ranks**,
//! on the 2-D tiles and on the row bands alike, overlapped or not, and on
//! every backend.
//!
//! `--single-reduction` runs Chronopoulos–Gear CG, which applies the
//! operator to the residual: there `r` is the ghosted array, its fused
//! update walks its rows beside the other vectors' ([`Ghosted::zip_rows`]),
//! and the ghost update and the apply run in turn (the two dot products
//! go into one allreduce).
//!
//! `--compare` also solves the same system with the previous layout (the
//! grid as a 1-D array of whole rows, ghost rows through a `GhostedBlock`,
//! the kernels' `stencil5_dot`: the code path of the module [`bands`],
//! kept as it was) in the same run and prints both times per iteration.

use std::time::Instant;

use distarray::exact_sum::{self, ExactParts, ExactSum};
use distarray::kernels::{self, Block2, Stencil5};
use distarray::linalg::{dot, norm2, sum_over_ranks};
use distarray::stencil::Stencil;
use distarray::{DistArray, Ghosted, OneSidedComm, Result, Summation};

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
    pub baseline: bool,
    /// Compute the points that read no ghost cell while the faces travel
    /// (`Ghosted::update_ghosts_and_apply_dot`; `--no-overlap`:
    /// `update_ghosts`, then `apply_dot`). The same bits either way.
    pub overlap: bool,
    /// Chronopoulos–Gear CG (`--single-reduction`): one allreduce per
    /// iteration instead of two (the same iterates in exact arithmetic).
    pub single_reduction: bool,
    /// Exact dot products and norms (`--exact`): the same bits on any
    /// number of ranks and either layout.
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

/// The negative 5-point Laplacian `4 u - (four neighbours)`: 4 at the
/// centre, -1 at the neighbours, added in the order given — that of the
/// kernels' `stencil5`, which the row bands ([`bands`]) use, so that both
/// layouts give the same bits (`Stencil::neg_laplacian()` is the same
/// operator with the neighbours added axis by axis).
fn laplacian() -> Stencil<f64, 2> {
    Stencil::from_points(vec![
        ([0, 0], 4.0),
        ([0, -1], -1.0), // west
        ([0, 1], -1.0),  // east
        ([-1, 0], -1.0), // north
        ([1, 0], -1.0),  // south
    ])
    .expect("five distinct points")
}

/// A ghosted copy of `v` for the 5-point stencil: one ghost layer, the
/// faces only (a star reads no corner), zero past the grid's edge (not
/// periodic: the Dirichlet boundary).
fn ghosted<C: OneSidedComm>(v: &DistArray<f64, C, 2>) -> Result<Ghosted<f64, C, 2>> {
    Ghosted::new_faces(v, [1, 1], [false, false])
}

/// What a CG run returns: the solution, the iterations, `r · r` after each
/// iteration (the first entry before the first), the seconds.
type Solved<C, const N: usize> = (DistArray<f64, C, N>, usize, Vec<f64>, f64);

/// CG from x = 0 on `A x = b`, the search direction `p` ghosted.
fn cg<C: OneSidedComm>(
    b: &DistArray<f64, C, 2>,
    overlap: bool,
    tol: f64,
    max_iters: usize,
) -> Result<Solved<C, 2>> {
    let t = Instant::now();
    let a = laplacian();
    // x, r and q = A p: plain arrays (q, x and r sum as b does)
    let mut x = b.similar::<f64>()?;
    let mut r = b.similar::<f64>()?;
    let q = b.similar::<f64>()?;
    r.assign(b)?;
    // p = r, stored with its ghost layer
    let mut p = ghosted(b)?;
    let bnorm = norm2(b)?;
    let mut rr = dot(&r, &r)?;
    let mut history = vec![rr];
    let mut iters = 0;
    while rr.sqrt() > tol * bnorm && iters < max_iters {
        // q = A p and p · q in one pass, after the ghost update
        let pq = if overlap {
            p.update_ghosts_and_apply_dot(&a, &q)?
        } else {
            p.update_ghosts()?;
            p.apply_dot(&a, &q)?
        };
        let alpha = rr / pq;
        // x += alpha p, r -= alpha q and r · r in one pass
        let rr_new = p.cg_update(alpha, &q, &mut x, &mut r)?;
        // p = r + beta p
        p.axpby(1.0, &r, rr_new / rr)?;
        rr = rr_new;
        history.push(rr);
        iters += 1;
    }
    Ok((x, iters, history, t.elapsed().as_secs_f64()))
}

/// Chronopoulos–Gear CG from x = 0 on `A x = b` (the same iterates as
/// [`cg`] in exact arithmetic): per iteration one fused pass updating `p`,
/// `s = A p`, `x` and `r` and computing `r · r`, one apply `w = A r`, and
/// **one** allreduce of `(r · r, w · r)` where CG needs two — on a network,
/// half the reductions' latency. The operator is applied to `r`, so `r` is
/// the ghosted array here. With exact sums the two are exact parts merged
/// in the same single allreduce.
fn cg_single_reduction<C: OneSidedComm>(
    b: &DistArray<f64, C, 2>,
    tol: f64,
    max_iters: usize,
) -> Result<Solved<C, 2>> {
    let t = Instant::now();
    let a = laplacian();
    let x = b.similar::<f64>()?;
    let p = b.similar::<f64>()?;
    let s = b.similar::<f64>()?;
    let w = b.similar::<f64>()?;
    // r = b, stored with its ghost layer
    let mut r = ghosted(b)?;
    let bnorm = norm2(b)?;
    let exact = b.summation() == Summation::Exact;
    let comm = b.comm().clone();
    // the two sums of an iteration (r · r, w · r) in one allreduce (with
    // the vote): fixed-order local sums, or exact parts
    let reduce2 = |r: &mut Ghosted<f64, C, 2>, local: Result<[f64; 2]>| {
        if exact {
            let mut parts = [ExactParts::new(), ExactParts::new()];
            let local = local.and_then(|_| {
                r.zip_rows([&w], |lr, [lw]| {
                    parts[0].add_dot(lr, lr);
                    parts[1].add_dot(lr, lw);
                })
            });
            let [rr, wr] = exact_sum::allreduce(&comm, local.map(|_| parts.map(|p| p.re)))?;
            return Ok([rr.to_f64(), wr.to_f64()]);
        }
        distarray::collective::allreduce_vote(&comm, local, |a, b| [a[0] + b[0], a[1] + b[1]])
    };
    // r · r on this rank, row by row
    let mut rr = 0.0;
    let first = r.zip_rows([], |lr, []| rr += kernels::dot(lr, lr));
    r.update_ghosts()?;
    let first = first.and_then(|_| Ok([rr, r.apply_dot_local(&a, &w)?]));
    let [mut gamma, delta] = reduce2(&mut r, first)?;
    let mut history = vec![gamma];
    let mut alpha = gamma / delta;
    let mut beta = 0.0;
    let mut iters = 0;
    while gamma.sqrt() > tol * bnorm && iters < max_iters {
        // p = r + beta p, s = w + beta s, x += alpha p, r -= alpha s, r . r
        let mut rr = 0.0;
        let fused = r.zip_rows([&p, &s, &x, &w], |lr, [lp, ls, lx, lw]| {
            for i in 0..lr.len() {
                lp[i] = lr[i] + beta * lp[i];
                ls[i] = lw[i] + beta * ls[i];
                lx[i] += alpha * lp[i];
                lr[i] -= alpha * ls[i];
            }
            rr += kernels::dot(lr, lr);
        });
        // w = A r and this rank's w · r
        r.update_ghosts()?;
        let local = fused.and_then(|_| Ok([rr, r.apply_dot_local(&a, &w)?]));
        let [gamma_new, delta] = reduce2(&mut r, local)?;
        beta = gamma_new / gamma;
        alpha = gamma_new / (delta - beta * gamma_new / alpha);
        gamma = gamma_new;
        history.push(gamma);
        iters += 1;
    }
    Ok((x, iters, history, t.elapsed().as_secs_f64()))
}

/// The previous layout, kept as it was (for `--compare` and for the
/// layout test of `--exact`): the grid as a 1-D array of whole rows, the
/// rows above and below a rank's band through a `GhostedBlock`, the
/// kernels' `stencil5_dot` on the band.
pub mod bands {
    use super::*;
    use distarray::linalg::{axpby, cg_update};
    use distarray::partition::distribute;
    use distarray::GhostedBlock;

    /// The 5-point operator on the row bands.
    pub struct Laplacian {
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

        /// `y = A u`, returning this rank's part of `u · y` (no reduction).
        fn apply_local<C: OneSidedComm>(
            &mut self,
            u: &DistArray<f64, C, 1>,
            y: &mut DistArray<f64, C, 1>,
        ) -> Result<f64> {
            u.barrier()?; // neighbours' updates of u are complete
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

        /// `y = A u`, returning `u · y` summed over the ranks (one
        /// allreduce, whose vote also carries an error of any rank's apply).
        fn apply_dot<C: OneSidedComm>(
            &mut self,
            u: &DistArray<f64, C, 1>,
            y: &mut DistArray<f64, C, 1>,
        ) -> Result<f64> {
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
    fn exact_dots<C: OneSidedComm, const K: usize>(
        u: &DistArray<f64, C, 1>,
        vs: &[&DistArray<f64, C, 1>; K],
    ) -> Result<[ExactSum; K]> {
        let mut out = [ExactSum::new(); K];
        for (acc, v) in out.iter_mut().zip(vs) {
            let mut parts = ExactParts::new();
            if std::ptr::eq(u, *v) {
                u.with_local(|l| parts.add_dot(l.as_slice(), l.as_slice()))?;
            } else {
                u.try_with_local(|lu| {
                    v.with_local(|lv| parts.add_dot(lu.as_slice(), lv.as_slice()))
                })?;
            }
            *acc = parts.re;
        }
        Ok(out)
    }

    /// CG from x = 0 on `A x = b`.
    fn cg<C: OneSidedComm>(
        op: &mut Laplacian,
        b: &DistArray<f64, C, 1>,
        tol: f64,
        max_iters: usize,
    ) -> Result<Solved<C, 1>> {
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

    /// Chronopoulos–Gear CG (see [`super::cg_single_reduction`]) on the
    /// row bands.
    fn cg_single_reduction<C: OneSidedComm>(
        op: &mut Laplacian,
        b: &DistArray<f64, C, 1>,
        tol: f64,
        max_iters: usize,
    ) -> Result<Solved<C, 1>> {
        let t = Instant::now();
        let x = b.similar::<f64>()?;
        let r = b.similar::<f64>()?;
        let p = b.similar::<f64>()?;
        let s = b.similar::<f64>()?;
        let mut w = b.similar::<f64>()?;
        r.assign(b)?;
        let bnorm = norm2(b)?;
        let exact = b.summation() == Summation::Exact;
        let reduce2 = |comm: &C,
                       r: &DistArray<f64, C, 1>,
                       w: &DistArray<f64, C, 1>,
                       local: Result<[f64; 2]>| {
            if exact {
                let parts = local.and_then(|_| exact_dots(r, &[r, w]));
                let [rr, wr] = exact_sum::allreduce(comm, parts)?;
                return Ok([rr.to_f64(), wr.to_f64()]);
            }
            distarray::collective::allreduce_vote(comm, local, |a, b| [a[0] + b[0], a[1] + b[1]])
        };
        let comm = b.comm().clone();
        let rr_local =
            |r: &DistArray<f64, C, 1>| r.with_local(|l| kernels::dot(l.as_slice(), l.as_slice()));
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

    /// The system on the row bands (a 1-D array of whole grid rows): the
    /// operator and `b = A u*`.
    pub fn problem<C: OneSidedComm>(
        comm: &C,
        o: &Opts,
    ) -> Result<(Laplacian, DistArray<f64, C, 1>)> {
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

    /// The CG of the options (plain or single-reduction) on the row bands.
    pub fn solve<C: OneSidedComm>(
        op: &mut Laplacian,
        b: &DistArray<f64, C, 1>,
        o: &Opts,
    ) -> Result<Solved<C, 1>> {
        if o.single_reduction {
            cg_single_reduction(op, b, o.tol, 10 * o.n * o.n)
        } else {
            cg(op, b, o.tol, 10 * o.n * o.n)
        }
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

/// The system on the 2-D tiles: `b = A u*` (so that the discrete solution
/// is exactly `u*`).
fn grid_problem<C: OneSidedComm>(comm: &C, o: &Opts) -> Result<DistArray<f64, C, 2>> {
    let n = o.n;
    let ustar = DistArray::<f64, _, 2>::with_grid(comm.clone(), grid_2d(comm.size()), [n, n])?
        .with_summation(mode(o));
    ustar.with_local_mut(|mut l| l.fill_with(|[i, j]| exact(n, i, j)))?;
    let mut u = ghosted(&ustar)?;
    u.update_ghosts()?;
    let b = ustar.similar::<f64>()?;
    u.apply(&laplacian(), &b, false)?;
    b.barrier()?; // every rank's part of b written
    Ok(b)
}

/// The CG of the options (plain or single-reduction) on the 2-D tiles.
fn solve_grid<C: OneSidedComm>(b: &DistArray<f64, C, 2>, o: &Opts) -> Result<Solved<C, 2>> {
    let max_iters = 10 * o.n * o.n;
    if o.single_reduction {
        cg_single_reduction(b, o.tol, max_iters)
    } else {
        cg(b, o.overlap, o.tol, max_iters)
    }
}

/// Collective: one solve on the 2-D tiles (`bands == false`) or on the row
/// bands: (`r · r` before each iteration and at the end, the solution in
/// global row-major order). For the reproducibility tests.
pub fn solve<C: OneSidedComm>(comm: C, o: &Opts, bands: bool) -> Result<(Vec<f64>, Vec<f64>)> {
    let (history, x) = if bands {
        let (mut op, b) = bands::problem(&comm, o)?;
        let (x, _, h, _) = bands::solve(&mut op, &b, o)?;
        x.barrier()?;
        (h, x.to_vec()?)
    } else {
        let b = grid_problem(&comm, o)?;
        let (x, _, h, _) = solve_grid(&b, o)?;
        x.barrier()?;
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
    let b = grid_problem(&comm, o)?;
    let bnorm = norm2(&b)?;
    // --compare: the same system on the row-band layout, same run; the
    // two solves alternate, three times each, and the fastest of each is
    // kept (the machine may be shared)
    let mut bands = None;
    if o.compare {
        bands = Some(bands::problem(&comm, o)?);
    }
    let rounds = if o.compare { 3 } else { 1 };
    let mut best = f64::INFINITY;
    let mut best1 = f64::INFINITY;
    let mut iters1 = 0;
    let mut solved = None;
    for _ in 0..rounds {
        if let Some((op1, b1)) = bands.as_mut() {
            let (_, it1, _, t1) = bands::solve(op1, b1, o)?;
            iters1 = it1;
            best1 = best1.min(t1 / it1.max(1) as f64);
        }
        let (x, iters, history, elapsed) = solve_grid(&b, o)?;
        best = best.min(elapsed / iters.max(1) as f64);
        solved = Some((x, iters, history, elapsed));
    }
    let (x, iters, history, elapsed) = solved.expect("one solve at least");
    let rr = *history.last().expect("r · r before the first iteration");
    x.barrier()?;
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
