//! Internal-remote plugins: `import aigis` is the AigisProxy and every call
//! runs in central's core. Here on `HOST = "localhost"` (the local agent);
//! the same frames cross SSH for other hosts.

use aigis_e2e::plugins::core_plugin;
use aigis_e2e::process::{wait_until, write, Daemon};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn proxy_calls_reach_the_central_core_and_hostile_pickles_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let pwned = base.join("pwned");

    let store = base.join("src/store");
    core_plugin(
        &store,
        "import store_impl as store\nSKILLS = ['store.get', 'store.LIMIT', 'store.fail', 'store.slow', 'store.echo']\n",
        &[(
            "store_impl.py",
            r#"import os
import time

LIMIT = 10


def get(key, logger):
    logger.info("get %s in pid %d", key, os.getpid())
    return {"key": key, "n": len(key), "pid": os.getpid()}


def fail():
    raise KeyError("missing thing")


def slow(t):
    time.sleep(t)
    return t


def echo(x):
    return x
"#,
        )],
    );

    let remote = base.join("src/remote");
    write(
        &remote,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\nHOST = 'localhost'\n",
    );
    write(
        &remote,
        "main.py",
        &format!(
            r#"import datetime
import json
import os
import pickle
import struct
import threading
import time

import aigis

PWNED = {pwned:?}


class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + PWNED,))


def launch(log):
    out = {{}}
    out["get"] = aigis.store.get("abc")
    out["limit"] = aigis.store.LIMIT()
    when = datetime.datetime(2026, 11, 24, 12, 0)
    out["echo_ok"] = aigis.store.echo({{"when": when, "set": {{1, 2}}}}) == {{"when": when, "set": {{1, 2}}}}
    try:
        aigis.store.fail()
    except KeyError as e:
        out["fail_type"] = type(e).__name__
        out["fail_text"] = str(e)
        out["fail_notes"] = getattr(e, "__notes__", [])
        out["fail_tb"] = e.remote_traceback
    try:
        aigis.store.nothing_here()
    except AttributeError as e:
        out["missing_type"] = type(e).__name__
    try:
        aigis.store.echo(Evil())
    except Exception as e:
        out["evil_type"] = type(e).__name__
        out["evil_text"] = str(e)
    start = time.time()
    threads = [threading.Thread(target=aigis.store.slow, args=(0.5,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["parallel_s"] = time.time() - start
    out["pid"] = os.getpid()
    with open("results.json", "w") as f:
        json.dump(out, f)
    log.info("proxy-marker done")
    while True:
        time.sleep(1)
"#
        ),
    );
    write(
        base,
        "aigis.toml",
        "[core]\nstore = \"src/store\"\n[internal-remote]\nremote = \"src/remote\"\n",
    );
    let daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("proxy-marker done", PATIENCE);
    let results = std::fs::read_to_string(home.join("ext/remote/results.json")).unwrap();
    let has = |needle: &str| assert!(results.contains(needle), "{needle} not in {results}");
    has("\"key\": \"abc\", \"n\": 3");
    has("\"limit\": 10");
    has("\"echo_ok\": true");
    has("\"fail_type\": \"KeyError\"");
    // str(e) is what the same call gives locally; the traceback is a note.
    has("\"fail_text\": \"'missing thing'\"");
    has("\"fail_notes\": [\"Traceback in the AIGIS core:");
    has("store_impl.py");
    has("\"missing_type\": \"AttributeError\"");
    // The hostile pickle is refused by central and nothing ran.
    has("refused to unpickle posix.system");
    assert!(
        !pwned.exists(),
        "a pickle from a plugin ran code in central"
    );
    // Eight 0.5 s calls from eight threads overlap.
    let parallel: f64 = results
        .split("\"parallel_s\": ")
        .nth(1)
        .and_then(|s| s.split([',', '}']).next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    assert!(
        parallel < 2.0,
        "calls did not overlap: {parallel} s for 8 x 0.5 s"
    );
    // The skill ran in central (its logger is the core plugin's), not in the plugin.
    let out = daemon.output();
    let central_pid = daemon.pid();
    assert!(
        out.lines()
            .any(|l| l.contains("[store]") && l.contains(&format!("get abc in pid {central_pid}"))),
        "{out}"
    );
    assert!(wait_until(PATIENCE, || std::fs::read_to_string(
        home.join("log/remote.log")
    )
    .unwrap_or_default()
    .contains("proxy-marker done")));
}
