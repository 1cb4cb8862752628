//! outpostd: Outpost's control service. Parses flags, loads the optional configuration file
//! and hands over to the library's [`outpost_control::daemon::run`].

use clap::Parser;
use outpost_control::config::{ConfigFile, Overrides, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Outpost's control service: OpenStack APIs (Keystone, Nova, Glance, Cinder, Neutron
/// shapes) on a unix socket and, optionally, TCP.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file; every setting has a default, so none is needed.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory for the database, socket and generated admin password (created 0700).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Unix socket path (default <state-dir>/outpostd.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// TCP address for OpenStack clients, e.g. 127.0.0.1:8080 (default: none).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Base URL handed out in the catalog and links (default http://<listen>).
    #[arg(long)]
    public_url: Option<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OUTPOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in journald or log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let file = match &args.config {
        Some(path) => match ConfigFile::load(path) {
            Ok(f) => f,
            Err(e) => return fail(&e),
        },
        None => ConfigFile::default(),
    };
    let flags = Overrides {
        state_dir: args.state_dir,
        socket: args.socket,
        listen: args.listen,
        public_url: args.public_url,
    };
    let settings = match Settings::resolve(file, flags) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match outpost_control::daemon::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!("{e}");
    eprintln!("outpostd: {e}");
    ExitCode::FAILURE
}
