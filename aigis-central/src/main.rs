//! `aigis`: the central daemon and the operator's command line.

mod callpool;
mod check;
mod client;
mod control;
mod core;
mod daemon;
mod deploy;
mod home;
mod hostlane;
mod lane;
mod link;
mod logs;
mod new;
mod scan;
mod shell;
mod ssh;
mod status;
mod tasks;
mod ticker;
mod turns;

use clap::{CommandFactory, Parser, Subcommand};

/// A mutex's guard; a panic while it was held does not make it unusable
/// (what central keeps under a lock is valid between statements).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "aigis", version, about = "A plugin host for home networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which daemon a client command talks to.
#[derive(clap::Args)]
struct Target {
    /// Home directory of the daemon. Default: $AIGIS_HOME, `[aigis] home`
    /// of --config, or the current directory.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// The daemon's config file (only used to find its home).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
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
        /// Console log format.
        #[arg(long, value_enum, default_value_t = logs::Format::Text)]
        log_format: logs::Format,
    },
    /// Validate the config, every plugin's AIGIS.config, sources and secrets,
    /// without starting anything. Exits non-zero when there is a problem.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
    },
    /// Show every plugin: type, host, state, pid, restarts left, time in
    /// its state; with a NAME, everything about that plugin (source and
    /// commit, since when, the full failure reason, log file, skills).
    Status {
        name: Option<String>,
        #[command(flatten)]
        target: Target,
        /// JSON instead of text: an array, or one object with a NAME.
        #[arg(long)]
        json: bool,
    },
    /// List what the live core exposes, by plugin (names under `aigis.`).
    Skills {
        #[command(flatten)]
        target: Target,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Open a Python REPL whose `aigis` is the live core (through the
    /// AigisProxy an internal plugin gets, over the control socket).
    Shell {
        #[command(flatten)]
        target: Target,
    },
    /// Print a plugin's log.
    Logs {
        name: String,
        #[command(flatten)]
        target: Target,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to print.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// Re-fetch a plugin, re-read its config and restart it; without a
    /// name, read the central config again and apply the difference (as
    /// SIGHUP does).
    Reload {
        name: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Stop one plugin; the others keep running.
    Stop {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Start a stopped or failed plugin.
    Start {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Write a new plugin skeleton that `aigis check` accepts.
    New {
        #[arg(long = "type", value_enum)]
        kind: new::NewType,
        name: String,
        /// Where to create it (default: the current directory).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// The config file you will add it to: the printed line's path is
        /// made relative to that file's directory, as AIGIS reads it
        /// (default: a config file in the current directory).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Run { log_format, .. } => *log_format,
        _ => logs::Format::Text,
    };
    logs::init_console(format);
    if matches!(cli.command, Command::Run { .. }) {
        // libgit2's start-up (it reads the CA bundle) beside the rest of
        // ours; a fetch waits for it if it needs git first.
        std::thread::spawn(aigis_agent::fetch::git_ready);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            logs::console_write(format!("aigis: cannot start the async runtime: {e}\n").as_bytes());
            return ExitCode::FAILURE;
        }
    };
    // A panic must not unwind through the runtime's drop, which waits for
    // every blocking task (the log writer lives as long as any sink): catch
    // it, and leave as a failure within the same bounded wait.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(dispatch(cli.command))
    }));
    // Leave blocking tasks (e.g. a fetch in flight) behind rather than wait.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    let Ok(result) = result else {
        return ExitCode::from(101);
    };
    match result {
        Ok(code) => code,
        // `aigis status --json | head`: the reader left; nothing to report.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            logs::console_write(format!("aigis: {e:#}\n").as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// Resolves with the name of the first of SIGINT or SIGTERM to arrive.
fn signals() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    use control::Request;
    let home = |t: &Target| client::home(t.home.as_deref(), t.config.as_deref());
    match command {
        Command::Run { config, home, .. } => {
            core::probe().map_err(anyhow::Error::msg)?;
            let config = config::load_central(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let home = home::Home::resolve(home.as_deref(), config.aigis.home.as_deref())?;
            daemon::run(config, home, signals()?).await?
        }
        Command::Check { config, home } => {
            if check::check(&config, home.as_deref()).await? > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Status { name, target, json } => {
            client::status(&home(&target)?, name, json).await?
        }
        Command::Skills { target, json } => client::skills(&home(&target)?, json).await?,
        Command::Shell { target } => shell::run(&home(&target)?)?,
        Command::Logs {
            name,
            target,
            follow,
            lines,
        } => client::logs(&home(&target)?, &name, lines, follow).await?,
        Command::Reload { name, target } => {
            let request = match name {
                Some(plugin) => Request::Reload { plugin },
                None => Request::Reread,
            };
            client::act(&home(&target)?, request).await?
        }
        Command::Stop { name, target } => {
            client::act(&home(&target)?, Request::Stop { plugin: name }).await?
        }
        Command::Start { name, target } => {
            client::act(&home(&target)?, Request::Start { plugin: name }).await?
        }
        Command::New {
            kind,
            name,
            dir,
            config,
        } => {
            new::create(kind, &name, &dir, config.as_deref())?;
        }
        Command::Completions { shell } => {
            // clap_complete panics when a write fails (`| head -1`): generate
            // into memory; a reader that left is not an error (see main).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "aigis", &mut script);
            use std::io::Write;
            std::io::stdout().write_all(&script)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
