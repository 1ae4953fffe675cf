//! Compiles the crate's C shim (`csrc/shim.c`) against the MPI library
//! that the `mpi` crate uses, found the same way (build-probe-mpi:
//! `MPI_PKG_CONFIG`, `CRAY_MPICH_DIR`, `MPICC`, then `mpicc` and
//! pkg-config), and tells the crate which MPI family its headers belong to
//! (`DISTARRAY_MPI_FAMILY` and `cfg(mpi_family = ...)`: `openmpi`, `mpich`
//! or `other`, used by the tests to pick the launcher and the
//! launcher-specific cases; the library itself never branches on it).

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
}
