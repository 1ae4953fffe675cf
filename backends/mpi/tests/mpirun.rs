//! Runs the crate's MPI binaries under the launcher of the MPI library the
//! crate was built against (`mpirun` for Open MPI, `mpiexec.mpich` for
//! MPICH; `MPIEXEC` overrides): the conformance suite on 1 to 4 ranks over
//! shared memory and over TCP, jobs in which one rank panics (which must
//! end promptly with a non-zero exit instead of hanging), the examples, and
//! the MPI-specific failure cases of `src/bin/mpi_faults.rs`.
//!
//! Each job runs under `timeout`, more ranks than cores allowed (Open MPI:
//! `--oversubscribe --mca btl self,vader`; over TCP `--mca btl self,tcp
//! --mca osc pt2pt`; MPICH over TCP: `MPIR_CVAR_NOLOCAL=1 UCX_TLS=tcp,self`).
//! The jobs run one at a time, since MPI ranks busy-wait and the machines
//! this runs on may have only 2 cores.

use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use distarray_apps::poisson as poisson_app;

/// `openmpi`, `mpich` or `other`: the family of the MPI headers the crate
/// was built with (from build.rs).
const FAMILY: &str = env!("DISTARRAY_MPI_FAMILY");

/// One MPI job at a time.
static MPIRUN: Mutex<()> = Mutex::new(());

/// The transport the ranks talk over.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Net {
    /// Shared memory (the default on one node).
    Shm,
    /// TCP over the loopback interface only, as on a cluster without RDMA.
    Tcp,
}

/// A job to launch.
struct Job<'a> {
    binary: &'a str,
    args: &'a [&'a str],
    ranks: usize,
    timeout_secs: u64,
    net: Net,
    /// Extra `--mca` arguments (Open MPI only).
    mca: &'a [&'a str],
}

impl<'a> Job<'a> {
    fn new(binary: &'a str, ranks: usize) -> Self {
        Job {
            binary,
            args: &[],
            ranks,
            timeout_secs: 300,
            net: Net::Shm,
            mca: &[],
        }
    }

    /// Runs the job; returns the output and the wall time.
    fn run(&self) -> (Output, Duration) {
        let _one_at_a_time = MPIRUN.lock().unwrap_or_else(|e| e.into_inner());
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=5", &self.timeout_secs.to_string()]);
        if FAMILY == "openmpi" {
            cmd.arg(launcher("mpirun"));
            cmd.arg("--oversubscribe");
            match self.net {
                Net::Shm => cmd.args(["--mca", "btl", "self,vader"]),
                Net::Tcp => {
                    cmd.args([
                        "--mca",
                        "btl",
                        "self,tcp",
                        "--mca",
                        "btl_tcp_if_include",
                        "lo",
                    ]);
                    // osc/pt2pt, unless the job picks the component
                    if !self.mca.contains(&"osc") {
                        cmd.args(["--mca", "osc", "pt2pt"]);
                    }
                    &mut cmd
                }
            };
            cmd.args(self.mca);
            cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
                .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        } else {
            cmd.arg(launcher(if FAMILY == "mpich" {
                "mpiexec.mpich"
            } else {
                "mpiexec"
            }));
            if self.net == Net::Tcp {
                // every rank as if on another node, through UCX's TCP
                cmd.env("MPIR_CVAR_NOLOCAL", "1").env("UCX_TLS", "tcp,self");
            }
        }
        cmd.args(["-n", &self.ranks.to_string(), self.binary])
            .args(self.args)
            .env("RUST_BACKTRACE", "0");
        let start = Instant::now();
        let out = cmd
            .output()
            .expect("run `timeout <launcher>` (are coreutils and the MPI launcher installed?)");
        (out, start.elapsed())
    }
}

/// `MPIEXEC` if set, else `default`.
fn launcher(default: &str) -> String {
    std::env::var("MPIEXEC").unwrap_or_else(|_| default.to_string())
}

fn describe(out: &Output) -> String {
    format!(
        "exit status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `job` and asserts that it succeeded and printed `expect`.
fn succeeds(job: &Job, expect: &str) -> String {
    let (out, took) = job.run();
    let what = format!(
        "{} {:?} on {} ranks ({:?})",
        job.binary, job.args, job.ranks, job.net
    );
    assert!(
        out.status.success(),
        "{what} failed ({took:?}):\n{}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains(expect),
        "{what}: no {expect:?}:\n{}",
        describe(&out)
    );
    eprintln!("{what}: ok in {took:?}");
    stdout
}

/// The conformance binary passes on `ranks` ranks, rank 0 prints the
/// success line, and Open MPI reported no shared-memory failure (which
/// would mean windows of different communicators collided).
fn conformance(ranks: usize, net: Net, mca: &[&str]) {
    let job = Job {
        mca,
        net,
        // the whole suite on 4 ranks oversubscribing 2 cores takes
        // 3-5 minutes under MPICH
        timeout_secs: 900,
        ..Job::new(env!("CARGO_BIN_EXE_conformance"), ranks)
    };
    let (out, took) = job.run();
    assert!(
        out.status.success(),
        "conformance on {ranks} ranks {net:?} {mca:?} failed ({took:?}):\n{}",
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
    assert!(
        stdout.contains("MPI thread level Serialized"),
        "MpiComm::init must ask for MPI_THREAD_SERIALIZED:\n{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("system call failed"),
        "Open MPI reported a failure:\n{}",
        describe(&out)
    );
    eprintln!("conformance on {ranks} ranks {net:?} {mca:?}: ok in {took:?}");
}

#[test]
fn conformance_1_rank() {
    conformance(1, Net::Shm, &[]);
}

#[test]
fn conformance_2_ranks() {
    conformance(2, Net::Shm, &[]);
}

#[test]
fn conformance_3_ranks() {
    conformance(3, Net::Shm, &[]);
}

#[test]
fn conformance_4_ranks() {
    conformance(4, Net::Shm, &[]);
}

/// Over TCP only (Open MPI: btl tcp + osc/pt2pt, which refuses
/// `MPI_THREAD_MULTIPLE` and whose `MPI_Win_flush_local` does not complete
/// gets; MPICH: UCX's TCP transport, no shared memory).
#[test]
fn conformance_over_tcp_2_ranks() {
    conformance(2, Net::Tcp, &[]);
}

/// Three ranks over TCP: two origins contend for one target's exclusive
/// lock (lost updates with Open MPI's osc/pt2pt when gets were completed
/// with `MPI_Win_flush_local`). Open MPI only: MPICH 4.0.2 with UCX's TCP
/// transport (Debian) hangs in `MPI_Finalize` in about 4 of 10 runs of 3
/// ranks, also for a C program that only calls `MPI_Allreduce`; 2 ranks
/// finish (`conformance_over_tcp_2_ranks`).
#[cfg(mpi_family = "openmpi")]
#[test]
fn conformance_over_tcp_3_ranks() {
    conformance(3, Net::Tcp, &[]);
}

/// The same on Open MPI's osc/sm one-sided component (the faster choice on
/// one node; the default is osc/rdma).
#[cfg(mpi_family = "openmpi")]
#[test]
fn conformance_2_and_4_ranks_osc_sm() {
    conformance(2, Net::Shm, &["--mca", "osc", "sm"]);
    conformance(4, Net::Shm, &["--mca", "osc", "sm"]);
}

/// A panic on one rank ends the job within seconds, non-zero (the panic
/// hook's MPI_Abort); a hang would hit the 60 s timeout (exit 124).
fn panic_ends_job(ranks: usize) {
    const BOUND: Duration = Duration::from_secs(20);
    let job = Job {
        timeout_secs: 60,
        ..Job::new(env!("CARGO_BIN_EXE_panic_rank"), ranks)
    };
    let (out, took) = job.run();
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
    // the hook's message, or (if the launcher dropped the rank's last
    // line when the job was killed) the abort code as the job's status
    assert!(
        stderr.contains("MPI_Abort") || out.status.code() == Some(distarray_mpi::ABORT_CODE),
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
        let job = Job {
            args: &args,
            timeout_secs: 120,
            ..Job::new(&bin, 3)
        };
        let stdout = succeeds(&job, expect);
        assert!(
            stdout.contains("3 rank(s) of the mpi backend"),
            "{name}: {stdout}"
        );
    }
}

/// Runs one mode of `mpi_faults` and expects its success line.
fn fault(mode: &str, ranks: usize, net: Net) {
    let args = [mode];
    let job = Job {
        args: &args,
        net,
        timeout_secs: 120,
        ..Job::new(env!("CARGO_BIN_EXE_mpi_faults"), ranks)
    };
    succeeds(&job, &format!("mpi_faults {mode}: ok"));
}

/// Handles that outlive `MPI_Finalize` (by the `MpiEnv` guard, or by the
/// `mpi` crate's `Universe`) return `Error::Backend` from every operation
/// and never call MPI or touch freed window memory; windows still alive
/// are freed at finalisation (MPICH with UCX aborts otherwise).
#[test]
fn handles_after_finalize_return_errors() {
    fault("after-finalize", 2, Net::Shm);
    fault("universe-finalize", 3, Net::Shm);
}

/// `init` asks for `MPI_THREAD_SERIALIZED`; levels below it are refused,
/// also when the application initialised MPI itself.
#[test]
fn thread_level_below_serialized_is_refused() {
    fault("thread-level", 1, Net::Shm);
    fault("app-funneled", 1, Net::Shm);
}

/// A `get` / `put` / `accumulate` whose later chunk fails completes the
/// chunks already issued before returning the error (over TCP, where gets
/// complete only when their replies arrive).
#[cfg(feature = "fault-injection")]
#[test]
fn failed_chunk_completes_issued_chunks() {
    fault("chunk-failure", 2, Net::Shm);
    // MPICH 4.0.2 over UCX's TCP transport: the assertions pass and both
    // ranks reach MPI_Finalize, where they sometimes wait forever (one in
    // the PMI barrier, the other progressing UCX): 5 runs in 80 on a loaded
    // machine, the same with the build of the session before (5 in 80),
    // once in CI. The same MPICH hang as `crossing_and_leaked_handles_do_not_hang`
    // below; TCP is run on Open MPI.
    if FAMILY != "mpich" {
        fault("chunk-failure", 2, Net::Tcp);
    }
}

/// Issue 22: strided blocks of one shape build one MPI vector type per
/// window, not one per operation; more shapes than a window keeps still
/// read right.
#[test]
fn strided_blocks_reuse_their_datatype() {
    fault("datatype-cache", 2, Net::Shm);
}

/// Under `MPI_THREAD_MULTIPLE`: threads evicting each other's cached
/// datatypes read right, and a thread reading while MPI is finalised gets
/// errors, never a call beside `MPI_Finalize`.
#[test]
fn multiple_threads_share_windows_and_finalise() {
    fault("multiple-threads", 2, Net::Shm);
}

/// Issue 21: two ranks starting non-blocking `Sum` handles on two arrays
/// towards a third rank, in opposite orders, complete (the old design hung
/// in `MPI_Win_lock`: each handle held an exclusive lock epoch from start to
/// wait); a leaked handle hangs no other rank. Shared memory and TCP
/// (osc/pt2pt), 3 ranks, 60 s timeout each.
#[test]
fn crossing_and_leaked_handles_do_not_hang() {
    // MPICH over UCX's TCP transport: both modes pass their assertions
    // and reach MPI_Finalize on every rank, where all three ranks then
    // wait forever inside MPICH (seen with MPICH 4.0.2 from Debian; the
    // conformance suite's same checks over TCP, which run on into more
    // work before finalising, pass). Open issue; TCP is run on Open MPI.
    let nets: &[Net] = if FAMILY == "mpich" {
        &[Net::Shm]
    } else {
        &[Net::Shm, Net::Tcp]
    };
    for &net in nets {
        for mode in ["crossing-handles", "leaked-handle"] {
            let args = [mode];
            let job = Job {
                args: &args,
                net,
                timeout_secs: 60,
                ..Job::new(env!("CARGO_BIN_EXE_mpi_faults"), 3)
            };
            succeeds(&job, &format!("mpi_faults {mode}: ok"));
        }
    }
}

/// Window creation where no one-sided component works (Open MPI over TCP
/// with only osc/rdma, as on a cluster without RDMA): an `Err` on every rank
/// naming the cause and the fix, and the job goes on.
#[cfg(mpi_family = "openmpi")]
#[test]
fn window_creation_failure_names_cause_and_fix() {
    let args = ["window-failure"];
    let job = Job {
        args: &args,
        timeout_secs: 120,
        net: Net::Tcp,
        mca: &["--mca", "osc", "rdma"],
        ..Job::new(env!("CARGO_BIN_EXE_mpi_faults"), 2)
    };
    let stdout = succeeds(&job, "mpi_faults window-failure: ok");
    assert!(stdout.contains("--mca osc pt2pt"), "{stdout}");
}

/// A scratch directory for one test.
fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("distarray-mpi-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The fingerprint the heat example printed.
fn heat_fingerprint(stdout: &str) -> String {
    let at = stdout.find("fingerprint ").expect("a fingerprint line") + "fingerprint ".len();
    stdout[at..at + 16].to_string()
}

/// Runs the heat example on `ranks` ranks with the space-separated
/// `args`; returns its output once it succeeded and printed `expect`.
fn heat(ranks: usize, args: &str, expect: &str) -> String {
    let bin = example("mpi_heat_checkpoint");
    let args: Vec<&str> = args.split_whitespace().collect();
    succeeds(
        &Job {
            args: &args,
            ..Job::new(&bin, ranks)
        },
        expect,
    )
}

/// Checkpoint/restart on MPI: 20 steps on 4 ranks with a checkpoint at 10;
/// the restart at 10 on 3 ranks reaches the same bits at step 20.
#[test]
fn heat_checkpoint_restart_on_another_rank_count() {
    let dir = scratch("heat");
    let (a, b) = (dir.display(), dir.join("b"));
    let b = b.display();
    let full = heat(
        4,
        &format!("--n 90 --steps 20 --checkpoint-every 10 --dir {a}/a"),
        "fingerprint",
    );
    heat(
        4,
        &format!("--n 90 --steps 10 --checkpoint-every 10 --dir {b}"),
        "fingerprint",
    );
    let rest = heat(
        3,
        &format!("--n 90 --steps 20 --checkpoint-every 10 --restart --dir {b}"),
        "restarted from checkpoint step-000010",
    );
    assert_eq!(heat_fingerprint(&rest), heat_fingerprint(&full));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kill -9` of one rank while the job writes its second checkpoint: the
/// job ends, the first checkpoint stays readable, the half-written one is
/// not listed, and a restart on 2 ranks reaches the uninterrupted run's
/// bits.
#[test]
fn kill_9_of_one_rank_mid_checkpoint_keeps_the_previous_one() {
    let dir = scratch("kill");
    let bin = example("mpi_heat_checkpoint");
    let reference = heat(
        2,
        &format!(
            "--n 500 --steps 30 --checkpoint-every 0 --dir {}/ref",
            dir.display()
        ),
        "fingerprint",
    );
    let ck = dir.join("ck");
    let mut killed_mid_write = false;
    // the kill picks the newest process running the example: no other job
    // (heat_checkpoint_restart_on_another_rank_count runs the same binary)
    // may run meanwhile
    let one_at_a_time = MPIRUN.lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 0..5 {
        let _ = std::fs::remove_dir_all(&ck);
        let mut cmd = Command::new(launcher(if FAMILY == "mpich" {
            "mpiexec.mpich"
        } else {
            "mpirun"
        }));
        if FAMILY == "openmpi" {
            cmd.args(["--oversubscribe", "--mca", "btl", "self,vader"])
                .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
                .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        }
        let mut job = cmd
            .args([
                "-n",
                "3",
                &bin,
                "--n",
                "500",
                "--steps",
                "30",
                "--checkpoint-every",
                "10",
                "--chunk-rows",
                "2",
                "--dir",
                ck.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let staging = ck.join(".step-000020.partial").join("u").join("c");
        let start = Instant::now();
        while !staging.exists() && start.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_micros(200));
        }
        // SIGKILL one rank (not the launcher): the newest process running the example
        let pids = Command::new("pgrep")
            .args(["-n", "-f", &format!("^{bin}")])
            .output()
            .unwrap();
        let pid = String::from_utf8_lossy(&pids.stdout).trim().to_string();
        assert!(!pid.is_empty(), "no rank process found");
        Command::new("kill").args(["-9", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while job.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the job hung after one rank was killed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if ck.join("step-000010").exists() && !ck.join("step-000020").exists() {
            killed_mid_write = true;
            break;
        }
        eprintln!("attempt {attempt}: the kill missed the write window; again");
    }
    drop(one_at_a_time);
    assert!(
        killed_mid_write,
        "could not kill a rank while the job wrote the checkpoint"
    );
    let rest = heat(
        2,
        &format!(
            "--n 500 --steps 30 --checkpoint-every 10 --restart --dir {}",
            ck.display()
        ),
        "restarted from checkpoint step-000010",
    );
    assert_eq!(heat_fingerprint(&rest), heat_fingerprint(&reference));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Parallel HDF5 (feature `hdf5`): `src/bin/hdf5_io.rs` writes and reads
/// every element type in 1 to 3 dimensions across rank counts and
/// partitions, h5py reads what it wrote and writes files it reads
/// (`tests/hdf5_clients.py`; block-cyclic arrays too), and bad input gives
/// an `Err` on every rank.
/// The ScaLAPACK wrappers (LU and Cholesky solves by their residual, gemm
/// against matmul, the four element types, the error cases) on 1–4 ranks.
#[cfg(feature = "scalapack")]
#[test]
fn scalapack_wrappers() {
    for ranks in 1..=4 {
        let job = Job {
            timeout_secs: 180,
            ..Job::new(env!("CARGO_BIN_EXE_scalapack_check"), ranks)
        };
        succeeds(&job, "scalapack_check: ok");
    }
}

/// The ScaLAPACK wrappers when the ranks break the collective contract
/// (`scalapack_check mismatch`: rank 0 passes another shape, block size,
/// process grid, number of right-hand sides, element type or `alpha` than
/// the others, or another grid to `Grid::new`): an `InvalidArgument` on
/// every rank, never an abort, a hang or a wrong answer, and the ranks stay
/// in step (a good solve after each).
#[cfg(feature = "scalapack")]
#[test]
fn scalapack_mismatched_arguments() {
    for ranks in [2, 3, 4] {
        let job = Job {
            args: &["mismatch"],
            timeout_secs: 120,
            ..Job::new(env!("CARGO_BIN_EXE_scalapack_check"), ranks)
        };
        succeeds(&job, "scalapack_check mismatch: ok");
    }
}

#[cfg(feature = "hdf5")]
mod hdf5 {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A fresh directory for one test's files.
    fn scratch(test: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hdf5-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        dir
    }

    /// Runs `hdf5_io` with `args` on `ranks` ranks and expects its success line.
    fn hdf5_io(args: &[&str], ranks: usize) -> String {
        let job = Job {
            args,
            timeout_secs: 120,
            ..Job::new(env!("CARGO_BIN_EXE_hdf5_io"), ranks)
        };
        succeeds(&job, &format!("hdf5_io {}: ok", args[0]))
    }

    /// Written on 4 ranks (2 x 2 grid), read on 3, 1, 2 and 4 ranks (MPICH:
    /// 3 and 1) with other partitions (1-D with an empty part, columns,
    /// first dimension) and the default one: every element has the same
    /// bits. Then written on 3 ranks (3 x 1 grid) and read on 4.
    #[test]
    fn hdf5_round_trip_across_rank_counts_and_partitions() {
        let dir = scratch("round-trip");
        let file = dir.join("p4.h5");
        let file = file.to_str().expect("utf-8 path");
        let out = hdf5_io(&["write", file, "1"], 4);
        assert!(out.contains("36 datasets, grid [2, 2]"), "{out}");
        // MPICH is slow with more ranks than cores (it busy-waits): fewer jobs
        let readers: &[usize] = if FAMILY == "mpich" {
            &[3, 1]
        } else {
            &[3, 1, 2, 4]
        };
        for &ranks in readers {
            let out = hdf5_io(&["read", file, "1"], ranks);
            assert!(out.contains("36 datasets checked bit for bit"), "{out}");
        }
        let file3 = dir.join("p3.h5");
        let file3 = file3.to_str().expect("utf-8 path");
        hdf5_io(&["write", file3, "4"], 3);
        hdf5_io(&["read", file3, "4"], 4);
        // another seed must not pass: the check can fail
        let job = Job {
            args: &["read", file3, "5"],
            timeout_secs: 120,
            ..Job::new(env!("CARGO_BIN_EXE_hdf5_io"), 2)
        };
        let (out, _) = job.run();
        assert!(
            !out.status.success(),
            "wrong values passed:\n{}",
            describe(&out)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `python3` with h5py and numpy, or a failure that says how to get them.
    fn python() -> Command {
        let probe = Command::new("python3")
            .args(["-c", "import h5py, numpy"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "the HDF5 client test needs Python's h5py and numpy: `pip install h5py numpy` \
                 (scripts/test-all.sh installs them):\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("the HDF5 client test needs python3 with h5py and numpy: {e}"),
        }
        Command::new("python3")
    }

    fn clients(args: &[&str]) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hdf5_clients.py");
        let out = python()
            .arg(script)
            .args(args)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "hdf5_clients.py {args:?} failed:\n{}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// h5py reads what distarray wrote on 4 ranks and finds every element
    /// and attribute exactly; distarray reads on 3 and 4 ranks (MPICH: 3) what h5py
    /// wrote (big-endian, chunked and gzip-compressed datasets among them)
    /// exactly; h5dump shows complex numbers as h5py's `{r, i}` compound.
    #[test]
    fn hdf5_real_clients_h5py_and_h5dump() {
        let dir = scratch("clients");
        let ours = dir.join("distarray.h5");
        let ours = ours.to_str().expect("utf-8 path");
        hdf5_io(&["write", ours, "6"], 4);
        let out = clients(&["check", ours, "6"]);
        assert!(
            out.contains("h5py check: 36 datasets equal bit for bit"),
            "{out}"
        );
        // h5py must see a wrong seed as wrong
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hdf5_clients.py");
        let wrong = python()
            .args([script, "check", ours, "7"])
            .output()
            .expect("run python3");
        assert!(!wrong.status.success(), "h5py accepted wrong values");

        let theirs = dir.join("h5py.h5");
        let theirs = theirs.to_str().expect("utf-8 path");
        let out = clients(&["write", theirs, "9"]);
        assert!(out.contains("h5py write: 36 datasets"), "{out}");
        let readers: &[usize] = if FAMILY == "mpich" { &[3] } else { &[3, 4] };
        for &ranks in readers {
            let out = hdf5_io(&["read", theirs, "9"], ranks);
            assert!(out.contains("36 datasets checked bit for bit"), "{out}");
        }

        if let Ok(dump) = Command::new("h5dump").args(["-H", ours]).output() {
            let text = String::from_utf8_lossy(&dump.stdout);
            assert!(dump.status.success(), "h5dump failed:\n{}", describe(&dump));
            for want in [
                "DATASET \"c128_3d\"",
                "H5T_IEEE_F64LE \"r\";",
                "H5T_IEEE_F32LE \"i\";",
                "H5T_STD_I8LE",
                "H5T_STD_U64LE",
                "SIMPLE { ( 5, 6, 7 ) / ( 5, 6, 7 ) }",
            ] {
                assert!(text.contains(want), "h5dump -H: no {want:?}:\n{text}");
            }
        } else {
            eprintln!("h5dump not installed (hdf5-tools): skipped the h5dump check");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Block-cyclic arrays (2-D, blocks dividing neither extent, element
    /// `[i, j]` = `i * ncols + j`): h5py reads what they wrote on 4 ranks
    /// (2 x 2 grid) and 3 ranks (1 x 3 grid) and finds every element in its
    /// place, and refuses a file with two elements swapped; distarray reads
    /// what h5py wrote (chunked, big-endian and contiguous datasets) into
    /// block-cyclic arrays on 3 and 4 ranks (MPICH: 3) and checks every
    /// element.
    #[test]
    fn hdf5_h5py_and_block_cyclic_arrays() {
        let dir = scratch("cyclic");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hdf5_clients.py");
        let writers: &[(usize, &str)] = if FAMILY == "mpich" {
            &[(3, "[1, 3]")]
        } else {
            &[(4, "[2, 2]"), (3, "[1, 3]")]
        };
        for &(ranks, grid) in writers {
            let ours = dir.join(format!("cyclic-{ranks}.h5"));
            let ours = ours.to_str().expect("utf-8 path");
            let out = hdf5_io(&["cyclic-write", ours], ranks);
            assert!(
                out.contains(&format!("3 block-cyclic datasets, grid {grid}")),
                "{out}"
            );
            let out = clients(&["check-cyclic", ours]);
            assert!(out.contains("h5py check-cyclic: 3 datasets equal"), "{out}");
        }
        // h5py must see misplaced elements
        let swapped = dir.join("swapped.h5");
        let swapped = swapped.to_str().expect("utf-8 path");
        let out = hdf5_io(&["cyclic-write", swapped, "swap"], 2);
        assert!(out.contains("(2 elements swapped)"), "{out}");
        let wrong = python()
            .args([script, "check-cyclic", swapped])
            .output()
            .expect("run python3");
        assert!(
            !wrong.status.success()
                && String::from_utf8_lossy(&wrong.stderr)
                    .contains("cyclic_f64: 2 elements misplaced, first at (0, 3)"),
            "h5py accepted swapped elements:\n{}",
            describe(&wrong)
        );

        let theirs = dir.join("h5py-cyclic.h5");
        let theirs = theirs.to_str().expect("utf-8 path");
        let out = clients(&["write-cyclic", theirs]);
        assert!(out.contains("h5py write-cyclic: 3 datasets"), "{out}");
        let readers: &[usize] = if FAMILY == "mpich" { &[3] } else { &[3, 4] };
        for &ranks in readers {
            let out = hdf5_io(&["cyclic-read", theirs], ranks);
            assert!(out.contains("3 block-cyclic datasets checked"), "{out}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Missing, unreadable, truncated and corrupted files, paths and names
    /// that differ between ranks, arrays whose shape, element type or
    /// partition differs between ranks (block-cyclic on rank 0 only, which
    /// hung), wrong element types, shapes and dimension counts, existing
    /// names: an `Err` on every rank, no hang, and the ranks stay in step
    /// (a good read afterwards).
    #[test]
    fn hdf5_bad_input_errors_on_every_rank() {
        for ranks in [1, 3] {
            let dir = scratch(&format!("faults-{ranks}"));
            let out = hdf5_io(&["faults", dir.to_str().expect("utf-8 path")], ranks);
            assert!(out.contains("bad inputs refused on every rank"), "{out}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
/// The tokens after `relative residual ` and `solution bits hash ` in the
/// Poisson example's report.
fn residual_and_hash(stdout: &str) -> (String, String) {
    let after = |key: &str| {
        let at = stdout
            .find(key)
            .unwrap_or_else(|| panic!("no {key:?} in:\n{stdout}"));
        stdout[at + key.len()..]
            .split(|c: char| c == ',' || c.is_whitespace())
            .next()
            .unwrap_or_default()
            .to_string()
    };
    (after("relative residual "), after("solution bits hash "))
}

/// `--exact`: the Poisson CG prints the same final residual (shortest
/// round-trip form) and the same hash of the solution's bits on 1, 2, 3
/// and 4 MPI ranks, plain and single-reduction, and the same residual as
/// the threaded backend on 2 ranks.
#[test]
fn poisson_exact_same_bits_on_1_to_4_ranks() {
    let bin = example("mpi_poisson_cg");
    for single in [false, true] {
        let mut args = vec!["--n", "40", "--exact", "--no-baseline"];
        if single {
            args.push("--single-reduction");
        }
        let mut seen: Option<(String, String)> = None;
        for ranks in 1..=4 {
            let job = Job {
                args: &args,
                timeout_secs: 120,
                ..Job::new(&bin, ranks)
            };
            let got = residual_and_hash(&succeeds(&job, "solution bits hash"));
            match &seen {
                None => seen = Some(got),
                Some(want) => assert_eq!(&got, want, "{args:?} on {ranks} ranks"),
            }
        }
        let opts = poisson_app::Opts {
            n: 40,
            tol: 1e-8,
            ranks: 2,
            compare: false,
            baseline: false,
            overlap: true,
            single_reduction: single,
            exact: true,
        };
        let threaded =
            distarray::threaded::run_ok(2, |comm| poisson_app::run(comm, &opts)).unwrap();
        let (want_resid, _) = seen.expect("four runs");
        assert_eq!(
            format!("{:?}", threaded[0].1),
            want_resid,
            "threaded backend"
        );
    }
}
