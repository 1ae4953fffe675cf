//! 2-D Poisson equation (5-point stencil) solved by conjugate gradients on
//! the threaded backend: the grid tiled over a 2-D process grid, the search
//! direction a `Ghosted` array (each tile stored inside one ghost layer;
//! per iteration `update_ghosts`, `apply_dot`, `cg_update`, `axpby`).
//!
//! ```text
//! cargo run --release --example poisson_cg                     # 64 x 64, 2 ranks
//! cargo run --release --example poisson_cg -- --n 256 --ranks 4
//! cargo run --release --example poisson_cg -- --n 512 --ranks 4 --compare  # vs row bands, same run
//! ```

use distarray_apps::poisson as app;

fn main() -> distarray::Result<()> {
    let opts = app::Opts::from_args();
    distarray::threaded::run_ok(opts.ranks, |comm| app::run(comm, &opts))?;
    Ok(())
}
