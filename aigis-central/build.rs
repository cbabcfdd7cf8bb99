//! Links the `aigis` binary to the exact libpython pyo3 was configured with:
//! an rpath to its directory, so a Python installed outside the linker's
//! default paths (pyenv, a prefix under /opt) is found at run time. Also
//! records which Python that was (`AIGIS_PYTHON_BUILT`, `major.minor`, and
//! `AIGIS_PYTHON_BUILT_WITH`, the interpreter pyo3 asked), so that `aigis`
//! can refuse a different libpython at run time with a message that says so.
//!
//! Records where that Python keeps its standard library
//! (`AIGIS_PYTHON_HOME`, its `sys.base_prefix`, and `:sys.base_exec_prefix`
//! when that differs): the embedded interpreter's home is set from it, so
//! it never takes another Python's library from the `python3` on `PATH`.
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
    let home = config
        .executable()
        .and_then(python_home)
        .unwrap_or_default();
    println!("cargo:rustc-env=AIGIS_PYTHON_HOME={home}");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    for file in ["loader.py", "central.py", "proxy.py", "shell.py"] {
        println!("cargo:rerun-if-changed=../python/{file}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// The home of the Python `executable` (a pyenv shim resolves to its real
/// one), as `PYTHONHOME` spells it: `prefix`, or `prefix:exec_prefix`.
fn python_home(executable: &str) -> Option<String> {
    let out = std::process::Command::new(executable)
        .args([
            "-c",
            "import sys; p, e = sys.base_prefix, sys.base_exec_prefix; print(p if p == e else p + ':' + e)",
        ])
        .output()
        .ok()?;
    let home = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !home.is_empty()).then_some(home)
}
