//! The distributed matrix-vector product of `examples/matvec.rs` (the same
//! generic driver, `distarray_apps::matvec`) on the MPI backend: one rank
//! per MPI process. After it, the same product written with plain MPI calls
//! of the same library (the baseline a hand-written MPI code would be): by
//! rows, `MPI_Allgatherv` of x, then the local gemv; by columns, the local
//! gemv, then `MPI_Reduce_scatter` of y. Both use the same local kernel.
//!
//! ```text
//! cargo build --release -p distarray-mpi --example mpi_matvec
//! mpirun -n 4 target/release/examples/mpi_matvec --n 15000 --dist cols
//! # CBLAS dgemv as the local kernel (Debian: libopenblas-dev):
//! cargo build --release -p distarray-mpi --features openblas --example mpi_matvec
//! OPENBLAS_NUM_THREADS=1 mpirun -n 4 target/release/examples/mpi_matvec
//! ```
//!
//! With OpenBLAS, keep one BLAS thread per rank (`OPENBLAS_NUM_THREADS=1`):
//! the ranks already occupy the cores.
//!
//! Options: `--n N` (5000), `--dist rows|cols` (rows), `--reps R` (10);
//! `--ranks` is ignored (mpirun's `-n` decides).

use std::os::raw::{c_int, c_void};
use std::time::Instant;

use distarray::partition::distribute;
use distarray::{linalg, OneSidedComm};
use distarray_apps::matvec as app;
use distarray_mpi::MpiComm;
use mpi::collective::SystemOperation;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::traits::Equivalence;

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let opts = app::Opts::from_args();
    app::run(comm.clone(), &opts)?;
    raw_baseline(&comm, &opts)
}

/// The same product with plain MPI calls; prints the median time per
/// product (slowest rank) on rank 0.
fn raw_baseline(comm: &MpiComm, o: &app::Opts) -> distarray::Result<()> {
    let (n, p, me) = (o.n, comm.size(), comm.rank());
    let parts = distribute(n, p);
    let starts: Vec<usize> = parts
        .iter()
        .scan(0, |s, &c| {
            let start = *s;
            *s += c;
            Some(start)
        })
        .collect();
    let (lo, mine) = (starts[me], parts[me]);
    let raw = comm.communicator().as_raw();
    let dt = f64::equivalent_datatype().as_raw();
    let counts: Vec<c_int> = parts.iter().map(|&c| c as c_int).collect();
    let displs: Vec<c_int> = starts.iter().map(|&s| s as c_int).collect();
    let x_loc: Vec<f64> = (lo..lo + mine).map(app::x_elem).collect();
    let mut y_loc = vec![0.0; mine];
    let (a_loc, mut work) = if o.rows {
        let a: Vec<f64> = (lo..lo + mine)
            .flat_map(|i| (0..n).map(move |j| app::a_elem(i, j)))
            .collect();
        (a, vec![0.0; n]) // work: all of x
    } else {
        let a: Vec<f64> = (0..n)
            .flat_map(|i| (lo..lo + mine).map(move |j| app::a_elem(i, j)))
            .collect();
        (a, vec![0.0; n]) // work: the partial y of every row
    };
    let mut product = || {
        if o.rows {
            // SAFETY: `x_loc` holds counts[me] f64s, `work` holds n = the
            // sum of `counts`, displacements are prefix sums; valid
            // communicator and datatype.
            let rc = unsafe {
                ffi::MPI_Allgatherv(
                    x_loc.as_ptr().cast::<c_void>(),
                    mine as c_int,
                    dt,
                    work.as_mut_ptr().cast::<c_void>(),
                    counts.as_ptr(),
                    displs.as_ptr(),
                    dt,
                    raw,
                )
            };
            assert_eq!(rc, ffi::MPI_SUCCESS as c_int, "MPI_Allgatherv");
            linalg::gemv_local(&a_loc, mine, n, &work, &mut y_loc);
        } else {
            linalg::gemv_local(&a_loc, n, mine, &x_loc, &mut work);
            // SAFETY: `work` holds n f64s, `y_loc` counts[me]; valid
            // communicator, datatype and predefined op.
            let rc = unsafe {
                ffi::MPI_Reduce_scatter(
                    work.as_ptr().cast::<c_void>(),
                    y_loc.as_mut_ptr().cast::<c_void>(),
                    counts.as_ptr(),
                    dt,
                    SystemOperation::sum().as_raw(),
                    raw,
                )
            };
            assert_eq!(rc, ffi::MPI_SUCCESS as c_int, "MPI_Reduce_scatter");
        }
    };
    product(); // warm-up
    let mut times = Vec::with_capacity(o.reps.max(1));
    for _ in 0..o.reps.max(1) {
        comm.barrier()?;
        let t = Instant::now();
        product();
        times.push(t.elapsed().as_secs_f64());
    }
    // the raw result must agree with the serial product too
    let xs: Vec<f64> = (0..n).map(app::x_elem).collect();
    let err = (lo..lo + mine)
        .zip(&y_loc)
        .map(|(i, v)| {
            let exact: f64 = (0..n).map(|j| app::a_elem(i, j) * xs[j]).sum();
            (v - exact).abs() / exact.abs().max(1.0)
        })
        .fold(0.0f64, f64::max);
    assert!(err < 1e-12, "raw baseline error {err}");
    let all = comm.allgather(&times)?;
    let mut per_rep: Vec<f64> = (0..times.len())
        .map(|k| all.iter().map(|t| t[k]).fold(0.0f64, f64::max))
        .collect();
    per_rep.sort_by(f64::total_cmp);
    if me == 0 {
        println!(
            "  raw MPI baseline ({}, same kernel): median {:.3} ms, best {:.3} ms",
            if o.rows {
                "MPI_Allgatherv of x + local gemv"
            } else {
                "local gemv + MPI_Reduce_scatter of y"
            },
            per_rep[per_rep.len() / 2] * 1e3,
            per_rep[0] * 1e3
        );
    }
    Ok(())
}
