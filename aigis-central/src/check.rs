//! `aigis check -c FILE`: everything `aigis run` would trip over, found
//! without starting a plugin. One line per problem; the caller exits
//! non-zero when there is any.
//!
//! It reads what would run: the existing `ext/<name>` when there is one (as
//! `run` keeps it), else the source itself (a git source is cloned into a
//! temporary directory, then removed).

use crate::daemon::python_entry;
use crate::home::Home;
use aigis_agent::fetch::{fetch_git, plugin_file};
use aigis_agent::install::{check_system_requirements, find_on_path};
use aigis_agent::python::resolve_launch;
use config::{Launch, PluginEntry, PluginSpec, Source};
use proto::PythonEntry;
use std::path::{Path, PathBuf};

/// `println!` that ignores a closed stdout (`aigis check | head -1`):
/// println! would panic, and the exit code is what scripts read anyway.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Returns the number of problems found (each already printed).
pub async fn check(config_path: &Path, home_flag: Option<&Path>) -> anyhow::Result<usize> {
    let mut problems = Vec::new();
    let config = match config::load_central(config_path) {
        Ok(c) => c,
        Err(e) => {
            say!("problem: {e}");
            return Ok(1);
        }
    };
    for w in &config.warnings {
        say!("warning: {w}");
    }
    // `run` would refuse to start: the embedded Python is not the one
    // `aigis` was built for.
    if let Err(e) = crate::core::check_libpython() {
        problems.push(e);
    }
    let home = Home::resolve(home_flag, config.aigis.home.as_deref())?;
    let scratch = std::env::temp_dir().join(format!("aigis-check-{}", std::process::id()));
    let mut python_checked = false;
    for entry in &config.plugins {
        let before = problems.len();
        if let Some(spec) = check_plugin(entry, &home, &scratch, &mut problems) {
            let installer = spec
                .requirements
                .as_ref()
                .and_then(|r| requirements_program(&r.command));
            if let Some(host) = spec.remote_host() {
                // Reachable, with the host key we know, we can log in, and
                // the host has the plugin's SYSTEM_REQUIREMENTS and the
                // program of its REQUIREMENTS_COMMAND.
                let mut wanted = spec.system_requirements.clone();
                wanted.extend(installer.clone().filter(|p| !p.contains('/')));
                match crate::ssh::probe(host, &wanted).await {
                    Ok(missing) => {
                        let (program, system): (Vec<_>, Vec<_>) = missing
                            .into_iter()
                            .partition(|m| installer.as_ref() == Some(m));
                        if !system.is_empty() {
                            problems.push(format!(
                                "plugin `{}`: missing system requirement(s) on PATH on {host}: {}",
                                entry.name,
                                system.join(", ")
                            ));
                        }
                        if let Some(p) = program.first() {
                            problems.push(format!(
                                "plugin `{}`: REQUIREMENTS_COMMAND runs `{p}`, which is not on PATH on {host}",
                                entry.name
                            ));
                        }
                    }
                    Err(e) => problems.push(format!("plugin `{}`: {e}", entry.name)),
                }
            } else if let Some(p) = installer.filter(|p| !p.contains('/')) {
                if find_on_path(&p).is_none() {
                    problems.push(format!(
                        "plugin `{}`: REQUIREMENTS_COMMAND runs `{p}`, which is not on PATH",
                        entry.name
                    ));
                }
            }
            if matches!(spec.launch, Launch::Python(_)) && !python_checked {
                python_checked = true;
                if let Err(e) = python3_usable() {
                    problems.push(format!("plugin `{}`: {e}", entry.name));
                }
            }
            if problems.len() == before {
                say!("ok: {} ({})", entry.name, spec.kind.as_str());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    for p in &problems {
        say!("problem: {p}");
    }
    if problems.is_empty() {
        say!(
            "{}: {} plugin(s) checked, no problems",
            config_path.display(),
            config.plugins.len()
        );
    } else {
        say!(
            "{}: {} problem(s) in {} plugin(s)",
            config_path.display(),
            problems.len(),
            config.plugins.len()
        );
    }
    Ok(problems.len())
}

/// Checks one plugin; returns its spec when its config could be read.
fn check_plugin(
    entry: &PluginEntry,
    home: &Home,
    scratch: &Path,
    problems: &mut Vec<String>,
) -> Option<PluginSpec> {
    let name = &entry.name;
    let root = home.ext().join(name);
    let mut problem = |p: String| problems.push(format!("plugin `{name}`: {p}"));

    // Where the plugin's files can be read now.
    let files: PathBuf = match &entry.source {
        _ if root.is_dir() => root.clone(),
        Source::LocalDir(dir) if dir.is_dir() => dir.clone(),
        Source::LocalDir(dir) => {
            problem(format!("source directory {} does not exist", dir.display()));
            return None;
        }
        Source::Git { url, reference } => {
            let into = scratch.join(name);
            match fetch_git(url, reference.as_deref(), &into) {
                Ok(_) => into,
                Err(e) => {
                    problem(format!("source unreachable: {e}"));
                    return None;
                }
            }
        }
    };
    if let (Source::Git { url, .. }, true) = (&entry.source, files == root) {
        if let Err(e) = reachable(url) {
            problem(format!(
                "source {url} is unreachable (the clone on disk would be used): {e}"
            ));
        }
    }
    // Errors name the file the operator can open: the source directory's,
    // or the copy in ext/ (a git clone's scratch copy is gone afterwards).
    let config_file = match &entry.source {
        Source::LocalDir(_) if files != root => files.join("AIGIS").join("AIGIS.config"),
        _ => root.join("AIGIS").join("AIGIS.config"),
    };
    // Only the plugin's own config is read: a parse error quotes it.
    let read = plugin_file(name, &files, "AIGIS.config").and_then(|path| {
        std::fs::read(&path)
            .map_err(|e| format!("cannot read {}: {e}", config_file.display()))
            .and_then(|bytes| config::decode_utf8(&config_file, &bytes).map_err(|e| e.to_string()))
    });
    let text = match read {
        Ok(t) => t,
        Err(e) => {
            problem(e);
            return None;
        }
    };
    if let Err(e) = plugin_file(name, &files, "AIGIS.core") {
        problems.push(e);
    }
    let spec = match config::parse_plugin(entry, &root, &config_file, &text) {
        Ok(s) => s,
        Err(e) => {
            problems.push(e.to_string());
            return None;
        }
    };
    for w in &spec.warnings {
        say!("warning: plugin `{name}`: {w}");
    }
    // Paths in the spec point under `root`; read them where the files are now.
    let here = |p: &Path| match p.strip_prefix(&root) {
        Ok(rel) => files.join(rel),
        Err(_) => p.to_path_buf(),
    };
    let wanted: Vec<_> = spec
        .secrets
        .iter()
        .map(|s| (s.key.clone(), s.dest.clone()))
        .collect();
    if let Err(e) = secrets::collect(name, &home.secrets().join(name), &root, &wanted) {
        problems.push(e.to_string());
    }
    let mut problem = |p: String| problems.push(format!("plugin `{name}`: {p}"));
    if !here(&spec.entrypoint).is_dir() {
        problem(format!(
            "ENTRYPOINT {} is not a directory",
            spec.entrypoint.display()
        ));
    }
    // On a LAN host these are checked there, when the agent installs it.
    let here_runs = spec.remote_host().is_none();
    if here_runs {
        if let Err(e) = check_system_requirements(&spec.system_requirements) {
            problem(e);
        }
    }
    if let Some(file) = spec.requirements.as_ref().and_then(|r| r.file.as_ref()) {
        if !here(file).is_file() {
            problem(format!(
                "REQUIREMENTS_FILE {} does not exist",
                file.display()
            ));
        }
    }
    match &spec.launch {
        Launch::None => {
            if !files.join("AIGIS").join("AIGIS.core").is_file() {
                problem(format!(
                    "{} is missing",
                    root.join("AIGIS/AIGIS.core").display()
                ));
            }
        }
        Launch::Python(launch) => {
            let launch = match python_entry(launch) {
                PythonEntry::File(f) => PythonEntry::File(here(&f)),
                module => module,
            };
            if let Err(e) = resolve_launch(&launch, &here(&spec.entrypoint)) {
                problem(e);
            }
        }
        Launch::Command(argv) => {
            let program = &argv[0];
            let found = if program.contains('/') {
                here(&spec.entrypoint.join(program)).is_file()
            } else {
                !here_runs || find_on_path(program).is_some()
            };
            if !found {
                problem(format!("LAUNCH program `{program}` is not found"));
            }
        }
    }
    Some(spec)
}

/// The program a `REQUIREMENTS_COMMAND` line runs: its first word after any
/// `NAME=value` assignments, unless that is a shell builtin (nothing to find).
fn requirements_program(command: &str) -> Option<String> {
    const BUILTINS: &[&str] = &[
        "cd", ".", "source", "set", "export", "exec", "command", "env", "true", ":", "test", "[",
        "if", "for", "while", "case", "{", "(",
    ];
    let word = command
        .split_whitespace()
        .find(|w| !w.contains('=') || w.starts_with('='))?
        .trim_matches(|c| c == '"' || c == '\'');
    (!word.is_empty() && !BUILTINS.contains(&word)).then(|| word.to_string())
}

/// Connects to a git remote without fetching anything.
fn reachable(url: &str) -> Result<(), String> {
    let mut remote = git2::Remote::create_detached(url).map_err(|e| e.message().to_string())?;
    remote
        .connect(git2::Direction::Fetch)
        .map_err(|e| e.message().to_string())?;
    let _ = remote.disconnect();
    Ok(())
}

/// `python3` exists and is 3.8 or newer.
fn python3_usable() -> Result<(), String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2]); sys.exit(sys.version_info < (3, 8))"])
        .output()
        .map_err(|e| format!("python3 is not available ({e}); internal plugins need Python 3.8 or newer"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 is {}; internal plugins need Python 3.8 or newer",
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::requirements_program;

    #[test]
    fn the_program_of_a_requirements_command() {
        let p = |c: &str| requirements_program(c);
        assert_eq!(
            p("python3.10 -m pip install -r").as_deref(),
            Some("python3.10")
        );
        assert_eq!(
            p("PIP_NO_CACHE=1 LANG=C pip install -r").as_deref(),
            Some("pip")
        );
        assert_eq!(p("./install.sh").as_deref(), Some("./install.sh"));
        assert_eq!(p("cd src && make"), None);
        assert_eq!(p("  "), None);
    }
}
