//! The distributed matrix-vector product of `examples/matvec.rs` (the same
//! generic driver, `distarray_apps::matvec`) on the Lamellar backend: one
//! PE per process, started by `distarray-lamellar-run`.
//!
//! ```text
//! cargo build --release -p distarray-lamellar --bins --example lamellar_matvec
//! target/release/distarray-lamellar-run -n 4 -- target/release/examples/lamellar_matvec --n 5000 --dist cols
//! ```
//!
//! Options: `--n N` (5000), `--dist rows|cols` (rows), `--reps R` (10);
//! `--ranks` is ignored (the launcher's `-n` decides).

use distarray_apps::matvec as app;
use distarray_lamellar::LamellarComm;

fn main() -> distarray::Result<()> {
    let comm = LamellarComm::from_env()?;
    let opts = app::Opts::from_args();
    app::run(comm, &opts)
}
