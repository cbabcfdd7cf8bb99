//! Links the `aigis` binary to the exact libpython pyo3 was configured with:
//! an rpath to its directory, so a Python installed outside the linker's
//! default paths (pyenv, a prefix under /opt) is found at run time.

fn main() {
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
