//! Data in and out (feature `zarr`): distributed arrays saved to and
//! loaded from [Zarr v3](https://zarr-specs.readthedocs.io/) stores, and
//! atomic checkpoints of several arrays plus scalars.
//!
//! Everything here is **collective** (every rank calls it with the same
//! arguments) and works on every backend, because it is written against
//! [`OneSidedComm`](crate::OneSidedComm) and the array's public operations
//! only. Parallel HDF5 lives with the MPI backend (`distarray-mpi`, feature
//! `hdf5`).
//!
//! * [`write_zarr`] / [`write_zarr_with`]: every rank writes whole chunks,
//!   each chunk by exactly one rank (the owner of the chunk's first
//!   element). A chunk that spans several parts is fetched with one planned
//!   get ([`DistArray::get_block_into`](crate::DistArray::get_block_into):
//!   one RMA call per contiguous run), one chunk at a time, so no rank holds
//!   more than its part plus a few chunk buffers.
//! * [`read_zarr`] / [`read_zarr_into`]: into any partition and any number
//!   of ranks (written on 4 ranks, read on 3 with another grid: the same
//!   bits); each rank reads the chunks that meet its part. A missing chunk
//!   reads as the fill value, as the Zarr specification says.
//! * [`CheckpointWriter`] / [`Checkpoint`]: several named arrays and a few
//!   scalars committed atomically (staging directory, fsync, one `rename`);
//!   an interrupted checkpoint is recognised and refused, never read as
//!   valid.
//!
//! Bad input — a missing path, a path, options or an array (its element
//! type or partition) that differ between ranks, no permission, a full
//! disk, a wrong element type or shape, a corrupted chunk (every chunk
//! carries a CRC32C checksum by default), a checkpoint that was never
//! committed — gives an `Err` on every rank (the
//! failing rank's own error, [`Error::PeerFailed`](crate::Error::PeerFailed)
//! on the others), never a hang, and never overwrites data unless asked to.
//!
//! ```
//! use distarray::{io, threaded, DistArray};
//! let dir = std::env::temp_dir().join(format!("distarray-io-doc-{}", std::process::id()));
//! let path = dir.join("a.zarr");
//! threaded::run_ok(4, |comm| {
//!     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [6, 5], |[i, j]| (10 * i + j) as f64)?;
//!     io::write_zarr(&a, &path)?;
//!     Ok(())
//! })
//! .unwrap();
//! // read back on 3 ranks, on a 3 x 1 grid
//! threaded::run_ok(3, |comm| {
//!     let b = DistArray::<f64, _, 2>::with_grid(comm.clone(), [3, 1], [6, 5])?;
//!     io::read_zarr_into(&b, &path)?;
//!     assert_eq!(b.get([4, 3])?, 43.0);
//!     Ok(())
//! })
//! .unwrap();
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

mod agree;
mod checkpoint;
mod dtype;
mod durable;
mod zarr;

/// Collective: `root`'s path string on every rank (for tests and tools
/// that must agree on a scratch directory).
#[doc(hidden)]
pub fn broadcast_path<C: crate::OneSidedComm>(
    comm: &C,
    local: crate::Result<String>,
) -> crate::Result<String> {
    agree::broadcast_string(comm, 0, local)
}

pub use checkpoint::{Checkpoint, CheckpointWriter, Scalar};
pub use zarr::{read_zarr, read_zarr_into, write_zarr, write_zarr_with, Compression, ZarrOptions};
