//! The transport of the tree collectives of a
//! [`LamellarComm`](crate::LamellarComm) ([`collective::tree_allreduce`],
//! [`collective::tree_broadcast`]):
//! message slots in each PE's part of a tree region, written with remote
//! puts and flagged with remote atomics; payloads larger than a slot go
//! through a temporary region ([`BigTransport`]).

use std::sync::atomic::Ordering;

use distarray::collective::{self, Combiner, Phase, Transport};
use distarray::{Error, Result};
use lamellar::memregion::prelude::*;

use super::Comm;
use crate::backoff::backoff_until;

/// Payload words of one message slot of the tree collectives; larger
/// allreduce payloads go through a temporary region with payload-sized
/// slots (same tree), larger broadcasts in slot-sized pieces.
pub(super) const SLOT_WORDS: usize = 512;
/// Words of one slot: the sequence number of the collective whose message
/// it holds, then the payload.
const SLOT: usize = 1 + SLOT_WORDS;
/// Reduction rounds with a slot each (up to 2^24 PEs).
const ROUNDS: usize = 24;
/// Word of a PE's tree region holding the last tree collective it
/// completed.
const DONE_WORD: usize = (2 + ROUNDS) * SLOT;
/// Words per PE of the tree region: two broadcast slots (by parity of the
/// sequence number), one slot per reduction round, the done word.
pub(super) const TREE_WORDS: usize = DONE_WORD + 1;

impl Comm {
    /// Runs a tree collective (the caller holds the collective guard):
    /// numbers it and publishes its completion.
    pub(super) fn tree_collective<R>(
        &self,
        full: bool,
        f: impl FnOnce(&TreeTransport<'_>) -> R,
    ) -> R {
        let inner = &*self.inner;
        let seq = inner.tree_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let out = f(&TreeTransport { comm: self, seq });
        if full {
            // every PE entered this allreduce: all completed the previous one
            inner.tree_safe.fetch_max(seq - 1, Ordering::SeqCst);
        }
        // SAFETY: the done word of this PE's part is written only here
        // (atomically) and read by other PEs with atomic loads.
        unsafe { inner.tree.atomic_store(inner.rank, DONE_WORD, seq).block() };
        out
    }

    /// Allreduce of a payload larger than a tree slot (collective; the
    /// caller holds the guard): the same binomial tree, hence the same
    /// combination order, over a temporary region with one message slot
    /// per round — O(log P) messages of the payload's size per PE, where
    /// an allgather would move P payloads.
    pub(super) fn big_tree_allreduce(&self, buf: &mut [u8], combine: Combiner<'_>) -> Result<()> {
        let inner = &*self.inner;
        let words = buf.len().div_ceil(8);
        let rounds = (usize::BITS - (inner.size - 1).leading_zeros()) as usize;
        let slot_words = 1 + words;
        let region = inner
            .world
            .try_alloc_shared_mem_region::<u64>((1 + rounds) * slot_words)
            .block()
            .map_err(|e| Error::Backend(format!("allocating an allreduce region: {e}")))?;
        // SAFETY: the region is new and no PE writes to it before the
        // barrier below; the slice is this PE's part and dies here.
        unsafe { region.as_mut_slice().fill(0) };
        self.sync();
        let out = inner.world.alloc_one_sided_mem_region::<u64>(words);
        let t = BigTransport {
            comm: self,
            region: &region,
            out: &out,
            slot_words,
        };
        collective::tree_allreduce(&t, buf, combine)
    }
}

/// The point-to-point messages of one tree collective: the sender puts the
/// payload into its slot of the receiver's tree region, then stores the
/// collective's sequence number into the slot's first word, on which the
/// receiver waits.
///
/// A reduction slot of round `k` is written only by PE `r + 2^k` in
/// allreduces, and that PE cannot enter the next allreduce before the
/// receiver consumed the message (the result it waits for needs it). A
/// broadcast slot (by parity of the sequence number) may be written by
/// different parents: before writing, the sender makes sure the receiver
/// has completed collective `seq - 2` (known after any barrier or
/// allreduce, otherwise read from the receiver's done word).
pub(super) struct TreeTransport<'a> {
    comm: &'a Comm,
    seq: u64,
}

impl TreeTransport<'_> {
    fn slot(&self, phase: Phase) -> usize {
        match phase {
            Phase::Broadcast => (self.seq % 2) as usize * SLOT,
            Phase::Reduce(k) => (2 + k as usize) * SLOT,
            // refused by `send` before a slot is needed
            Phase::Exchange => 0,
        }
    }
}

impl Transport for TreeTransport<'_> {
    fn rank(&self) -> usize {
        self.comm.inner.rank
    }

    fn size(&self) -> usize {
        self.comm.inner.size
    }

    fn send(&self, to: usize, phase: Phase, data: &[u8]) -> Result<()> {
        let inner = &*self.comm.inner;
        if phase == Phase::Exchange {
            return Err(Error::Backend(
                "the Lamellar backend has no neighbour exchange".into(),
            ));
        }
        if let Phase::Reduce(k) = phase {
            if k as usize >= ROUNDS {
                return Err(Error::Backend(
                    "more PEs than the tree collectives support".into(),
                ));
            }
        }
        if data.len() > SLOT_WORDS * 8 {
            return Err(Error::Backend("tree message larger than a slot".into()));
        }
        let slot = self.slot(phase);
        if phase == Phase::Broadcast && inner.tree_safe.load(Ordering::SeqCst) + 2 < self.seq {
            let need = self.seq - 2;
            // SAFETY: the done word exists on every PE and is only accessed
            // atomically.
            backoff_until(
                || unsafe { inner.tree.atomic_load(to, DONE_WORD).block() } >= need,
                &|| self.comm.progress(),
            );
        }
        let out = inner.tree_out.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `out` is this PE's registered buffer of SLOT_WORDS words
        // (behind the mutex), `data` fits (checked above); the slot lies in
        // `to`'s tree region, whose payload `to` does not read before the
        // sequence number is stored; the first word is accessed only
        // atomically.
        unsafe { write_slot(&inner.tree, &out, to, slot, data, self.seq) };
        Ok(())
    }

    fn recv(&self, _from: usize, phase: Phase, buf: &mut [u8]) -> Result<()> {
        let inner = &*self.comm.inner;
        let me = inner.rank;
        let slot = self.slot(phase);
        // SAFETY: this PE's own slot word, accessed only atomically.
        backoff_until(
            || unsafe { inner.tree.atomic_load(me, slot).block() } == self.seq,
            &|| self.comm.progress(),
        );
        std::sync::atomic::fence(Ordering::SeqCst);
        // SAFETY: the sender completed its put before storing the sequence
        // number, and no PE writes this slot again before this PE completes
        // the collective (see the type's docs).
        unsafe { read_slot(&inner.tree, slot + 1, buf) }
    }
}

/// Sends `data` into the slot at word `word` of `to`'s part of `region`:
/// copied into the registered buffer `out`, put into words `word + 1 ..`
/// (nothing for an empty message), then `flag` stored atomically into word
/// `word`, on which the receiver waits.
///
/// # Safety
///
/// `out` is the caller's alone during the call and holds at least
/// `ceil(data.len() / 8)` words; the slot's words lie in the region and the
/// receiver reads the payload only after it sees `flag`; the flag word is
/// accessed only atomically.
unsafe fn write_slot(
    region: &SharedMemoryRegion<u64>,
    out: &OneSidedMemoryRegion<u64>,
    to: usize,
    word: usize,
    data: &[u8],
    flag: u64,
) {
    if !data.is_empty() {
        let sub = out.sub_region(0..data.len().div_ceil(8));
        // SAFETY: `sub` is the caller's registered buffer (its contract);
        // the put lands in the slot's payload words, in bounds, unread by
        // the receiver until the flag; `block` returns once it is complete.
        unsafe {
            let dst: &mut [u8] = bytemuck::cast_slice_mut(sub.as_mut_slice());
            dst[..data.len()].copy_from_slice(data);
            region.put_buffer(to, word + 1, &sub).block();
        }
    }
    std::sync::atomic::fence(Ordering::SeqCst);
    // SAFETY: the flag word, accessed only atomically (the caller's
    // contract).
    unsafe { region.atomic_store(to, word, flag).block() };
}

/// Copies `buf.len()` bytes from this PE's part of `region` at word
/// `word` into `buf`, through a slice over those words only (other PEs may
/// be writing other words of the part meanwhile).
///
/// # Safety
///
/// The words `word .. word + ceil(len / 8)` lie in the region and no one
/// writes them during the call.
pub(super) unsafe fn read_slot(
    region: &SharedMemoryRegion<u64>,
    word: usize,
    buf: &mut [u8],
) -> Result<()> {
    let words = buf.len().div_ceil(8);
    debug_assert!(word + words <= region.len());
    // SAFETY: only the address of this PE's part is taken.
    let base = unsafe { region.as_mut_ptr() }
        .map_err(|e| Error::Backend(format!("collective region has no local part: {e:?}")))?;
    // SAFETY: in bounds and unwritten during the call (the caller's
    // contract); a shared slice over just these words.
    let src = unsafe { std::slice::from_raw_parts(base.add(word), words) };
    buf.copy_from_slice(&bytemuck::cast_slice::<u64, u8>(src)[..buf.len()]);
    Ok(())
}

/// The messages of one large allreduce ([`Comm::big_tree_allreduce`]):
/// a fresh region with a slot per message a PE can receive (the broadcast,
/// and one per reduction round), each written once, by one sender: the
/// payload, then a flag word set to 1, on which the receiver waits.
struct BigTransport<'a> {
    comm: &'a Comm,
    region: &'a SharedMemoryRegion<u64>,
    /// This PE's registered send buffer, one payload long.
    out: &'a OneSidedMemoryRegion<u64>,
    slot_words: usize,
}

impl BigTransport<'_> {
    fn slot(&self, phase: Phase) -> Result<usize> {
        match phase {
            Phase::Broadcast => Ok(0),
            Phase::Reduce(k) => Ok((1 + k as usize) * self.slot_words),
            Phase::Exchange => Err(Error::Backend(
                "the Lamellar backend has no neighbour exchange".into(),
            )),
        }
    }
}

impl Transport for BigTransport<'_> {
    fn rank(&self) -> usize {
        self.comm.inner.rank
    }

    fn size(&self) -> usize {
        self.comm.inner.size
    }

    fn send(&self, to: usize, phase: Phase, data: &[u8]) -> Result<()> {
        let slot = self.slot(phase)?;
        if data.len().div_ceil(8) + 1 > self.slot_words {
            return Err(Error::Backend(
                "allreduce message larger than its slot".into(),
            ));
        }
        // SAFETY: `out` is this PE's own registered buffer of a payload's
        // words, used by one message at a time; the slot lies in `to`'s
        // part, which `to` does not read before the flag; the flag word is
        // accessed only atomically.
        unsafe { write_slot(self.region, self.out, to, slot, data, 1) };
        Ok(())
    }

    fn recv(&self, _from: usize, phase: Phase, buf: &mut [u8]) -> Result<()> {
        let slot = self.slot(phase)?;
        let me = self.comm.inner.rank;
        // SAFETY: this PE's own flag word, accessed only atomically.
        backoff_until(
            || unsafe { self.region.atomic_load(me, slot).block() } == 1,
            &|| self.comm.progress(),
        );
        std::sync::atomic::fence(Ordering::SeqCst);
        // SAFETY: the sender's put completed before it set the flag, and
        // nobody writes this slot again (one message per slot and call).
        unsafe { read_slot(self.region, slot + 1, buf) }
    }
}
