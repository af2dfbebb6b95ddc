//! `transfer`: the command-line tool of the transfer engine.
//!
//! Subcommands:
//! - `transfer serve --root DIR --listen ADDR [--no-fsync]`: serves the local store in `DIR` as an
//!   OSS-compatible HTTP endpoint. Credentials come from `OSS_ACCESS_KEY_ID` / `OSS_ACCESS_KEY_SECRET` (and
//!   `OSS_SESSION_TOKEN`, which requests must then carry). The first line on stdout is
//!   `listening on http://<addr>`; logs go to stderr (`RUST_LOG` filters them). Ctrl-C or SIGTERM stops it.

mod addr;
mod cp;

use clap::{Args, Parser, Subcommand};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use transfer_engine::local::{LocalOptions, LocalStore};
use transfer_engine::sign::Credentials;
use transfer_server::Server;

/// Resumable bulk transfer for object storage.
#[derive(Debug, Parser)]
#[command(
    name = "transfer",
    version,
    about,
    after_help = "Exit status: 0 all done; 1 failed; 2 usage error (nothing moved); 3 stopped or partly failed, resumable \
                  (run the same command again)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
enum Command {
    /// Copy files, directories, objects or prefixes into a bucket (resumable: run it again to continue).
    Cp(Box<cp::CpArgs>),
    /// Serve a local store over HTTP in the OSS dialect.
    Serve(ServeArgs),
}

/// Options of `transfer serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Root directory of the local store (created if missing).
    #[arg(long)]
    root: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Do not fsync data before publishing it (faster; a power loss may lose recent writes).
    #[arg(long)]
    no_fsync: bool,
    /// Also accept virtual-host requests for `<bucket>.<SUFFIX>` (`<bucket>.localhost` always works).
    #[arg(long = "virtual-host-suffix", value_name = "SUFFIX")]
    virtual_host_suffixes: Vec<String>,
}

/// Exit status for a usage or configuration error.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Cp(args) => cp::run(*args),
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let credentials = match Credentials::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("transfer serve: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("transfer serve: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_server(args, credentials)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("transfer serve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(args: ServeArgs, credentials: Credentials) -> Result<(), Box<dyn std::error::Error>> {
    let store = LocalStore::open_with(&args.root, LocalOptions { fsync: !args.no_fsync })
        .map_err(|e| format!("cannot open the store at {}: {e}", args.root.display()))?;
    let access_key_id = credentials.access_key_id().to_owned();
    let server = Server::bind(args.listen, Arc::new(store), credentials)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?
        .with_virtual_host_suffixes(args.virtual_host_suffixes);
    let addr = server.local_addr();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, root = %args.root.display(), %access_key_id, fsync = !args.no_fsync, "serving");
    server.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
