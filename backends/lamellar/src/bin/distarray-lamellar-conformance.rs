//! Runs distarray's backend-generic conformance suite on [`LamellarComm`].
//!
//! ```text
//! distarray-lamellar-run -n 4 -- distarray-lamellar-conformance
//! ```
//!
//! Rank 0 prints `conformance: all checks passed on P ranks` at the end.
//! `--panic-on R` makes PE `R` panic once the world is up while the others
//! wait in a barrier (used by the launcher's failure test).

use distarray::OneSidedComm;
use distarray_lamellar::LamellarComm;

fn main() {
    let mut panic_on = None;
    let mut timings = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--timings" => timings = true,
            "--panic-on" => {
                panic_on = args.next().and_then(|v| v.parse::<usize>().ok());
                assert!(panic_on.is_some(), "--panic-on needs a rank");
            }
            other => {
                eprintln!("unknown argument {other:?}; usage: distarray-lamellar-conformance [--timings] [--panic-on RANK]");
                std::process::exit(2);
            }
        }
    }
    let comm = LamellarComm::from_env().expect("starting the Lamellar world");
    if let Some(r) = panic_on {
        comm.barrier().unwrap();
        if comm.rank() == r {
            panic!("deliberate panic on PE {r}");
        }
        // The others block here until the launcher stops them.
        comm.barrier().unwrap();
        comm.barrier().unwrap();
        println!(
            "PE {} passed a barrier that a panicked PE never reached",
            comm.rank()
        );
        return;
    }
    let start = std::time::Instant::now();
    let n = if timings {
        // The same as `run_all`, with the time of every check.
        let all = distarray::conformance::checks::<LamellarComm>();
        for (name, check) in &all {
            comm.barrier().unwrap();
            let t = std::time::Instant::now();
            check(&comm);
            if comm.rank() == 0 {
                println!("{name}: {:.3} s", t.elapsed().as_secs_f64());
            }
        }
        comm.barrier().unwrap();
        all.len()
    } else {
        distarray::conformance::run_all(&comm)
    };
    if comm.rank() == 0 {
        println!(
            "conformance: all checks passed on {} ranks ({n} checks, {:.2} s)",
            comm.size(),
            start.elapsed().as_secs_f64()
        );
    }
}
