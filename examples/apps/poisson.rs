//! The 2-D Poisson conjugate-gradient driver, generic over the backend:
//! shared by the threaded example (`examples/poisson_cg.rs`) and the MPI /
//! Lamellar ones.
//!
//! The unknowns of an `n x n` grid are a 1-D `DistArray` whose parts are
//! whole grid rows. The 5-point operator reads the grid rows just above and
//! below a rank's rows through a `GhostedBlock` (two contiguous runs: two
//! RMA gets per application) and applies the library's branch-free stencil
//! kernel, which also returns `p · A p`. CG then needs only two more passes
//! per iteration: the fused update `x += alpha p, r -= alpha q` that returns
//! `r · r` (`linalg::cg_update`) and `p = r + beta p` (`linalg::axpby`).
//! Every reduction runs in a fixed order, so a run's iterates are bitwise
//! the same every time.

use std::time::Instant;

use distarray::kernels::{self, Block2, Stencil5};
use distarray::linalg::{axpby, cg_update, dot, norm2, sum_over_ranks};
use distarray::partition::distribute;
use distarray::{DistArray, GhostedBlock, OneSidedComm};

/// Options of the Poisson driver.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Grid size n (n x n unknowns).
    pub n: usize,
    /// Relative residual tolerance.
    pub tol: f64,
    /// Ranks (threaded backend only).
    pub ranks: usize,
}

impl Opts {
    /// Parses `--n N --tol T --ranks P` (all optional).
    pub fn from_args() -> Opts {
        let mut o = Opts {
            n: 64,
            tol: 1e-8,
            ranks: 2,
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
                "--help" | "-h" => {
                    println!("options: --n N (64) --tol T (1e-8) --ranks P (2, threaded only)");
                    std::process::exit(0);
                }
                other => panic!("unknown option {other} (try --help)"),
            }
        }
        o
    }
}

/// The manufactured solution u*(i, j) on the grid.
fn exact(n: usize, i: usize, j: usize) -> f64 {
    let h = 1.0 / (n + 1) as f64;
    let (x, y) = ((i + 1) as f64 * h, (j + 1) as f64 * h);
    (std::f64::consts::PI * x).sin() * (2.0 * std::f64::consts::PI * y).sin() + x * y
}

/// The distributed operator: its ghost rows and their slots.
struct Laplacian {
    n: usize,
    ghosts: GhostedBlock<f64, 1>,
    above: Option<usize>,
    below: Option<usize>,
}

impl Laplacian {
    fn new<C: OneSidedComm>(u: &DistArray<f64, C, 1>, n: usize) -> distarray::Result<Self> {
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

    /// Collective: `y = A u`, returning `u · y` (summed over the ranks).
    fn apply_dot<C: OneSidedComm>(
        &mut self,
        u: &DistArray<f64, C, 1>,
        y: &mut DistArray<f64, C, 1>,
    ) -> distarray::Result<f64> {
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
        sum_over_ranks(u.comm(), local.and_then(|r| r))
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

/// Solves the system, prints a report on rank 0 and returns (iterations,
/// relative residual, max error against the discrete solution). Collective.
pub fn run<C: OneSidedComm>(comm: C, o: &Opts) -> distarray::Result<(usize, f64, f64)> {
    let (n, p, me) = (o.n, comm.size(), comm.rank());
    let sizes: Vec<usize> = distribute(n, p).into_iter().map(|r| r * n).collect();
    let ustar = DistArray::<f64, _, 1>::with_part_sizes(comm.clone(), [sizes])?;
    ustar.with_local_mut(|mut l| l.fill_with(|[k]| exact(n, k / n, k % n)))?;
    let mut op = Laplacian::new(&ustar, n)?;
    // b = A u*: the discrete solution is exactly u*
    let mut b = ustar.similar::<f64>()?;
    op.apply_dot(&ustar, &mut b)?;
    let t = Instant::now();
    let mut x = ustar.similar::<f64>()?;
    let mut r = ustar.similar::<f64>()?;
    let mut pd = ustar.similar::<f64>()?;
    let mut ap = ustar.similar::<f64>()?;
    axpby(1.0, &b, 0.0, &mut r)?;
    axpby(1.0, &b, 0.0, &mut pd)?;
    let bnorm = norm2(&b)?;
    let mut rr = dot(&r, &r)?;
    let mut iters = 0;
    while rr.sqrt() > o.tol * bnorm && iters < 10 * n * n {
        // ap = A p and p . ap in one pass
        let alpha = rr / op.apply_dot(&pd, &mut ap)?;
        // x += alpha p, r -= alpha ap and r . r in one pass
        let rr2 = cg_update(alpha, &pd, &ap, &mut x, &mut r)?;
        axpby(1.0, &r, rr2 / rr, &mut pd)?;
        rr = rr2;
        iters += 1;
    }
    let elapsed = t.elapsed().as_secs_f64();
    x.sync()?;
    let local_err = x.with_local(|l| {
        l.iter_global()
            .map(|([k], v)| (v - exact(n, k / n, k % n)).abs())
            .fold(0.0, f64::max)
    })?;
    let err = comm
        .allgather(&[local_err])?
        .iter()
        .map(|e| e[0])
        .fold(0.0, f64::max);
    let resid = rr.sqrt() / bnorm;
    if me == 0 {
        println!(
            "Poisson 5-point, {n} x {n} grid, {p} rank(s) of the {} backend",
            comm.backend_name()
        );
        println!(
            "  CG: {iters} iterations, relative residual {resid:.2e}, {:.3} s ({:.3} ms/iteration)",
            elapsed,
            1e3 * elapsed / iters.max(1) as f64
        );
        println!("  max error against the discrete solution: {err:.2e}");
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
