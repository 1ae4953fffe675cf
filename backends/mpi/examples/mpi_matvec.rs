//! The distributed matrix-vector product of `examples/matvec.rs` (the same
//! generic driver, `examples/apps/matvec.rs`) on the MPI backend: one rank
//! per MPI process.
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

#[path = "../../../examples/apps/matvec.rs"]
mod app;

use distarray_mpi::MpiComm;

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let opts = app::Opts::from_args();
    app::run(comm, &opts)
}
