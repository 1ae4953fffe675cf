//! Compiles the crate's C shim (`csrc/shim.c`) against the MPI library
//! that the `mpi` crate uses, found the same way (build-probe-mpi:
//! `MPI_PKG_CONFIG`, `CRAY_MPICH_DIR`, `MPICC`, then `mpicc` and
//! pkg-config), and tells the crate which MPI family its headers belong to
//! (`DISTARRAY_MPI_FAMILY` and `cfg(mpi_family = ...)`: `openmpi`, `mpich`
//! or `other`, used by the tests to pick the launcher and the
//! launcher-specific cases; the library itself never branches on it).
//!
//! With the `hdf5` feature it also checks that the HDF5 library that
//! `hdf5-metno-sys` found (its include directory, `DEP_HDF5_INCLUDE`) is
//! not built for the other MPI family: Debian installs one parallel HDF5
//! per MPI (`/usr/lib/x86_64-linux-gnu/hdf5/openmpi`, `.../hdf5/mpich`) and
//! pkg-config's `hdf5` names only one of them, so an MPICH build must set
//! `HDF5_DIR` to the MPICH one; linking both MPIs into one program would
//! crash at start-up instead of failing here.

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-changed=csrc/family.c");
    for var in ["MPI_PKG_CONFIG", "CRAY_MPICH_DIR", "MPICC"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let lib = match build_probe_mpi::probe() {
        Ok(lib) => lib,
        Err(errors) => {
            let reasons: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!(
                "distarray-mpi: no MPI library found (set MPICC to the MPI compiler \
                 wrapper, e.g. MPICC=mpicc.mpich, or MPI_PKG_CONFIG to its pkg-config \
                 name):\n{}",
                reasons.join("\n")
            );
        }
    };
    let build = || {
        let mut b = cc::Build::new();
        if let Some(mpicc) = &lib.mpicc {
            b.compiler(mpicc);
        } else {
            for dir in &lib.include_paths {
                b.include(dir);
            }
        }
        b
    };
    build()
        .file("csrc/shim.c")
        .warnings(true)
        .compile("distarray_mpi_shim");

    let expanded = build().file("csrc/family.c").expand();
    let text = String::from_utf8_lossy(&expanded);
    let family = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("DISTARRAY_MPI_FAMILY="))
        .unwrap_or("other")
        .trim()
        .to_string();
    println!("cargo:rustc-env=DISTARRAY_MPI_FAMILY={family}");
    println!("cargo::rustc-check-cfg=cfg(mpi_family, values(\"openmpi\", \"mpich\", \"other\"))");
    println!("cargo:rustc-cfg=mpi_family=\"{family}\"");
    if std::env::var_os("CARGO_FEATURE_HDF5").is_some() {
        check_hdf5_family(&family);
    }
    if std::env::var_os("CARGO_FEATURE_SCALAPACK").is_some() {
        link_scalapack(&family);
    }
}

/// Links the ScaLAPACK built for the MPI family in use (Debian:
/// `libscalapack-openmpi-dev` / `libscalapack-mpich-dev`), or the one named
/// by `SCALAPACK_LIB` (e.g. `scalapack` for a generic build).
fn link_scalapack(family: &str) {
    println!("cargo:rerun-if-env-changed=SCALAPACK_LIB");
    let lib = std::env::var("SCALAPACK_LIB").unwrap_or_else(|_| match family {
        "mpich" => "scalapack-mpich".into(),
        _ => "scalapack-openmpi".into(),
    });
    println!("cargo:rustc-link-lib={lib}");
}

/// Panics if the HDF5 headers `hdf5-metno-sys` found belong to a parallel
/// HDF5 built for another MPI family than `family` (judged by the Debian-
/// style directory name, `.../hdf5/openmpi` or `.../hdf5/mpich`; other
/// layouts are trusted).
fn check_hdf5_family(family: &str) {
    println!("cargo:rerun-if-env-changed=HDF5_DIR");
    let include = std::env::var("DEP_HDF5_INCLUDE").unwrap_or_default();
    let lower = include.to_lowercase();
    let hdf5_family = if lower.contains("openmpi") {
        "openmpi"
    } else if lower.contains("mpich") {
        "mpich"
    } else {
        return;
    };
    if family != "other" && hdf5_family != family {
        panic!(
            "distarray-mpi: feature `hdf5`: the HDF5 found at {include} is built for {hdf5_family}, \
             but this build uses {family}; point HDF5_DIR at the parallel HDF5 of {family} \
             (Debian: HDF5_DIR=/usr/lib/x86_64-linux-gnu/hdf5/{family}, package \
             libhdf5-{family}-dev) and use a separate target directory"
        );
    }
}
