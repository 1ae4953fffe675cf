//! The point-to-point transport of the tree collectives (allreduce,
//! broadcast): each rank's [`Mailbox`] of [`Message`]s, and
//! [`TreeTransport`], which sends into and receives from them. Neighbour
//! exchanges (the `neighbour` module) use the same transport with numbered
//! messages.

use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};

use super::clock::VClock;
use super::comm::ThreadedComm;
use super::neighbour::Awaiting;
use super::world::{relock, World, POLL};
use crate::collective::{Phase, Transport};
use crate::error::{Error, Result};

/// One message of a tree collective.
pub(super) struct Message {
    pub(super) from: usize,
    pub(super) phase: Phase,
    data: Vec<u8>,
    /// The sender's vector clock (checking mode): receiving it orders the
    /// receiver after everything the sender did before sending.
    clock: Option<VClock>,
    /// For [`Phase::Exchange`]: the number of the exchange between this
    /// sender and receiver (0, 1, ...), in the order the sender started
    /// them; the receiver matches the number it expects, fixed when it
    /// started its side (MPI's posting order). 0 for tree messages.
    seq: u64,
}

/// The messages waiting for one rank.
#[derive(Default)]
pub(super) struct Mailbox {
    pub(super) queue: Mutex<Vec<Message>>,
    pub(super) cv: Condvar,
}

/// The mailboxes of one rank during one tree collective.
pub(super) struct TreeTransport<'a> {
    pub(super) world: &'a World,
    pub(super) rank: usize,
}

impl Drop for TreeTransport<'_> {
    fn drop(&mut self) {
        self.world.blocked[self.rank].store(0, Ordering::SeqCst);
    }
}

impl Transport for TreeTransport<'_> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.world.size
    }

    fn send(&self, to: usize, phase: Phase, data: &[u8]) -> Result<()> {
        let (m, b) = &self.world.sent[self.rank];
        m.fetch_add(1, Ordering::SeqCst);
        b.fetch_add(data.len(), Ordering::SeqCst);
        let mb = &self.world.mailboxes[to];
        let seq = if phase == Phase::Exchange {
            self.world.next_sent(self.rank, to)
        } else {
            0
        };
        relock(&mb.queue).push(Message {
            from: self.rank,
            phase,
            data: data.to_vec(),
            clock: self.world.clocks.as_ref().map(|c| c.release(self.rank)),
            seq,
        });
        mb.cv.notify_all();
        self.world.wake();
        Ok(())
    }

    fn recv(&self, from: usize, phase: Phase, buf: &mut [u8]) -> Result<()> {
        self.recv_seq(from, phase, 0, buf)
    }
}

impl TreeTransport<'_> {
    /// Receives the message of `phase` number `seq` from `from` (tree
    /// messages all carry 0 and arrive in order).
    pub(super) fn recv_seq(
        &self,
        from: usize,
        phase: Phase,
        seq: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let awaiting =
            (phase == Phase::Exchange).then(|| Awaiting::new(self.world, self.rank, from));
        let mb = &self.world.mailboxes[self.rank];
        let mut q = relock(&mb.queue);
        loop {
            if let Some(i) = q
                .iter()
                .position(|m| m.from == from && m.phase == phase && m.seq == seq)
            {
                let m = q.remove(i);
                // no longer waiting, said before the mailbox is unlocked:
                // a deadlock check that saw the mark with the message gone
                // would take this rank for one still waiting for `from`
                drop(awaiting);
                if m.data.len() != buf.len() {
                    // a broken contract: fail every collective from now on
                    // (the others may wait in this one)
                    drop(q);
                    let e = Error::InvalidArgument(format!(
                        "collective payloads differ in length: rank {from} sent {} bytes, rank {} \
                         expected {}",
                        m.data.len(),
                        self.rank,
                        buf.len()
                    ));
                    self.world.set_broken(e.clone());
                    return Err(e);
                }
                buf.copy_from_slice(&m.data);
                if let (Some(c), Some(vc)) = (&self.world.clocks, &m.clock) {
                    c.acquire(self.rank, vc);
                }
                return Ok(());
            }
            self.world.check_failed()?;
            // Checked under the mailbox lock: a sender pushes before it
            // returns, so a finished sender with no message never sent it.
            if self.world.is_finished(from) {
                let e = Error::Aborted {
                    rank: from,
                    message: "rank returned without joining a collective the others entered".into(),
                };
                drop(q);
                self.world.set_broken(e.clone());
                return Err(e);
            }
            if let Some(e) = self.world.broken() {
                return Err(e);
            }
            if let Some(sched) = &self.world.sched {
                drop(q);
                sched.wait(self.rank, || {
                    format!("a message from rank {from} in a collective")
                })?;
                q = relock(&mb.queue);
            } else {
                q = mb
                    .cv
                    .wait_timeout(q, POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
}

impl ThreadedComm {
    /// Enters a tree collective: the transport, which marks this rank as
    /// waiting in it until dropped.
    pub(super) fn transport(&self) -> Result<TreeTransport<'_>> {
        self.world.point(self.rank);
        self.world.check_failed()?;
        if let Some(e) = self.world.broken() {
            return Err(e);
        }
        let seq = self.world.entered[self.rank].fetch_add(1, Ordering::SeqCst) + 1;
        self.world.blocked[self.rank].store(seq, Ordering::SeqCst);
        // this rank is now "in a collective" for lock waiters' deadlock check
        self.world.wake();
        Ok(TreeTransport {
            world: &self.world,
            rank: self.rank,
        })
    }
}
