//! Good inputs: the spec's example files, load order, sources, `{root}`,
//! kinds and hosts, warnings.

use config::{
    parse_central, parse_plugin, CoreAccess, HostSpec, Launch, PluginEntry, PluginKind,
    PythonLaunch, Requirements, SecretSpec, Source,
};
use std::path::{Path, PathBuf};

fn entry(name: &str, section: PluginKind) -> PluginEntry {
    PluginEntry {
        name: name.into(),
        section,
        source: Source::LocalDir("/src".into()),
        line: 1,
    }
}

fn parse(section: PluginKind, root: &str, text: &str) -> config::PluginSpec {
    let root = Path::new(root);
    parse_plugin(
        &entry("p", section),
        root,
        &root.join("AIGIS/AIGIS.config"),
        text,
    )
    .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const SPEC_CORE: &str = r#"PLUGIN_TYPE = "core"
ENTRYPOINT = "{root}"

SYSTEM_REQUIREMENTS = ["pip3.7"]

REQUIREMENT_COMMAND = "pip3.7 install --user --index-url https://pypi.python.org/simple -r"
REQUIREMENT_FILE = "{root}/requirements.txt"

SECRETS = {}
"#;

const SPEC_EXTERNAL: &str = r#"PLUGIN_TYPE = "external"
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

#[test]
fn spec_core_example() {
    let spec = parse(PluginKind::Core, "/srv/home/ext/db", SPEC_CORE);
    assert_eq!(spec.name, "p");
    assert_eq!(spec.kind, PluginKind::Core);
    assert_eq!(spec.root, Path::new("/srv/home/ext/db"));
    assert_eq!(
        spec.config_file,
        Path::new("/srv/home/ext/db/AIGIS/AIGIS.config")
    );
    assert_eq!(spec.entrypoint.as_os_str(), "/srv/home/ext/db");
    assert_eq!(spec.launch, Launch::None);
    assert_eq!(spec.host, None);
    assert_eq!(spec.system_requirements, ["pip3.7"]);
    assert_eq!(
        spec.requirements,
        Some(Requirements {
            command: "pip3.7 install --user --index-url https://pypi.python.org/simple -r".into(),
            file: Some("/srv/home/ext/db/requirements.txt".into()),
        })
    );
    assert_eq!(
        spec.requirements.as_ref().map(Requirements::shell_line).as_deref(),
        Some("pip3.7 install --user --index-url https://pypi.python.org/simple -r '/srv/home/ext/db/requirements.txt'")
    );
    assert!(spec.secrets.is_empty());
    assert_eq!(spec.restart, None);
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
}

#[test]
fn spec_external_example() {
    let spec = parse(PluginKind::External, "/srv/home/ext/dash", SPEC_EXTERNAL);
    assert_eq!(spec.kind, PluginKind::External);
    assert_eq!(spec.entrypoint.as_os_str(), "/srv/home/ext/dash");
    assert_eq!(
        spec.launch,
        Launch::Command(vec!["python36".into(), "main.py".into()])
    );
    assert_eq!(spec.system_requirements, ["python36", "pip3.6"]);
    assert_eq!(
        spec.requirements
            .as_ref()
            .map(Requirements::shell_line)
            .as_deref(),
        Some("pip3.6 install -r '/srv/home/ext/dash/requirements.txt'")
    );
    let dest = "/srv/home/ext/dash/src/db/";
    assert_eq!(
        spec.secrets,
        vec![
            SecretSpec {
                key: "my_app_key.secret".into(),
                dest: dest.into()
            },
            SecretSpec {
                key: "ip.config".into(),
                dest: dest.into()
            },
            SecretSpec {
                key: "connection_token.secret".into(),
                dest: dest.into()
            },
        ]
    );
    // The trailing `/` (a directory destination) survives substitution.
    assert!(spec.secrets[0].dest.to_string_lossy().ends_with("/db/"));
    assert!(spec.host.is_none());
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
}

#[test]
fn root_substitution_only_where_the_spec_allows() {
    let text = "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}/bin'\nLAUNCH = ['{root}/run', '--x={root}']\n\
                REQUIREMENTS_COMMAND = 'echo {root}'\nREQUIREMENTS_FILE = 'reqs/{root}.txt'\n\
                SYSTEM_REQUIREMENTS = ['{root}']\nSECRETS = {'{root}.key': 'sub/{root}'}\n";
    let spec = parse(PluginKind::External, "/r", text);
    assert_eq!(spec.entrypoint, Path::new("/r/bin"));
    // External LAUNCH is argv, passed as written.
    assert_eq!(
        spec.launch,
        Launch::Command(vec!["{root}/run".into(), "--x={root}".into()])
    );
    let req = spec
        .requirements
        .as_ref()
        .map(|r| (r.command.as_str(), r.file.clone()));
    assert_eq!(
        req,
        Some(("echo {root}", Some(PathBuf::from("/r/reqs//r.txt"))))
    );
    assert_eq!(spec.system_requirements, ["{root}"]);
    assert_eq!(spec.secrets[0].key, "{root}.key");
    assert_eq!(spec.secrets[0].dest, Path::new("/r/sub//r"));
}

#[test]
fn relative_paths_join_root_and_internal_launch_joins_entrypoint() {
    let text = "PLUGIN_TYPE = 'internal'\nENTRYPOINT = 'src'\nLAUNCH = 'main.py'\n\
                REQUIREMENTS_COMMAND = 'pip install -r'\nREQUIREMENTS_FILE = 'requirements.txt'\n";
    let spec = parse(PluginKind::InternalLocal, "/r", text);
    assert_eq!(spec.kind, PluginKind::InternalLocal);
    assert_eq!(spec.entrypoint, Path::new("/r/src"));
    assert_eq!(
        spec.launch,
        Launch::Python(PythonLaunch::File("/r/src/main.py".into()))
    );
    assert_eq!(
        spec.requirements.and_then(|r| r.file),
        Some(PathBuf::from("/r/requirements.txt"))
    );

    let text =
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}/src'\nLAUNCH = '{root}/AIGIS/launch.py'\n";
    let spec = parse(PluginKind::InternalLocal, "/r", text);
    assert_eq!(
        spec.launch,
        Launch::Python(PythonLaunch::File("/r/AIGIS/launch.py".into()))
    );
}

#[test]
fn kinds_from_type_section_and_host() {
    let int = "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'm.py'\n";

    // "internal" + [internal-remote] + HOST: remote, HOST kept.
    let spec = parse(
        PluginKind::InternalRemote,
        "/r",
        &format!("{int}HOST = 'pi@127.0.0.2:2222'\n"),
    );
    assert_eq!(spec.kind, PluginKind::InternalRemote);
    assert_eq!(
        spec.host,
        Some(HostSpec {
            user: Some("pi".into()),
            host: "127.0.0.2".into(),
            port: Some(2222)
        })
    );

    // internal-remote keeps even a local HOST.
    let spec = parse(
        PluginKind::InternalRemote,
        "/r",
        "PLUGIN_TYPE = 'internal-remote'\nENTRYPOINT = '{root}'\nLAUNCH = 'm.py'\nHOST = 'localhost'\n",
    );
    assert_eq!(spec.kind, PluginKind::InternalRemote);
    assert_eq!(
        spec.host.map(|h| h.to_string()).as_deref(),
        Some("localhost")
    );

    // "internal" + [internal-local] with a local HOST stays local; host dropped.
    let spec = parse(
        PluginKind::InternalLocal,
        "/r",
        &format!("{int}HOST = '[::1]:22'\n"),
    );
    assert_eq!(spec.kind, PluginKind::InternalLocal);
    assert_eq!(spec.host, None);

    let spec = parse(
        PluginKind::InternalLocal,
        "/r",
        "PLUGIN_TYPE = 'internal-local'\nENTRYPOINT = '{root}'\nLAUNCH = 'm.py'\n",
    );
    assert_eq!(spec.kind, PluginKind::InternalLocal);

    // External: a remote HOST is kept, a local one dropped.
    let ext = "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ('./run', '-v')\n";
    let spec = parse(PluginKind::External, "/r", &format!("{ext}HOST = 'nas'\n"));
    assert_eq!(spec.host.map(|h| h.host).as_deref(), Some("nas"));
    assert_eq!(
        spec.launch,
        Launch::Command(vec!["./run".into(), "-v".into()])
    );
    let spec = parse(
        PluginKind::External,
        "/r",
        &format!("{ext}HOST = '127.0.0.1'\n"),
    );
    assert_eq!(spec.host, None);

    // Core with a local HOST is fine.
    let spec = parse(
        PluginKind::Core,
        "/r",
        "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\nHOST = 'localhost'\n",
    );
    assert_eq!((spec.kind, spec.host), (PluginKind::Core, None));
}

#[test]
fn none_means_absent_and_warnings_carry_file_and_line() {
    let text = "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x']\n\
                COLOR = 'blue'\nRESTART = 1\nRESTART = 2\nHOST = None\nSECRETS = None\n\
                SYSTEM_REQUIREMENTS = None\nREQUIREMENTS_COMMAND = None\nREQUIREMENT_FILE = None\n";
    let spec = parse(PluginKind::External, "/r", text);
    assert_eq!(spec.restart, Some(config::Restart::Times(2)));
    assert_eq!(spec.host, None);
    assert!(spec.secrets.is_empty());
    assert!(spec.system_requirements.is_empty());
    assert_eq!(spec.requirements, None);
    assert_eq!(spec.warnings.len(), 2, "{:?}", spec.warnings);
    assert_eq!(
        spec.warnings[0],
        "/r/AIGIS/AIGIS.config:4: unknown option `COLOR` ignored"
    );
    assert!(spec.warnings[1].starts_with("/r/AIGIS/AIGIS.config:6: option `RESTART`"));
    assert!(spec.warnings[1].contains("first on line 5"));

    let spec = parse(
        PluginKind::External,
        "/r",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x']\nRESTART = None\n",
    );
    assert_eq!(spec.restart, None);
    let spec = parse(
        PluginKind::External,
        "/r",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x']\nRESTART = 0\n",
    );
    assert_eq!(spec.restart, Some(config::Restart::Times(0)));
    for (word, policy) in [
        ("always", config::Restart::Always),
        ("on-failure", config::Restart::OnFailure),
    ] {
        let text = format!(
            "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{{root}}'\nLAUNCH = ['x']\nRESTART = '{word}'\n"
        );
        let spec = parse(PluginKind::External, "/r", &text);
        assert_eq!(spec.restart, Some(policy), "{word}");
    }

    // LAUNCH on a core plugin is ignored with a warning.
    let spec = parse(
        PluginKind::Core,
        "/r",
        "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\nLAUNCH = 'x.py'\n",
    );
    assert_eq!(spec.launch, Launch::None);
    assert_eq!(spec.warnings.len(), 1);
    assert!(spec.warnings[0].starts_with("/r/AIGIS/AIGIS.config:3: option `LAUNCH` ignored"));
}

#[test]
fn requirements_command_alone_and_shell_quoting() {
    let spec = parse(
        PluginKind::External,
        "/r",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x']\nREQUIREMENTS_COMMAND = 'make deps'\n",
    );
    assert_eq!(
        spec.requirements
            .as_ref()
            .map(Requirements::shell_line)
            .as_deref(),
        Some("make deps")
    );
    let r = Requirements {
        command: "pip install -r".into(),
        file: Some("/it's here/r.txt".into()),
    };
    assert_eq!(r.shell_line(), r"pip install -r '/it'\''s here/r.txt'");
}

const CENTRAL: &str = "/etc/aigis/aigis.toml";

fn central(text: &str) -> config::CentralConfig {
    parse_central(text, Path::new(CENTRAL)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn central_load_order_alias_and_lines() {
    let c = central(
        "# plugins\n[external]\nzeta = \"/z\"\nalpha = \"/a\"\n\n[internal]\nmid = \"/m\"\n\
         [core]\nc2 = \"/c2\"\nc1 = \"/c1\"\n[internal-remote]\nr = \"/r\"\n[internal-local]\nl2 = \"/l2\"\n[aigis]\n",
    );
    let got: Vec<_> = c
        .plugins
        .iter()
        .map(|p| (p.name.as_str(), p.section, p.line))
        .collect();
    assert_eq!(
        got,
        vec![
            ("c2", PluginKind::Core, 9),
            ("c1", PluginKind::Core, 10),
            ("mid", PluginKind::InternalLocal, 7),
            ("l2", PluginKind::InternalLocal, 14),
            ("r", PluginKind::InternalRemote, 12),
            ("zeta", PluginKind::External, 3),
            ("alpha", PluginKind::External, 4),
        ]
    );
    assert_eq!(c.path, Path::new(CENTRAL));
    assert_eq!(c.aigis.home, None);
}

#[test]
fn central_sources() {
    let c = central(
        "[aigis]\nhome = \"state\"\n[external]\n\
         g = \"https://example.org/poller.git#v2\"\n\
         h = \"http://h/x\"\n\
         f = \"file:///srv/repo\"\n\
         s = \"ssh://git@h/x.git#0123abc\"\n\
         gi = \"git://h/x\"\n\
         scp = \"git@github.com:u/r.git#main\"\n\
         rel = \"plugins/p\"\n\
         dot = \"./q\"\n\
         abs = \"/srv/p\"\n\
         hash = \"dir#1\"\n",
    );
    assert_eq!(c.aigis.home, Some(PathBuf::from("/etc/aigis/state")));
    let got: Vec<_> = c.plugins.iter().map(|p| p.source.clone()).collect();
    let git = |u: &str, r: Option<&str>| Source::Git {
        url: u.into(),
        reference: r.map(Into::into),
    };
    assert_eq!(
        got,
        vec![
            git("https://example.org/poller.git", Some("v2")),
            git("http://h/x", None),
            git("file:///srv/repo", None),
            git("ssh://git@h/x.git", Some("0123abc")),
            git("git://h/x", None),
            git("git@github.com:u/r.git", Some("main")),
            Source::LocalDir("/etc/aigis/plugins/p".into()),
            Source::LocalDir("/etc/aigis/./q".into()),
            Source::LocalDir("/srv/p".into()),
            Source::LocalDir("/etc/aigis/dir#1".into()),
        ]
    );
}

#[test]
fn central_home_dir_expansion() {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let c = central("[aigis]\nhome = \"~/aigis\"\n[core]\nx = \"~/plugins/x\"\n");
    assert_eq!(c.aigis.home, Some(Path::new(&home).join("aigis")));
    assert_eq!(
        c.plugins[0].source,
        Source::LocalDir(Path::new(&home).join("plugins/x"))
    );
}

#[test]
fn central_empty_and_absent_sections() {
    assert!(central("").plugins.is_empty());
    assert!(central("[core]\n[external]\n").plugins.is_empty());
    assert!(central("\u{feff}[core]\nx = \"/x\"\n").plugins.len() == 1);
}

#[test]
fn load_central_reads_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aigis.toml");
    std::fs::write(&path, "[internal]\nweb = \"web\"\n").expect("write");
    let c = config::load_central(&path).expect("load");
    assert_eq!(c.path, path);
    assert_eq!(
        c.plugins[0].source,
        Source::LocalDir(dir.path().join("web"))
    );
}

#[test]
fn kind_names() {
    let names: Vec<_> = [
        PluginKind::Core,
        PluginKind::InternalLocal,
        PluginKind::InternalRemote,
        PluginKind::External,
    ]
    .iter()
    .map(PluginKind::as_str)
    .collect();
    assert_eq!(
        names,
        ["core", "internal-local", "internal-remote", "external"]
    );
}

/// `[aigis] user` for every plugin, `users` for some; only the central
/// file says who a plugin runs as.
#[test]
fn central_users() {
    let c = central(
        "[aigis]\nuser = \"aigis-plugins\"\nusers = { \"web\" = \"aigis-web\", db = \"pg.svc$\" }\n\
         [external]\nweb = \"/w\"\ndb = \"/d\"\nother = \"/o\"\n",
    );
    assert_eq!(c.aigis.user.as_deref(), Some("aigis-plugins"));
    assert_eq!(
        c.aigis.users,
        [
            ("web".to_string(), "aigis-web".to_string()),
            ("db".to_string(), "pg.svc$".to_string())
        ]
    );
    assert_eq!(c.aigis.user_for("web"), Some("aigis-web"));
    assert_eq!(c.aigis.user_for("db"), Some("pg.svc$"));
    assert_eq!(c.aigis.user_for("other"), Some("aigis-plugins"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // Without them, every plugin runs as the agent's own user.
    let c = central("[external]\nweb = \"/w\"\n");
    assert_eq!(c.aigis.user_for("web"), None);

    // A user for a plugin the file does not list is a warning with its line.
    let c = central("[aigis]\nusers = {\n  wbe = \"aigis-web\" }\n[external]\nweb = \"/w\"\n");
    assert_eq!(c.aigis.user_for("web"), None);
    assert_eq!(
        c.warnings,
        [format!(
            "{CENTRAL}:3: [aigis] users names `wbe`, which is not a plugin of this file"
        )]
    );
}

#[test]
fn unknown_central_sections_are_warnings() {
    let c = central(
        "[system]\nlogin = \"me\"\npassword = \"hunter2\"\n[plugins]\na = \"/a\"\n[external]\nx = \"/x\"\n",
    );
    assert_eq!(c.plugins.len(), 1);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains(&format!("{CENTRAL}:1: unknown section [system] ignored")));
    assert!(c.warnings[1].contains(":4: unknown section [plugins] ignored (1 entry)"));
    // The ignored section's values are never echoed.
    assert!(!c.warnings.concat().contains("hunter2"));
}

/// The original implementation's dialect: a module docstring, `LAUNCH` as
/// a module name, `PLUGIN_TYPE = "internal"`.
#[test]
fn original_dialect_internal_plugin() {
    let text = "\"\"\"\nAIGIS config for mad-bot\n\"\"\"\nPLUGIN_TYPE = \"internal\"\n\
                ENTRYPOINT = \"{root}\"\nLAUNCH = \"main\"\n";
    let spec = parse(PluginKind::InternalLocal, "/r", text);
    assert_eq!(spec.kind, PluginKind::InternalLocal);
    assert_eq!(
        spec.launch,
        Launch::Python(PythonLaunch::Module("main".into()))
    );
    assert_eq!(spec.core, Some(CoreAccess::Proxy));
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);

    let spec = parse(
        PluginKind::InternalLocal,
        "/r",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}/src'\nLAUNCH = 'app.server'\n",
    );
    assert_eq!(
        spec.launch,
        Launch::Python(PythonLaunch::Module("app.server".into()))
    );
}

#[test]
fn core_access_follows_the_plugins_dialect_and_core_overrides() {
    let int = |ty: &str, extra: &str| {
        format!("PLUGIN_TYPE = '{ty}'\nENTRYPOINT = '{{root}}'\nLAUNCH = 'main.py'\n{extra}")
    };
    let core = |ty: &str, extra: &str| parse(PluginKind::InternalLocal, "/r", &int(ty, extra)).core;
    assert_eq!(core("internal", ""), Some(CoreAccess::Proxy));
    assert_eq!(core("internal-local", ""), Some(CoreAccess::Copy));
    assert_eq!(core("internal", "CORE = 'copy'\n"), Some(CoreAccess::Copy));
    assert_eq!(
        core("internal-local", "CORE = 'proxy'\n"),
        Some(CoreAccess::Proxy)
    );
    let remote = parse(
        PluginKind::InternalRemote,
        "/r",
        &int("internal", "HOST = 'nas'\nCORE = 'proxy'\n"),
    );
    assert_eq!(remote.core, Some(CoreAccess::Proxy));
    let ext = parse(
        PluginKind::External,
        "/r",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x']\nCORE = 'copy'\n",
    );
    assert_eq!(ext.core, None);
    assert!(
        ext.warnings[0].contains(":4: option `CORE` ignored"),
        "{:?}",
        ext.warnings
    );
}

/// The type comes from PLUGIN_TYPE; the section only orders loading. A
/// disagreement with one sensible reading is a warning saying which.
#[test]
fn section_and_type_disagreements_with_one_reading_are_warnings() {
    let int = "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'm.py'\n";
    for (section, text, kind, words) in [
        (PluginKind::External, "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\n".to_string(), PluginKind::Core, "listed under [external] in the central config: runs as core"),
        (PluginKind::Core, "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x']\n".to_string(), PluginKind::External, "under [core] in the central config: runs as external"),
        (PluginKind::External, int.to_string(), PluginKind::InternalLocal, "runs as internal-local"),
        (PluginKind::InternalRemote, int.to_string(), PluginKind::InternalLocal, "runs as internal-local"),
        (PluginKind::InternalRemote, "PLUGIN_TYPE = 'internal-local'\nENTRYPOINT = '{root}'\nLAUNCH = 'm.py'\n".to_string(), PluginKind::InternalLocal, "PLUGIN_TYPE \"internal-local\" but listed under [internal-remote]"),
        (PluginKind::InternalLocal, "PLUGIN_TYPE = 'internal-remote'\nENTRYPOINT = '{root}'\nLAUNCH = 'm.py'\nHOST = 'nas'\n".to_string(), PluginKind::InternalRemote, "runs as internal-remote"),
        (PluginKind::InternalLocal, format!("{int}HOST = 'pi@nas'\n"), PluginKind::InternalRemote, "runs as internal-remote"),
    ] {
        let spec = parse(section, "/r", &text);
        assert_eq!(spec.kind, kind, "{text}");
        assert_eq!(spec.warnings.len(), 1, "{text}: {:?}", spec.warnings);
        assert!(spec.warnings[0].contains(words), "{text}: {:?}", spec.warnings);
        assert!(spec.warnings[0].contains("AIGIS.config:1:"), "{:?}", spec.warnings);
    }
}

#[test]
fn requirements_file_without_a_command_is_a_warning() {
    let spec = parse(
        PluginKind::External,
        "/r",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x']\nREQUIREMENT_FILE = 'r.txt'\n",
    );
    assert_eq!(spec.requirements, None);
    assert!(
        spec.warnings[0]
            .contains(":4: option `REQUIREMENT_FILE` ignored: REQUIREMENTS_COMMAND is not set"),
        "{:?}",
        spec.warnings
    );
}

#[test]
fn an_unknown_option_near_a_known_one_is_named_as_a_likely_typo() {
    let text = "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['x']\n\
                RESTARTS = 3\nENTRYPIONT = '{root}'\nhost = 'nas'\nCOLOR = 'blue'\n\
                REQUIREMENT_FILES = 'r.txt'\n";
    let spec = parse(PluginKind::External, "/r", text);
    assert_eq!(
        spec.warnings,
        [
            "/r/AIGIS/AIGIS.config:4: unknown option `RESTARTS` ignored; did you mean `RESTART`?",
            "/r/AIGIS/AIGIS.config:5: unknown option `ENTRYPIONT` ignored; did you mean `ENTRYPOINT`?",
            "/r/AIGIS/AIGIS.config:6: unknown option `host` ignored; did you mean `HOST`?",
            // Too far from every option to be a typo of one.
            "/r/AIGIS/AIGIS.config:7: unknown option `COLOR` ignored",
            "/r/AIGIS/AIGIS.config:8: unknown option `REQUIREMENT_FILES` ignored; did you mean `REQUIREMENT_FILE`?",
        ]
    );
}
