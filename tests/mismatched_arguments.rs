//! The conformance checks of ranks passing differently partitioned arrays
//! to one collective call (`mismatched_*`), each alone in its own run (a
//! failing one cannot take the others down), on the threaded backend for
//! P = 1..4, with and without neighbour messages. The full suite in
//! `conformance_threaded` runs them too, one after another.

use distarray::counting::CountingComm;
use distarray::{conformance, threaded, OneSidedComm};
use rstest::rstest;
use std::sync::mpsc;
use std::time::Duration;

/// How long one check may take before it counts as hung.
const HANG: Duration = Duration::from_secs(30);

/// Runs each `mismatched_*` check alone on `p` ranks, under a timeout (a
/// hang is a failure; its threads are left behind); panics naming the
/// ones that failed.
fn each_alone<C: OneSidedComm + 'static>(p: usize, wrap: fn(threaded::ThreadedComm) -> C) {
    let names: Vec<&'static str> = conformance::checks::<C>()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("mismatched_"))
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    let mut failed = Vec::new();
    for name in names {
        let (done, outcome) = mpsc::channel();
        std::thread::spawn(move || {
            let run = threaded::run(p, |comm| {
                let comm = wrap(comm);
                let (_, check) = conformance::checks::<C>()
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .expect("listed above");
                check(&comm);
            });
            let _ = done.send(run.map_err(|e| e.to_string()));
        });
        match outcome.recv_timeout(HANG) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failed.push(format!("{name}: {e}")),
            Err(_) => failed.push(format!("{name}: hung for {HANG:?}")),
        }
    }
    assert!(failed.is_empty(), "P = {p}:\n{}", failed.join("\n"));
}

#[rstest]
fn mismatch_checks(#[values(1, 2, 3, 4)] p: usize) {
    each_alone(p, |comm| comm);
}

#[rstest]
fn mismatch_checks_without_exchange(#[values(1, 2, 3, 4)] p: usize) {
    each_alone(p, CountingComm::without_exchange);
}
