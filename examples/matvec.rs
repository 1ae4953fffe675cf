//! Distributed matrix-vector product on the threaded backend (the embedded
//! default): prints the time per product, the bandwidth and the error
//! against a serial product.
//!
//! ```text
//! cargo run --release --example matvec                           # N = 5000, 2 ranks, rows
//! cargo run --release --example matvec -- --n 15000 --dist cols --ranks 2
//! cargo run --release --features openblas --example matvec       # CBLAS kernel (libopenblas-dev)
//! ```

use distarray_apps::matvec as app;

fn main() -> distarray::Result<()> {
    let opts = app::Opts::from_args();
    distarray::threaded::run_ok(opts.ranks, |comm| app::run(comm, &opts))?;
    Ok(())
}
