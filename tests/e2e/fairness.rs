//! What one plugin may do to the others through the core: a flood of slow
//! calls does not starve another plugin's call, and a plugin reloads only
//! itself, core plugins, and what the operator granted.

use aigis_e2e::plugins::core_plugin;
use aigis_e2e::process::{write, Daemon};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn a_flood_of_slow_calls_does_not_starve_another_plugin_and_reloads_need_permission() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    core_plugin(
        &base.join("src/svc"),
        "import svc_impl as svc\nSKILLS = ['svc.slow', 'svc.fast']\n",
        &[(
            "svc_impl.py",
            "import time\n\ndef slow(t):\n    time.sleep(t)\n\ndef fast():\n    return 'fast'\n",
        )],
    );
    // 600 threads, each a call that takes 5 s.
    write(
        base,
        "src/flood/AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main'\n",
    );
    write(
        base,
        "src/flood/main.py",
        "import threading, time\nimport aigis\n\ndef launch():\n    \
         for _ in range(600):\n        threading.Thread(target=aigis.svc.slow, args=(5,), daemon=True).start()\n    \
         print('flood-started', flush=True)\n    while True:\n        time.sleep(1)\n",
    );
    write(
        base,
        "src/polite/AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main'\n",
    );
    write(
        base,
        "src/polite/main.py",
        r#"import os, time
import aigis

def launch():
    while not os.path.exists("go"):
        time.sleep(0.05)
    t = time.perf_counter()
    aigis.svc.fast()
    print("polite-call took %.2f s" % (time.perf_counter() - t), flush=True)
    for target in ("flood", "granted"):
        try:
            aigis.AIGISReload(target)
            print("reload", target, "allowed", flush=True)
        except RuntimeError as e:
            print("reload", target, "refused:", e, flush=True)
    while True:
        time.sleep(1)
"#,
    );
    write(
        base,
        "src/granted/AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sleep', '100']\n",
    );
    write(
        base,
        "aigis.toml",
        "[aigis]\nmay_reload = { polite = [\"granted\"] }\n\
         [core]\nsvc = \"src/svc\"\n[internal]\nflood = \"src/flood\"\npolite = \"src/polite\"\n\
         [external]\ngranted = \"src/granted\"\n",
    );
    let daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("flood-started", PATIENCE);
    daemon.expect_output("[granted] running", PATIENCE);
    std::thread::sleep(Duration::from_millis(500));
    write(&home.join("ext/polite"), "go", "");
    daemon.expect_output("polite-call took", PATIENCE);
    let out = daemon.output();
    let took: f64 = out
        .split("polite-call took ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(took < 2.0, "another plugin's flood held this call {took} s");

    daemon.expect_output("reload granted allowed", PATIENCE);
    daemon.expect_output("[granted] reloading", PATIENCE);
    let out = daemon.output();
    assert!(
        out.contains("reload flood refused: central refused reload: `polite` may reload itself and core plugins"),
        "{out}"
    );
    assert!(!out.contains("[flood] reloading"), "{out}");
}
