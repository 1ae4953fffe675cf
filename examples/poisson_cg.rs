//! 2-D Poisson equation (5-point stencil) solved by conjugate gradients on
//! the threaded backend: the grid tiled over a 2-D process grid, one ghost
//! layer around each tile through a `Halo`.
//!
//! ```text
//! cargo run --release --example poisson_cg                     # 64 x 64, 2 ranks
//! cargo run --release --example poisson_cg -- --n 256 --ranks 4
//! cargo run --release --example poisson_cg -- --n 512 --ranks 4 --compare  # vs row bands, same run
//! ```

#[path = "apps/poisson.rs"]
mod app;

fn main() -> distarray::Result<()> {
    let opts = app::Opts::from_args();
    distarray::threaded::run_ok(opts.ranks, |comm| app::run(comm, &opts))?;
    Ok(())
}
