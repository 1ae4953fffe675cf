//! The 2-D Poisson conjugate-gradient solver of `examples/poisson_cg.rs`
//! (the same generic driver, `distarray_apps::poisson`) on the Lamellar
//! backend.
//!
//! ```text
//! cargo build --release -p distarray-lamellar --bins --example lamellar_poisson_cg
//! target/release/distarray-lamellar-run -n 4 -- target/release/examples/lamellar_poisson_cg --n 200
//! ```

use distarray_apps::poisson as app;
use distarray_lamellar::LamellarComm;

fn main() -> distarray::Result<()> {
    let comm = LamellarComm::from_env()?;
    let opts = app::Opts::from_args();
    app::run(comm, &opts).map(|_| ())
}
