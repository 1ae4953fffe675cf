//! 3-D periodic diffusion stencil on the threaded backend: an `n³` array
//! tiled over a 3-D process grid, one ghost layer per side from a `Halo`.
//!
//! ```text
//! cargo run --release --example stencil3d                      # n = 64, 20 steps, 2 ranks
//! cargo run --release --example stencil3d -- --n 96 --steps 50 --ranks 8 --no-check
//! ```

use distarray_apps::stencil3d as app;

fn main() -> distarray::Result<()> {
    let opts = app::Opts::from_args();
    distarray::threaded::run_ok(opts.ranks, |comm| app::run(comm, &opts))?;
    Ok(())
}
