//! Per-call costs of the collectives and the column-split matvec of the
//! reproducible plan against the accumulate-based product, on the threaded
//! backend (the same generic driver runs on MPI: `mpi_scaling`).
//!
//! ```text
//! cargo run --release --example scaling -- --ranks 2 --n 2000 --reps 20
//! ```

use distarray_apps::scaling as app;

fn main() -> distarray::Result<()> {
    let opts = app::Opts::from_args();
    let results = distarray::threaded::run(opts.ranks, |comm| app::run(comm, &opts))?;
    results.into_iter().collect()
}
