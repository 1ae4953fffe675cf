//! [`ThreadedComm`]: one rank's communicator, and its
//! [`OneSidedComm`] implementation over the rendezvous, the tree
//! transport and the neighbour exchanges.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::neighbour::PendingReceives;
use super::race::SegShadow;
use super::segment::Segment;
use super::window::ThreadedWindow;
use super::world::World;
use crate::collective::{self, Combiner, Phase};
use crate::comm::{Element, NeighbourMessages, OneSidedComm, Request};
use crate::error::{Error, Result};
use crate::rma::handles::HandleSlot;

/// One rank's handle on a threaded communicator (see the [module docs](super)).
#[derive(Clone)]
pub struct ThreadedComm {
    pub(super) world: Arc<World>,
    pub(super) rank: usize,
    /// This rank's non-blocking handle slot (settled before every wait for
    /// another rank: the collectives here, locks and fences in the
    /// windows' `WindowState`).
    pub(super) handles: Arc<HandleSlot>,
}

impl std::fmt::Debug for ThreadedComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadedComm(rank {} of {})", self.rank, self.world.size)
    }
}

/// Point-to-point traffic of one rank's tree collectives (allreduce,
/// broadcast), from [`ThreadedComm::traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages this rank has sent.
    pub messages: usize,
    /// Payload bytes this rank has sent.
    pub bytes: usize,
}

impl ThreadedComm {
    /// The messages and bytes this rank has sent in tree collectives so
    /// far: what a network would carry for them. Tests use it to check
    /// that reductions cost O(log P) messages per rank.
    pub fn traffic(&self) -> Traffic {
        let (m, b) = &self.world.sent[self.rank];
        Traffic {
            messages: m.load(Ordering::SeqCst),
            bytes: b.load(Ordering::SeqCst),
        }
    }
}

// SAFETY: `rank` and `size` are this rank's place in the run; the
// collectives deliver every rank's contribution (rendezvous and tree
// transport of one world); the handle slot is this rank's, shared by every
// clone of the handle.
unsafe impl OneSidedComm for ThreadedComm {
    type RawWindow<T: Element> = ThreadedWindow<T>;

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.world.size
    }

    fn handle_slot(&self) -> &Arc<HandleSlot> {
        &self.handles
    }

    fn barrier(&self) -> Result<()> {
        self.handles.settle();
        self.world.rendezvous(self.rank, Arc::new(())).map(|_| ())
    }

    fn messages(&self) -> Option<&dyn NeighbourMessages> {
        Some(self)
    }

    fn allgather<T: Element>(&self, local: &[T]) -> Result<Vec<Vec<T>>> {
        self.handles.settle();
        let all = self.world.rendezvous(self.rank, Arc::new(local.to_vec()))?;
        Ok(all
            .iter()
            .map(|v| {
                v.downcast_ref::<Vec<T>>()
                    .expect("same type on every rank")
                    .clone()
            })
            .collect())
    }

    /// The binomial tree of [`collective::tree_allreduce`] over in-process
    /// mailboxes: `2 ⌈log2 P⌉` rounds, no rank touches more than two
    /// payloads per round.
    fn allreduce_bytes(&self, buf: &mut [u8], combine: Combiner<'_>) -> Result<()> {
        self.handles.settle();
        let t = self.transport()?;
        collective::tree_allreduce(&t, buf, combine)
    }

    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        crate::checks::check_rank(root, self.world.size)?;
        self.handles.settle();
        let t = self.transport()?;
        collective::tree_broadcast(&t, root, buf)
    }

    /// Each rank allocates its own segment (failing with
    /// [`Error::OutOfMemory`] instead of aborting when the allocator cannot
    /// serve it); one exchange hands every rank all segments, or tells every
    /// rank that one could not allocate.
    unsafe fn allocate_window<T: Element>(&self, lens: &[usize]) -> Result<ThreadedWindow<T>> {
        self.handles.settle();
        let mine: Option<Arc<Segment<T>>> = Segment::new(lens[self.rank]).ok().map(Arc::new);
        let all = self.world.rendezvous(self.rank, Arc::new(mine))?;
        let mut segments = Vec::with_capacity(all.len());
        for (rank, s) in all.iter().enumerate() {
            let seg = s
                .downcast_ref::<Option<Arc<Segment<T>>>>()
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "rank {rank} created a window of another element type"
                    ))
                })?
                .clone();
            match seg {
                Some(seg) if seg.len() == lens[rank] => segments.push(seg),
                Some(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "rank {rank} created a window with another layout"
                    )))
                }
                None if rank == self.rank => {
                    return Err(Error::OutOfMemory {
                        what: "this rank's part of a window".into(),
                        requested: lens[rank] as u128 * std::mem::size_of::<T>() as u128,
                        available: crate::comm::agree::available_memory().unwrap_or(0),
                    })
                }
                None => {
                    return Err(Error::PeerFailed {
                        rank,
                        reason: format!("rank {rank} could not allocate its part of the window"),
                    })
                }
            }
        }
        let shadows = match &self.world.clocks {
            None => None,
            Some(_) => {
                let mine = Arc::new(SegShadow::new(self.world.size, self.rank, lens[self.rank]));
                let all = self.world.rendezvous(self.rank, mine)?;
                Some(
                    all.iter()
                        .map(|s| s.clone().downcast::<SegShadow>().expect("shadow"))
                        .collect(),
                )
            }
        };
        Ok(ThreadedWindow {
            world: self.world.clone(),
            rank: self.rank,
            segments,
            shadows,
        })
    }

    /// All ranks live in this process: the whole window must fit.
    fn check_allocation(&self, lens: &[usize], elem_size: usize) -> Result<()> {
        let total: u128 = lens.iter().map(|&l| l as u128 * elem_size as u128).sum();
        crate::comm::agree::check_memory(
            "a threaded window (all ranks' parts in one process)",
            total,
        )
    }

    fn backend_name(&self) -> &'static str {
        "threaded"
    }
}

impl NeighbourMessages for ThreadedComm {
    /// Through the rank mailboxes of the tree collectives: a message per
    /// neighbour, which (in checking mode) orders the receiver after
    /// everything the sender did before sending.
    fn exchange_bytes(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()> {
        self.handles.settle();
        let (t, seqs) = self.send_exchange(sends, recvs)?;
        for ((from, buf), seq) in recvs.iter_mut().zip(seqs) {
            t.recv_seq(*from, Phase::Exchange, seq, buf)?;
        }
        Ok(())
    }

    /// Sends at once; the receives happen in `wait`.
    unsafe fn exchange_bytes_start(
        &self,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<Box<dyn Request>> {
        self.handles.settle();
        let (t, seqs) = self.send_exchange(sends, recvs)?;
        drop(t);
        let recvs = recvs
            .iter_mut()
            .zip(seqs)
            .map(|((r, b), seq)| (*r, b.as_mut_ptr(), b.len(), seq))
            .collect();
        Ok(Box::new(PendingReceives {
            comm: self.clone(),
            recvs,
            done: false,
        }))
    }
}
