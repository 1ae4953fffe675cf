//! Neighbour exchanges (`exchange_bytes`, `exchange_bytes_start`) over
//! the rank mailboxes of the `tree` module: the numbering that matches
//! each receive to its message in start order, the sending half, the
//! receives of a started exchange ([`PendingReceives`]) and the mark a
//! rank waiting for one neighbour leaves for deadlock checks
//! ([`Awaiting`]).

use std::sync::atomic::Ordering;

use super::comm::ThreadedComm;
use super::tree::TreeTransport;
use super::world::{relock, World, NOBODY};
use crate::collective::{Phase, Transport};
use crate::comm::Request;
use crate::error::Result;

impl World {
    /// The next number of the exchange messages `from` sends `to`.
    pub(super) fn next_sent(&self, from: usize, to: usize) -> u64 {
        let mut m = relock(&self.exchange_sent);
        let n = m.entry((from, to)).or_insert(0);
        *n += 1;
        *n - 1
    }

    /// The number of the next exchange message `to` receives from `from`,
    /// claimed when `to` starts its side.
    fn next_claimed(&self, from: usize, to: usize) -> u64 {
        let mut m = relock(&self.exchange_claimed);
        let n = m.entry((from, to)).or_insert(0);
        *n += 1;
        *n - 1
    }
}

impl ThreadedComm {
    /// Back in the exchange this rank entered last (to receive what it
    /// started with `exchange_bytes_start`), without entering a new
    /// collective.
    fn resume_transport(&self) -> TreeTransport<'_> {
        self.world.point(self.rank);
        // an exchange waits for its neighbours only (`World::awaiting`)
        self.world.blocked[self.rank].store(0, Ordering::SeqCst);
        TreeTransport {
            world: &self.world,
            rank: self.rank,
        }
    }

    /// The sending half of a neighbour exchange: the checks, entering it,
    /// claiming the numbers of the messages to receive (now, in start
    /// order, as MPI posts its receives), then the sends.
    pub(super) fn send_exchange(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &[(usize, &mut [u8])],
    ) -> Result<(TreeTransport<'_>, Vec<u64>)> {
        crate::checks::check_exchange(sends, recvs, self.world.size)?;
        let t = self.transport()?;
        // an exchange waits for its neighbours only (`World::awaiting`)
        self.world.blocked[self.rank].store(0, Ordering::SeqCst);
        let seqs = recvs
            .iter()
            .map(|(from, _)| self.world.next_claimed(*from, self.rank))
            .collect();
        for &(to, data) in sends {
            t.send(to, Phase::Exchange, data)?;
        }
        Ok((t, seqs))
    }
}

/// The receives of an exchange started by
/// [`ThreadedComm::exchange_bytes_start`]: the caller's buffers, written in
/// `wait` (or on drop).
///
/// [`ThreadedComm::exchange_bytes_start`]: crate::NeighbourMessages::exchange_bytes_start
pub(super) struct PendingReceives {
    pub(super) comm: ThreadedComm,
    /// (source, buffer, length, the number of the message to match).
    pub(super) recvs: Vec<(usize, *mut u8, usize, u64)>,
    pub(super) done: bool,
}

// SAFETY: the raw pointers are the caller's receive buffers, which the
// contract of `exchange_bytes_start` keeps valid and untouched by anyone
// else until this handle is waited or dropped, on whatever thread.
unsafe impl Send for PendingReceives {}

impl PendingReceives {
    fn finish(&mut self) -> Result<()> {
        self.done = true;
        self.comm.handles.settle();
        let t = self.comm.resume_transport();
        for &(from, ptr, len, seq) in &self.recvs {
            // SAFETY: `ptr` points to `len` bytes of a receive buffer that
            // the caller of `exchange_bytes_start` keeps valid, unmoved and
            // unaccessed until this handle is done (its safety contract);
            // nothing else refers to it meanwhile.
            let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
            t.recv_seq(from, Phase::Exchange, seq, buf)?;
        }
        Ok(())
    }
}

impl Request for PendingReceives {
    fn wait(mut self: Box<Self>) -> Result<()> {
        self.finish()
    }
}

impl Drop for PendingReceives {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.finish();
        }
    }
}

/// Marks a rank as waiting for one neighbour's exchange message until
/// dropped.
pub(super) struct Awaiting<'a> {
    world: &'a World,
    rank: usize,
}

impl<'a> Awaiting<'a> {
    pub(super) fn new(world: &'a World, rank: usize, from: usize) -> Self {
        world.awaiting[rank].store(from, Ordering::SeqCst);
        // lock waiters re-check whether this rank now waits for them
        world.wake();
        Awaiting { world, rank }
    }
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        self.world.awaiting[self.rank].store(NOBODY, Ordering::SeqCst);
    }
}
