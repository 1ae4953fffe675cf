//! Checkpoints: several named arrays and a few scalars, committed
//! atomically, readable on any number of ranks.
//!
//! # On disk
//!
//! A checkpoint `NAME` under a root directory is the Zarr v3 group
//! `ROOT/NAME/`: one Zarr array per named array (`ROOT/NAME/u/`, ...)
//! and the group's `zarr.json`, whose attribute `distarray_checkpoint` is
//! the manifest (arrays with element type and shape, scalars, a commit
//! sequence number). Python reads it with `zarr.open_group`.
//!
//! # Commit protocol
//!
//! 1. [`CheckpointWriter::create`] makes the staging directory
//!    `ROOT/.NAME.partial` (a stale one, left by a run that died, is
//!    removed first).
//! 2. [`CheckpointWriter::write`] writes each array into it with every
//!    chunk `fsync`ed, and a CRC32C checksum per chunk.
//! 3. [`CheckpointWriter::commit`] checks that every rank wrote its part
//!    and passed the same manifest, then rank 0 writes the manifest,
//!    syncs it, and renames the staging directory to `ROOT/NAME` — one
//!    atomic `rename(2)` — and syncs the root.
//!
//! A run killed at any moment (one rank by `kill -9` in the middle of a
//! chunk included) leaves either no `ROOT/NAME` at all or a complete one:
//! the earlier checkpoints are never touched. [`Checkpoint::open`] refuses
//! a name that was never committed (naming the partial directory it
//! found), a directory without a committed manifest, an array whose
//! stored type or shape differs from the manifest, a missing chunk, and a
//! chunk whose checksum fails.
//!
//! ```
//! use distarray::io::{Checkpoint, CheckpointWriter};
//! use distarray::{threaded, DistArray};
//! let root = std::env::temp_dir().join(format!("distarray-ckpt-doc-{}", std::process::id()));
//! threaded::run_ok(4, |comm| {
//!     let u = DistArray::<f64, _, 2>::from_fn(comm.clone(), [8, 8], |[i, j]| (i * j) as f64)?;
//!     let mut ck = CheckpointWriter::create(&comm, &root, "step-10")?;
//!     ck.write("u", &u)?;
//!     ck.set_scalar("step", 10i64);
//!     ck.set_scalar("time", 0.25f64);
//!     ck.commit()
//! })
//! .unwrap();
//! // restart on 3 ranks
//! threaded::run_ok(3, |comm| {
//!     let ck = Checkpoint::open_latest(&comm, &root)?;
//!     assert_eq!(ck.name(), "step-10");
//!     assert_eq!(ck.scalar_i64("step")?, 10);
//!     let u = ck.read::<f64, 2>("u")?;
//!     assert_eq!(u.get([7, 7])?, 49.0);
//!     Ok(())
//! })
//! .unwrap();
//! std::fs::remove_dir_all(&root).unwrap();
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::agree::{agree, broadcast_string};
use super::dtype::zarr_name;
use super::durable::{io_err, sync_dir, write_synced};
use super::zarr::{read_into_impl, write_zarr_with, ZarrOptions};
use crate::array::DistArray;
use crate::collective::vote;
use crate::comm::{Element, OneSidedComm};
use crate::error::{Error, Result};

/// The manifest's attribute name in the group's `zarr.json`.
const MANIFEST: &str = "distarray_checkpoint";
/// The manifest format this code writes and reads.
const FORMAT: u64 = 1;

/// A scalar stored with a checkpoint (a step count, a time, a label).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float, stored exactly (NaN and infinities included).
    F64(f64),
    /// A string.
    Str(String),
}

impl From<i64> for Scalar {
    fn from(v: i64) -> Self {
        Scalar::I64(v)
    }
}
impl From<u64> for Scalar {
    fn from(v: u64) -> Self {
        Scalar::U64(v)
    }
}
impl From<usize> for Scalar {
    fn from(v: usize) -> Self {
        Scalar::U64(v as u64)
    }
}
impl From<f64> for Scalar {
    fn from(v: f64) -> Self {
        Scalar::F64(v)
    }
}
impl From<&str> for Scalar {
    fn from(v: &str) -> Self {
        Scalar::Str(v.to_string())
    }
}
impl From<String> for Scalar {
    fn from(v: String) -> Self {
        Scalar::Str(v)
    }
}

impl Scalar {
    /// As JSON: `{"i64": 10}`, `{"f64": 0.5}` (non-finite floats as the
    /// strings Zarr uses: `"NaN"`, `"Infinity"`, `"-Infinity"`, plus the
    /// raw bits so every NaN payload survives), ...
    fn to_json(&self) -> Value {
        match self {
            Scalar::I64(v) => json!({ "i64": v }),
            Scalar::U64(v) => json!({ "u64": v }),
            Scalar::F64(v) if v.is_finite() => json!({ "f64": v }),
            Scalar::F64(v) => {
                let s = if v.is_nan() {
                    "NaN"
                } else if *v > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                json!({ "f64": s, "bits": format!("{:#018x}", v.to_bits()) })
            }
            Scalar::Str(v) => json!({ "str": v }),
        }
    }

    /// The inverse of [`Scalar::to_json`].
    fn from_json(v: &Value) -> Option<Scalar> {
        let o = v.as_object()?;
        if let Some(x) = o.get("i64") {
            return x.as_i64().map(Scalar::I64);
        }
        if let Some(x) = o.get("u64") {
            return x.as_u64().map(Scalar::U64);
        }
        if let Some(x) = o.get("f64") {
            if let Some(f) = x.as_f64() {
                return Some(Scalar::F64(f));
            }
            let bits = o.get("bits")?.as_str()?.trim_start_matches("0x");
            return u64::from_str_radix(bits, 16)
                .ok()
                .map(|b| Scalar::F64(f64::from_bits(b)));
        }
        o.get("str")?.as_str().map(|s| Scalar::Str(s.to_string()))
    }
}

/// Collective: writes one checkpoint. Create it, [`write`](Self::write)
/// arrays and [`set_scalar`](Self::set_scalar)s, then
/// [`commit`](Self::commit). Dropped without a commit, nothing becomes
/// visible (the staging directory stays until the next attempt at the
/// same name replaces it).
pub struct CheckpointWriter<C: OneSidedComm> {
    comm: C,
    root: PathBuf,
    name: String,
    staging: PathBuf,
    arrays: BTreeMap<String, Value>,
    scalars: BTreeMap<String, Scalar>,
    options: ZarrOptions,
}

/// A checkpoint name is one path component: not empty, no `/` or `\`,
/// not starting with `.`.
fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        return Err(Error::InvalidArgument(format!(
            "{what} {name:?} must be one non-empty path component not starting with '.'"
        )));
    }
    Ok(())
}

/// The staging directory of checkpoint `name`.
fn staging_dir(root: &Path, name: &str) -> PathBuf {
    root.join(format!(".{name}.partial"))
}

impl<C: OneSidedComm> CheckpointWriter<C> {
    /// Collective: starts checkpoint `name` under the directory `root`
    /// (created if needed). Errors on every rank: a bad name, arguments
    /// differing between ranks, a committed checkpoint of that name
    /// already there (it is never replaced), a file error.
    pub fn create(comm: &C, root: impl AsRef<Path>, name: &str) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        agree(
            comm,
            "the checkpoint root and name",
            &(&root, name),
            check_name("checkpoint name", name),
        )?;
        let staging = staging_dir(&root, name);
        let made = if comm.rank() == 0 {
            (|| {
                std::fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
                let target = root.join(name);
                if target.exists() {
                    return Err(io_err(
                        &target,
                        "a checkpoint of this name exists (checkpoints are never replaced; \
                         choose a new name)",
                    ));
                }
                if staging.exists() {
                    std::fs::remove_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
                }
                std::fs::create_dir(&staging).map_err(|e| io_err(&staging, e))?;
                sync_dir(&root)
            })()
        } else {
            Ok(())
        };
        vote(comm, made)?;
        Ok(CheckpointWriter {
            comm: comm.clone(),
            root,
            name: name.to_string(),
            staging,
            arrays: BTreeMap::new(),
            scalars: BTreeMap::new(),
            options: ZarrOptions::default(),
        })
    }

    /// The Zarr options for the arrays written after this call (default:
    /// [`ZarrOptions::default`]; `overwrite`, `sync` and
    /// `store_empty_chunks` are always on in a checkpoint).
    pub fn set_options(&mut self, options: ZarrOptions) {
        self.options = options;
    }

    /// Collective: writes `array` under `name` (one path component, not
    /// used before in this checkpoint).
    pub fn write<T: Element, const N: usize>(
        &mut self,
        name: &str,
        array: &DistArray<T, C, N>,
    ) -> Result<()> {
        let fresh = check_name("array name", name).and_then(|_| {
            if self.arrays.contains_key(name) {
                Err(Error::InvalidArgument(format!(
                    "array {name:?} was already written to this checkpoint"
                )))
            } else {
                Ok(())
            }
        });
        agree(&self.comm, "the array name", &name, fresh)?;
        let opts = self
            .options
            .clone()
            .overwrite(true)
            .sync(true)
            .store_empty_chunks(true);
        write_zarr_with(array, self.staging.join(name), &opts)?;
        self.arrays.insert(
            name.to_string(),
            json!({ "dtype": zarr_name(T::KIND), "shape": array.shape().to_vec() }),
        );
        Ok(())
    }

    /// Sets a scalar (local; the scalars must be the same on every rank,
    /// which [`commit`](Self::commit) checks).
    pub fn set_scalar(&mut self, name: &str, value: impl Into<Scalar>) {
        self.scalars.insert(name.to_string(), value.into());
    }

    /// Collective: commits the checkpoint atomically (see the module
    /// docs). Errors on every rank: the manifests differ between ranks (a
    /// scalar set differently), a file error; the checkpoint then stays
    /// uncommitted.
    pub fn commit(self) -> Result<()> {
        let manifest = self.manifest();
        let text = manifest.to_string();
        agree(
            &self.comm,
            "the checkpoint manifest (arrays and scalars)",
            &text,
            Ok(()),
        )?;
        let done = if self.comm.rank() == 0 {
            (|| {
                let seq = last_sequence(&self.root)? + 1;
                let mut m = manifest;
                m["sequence"] = json!(seq);
                let group = json!({
                    "zarr_format": 3,
                    "node_type": "group",
                    "attributes": { MANIFEST: m },
                });
                let body = serde_json::to_vec_pretty(&group).expect("JSON");
                write_synced(&self.staging.join("zarr.json"), &body)?;
                sync_dir(&self.staging)?;
                let target = self.root.join(&self.name);
                if target.exists() {
                    return Err(io_err(
                        &target,
                        "a checkpoint of this name appeared meanwhile",
                    ));
                }
                std::fs::rename(&self.staging, &target).map_err(|e| io_err(&target, e))?;
                sync_dir(&self.root)
            })()
        } else {
            Ok(())
        };
        vote(&self.comm, done)
    }

    /// The manifest without the sequence number.
    fn manifest(&self) -> Value {
        let scalars: Map<String, Value> = self
            .scalars
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        json!({
            "format": FORMAT,
            "name": self.name,
            "committed": true,
            "ranks": self.comm.size(),
            "arrays": self.arrays,
            "scalars": scalars,
        })
    }
}

/// Reads the manifest of the committed checkpoint directory `dir`.
fn read_manifest(dir: &Path) -> Result<Value> {
    let file = dir.join("zarr.json");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        io_err(
            dir,
            format!("not a committed distarray checkpoint (no readable zarr.json: {e})"),
        )
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| io_err(&file, format!("corrupted checkpoint manifest: {e}")))?;
    let m = v
        .get("attributes")
        .and_then(|a| a.get(MANIFEST))
        .cloned()
        .ok_or_else(|| io_err(dir, "not a distarray checkpoint (no manifest)"))?;
    if m.get("committed") != Some(&Value::Bool(true)) || m.get("sequence").is_none() {
        return Err(io_err(dir, "the checkpoint was never committed"));
    }
    if m.get("format").and_then(Value::as_u64) != Some(FORMAT) {
        return Err(io_err(dir, "unknown checkpoint format"));
    }
    Ok(m)
}

/// The committed checkpoints under `root` as `(sequence, name)`, in commit
/// order (rank 0's view of the directory).
fn committed(root: &Path) -> Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(root, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(root, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        if let Ok(m) = read_manifest(&entry.path()) {
            if let Some(seq) = m.get("sequence").and_then(Value::as_u64) {
                out.push((seq, name));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The highest commit sequence under `root` (0 if none).
fn last_sequence(root: &Path) -> Result<u64> {
    Ok(committed(root)?.last().map_or(0, |(s, _)| *s))
}

/// A committed checkpoint opened for reading (on any number of ranks).
pub struct Checkpoint<C: OneSidedComm> {
    comm: C,
    dir: PathBuf,
    name: String,
    manifest: Value,
}

impl<C: OneSidedComm> Checkpoint<C> {
    /// Collective: the names of the committed checkpoints under `root`, in
    /// commit order (uncommitted ones are left out). A missing root has
    /// none.
    pub fn list(comm: &C, root: impl AsRef<Path>) -> Result<Vec<String>> {
        let root = root.as_ref();
        agree(comm, "the checkpoint root", &root, Ok(()))?;
        let local = if comm.rank() == 0 {
            committed(root).map(|v| v.into_iter().map(|(_, n)| n).collect::<Vec<_>>().join("\n"))
        } else {
            Ok(String::new())
        };
        let text = broadcast_string(comm, 0, local)?;
        Ok(text.lines().map(str::to_string).collect())
    }

    /// Collective: opens the last committed checkpoint under `root`.
    /// Error on every rank if there is none.
    pub fn open_latest(comm: &C, root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let names = Self::list(comm, root)?;
        let last = names
            .last()
            .ok_or_else(|| io_err(root, "no committed checkpoint"))?;
        Self::open(comm, root, last)
    }

    /// Collective: opens the committed checkpoint `name` under `root`.
    /// Errors on every rank: the name was never committed (an interrupted
    /// write's staging directory is named in the message), the manifest
    /// is missing or corrupted, arguments differ between ranks.
    pub fn open(comm: &C, root: impl AsRef<Path>, name: &str) -> Result<Self> {
        let root = root.as_ref();
        agree(
            comm,
            "the checkpoint root and name",
            &(root, name),
            check_name("checkpoint name", name),
        )?;
        let dir = root.join(name);
        let local = if comm.rank() == 0 {
            if !dir.exists() {
                let staging = staging_dir(root, name);
                Err(if staging.exists() {
                    io_err(
                        &dir,
                        format!(
                            "checkpoint {name:?} was never committed (an interrupted write left {})",
                            staging.display()
                        ),
                    )
                } else {
                    io_err(&dir, "no such checkpoint")
                })
            } else {
                read_manifest(&dir).map(|m| m.to_string())
            }
        } else {
            Ok(String::new())
        };
        let text = broadcast_string(comm, 0, local)?;
        let manifest: Value = serde_json::from_str(&text)
            .map_err(|e| io_err(&dir, format!("corrupted manifest: {e}")))?;
        Ok(Checkpoint {
            comm: comm.clone(),
            dir,
            name: name.to_string(),
            manifest,
        })
    }

    /// The checkpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of ranks that wrote it.
    pub fn written_by_ranks(&self) -> usize {
        self.manifest["ranks"].as_u64().unwrap_or(0) as usize
    }

    /// The names of its arrays (sorted).
    pub fn array_names(&self) -> Vec<String> {
        self.manifest["arrays"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The stored shape of array `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let entry = self.entry(name)?;
        entry["shape"]
            .as_array()
            .and_then(|a| a.iter().map(|v| v.as_u64().map(|n| n as usize)).collect())
            .ok_or_else(|| io_err(&self.dir, format!("corrupted manifest entry for {name:?}")))
    }

    /// Scalar `name`, if it was set.
    pub fn scalar(&self, name: &str) -> Result<Scalar> {
        self.manifest["scalars"]
            .get(name)
            .and_then(Scalar::from_json)
            .ok_or_else(|| io_err(&self.dir, format!("no scalar {name:?} in this checkpoint")))
    }

    /// Scalar `name` as an `i64` (error if it is missing or of another type).
    pub fn scalar_i64(&self, name: &str) -> Result<i64> {
        match self.scalar(name)? {
            Scalar::I64(v) => Ok(v),
            other => Err(self.wrong_scalar(name, "i64", &other)),
        }
    }

    /// Scalar `name` as a `u64` (error if it is missing or of another type).
    pub fn scalar_u64(&self, name: &str) -> Result<u64> {
        match self.scalar(name)? {
            Scalar::U64(v) => Ok(v),
            other => Err(self.wrong_scalar(name, "u64", &other)),
        }
    }

    /// Scalar `name` as an `f64` (error if it is missing or of another type).
    pub fn scalar_f64(&self, name: &str) -> Result<f64> {
        match self.scalar(name)? {
            Scalar::F64(v) => Ok(v),
            other => Err(self.wrong_scalar(name, "f64", &other)),
        }
    }

    fn wrong_scalar(&self, name: &str, want: &str, found: &Scalar) -> Error {
        io_err(
            &self.dir,
            format!("scalar {name:?} is {found:?}, not {want}"),
        )
    }

    /// The manifest entry of array `name`.
    fn entry(&self, name: &str) -> Result<&Value> {
        self.manifest["arrays"]
            .get(name)
            .ok_or_else(|| io_err(&self.dir, format!("no array {name:?} in this checkpoint")))
    }

    /// Collective: reads array `name` with the default (uniform) partition.
    pub fn read<T: Element, const N: usize>(&self, name: &str) -> Result<DistArray<T, C, N>> {
        let shape = self.shape(name).and_then(|s| {
            <[usize; N]>::try_from(s.as_slice()).map_err(|_| {
                io_err(
                    &self.dir,
                    format!("array {name:?} has shape {s:?}, not {N} dimension(s)"),
                )
            })
        });
        let shape = vote(&self.comm, shape)?;
        let a = DistArray::<T, C, N>::new(self.comm.clone(), shape)?;
        self.read_into(name, &a)?;
        Ok(a)
    }

    /// Collective: reads array `name` into `array` (any partition, any
    /// number of ranks). Errors on every rank: no such array, another
    /// element type or shape, a missing or corrupted chunk.
    pub fn read_into<T: Element, const N: usize>(
        &self,
        name: &str,
        array: &DistArray<T, C, N>,
    ) -> Result<()> {
        let checked = self.entry(name).and_then(|e| {
            let dtype = e["dtype"].as_str().unwrap_or("?");
            if dtype != zarr_name(T::KIND) {
                return Err(io_err(
                    &self.dir,
                    format!(
                        "array {name:?} holds {dtype}, but the element type asked for is {}",
                        zarr_name(T::KIND)
                    ),
                ));
            }
            let shape = self.shape(name)?;
            if shape != array.shape() {
                return Err(Error::ShapeMismatch {
                    expected: array.shape().to_vec(),
                    found: shape,
                });
            }
            Ok(())
        });
        vote(&self.comm, checked)?;
        read_into_impl(array, &self.dir.join(name), true)
    }
}
