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
pub fn create(kind: NewType, name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
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
    println!(
        "created {} plugin {}\nadd it to your config:\n\n[{}]\n{name} = \"{}\"",
        kind.section(),
        root.display(),
        kind.section(),
        root.display()
    );
    Ok(root)
}
