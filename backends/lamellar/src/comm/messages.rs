//! Neighbour messages ([`NeighbourMessages`]) of a [`LamellarComm`]: the
//! choice of transport ([`Transport`]) and the active-message transport.
//!
//! # Transports
//!
//! * RDMA mailboxes (the `mailboxes` module: per-pair slots in registered
//!   memory, written with puts and flagged with remote atomics, with flow
//!   control): the default. On a network lamellae Lamellar 0.8.1's active
//!   messages fail (see the builder); on `shmem` the mailboxes measured
//!   much faster than the active messages (a ghost update of a 1000 x 1000
//!   array on 2 PEs: 2-3 µs against 120-130 µs; the Poisson CG 0.21-0.22
//!   against 0.24-0.30 ms per iteration; BENCHMARKS-lamellar.md).
//! * Active messages (this module), with `DISTARRAY_LAMELLAR_MESSAGES=am`:
//!   their `exchange_bytes_start` returns once the messages are sent (the
//!   receives happen in `wait`), where the mailboxes run the whole
//!   exchange at the start.
//! * None: no messages capability (`messages()` is `None`; halos fall back
//!   to one-sided gets).
//!
//! `DISTARRAY_LAMELLAR_MESSAGES=am|rdma|off` forces one (the same on every
//! PE). Both transports match the messages between two PEs in call and
//! list order and synchronise nothing but the pairs that message each
//! other; both report a length mismatch at the receiver (the message
//! consumed) and a departed sender as [`Error::PeerFailed`].
//!
//! # Active messages
//!
//! Every message travels as one active message ([`Deposit`]) carrying
//! (sender, sequence number, bytes), which the target PE's runtime executes
//! by depositing the bytes into the target's [`Mailbox`]. The sequence
//! number counts the messages from one PE to another: the sender numbers
//! them in the order its exchanges send them, the receiver claims the
//! numbers of the messages it expects in the order its exchanges start.
//! So the messages between two PEs are matched in call (and list) order,
//! and several exchanges in flight never mix, in whatever order the
//! active messages arrive.
//!
//! A receive waits for its (sender, number) in the mailbox, driving this
//! PE's runtime meanwhile (with the `single_thread` executor nothing else
//! executes incoming active messages). No exchange synchronises all PEs:
//! only neighbours wait for each other.
//!
//! # Flow control
//!
//! Sends never wait. A mailbox holds the messages that arrived before
//! their receive: at most, for each sender, the messages of the exchanges
//! that sender has started and this PE has not yet received. In a
//! symmetric pattern (a halo update, where every PE also receives from the
//! PEs it sends to) a PE cannot start exchange k + 2 before its neighbours
//! started exchange k + 1, so a mailbox holds at most about two exchanges'
//! messages per neighbour (per exchange kept in flight). A one-way pattern
//! (PE a sends to b, never receives from it) has no such bound: a sender
//! running ahead of its receiver fills the receiver's mailbox, like MPI's
//! eager buffering.
//!
//! # Failure
//!
//! A PE that fails ends the whole job (the exit-on-panic hook and the
//! launcher, as for every other wait of this backend). A PE that ends
//! normally while a neighbour still waits for its message (a broken
//! contract: every PE makes the same number of exchanges) marks itself
//! departed on every PE when its communicator drops, after its own active
//! messages completed; the waiting receive then returns
//! [`Error::PeerFailed`] instead of waiting forever.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

use distarray::comm::{NeighbourMessages, Request};
use distarray::{Error, Result};
use lamellar::active_messaging::prelude::*;

use super::{Comm, LamellarComm, WeakComm};
use crate::backoff::Backoff;

/// Messages that arrived at this PE and were not received yet, by
/// (sender, sequence number).
///
/// One per process: Lamellar allows one world per process and
/// [`LamellarComm`] one communicator on it (clones share it), so the active
/// messages find it without a key.
static MAILBOX: Mutex<Option<Messages>> = Mutex::new(None);

/// Message bytes by (sender, sequence number).
type Messages = HashMap<(usize, u64), Vec<u8>>;

/// The process's mailbox (see [`MAILBOX`]).
pub(super) struct Mailbox;

impl Mailbox {
    fn lock() -> MutexGuard<'static, Option<Messages>> {
        MAILBOX.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deposit(from: usize, seq: u64, bytes: Vec<u8>) {
        Self::lock()
            .get_or_insert_with(HashMap::new)
            .insert((from, seq), bytes);
    }

    fn take(from: usize, seq: u64) -> Option<Vec<u8>> {
        Self::lock().as_mut()?.remove(&(from, seq))
    }

    /// Number of messages waiting (for tests of this crate).
    #[cfg(test)]
    fn waiting() -> usize {
        Self::lock().as_ref().map_or(0, HashMap::len)
    }
}

/// The active message of one neighbour message: deposits `bytes` from
/// `from`, numbered `seq`, into the target PE's mailbox.
#[lamellar::AmData(Debug, Clone)]
struct Deposit {
    from: usize,
    seq: u64,
    bytes: Vec<u8>,
}

#[lamellar::am]
impl LamellarAM for Deposit {
    async fn exec(self) {
        Mailbox::deposit(self.from, self.seq, self.bytes.clone());
    }
}

/// The transport of a communicator's neighbour messages (see the module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    /// Lamellar active messages into a per-process mailbox.
    ActiveMessages,
    /// RDMA mailboxes (`mailboxes`).
    Mailboxes,
    /// No neighbour messages.
    Off,
}

impl Transport {
    /// `DISTARRAY_LAMELLAR_MESSAGES` (`am`, `rdma`, `off`), else RDMA
    /// mailboxes.
    pub(super) fn from_env() -> Result<Self> {
        match std::env::var("DISTARRAY_LAMELLAR_MESSAGES").as_deref() {
            Ok("am") => Ok(Transport::ActiveMessages),
            Ok("rdma") => Ok(Transport::Mailboxes),
            Ok("off") => Ok(Transport::Off),
            Ok(other) => Err(Error::Backend(format!(
                "DISTARRAY_LAMELLAR_MESSAGES={other:?}: expected am, rdma or off"
            ))),
            Err(_) => Ok(Transport::Mailboxes),
        }
    }
}

/// Per-pair message numbers of one PE (active-message transport).
#[derive(Debug, Default)]
pub(super) struct Sequences {
    /// Messages sent so far to each PE.
    sent: Vec<u64>,
    /// Messages claimed so far (by started exchanges) from each PE.
    claimed: Vec<u64>,
}

impl Sequences {
    pub(super) fn new(size: usize) -> Self {
        Sequences {
            sent: vec![0; size],
            claimed: vec![0; size],
        }
    }
}

impl Comm {
    fn sequences(&self) -> MutexGuard<'_, Sequences> {
        self.inner.seqs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sending half of an exchange: the checks, claiming the numbers
    /// of the messages to receive (in start order), the sends. Returns the
    /// claimed numbers, in `recvs`' order.
    fn send_exchange(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &[(usize, &mut [u8])],
    ) -> Result<Vec<u64>> {
        let (me, size) = (self.inner.rank, self.inner.size);
        distarray::checks::check_exchange(sends, recvs, size)?;
        // One lock over claiming and sending: the numbers follow the order
        // in which this PE's exchanges start, also from several threads.
        let mut seqs = self.sequences();
        let claimed = recvs
            .iter()
            .map(|(from, _)| {
                let n = seqs.claimed[*from];
                seqs.claimed[*from] += 1;
                n
            })
            .collect();
        for &(to, data) in sends {
            let seq = seqs.sent[to];
            seqs.sent[to] += 1;
            if to == me {
                Mailbox::deposit(me, seq, data.to_vec());
            } else {
                // Spawned at once; the handle is not needed (the active
                // message returns nothing), and the world waits for every
                // active message at exit (`CommInner`'s drop too).
                drop(self.inner.world.spawn_am_pe(
                    to,
                    Deposit {
                        from: me,
                        seq,
                        bytes: data.to_vec(),
                    },
                ));
            }
        }
        Ok(claimed)
    }

    /// Waits for message `seq` from `from`, driving this PE's runtime, and
    /// copies it into `buf`. The message is consumed also when its length
    /// differs from `buf`'s (an error): later messages keep their order.
    fn receive(&self, from: usize, seq: u64, buf: &mut [u8]) -> Result<()> {
        // The runtime is driven before every attempt (below), not only
        // from the back-off's 16th failure on: with the `single_thread`
        // executor the message's active message runs only then.
        let mut backoff = Backoff::new(Backoff::MESSAGES, &|| {});
        // `from` was seen departed: its active messages completed before
        // it said so, so the next attempt is its last chance.
        let mut gone = false;
        let msg = loop {
            if let Some(m) = Mailbox::take(from, seq) {
                break m;
            }
            if gone {
                return Err(Error::PeerFailed {
                    rank: from,
                    reason: format!(
                        "PE {from} ended without sending message {seq} of a neighbour exchange \
                         to PE {} (a different number of exchanges?)",
                        self.inner.rank
                    ),
                });
            }
            backoff.wait_checking(|| gone = self.departed(from));
            self.progress();
        };
        if msg.len() != buf.len() {
            return Err(Error::InvalidArgument(format!(
                "exchange: PE {from} sent {} bytes, PE {} expected {}",
                msg.len(),
                self.inner.rank,
                buf.len()
            )));
        }
        buf.copy_from_slice(&msg);
        Ok(())
    }

    /// Whether PE `pe` has marked itself departed on this PE.
    pub(super) fn departed(&self, pe: usize) -> bool {
        // SAFETY: `pe < size`, the length of every PE's part of the region;
        // its words are only accessed with remote atomics.
        unsafe { self.inner.gone.atomic_load(self.inner.rank, pe).block() != 0 }
    }

    /// Receives every message of `recvs` (all of them, also after an
    /// error, so that no claimed message stays behind); the first error.
    fn receive_all(&self, recvs: impl Iterator<Item = (usize, u64, *mut u8, usize)>) -> Result<()> {
        self.inner.handles.settle();
        let mut first = Ok(());
        for (from, seq, ptr, len) in recvs {
            // SAFETY: `ptr` points to `len` writable bytes that nothing
            // else accesses until this receive returns (from a `&mut [u8]`
            // borrowed by the caller, or by the contract of
            // `exchange_bytes_start`).
            let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
            let r = self.receive(from, seq, buf);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Comm {
    /// The error of an exchange on a communicator without messages.
    fn no_messages() -> Error {
        Error::Backend(
            "neighbour messages are off on this Lamellar communicator \
             (DISTARRAY_LAMELLAR_MESSAGES=off)"
                .into(),
        )
    }
}

impl NeighbourMessages for Comm {
    /// Active messages: one per send (spawned at once, not awaited), then
    /// a wait for each expected message in this PE's mailbox. RDMA
    /// mailboxes: one loop advancing every send and receive (see
    /// `mailboxes`). No collective: only neighbours wait for each other.
    /// Errors: a PE out of range (on the caller, before anything is sent);
    /// a message whose length differs from the receive buffer (at the
    /// receiver, after all messages arrived; the pair stays in step);
    /// [`Error::PeerFailed`] when a peer ended without sending (or
    /// receiving).
    fn exchange_bytes(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()> {
        self.inner.handles.settle();
        match self.inner.transport {
            Transport::ActiveMessages => {}
            Transport::Mailboxes => {
                let mail = self.inner.mail.as_ref().expect("mailboxes allocated");
                return self.mailbox_exchange(mail, sends, recvs);
            }
            Transport::Off => return Err(Self::no_messages()),
        }
        let seqs = self.send_exchange(sends, recvs)?;
        self.receive_all(
            recvs
                .iter_mut()
                .zip(seqs)
                .map(|((from, b), seq)| (*from, seq, b.as_mut_ptr(), b.len())),
        )
    }

    /// Active messages: sends at once (the active messages carry copies of
    /// the `sends` buffers, which are free again when this returns); the
    /// receives happen in the request's `wait` (or drop). RDMA mailboxes:
    /// the whole exchange before returning (a multi-chunk message needs
    /// its receiver's acks; a request that sent and received in its
    /// `wait` is future work).
    unsafe fn exchange_bytes_start(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn Request>> {
        self.inner.handles.settle();
        match self.inner.transport {
            Transport::ActiveMessages => {}
            Transport::Mailboxes => {
                // A rank out of range: `Err` here, before anything is
                // sent; the errors of the exchange itself from the wait.
                distarray::checks::check_exchange(sends, recvs, self.inner.size)?;
                let result = self.exchange_bytes(sends, recvs);
                return Ok(Box::new(Finished(Some(result))));
            }
            Transport::Off => return Err(Self::no_messages()),
        }
        let seqs = self.send_exchange(sends, recvs)?;
        let recvs = recvs
            .iter_mut()
            .zip(seqs)
            .map(|((from, b), seq)| (*from, seq, b.as_mut_ptr(), b.len()))
            .collect();
        Ok(Box::new(PendingReceives {
            comm: self.downgrade(),
            recvs,
            done: false,
        }))
    }
}

/// The messages of a [`LamellarComm`]: those of the communicator it
/// reaches (`Err` once it is gone).
impl NeighbourMessages for LamellarComm {
    fn exchange_bytes(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()> {
        self.strong()?.exchange_bytes(sends, recvs)
    }

    unsafe fn exchange_bytes_start(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn Request>> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { self.strong()?.exchange_bytes_start(sends, recvs) }
    }
}

/// An exchange that ran to its end in `exchange_bytes_start` (the RDMA
/// mailboxes): its result, reported by `wait` (dropped unread otherwise,
/// as a dropped request's error is).
struct Finished(Option<Result<()>>);

impl Request for Finished {
    fn wait(mut self: Box<Self>) -> Result<()> {
        self.0.take().unwrap_or(Ok(()))
    }
}

/// The receives of an exchange started by `exchange_bytes_start`: the
/// caller's buffers, written in `wait` (or on drop).
struct PendingReceives {
    /// Weak: a leaked request keeps no communicator alive.
    comm: WeakComm,
    /// (source, sequence number, buffer, length).
    recvs: Vec<(usize, u64, *mut u8, usize)>,
    done: bool,
}

// SAFETY: the raw pointers are the caller's receive buffers, which the
// contract of `exchange_bytes_start` keeps valid and untouched by anyone
// else until this handle is waited or dropped, on whatever thread.
unsafe impl Send for PendingReceives {}

impl PendingReceives {
    fn finish(&mut self) -> Result<()> {
        self.done = true;
        self.comm.upgrade()?.receive_all(self.recvs.iter().copied())
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

impl super::CommInner {
    /// Marks this PE departed on every PE (from `CommInner`'s drop), once
    /// every active message it sent has completed, so that a neighbour
    /// still waiting for one of its messages returns an error.
    pub(super) fn depart(&self) {
        self.world.wait_all();
        std::sync::atomic::fence(Ordering::SeqCst);
        for pe in 0..self.size {
            // SAFETY: word `rank` of PE `pe`'s part (`rank < size`, the
            // length of every part); only accessed with remote atomics.
            unsafe { self.gone.atomic_store(pe, self.rank, 1).block() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mailbox;

    #[test]
    fn mailbox_keys_by_sender_and_number() {
        Mailbox::deposit(3, 0, vec![1]);
        Mailbox::deposit(3, 1, vec![2, 2]);
        Mailbox::deposit(4, 0, vec![3]);
        assert_eq!(Mailbox::take(3, 1), Some(vec![2, 2]));
        assert_eq!(Mailbox::take(3, 1), None);
        assert_eq!(Mailbox::take(4, 0), Some(vec![3]));
        assert_eq!(Mailbox::take(3, 0), Some(vec![1]));
        assert_eq!(Mailbox::waiting(), 0);
    }
}
