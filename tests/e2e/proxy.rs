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

/// A call or a result too big for the control link fails alone: the
/// plugin gets an exception and its next call works.
#[test]
fn oversized_calls_and_results_fail_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");

    core_plugin(
        &base.join("src/blob"),
        "import blob_impl as blob\nSKILLS = ['blob.size', 'blob.make', 'blob.ping']\n",
        &[(
            "blob_impl.py",
            "def size(x):\n    return len(x)\n\n\ndef make(n):\n    return b'x' * n\n\n\ndef ping():\n    return 'pong'\n",
        )],
    );
    let remote = base.join("src/big");
    write(
        &remote,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\nHOST = 'localhost'\n",
    );
    write(
        &remote,
        "main.py",
        r#"import json
import pickle
import struct
import sys
import threading
import time

import aigis

NINE_MIB = 9 * 1024 * 1024


def timed(f):
    """f() in a thread: its result, the exception it raised, or a timeout."""
    box = {"out": "timeout"}

    def run():
        try:
            box["out"] = {"ok": f()}
        except BaseException as e:
            box["out"] = {"type": type(e).__name__, "error": str(e)}

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    return box["out"]


def raw_oversized_call():
    """What a shim that does not check would send: it must be answered."""
    link = sys.modules["aigis"].__dict__["_link"]
    frames = link._send.__self__  # the shim's proxy.FrameSocket
    call_id = link.next_id()
    frame = b"C" + struct.pack(">Q", call_id) + pickle.dumps(
        ("blob.size", (b"y" * NINE_MIB,), {}), protocol=4)

    def send(frame):  # FrameSocket.send without its size check
        with frames._write:
            frames._send_all(struct.pack(">I", len(frame)) + frame)

    checked, link._send = link._send, send
    try:
        reply = link.request(call_id, frame)
    finally:
        link._send = checked
    info = json.loads(reply[10:].decode())
    return {"type": info["type"], "message": info["message"]}


def launch(log):
    out = {}
    out["big_arg"] = timed(lambda: aigis.blob.size(b"x" * NINE_MIB))
    out["after_big_arg"] = timed(aigis.blob.ping)
    out["raw"] = timed(raw_oversized_call)
    out["after_raw"] = timed(aigis.blob.ping)
    out["big_result"] = timed(lambda: aigis.blob.make(NINE_MIB))
    out["after_big_result"] = timed(aigis.blob.ping)
    out["almost_big"] = timed(lambda: aigis.blob.size(b"z" * (8 * 1024 * 1024 - 65 * 1024)))
    with open("results.json", "w") as f:
        json.dump(out, f)
    log.info("oversized-marker done")
    while True:
        time.sleep(1)
"#,
    );
    write(
        base,
        "aigis.toml",
        "[core]\nblob = \"src/blob\"\n[internal-remote]\nbig = \"src/big\"\n",
    );
    let daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("oversized-marker done", Duration::from_secs(240));
    let results = std::fs::read_to_string(home.join("ext/big/results.json")).unwrap();
    let has = |needle: &str| assert!(results.contains(needle), "{needle} not in {results}");
    // Refused by the shim before sending.
    has(r#""big_arg": {"type": "ValueError", "error": "the call's arguments are 9437"#);
    has("bytes pickled; at most 8323063 may cross to central");
    // Refused where the socket is served (on the central host, central's
    // lane; on a LAN host, the agent), which skipped the frame and answered it.
    has(r#""raw": {"ok": {"type": "ValueError""#);
    has(r#""message": "the call's arguments are 9437"#);
    // Refused by central: the result does not fit.
    has(r#""big_result": {"type": "ValueError", "error": "the result of aigis.blob.make is 9437"#);
    has("bytes pickled; at most 8323062 may cross back to the plugin");
    // Every following call works: the link is intact.
    has(r#""after_big_arg": {"ok": "pong"}"#);
    has(r#""after_raw": {"ok": "pong"}"#);
    has(r#""after_big_result": {"ok": "pong"}"#);
    has(r#""almost_big": {"ok": 8322048}"#);
}
