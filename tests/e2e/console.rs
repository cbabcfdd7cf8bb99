//! The console stays readable: a plugin printing floods of lines gets a
//! share of it (its log file keeps everything), a quiet plugin none, and
//! Python log records of internal plugins keep their level.

use aigis_e2e::plugins::shell_plugin;
use aigis_e2e::process::{wait_until, write, Daemon};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn a_flood_gets_a_share_of_the_console_and_python_levels_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    shell_plugin(
        &base.join("src/flood"),
        "seq 1 50000 | sed 's/^/flood-line /'; echo flood-done; sleep 100\n",
    );
    shell_plugin(
        &base.join("src/hush"),
        "echo hush-says-hi; echo hush-done >&2; sleep 100\n",
    );
    write(
        base,
        "src/py/AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main'\n",
    );
    write(
        base,
        "src/py/main.py",
        "import time\n\ndef launch(log):\n    log.warning('py-warns')\n    \
         try:\n        {}['missing']\n    except KeyError:\n        log.exception('py-fails')\n    \
         while True:\n        time.sleep(1)\n",
    );
    write(
        base,
        "aigis.toml",
        "[aigis]\nconsole_lines_per_s = 100\nquiet = [\"hush\"]\n\
         [internal]\npy = \"src/py\"\n[external]\nflood = \"src/flood\"\nhush = \"src/hush\"\n",
    );
    let daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    assert!(wait_until(PATIENCE, || std::fs::read_to_string(
        home.join("log/flood.log")
    )
    .unwrap_or_default()
    .contains("flood-done")));
    daemon.expect_output("not shown on the console", PATIENCE);
    daemon.expect_output("py-fails", PATIENCE);
    std::thread::sleep(Duration::from_millis(500));
    let out = daemon.output();
    // The file has every line; the console far fewer.
    let file = std::fs::read_to_string(home.join("log/flood.log")).unwrap();
    assert_eq!(file.matches("flood-line ").count(), 50_000);
    let shown = out.matches("flood-line ").count();
    assert!(shown < 5_000, "{shown} flood lines on the console");
    // A quiet plugin reaches only its file.
    assert!(!out.contains("hush-says-hi"), "{out}");
    assert!(std::fs::read_to_string(home.join("log/hush.log"))
        .unwrap()
        .contains("hush-says-hi"));
    // Python levels are kept, the traceback goes with its record.
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("py-warns").contains(" WARN [py]"), "{out}");
    assert!(line("py-fails").contains("ERROR [py]"), "{out}");
    assert!(line("KeyError: 'missing'").contains("ERROR [py]"), "{out}");
    assert!(!out.contains("(stderr) ERROR"), "{out}");
}
