//! `aigis new`: a working plugin skeleton of each type, which `aigis check`
//! accepts and `aigis run` runs as it is.

use clap::ValueEnum;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NewType {
    Core,
    InternalLocal,
    InternalRemote,
    External,
}

impl NewType {
    fn section(self) -> &'static str {
        match self {
            NewType::Core => "core",
            NewType::InternalLocal => "internal-local",
            NewType::InternalRemote => "internal-remote",
            NewType::External => "external",
        }
    }
}

/// Writes the skeleton into `dir/name`; refuses to touch an existing path.
/// Prints the lines that add it to `config` (default: a config file in the
/// current directory), with the path as that file will read it: relative
/// to the file's directory.
pub fn create(
    kind: NewType,
    name: &str,
    dir: &Path,
    config: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        || name.eq_ignore_ascii_case("aigis")
    {
        anyhow::bail!(
            "`{name}` is not a usable plugin name: use letters, digits, `_` and `-` (and not `aigis`)"
        );
    }
    let root = dir.join(name);
    if root.exists() {
        anyhow::bail!(
            "{} already exists; choose another name or directory",
            root.display()
        );
    }
    let module = name.replace('-', "_");
    let files: Vec<(&str, String)> = match kind {
        NewType::Core => vec![
            (
                "AIGIS/AIGIS.config",
                "# Read by AIGIS (never executed). See the README's \"Writing a plugin\".\n\
                 PLUGIN_TYPE = \"core\"\nENTRYPOINT = \"{root}\"\n"
                    .to_string(),
            ),
            (
                "AIGIS/AIGIS.core",
                format!(
                    "\"\"\"What this plugin adds to the aigis namespace.\"\"\"\n\
                     import {module}_skills as {module}\n\n\
                     # Exposed as aigis.{module}.hello and aigis.{module}.GREETING.\n\
                     SKILLS = [\"{module}.hello\", \"{module}.GREETING\"]\n\n\n\
                     def cleanup():\n    \"\"\"Runs when AIGIS stops or reloads this plugin.\"\"\"\n"
                ),
            ),
            (
                "__SKILLS__",
                "\"\"\"The skills themselves: plain Python, no daemons or threads.\"\"\"\n\n\
                 GREETING = \"hello\"\n\n\n\
                 def hello(who=\"world\", logger=None):\n    \
                 \"\"\"Callables with a `logger` parameter get the plugin's logger.\"\"\"\n    \
                 if logger is not None:\n        logger.info(\"greeting %s\", who)\n    \
                 return \"%s, %s\" % (GREETING, who)\n"
                    .to_string(),
            ),
        ],
        NewType::InternalLocal | NewType::InternalRemote => {
            let host = if kind == NewType::InternalRemote {
                "# The host that runs it, over SSH: [user@]host[:port] or a ~/.ssh/config alias.\nHOST = \"localhost\"\n"
            } else {
                ""
            };
            vec![
                (
                    "AIGIS/AIGIS.config",
                    format!(
                        "# Read by AIGIS (never executed). See the README's \"Writing a plugin\".\n\
                         PLUGIN_TYPE = \"internal\"\nENTRYPOINT = \"{{root}}\"\nLAUNCH = \"main.py\"\n{host}\
                         # Restart at most 3 times if it exits.\nRESTART = 3\n"
                    ),
                ),
                (
                    "main.py",
                    "\"\"\"A long-running plugin: AIGIS calls launch(log) and keeps it running.\"\"\"\n\
                     import time\n\nimport aigis\n\n\n\
                     def launch(log):\n    \
                     log.info(\"started; core plugins reachable through `import aigis`\")\n    \
                     while True:\n        log.info(\"still here\")\n        time.sleep(60)\n"
                        .to_string(),
                ),
            ]
        }
        NewType::External => vec![
            (
                "AIGIS/AIGIS.config",
                "# Read by AIGIS (never executed). See the README's \"Writing a plugin\".\n\
                 PLUGIN_TYPE = \"external\"\nENTRYPOINT = \"{root}\"\n\
                 # Any program: this is its command line, run in ENTRYPOINT.\n\
                 LAUNCH = [\"sh\", \"run.sh\"]\nSYSTEM_REQUIREMENTS = [\"sh\"]\nRESTART = 3\n"
                    .to_string(),
            ),
            (
                "run.sh",
                "#!/bin/sh\n# Everything printed here reaches the AIGIS log.\n\
                 echo \"$AIGIS_PLUGIN started in $(pwd)\"\n\
                 while true; do\n    echo \"still here\"\n    sleep 60\ndone\n"
                    .to_string(),
            ),
        ],
    };
    for (rel, text) in files {
        let rel = if rel == "__SKILLS__" {
            format!("{module}_skills.py")
        } else {
            rel.to_string()
        };
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
    }
    let (base, whose) = match config {
        Some(file) => {
            let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
            (
                parent.unwrap_or(Path::new(".")).to_path_buf(),
                format!("add it to {}", file.display()),
            )
        }
        None => (
            PathBuf::from("."),
            "add it to your config (this path is for a config file in the current directory; \
             for another, give it with -c FILE)"
                .to_string(),
        ),
    };
    let source = source_string(&path_for_config(&root, &base));
    // A JSON string is a valid TOML basic string (same escapes).
    let value = serde_json::to_string(&source)?;
    let text = format!(
        "created {} plugin {}\n{whose}:\n\n[{}]\n{name} = {value}\n",
        kind.section(),
        root.display(),
        kind.section(),
    );
    use std::io::Write;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(root)
}

/// `target` as a config file in `base` names it: relative to `base` when
/// the two share a directory below `/`, else absolute. Both are resolved
/// first (symlinks, `..`), as the system does when AIGIS opens the path.
fn path_for_config(target: &Path, base: &Path) -> PathBuf {
    let Ok(target) = target.canonicalize() else {
        return std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
    };
    let Ok(base) = base.canonicalize() else {
        return target; // a directory that does not exist yet: be exact
    };
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common <= 1 {
        return target; // only `/` in common
    }
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    if rel.as_os_str().is_empty() {
        rel.push(".");
    }
    rel
}

/// The path as a config source: a relative path that could read as an
/// scp-style git address (`user@host:path`) gets a leading `./`.
fn source_string(path: &Path) -> String {
    let s = path.to_string_lossy().into_owned();
    if path.is_relative() && !s.starts_with('.') && s.contains(':') {
        format!("./{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_paths_are_relative_to_the_config_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        for d in ["plugins/tool", "conf/deep", "plugins/a@b:c"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let rel = |t: &str, b: &str| path_for_config(&base.join(t), &base.join(b));
        assert_eq!(rel("plugins/tool", "."), Path::new("plugins/tool"));
        assert_eq!(rel("plugins/tool", "conf"), Path::new("../plugins/tool"));
        assert_eq!(
            rel("plugins/tool", "conf/deep"),
            Path::new("../../plugins/tool")
        );
        assert_eq!(rel("plugins/./tool", "conf/.."), Path::new("plugins/tool"));
        assert_eq!(rel("plugins/tool", "plugins/tool"), Path::new("."));
        // Nothing in common but `/`: absolute.
        assert_eq!(path_for_config(&base, Path::new("/")), base);
        assert_eq!(source_string(&rel("plugins/a@b:c", "plugins")), "./a@b:c");
        assert_eq!(source_string(Path::new("../x:y")), "../x:y");
    }
}
