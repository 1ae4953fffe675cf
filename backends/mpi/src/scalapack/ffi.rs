//! The BLACS, PBLAS and ScaLAPACK entry points used here (Debian's
//! `libscalapack-openmpi` / `libscalapack-mpich`, Fortran calling
//! convention: every argument by pointer; each character argument's hidden
//! length, which gfortran appends by value, is passed too).

use std::os::raw::{c_char, c_int};

use distarray::{Complex32, Complex64};
use mpi::ffi::MPI_Comm;

/// A Fortran hidden character length (gfortran: `size_t`).
pub(super) type FLen = usize;

extern "C" {
    pub(super) fn Csys2blacs_handle(comm: MPI_Comm) -> c_int;
    pub(super) fn Cfree_blacs_system_handle(handle: c_int);
    pub(super) fn Cblacs_gridinit(
        ctxt: *mut c_int,
        order: *const c_char,
        nprow: c_int,
        npcol: c_int,
    );
    pub(super) fn Cblacs_gridexit(ctxt: c_int);

    /// Fills a descriptor without checks (ScaLAPACK's `DESCSET`).
    pub(super) fn descset_(
        desc: *mut c_int,
        m: *const c_int,
        n: *const c_int,
        mb: *const c_int,
        nb: *const c_int,
        irsrc: *const c_int,
        icsrc: *const c_int,
        ctxt: *const c_int,
        lld: *const c_int,
    );
    pub(super) fn descinit_(
        desc: *mut c_int,
        m: *const c_int,
        n: *const c_int,
        mb: *const c_int,
        nb: *const c_int,
        irsrc: *const c_int,
        icsrc: *const c_int,
        ictxt: *const c_int,
        lld: *const c_int,
        info: *mut c_int,
    );
}

macro_rules! scalapack_fns {
    ($t:ty, $getrf:ident, $trsm:ident, $lapiv:ident, $potrf:ident, $potrs:ident, $gemm:ident, $tran:ident) => {
        extern "C" {
            pub(super) fn $getrf(
                m: *const c_int,
                n: *const c_int,
                a: *mut $t,
                ia: *const c_int,
                ja: *const c_int,
                desca: *const c_int,
                ipiv: *mut c_int,
                info: *mut c_int,
            );
            /// `B := alpha B op(A)⁻¹` or `alpha op(A)⁻¹ B` for a triangular `A`
            /// (PBLAS, C: the hidden lengths are ignored).
            pub(super) fn $trsm(
                side: *const c_char,
                uplo: *const c_char,
                transa: *const c_char,
                diag: *const c_char,
                m: *const c_int,
                n: *const c_int,
                alpha: *const $t,
                a: *const $t,
                ia: *const c_int,
                ja: *const c_int,
                desca: *const c_int,
                b: *mut $t,
                ib: *const c_int,
                jb: *const c_int,
                descb: *const c_int,
                side_len: FLen,
                uplo_len: FLen,
                transa_len: FLen,
                diag_len: FLen,
            );
            /// Applies the pivots `ipiv` (or their inverse) to the rows or
            /// columns of `A`.
            pub(super) fn $lapiv(
                direc: *const c_char,
                rowcol: *const c_char,
                pivroc: *const c_char,
                m: *const c_int,
                n: *const c_int,
                a: *mut $t,
                ia: *const c_int,
                ja: *const c_int,
                desca: *const c_int,
                ipiv: *const c_int,
                ip: *const c_int,
                jp: *const c_int,
                descip: *const c_int,
                iwork: *mut c_int,
                direc_len: FLen,
                rowcol_len: FLen,
                pivroc_len: FLen,
            );
            pub(super) fn $potrf(
                uplo: *const c_char,
                n: *const c_int,
                a: *mut $t,
                ia: *const c_int,
                ja: *const c_int,
                desca: *const c_int,
                info: *mut c_int,
                uplo_len: FLen,
            );
            pub(super) fn $potrs(
                uplo: *const c_char,
                n: *const c_int,
                nrhs: *const c_int,
                a: *const $t,
                ia: *const c_int,
                ja: *const c_int,
                desca: *const c_int,
                b: *mut $t,
                ib: *const c_int,
                jb: *const c_int,
                descb: *const c_int,
                info: *mut c_int,
                uplo_len: FLen,
            );
            pub(super) fn $gemm(
                transa: *const c_char,
                transb: *const c_char,
                m: *const c_int,
                n: *const c_int,
                k: *const c_int,
                alpha: *const $t,
                a: *const $t,
                ia: *const c_int,
                ja: *const c_int,
                desca: *const c_int,
                b: *const $t,
                ib: *const c_int,
                jb: *const c_int,
                descb: *const c_int,
                beta: *const $t,
                c: *mut $t,
                ic: *const c_int,
                jc: *const c_int,
                descc: *const c_int,
                transa_len: FLen,
                transb_len: FLen,
            );
            /// `C := beta C + alpha Aᵀ` (plain transpose).
            pub(super) fn $tran(
                m: *const c_int,
                n: *const c_int,
                alpha: *const $t,
                a: *const $t,
                ia: *const c_int,
                ja: *const c_int,
                desca: *const c_int,
                beta: *const $t,
                c: *mut $t,
                ic: *const c_int,
                jc: *const c_int,
                descc: *const c_int,
            );
        }
    };
}

scalapack_fns!(f32, psgetrf_, pstrsm_, pslapiv_, pspotrf_, pspotrs_, psgemm_, pstran_);
scalapack_fns!(f64, pdgetrf_, pdtrsm_, pdlapiv_, pdpotrf_, pdpotrs_, pdgemm_, pdtran_);
scalapack_fns!(Complex32, pcgetrf_, pctrsm_, pclapiv_, pcpotrf_, pcpotrs_, pcgemm_, pctranu_);
scalapack_fns!(Complex64, pzgetrf_, pztrsm_, pzlapiv_, pzpotrf_, pzpotrs_, pzgemm_, pztranu_);

macro_rules! conj_tran {
    ($($t:ty => $tranc:ident),*) => {
        extern "C" {
            $(
                /// `C := beta C + alpha Aᴴ` (conjugate transpose).
                pub(super) fn $tranc(
                    m: *const c_int,
                    n: *const c_int,
                    alpha: *const $t,
                    a: *const $t,
                    ia: *const c_int,
                    ja: *const c_int,
                    desca: *const c_int,
                    beta: *const $t,
                    c: *mut $t,
                    ic: *const c_int,
                    jc: *const c_int,
                    descc: *const c_int,
                );
            )*
        }
    };
}

conj_tran!(Complex32 => pctranc_, Complex64 => pztranc_);
