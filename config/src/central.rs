//! The central TOML file: which plugins run, from where, in which order.

use crate::{decode_utf8, line_col, ConfigError, PluginKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    LocalDir(PathBuf),
    Git {
        url: String,
        reference: Option<String>,
    },
}

/// `[aigis]`: this project's own settings.
#[derive(Debug, Clone, Default)]
pub struct AigisSettings {
    pub home: Option<PathBuf>,
    /// A plugin's log file is rotated when it grows past this many bytes.
    pub log_max_bytes: Option<u64>,
    /// How many rotated files (`<plugin>.log.1` …) are kept.
    pub log_keep: Option<u32>,
    /// Where AIGIS keeps its files on LAN hosts (`~` is the remote user's
    /// home; `{host}` is replaced by the HOST). Default `~/.aigis`.
    pub remote_dir: Option<String>,
    /// `aigis-agent` binaries for other hosts, by `<arch>-<os>` (e.g.
    /// `aarch64-linux`); the one beside `aigis` serves its own kind.
    pub agents: Vec<(String, PathBuf)>,
    /// Which plugins a plugin may reload beyond itself and core plugins
    /// (`may_reload = { "bot" = ["web", "db"] }`, `"*"` for any).
    pub may_reload: Vec<(String, Vec<String>)>,
    /// Lines per second a plugin may put on the console (its log file
    /// keeps everything); default 500.
    pub console_lines_per_s: Option<u32>,
    /// Plugins whose output never reaches the console (only their file).
    pub quiet: Vec<String>,
    /// The user every plugin runs as (`user = "aigis-plugins"`), unless
    /// [`AigisSettings::users`] names one for it. Only from this file, never
    /// from a plugin's repository.
    pub user: Option<String>,
    /// A user per plugin (`users = { "web" = "aigis-web" }`).
    pub users: Vec<(String, String)>,
    /// Plugins that install with the host's Python, as their command says,
    /// instead of an environment of their own (`system_python = ["old"]`,
    /// or `true` for every plugin).
    pub system_python: PluginSet,
    /// Plugins that run without Landlock's confinement
    /// (`unconfined = ["legacy"]`, or `true` for every plugin).
    pub unconfined: PluginSet,
}

/// A setting that names some plugins, all of them (`true`) or none
/// (`false`, or absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PluginSet {
    #[default]
    None,
    All,
    Only(Vec<String>),
}

impl PluginSet {
    pub fn contains(&self, plugin: &str) -> bool {
        match self {
            PluginSet::None => false,
            PluginSet::All => true,
            PluginSet::Only(names) => names.iter().any(|n| n == plugin),
        }
    }
}

impl AigisSettings {
    /// Whether `plugin` installs with the host's Python, not an
    /// environment of its own.
    pub fn system_python_for(&self, plugin: &str) -> bool {
        self.system_python.contains(plugin)
    }

    /// The user `plugin` runs as on its host; `None`: the agent's own.
    pub fn user_for(&self, plugin: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|(p, _)| p == plugin)
            .map(|(_, u)| u.as_str())
            .or(self.user.as_deref())
    }
}

#[derive(Debug, Clone)]
pub struct PluginEntry {
    pub name: String,
    pub section: PluginKind,
    pub source: Source,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct CentralConfig {
    pub path: PathBuf,
    pub aigis: AigisSettings,
    /// In load order: core, internal-local, internal-remote, external; file
    /// order within a section.
    pub plugins: Vec<PluginEntry>,
    /// What was ignored (unknown sections), with file and line.
    pub warnings: Vec<String>,
}

const SECTIONS: &str =
    "[aigis], [core], [internal-local] (or [internal]), [internal-remote], [external]";

pub fn load_central(path: &Path) -> Result<CentralConfig, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::new(path, format!("cannot read the config file: {e}")))?;
    parse_central(&decode_utf8(path, &bytes)?, path)
}

pub fn parse_central(text: &str, path: &Path) -> Result<CentralConfig, ConfigError> {
    let err = |at: usize, msg: String| ConfigError::new(path, msg).at(line_col(text, at));
    let doc = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        err(at, format!("invalid TOML: {}", e.message().trim()))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut aigis = AigisSettings::default();
    let mut by_section: [Vec<PluginEntry>; 4] = Default::default();
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut warnings = Vec::new();
    // `[aigis] users` keys, with where they are, checked against the plugins.
    let mut user_keys: Vec<(String, usize)> = Vec::new();

    for (key, value) in doc.get_ref() {
        let section = key.get_ref().as_ref();
        let at = key.span().start;
        let DeValue::Table(table) = value.get_ref() else {
            return Err(err(
                at,
                format!(
                    "`{section}` must be a section like [{section}]; expected one of {SECTIONS}"
                ),
            ));
        };
        let kind = match section {
            "aigis" => {
                (aigis, user_keys) = parse_aigis(table, base, &err)?;
                continue;
            }
            "core" => PluginKind::Core,
            "internal-local" | "internal" => PluginKind::InternalLocal,
            "internal-remote" => PluginKind::InternalRemote,
            "external" => PluginKind::External,
            other => {
                // The original ignored sections it did not know; so do we, aloud.
                let (line, _) = line_col(text, at);
                warnings.push(format!(
                    "{}:{line}: unknown section [{other}] ignored ({} entr{}); expected one of {SECTIONS}",
                    path.display(),
                    table.len(),
                    if table.len() == 1 { "y" } else { "ies" }
                ));
                continue;
            }
        };
        for (name, source) in table {
            let name_at = name.span().start;
            let name = name.get_ref().as_ref();
            let line = line_col(text, name_at).0;
            check_name(name).map_err(|m| err(name_at, m))?;
            if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
                return Err(err(
                    name_at,
                    format!("duplicate plugin name `{name}` (first defined on line {first}); names are unique across all sections"),
                ));
            }
            seen.push((name.to_string(), line));
            let DeValue::String(s) = source.get_ref() else {
                return Err(err(
                    source.span().start,
                    format!(
                        "plugin `{name}`: expected a string (a git URL or a directory), found {}",
                        type_name(source.get_ref())
                    ),
                ));
            };
            let source = parse_source(s, base)
                .map_err(|m| err(source.span().start, format!("plugin `{name}`: {m}")))?;
            by_section[kind as usize].push(PluginEntry {
                name: name.to_string(),
                section: kind,
                source,
                line,
            });
        }
    }
    for (name, at) in user_keys {
        if !seen.iter().any(|(n, _)| *n == name) {
            warnings.push(format!(
                "{}:{}: [aigis] users names `{name}`, which is not a plugin of this file",
                path.display(),
                line_col(text, at).0
            ));
        }
    }
    Ok(CentralConfig {
        path: path.to_path_buf(),
        aigis,
        plugins: by_section.into_iter().flatten().collect(),
        warnings,
    })
}

/// `[aigis]`, and the plugin names `users` gives a user to (with where).
fn parse_aigis(
    table: &DeTable<'_>,
    base: &Path,
    err: &dyn Fn(usize, String) -> ConfigError,
) -> Result<(AigisSettings, Vec<(String, usize)>), ConfigError> {
    let mut settings = AigisSettings::default();
    let mut user_keys = Vec::new();
    for (key, value) in table {
        match key.get_ref().as_ref() {
            "user" => {
                let DeValue::String(u) = value.get_ref() else {
                    return Err(err(
                        value.span().start,
                        format!(
                            "[aigis] user: expected a user name (a string), found {}",
                            type_name(value.get_ref())
                        ),
                    ));
                };
                check_user(u).map_err(|m| err(value.span().start, format!("[aigis] user: {m}")))?;
                settings.user = Some(u.to_string());
            }
            "users" => {
                let DeValue::Table(t) = value.get_ref() else {
                    return Err(err(
                        value.span().start,
                        format!(
                            "[aigis] users: expected a table like {{ \"web\" = \"aigis-web\" }}, found {}",
                            type_name(value.get_ref())
                        ),
                    ));
                };
                for (plugin, user) in t {
                    let name = plugin.get_ref().as_ref();
                    check_name(name)
                        .map_err(|m| err(plugin.span().start, format!("[aigis] users: {m}")))?;
                    let DeValue::String(u) = user.get_ref() else {
                        return Err(err(
                            user.span().start,
                            format!(
                                "[aigis] users.{name}: expected a user name (a string), found {}",
                                type_name(user.get_ref())
                            ),
                        ));
                    };
                    check_user(u).map_err(|m| {
                        err(user.span().start, format!("[aigis] users.{name}: {m}"))
                    })?;
                    user_keys.push((name.to_string(), plugin.span().start));
                    settings.users.push((name.to_string(), u.to_string()));
                }
            }
            "home" => match value.get_ref() {
                DeValue::String(s) if !s.trim().is_empty() => {
                    settings.home = Some(local_path(s.trim(), base))
                }
                DeValue::String(_) => {
                    return Err(err(
                        value.span().start,
                        "[aigis] home: must not be empty (it names a directory)".into(),
                    ))
                }
                other => {
                    return Err(err(
                        value.span().start,
                        format!(
                            "[aigis] home: expected a non-empty string (a directory), found {}",
                            type_name(other)
                        ),
                    ))
                }
            },
            "remote_dir" => match value.get_ref() {
                DeValue::String(d) if !d.trim().is_empty() => {
                    settings.remote_dir = Some(d.trim().to_string())
                }
                other => {
                    return Err(err(
                        value.span().start,
                        format!("[aigis] remote_dir: expected a non-empty string, found {}", type_name(other)),
                    ))
                }
            },
            "agents" => {
                let DeValue::Table(t) = value.get_ref() else {
                    return Err(err(
                        value.span().start,
                        format!(
                            "[aigis] agents: expected a table like {{ \"aarch64-linux\" = \"/path/to/aigis-agent\" }}, found {}",
                            type_name(value.get_ref())
                        ),
                    ));
                };
                for (kind, path) in t {
                    let DeValue::String(p) = path.get_ref() else {
                        return Err(err(
                            path.span().start,
                            format!("[aigis] agents.{}: expected a path string", kind.get_ref()),
                        ));
                    };
                    settings.agents.push((kind.get_ref().to_string(), local_path(p, base)));
                }
            }
            "may_reload" => {
                let expected = |found: &str| {
                    format!("[aigis] may_reload: expected a table like {{ \"bot\" = [\"web\", \"db\"] }} (\"*\" for any plugin), found {found}")
                };
                let DeValue::Table(t) = value.get_ref() else {
                    return Err(err(value.span().start, expected(type_name(value.get_ref()))));
                };
                for (who, whom) in t {
                    let DeValue::Array(items) = whom.get_ref() else {
                        return Err(err(whom.span().start, expected(type_name(whom.get_ref()))));
                    };
                    let mut names = Vec::new();
                    for item in items.iter() {
                        let DeValue::String(n) = item.get_ref() else {
                            return Err(err(item.span().start, expected(type_name(item.get_ref()))));
                        };
                        names.push(n.to_string());
                    }
                    settings.may_reload.push((who.get_ref().to_string(), names));
                }
            }
            name @ ("system_python" | "unconfined") => {
                let set = plugin_set(name, value, err)?;
                if name == "system_python" {
                    settings.system_python = set;
                } else {
                    settings.unconfined = set;
                }
            }
            "quiet" => {
                let expected = |found: &str| {
                    format!("[aigis] quiet: expected a list of plugin names, like [\"noisy\"], found {found}")
                };
                let DeValue::Array(items) = value.get_ref() else {
                    return Err(err(value.span().start, expected(type_name(value.get_ref()))));
                };
                for item in items.iter() {
                    let DeValue::String(n) = item.get_ref() else {
                        return Err(err(item.span().start, expected(type_name(item.get_ref()))));
                    };
                    settings.quiet.push(n.to_string());
                }
            }
            "console_lines_per_s" => {
                let n = match value.get_ref() {
                    DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
                    _ => None,
                };
                let Some(n) = n.filter(|n| *n > 0 && *n <= i64::from(u32::MAX)) else {
                    return Err(err(
                        value.span().start,
                        format!("[aigis] console_lines_per_s: expected a positive integer, found {}", type_name(value.get_ref())),
                    ));
                };
                settings.console_lines_per_s = Some(n as u32);
            }
            name @ ("log_max_bytes" | "log_keep") => {
                let n = match value.get_ref() {
                    DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
                    _ => None,
                };
                let Some(n) = n.filter(|n| *n > 0) else {
                    return Err(err(
                        value.span().start,
                        format!("[aigis] {name}: expected a positive integer, found {}", type_name(value.get_ref())),
                    ));
                };
                if name == "log_keep" {
                    settings.log_keep = Some(u32::try_from(n).unwrap_or(u32::MAX));
                } else {
                    settings.log_max_bytes = Some(n as u64);
                }
            }
            other => {
                return Err(err(
                    key.span().start,
                    format!("unknown setting `{other}` in [aigis]; known settings: home, log_max_bytes, log_keep, remote_dir, agents, may_reload, quiet, console_lines_per_s, user, users, system_python, unconfined"),
                ))
            }
        }
    }
    Ok((settings, user_keys))
}

/// `true`, `false` or a list of plugin names.
fn plugin_set(
    name: &str,
    value: &toml::Spanned<DeValue<'_>>,
    err: &dyn Fn(usize, String) -> ConfigError,
) -> Result<PluginSet, ConfigError> {
    let expected = |found: &str| {
        format!("[aigis] {name}: expected true, false or a list of plugin names, like [\"legacy\"], found {found}")
    };
    Ok(match value.get_ref() {
        DeValue::Boolean(true) => PluginSet::All,
        DeValue::Boolean(false) => PluginSet::None,
        DeValue::Array(items) => {
            let mut names = Vec::new();
            for item in items.iter() {
                let DeValue::String(n) = item.get_ref() else {
                    return Err(err(item.span().start, expected(type_name(item.get_ref()))));
                };
                names.push(n.to_string());
            }
            PluginSet::Only(names)
        }
        other => return Err(err(value.span().start, expected(type_name(other)))),
    })
}

/// A user name as `useradd` makes them: letters, digits, `_`, `-`, `.`,
/// not starting with `-`, at most 32 bytes (a trailing `$` is allowed).
fn check_user(user: &str) -> Result<(), String> {
    let body = user.strip_suffix('$').unwrap_or(user);
    let ok = !body.is_empty()
        && user.len() <= 32
        && !body.starts_with('-')
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{user}` is not a user name (letters, digits, `_`, `-` and `.`, not starting with `-`, at most 32)"
        ))
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "invalid plugin name `{name}`: use letters, digits, `_` and `-` only"
        ));
    }
    if name.eq_ignore_ascii_case("aigis") {
        return Err("the plugin name `aigis` is reserved".into());
    }
    Ok(())
}

fn parse_source(s: &str, base: &Path) -> Result<Source, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty source; expected a git URL or a directory".into());
    }
    let is_url = ["https://", "http://", "ssh://", "git://", "file://"]
        .iter()
        .any(|p| s.starts_with(p));
    let scp_like = !s.starts_with('/')
        && !s.starts_with('.')
        && s.split_once(':')
            .is_some_and(|(host, _)| host.contains('@') && !host.contains('/'));
    if !is_url && !scp_like {
        return Ok(Source::LocalDir(local_path(s, base)));
    }
    let (url, reference) = match s.rsplit_once('#') {
        Some((_, "")) => return Err(format!("`{s}`: empty reference after `#`")),
        Some((u, r)) => (u, Some(r.to_string())),
        None => (s, None),
    };
    Ok(Source::Git {
        url: url.to_string(),
        reference,
    })
}

/// `~/x` from `$HOME`; relative paths from the config file's directory.
fn local_path(s: &str, base: &Path) -> PathBuf {
    if let Some(rest) = s.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let p = PathBuf::from(s);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> CentralConfig {
        parse_central(text, Path::new("/etc/aigis/aigis.toml")).unwrap()
    }

    #[test]
    fn load_order_is_by_section_then_file_order() {
        let c = parse(
            "[external]\nz = \"/z\"\na = \"/a\"\n[internal]\nm = \"/m\"\n[core]\nc2 = \"/c2\"\nc1 = \"/c1\"\n[internal-remote]\nr = \"/r\"\n",
        );
        let names: Vec<_> = c
            .plugins
            .iter()
            .map(|p| (p.name.as_str(), p.section))
            .collect();
        assert_eq!(
            names,
            vec![
                ("c2", PluginKind::Core),
                ("c1", PluginKind::Core),
                ("m", PluginKind::InternalLocal),
                ("r", PluginKind::InternalRemote),
                ("z", PluginKind::External),
                ("a", PluginKind::External),
            ]
        );
        assert_eq!(c.plugins[0].line, 7);
    }

    #[test]
    fn sources() {
        let c = parse(
            "[aigis]\nhome = \"state\"\n[external]\ng = \"https://h.org/x.git#v2\"\nf = \"file:///srv/r\"\ns = \"git@github.com:u/r.git\"\nrel = \"plugins/p\"\nabs = \"/srv/p\"\n",
        );
        assert_eq!(c.aigis.home, Some(PathBuf::from("/etc/aigis/state")));
        let s: Vec<_> = c.plugins.iter().map(|p| p.source.clone()).collect();
        assert_eq!(
            s[0],
            Source::Git {
                url: "https://h.org/x.git".into(),
                reference: Some("v2".into())
            }
        );
        assert_eq!(
            s[1],
            Source::Git {
                url: "file:///srv/r".into(),
                reference: None
            }
        );
        assert!(matches!(&s[2], Source::Git { url, .. } if url == "git@github.com:u/r.git"));
        assert_eq!(s[3], Source::LocalDir("/etc/aigis/plugins/p".into()));
        assert_eq!(s[4], Source::LocalDir("/srv/p".into()));
    }

    /// toml 0.9 stops at 80 levels of arrays and inline tables and at 80
    /// dotted key parts (unless its `unbounded` feature is on), so 100 KB
    /// of nesting is an error, not a stack overflow. Its 80 levels take
    /// about 300-500 KiB of stack in a debug build, well under a thread's
    /// usual 2 MiB.
    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let n = 100_000;
        let inputs = [
            format!("[core]\nx = {}", "[".repeat(n)),
            format!("[core]\nx = {}1{}\n", "[".repeat(n), "]".repeat(n)),
            format!(
                "[core]\nx = {}1{}\n",
                "{a=".repeat(n / 3),
                "}".repeat(n / 3)
            ),
            format!("[core]\nx = {}", "{a=[".repeat(n / 4)),
            format!("[core]\nx{} = 1\n", ".a".repeat(n / 2)),
            format!("[core{}]\n", ".a".repeat(n / 2)),
            format!("[[core{}]]\n", ".a".repeat(n / 2)),
            format!("[core]\nx = {{ {} = 1 }}\n", vec!["a"; n / 2].join(".")),
        ];
        let worker = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || {
                inputs
                    .iter()
                    .map(|text| match parse_central(text, Path::new("/a.toml")) {
                        Ok(_) => "accepted".to_string(),
                        Err(e) => e.message,
                    })
                    .collect::<Vec<_>>()
            })
            .expect("spawn");
        for message in worker.join().expect("no stack overflow") {
            assert!(message.starts_with("invalid TOML"), "{message}");
        }
    }

    #[test]
    fn system_python_opts_all_some_or_no_plugins_out() {
        let of = |text: &str| parse(&format!("[aigis]\n{text}\n[external]\na = \"x\"\n")).aigis;
        assert!(!of("").system_python_for("a"));
        assert!(of("system_python = true").system_python_for("a"));
        assert!(!of("system_python = false").system_python_for("a"));
        let some = of("system_python = [\"a\"]");
        assert!(some.system_python_for("a") && !some.system_python_for("b"));
        let err = parse_central("[aigis]\nsystem_python = 3\n", Path::new("c.aigis"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("system_python: expected true, false or a list"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_fine() {
        assert!(parse("").plugins.is_empty());
        assert!(parse("[core]\n[external]\n").plugins.is_empty());
    }
}
