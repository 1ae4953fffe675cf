//! The 2-D Poisson / conjugate-gradient solver of `examples/poisson_cg.rs`
//! (the same generic driver, `examples/apps/poisson.rs`) on the MPI
//! backend: one rank per MPI process.
//!
//! ```text
//! cargo build --release -p distarray-mpi --example mpi_poisson_cg
//! mpirun -n 4 target/release/examples/mpi_poisson_cg --n 256
//! ```
//!
//! Options: `--n N` (64), `--tol T` (1e-8); `--ranks` is ignored (mpirun's
//! `-n` decides).

#[path = "../../../examples/apps/poisson.rs"]
mod app;

use distarray_mpi::MpiComm;

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let opts = app::Opts::from_args();
    app::run(comm, &opts).map(|_| ())
}
