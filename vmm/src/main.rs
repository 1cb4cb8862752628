//! `outpost-vmm` binary: parses Firecracker's command line and hands over to the library.

use clap::Parser;
use outpost_vmm::controller::DEFAULT_INSTANCE_ID;
use outpost_vmm::jail::Jail;
use outpost_vmm::process::{self, Options};
use outpost_vmm::seccomp::{Enforcement, ThreadKind};
use std::path::PathBuf;

/// Firecracker's default API socket path is /run/firecracker.socket; ours follows suit.
const DEFAULT_API_SOCK: &str = "/run/outpost-vmm.socket";

/// A KVM virtual machine monitor for one guest, driven like Firecracker.
#[derive(Debug, Parser)]
#[command(name = "outpost-vmm", version)]
struct Cli {
    /// Path of the unix socket the REST API listens on.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_API_SOCK)]
    api_sock: PathBuf,
    /// Serve no API; needs --config-file.
    #[arg(long, requires = "config_file", conflicts_with = "api_sock")]
    no_api: bool,
    /// Firecracker-style JSON configuration; the guest starts from it right away.
    #[arg(long, value_name = "PATH")]
    config_file: Option<PathBuf>,
    /// Instance id reported by `GET /`.
    #[arg(long, default_value = DEFAULT_INSTANCE_ID)]
    id: String,
    /// Log level on stderr: Off, Error, Warning, Info, Debug or Trace (any case).
    #[arg(long, default_value = "Warning", value_parser = parse_level)]
    log_level: tracing_subscriber::filter::LevelFilter,
    /// Accepted for Firecracker compatibility; ignored.
    #[arg(long)]
    boot_timer: bool,
    /// Run without seccomp filters (debugging only; Firecracker's flag).
    #[arg(long)]
    no_seccomp: bool,
    /// Have the kernel log syscalls outside the filters instead of killing the monitor
    /// (for keeping the filters' lists complete).
    #[arg(long, hide = true, conflicts_with = "no_seccomp")]
    seccomp_log: bool,
    /// Test hook: this kind of thread makes a forbidden syscall once its filter is on.
    #[arg(long, hide = true, value_enum)]
    seccomp_test_violation: Option<ViolatingThread>,
    /// A file opened by the parent for the monitor, inherited as descriptor FD: where the
    /// configuration names PATH, FD is used instead of opening it (repeatable).
    #[arg(long = "fd", value_name = "PATH=FD")]
    handed_files: Vec<String>,
    /// A tap the parent attached for the monitor, inherited as descriptor FD (repeatable).
    #[arg(long = "tap-fd", value_name = "NAME=FD")]
    handed_taps: Vec<String>,
    /// Run jailed with this directory as `/` (needs root to start; see docs/security.md).
    /// --api-sock is then named as the host sees it, inside this directory.
    #[arg(long, value_name = "DIR", requires_all = ["jail_uid", "jail_gid"])]
    jail_root: Option<PathBuf>,
    /// The unprivileged uid the jailed monitor runs as.
    #[arg(long, value_name = "UID", requires = "jail_root")]
    jail_uid: Option<u32>,
    /// The unprivileged gid the jailed monitor runs as.
    #[arg(long, value_name = "GID", requires = "jail_root")]
    jail_gid: Option<u32>,
    /// A cgroup directory the jailed monitor moves into first (repeatable: one per
    /// hierarchy on a host that mixes cgroup v1 and v2).
    #[arg(long, value_name = "DIR", requires = "jail_root")]
    jail_cgroup: Vec<PathBuf>,
    /// Passed by Firecracker's jailer; ignored.
    #[arg(long, hide = true, value_name = "US")]
    start_time_us: Option<u64>,
    /// Passed by Firecracker's jailer; ignored.
    #[arg(long, hide = true, value_name = "US")]
    start_time_cpu_us: Option<u64>,
    /// Passed by Firecracker's jailer; ignored.
    #[arg(long, hide = true, value_name = "US")]
    parent_cpu_time_us: Option<u64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ViolatingThread {
    Vcpu,
    Devices,
    Api,
    Main,
}

fn parse_level(text: &str) -> Result<tracing_subscriber::filter::LevelFilter, String> {
    use tracing_subscriber::filter::LevelFilter;
    match text.to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::OFF),
        "error" => Ok(LevelFilter::ERROR),
        "warn" | "warning" => Ok(LevelFilter::WARN),
        "info" => Ok(LevelFilter::INFO),
        "debug" => Ok(LevelFilter::DEBUG),
        "trace" => Ok(LevelFilter::TRACE),
        _ => Err("use Off, Error, Warning, Info, Debug or Trace".to_owned()),
    }
}

fn main() {
    let _ = outpost_vmm::PROCESS_START.set(std::time::Instant::now());
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, like every other configuration error: clap's first paragraph (the
            // error and, e.g., the missing argument), without the usage block.
            let rendered = e.to_string();
            let first = rendered.split("\n\n").next().unwrap_or("invalid arguments");
            let words: Vec<&str> = first.split_whitespace().collect();
            let message = words.join(" ");
            eprintln!(
                "outpost-vmm: {} (see --help)",
                message.trim_start_matches("error: ")
            );
            std::process::exit(outpost_vmm::EXIT_ERROR);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(cli.log_level)
        .init();
    // A panic on any thread (a vCPU, the device loop) ends the monitor with status 1 and the
    // message on stderr, where its supervisor reads the reason: never a guest left running
    // with a dead vCPU or dead devices.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("outpost-vmm: internal error: {info}");
        std::process::exit(outpost_vmm::EXIT_ERROR);
    }));
    let options = Options {
        instance_id: cli.id,
        api_socket: (!cli.no_api).then_some(cli.api_sock),
        config_file: cli.config_file,
        seccomp: if cli.no_seccomp {
            Enforcement::Off
        } else if cli.seccomp_log {
            Enforcement::Log
        } else {
            Enforcement::Kill
        },
        seccomp_test_violation: cli.seccomp_test_violation.map(|t| match t {
            ViolatingThread::Vcpu => ThreadKind::Vcpu,
            ViolatingThread::Devices => ThreadKind::Devices,
            ViolatingThread::Api => ThreadKind::Api,
            ViolatingThread::Main => ThreadKind::Main,
        }),
        handed_files: cli.handed_files,
        handed_taps: cli.handed_taps,
        jail: match (cli.jail_root, cli.jail_uid, cli.jail_gid) {
            (Some(root), Some(uid), Some(gid)) => Some(Jail {
                root,
                uid,
                gid,
                cgroup: cli.jail_cgroup,
            }),
            // clap's `requires` lets no partial set through.
            _ => None,
        },
    };
    match process::run(&options) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("outpost-vmm: {e}");
            std::process::exit(outpost_vmm::EXIT_ERROR);
        }
    }
}
