//! The distributed matrix product `C = A B` ([`distarray::matmul`]) on the
//! MPI backend, the distarray side of `bench/matmul/run.sh` (the C side is
//! `bench/matmul/pdgemm.c`, ScaLAPACK's `pdgemm`).
//!
//! `A`, `B` and `C` are `n x n` `f64` on the squarest process grid of the
//! ranks (`2 x 1` for 2). Each repetition is one `matmul`; the first is a
//! warm-up. With `--serial`, rank 0 also times the local kernel alone on
//! the whole `n x n` product (the one-rank floor), in the same run.
//!
//! ```text
//! MPICC=mpicc.openmpi cargo build --release -p distarray-mpi --example mpi_matmul --features openblas
//! OPENBLAS_NUM_THREADS=1 mpirun -n 2 target/release/examples/mpi_matmul --n 2000 --reps 3
//! ```
//!
//! Prints `distarray_matmul n=... ranks=... kernel=... ms=... gflops=...`
//! (median repetition, slowest rank) and, with `--serial`,
//! `serial_gemm n=... ms=... gflops=...`.

use std::time::Instant;

use distarray::collective::allreduce_max;
use distarray::matmul::matmul;
use distarray::{DistArray, Error, OneSidedComm, Result};
use distarray_mpi::MpiComm;

fn main() -> Result<()> {
    let (mut n, mut reps, mut serial) = (1000usize, 3usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<usize> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::InvalidArgument(format!("{name} needs a number")))
        };
        match a.as_str() {
            "--n" => n = value("--n")?,
            "--reps" => reps = value("--reps")?.max(1),
            "--serial" => serial = true,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown option {other} (--n N, --reps R, --serial)"
                )))
            }
        }
    }
    let (env, comm) = MpiComm::init()?;
    let p = comm.size();
    let pr = (1..=p)
        .rev()
        .find(|d| p % d == 0 && d * d >= p)
        .unwrap_or(p);
    let grid = [pr, p / pr];
    let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [n, n], |[i, j]| {
        ((i * 7 + j * 3) % 11) as f64 - 5.0
    })?;
    let b = DistArray::<f64, _, 2>::from_fn(comm.clone(), [n, n], |[i, j]| {
        ((i * 5 + j) % 13) as f64 - 6.0
    })?;
    let mut c = DistArray::<f64, _, 2>::with_grid(comm.clone(), grid, [n, n])?;
    let mut times = Vec::new();
    for r in 0..=reps {
        comm.barrier()?;
        let t = Instant::now();
        matmul(&a, &b, &mut c)?;
        let mine = t.elapsed().as_secs_f64();
        let slowest = allreduce_max(&comm, mine)?;
        if r > 0 {
            times.push(slowest);
        }
    }
    // one element checked exactly (small integers: exact sums)
    let want: f64 = (0..n)
        .map(|l| (((n - 1) * 7 + l * 3) % 11) as f64 - 5.0)
        .zip((0..n).map(|l| ((l * 5 + n - 1) % 13) as f64 - 6.0))
        .map(|(x, y)| x * y)
        .sum();
    let got = c.get([n - 1, n - 1])?;
    if got != want {
        return Err(Error::InvalidArgument(format!(
            "C[n-1, n-1] = {got}, expected {want}"
        )));
    }
    times.sort_by(f64::total_cmp);
    let t = times[times.len() / 2];
    let flops = 2.0 * (n as f64).powi(3);
    let kernel = if cfg!(feature = "blas") {
        "cblas"
    } else {
        "matrixmultiply"
    };
    if comm.rank() == 0 {
        println!(
            "distarray_matmul n={n} ranks={p} grid={}x{} kernel={kernel} ms={:.1} gflops={:.2}",
            grid[0],
            grid[1],
            t * 1e3,
            flops / t / 1e9
        );
    }
    if serial && comm.rank() == 0 {
        // the local kernel alone on the whole product, one rank
        let a1: Vec<f64> = (0..n * n).map(|x| (x % 11) as f64).collect();
        let b1: Vec<f64> = (0..n * n).map(|x| (x % 7) as f64).collect();
        let mut c1 = vec![0.0; n * n];
        let mut best = f64::INFINITY;
        for _ in 0..=reps {
            let t = Instant::now();
            distarray::matmul::gemm_local(n, n, n, &a1, &b1, &mut c1);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "serial_gemm n={n} kernel={kernel} ms={:.1} gflops={:.2}",
            best * 1e3,
            flops / best / 1e9
        );
    }
    comm.barrier()?;
    drop((a, b, c));
    drop(env);
    Ok(())
}
