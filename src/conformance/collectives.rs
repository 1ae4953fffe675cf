//! Checks of the collectives of the contract: `allreduce_bytes` keeps rank
//! order (an associative, non-commutative operation gives the serial
//! product), `broadcast_bytes` from every root, the success vote they
//! carry, and the neighbour exchange `exchange_bytes` (or its refusal where
//! the backend has no messages).

use super::{expect_err, ok, Check};
use crate::collective::{allreduce_vote, broadcast_vote, vote};
use crate::comm::OneSidedComm;
use crate::error::Error;

/// The collective checks.
pub(super) fn checks<C: OneSidedComm>() -> Vec<Check<C>> {
    vec![
        ("allreduce_keeps_rank_order", rank_order::<C>),
        ("broadcast_from_every_root", broadcast::<C>),
        ("votes_carry_failures", votes::<C>),
        ("neighbour_exchange", neighbour_exchange::<C>),
    ]
}

type M = [u64; 4];

/// 2 x 2 matrix product with wrapping arithmetic: associative, not
/// commutative.
fn mul(a: M, b: M) -> M {
    let m = |x: u64, y: u64| x.wrapping_mul(y);
    [
        m(a[0], b[0]).wrapping_add(m(a[1], b[2])),
        m(a[0], b[1]).wrapping_add(m(a[1], b[3])),
        m(a[2], b[0]).wrapping_add(m(a[3], b[2])),
        m(a[2], b[1]).wrapping_add(m(a[3], b[3])),
    ]
}

fn factor(r: usize) -> M {
    let r = r as u64;
    [r + 2, 1, 3 * r + 1, r]
}

fn rank_order<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let serial = (1..p).fold(factor(0), |acc, r| mul(acc, factor(r)));
    let got = ok(
        comm,
        "allreduce",
        allreduce_vote(comm, Ok(factor(comm.rank())), mul),
    );
    assert_eq!(
        got,
        serial,
        "rank {}: allreduce out of rank order",
        comm.rank()
    );
    // a large payload (beyond Lamellar's 4 KiB message slots), bytes-level
    const K: usize = 160;
    let mut buf: Vec<u8> = (0..K)
        .flat_map(|k| factor(comm.rank() + k))
        .flat_map(u64::to_le_bytes)
        .collect();
    let read = |b: &[u8], k: usize| -> M {
        std::array::from_fn(|w| {
            let at = (4 * k + w) * 8;
            u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
        })
    };
    let combine = |lo: &[u8], hi: &mut [u8]| {
        for k in 0..K {
            let v = mul(read(lo, k), read(hi, k));
            for (w, x) in v.iter().enumerate() {
                hi[(4 * k + w) * 8..(4 * k + w + 1) * 8].copy_from_slice(&x.to_le_bytes());
            }
        }
    };
    ok(
        comm,
        "large allreduce",
        comm.allreduce_bytes(&mut buf, &combine),
    );
    for k in 0..K {
        let want = (1..p).fold(factor(k), |acc, r| mul(acc, factor(r + k)));
        assert_eq!(
            read(&buf, k),
            want,
            "rank {}: large allreduce out of rank order",
            comm.rank()
        );
    }
}

fn broadcast<C: OneSidedComm>(comm: &C) {
    for root in 0..comm.size() {
        let mine = if comm.rank() == root {
            1000 + root as u64
        } else {
            7
        };
        let got = ok(comm, "broadcast", broadcast_vote(comm, root, Ok(mine)));
        assert_eq!(got, 1000 + root as u64);
        // bytes beyond one Lamellar slot, in pieces
        let mut buf = vec![0u8; 10_000];
        if comm.rank() == root {
            buf.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i * 7 + root) as u8);
        }
        ok(
            comm,
            "broadcast_bytes",
            comm.broadcast_bytes(root, &mut buf),
        );
        assert!(buf
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i * 7 + root) as u8));
    }
    let bad = comm.size();
    expect_err(
        comm,
        "broadcast from a rank out of range",
        broadcast_vote(comm, bad, Ok(1u8)),
        |e| matches!(e, Error::RankOutOfRange { .. }),
    );
    ok(comm, "barrier", comm.barrier());
}

fn votes<C: OneSidedComm>(comm: &C) {
    let p = comm.size();
    let failing = p / 2;
    let local = if comm.rank() == failing {
        Err(Error::InvalidArgument("this rank's part failed".into()))
    } else {
        Ok(1.5f64)
    };
    let r = allreduce_vote(comm, local, |a, b| a + b);
    if comm.rank() == failing {
        expect_err(comm, "own failure", r, |e| {
            matches!(e, Error::InvalidArgument(_))
        });
    } else {
        expect_err(
            comm,
            "peer failure",
            r,
            // the failing rank's own message comes along
            |e| matches!(e, Error::PeerFailed { rank, reason } if *rank == failing && reason.contains("this rank's part failed")),
        );
    }
    // the root's failure reaches every rank with the broadcast
    let local = if comm.rank() == failing {
        Err(Error::InvalidArgument("root failed".into()))
    } else {
        Ok(3u32)
    };
    let r = broadcast_vote(comm, failing, local);
    if comm.rank() == failing {
        expect_err(comm, "own failure", r, |e| {
            matches!(e, Error::InvalidArgument(_))
        });
    } else {
        expect_err(
            comm,
            "root failure",
            r,
            |e| matches!(e, Error::PeerFailed { rank, reason } if *rank == failing && reason.contains("root failed")),
        );
    }
    // all well: the vote passes the value through
    assert_eq!(ok(comm, "vote", vote(comm, Ok("kept"))), "kept");
    ok(comm, "barrier", comm.barrier());
}

/// The message rank `from` sends rank `to` in round `round` of the exchange
/// check: its length depends on both (empty for some pairs).
fn message(from: usize, to: usize, round: usize) -> Vec<u8> {
    let len = (from * 5 + to * 3 + round * 7) % 23;
    (0..len)
        .map(|i| (i * 31 + from * 7 + to + round) as u8)
        .collect()
}

fn neighbour_exchange<C: OneSidedComm>(comm: &C) {
    let (me, p) = (comm.rank(), comm.size());
    let Some(messages) = comm.messages() else {
        // no capability: asking for it is an error, on every rank, without
        // waiting for anybody
        let r = crate::comm::messages_of(comm).map(|_| ());
        assert!(matches!(r, Err(Error::Backend(_))), "{r:?}");
        return;
    };
    let right = (me + 1) % p;
    let left = (me + p - 1) % p;
    // a ring in both directions (to itself on one rank, twice to the same
    // neighbour on two), three times: matched in call and list order
    for round in 0..3 {
        let out = [message(me, right, round), message(me, left, round + 1)];
        let sends = [(right, &out[0][..]), (left, &out[1][..])];
        let mut from_left = vec![0u8; message(left, me, round).len()];
        let mut from_right = vec![0u8; message(right, me, round + 1).len()];
        {
            let mut recvs = [(left, &mut from_left[..]), (right, &mut from_right[..])];
            ok(
                comm,
                "exchange_bytes",
                messages.exchange_bytes(&sends, &mut recvs),
            );
        }
        assert_eq!(from_left, message(left, me, round), "round {round}");
        assert_eq!(from_right, message(right, me, round + 1), "round {round}");
    }
    // ranks with nothing to send or receive still take part
    let sends: Vec<(usize, &[u8])> = if me == 0 {
        vec![(p - 1, &[9u8][..])]
    } else {
        vec![]
    };
    let mut got = [0u8];
    let mut recvs: Vec<(usize, &mut [u8])> = if me == p - 1 {
        vec![(0, &mut got[..])]
    } else {
        vec![]
    };
    ok(
        comm,
        "sparse exchange",
        messages.exchange_bytes(&sends, &mut recvs),
    );
    if me == p - 1 {
        assert_eq!(got, [9]);
    }
    // messages gathered from pieces arrive as their concatenation: three
    // pieces (one empty) to the right, none (an empty message) to the left
    let head = message(me, right, 7);
    let tail = [0xA5u8, me as u8, 0x5A];
    let pieces: [&[u8]; 3] = [&head, &[], &tail];
    let sends = [(right, &pieces[..]), (left, &[][..])];
    let mut from_left = vec![0u8; message(left, me, 7).len() + tail.len()];
    let mut from_right = [0u8; 0];
    {
        let mut recvs = [(left, &mut from_left[..]), (right, &mut from_right[..])];
        // SAFETY: every buffer outlives the handle, which is waited for at
        // once, and none is touched before.
        let started = unsafe { messages.exchange_vectored_start(&sends, &mut recvs) };
        let done = started.and_then(|pending| pending.wait());
        ok(comm, "exchange_vectored_start", done);
    }
    let mut want = message(left, me, 7);
    want.extend([0xA5, left as u8, 0x5A]);
    assert_eq!(from_left, want, "rank {me}: gathered message");
    // a rank out of range, named by every rank: refused before anything is
    // sent
    let r = messages.exchange_bytes(&[(p, &[1u8][..])], &mut []);
    assert!(matches!(r, Err(Error::RankOutOfRange { .. })), "{r:?}");
    ok(comm, "barrier after the refused exchange", comm.barrier());
}
