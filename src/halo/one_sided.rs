//! The one-sided transport of a [`Halo`], for backends without neighbour
//! messages: every rank packs the boxes its neighbours need into
//! its part of a staging window, and after a synchronisation every rank
//! fetches them, one `get` per neighbour.

use super::local::OwnValues;
use super::{Halo, Own};
use crate::array::DistArray;
use crate::comm::{Element, LockKind, OneSidedComm};
use crate::error::Result;

impl<T: Element, C: OneSidedComm, const N: usize> Halo<T, C, N> {
    /// One-sided (local): copies the boxes of this rank's part of `array`
    /// that its neighbours need into its staging part. The first half of
    /// [`Halo::refresh`], for loops that synchronise anyway: every rank
    /// packs, then a barrier (e.g. [`DistArray::barrier`]), then every rank
    /// fetches ([`Halo::fetch`] / [`Halo::fetch_ghosts`]), and no rank packs
    /// again before every rank's fetch returned (a later collective).
    pub fn pack(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        self.pack_from(Own::Array(array))
    }

    pub(super) fn pack_from(&mut self, src: Own<'_, T, C, N>) -> Result<()> {
        self.check_partition(src, "pack")?;
        if self.sends.is_empty() {
            return Ok(());
        }
        let Halo {
            own,
            sends,
            data,
            width,
            ext_shape,
            staging,
            ..
        } = self;
        // the staging part holds the neighbours' boxes one after the other
        let boxes = sends.iter().flat_map(|d| &d.boxes);
        let from = OwnValues::new(src, data, own, width, ext_shape);
        from.with(|src| {
            staging.with_local_mut(|mut st| {
                let st = st.as_mut_slice();
                let mut at = 0;
                for b in boxes {
                    at += src.gather(b, &mut st[at..]);
                }
            })
        })?
    }

    /// One-sided: the second half of [`Halo::refresh`] (see [`Halo::pack`]
    /// for the synchronisation it needs): the own part into the interior,
    /// and the ghost cells, one `get` per neighbour.
    pub fn fetch(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        self.fetch_parts(true, Own::Array(array))
    }

    /// One-sided: like [`Halo::fetch`], but fills only the ghost cells and
    /// leaves the interior of the extended box as it was: for kernels that
    /// read the own part from the array itself and only the faces from the
    /// halo ([`Halo::ghost_face`]), it saves a copy of the whole part.
    pub fn fetch_ghosts(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        self.fetch_parts(false, Own::Array(array))
    }

    pub(super) fn fetch_parts(&mut self, interior: bool, src: Own<'_, T, C, N>) -> Result<()> {
        self.check_partition(src, "fetch")?;
        if self.own.iter().any(|r| r.is_empty()) {
            return Ok(());
        }
        if interior {
            if let Some(array) = src.array() {
                self.copy_interior(array)?;
            }
        }
        // periodic wrap onto this rank itself
        self.copy_local_pieces(src)?;
        self.fetch_remote()
    }

    /// One-sided: the ghost cells from the neighbours' staging parts, one
    /// `get` per neighbour.
    pub(super) fn fetch_remote(&mut self) -> Result<()> {
        if self.own.iter().any(|r| r.is_empty()) {
            return Ok(());
        }
        let Halo {
            data,
            sources,
            scratch,
            ext_shape,
            staging,
            ..
        } = self;
        for s in sources.iter() {
            let buf = &mut scratch[..s.len];
            staging.with_epoch(s.rank, LockKind::Shared, |w| w.get(s.rank, s.offset, buf))?;
            s.scatter_into(data, ext_shape, buf);
        }
        Ok(())
    }
}
