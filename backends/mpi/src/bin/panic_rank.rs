//! A job in which rank 1 panics while every other rank waits in a barrier.
//! The panic hook must end the whole job promptly with a non-zero exit
//! (checked by `tests/mpirun.rs`); without it the job would hang.

use distarray::OneSidedComm;
use distarray_mpi::MpiComm;

fn main() -> distarray::Result<()> {
    let (_env, comm) = MpiComm::init()?;
    // A window alive on every rank: its collective free must not hang either.
    let _w = comm.create_window::<f64>(16)?;
    comm.barrier()?;
    if comm.rank() == 1 || comm.size() == 1 {
        panic!("deliberate panic on rank {}", comm.rank());
    }
    comm.barrier()?; // never completes: rank 1 is gone
    println!("rank {}: barrier passed (must not happen)", comm.rank());
    Ok(())
}
