//! Benchmark: the round trip of an internal-remote plugin's call to the
//! core (plugin -> agent -> SSH -> central -> pyo3 -> back), against the
//! floor measured in the same run on the same sshd: a 64-byte ping-pong
//! through an SSH exec channel running `cat`.
//!
//! Run: cargo build --release --bins && cargo bench -p aigis-e2e --bench remote_call
//! (needs sshd, like the end-to-end tests). Prints one JSON line per case.

use aigis_e2e::process::{wait_until, write, Daemon};
use aigis_e2e::sshd::Sshd;
use russh::client;
use russh::keys::{load_secret_key, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CALLS: usize = 3000;
const PAYLOAD: usize = 64;

struct TrustOwnFixture;

impl client::Handler for TrustOwnFixture {
    type Error = russh::Error;
    // The bench talks only to the sshd it started itself on loopback.
    async fn check_server_key(&mut self, _: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

fn summary(case: &str, mut lat_us: Vec<f64>, total: Duration) -> String {
    lat_us.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| lat_us[((lat_us.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "{{\"case\": \"{case}\", \"calls\": {}, \"calls_per_s\": {:.0}, \"p50_us\": {:.1}, \"p99_us\": {:.1}}}",
        lat_us.len(),
        lat_us.len() as f64 / total.as_secs_f64(),
        p(0.5),
        p(0.99)
    )
}

async fn cat_floor(sshd: &Sshd) -> (Vec<f64>, Duration) {
    let config = Arc::new(client::Config::default());
    let mut session = client::connect(config, (sshd.addr.as_str(), sshd.port), TrustOwnFixture)
        .await
        .expect("connect");
    let key = load_secret_key(&sshd.client_key, None).expect("key");
    let auth = session
        .authenticate_publickey("root", PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .expect("auth");
    assert!(auth.success());
    let channel = session.channel_open_session().await.expect("channel");
    channel.exec(true, "cat").await.expect("exec cat");
    let mut stream = channel.into_stream();
    let ping = [7u8; PAYLOAD];
    let mut pong = [0u8; PAYLOAD];
    let mut lat = Vec::with_capacity(CALLS);
    let start = Instant::now();
    for _ in 0..CALLS {
        let t = Instant::now();
        stream.write_all(&ping).await.expect("write");
        stream.flush().await.expect("flush");
        stream.read_exact(&mut pong).await.expect("read");
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    (lat, start.elapsed())
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let sshd = Sshd::start(&base.join("sshd"), "127.0.0.2");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (lat, total) = runtime.block_on(cat_floor(&sshd));
    let floor = summary("floor: 64-byte ping-pong over ssh exec cat", lat, total);

    let user = base.join("user");
    write(
        &user,
        ".ssh/config",
        &format!(
            "Host lan1\n    HostName {}\n    Port {}\n    User root\n    IdentityFile {}\n",
            sshd.addr,
            sshd.port,
            sshd.client_key.display()
        ),
    );
    write(&user, ".ssh/known_hosts", &sshd.known_hosts_line);
    let core = base.join("src/echo");
    write(
        &core,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\n",
    );
    write(
        &core,
        "AIGIS/AIGIS.core",
        "import echo_impl as echo\nSKILLS = ['echo.ping']\n",
    );
    write(&core, "echo_impl.py", "def ping(x):\n    return x\n");
    let caller = base.join("src/caller");
    write(
        &caller,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\nHOST = 'lan1'\n",
    );
    write(
        &caller,
        "main.py",
        &format!(
            r#"import json, time
import aigis

def launch(log):
    payload = b"x" * {PAYLOAD}
    for _ in range(100):
        aigis.echo.ping(payload)
    lat = []
    start = time.perf_counter()
    for _ in range({CALLS}):
        t = time.perf_counter()
        aigis.echo.ping(payload)
        lat.append((time.perf_counter() - t) * 1e6)
    total = time.perf_counter() - start
    with open("bench.json", "w") as f:
        json.dump({{"lat": lat, "total": total}}, f)
    while True:
        time.sleep(1)
"#
        ),
    );
    let hosts = base.join("hosts");
    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nremote_dir = \"{}/{{host}}\"\n[core]\necho = \"src/echo\"\n[internal-remote]\ncaller = \"src/caller\"\n",
            hosts.display()
        ),
    );
    let daemon = Daemon::start_with_env(
        base,
        &[
            "run",
            "-c",
            "aigis.toml",
            "--home",
            base.join("home").to_str().unwrap(),
        ],
        &[("HOME", user.to_str().unwrap()), ("AIGIS_LOG", "warn")],
    );
    let result = hosts.join("lan1/ext/caller/bench.json");
    assert!(
        wait_until(Duration::from_secs(300), || result.exists()),
        "the plugin did not finish: {}",
        daemon.output()
    );
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(&result).expect("bench.json");
    let lat: Vec<f64> = text
        .split("\"lat\": [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .expect("latencies");
    let total: f64 = text
        .split("\"total\": ")
        .nth(1)
        .and_then(|s| s.trim_end_matches('}').trim().parse().ok())
        .expect("total");
    let proxy = summary(
        "internal-remote call: plugin -> agent -> ssh -> central core",
        lat,
        Duration::from_secs_f64(total),
    );
    println!("{floor}");
    println!("{proxy}");
    drop(daemon);
}
