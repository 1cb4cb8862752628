//! One monitor process's life: boot from a config file and/or serve the API, wait for the
//! guest to end or for SIGTERM/SIGINT, clean up (the API socket) and report the exit status.

use crate::api::{self, ApiError, ApiServerHandle};
use crate::builder::{self, ExitReason, Launch, RunningVm, StartError};
use crate::config::VmConfig;
use crate::controller::{self, Controller, HostLimits, VmmAction, VmmActionError};
use crate::jail::files::{FilesError, HandedOver};
use crate::jail::{Jail, JailError};
use crate::seccomp::{self, Enforcement, SeccompError, ThreadKind};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

/// What the command line asked for.
#[derive(Clone, Debug)]
pub struct Options {
    pub instance_id: String,
    /// Serve the API here; `None` is `--no-api`.
    pub api_socket: Option<PathBuf>,
    /// Configure (and start) the guest from this Firecracker-style JSON file.
    pub config_file: Option<PathBuf>,
    /// Seccomp filters: enforced (the default), logged only, or off.
    pub seccomp: Enforcement,
    /// Test hook: this thread kind breaks its filter on purpose.
    pub seccomp_test_violation: Option<ThreadKind>,
    /// Files the parent opened for the monitor (`--fd PATH=N`).
    pub handed_files: Vec<String>,
    /// Taps the parent attached for the monitor (`--tap-fd NAME=N`).
    pub handed_taps: Vec<String>,
    /// Enter this jail before anything else runs; `api_socket` is then named as the host
    /// sees it and must lie inside the jail's root.
    pub jail: Option<Jail>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid --id {0:?}: use 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    InvalidInstanceId(String),
    #[error("--no-api needs --config-file: without the API nothing else can configure the guest")]
    NothingToDo,
    #[error("cannot read the configuration file {path:?}: {source}")]
    ReadConfig { path: PathBuf, source: io::Error },
    #[error("invalid configuration file {path:?}: {source}")]
    ParseConfig {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("configuration file {path:?}: {source}")]
    Config {
        path: PathBuf,
        source: VmmActionError,
    },
    #[error("{0}")]
    Start(VmmActionError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot set up signal handling: {0}")]
    Signals(io::Error),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("cannot enter the jail: {0}")]
    Jail(#[from] JailError),
}

/// What the main loop waits for.
enum Event {
    GuestExited(ExitReason),
    Signal(libc::c_int),
    /// An `InstanceStart` or a snapshot load from the API, built on the main thread.
    Build(Box<Launch>, mpsc::Sender<Result<RunningVm, StartError>>),
}

/// Builds and starts the guest on the calling (main) thread and starts the thread that
/// reports its end to the main loop.
fn start_guest(launch: &Launch, events: &mpsc::Sender<Event>) -> Result<RunningVm, StartError> {
    let vm = builder::launch_guest(launch)?;
    let waiter = vm.exit_waiter();
    let tx = events.clone();
    // Owns nothing but the waiter; ends when the guest does.
    std::thread::Builder::new()
        .name("guest_waiter".into())
        .spawn(move || {
            let reason = match seccomp::install(ThreadKind::Helper) {
                Ok(()) => waiter.wait(),
                Err(e) => ExitReason::Error(e.to_string()),
            };
            let _ = tx.send(Event::GuestExited(reason));
        })
        .map_err(|source| StartError::Thread {
            what: "guest_waiter",
            source,
        })?;
    Ok(vm)
}

/// Runs the monitor until the guest ends or a signal asks it to stop; returns the process's
/// exit status (the guest's [`ExitReason::exit_code`], or 0 when stopped by a signal).
/// Errors leave nothing behind: the API socket is removed on every path out.
pub fn run(options: &Options) -> Result<i32, RunError> {
    if controller::validate_id("instance", &options.instance_id).is_err() {
        return Err(RunError::InvalidInstanceId(options.instance_id.clone()));
    }
    if options.api_socket.is_none() && options.config_file.is_none() {
        return Err(RunError::NothingToDo);
    }
    let file_config = options
        .config_file
        .as_deref()
        .map(read_config)
        .transpose()?;

    seccomp::configure(options.seccomp, options.seccomp_test_violation);
    // What the host tells through /proc and /sys is read now: the jail has neither.
    let host_limits = HostLimits::probe();
    let handed = HandedOver::adopt(&options.handed_files, &options.handed_taps)?;
    if !handed.is_empty() {
        handed.install()?;
    }
    let mut api_socket = options.api_socket.clone();
    if let Some(jail) = &options.jail {
        jail.validate()?;
        api_socket = api_socket.map(|s| jail.inside(&s)).transpose()?;
        // Before any thread exists (see Jail::enter).
        jail.enter()?;
        tracing::info!(uid = jail.uid, gid = jail.gid, "entered the jail");
    }
    // Block the stop signals before any thread exists so every thread inherits the mask and
    // only the signal thread's sigwait() sees them (no async-signal-safety concerns).
    let signals = stop_signals()?;
    let (tx, events) = mpsc::channel();
    spawn_signal_thread(signals, tx.clone())?;

    let mut controller = Controller::with_host_limits(options.instance_id.clone(), host_limits);
    let main_thread = std::thread::current().id();
    let builds = tx.clone();
    controller.set_starter(Box::new(move |launch| {
        if std::thread::current().id() == main_thread {
            return start_guest(launch, &builds);
        }
        // An API request: the main thread builds (see Starter), this one waits for it.
        let (reply, answer) = mpsc::channel();
        builds
            .send(Event::Build(Box::new(launch.clone()), reply))
            .map_err(|_| StartError::Stopping)?;
        answer.recv().map_err(|_| StartError::Stopping)?
    }));
    if let (Some(config), Some(path)) = (file_config, &options.config_file) {
        controller
            .load_config(config)
            .map_err(|source| RunError::Config {
                path: path.clone(),
                source,
            })?;
    }
    let controller = Arc::new(Mutex::new(controller));
    let server: Option<ApiServerHandle> = api_socket
        .as_ref()
        .map(|socket| api::serve(socket.clone(), controller.clone()))
        .transpose()?;
    if options.config_file.is_some() {
        // A poisoned lock means an API request panicked mid-way; starting is still sound
        // because handle() only commits state after each step succeeds.
        let started = controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .handle(VmmAction::InstanceStart);
        // On error `server` is dropped here, which removes the socket.
        started.map_err(RunError::Start)?;
    }

    // Once the guest runs, the main thread never builds again: it takes its narrow filter.
    // (Never by asking the controller: an API request holds its lock while it waits for us.)
    if options.config_file.is_some() {
        seccomp::install(ThreadKind::Main)?;
    }
    let code = loop {
        match events.recv() {
            Ok(Event::Build(launch, reply)) => {
                let started = start_guest(&launch, &tx);
                let ok = started.is_ok();
                let _ = reply.send(started);
                if ok {
                    seccomp::install(ThreadKind::Main)?;
                }
            }
            Ok(Event::GuestExited(reason)) => {
                match &reason {
                    ExitReason::Error(e) => tracing::error!("guest stopped on an error: {e}"),
                    other => tracing::info!("guest ended: {other:?}"),
                }
                break reason.exit_code();
            }
            Ok(Event::Signal(signal)) => {
                tracing::info!("stopping on signal {signal}");
                break crate::EXIT_POWEROFF;
            }
            // Every sender is gone: no guest will ever report; treat as a clean stop.
            Err(_) => break crate::EXIT_POWEROFF,
        }
    };
    if let Some(server) = server {
        server.stop();
    }
    Ok(code)
}

fn read_config(path: &Path) -> Result<VmConfig, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::ReadConfig {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| RunError::ParseConfig {
        path: path.to_owned(),
        source,
    })
}

/// Blocks SIGTERM and SIGINT in the calling thread and returns the set.
fn stop_signals() -> Result<libc::sigset_t, RunError> {
    // SAFETY: sigset_t is plain data; sigemptyset initializes it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t; the signal numbers are valid.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(RunError::Signals(io::Error::from_raw_os_error(rc)));
    }
    Ok(set)
}

/// The `signals` thread owns nothing but the sigwait; it ends with the process.
fn spawn_signal_thread(set: libc::sigset_t, tx: mpsc::Sender<Event>) -> Result<(), RunError> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            crate::seccomp::install_or_exit(crate::seccomp::ThreadKind::Helper);
            loop {
                let mut signal: libc::c_int = 0;
                // SAFETY: `set` is an initialized sigset_t whose signals are blocked in every
                // thread; `signal` is a valid place for the result.
                let rc = unsafe { libc::sigwait(&set, &mut signal) };
                if rc == 0 && tx.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .map(drop)
        .map_err(RunError::Signals)
}
