//! `transfer`: the command-line tool of the transfer engine.
//!
//! Subcommands: `cp` (files, directories, objects and prefixes into a bucket; resumable), `sync`, `resume`, `jobs`
//! (list, show, forget), `cleanup` (incomplete multipart uploads), `stat`, `tag`, `ls`, `du`, `rm`, `cat`, `mb`,
//! `rb`, `completions`, `man`, `version`, and `serve` (the local store
//! over HTTP in the OSS dialect: the first line on stdout is `listening on http://<addr>`; Ctrl-C or SIGTERM
//! stops it).
//!
//! Exit status: 0 all done; 1 failed (a stream from stdin also when stopped); 2 usage error (nothing moved); 3 stopped (a full disk, --max-delete too) or partly failed, resumable;
//! 141 the reader of the output went away (a closed pipe, as `| head`).

/// `println!` for the commands' output: when whoever reads it went away (`transfer ... | head -1`), the command
/// stops quietly with [`EXIT_CLOSED_PIPE`] instead of panicking, as a program killed by SIGPIPE does.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

mod addr;
mod bucket;
mod bwlimit;
mod cleanup;
mod cp;
mod jobs;
mod object;
mod output;
mod remote;
mod shard;

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
    after_help = "Exit status:\n  0  all done\n  1  failed: nothing of the job is in place (for - as SRC, a stream, \
                  also stopped: a stream cannot resume)\n  2  usage error: bad arguments, missing bucket or credentials, \
                  unreachable endpoint (nothing moved)\n  3  stopped (Ctrl-C, SIGTERM), stopped on a full disk, a sync's --max-delete reached, or partly failed; \
                  resumable with `transfer resume` or the same command again\n  141  the output's reader went away (a closed pipe, as `| head`): \
                  nothing more is printed; a job stops where it was and resumes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    output: output::OutputArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
enum Command {
    /// Copy files, directories, objects or prefixes into a bucket, between buckets, or back to disk or stdout
    /// (resumable: run it again to continue).
    Cp(Box<cp::CpArgs>),
    /// Make DST like SRC (a directory or prefix): copy what is missing or different, and with --delete remove
    /// what SRC does not have (resumable: a killed sync goes on where it stopped).
    Sync(Box<cp::SyncArgs>),
    /// Continue an interrupted job from the ledger (the newest unfinished one by default).
    Resume(jobs::ResumeArgs),
    /// List the ledger's jobs; `jobs show JOB`, `jobs forget JOB` (or `--finished`).
    Jobs(jobs::JobsArgs),
    /// Abort incomplete multipart uploads: those the ledger says we created, or --all under a prefix.
    Cleanup(Box<cleanup::CleanupArgs>),
    /// Show an object's size, ETag, CRC-64, metadata (HeadObject; --meta-only: GetObjectMeta).
    Stat(object::StatArgs),
    /// Get, put or delete an object's tags.
    Tag(object::TagArgs),
    /// List buckets, or the objects and prefixes under a bucket or prefix (-r: every object under it).
    Ls(bucket::LsArgs),
    /// Count the objects and bytes under a bucket or prefix, in all and by storage class.
    Du(bucket::DuArgs),
    /// Remove an object, or with -r every object under a prefix.
    Rm(bucket::RmArgs),
    /// Print an object's bytes to stdout.
    Cat(bucket::CatArgs),
    /// Make a bucket.
    Mb(bucket::BucketArgs),
    /// Remove a bucket (an empty one, unless --force).
    Rb(bucket::BucketArgs),
    /// Print a shell completion script (`transfer completions bash > ~/.local/share/bash-completion/completions/transfer`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, in roff (`transfer man | man -l -`).
    Man,
    /// Print the version (as --version does).
    Version,
    /// A migration larger than one machine: plan key ranges, run each as a shard of a Kubernetes Indexed Job or
    /// a Slurm array, merge the results.
    Shard {
        #[command(subcommand)]
        command: shard::ShardCommand,
    },
    /// Serve a local store over HTTP in both dialects, OSS and S3, on one port (the signature picks per request).
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
    /// How long a RestoreObject of an archived object (stored with --storage-class Archive, ColdArchive or
    /// DeepColdArchive) takes before the object can be read, as OSS's take hours: 2s, 1m, 0.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::cleanup::parse_duration)]
    restore_delay: std::time::Duration,
    /// Also accept virtual-host requests for `<bucket>.<SUFFIX>` (`<bucket>.localhost` always works).
    #[arg(long = "virtual-host-suffix", value_name = "SUFFIX")]
    virtual_host_suffixes: Vec<String>,
    /// Accept the credentials this JSON file names (AccessKeyId, AccessKeySecret, SecurityToken, Expiration)
    /// instead of OSS_ACCESS_KEY_*, re-reading it when it changes: a key it no longer names stays accepted until
    /// its Expiration, one without is revoked at once.
    #[arg(long, value_name = "PATH")]
    credentials_file: Option<std::path::PathBuf>,
}

/// Exit statuses, as `--help` and the README document them.
pub(crate) const EXIT_OK: u8 = 0;
pub(crate) const EXIT_FAILED: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_RESUMABLE: u8 = 3;
/// The output's reader went away (128 + SIGPIPE, what a shell shows for a program killed by it).
pub(crate) const EXIT_CLOSED_PIPE: u8 = 141;

/// Writes one line of output; see [`out!`]. Any other write error is reported once on stderr and ends the
/// command as failed.
pub(crate) fn print_line(line: std::fmt::Arguments<'_>) {
    print_bytes(format!("{line}\n").as_bytes());
}

/// Writes `bytes` to stdout, as [`print_line`] writes a line.
fn print_bytes(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_CLOSED_PIPE.into());
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(EXIT_FAILED.into());
    }
}

/// A usage or configuration error: exit 2, nothing moved.
#[derive(Debug)]
pub(crate) struct Usage(pub String);

impl<E: std::fmt::Display> From<E> for Usage {
    fn from(e: E) -> Self {
        Usage(e.to_string())
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // `cat` prints the object and nothing else, as cat does: warnings and errors only, unless -v asks.
    if matches!(cli.command, Command::Cat(_)) && cli.output.verbose == 0 {
        cli.output.quiet = true;
    }
    output::init_logging(cli.output);
    let out = cli.output;
    // What only prints what clap knows: no runtime, no store.
    let about = match &cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut <Cli as clap::CommandFactory>::command(), "transfer", &mut script);
            Some(script)
        }
        Command::Man => {
            let mut page = Vec::new();
            if let Err(e) = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut page) {
                eprintln!("error: cannot render the manual page: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
            Some(page)
        }
        Command::Version => Some(format!("transfer {}\n", env!("CARGO_PKG_VERSION")).into_bytes()),
        _ => None,
    };
    if let Some(bytes) = about {
        print_bytes(&bytes);
        return ExitCode::SUCCESS;
    }
    if let Command::Serve(args) = cli.command {
        return serve(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Cp(args) => cp::run_sources(*args, out).await,
            Command::Sync(args) => cp::run_sync(*args, out).await,
            Command::Resume(args) => jobs::resume(args, out).await,
            Command::Jobs(args) => jobs::jobs(args, out).await,
            Command::Cleanup(args) => cleanup::run(*args, out).await,
            Command::Stat(args) => object::stat(args, out).await,
            Command::Tag(args) => object::tag(args, out).await,
            Command::Ls(args) => bucket::ls(args, out).await,
            Command::Du(args) => bucket::du(args, out).await,
            Command::Rm(args) => bucket::rm(args, out).await,
            Command::Cat(args) => bucket::cat(args, out).await,
            Command::Mb(args) => bucket::mb(args).await,
            Command::Rb(args) => bucket::rb(args, out).await,
            Command::Shard { command } => shard::run(command, out).await,
            Command::Serve(_) | Command::Completions { .. } | Command::Man | Command::Version => {
                unreachable!("handled above")
            }
        }
    });
    // The command's work is done and recorded. What may still run is a read of stdin (a stream stopped while its
    // writer was idle), which cannot be cancelled: it is given a moment, not the power to keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}

fn serve(args: ServeArgs) -> ExitCode {
    let credentials = match &args.credentials_file {
        Some(path) => transfer_engine::sign::CredentialsFile::new(path).read(),
        None => Credentials::from_env(),
    };
    let credentials = match credentials {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: transfer serve: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: transfer serve: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_server(args, credentials)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: transfer serve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(args: ServeArgs, credentials: Credentials) -> Result<(), Box<dyn std::error::Error>> {
    let store = LocalStore::open_with(
        &args.root,
        LocalOptions::default().fsync(!args.no_fsync).restore_delay(args.restore_delay),
    )
    .map_err(|e| format!("cannot open the store at {}: {e}", args.root.display()))?;
    let access_key_id = credentials.access_key_id().to_owned();
    let server = Server::bind(args.listen, Arc::new(store), credentials)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?
        .with_virtual_host_suffixes(args.virtual_host_suffixes);
    let server = match &args.credentials_file {
        Some(path) => server.with_credentials_file(path)?,
        None => server,
    };
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
