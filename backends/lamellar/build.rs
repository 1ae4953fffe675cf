//! Link workarounds for the `network` feature (Lamellar's libfabric lamellae
//! with a vendored OpenPMIx); does nothing without it.
//!
//! - The static libfabric built by `lamellar-libfabric-sys` contains the
//!   `usnic` and `efa` providers, which need libnl and libefa; that crate does
//!   not link them. They are added here with `--no-as-needed`.
//! - `pmix-sys` builds OpenPMIx as a shared library in its `OUT_DIR` and asks
//!   for an rpath to it, but a dependency's `rustc-link-arg` does not reach
//!   the final link: without an rpath the system `libpmix.so.2` (Debian's
//!   PMIx 4, pulled in by Open MPI) loads and `PMIx_Value_free` is missing.
//!   `pmix-sys` publishes no metadata, so its output directory is found next
//!   to this crate's own (`<target>/<profile>/build/`); `pmix-sys` is a direct
//!   dependency under `network` so that its build script has run first.
//! - The hwloc prefix the OpenPMIx configure needs is set in the workspace's
//!   `.cargo/config.toml` (`HWLOC_DIR`), since a build script cannot set the
//!   environment of another crate's build script.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_NETWORK").is_none() {
        return;
    }
    for arg in ["-Wl,--no-as-needed", "-lnl-route-3", "-lnl-3", "-lefa"] {
        println!("cargo:rustc-link-arg={arg}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR = <target>/<profile>/build/distarray-lamellar-<hash>/out
    let build_dir = out_dir
        .parent()
        .and_then(Path::parent)
        .expect("OUT_DIR has no build/ grandparent");
    match pmix_lib_dir(build_dir) {
        Some(lib) => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
            println!(
                "cargo:rerun-if-changed={}",
                lib.join("libpmix.so").display()
            );
        }
        None => println!(
            "cargo:warning=network: no pmix-sys-*/out/lib/libpmix.so under {}; \
             run with LD_LIBRARY_PATH pointing at the vendored PMIx",
            build_dir.display()
        ),
    }
}

/// The newest `pmix-sys-*/out/lib` holding `libpmix.so` (several exist only
/// when pmix-sys was built with different features in this profile).
fn pmix_lib_dir(build_dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(build_dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pmix-sys-"))
        .map(|e| e.path().join("out").join("lib"))
        .filter_map(|lib| {
            let t = std::fs::metadata(lib.join("libpmix.so"))
                .ok()?
                .modified()
                .ok()?;
            Some((t, lib))
        })
        .collect();
    found.sort();
    if found.len() > 1 {
        println!(
            "cargo:warning=network: {} vendored PMIx builds found, using the newest: {}",
            found.len(),
            found.last().unwrap().1.display()
        );
    }
    found.pop().map(|(_, lib)| lib)
}
