//! Benchmark: how long an internal plugin with Python requirements takes
//! from `aigis run` to its first line, in an environment AIGIS makes
//! (cold: made and installed; warm: kept, nothing installed), with
//! `python3 -m venv` + pip and with `uv`, against the floor of the same
//! plugin without requirements, measured in the same run.
//!
//! Central runs as a service would: `PATH` the system's, whose `python3`
//! (Debian's, PEP 668-managed) makes the environments; the requirements
//! come from a local folder of wheels. The `uv` rows need a `uv`: on
//! `PATH`, or its directory in `AIGIS_BENCH_UV` (`pip install --target
//! DIR uv` gives `DIR/bin/uv`); without one they are skipped, saying so.
//!
//! Run: cargo build --release --bins && cargo bench -p aigis-e2e --bench envs

use aigis_e2e::plugins::{plugin, tiny_wheels};
use aigis_e2e::process::{write, Daemon};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const SERVICE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let wheels = base.join("wheels");
    tiny_wheels(&wheels);
    let reqs = format!(
        "--no-index\n--find-links {}\ntinypkg==1.0\n",
        wheels.display()
    );
    for (name, requirements) in [("bare", None), ("needy", Some(reqs.as_str()))] {
        let mut config = String::from(
            "\"\"\"A plugin as they were written for the original.\"\"\"\n\
             PLUGIN_TYPE = \"internal\"\nENTRYPOINT = \"{root}\"\nLAUNCH = \"main\"\n",
        );
        let mut files = vec![(
            "main.py",
            format!(
                "import time\n{}\ndef launch():\n    print('{name}-up', flush=True)\n    time.sleep(100)\n",
                if requirements.is_some() { "import tinypkg" } else { "" }
            ),
        )];
        if let Some(r) = requirements {
            config.push_str(
                "REQUIREMENT_COMMAND = \"pip3 install --user -r\"\n\
                 REQUIREMENT_FILE = \"{root}/requirements.txt\"\n",
            );
            files.push(("requirements.txt", r.to_string()));
        }
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        plugin(&base.join("src").join(name), &config, &files);
        write(
            base,
            &format!("{name}.aigis"),
            &format!("[internal]\n{name} = \"src/{name}\"\n"),
        );
    }
    let uv = uv_dir();
    let floor = median(|_| start_up(base, "bare", SERVICE_PATH.into(), false));
    let mut rows = vec![("no requirements (floor)", floor)];
    let tools: Vec<(&str, String)> = std::iter::once(("venv+pip", SERVICE_PATH.to_string()))
        .chain(
            uv.iter()
                .map(|d| ("uv", format!("{}:{SERVICE_PATH}", d.display()))),
        )
        .collect();
    for (tool, path) in &tools {
        let cold = median(|_| start_up(base, "needy", path.clone(), true));
        let warm = median(|_| start_up(base, "needy", path.clone(), false));
        rows.push((leak(format!("{tool}, cold")), cold));
        rows.push((leak(format!("{tool}, warm")), warm));
    }
    if uv.is_none() {
        println!("(uv rows skipped: no uv on PATH or in AIGIS_BENCH_UV)");
    }
    println!(
        "{:<26} {:>10} {:>10} {:>8}",
        "start-up", "median", "floor", "ratio"
    );
    for (what, t) in &rows {
        println!(
            "{what:<26} {:>8.0}ms {:>8.0}ms {:>7.2}x",
            ms(*t),
            ms(floor),
            ms(*t) / ms(floor)
        );
        println!(
            "{{\"row\":\"{what}\",\"ms\":{:.1},\"floor_ms\":{:.1},\"ratio\":{:.3}}}",
            ms(*t),
            ms(floor),
            ms(*t) / ms(floor)
        );
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Where a `uv` is: `AIGIS_BENCH_UV` (a directory holding `uv`, or one
/// holding `bin/uv`), else `PATH`.
fn uv_dir() -> Option<PathBuf> {
    let given = std::env::var_os("AIGIS_BENCH_UV").map(PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut candidates = given
        .iter()
        .flat_map(|d| [d.clone(), d.join("bin")])
        .chain(std::env::split_paths(&path));
    candidates.find(|d| d.join("uv").is_file())
}

fn median(mut run: impl FnMut(usize) -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS).map(&mut run).collect();
    times.sort();
    times[RUNS / 2]
}

/// From `aigis run` to the plugin's first line; `cold` removes the
/// plugin's environment first.
fn start_up(base: &Path, name: &str, path: String, cold: bool) -> Duration {
    let home = base.join(format!("home-{name}"));
    if cold {
        let _ = std::fs::remove_dir_all(home.join("envs").join(name));
    }
    let config = format!("{name}.aigis");
    let mut cmd = Daemon::command(
        base,
        &["run", "-c", &config, "--home", home.to_str().unwrap()],
    );
    cmd.env_clear()
        .env("PATH", path)
        .env("HOME", base)
        .env("AIGIS_LOG", "info")
        .env("NO_COLOR", "1");
    let start = Instant::now();
    let mut daemon = Daemon::spawn(cmd);
    let line = format!("{name}-up");
    let deadline = start + Duration::from_secs(300);
    while !daemon.output().contains(&line) {
        assert!(Instant::now() < deadline, "no {line}:\n{}", daemon.output());
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = start.elapsed();
    daemon.signal(libc::SIGTERM);
    let _ = daemon.wait_exit(Duration::from_secs(15));
    took
}
