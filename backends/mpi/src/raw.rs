//! The thin layer over `mpi::ffi` that the rest of the crate uses: return
//! codes turned into [`Error::Backend`] with the MPI error string, the MPI
//! datatype of each [`ElementKind`] and reduction operator of each
//! [`AccumulateOp`] (both from the crate's C shim, `csrc/shim.c`, so that
//! no symbol or handle layout of one MPI implementation is assumed), the
//! serialisation of MPI calls, and the watch on `MPI_Finalize` that makes
//! every later operation an error.
//!
//! Nothing here validates arguments: callers run the checks of
//! [`distarray::checks`] first.

use std::os::raw::{c_char, c_int, c_void};
use std::sync::OnceLock;

use distarray::{AccumulateOp, ElementKind, Error, Result};
use mpi::ffi;

pub(crate) use crate::lifetime::{ensure_live, enter, finalized, serial};

/// Largest element count of one MPI call (`count` arguments are `int`).
pub(crate) const MAX_COUNT: usize = c_int::MAX as usize;

/// The handles and helpers of the C shim (`csrc/shim.c`), compiled by
/// build.rs against the same `mpi.h` as the `mpi` crate's bindings.
pub(crate) mod shim {
    use mpi::ffi;
    use std::os::raw::c_int;

    extern "C" {
        pub static DISTARRAY_SIZEOF_MPI_OP: c_int;
        pub static DISTARRAY_SIZEOF_MPI_DATATYPE: c_int;
        pub static DISTARRAY_SIZEOF_MPI_COMM: c_int;
        pub static DISTARRAY_MPI_COMM_WORLD: ffi::MPI_Comm;

        pub static DISTARRAY_MPI_INT8_T: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_INT16_T: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_INT32_T: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_INT64_T: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_UINT8_T: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_UINT16_T: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_UINT32_T: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_UINT64_T: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_FLOAT: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_DOUBLE: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_C_FLOAT_COMPLEX: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_C_DOUBLE_COMPLEX: ffi::MPI_Datatype;
        pub static DISTARRAY_MPI_DATATYPE_NULL: ffi::MPI_Datatype;

        pub static DISTARRAY_MPI_REPLACE: ffi::MPI_Op;
        pub static DISTARRAY_MPI_SUM: ffi::MPI_Op;
        pub static DISTARRAY_MPI_PROD: ffi::MPI_Op;
        pub static DISTARRAY_MPI_MIN: ffi::MPI_Op;
        pub static DISTARRAY_MPI_MAX: ffi::MPI_Op;
        pub static DISTARRAY_MPI_OP_NULL: ffi::MPI_Op;

        pub static DISTARRAY_MPI_ERRORS_RETURN: ffi::MPI_Errhandler;
        pub static DISTARRAY_MPI_ERR_NO_MEM: c_int;

        pub(crate) fn distarray_mpi_watch_finalize(callback: extern "C" fn()) -> c_int;
    }
}

/// Reads one of the shim's constant handles.
macro_rules! shim_const {
    ($name:ident) => {
        // SAFETY: the shim defines the static as a `const` C object of the
        // MPI handle type, initialised at load time and never written; the
        // Rust declaration has the same type (checked by `check_abi`, which
        // runs before any handle is used: `MpiComm` construction calls it).
        unsafe { shim::$name }
    };
}

/// `Err` when the C shim and the `mpi` crate's bindings were built against
/// different MPI libraries (e.g. `MPICC` changed while the `mpi` crate's
/// build was reused from the same target directory): the handle types then
/// differ in size or value and nothing may be used.
pub(crate) fn check_abi() -> Result<()> {
    static ABI: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    ABI.get_or_init(|| {
        // SAFETY: plain `const int` objects of the shim.
        let sizes = unsafe {
            [
                (
                    shim::DISTARRAY_SIZEOF_MPI_OP,
                    std::mem::size_of::<ffi::MPI_Op>(),
                ),
                (
                    shim::DISTARRAY_SIZEOF_MPI_DATATYPE,
                    std::mem::size_of::<ffi::MPI_Datatype>(),
                ),
                (
                    shim::DISTARRAY_SIZEOF_MPI_COMM,
                    std::mem::size_of::<ffi::MPI_Comm>(),
                ),
            ]
        };
        let same_sizes = sizes.iter().all(|&(c, r)| usize::try_from(c) == Ok(r));
        // Only read a handle through the Rust type once its size agrees.
        // SAFETY: both are constant handles of the same (checked) size.
        if same_sizes && unsafe { shim::DISTARRAY_MPI_COMM_WORLD == ffi::RSMPI_COMM_WORLD } {
            Ok(())
        } else {
            Err(format!(
                "distarray-mpi's C shim and the `mpi` crate were built against different MPI \
                 libraries (handle sizes C/Rust: {sizes:?}); build each MPI implementation in \
                 its own target directory, e.g. `MPICC=mpicc.mpich \
                 CARGO_TARGET_DIR=target/mpich cargo build`"
            ))
        }
    })
    .clone()
    .map_err(Error::Backend)
}

/// `MPI_Waitall` on `reqs` (into `statuses` when given, as many as
/// requests), for callers that hold the lock of MPI calls. After an error
/// (some requests failed, others may still be pending) every request that
/// is still active is waited for on its own, so that when this returns —
/// `Ok` or `Err` — MPI no longer uses any of their buffers. The requests
/// are cleared.
pub(crate) fn wait_requests(
    reqs: &mut Vec<ffi::MPI_Request>,
    statuses: Option<&mut [ffi::MPI_Status]>,
) -> Result<()> {
    if reqs.is_empty() {
        return Ok(());
    }
    let n = reqs.len() as c_int;
    let statuses = match statuses {
        Some(st) => {
            assert_eq!(st.len(), reqs.len(), "one status per request");
            st.as_mut_ptr()
        }
        // SAFETY: reading a predefined handle constant.
        None => unsafe { ffi::RSMPI_STATUSES_IGNORE },
    };
    // SAFETY: `n` requests of the caller (completed ones are set to
    // MPI_REQUEST_NULL), and room for `n` statuses or MPI_STATUSES_IGNORE.
    let rc = unsafe { ffi::MPI_Waitall(n, reqs.as_mut_ptr(), statuses) };
    let out = check(rc, "MPI_Waitall");
    if out.is_err() {
        // SAFETY: reading a predefined handle constant.
        let null = unsafe { ffi::RSMPI_REQUEST_NULL };
        for r in reqs.iter_mut().filter(|r| **r != null) {
            // SAFETY: an active request of the caller; the status is
            // ignored.
            let _ = unsafe { ffi::MPI_Wait(r, ffi::RSMPI_STATUS_IGNORE) };
        }
    }
    reqs.clear();
    out
}

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

/// The error class of `code` (`MPI_Error_class`), if MPI can tell.
fn error_class(code: c_int) -> Option<c_int> {
    if !mpi::environment::is_initialized() || finalized() {
        return None;
    }
    let mut class: c_int = 0;
    // SAFETY: `class` is a valid out-pointer; MPI_Error_class may be called
    // at any time between MPI_Init and MPI_Finalize.
    let rc = unsafe { ffi::MPI_Error_class(code, &mut class) };
    (rc == ffi::MPI_SUCCESS as c_int).then_some(class)
}

/// The predefined MPI datatype of an element kind.
pub(crate) fn datatype(kind: ElementKind) -> ffi::MPI_Datatype {
    match kind {
        ElementKind::I8 => shim_const!(DISTARRAY_MPI_INT8_T),
        ElementKind::I16 => shim_const!(DISTARRAY_MPI_INT16_T),
        ElementKind::I32 => shim_const!(DISTARRAY_MPI_INT32_T),
        ElementKind::I64 => shim_const!(DISTARRAY_MPI_INT64_T),
        ElementKind::U8 => shim_const!(DISTARRAY_MPI_UINT8_T),
        ElementKind::U16 => shim_const!(DISTARRAY_MPI_UINT16_T),
        ElementKind::U32 => shim_const!(DISTARRAY_MPI_UINT32_T),
        ElementKind::U64 => shim_const!(DISTARRAY_MPI_UINT64_T),
        ElementKind::Isize => isize_datatype(),
        ElementKind::Usize => usize_datatype(),
        ElementKind::F32 => shim_const!(DISTARRAY_MPI_FLOAT),
        ElementKind::F64 => shim_const!(DISTARRAY_MPI_DOUBLE),
        ElementKind::C32 => c_float_complex(),
        ElementKind::C64 => c_double_complex(),
    }
}

/// `isize` as the fixed-width MPI integer of the pointer width.
fn isize_datatype() -> ffi::MPI_Datatype {
    match std::mem::size_of::<isize>() {
        4 => shim_const!(DISTARRAY_MPI_INT32_T),
        _ => shim_const!(DISTARRAY_MPI_INT64_T),
    }
}

/// `usize` as the fixed-width MPI integer of the pointer width.
fn usize_datatype() -> ffi::MPI_Datatype {
    match std::mem::size_of::<usize>() {
        4 => shim_const!(DISTARRAY_MPI_UINT32_T),
        _ => shim_const!(DISTARRAY_MPI_UINT64_T),
    }
}

/// `MPI_C_FLOAT_COMPLEX` (two `f32`, real then imaginary: the layout of
/// `num_complex::Complex<f32>`), for complex element kinds.
pub(crate) fn c_float_complex() -> ffi::MPI_Datatype {
    shim_const!(DISTARRAY_MPI_C_FLOAT_COMPLEX)
}

/// `MPI_C_DOUBLE_COMPLEX` (two `f64`), for complex element kinds.
pub(crate) fn c_double_complex() -> ffi::MPI_Datatype {
    shim_const!(DISTARRAY_MPI_C_DOUBLE_COMPLEX)
}

/// `MPI_DATATYPE_NULL`.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn datatype_null() -> ffi::MPI_Datatype {
    shim_const!(DISTARRAY_MPI_DATATYPE_NULL)
}

/// The predefined MPI reduction operator of an accumulate op.
pub(crate) fn op(op: AccumulateOp) -> ffi::MPI_Op {
    match op {
        AccumulateOp::Replace => shim_const!(DISTARRAY_MPI_REPLACE),
        AccumulateOp::Sum => shim_const!(DISTARRAY_MPI_SUM),
        AccumulateOp::Prod => shim_const!(DISTARRAY_MPI_PROD),
        AccumulateOp::Min => shim_const!(DISTARRAY_MPI_MIN),
        AccumulateOp::Max => shim_const!(DISTARRAY_MPI_MAX),
    }
}

/// `MPI_OP_NULL`.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn op_null() -> ffi::MPI_Op {
    shim_const!(DISTARRAY_MPI_OP_NULL)
}

/// The MPI library's version string (`MPI_Get_library_version`), which
/// names the implementation (e.g. "Open MPI v4.1.4", "MPICH Version: 4.0.2").
/// Callable before `MPI_Init` and after `MPI_Finalize`.
pub fn library_version() -> String {
    let mut buf = vec![0 as c_char; ffi::MPI_MAX_LIBRARY_VERSION_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: `buf` holds MPI_MAX_LIBRARY_VERSION_STRING characters (plus
    // one), the most MPI writes; `len` is a valid out-pointer. MPI allows
    // this call at any time.
    let rc = unsafe { ffi::MPI_Get_library_version(buf.as_mut_ptr(), &mut len) };
    if rc != ffi::MPI_SUCCESS as c_int {
        return "unknown MPI library".into();
    }
    let len = (len.max(0) as usize).min(buf.len() - 1);
    let bytes: Vec<u8> = buf[..len].iter().map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Window parts are allocated in multiples of this many bytes.
///
/// MPICH 4.0 (ch4, shared memory) puts the ranks' parts of an
/// `MPI_Win_allocate` window back to back but computes the address of a
/// target's part as if every part were padded to 16 bytes: with parts whose
/// sizes are not multiples of 16, `MPI_Get` / `MPI_Put` on another rank's
/// part read and write the wrong bytes (measured: 8-byte parts on 4 ranks,
/// every access to ranks 1 and 3 wrong). Padding every part to a whole
/// cache line avoids that on every implementation, and keeps ranks' parts
/// off each other's cache lines; the padding is never accessed.
pub(crate) const PART_ALIGN: usize = 64;

/// `MPI_Win_allocate` of `bytes` bytes (rounded up to [`PART_ALIGN`]) with
/// displacement unit `disp_unit` on `comm`, with the communicator's error
/// handler set to `MPI_ERRORS_RETURN` for the call (and restored after), so
/// that a failure is an `Err` naming the likely cause and the fix instead
/// of an abort of the job. The caller holds [`serial`] and the
/// communicator's collective lock; `base` receives the local part's
/// address.
pub(crate) fn win_allocate(
    comm: ffi::MPI_Comm,
    bytes: ffi::MPI_Aint,
    disp_unit: c_int,
    base: *mut c_void,
    win: &mut ffi::MPI_Win,
) -> Result<()> {
    let align = PART_ALIGN as ffi::MPI_Aint;
    let bytes = bytes
        .checked_add(align - 1)
        .map(|b| b / align * align)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("window part of {bytes} bytes is too large"))
        })?;
    let mut previous = std::mem::MaybeUninit::<ffi::MPI_Errhandler>::uninit();
    // SAFETY: `comm` is a valid communicator (kept alive by the caller);
    // `previous` is a valid out-pointer that MPI initialises on success.
    let rc = unsafe { ffi::MPI_Comm_get_errhandler(comm, previous.as_mut_ptr()) };
    check(rc, "MPI_Comm_get_errhandler")?;
    // SAFETY: initialised by the successful call above.
    let mut previous = unsafe { previous.assume_init() };
    let errors_return = shim_const!(DISTARRAY_MPI_ERRORS_RETURN);
    // SAFETY: valid communicator and predefined error handler.
    let rc = unsafe { ffi::MPI_Comm_set_errhandler(comm, errors_return) };
    let allocated = check(rc, "MPI_Comm_set_errhandler").map(|()| {
        // SAFETY: `bytes` and `disp_unit` are non-negative and fit their C
        // types (the caller converted them); MPI_INFO_NULL and `comm` are
        // valid handles; `base` points to a `*mut T` that receives the
        // local part's address and `win` is a valid out-pointer.
        unsafe { ffi::MPI_Win_allocate(bytes, disp_unit, ffi::RSMPI_INFO_NULL, comm, base, win) }
    });
    // SAFETY: restores the handler read above on the same communicator,
    // then releases our reference to it (MPI_Comm_get_errhandler returned
    // a new one).
    let restored = unsafe {
        let rc = ffi::MPI_Comm_set_errhandler(comm, previous);
        ffi::MPI_Errhandler_free(&mut previous);
        rc
    };
    let rc = allocated?;
    if rc != ffi::MPI_SUCCESS as c_int {
        return Err(window_creation_error(rc, bytes));
    }
    check(restored, "MPI_Comm_set_errhandler")
}

/// The error of a failed `MPI_Win_allocate`: MPI's message, the likely
/// cause and the fix.
fn window_creation_error(rc: c_int, bytes: ffi::MPI_Aint) -> Error {
    let what = error_string(rc);
    // SAFETY: a plain `const int` of the shim.
    let no_mem = unsafe { shim::DISTARRAY_MPI_ERR_NO_MEM };
    if error_class(rc) == Some(no_mem) {
        return Error::Backend(format!(
            "MPI_Win_allocate failed: {what}: out of memory for a window part of {bytes} bytes \
             on this rank"
        ));
    }
    Error::Backend(format!(
        "MPI_Win_allocate failed: {what}. Likely cause: no one-sided (RMA) component of this \
         MPI library works over the network transports in use (e.g. plain TCP: Open MPI's \
         osc/rdma needs RDMA get and atomics, which its TCP transport lacks). Fix: with Open \
         MPI over TCP add `--mca osc pt2pt` to mpirun (Debian's openmpi-mca-params.conf \
         disables it) or use UCX (`--mca pml ucx --mca osc ucx`); on one node \
         `--mca btl self,vader` (osc/rdma or osc/sm) works; with an MPICH-family MPI check \
         its network module settings (UCX_TLS, FI_PROVIDER)"
    ))
}

/// Test hooks for the crate's own MPI tests (`src/bin/mpi_faults.rs`,
/// feature `fault-injection`): shorter chunks for the chunked `get` /
/// `put` / `accumulate` and an injected failure of one chunk, to check that
/// chunks issued before a failing one are completed before the call
/// returns. Not part of the API; without the feature the hooks are
/// constants the compiler removes from the transfer paths.
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod fault_injection {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use distarray::{Error, Result};

    use super::MAX_COUNT;

    static CHUNK_LEN: AtomicUsize = AtomicUsize::new(MAX_COUNT);
    static FAIL_CHUNK: AtomicUsize = AtomicUsize::new(usize::MAX);

    /// Splits single `get` / `put` / `accumulate` calls into chunks of
    /// `len` elements (at least 1, at most `i32::MAX`).
    pub fn set_chunk_len(len: usize) {
        CHUNK_LEN.store(len.clamp(1, MAX_COUNT), Ordering::Relaxed);
    }

    /// Makes chunk `index` (0-based) of every chunked call fail with
    /// `Error::Backend` instead of being issued (`None`: no failure).
    pub fn fail_chunk(index: Option<usize>) {
        FAIL_CHUNK.store(index.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    /// The chunk length in force.
    #[inline]
    pub(crate) fn chunk_len() -> usize {
        CHUNK_LEN.load(Ordering::Relaxed)
    }

    /// `Err` if chunk `index` is to fail.
    #[inline]
    pub(crate) fn check_chunk(index: usize) -> Result<()> {
        if index == FAIL_CHUNK.load(Ordering::Relaxed) {
            Err(Error::Backend(format!("injected failure of chunk {index}")))
        } else {
            Ok(())
        }
    }
}

/// Without the `fault-injection` feature: no hooks, full-length chunks.
#[cfg(not(feature = "fault-injection"))]
pub(crate) mod fault_injection {
    use distarray::Result;

    /// The chunk length: the longest count MPI takes.
    #[inline(always)]
    pub(crate) const fn chunk_len() -> usize {
        super::MAX_COUNT
    }

    /// Never fails.
    #[inline(always)]
    pub(crate) const fn check_chunk(_index: usize) -> Result<()> {
        Ok(())
    }
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
    fn shim_matches_the_mpi_crate() {
        assert_eq!(check_abi(), Ok(()));
    }

    #[test]
    fn every_kind_and_op_maps_to_a_distinct_predefined_handle() {
        use ElementKind::*;
        let kinds = [I8, I16, I32, I64, U8, U16, U32, U64, F32, F64, C32, C64];
        let types: Vec<_> = kinds.iter().map(|&k| datatype(k)).collect();
        for (i, a) in types.iter().enumerate() {
            assert_ne!(*a, datatype_null(), "datatype {i}");
            for b in &types[i + 1..] {
                assert_ne!(a, b, "datatypes must differ");
            }
        }
        assert_eq!(datatype(Isize), datatype(I64));
        assert_eq!(datatype(Usize), datatype(U64));
        let ops = [
            AccumulateOp::Replace,
            AccumulateOp::Sum,
            AccumulateOp::Prod,
            AccumulateOp::Min,
            AccumulateOp::Max,
        ];
        for (i, a) in ops.iter().enumerate() {
            assert_ne!(op(*a), op_null(), "{a:?}");
            for b in &ops[i + 1..] {
                assert_ne!(op(*a), op(*b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn library_version_names_the_implementation() {
        let v = library_version();
        let family = env!("DISTARRAY_MPI_FAMILY");
        match family {
            "openmpi" => assert!(v.contains("Open MPI"), "{v}"),
            "mpich" => assert!(v.contains("MPICH") || v.contains("MPI"), "{v}"),
            _ => assert!(!v.is_empty()),
        }
    }
}
