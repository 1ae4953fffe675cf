//! The 2-D heat equation with checkpoint/restart on the threaded backend
//! (needs the `zarr` feature).
//!
//! ```text
//! cargo run --release --features zarr --example heat_checkpoint -- --ranks 4 --steps 20 --dir /tmp/heat
//! cargo run --release --features zarr --example heat_checkpoint -- --ranks 3 --steps 20 --dir /tmp/heat --restart
//! ```
//! Both print the same fingerprint for step 20: the restarted run, on 3
//! ranks from the checkpoint at step 10, gives the same bits.

use distarray_apps::heat as app;

fn main() -> distarray::Result<()> {
    let opts = app::Opts::from_args();
    distarray::threaded::run_ok(opts.ranks, |comm| app::run(comm, &opts))?;
    Ok(())
}
