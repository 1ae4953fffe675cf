//! Parallel HDF5 files (feature `hdf5`): every rank writes and reads its own
//! part of a [`DistArray`] as one hyperslab, with **collective** MPI-IO
//! transfers (`H5FD_MPIO_COLLECTIVE`), through the crate `hdf5-metno` on
//! the parallel HDF5 library of the MPI in use.
//!
//! ```no_run
//! use distarray::{DistArray, OneSidedComm};
//! use distarray_mpi::hdf5::Hdf5File;
//! use distarray_mpi::MpiComm;
//!
//! fn main() -> distarray::Result<()> {
//!     let (_env, comm) = MpiComm::init()?;
//!     let a = DistArray::<f64, _, 2>::from_fn(comm.clone(), [100, 80], |[i, j]| (i * 80 + j) as f64)?;
//!     let file = Hdf5File::create(&comm, "state.h5")?;
//!     file.write("u", &a)?;                     // one dataset "u", 100 x 80, float64
//!     file.write_attr("time", 0.25f64)?;        // a scalar attribute of the file
//!     file.close()?;
//!
//!     // any number of ranks, any partition: the same values
//!     let file = Hdf5File::open(&comm, "state.h5")?;
//!     let b = DistArray::<f64, _, 2>::with_grid(comm.clone(), [1, comm.size()], [100, 80])?;
//!     file.read_into("u", &b)?;
//!     let c = file.read::<f64, 2>("u")?;       // the default partition (rows split)
//!     let t: f64 = file.read_attr("time")?;
//!     # let _ = (c, t);
//!     Ok(())
//! }
//! ```
//!
//! # What the file holds
//!
//! One dataset per array, of the array's global shape (row-major, as the
//! array), contiguous, with the element type in HDF5's own types: the
//! native integer types for `i8`..`i64`, `u8`..`u64` (`isize` / `usize`
//! as 64-bit), IEEE floats for `f32` / `f64`, and for `Complex32` /
//! `Complex64` the compound `{r, i}` of two floats that h5py and NumPy use
//! for `complex64` / `complex128`. So `h5py`, `h5dump` and any HDF5 program
//! read it without help, and distarray reads what they write (any byte
//! order: HDF5 converts it). New files use HDF5 1.8's object formats,
//! whose metadata carries checksums, so a corrupted superblock or object
//! header is an error rather than garbage (element data itself has no
//! checksum in a contiguous dataset). Attributes ([`Hdf5File::write_attr`]) are
//! scalars of type `f64`, `i64` or `u64` on the file's root group.
//!
//! # Collective calls and errors
//!
//! Every method is **collective**: all ranks of the file's communicator
//! call it, in the same order, with the same arguments (name, array). Each
//! step that can fail on one rank alone (a missing file, no permission, a
//! path, a name or an array's shape, partition or element type that
//! differs between ranks, a dataset of another element type or shape, a
//! name that already exists, a corrupted file) is checked and
//! **voted** ([`distarray::collective::vote`]) before the next collective
//! HDF5 call, so bad input gives an `Err` on every rank — the failing
//! rank's own error, [`Error::PeerFailed`] on the others — instead of a
//! hang or an abort. HDF5's own error printing is silenced; its message is
//! carried in [`Error::Io`]. What cannot be voted on is a failure *inside*
//! one collective HDF5 transfer on one rank only (a disk that fails under
//! one process): as with any MPI-IO program, that is left to MPI.
//!
//! Writing a dataset name that already exists is refused (`Err`, nothing
//! changed): HDF5 cannot reclaim the space of a replaced dataset, so write
//! a new name or a new file. Attributes, being small, are replaced.
//!
//! # Which HDF5
//!
//! The parallel HDF5 built for the same MPI as the crate: Debian
//! `libhdf5-openmpi-dev` (Open MPI) or `libhdf5-mpich-dev` (MPICH). The
//! `hdf5-metno-sys` build script finds it through `HDF5_DIR` (set it to
//! `/usr/lib/x86_64-linux-gnu/hdf5/openmpi` or `.../hdf5/mpich`), else
//! through pkg-config's `hdf5`. A serial HDF5 fails the build (hdf5-metno's
//! `mpio` feature needs a parallel one), and this crate's build script
//! refuses one built for the other MPI family.

use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use distarray::collective::vote;
use distarray::{DistArray, Element, Error, OneSidedComm, Result};
use hdf5_metno as h5;
use hdf5_metno::dataset::FillTime;
use hdf5_metno::file::LibraryVersion;
use hdf5_metno::types::TypeDescriptor;
use hdf5_metno::{Dataset, Dataspace, Datatype, H5Type, Hyperslab, PropertyList, SliceOrIndex};
use hdf5_metno_sys::h5::herr_t;
use hdf5_metno_sys::h5d::{H5D_mpio_actual_io_mode_t, H5Dread, H5Dwrite};
use hdf5_metno_sys::h5i::hid_t;
use hdf5_metno_sys::h5p::{H5FD_mpio_xfer_t, H5Pcreate, H5Pset_dxpl_mpio};

use crate::agree::{agree, fingerprint, gated};
use crate::raw;
use crate::MpiComm;

/// An element type that can be stored in an HDF5 dataset: every
/// [`Element`] (`i8`..`i64`, `u8`..`u64`, `isize`, `usize`, `f32`, `f64`,
/// `Complex32`, `Complex64`), which all have an HDF5 type ([`H5Type`]).
pub trait Hdf5Element: Element + H5Type {}

impl<T: Element + H5Type> Hdf5Element for T {}

/// A scalar attribute type: `f64`, `i64` or `u64`.
pub trait AttrScalar: H5Type + Copy + PartialEq + private::Sealed {
    /// The value's bits, to check that every rank writes the same value.
    #[doc(hidden)]
    fn bits(self) -> u64;
}

mod private {
    pub trait Sealed {}
    impl Sealed for f64 {}
    impl Sealed for i64 {}
    impl Sealed for u64 {}
}

impl AttrScalar for f64 {
    fn bits(self) -> u64 {
        self.to_bits()
    }
}

impl AttrScalar for i64 {
    fn bits(self) -> u64 {
        self as u64
    }
}

impl AttrScalar for u64 {
    fn bits(self) -> u64 {
        self
    }
}

/// An HDF5 file opened by every rank of a communicator with the MPI-IO
/// driver. See the [module docs](self) for the file layout and the error
/// rules.
///
/// Dropping it closes the file; closing is collective, so drop it on every
/// rank (or call [`Hdf5File::close`], which also reports errors).
pub struct Hdf5File {
    comm: MpiComm,
    path: PathBuf,
    /// `None` only while closing.
    file: Option<h5::File>,
    writable: bool,
    /// How this rank's last transfer went ([`Hdf5File::last_transfer_collective`]):
    /// 0 none yet, 1 independent, 2 collective.
    last_collective: AtomicU8,
}

impl std::fmt::Debug for Hdf5File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hdf5File")
            .field("path", &self.path)
            .field("writable", &self.writable)
            .finish()
    }
}

/// How a file is opened.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Create,
    Read,
    ReadWrite,
}

impl Hdf5File {
    /// Collective: creates the file at `path` (truncating an existing one)
    /// for reading and writing.
    ///
    /// Errors on every rank if `path` differs between ranks or cannot be
    /// created on some rank (missing directory, no permission).
    pub fn create(comm: &MpiComm, path: impl AsRef<Path>) -> Result<Self> {
        Self::start(comm, path.as_ref(), Mode::Create)
    }

    /// Collective: opens an existing file read-only.
    ///
    /// Errors on every rank if `path` differs between ranks, is missing or
    /// unreadable on some rank, or is not an intact HDF5 file.
    pub fn open(comm: &MpiComm, path: impl AsRef<Path>) -> Result<Self> {
        Self::start(comm, path.as_ref(), Mode::Read)
    }

    /// Collective: opens an existing file for reading and writing (new
    /// datasets and attributes; existing datasets are never replaced).
    /// Errors as [`Hdf5File::open`], and if the file is not writable.
    pub fn open_rw(comm: &MpiComm, path: impl AsRef<Path>) -> Result<Self> {
        Self::start(comm, path.as_ref(), Mode::ReadWrite)
    }

    fn start(comm: &MpiComm, path: &Path, mode: Mode) -> Result<Self> {
        let io = |message: String| Error::Io {
            path: path.display().to_string(),
            message,
        };
        // 1. the same path on every rank (as an absolute path: ranks with
        //    different working directories would open different files)
        let abs = std::path::absolute(path)
            .map_err(|e| io(format!("cannot make the path absolute: {e}")));
        let key = abs.map(|p| ((), fingerprint(p.as_os_str().as_encoded_bytes())));
        agree(comm, key, || {
            Error::InvalidArgument(format!(
                "Hdf5File: the path {} differs between ranks (every rank must name the same \
                 file, as the same absolute path)",
                path.display()
            ))
        })?;
        // 2. the file system agrees on every rank before HDF5 opens the file
        //    (MPI_File_open is collective: a rank that cannot open it must
        //    not leave the others inside it)
        let local = match mode {
            Mode::Read => std::fs::File::open(path)
                .and_then(|f| f.metadata())
                .map_err(|e| io(format!("cannot open for reading: {e}")))
                .and_then(|m| {
                    if m.is_file() {
                        Ok(())
                    } else {
                        Err(io("not a regular file".into()))
                    }
                }),
            Mode::ReadWrite => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map(drop)
                .map_err(|e| io(format!("cannot open for reading and writing: {e}"))),
            Mode::Create => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map(drop)
                .map_err(|e| io(format!("cannot create: {e}"))),
        };
        vote(comm, local)?;
        // 3. HDF5 opens it collectively
        let raw_comm = comm.inner().raw();
        let opened = locked(comm, || {
            h5::silence_errors(true);
            let mut builder = h5::File::with_options();
            builder.with_fapl(|p| p.mpio(raw_comm, None));
            if mode == Mode::Create {
                // HDF5 1.8's object formats: checksummed metadata (a
                // corrupted superblock or object header is an error, not
                // garbage), readable by every HDF5 since 1.8 and by h5py
                builder.with_fapl(|p| p.libver_bounds(LibraryVersion::V18, LibraryVersion::V18));
            }
            match mode {
                Mode::Create => builder.create(path),
                Mode::Read => builder.open(path),
                Mode::ReadWrite => builder.open_rw(path),
            }
        })
        .and_then(|r| r.map_err(|e| io(format!("HDF5 cannot open the file: {e}"))));
        let file = vote(comm, opened)?;
        Ok(Hdf5File {
            comm: comm.clone(),
            path: path.to_path_buf(),
            file: Some(file),
            writable: mode != Mode::Read,
            last_collective: AtomicU8::new(0),
        })
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Collective: writes `array` as a new dataset `name` of the array's
    /// global shape and element type; each rank writes its own part as one
    /// hyperslab, all in one collective transfer. A block-cyclic array is
    /// first redistributed into contiguous parts on its process grid (one
    /// copy of the part in memory, one redistribution).
    ///
    /// Errors on every rank if the file is read-only, `name` already exists
    /// (datasets are never replaced), `array` lives on another communicator
    /// layout (its rank and size must be the file's), the name or the
    /// array's shape, partition or element type differs between ranks, or
    /// HDF5 fails.
    pub fn write<T: Hdf5Element, const N: usize>(
        &self,
        name: &str,
        array: &DistArray<T, MpiComm, N>,
    ) -> Result<()> {
        let file = self.file()?;
        let local = self
            .check_name(name)
            .and_then(|()| self.check_comm(array.comm()))
            .and_then(|()| {
                if !self.writable {
                    return Err(self.io(format!(
                        "cannot write dataset {name:?}: the file is open read-only"
                    )));
                }
                if self.h5(|| Ok(file.link_exists(name)))? {
                    return Err(self.io(format!(
                        "dataset {name:?} already exists (datasets are never replaced: \
                         write a new name or a new file)"
                    )));
                }
                Ok(())
            });
        // the partition is part of the vote: whether it is block-cyclic
        // decides the path (through a redistribution, collective, or not)
        self.agree(local, name, array)?;
        if array.partitioning().is_block_cyclic() {
            let contiguous = array.contiguous_twin()?;
            contiguous.copy_from(array)?;
            return self.write_agreed(file, name, &contiguous);
        }
        self.write_agreed(file, name, array)
    }

    /// Collective: [`Hdf5File::write`] of a contiguous `array`, once every
    /// rank agreed on the arguments and passed its checks.
    fn write_agreed<T: Hdf5Element, const N: usize>(
        &self,
        file: &h5::File,
        name: &str,
        array: &DistArray<T, MpiComm, N>,
    ) -> Result<()> {
        let shape = array.shape().to_vec();
        // Every rank takes its view before anything collective happens: a
        // rank whose view is refused votes its error in the gate's place,
        // the others learn it at the gate, and no dataset is created.
        gated(&self.comm, |gate| {
            array
                .with_local(|view| {
                    gate.pass()?;
                    let created = self.h5(|| {
                        file.new_dataset::<T>()
                            .shape(shape.clone())
                            .with_dcpl(|p| p.fill_time(FillTime::Never))
                            .create(name)
                    });
                    let dataset = self.vote(
                        created.map_err(|e| self.context(e, "cannot create dataset", name)),
                    )?;
                    let range = array.local_indices(self.comm.rank());
                    let spaces = range
                        .and_then(|r| self.h5(|| Spaces::new(&dataset, &r)))
                        .map_err(|e| self.context(e, "cannot select the part of dataset", name));
                    let spaces = self.vote(spaces)?;
                    let written = self
                        .h5(|| spaces.write(&dataset, view.as_slice()))
                        .map(|collective| self.record(collective))
                        .map_err(|e| self.context(e, "cannot write dataset", name));
                    self.vote(written)
                })
                .map_err(|e| self.context(e, "cannot write dataset", name))?
        })
    }

    /// Collective: reads dataset `name` into a new array with the default
    /// partition (the first dimension split over the ranks, as
    /// [`DistArray::new`]), on any number of ranks.
    ///
    /// Errors on every rank if the dataset is missing, its element type is
    /// not `T` or it does not have `N` dimensions.
    pub fn read<T: Hdf5Element, const N: usize>(
        &self,
        name: &str,
    ) -> Result<DistArray<T, MpiComm, N>> {
        self.agree_name(Ok(()), name)?;
        let shape = self.vote(self.checked_dataset::<T>(name).and_then(|(_, shape)| {
            <[usize; N]>::try_from(shape.as_slice()).map_err(|_| {
                self.io(format!(
                    "dataset {name:?} has {} dimension(s) (shape {shape:?}), not {N}",
                    shape.len()
                ))
            })
        }))?;
        let array = DistArray::<T, MpiComm, N>::new(self.comm.clone(), shape)?;
        self.read_into(name, &array)?;
        Ok(array)
    }

    /// Collective: reads dataset `name` into `array`, whatever its
    /// partition (each rank reads its own part as one hyperslab, all in one
    /// collective transfer; a block-cyclic array through a contiguous copy
    /// on its process grid). Written on 4 ranks with a 2 x 2 grid and read
    /// on 3 ranks split by rows, the values have the same bits.
    ///
    /// Errors on every rank if the dataset is missing, its element type is
    /// not `T`, its shape is not the array's, or the name or the array's
    /// shape, partition or element type differs between ranks.
    pub fn read_into<T: Hdf5Element, const N: usize>(
        &self,
        name: &str,
        array: &DistArray<T, MpiComm, N>,
    ) -> Result<()> {
        // the partition is part of the vote: whether it is block-cyclic
        // decides the path (through a redistribution, collective, or not)
        self.agree(self.check_comm(array.comm()), name, array)?;
        if array.partitioning().is_block_cyclic() {
            let contiguous = array.contiguous_twin()?;
            self.read_agreed(name, &contiguous)?;
            return array.copy_from(&contiguous);
        }
        self.read_agreed(name, array)
    }

    /// Collective: [`Hdf5File::read_into`] into a contiguous `array`, once
    /// every rank agreed on the arguments.
    fn read_agreed<T: Hdf5Element, const N: usize>(
        &self,
        name: &str,
        array: &DistArray<T, MpiComm, N>,
    ) -> Result<()> {
        let checked = self.prepare_read(name, array);
        let (dataset, spaces) = self.vote(checked)?;
        // the transfer is collective: every rank must hold its view first
        // (a rank whose view is refused votes its error in the gate's
        // place, and the others return without entering the transfer)
        gated(&self.comm, |gate| {
            array
                .with_local_mut(|mut view| {
                    gate.pass()?;
                    let data = view.as_mut_slice();
                    let read = self
                        .h5(|| spaces.read(&dataset, data))
                        .map(|collective| self.record(collective))
                        .map_err(|e| self.context(e, "cannot read dataset", name));
                    self.vote(read)
                })
                .map_err(|e| self.context(e, "cannot read dataset", name))?
        })
    }

    /// Whether this rank's last [`write`](Hdf5File::write) or
    /// [`read_into`](Hdf5File::read_into) was carried out as a collective
    /// MPI-IO transfer (HDF5's `H5Pget_mpio_actual_io_mode`), `None` before
    /// the first. Every transfer asks for collective I/O; HDF5 falls back
    /// to independent I/O where it must convert elements (a dataset stored
    /// in the other byte order, say). Local, not collective.
    pub fn last_transfer_collective(&self) -> Option<bool> {
        match self.last_collective.load(Ordering::Relaxed) {
            0 => None,
            1 => Some(false),
            _ => Some(true),
        }
    }

    /// This rank's checks before a read: the dataset, its type and shape,
    /// and the selections of this rank's part.
    fn prepare_read<T: Hdf5Element, const N: usize>(
        &self,
        name: &str,
        array: &DistArray<T, MpiComm, N>,
    ) -> Result<(Dataset, Spaces)> {
        let (dataset, shape) = self.checked_dataset::<T>(name)?;
        if shape != array.shape() {
            return Err(Error::ShapeMismatch {
                expected: shape,
                found: array.shape().to_vec(),
            });
        }
        let range = array.local_indices(self.comm.rank())?;
        let spaces = self
            .h5(|| Spaces::new(&dataset, &range))
            .map_err(|e| self.context(e, "cannot select the part of dataset", name))?;
        Ok((dataset, spaces))
    }

    /// Collective: the shape of dataset `name`.
    pub fn dataset_shape(&self, name: &str) -> Result<Vec<usize>> {
        let local = self.check_name(name).and_then(|()| {
            let file = self.file()?;
            self.h5(|| file.dataset(name).map(|d| d.shape()))
                .map_err(|e| self.context(e, "no dataset", name))
        });
        self.vote(local)
    }

    /// Collective: the names of the datasets in the file's root group,
    /// sorted.
    pub fn dataset_names(&self) -> Result<Vec<String>> {
        let local = self.file().and_then(|file| {
            self.h5(|| {
                let mut names: Vec<String> = file
                    .datasets()?
                    .iter()
                    .map(|d| d.name().trim_start_matches('/').to_string())
                    .collect();
                names.sort();
                Ok(names)
            })
            .map_err(|e| self.io(format!("cannot list datasets: {e}")))
        });
        self.vote(local)
    }

    /// Collective: writes the scalar attribute `name` of the file's root
    /// group (replacing one of that name). Every rank must pass the same
    /// value (checked: an `Err` on every rank otherwise).
    pub fn write_attr<A: AttrScalar>(&self, name: &str, value: A) -> Result<()> {
        let file = self.file()?;
        let local = self.check_name(name).and_then(|()| {
            if self.writable {
                Ok(((), fingerprint(&(name, value.bits()))))
            } else {
                Err(self.io(format!(
                    "cannot write attribute {name:?}: the file is open read-only"
                )))
            }
        });
        agree(&self.comm, local, || {
            Error::InvalidArgument(format!(
                "Hdf5File::write_attr: attribute {name:?}: the name or the value differs between \
                 ranks"
            ))
        })?;
        let written = self
            .h5(|| {
                if file.attr_names()?.iter().any(|n| n == name) {
                    file.delete_attr(name)?;
                }
                file.new_attr::<A>().create(name)?.write_scalar(&value)
            })
            .map_err(|e| self.context(e, "cannot write attribute", name));
        self.vote(written)
    }

    /// Collective: reads the scalar attribute `name` of the file's root
    /// group. Errors on every rank if it is missing, not a scalar, or of
    /// another type than `A` (an `i64` attribute is not read as `u64`).
    pub fn read_attr<A: AttrScalar>(&self, name: &str) -> Result<A> {
        let local = self.check_name(name).and_then(|()| {
            let file = self.file()?;
            self.h5(|| {
                let attr = file.attr(name)?;
                let found = attr.dtype()?.to_descriptor()?;
                if found != A::type_descriptor() {
                    return Ok(Err(found));
                }
                if !attr.is_scalar() {
                    return Err(format!("not a scalar (shape {:?})", attr.shape()).into());
                }
                attr.read_scalar::<A>().map(Ok)
            })
            .map_err(|e| self.context(e, "cannot read attribute", name))?
            .map_err(|found| {
                self.io(format!(
                    "attribute {name:?} has type {found}, not {}",
                    A::type_descriptor()
                ))
            })
        });
        self.vote(local)
    }

    /// Collective: flushes the file's buffers to storage.
    pub fn flush(&self) -> Result<()> {
        let local = self.file().and_then(|file| {
            self.h5(|| file.flush())
                .map_err(|e| self.io(format!("cannot flush: {e}")))
        });
        self.vote(local)
    }

    /// Collective: closes the file, and reports an error of any rank on
    /// every rank (dropping the file closes it too, but silently).
    pub fn close(mut self) -> Result<()> {
        let file = self.file.take();
        let local = match file {
            Some(f) => self
                .h5(|| f.close())
                .map_err(|e| self.io(format!("cannot close: {e}"))),
            None => Ok(()),
        };
        self.vote(local)
    }

    // ---- helpers ----

    fn file(&self) -> Result<&h5::File> {
        self.file
            .as_ref()
            .ok_or_else(|| self.io("the file is closed".into()))
    }

    fn io(&self, message: String) -> Error {
        Error::Io {
            path: self.path.display().to_string(),
            message,
        }
    }

    /// `what name: error` as [`Error::Io`] (other errors unchanged).
    fn context(&self, e: Error, what: &str, name: &str) -> Error {
        match e {
            Error::Io { message, .. } => self.io(format!("{what} {name:?}: {message}")),
            other => other,
        }
    }

    /// Collective: votes on `local` and checks that every rank passed the
    /// same `name` (a fingerprint of it), in one collective.
    fn agree_name(&self, local: Result<()>, name: &str) -> Result<()> {
        agree(&self.comm, local.map(|()| ((), fingerprint(name))), || {
            Error::InvalidArgument(format!(
                "Hdf5File: the name {name:?} differs between ranks (collective calls need the \
                 same arguments on every rank)"
            ))
        })
    }

    /// Collective: votes on `local` and checks that every rank passed the
    /// same `name` and an array of the same element type and partition
    /// (shape, process grid, part sizes, block sizes: a fingerprint of
    /// them), in one collective.
    fn agree<T: Element, const N: usize>(
        &self,
        local: Result<()>,
        name: &str,
        array: &DistArray<T, MpiComm, N>,
    ) -> Result<()> {
        let key = fingerprint(&(name, T::KIND, array.partitioning()));
        agree(&self.comm, local.map(|()| ((), key)), || {
            Error::InvalidArgument(format!(
                "Hdf5File: the name {name:?}, the array's shape, partition or element type \
                 differs between ranks (collective calls need the same arguments on every rank)"
            ))
        })
    }

    fn record(&self, collective: bool) {
        self.last_collective
            .store(if collective { 2 } else { 1 }, Ordering::Relaxed);
    }

    fn vote<R>(&self, local: Result<R>) -> Result<R> {
        vote(&self.comm, local)
    }

    /// Runs HDF5 calls `f` under the communicator's collective lock and the
    /// crate's MPI call lock (HDF5 calls MPI), as [`Error::Io`] on failure.
    fn h5<R>(&self, f: impl FnOnce() -> h5::Result<R>) -> Result<R> {
        locked(&self.comm, f)?.map_err(|e| self.io(e.to_string()))
    }

    fn check_name(&self, name: &str) -> Result<()> {
        if name.is_empty() || name == "." || name.ends_with('/') || name.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "Hdf5File: {name:?} is not a valid dataset or attribute name"
            )));
        }
        Ok(())
    }

    fn check_comm(&self, comm: &MpiComm) -> Result<()> {
        if comm.rank() != self.comm.rank() || comm.size() != self.comm.size() {
            return Err(Error::InvalidArgument(format!(
                "Hdf5File: the array is on rank {} of {}, the file on rank {} of {} (use the \
                 file's communicator)",
                comm.rank(),
                comm.size(),
                self.comm.rank(),
                self.comm.size()
            )));
        }
        Ok(())
    }

    /// Opens dataset `name` and checks that its element type is `T`;
    /// returns it with its shape (rank-local).
    fn checked_dataset<T: Hdf5Element>(&self, name: &str) -> Result<(Dataset, Vec<usize>)> {
        self.check_name(name)?;
        let file = self.file()?;
        let (dataset, found) = self
            .h5(|| {
                let d = file.dataset(name)?;
                let t = d.dtype()?.to_descriptor()?;
                Ok((d, t))
            })
            .map_err(|e| self.context(e, "cannot open dataset", name))?;
        let want = T::type_descriptor();
        if !same_type(&found, &want) {
            return Err(self.io(format!(
                "dataset {name:?} holds elements of type {found}, not {want} \
                 (read it with the matching element type)"
            )));
        }
        let shape = dataset.shape();
        Ok((dataset, shape))
    }
}

impl Drop for Hdf5File {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            let inner = self.comm.inner();
            let _collective = inner.collective();
            match raw::enter() {
                Ok(_serial) => drop(file),
                // MPI is finalised: HDF5 closed its files then (its
                // MPI_COMM_SELF callback); the handle must not call it again.
                Err(_) => std::mem::forget(file),
            }
        }
    }
}

/// Runs `f` holding the communicator's collective lock and the crate's MPI
/// call lock (`Err` if MPI is finalised).
fn locked<R>(comm: &MpiComm, f: impl FnOnce() -> R) -> Result<R> {
    let inner = comm.inner();
    let _collective = inner.collective();
    let _serial = raw::enter()?;
    Ok(f())
}

/// Element types agree: equal descriptors (byte order is not part of a
/// descriptor: HDF5 converts it), with `isize` / `usize` as 64-bit.
fn same_type(found: &TypeDescriptor, want: &TypeDescriptor) -> bool {
    found == want
}

/// The file and memory dataspaces of one rank's part, and a transfer
/// property list for collective MPI-IO.
struct Spaces {
    file: Dataspace,
    memory: Dataspace,
    xfer: PropertyList,
    len: usize,
}

impl Spaces {
    /// The hyperslab `range` of `dataset` (row-major, as the local part),
    /// and a memory space of the part's shape. An empty part selects
    /// nothing (it still takes part in the collective transfer).
    fn new<const N: usize>(
        dataset: &Dataset,
        range: &[std::ops::Range<usize>; N],
    ) -> h5::Result<Self> {
        let part: Vec<usize> = range.iter().map(|r| r.len()).collect();
        let len: usize = part.iter().product();
        let slab: Vec<SliceOrIndex> = range
            .iter()
            .map(|r| SliceOrIndex::SliceCount {
                start: r.start,
                step: 1,
                count: r.len(),
                block: 1,
            })
            .collect();
        let file = dataset.space()?.select(Hyperslab::from(slab))?;
        let whole: Vec<SliceOrIndex> = part
            .iter()
            .map(|&n| SliceOrIndex::SliceCount {
                start: 0,
                step: 1,
                count: n,
                block: 1,
            })
            .collect();
        let memory = Dataspace::try_new(part)?.select(Hyperslab::from(whole))?;
        if file.selection_size() != len {
            return Err(format!(
                "selected {} element(s) for a part of {len}",
                file.selection_size()
            )
            .into());
        }
        Ok(Spaces {
            file,
            memory,
            xfer: collective_xfer()?,
            len,
        })
    }

    /// Collective `H5Dwrite` of `data` (this rank's part, row-major);
    /// `true` if MPI-IO did it collectively.
    fn write<T: H5Type>(&self, dataset: &Dataset, data: &[T]) -> h5::Result<bool> {
        self.check_len(data.len())?;
        let mem_type = Datatype::from_type::<T>()?;
        let rc = h5::sync::sync(|| {
            // SAFETY: every id is a live HDF5 object owned by a handle that
            // outlives the call; `data` holds exactly the memory space's
            // element count (checked above) of `T`, whose layout is
            // `mem_type` (the `H5Type` contract), and HDF5 only reads it.
            unsafe {
                H5Dwrite(
                    dataset.id(),
                    mem_type.id(),
                    self.memory.id(),
                    self.file.id(),
                    self.xfer.id(),
                    data.as_ptr().cast(),
                )
            }
        });
        h5::h5check(rc)?;
        self.was_collective()
    }

    /// Collective `H5Dread` into `data` (this rank's part, row-major);
    /// `true` if MPI-IO did it collectively.
    fn read<T: H5Type>(&self, dataset: &Dataset, data: &mut [T]) -> h5::Result<bool> {
        self.check_len(data.len())?;
        let mem_type = Datatype::from_type::<T>()?;
        let rc = h5::sync::sync(|| {
            // SAFETY: as in `write`; HDF5 writes exactly the selected
            // element count of `mem_type` values into `data`, which is
            // exclusively borrowed and long enough, and every bit pattern
            // of an `Element` (plain old data) is a valid value.
            unsafe {
                H5Dread(
                    dataset.id(),
                    mem_type.id(),
                    self.memory.id(),
                    self.file.id(),
                    self.xfer.id(),
                    data.as_mut_ptr().cast(),
                )
            }
        });
        h5::h5check(rc)?;
        self.was_collective()
    }

    /// Whether the last transfer with `xfer` was collective.
    fn was_collective(&self) -> h5::Result<bool> {
        let mut mode: c_int = -1;
        // SAFETY: `xfer` is a live dataset transfer property list and `mode`
        // a valid out-pointer to a C `int`, the size of the C enum
        // `H5D_mpio_actual_io_mode_t` (read as an int, so no value is
        // invalid on the Rust side).
        let rc =
            h5::sync::sync(|| unsafe { H5Pget_mpio_actual_io_mode(self.xfer.id(), &mut mode) });
        h5::h5check(rc)?;
        Ok(mode != H5D_mpio_actual_io_mode_t::H5D_MPIO_NO_COLLECTIVE as c_int)
    }

    fn check_len(&self, len: usize) -> h5::Result<()> {
        if len != self.len {
            return Err(format!("local part of {len} element(s), expected {}", self.len).into());
        }
        Ok(())
    }
}

extern "C" {
    /// HDF5 ≥ 1.8.10 (parallel builds): how the last transfer with a
    /// dataset transfer property list was carried out (hdf5-metno-sys
    /// declares the enum, not the function).
    fn H5Pget_mpio_actual_io_mode(plist_id: hid_t, actual_io_mode: *mut c_int) -> herr_t;
}

/// A dataset transfer property list asking for collective MPI-IO.
fn collective_xfer() -> h5::Result<PropertyList> {
    h5::sync::sync(|| {
        // SAFETY: H5Pcreate takes a property list class id (the library's
        // own, initialised by `globals`) and returns a new id or a negative
        // value (checked by h5check).
        let id = h5::h5check(unsafe { H5Pcreate(*h5::globals::H5P_DATASET_XFER) })?;
        // SAFETY: `id` is a fresh property list id that nothing else owns;
        // the handle closes it on drop.
        let plist = unsafe { h5::from_id::<PropertyList>(id) }?;
        // SAFETY: `plist` is a live dataset transfer property list.
        h5::h5check(unsafe {
            H5Pset_dxpl_mpio(plist.id(), H5FD_mpio_xfer_t::H5FD_MPIO_COLLECTIVE)
        })?;
        Ok(plist)
    })
}
