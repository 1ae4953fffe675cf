//! The one error type of distarray and its `Result` alias.
//!
//! Every backend reports the same variant for the same misuse, so that the
//! conformance suite can assert on it: a program that fails on the threaded
//! backend in a unit test fails the same way under MPI, before MPI would
//! have turned the misuse into undefined behaviour.

use thiserror::Error;

/// Result alias used throughout distarray.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in distarray.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A rank argument is not smaller than the communicator size.
    #[error("rank {rank} is out of range for a communicator of {}", crate::error::plural(*size, "rank"))]
    RankOutOfRange {
        /// The offending rank.
        rank: usize,
        /// The communicator size.
        size: usize,
    },

    /// An RMA access `offset..offset + len` does not fit in the target's part
    /// of the window.
    #[error(
        "access of {len} element(s) at offset {offset} is out of bounds of rank {target}'s \
         window part of {window_len} element(s)"
    )]
    OutOfBounds {
        /// Target rank.
        target: usize,
        /// First element accessed.
        offset: usize,
        /// Number of elements accessed.
        len: usize,
        /// Length of the target's window part.
        window_len: usize,
    },

    /// An RMA operation on `target` was issued outside an access epoch
    /// (no lock held on `target` and no fence epoch open).
    #[error("operation on rank {target} outside an access epoch (lock the target or open a fence epoch first)")]
    NoEpoch {
        /// Target rank.
        target: usize,
    },

    /// `lock` on a target this rank already holds a lock on (in this window).
    #[error("rank {target} is already locked by this rank in this window")]
    AlreadyLocked {
        /// Target rank.
        target: usize,
    },

    /// `unlock` / `flush` on a target this rank holds no lock on.
    #[error("rank {target} is not locked by this rank in this window")]
    NotLocked {
        /// Target rank.
        target: usize,
    },

    /// A non-blocking block operation ([`crate::pending`]) was started while
    /// another handle of this rank is in flight on the same communicator
    /// (on any of its arrays): a rank has at most one at a time, which is
    /// what keeps handles from waiting for each other's locks in a cycle.
    /// Wait for the first handle (or make any call that may wait for
    /// another rank, which completes it) before starting the next.
    #[error("a non-blocking handle is in flight: {0}")]
    HandleInFlight(String),

    /// Passive-target and fence (active-target) synchronisation were mixed,
    /// e.g. a `lock` while a fence epoch is open, or a fence while locks are held.
    #[error("epoch mismatch: {0}")]
    EpochMismatch(String),

    /// An access that would race with a local view of the target's memory
    /// (reported by backends that can detect it, e.g. the threaded one).
    #[error("conflicting access to rank {target}'s window memory: {reason}")]
    Conflict {
        /// Target rank.
        target: usize,
        /// What conflicted.
        reason: String,
    },

    /// A global index lies outside the array.
    #[error("index {index:?} is out of bounds for shape {shape:?}")]
    IndexOutOfBounds {
        /// The offending index.
        index: Vec<usize>,
        /// The array shape.
        shape: Vec<usize>,
    },

    /// A global index lies outside a block (of a [`crate::GlobalBlock`] or a
    /// rank's part), which covers `ranges` as `(start, end)` per dimension.
    #[error("index {index:?} lies outside the block {}", fmt_ranges(ranges))]
    IndexOutsideBlock {
        /// The offending index.
        index: Vec<usize>,
        /// The block's ranges as `(start, end)`.
        ranges: Vec<(usize, usize)>,
    },

    /// One operand of an operation has the wrong shape: the message names
    /// the operation, the operand and the rule it breaks.
    #[error("{operation}: operand {operand} has shape {found:?}, expected {expected:?} ({rule})")]
    OperandShape {
        /// The operation (`"matvec"`, `"zip_with"`, ...).
        operation: &'static str,
        /// The operand's name in the operation's signature (`"x"`, `"y"`, ...).
        operand: &'static str,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it has.
        found: Vec<usize>,
        /// The rule, e.g. "x needs one element per column of a (4)" (boxed
        /// to keep `Error` small).
        rule: Box<str>,
    },

    /// Shapes or lengths that must agree do not.
    #[error("shape mismatch: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// What was required.
        expected: Vec<usize>,
        /// What was supplied.
        found: Vec<usize>,
    },

    /// A partition description is inconsistent (sizes not summing to the
    /// shape, a grid not matching the number of ranks, ...).
    #[error("invalid partition: {0}")]
    InvalidPartition(String),

    /// Any other invalid argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A numerical method cannot go on with this input: a singular matrix
    /// in an LU factorisation, a matrix that is not positive definite in a
    /// Cholesky factorisation.
    #[error("numerical failure: {0}")]
    Numerical(String),

    /// Another rank failed (panicked) and the collective or lock this rank
    /// was waiting for can never complete.
    #[error("aborted: rank {rank} failed: {message}")]
    Aborted {
        /// The rank that failed first.
        rank: usize,
        /// Its panic message.
        message: String,
    },

    /// Another rank failed its part of a collective operation (its own call
    /// returned the actual error); every rank returns an error, so all stay
    /// in step. `reason` is the failing rank's own error message (cut to
    /// [`crate::epoch::REASON_MAX`] bytes).
    #[error("rank {rank} failed its part of this collective operation: {reason}")]
    PeerFailed {
        /// The first rank that failed.
        rank: usize,
        /// That rank's own error message.
        reason: String,
    },

    /// A block does not fit the array: a range runs past the shape or
    /// starts after it ends.
    #[error("block {ranges:?} does not fit shape {shape:?}")]
    InvalidBlock {
        /// The block's ranges as `(start, end)`.
        ranges: Vec<(usize, usize)>,
        /// The array shape.
        shape: Vec<usize>,
    },

    /// A wait that can never end was detected (reported by backends that
    /// can tell, e.g. the threaded one).
    #[error("deadlock: {0}")]
    Deadlock(String),

    /// A rank's closure panicked (returned by [`crate::threaded::run`]).
    #[error("rank {rank} panicked: {message}")]
    RankPanicked {
        /// The rank that panicked.
        rank: usize,
        /// The panic message.
        message: String,
    },

    /// A window (or another allocation) larger than the memory this rank can
    /// get: checked before anything is allocated, on every rank.
    #[error(
        "out of memory: {what} needs {requested} bytes, but only {available} bytes are available"
    )]
    OutOfMemory {
        /// What was to be allocated.
        what: String,
        /// Bytes requested.
        requested: u128,
        /// Bytes available (as far as the backend can tell).
        available: u128,
    },

    /// Two conflicting accesses to one window element that no
    /// synchronisation orders (reported by the threaded backend's checking
    /// mode, see [`crate::threaded::run_checked`]): the result depends on
    /// timing, and on MPI the program is erroneous.
    #[error(
        "data race on element {offset} of rank {target}'s window part: {first_op} by rank \
         {first_rank} and {second_op} by rank {second_rank} are not ordered by synchronisation \
         (unlock/lock of that target, flush, fence, barrier or another collective)"
    )]
    Race {
        /// The rank whose part holds the element.
        target: usize,
        /// The element's offset in that part.
        offset: usize,
        /// The rank of the earlier access.
        first_rank: usize,
        /// The earlier access (e.g. `put`, `accumulate(Sum)`).
        first_op: String,
        /// The rank of the later access.
        second_rank: usize,
        /// The later access.
        second_op: String,
    },

    /// A file operation failed, or a file's contents are not what the
    /// operation needs (a missing or corrupted file, wrong element type, a
    /// checkpoint that was never committed, ...).
    #[error("I/O error on {path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// What went wrong.
        message: String,
    },

    /// An error reported by the communication runtime (MPI error string, ...).
    #[error("backend error: {0}")]
    Backend(String),
}

/// `[0..2, 3..5]` for `[(0, 2), (3, 5)]`.
fn fmt_ranges(ranges: &[(usize, usize)]) -> String {
    let parts: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}..{b}")).collect();
    format!("[{}]", parts.join(", "))
}

/// `"1 part"`, `"3 parts"`.
pub(crate) fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
