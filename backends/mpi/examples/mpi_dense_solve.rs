//! A dense linear system `A x = b` solved with ScaLAPACK's LU on
//! distarray's memory (`distarray_mpi::scalapack::gesv`; feature
//! `scalapack`): `A` an `n x n` diagonally dominant matrix on the squarest
//! process grid of the ranks, 2-D block-cyclic in `nb x nb` blocks, the
//! residual checked; the same problem as `bench/dense_solve/pdgesv.c`
//! (C calling `pdgesv`), which `bench/dense_solve/run.sh` runs beside it.
//!
//! ```text
//! cargo build --release -p distarray-mpi --features scalapack,openblas --example mpi_dense_solve
//! mpirun -n 4 target/release/examples/mpi_dense_solve --n 2000 --reps 3 --nb 64 [--pivot 1]
//! ```
//!
//! `--pivot 1` permutes the rows of `A` so that the LU pivots on every
//! step.

use std::time::Instant;

use distarray::{DistArray, OneSidedComm};
use distarray_mpi::{scalapack, MpiComm};

fn entry(i: usize, j: usize, n: usize) -> f64 {
    1.0 / (1 + i + 2 * j) as f64 + if i == j { n as f64 } else { 0.0 }
}

/// With `--pivot 1` row `i` of `A` is row `q i + 3 mod n` of [`entry`]'s
/// matrix (`q` the first of 7, 11, 13, 17 prime to `n`): as well
/// conditioned, but every step of the LU pivots.
fn row(i: usize, n: usize, pivot: bool) -> usize {
    if !pivot {
        return i;
    }
    let q = [7, 11, 13, 17]
        .into_iter()
        .find(|q| !n.is_multiple_of(*q))
        .unwrap_or(1);
    (q * i + 3) % n
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let (n, reps, nb) = (arg("--n", 1000), arg("--reps", 3), arg("--nb", 64));
    let pivot = arg("--pivot", 0) != 0;
    let p = comm.size();
    let pr = (1..=p)
        .filter(|d| p.is_multiple_of(*d) && d * d <= p)
        .max()
        .unwrap_or(1);
    let grid = [pr, p / pr];
    let mut a = DistArray::<f64, _, 2>::block_cyclic(comm.clone(), [n, n], grid, [nb, nb])?;
    let mut b = DistArray::<f64, _, 2>::block_cyclic(comm.clone(), [n, 1], grid, [nb, nb])?;
    let mut times = Vec::new();
    for _ in 0..=reps {
        a.with_local_mut(|mut l| l.fill_with(|[i, j]| entry(row(i, n, pivot), j, n)))?;
        b.with_local_mut(|mut l| l.fill_with(|[i, _]| i as f64 * 0.5))?;
        comm.barrier()?;
        let t0 = Instant::now();
        scalapack::gesv(&mut a, &mut b)?;
        let dt = t0.elapsed().as_secs_f64();
        times.push(distarray::collective::allreduce_max(&comm, dt)?);
    }
    // residual of the last solve: each rank checks its share of the rows
    let x = b.to_vec()?;
    let mut res = 0.0f64;
    for i in (comm.rank()..n).step_by(p) {
        let s: f64 = (0..n).map(|j| entry(row(i, n, pivot), j, n) * x[j]).sum();
        res = res.max((s - i as f64 * 0.5).abs());
    }
    let res = distarray::collective::allreduce_max(&comm, res)?;
    let mut timed = times[1..].to_vec();
    timed.sort_by(f64::total_cmp);
    if comm.rank() == 0 {
        println!(
            "distarray gesv n={n} P={p} grid={}x{} nb={nb} ms={:.3} residual={res:.3e}",
            grid[0],
            grid[1],
            1e3 * timed[timed.len() / 2]
        );
    }
    if res > 1e-8 * n as f64 {
        return Err(distarray::Error::Numerical(format!(
            "residual {res} too large"
        )));
    }
    Ok(())
}
