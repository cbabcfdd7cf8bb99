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
