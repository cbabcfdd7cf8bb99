//! Writing test plugins: an `AIGIS/AIGIS.config` and the files beside it.

use crate::process::write;
use std::path::Path;

/// A plugin at `dir` with this `AIGIS.config` and these files.
pub fn plugin(dir: &Path, config: &str, files: &[(&str, &str)]) {
    write(dir, "AIGIS/AIGIS.config", config);
    for (rel, contents) in files {
        write(dir, rel, contents);
    }
}

/// A core plugin at `dir` (ENTRYPOINT `{root}`) with this `AIGIS.core`.
pub fn core_plugin(dir: &Path, core: &str, files: &[(&str, &str)]) {
    plugin(dir, "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\n", files);
    write(dir, "AIGIS/AIGIS.core", core);
}

/// An external plugin at `dir` running `script` with `sh` (its pid goes to
/// `pid.txt` first).
pub fn shell_plugin(dir: &Path, script: &str) {
    plugin(
        dir,
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
        &[("run.sh", &format!("echo $$ > pid.txt\n{script}"))],
    );
}

/// `aigis.toml` in `base` listing `plugins` (name, source dir) under
/// `[external]`.
pub fn external_config(base: &Path, plugins: &[(String, String)]) {
    let mut text = String::from("[external]\n");
    for (name, dir) in plugins {
        text.push_str(&format!("{name} = \"{dir}\"\n"));
    }
    write(base, "aigis.toml", &text);
}

/// Two wheels of `tinypkg` (1.0 and 2.0) in `dir`, made with the system's
/// Python: what a local package index would serve, without a network.
pub fn tiny_wheels(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"
import base64, hashlib, sys, zipfile
out = sys.argv[1]
for version in ("1.0", "2.0"):
    files = {
        "tinypkg/__init__.py": "VERSION = %r\n" % version,
        "tinypkg-%s.dist-info/METADATA" % version:
            "Metadata-Version: 2.1\nName: tinypkg\nVersion: %s\n" % version,
        "tinypkg-%s.dist-info/WHEEL" % version:
            "Wheel-Version: 1.0\nGenerator: aigis-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    def digest(text):
        raw = hashlib.sha256(text.encode()).digest()
        return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    record = "".join("%s,%s,%d\n" % (p, digest(c), len(c.encode())) for p, c in files.items())
    files["tinypkg-%s.dist-info/RECORD" % version] = record + "tinypkg-%s.dist-info/RECORD,,\n" % version
    with zipfile.ZipFile("%s/tinypkg-%s-py3-none-any.whl" % (out, version), "w") as z:
        for p, c in files.items():
            z.writestr(p, c)
"#;
    let status = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(dir)
        .status()
        .expect("the system's python3");
    assert!(status.success(), "making the wheels failed");
}
