//! The cost of the threaded backend's checking mode: the backend-generic
//! conformance suite timed under `threaded::run` (the default), under
//! `threaded::run_checked` (race detection, OS scheduling) and under
//! `threaded::replay` (race detection and a controlled schedule), for
//! several rank counts. Each figure is the median of `--reps` runs,
//! measured alternately in one process.
//!
//! ```text
//! cargo run --release --example checking_overhead -- --reps 5
//! ```

use std::time::Instant;

use distarray::{conformance, threaded};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut reps = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reps" => reps = args.next().and_then(|v| v.parse().ok()).expect("--reps N"),
            other => panic!("unknown option {other} (options: --reps N)"),
        }
    }
    println!("conformance suite, median of {reps} runs (ms): P, run, run_checked, replay, ratios");
    for p in [1, 2, 4, 8] {
        let (mut plain, mut checked, mut sched) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            let t = Instant::now();
            threaded::run(p, |c| conformance::run_all(&c)).expect("run");
            plain.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            threaded::run_checked(p, |c| conformance::run_all(&c)).expect("run_checked");
            checked.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            threaded::replay(p, rep as u64, |c| conformance::run_all(&c)).expect("replay");
            sched.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (a, b, c) = (median(plain), median(checked), median(sched));
        println!(
            "P = {p}: {a:8.1} {b:8.1} {c:8.1}   run_checked / run = {:.2}, replay / run = {:.2}",
            b / a,
            c / a
        );
    }
}
