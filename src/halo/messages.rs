//! The message transport of a [`Halo`], where the backend has neighbour
//! messages ([`OneSidedComm::messages`]): every rank packs the
//! boxes each neighbour needs into one message per neighbour, followed by
//! a status element, sends them and waits for its neighbours' messages.

use super::local::OwnValues;
use super::{Halo, Own};
use crate::comm::{Element, OneSidedComm};
use crate::epoch::vote;
use crate::error::{Error, Result};

/// Whether a message's status element says its sender failed.
fn failed_status<T: Element>(status: &T) -> bool {
    bytemuck::bytes_of(status).iter().any(|&b| b != 0)
}

impl<T: Element, C: OneSidedComm, const N: usize> Halo<T, C, N> {
    /// Packs every neighbour's message and marks it packed (the caller
    /// marked them failed before; no exchange is in flight).
    pub(super) fn pack_messages(&mut self, src: Own<'_, T, C, N>) -> Result<()> {
        self.check_partition(src, "update_ghosts")?;
        let Halo {
            outbox,
            own,
            sends,
            data,
            width,
            ext_shape,
            ..
        } = self;
        let outbox = outbox.as_mut().expect("message path");
        if outbox.is_empty() {
            return Ok(());
        }
        let from = OwnValues::new(src, data, own, width, ext_shape);
        from.with(|src| {
            for (d, buf) in sends.iter().zip(outbox.iter_mut()) {
                let mut at = 0;
                for b in &d.boxes {
                    at += src.gather(b, &mut buf[at..]);
                }
                buf[at] = T::ZERO;
            }
        })
    }

    /// Waits for the exchange in flight, if any. If the wait fails, the
    /// backend may not be done with the buffers: they are leaked and
    /// replaced by new ones, never reused or freed under it.
    pub(crate) fn complete_in_flight(&mut self) -> Result<()> {
        let pending = self
            .in_flight
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let out = match pending {
            Some(p) => p.wait(),
            None => Ok(()),
        };
        if out.is_err() {
            let fresh =
                |b: &mut Vec<T>| std::mem::forget(std::mem::replace(b, vec![T::ZERO; b.len()]));
            self.inbox.iter_mut().for_each(fresh);
            if let Some(outbox) = self.outbox.as_mut() {
                outbox.iter_mut().for_each(fresh);
            }
        }
        out
    }

    /// Posts the exchange of the packed messages.
    pub(super) fn start_messages(&mut self, comm: &C) -> Result<()> {
        let Halo {
            outbox,
            inbox,
            sources,
            sends,
            in_flight,
            ..
        } = self;
        let outbox = outbox.as_ref().expect("message path");
        let sends: Vec<(usize, &[u8])> = sends
            .iter()
            .zip(outbox.iter())
            .map(|(d, buf)| (d.rank, bytemuck::cast_slice::<T, u8>(buf)))
            .collect();
        let mut recvs: Vec<(usize, &mut [u8])> = sources
            .iter()
            .zip(inbox.iter_mut())
            .map(|(s, b)| (s.rank, bytemuck::cast_slice_mut::<T, u8>(b)))
            .collect();
        // SAFETY: the buffers are the heap storage of `outbox` and `inbox`,
        // which this halo owns and never resizes; the pending exchange is
        // stored in `in_flight`, and every method that reads or writes
        // those buffers (packing, unpacking, the next start) and `Drop`
        // complete it first. A leaked `GhostUpdate` leaves it there, where
        // the same rule applies; a leaked halo leaks the buffers too.
        let pending =
            unsafe { crate::comm::messages_of(comm)?.exchange_bytes_start(&sends, &mut recvs)? };
        *in_flight.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(pending);
        Ok(())
    }

    /// Completes the exchange, checks the neighbours' status elements and
    /// fills the ghost cells.
    pub(super) fn finish_messages(&mut self, src: Own<'_, T, C, N>) -> Result<()> {
        if self.outbox.is_none() {
            // one-sided, a ghosted array's update (see `start_update_inner`):
            // the gets, then a vote (nobody packs again while another reads)
            let comm = self.comm().clone();
            let fetched = self.fetch_remote().map(|_| self.scatter_local_pieces());
            return vote(&comm, fetched);
        }
        self.complete_in_flight()?;
        for (s, b) in self.sources.iter().zip(self.inbox.iter()) {
            if failed_status(b.last().expect("status element")) {
                return Err(Error::PeerFailed {
                    rank: s.rank,
                    reason: "its halo update failed (its own call returned the error)".into(),
                });
            }
        }
        let Halo {
            data,
            sources,
            inbox,
            ext_shape,
            ..
        } = self;
        for (s, buf) in sources.iter().zip(inbox.iter()) {
            s.scatter_into(data, ext_shape, buf);
        }
        match src {
            // taken when the update started
            Own::Interior => {
                self.scatter_local_pieces();
                Ok(())
            }
            _ => self.copy_local_pieces(src),
        }
    }
}
