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
    /// Internal plugins: a Python file with `def launch(log)`.
    Python(PathBuf),
    /// External plugins: the command line.
    Command(Vec<String>),
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
    pub system_requirements: Vec<String>,
    pub requirements: Option<Requirements>,
    pub secrets: Vec<SecretSpec>,
    pub restart: Option<u32>,
    pub warnings: Vec<String>,
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
];

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
            warnings.push(format!(
                "{}:{}: unknown option `{}` ignored",
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
    let kind = resolve_kind(&opts, entry, &type_value, host.as_ref())?;

    let entrypoint = opts.path("ENTRYPOINT", true)?.unwrap_or_default();
    let entrypoint = absolute(root, entrypoint);
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
            let a = opts.require("LAUNCH")?;
            let Value::Str(s) = &a.value.value else {
                return Err(opts.type_err(
                    a,
                    "a string (the path of the Python file with `def launch(log)`)",
                    &a.value.value,
                ));
            };
            if s.trim().is_empty() {
                return Err(opts.err(a, "must not be empty".into()));
            }
            Launch::Python(absolute(&entrypoint, PathBuf::from(opts.root_sub(s))))
        }
    };

    let command = opts.either_str("REQUIREMENTS_COMMAND", "REQUIREMENT_COMMAND")?;
    let file = opts.either_path("REQUIREMENTS_FILE", "REQUIREMENT_FILE")?;
    let requirements = match (command, file) {
        (Some(command), file) => Some(Requirements {
            command,
            file: file.map(|(_, f)| absolute(root, f)),
        }),
        (None, Some((a, _))) => {
            return Err(opts.err(a, "is set but REQUIREMENTS_COMMAND is not; say which command installs from it (e.g. \"pip install -r\")".into()))
        }
        (None, None) => None,
    };

    let restart = match opts.get("RESTART") {
        None => None,
        Some(a) => match &a.value.value {
            Value::None => None,
            Value::Int(n) if *n >= 0 => {
                Some(u32::try_from(*n).map_err(|_| opts.err(a, format!("{n} is too large")))?)
            }
            Value::Int(n) => return Err(opts.err(a, format!("expected an int >= 0, found {n}"))),
            other => return Err(opts.type_err(a, "an int (the number of restarts)", other)),
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
        system_requirements: opts.string_list("SYSTEM_REQUIREMENTS")?,
        requirements,
        secrets: opts.secrets()?,
        restart,
        warnings,
    })
}

fn resolve_kind(
    opts: &Options<'_>,
    entry: &PluginEntry,
    declared: &str,
    host: Option<&HostSpec>,
) -> Result<PluginKind, ConfigError> {
    let a = opts
        .get("PLUGIN_TYPE")
        .ok_or_else(|| opts.missing("PLUGIN_TYPE"))?;
    let section = entry.section;
    let remote = host.is_some_and(|h| !h.is_local());
    let contradiction = |what: &str| {
        opts.err(
            a,
            format!(
                "PLUGIN_TYPE \"{declared}\" contradicts the plugin's section [{}] in the central config{what}",
                section.as_str()
            ),
        )
    };
    let kind = match declared {
        "core" => PluginKind::Core,
        "external" => PluginKind::External,
        "internal-local" => PluginKind::InternalLocal,
        "internal-remote" => PluginKind::InternalRemote,
        "internal" => match section {
            PluginKind::InternalRemote => PluginKind::InternalRemote,
            PluginKind::InternalLocal if remote => {
                return Err(contradiction(&format!(
                    ": HOST {} is another machine, so list the plugin under [internal-remote]",
                    host.map(ToString::to_string).unwrap_or_default()
                )))
            }
            PluginKind::InternalLocal => PluginKind::InternalLocal,
            _ => return Err(contradiction("")),
        },
        other => {
            return Err(opts.err(
                a,
                format!("unknown plugin type \"{other}\"; expected one of {TYPES}"),
            ))
        }
    };
    if kind != section {
        return Err(contradiction(""));
    }
    match kind {
        PluginKind::InternalRemote if host.is_none() => Err(opts.missing("HOST")),
        PluginKind::Core | PluginKind::InternalLocal if remote => {
            let h = opts.get("HOST").unwrap_or(a);
            Err(opts.err(
                h,
                format!(
                    "{} plugins run on the central host; HOST must be absent or local",
                    kind.as_str()
                ),
            ))
        }
        _ => Ok(kind),
    }
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
