//! `aigis-agent`: started by `aigis`, never by hand.
//!
//! - no arguments: serve one link on stdin/stdout (the local agent);
//!   `--dir D` gives it a directory of its own to keep things across runs;
//! - `attach --dir D`: hand stdin/stdout to the daemon of `D` (a LAN host);
//! - `daemon --dir D`: the daemon itself, started by `attach`.

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = || {
        args.iter()
            .position(|a| a == "--dir")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
    };
    let result = match (args.first().map(String::as_str), dir()) {
        (Some("--version"), _) => {
            println!("aigis-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        (None, _) => local(None).await,
        (Some("--dir"), Some(dir)) => local(Some(dir)).await,
        (Some("attach"), Some(dir)) => aigis_agent::daemon::attach(&dir).await,
        (Some("daemon"), Some(dir)) => {
            aigis_agent::contain::init();
            aigis_agent::daemon::daemon(&dir).await
        }
        _ => Err(anyhow::anyhow!(
            "usage: aigis-agent [--dir DIR | attach --dir DIR | daemon --dir DIR] (started by aigis)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aigis-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The local agent: one link on stdin/stdout.
async fn local(dir: Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(dir) = dir {
        aigis_agent::python::keep_shim_in(&dir);
    }
    aigis_agent::lane::init_from_env();
    aigis_agent::contain::init();
    aigis_agent::serve(aigis_agent::stdio::stdin(), aigis_agent::stdio::stdout()).await
}
