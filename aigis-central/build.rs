//! Links the `aigis` binary to the exact libpython pyo3 was configured with:
//! an rpath to its directory, so a Python installed outside the linker's
//! default paths (pyenv, a prefix under /opt) is found at run time. Also
//! records which Python that was (`AIGIS_PYTHON_BUILT`, `major.minor`, and
//! `AIGIS_PYTHON_BUILT_WITH`, the interpreter pyo3 asked), so that `aigis`
//! can refuse a different libpython at run time with a message that says so.
//!
//! And rebuilds when the embedded Python changes: cargo tracks a file that
//! `include_str!` takes from outside the package by its absolute path, so a
//! target dir shared with a checkout elsewhere (CI's fresh clone) would
//! otherwise keep the other checkout's Python.

fn main() {
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    let version = config.version();
    println!(
        "cargo:rustc-env=AIGIS_PYTHON_BUILT={}.{}",
        version.major, version.minor
    );
    println!(
        "cargo:rustc-env=AIGIS_PYTHON_BUILT_WITH={}",
        config.executable().unwrap_or("python3")
    );
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    for file in ["loader.py", "central.py", "proxy.py", "shell.py"] {
        println!("cargo:rerun-if-changed=../python/{file}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
