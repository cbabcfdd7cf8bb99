//! A corpus of bad inputs, each with the message an operator must see: the
//! file, the line and column, the option, and what was expected.
//!
//! Every row states the exact prefix of the message (`plugin `web`: FILE:LINE:COL:
//! option `OPT`: `) and substrings of what follows.

use config::{parse_central, parse_plugin, PluginEntry, PluginKind, Source};
use std::path::Path;

const CENTRAL: &str = "/etc/aigis/aigis.toml";
const ROOT: &str = "/srv/home/ext/web";
const PLUGIN_FILE: &str = "/srv/home/ext/web/AIGIS/AIGIS.config";

fn entry(section: PluginKind) -> PluginEntry {
    PluginEntry {
        name: "web".into(),
        section,
        source: Source::LocalDir("/src/web".into()),
        line: 2,
    }
}

fn plugin_err(section: PluginKind, text: &str) -> String {
    match parse_plugin(
        &entry(section),
        Path::new(ROOT),
        Path::new(PLUGIN_FILE),
        text,
    ) {
        Ok(spec) => panic!("accepted:\n{text}\n{spec:?}"),
        Err(e) => e.to_string(),
    }
}

fn central_err(text: &str) -> String {
    match parse_central(text, Path::new(CENTRAL)) {
        Ok(c) => panic!("accepted:\n{text}\n{c:?}"),
        Err(e) => e.to_string(),
    }
}

fn check(text: &str, msg: &str, prefix: &str, needles: &[&str]) {
    assert!(
        msg.starts_with(prefix),
        "for {text:?}\nmessage: {msg}\nexpected prefix: {prefix}"
    );
    for n in needles {
        assert!(
            msg.contains(n),
            "for {text:?}\nmessage: {msg}\nmissing: {n}"
        );
    }
}

/// (input, line, column, expected substrings)
type CentralCase = (&'static str, usize, Option<usize>, &'static [&'static str]);

const BAD_CENTRAL: &[CentralCase] = &[
    // TOML syntax
    ("[external\nx = \"a\"\n", 1, Some(10), &["invalid TOML"]),
    ("[external]\nx = \n", 2, Some(5), &["invalid TOML"]),
    ("[external]\nx = \"a\n", 2, Some(7), &["invalid TOML"]),
    (
        "[external]\nx \"a\"\n",
        2,
        Some(3),
        &["invalid TOML", "expected"],
    ),
    // duplicate key inside one section is a TOML error
    (
        "[external]\nx = 'a'\nx = 'b'\n",
        3,
        Some(1),
        &["invalid TOML", "duplicate key"],
    ),
    // sections
    (
        "external = \"x\"\n",
        1,
        Some(1),
        &["`external` must be a section"],
    ),
    ("[[core]]\nx = \"a\"\n", 1, Some(3), &["must be a section"]),
    // plugin values
    (
        "[external]\nx = 3\n",
        2,
        Some(5),
        &[
            "plugin `x`",
            "expected a string (a git URL or a directory)",
            "found an integer",
        ],
    ),
    (
        "[external]\nx = [\"a\"]\n",
        2,
        Some(5),
        &["plugin `x`", "found an array"],
    ),
    ("[core]\nx = true\n", 2, Some(5), &["found a boolean"]),
    (
        "[core]\nx = { path = \"/a\" }\n",
        2,
        Some(5),
        &["found a table"],
    ),
    (
        "[external]\nx = \"\"\n",
        2,
        Some(5),
        &["plugin `x`", "empty source"],
    ),
    (
        "[external]\nx = \"https://h/x.git#\"\n",
        2,
        Some(5),
        &["plugin `x`", "empty reference after `#`"],
    ),
    // names
    (
        "[core]\nx = \"a\"\n[external]\nx = \"b\"\n",
        4,
        Some(1),
        &["duplicate plugin name `x` (first defined on line 2)"],
    ),
    (
        "[internal]\nweb = \"a\"\n[internal-local]\nweb = \"b\"\n",
        4,
        Some(1),
        &["duplicate plugin name `web` (first defined on line 2)"],
    ),
    (
        "[external]\naigis = \"a\"\n",
        2,
        Some(1),
        &["`aigis` is reserved"],
    ),
    (
        "[core]\nAIGIS = \"a\"\n",
        2,
        Some(1),
        &["`aigis` is reserved"],
    ),
    (
        "[external]\n\"bad name\" = \"a\"\n",
        2,
        Some(1),
        &["invalid plugin name `bad name`", "letters, digits"],
    ),
    (
        "[external]\n\"a.b\" = \"a\"\n",
        2,
        Some(1),
        &["invalid plugin name `a.b`"],
    ),
    (
        "[external]\n\"\" = \"a\"\n",
        2,
        Some(1),
        &["invalid plugin name ``"],
    ),
    // [aigis]
    (
        "[aigis]\nhom = \"/x\"\n",
        2,
        Some(1),
        &["unknown setting `hom` in [aigis]", "home"],
    ),
    (
        "[aigis]\nhome = 5\n",
        2,
        Some(8),
        &[
            "[aigis] home",
            "expected a non-empty string",
            "found an integer",
        ],
    ),
    (
        "[aigis]\nhome = \"\"\n",
        2,
        Some(8),
        &["[aigis] home: must not be empty"],
    ),
    (
        "[aigis]\nuser = 5\n",
        2,
        Some(8),
        &["[aigis] user: expected a user name (a string), found an integer"],
    ),
    (
        "[aigis]\n\nuser = \"-rf\"\n",
        3,
        Some(8),
        &["[aigis] user: `-rf` is not a user name", "letters, digits"],
    ),
    (
        "[aigis]\nuser = \"\"\n",
        2,
        Some(8),
        &["[aigis] user: `` is not a user name"],
    ),
    (
        "[aigis]\nusers = \"aigis-web\"\n",
        2,
        Some(9),
        &[
            "[aigis] users: expected a table like { \"web\" = \"aigis-web\" }",
            "found a string",
        ],
    ),
    (
        "[aigis]\nusers = { web = 5 }\n",
        2,
        Some(17),
        &["[aigis] users.web: expected a user name (a string), found an integer"],
    ),
    (
        "[aigis]\nusers = { web = \"aigis web\" }\n",
        2,
        Some(17),
        &["[aigis] users.web: `aigis web` is not a user name"],
    ),
    (
        "[aigis]\nusers = { \"a/b\" = \"x\" }\n",
        2,
        Some(11),
        &["[aigis] users: invalid plugin name `a/b`"],
    ),
    (
        "[aigis]\nuser_name = \"x\"\n",
        2,
        Some(1),
        &["unknown setting `user_name` in [aigis]", "user, users"],
    ),
];

#[test]
fn bad_central_configs() {
    for (text, line, col, needles) in BAD_CENTRAL {
        let msg = central_err(text);
        let prefix = match col {
            Some(c) => format!("{CENTRAL}:{line}:{c}: "),
            None => format!("{CENTRAL}:{line}: "),
        };
        check(text, &msg, &prefix, needles);
    }
}

#[test]
fn unreadable_central_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing.toml");
    let msg = config::load_central(&path)
        .expect_err("missing file")
        .to_string();
    check(
        "",
        &msg,
        &format!("{}: ", path.display()),
        &["cannot read the config file"],
    );
}

#[test]
fn central_file_that_is_not_utf8_names_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aigis.toml");
    std::fs::write(&path, b"[external]\nweb = \"/srv/caf\xe9\"\n").expect("write");
    let msg = config::load_central(&path)
        .expect_err("latin-1")
        .to_string();
    check(
        "",
        &msg,
        &format!("{}:2:16: ", path.display()),
        &["not valid UTF-8 at line 2, column 16 (byte 0xe9)"],
    );
}

const EXT: &str = "PLUGIN_TYPE = \"external\"\nENTRYPOINT = \"{root}\"\nLAUNCH = [\"./run\"]\n";
const INT: &str = "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\n";

/// (section, input, (line, column), option, expected substrings)
type PluginCase = (
    PluginKind,
    String,
    Option<(usize, usize)>,
    Option<&'static str>,
    &'static [&'static str],
);

fn bad_plugins() -> Vec<PluginCase> {
    use PluginKind::*;
    let ext = |extra: &str| format!("{EXT}{extra}");
    let int = |extra: &str| format!("{INT}{extra}");
    vec![
        // required options
        (External, "ENTRYPOINT = '{root}'\nLAUNCH = ['x']\n".into(), None, Some("PLUGIN_TYPE"), &["required option `PLUGIN_TYPE` is missing"]),
        (External, "PLUGIN_TYPE = None\nENTRYPOINT = '{root}'\n".into(), None, Some("PLUGIN_TYPE"), &["is missing (or None)"]),
        (External, "PLUGIN_TYPE = 'external'\nLAUNCH = ['x']\n".into(), None, Some("ENTRYPOINT"), &["required option `ENTRYPOINT` is missing"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\n".into(), None, Some("LAUNCH"), &["required option `LAUNCH` is missing"]),
        (InternalLocal, "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\n".into(), None, Some("LAUNCH"), &["required option `LAUNCH` is missing"]),
        // PLUGIN_TYPE
        (External, "PLUGIN_TYPE = 'extern'\n".into(), Some((1, 15)), Some("PLUGIN_TYPE"), &["unknown plugin type \"extern\"", "\"core\", \"internal\", \"internal-local\", \"internal-remote\", \"external\""]),
        (InternalRemote, "PLUGIN_TYPE = 'internal-remote'\nENTRYPOINT = '{root}'\nLAUNCH = 'm.py'\n".into(), Some((1, 15)), Some("PLUGIN_TYPE"), &["runs on another host, but HOST is not set"]),
        (Core, "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\nCORE = 'copy'\nHOST = 'nas'\n".into(), Some((4, 8)), Some("HOST"), &["PLUGIN_TYPE \"core\" runs on the central host, but HOST nas is another machine"]),
        (InternalLocal, int("CORE = 'shared'\n"), Some((4, 8)), Some("CORE"), &["unknown core access \"shared\"", "\"proxy\"", "\"copy\""]),
        (InternalRemote, int("HOST = 'nas'\nCORE = 'copy'\n"), Some((5, 8)), Some("CORE"), &["a plugin on another host reaches the core through the proxy"]),
        (InternalLocal, int("CORE = 1\n"), Some((4, 8)), Some("CORE"), &["expected a string", "found an int"]),
        (InternalLocal, "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main-app'\n".into(), Some((3, 10)), Some("LAUNCH"), &["\"main-app\" is neither a module name like \"main\" nor a Python file"]),
        (External, "PLUGIN_TYPE = 3\n".into(), Some((1, 15)), Some("PLUGIN_TYPE"), &["expected a string", "found an int"]),
        // HOST
        (Core, "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\nHOST = 'nas'\n".into(), Some((3, 8)), Some("HOST"), &["PLUGIN_TYPE \"core\" runs on the central host"]),
        (InternalLocal, "PLUGIN_TYPE = 'internal-local'\nENTRYPOINT = '{root}'\nLAUNCH = 'm.py'\nHOST = '127.0.0.2'\n".into(), Some((4, 8)), Some("HOST"), &["PLUGIN_TYPE \"internal-local\" runs on the central host, but HOST 127.0.0.2 is another machine", "PLUGIN_TYPE \"internal\" runs it on HOST"]),
        (External, ext("HOST = 'nas:99999'\n"), Some((4, 8)), Some("HOST"), &["port `99999`", "1 to 65535"]),
        (External, ext("HOST = ''\n"), Some((4, 8)), Some("HOST"), &["HOST is empty"]),
        (External, ext("HOST = '[::1'\n"), Some((4, 8)), Some("HOST"), &["without a closing `]`"]),
        (External, ext("HOST = ['nas']\n"), Some((4, 8)), Some("HOST"), &["expected a string like \"user@host:port\"", "found a list"]),
        // LAUNCH
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = './run'\n".into(), Some((3, 10)), Some("LAUNCH"), &["expected a list of strings", "found a string"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = []\n".into(), Some((3, 10)), Some("LAUNCH"), &["the command line is empty"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x', 3]\n".into(), Some((3, 16)), Some("LAUNCH"), &["expected a list of strings", "found an int in it"]),
        (InternalLocal, "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = ['main.py']\n".into(), Some((3, 10)), Some("LAUNCH"), &["expected a string: a module name like \"main\" or a Python file", "found a list"]),
        (InternalLocal, "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = ''\n".into(), Some((3, 10)), Some("LAUNCH"), &["must not be empty"]),
        // ENTRYPOINT
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = 5\nLAUNCH = ['x']\n".into(), Some((2, 14)), Some("ENTRYPOINT"), &["expected a string", "found an int"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = ''\nLAUNCH = ['x']\n".into(), Some((2, 14)), Some("ENTRYPOINT"), &["must not be empty"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}/../victim/conf'\nLAUNCH = ['x']\n".into(), Some((2, 14)), Some("ENTRYPOINT"), &["victim/conf leaves the plugin's directory", "must be {root} or a directory inside it"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '/etc'\nLAUNCH = ['x']\n".into(), Some((2, 14)), Some("ENTRYPOINT"), &["/etc leaves the plugin's directory"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = 'src/../..'\nLAUNCH = ['x']\n".into(), Some((2, 14)), Some("ENTRYPOINT"), &["leaves the plugin's directory"]),
        // RESTART
        (External, ext("RESTART = 'twice'\n"), Some((4, 11)), Some("RESTART"), &["expected a number of restarts, \"always\" or \"on-failure\", found \"twice\""]),
        (External, ext("RESTART = -1\n"), Some((4, 11)), Some("RESTART"), &["expected an int >= 0, found -1"]),
        (External, ext("RESTART = 1.5\n"), Some((4, 11)), Some("RESTART"), &["expected an int", "found a float"]),
        (External, ext("RESTART = True\n"), Some((4, 11)), Some("RESTART"), &["found a bool"]),
        (External, ext("RESTART = 5000000000\n"), Some((4, 11)), Some("RESTART"), &["too large"]),
        // SYSTEM_REQUIREMENTS
        (External, ext("SYSTEM_REQUIREMENTS = 'git'\n"), Some((4, 23)), Some("SYSTEM_REQUIREMENTS"), &["expected a list of strings", "found a string"]),
        (External, ext("SYSTEM_REQUIREMENTS = ['git', None]\n"), Some((4, 31)), Some("SYSTEM_REQUIREMENTS"), &["found None in it"]),
        (External, ext("SYSTEM_REQUIREMENTS = {'git': 1}\n"), Some((4, 23)), Some("SYSTEM_REQUIREMENTS"), &["found a dict"]),
        // SECRETS
        (External, ext("SECRETS = ['a']\n"), Some((4, 11)), Some("SECRETS"), &["expected a dict", "found a list"]),
        (External, ext("SECRETS = {1: '{root}/'}\n"), Some((4, 12)), Some("SECRETS"), &["expected string keys", "found an int"]),
        (External, ext("SECRETS = {'a': 2}\n"), Some((4, 17)), Some("SECRETS"), &["expected a string destination for `a`", "found an int"]),
        (External, ext("SECRETS = {'a': ''}\n"), Some((4, 17)), Some("SECRETS"), &["the destination of `a` is empty"]),
        // REQUIREMENTS_*
        (External, ext("REQUIREMENTS_COMMAND = 'pip'\nREQUIREMENT_COMMAND = 'pip'\n"), Some((5, 23)), Some("REQUIREMENT_COMMAND"), &["`REQUIREMENTS_COMMAND` and `REQUIREMENT_COMMAND` are the same option"]),
        (External, ext("REQUIREMENT_COMMAND = 'pip'\nREQUIREMENTS_FILE = 'a'\nREQUIREMENT_FILE = 'b'\n"), Some((6, 20)), Some("REQUIREMENT_FILE"), &["are the same option; set only one"]),
        (External, ext("REQUIREMENTS_COMMAND = ['pip']\n"), Some((4, 24)), Some("REQUIREMENTS_COMMAND"), &["expected a string", "found a list"]),
        (External, ext("REQUIREMENTS_COMMAND = '  '\n"), Some((4, 24)), Some("REQUIREMENTS_COMMAND"), &["must not be empty"]),
        (External, ext("REQUIREMENTS_COMMAND = 'pip'\nREQUIREMENTS_FILE = 3\n"), Some((5, 21)), Some("REQUIREMENTS_FILE"), &["expected a string", "found an int"]),
        // syntax: only literals, positions of the offending token
        (External, ext("ENTRYPOINT = os.getcwd()\n"), Some((4, 14)), Some("ENTRYPOINT"), &["`os` is a name", "only literal values are allowed", "never executed"]),
        (External, ext("RESTART = 1 + 1\n"), Some((4, 13)), Some("RESTART"), &["expressions are not evaluated", "only literal values are allowed"]),
        (External, ext("RESTART = 1 2\n"), Some((4, 13)), Some("RESTART"), &["unexpected `2` after the value", "one assignment per line"]),
        (External, ext("import os\n"), Some((4, 1)), None, &["`import` is a Python keyword", "only literal values are allowed"]),
        (External, ext("RESTART += 1\n"), Some((4, 9)), None, &["expected `=` after `RESTART`", "only literal values are allowed"]),
        (External, ext("HOST = f'{x}'\n"), Some((4, 8)), Some("HOST"), &["f-strings are not allowed"]),
        // Bytes are a literal (Python accepts them), just not a string.
        (External, ext("HOST = b'nas'\n"), Some((4, 8)), Some("HOST"), &["expected a string like \"user@host:port\"", "found bytes"]),
        // `+1` is a literal for literal_eval; `--1` is not.
        (External, ext("RESTART = --1\n"), Some((4, 11)), Some("RESTART"), &["`-` must be followed by a number", "only literal values are allowed"]),
        (External, ext("SECRETS = {\n  'a': '{root}/',\n"), Some((4, 11)), Some("SECRETS"), &["this `{` is never closed"]),
        (External, ext("LAUNCH = ['a',\n 'b'\nRESTART = 1\n"), Some((4, 10)), Some("LAUNCH"), &["this `[` is never closed", "before line 6, column 1"]),
        (External, ext("HOST = \"nas\n"), Some((4, 8)), Some("HOST"), &["this string is never closed"]),
        (External, ext("HOST = '''nas\n\n"), Some((4, 8)), Some("HOST"), &["this string is never closed"]),
        (External, ext("HOST = 'nas' 'x\n"), Some((4, 14)), Some("HOST"), &["this string is never closed"]),
        (External, ext("RESTART = 0x\n"), Some((4, 11)), Some("RESTART"), &["`0x` is not a number"]),
        (External, ext("HOST = '\\xZZ'\n"), Some((4, 9)), Some("HOST"), &["`\\x` needs 2 hex digits"]),
        (External, ext("LAUNCH = ['a' 'b' 3]\n"), Some((4, 19)), Some("LAUNCH"), &["expected `,` or `]`, found `3`"]),
        // `{'a' '/x'}` is the set {'a/x'} in Python: a type error, not a syntax error.
        (External, ext("SECRETS = {'a' '/x'}\n"), Some((4, 11)), Some("SECRETS"), &["expected a dict {\"file\": \"dest/\"}", "found a set"]),
        (External, ext("SECRETS = {'a' 1}\n"), Some((4, 16)), Some("SECRETS"), &["expected `:` between a dict key and its value"]),
        (External, ext("SECRETS = {\"a.secret\", \"b.secret\"}\n"), Some((4, 11)), Some("SECRETS"), &["expected a dict {\"file\": \"dest/\"}", "mapping each secret file to its destination", "found a set"]),
    ]
}

#[test]
fn bad_plugin_configs() {
    let cases = bad_plugins();
    assert!(cases.len() + BAD_CENTRAL.len() >= 35);
    for (section, text, pos, option, needles) in &cases {
        let msg = plugin_err(*section, text);
        let mut prefix = format!("plugin `web`: {PLUGIN_FILE}");
        if let Some((l, c)) = pos {
            prefix.push_str(&format!(":{l}:{c}"));
        }
        prefix.push_str(": ");
        if let Some(o) = option {
            prefix.push_str(&format!("option `{o}`: "));
        }
        check(text, &msg, &prefix, needles);
    }
}
