//! Runs the conformance suite on 1..4 PEs through `distarray-lamellar-run`,
//! and checks that a panicking PE ends the whole job quickly and leaves no
//! shared-memory files behind.
//!
//! Jobs run one at a time (the machine may have few cores), each under a
//! time limit: a hang fails the test instead of blocking it.
#![cfg(feature = "conformance")]

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const RUN: &str = env!("CARGO_BIN_EXE_distarray-lamellar-run");
const CONFORMANCE: &str = env!("CARGO_BIN_EXE_distarray-lamellar-conformance");

/// One job at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs the launcher with `args`; kills it and panics after `limit`.
fn launch(args: &[&str], limit: Duration) -> (Output, Duration) {
    launch_env(args, &[], limit)
}

/// [`launch`] with extra environment variables (the PEs inherit them).
fn launch_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(RUN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting distarray-lamellar-run");
    // Drain the pipes in threads so that a chatty job cannot block.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            // SIGTERM lets the launcher stop its PEs and clean up.
            // SAFETY: `kill` on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
            let stderr = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
            panic!("job {args:?} exceeded {limit:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let output = Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    };
    (output, elapsed)
}

fn shm_files() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("lamellar_"))
                .collect()
        })
        .unwrap_or_default()
}

/// `lamellar_*` files mapped by some live process (another job's).
fn mapped_by_anyone() -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if e.file_name()
            .to_str()
            .is_some_and(|s| s.parse::<u32>().is_ok())
        {
            if let Ok(maps) = std::fs::read_to_string(e.path().join("maps")) {
                for line in maps.lines() {
                    if let Some(at) = line.find("/dev/shm/lamellar_") {
                        let name = line[at + 9..].split_whitespace().next().unwrap_or("");
                        set.insert(name.to_string());
                    }
                }
            }
        }
    }
    set
}

/// Files that appeared since `before` and that no process uses.
fn leftovers(before: &BTreeSet<String>) -> Vec<String> {
    let busy = mapped_by_anyone();
    shm_files()
        .into_iter()
        .filter(|n| !before.contains(n) && !busy.contains(n))
        .collect()
}

/// Runs the suite on `pes` PEs; `threads`: Lamellar's work-stealing
/// executor with that many workers instead of the launcher's default
/// single-thread executor.
fn conformance_with(pes: usize, threads: Option<usize>) {
    conformance_env(pes, threads, &[], "rdma mailboxes");
}

/// [`conformance_with`] with extra environment variables; `transport`:
/// the neighbour messages' transport the job must report.
fn conformance_env(pes: usize, threads: Option<usize>, env: &[(&str, &str)], transport: &str) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = shm_files();
    let n = pes.to_string();
    let t = threads.map(|t| t.to_string());
    let mut args = vec!["-n", &n];
    if let Some(t) = &t {
        args.extend(["--threads", t]);
    }
    args.extend(["--", CONFORMANCE]);
    let (out, elapsed) = launch_env(&args, env, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "conformance on {pes} PEs failed: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let expect = format!("[PE 0] conformance: all checks passed on {pes} ranks");
    assert!(
        stdout.contains(&expect),
        "missing {expect:?} in\n{stdout}\n--- stderr\n{stderr}"
    );
    let expect = format!("[PE 0] neighbour messages: {transport}");
    assert!(stdout.contains(&expect), "missing {expect:?} in\n{stdout}");
    eprintln!("conformance on {pes} PEs ({threads:?} worker threads, {env:?}): {elapsed:.2?}");
    let left = leftovers(&before);
    assert!(left.is_empty(), "shm files left after the job: {left:?}");
}

fn conformance(pes: usize) {
    conformance_with(pes, None);
}

#[test]
fn conformance_3_pes_work_stealing_executor() {
    conformance_with(3, Some(1));
}

#[test]
fn conformance_1_pe() {
    conformance(1);
}

#[test]
fn conformance_2_pes() {
    conformance(2);
}

#[test]
fn conformance_3_pes() {
    conformance(3);
}

#[test]
fn conformance_4_pes() {
    conformance(4);
}

/// The suite with the neighbour messages over Lamellar active messages
/// (`DISTARRAY_LAMELLAR_MESSAGES=am`; the default transport is the RDMA
/// mailboxes, run by the tests above).
fn conformance_am(pes: usize) {
    let env = [("DISTARRAY_LAMELLAR_MESSAGES", "am")];
    conformance_env(pes, None, &env, "active messages");
}

#[test]
fn conformance_active_messages_1_pe() {
    conformance_am(1);
}

#[test]
fn conformance_active_messages_2_pes() {
    conformance_am(2);
}

#[test]
fn conformance_active_messages_3_pes() {
    conformance_am(3);
}

#[test]
fn conformance_active_messages_4_pes() {
    conformance_am(4);
}

/// RDMA mailboxes with 24-byte slots: nearly every message of the suite
/// (halos, transposes, the matvec plans) travels in many chunks.
#[test]
fn conformance_rdma_mailboxes_tiny_slots_3_pes() {
    let env = [("DISTARRAY_LAMELLAR_MAILBOX_BYTES", "20")];
    conformance_env(3, None, &env, "rdma mailboxes");
}

/// No neighbour messages: the suite's messages checks take the one-sided
/// paths (what the network lamellae did before the mailboxes).
#[test]
fn conformance_messages_off_2_pes() {
    conformance_env(2, None, &[("DISTARRAY_LAMELLAR_MESSAGES", "off")], "off");
}

#[test]
fn panic_on_one_pe_ends_the_job() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = shm_files();
    let (out, elapsed) = launch(
        &["-n", "3", "--", CONFORMANCE, "--panic-on", "1"],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the job succeeded despite a panic\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("[PE 1] ") && stderr.contains("deliberate panic on PE 1"),
        "no panic message:\n{stderr}"
    );
    assert!(
        stderr.contains("PE 1 failed"),
        "launcher did not report the failed PE:\n{stderr}"
    );
    assert!(
        !stdout.contains("passed a barrier"),
        "a PE passed a barrier the panicked PE never reached:\n{stdout}"
    );
    // World start-up is well under a second; the failure must end the job
    // within a few seconds after it.
    assert!(
        elapsed < Duration::from_secs(10),
        "the job took {elapsed:?} to end after a panic"
    );
    let left = leftovers(&before);
    assert!(
        left.is_empty(),
        "shm files left after the failed job: {left:?}"
    );
}

/// A window leaked (`mem::forget`) on every PE, on one PE only, or while
/// holding a lock on another PE: the job still ends, cleanly and quickly
/// (before, the PE that leaked never shut its world down and the others
/// waited for it at exit forever).
#[test]
fn leaked_window_does_not_hang_the_exit() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for what in ["window", "window@0", "window@1", "locked-window@0"] {
        let before = shm_files();
        let (out, elapsed) = launch(
            &["-n", "2", "--", CONFORMANCE, "--leak", what],
            Duration::from_secs(60),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "--leak {what}: {:?}\n{stdout}\n{stderr}",
            out.status
        );
        for pe in 0..2 {
            assert!(
                stdout.contains(&format!("[PE {pe}] PE {pe} (leaked: ")),
                "--leak {what}: PE {pe} did not reach the end of main\n{stdout}"
            );
        }
        assert!(
            elapsed < Duration::from_secs(30),
            "--leak {what}: the job took {elapsed:?}"
        );
        let left = leftovers(&before);
        assert!(left.is_empty(), "--leak {what}: shm files left: {left:?}");
    }
}

/// A `DistArray` leaked (`mem::forget`) on one PE only (either one), or on
/// every PE: the job still ends, cleanly and quickly. The array holds a
/// communicator handle, so the PE that leaked it never dropped its last
/// handle; before the exit-time teardown its world never shut down and the
/// other PE waited for it in Lamellar's shutdown forever (the job hit the
/// time limit). `array-teardown`: the world torn down under a live array
/// (as the exit hook does), whose operations then return `Err`.
#[test]
fn leaked_array_does_not_hang_the_exit() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for what in ["array@0", "array@1", "array", "array-teardown"] {
        let before = shm_files();
        let (out, elapsed) = launch(
            &["-n", "2", "--", CONFORMANCE, "--leak", what],
            Duration::from_secs(60),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "--leak {what}: {:?}\n{stdout}\n{stderr}",
            out.status
        );
        for pe in 0..2 {
            assert!(
                stdout.contains(&format!("[PE {pe}] PE {pe} (leaked: ")),
                "--leak {what}: PE {pe} did not reach the end of main\n{stdout}"
            );
        }
        assert!(
            elapsed < Duration::from_secs(30),
            "--leak {what}: the job took {elapsed:?}"
        );
        let left = leftovers(&before);
        assert!(left.is_empty(), "--leak {what}: shm files left: {left:?}");
    }
}

/// A PE that drops its communicator while its neighbour waits for a
/// message from it: the neighbour's exchange returns `PeerFailed` and the
/// job ends, with the RDMA mailboxes and with the active messages.
#[test]
fn departed_sender_is_peer_failed() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for transport in ["rdma", "am"] {
        let (out, elapsed) = launch_env(
            &["-n", "2", "--", CONFORMANCE, "--depart"],
            &[("DISTARRAY_LAMELLAR_MESSAGES", transport)],
            Duration::from_secs(60),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{transport}: {:?}\n{stdout}\n{stderr}",
            out.status
        );
        assert!(
            stdout.contains("[PE 0] PE 0: PeerFailed from PE 1"),
            "{transport}: {stdout}\n{stderr}"
        );
        assert!(
            elapsed < Duration::from_secs(30),
            "{transport}: the job took {elapsed:?}"
        );
    }
}

#[test]
fn launcher_rejects_bad_arguments() {
    let out = Command::new(RUN)
        .args(["-n", "0", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(RUN).args(["-n", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(RUN)
        .args(["-n", "2", "--", "/nonexistent/program"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn launcher_prefixes_lines_and_propagates_failure() {
    let out = Command::new(RUN)
        .args([
            "-n",
            "2",
            "--",
            "sh",
            "-c",
            "echo hello from $LAMELLAR_PE_ID of $LAMELLAR_NUM_PES",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[PE 0] hello from 0 of 2"), "{stdout}");
    assert!(stdout.contains("[PE 1] hello from 1 of 2"), "{stdout}");
    // PE 1 fails at once, PE 0 would sleep for a minute: the launcher must
    // stop it and report PE 1's status.
    let start = Instant::now();
    let out = Command::new(RUN)
        .args([
            "-n",
            "2",
            "--",
            "sh",
            "-c",
            "if [ $LAMELLAR_PE_ID = 1 ]; then exit 3; fi; sleep 60",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// A launcher killed with SIGKILL cannot clean up; the next launcher
/// removes what its job left in /dev/shm (segments no process maps that are
/// older than the stale age), and nothing younger.
#[test]
fn next_launcher_sweeps_segments_of_a_killed_one() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = shm_files();
    let mut child = Command::new(RUN)
        .args(["-n", "2", "--", CONFORMANCE])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting distarray-lamellar-run");
    // let the world come up and create its segments, then kill the launcher
    let deadline = Instant::now() + Duration::from_secs(20);
    let new_files = || shm_files().difference(&before).count();
    while new_files() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup; the PEs die with it
    child.wait().unwrap();
    // (a launcher also removes unmapped files created in the second before
    // it started: wait past that, so only the stale sweep can find them)
    std::thread::sleep(Duration::from_millis(1500));
    let orphans = leftovers(&before);
    assert!(
        !orphans.is_empty(),
        "the killed job left no segments to sweep"
    );
    // a launcher with a long stale age keeps them (they are recent)...
    let keep = Command::new(RUN)
        .env("DISTARRAY_LAMELLAR_STALE_SECS", "3600")
        .args(["-n", "1", "--", "true"])
        .output()
        .unwrap();
    assert!(keep.status.success());
    assert_eq!(leftovers(&before), orphans, "recent files were swept");
    // ...and one with a short stale age removes them
    let sweep = Command::new(RUN)
        .env("DISTARRAY_LAMELLAR_STALE_SECS", "1")
        .args(["-n", "1", "--", "true"])
        .output()
        .unwrap();
    assert!(sweep.status.success());
    let left = leftovers(&before);
    assert!(
        left.is_empty(),
        "stale segments survived the sweep: {left:?}"
    );
}
