//! Batches of runs as MPI vector datatypes: [`vector_runs`] splits a batch
//! into groups of equal runs at equal distances ([`VectorRun`]), each sent
//! as one operation with an `MPI_Type_vector` target type ([`RunsType`]).

use std::os::raw::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use distarray::checks::run_pieces;
use distarray::Result;
use mpi::ffi;

use crate::raw::{self, check};

/// A piece of a batch of runs that is one MPI operation: `count` runs of
/// `len` elements each, `stride` elements apart, the first at `offset`,
/// held one after the other at `piece` of the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VectorRun {
    pub(super) offset: usize,
    pub(super) count: usize,
    pub(super) len: usize,
    pub(super) stride: usize,
    pub(super) piece: std::ops::Range<usize>,
}

/// Splits a batch of runs into [`VectorRun`]s: maximal sequences of equal
/// runs at equal distances, in ascending order without overlap. A block of
/// a 2-D row-major part is one of them (one MPI operation per target, with
/// an `MPI_Type_vector` target type); a 3-D block one per plane; a single
/// run is a group of one. Groups stay within `max_len` elements and int
/// counts. Vector types rather than one indexed type for any batch:
/// measured on Open MPI 4.1, a get of 2,000 rows with an
/// `MPI_Type_create_hindexed` target type took 13x as long as the same get
/// with a vector type (`BENCHMARKS.md`, "Strided blocks").
pub(super) fn vector_runs(runs: &[(usize, usize)], max_len: usize) -> Vec<VectorRun> {
    let max_len = max_len.min(raw::MAX_COUNT);
    let mut groups: Vec<VectorRun> = Vec::new();
    for (offset, piece) in run_pieces(runs).filter(|(_, p)| !p.is_empty()) {
        let len = piece.len();
        if let Some(g) = groups.last_mut() {
            let next = g.offset + g.count * g.stride;
            let fits = g.len == len
                && (g.count + 1) * len <= max_len
                && g.count < raw::MAX_COUNT
                && g.piece.end == piece.start;
            if fits
                && g.count == 1
                && offset >= g.offset + len
                && offset - g.offset <= raw::MAX_COUNT
            {
                // the second run fixes the stride
                g.stride = offset - g.offset;
                g.count = 2;
                g.piece.end = piece.end;
                continue;
            }
            if fits && g.count > 1 && offset == next {
                g.count += 1;
                g.piece.end = piece.end;
                continue;
            }
        }
        groups.push(VectorRun {
            offset,
            count: 1,
            len,
            stride: len,
            piece,
        });
    }
    groups
}

/// A committed `MPI_Type_vector` target type for a [`VectorRun`] of
/// several runs. Freed when dropped (MPI keeps a freed type alive for the
/// operations still using it). Kept by the window's [`TypeCache`].
pub(super) struct RunsType(pub(super) ffi::MPI_Datatype);

// SAFETY: an MPI datatype handle is a process-wide value, not tied to the
// thread that made it; it is used (and freed, on the last reference's
// drop) only inside an MPI call guard (`raw::enter`), which serialises the
// calls under MPI_THREAD_SERIALIZED and allows concurrent ones only where
// MPI provides MPI_THREAD_MULTIPLE.
unsafe impl Send for RunsType {}
// SAFETY: shared references only read the handle (to pass it to MPI under
// the guard above).
unsafe impl Sync for RunsType {}

/// How many vector types this process has committed ([`datatypes_created`]).
static CREATED: AtomicUsize = AtomicUsize::new(0);

/// The number of MPI vector datatypes this process has built for strided
/// transfers (blocks, slices, faces) so far: each window keeps the ones
/// it used (up to 16, least recently used freed first), so a loop over
/// blocks of one shape builds one. For tests and diagnostics.
pub fn datatypes_created() -> usize {
    CREATED.load(Ordering::Relaxed)
}

/// The vector types a window has used, by shape (run count, run length,
/// stride): a window that reads or writes the same kind of strided block
/// again — a plan's blocks, a halo's faces, the tiles of a loop — reuses
/// the committed type instead of building and freeing one per operation
/// (what an MPI code caches in its plan). The window's element type is
/// fixed, so the shape is the whole key. At most [`TypeCache::CAPACITY`]
/// types; the least recently used one is freed to make room.
#[derive(Default)]
pub(super) struct TypeCache {
    types: Mutex<Vec<(Shape, Arc<RunsType>)>>,
}

/// A vector type's shape: run count, run length, stride (elements).
type Shape = (usize, usize, usize);

impl TypeCache {
    /// Types kept per window.
    pub(super) const CAPACITY: usize = 16;

    /// The committed type for `g` (built and kept on first use). The
    /// caller holds the returned reference until it has issued the
    /// operation that uses the type, so another thread evicting it
    /// meanwhile (`MPI_THREAD_MULTIPLE`) cannot free it under the caller;
    /// called, and the reference dropped, inside an MPI call guard
    /// (`raw::enter`), so never beside `MPI_Finalize`.
    pub(super) fn vector(&self, g: &VectorRun, base: ffi::MPI_Datatype) -> Result<Arc<RunsType>> {
        let mut types = self.types.lock().unwrap_or_else(|e| e.into_inner());
        let key = (g.count, g.len, g.stride);
        if let Some(i) = types.iter().position(|(k, _)| *k == key) {
            // most recently used last
            let entry = types.remove(i);
            let ty = entry.1.clone();
            types.push(entry);
            return Ok(ty);
        }
        let ty = Arc::new(RunsType::vector(g, base)?);
        if types.len() >= Self::CAPACITY {
            // freed here unless a caller still holds it; operations
            // already issued with it complete normally
            types.remove(0);
        }
        types.push((key, ty.clone()));
        Ok(ty)
    }

    /// Frees every type (under the serialisation of MPI calls, before
    /// `MPI_Finalize`).
    pub(super) fn free(&self) {
        self.types.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Drops the handles without calling MPI (after `MPI_Finalize`, which
    /// freed the types).
    pub(super) fn forget(&self) {
        let types = std::mem::take(&mut *self.types.lock().unwrap_or_else(|e| e.into_inner()));
        std::mem::forget(types);
    }
}

impl RunsType {
    pub(super) fn vector(g: &VectorRun, base: ffi::MPI_Datatype) -> Result<RunsType> {
        // SAFETY: out-pointer for the new datatype handle.
        let mut ty: ffi::MPI_Datatype = unsafe { std::mem::zeroed() };
        // SAFETY: count, block length and stride fit an int (`vector_runs`
        // keeps them so); `base` is a predefined datatype.
        let rc = unsafe {
            ffi::MPI_Type_vector(
                g.count as c_int,
                g.len as c_int,
                g.stride as c_int,
                base,
                &mut ty,
            )
        };
        check(rc, "MPI_Type_vector")?;
        // freed on drop, also if the commit fails
        let mut ty = RunsType(ty);
        // SAFETY: `ty.0` is the valid, uncommitted type just created.
        let rc = unsafe { ffi::MPI_Type_commit(&mut ty.0) };
        check(rc, "MPI_Type_commit")?;
        CREATED.fetch_add(1, Ordering::Relaxed);
        Ok(ty)
    }
}

/// Whether batches of runs become one operation with a derived datatype
/// ([`RunsType`]): yes unless the environment sets
/// `DISTARRAY_MPI_DATATYPES=0` (read once), for an MPI library whose
/// datatype engine is slower than one call per run; `BENCHMARKS.md`
/// compares both.
pub(super) fn datatypes_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("DISTARRAY_MPI_DATATYPES").map_or(true, |v| v != "0"))
}

impl Drop for RunsType {
    fn drop(&mut self) {
        // SAFETY: a valid datatype created by `RunsType::vector`, freed
        // only here (the last reference: the cache's and its callers' are
        // counted); operations already issued with it keep it alive inside
        // MPI (MPI_Type_free semantics). Dropped inside an MPI call guard
        // (`raw::enter`), so MPI is not being finalised; after
        // finalisation the cache forgets its types instead.
        let _ = unsafe { ffi::MPI_Type_free(&mut self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::{vector_runs, VectorRun};

    fn group(offset: usize, count: usize, len: usize, stride: usize, at: usize) -> VectorRun {
        VectorRun {
            offset,
            count,
            len,
            stride,
            piece: at..at + count * len,
        }
    }

    #[test]
    fn a_2d_block_is_one_vector() {
        // rows 0..4 of a part 10 wide, columns 3..6
        let runs: Vec<_> = (0..4).map(|r| (r * 10 + 3, 3)).collect();
        assert_eq!(vector_runs(&runs, usize::MAX), vec![group(3, 4, 3, 10, 0)]);
    }

    #[test]
    fn a_3d_block_is_one_vector_per_plane() {
        // 2 planes of 4 x 10, rows 1..3, columns 0..5
        let runs: Vec<_> = (0..2)
            .flat_map(|p| (1..3).map(move |r| (p * 40 + r * 10, 5)))
            .collect();
        assert_eq!(
            vector_runs(&runs, usize::MAX),
            vec![group(10, 2, 5, 10, 0), group(50, 2, 5, 10, 10)]
        );
    }

    #[test]
    fn unequal_descending_or_overlapping_runs_split() {
        assert_eq!(
            vector_runs(&[(0, 2), (10, 3), (20, 3)], usize::MAX),
            vec![group(0, 1, 2, 2, 0), group(10, 2, 3, 10, 2)]
        );
        assert_eq!(
            vector_runs(&[(10, 2), (0, 2)], usize::MAX),
            vec![group(10, 1, 2, 2, 0), group(0, 1, 2, 2, 2)]
        );
        assert_eq!(
            vector_runs(&[(0, 4), (2, 4)], usize::MAX),
            vec![group(0, 1, 4, 4, 0), group(2, 1, 4, 4, 4)]
        );
        // empty runs are skipped, their neighbours still join
        assert_eq!(
            vector_runs(&[(0, 2), (5, 0), (10, 2)], usize::MAX),
            vec![group(0, 2, 2, 10, 0)]
        );
    }

    #[test]
    fn groups_respect_the_length_limit() {
        let runs: Vec<_> = (0..5).map(|r| (r * 10, 3)).collect();
        assert_eq!(
            vector_runs(&runs, 6),
            vec![
                group(0, 2, 3, 10, 0),
                group(20, 2, 3, 10, 6),
                group(40, 1, 3, 3, 12)
            ]
        );
        // a limit of 0 (derived types off): one group per run
        assert_eq!(vector_runs(&runs, 0).len(), 5);
    }
}
