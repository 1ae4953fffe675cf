//! Runs distarray's backend-generic conformance suite on [`MpiComm`].
//!
//! ```text
//! mpirun -n 4 target/debug/conformance
//! ```
//!
//! Every rank runs every check; a failing check panics, and the panic hook
//! aborts the whole job (non-zero exit). On success rank 0 prints
//! `conformance: all N checks passed on P ranks (mpi)`.

use distarray::{conformance, OneSidedComm};
use distarray_mpi::MpiComm;

fn main() -> distarray::Result<()> {
    let (env, comm) = MpiComm::init()?;
    if comm.rank() == 0 {
        println!(
            "conformance: running on {} ranks ({} backend, MPI thread level {:?})",
            comm.size(),
            comm.backend_name(),
            env.threading()
        );
    }
    let n = conformance::run_all(&comm);
    if comm.rank() == 0 {
        println!(
            "conformance: all {n} checks passed on {} ranks ({})",
            comm.size(),
            comm.backend_name()
        );
    }
    Ok(())
}
