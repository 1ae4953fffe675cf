//! The extended box's storage: rows padded to whole 64-byte lines, and
//! the part's first element on a line boundary, so that a vectorised
//! kernel's loads and stores do not straddle cache lines (measured in
//! BENCHMARKS.md, "Stencil rows in cache": about a third of the in-cache
//! stencil's time).

use std::ops::{Deref, DerefMut};

/// The alignment the storage aims for, in bytes (a cache line, and one
/// AVX-512 vector).
pub(crate) const LINE: usize = 64;

/// The length of the last dimension of an extended box whose rows are
/// `len` elements of `T`: rounded up to whole 64-byte lines when a line
/// holds a whole number of elements, the box has more than one dimension
/// (a 1-D box is one row: nothing to gain) and the padding costs at most
/// an eighth of the row (rows of 8 lines or more always; a short row,
/// such as the 3 components of a vector field, stays as it is), else
/// `len`.
pub(crate) fn padded_row<T>(len: usize, dims: usize) -> usize {
    let size = std::mem::size_of::<T>();
    if dims < 2 || size == 0 || size >= LINE || !LINE.is_multiple_of(size) {
        return len;
    }
    let padded = len.next_multiple_of(LINE / size);
    if (padded - len) * 8 <= len {
        padded
    } else {
        len
    }
}

/// `len` values (`T::default()`) whose element `first` sits on a 64-byte
/// boundary where the allocation allows it (elements whose size divides
/// 64 and whose allocation is aligned to their size: every element type
/// of the crate in practice). Dereferences to exactly those `len` values.
pub(crate) struct AlignedBuf<T> {
    buf: Vec<T>,
    lead: usize,
    len: usize,
}

impl<T: Copy + Default> AlignedBuf<T> {
    /// `len` default values, element `first` 64-byte aligned if possible.
    pub(crate) fn new(len: usize, first: usize) -> Self {
        let size = std::mem::size_of::<T>();
        let spare = if size == 0 || size >= LINE {
            0
        } else {
            LINE / size
        };
        let buf = vec![T::default(); len + spare];
        // the smallest lead that puts element `first` on a line boundary
        // (none when the allocation's offset within a line is not a
        // multiple of the element size)
        let lead = (0..spare)
            .find(|&k| (buf.as_ptr() as usize + (k + first) * size).is_multiple_of(LINE))
            .unwrap_or(0);
        AlignedBuf { buf, lead, len }
    }
}

impl<T> Deref for AlignedBuf<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.buf[self.lead..self.lead + self.len]
    }
}

impl<T> DerefMut for AlignedBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.lead..self.lead + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_padded_to_whole_lines() {
        assert_eq!(padded_row::<f64>(1004, 2), 1008);
        assert_eq!(padded_row::<f64>(1008, 3), 1008);
        assert_eq!(padded_row::<f64>(57, 2), 64);
        assert_eq!(padded_row::<f32>(130, 2), 144);
        // padding of more than an eighth of the row: none
        assert_eq!(padded_row::<f64>(56, 2), 56);
        assert_eq!(padded_row::<f32>(6, 2), 6);
        assert_eq!(padded_row::<u8>(65, 2), 65);
        assert_eq!(padded_row::<f64>(3, 2), 3);
        // one dimension: one row, no padding
        assert_eq!(padded_row::<f64>(1004, 1), 1004);
        // elements that do not divide a line: no padding
        assert_eq!(padded_row::<[u8; 3]>(10, 2), 10);
        assert_eq!(padded_row::<f64>(0, 2), 0);
    }

    #[test]
    fn the_chosen_element_is_on_a_line_boundary() {
        for first in [0, 1, 2, 3, 7, 8, 1005] {
            let b = AlignedBuf::<f64>::new(2000, first);
            assert_eq!(b.len(), 2000);
            assert_eq!(b[first..].as_ptr() as usize % LINE, 0, "first {first}");
            assert!(b.iter().all(|&v| v == 0.0));
        }
        let mut b = AlignedBuf::<u16>::new(5, 3);
        b[4] = 7;
        assert_eq!(&b[..], &[0, 0, 0, 0, 7]);
        assert_eq!(b[3..].as_ptr() as usize % LINE, 0);
    }
}
