//! Plugins written for the original Python AIGIS run unmodified: configs
//! that open with a docstring, `LAUNCH = "main"` with `def launch():`,
//! `PLUGIN_TYPE = "internal"` getting the AigisProxy to the live core, their
//! own `src` package beside a core plugin's, constants called, exceptions
//! that read like local ones, a reload of a core plugin seen by the caller.
//! The spec's dialect runs beside them, each reading chosen by the plugin's
//! own file.

use aigis_e2e::git::TestRepo;
use aigis_e2e::process::{aigis, wait_until, write, Daemon};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// A core plugin as its author wrote it for the original: a docstring, and
/// a top-level `src` package that holds the code.
fn boorunator(repo: &TestRepo, version: &str) {
    repo.write(
        "AIGIS/AIGIS.config",
        "\"\"\"\nAIGIS config for boorunator\n\"\"\"\n\nPLUGIN_TYPE = \"core\"\nENTRYPOINT = \"{root}\"\n",
    );
    repo.write(
        "AIGIS/AIGIS.core",
        "from src import boorunator\n\nSKILLS = [\"boorunator\"]\n",
    );
    repo.write("src/__init__.py", "");
    repo.write("src/ratings.py", "SAFE = \"safe\"\n");
    repo.write(
        "src/boorunator.py",
        &format!(
            r#"import os

from src import ratings

VERSION = "{version}"

# Import-time work (a browser, a model...) happens once, in central.
with open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "imports.log"), "a") as f:
    f.write("%d\n" % os.getpid())


def search(tag, logger=None):
    logger.info("searching %s", tag)
    return ["%s-%d" % (tag, i) for i in range(2)]


def pid():
    return os.getpid()
"#
        ),
    );
}

#[test]
fn plugins_written_for_the_original_run_beside_the_specs_dialect() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");

    let repo = TestRepo::new(base, "boorunator");
    boorunator(&repo, "v1");
    repo.commit("v1");

    write(
        base,
        "src/backdoorgery/AIGIS/AIGIS.config",
        "'''AIGIS config for backdoorgery'''\nPLUGIN_TYPE = 'core'  # the original's own comment\nENTRYPOINT = '{root}'\n",
    );
    write(
        base,
        "src/backdoorgery/AIGIS/AIGIS.core",
        "import backdoor\nSKILLS = ['backdoor.fortune', 'backdoor.fail', 'backdoor.GREETING']\n",
    );
    write(
        base,
        "src/backdoorgery/backdoor.py",
        "GREETING = 'hello'\n\n\ndef fortune():\n    return 'a fortune'\n\n\n\
         class TagError(ValueError):\n    pass\n\n\n\
         def fail(tag):\n    raise TagError('bad tag %s' % tag)\n",
    );

    // mad-bot: the original's dialect, with its own `src` package.
    let madbot = base.join("src/mad-bot");
    write(
        &madbot,
        "AIGIS/AIGIS.config",
        "\"\"\"\nAIGIS config for mad-bot\n\"\"\"\nPLUGIN_TYPE = \"internal\"\nENTRYPOINT = \"{root}\"\nLAUNCH = \"main\"\n",
    );
    write(&madbot, "src/__init__.py", "");
    write(&madbot, "src/consts.py", "AIGISID = 4242\n");
    write(
        &madbot,
        "main.py",
        r#"import json
import os
import time

import aigis
from src.consts import AIGISID


def launch():
    out = {"aigisid": AIGISID, "own_pid": os.getpid()}
    out["search"] = aigis.boorunator.search("cat")
    out["safe"] = aigis.boorunator.ratings.SAFE()
    out["version"] = aigis.boorunator.VERSION()
    out["core_pid"] = aigis.boorunator.pid()
    out["greeting"] = aigis.backdoor.GREETING()
    try:
        aigis.backdoor.fail("x")
    except ValueError as e:
        out["error"] = str(e)
        out["error_type"] = type(e).__name__
        out["has_traceback"] = "backdoor.py" in e.remote_traceback
    try:
        aigis.boorunator.os.system("true")
    except AttributeError as e:
        out["refused"] = str(e)
    with open("results.json", "w") as f:
        json.dump(out, f)
    print("mad-bot ready", flush=True)
    while not os.path.exists("go-reload"):
        time.sleep(0.05)
    aigis.AIGISReload("boorunator")
    while aigis.boorunator.VERSION() != "v2":
        time.sleep(0.1)
    print("mad-bot sees", aigis.boorunator.VERSION(), flush=True)
    while True:
        time.sleep(1)
"#,
    );

    // The spec's dialect: a file, launch(log), the proxy by PLUGIN_TYPE.
    write(
        base,
        "src/specbot/AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = '{root}/main.py'\n",
    );
    write(
        base,
        "src/specbot/main.py",
        "import time\nimport aigis\n\ndef launch(log):\n    log.info('specbot got %s', aigis.backdoor.fortune())\n    \
         while True:\n        time.sleep(1)\n",
    );

    // The copied core, chosen by CORE and by PLUGIN_TYPE: constants are read
    // without a call, in the plugin's own process.
    let copied = "import os\nimport time\nimport aigis\n\ndef launch(log):\n    \
                  log.info('%s read %s %s in %s', NAME, aigis.backdoor.GREETING, aigis.boorunator.VERSION, \
                  'own process' if aigis.boorunator.pid() == os.getpid() else 'central')\n    \
                  while True:\n        time.sleep(1)\n";
    write(
        base,
        "src/copybot/AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nCORE = 'copy'\nENTRYPOINT = '{root}'\nLAUNCH = 'main'\n",
    );
    write(
        base,
        "src/copybot/main.py",
        &format!("NAME = 'copybot'\n{copied}"),
    );
    write(
        base,
        "src/localbot/AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal-local'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\n",
    );
    write(
        base,
        "src/localbot/main.py",
        &format!("NAME = 'localbot'\n{copied}"),
    );

    write(
        base,
        "aigis.toml",
        &format!(
            "[system]\nlogin = \"admin\"\npassword = \"hunter2\"\n\n\
             [core]\nboorunator = \"{}\"\nbackdoorgery = \"src/backdoorgery\"\n\n\
             [internal]\nmad-bot = \"src/mad-bot\"\ncopybot = \"src/copybot\"\nlocalbot = \"src/localbot\"\n\n\
             [external]\nspecbot = \"src/specbot\"\n",
            repo.file_url()
        ),
    );
    let mut daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("mad-bot ready", PATIENCE);
    daemon.expect_output("specbot got a fortune", PATIENCE);
    daemon.expect_output("copybot read hello v1 in own process", PATIENCE);
    daemon.expect_output("localbot read hello v1 in own process", PATIENCE);

    let results = std::fs::read_to_string(home.join("ext/mad-bot/results.json")).unwrap();
    let has = |needle: &str| assert!(results.contains(needle), "{needle}: {results}");
    has("\"aigisid\": 4242"); // its own `src`, not the core plugin's
    has("\"search\": [\"cat-0\", \"cat-1\"]");
    has("\"safe\": \"safe\""); // a constant, called, through the plugin's own module
    has("\"version\": \"v1\"");
    has(&format!("\"core_pid\": {}", daemon.pid())); // the live core
    has("\"greeting\": \"hello\"");
    has("\"error\": \"bad tag x\"");
    has("\"error_type\": \"TagError\"");
    has("\"has_traceback\": true");
    has("aigis.boorunator.os.system is not exposed");

    // The core plugin's import-time work ran in central and in the two
    // copies only, never in the proxied plugins' processes.
    let imports = std::fs::read_to_string(home.join("imports.log")).unwrap_or_default();
    let own_pid = results
        .split("\"own_pid\": ")
        .nth(1)
        .and_then(|s| s.split([',', '}']).next())
        .unwrap()
        .trim()
        .to_string();
    assert!(
        imports.lines().any(|l| l == daemon.pid().to_string()),
        "{imports}"
    );
    assert!(!imports.lines().any(|l| l == own_pid), "{imports}");
    assert_eq!(imports.lines().count(), 3, "central + 2 copies: {imports}");

    // A new commit, then AIGISReload from the plugin: it sees the new code.
    boorunator(&repo, "v2");
    repo.commit("v2");
    write(&home.join("ext/mad-bot"), "go-reload", "");
    daemon.expect_output("mad-bot sees v2", PATIENCE);

    let out = daemon.output();
    assert!(out.contains("unknown section [system] ignored"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    assert!(
        out.lines().any(|l| l.contains("[specbot]")
            && l.contains("listed under [external]")
            && l.contains("runs as internal-local")),
        "{out}"
    );
    daemon.signal(libc::SIGTERM);
    assert!(daemon
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
}

/// `LAUNCH` names what it runs; when nothing is there, `check` and `run`
/// both say what was tried, and the plugin never shows as running.
#[test]
fn a_launch_that_is_not_there_names_what_was_tried() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    for (name, launch) in [("bymodule", "mian"), ("byfile", "{root}/mian.py")] {
        write(
            base,
            &format!("src/{name}/AIGIS/AIGIS.config"),
            &format!("PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{{root}}'\nLAUNCH = '{launch}'\n"),
        );
        write(
            base,
            &format!("src/{name}/main.py"),
            "def launch():\n    pass\n",
        );
    }
    write(
        base,
        "aigis.toml",
        "[internal]\nbymodule = \"src/bymodule\"\nbyfile = \"src/byfile\"\n",
    );
    let (_, check) = aigis(
        base,
        &[
            "check",
            "-c",
            "aigis.toml",
            "--home",
            home.to_str().unwrap(),
        ],
    );
    let module_err = "LAUNCH module `mian` is not in ENTRYPOINT";
    assert!(check.contains(module_err), "{check}");
    assert!(check.contains("mian.py and"), "{check}");
    assert!(check.contains("mian/__init__.py"), "{check}");
    assert!(check.contains("LAUNCH file"), "{check}");

    let daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output(module_err, PATIENCE);
    assert!(wait_until(PATIENCE, || daemon
        .output()
        .contains("src/byfile/mian.py does not exist")
        || daemon.output().contains("byfile/mian.py does not exist")));
    let out = daemon.output();
    assert!(
        !out.lines()
            .any(|l| (l.contains("[bymodule]") || l.contains("[byfile]")) && l.contains("running")),
        "{out}"
    );
}
