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
use config::{Launch, PluginEntry, PluginKind, PluginSpec, Source};
use proto::PythonEntry;
use std::collections::BTreeSet;
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
    // `aigis` was built for, or does not start (its standard library gone).
    if let Err(e) = crate::core::probe() {
        problems.push(e);
    }
    if !aigis_agent::confine::supported() {
        say!(
            "warning: this kernel has no Landlock (Linux 5.13+): plugins on this host run \
             unconfined, able to read AIGIS's home, each other's files and ~/.ssh"
        );
    }
    let home = Home::resolve(home_flag, config.aigis.home.as_deref())?;
    // Random and 0700: a name another user can guess could be made first,
    // as a link to somewhere a clone would then write.
    let scratch_dir = tempfile::Builder::new()
        .prefix("aigis-check-")
        .tempdir()
        .map_err(|e| anyhow::anyhow!("cannot make a scratch directory: {e}"))?;
    let scratch = scratch_dir.path().to_path_buf();
    let mut python_checked = false;
    for entry in &config.plugins {
        let before = problems.len();
        if let Some(Checked { spec, stood_in }) =
            check_plugin(entry, &home, &scratch, &mut problems)
        {
            // A Python command runs in an environment AIGIS makes, where
            // its own names (`pip3.7`) are: the host needs a `python3` that
            // can make one.
            let envs = spec.requirements.as_ref().is_some_and(|r| {
                aigis_agent::venv::is_python_command(&r.command)
                    && !config.aigis.system_python_for(&entry.name)
            });
            let installer = spec.requirements.as_ref().and_then(|r| {
                if envs {
                    Some("python3".to_string())
                } else {
                    requirements_program(&r.command)
                }
            });
            if stood_in.contains("HOST") {
                // Where it runs is unknown: nothing host-bound to look at.
            } else if let Some(host) = spec.remote_host() {
                // Reachable, with the host key we know, we can log in, and
                // the host has the plugin's SYSTEM_REQUIREMENTS and the
                // program of its REQUIREMENTS_COMMAND.
                let mut wanted = spec.system_requirements.clone();
                wanted.extend(installer.clone().filter(|p| !p.contains('/')));
                match crate::ssh::probe(host, &wanted, envs).await {
                    Ok(mut missing) => {
                        if let Some(at) = missing.iter().position(|m| m == "VENV_MISSING") {
                            missing.remove(at);
                            problems.push(format!(
                                "plugin `{}`: on {host}: {}",
                                entry.name,
                                aigis_agent::venv::no_venv("python3")
                            ));
                        }
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
                    // Refused (host key, login) is not unreachable: say which.
                    Err(e) if e.is_unreachable() => problems.push(format!(
                        "plugin `{}`: HOST {host} is unreachable: {e}",
                        entry.name
                    )),
                    Err(e) => problems.push(format!("plugin `{}`: {e}", entry.name)),
                }
            } else if let Some(p) = installer.filter(|p| !p.contains('/')) {
                if find_on_path(&p).is_none() {
                    problems.push(format!(
                        "plugin `{}`: REQUIREMENTS_COMMAND runs `{p}`, which is not on PATH",
                        entry.name
                    ));
                } else if envs && !can_make_envs() {
                    problems.push(format!(
                        "plugin `{}`: {}",
                        entry.name,
                        aigis_agent::venv::no_venv("python3")
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
    drop(scratch_dir);
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

/// A plugin's config as `check` read it.
struct Checked {
    spec: PluginSpec,
    /// Options that were wrong (each already reported) and that a harmless
    /// stand-in replaced, so the rest could still be checked; what depends
    /// on them is not checked.
    stood_in: BTreeSet<String>,
}

/// Checks one plugin; returns its spec when its config could be read.
fn check_plugin(
    entry: &PluginEntry,
    home: &Home,
    scratch: &Path,
    problems: &mut Vec<String>,
) -> Option<Checked> {
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
    let (spec, stood_in) = read_config(entry, &root, &config_file, &text, problems)?;
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
    // As the operator finds the file: in the source directory or ext/, not
    // in a scratch clone that is gone once check is done.
    let shown = |p: &Path| match p.strip_prefix(&files) {
        Ok(rel) if files.starts_with(scratch) => root.join(rel),
        _ => p.to_path_buf(),
    };
    let entrypoint_known = !stood_in.contains("ENTRYPOINT");
    let launch_known = entrypoint_known && !stood_in.contains("LAUNCH");
    if entrypoint_known && !here(&spec.entrypoint).is_dir() {
        problem(format!(
            "ENTRYPOINT {} is not a directory",
            spec.entrypoint.display()
        ));
    }
    // On a LAN host these are checked there, when the agent installs it.
    let here_runs = spec.remote_host().is_none();
    if here_runs && !stood_in.contains("HOST") {
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
    let core_file = files.join("AIGIS").join("AIGIS.core");
    match &spec.launch {
        Launch::None => {
            if !core_file.is_file() {
                problem(format!(
                    "{} is missing",
                    root.join("AIGIS/AIGIS.core").display()
                ));
            }
        }
        Launch::Python(_) if !launch_known => {}
        Launch::Python(launch) => {
            let launch = match python_entry(launch) {
                PythonEntry::File(f) => PythonEntry::File(here(&f)),
                module => module,
            };
            match resolve_launch(&launch, &here(&spec.entrypoint)) {
                Ok(file) => {
                    if let Err(e) = compiles(&file, &shown(&file)) {
                        problem(format!("LAUNCH {e}"));
                    }
                }
                Err(e) => problem(e),
            }
        }
        Launch::Command(_) if !launch_known => {}
        Launch::Command(argv) => {
            let cwd = here(&spec.entrypoint);
            for e in launch_paths(argv, &cwd, here_runs) {
                problem(e);
            }
        }
    }
    // The core imports it; a syntax error fails the load.
    if spec.kind != PluginKind::External && core_file.is_file() {
        if let Err(e) = compiles(&core_file, &shown(&core_file)) {
            problem(e);
        }
    }
    Some(Checked { spec, stood_in })
}

/// Reads the plugin's config and, unlike `run`, does not stop at the first
/// wrong option: each one is reported, taken out (a required one replaced
/// by a stand-in) and the file read again, so that every problem of the
/// file is listed and the rest of the plugin can still be checked. Stops
/// at a problem that names no option (a syntax error) or that the
/// stand-in itself causes.
fn read_config(
    entry: &PluginEntry,
    root: &Path,
    config_file: &Path,
    text: &str,
    problems: &mut Vec<String>,
) -> Option<(PluginSpec, BTreeSet<String>)> {
    let lines = text.lines().count();
    let mut text = text.to_string();
    let mut stood_in = BTreeSet::new();
    loop {
        let e = match config::parse_plugin(entry, root, config_file, &text) {
            Ok(mut spec) => {
                // Warnings about the stand-ins' own lines are ours, not the file's.
                let prefix = format!("{}:", config_file.display());
                spec.warnings.retain(|w| {
                    w.strip_prefix(&prefix)
                        .and_then(|rest| rest.split(':').next()?.parse::<usize>().ok())
                        .is_none_or(|line| line <= lines)
                });
                return Some((spec, stood_in));
            }
            Err(e) => e,
        };
        let option = e.option.clone();
        if option.as_ref().is_some_and(|o| stood_in.contains(o)) {
            return None; // the stand-in's doing: already reported
        }
        problems.push(e.to_string());
        let option = option?;
        text = stand_in(&text, &option, entry)?;
        stood_in.insert(option);
    }
}

/// `text` without any assignment of `option` (its lines kept, empty, so
/// every other line keeps its number); a required option gets a harmless
/// value at the end. `None` if the file cannot be taken apart safely.
fn stand_in(text: &str, option: &str, entry: &PluginEntry) -> Option<String> {
    use config::pylit::{self, Value};
    if text.contains('\r') || text.starts_with('\u{feff}') {
        return None;
    }
    let assignments = pylit::parse(text).ok()?;
    // Byte offset of a 1-based line and column (columns count characters).
    let offset = |line: usize, column: usize| -> Option<usize> {
        let start: usize = text
            .split_inclusive('\n')
            .take(line - 1)
            .map(str::len)
            .sum();
        let rest = text.get(start..)?;
        Some(
            start
                + rest
                    .char_indices()
                    .nth(column - 1)
                    .map_or(rest.len(), |(i, _)| i),
        )
    };
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (i, a) in assignments.iter().enumerate() {
        if a.name != option {
            continue;
        }
        let start = offset(a.line, a.column)?;
        let end = match assignments.get(i + 1) {
            Some(next) => offset(next.line, next.column)?,
            None => text.len(),
        };
        out.push_str(text.get(at..start)?);
        // Only its line breaks are kept (a next option on the same line,
        // after a `;`, then starts the line: Python allows no indent).
        out.extend(text.get(start..end)?.chars().filter(|&c| c == '\n'));
        at = end;
    }
    out.push_str(text.get(at..)?);
    let declared = assignments
        .iter()
        .rev()
        .find(|a| a.name == "PLUGIN_TYPE")
        .and_then(|a| match &a.value.value {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        });
    let value = match option {
        "PLUGIN_TYPE" => Some(format!("'{}'", entry.section.as_str())),
        "ENTRYPOINT" => Some("'{root}'".to_string()),
        "LAUNCH" if declared == Some("external") || declared.is_none() => {
            Some("['true']".to_string())
        }
        "LAUNCH" => Some("'aigis_check_stand_in'".to_string()),
        // Where it runs is unknown: nothing host-bound is checked.
        "HOST" => Some("'localhost'".to_string()),
        _ => None,
    };
    if let Some(value) = value {
        out.push_str(&format!("\n{option} = {value}\n"));
    }
    // The rest must read as it did: same options, same places.
    let left = pylit::parse(&out).ok()?;
    let kept = |list: &[pylit::Assignment]| -> Vec<(String, usize)> {
        list.iter()
            .filter(|a| a.name != option)
            .map(|a| (a.name.clone(), a.line))
            .collect()
    };
    (kept(&left) == kept(&assignments)).then_some(out)
}

/// An external plugin's `LAUNCH`, word by word: the program exists and is
/// executable (on `PATH` when it has no `/`), and every argument that is a
/// path (has a `/`, taken from ENTRYPOINT `cwd`) exists. Absolute paths
/// and `PATH` are the host's business when the plugin runs elsewhere.
fn launch_paths(argv: &[String], cwd: &Path, here_runs: bool) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut problems = Vec::new();
    for (i, word) in argv.iter().enumerate() {
        let path_like = word.contains('/')
            && !word.starts_with('-')
            && !word.contains('=')
            && !word.contains("://");
        if i > 0 && !path_like {
            continue;
        }
        if i == 0 && !word.contains('/') {
            if here_runs && find_on_path(word).is_none() {
                problems.push(format!("LAUNCH program `{word}` is not found on PATH"));
            }
            continue;
        }
        if Path::new(word).is_absolute() && !here_runs {
            continue;
        }
        let path = cwd.join(word);
        let meta = std::fs::metadata(&path);
        match (i, meta) {
            (0, Ok(m)) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
            (0, Ok(m)) if m.is_file() => problems.push(format!(
                "LAUNCH program `{word}` ({}) is not executable: chmod +x it, or name its \
                 interpreter first (LAUNCH = [\"sh\", \"{word}\"])",
                path.display()
            )),
            (0, Ok(_)) => problems.push(format!(
                "LAUNCH program `{word}` ({}) is not a file",
                path.display()
            )),
            (0, Err(_)) => problems.push(format!(
                "LAUNCH program `{word}` does not exist ({} from ENTRYPOINT)",
                path.display()
            )),
            (_, Ok(_)) => {}
            (_, Err(_)) => problems.push(format!(
                "LAUNCH argument {i} `{word}` does not exist ({} from ENTRYPOINT)",
                path.display()
            )),
        }
    }
    problems
}

/// Python compiles `file`, and nothing in it runs. The error is
/// `shown:line:column: does not compile: message` (`shown` is where the
/// operator finds the file). A machine without `python3` is reported
/// elsewhere; nothing to say here.
fn compiles(file: &Path, shown: &Path) -> Result<(), String> {
    const COMPILE: &str = "import sys\n\
        try:\n    compile(open(sys.argv[1], 'rb').read(), sys.argv[1], 'exec', dont_inherit=True)\n\
        except SyntaxError as e:\n    print(':%s:%s' % (e.lineno, e.offset)); print(e.msg); sys.exit(1)\n\
        except Exception as e:\n    print(''); print('%s: %s' % (type(e).__name__, e)); sys.exit(1)\n";
    let Some(python) = find_on_path("python3") else {
        return Ok(());
    };
    let mut cmd = std::process::Command::new(python);
    cmd.arg("-I").arg("-c").arg(COMPILE).arg(file);
    match output_within(cmd, std::time::Duration::from_secs(30)) {
        Ok((true, _)) => Ok(()),
        Ok((false, out)) => {
            let mut lines = out.lines();
            let at = lines.next().unwrap_or_default().trim();
            let why = lines.next().unwrap_or("python3 failed").trim();
            Err(format!("{}{at}: does not compile: {why}", shown.display()))
        }
        Err(e) => Err(format!("{}: could not be compiled: {e}", shown.display())),
    }
}

/// Runs `cmd` for at most `limit`; (success, stdout).
fn output_within(
    mut cmd: std::process::Command,
    limit: std::time::Duration,
) -> Result<(bool, String), String> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take();
    // Read while it runs: a full pipe must not stall it.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut out);
        }
        out
    });
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("python3 took more than {} s", limit.as_secs()));
            }
            None => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    };
    let out = reader.join().unwrap_or_default();
    Ok((status.success(), String::from_utf8_lossy(&out).into_owned()))
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
    aigis_agent::fetch::git_ready();
    let mut remote = git2::Remote::create_detached(url).map_err(|e| e.message().to_string())?;
    remote
        .connect(git2::Direction::Fetch)
        .map_err(|e| e.message().to_string())?;
    let _ = remote.disconnect();
    Ok(())
}

/// `python3` exists and is 3.8 or newer.
/// Whether this host can make plugins' Python environments.
fn can_make_envs() -> bool {
    std::process::Command::new("sh")
        .args(["-c", aigis_agent::venv::VENV_PROBE])
        .output()
        .is_ok_and(|o| !String::from_utf8_lossy(&o.stdout).contains("VENV_MISSING"))
}

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
