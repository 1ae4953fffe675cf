//! The 2-D Poisson / conjugate-gradient solver of `examples/poisson_cg.rs`
//! (the same generic driver, `distarray_apps::poisson`) on the MPI
//! backend: one rank per MPI process. After it, the same CG written with
//! plain MPI calls of the same library (the baseline a hand-written MPI
//! code would be): blocks of whole grid rows, ghost rows by `MPI_Sendrecv`,
//! dot products by `MPI_Allreduce`, a plain 5-point loop.
//!
//! ```text
//! cargo build --release -p distarray-mpi --example mpi_poisson_cg
//! mpirun -n 4 target/release/examples/mpi_poisson_cg --n 256
//! ```
//!
//! Options: `--n N` (64), `--tol T` (1e-8), `--compare` (also the row-band
//! layout), `--no-baseline` (skip the plain-MPI solve); `--ranks` is
//! ignored (mpirun's `-n` decides).

use std::os::raw::{c_int, c_void};
use std::time::Instant;

use distarray::partition::distribute;
use distarray::OneSidedComm;
use distarray_apps::poisson as app;
use distarray_mpi::MpiComm;
use mpi::collective::SystemOperation;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::traits::Equivalence;

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let opts = app::Opts::from_args();
    let (iters, _, _) = app::run(comm.clone(), &opts)?;
    if !opts.baseline {
        return Ok(());
    }
    raw_cg(&comm, &opts, iters)
}

/// The same CG with plain MPI calls; prints its iterations and time per
/// iteration on rank 0 and checks that it took as many iterations as the
/// distarray solve (`expect_iters`).
fn raw_cg(comm: &MpiComm, o: &app::Opts, expect_iters: usize) -> distarray::Result<()> {
    let (n, p, me) = (o.n, comm.size(), comm.rank());
    let rows = distribute(n, p);
    let first: usize = rows[..me].iter().sum();
    let nloc = rows[me] * n;
    let raw = comm.communicator().as_raw();
    let dt = f64::equivalent_datatype().as_raw();
    // neighbours that own rows (ranks without rows are skipped)
    let up = (0..me).rev().find(|&r| rows[r] > 0);
    let down = (me + 1..p).find(|&r| rows[r] > 0);
    let has_rows = rows[me] > 0;
    let dot = |a: &[f64], b: &[f64]| -> f64 {
        let local: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let mut global = 0.0f64;
        // SAFETY: one f64 in, one out; valid communicator, datatype, op.
        let rc = unsafe {
            ffi::MPI_Allreduce(
                (&local as *const f64).cast::<c_void>(),
                (&mut global as *mut f64).cast::<c_void>(),
                1,
                dt,
                SystemOperation::sum().as_raw(),
                raw,
            )
        };
        assert_eq!(rc, ffi::MPI_SUCCESS as c_int, "MPI_Allreduce");
        global
    };
    let mut above = vec![0.0; if has_rows && up.is_some() { n } else { 0 }];
    let mut below = vec![0.0; if has_rows && down.is_some() { n } else { 0 }];
    // y = A u, with the ghost rows exchanged first
    let mut apply = |u: &[f64], y: &mut [f64]| {
        if has_rows {
            let last = &u[nloc - n..];
            let firstrow = &u[..n];
            // send my first row up / receive the row above; then the other
            // direction (MPI_PROC_NULL where there is no neighbour)
            let exchange =
                |send: &[f64], to: Option<usize>, recv: &mut [f64], from: Option<usize>| {
                    // SAFETY: `send` / `recv` hold `n` f64s (or `recv` is empty
                    // when `from` is None, then nothing is received); valid
                    // communicator and datatype; MPI_PROC_NULL for no partner.
                    let rc = unsafe {
                        ffi::MPI_Sendrecv(
                            send.as_ptr().cast::<c_void>(),
                            if to.is_some() { n as c_int } else { 0 },
                            dt,
                            to.map_or(ffi::RSMPI_PROC_NULL, |r| r as c_int),
                            7,
                            recv.as_mut_ptr().cast::<c_void>(),
                            if from.is_some() { n as c_int } else { 0 },
                            dt,
                            from.map_or(ffi::RSMPI_PROC_NULL, |r| r as c_int),
                            7,
                            raw,
                            ffi::RSMPI_STATUS_IGNORE,
                        )
                    };
                    assert_eq!(rc, ffi::MPI_SUCCESS as c_int, "MPI_Sendrecv");
                };
            exchange(firstrow, up, &mut below, down);
            exchange(last, down, &mut above, up);
            stencil_rows(n, u, &above, &below, y);
        }
    };
    let ustar: Vec<f64> = (first * n..first * n + nloc)
        .map(|k| app::exact(n, k / n, k % n))
        .collect();
    let mut b = vec![0.0; nloc];
    apply(&ustar, &mut b);
    comm.barrier()?;
    let t = Instant::now();
    let mut x = vec![0.0; nloc];
    let mut r = b.clone();
    let mut pd = b.clone();
    let mut ap = vec![0.0; nloc];
    let bnorm = dot(&b, &b).sqrt();
    let mut rr = dot(&r, &r);
    let mut iters = 0;
    while rr.sqrt() > o.tol * bnorm && iters < 10 * n * n {
        apply(&pd, &mut ap);
        let alpha = rr / dot(&pd, &ap);
        x.iter_mut().zip(&pd).for_each(|(x, p)| *x += alpha * p);
        r.iter_mut().zip(&ap).for_each(|(r, a)| *r -= alpha * a);
        let rr2 = dot(&r, &r);
        pd.iter_mut()
            .zip(&r)
            .for_each(|(p, r)| *p = r + rr2 / rr * *p);
        rr = rr2;
        iters += 1;
    }
    let elapsed = t.elapsed().as_secs_f64();
    let err = x
        .iter()
        .zip(&ustar)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    let errs = comm.allgather(&[err])?;
    let err = errs.iter().map(|e| e[0]).fold(0.0f64, f64::max);
    if me == 0 {
        println!(
            "  raw MPI baseline (row blocks, MPI_Sendrecv ghost rows, MPI_Allreduce dots): \
             {iters} iterations, {elapsed:.3} s ({:.3} ms/iteration), max error {err:.2e}",
            1e3 * elapsed / iters.max(1) as f64
        );
    }
    assert!(
        iters.abs_diff(expect_iters) <= 2,
        "raw CG took {iters} iterations, distarray's {expect_iters}"
    );
    Ok(())
}

/// The 5-point operator (Dirichlet zero outside the grid) on a block of
/// whole grid rows `u`; `above` / `below` are the neighbouring grid rows
/// (empty at the boundary).
fn stencil_rows(n: usize, u: &[f64], above: &[f64], below: &[f64], y: &mut [f64]) {
    let nrows = u.len() / n.max(1);
    for r in 0..nrows {
        let row = &u[r * n..(r + 1) * n];
        let up = if r > 0 { &u[(r - 1) * n..r * n] } else { above };
        let down = if r + 1 < nrows {
            &u[(r + 1) * n..(r + 2) * n]
        } else {
            below
        };
        for j in 0..n {
            let mut v = 4.0 * row[j];
            if j > 0 {
                v -= row[j - 1];
            }
            if j + 1 < n {
                v -= row[j + 1];
            }
            if !up.is_empty() {
                v -= up[j];
            }
            if !down.is_empty() {
                v -= down[j];
            }
            y[r * n + j] = v;
        }
    }
}
