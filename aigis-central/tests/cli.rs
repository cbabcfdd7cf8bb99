//! The `aigis` command line, run as a user would. (Having an integration
//! test here also makes `cargo test --workspace` build the `aigis` binary
//! that the end-to-end suite drives.)

use std::process::Command;

fn aigis(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aigis"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run aigis");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn help_names_the_run_command() {
    let (ok, out) = aigis(&["--help"]);
    assert!(ok, "{out}");
    assert!(out.contains("run"), "{out}");
}

#[test]
fn a_missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.aigis");
    let (ok, out) = aigis(&["run", "-c", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("nope.aigis"), "{out}");
    assert!(out.contains("cannot read the config file"), "{out}");
}
