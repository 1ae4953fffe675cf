//! Zarr v3 arrays on disk, written and read by every rank in parallel
//! through the `zarrs` crate (filesystem store).
//!
//! **Write.** Rank 0 checks the path and writes the array's metadata
//! (`zarr.json`); then every rank writes the chunks whose first element it
//! owns, each chunk by exactly one rank. A chunk that lies inside the
//! writer's part is copied locally; one that spans several parts is
//! fetched with one planned get per owner (one RMA call per contiguous
//! run). Chunks are written one at a time, so a rank holds its part plus
//! one chunk buffer (and the encoder's copy of it). With
//! [`ZarrOptions::sync`] (the default) every chunk file and directory is
//! `fsync`ed before the call returns.
//!
//! **Read.** Every rank reads the chunks that meet its part and copies the
//! intersection into its local memory, so any partition on any number of
//! ranks reads any file.

use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use unsafe_cell_slice::UnsafeCellSlice;
use zarrs::array::codec::{Crc32cCodec, GzipCodec, ZstdCodec};
use zarrs::array::{
    Array, ArrayBuilder, ArrayBytes, ArrayBytesDecodeIntoTarget, ArrayBytesFixedDisjointView,
    ArraySubset, CodecOptions,
};
use zarrs::filesystem::FilesystemStore;

use super::agree::agree;
use super::dtype::zarr_name;
use super::durable::{io_err, sync_dir, sync_file};
use crate::array::DistArray;
use crate::block::{contiguous_in, copy_box, Block};
use crate::collective::vote;
use crate::comm::{Element, OneSidedComm};
use crate::error::{Error, Result};
use crate::partition::multi_index;

/// Bytes a default chunk aims at: large enough for streaming bandwidth,
/// small enough that a few fit in any rank's memory.
const DEFAULT_CHUNK_BYTES: usize = 8 << 20;

/// A bytes-to-bytes compressor for the chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Raw little-endian bytes (the fastest; the default).
    #[default]
    None,
    /// Zstandard at the given level (`zarr-python`'s default codec).
    Zstd(i32),
    /// gzip at the given level (0..=9).
    Gzip(u32),
}

/// How [`write_zarr_with`] lays out and stores an array.
///
/// ```
/// use distarray::io::{Compression, ZarrOptions};
/// let opts = ZarrOptions::default()
///     .chunk_shape([256, 256])
///     .compression(Compression::Zstd(3))
///     .overwrite(true);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZarrOptions {
    chunk_shape: Option<Vec<usize>>,
    compression: Compression,
    checksum: bool,
    overwrite: bool,
    sync: bool,
    store_empty_chunks: bool,
}

impl Default for ZarrOptions {
    fn default() -> Self {
        ZarrOptions {
            chunk_shape: None,
            compression: Compression::None,
            checksum: true,
            overwrite: false,
            sync: true,
            store_empty_chunks: true,
        }
    }
}

impl ZarrOptions {
    /// The chunk shape (one extent per dimension, each at least 1). The
    /// default keeps whole trailing dimensions and cuts the first ones so
    /// that a chunk holds about 8 MiB; it depends on the shape and element
    /// type only (never on the number of ranks), so the same array gives
    /// the same file on any number of ranks.
    pub fn chunk_shape<const N: usize>(mut self, shape: [usize; N]) -> Self {
        self.chunk_shape = Some(shape.to_vec());
        self
    }

    /// The chunks' compressor (default: none).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// A CRC32C checksum after every chunk (default: on), so a corrupted or
    /// truncated chunk is an error on read instead of wrong values.
    pub fn checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// Replace an existing Zarr array at the path (default: refuse, and
    /// leave it untouched). Only a directory holding a Zarr array
    /// (`zarr.json`) or an empty one is ever removed.
    pub fn overwrite(mut self, on: bool) -> Self {
        self.overwrite = on;
        self
    }

    /// `fsync` every chunk file and directory before returning (default:
    /// on). Off, the data may still sit in the page cache when the call
    /// returns.
    pub fn sync(mut self, on: bool) -> Self {
        self.sync = on;
        self
    }

    /// Store chunks whose values all equal the fill value (default: on, so
    /// every chunk exists on disk and a missing one means damage; off, such
    /// chunks are left out as Zarr allows and read back as the fill value).
    pub fn store_empty_chunks(mut self, on: bool) -> Self {
        self.store_empty_chunks = on;
        self
    }

    /// The chunk shape used for an array of `shape` and element size
    /// `elem`: the explicit one (checked) or the default.
    fn resolve_chunks<const N: usize>(&self, shape: [usize; N], elem: usize) -> Result<[usize; N]> {
        match &self.chunk_shape {
            Some(c) => {
                if c.len() != N {
                    return Err(Error::InvalidArgument(format!(
                        "chunk shape {c:?} has {} dimension(s), the array has {N}",
                        c.len()
                    )));
                }
                if c.contains(&0) {
                    return Err(Error::InvalidArgument(format!(
                        "chunk shape {c:?} has an extent of 0"
                    )));
                }
                Ok(std::array::from_fn(|d| c[d]))
            }
            None => Ok(default_chunks(shape, elem)),
        }
    }
}

/// Whole trailing dimensions while they fit in [`DEFAULT_CHUNK_BYTES`],
/// then as many slices of the next dimension as fit (at least one), and
/// extent 1 before it.
fn default_chunks<const N: usize>(shape: [usize; N], elem: usize) -> [usize; N] {
    let mut chunks = [1usize; N];
    let mut bytes = elem.max(1);
    for d in (0..N).rev() {
        let n = shape[d].max(1);
        if bytes.saturating_mul(n) <= DEFAULT_CHUNK_BYTES {
            chunks[d] = n;
            bytes *= n;
        } else {
            chunks[d] = (DEFAULT_CHUNK_BYTES / bytes).clamp(1, n);
            break;
        }
    }
    chunks
}

/// Collective: writes `array` as a Zarr v3 array at `path` with the
/// default [`ZarrOptions`] (about 8 MiB chunks, CRC32C checksums, no
/// compression, fsync; an existing array is not overwritten).
pub fn write_zarr<T: Element, C: OneSidedComm, const N: usize>(
    array: &DistArray<T, C, N>,
    path: impl AsRef<Path>,
) -> Result<()> {
    write_zarr_with(array, path, &ZarrOptions::default())
}

/// Collective: writes `array` as a Zarr v3 array at `path` (a directory).
/// Every rank must pass the same path and options, and the same array.
/// Errors on every rank: options, path, element type or partition of the
/// array differing between ranks, a bad chunk shape, an existing array
/// without [`ZarrOptions::overwrite`], or any file error (no permission, a
/// full disk, ...).
pub fn write_zarr_with<T: Element, C: OneSidedComm, const N: usize>(
    array: &DistArray<T, C, N>,
    path: impl AsRef<Path>,
    opts: &ZarrOptions,
) -> Result<()> {
    let comm = array.comm();
    let path = path.as_ref();
    let chunks = opts.resolve_chunks(array.shape(), std::mem::size_of::<T>());
    // the partition is agreed too: whether it is block-cyclic decides the
    // path below (through a redistribution, collective, or not), and every
    // rank writes chunks from its own part
    agree(
        comm,
        "the path, options, element type or array partition of write_zarr",
        &(path, opts, T::KIND, array.partitioning()),
        chunks.as_ref().map(|_| ()).map_err(Clone::clone),
    )?;
    let chunks = chunks?;
    if array.partitioning().is_block_cyclic() {
        // each part is many boxes: write a contiguous copy on the same
        // process grid
        let contiguous = array.contiguous_twin()?;
        contiguous.copy_from(array)?;
        return write_agreed(&contiguous, path, chunks, opts);
    }
    write_agreed(array, path, chunks, opts)
}

/// Collective: [`write_zarr_with`] of a contiguous `array`, once every
/// rank agreed on the arguments.
fn write_agreed<T: Element, C: OneSidedComm, const N: usize>(
    array: &DistArray<T, C, N>,
    path: &Path,
    chunks: [usize; N],
    opts: &ZarrOptions,
) -> Result<()> {
    let comm = array.comm();
    // rank 0 prepares the directory and the metadata
    let prepared = if comm.rank() == 0 {
        prepare_dir(path, opts.overwrite)
            .and_then(|_| open_store(path))
            .and_then(|store| {
                let zarr = build_array::<T, N>(store, path, array.shape(), chunks, opts)?;
                zarr.store_metadata().map_err(|e| io_err(path, e))?;
                if opts.sync {
                    sync_file(&path.join("zarr.json"))?;
                    sync_dir(path)?;
                    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                        sync_dir(parent)?;
                    }
                }
                Ok(())
            })
    } else {
        Ok(())
    };
    vote(comm, prepared)?;
    // every rank writes its chunks
    let written = open_store(path).and_then(|store| {
        let zarr = build_array::<T, N>(store.clone(), path, array.shape(), chunks, opts)?;
        write_own_chunks(array, &zarr, &store, path, chunks, opts)
    });
    vote(comm, written)
}

/// Rank 0: makes `path` an empty directory, refusing to replace anything
/// but a Zarr array (and that only with `overwrite`).
fn prepare_dir(path: &Path, overwrite: bool) -> Result<()> {
    if path.exists() {
        let is_zarr = path.join("zarr.json").is_file() || path.join(".zarray").is_file();
        let empty = path
            .read_dir()
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !(is_zarr || empty) {
            return Err(io_err(
                path,
                "exists and is not a Zarr array; refusing to replace it",
            ));
        }
        if is_zarr && !overwrite {
            return Err(io_err(
                path,
                "a Zarr array exists there (pass ZarrOptions::overwrite(true) to replace it)",
            ));
        }
        if is_zarr {
            std::fs::remove_dir_all(path).map_err(|e| io_err(path, e))?;
        }
    }
    std::fs::create_dir_all(path).map_err(|e| io_err(path, e))
}

/// The filesystem store rooted at `path`.
fn open_store(path: &Path) -> Result<Arc<FilesystemStore>> {
    FilesystemStore::new(path)
        .map(Arc::new)
        .map_err(|e| io_err(path, e))
}

/// The `zarrs` array object for `T` with `opts` (nothing is written).
fn build_array<T: Element, const N: usize>(
    store: Arc<FilesystemStore>,
    path: &Path,
    shape: [usize; N],
    chunks: [usize; N],
    opts: &ZarrOptions,
) -> Result<Array<FilesystemStore>> {
    let mut codecs: Vec<Arc<dyn zarrs::array::codec::api::BytesToBytesCodecTraits>> = Vec::new();
    match opts.compression {
        Compression::None => {}
        Compression::Zstd(level) => codecs.push(Arc::new(ZstdCodec::new(level, false))),
        Compression::Gzip(level) => codecs.push(Arc::new(
            GzipCodec::new(level).map_err(|e| Error::InvalidArgument(e.to_string()))?,
        )),
    }
    if opts.checksum {
        codecs.push(Arc::new(Crc32cCodec::new()));
    }
    ArrayBuilder::new(
        shape.iter().map(|&n| n as u64).collect::<Vec<u64>>(),
        chunks.iter().map(|&n| n as u64).collect::<Vec<u64>>(),
        zarr_name(T::KIND),
        zarrs::array::FillValue::new(vec![0u8; std::mem::size_of::<T>()]),
    )
    .bytes_to_bytes_codecs(codecs)
    .build(store, "/")
    .map_err(|e| io_err(path, e))
}

/// The global box of chunk `idx` (not clipped to the array).
fn chunk_box<const N: usize>(idx: [usize; N], chunks: [usize; N]) -> Block<N> {
    Block::new(std::array::from_fn(|d| {
        idx[d] * chunks[d]..(idx[d] + 1) * chunks[d]
    }))
}

/// The chunk indices whose chunks meet `part` (per dimension, a range).
fn chunks_meeting<const N: usize>(
    part: &[std::ops::Range<usize>; N],
    chunks: [usize; N],
) -> Option<[std::ops::Range<usize>; N]> {
    if part.iter().any(|r| r.is_empty()) {
        return None;
    }
    Some(std::array::from_fn(|d| {
        part[d].start / chunks[d]..part[d].end.div_ceil(chunks[d])
    }))
}

/// Calls `f` with every chunk index in `ranges` (row-major order).
fn for_each_chunk<const N: usize>(
    ranges: &[std::ops::Range<usize>; N],
    mut f: impl FnMut([usize; N]) -> Result<()>,
) -> Result<()> {
    let extent: [usize; N] = std::array::from_fn(|d| ranges[d].len());
    let total: usize = extent.iter().product();
    for k in 0..total {
        let rel = multi_index(&extent, k);
        f(std::array::from_fn(|d| ranges[d].start + rel[d]))?;
    }
    Ok(())
}

/// Writes the chunks whose first element this rank owns.
fn write_own_chunks<T: Element, C: OneSidedComm, const N: usize>(
    array: &DistArray<T, C, N>,
    zarr: &Array<FilesystemStore>,
    store: &FilesystemStore,
    path: &Path,
    chunks: [usize; N],
    opts: &ZarrOptions,
) -> Result<()> {
    let shape = array.shape();
    let part = array.local_indices(array.comm().rank())?;
    let Some(ranges) = chunks_meeting(&part, chunks) else {
        return Ok(());
    };
    let codec_opts = CodecOptions::default().with_store_empty_chunks(opts.store_empty_chunks);
    let chunk_len: usize = chunks.iter().product();
    let mut buf = Vec::new();
    let mut piece = Vec::new();
    let mut files = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for_each_chunk(&ranges, |idx| {
        let full = chunk_box(idx, chunks);
        let origin: [usize; N] = std::array::from_fn(|d| full.ranges()[d].start);
        if !(0..N).all(|d| part[d].contains(&origin[d])) {
            return Ok(()); // another rank writes it
        }
        let clipped = full
            .intersect(&std::array::from_fn(|d| 0..shape[d]))
            .expect("the chunk's origin lies in the array");
        let idx64: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
        let store_bytes = |bytes: &[u8]| {
            zarr.store_chunk_opt(&idx64, ArrayBytes::new_flen(bytes), &codec_opts)
                .map_err(|e| io_err(path, format!("writing chunk {idx:?}: {e}")))
        };
        let own = Block::new(part.clone());
        let inside = clipped == full && full.intersect(own.ranges()).as_ref() == Some(&full);
        let in_place = if inside {
            contiguous_in(&own, &full)
        } else {
            None
        };
        buf.resize(if in_place.is_some() { 0 } else { chunk_len }, T::ZERO);
        if let Some(run) = in_place {
            // the chunk is one run of the local part: encode it from there
            array.try_with_local(|l| store_bytes(bytemuck::cast_slice(&l.as_slice()[run])))?;
        } else if clipped == full {
            array.get_block_into(&clipped, &mut buf)?;
            store_bytes(bytemuck::cast_slice(&buf))?;
        } else {
            // an edge chunk: the part outside the array holds the fill value
            piece.resize(clipped.len(), T::ZERO);
            array.get_block_into(&clipped, &mut piece)?;
            buf.fill(T::ZERO);
            copy_box(&clipped, &piece, &full, &mut buf, &clipped);
            store_bytes(bytemuck::cast_slice(&buf))?;
        }
        if opts.sync {
            files.push(store.key_to_fspath(&zarr.chunk_key(&idx64)));
        }
        Ok(())
    })?;
    // sync once everything is written: the kernel writes back meanwhile,
    // and one wait per file at the end costs far less than one per chunk
    for file in files.iter().filter(|f| f.exists()) {
        sync_file(file)?;
        let mut dir = file.parent().map(PathBuf::from);
        while let Some(d) = dir.filter(|d| d.starts_with(path) && d.as_path() != path) {
            dir = d.parent().map(PathBuf::from);
            dirs.insert(d);
        }
    }
    for d in &dirs {
        sync_dir(d)?;
    }
    Ok(())
}

/// Collective: reads the Zarr array at `path` into a new array with the
/// default (uniform) partition over `comm`'s ranks. Errors on every rank:
/// the path is missing or differs between ranks, the stored element type
/// is not `T`, the dimension count is not `N`, a chunk is corrupted.
pub fn read_zarr<T: Element, C: OneSidedComm, const N: usize>(
    comm: C,
    path: impl AsRef<Path>,
) -> Result<DistArray<T, C, N>> {
    let path = path.as_ref();
    let opened = open_checked::<T>(path, None);
    agree(&comm, "the path of read_zarr", &path, Ok(()))?;
    let shape = opened
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|z| array_shape::<N>(path, z));
    let shape = vote(&comm, shape)?;
    // the shape came from a file every rank read: make sure they agree
    agree(&comm, "the stored shape", &shape, Ok(()))?;
    let array = DistArray::<T, C, N>::new(comm, shape)?;
    // the metadata opened above (type checked, shape agreed) serves the read
    let zarr = opened.expect("voted above");
    let local = read_own_chunks(&array, &zarr, path, false);
    vote(array.comm(), local)?;
    Ok(array)
}

/// Collective: reads the Zarr array at `path` into `array`, whatever its
/// partition (every rank reads the chunks that meet its part). Every rank
/// must pass the same path and the same array. Errors on every rank: the
/// path, the element type or the array's partition differs between ranks,
/// the path is missing, the stored element type is not `T`, the stored
/// shape is not `array.shape()`, a chunk is corrupted. On error `array`'s
/// contents are unspecified.
pub fn read_zarr_into<T: Element, C: OneSidedComm, const N: usize>(
    array: &DistArray<T, C, N>,
    path: impl AsRef<Path>,
) -> Result<()> {
    read_into_impl(array, path.as_ref(), false)
}

/// [`read_zarr_into`]; with `require_chunks`, a missing chunk is an error
/// (checkpoints store every chunk) instead of the fill value.
pub(crate) fn read_into_impl<T: Element, C: OneSidedComm, const N: usize>(
    array: &DistArray<T, C, N>,
    path: &Path,
    require_chunks: bool,
) -> Result<()> {
    let comm = array.comm();
    // the partition is agreed too: whether it is block-cyclic decides the
    // path below (through a redistribution, collective, or not)
    agree(
        comm,
        "the path, element type or array partition of read_zarr_into",
        &(path, T::KIND, array.partitioning()),
        Ok(()),
    )?;
    if array.partitioning().is_block_cyclic() {
        // read into a contiguous array on the same process grid, then copy
        let contiguous = array.contiguous_twin()?;
        read_agreed(&contiguous, path, require_chunks)?;
        return array.copy_from(&contiguous);
    }
    read_agreed(array, path, require_chunks)
}

/// Collective: [`read_into_impl`] into a contiguous `array`, once every
/// rank agreed on the arguments.
fn read_agreed<T: Element, C: OneSidedComm, const N: usize>(
    array: &DistArray<T, C, N>,
    path: &Path,
    require_chunks: bool,
) -> Result<()> {
    let local = open_checked::<T>(path, Some(&array.shape()))
        .and_then(|z| read_own_chunks(array, &z, path, require_chunks));
    vote(array.comm(), local)
}

/// Opens the array at `path` and checks its element type (and its shape,
/// if given).
fn open_checked<T: Element>(
    path: &Path,
    shape: Option<&[usize]>,
) -> Result<Array<FilesystemStore>> {
    if !path.join("zarr.json").is_file() && !path.join(".zarray").is_file() {
        return Err(io_err(
            path,
            if path.exists() {
                "not a Zarr array (no zarr.json)"
            } else {
                "no such file or directory"
            },
        ));
    }
    let zarr = Array::open(open_store(path)?, "/").map_err(|e| io_err(path, e))?;
    let want = zarr_name(T::KIND);
    let found_name = zarr
        .data_type()
        .name(zarrs::plugin::ZarrVersion::V3)
        .map(|n| n.to_string())
        .unwrap_or_else(|| zarr.data_type().to_string());
    if found_name != want {
        return Err(io_err(
            path,
            format!("the array holds {found_name}, but the element type asked for is {want}"),
        ));
    }
    if let Some(shape) = shape {
        let stored: Vec<usize> = zarr.shape().iter().map(|&n| n as usize).collect();
        if stored != shape {
            return Err(Error::ShapeMismatch {
                expected: shape.to_vec(),
                found: stored,
            });
        }
    }
    Ok(zarr)
}

/// The stored shape as `[usize; N]`.
fn array_shape<const N: usize>(path: &Path, zarr: &Array<FilesystemStore>) -> Result<[usize; N]> {
    let s = zarr.shape();
    if s.len() != N {
        return Err(io_err(
            path,
            format!("the array has {} dimension(s), {N} were asked for", s.len()),
        ));
    }
    Ok(std::array::from_fn(|d| s[d] as usize))
}

/// The regular chunk shape of `zarr`.
fn regular_chunks<const N: usize>(
    path: &Path,
    zarr: &Array<FilesystemStore>,
) -> Result<[usize; N]> {
    let c = zarr
        .chunk_shape(&vec![0u64; N])
        .map_err(|e| io_err(path, e))?;
    if c.len() != N {
        return Err(io_err(path, "chunk shape does not match the dimensions"));
    }
    Ok(std::array::from_fn(|d| c[d].get() as usize))
}

/// Reads this rank's part, chunk by chunk. A chunk that lies inside the
/// part is decoded straight into the local memory; one that meets the part
/// only in part (or runs past the array's edge) is decoded whole and the
/// intersection copied. Every chunk is decoded whole, so its checksum is
/// always verified (a partial decode would skip it). With
/// `require_chunks`, a missing chunk is an error instead of the fill value.
fn read_own_chunks<T: Element, C: OneSidedComm, const N: usize>(
    array: &DistArray<T, C, N>,
    zarr: &Array<FilesystemStore>,
    path: &Path,
    require_chunks: bool,
) -> Result<()> {
    let part_ranges = array.local_indices(array.comm().rank())?;
    let chunks = regular_chunks::<N>(path, zarr)?;
    let Some(ranges) = chunks_meeting(&part_ranges, chunks) else {
        return Ok(());
    };
    let part = Block::new(part_ranges.clone());
    let store = open_store(path)?;
    let shape: Vec<u64> = part_ranges.iter().map(|r| r.len() as u64).collect();
    array.try_with_local_mut(|mut local| {
        let dst = local.as_mut_slice();
        for_each_chunk(&ranges, |idx| {
            let full = chunk_box(idx, chunks);
            let idx64: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
            if require_chunks && !store.key_to_fspath(&zarr.chunk_key(&idx64)).is_file() {
                return Err(io_err(path, format!("chunk {idx:?} is missing")));
            }
            let fail =
                |e: &dyn std::fmt::Display| io_err(path, format!("reading chunk {idx:?}: {e}"));
            if full.intersect(part.ranges()).as_ref() == Some(&full) {
                // inside the part: decode into the local memory
                let subset = ArraySubset::new_with_ranges(
                    &full
                        .ranges()
                        .iter()
                        .map(|r| r.start as u64..r.end as u64)
                        .collect::<Vec<_>>(),
                );
                let within = ArraySubset::new_with_ranges(
                    &(0..N)
                        .map(|d| {
                            let o = (full.ranges()[d].start - part_ranges[d].start) as u64;
                            o..o + full.ranges()[d].len() as u64
                        })
                        .collect::<Vec<_>>(),
                );
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut dst[..]);
                // SAFETY: `new` requires that no other live view of these
                // bytes covers an overlapping subset. This is the only view
                // of `bytes` (the rank's local part, borrowed mutably by
                // this closure) alive at this point: views are made and
                // dropped one chunk at a time.
                let mut view = unsafe {
                    ArrayBytesFixedDisjointView::new(
                        UnsafeCellSlice::new(bytes),
                        std::mem::size_of::<T>(),
                        &shape,
                        within,
                    )
                }
                .map_err(|e| fail(&e))?;
                return zarr
                    .retrieve_array_subset_into(
                        &subset,
                        ArrayBytesDecodeIntoTarget::Fixed(&mut view),
                    )
                    .map_err(|e| fail(&e));
            }
            let raw = zarr
                .retrieve_chunk::<ArrayBytes<'static>>(&idx64)
                .map_err(|e| fail(&e))?
                .into_fixed()
                .map_err(|e| fail(&e))?;
            let want = full.len() * std::mem::size_of::<T>();
            if raw.len() != want {
                return Err(fail(&format!(
                    "decodes to {} bytes, expected {want}",
                    raw.len()
                )));
            }
            let inter = full
                .intersect(part.ranges())
                .expect("the chunk meets the part");
            match bytemuck::try_cast_slice::<u8, T>(&raw) {
                Ok(vals) => copy_box(&full, vals, &part, dst, &inter),
                // not aligned for T: through an aligned copy
                Err(_) => copy_box(
                    &full,
                    &bytemuck::pod_collect_to_vec::<u8, T>(&raw),
                    &part,
                    dst,
                    &inter,
                ),
            }
            Ok(())
        })
    })
}
