//! Rebuilds when the embedded Python (`python/`, outside this package)
//! changes: cargo tracks a file that `include_str!` takes from outside the
//! package by its absolute path, so a target dir shared with a checkout
//! elsewhere (CI's fresh clone) would otherwise keep the other checkout's
//! Python.

fn main() {
    for file in ["loader.py", "shim.py", "proxy.py"] {
        println!("cargo:rerun-if-changed=../python/{file}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
