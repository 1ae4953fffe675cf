//! `distarray-lamellar-run`: starts a Lamellar `shmem` job on this node.
//!
//! ```text
//! distarray-lamellar-run -n P [--threads T] [--heap BYTES] -- program [args...]
//! ```
//!
//! Starts P copies of `program` with `LAMELLAR_NUM_PES=P`,
//! `LAMELLAR_PE_ID=0..P`, a `LAMELLAR_JOB_ID` unique to this job and
//! `LAMELLAR_HEAP_SIZE=BYTES` (default 64M, Lamellar grows it on demand; suffixes K, M, G). Without
//! `--threads` the PEs run Lamellar's `single_thread` executor (no worker
//! threads: a PE's own thread drives the runtime whenever it waits); with
//! `--threads T` its work-stealing executor with T worker threads, which
//! poll without pause and so want spare cores. A `LAMELLAR_EXECUTOR` set in
//! the environment wins. The launcher prefixes every line they print with `[PE i] `,
//! and exits with status 0 when every PE did. When a PE fails (non-zero
//! status or a signal) the launcher kills the others at once and exits
//! non-zero; the same when the launcher itself is interrupted or terminated.
//! If the launcher is killed outright, the PEs die with it (parent-death
//! signal).
//!
//! In every case it then removes the job's `/dev/shm` files, which Lamellar
//! leaves behind when a PE dies: the segment names (hashed by Lamellar, so
//! not predictable) are read from the PEs' `/proc/<pid>/maps` while they
//! run; segments created too shortly before a crash to be seen there are
//! found as `lamellar_*` files created during the job that no process maps
//! any more.
//!
//! A launcher that is itself killed with SIGKILL cannot clean up (its PEs
//! die with it, their segments stay). So every launcher first sweeps stale
//! segments: `lamellar_*` files in `/dev/shm` that no process on the
//! machine maps (checked twice, apart) and that were last modified more
//! than `DISTARRAY_LAMELLAR_STALE_SECS` seconds ago (default 30). A running
//! job maps its segments for its whole life, so only orphans qualify.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

const USAGE: &str =
    "usage: distarray-lamellar-run -n P [--threads T] [--heap BYTES] -- program [args...]";
const SHM_DIR: &str = "/dev/shm";
const SHM_PREFIX: &str = "lamellar_";

struct Opts {
    pes: usize,
    /// Worker threads (None: the single-thread executor).
    threads: Option<usize>,
    heap: u64,
    program: OsString,
    args: Vec<OsString>,
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args_os().skip(1);
    let mut pes = None;
    let mut threads = None;
    let mut heap = 64 << 20;
    let value = |args: &mut dyn Iterator<Item = OsString>, name: &str| -> Result<String, String> {
        args.next()
            .and_then(|v| v.into_string().ok())
            .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
    };
    loop {
        let Some(arg) = args.next() else {
            return Err(format!("missing `-- program`\n{USAGE}"));
        };
        match arg.to_str() {
            Some("-n" | "--pes") => {
                let v = value(&mut args, "-n")?;
                pes = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or(format!("bad -n {v:?}"))?,
                );
            }
            Some("--threads") => {
                let v = value(&mut args, "--threads")?;
                threads = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or(format!("bad --threads {v:?}"))?,
                );
            }
            Some("--heap") => {
                let v = value(&mut args, "--heap")?;
                heap = parse_size(&v)
                    .filter(|&n| n > 0)
                    .ok_or(format!("bad --heap {v:?}"))?;
            }
            Some("-h" | "--help") => return Err(USAGE.to_string()),
            Some("--") => break,
            _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}")),
        }
    }
    let program = args
        .next()
        .ok_or(format!("missing program after --\n{USAGE}"))?;
    Ok(Opts {
        pes: pes.ok_or(format!("-n P is required\n{USAGE}"))?,
        threads,
        heap,
        program,
        args: args.collect(),
    })
}

/// The signal that interrupted the launcher (0: none).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNALLED.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `on_signal` is async-signal-safe (one atomic store) and
        // has the signature `signal` expects.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Copies `src` to our stdout or stderr line by line, prefixed with the PE.
/// Sends on `done` when the stream ends.
fn forward(
    pe: usize,
    src: impl Read + Send + 'static,
    to_stderr: bool,
    done: std::sync::mpsc::Sender<()>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(src);
        let mut line = Vec::new();
        let prefix = format!("[PE {pe}] ");
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    let mut buf = prefix.as_bytes().to_vec();
                    buf.extend_from_slice(&line);
                    // Ignore write errors (a closed pipe downstream).
                    let _ = if to_stderr {
                        std::io::stderr().lock().write_all(&buf)
                    } else {
                        std::io::stdout().lock().write_all(&buf)
                    };
                }
            }
        }
        let _ = done.send(());
    })
}

/// Names of `/dev/shm/lamellar_*` files mapped by process `pid`.
fn mapped_shm(pid: u32, into: &mut BTreeSet<String>) {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return;
    };
    for line in maps.lines() {
        if let Some(at) = line.find("/dev/shm/") {
            let name = line[at + "/dev/shm/".len()..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            if name.starts_with(SHM_PREFIX) {
                into.insert(name.to_string());
            }
        }
    }
}

/// Names of `lamellar_*` files mapped by any process on the machine.
fn mapped_by_anyone() -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                mapped_shm(pid, &mut set);
            }
        }
    }
    set
}

/// `lamellar_*` files in /dev/shm last modified at or after `since`.
fn shm_files_since(since: SystemTime) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    if let Ok(dir) = std::fs::read_dir(SHM_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let recent = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since);
            if name.starts_with(SHM_PREFIX) && recent {
                set.insert(name);
            }
        }
    }
    set
}

/// Removes the job's segments: those seen mapped by its PEs, and files
/// created during the job that no process maps (checked twice, apart, so
/// that a segment another job is just creating is never taken).
fn cleanup(seen: &BTreeSet<String>, since: SystemTime) -> usize {
    let mut removed = 0;
    for name in seen {
        if std::fs::remove_file(format!("{SHM_DIR}/{name}")).is_ok() {
            removed += 1;
        }
    }
    let candidates = shm_files_since(since);
    if candidates.is_empty() {
        return removed;
    }
    let first = mapped_by_anyone();
    std::thread::sleep(Duration::from_millis(200));
    let second = mapped_by_anyone();
    for name in candidates {
        if !first.contains(&name)
            && !second.contains(&name)
            && std::fs::remove_file(format!("{SHM_DIR}/{name}")).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Seconds after which an unmapped `lamellar_*` file counts as stale.
fn stale_age() -> Duration {
    let secs = std::env::var("DISTARRAY_LAMELLAR_STALE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Removes `lamellar_*` files that earlier jobs left behind (their
/// launcher was killed): unmapped by every process, twice, and not
/// modified for [`stale_age`]. Returns how many were removed.
fn sweep_stale() -> usize {
    let Some(cutoff) = SystemTime::now().checked_sub(stale_age()) else {
        return 0;
    };
    let mut old = BTreeSet::new();
    if let Ok(dir) = std::fs::read_dir(SHM_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t <= cutoff);
            if name.starts_with(SHM_PREFIX) && stale {
                old.insert(name);
            }
        }
    }
    if old.is_empty() {
        return 0;
    }
    let first = mapped_by_anyone();
    std::thread::sleep(Duration::from_millis(200));
    let second = mapped_by_anyone();
    old.iter()
        .filter(|n| !first.contains(*n) && !second.contains(*n))
        .filter(|n| std::fs::remove_file(format!("{SHM_DIR}/{n}")).is_ok())
        .count()
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{status}"),
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(0), _) => 1,
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    }
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    install_signal_handlers();
    let swept = sweep_stale();
    if swept > 0 && std::env::var_os("DISTARRAY_LAMELLAR_RUN_VERBOSE").is_some() {
        eprintln!(
            "distarray-lamellar-run: removed {swept} stale /dev/shm segment(s) of earlier jobs"
        );
    }
    // The segment files' modification times have a coarse granularity: a
    // small margin so that the job's own files count as "since".
    let since = SystemTime::now() - Duration::from_secs(1);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let job_id = std::process::id() as u64 * 1_000_000 + (nanos / 1000) as u64 % 1_000_000;

    let mut children: Vec<Option<Child>> = Vec::with_capacity(opts.pes);
    let mut forwarders = Vec::new();
    let mut pgids = Vec::new();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let mut seen = BTreeSet::new();
    let mut failure: Option<(usize, ExitStatus)> = None;
    let mut spawn_error = None;
    for pe in 0..opts.pes {
        let mut cmd = Command::new(&opts.program);
        cmd.args(&opts.args)
            .env("LAMELLAR_BACKEND", "shmem")
            .env("LAMELLAR_NUM_PES", opts.pes.to_string())
            .env("LAMELLAR_PE_ID", pe.to_string())
            .env("LAMELLAR_JOB_ID", job_id.to_string())
            .env("LAMELLAR_THREADS", opts.threads.unwrap_or(1).to_string())
            .env("LAMELLAR_HEAP_SIZE", opts.heap.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only
        // calls `setpgid`, `prctl`, `getppid` and `_exit`, all
        // async-signal-safe.
        unsafe {
            let parent = libc::getpid();
            cmd.pre_exec(move || {
                // Own process group: stopping the PE also stops whatever it
                // started (which may hold its output pipes open).
                libc::setpgid(0, 0);
                // Die with the launcher, even if it is SIGKILLed.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        if std::env::var_os("LAMELLAR_EXECUTOR").is_none() {
            // Without --threads: no worker threads. Lamellar's work-stealing
            // workers poll without pause; on a node with few cores they take
            // the cores from the PEs' own computation (see the crate docs).
            let executor = if opts.threads.is_some() {
                "lamellar"
            } else {
                "single_thread"
            };
            cmd.env("LAMELLAR_EXECUTOR", executor);
        }
        match cmd.spawn() {
            Ok(mut child) => {
                pgids.push(child.id());
                if let Some(out) = child.stdout.take() {
                    forwarders.push(forward(pe, out, false, done_tx.clone()));
                }
                if let Some(err) = child.stderr.take() {
                    forwarders.push(forward(pe, err, true, done_tx.clone()));
                }
                children.push(Some(child));
            }
            Err(e) => {
                spawn_error = Some(format!("cannot start {:?}: {e}", opts.program));
                break;
            }
        }
    }

    let mut last_scan = Instant::now() - Duration::from_secs(1);
    let mut interrupted = 0;
    if spawn_error.is_none() {
        loop {
            let mut running = 0;
            for (pe, slot) in children.iter_mut().enumerate() {
                let Some(child) = slot else { continue };
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() && failure.is_none() {
                            failure = Some((pe, status));
                        }
                        *slot = None;
                    }
                    Ok(None) => running += 1,
                    Err(_) => *slot = None,
                }
            }
            if running == 0 || failure.is_some() {
                break;
            }
            interrupted = SIGNALLED.load(Ordering::SeqCst);
            if interrupted != 0 {
                break;
            }
            if last_scan.elapsed() >= Duration::from_millis(100) {
                for slot in children.iter().flatten() {
                    mapped_shm(slot.id(), &mut seen);
                }
                last_scan = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Stop whatever is still running (a failed job, an interrupt, a failed
    // spawn).
    for child in children.iter_mut().flatten() {
        mapped_shm(child.id(), &mut seen);
        let _ = child.kill();
    }
    for child in children.iter_mut().flatten() {
        let _ = child.wait();
    }
    // Processes the PEs started (same process group) go too.
    for &pgid in &pgids {
        // SAFETY: signals the process group we created for a PE.
        unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
    }
    // Output still buffered in the pipes is forwarded; a descendant that
    // escaped its group and keeps a pipe open cannot hold the launcher.
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..forwarders.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let removed = cleanup(&seen, since);
    if std::env::var_os("DISTARRAY_LAMELLAR_RUN_VERBOSE").is_some() {
        eprintln!("distarray-lamellar-run: job {job_id}: removed {removed} /dev/shm segment(s)");
    }

    if let Some(msg) = spawn_error {
        eprintln!("distarray-lamellar-run: {msg}");
        std::process::exit(127);
    }
    if interrupted != 0 {
        eprintln!("distarray-lamellar-run: interrupted by signal {interrupted}; stopped all PEs");
        std::process::exit(128 + interrupted);
    }
    if let Some((pe, status)) = failure {
        eprintln!(
            "distarray-lamellar-run: PE {pe} failed ({}); stopped the other PEs",
            describe(status)
        );
        std::process::exit(exit_code(status));
    }
}
