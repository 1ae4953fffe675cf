//! The 2-D Poisson conjugate-gradient solver of `examples/poisson_cg.rs`
//! (the same generic driver, `distarray_apps::poisson`) on the Lamellar
//! backend.
//!
//! ```text
//! cargo build --release -p distarray-lamellar --bins --example lamellar_poisson_cg
//! target/release/distarray-lamellar-run -n 4 -- target/release/examples/lamellar_poisson_cg --n 200
//! ```
//!
//! With `DISTARRAY_COUNT=messages` in the environment the communicator is
//! wrapped in a `CountingComm` and rank 0 also prints the collectives,
//! neighbour exchanges, messages and gets of its rank over the whole run
//! (set-up included) and per iteration; `DISTARRAY_COUNT=one-sided` does
//! the same with the neighbour messages hidden, i.e. with the one-sided
//! ghost updates (packed gets and a synchronisation) that this backend used
//! before it had messages.

use distarray::counting::CountingComm;
use distarray::OneSidedComm;
use distarray_apps::poisson as app;
use distarray_lamellar::LamellarComm;

fn main() -> distarray::Result<()> {
    let comm = LamellarComm::from_env()?;
    let opts = app::Opts::from_args();
    match std::env::var("DISTARRAY_COUNT").as_deref() {
        Ok("messages") => counted(CountingComm::new(comm), &opts),
        Ok("one-sided") => counted(CountingComm::without_exchange(comm), &opts),
        Ok(other) => Err(distarray::Error::InvalidArgument(format!(
            "DISTARRAY_COUNT={other:?}: expected \"messages\" or \"one-sided\""
        ))),
        Err(_) => app::run(comm, &opts).map(|_| ()),
    }
}

/// Runs the solver on `cc` and prints rank 0's counts.
fn counted(cc: CountingComm<LamellarComm>, opts: &app::Opts) -> distarray::Result<()> {
    let (iters, _, _) = app::run(cc.clone(), opts)?;
    let c = cc.counts();
    if cc.rank() == 0 {
        let per = |n: usize| n as f64 / iters.max(1) as f64;
        println!(
            "  rank 0 over the run ({iters} iterations, set-up included): {} collectives \
             ({:.2} per iteration), {} exchanges ({:.2} per iteration), {} messages, {} gets",
            c.collectives,
            per(c.collectives),
            c.exchanges,
            per(c.exchanges),
            c.messages,
            c.gets_total()
        );
    }
    Ok(())
}
