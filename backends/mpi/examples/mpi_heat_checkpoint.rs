//! The 2-D heat equation with checkpoint/restart (`distarray_apps::heat`,
//! the core's generic driver) on the MPI backend.
//!
//! ```text
//! cargo build --release -p distarray-mpi --example mpi_heat_checkpoint
//! mpirun -n 4 target/release/examples/mpi_heat_checkpoint --steps 20 --dir /scratch/heat
//! mpirun -n 3 target/release/examples/mpi_heat_checkpoint --steps 20 --dir /scratch/heat --restart
//! ```
//! Both print the same fingerprint for step 20 (`--ranks` is ignored:
//! mpirun's `-n` decides).

use distarray_apps::heat as app;
use distarray_mpi::MpiComm;

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    let opts = app::Opts::from_args();
    app::run(comm, &opts)?;
    Ok(())
}
