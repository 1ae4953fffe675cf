//! [`Request`]: work in flight that completes later, one type for RMA
//! requests and neighbour exchanges.

use crate::error::Result;

/// Work in flight that completes later: a neighbour exchange (from
/// [`NeighbourMessages::exchange_bytes_start`](crate::NeighbourMessages::exchange_bytes_start)) or RMA operations (from
/// [`Window::get_runs_start`](crate::Window::get_runs_start) / [`Window::write_runs_start`](crate::Window::write_runs_start)). One type for
/// both, so that code holding several (a halo, a transpose, a pending
/// block) completes them alike. Dropping one without calling
/// [`Request::wait`] waits as well (and drops the outcome).
pub trait Request: Send {
    /// Waits until the work is complete at this rank: an exchange's
    /// messages sent and received, a read's data in its buffer, a write's
    /// source reusable (a write is complete at the target after the
    /// epoch's `flush` or `unlock`). Reports what went wrong (a received
    /// length that differs from its buffer, a failed peer, a failed
    /// operation). Implementations return, `Ok` or `Err`, only once the
    /// backend no longer uses the buffers: an operation that failed is over
    /// too (MPI waits for every request still active after an error);
    /// callers that cannot be sure of that, e.g. after an `Err` of another
    /// backend, leak them ([`Halo`](crate::Halo) does).
    fn wait(self: Box<Self>) -> Result<()>;
}

/// Work that completed before it was returned as a [`Request`] (the
/// defaults of [`NeighbourMessages::exchange_bytes_start`](crate::NeighbourMessages::exchange_bytes_start),
/// [`Window::get_runs_start`](crate::Window::get_runs_start) and [`Window::write_runs_start`](crate::Window::write_runs_start)).
#[derive(Debug, Clone, Copy)]
pub struct Completed;

impl Request for Completed {
    fn wait(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
