//! Neighbour messages over RDMA mailboxes: the default transport of
//! [`NeighbourMessages`](distarray::NeighbourMessages) on every lamellae
//! (see the `messages` module for the choice).
//!
//! # Layout
//!
//! A mail region, allocated with the communicator (collective), holds in
//! every PE's part:
//!
//! * for each sender `s`, [`SLOTS`] message slots: a flag word, then
//!   `slot_bytes` of payload. Only `s` writes them (remote puts, then a
//!   remote atomic store of the flag); only the owner reads them.
//! * for each receiver `r`, one ack word: the number of chunks `r` has
//!   consumed from this PE, stored by `r` with a remote atomic.
//!
//! # Protocol
//!
//! The chunks from one PE to another are numbered from 0 (per pair, in
//! the order of the sender's exchanges and of their lists); a message
//! longer than a slot goes in several chunks, each its own number, an
//! empty message in one empty chunk. Chunk `n` uses slot `n % SLOTS`.
//!
//! * Send chunk `n` to `r`: wait until `r`'s ack for this pair (a word in
//!   the sender's own part) says at least `n + 1 - SLOTS` chunks were
//!   consumed (the slot is free); copy the payload into a registered
//!   buffer, put it into the slot, wait for the put's completion; then
//!   store the flag `(n + 1) << 25 | last << 24 | len` into the slot's
//!   flag word with a remote atomic.
//! * Receive chunk `n` from `s`: wait until the flag of slot `n % SLOTS`
//!   for `s` carries number `n + 1`; copy the payload out; store `n + 1`
//!   into `s`'s ack word for this PE with a remote atomic.
//!
//! A sender is thus at most `SLOTS` chunks ahead of its receiver on each
//! pair (flow control: the memory is fixed, a sender running ahead in a
//! one-way pattern waits instead of filling the receiver's memory), and
//! with two slots it puts the next chunk while the receiver copies the
//! previous one. No exchange synchronises more than the pairs that
//! message each other.
//!
//! One exchange advances all its sends and receives in one loop, whichever
//! is ready, so that two PEs sending each other multi-chunk messages (each
//! waiting for the other's acks) make progress together; the messages of
//! one pair advance in list order. Messages to the PE itself go through a
//! local queue.
//!
//! # Cost
//!
//! Per PE, `P * SLOTS * (8 + slot_bytes) + 8 P` bytes of registered
//! memory. `slot_bytes` is 32 KiB up to 32 PEs, then `2 MiB / (2 P)` down
//! to 4 KiB (from 256 PEs): 128 KiB per PE at 2 PEs, 2 MiB from 32 to 256
//! PEs, 4 MiB at 512, `8 KiB * P` beyond (a mailbox per pair: the price of
//! fixed-size mailboxes allocated once; a job of thousands of PEs with a
//! few neighbours each would want them per neighbour). On `shmem` every PE
//! of the node maps every PE's part: `P` times that per node in
//! `/dev/shm` (256 KiB at 2 PEs, 64 MiB at 32, 128 MiB at 64, 512 MiB at
//! 256; `DISTARRAY_LAMELLAR_MAILBOX_BYTES` lowers it). 32 KiB
//! holds a face of 4096 `f64`s in one chunk.
//!
//! Each chunk costs the sender one put, waited for (the flag may only
//! follow a complete payload), and one remote atomic store of the flag,
//! the receiver one remote atomic store of the ack; both stores are issued
//! without waiting for their completion (Lamellar's unmanaged atomics: the
//! value is injected, and every later blocking operation of the PE, its
//! departure included, waits for all its operations in flight). The
//! flag and ack words a PE waits for are in its own part and polled with
//! CPU atomic loads, not with Lamellar atomics to itself (over libfabric
//! those are fabric round trips). Across two network namespaces over
//! libfabric TCP this halved a halo update against waited stores and
//! Lamellar loads (96 against 180 µs, BENCHMARKS-lamellar.md). `DISTARRAY_LAMELLAR_MAILBOX_BYTES` sets
//! `slot_bytes` (the same value on every PE; for tests of chunking).
//!
//! # Errors
//!
//! A rank out of range: before anything is sent. A message whose length
//! differs from the receive buffer: `Err` at the receiver once all its
//! chunks arrived (consumed: the next messages keep their order). A peer
//! that dropped its communicator (it marks itself departed once its own
//! transfers completed) while this PE still waits for its chunk or its
//! ack: [`Error::PeerFailed`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use distarray::{Error, Result};
use lamellar::active_messaging::prelude::*;
use lamellar::memregion::prelude::*;

use super::tree::read_slot;
use super::Comm;
use crate::backoff::Backoff;

/// Slots per (sender, receiver) pair.
const SLOTS: usize = 2;
/// Default payload bytes of a slot: at most this...
const MAX_SLOT_BYTES: usize = 32 << 10;
/// ... at least this ...
const MIN_SLOT_BYTES: usize = 4 << 10;
/// ... and otherwise this budget per PE over all its slots.
const SLOT_BUDGET: usize = 2 << 20;
/// Bits of a flag word holding the chunk's length (a slot holds less).
const LEN_BITS: u32 = 24;
/// Flag bit: the message's last chunk.
const LAST: u64 = 1 << LEN_BITS;
/// Shift of the chunk number (plus one) in a flag word.
const SEQ_SHIFT: u32 = LEN_BITS + 1;

/// Payload bytes of a slot for a job of `size` PEs (a multiple of 8), or
/// `DISTARRAY_LAMELLAR_MAILBOX_BYTES` rounded up to 8.
pub(super) fn slot_bytes(size: usize) -> Result<usize> {
    if let Ok(v) = std::env::var("DISTARRAY_LAMELLAR_MAILBOX_BYTES") {
        let n: usize = v.parse().map_err(|_| {
            Error::Backend(format!(
                "DISTARRAY_LAMELLAR_MAILBOX_BYTES={v:?} is not a number"
            ))
        })?;
        if n == 0 || n >= 1 << (LEN_BITS - 1) {
            return Err(Error::Backend(format!(
                "DISTARRAY_LAMELLAR_MAILBOX_BYTES={n}: expected 1 to {}",
                (1 << (LEN_BITS - 1)) - 1
            )));
        }
        return Ok(n.div_ceil(8) * 8);
    }
    let fair = SLOT_BUDGET / (size.max(1) * SLOTS);
    Ok(fair.clamp(MIN_SLOT_BYTES, MAX_SLOT_BYTES) / 8 * 8)
}

/// The mailboxes of one communicator (see the module docs).
pub(super) struct Mailboxes {
    region: SharedMemoryRegion<u64>,
    /// Payload words of a slot.
    slot_words: usize,
    size: usize,
    /// Held for a whole exchange: the exchanges of a PE run one at a time,
    /// in the order they are called (as every PE calls them).
    state: Mutex<State>,
}

/// What the exchanges of this PE share.
struct State {
    /// Registered source buffer of the puts, one slot's payload long.
    out: OneSidedMemoryRegion<u64>,
    /// Chunks sent so far to each PE.
    sent: Vec<u64>,
    /// The latest ack read from each PE (chunks it consumed from this PE).
    acked: Vec<u64>,
    /// Chunks consumed so far from each PE.
    taken: Vec<u64>,
    /// Messages to this PE itself, not yet received.
    own: VecDeque<Vec<u8>>,
}

impl Mailboxes {
    /// Collective: allocates the mail region (zeroed before the caller's
    /// barrier, which must follow before any exchange) and the send buffer.
    pub(super) fn alloc(world: &LamellarWorld) -> Result<Self> {
        let size = world.num_pes();
        let slot_words = slot_bytes(size)? / 8;
        let words = size * SLOTS * (1 + slot_words) + size;
        let region = world
            .try_alloc_shared_mem_region::<u64>(words)
            .block()
            .map_err(|e| Error::Backend(format!("allocating the mail region: {e}")))?;
        // SAFETY: the region is new; no PE accesses it before the barrier
        // that follows in the builder.
        unsafe { region.as_mut_slice().fill(0) };
        let out = world.alloc_one_sided_mem_region::<u64>(slot_words);
        Ok(Mailboxes {
            region,
            slot_words,
            size,
            state: Mutex::new(State {
                out,
                sent: vec![0; size],
                acked: vec![0; size],
                taken: vec![0; size],
                own: VecDeque::new(),
            }),
        })
    }

    /// Payload bytes of a slot.
    pub(super) fn slot_bytes(&self) -> usize {
        self.slot_words * 8
    }

    /// Word of the slot (its flag word) in a receiver's part holding chunk
    /// `n` from `from`.
    fn slot(&self, from: usize, n: u64) -> usize {
        (from * SLOTS + (n % SLOTS as u64) as usize) * (1 + self.slot_words)
    }

    /// Word of a sender's part holding the ack of `receiver`.
    fn ack(&self, receiver: usize) -> usize {
        self.size * SLOTS * (1 + self.slot_words) + receiver
    }

    /// Reads word `word` of this PE's own part (a flag or an ack word, which
    /// other PEs write with remote atomic stores) with a CPU atomic load.
    ///
    /// Not a Lamellar `atomic_load` to this PE: over libfabric that is a
    /// fabric operation to oneself that waits for every operation in
    /// flight (tens of microseconds per poll); the word is in this
    /// process's memory. Lamellar's remote atomic store writes the aligned
    /// word in one store: a CPU atomic on `shmem` (the lamellae's
    /// `net_atomic_op`), the provider's write into this process's
    /// registered memory on a network lamellae. The acquire load orders the
    /// payload reads after it, and the sender completed the payload's put
    /// before it stored the flag.
    fn load_own(&self, word: usize) -> Result<u64> {
        assert!(word < self.region.len(), "mail word out of range");
        // SAFETY: only the address of this PE's part is taken.
        let base = unsafe { self.region.as_mut_ptr() }
            .map_err(|e| Error::Backend(format!("mail region has no local part: {e:?}")))?;
        // SAFETY: `word` lies in this PE's part (asserted), which lives as
        // long as `self.region`; the pointer is aligned for `u64` (a region
        // of `u64`s) and so for `AtomicU64` (same size and alignment on the
        // 64-bit targets Lamellar supports). The flag and ack words are
        // written only by remote atomic stores (never through a reference
        // or a non-atomic put, see the module docs), so an atomic load does
        // not race with a non-atomic access; the reference lives only for
        // this load.
        let atomic = unsafe { AtomicU64::from_ptr(base.add(word)) };
        Ok(atomic.load(Ordering::Acquire))
    }
}

/// A send of an exchange in progress.
struct Outgoing<'a> {
    to: usize,
    data: &'a [u8],
    /// Bytes sent so far.
    off: usize,
    done: bool,
}

/// A receive of an exchange in progress.
struct Incoming<'a> {
    from: usize,
    buf: &'a mut [u8],
    /// Bytes the sender sent so far (more than `buf` holds on a mismatch).
    got: usize,
    done: bool,
}

/// Keeps the first error.
fn note(first: &mut Result<()>, r: Result<()>) {
    if first.is_ok() {
        *first = r;
    }
}

fn mismatch(from: usize, me: usize, sent: usize, expected: usize) -> Result<()> {
    Err(Error::InvalidArgument(format!(
        "exchange: PE {from} sent {sent} bytes, PE {me} expected {expected}"
    )))
}

impl Comm {
    /// A neighbour exchange over the mailboxes (see the module docs):
    /// blocking, one loop over every send and receive.
    pub(super) fn mailbox_exchange(
        &self,
        mail: &Mailboxes,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()> {
        let (me, size) = (self.inner.rank, self.inner.size);
        distarray::checks::check_exchange(sends, recvs, size)?;
        let mut guard = mail.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *guard;
        let mut first = Ok(());
        let mut outs: Vec<Outgoing<'_>> = Vec::with_capacity(sends.len());
        for &(to, data) in sends {
            if to == me {
                st.own.push_back(data.to_vec());
            } else {
                outs.push(Outgoing {
                    to,
                    data,
                    off: 0,
                    done: false,
                });
            }
        }
        let mut ins: Vec<Incoming<'_>> = Vec::with_capacity(recvs.len());
        for (from, buf) in recvs.iter_mut() {
            if *from != me {
                ins.push(Incoming {
                    from: *from,
                    buf: &mut buf[..],
                    got: 0,
                    done: false,
                });
                continue;
            }
            match st.own.pop_front() {
                Some(m) if m.len() == buf.len() => buf.copy_from_slice(&m),
                Some(m) => note(&mut first, mismatch(me, me, m.len(), buf.len())),
                None => note(
                    &mut first,
                    Err(Error::InvalidArgument(format!(
                        "exchange: PE {me} expects a message from itself that it did not send"
                    ))),
                ),
            }
        }
        // Peers whose earlier message of this exchange is unfinished: their
        // later ones wait (per-pair order), rebuilt on every pass.
        let mut blocked: Vec<usize> = Vec::new();
        let progress = || self.progress();
        let mut backoff = Backoff::new(Backoff::MESSAGES, &progress);
        // A peer seen departed while this exchange waited for it.
        let mut gone: Option<usize> = None;
        loop {
            let mut moved = false;
            blocked.clear();
            for o in outs.iter_mut().filter(|o| !o.done) {
                if blocked.contains(&o.to) {
                    continue;
                }
                moved |= self.try_send(mail, st, o)?;
                if !o.done {
                    blocked.push(o.to);
                }
            }
            blocked.clear();
            for i in ins.iter_mut().filter(|i| !i.done) {
                if blocked.contains(&i.from) {
                    continue;
                }
                moved |= self.try_receive(mail, st, i)?;
                if i.done {
                    if i.got != i.buf.len() {
                        note(&mut first, mismatch(i.from, me, i.got, i.buf.len()));
                    }
                } else {
                    blocked.push(i.from);
                }
            }
            if outs.iter().all(|o| o.done) && ins.iter().all(|i| i.done) {
                return first;
            }
            if moved {
                backoff.reset();
                gone = None;
                continue;
            }
            if let Some(pe) = gone {
                // Its transfers completed before it said so, and one more
                // pass found nothing from it.
                return Err(Error::PeerFailed {
                    rank: pe,
                    reason: format!(
                        "PE {pe} ended while PE {me} was exchanging neighbour messages with \
                         it (a different number of exchanges?)"
                    ),
                });
            }
            backoff.wait_checking(|| {
                let mut waiting = outs
                    .iter()
                    .filter(|o| !o.done)
                    .map(|o| o.to)
                    .chain(ins.iter().filter(|i| !i.done).map(|i| i.from));
                gone = waiting.find(|&pe| self.departed(pe));
            });
        }
    }

    /// Sends the chunks of `o` for which `o.to` has a free slot; whether
    /// any was sent.
    fn try_send(&self, mail: &Mailboxes, st: &mut State, o: &mut Outgoing<'_>) -> Result<bool> {
        let me = self.inner.rank;
        let to = o.to;
        let mut moved = false;
        while !o.done {
            let n = st.sent[to];
            if n >= st.acked[to] + SLOTS as u64 {
                st.acked[to] = mail.load_own(mail.ack(to))?;
                if n >= st.acked[to] + SLOTS as u64 {
                    return Ok(moved);
                }
            }
            let len = (o.data.len() - o.off).min(mail.slot_bytes());
            let last = o.off + len == o.data.len();
            let flag = ((n + 1) << SEQ_SHIFT) | if last { LAST } else { 0 } | len as u64;
            let word = mail.slot(me, n);
            if len > 0 {
                let sub = st.out.sub_region(0..len.div_ceil(8));
                // SAFETY: `sub` is this PE's registered buffer (behind the
                // state lock; the previous put from it completed), `len`
                // bytes fit it; the put lands in the payload words of the
                // slot in `to`'s part (`me < size`), which is free (`to`
                // consumed chunk `n - SLOTS`, the last one in it) and which
                // `to` reads only after it sees the flag of `n`; `block`
                // returns once the put is complete at the target.
                unsafe {
                    let dst: &mut [u8] = bytemuck::cast_slice_mut(sub.as_mut_slice());
                    dst[..len].copy_from_slice(&o.data[o.off..o.off + len]);
                    mail.region.put_buffer(to, word + 1, &sub).block();
                }
            }
            std::sync::atomic::fence(Ordering::SeqCst);
            // SAFETY: the slot's flag word (in bounds), written only with
            // remote atomic stores. Unmanaged: issued now (the value is
            // injected, copied by the transport), not waited for. Nothing
            // here needs its completion (the receiver waits for the flag;
            // this PE's later blocking operations and its departure wait
            // for all its operations in flight).
            unsafe { mail.region.atomic_store_unmanaged(to, word, flag) };
            st.sent[to] = n + 1;
            o.off += len;
            o.done = last;
            moved = true;
        }
        Ok(moved)
    }

    /// Consumes the chunks of `i` that have arrived (copying what fits,
    /// acking each); whether any was.
    fn try_receive(&self, mail: &Mailboxes, st: &mut State, i: &mut Incoming<'_>) -> Result<bool> {
        let me = self.inner.rank;
        let from = i.from;
        let mut moved = false;
        while !i.done {
            let n = st.taken[from];
            let word = mail.slot(from, n);
            let flag = mail.load_own(word)?;
            if flag >> SEQ_SHIFT != n + 1 {
                return Ok(moved);
            }
            std::sync::atomic::fence(Ordering::SeqCst);
            let len = (flag & (LAST - 1)) as usize;
            let fits = len.min(i.buf.len().saturating_sub(i.got));
            if fits > 0 {
                let at = i.got;
                // SAFETY: the payload words of the slot (`len` bytes, at
                // most a slot's payload), which the sender completed before
                // storing the flag and does not write again before this PE
                // acks the chunk.
                unsafe { read_slot(&mail.region, word + 1, &mut i.buf[at..at + fits]) }?;
            }
            // SAFETY: this PE's ack word in `from`'s part (`me < size`),
            // written only with remote atomic stores. Unmanaged, as the
            // flag in `try_send`: the sender waits for the ack if it needs
            // it, nothing here waits for its completion.
            unsafe {
                mail.region
                    .atomic_store_unmanaged(from, mail.ack(me), n + 1)
            };
            st.taken[from] = n + 1;
            i.got += len;
            i.done = flag & LAST != 0;
            moved = true;
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_slot_sizes_follow_the_budget() {
        // (the variable is not set in this crate's unit tests)
        assert_eq!(slot_bytes(2).unwrap(), 32 << 10);
        assert_eq!(slot_bytes(32).unwrap(), 32 << 10);
        assert_eq!(slot_bytes(64).unwrap(), 16 << 10);
        assert_eq!(slot_bytes(256).unwrap(), 4 << 10);
        assert_eq!(slot_bytes(100_000).unwrap(), 4 << 10);
        for p in [3, 7, 100, 1000] {
            assert_eq!(slot_bytes(p).unwrap() % 8, 0);
        }
    }

    #[test]
    fn flags_carry_number_last_and_length() {
        let max_len = (1u64 << (LEN_BITS - 1)) - 1;
        let flag = ((41u64 + 1) << SEQ_SHIFT) | LAST | max_len;
        assert_eq!(flag >> SEQ_SHIFT, 42);
        assert_ne!(flag & LAST, 0);
        assert_eq!(flag & (LAST - 1), max_len);
    }
}
