//! The thin layer over `mpi::ffi` that the rest of the crate uses: return
//! codes turned into [`Error::Backend`] with the MPI error string, the MPI
//! datatype of each [`ElementKind`], the MPI reduction operator of each
//! [`AccumulateOp`], and the optional serialisation of MPI calls for MPI
//! libraries initialised below `MPI_THREAD_MULTIPLE`.
//!
//! Nothing here validates arguments: callers run the checks of
//! [`distarray::checks`] first.

use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use distarray::{AccumulateOp, ElementKind, Error, Result};
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::traits::Equivalence;

/// Largest element count of one MPI call (`count` arguments are `int`).
pub(crate) const MAX_COUNT: usize = c_int::MAX as usize;

/// Turns an MPI return code into `Ok` or an [`Error::Backend`] naming the
/// call and carrying the MPI error string (re-exported as
/// [`crate::mpi_result`] for the application's own `mpi::ffi` calls).
#[inline]
pub fn check(code: c_int, call: &str) -> Result<()> {
    if code == ffi::MPI_SUCCESS as c_int {
        Ok(())
    } else {
        Err(Error::Backend(format!(
            "{call} failed: {}",
            error_string(code)
        )))
    }
}

/// The MPI error string of `code` (`MPI_Error_string`), or just the code
/// outside `MPI_Init`..`MPI_Finalize` (where Open MPI aborts the process
/// on `MPI_Error_string`).
pub(crate) fn error_string(code: c_int) -> String {
    if !mpi::environment::is_initialized() || finalized() {
        return format!("MPI error code {code}");
    }
    let mut buf = [0 as c_char; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: `buf` has room for MPI_MAX_ERROR_STRING characters (plus one
    // spare), which is the most MPI_Error_string writes; `len` is a valid
    // out-pointer. MPI_Error_string may be called at any time.
    let rc = unsafe { ffi::MPI_Error_string(code, buf.as_mut_ptr(), &mut len) };
    if rc != ffi::MPI_SUCCESS as c_int {
        return format!("MPI error code {code}");
    }
    let len = (len.max(0) as usize).min(ffi::MPI_MAX_ERROR_STRING as usize);
    let bytes: Vec<u8> = buf[..len].iter().map(|&c| c as u8).collect();
    format!(
        "{} (MPI error code {code})",
        String::from_utf8_lossy(&bytes)
    )
}

/// The predefined MPI datatype of an element kind.
pub(crate) fn datatype(kind: ElementKind) -> ffi::MPI_Datatype {
    match kind {
        ElementKind::I8 => i8::equivalent_datatype().as_raw(),
        ElementKind::I16 => i16::equivalent_datatype().as_raw(),
        ElementKind::I32 => i32::equivalent_datatype().as_raw(),
        ElementKind::I64 => i64::equivalent_datatype().as_raw(),
        ElementKind::Isize => isize::equivalent_datatype().as_raw(),
        ElementKind::U8 => u8::equivalent_datatype().as_raw(),
        ElementKind::U16 => u16::equivalent_datatype().as_raw(),
        ElementKind::U32 => u32::equivalent_datatype().as_raw(),
        ElementKind::U64 => u64::equivalent_datatype().as_raw(),
        ElementKind::Usize => usize::equivalent_datatype().as_raw(),
        ElementKind::F32 => f32::equivalent_datatype().as_raw(),
        ElementKind::F64 => f64::equivalent_datatype().as_raw(),
        // SAFETY: rsmpi's C shim defines these constants as MPI's predefined
        // `MPI_C_FLOAT_COMPLEX` / `MPI_C_DOUBLE_COMPLEX` handles, set before
        // any Rust code runs and never written; reading them copies a handle.
        ElementKind::C32 => unsafe { ffi::RSMPI_FLOAT_COMPLEX },
        // SAFETY: as above.
        ElementKind::C64 => unsafe { ffi::RSMPI_DOUBLE_COMPLEX },
    }
}

/// The predefined MPI reduction operator of an accumulate op.
pub(crate) fn op(op: AccumulateOp) -> ffi::MPI_Op {
    use mpi::collective::SystemOperation;
    match op {
        AccumulateOp::Replace => mpi_replace(),
        AccumulateOp::Sum => SystemOperation::sum().as_raw(),
        AccumulateOp::Prod => SystemOperation::product().as_raw(),
        AccumulateOp::Min => SystemOperation::min().as_raw(),
        AccumulateOp::Max => SystemOperation::max().as_raw(),
    }
}

/// `MPI_REPLACE`. rsmpi's C shim exports no constant for it, and Open MPI
/// defines it as the address of the predefined object `ompi_mpi_op_replace`
/// (`#define MPI_REPLACE OMPI_PREDEFINED_GLOBAL(MPI_Op, ompi_mpi_op_replace)`),
/// which is what this computes. This is the crate's only Open-MPI-specific
/// line; another MPI library needs its own definition here.
fn mpi_replace() -> ffi::MPI_Op {
    // SAFETY: only the address of the extern static is taken (no read or
    // write through it, no reference created); Open MPI's `MPI_REPLACE`
    // handle is exactly this address cast to `MPI_Op`. (Newer compilers
    // consider this safe; older ones need the block.)
    #[allow(unused_unsafe)]
    let p = unsafe { std::ptr::addr_of_mut!(ffi::ompi_mpi_op_replace) };
    ffi::MPI_Op(p.cast())
}

/// `true` when MPI calls must be serialised by [`serial`] (MPI was
/// initialised with less than `MPI_THREAD_MULTIPLE`).
static SERIALIZE: AtomicBool = AtomicBool::new(false);
/// The lock that serialises MPI calls when [`SERIALIZE`] is set.
static MPI_CALLS: Mutex<()> = Mutex::new(());

/// Records whether MPI calls need serialising, from the thread level MPI
/// provides.
pub(crate) fn set_serialize(provided: mpi::Threading) {
    SERIALIZE.store(provided < mpi::Threading::Multiple, Ordering::Relaxed);
}

/// Holds the MPI call lock if MPI needs calls serialised (thread level below
/// `MPI_THREAD_MULTIPLE`), so that `MpiComm` / `MpiWindow` can be `Sync`;
/// `None` (free) under `MPI_THREAD_MULTIPLE`.
#[inline]
pub(crate) fn serial() -> Option<MutexGuard<'static, ()>> {
    if SERIALIZE.load(Ordering::Relaxed) {
        Some(MPI_CALLS.lock().unwrap_or_else(|e| e.into_inner()))
    } else {
        None
    }
}

/// `true` once MPI has been finalised (then nothing may call MPI but
/// `MPI_Initialized` / `MPI_Finalized`).
pub(crate) fn finalized() -> bool {
    mpi::environment::is_finalized()
}

/// `Err` unless MPI is initialised and not yet finalised.
pub(crate) fn ensure_live() -> Result<()> {
    if !mpi::environment::is_initialized() {
        return Err(Error::Backend(
            "MPI is not initialised (use MpiComm::init)".into(),
        ));
    }
    if finalized() {
        return Err(Error::Backend("MPI has already been finalised".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_become_backend_errors() {
        assert_eq!(check(ffi::MPI_SUCCESS as c_int, "MPI_Get"), Ok(()));
        // Before MPI_Init there is no error string, only the code (the
        // conformance binary checks the string under mpirun).
        let code = ffi::MPI_ERR_RANK as c_int;
        assert_eq!(
            check(code, "MPI_Win_lock"),
            Err(Error::Backend(format!(
                "MPI_Win_lock failed: MPI error code {code}"
            )))
        );
    }

    #[test]
    fn every_kind_and_op_maps_to_a_predefined_handle() {
        use ElementKind::*;
        for k in [
            I8, I16, I32, I64, Isize, U8, U16, U32, U64, Usize, F32, F64, C32, C64,
        ] {
            assert!(!datatype(k).0.is_null(), "{k:?}");
        }
        let ops = [
            AccumulateOp::Replace,
            AccumulateOp::Sum,
            AccumulateOp::Prod,
            AccumulateOp::Min,
            AccumulateOp::Max,
        ];
        for (i, a) in ops.iter().enumerate() {
            assert!(!op(*a).0.is_null(), "{a:?}");
            for b in &ops[i + 1..] {
                assert_ne!(op(*a), op(*b), "{a:?} vs {b:?}");
            }
        }
    }
}
