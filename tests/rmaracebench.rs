//! RMARaceBench (RWTH-HPC, v1.2.0), MPI RMA part, ported to distarray's raw
//! `Window` API and run under the threaded backend's checking mode.
//!
//! Every case whose pattern can be written with distarray is in [`CASES`]:
//! its RMARaceBench id, its label ("race" / "no race") and the body each
//! rank runs. Every case runs under `threaded::run_checked` (OS
//! scheduling) three times and under 8 controlled schedules
//! (`threaded::replay`, seeds 0..8); the outcome must be the same in every
//! run, and must match the label:
//!
//! * a racy case must end in [`Error::Race`] (found) — or in another `Err`
//!   that refuses the racy access before it happens (counted apart: the
//!   access rules rule the race out);
//! * a race-free case must run clean on every rank.
//!
//! The cases RMARaceBench has and this file does not, and why, are listed
//! in BENCHMARKS.md ("Race detection"). In short: windows are typed (no
//! mixed-datatype or byte-displacement accumulates), origin buffers are
//! borrowed by blocking calls (no origin-buffer races), and distarray has
//! no get_accumulate / fetch_and_op / compare_and_swap, no request-based
//! operations, no PSCW, no send/recv, and no window access outside an
//! epoch.
//!
//! Correspondence: RMARaceBench's `win_base[0]` load / store by the target
//! is, in a fence epoch (where distarray refuses local views), a `get` /
//! `put` of the target on its own part, and outside one a `with_local`
//! view under a lock on the own part; `MPI_Win_lock_all` is a shared lock
//! on every target; `MPI_Win_flush_local` is implicit in every distarray
//! call (blocking at the origin). distarray's access rules make every
//! write take an exclusive lock (or a fence epoch): race-free cases whose
//! writer holds a shared lock are ported with an exclusive one (the legal
//! form of the same program); racy cases that depend on a shared-lock
//! write are ported as written, and the access rules refuse them.

use distarray::threaded::{self, ThreadedComm};
use distarray::{AccumulateOp, Error, LockKind, OneSidedComm, Result};

type W = distarray::WindowOf<ThreadedComm, i32>;
const WIN_SIZE: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Race,
    NoRace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// `Error::Race` on some rank.
    Found,
    /// Another error refused an access (no race report).
    Refused(String),
    /// Every rank returned `Ok`.
    Clean,
}

struct Case {
    id: &'static str,
    p: usize,
    label: Label,
    body: fn(&ThreadedComm) -> Result<()>,
}

/// One access of a rank in a case.
#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Put,
    Acc,
    /// The target reads its own part (in a fence epoch: a get from itself).
    Load,
    /// The target writes its own part (in a fence epoch: a put to itself).
    Store,
}

fn win(comm: &ThreadedComm) -> Result<W> {
    comm.create_window::<i32>(WIN_SIZE)
}

/// `op` on element `offset` of rank 1's part inside a fence epoch (loads
/// and stores by rank 1 itself).
fn access(w: &W, op: Op, offset: usize) -> Result<()> {
    match op {
        Op::Get | Op::Load => w.get(1, offset, &mut [0]),
        Op::Put => w.put(1, offset, &[2]),
        Op::Store => w.put(1, offset, &[42]),
        Op::Acc => w.accumulate(1, offset, &[1], AccumulateOp::Sum),
    }
}

/// RMARaceBench's "conflict" shape: one fence epoch, rank 0 does `a`,
/// rank `rb` does `b`, both on element 0 of rank 1.
fn fence_pair(comm: &ThreadedComm, a: Op, rb: usize, b: Op) -> Result<()> {
    let w = win(comm)?;
    w.fence()?;
    if comm.rank() == 0 {
        access(&w, a, 0)?;
    }
    if comm.rank() == rb {
        access(&w, b, 0)?;
    }
    w.fence()?;
    w.fence_end()?;
    comm.barrier()
}

/// Two accumulates of 4 elements into rank 1 (ranks 0 and 2, or both from
/// rank 0 when `same_origin`), the second at `offset2`.
fn two_accs(comm: &ThreadedComm, offset2: usize, same_origin: bool) -> Result<()> {
    let w = win(comm)?;
    comm.barrier()?;
    w.fence()?;
    let second = if same_origin { 0 } else { 2 };
    if comm.rank() == 0 {
        w.accumulate(1, 0, &[1, 1, 1, 1], AccumulateOp::Sum)?;
    }
    if comm.rank() == second {
        w.accumulate(1, offset2, &[1, 2, 3, 4], AccumulateOp::Sum)?;
    }
    w.fence()?;
    w.fence_end()?;
    comm.barrier()
}

/// "local" cases without a race: rank 0's RMA operation(s) from a local
/// buffer it reads afterwards.
fn local_no(comm: &ThreadedComm, ops: &[(Op, usize)]) -> Result<()> {
    let w = win(comm)?;
    w.fence()?;
    let mut value = [1i32];
    if comm.rank() == 0 {
        for &(op, offset) in ops {
            match op {
                Op::Put => w.put(1, offset, &value)?,
                Op::Acc => w.accumulate(1, offset, &value, AccumulateOp::Sum)?,
                Op::Get => w.get(1, offset, &mut value)?,
                _ => unreachable!(),
            }
        }
        // the load of the origin buffer: the call has returned, so it is done
        assert!(value[0] < 1000);
    }
    w.fence()?;
    w.fence_end()?;
    comm.barrier()
}

// ---- misc: the same conflict behind nesting, function pointers, aliases,
// returned references and copied references (static-analysis obstacles;
// a dynamic checker sees through them).

fn nested_3(w: &W, op: Op) -> Result<()> {
    access(w, op, 0)
}
fn nested_2(w: &W, op: Op) -> Result<()> {
    nested_3(w, op)
}
fn nested_1(w: &W, op: Op) -> Result<()> {
    nested_2(w, op)
}
fn passthrough(w: &W) -> &W {
    w
}

#[derive(Debug, Clone, Copy)]
enum Hide {
    Nesting,
    FuncPointer,
    Aliasing,
    Retval,
    Memcpy,
}

/// Rank 0 gets element 0 of rank 1, rank 1 does `other` on it, one fence
/// epoch, with the calls hidden as `hide` says.
fn misc_remote(comm: &ThreadedComm, hide: Hide, other: Op) -> Result<()> {
    let w = win(comm)?;
    w.fence()?;
    let op = if comm.rank() == 0 {
        Some(Op::Get)
    } else if comm.rank() == 1 {
        Some(other)
    } else {
        None
    };
    if let Some(op) = op {
        match hide {
            Hide::Nesting => nested_1(&w, op)?,
            Hide::FuncPointer => {
                let f: fn(&W, Op, usize) -> Result<()> = access;
                f(&w, op, 0)?
            }
            Hide::Aliasing => {
                let alias = &w;
                let alias2 = alias;
                access(alias2, op, 0)?
            }
            Hide::Retval => access(passthrough(&w), op, 0)?,
            Hide::Memcpy => {
                let copies = [&w; 2];
                access(copies[1], op, 0)?
            }
        }
    }
    w.fence()?;
    w.fence_end()?;
    comm.barrier()
}

/// `MPI_Win_lock_all`: a shared lock on every target.
fn lock_all(w: &W, p: usize) -> Result<()> {
    (0..p).try_for_each(|t| w.lock(t, LockKind::Shared))
}
fn unlock_all(w: &W, p: usize) -> Result<()> {
    (0..p).try_for_each(|t| w.unlock(t))
}
fn flush_all(w: &W, p: usize) -> Result<()> {
    (0..p).try_for_each(|t| w.flush(t))
}
fn flush_all_locked(w: &W, targets: &[usize]) -> Result<()> {
    targets.iter().try_for_each(|&t| w.flush(t))
}

/// A load of the own part: a view, which needs a lock on the own part.
fn load(w: &W) -> Result<()> {
    w.with_local(|s| assert!(s[0] < 1000))
}

/// A load of the own part under a shared lock on itself.
fn locked_load(w: &W, me: usize) -> Result<()> {
    w.lock(me, LockKind::Shared)?;
    let r = load(w);
    w.unlock(me)?;
    r
}

const CASES: &[Case] = &[
    // ---- atomic
    Case {
        id: "atomic/001-customdatatype-no",
        p: 3,
        label: Label::NoRace,
        body: |c| two_accs(c, 0, false),
    },
    Case {
        id: "atomic/004-disp-no",
        p: 3,
        label: Label::NoRace,
        body: |c| two_accs(c, 1, false),
    },
    Case {
        id: "atomic/009-int-int-no",
        p: 3,
        label: Label::NoRace,
        body: |c| two_accs(c, 0, false),
    },
    Case {
        id: "atomic/010-int-int-sameorigin-no",
        p: 3,
        label: Label::NoRace,
        body: |c| two_accs(c, 0, true),
    },
    // ---- conflict, origin-buffer ("local") cases without a race
    Case {
        id: "conflict/001-put-load-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| local_no(c, &[(Op::Put, 0)]),
    },
    Case {
        id: "conflict/003-put-put-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| local_no(c, &[(Op::Put, 0), (Op::Put, 1)]),
    },
    Case {
        id: "conflict/009-acc-load-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| local_no(c, &[(Op::Acc, 0)]),
    },
    // ---- conflict, remote
    Case {
        id: "conflict/016-get-load-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| fence_pair(c, Op::Get, 1, Op::Load),
    },
    Case {
        id: "conflict/017-get-get-remote-no",
        p: 3,
        label: Label::NoRace,
        body: |c| fence_pair(c, Op::Get, 2, Op::Get),
    },
    Case {
        id: "conflict/018-get-store-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| fence_pair(c, Op::Get, 1, Op::Store),
    },
    Case {
        id: "conflict/019-get-put-remote-yes",
        p: 3,
        label: Label::Race,
        body: |c| fence_pair(c, Op::Get, 2, Op::Put),
    },
    Case {
        id: "conflict/021-get-acc-remote-yes",
        p: 3,
        label: Label::Race,
        body: |c| fence_pair(c, Op::Get, 2, Op::Acc),
    },
    Case {
        id: "conflict/022-put-load-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| fence_pair(c, Op::Put, 1, Op::Load),
    },
    Case {
        id: "conflict/023-put-store-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| fence_pair(c, Op::Put, 1, Op::Store),
    },
    Case {
        id: "conflict/024-put-put-remote-yes",
        p: 3,
        label: Label::Race,
        body: |c| fence_pair(c, Op::Put, 2, Op::Put),
    },
    Case {
        id: "conflict/026-put-acc-remote-yes",
        p: 3,
        label: Label::Race,
        body: |c| fence_pair(c, Op::Put, 2, Op::Acc),
    },
    Case {
        id: "conflict/027-acc-load-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| fence_pair(c, Op::Acc, 1, Op::Load),
    },
    Case {
        id: "conflict/028-acc-store-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| fence_pair(c, Op::Acc, 1, Op::Store),
    },
    Case {
        id: "conflict/029-acc-acc-remote-no",
        p: 3,
        label: Label::NoRace,
        body: |c| fence_pair(c, Op::Acc, 2, Op::Acc),
    },
    // ---- misc, origin-buffer cases without a race
    Case {
        id: "misc/001-put-load-deep-nesting-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| local_no(c, &[(Op::Put, 0)]),
    },
    Case {
        id: "misc/003-put-load-aliasing-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| local_no(c, &[(Op::Put, 0)]),
    },
    Case {
        id: "misc/005-put-load-retval-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| local_no(c, &[(Op::Put, 0)]),
    },
    Case {
        id: "misc/007-put-load-memcpy-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| local_no(c, &[(Op::Put, 0)]),
    },
    // ---- misc, remote
    Case {
        id: "misc/009-get-load-deep-nesting-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| misc_remote(c, Hide::Nesting, Op::Load),
    },
    Case {
        id: "misc/010-get-store-deep-nesting-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| misc_remote(c, Hide::Nesting, Op::Store),
    },
    Case {
        id: "misc/011-get-load-funcpointer-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| misc_remote(c, Hide::FuncPointer, Op::Load),
    },
    Case {
        id: "misc/012-get-store-funcpointer-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| misc_remote(c, Hide::FuncPointer, Op::Store),
    },
    Case {
        id: "misc/013-get-load-aliasing-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| misc_remote(c, Hide::Aliasing, Op::Load),
    },
    Case {
        id: "misc/014-get-store-aliasing-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| misc_remote(c, Hide::Aliasing, Op::Store),
    },
    Case {
        id: "misc/015-get-load-retval-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| misc_remote(c, Hide::Retval, Op::Load),
    },
    Case {
        id: "misc/016-get-store-retval-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| misc_remote(c, Hide::Retval, Op::Store),
    },
    Case {
        id: "misc/017-get-load-memcpy-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| misc_remote(c, Hide::Memcpy, Op::Load),
    },
    Case {
        id: "misc/018-get-store-memcpy-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| misc_remote(c, Hide::Memcpy, Op::Store),
    },
    // ---- sync
    Case {
        id: "sync/002-fence-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            let w = win(c)?;
            w.fence()?;
            let value = [1];
            if c.rank() == 0 {
                w.put(1, 0, &value)?;
            }
            w.fence()?;
            assert_eq!(value[0], 1);
            w.fence()?;
            w.fence_end()
        },
    },
    Case {
        id: "sync/004-lock-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                let mut value = [0];
                w.lock(1, LockKind::Shared)?;
                w.get(1, 0, &mut value)?;
                w.unlock(1)?;
                assert_eq!(value[0], 0);
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/006-lock-flush-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                let mut value = [0];
                w.lock(1, LockKind::Shared)?;
                w.get(1, 0, &mut value)?;
                w.flush(1)?;
                assert_eq!(value[0], 0);
                w.unlock(1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/008-lockall-flushlocalall-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            lock_all(&w, 2)?;
            if c.rank() == 0 {
                let mut value = [0];
                w.get(1, 0, &mut value)?;
                assert_eq!(value[0], 0);
            }
            unlock_all(&w, 2)?;
            c.barrier()
        },
    },
    Case {
        id: "sync/010-request-local-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            // MPI_Rget + MPI_Wait = a blocking get
            let w = win(c)?;
            c.barrier()?;
            w.fence()?;
            if c.rank() == 0 {
                let mut value = [0];
                w.get(1, 0, &mut value)?;
                assert_eq!(value[0], 0);
            }
            w.fence()?;
            w.fence_end()?;
            c.barrier()
        },
    },
    Case {
        id: "sync/013-lockall-flushall-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            // the writer's lock is exclusive (a write needs it), so the reader
            // locks only its own part for the load
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Exclusive)?;
                w.put(1, 0, &[1])?;
                flush_all_locked(&w, &[1])?;
                c.barrier()?;
                w.unlock(1)?;
            }
            if c.rank() == 1 {
                c.barrier()?;
                locked_load(&w, 1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/014-lockall-flushall-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| {
            let w = win(c)?;
            lock_all(&w, 2)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.put(1, 0, &[1])?;
                flush_all(&w, 2)?;
            }
            if c.rank() == 1 {
                load(&w)?;
            }
            unlock_all(&w, 2)?;
            c.barrier()
        },
    },
    Case {
        id: "sync/015-lockall-barrier-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            // the write takes an exclusive lock on its target instead of lock_all
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Exclusive)?;
                w.put(1, 0, &[1])?;
                w.unlock(1)?;
            }
            c.barrier()?;
            if c.rank() == 1 {
                locked_load(&w, 1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/016-lockall-barrier-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            lock_all(&w, 2)?;
            if c.rank() == 0 {
                w.put(1, 0, &[1])?;
            }
            unlock_all(&w, 2)?;
            if c.rank() == 1 {
                locked_load(&w, 1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/017-lockall-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            lock_all(&w, 2)?;
            if c.rank() == 0 {
                w.put(1, 0, &[1])?;
            }
            if c.rank() == 1 {
                load(&w)?;
            }
            unlock_all(&w, 2)?;
            c.barrier()
        },
    },
    Case {
        id: "sync/018-fence-3procs-remote-yes",
        p: 3,
        label: Label::Race,
        body: |c| fence_pair(c, Op::Put, 2, Op::Get),
    },
    Case {
        id: "sync/019-fence-3procs-remote-no",
        p: 3,
        label: Label::NoRace,
        body: |c| {
            let w = win(c)?;
            w.fence()?;
            if c.rank() == 0 {
                access(&w, Op::Put, 0)?;
            }
            w.fence()?;
            if c.rank() == 2 {
                access(&w, Op::Get, 0)?;
            }
            w.fence()?;
            w.fence_end()?;
            c.barrier()
        },
    },
    Case {
        id: "sync/020-lock-barrier-nonconsistent-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Shared)?;
                w.put(1, 0, &[1])?;
            }
            c.barrier()?;
            if c.rank() == 1 {
                locked_load(&w, 1)?;
            }
            if c.rank() == 0 {
                w.unlock(1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/021-lock-barrier-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Shared)?;
                w.put(1, 0, &[1])?;
                w.unlock(1)?;
            }
            if c.rank() == 1 {
                locked_load(&w, 1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/022-lock-barrier-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Exclusive)?;
                w.put(1, 0, &[1])?;
                w.unlock(1)?;
            }
            c.barrier()?;
            if c.rank() == 1 {
                locked_load(&w, 1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/023-lock-barrier-sameorigin-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Exclusive)?;
                w.put(1, 0, &[1])?;
                w.flush(1)?;
                w.get(1, 0, &mut [0])?;
                w.unlock(1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/024-lock-barrier-sameorigin-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| {
            // the race is between two operations of one origin: the lock kind
            // does not matter, and a write needs an exclusive one
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Exclusive)?;
                w.put(1, 0, &[1])?;
                w.get(1, 0, &mut [0])?;
                w.unlock(1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/025-lock-flushlocal-sameorigin-remote-yes",
        p: 2,
        label: Label::Race,
        body: |c| {
            // flush_local is implicit: put returns once its buffer is reusable
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Exclusive)?;
                w.put(1, 0, &[1])?;
                w.get(1, 0, &mut [0])?;
                w.unlock(1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/026-lock-flushlocal-sameorigin-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Shared)?;
                w.get(1, 0, &mut [0])?;
                w.get(1, 0, &mut [0])?;
                w.unlock(1)?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/027-lock-exclusive-remote-no",
        p: 2,
        label: Label::NoRace,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Exclusive)?;
                w.put(1, 0, &[1])?;
                w.unlock(1)?;
            }
            if c.rank() == 1 {
                w.lock(1, LockKind::Exclusive)?;
                let r = load(&w);
                w.unlock(1)?;
                r?;
            }
            c.barrier()
        },
    },
    Case {
        id: "sync/028-lock-exclusive-3procs-remote-no",
        p: 3,
        label: Label::NoRace,
        body: |c| {
            let w = win(c)?;
            c.barrier()?;
            if c.rank() == 0 {
                w.lock(1, LockKind::Exclusive)?;
                w.put(1, 0, &[1])?;
                w.unlock(1)?;
            }
            if c.rank() == 2 {
                w.lock(1, LockKind::Exclusive)?;
                w.get(1, 0, &mut [0])?;
                w.unlock(1)?;
            }
            c.barrier()
        },
    },
];

fn outcome(results: Result<Vec<Result<()>>>) -> Outcome {
    let errors: Vec<Error> = match results {
        Err(e) => vec![e],
        Ok(rs) => rs.into_iter().filter_map(|r| r.err()).collect(),
    };
    if errors.iter().any(|e| matches!(e, Error::Race { .. })) {
        Outcome::Found
    } else if let Some(e) = errors
        .iter()
        .find(|e| !matches!(e, Error::Aborted { .. } | Error::PeerFailed { .. }))
        .or(errors.first())
    {
        Outcome::Refused(e.to_string())
    } else {
        Outcome::Clean
    }
}

/// The outcome of every run of a case, or a description of the runs that
/// disagree.
fn run_case(case: &Case) -> std::result::Result<Outcome, String> {
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push((
            "os",
            outcome(threaded::run_checked(case.p, |c| (case.body)(&c))),
        ));
    }
    for seed in 0..8 {
        outcomes.push((
            "seed",
            outcome(threaded::replay(case.p, seed, |c| (case.body)(&c))),
        ));
    }
    let first = outcomes[0].1.clone();
    let same = |a: &Outcome, b: &Outcome| std::mem::discriminant(a) == std::mem::discriminant(b);
    if outcomes.iter().all(|(_, o)| same(o, &first)) {
        Ok(first)
    } else {
        Err(format!("{outcomes:?}"))
    }
}

#[test]
fn rmaracebench_mpi_rma_cases() {
    let mut found = 0;
    let mut refused = Vec::new();
    let mut clean = 0;
    let mut wrong = Vec::new();
    for case in CASES {
        match (case.label, run_case(case)) {
            (_, Err(runs)) => {
                wrong.push(format!("{}: outcome varies between runs: {runs}", case.id))
            }
            (Label::Race, Ok(Outcome::Found)) => found += 1,
            (Label::Race, Ok(Outcome::Refused(e))) => refused.push(format!("{}: {e}", case.id)),
            (Label::NoRace, Ok(Outcome::Clean)) => clean += 1,
            (label, Ok(o)) => wrong.push(format!("{} ({label:?}): {o:?}", case.id)),
        }
    }
    let races = CASES.iter().filter(|c| c.label == Label::Race).count();
    println!(
        "RMARaceBench MPI RMA: {} cases ported; racy {races}: {found} found by the race \
         detector, {} refused by the access rules; race-free {}: {clean} clean",
        CASES.len(),
        refused.len(),
        CASES.len() - races,
    );
    for r in &refused {
        println!("  refused: {r}");
    }
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    assert_eq!(found + refused.len(), races);
}
