//! The example drivers (matvec, Poisson CG) run on small sizes for P = 1..4:
//! they check their own results against serial computations and return
//! `Err` on a mismatch.

use distarray::threaded;
use distarray_apps::matvec as matvec_app;
use distarray_apps::poisson as poisson_app;
use distarray_apps::scaling as scaling_app;
use distarray_apps::stencil3d as stencil3d_app;
use rstest::rstest;

#[rstest]
fn matvec_example(#[values(1, 2, 3, 4)] p: usize, #[values(true, false)] rows: bool) {
    let o = matvec_app::Opts {
        n: 97,
        rows,
        reps: 2,
        ranks: p,
    };
    for r in threaded::run(p, |comm| matvec_app::run(comm, &o)).unwrap() {
        r.unwrap();
    }
}

#[rstest]
fn poisson_example(#[values(1, 2, 3, 4)] p: usize) {
    let o = poisson_app::Opts {
        n: 24,
        tol: 1e-10,
        ranks: p,
        compare: p == 4,
        baseline: false,
        overlap: p != 2,
        single_reduction: p == 3,
        exact: p == 2,
    };
    for r in threaded::run(p, |comm| poisson_app::run(comm, &o)).unwrap() {
        let (iters, resid, err) = r.unwrap();
        assert!(iters > 0 && iters <= 24 * 24);
        assert!(resid <= 1e-10);
        assert!(err < 1e-8, "error against the discrete solution: {err}");
    }
}

/// `--exact`: the Poisson CG's residual history and solution have the
/// same bits on 1, 2, 3 and 4 ranks, on the 2-D tiles and on the row bands
/// (and the two layouts agree with each other), for plain and
/// single-reduction CG.
#[rstest]
fn poisson_exact_same_bits_on_1_to_4_ranks(#[values(false, true)] single_reduction: bool) {
    let o = poisson_app::Opts {
        n: 23,
        tol: 1e-10,
        ranks: 1,
        compare: false,
        baseline: false,
        overlap: true, // the overlapped apply: the same bits as without
        single_reduction,
        exact: true,
    };
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut first: Option<(Vec<u64>, Vec<u64>)> = None;
    for bands in [false, true] {
        for p in 1..=4 {
            let runs = threaded::run_ok(p, |comm| poisson_app::solve(comm, &o, bands)).unwrap();
            for (rank, (history, x)) in runs.iter().enumerate() {
                assert!(history.len() > 10, "CG ran: {} iterations", history.len());
                assert_eq!(x.len(), 23 * 23);
                let got = (bits(history), bits(x));
                match &first {
                    None => first = Some(got),
                    Some(want) => {
                        assert_eq!(
                            got.0, want.0,
                            "residual history: P = {p}, bands = {bands}, rank {rank}"
                        );
                        assert_eq!(
                            got.1, want.1,
                            "solution: P = {p}, bands = {bands}, rank {rank}"
                        );
                    }
                }
            }
        }
    }
}

/// The overlapped apply (`Ghosted::update_ghosts_and_apply_dot`) computes
/// every point whole: with exact sums, the residual history and the
/// solution have the same bits as with `--no-overlap`.
#[rstest]
fn poisson_overlap_changes_no_bit(#[values(2, 4)] p: usize) {
    let run = |overlap: bool| {
        let o = poisson_app::Opts {
            n: 21,
            tol: 1e-10,
            ranks: p,
            compare: false,
            baseline: false,
            overlap,
            single_reduction: false,
            exact: true,
        };
        threaded::run_ok(p, |comm| poisson_app::solve(comm, &o, false)).unwrap()
    };
    let (with, without) = (run(true), run(false));
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (a, b) in with.iter().zip(&without) {
        assert_eq!(bits(&a.0), bits(&b.0), "residual history, P = {p}");
        assert_eq!(bits(&a.1), bits(&b.1), "solution, P = {p}");
    }
}

/// Without `--exact` the rank count changes the rounding (the property
/// the exact mode removes): the histories on 1 and 3 ranks differ in their
/// bits somewhere, while both converge.
#[test]
fn poisson_ordered_sums_depend_on_the_rank_count() {
    let o = poisson_app::Opts {
        n: 23,
        tol: 1e-10,
        ranks: 1,
        compare: false,
        baseline: false,
        overlap: false,
        single_reduction: false,
        exact: false,
    };
    let h1 = threaded::run_ok(1, |comm| poisson_app::solve(comm, &o, true)).unwrap();
    let h3 = threaded::run_ok(3, |comm| poisson_app::solve(comm, &o, true)).unwrap();
    assert_ne!(
        h1[0].0, h3[0].0,
        "ordered sums happened to agree on 1 and 3 ranks"
    );
}

#[rstest]
fn stencil3d_example(#[values(1, 2, 3, 4, 8)] p: usize) {
    let o = stencil3d_app::Opts {
        n: 10,
        steps: 3,
        ranks: p,
        check: true,
        baseline: p == 2,
    };
    // the driver compares with the serial run bit for bit
    threaded::run_ok(p, |comm| stencil3d_app::run(comm, &o)).unwrap();
    assert_eq!(stencil3d_app::grid_3d(8), [2, 2, 2]);
    assert_eq!(stencil3d_app::grid_3d(12), [2, 2, 3]);
}

#[rstest]
fn scaling_example(#[values(1, 3)] p: usize) {
    let o = scaling_app::Opts {
        n: 31,
        reps: 3,
        iters: 5,
        ranks: p,
    };
    for r in threaded::run(p, |comm| scaling_app::run(comm, &o)).unwrap() {
        r.unwrap();
    }
}
