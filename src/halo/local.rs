//! What a [`Halo`] update copies without communication: this rank's part
//! into the interior of the extended box, the periodic wrap onto the rank
//! itself, and reading this rank's own values wherever they are
//! ([`OwnValues`]).

use std::ops::Range;

use super::{Halo, Own};
use crate::array::DistArray;
use crate::block::{scatter, Gather};
use crate::comm::{Element, OneSidedComm};
use crate::error::Result;

impl<T: Element, C: OneSidedComm, const N: usize> Halo<T, C, N> {
    /// Copies the pieces this rank needs from its own part (a periodic wrap
    /// onto itself) into its ghost cells.
    pub(super) fn copy_local_pieces(&mut self, src: Own<'_, T, C, N>) -> Result<()> {
        if self.local.is_empty() {
            return Ok(());
        }
        let Halo {
            data,
            scratch,
            ext_shape,
            own,
            local,
            width,
            ..
        } = self;
        if let Own::Interior = src {
            // source and destination are the same box: through `wrap`
            self.snapshot_local_pieces();
            self.scatter_local_pieces();
            return Ok(());
        }
        let from = OwnValues::new(src, &[], own, width, ext_shape);
        from.with(|s| {
            for piece in local.iter() {
                let n = s.gather(&piece.src, scratch);
                scatter(data, ext_shape, &piece.dst, &piece.shape(), &scratch[..n]);
            }
        })
    }

    /// Copies the pieces of the periodic wrap onto this rank from the
    /// interior of the extended box into `wrap`.
    pub(super) fn snapshot_local_pieces(&mut self) {
        let Halo {
            data,
            own,
            width,
            ext_shape,
            local,
            wrap,
            ..
        } = self;
        let from = Gather {
            src: data,
            shape: *ext_shape,
            shift: *width,
            part: own,
        };
        let mut at = 0;
        for piece in local.iter() {
            at += from.gather(&piece.src, &mut wrap[at..]);
        }
    }

    /// Writes `wrap` (see [`Halo::snapshot_local_pieces`]) to the ghost
    /// cells of the wrap.
    pub(super) fn scatter_local_pieces(&mut self) {
        let Halo {
            data,
            ext_shape,
            local,
            wrap,
            ..
        } = self;
        let mut at = 0;
        for piece in local.iter() {
            let n = piece.len();
            scatter(
                data,
                ext_shape,
                &piece.dst,
                &piece.shape(),
                &wrap[at..at + n],
            );
            at += n;
        }
    }

    /// Copies this rank's part into the interior of the extended box.
    pub(super) fn copy_interior(&mut self, array: &DistArray<T, C, N>) -> Result<()> {
        if self.own.iter().any(|r| r.is_empty()) {
            return Ok(());
        }
        let own_shape: [usize; N] = self.own.clone().map(|r| r.len());
        let Halo {
            data,
            ext_shape,
            width,
            ..
        } = self;
        array.with_local(|l| scatter(data, ext_shape, width, &own_shape, l.as_slice()))
    }
}

/// This rank's own values, wherever an update reads them from
/// ([`Own`]): opened once per use, then read box by box.
pub(super) struct OwnValues<'a, 's, T: Element, C: OneSidedComm, const N: usize> {
    own: Own<'a, T, C, N>,
    /// The extended box (read for [`Own::Interior`]).
    data: &'s [T],
    part: &'s [Range<usize>; N],
    width: &'s [usize; N],
    ext_shape: &'s [usize; N],
}

impl<'a, 's, T: Element, C: OneSidedComm, const N: usize> OwnValues<'a, 's, T, C, N> {
    pub(super) fn new(
        own: Own<'a, T, C, N>,
        data: &'s [T],
        part: &'s [Range<usize>; N],
        width: &'s [usize; N],
        ext_shape: &'s [usize; N],
    ) -> Self {
        OwnValues {
            own,
            data,
            part,
            width,
            ext_shape,
        }
    }

    /// Runs `f` with the values open (a local view of the array, or the
    /// slice the caller passed, or the extended box).
    pub(super) fn with<R>(&self, f: impl FnOnce(&Gather<'_, T, N>) -> R) -> Result<R> {
        let part_shape: [usize; N] = self.part.clone().map(|r| r.len());
        fn over_part<'t, T, const N: usize>(
            src: &'t [T],
            shape: [usize; N],
            part: &'t [Range<usize>; N],
        ) -> Gather<'t, T, N> {
            Gather {
                src,
                shape,
                shift: [0; N],
                part,
            }
        }
        match self.own {
            Own::Array(a) => a.with_local(|l| f(&over_part(l.as_slice(), part_shape, self.part))),
            Own::Slice(_, s) => Ok(f(&over_part(s, part_shape, self.part))),
            Own::Interior => Ok(f(&Gather {
                src: self.data,
                shape: *self.ext_shape,
                shift: *self.width,
                part: self.part,
            })),
        }
    }
}
