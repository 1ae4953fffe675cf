//! [`MpiRequests`]: request-based RMA operations in flight, waited for
//! (also when dropped) before their buffers are given back.

use std::os::raw::c_int;

use distarray::{Request, Result};
use mpi::ffi;

use crate::raw;

/// Runs `issue` (a request-based MPI call writing its request through the
/// pointer) and keeps the request if the call succeeded; returns its code.
pub(super) fn push_request(
    reqs: &mut Vec<ffi::MPI_Request>,
    issue: impl FnOnce(*mut ffi::MPI_Request) -> c_int,
) -> c_int {
    // SAFETY: MPI_Request is a plain handle, written by the call.
    let mut r: ffi::MPI_Request = unsafe { std::mem::zeroed() };
    let rc = issue(&mut r);
    if rc == ffi::MPI_SUCCESS as c_int {
        reqs.push(r);
    }
    rc
}

/// Request-based RMA operations in flight (`MPI_Rget`, `MPI_Rput`,
/// `MPI_Raccumulate`); the checked layer holds the approval that pins
/// their lock epoch beside them.
pub(super) struct MpiRequests {
    pub(super) reqs: Vec<ffi::MPI_Request>,
}

// SAFETY: MPI requests are process-wide handles, not tied to the issuing
// thread, and every MPI call on them holds the process-wide lock
// (`raw::enter` / `serial`).
unsafe impl Send for MpiRequests {}

impl MpiRequests {
    /// Waits until every request has completed, or failed
    /// ([`raw::wait_requests`]): when this returns, `Ok` or `Err`, MPI no
    /// longer uses any buffer.
    fn wait_all(&mut self) -> Result<()> {
        if self.reqs.is_empty() {
            return Ok(());
        }
        // after MPI_Finalize no operation is active any more
        let _serial = raw::enter()?;
        raw::wait_requests(&mut self.reqs, None)
    }
}

impl Request for MpiRequests {
    fn wait(mut self: Box<Self>) -> Result<()> {
        self.wait_all()
    }
}

impl Drop for MpiRequests {
    fn drop(&mut self) {
        let _ = self.wait_all();
    }
}
