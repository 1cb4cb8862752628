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
    #[command(subcommand)]
    command: Option<Command>,
}

/// Operator commands run on a box of a site, with its configuration (they talk to etcd).
#[derive(clap::Subcommand)]
enum Command {
    /// The site this box belongs to.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// Creates a join token: a new box joins with it once (`[cluster] join_token`).
    #[command(name = "token-create")]
    TokenCreate {
        /// Admit only the box of this name.
        #[arg(long = "box")]
        for_box: Option<String>,
        /// Validity in seconds (at most a day).
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Lists the boxes: name, up or down, enabled or disabled, underlay address.
    List,
    /// Removes a box that is down from the site.
    Remove { name: String },
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
    if let Some(Command::Cluster(command)) = args.command {
        return cluster(&settings, command);
    }
    match outpost_control::daemon::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn cluster(settings: &Settings, command: ClusterCommand) -> ExitCode {
    use outpost_control::cluster::Membership;
    let Some(cluster) = &settings.cluster else {
        return fail(&"this box is not configured for a site: give [cluster] in --config");
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let result = runtime.block_on(async {
        let site = Membership::operator(cluster).await?;
        match command {
            ClusterCommand::TokenCreate { for_box, ttl } => {
                let token = site
                    .create_join_token(std::time::Duration::from_secs(ttl), for_box.as_deref())
                    .await?;
                println!("{token}");
            }
            ClusterCommand::List => {
                for b in site.boxes().await? {
                    println!(
                        "{}\t{}\t{}\t{}",
                        b.record.name,
                        if b.is_up() { "up" } else { "down" },
                        if b.record.enabled {
                            "enabled"
                        } else {
                            "disabled"
                        },
                        b.record.underlay
                    );
                }
            }
            ClusterCommand::Remove { name } => site.remove(&name).await?,
        }
        Ok::<(), outpost_control::cluster::ClusterError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!("{e}");
    eprintln!("outpostd: {e}");
    ExitCode::FAILURE
}
