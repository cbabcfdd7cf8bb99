//! A plugin's `AIGIS/AIGIS.config`: options, types, `{root}`, and the kind
//! the plugin resolves to given its section in the central config.

use crate::pylit::{self, Assignment, Spanned, Value};
use crate::{ConfigError, HostSpec, PluginEntry, PluginKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Launch {
    /// Core plugins run no process.
    None,
    /// Internal plugins: where `def launch(log)` (or `def launch()`) is.
    Python(PythonLaunch),
    /// External plugins: the command line.
    Command(Vec<String>),
}

/// An internal plugin's `LAUNCH`: the original implementation's module name
/// (`"main"`, imported with `ENTRYPOINT` on `sys.path`) or the spec's Python
/// file (`"{root}/main.py"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PythonLaunch {
    /// A dotted module name, e.g. `main` or `app.server`.
    Module(String),
    /// A Python file, absolute.
    File(PathBuf),
}

/// How an internal plugin's `import aigis` reaches the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoreAccess {
    /// The AigisProxy: every call runs in central's live core.
    Proxy,
    /// A copy of the core plugins loaded into the plugin's own process.
    Copy,
}

impl CoreAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            CoreAccess::Proxy => "proxy",
            CoreAccess::Copy => "copy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    pub command: String,
    pub file: Option<PathBuf>,
}

impl Requirements {
    /// The line run with `sh -c`: the command, then the file, quoted.
    pub fn shell_line(&self) -> String {
        match &self.file {
            Some(f) => format!("{} {}", self.command, shell_quote(&f.to_string_lossy())),
            None => self.command.clone(),
        }
    }
}

/// `s` single-quoted for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    pub key: String,
    pub dest: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginSpec {
    pub name: String,
    pub kind: PluginKind,
    pub root: PathBuf,
    pub config_file: PathBuf,
    pub entrypoint: PathBuf,
    /// `None` when absent or local, except for internal-remote plugins.
    pub host: Option<HostSpec>,
    pub launch: Launch,
    /// Internal plugins only: proxy or copied core (see [`CoreAccess`]).
    pub core: Option<CoreAccess>,
    pub system_requirements: Vec<String>,
    pub requirements: Option<Requirements>,
    pub secrets: Vec<SecretSpec>,
    /// `RESTART`: `None` never restarts it.
    pub restart: Option<Restart>,
    pub warnings: Vec<String>,
}

/// `RESTART`: how often a plugin that exits on its own is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// `RESTART = N`: at most N times (the budget earned back by a run of
    /// 60 s).
    Times(u32),
    /// `RESTART = "always"`: after every exit, with a growing delay.
    Always,
    /// `RESTART = "on-failure"`: after every exit that is not a success.
    OnFailure,
}

impl PluginSpec {
    /// The host to reach over SSH: `HOST` unless it is absent or local
    /// (`localhost`, `127.0.0.1`, `::1`), which run under the local agent.
    pub fn remote_host(&self) -> Option<&HostSpec> {
        self.host.as_ref().filter(|h| !h.is_local())
    }
}

const KNOWN: &[&str] = &[
    "PLUGIN_TYPE",
    "ENTRYPOINT",
    "SYSTEM_REQUIREMENTS",
    "REQUIREMENTS_COMMAND",
    "REQUIREMENT_COMMAND",
    "REQUIREMENTS_FILE",
    "REQUIREMENT_FILE",
    "SECRETS",
    "RESTART",
    "HOST",
    "LAUNCH",
    "CORE",
];

/// The known option an unknown `name` was most likely meant to be: the
/// nearest by edit distance (case ignored, a swap of two neighbours counts
/// as one edit), if it is near enough to be a typo (`RESTARTS`,
/// `ENTRYPIONT`, `host`) rather than another word.
fn closest_option(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_uppercase();
    let allowed = (name.chars().count() / 3).clamp(1, 3);
    KNOWN
        .iter()
        .map(|known| (edit_distance(&name, known), *known))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

/// Optimal string alignment distance: insertions, deletions,
/// substitutions and swaps of adjacent characters each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Three rows: two back (for swaps), one back, and the current one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut last: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut last, row);
    }
    last[b.len()]
}

const TYPES: &str = "\"core\", \"internal\", \"internal-local\", \"internal-remote\", \"external\"";

/// Reads `text` (the contents of `config_file`) for `entry`, whose files are
/// at `root` on the host that runs it.
pub fn parse_plugin(
    entry: &PluginEntry,
    root: &Path,
    config_file: &Path,
    text: &str,
) -> Result<PluginSpec, ConfigError> {
    let name = entry.name.as_str();
    let fail = |msg: String| ConfigError::new(config_file, msg).plugin(name);
    let assignments = pylit::parse(text).map_err(|e| {
        let err = fail(e.message).at((e.line, e.column));
        match e.option {
            Some(o) => err.option(o),
            None => err,
        }
    })?;

    let mut warnings = Vec::new();
    let mut options: Vec<&Assignment> = Vec::new();
    for a in &assignments {
        if !KNOWN.contains(&a.name.as_str()) {
            let hint = match closest_option(&a.name) {
                Some(known) => format!("; did you mean `{known}`?"),
                None => String::new(),
            };
            warnings.push(format!(
                "{}:{}: unknown option `{}` ignored{hint}",
                config_file.display(),
                a.line,
                a.name
            ));
            continue;
        }
        if let Some(i) = options.iter().position(|o| o.name == a.name) {
            warnings.push(format!(
                "{}:{}: option `{}` is set again (first on line {}); the last value wins",
                config_file.display(),
                a.line,
                a.name,
                options[i].line
            ));
            options.remove(i);
        }
        options.push(a);
    }
    let opts = Options {
        options,
        file: config_file,
        plugin: name,
        root,
    };

    let type_value = opts.required_str("PLUGIN_TYPE", entry)?;
    let host = match opts.get("HOST") {
        Some(a) => match &a.value.value {
            Value::None => None,
            Value::Str(s) => Some(HostSpec::parse(s).map_err(|m| opts.err(a, m))?),
            other => return Err(opts.type_err(a, "a string like \"user@host:port\"", other)),
        },
        None => None,
    };
    let kind = resolve_kind(&opts, entry, &type_value, host.as_ref(), &mut warnings)?;

    let entrypoint = opts.path("ENTRYPOINT", true)?.unwrap_or_default();
    let entrypoint = opts.within_root("ENTRYPOINT", absolute(root, entrypoint))?;
    let launch = match kind {
        PluginKind::Core => {
            if let Some(a) = opts.get("LAUNCH") {
                warnings.push(format!(
                    "{}:{}: option `LAUNCH` ignored: core plugins run no process",
                    config_file.display(),
                    a.line
                ));
            }
            Launch::None
        }
        PluginKind::External => Launch::Command(opts.launch_command()?),
        PluginKind::InternalLocal | PluginKind::InternalRemote => {
            Launch::Python(opts.python_launch(&entrypoint)?)
        }
    };
    let core = core_access(&opts, kind, &type_value, &mut warnings)?;

    let command = opts.either_str("REQUIREMENTS_COMMAND", "REQUIREMENT_COMMAND")?;
    let file = opts.either_path("REQUIREMENTS_FILE", "REQUIREMENT_FILE")?;
    let requirements = match (command, file) {
        (Some(command), file) => Some(Requirements {
            command,
            file: file.map(|(_, f)| absolute(root, f)),
        }),
        (None, Some((a, _))) => {
            warnings.push(format!(
                "{}:{}: option `{}` ignored: REQUIREMENTS_COMMAND is not set, so nothing installs from it (e.g. REQUIREMENTS_COMMAND = \"pip install -r\")",
                config_file.display(),
                a.line,
                a.name
            ));
            None
        }
        (None, None) => None,
    };

    let restart = match opts.get("RESTART") {
        None => None,
        Some(a) => match &a.value.value {
            Value::None => None,
            Value::Int(n) if *n >= 0 => Some(Restart::Times(
                u32::try_from(*n).map_err(|_| opts.err(a, format!("{n} is too large")))?,
            )),
            Value::Int(n) => return Err(opts.err(a, format!("expected an int >= 0, found {n}"))),
            Value::Str(s) if s == "always" => Some(Restart::Always),
            Value::Str(s) if s == "on-failure" => Some(Restart::OnFailure),
            Value::Str(s) => {
                return Err(opts.err(
                    a,
                    format!(
                        "expected a number of restarts, \"always\" or \"on-failure\", found {s:?}"
                    ),
                ))
            }
            other => {
                return Err(opts.type_err(
                    a,
                    "an int (the number of restarts), \"always\" or \"on-failure\"",
                    other,
                ))
            }
        },
    };

    Ok(PluginSpec {
        name: name.to_string(),
        kind,
        root: root.to_path_buf(),
        config_file: config_file.to_path_buf(),
        entrypoint,
        host: host.filter(|h| kind == PluginKind::InternalRemote || !h.is_local()),
        launch,
        core,
        system_requirements: opts.string_list("SYSTEM_REQUIREMENTS")?,
        requirements,
        secrets: opts.secrets()?,
        restart,
        warnings,
    })
}

/// The plugin's type. `PLUGIN_TYPE` decides it; the central config's section
/// only orders loading. A disagreement with one sensible reading is a
/// warning that says which reading was taken; one with none is an error.
fn resolve_kind(
    opts: &Options<'_>,
    entry: &PluginEntry,
    declared: &str,
    host: Option<&HostSpec>,
    warnings: &mut Vec<String>,
) -> Result<PluginKind, ConfigError> {
    let a = opts
        .get("PLUGIN_TYPE")
        .ok_or_else(|| opts.missing("PLUGIN_TYPE"))?;
    let section = entry.section;
    let remote = host.is_some_and(|h| !h.is_local());
    let kind = match declared {
        "core" => PluginKind::Core,
        "external" => PluginKind::External,
        "internal-local" => PluginKind::InternalLocal,
        "internal-remote" => PluginKind::InternalRemote,
        // The original's one word: where it runs follows from HOST (a local
        // HOST under [internal-remote] still goes through SSH, as listed).
        "internal" if remote => PluginKind::InternalRemote,
        "internal" if host.is_some() && section == PluginKind::InternalRemote => {
            PluginKind::InternalRemote
        }
        "internal" => PluginKind::InternalLocal,
        other => {
            return Err(opts.err(
                a,
                format!("unknown plugin type \"{other}\"; expected one of {TYPES}"),
            ))
        }
    };
    match kind {
        PluginKind::InternalRemote if host.is_none() => {
            return Err(opts.err(
                a,
                "PLUGIN_TYPE \"internal-remote\" runs on another host, but HOST is not set; \
                 set HOST = \"[user@]host[:port]\", or use PLUGIN_TYPE \"internal\" to run it here"
                    .into(),
            ))
        }
        PluginKind::Core | PluginKind::InternalLocal if remote => {
            let h = opts.get("HOST").unwrap_or(a);
            let hint = if kind == PluginKind::InternalLocal {
                "; PLUGIN_TYPE \"internal\" runs it on HOST"
            } else {
                ""
            };
            return Err(opts.err(
                h,
                format!(
                    "PLUGIN_TYPE \"{declared}\" runs on the central host, but HOST {} is another machine{hint}",
                    host.map(ToString::to_string).unwrap_or_default()
                ),
            ));
        }
        _ => {}
    }
    if kind != section {
        warnings.push(format!(
            "{}:{}: PLUGIN_TYPE \"{declared}\" but listed under [{}] in the central config: \
             runs as {} (the type comes from PLUGIN_TYPE; the section only orders loading)",
            opts.file.display(),
            a.line,
            section.as_str(),
            kind.as_str()
        ));
    }
    Ok(kind)
}

/// How an internal plugin reaches the core. The plugin's own file decides,
/// since its code was written against one of the two: the original's
/// `PLUGIN_TYPE = "internal"` gave every plugin the AigisProxy to the live
/// core; the spec's `"internal-local"` copies the core into the plugin's
/// process. `CORE = "proxy" | "copy"` overrides either.
fn core_access(
    opts: &Options<'_>,
    kind: PluginKind,
    declared: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<CoreAccess>, ConfigError> {
    let chosen = match opts.opt_str("CORE")? {
        None => None,
        Some((a, s)) => match s.as_str() {
            "proxy" => Some((a, CoreAccess::Proxy)),
            "copy" => Some((a, CoreAccess::Copy)),
            other => {
                return Err(opts.err(
                    a,
                    format!("unknown core access \"{other}\"; expected \"proxy\" (calls run in central's live core) or \"copy\" (the core plugins loaded into the plugin's own process)"),
                ))
            }
        },
    };
    match kind {
        PluginKind::Core | PluginKind::External => {
            if let Some((a, _)) = chosen {
                warnings.push(format!(
                    "{}:{}: option `CORE` ignored: only internal plugins reach the core",
                    opts.file.display(),
                    a.line
                ));
            }
            Ok(None)
        }
        PluginKind::InternalRemote => match chosen {
            Some((a, CoreAccess::Copy)) => Err(opts.err(
                a,
                "\"copy\" needs the core plugins' files on the plugin's host; a plugin on another host reaches the core through the proxy (CORE = \"proxy\", the default)".into(),
            )),
            _ => Ok(Some(CoreAccess::Proxy)),
        },
        PluginKind::InternalLocal => Ok(Some(match chosen {
            Some((_, access)) => access,
            None if declared == "internal" => CoreAccess::Proxy,
            None => CoreAccess::Copy,
        })),
    }
}

/// A Python identifier (ASCII letters, digits, `_`; not starting with a digit).
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// `p` with its `.` and `..` taken as written (no link is looked at).
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in p.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn absolute(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

struct Options<'a> {
    options: Vec<&'a Assignment>,
    file: &'a Path,
    plugin: &'a str,
    root: &'a Path,
}

impl<'a> Options<'a> {
    fn get(&self, name: &str) -> Option<&'a Assignment> {
        self.options.iter().copied().find(|a| a.name == name)
    }

    fn err_at(&self, v: &Spanned, option: &str, msg: String) -> ConfigError {
        ConfigError::new(self.file, msg)
            .plugin(self.plugin)
            .at((v.line, v.column))
            .option(option)
    }

    fn err(&self, a: &Assignment, msg: String) -> ConfigError {
        self.err_at(&a.value, &a.name, msg)
    }

    fn type_err(&self, a: &Assignment, expected: &str, found: &Value) -> ConfigError {
        self.err(
            a,
            format!("expected {expected}, found {}", found.type_name()),
        )
    }

    fn missing(&self, name: &str) -> ConfigError {
        ConfigError::new(
            self.file,
            format!("required option `{name}` is missing (or None)"),
        )
        .plugin(self.plugin)
        .option(name)
    }

    fn require(&self, name: &str) -> Result<&'a Assignment, ConfigError> {
        match self.get(name) {
            Some(a) if a.value.value != Value::None => Ok(a),
            _ => Err(self.missing(name)),
        }
    }

    fn required_str(&self, name: &str, _entry: &PluginEntry) -> Result<String, ConfigError> {
        let a = self.require(name)?;
        match &a.value.value {
            Value::Str(s) => Ok(s.clone()),
            other => Err(self.type_err(a, &format!("a string, one of {TYPES}"), other)),
        }
    }

    fn opt_str(&self, name: &str) -> Result<Option<(&'a Assignment, String)>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => match &a.value.value {
                Value::None => Ok(None),
                Value::Str(s) => Ok(Some((a, s.clone()))),
                other => Err(self.type_err(a, "a string", other)),
            },
        }
    }

    fn root_sub(&self, s: &str) -> String {
        s.replace("{root}", &self.root.to_string_lossy())
    }

    /// A path option with `{root}` substituted.
    /// `path`, an option's value, as written but for `.` and `..`; an
    /// error unless it stays inside the plugin's root: a plugin works in
    /// its own tree, never in another plugin's (`{root}/../other/conf`).
    fn within_root(&self, name: &str, path: PathBuf) -> Result<PathBuf, ConfigError> {
        let inside = lexical(&path);
        if inside.starts_with(lexical(self.root)) {
            return Ok(inside);
        }
        let a = self.require(name)?;
        Err(self.err(
            a,
            format!(
                "{} leaves the plugin's directory {}; it must be {{root}} or a directory inside it",
                path.display(),
                self.root.display()
            ),
        ))
    }

    fn path(&self, name: &str, required: bool) -> Result<Option<PathBuf>, ConfigError> {
        if required {
            self.require(name)?;
        }
        match self.opt_str(name)? {
            Some((a, s)) if s.trim().is_empty() => Err(self.err(a, "must not be empty".into())),
            Some((_, s)) => Ok(Some(PathBuf::from(self.root_sub(&s)))),
            None => Ok(None),
        }
    }

    fn either<T>(
        &self,
        a: &str,
        b: &str,
        get: impl Fn(&str) -> Result<Option<T>, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        if let (Some(_), Some(second)) = (self.get(a), self.get(b)) {
            return Err(self.err(
                second,
                format!("`{a}` and `{b}` are the same option; set only one"),
            ));
        }
        match get(a)? {
            Some(v) => Ok(Some(v)),
            None => get(b),
        }
    }

    fn either_str(&self, a: &str, b: &str) -> Result<Option<String>, ConfigError> {
        self.either(a, b, |n| {
            Ok(match self.opt_str(n)? {
                Some((a, s)) if s.trim().is_empty() => {
                    return Err(self.err(a, "must not be empty".into()))
                }
                other => other.map(|(_, s)| s),
            })
        })
    }

    fn either_path(
        &self,
        a: &str,
        b: &str,
    ) -> Result<Option<(&'a Assignment, PathBuf)>, ConfigError> {
        self.either(a, b, |n| {
            Ok(self
                .path(n, false)?
                .and_then(|p| self.get(n).map(|a| (a, p))))
        })
    }

    fn string_items(&self, a: &Assignment, what: &str) -> Result<Vec<String>, ConfigError> {
        let items = match &a.value.value {
            Value::List(items) | Value::Tuple(items) => items,
            other => return Err(self.type_err(a, &format!("a list of strings ({what})"), other)),
        };
        items
            .iter()
            .map(|item| match &item.value {
                Value::Str(s) => Ok(s.clone()),
                other => Err(self.err_at(
                    item,
                    &a.name,
                    format!(
                        "expected a list of strings ({what}), found {} in it",
                        other.type_name()
                    ),
                )),
            })
            .collect()
    }

    fn string_list(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(a) if a.value.value == Value::None => Ok(Vec::new()),
            Some(a) => self.string_items(a, "program names"),
        }
    }

    /// An internal plugin's `LAUNCH`: a module name, or a Python file
    /// (anything with a `/` or ending in `.py`), relative to `ENTRYPOINT`.
    fn python_launch(&self, entrypoint: &Path) -> Result<PythonLaunch, ConfigError> {
        let a = self.require("LAUNCH")?;
        let Value::Str(s) = &a.value.value else {
            return Err(self.type_err(
                a,
                "a string: a module name like \"main\" or a Python file like \"{root}/main.py\"",
                &a.value.value,
            ));
        };
        let s = self.root_sub(s.trim());
        if s.is_empty() {
            return Err(self.err(a, "must not be empty".into()));
        }
        if s.contains('/') || s.ends_with(".py") {
            return Ok(PythonLaunch::File(absolute(entrypoint, PathBuf::from(s))));
        }
        if s.split('.').all(is_identifier) {
            return Ok(PythonLaunch::Module(s));
        }
        Err(self.err(
            a,
            format!("\"{s}\" is neither a module name like \"main\" nor a Python file like \"{{root}}/main.py\""),
        ))
    }

    fn launch_command(&self) -> Result<Vec<String>, ConfigError> {
        let a = self.require("LAUNCH")?;
        let argv = self.string_items(a, "the command line, e.g. [\"python3\", \"main.py\"]")?;
        if argv.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(self.err(a, "the command line is empty".into()));
        }
        Ok(argv)
    }

    fn secrets(&self) -> Result<Vec<SecretSpec>, ConfigError> {
        let Some(a) = self.get("SECRETS") else {
            return Ok(Vec::new());
        };
        let items = match &a.value.value {
            Value::None => return Ok(Vec::new()),
            Value::Dict(items) => items,
            Value::Set(_) => {
                return Err(self.err(
                    a,
                    "expected a dict {\"file\": \"dest/\"} mapping each secret file to its destination, found a set (write `\"file\": \"destination\"` for each file)".into(),
                ))
            }
            other => {
                return Err(self.type_err(a, "a dict of \"secret file\": \"destination\"", other))
            }
        };
        items
            .iter()
            .map(|(k, v)| {
                let key = match &k.value {
                    Value::Str(s) => s.clone(),
                    other => {
                        return Err(self.err_at(
                            k,
                            "SECRETS",
                            format!(
                                "expected string keys (secret file names), found {}",
                                other.type_name()
                            ),
                        ))
                    }
                };
                let dest = match &v.value {
                    Value::Str(s) if !s.trim().is_empty() => self.root_sub(s),
                    Value::Str(_) => {
                        return Err(self.err_at(
                            v,
                            "SECRETS",
                            format!("the destination of `{key}` is empty"),
                        ))
                    }
                    other => {
                        return Err(self.err_at(
                            v,
                            "SECRETS",
                            format!(
                                "expected a string destination for `{key}`, found {}",
                                other.type_name()
                            ),
                        ))
                    }
                };
                Ok(SecretSpec {
                    key,
                    dest: absolute(self.root, PathBuf::from(dest)),
                })
            })
            .collect()
    }
}
