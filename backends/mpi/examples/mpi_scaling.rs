//! The scaling driver of `examples/scaling.rs` (`distarray_apps::scaling`)
//! on the MPI backend: per-call latencies of the allreduce, the old
//! allgather-based reduction, barrier and gets, and the column-split
//! matvec (accumulates vs the reproducible plan), in one run.
//!
//! ```text
//! cargo build --release -p distarray-mpi --example mpi_scaling
//! mpirun -n 2 target/release/examples/mpi_scaling --n 2000 --reps 20
//! ```

use distarray_apps::scaling as app;
use distarray_mpi::MpiComm;

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let opts = app::Opts::from_args();
    app::run(comm, &opts)
}
