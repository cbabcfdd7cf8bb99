//! `aigis`: the central daemon and its command line.

mod core;
mod home;
mod link;
mod logs;
mod plugins;
mod run;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "aigis", version, about = "A plugin host for home networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: fetch, install and start every plugin in the config.
    Run {
        /// The central TOML config.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Home directory (ext/, secrets/, log/, run/). Default: $AIGIS_HOME,
        /// `[aigis] home`, or the current directory.
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logs::init_console();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aigis: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config, home } => run::run(&config, home.as_deref()).await,
        }
    });
    // Leave blocking tasks (e.g. a fetch in flight) behind rather than wait.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
