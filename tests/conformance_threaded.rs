//! The backend-generic conformance suite on the threaded backend, P = 1..8,
//! and with the neighbour exchange hidden, P = 1..4.

use distarray::{conformance, threaded};
use rstest::rstest;

#[rstest]
fn conformance_suite(#[values(1, 2, 3, 4, 5, 6, 7, 8)] p: usize) {
    let counts = threaded::run(p, |comm| conformance::run_all(&comm))
        .unwrap_or_else(|e| panic!("P = {p}: {e}"));
    assert_eq!(counts.len(), p);
    assert!(counts
        .iter()
        .all(|&n| n == conformance::checks::<distarray::threaded::ThreadedComm>().len()));
}

/// The same suite with the neighbour exchange hidden: the one-sided
/// fallbacks (a halo's packed gets) that backends without messages run.
#[rstest]
fn conformance_suite_without_exchange(#[values(1, 2, 3, 4)] p: usize) {
    use distarray::counting::CountingComm;
    let counts = threaded::run(p, |comm| {
        conformance::run_all(&CountingComm::without_exchange(comm))
    })
    .unwrap_or_else(|e| panic!("P = {p}: {e}"));
    assert_eq!(counts.len(), p);
}
