//! A corpus of bad inputs, each with the message an operator must see: the
//! file, the line (and column), the option, and what was expected.

use config::{parse_central, parse_plugin, Launch, PluginEntry, PluginKind, Source};
use std::path::Path;

const CENTRAL: &str = "/etc/aigis/aigis.toml";
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
        Path::new("/srv/home/ext/web"),
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

const EXT: &str = "PLUGIN_TYPE = \"external\"\nENTRYPOINT = \"{root}\"\nLAUNCH = [\"./run\"]\n";

#[test]
fn bad_central_configs() {
    let cases: &[(&str, &[&str])] = &[
        ("[external\nx = \"a\"\n", &["aigis.toml:1:", "invalid TOML"]),
        ("[external]\nx = \n", &["aigis.toml:2:", "invalid TOML"]),
        (
            "[external]\nx = 'a'\nx = 'b'\n",
            &["aigis.toml:3", "invalid TOML"],
        ),
        (
            "[extrenal]\nx = \"a\"\n",
            &["aigis.toml:1:2", "unknown section [extrenal]", "[external]"],
        ),
        (
            "[external]\nx = 3\n",
            &[
                "aigis.toml:2:5",
                "plugin `x`",
                "expected a string",
                "an integer",
            ],
        ),
        (
            "[external]\nx = [\"a\"]\n",
            &["aigis.toml:2:5", "found an array"],
        ),
        (
            "[core]\nx = \"a\"\n[external]\nx = \"b\"\n",
            &["aigis.toml:4:1", "duplicate plugin name `x`", "line 2"],
        ),
        (
            "[external]\naigis = \"a\"\n",
            &["aigis.toml:2:1", "`aigis` is reserved"],
        ),
        (
            "[external]\n\"bad name\" = \"a\"\n",
            &["aigis.toml:2:1", "invalid plugin name `bad name`"],
        ),
        (
            "[external]\n\"a.b\" = \"a\"\n",
            &["aigis.toml:2", "invalid plugin name `a.b`"],
        ),
        (
            "[external]\nx = \"\"\n",
            &["aigis.toml:2:5", "empty source"],
        ),
        (
            "[external]\nx = \"https://h/x.git#\"\n",
            &["aigis.toml:2:5", "empty reference"],
        ),
        (
            "[aigis]\nhom = \"/x\"\n",
            &["aigis.toml:2:1", "unknown setting `hom`", "home"],
        ),
        (
            "[aigis]\nhome = 5\n",
            &[
                "aigis.toml:2:8",
                "[aigis] home",
                "expected a non-empty string",
            ],
        ),
        (
            "external = \"x\"\n",
            &["aigis.toml:1:1", "must be a section"],
        ),
    ];
    for (text, needles) in cases {
        let msg = central_err(text);
        for n in *needles {
            assert!(
                msg.contains(n),
                "for {text:?}\nmessage: {msg}\nmissing: {n}"
            );
        }
    }
}

#[test]
fn bad_plugin_configs() {
    use PluginKind::*;
    let cases: &[(PluginKind, &str, &[&str])] = &[
        (External, "ENTRYPOINT = '{root}'\nLAUNCH = ['x']\n", &["plugin `web`", "AIGIS.config", "required option `PLUGIN_TYPE` is missing"]),
        (External, "PLUGIN_TYPE = 'external'\nLAUNCH = ['x']\n", &["required option `ENTRYPOINT` is missing"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\n", &["required option `LAUNCH` is missing"]),
        (External, "PLUGIN_TYPE = 'extern'\n", &["AIGIS.config:1:15", "option `PLUGIN_TYPE`", "unknown plugin type \"extern\"", "\"internal-remote\""]),
        (External, "PLUGIN_TYPE = 3\n", &[":1:15", "option `PLUGIN_TYPE`", "expected a string", "found an int"]),
        (External, "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\n", &[":1:15", "contradicts", "[external]"]),
        (Core, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x']\n", &["contradicts", "[core]"]),
        (InternalLocal, "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\nHOST = 'pi@nas'\n", &["contradicts", "[internal-remote]", "pi@nas"]),
        (InternalRemote, "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\n", &["required option `HOST` is missing"]),
        (Core, "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\nHOST = 'nas'\n", &[":3:8", "option `HOST`", "run on the central host"]),
        (External, &format!("{EXT}HOST = 'nas:99999'\n"), &[":4:8", "option `HOST`", "port `99999`"]),
        (External, &format!("{EXT}HOST = ['nas']\n"), &[":4:8", "option `HOST`", "found a list"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = './run'\n", &[":3:10", "option `LAUNCH`", "list of strings", "found a string"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = []\n", &[":3:10", "option `LAUNCH`", "command line is empty"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x', 3]\n", &[":3:16", "option `LAUNCH`", "found an int in it"]),
        (InternalLocal, "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = ['main.py']\n", &[":3:10", "option `LAUNCH`", "the path of the Python file"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = 5\nLAUNCH = ['x']\n", &[":2:14", "option `ENTRYPOINT`", "expected a string"]),
        (External, "PLUGIN_TYPE = 'external'\nENTRYPOINT = ''\nLAUNCH = ['x']\n", &[":2:14", "option `ENTRYPOINT`", "must not be empty"]),
        (External, &format!("{EXT}RESTART = 'twice'\n"), &["AIGIS.config:4:11", "option `RESTART`", "expected an int", "found a string"]),
        (External, &format!("{EXT}RESTART = -1\n"), &[":4:11", "option `RESTART`", "expected an int >= 0"]),
        (External, &format!("{EXT}RESTART = 1.5\n"), &[":4:11", "option `RESTART`", "found a float"]),
        (External, &format!("{EXT}SYSTEM_REQUIREMENTS = 'git'\n"), &[":4:23", "option `SYSTEM_REQUIREMENTS`", "list of strings"]),
        (External, &format!("{EXT}SYSTEM_REQUIREMENTS = ['git', None]\n"), &[":4:31", "found None in it"]),
        (External, &format!("{EXT}SECRETS = ['a']\n"), &[":4:11", "option `SECRETS`", "expected a dict"]),
        (External, &format!("{EXT}SECRETS = {{1: '{{root}}/'}}\n"), &[":4:12", "option `SECRETS`", "string keys"]),
        (External, &format!("{EXT}SECRETS = {{'a': 2}}\n"), &[":4:17", "option `SECRETS`", "string destination for `a`"]),
        (External, &format!("{EXT}REQUIREMENTS_FILE = '{{root}}/r.txt'\n"), &[":4:21", "option `REQUIREMENTS_FILE`", "REQUIREMENTS_COMMAND is not"]),
        (External, &format!("{EXT}REQUIREMENTS_COMMAND = 'pip'\nREQUIREMENT_COMMAND = 'pip'\n"), &[":5:23", "are the same option"]),
        (External, &format!("{EXT}REQUIREMENTS_COMMAND = ['pip']\n"), &[":4:24", "option `REQUIREMENTS_COMMAND`", "expected a string"]),
        (External, &format!("{EXT}ENTRYPOINT = os.getcwd()\n"), &["plugin `web`", "AIGIS.config:4:14", "`os` is a name", "never executed"]),
        (External, &format!("{EXT}RESTART = 1 + 1\n"), &[":4:13", "expressions are not evaluated"]),
        (External, &format!("{EXT}import os\n"), &[":4:8", "expected `=` after `import`"]),
        (External, &format!("{EXT}SECRETS = {{\n  'a': '{{root}}/',\n"), &[":4:11", "never closed"]),
        (External, &format!("{EXT}HOST = \"nas\n"), &[":4:8", "string is never closed"]),
        (External, &format!("{EXT}HOST = f'{{x}}'\n"), &[":4:8", "f-strings"]),
    ];
    assert!(cases.len() >= 30);
    for (section, text, needles) in cases {
        let msg = plugin_err(*section, text);
        for n in *needles {
            assert!(
                msg.contains(n),
                "for {text:?}\nmessage: {msg}\nmissing: {n}"
            );
        }
    }
}

#[test]
fn the_spec_examples_parse() {
    let root = Path::new("/srv/home/ext/db");
    let core = "PLUGIN_TYPE = \"core\"\nENTRYPOINT = \"{root}\"\n\nSYSTEM_REQUIREMENTS = [\"pip3.7\"]\n\n\
                REQUIREMENT_COMMAND = \"pip3.7 install --user --index-url https://pypi.python.org/simple -r\"\n\
                REQUIREMENT_FILE = \"{root}/requirements.txt\"\n\nSECRETS = {}\n";
    let spec = parse_plugin(
        &entry(PluginKind::Core),
        root,
        &root.join("AIGIS/AIGIS.config"),
        core,
    )
    .unwrap();
    assert_eq!(spec.kind, PluginKind::Core);
    assert_eq!(spec.entrypoint, root);
    assert_eq!(spec.launch, Launch::None);
    let req = spec.requirements.unwrap();
    assert_eq!(
        req.shell_line(),
        "pip3.7 install --user --index-url https://pypi.python.org/simple -r '/srv/home/ext/db/requirements.txt'"
    );

    let external = r#"PLUGIN_TYPE = "external"
ENTRYPOINT = "{root}"
LAUNCH = ["python36", "main.py"]

SYSTEM_REQUIREMENTS = ["python36", "pip3.6"]

REQUIREMENT_COMMAND = "pip3.6 install -r"
REQUIREMENT_FILE = "{root}/requirements.txt"

SECRETS = {
    "my_app_key.secret": "{root}/src/db/",
    "ip.config": "{root}/src/db/",
    "connection_token.secret": "{root}/src/db/"
}
"#;
    let spec = parse_plugin(
        &entry(PluginKind::External),
        root,
        &root.join("AIGIS/AIGIS.config"),
        external,
    )
    .unwrap();
    assert_eq!(
        spec.launch,
        Launch::Command(vec!["python36".into(), "main.py".into()])
    );
    assert_eq!(spec.system_requirements, ["python36", "pip3.6"]);
    assert_eq!(spec.secrets.len(), 3);
    assert_eq!(spec.secrets[1].key, "ip.config");
    assert_eq!(spec.secrets[1].dest, Path::new("/srv/home/ext/db/src/db/"));
    assert_eq!(spec.restart, None);
    assert!(spec.host.is_none());
}

#[test]
fn kinds_hosts_launch_paths_and_warnings() {
    let root = Path::new("/r");
    let file = root.join("AIGIS/AIGIS.config");
    let text = "PLUGIN_TYPE = 'internal'\nENTRYPOINT = 'src'\nLAUNCH = 'main.py'\nHOST = 'pi@127.0.0.2:2222'\nCOLOR = 'blue'\nRESTART = 1\nRESTART = 2\n";
    let spec = parse_plugin(&entry(PluginKind::InternalRemote), root, &file, text).unwrap();
    assert_eq!(spec.kind, PluginKind::InternalRemote);
    assert_eq!(spec.entrypoint, Path::new("/r/src"));
    assert_eq!(spec.launch, Launch::Python("/r/src/main.py".into()));
    assert_eq!(
        spec.host.as_ref().map(|h| h.to_string()).as_deref(),
        Some("pi@127.0.0.2:2222")
    );
    assert_eq!(spec.restart, Some(2));
    assert_eq!(spec.warnings.len(), 2, "{:?}", spec.warnings);
    assert!(spec.warnings[0].contains("AIGIS.config:5: unknown option `COLOR`"));
    assert!(spec.warnings[1].contains("set again (first on line 6)"));

    // "internal" under [internal-local] with a local HOST stays local.
    let text = "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = '{root}/m.py'\nHOST = 'localhost'\n";
    let spec = parse_plugin(&entry(PluginKind::InternalLocal), root, &file, text).unwrap();
    assert_eq!(spec.kind, PluginKind::InternalLocal);
    assert!(spec.host.is_none());
    assert_eq!(spec.launch, Launch::Python("/r/m.py".into()));
}
