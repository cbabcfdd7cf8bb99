//! Benchmark: how fast a plugin's output reaches its log file (plugin ->
//! agent -> proto -> central -> file), against the floor of the same lines
//! written straight to a file by the same shell pipeline.
//!
//! Run: cargo build --release --bins && cargo bench -p aigis-e2e --bench log_throughput

use aigis_e2e::process::{wait_until, write, Daemon};
use std::process::Command;
use std::time::{Duration, Instant};

const LINES: u32 = 2_000_000;

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();

    // Floor: the same generator into a file, no AIGIS.
    let floor_file = base.join("floor.txt");
    let start = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "seq 1 {LINES} | sed 's/^/line /' > {}",
            floor_file.display()
        ))
        .status()
        .expect("sh");
    assert!(status.success());
    let floor = start.elapsed();

    write(
        &base.join("src/flood"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
    );
    write(
        &base.join("src/flood"),
        "run.sh",
        &format!("seq 1 {LINES} | sed 's/^/line /'\nexec sleep 1000\n"),
    );
    write(base, "aigis.toml", "[external]\nflood = \"src/flood\"\n");
    let log = base.join("home/log/flood.log");
    let last = format!("line {LINES}\n");
    let daemon = Daemon::start_with_env(
        base,
        &[
            "run",
            "-c",
            "aigis.toml",
            "--home",
            base.join("home").to_str().unwrap(),
        ],
        &[("AIGIS_LOG", "warn")],
    );
    assert!(wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&log)
            .map(|t| t.contains("running"))
            .unwrap_or(false)
    }));
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(300), || std::fs::read_to_string(&log)
            .map(|t| t.ends_with(&last))
            .unwrap_or(false)),
        "not all lines arrived"
    );
    let through = start.elapsed();
    drop(daemon);
    let rate = |d: Duration| f64::from(LINES) / d.as_secs_f64();
    println!(
        "{{\"case\": \"floor: seq | sed > file\", \"lines\": {LINES}, \"lines_per_s\": {:.0}}}",
        rate(floor)
    );
    println!(
        "{{\"case\": \"plugin stdout -> agent -> central -> log file\", \"lines\": {LINES}, \"lines_per_s\": {:.0}, \"ratio_to_floor\": {:.3}}}",
        rate(through),
        rate(through) / rate(floor)
    );
}
