//! Behaviours of the MPI library found by trying them at start-up (never
//! by implementation name), and how the crate works around them.
//!
//! # Saturating integer reductions
//!
//! Open MPI 4's vectorised reduction component (`op/avx`) adds and
//! multiplies 8- and 16-bit integers with *saturating* SIMD instructions on
//! the part of a run that fills whole vector registers: `255u8 + 1` gives
//! 255 instead of 0 on a long run, while a short run (handled by its scalar
//! loop) wraps. `MPI_Accumulate` at the target uses the same code, so an
//! [`AccumulateOp::Sum`] would give different bits on MPI than on the
//! caller's own part and on the other backends.
//!
//! At start-up, [`detect`] runs `MPI_Reduce_local` on a long run of values
//! that overflow, for every integer kind with `MPI_SUM` and `MPI_PROD`. If
//! the result is not the wrapping one, it finds the shortest run length
//! that goes wrong, and accumulates of that kind and op are then issued in
//! runs one element shorter ([`max_run`]), which the library computes with
//! its scalar loop. Each run is still one `MPI_Accumulate`, so the result
//! stays element-wise atomic in every epoch (shared locks and fence epochs
//! included), at the price of more MPI calls for long runs. (`mpirun --mca
//! op ^avx` disables the component and with it the workaround.)

use std::os::raw::{c_int, c_void};
use std::sync::OnceLock;

use distarray::{AccumulateOp, ElementKind, Error, Result};
use mpi::ffi;

use crate::raw::{self, check, serial};

/// Length of the long run tried first (longer than any SIMD register).
const LONG_RUN: usize = 1024;

/// The integer kinds tried (`Isize` / `Usize` use the 64-bit datatypes).
const KINDS: [ElementKind; 8] = [
    ElementKind::I8,
    ElementKind::U8,
    ElementKind::I16,
    ElementKind::U16,
    ElementKind::I32,
    ElementKind::U32,
    ElementKind::I64,
    ElementKind::U64,
];

/// One misbehaving (kind, op): its runs must be at most `max_run` long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limit {
    kind: ElementKind,
    op: AccumulateOp,
    /// Longest run the library computes correctly (0: none).
    max_run: usize,
}

static DETECTED: OnceLock<std::result::Result<Vec<Limit>, String>> = OnceLock::new();

/// Tries the library's integer reductions (once per process; MPI must be
/// initialised and not finalised).
pub(crate) fn detect() -> Result<()> {
    DETECTED
        .get_or_init(|| {
            let mut limits = Vec::new();
            for kind in KINDS {
                for op in [AccumulateOp::Sum, AccumulateOp::Prod] {
                    if let Some(max_run) =
                        longest_correct_run(kind, op).map_err(|e| e.to_string())?
                    {
                        limits.push(Limit { kind, op, max_run });
                    }
                }
            }
            Ok(limits)
        })
        .as_ref()
        .map(|_| ())
        .map_err(|e| Error::Backend(e.clone()))
}

/// Same-width kind that the detection tried for `kind`.
fn probed(kind: ElementKind) -> ElementKind {
    match (kind, std::mem::size_of::<usize>()) {
        (ElementKind::Isize, 4) => ElementKind::I32,
        (ElementKind::Isize, _) => ElementKind::I64,
        (ElementKind::Usize, 4) => ElementKind::U32,
        (ElementKind::Usize, _) => ElementKind::U64,
        (k, _) => k,
    }
}

/// The longest run of `kind` that one `MPI_Accumulate` with `op` may
/// cover: `Ok(None)` when any length is fine, `Ok(Some(n))` for the
/// workaround above, `Err` when the library gets even one element wrong.
#[inline]
pub(crate) fn max_run(kind: ElementKind, op: AccumulateOp) -> Result<Option<usize>> {
    if !matches!(op, AccumulateOp::Sum | AccumulateOp::Prod) || kind.is_float() {
        return Ok(None);
    }
    let Some(Ok(limits)) = DETECTED.get() else {
        return Ok(None);
    };
    let kind = probed(kind);
    match limits.iter().find(|l| l.kind == kind && l.op == op) {
        None => Ok(None),
        Some(l) if l.max_run == 0 => Err(Error::Backend(format!(
            "this MPI library's {op:?} on {kind:?} elements does not wrap even for one \
             element; run with `mpirun --mca op ^avx` (Open MPI) or another MPI library"
        ))),
        Some(l) => Ok(Some(l.max_run)),
    }
}

/// Human-readable list of the behaviours found and worked around.
pub fn detected() -> Vec<String> {
    match DETECTED.get() {
        None => vec!["not yet detected (no MpiComm created)".into()],
        Some(Err(e)) => vec![format!("detection failed: {e}")],
        Some(Ok(limits)) => limits
            .iter()
            .map(|l| {
                format!(
                    "MPI {:?} on {:?} does not wrap on runs of {}+ elements (saturating SIMD): \
                     accumulates split into runs of at most {}",
                    l.op,
                    l.kind,
                    l.max_run + 1,
                    l.max_run
                )
            })
            .collect(),
    }
}

/// Integers whose wrapping arithmetic the detection compares against.
trait Probe: bytemuck::Pod + PartialEq {
    /// Operand pairs (incoming, target) that overflow.
    fn pairs(op: AccumulateOp) -> [(Self, Self); 4];
    fn wrapping(op: AccumulateOp, incoming: Self, target: Self) -> Self;
}

macro_rules! probe_int {
    ($($t:ty),*) => {$(
        impl Probe for $t {
            fn pairs(op: AccumulateOp) -> [(Self, Self); 4] {
                let half: $t = 1 << (<$t>::BITS / 2);
                match op {
                    AccumulateOp::Prod => [
                        (half, half),
                        (<$t>::MAX, <$t>::MAX),
                        (half + 1, half),
                        (<$t>::MAX, 3),
                    ],
                    _ => [
                        (1, <$t>::MAX),
                        (<$t>::MAX, <$t>::MAX),
                        (<$t>::MIN, <$t>::MIN),
                        (<$t>::MIN, <$t>::MAX.wrapping_add(2)),
                    ],
                }
            }
            fn wrapping(op: AccumulateOp, incoming: Self, target: Self) -> Self {
                match op {
                    AccumulateOp::Prod => target.wrapping_mul(incoming),
                    _ => target.wrapping_add(incoming),
                }
            }
        }
    )*};
}
probe_int!(i8, u8, i16, u16, i32, u32, i64, u64);

fn longest_correct_run(kind: ElementKind, op: AccumulateOp) -> Result<Option<usize>> {
    match kind {
        ElementKind::I8 => probe::<i8>(kind, op),
        ElementKind::U8 => probe::<u8>(kind, op),
        ElementKind::I16 => probe::<i16>(kind, op),
        ElementKind::U16 => probe::<u16>(kind, op),
        ElementKind::I32 => probe::<i32>(kind, op),
        ElementKind::U32 => probe::<u32>(kind, op),
        ElementKind::I64 => probe::<i64>(kind, op),
        ElementKind::U64 => probe::<u64>(kind, op),
        _ => Ok(None),
    }
}

/// `None` if a long run wraps correctly, else the longest correct length
/// (every length up to it tried).
fn probe<T: Probe>(kind: ElementKind, op: AccumulateOp) -> Result<Option<usize>> {
    let pairs = T::pairs(op);
    let incoming: Vec<T> = (0..LONG_RUN).map(|i| pairs[i % 4].0).collect();
    let target: Vec<T> = (0..LONG_RUN).map(|i| pairs[i % 4].1).collect();
    if reduces_correctly(kind, op, &incoming, &target)? {
        return Ok(None);
    }
    for len in 1..LONG_RUN {
        if !reduces_correctly(kind, op, &incoming[..len], &target[..len])? {
            return Ok(Some(len - 1));
        }
    }
    Ok(Some(LONG_RUN - 1))
}

/// One `MPI_Reduce_local(incoming, target)`, compared with wrapping
/// arithmetic.
fn reduces_correctly<T: Probe>(
    kind: ElementKind,
    op: AccumulateOp,
    incoming: &[T],
    target: &[T],
) -> Result<bool> {
    let mut inout = target.to_vec();
    {
        let _serial = serial();
        // SAFETY: both buffers hold `incoming.len()` (<= LONG_RUN, fits an
        // int) elements of the datatype of `kind` (T has that layout);
        // `inout` is exclusively borrowed; the op is predefined and valid
        // for integer datatypes. MPI is initialised (the caller's
        // invariant).
        let rc = unsafe {
            ffi::MPI_Reduce_local(
                incoming.as_ptr().cast::<c_void>(),
                inout.as_mut_ptr().cast::<c_void>(),
                incoming.len() as c_int,
                raw::datatype(kind),
                raw::op(op),
            )
        };
        check(rc, "MPI_Reduce_local")?;
    }
    Ok(inout
        .iter()
        .zip(incoming.iter().zip(target))
        .all(|(got, (&i, &t))| *got == T::wrapping(op, i, t)))
}
