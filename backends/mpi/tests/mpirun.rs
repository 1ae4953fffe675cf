//! Runs the crate's MPI binaries under `mpirun` (Open MPI): the conformance
//! suite on 1 to 4 ranks, and a job in which one rank panics, which must
//! end promptly with a non-zero exit instead of hanging.
//!
//! Needs `mpirun` on `PATH`. Each job runs under `timeout` and with
//! `--oversubscribe --mca btl self,vader` (shared memory only, more ranks
//! than cores allowed); the jobs run one at a time, since MPI ranks
//! busy-wait and the machines this runs on may have only 2 cores.

use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One mpirun job at a time.
static MPIRUN: Mutex<()> = Mutex::new(());

/// Runs `binary` on `ranks` ranks under `timeout <secs> mpirun ...` (plus
/// the extra `mca` arguments); returns the output and the wall time.
fn mpirun(binary: &str, ranks: usize, timeout_secs: u64, mca: &[&str]) -> (Output, Duration) {
    let _one_at_a_time = MPIRUN.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let out = Command::new("timeout")
        .args(["--kill-after=5", &timeout_secs.to_string(), "mpirun"])
        .args(["--oversubscribe", "--mca", "btl", "self,vader"])
        .args(mca)
        .args(["-n", &ranks.to_string(), binary])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run `timeout mpirun` (are coreutils and Open MPI's mpirun installed?)");
    (out, start.elapsed())
}

fn describe(out: &Output) -> String {
    format!(
        "exit status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The conformance binary passes on `ranks` ranks, rank 0 prints the
/// success line, and Open MPI reported no shared-memory failure (which
/// would mean windows of different communicators collided).
fn conformance(ranks: usize, mca: &[&str]) {
    let (out, took) = mpirun(env!("CARGO_BIN_EXE_conformance"), ranks, 300, mca);
    assert!(
        out.status.success(),
        "conformance on {ranks} ranks {mca:?} failed ({took:?}):\n{}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expect = format!("passed on {ranks} ranks (mpi)");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("conformance: all") && l.contains(&expect)),
        "no success line from rank 0:\n{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("system call failed"),
        "Open MPI reported a failure:\n{}",
        describe(&out)
    );
    eprintln!("conformance on {ranks} ranks {mca:?}: ok in {took:?}");
}

#[test]
fn conformance_1_rank() {
    conformance(1, &[]);
}

#[test]
fn conformance_2_ranks() {
    conformance(2, &[]);
}

#[test]
fn conformance_3_ranks() {
    conformance(3, &[]);
}

#[test]
fn conformance_4_ranks() {
    conformance(4, &[]);
}

/// The same on Open MPI's osc/sm one-sided component (the faster choice on
/// one node; the default is osc/rdma).
#[test]
fn conformance_2_and_4_ranks_osc_sm() {
    conformance(2, &["--mca", "osc", "sm"]);
    conformance(4, &["--mca", "osc", "sm"]);
}

/// A panic on one rank ends the job within seconds, non-zero (the panic
/// hook's MPI_Abort); a hang would hit the 60 s timeout (exit 124).
fn panic_ends_job(ranks: usize) {
    const BOUND: Duration = Duration::from_secs(20);
    let (out, took) = mpirun(env!("CARGO_BIN_EXE_panic_rank"), ranks, 60, &[]);
    assert_ne!(
        out.status.code(),
        Some(124),
        "job hung after a rank panicked:\n{}",
        describe(&out)
    );
    assert!(
        !out.status.success(),
        "job with a panicking rank exited 0:\n{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("deliberate panic"),
        "panic message not printed:\n{}",
        describe(&out)
    );
    assert!(
        stderr.contains("MPI_Abort"),
        "job did not end through MPI_Abort:\n{}",
        describe(&out)
    );
    assert!(
        took < BOUND,
        "job took {took:?} (bound {BOUND:?}) to end after the panic"
    );
    eprintln!("panic on {ranks} ranks: job ended in {took:?}");
}

#[test]
fn panic_on_one_rank_ends_job_2_ranks() {
    panic_ends_job(2);
}

#[test]
fn panic_on_one_rank_ends_job_4_ranks() {
    panic_ends_job(4);
}

/// Path of an example binary of this crate (`cargo test` builds examples
/// next to the test binaries: target/<profile>/examples/).
fn example(name: &str) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built (cargo test builds the examples)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// The matvec and Poisson CG examples (the core's generic drivers) run on
/// MPI and check their own results against serial computations.
#[test]
fn examples_run_on_mpi() {
    for (name, args, expect) in [
        (
            "mpi_matvec",
            vec!["--n", "300", "--dist", "cols", "--reps", "2"],
            "max relative error",
        ),
        (
            "mpi_matvec",
            vec!["--n", "301", "--dist", "rows", "--reps", "2"],
            "max relative error",
        ),
        (
            "mpi_poisson_cg",
            vec!["--n", "40"],
            "max difference from a serial CG solve",
        ),
    ] {
        let bin = example(name);
        let _one_at_a_time = MPIRUN.lock().unwrap_or_else(|e| e.into_inner());
        let out = Command::new("timeout")
            .args([
                "--kill-after=5",
                "120",
                "mpirun",
                "--oversubscribe",
                "--mca",
                "btl",
                "self,vader",
                "-n",
                "3",
                &bin,
            ])
            .args(&args)
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .output()
            .expect("run mpirun");
        assert!(
            out.status.success(),
            "{name} {args:?} failed:\n{}",
            describe(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(expect) && stdout.contains("3 rank(s) of the mpi backend"),
            "{name}:\n{}",
            describe(&out)
        );
    }
}
