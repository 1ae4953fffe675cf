//! Runs distarray's backend-generic conformance suite on [`LamellarComm`].
//!
//! ```text
//! distarray-lamellar-run -n 4 -- distarray-lamellar-conformance
//! ```
//!
//! After the generic suite it runs checks of this backend's own machinery
//! (window region reuse after early drops, the large-allgather path, mixed
//! lock traffic, packed transfers, concurrent packed puts in a fence
//! epoch). Rank 0 prints `conformance: all checks passed on P ranks`
//! at the end.
//! `--panic-on R` makes PE `R` panic once the world is up while the others
//! wait in a barrier (used by the launcher's failure test). `--leak WHAT`
//! leaks (`mem::forget`) a `window`, an `array` or a `locked-window` and
//! returns from `main` (the launcher's leak tests: the job must end);
//! `--depart` (2 PEs): PE 1 drops its communicator while PE 0 waits for
//! a neighbour message from it, which must end in `Error::PeerFailed`
//! (not a hang).
//! `--leak array-teardown` tears the world down under a live array and
//! checks that its operations return `Err`.

use distarray::{AccumulateOp, Error, LockKind, OneSidedComm};
use distarray_lamellar::LamellarComm;

/// A named check of this backend.
type Check = (&'static str, fn(&LamellarComm));

/// A window dropped early on one PE stays usable by the others, and its
/// regions are reused only once every PE has dropped it (then zeroed).
fn early_drop_and_reuse(comm: &LamellarComm) {
    let (me, p) = (comm.rank(), comm.size());
    let w = comm.create_window::<u64>(8).unwrap();
    w.lock(me, LockKind::Exclusive).unwrap();
    w.with_local_mut(|s| s.fill(1000 + me as u64)).unwrap();
    w.unlock(me).unwrap();
    comm.barrier().unwrap();
    let w = if me == 0 {
        drop(w);
        None
    } else {
        Some(w)
    };
    // While PE 0 has dropped it, the others keep using each other's parts.
    if let Some(w) = &w {
        for t in 1..p {
            w.lock(t, LockKind::Exclusive).unwrap();
            w.accumulate(t, 0, &[1], AccumulateOp::Sum).unwrap();
            w.unlock(t).unwrap();
        }
    }
    // A new window of the same type and size must not reuse the regions
    // the other PEs still hold.
    let w2 = comm.create_window::<u64>(8).unwrap();
    w2.lock(me, LockKind::Exclusive).unwrap();
    assert!(
        w2.with_local(|s| s.iter().all(|&x| x == 0)).unwrap(),
        "PE {me}: new window not zero"
    );
    w2.with_local_mut(|s| s.fill(7)).unwrap();
    w2.unlock(me).unwrap();
    comm.barrier().unwrap();
    if let Some(w) = &w {
        w.lock(me, LockKind::Shared).unwrap();
        let v = w.with_local(|s| s.to_vec()).unwrap();
        w.unlock(me).unwrap();
        let mut expect = vec![1000 + me as u64; 8];
        expect[0] += (p - 1) as u64;
        assert_eq!(v, expect, "PE {me}: window disturbed by a later window");
    }
    comm.barrier().unwrap();
    drop(w);
    drop(w2);
    // Now every PE dropped both: the next windows reuse them, zeroed.
    for _ in 0..3 {
        let w3 = comm.create_window::<u64>(8).unwrap();
        w3.lock(me, LockKind::Shared).unwrap();
        assert!(
            w3.with_local(|s| s.iter().all(|&x| x == 0)).unwrap(),
            "PE {me}: reused window not zero"
        );
        w3.unlock(me).unwrap();
        comm.barrier().unwrap();
    }
}

/// Many windows of varying types and sizes, created and dropped.
fn window_churn(comm: &LamellarComm) {
    let (me, p) = (comm.rank(), comm.size());
    for round in 0..60usize {
        let len = 1 + (round * 37 + me * 11) % 300;
        let t = (me + 1) % p;
        if round % 3 == 0 {
            let w = comm.create_window::<f32>(len).unwrap();
            let tl = w.len_of(t).unwrap();
            w.lock(t, LockKind::Exclusive).unwrap();
            w.put(t, tl - 1, &[round as f32]).unwrap();
            let mut back = [0.0f32];
            w.get(t, tl - 1, &mut back).unwrap();
            w.unlock(t).unwrap();
            assert_eq!(back[0], round as f32);
        } else {
            let w = comm.create_window::<i64>(len).unwrap();
            w.fence().unwrap();
            w.accumulate(t, 0, &[1], AccumulateOp::Sum).unwrap();
            w.fence().unwrap();
            let mut v = [0i64];
            w.get(me, 0, &mut v).unwrap();
            w.fence_end().unwrap();
            assert_eq!(v[0], 1, "PE {me}: round {round}");
        }
    }
    comm.barrier().unwrap();
}

/// Contributions larger than the allgather scratch space.
fn large_allgather(comm: &LamellarComm) {
    let (me, p) = (comm.rank(), comm.size());
    let n = |r: usize| if r & 1 == 0 { 20_000 + r } else { 3 };
    let mine: Vec<f64> = (0..n(me)).map(|i| (me * 1_000_000 + i) as f64).collect();
    let all = comm.allgather(&mine).unwrap();
    for (q, part) in all.iter().enumerate() {
        assert_eq!(part.len(), n(q));
        assert!(part
            .iter()
            .enumerate()
            .all(|(i, &x)| x == (q * 1_000_000 + i) as f64));
    }
    assert_eq!(all.len(), p);
    comm.barrier().unwrap();
}

/// Exclusive read-modify-writes of one counter interleaved with
/// accumulates into another word of the same PE (under exclusive locks too:
/// writes need them).
fn mixed_lock_traffic(comm: &LamellarComm) {
    let (me, p) = (comm.rank(), comm.size());
    let w = comm.create_window::<u64>(2).unwrap();
    const ROUNDS: u64 = 30;
    for r in 0..ROUNDS as usize {
        let target = r % p;
        if (r + me) % 2 == 0 {
            w.lock(target, LockKind::Exclusive).unwrap();
            let mut c = [0u64];
            w.get(target, 0, &mut c).unwrap();
            w.put(target, 0, &[c[0] + 1]).unwrap();
            w.unlock(target).unwrap();
        } else {
            w.lock(target, LockKind::Exclusive).unwrap();
            w.accumulate(target, 1, &[1], AccumulateOp::Sum).unwrap();
            w.unlock(target).unwrap();
        }
    }
    comm.barrier().unwrap();
    let mut total = [0u64; 2];
    for t in 0..p {
        let mut v = [0u64; 2];
        w.lock(t, LockKind::Shared).unwrap();
        w.get(t, 0, &mut v).unwrap();
        w.unlock(t).unwrap();
        total[0] += v[0];
        total[1] += v[1];
    }
    assert_eq!(
        total[0] + total[1],
        ROUNDS * p as u64,
        "PE {me}: lost updates {total:?}"
    );
    comm.barrier().unwrap();
}

/// A neighbour message whose length differs from the receive buffer (too
/// short, too long) is an `Err` at the receiver, not a hang, and leaves the
/// pair in step: the next exchanges between the same PEs match.
fn exchange_length_mismatch(comm: &LamellarComm) {
    let (me, p) = (comm.rank(), comm.size());
    // none with DISTARRAY_LAMELLAR_MESSAGES=off
    let Some(m) = comm.messages() else { return };
    let right = (me + 1) % p;
    let left = (me + p - 1) % p;
    for (sent, expected) in [(3usize, 5usize), (6, 2), (0, 1)] {
        let out = vec![me as u8; sent];
        let mut buf = vec![0u8; expected];
        let r = m.exchange_bytes(&[(right, &out[..])], &mut [(left, &mut buf[..])]);
        match r {
            Err(Error::InvalidArgument(msg)) => {
                assert!(
                    msg.contains(&format!("sent {sent} bytes")),
                    "PE {me}: {msg}"
                )
            }
            other => panic!("PE {me}: a {sent}-byte message into {expected} bytes: {other:?}"),
        }
        // the same pair, right after: in step
        let out = [me as u8, 7];
        let mut back = [0u8; 2];
        m.exchange_bytes(&[(right, &out[..])], &mut [(left, &mut back[..])])
            .unwrap();
        assert_eq!(back, [left as u8, 7], "PE {me}");
    }
    // started, with a mismatch: the error comes from the wait
    let out = [1u8; 4];
    let mut buf = [0u8; 3];
    // SAFETY: the buffers outlive the request, which is waited at once.
    let req = unsafe { m.exchange_bytes_start(&[(right, &out[..])], &mut [(left, &mut buf[..])]) }
        .unwrap();
    assert!(
        matches!(req.wait(), Err(Error::InvalidArgument(_))),
        "PE {me}"
    );
    comm.barrier().unwrap();
}

/// Exchanges started on several arrays before any is waited for, waited
/// in reverse order, with a one-way pattern (to the right only) that lets a
/// PE run ahead of its receiver: every message reaches its own exchange.
fn exchanges_in_flight(comm: &LamellarComm) {
    let (me, p) = (comm.rank(), comm.size());
    // none with DISTARRAY_LAMELLAR_MESSAGES=off
    let Some(m) = comm.messages() else { return };
    let right = (me + 1) % p;
    let left = (me + p - 1) % p;
    const N: usize = 5;
    let outs: Vec<Vec<u8>> = (0..N).map(|k| vec![(me * 10 + k) as u8; k + 1]).collect();
    let mut bufs: Vec<Vec<u8>> = (0..N).map(|k| vec![0u8; k + 1]).collect();
    let mut reqs = Vec::new();
    for (k, buf) in bufs.iter_mut().enumerate() {
        // SAFETY: `outs` and `bufs` outlive every request (all are waited
        // below, before the buffers are read or dropped).
        let r = unsafe {
            m.exchange_bytes_start(&[(right, &outs[k][..])], &mut [(left, &mut buf[..])])
        };
        reqs.push(r.unwrap());
    }
    for r in reqs.into_iter().rev() {
        r.wait().unwrap();
    }
    for (k, buf) in bufs.iter().enumerate() {
        assert_eq!(
            buf,
            &vec![(left * 10 + k) as u8; k + 1],
            "PE {me}: exchange {k}"
        );
    }
    comm.barrier().unwrap();
}

/// The bytes PE `from` sends PE `to` as message `k` of the exchange
/// checks below.
fn payload(from: usize, to: usize, k: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 131 + from * 17 + to * 5 + k * 3 + i / 251) as u8)
        .collect()
}

/// Messages of many slots' size (with the RDMA mailboxes: many chunks,
/// two slots per pair) both ways at once, to both neighbours, in one
/// exchange: an exchange that sent everything before receiving anything
/// would wait forever for acks its neighbours never send. Lengths around
/// the slot sizes, empty ones, and two messages to the same PE (on 2 PEs
/// left and right are the same PE, on 1 PE itself): matched in list order.
fn exchange_multi_chunk_both_ways(comm: &LamellarComm) {
    let (me, p) = (comm.rank(), comm.size());
    let Some(m) = comm.messages() else { return };
    let right = (me + 1) % p;
    let left = (me + p - 1) % p;
    let lens = [
        200_003usize,
        0,
        32 << 10,
        (32 << 10) + 1,
        65_535,
        1,
        300_000,
    ];
    for (k, &len) in lens.iter().enumerate() {
        let len2 = lens[(k + 3) % lens.len()];
        let to_right = payload(me, right, k, len);
        let to_left = payload(me, left, k + 100, len2);
        let mut from_left = vec![0u8; len];
        let mut from_right = vec![0u8; len2];
        m.exchange_bytes(
            &[(right, &to_right[..]), (left, &to_left[..])],
            &mut [(left, &mut from_left[..]), (right, &mut from_right[..])],
        )
        .unwrap_or_else(|e| panic!("PE {me}, lengths {len}/{len2}: {e}"));
        assert!(
            from_left == payload(left, me, k, len),
            "PE {me}: {len} bytes from the left differ"
        );
        assert!(
            from_right == payload(right, me, k + 100, len2),
            "PE {me}: {len2} bytes from the right differ"
        );
    }
    comm.barrier().unwrap();
}

/// Many exchanges in a row in a one-way pattern (to the right only) with a
/// slow receiver: PE 0 sleeps now and then, so its left neighbour runs
/// ahead (with the RDMA mailboxes: until its slots are full, then it waits
/// for PE 0's acks). Every message arrives in its own exchange, intact;
/// then PE 0 alone sends multi-chunk messages to the last PE, which only
/// receives, while the others exchange empty lists.
fn exchange_many_in_a_row(comm: &LamellarComm) {
    let (me, p) = (comm.rank(), comm.size());
    let Some(m) = comm.messages() else { return };
    let right = (me + 1) % p;
    let left = (me + p - 1) % p;
    for k in 0..300 {
        if me == 0 && k % 50 < 3 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let len = [8usize, 0, 70_000, 1][k % 4];
        let out = payload(me, right, k, len);
        let mut buf = vec![0u8; len];
        m.exchange_bytes(&[(right, &out[..])], &mut [(left, &mut buf[..])])
            .unwrap_or_else(|e| panic!("PE {me}, exchange {k}: {e}"));
        assert!(
            buf == payload(left, me, k, len),
            "PE {me}: exchange {k} ({len} bytes) differs"
        );
    }
    let last = p - 1;
    for k in 0..20 {
        let out = payload(0, last, k, 50_000 + k);
        let mut buf = vec![0u8; 50_000 + k];
        let sends: &[(usize, &[u8])] = if me == 0 { &[(last, &out[..])] } else { &[] };
        let mut got: Vec<(usize, &mut [u8])> = if me == last {
            vec![(0, &mut buf[..])]
        } else {
            vec![]
        };
        if me == last && k < 3 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        m.exchange_bytes(sends, &mut got).unwrap();
        if me == last {
            assert!(buf == out, "PE {me}: one-way message {k} differs");
        }
    }
    // empty lists everywhere, several times: nothing to wait for
    for _ in 0..5 {
        m.exchange_bytes(&[], &mut []).unwrap();
    }
    comm.barrier().unwrap();
}

/// PE 1 exchanges once with PE 0, then drops its communicator (the world
/// goes down on its side) while PE 0 waits in a second exchange for a
/// message PE 1 never sends (a broken contract): PE 0's receive returns
/// `Error::PeerFailed` naming PE 1, with either transport.
fn departed_sender(comm: LamellarComm) {
    let me = comm.rank();
    assert_eq!(comm.size(), 2, "--depart needs 2 PEs");
    let m = comm.messages().expect("neighbour messages");
    let other = 1 - me;
    let mut buf = [0u8; 3];
    m.exchange_bytes(&[(other, &[me as u8; 3][..])], &mut [(other, &mut buf[..])])
        .unwrap();
    assert_eq!(buf, [other as u8; 3], "PE {me}");
    if me == 1 {
        println!("PE 1 drops its communicator");
        drop(comm);
        return;
    }
    let mut big = vec![0u8; 100_000];
    let r = m.exchange_bytes(&[], &mut [(1, &mut big[..])]);
    match r {
        Err(Error::PeerFailed { rank: 1, reason }) => {
            println!("PE 0: PeerFailed from PE 1 ({reason})")
        }
        other => panic!("PE 0: expected PeerFailed from PE 1, got {other:?}"),
    }
}

/// A 2-D block of another PE's part (many short rows: one run per row) is
/// ONE remote data transfer for a get, a put and an accumulate, blocking
/// or started (`remote_data_ops` counts every RDMA operation and packed
/// active message a window issues to another PE); the values arrive.
fn packed_block_transfers(comm: &LamellarComm) {
    use distarray::block::{Block, GlobalBlock};
    use distarray::DistArray;
    let (me, p) = (comm.rank(), comm.size());
    const ROWS: usize = 200;
    const COLS: usize = 12;
    let a = DistArray::<f64, _, 2>::with_grid(comm.clone(), [p, 1], [ROWS * p, COLS]).unwrap();
    let value = |i: usize, j: usize| (i * 1000 + j) as f64;
    let own = Block::new([me * ROWS..(me + 1) * ROWS, 0..COLS]);
    let data: Vec<f64> = (me * ROWS..(me + 1) * ROWS)
        .flat_map(|i| (0..COLS).map(move |j| value(i, j)))
        .collect();
    a.put_block_from(&own, &data, AccumulateOp::Replace)
        .unwrap();
    comm.barrier().unwrap();
    let t = (me + 1) % p;
    // rows t*ROWS+1 .. t*ROWS+ROWS-1, columns 3..9: ROWS-2 runs of 6
    let block = Block::new([t * ROWS + 1..(t + 1) * ROWS - 1, 3..9]);
    let expect: Vec<f64> = (t * ROWS + 1..(t + 1) * ROWS - 1)
        .flat_map(|i| (3..9).map(move |j| value(i, j)))
        .collect();
    let remote = usize::from(p > 1) as u64;
    // Without packing (a network lamellae: no active messages), one
    // transfer per row (and more for accumulates): only the values count.
    let packed = comm.packed_transfers();
    let ops = |f: &dyn Fn()| {
        let before = comm.remote_data_ops();
        f();
        if packed {
            comm.remote_data_ops() - before
        } else {
            remote
        }
    };
    let n = ops(&|| {
        let mut buf = vec![0.0; expect.len()];
        a.get_block_into(&block, &mut buf).unwrap();
        assert_eq!(buf, expect, "PE {me}: packed get");
    });
    assert_eq!(n, remote, "PE {me}: a get of {} rows to PE {t}", ROWS - 2);
    let n = ops(&|| {
        let gb = a.get_block_start(&block).unwrap().wait().unwrap();
        assert_eq!(gb.into_parts().1, expect, "PE {me}: packed get, started");
    });
    assert_eq!(n, remote, "PE {me}: a started get to PE {t}");
    comm.barrier().unwrap();
    let ones = vec![1.0; expect.len()];
    let n = ops(&|| a.put_block_from(&block, &ones, AccumulateOp::Sum).unwrap());
    assert_eq!(n, remote, "PE {me}: an accumulate to PE {t}");
    comm.barrier().unwrap();
    let n = ops(&|| {
        let gb = GlobalBlock::from_vec(block.clone(), expect.iter().map(|x| 2.0 * x).collect());
        let back = a
            .put_block_start(gb.unwrap(), AccumulateOp::Replace)
            .unwrap();
        back.wait().unwrap();
    });
    assert_eq!(n, remote, "PE {me}: a started put to PE {t}");
    comm.barrier().unwrap();
    // what the left neighbour wrote into this PE's part: 2x inside the
    // block, untouched outside
    let mut mine = vec![0.0; data.len()];
    a.get_block_into(&own, &mut mine).unwrap();
    for (k, (&got, &orig)) in mine.iter().zip(&data).enumerate() {
        let (i, j) = (k / COLS, k % COLS);
        let inside = (1..ROWS - 1).contains(&i) && (3..9).contains(&j);
        assert_eq!(
            got,
            if inside { 2.0 * orig } else { orig },
            "PE {me}: ({i}, {j})"
        );
    }
    // every PE checked its part before the neighbour writes it again
    comm.barrier().unwrap();
    let n = ops(&|| {
        a.put_block_from(&block, &expect, AccumulateOp::Replace)
            .unwrap();
    });
    assert_eq!(n, remote, "PE {me}: a put to PE {t}");
    comm.barrier().unwrap();
}

/// Every PE puts and gets the same two runs of PE 0 over and over in one
/// fence epoch (the checked layer admits these conflicting accesses: like
/// MPI it leaves the values undefined), and gets the same runs of its
/// right neighbour; on PE 0 a second thread puts and gets them too. The
/// other PEs' transfers are packed active messages, which PE 0 executes on
/// its runtime's workers or on whichever of its threads waits in the
/// runtime (here its main thread, getting from PE 1), next to its second
/// thread's copies into and out of the same runs: before the part's lock,
/// unsynchronised copies of the same bytes on two threads (a data race).
/// Checked is what the lock guarantees, with packing on (without it the
/// other PEs' writes are RDMA from other processes, which it does not
/// cover): a packed message and a batch of PE 0's own runs hold it across
/// all their runs, so every get of both runs, and both runs at the end,
/// hold one put's value throughout, at the end that of some writer's last
/// round. (The spawned thread makes no blocking Lamellar call: Lamellar
/// warns, with a backtrace, about every one off its main thread. Several
/// threads of one origin are covered by `pack`'s unit test.)
fn concurrent_packed_puts(comm: &LamellarComm) {
    let (me, p) = (comm.rank(), comm.size());
    const RUN: usize = 256;
    const ROUNDS: usize = 30;
    let runs = [(0, RUN), (2 * RUN, RUN)];
    let tag = |pe: usize, t: usize, r: usize| ((2 * pe + t) * 1000 + r + 1) as u64;
    let uniform = |run: &[u64]| run.iter().all(|&x| x == run[0]);
    let packed = comm.packed_transfers();
    let w = comm.create_window::<u64>(3 * RUN).unwrap();
    let work = |t: usize, remote: bool| {
        let mut got = vec![0u64; 2 * RUN];
        for r in 0..ROUNDS {
            w.put_runs(0, &runs, &vec![tag(me, t, r); 2 * RUN]).unwrap();
            w.get_runs(0, &runs, &mut got).unwrap();
            if packed {
                assert!(
                    uniform(&got),
                    "PE {me} thread {t}: a torn get of the runs: {} and {:?}",
                    got[0],
                    got.iter().find(|&&x| x != got[0])
                );
            }
            if remote {
                w.get_runs((me + 1) % p, &runs, &mut got).unwrap();
            }
        }
    };
    w.fence().unwrap();
    std::thread::scope(|s| {
        if me == 0 {
            s.spawn(|| work(1, false));
        }
        work(0, p > 1);
    });
    w.fence().unwrap();
    let mut all = vec![0u64; 3 * RUN];
    w.get(0, 0, &mut all).unwrap();
    w.fence_end().unwrap();
    assert!(
        all[RUN..2 * RUN].iter().all(|&x| x == 0),
        "PE {me}: the gap written"
    );
    if packed {
        let last: Vec<u64> = (0..p)
            .map(|q| tag(q, 0, ROUNDS - 1))
            .chain([tag(0, 1, ROUNDS - 1)])
            .collect();
        let runs = [&all[..RUN], &all[2 * RUN..]].concat();
        assert!(
            uniform(&runs) && last.contains(&runs[0]),
            "PE {me}: PE 0 ended with {runs:?}"
        );
    }
    comm.barrier().unwrap();
}

/// `--leak WHAT[@R]`: leaks (`mem::forget`) a window, an array or a
/// window holding a lock (on every PE, or with `@R` on PE `R` only, the
/// others drop theirs) and returns from `main`; the job must still end.
fn leak(comm: &LamellarComm, spec: &str) {
    let me = comm.rank();
    let (what, only) = match spec.split_once('@') {
        Some((w, r)) => (w, Some(r.parse::<usize>().expect("--leak WHAT@RANK"))),
        None => (spec, None),
    };
    let forget = only.is_none_or(|r| r == me);
    fn done<X>(x: X, forget: bool) {
        if forget {
            std::mem::forget(x);
        }
    }
    match what {
        "window" => {
            let w = comm.create_window::<f64>(100).unwrap();
            w.lock(me, LockKind::Exclusive).unwrap();
            w.put(me, 0, &[1.0]).unwrap();
            w.unlock(me).unwrap();
            done(w, forget);
        }
        "array" => {
            let a = distarray::DistArray::<f64, _, 1>::from_fn(comm.clone(), [64], |[i]| i as f64)
                .unwrap();
            done(a, forget);
        }
        "array-teardown" => {
            // every PE: the world torn down (as at exit) under a live
            // array; its operations and the communicator's are `Err`, and
            // dropping it touches nothing
            let a = distarray::DistArray::<f64, _, 1>::from_fn(comm.clone(), [64], |[i]| i as f64)
                .unwrap();
            comm.barrier().unwrap();
            comm.tear_down_world();
            assert!(
                a.get([(me * 17 + 40) % 64]).is_err(),
                "PE {me}: get after teardown"
            );
            assert!(a.sum().is_err(), "PE {me}: sum after teardown");
            assert!(comm.barrier().is_err(), "PE {me}: barrier after teardown");
            assert!(
                comm.create_window::<f64>(4).is_err(),
                "PE {me}: window after teardown"
            );
            drop(a);
            println!("PE {me} (leaked: {forget}) returns from main");
            return;
        }
        "locked-window" => {
            // leaked while holding a lock on the next PE
            let w = comm.create_window::<u64>(4).unwrap();
            let t = (me + 1) % comm.size();
            w.lock(t, LockKind::Shared).unwrap();
            done(w, forget);
        }
        other => {
            eprintln!("--leak {other:?}: expected window, array or locked-window");
            std::process::exit(2);
        }
    }
    comm.barrier().unwrap();
    println!("PE {me} (leaked: {forget}) returns from main");
}

fn main() {
    let mut panic_on = None;
    let mut leaked = None;
    let mut timings = false;
    let mut depart = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--timings" => timings = true,
            "--depart" => depart = true,
            "--leak" => {
                leaked = Some(
                    args.next()
                        .expect("--leak needs window, array or locked-window"),
                )
            }
            "--panic-on" => {
                panic_on = args.next().and_then(|v| v.parse::<usize>().ok());
                assert!(panic_on.is_some(), "--panic-on needs a rank");
            }
            other => {
                eprintln!("unknown argument {other:?}; usage: distarray-lamellar-conformance [--timings] [--panic-on RANK]");
                std::process::exit(2);
            }
        }
    }
    let comm = LamellarComm::from_env().expect("starting the Lamellar world");
    if let Some(r) = panic_on {
        comm.barrier().unwrap();
        if comm.rank() == r {
            panic!("deliberate panic on PE {r}");
        }
        // The others block here until the launcher stops them.
        comm.barrier().unwrap();
        comm.barrier().unwrap();
        println!(
            "PE {} passed a barrier that a panicked PE never reached",
            comm.rank()
        );
        return;
    }
    if let Some(what) = leaked {
        leak(&comm, &what);
        return;
    }
    if depart {
        departed_sender(comm);
        return;
    }
    let start = std::time::Instant::now();
    let n = if timings {
        // The same as `run_all`, with the time of every check.
        let all = distarray::conformance::checks::<LamellarComm>();
        for (name, check) in &all {
            comm.barrier().unwrap();
            let t = std::time::Instant::now();
            check(&comm);
            if comm.rank() == 0 {
                println!("{name}: {:.3} s", t.elapsed().as_secs_f64());
            }
        }
        comm.barrier().unwrap();
        all.len()
    } else {
        distarray::conformance::run_all(&comm)
    };
    if comm.rank() == 0 {
        println!("neighbour messages: {}", comm.message_transport());
    }
    let extra: [Check; 10] = [
        ("lamellar: early_drop_and_reuse", early_drop_and_reuse),
        ("lamellar: window_churn", window_churn),
        ("lamellar: large_allgather", large_allgather),
        ("lamellar: mixed_lock_traffic", mixed_lock_traffic),
        (
            "lamellar: exchange_multi_chunk_both_ways",
            exchange_multi_chunk_both_ways,
        ),
        ("lamellar: exchange_many_in_a_row", exchange_many_in_a_row),
        (
            "lamellar: exchange_length_mismatch",
            exchange_length_mismatch,
        ),
        ("lamellar: exchanges_in_flight", exchanges_in_flight),
        ("lamellar: packed_block_transfers", packed_block_transfers),
        ("lamellar: concurrent_packed_puts", concurrent_packed_puts),
    ];
    for (name, check) in extra {
        comm.barrier().unwrap();
        let t = std::time::Instant::now();
        check(&comm);
        if timings && comm.rank() == 0 {
            println!("{name}: {:.3} s", t.elapsed().as_secs_f64());
        }
    }
    let n = n + extra.len();
    if comm.rank() == 0 {
        println!(
            "conformance: all checks passed on {} ranks ({n} checks, {:.2} s)",
            comm.size(),
            start.elapsed().as_secs_f64()
        );
    }
}
