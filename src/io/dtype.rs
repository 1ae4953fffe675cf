//! distarray's element kinds as Zarr v3 data type names (the names numpy,
//! `zarr-python` and `h5py` users know: `float64`, `complex128`, ...).

use crate::comm::ElementKind;

/// The Zarr v3 data type of `kind`. `isize` / `usize` are stored as the
/// 64-bit types (their size on every platform distarray supports).
pub(crate) fn zarr_name(kind: ElementKind) -> &'static str {
    match kind {
        ElementKind::I8 => "int8",
        ElementKind::I16 => "int16",
        ElementKind::I32 => "int32",
        ElementKind::I64 => "int64",
        ElementKind::Isize => isize_name(),
        ElementKind::U8 => "uint8",
        ElementKind::U16 => "uint16",
        ElementKind::U32 => "uint32",
        ElementKind::U64 => "uint64",
        ElementKind::Usize => usize_name(),
        ElementKind::F32 => "float32",
        ElementKind::F64 => "float64",
        ElementKind::C32 => "complex64",
        ElementKind::C64 => "complex128",
    }
}

/// `int64` on 64-bit targets, `int32` on 32-bit ones.
fn isize_name() -> &'static str {
    if std::mem::size_of::<isize>() == 8 {
        "int64"
    } else {
        "int32"
    }
}

/// `uint64` on 64-bit targets, `uint32` on 32-bit ones.
fn usize_name() -> &'static str {
    if std::mem::size_of::<usize>() == 8 {
        "uint64"
    } else {
        "uint32"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_numpy() {
        assert_eq!(zarr_name(ElementKind::F64), "float64");
        assert_eq!(zarr_name(ElementKind::C32), "complex64");
        assert_eq!(zarr_name(ElementKind::C64), "complex128");
        assert_eq!(zarr_name(ElementKind::U8), "uint8");
        assert_eq!(zarr_name(ElementKind::Usize), "uint64");
    }
}
