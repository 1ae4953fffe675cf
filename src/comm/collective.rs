//! Scalable collectives: the binomial-tree schedules that backends without
//! native collectives (threaded, Lamellar) run over their point-to-point
//! messages, and the typed reductions with a success vote that the rest of
//! the library builds on ([`allreduce_vote`], [`broadcast_vote`]).
//!
//! # Cost
//!
//! [`tree_allreduce`] is a binomial reduction to rank 0 followed by a
//! binomial broadcast: `2 ⌈log2 P⌉` rounds, at most `⌈log2 P⌉` messages
//! sent and received per rank and phase, every message as long as the
//! payload. No rank ever holds more than two payloads, whatever `P`: the
//! data per rank is O(payload · log P) at the root and O(payload) on
//! average, where an allgather costs O(payload · P) on every rank.
//!
//! # Bitwise reproducibility
//!
//! The combination order is fixed by `P` alone: the reduction combines
//! contiguous ranges of ranks, lower range on the left, in the bracketing of
//! the binomial tree (for `P = 4`: `(c0 ∘ c1) ∘ (c2 ∘ c3)`). Every rank
//! receives the root's result (a broadcast), so all ranks hold the same
//! bits, and a run with the same `P` and inputs gives the same bits again.
//! [`tree_combine`] applies the very same bracketing to a list of
//! contributions held in one place.
//!
//! ```
//! use distarray::collective::tree_combine;
//! // an associative, non-commutative op on (digits, count): concatenation
//! let concat = |lo: &[u8], hi: &mut [u8]| {
//!     let (a, b) = (u32::from_le_bytes(lo.try_into().unwrap()), u32::from_le_bytes(hi[..].try_into().unwrap()));
//!     let shift = 10u32.pow(if b == 0 { 1 } else { b.ilog10() + 1 });
//!     hi.copy_from_slice(&(a * shift + b).to_le_bytes());
//! };
//! let parts: Vec<[u8; 4]> = (1..=5u32).map(|r| r.to_le_bytes()).collect();
//! let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
//! // rank order is kept: 1 2 3 4 5
//! assert_eq!(tree_combine(&refs, &concat), 12345u32.to_le_bytes());
//! ```

use std::ops::Range;

use crate::comm::OneSidedComm;
use crate::error::{Error, Result};

/// The combiner of a byte-level reduction: `combine(lower, higher)` stores
/// `lower ∘ higher` in `higher` (MPI's convention for user operations:
/// `inoutvec = invec ∘ inoutvec`). `lower` is the combination of a range
/// of ranks below `higher`'s range. The operation must be associative; it
/// need not be commutative.
pub type Combiner<'a> = &'a dyn Fn(&[u8], &mut [u8]);

/// Which message of a tree collective a point-to-point transfer carries, so
/// that a transport can give each its own buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Round `k` (0-based) of the binomial reduction: from rank `r + 2^k`
    /// to rank `r`.
    Reduce(u32),
    /// The binomial broadcast: from the parent in the broadcast tree.
    Broadcast,
    /// A neighbour exchange ([`NeighbourMessages::exchange_bytes`](crate::NeighbourMessages::exchange_bytes)), on
    /// backends that implement it over their transport.
    Exchange,
}

/// Point-to-point messages for the tree collectives. Messages from one
/// source with the same [`Phase`] are received in the order they were sent.
pub trait Transport {
    /// This rank.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Sends `data` to rank `to`.
    fn send(&self, to: usize, phase: Phase, data: &[u8]) -> Result<()>;
    /// Receives the next message of `phase` from rank `from` into `buf`
    /// (which has the message's length).
    fn recv(&self, from: usize, phase: Phase, buf: &mut [u8]) -> Result<()>;
}

/// Collective over `t`: combines every rank's `buf` (same length
/// everywhere) with `combine` in the binomial-tree order described in the
/// [module docs](self) and leaves the result in every rank's `buf`.
pub fn tree_allreduce(t: &impl Transport, buf: &mut [u8], combine: Combiner<'_>) -> Result<()> {
    let (me, p) = (t.rank(), t.size());
    let mut other = vec![0u8; buf.len()];
    let mut mask = 1usize;
    let mut round = 0u32;
    while mask < p {
        if me & mask != 0 {
            t.send(me - mask, Phase::Reduce(round), buf)?;
            break;
        }
        if me + mask < p {
            t.recv(me + mask, Phase::Reduce(round), &mut other)?;
            // buf holds ranks me..me+mask, other me+mask..: buf ∘ other
            combine(buf, &mut other);
            buf.copy_from_slice(&other);
        }
        mask <<= 1;
        round += 1;
    }
    tree_broadcast(t, 0, buf)
}

/// Collective over `t`: copies `root`'s `buf` into every rank's `buf`
/// (same length everywhere) along a binomial tree rooted at `root`:
/// `⌈log2 P⌉` rounds, one message received per rank, at most `⌈log2 P⌉`
/// sent.
pub fn tree_broadcast(t: &impl Transport, root: usize, buf: &mut [u8]) -> Result<()> {
    let (me, p) = (t.rank(), t.size());
    crate::checks::check_rank(root, p)?;
    let rel = (me + p - root) % p;
    // the lowest set bit of `rel` is the distance to the parent
    let mut mask = 1usize;
    while mask < p {
        if rel & mask != 0 {
            let parent = (rel - mask + root) % p;
            t.recv(parent, Phase::Broadcast, buf)?;
            break;
        }
        mask <<= 1;
    }
    mask >>= 1;
    while mask > 0 {
        if rel + mask < p {
            t.send((rel + mask + root) % p, Phase::Broadcast, buf)?;
        }
        mask >>= 1;
    }
    Ok(())
}

/// The combination of `parts` (index = rank) in exactly the bracketing of
/// [`tree_allreduce`] for `P = parts.len()`: what every rank would receive.
/// For reference implementations and tests.
pub fn tree_combine(parts: &[&[u8]], combine: Combiner<'_>) -> Vec<u8> {
    let mut acc: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    let p = acc.len();
    let mut mask = 1usize;
    while mask < p {
        let mut r = 0;
        while r + mask < p {
            let (lo, hi) = acc.split_at_mut(r + mask);
            combine(&lo[r], &mut hi[0]);
            acc[r] = std::mem::take(&mut acc[r + mask]);
            r += 2 * mask;
        }
        mask <<= 1;
    }
    acc.into_iter().next().unwrap_or_default()
}

/// Bytes of the vote word that leads every voted payload.
const VOTE: usize = 8;
/// The lowest vote word of a rank whose part succeeded: such a rank's word
/// is `OK_BASE | key`, the key of [`allreduce_vote_keyed`] ([`OK`] for
/// the votes without one). A failing rank's word is its rank, below.
const OK_BASE: u64 = 0xffff_ffff_0000_0000;
/// Vote word of a rank whose part succeeded, in a vote without a key.
const OK: u64 = u64::MAX;
/// The combined vote word when every rank succeeded but not with one key:
/// above every rank, below every success.
const DIFFER: u64 = OK_BASE - 1;

/// The vote word of a rank that succeeded with `key`.
fn ok_word(key: u32) -> u64 {
    OK_BASE | u64::from(key)
}

/// Whether a (combined) vote word says every rank succeeded with one key.
fn all_ok(word: u64) -> bool {
    word >= OK_BASE
}

/// The combination of two vote words: equal successes stay; successes
/// with different keys give [`DIFFER`]; otherwise the lowest failing rank
/// (a failure outranks differing keys). Associative and commutative (the
/// meet of the order `ranks < DIFFER < each success`, the successes
/// pairwise unordered), so any reduction tree gives the same word.
fn combine_words(lo: u64, hi: u64) -> u64 {
    if all_ok(lo) && all_ok(hi) {
        if lo == hi {
            lo
        } else {
            DIFFER
        }
    } else {
        lo.min(hi)
    }
}

/// Collective: reduces every rank's `local` value with `op` (associative;
/// the order is the backend's fixed rank order, see
/// [`OneSidedComm::allreduce_bytes`]) and votes on success **in the same
/// collective**: if every rank's `local` is `Ok`, every rank returns the
/// same combined value; otherwise a failing rank returns its own error and
/// every other rank [`Error::PeerFailed`] naming the lowest failing rank.
///
/// One collective of `8 + size_of::<T>()` bytes per rank, whatever `P`.
///
/// ```
/// use distarray::{collective::allreduce_vote, threaded, OneSidedComm};
/// let r = threaded::run(4, |comm| {
///     let mine: distarray::Result<[u64; 2]> = Ok([comm.rank() as u64, 1]);
///     allreduce_vote(&comm, mine, |a, b| [a[0].max(b[0]), a[1] + b[1]])
/// })
/// .unwrap();
/// assert!(r.iter().all(|v| *v.as_ref().unwrap() == [3, 4]));
/// ```
pub fn allreduce_vote<C, T>(comm: &C, local: Result<T>, op: impl Fn(T, T) -> T) -> Result<T>
where
    C: OneSidedComm,
    T: bytemuck::Pod,
{
    // the keyed votes of the library agree other keys: a rank in one of
    // them while another is here is in another call
    keyed_allreduce(comm, local, u32::MAX, op)?.ok_or_else(|| {
        Error::InvalidArgument(
            "allreduce_vote: the ranks made different collective calls (the keys of their \
             votes differ between ranks)"
                .into(),
        )
    })
}

/// Collective: [`allreduce_vote`] that also agrees `key` between the ranks
/// **in the same collective**, at no cost: the key rides in the vote word
/// (the same `8 + size_of::<T>()` bytes, the same single allreduce). If
/// every rank's `local` is `Ok` with one key, every rank returns the
/// combined value; if every rank's is `Ok` but the keys differ, every rank
/// returns `differs()` (and `op` never saw values of different keys); if
/// some rank's `local` is an `Err`, the errors of [`allreduce_vote`] (a
/// failure outranks differing keys).
///
/// A key names what the ranks must pass alike and what chooses their path
/// (e.g. the [`Summation`](crate::Summation) modes of a reduction's
/// operands): ranks that would go different ways meet in this collective
/// and all refuse. A path whose own collective is another one agrees its
/// key first with [`vote_keyed_as`], which is this collective.
pub(crate) fn allreduce_vote_keyed<C, T>(
    comm: &C,
    local: Result<T>,
    key: u32,
    op: impl Fn(T, T) -> T,
    differs: impl FnOnce() -> Error,
) -> Result<T>
where
    C: OneSidedComm,
    T: bytemuck::Pod,
{
    keyed_allreduce(comm, local, key, op)?.ok_or_else(differs)
}

/// Collective: the vote of an [`allreduce_vote_keyed`] of a `T`, without
/// a value: the same collective, with a payload of the same length, so
/// that it meets that call on the ranks that make it. For an operation
/// whose paths differ in their collectives (one reduces a `T` with
/// [`allreduce_vote_keyed`], another needs a longer payload): the other
/// path opens with this vote of the same `key`, so that ranks that chose
/// different paths all refuse, and none waits in a collective the others
/// skipped. Returns `local` if every rank succeeded with one key; errors as
/// [`allreduce_vote_keyed`].
pub(crate) fn vote_keyed_as<T, C, V>(
    comm: &C,
    local: Result<V>,
    key: u32,
    differs: impl FnOnce() -> Error,
) -> Result<V>
where
    C: OneSidedComm,
    T: bytemuck::Pod,
{
    let flag = match &local {
        Ok(_) => Ok(T::zeroed()),
        Err(e) => Err(e.clone()),
    };
    allreduce_vote_keyed(comm, flag, key, |a, _| a, differs)?;
    local
}

/// The allreduce of [`allreduce_vote_keyed`]: `Ok(None)` if every rank
/// succeeded but the keys differ.
fn keyed_allreduce<C, T>(
    comm: &C,
    local: Result<T>,
    key: u32,
    op: impl Fn(T, T) -> T,
) -> Result<Option<T>>
where
    C: OneSidedComm,
    T: bytemuck::Pod,
{
    let size = std::mem::size_of::<T>();
    let mut buf = vec![0u8; VOTE + size];
    match &local {
        Ok(v) => {
            buf[..VOTE].copy_from_slice(&ok_word(key).to_le_bytes());
            buf[VOTE..].copy_from_slice(bytemuck::bytes_of(v));
        }
        Err(_) => buf[..VOTE].copy_from_slice(&(comm.rank() as u64).to_le_bytes()),
    }
    let combine = |lo: &[u8], hi: &mut [u8]| {
        let flag = combine_words(word_of(lo), word_of(hi));
        if all_ok(flag) {
            // one key: the values are of one kind
            let a: T = bytemuck::pod_read_unaligned(&lo[VOTE..]);
            let b: T = bytemuck::pod_read_unaligned(&hi[VOTE..]);
            hi[VOTE..].copy_from_slice(bytemuck::bytes_of(&op(a, b)));
        } else {
            hi[..VOTE].copy_from_slice(&flag.to_le_bytes());
        }
    };
    comm.allreduce_bytes(&mut buf, &combine)?;
    let flag = word_of(&buf);
    if flag == DIFFER {
        // every rank succeeded (a failure would outrank this)
        return Ok(None);
    }
    failed_with_reason(comm, flag, local.as_ref().err())?;
    local?;
    Ok(Some(bytemuck::pod_read_unaligned(&buf[VOTE..])))
}

/// Collective: the largest of every rank's `value` (a rank-local scalar:
/// a residual, a time step, a timer), on every rank. A NaN loses to any
/// number, as with `f64::max`; the result is NaN only if every rank's is.
/// Independent of the order of combination, so the same bits on any rank
/// count. One collective carrying the success vote, like
/// [`allreduce_vote`].
///
/// ```
/// use distarray::{collective, threaded, OneSidedComm};
/// threaded::run_ok(4, |comm| {
///     let mine = [0.5, f64::NAN, 2.5, -1.0][comm.rank()];
///     assert_eq!(collective::allreduce_max(&comm, mine)?, 2.5);
///     assert_eq!(collective::allreduce_min(&comm, mine)?, -1.0);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub fn allreduce_max<C, T>(comm: &C, value: T) -> Result<T>
where
    C: OneSidedComm,
    T: bytemuck::Pod + PartialOrd,
{
    allreduce_vote(comm, Ok(value), |a, b| extremum(a, b, true))
}

/// Collective: the smallest of every rank's `value`, on every rank; NaN as
/// in [`allreduce_max`].
pub fn allreduce_min<C, T>(comm: &C, value: T) -> Result<T>
where
    C: OneSidedComm,
    T: bytemuck::Pod + PartialOrd,
{
    allreduce_vote(comm, Ok(value), |a, b| extremum(a, b, false))
}

/// The larger (`max`) or smaller of `a` and `b`; an unordered value (NaN)
/// loses to any ordered one. The lower rank's value wins a tie.
fn extremum<T: PartialOrd>(a: T, b: T, max: bool) -> T {
    #[allow(clippy::eq_op)]
    let (a_nan, b_nan) = (a != a, b != b);
    if a_nan {
        return b;
    }
    if b_nan {
        return a;
    }
    let b_wins = if max { b > a } else { b < a };
    if b_wins {
        b
    } else {
        a
    }
}

/// Collective: combines every rank's `data` element-wise with `op` (same
/// length on every rank; the fixed rank order of
/// [`OneSidedComm::allreduce_bytes`]), leaving the result in every rank's
/// `data`, and votes on `local` in the same collective (errors as
/// [`allreduce_vote`]; on an error `data` is unspecified). Meant for small
/// vectors: one message carries the whole of `data`.
///
/// ```
/// use distarray::{collective::allreduce_slice_vote, threaded, OneSidedComm};
/// let r = threaded::run(3, |comm| {
///     let mut v = [comm.rank() as u32, 1];
///     allreduce_slice_vote(&comm, Ok(()), &mut v, |a, b| a + b).map(|_| v)
/// })
/// .unwrap();
/// assert!(r.iter().all(|v| *v.as_ref().unwrap() == [3, 3]));
/// ```
pub fn allreduce_slice_vote<C, T>(
    comm: &C,
    local: Result<()>,
    data: &mut [T],
    op: impl Fn(T, T) -> T,
) -> Result<()>
where
    C: OneSidedComm,
    T: bytemuck::Pod,
{
    let size = std::mem::size_of::<T>();
    let mut buf = vec![0u8; VOTE + std::mem::size_of_val(data)];
    match &local {
        Ok(()) => {
            buf[..VOTE].copy_from_slice(&OK.to_le_bytes());
            buf[VOTE..].copy_from_slice(bytemuck::cast_slice(data));
        }
        Err(_) => buf[..VOTE].copy_from_slice(&(comm.rank() as u64).to_le_bytes()),
    }
    let combine = |lo: &[u8], hi: &mut [u8]| {
        let flag = combine_words(word_of(lo), word_of(hi));
        if all_ok(flag) {
            for (l, h) in lo[VOTE..]
                .chunks_exact(size)
                .zip(hi[VOTE..].chunks_exact_mut(size))
            {
                let a: T = bytemuck::pod_read_unaligned(l);
                let b: T = bytemuck::pod_read_unaligned(h);
                h.copy_from_slice(bytemuck::bytes_of(&op(a, b)));
            }
        } else {
            hi[..VOTE].copy_from_slice(&flag.to_le_bytes());
        }
    };
    comm.allreduce_bytes(&mut buf, &combine)?;
    failed_with_reason(comm, word_of(&buf), local.as_ref().err())?;
    local?;
    for (d, b) in data.iter_mut().zip(buf[VOTE..].chunks_exact(size)) {
        *d = bytemuck::pod_read_unaligned(b);
    }
    Ok(())
}

/// Collective: every rank receives `root`'s value, or, if `root`'s `local`
/// is an `Err`, [`Error::PeerFailed`] naming the root (the root returns
/// its own error). The other ranks' `local` is ignored unless it is an
/// `Err`, which such a rank returns (after taking part). One collective.
///
/// ```
/// use distarray::{collective::broadcast_vote, threaded, OneSidedComm};
/// let r = threaded::run(3, |comm| {
///     let mine = Ok(if comm.rank() == 2 { 42u32 } else { 0 });
///     broadcast_vote(&comm, 2, mine)
/// })
/// .unwrap();
/// assert!(r.iter().all(|v| *v.as_ref().unwrap() == 42));
/// ```
pub fn broadcast_vote<C, T>(comm: &C, root: usize, local: Result<T>) -> Result<T>
where
    C: OneSidedComm,
    T: bytemuck::Pod,
{
    crate::checks::check_rank(root, comm.size())?;
    let size = std::mem::size_of::<T>();
    let mut buf = vec![0u8; VOTE + size];
    if let Ok(v) = &local {
        buf[..VOTE].copy_from_slice(&OK.to_le_bytes());
        buf[VOTE..].copy_from_slice(bytemuck::bytes_of(v));
    }
    comm.broadcast_bytes(root, &mut buf)?;
    if word_of(&buf) != OK {
        // only the root's failure counts: it is the one every rank names
        let reason = failure_reason(comm, root, local.as_ref().err())?;
        local?;
        return Err(Error::PeerFailed { rank: root, reason });
    }
    local?;
    Ok(bytemuck::pod_read_unaligned(&buf[VOTE..]))
}

/// Collective: the success vote alone (an [`allreduce_vote`] of nothing):
/// returns this rank's own error, or [`Error::PeerFailed`] (with the failing
/// rank's own message) if another rank failed, or `local`'s value. Acts as a
/// barrier.
pub fn vote<C: OneSidedComm, V>(comm: &C, local: Result<V>) -> Result<V> {
    let flag = match &local {
        Ok(_) => Ok([0u8; 0]),
        Err(e) => Err(e.clone()),
    };
    allreduce_vote(comm, flag, |a, _| a)?;
    local
}

/// The vote word of a voted payload.
fn word_of(buf: &[u8]) -> u64 {
    u64::from_le_bytes(buf[..VOTE].try_into().expect("vote word"))
}

/// After a vote whose word is `flag`: if some rank failed (`flag` is its
/// rank), every rank takes part in fetching its message
/// ([`failure_reason`], only on this path) and returns
/// `own` (its own error) or [`Error::PeerFailed`] with that message.
fn failed_with_reason<C: OneSidedComm>(comm: &C, flag: u64, own: Option<&Error>) -> Result<()> {
    if all_ok(flag) {
        return Ok(());
    }
    let rank = flag as usize;
    let reason = failure_reason(comm, rank, own)?;
    match own {
        Some(e) => Err(e.clone()),
        None => Err(Error::PeerFailed { rank, reason }),
    }
}

/// Collective over the neighbour exchange
/// ([`NeighbourMessages::exchange_bytes`](crate::NeighbourMessages::exchange_bytes)): a **reduce-scatter by recursive
/// halving**. Every rank holds a full-length vector `data`; `bounds` (length
/// `P + 1`, non-decreasing, `bounds[P] == data.len()`) gives rank `r` the
/// range `bounds[r]..bounds[r + 1]`. On return that range of each rank's
/// `data` holds the element-wise `combine` of every rank's vector there (the
/// rest of `data` is scratch).
///
/// The ranks split into a lower and an upper half (the upper one a rank
/// larger when `P` is odd); each lower rank swaps with its partner in the
/// upper half the portion the other half owns, and both recurse into their
/// half: `⌈log2 P⌉` exchanges, at most two messages received per rank and
/// exchange, `data.len() / 2 + data.len() / 4 + …` elements sent — O(log P)
/// messages and O(n) data per rank where one put per owner costs P − 1
/// messages. (With an odd half, its extra rank sends its portion to the
/// last rank of the other half and receives nothing.) The pairing, hence
/// the bracketing of every element's combination, depends on `P` alone:
/// results are bitwise reproducible. `combine` must be commutative and
/// associative up to rounding (a sum).
///
/// Every rank calls it with the same `bounds`; errors: `bounds` that do not
/// fit (on every rank, before any message), or those of `exchange_bytes`.
///
/// ```
/// use distarray::{collective::reduce_scatter_halving, threaded, OneSidedComm};
/// threaded::run_ok(5, |comm| {
///     let r = comm.rank() as u64;
///     // 10 elements, two per rank; rank r contributes r + 1 everywhere
///     let mut data = vec![r + 1; 10];
///     let bounds: Vec<usize> = (0..=5).map(|k| 2 * k).collect();
///     reduce_scatter_halving(&comm, &mut data, &bounds, |a, b| a + b)?;
///     let mine = &data[2 * comm.rank()..2 * comm.rank() + 2];
///     assert_eq!(mine, &[15, 15]); // 1 + 2 + 3 + 4 + 5
///     Ok(())
/// })
/// .unwrap();
/// ```
pub fn reduce_scatter_halving<C, T>(
    comm: &C,
    data: &mut [T],
    bounds: &[usize],
    combine: impl Fn(T, T) -> T,
) -> Result<()>
where
    C: OneSidedComm,
    T: bytemuck::Pod,
{
    reduce_scatter_halving_with(comm, data, bounds, combine, &mut HalvingScratch::default())
}

/// The buffers of [`reduce_scatter_halving`], kept by callers that reduce
/// again and again (a [`MatvecPlan`](crate::linalg::MatvecPlan)), so that
/// a call allocates nothing once they have grown.
#[derive(Debug, Clone)]
pub struct HalvingScratch<T> {
    out: Vec<T>,
    inbox: Vec<(usize, Vec<T>)>,
}

impl<T> Default for HalvingScratch<T> {
    fn default() -> Self {
        HalvingScratch {
            out: Vec::new(),
            inbox: Vec::new(),
        }
    }
}

/// [`reduce_scatter_halving`] with caller-kept buffers.
pub fn reduce_scatter_halving_with<C, T>(
    comm: &C,
    data: &mut [T],
    bounds: &[usize],
    combine: impl Fn(T, T) -> T,
    scratch: &mut HalvingScratch<T>,
) -> Result<()>
where
    C: OneSidedComm,
    T: bytemuck::Pod,
{
    let (me, p) = (comm.rank(), comm.size());
    if bounds.len() != p + 1 || bounds[p] != data.len() || bounds.windows(2).any(|w| w[0] > w[1]) {
        return Err(Error::InvalidArgument(format!(
            "reduce_scatter_halving: bounds must be {} non-decreasing offsets ending at the \
             data's length {}, not {bounds:?}",
            p + 1,
            data.len()
        )));
    }
    let steps = usize::BITS - (p - 1).leading_zeros();
    let (mut lo, mut hi) = (0, p);
    let HalvingScratch { out, inbox } = scratch;
    for _ in 0..steps {
        // this step's messages: (to, range sent) and (from, range received)
        let mut send: Option<(usize, Range<usize>)> = None;
        let mut recv: Vec<(usize, Range<usize>)> = Vec::new();
        let (next_lo, next_hi);
        if hi - lo > 1 {
            let h1 = (hi - lo) / 2;
            let mid = lo + h1;
            let lower = bounds[lo]..bounds[mid];
            let upper = bounds[mid]..bounds[hi];
            if me < mid {
                send = Some((me + h1, upper));
                recv.push((me + h1, lower.clone()));
                if hi - mid > h1 && me == mid - 1 {
                    recv.push((hi - 1, lower));
                }
                (next_lo, next_hi) = (lo, mid);
            } else {
                if me < mid + h1 {
                    send = Some((me - h1, lower));
                    recv.push((me - h1, upper));
                } else {
                    // the extra rank of an odd upper half
                    send = Some((mid - 1, lower));
                }
                (next_lo, next_hi) = (mid, hi);
            }
        } else {
            (next_lo, next_hi) = (lo, hi);
        }
        out.clear();
        let sends: Vec<(usize, &[u8])> = match &send {
            Some((to, r)) => {
                out.extend_from_slice(&data[r.clone()]);
                vec![(*to, bytemuck::cast_slice(&out[..]))]
            }
            None => Vec::new(),
        };
        inbox.resize_with(recv.len(), || (0, Vec::new()));
        for ((from, buf), (src, r)) in inbox.iter_mut().zip(&recv) {
            *from = *src;
            buf.clear();
            buf.resize(r.len(), T::zeroed());
        }
        {
            let mut recvs: Vec<(usize, &mut [u8])> = inbox
                .iter_mut()
                .map(|(from, b)| (*from, bytemuck::cast_slice_mut(&mut b[..])))
                .collect();
            crate::comm::messages_of(comm)?.exchange_bytes(&sends, &mut recvs)?;
        }
        // in a fixed order: the partner's portion, then the extra rank's
        for ((_, r), (_, got)) in recv.iter().zip(inbox.iter()) {
            for (d, &v) in data[r.clone()].iter_mut().zip(got) {
                *d = combine(*d, v);
            }
        }
        (lo, hi) = (next_lo, next_hi);
    }
    debug_assert_eq!((lo, hi), (me, me + 1));
    Ok(())
}

/// Longest failure reason [`vote`] carries to the other ranks, in bytes.
pub const REASON_MAX: usize = 256;

/// Collective, called by every rank once a vote named `rank` as the first
/// failing rank: every rank receives `rank`'s error message (`own` on that
/// rank), cut to [`REASON_MAX`] bytes at a character boundary. One
/// broadcast of a fixed `2 + REASON_MAX` bytes from `rank`, whatever the
/// number of ranks.
pub fn failure_reason<C: OneSidedComm>(
    comm: &C,
    rank: usize,
    own: Option<&Error>,
) -> Result<String> {
    let mut buf = vec![0u8; 2 + REASON_MAX];
    if comm.rank() == rank {
        let text = own.map(|e| e.to_string()).unwrap_or_default();
        let text = truncate_utf8(&text, REASON_MAX);
        buf[..2].copy_from_slice(&(text.len() as u16).to_le_bytes());
        buf[2..2 + text.len()].copy_from_slice(text.as_bytes());
    }
    comm.broadcast_bytes(rank, &mut buf)?;
    let len = usize::from(u16::from_le_bytes([buf[0], buf[1]])).min(REASON_MAX);
    Ok(String::from_utf8_lossy(&buf[2..2 + len]).into_owned())
}

/// The longest prefix of `s` of at most `max` bytes ending at a character
/// boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Collective (one [`allreduce_vote`] of three words, whatever `P`):
/// every rank's own checks `local` — on success its value and the
/// [`fingerprint`] of the arguments every rank must pass alike — and the
/// comparison of those fingerprints. Returns the value if every rank's
/// checks passed with one fingerprint; this rank's own error or
/// [`Error::PeerFailed`] if some rank's failed; `differs()` on every rank
/// if the fingerprints differ. So no rank goes on alone into a collective
/// the others skipped, or with other arguments.
///
/// ```
/// use distarray::{collective::{agree_fingerprints, fingerprint}, threaded, Error, OneSidedComm};
/// let r = threaded::run(2, |comm| {
///     let name = if comm.rank() == 0 { "u" } else { "v" };
///     let differs = || Error::InvalidArgument("the name differs between ranks".into());
///     Ok::<_, Error>(agree_fingerprints(&comm, Ok(((), fingerprint(name))), differs).is_err())
/// })
/// .unwrap();
/// // an error on every rank
/// assert!(r.iter().all(|refused| *refused.as_ref().unwrap()));
/// ```
pub fn agree_fingerprints<C: OneSidedComm, V>(
    comm: &C,
    local: Result<(V, u64)>,
    differs: impl FnOnce() -> Error,
) -> Result<V> {
    let (value, key) = match local {
        Ok((v, key)) => (Ok(v), Ok([key, key])),
        Err(e) => (Err(e.clone()), Err(e)),
    };
    let [lo, hi] = allreduce_vote(comm, key, |a, b| [a[0].min(b[0]), a[1].max(b[1])])?;
    if lo != hi {
        return Err(differs());
    }
    value
}

/// A 64-bit fingerprint of `args` (FNV-1a over their [`Hash`] stream):
/// equal arguments give equal fingerprints on every rank of one program,
/// independently of any per-process random state — what collective calls
/// compare (as the `(min, max)` of one [`allreduce_vote`]) to check that
/// every rank passed the same arguments.
///
/// ```
/// use distarray::collective::fingerprint;
/// assert_eq!(fingerprint(&("data.h5", [4usize, 6])), fingerprint(&("data.h5", [4usize, 6])));
/// assert_ne!(fingerprint(&("data.h5", [4usize, 6])), fingerprint(&("data.h5", [6usize, 4])));
/// ```
pub fn fingerprint<A: std::hash::Hash + ?Sized>(args: &A) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    args.hash(&mut h);
    h.0
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        allreduce_vote, allreduce_vote_keyed, combine_words, fingerprint, ok_word, truncate_utf8,
        vote_keyed_as, Fnv, DIFFER, OK,
    };
    use crate::{threaded, Error, OneSidedComm};

    #[test]
    fn vote_words_combine_alike_in_any_bracketing() {
        let words = [0, 1, 5, DIFFER, ok_word(0), ok_word(1), ok_word(7), OK];
        for a in words {
            for b in words {
                assert_eq!(combine_words(a, b), combine_words(b, a));
                for c in words {
                    let left = combine_words(combine_words(a, b), c);
                    assert_eq!(left, combine_words(a, combine_words(b, c)));
                }
            }
        }
        assert_eq!(combine_words(ok_word(2), ok_word(2)), ok_word(2));
        assert_eq!(combine_words(ok_word(2), ok_word(3)), DIFFER);
        assert_eq!(combine_words(DIFFER, 4), 4);
    }

    #[test]
    fn keyed_votes_refuse_on_every_rank_when_keys_differ() {
        let differs = || Error::InvalidArgument("keys differ".into());
        for p in 1..=5 {
            let out = threaded::run(p, |comm| {
                let me = comm.rank();
                // the last rank's key differs (none differs on one rank)
                let key = u32::from(me + 1 == p && p > 1);
                let one = allreduce_vote_keyed(&comm, Ok(1u64), key, |a, b| a + b, differs);
                let same = allreduce_vote_keyed(&comm, Ok(1u64), 9, |a, b| a + b, differs);
                // a failure outranks differing keys
                let mine = if me == 0 {
                    Err(Error::InvalidArgument("rank 0 failed".into()))
                } else {
                    Ok(1u64)
                };
                let failed = allreduce_vote_keyed(&comm, mine, key, |a, b| a + b, differs);
                // the vote meets a keyed allreduce of the same payload
                let mixed = if me == 0 {
                    vote_keyed_as::<u64, _, _>(&comm, Ok(0u64), 1, differs)
                } else {
                    allreduce_vote_keyed(&comm, Ok(1u64), 2, |a, b| a + b, differs)
                };
                // an unkeyed vote against a keyed one: refused, no panic
                let unkeyed = if me == 0 {
                    allreduce_vote(&comm, Ok(1u64), |a, b| a + b)
                } else {
                    allreduce_vote_keyed(&comm, Ok(1u64), 0, |a, b| a + b, differs)
                };
                // still in step
                let after = allreduce_vote(&comm, Ok(1u64), |a, b| a + b);
                (one, same, failed, mixed, unkeyed, after)
            })
            .unwrap();
            let invalid = |r: &crate::Result<u64>| matches!(r, Err(Error::InvalidArgument(_)));
            for (me, (one, same, failed, mixed, unkeyed, after)) in out.iter().enumerate() {
                if p == 1 {
                    assert_eq!(one.as_ref().ok(), Some(&1));
                    assert_eq!(mixed.as_ref().ok(), Some(&0));
                    assert_eq!(unkeyed.as_ref().ok(), Some(&1));
                } else {
                    assert!(invalid(one), "P = {p}, rank {me}: {one:?}");
                    assert!(invalid(mixed), "P = {p}, rank {me}: {mixed:?}");
                    assert!(invalid(unkeyed), "P = {p}, rank {me}: {unkeyed:?}");
                }
                assert_eq!(same.as_ref().ok(), Some(&(p as u64)));
                match (me, failed) {
                    (0, Err(Error::InvalidArgument(m))) => assert_eq!(m, "rank 0 failed"),
                    (_, Err(Error::PeerFailed { rank: 0, .. })) if me > 0 => {}
                    _ => panic!("P = {p}, rank {me}: {failed:?}"),
                }
                assert_eq!(after.as_ref().ok(), Some(&(p as u64)));
            }
        }
    }

    #[test]
    fn fnv1a_matches_its_published_test_vector() {
        use std::hash::Hasher;
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn fingerprints_tell_arguments_apart() {
        assert_eq!(fingerprint(&("u", [3, 4])), fingerprint(&("u", [3, 4])));
        assert_ne!(fingerprint(&("u", [3, 4])), fingerprint(&("u", [4, 3])));
        assert_ne!(fingerprint(&("ab", "c")), fingerprint(&("a", "bc")));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_utf8("abc", 5), "abc");
        assert_eq!(truncate_utf8("abcdef", 3), "abc");
        // 'é' is two bytes: cutting at 2 would split it
        assert_eq!(truncate_utf8("aéb", 2), "a");
    }
}
