//! The backend-generic conformance suite on the threaded backend, P = 1..8.

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
