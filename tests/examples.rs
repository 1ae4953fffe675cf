//! The example drivers (matvec, Poisson CG) run on small sizes for P = 1..4:
//! they check their own results against serial computations and return
//! `Err` on a mismatch.

#[allow(dead_code)]
#[path = "../examples/apps/matvec.rs"]
mod matvec_app;
#[allow(dead_code)]
#[path = "../examples/apps/poisson.rs"]
mod poisson_app;
#[allow(dead_code)]
#[path = "../examples/apps/stencil3d.rs"]
mod stencil3d_app;

use distarray::threaded;
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
    };
    for r in threaded::run(p, |comm| poisson_app::run(comm, &o)).unwrap() {
        let (iters, resid, err) = r.unwrap();
        assert!(iters > 0 && iters <= 24 * 24);
        assert!(resid <= 1e-10);
        assert!(err < 1e-8, "error against the discrete solution: {err}");
    }
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

#[allow(dead_code)]
#[path = "../examples/apps/scaling.rs"]
mod scaling_app;

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
