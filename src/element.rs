//! [`Element`]: the types that can live in a window (primitive integers
//! and floats, complex numbers), their [`ElementKind`] for backends'
//! datatypes, and the [`AccumulateOp`]s that combine them.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, Mul, Sub};

use num_complex::Complex;
use num_traits::{NumCast, One, Zero};

/// The primitive type behind an [`Element`]; backends map it to their own
/// datatypes (e.g. `MPI_DOUBLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ElementKind {
    I8,
    I16,
    I32,
    I64,
    Isize,
    U8,
    U16,
    U32,
    U64,
    Usize,
    F32,
    F64,
    /// `Complex<f32>` (two `f32`: real, imaginary; C's `float _Complex`).
    C32,
    /// `Complex<f64>` (C's `double _Complex`).
    C64,
}

impl ElementKind {
    /// `true` for `F32` and `F64`.
    pub fn is_float(self) -> bool {
        matches!(self, ElementKind::F32 | ElementKind::F64)
    }

    /// `true` for `C32` and `C64`.
    pub fn is_complex(self) -> bool {
        matches!(self, ElementKind::C32 | ElementKind::C64)
    }

    /// Whether [`Window::accumulate`](crate::Window::accumulate) with `op` is defined for this kind:
    /// every op for integers and floats; `Replace`, `Sum` and `Prod` for
    /// complex numbers, which have no order (`Min` / `Max`), as in MPI.
    pub fn supports(self, op: AccumulateOp) -> bool {
        !(self.is_complex() && matches!(op, AccumulateOp::Min | AccumulateOp::Max))
    }
}

/// How [`Window::accumulate`](crate::Window::accumulate) combines an incoming value with the target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccumulateOp {
    /// `target = incoming` (an atomic put).
    Replace,
    /// `target = target + incoming` (wrapping for integers).
    Sum,
    /// `target = target * incoming` (wrapping for integers).
    Prod,
    /// `target = min(target, incoming)`.
    Min,
    /// `target = max(target, incoming)`.
    Max,
}

/// Element types that can live in a window: the primitive integers and
/// floats, and complex numbers of `f32` / `f64` ([`Complex32`](crate::Complex32),
/// [`Complex64`](crate::Complex64)).
///
/// The numeric side comes from `num-traits` ([`Zero`], [`One`], [`NumCast`]
/// for conversions, e.g. `T::from(2.5)`); integer arithmetic that must not
/// overflow-panic (sums, accumulates) goes through [`Element::combine`],
/// which wraps. Element types are not ordered in general (complex numbers
/// are not): the operations that need an order (`min`, `argmax`, ...) ask
/// for `T: PartialOrd` in addition, and [`RealElement`] is the real types.
///
/// # Safety
///
/// Backends move elements as raw bytes and hand `KIND` to their runtime as
/// the datatype. An implementor guarantees that `Self` has exactly the size
/// and representation of `KIND` (for complex kinds: real part, then
/// imaginary part, as C's `_Complex` types and `num_complex::Complex`).
/// distarray implements it for all those types; there is no reason to
/// implement it elsewhere.
pub unsafe trait Element:
    bytemuck::Pod
    + Default
    + PartialEq
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Sum<Self>
    + Zero
    + One
    + NumCast
{
    /// The primitive kind of `Self`.
    const KIND: ElementKind;
    /// Additive identity (`Zero::zero()` as a constant).
    const ZERO: Self;
    /// Multiplicative identity (`One::one()` as a constant).
    const ONE: Self;

    /// The value [`Window::accumulate`](crate::Window::accumulate) stores when `incoming` is combined
    /// into `current` with `op`. Backends that apply accumulates in software
    /// (threaded, Lamellar) use this; MPI uses its own reduction operators,
    /// which compute the same. Ops that [`ElementKind::supports`] refuses
    /// (`Min` / `Max` on complex numbers) are rejected by the backends with
    /// an error before this is called; here they leave `current` unchanged.
    fn combine(op: AccumulateOp, current: Self, incoming: Self) -> Self;

    /// The complex conjugate (the value itself for real types).
    #[inline]
    fn conj(self) -> Self {
        self
    }

    /// `self * a + b`; for `f32` and `f64` with one rounding (a fused
    /// multiply-add, `f64::mul_add`: the same bits on every machine, in
    /// hardware where the CPU has FMA). The stencil kernels use it.
    #[inline]
    fn mul_add(self, a: Self, b: Self) -> Self {
        self * a + b
    }

    /// The squared modulus `|x|²` as `f64` (for norms).
    fn abs2(self) -> f64;

    /// The modulus `|x|` as `f64` (the absolute value for real types;
    /// `hypot(re, im)` for complex ones, without overflow in the squares).
    fn modulus(self) -> f64;
}

/// The real (ordered) element types: the primitive integers and floats.
pub trait RealElement: Element + PartialOrd {
    /// Converts to `f64` (for means, norms, error reports, printing).
    fn to_f64(self) -> f64;
}

macro_rules! impl_element_int {
    ($($t:ty => $k:ident),* $(,)?) => {$(
        // SAFETY: `$t` is the primitive integer type named by `ElementKind::$k`.
        unsafe impl Element for $t {
            const KIND: ElementKind = ElementKind::$k;
            const ZERO: Self = 0;
            const ONE: Self = 1;
            #[inline]
            fn combine(op: AccumulateOp, current: Self, incoming: Self) -> Self {
                match op {
                    AccumulateOp::Replace => incoming,
                    AccumulateOp::Sum => current.wrapping_add(incoming),
                    AccumulateOp::Prod => current.wrapping_mul(incoming),
                    AccumulateOp::Min => current.min(incoming),
                    AccumulateOp::Max => current.max(incoming),
                }
            }
            #[inline]
            fn abs2(self) -> f64 {
                (self as f64) * (self as f64)
            }
            #[inline]
            fn modulus(self) -> f64 {
                (self as f64).abs()
            }
        }
        impl RealElement for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}

macro_rules! impl_element_float {
    ($($t:ty => $k:ident),* $(,)?) => {$(
        // SAFETY: `$t` is the primitive float type named by `ElementKind::$k`.
        unsafe impl Element for $t {
            const KIND: ElementKind = ElementKind::$k;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline]
            fn combine(op: AccumulateOp, current: Self, incoming: Self) -> Self {
                match op {
                    AccumulateOp::Replace => incoming,
                    AccumulateOp::Sum => current + incoming,
                    AccumulateOp::Prod => current * incoming,
                    AccumulateOp::Min => current.min(incoming),
                    AccumulateOp::Max => current.max(incoming),
                }
            }
            #[inline]
            fn abs2(self) -> f64 {
                (self as f64) * (self as f64)
            }
            #[inline]
            fn modulus(self) -> f64 {
                (self as f64).abs()
            }
            #[inline]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
        }
        impl RealElement for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}

macro_rules! impl_element_complex {
    ($($t:ty => $k:ident),* $(,)?) => {$(
        // SAFETY: `Complex<$t>` is `#[repr(C)]` { re, im } of two `$t`:
        // exactly C's `_Complex` layout, which `ElementKind::$k` names.
        unsafe impl Element for Complex<$t> {
            const KIND: ElementKind = ElementKind::$k;
            const ZERO: Self = Complex::new(0.0, 0.0);
            const ONE: Self = Complex::new(1.0, 0.0);
            #[inline]
            fn combine(op: AccumulateOp, current: Self, incoming: Self) -> Self {
                match op {
                    AccumulateOp::Replace => incoming,
                    AccumulateOp::Sum => current + incoming,
                    AccumulateOp::Prod => current * incoming,
                    // refused before (no order on complex numbers)
                    AccumulateOp::Min | AccumulateOp::Max => current,
                }
            }
            #[inline]
            fn conj(self) -> Self {
                Complex::conj(&self)
            }
            #[inline]
            fn abs2(self) -> f64 {
                let (re, im) = (self.re as f64, self.im as f64);
                re * re + im * im
            }
            #[inline]
            fn modulus(self) -> f64 {
                (self.re as f64).hypot(self.im as f64)
            }
        }
    )*};
}
impl_element_int!(
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, isize => Isize,
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, usize => Usize,
);
impl_element_float!(f32 => F32, f64 => F64);
impl_element_complex!(f32 => C32, f64 => C64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Complex32, Complex64};

    #[test]
    fn complex_elements_combine_conjugate_and_measure() {
        let (a, b) = (Complex64::new(1.0, 2.0), Complex64::new(-3.0, 0.5));
        assert_eq!(Complex64::combine(AccumulateOp::Sum, a, b), a + b);
        assert_eq!(Complex64::combine(AccumulateOp::Prod, a, b), a * b);
        assert_eq!(Complex64::combine(AccumulateOp::Replace, a, b), b);
        assert_eq!(a.conj(), Complex64::new(1.0, -2.0));
        assert_eq!(a.abs2(), 5.0);
        assert_eq!(Complex32::new(3.0, -4.0).modulus(), 5.0);
        // no overflow in the squares
        assert_eq!(Complex64::new(1e300, 1e300).modulus(), 1e300 * 2f64.sqrt());
        assert_eq!(<Complex64 as Element>::KIND, ElementKind::C64);
        assert_eq!(std::mem::size_of::<Complex32>(), 8);
        assert!(!ElementKind::C32.supports(AccumulateOp::Min));
        assert!(!ElementKind::C64.supports(AccumulateOp::Max));
        assert!(ElementKind::C64.supports(AccumulateOp::Sum));
        assert!(ElementKind::F32.supports(AccumulateOp::Min));
    }

    #[test]
    fn real_elements_keep_their_arithmetic() {
        assert_eq!(i8::combine(AccumulateOp::Sum, 127, 1), -128); // wraps
        assert_eq!((-3i32).conj(), -3);
        assert_eq!((-3i32).modulus(), 3.0);
        assert_eq!(2.5f32.abs2(), 6.25);
        assert_eq!(RealElement::to_f64(7u16), 7.0);
        // num-traits casts
        assert_eq!(<f64 as NumCast>::from(3u8), Some(3.0));
        assert_eq!(<u8 as NumCast>::from(300i32), None);
        assert_eq!(
            <Complex64 as NumCast>::from(2i32),
            Some(Complex64::new(2.0, 0.0))
        );
    }
}
