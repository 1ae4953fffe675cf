//! One-sided communication in two layers:
//!
//! * [`RawWindow`]: the primitives a backend implements — lock, unlock,
//!   flush, get / put / accumulate of runs and their request-based forms,
//!   the fence's runtime step, local access — each `unsafe` with its
//!   preconditions stated;
//! * [`Window`]: the checked layer over them, written once here: every
//!   operation is approved by the rank's
//!   [`WindowState`](crate::checks::WindowState) (ranks, bounds, epochs,
//!   the access model, local views, the one handle in flight) before the
//!   backend sees it, empty transfers never reach it, the own part and
//!   fence epochs take the blocking path. A backend cannot skip or
//!   override a check: it never sees an operation the checks refused.
//!
//! Adding a backend means implementing [`RawWindow`] (and the collectives
//! of [`OneSidedComm`](crate::OneSidedComm)); the conformance suite
//! (`distarray::conformance`) then checks it against the same rules as
//! every other backend.

pub mod checks;
pub mod handles;
pub mod raw;
pub mod request;
pub mod window;

pub use raw::RawWindow;
pub use window::Window;
