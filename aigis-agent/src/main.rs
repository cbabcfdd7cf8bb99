//! `aigis-agent`: started by `aigis`, never by hand. Protocol on stdin/stdout,
//! its own diagnostics on stderr (central relays them into its log).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().any(|a| a == "--version") {
        println!("aigis-agent {}", env!("CARGO_PKG_VERSION"));
        return std::process::ExitCode::SUCCESS;
    }
    match aigis_agent::serve(tokio::io::stdin(), tokio::io::stdout()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aigis-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
