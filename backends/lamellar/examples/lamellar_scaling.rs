//! The scaling driver of `examples/scaling.rs` (`distarray_apps::scaling`)
//! on the Lamellar backend: per-call latencies of the tree allreduce, the
//! old allgather-based reduction, barrier and gets, and the column-split
//! matvec (accumulates vs the reproducible plan), in one run.
//!
//! ```text
//! cargo build --release -p distarray-lamellar --bins --example lamellar_scaling
//! target/release/distarray-lamellar-run -n 2 -- target/release/examples/lamellar_scaling --n 2000
//! ```

use distarray_apps::scaling as app;
use distarray_lamellar::LamellarComm;

fn main() -> distarray::Result<()> {
    let comm = LamellarComm::from_env()?;
    let opts = app::Opts::from_args();
    app::run(comm, &opts)
}
