//! The plan of a [`Halo`], made once, collectively, by [`Halo::new`] /
//! [`Halo::new_faces`]: the boxes of its part each neighbour needs
//! ([`Dest`]), where the boxes it needs come from ([`Source`], [`Piece`])
//! and where they land in its extended box.

use std::ops::Range;
use std::sync::Mutex;

use super::Halo;
use crate::array::DistArray;
use crate::block::{scatter, Block};
use crate::comm::{Element, OneSidedComm};
use crate::epoch::vote;
use crate::error::{Error, Result};
use crate::partition::{multi_index, ContinuousPartitioning};

/// A box of ghost cells: where it lies in its owner's part (global
/// indices) and where it lands in the requester's extended box.
#[derive(Debug, Clone)]
pub(super) struct Piece<const N: usize> {
    /// The box, in global indices, inside the owner's part.
    pub(super) src: [Range<usize>; N],
    /// Start of the box in the requester's extended-box coordinates.
    pub(super) dst: [usize; N],
}

impl<const N: usize> Piece<N> {
    pub(super) fn shape(&self) -> [usize; N] {
        self.src.clone().map(|r| r.len())
    }

    pub(super) fn len(&self) -> usize {
        self.shape().iter().product()
    }
}

/// What this rank fetches from one neighbour: a contiguous range of the
/// neighbour's staging part, holding `pieces` one after the other.
#[derive(Debug, Clone)]
pub(super) struct Source<const N: usize> {
    pub(super) rank: usize,
    pub(super) offset: usize,
    pub(super) len: usize,
    pieces: Vec<Piece<N>>,
}

impl<const N: usize> Source<N> {
    /// Copies `buf` (this source's pieces, one after the other) into the
    /// extended box `data`.
    pub(super) fn scatter_into<T: Copy>(&self, data: &mut [T], ext_shape: &[usize; N], buf: &[T]) {
        let mut at = 0;
        for piece in &self.pieces {
            let n = piece.len();
            scatter(
                data,
                ext_shape,
                &piece.dst,
                &piece.shape(),
                &buf[at..at + n],
            );
            at += n;
        }
    }
}

/// The boxes of this rank's part one neighbour needs (global indices).
#[derive(Debug, Clone)]
pub(super) struct Dest<const N: usize> {
    pub(super) rank: usize,
    pub(super) boxes: Vec<[Range<usize>; N]>,
}

impl<const N: usize> Dest<N> {
    fn len(&self) -> usize {
        self.boxes
            .iter()
            .map(|b| b.iter().map(|r| r.len()).product::<usize>())
            .sum()
    }
}

/// The part of the extended dimension `d` below, inside or above the own
/// range, as (destination range in extended coordinates, global range) —
/// `None` where it falls past a non-periodic edge or is empty.
fn segments(
    own: &Range<usize>,
    width: usize,
    n: usize,
    periodic: bool,
) -> Vec<(Range<usize>, Range<usize>)> {
    let mut out = Vec::with_capacity(3);
    // below: global own.start - width .. own.start
    let below_len = width;
    if below_len > 0 {
        if own.start >= width {
            out.push((0..width, own.start - width..own.start));
        } else {
            // the cells before index 0 wrap to the top, the rest is inside
            let outside = width - own.start;
            if periodic {
                out.push((0..outside, n - outside..n));
            }
            if own.start > 0 {
                out.push((outside..width, 0..own.start));
            }
        }
    }
    out.push((width..width + own.len(), own.clone()));
    // above: own.end .. own.end + width
    if width > 0 {
        let base = width + own.len();
        let inside = (n - own.end).min(width);
        if inside > 0 {
            out.push((base..base + inside, own.end..own.end + inside));
        }
        if inside < width && periodic {
            out.push((base + inside..base + width, 0..width - inside));
        }
    }
    out
}

/// The pieces rank `q` needs, each with the rank that owns it, in a fixed
/// order every rank computes alike.
fn requests<const N: usize>(
    part: &ContinuousPartitioning<N>,
    q: usize,
    width: [usize; N],
    periodic: [bool; N],
    corners: bool,
) -> Result<Vec<(usize, Piece<N>)>> {
    let own = part.part_range(q)?;
    let shape = part.shape();
    let mut out = Vec::new();
    if own.iter().any(|r| r.is_empty()) {
        return Ok(out);
    }
    let segs: [Vec<(Range<usize>, Range<usize>)>; N] =
        std::array::from_fn(|d| segments(&own[d], width[d], shape[d], periodic[d]));
    let counts: [usize; N] = std::array::from_fn(|d| segs[d].len());
    let combos: usize = counts.iter().product();
    for k in 0..combos {
        let pick = multi_index(&counts, k);
        // the interior segment starts at `width` in every dimension
        let outside = (0..N)
            .filter(|&d| segs[d][pick[d]].0.start != width[d])
            .count();
        if outside == 0 || (!corners && outside > 1) {
            continue;
        }
        let dst: [Range<usize>; N] = std::array::from_fn(|d| segs[d][pick[d]].0.clone());
        let glob: [Range<usize>; N] = std::array::from_fn(|d| segs[d][pick[d]].1.clone());
        for t in Block::new(glob.clone()).plan(part)? {
            let inter = t.intersection.ranges().clone();
            let at: [usize; N] =
                std::array::from_fn(|d| dst[d].start + (inter[d].start - glob[d].start));
            out.push((
                t.rank,
                Piece {
                    src: inter,
                    dst: at,
                },
            ));
        }
    }
    Ok(out)
}

impl<T: Element, C: OneSidedComm, const N: usize> Halo<T, C, N> {
    /// For each dimension, whether an update fills ghost cells below
    /// (`[d][0]`) and above (`[d][1]`) the part — from a neighbour or the
    /// periodic wrap onto this rank: the sides next to which a stencil
    /// waits for the update. The other ghost cells (past a non-periodic
    /// edge) are never written by an update.
    pub(crate) fn filled_sides(&self) -> [[bool; 2]; N] {
        let mut sides = [[false; 2]; N];
        let pieces = self
            .sources
            .iter()
            .flat_map(|s| s.pieces.iter())
            .chain(self.local.iter());
        for piece in pieces {
            let shape = piece.shape();
            if shape.contains(&0) {
                continue;
            }
            for d in 0..N {
                let (lo, hi) = (piece.dst[d], piece.dst[d] + shape[d]);
                sides[d][0] |= lo < self.width[d];
                sides[d][1] |= hi > self.width[d] + self.own[d].len();
            }
        }
        sides
    }

    /// Collective: plans the ghost layers of every rank's part of `array`:
    /// `width[d]` layers on both sides of dimension `d`, wrapped around
    /// where `periodic[d]`, and allocates the staging window the refreshes
    /// pack into. Errors (on every rank): a periodic width larger than the
    /// array's extent.
    pub fn new(array: &DistArray<T, C, N>, width: [usize; N], periodic: [bool; N]) -> Result<Self> {
        Self::create(array, width, periodic, true)
    }

    /// Collective: like [`Halo::new`], but only the faces: the ghost cells
    /// beside the part in one dimension, not its edges and corners (cells
    /// outside it in two dimensions or more, which keep their values). What
    /// star-shaped stencils (5-point, 7-point) read, with fewer neighbours
    /// to fetch from: 4 instead of 8 in 2-D, 6 instead of 26 in 3-D.
    pub fn new_faces(
        array: &DistArray<T, C, N>,
        width: [usize; N],
        periodic: [bool; N],
    ) -> Result<Self> {
        Self::create(array, width, periodic, false)
    }

    fn create(
        array: &DistArray<T, C, N>,
        width: [usize; N],
        periodic: [bool; N],
        corners: bool,
    ) -> Result<Self> {
        let comm = array.comm();
        let (me, p) = (comm.rank(), comm.size());
        let part = array.partitioning().clone();
        let shape = part.shape();
        let check = (0..N).try_for_each(|d| {
            if periodic[d] && width[d] > shape[d] {
                return Err(Error::InvalidArgument(format!(
                    "halo width {} in periodic dimension {d} exceeds the extent {}",
                    width[d], shape[d]
                )));
            }
            Ok(())
        });
        // the plans of all ranks: where each rank's requests sit in each
        // owner's staging part (owners pack for requesters in rank order)
        let planned = check.and_then(|_| {
            let mut staging_len = vec![0usize; p];
            let mut local = Vec::new();
            let mut sources: Vec<Source<N>> = Vec::new();
            let mut sends: Vec<Dest<N>> = Vec::new();
            for q in 0..p {
                let mut mine: Vec<Source<N>> = Vec::new();
                for (s, piece) in requests(&part, q, width, periodic, corners)? {
                    if s == q {
                        if q == me {
                            local.push(piece);
                        }
                        continue;
                    }
                    let len = piece.len();
                    if s == me {
                        match sends.last_mut() {
                            Some(d) if d.rank == q => d.boxes.push(piece.src.clone()),
                            _ => sends.push(Dest {
                                rank: q,
                                boxes: vec![piece.src.clone()],
                            }),
                        }
                    }
                    if q == me {
                        match mine.iter_mut().find(|x| x.rank == s) {
                            Some(src) => {
                                src.len += len;
                                src.pieces.push(piece);
                            }
                            None => mine.push(Source {
                                rank: s,
                                offset: staging_len[s],
                                len,
                                pieces: vec![piece],
                            }),
                        }
                    }
                    staging_len[s] += len;
                }
                if q == me {
                    sources = mine;
                }
            }
            Ok((staging_len, local, sources, sends))
        });
        let (staging_len, local, sources, sends) = vote(comm, planned)?;
        let wrap_len = local.iter().map(|l: &Piece<N>| l.len()).sum();
        let staging = DistArray::<T, C, 1>::with_part_sizes(comm.clone(), [staging_len])?;
        let own = part.part_range(me)?;
        let mut ext_shape: [usize; N] = std::array::from_fn(|d| own[d].len() + 2 * width[d]);
        ext_shape[N - 1] = super::aligned::padded_row::<T>(ext_shape[N - 1], N);
        let total: usize = ext_shape.iter().product();
        // the part's first element: the ghost widths in, in every dimension
        let first = crate::partition::linear_offset(&ext_shape, &width);
        let most = sources
            .iter()
            .map(|s| s.len)
            .chain(local.iter().map(|l: &Piece<N>| l.len()))
            .max()
            .unwrap_or(0);
        // every rank runs the same backend, so all take the same branch
        let outbox = comm
            .messages()
            .is_some()
            .then(|| sends.iter().map(|d| vec![T::ZERO; d.len() + 1]).collect());
        let inbox = sources.iter().map(|s| vec![T::ZERO; s.len + 1]).collect();
        Ok(Halo {
            outbox,
            inbox,
            in_flight: Mutex::new(None),
            part,
            width,
            own,
            ext_shape,
            data: super::aligned::AlignedBuf::new(total, first),
            local,
            sources,
            sends,
            staging,
            scratch: vec![T::default(); most],
            wrap: vec![T::default(); wrap_len],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn segments_cover_the_extended_range() {
        // interior 2..5 of 0..8, width 2: below 0..2, above 5..7
        assert_eq!(
            segments(&(2..5), 2, 8, false),
            vec![(0..2, 0..2), (2..5, 2..5), (5..7, 5..7)]
        );
        // at the low edge, non-periodic: nothing below
        assert_eq!(
            segments(&(0..3), 1, 8, false),
            vec![(1..4, 0..3), (4..5, 3..4)]
        );
        // periodic: wraps to the top and the bottom
        assert_eq!(
            segments(&(0..8), 2, 8, true),
            vec![(0..2, 6..8), (2..10, 0..8), (10..12, 0..2)]
        );
        // width larger than the distance to the edge: split
        assert_eq!(
            segments(&(1..7), 2, 8, true),
            vec![
                (0..1, 7..8),
                (1..2, 0..1),
                (2..8, 1..7),
                (8..9, 7..8),
                (9..10, 0..1)
            ]
        );
    }
}
