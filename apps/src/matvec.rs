//! The matvec driver, generic over the backend: shared by the threaded
//! example (`examples/matvec.rs`) and the MPI / Lamellar ones. The report
//! names the local kernel ([`linalg::GEMV_USES_BLAS`]).

use std::time::Instant;

use distarray::{linalg, DistArray, OneSidedComm};

/// Options of the matvec driver.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Matrix size N (N x N).
    pub n: usize,
    /// Distribute A by rows (`true`) or by columns.
    pub rows: bool,
    /// Timed repetitions.
    pub reps: usize,
    /// Ranks (threaded backend only).
    pub ranks: usize,
}

impl Opts {
    /// Parses `--n N --dist rows|cols --reps R --ranks P` (all optional).
    pub fn from_args() -> Opts {
        let mut o = Opts {
            n: 5000,
            rows: true,
            reps: 10,
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
                "--reps" => o.reps = val().parse().expect("--reps takes a number"),
                "--ranks" | "-p" => o.ranks = val().parse().expect("--ranks takes a number"),
                "--dist" => {
                    o.rows = match val().as_str() {
                        "rows" => true,
                        "cols" | "columns" => false,
                        other => panic!("--dist takes rows or cols, not {other}"),
                    }
                }
                "--help" | "-h" => {
                    println!("options: --n N (5000) --dist rows|cols (rows) --reps R (10) --ranks P (2, threaded only)");
                    std::process::exit(0);
                }
                other => panic!("unknown option {other} (try --help)"),
            }
        }
        o
    }
}

/// The matrix entry a(i, j).
pub fn a_elem(i: usize, j: usize) -> f64 {
    ((i * 7 + j * 3) % 11) as f64 * 0.1 - 0.5
}

/// The vector entry x(j).
pub fn x_elem(j: usize) -> f64 {
    ((j * 5) % 7) as f64 * 0.25 + 1.0
}

/// Builds A, x, y, times `reps` products, checks the result against a
/// serial product and prints a report on rank 0. Collective.
pub fn run<C: OneSidedComm>(comm: C, o: &Opts) -> distarray::Result<()> {
    let (n, p, me) = (o.n, comm.size(), comm.rank());
    let grid = if o.rows { [p, 1] } else { [1, p] };
    let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), grid, [n, n])?;
    a.with_local_mut(|mut l| l.fill_with(|[i, j]| a_elem(i, j)))?;
    let x = DistArray::<f64, _, 1>::from_fn(comm.clone(), [n], |[j]| x_elem(j))?;
    let mut y = DistArray::<f64, _, 1>::new(comm.clone(), [n])?;
    linalg::matvec(&a, &x, &mut y)?; // warm-up
    let mut times = Vec::with_capacity(o.reps);
    for _ in 0..o.reps.max(1) {
        comm.barrier()?;
        let t = Instant::now();
        linalg::matvec(&a, &x, &mut y)?;
        times.push(t.elapsed().as_secs_f64());
    }
    // every rank checks its own rows of y against the serial product
    let local_err = y.with_local(|l| {
        let xs: Vec<f64> = (0..n).map(x_elem).collect();
        l.iter_global()
            .map(|([i], v)| {
                let exact: f64 = (0..n).map(|j| a_elem(i, j) * xs[j]).sum();
                (v - exact).abs() / exact.abs().max(1.0)
            })
            .fold(0.0f64, f64::max)
    })?;
    let errs = comm.allgather(&[local_err])?;
    let err = errs.iter().map(|e| e[0]).fold(0.0f64, f64::max);
    // the slowest rank defines the time of a product
    let all = comm.allgather(&times)?;
    let per_rep: Vec<f64> = (0..times.len())
        .map(|k| all.iter().map(|t| t[k]).fold(0.0f64, f64::max))
        .collect();
    let mut sorted = per_rep.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let best = sorted[0];
    if me == 0 {
        let gb = 8.0 * (n * n) as f64 / 1e9;
        println!(
            "matvec N = {n} on {p} rank(s) of the {} backend, A distributed by {}{}",
            comm.backend_name(),
            if o.rows { "rows" } else { "columns" },
            if linalg::GEMV_USES_BLAS {
                ", local kernel: CBLAS dgemv"
            } else {
                ", local kernel: plain Rust"
            }
        );
        println!(
            "  time per product: median {:.3} ms, best {:.3} ms ({} reps)",
            median * 1e3,
            best * 1e3,
            per_rep.len()
        );
        println!(
            "  matrix streamed:  {:.2} GB/s (median), {:.2} GB/s (best)",
            gb / median,
            gb / best
        );
        println!("  max relative error against the serial product: {err:.2e}");
    }
    if err > 1e-12 {
        return Err(distarray::Error::InvalidArgument(format!(
            "matvec error {err} too large"
        )));
    }
    Ok(())
}
