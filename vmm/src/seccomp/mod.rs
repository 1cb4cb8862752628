//! Seccomp filters, one per kind of thread, installed by each thread on itself before the
//! guest runs its first instruction (Firecracker's habit, built with rust-vmm's seccompiler).
//!
//! Kinds: `vcpu` (KVM_RUN and the exits it handles), `devices` (the virtio event loop: queue
//! kicks, disk and tap I/O), `api` (the REST server; until the guest starts it may look at the
//! files a configuration names), `main` (builds the VM without a filter, then only waits for
//! the guest and cleans up) and `helper` (the signal, guest-waiter and kicker threads). Once
//! the guest runs, the API thread stacks a `started` filter that takes the file access away.
//!
//! Filters are inherited by threads a filtered thread creates, so the VM is built on the main
//! thread before it takes its own filter (controller::Starter): the vCPU and device threads
//! then carry only theirs. No thread may create threads or processes once filtered.
//!
//! A syscall outside a thread's list kills the whole monitor with SIGSYS (the kernel logs the
//! thread and syscall number; outpostd reports the server's fault). `--no-seccomp` turns the
//! filters off for debugging; `--seccomp-log` has the kernel log violations instead of killing,
//! which is how these lists are kept complete. A new syscall in the monitor is a change here,
//! in the same commit, with the reason.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

pub mod ioctls;

use ioctls as nr;

/// What the filters do with a syscall outside their lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Kill the monitor (SIGSYS): the default.
    Kill,
    /// Allow it, and have the kernel log it (audit type 1326 with the thread's name).
    Log,
    /// No filters at all (`--no-seccomp`).
    Off,
}

/// The kinds of threads the monitor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    Vcpu,
    Devices,
    Api,
    Main,
    Helper,
    /// Stacked on the thread that started the guest, once it has.
    Started,
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot build the {kind:?} seccomp filter: {source}")]
    Build {
        kind: ThreadKind,
        source: seccompiler::BackendError,
    },
    #[error("cannot install the {kind:?} seccomp filter: {source}")]
    Install {
        kind: ThreadKind,
        source: seccompiler::Error,
    },
}

/// The process-wide choice, made once by the binary before any thread starts.
#[derive(Debug, Clone, Copy)]
struct Policy {
    enforcement: Enforcement,
    /// The PVM module's vCPU needs (its emulator and hardware breakpoints) are allowed only
    /// on a PVM host.
    pvm: bool,
    /// Test hook (`--seccomp-test-violation`): this kind of thread makes a syscall outside its
    /// list right after installing its filter, to show that the filter is live.
    violate: Option<ThreadKind>,
}

static POLICY: OnceLock<Policy> = OnceLock::new();

/// Sets the process's enforcement; later calls are ignored (the first choice stands).
pub fn configure(enforcement: Enforcement, violate: Option<ThreadKind>) {
    let _ = POLICY.set(Policy {
        enforcement,
        pvm: crate::pvm::is_pvm_host(),
        violate,
    });
}

fn policy() -> Policy {
    // Library users (the tests) that never called configure() run without filters.
    *POLICY.get_or_init(|| Policy {
        enforcement: Enforcement::Off,
        pvm: false,
        violate: None,
    })
}

/// Installs `kind`'s filter on the calling thread (nothing when filters are off).
pub fn install(kind: ThreadKind) -> Result<(), SeccompError> {
    let policy = policy();
    let mismatch = match policy.enforcement {
        Enforcement::Off => return Ok(()),
        Enforcement::Kill => SeccompAction::KillProcess,
        Enforcement::Log => SeccompAction::Log,
    };
    if kind == ThreadKind::Vcpu && policy.pvm {
        // On PVM the guest's own user-mode code runs on the vCPU thread and its system calls
        // enter this host's kernel there first: with a filter on the thread, guest
        // networking stalled (a guest's tap saw 2 frames in minutes after DHCP; the
        // networking test took 17.6 min instead of ~5 without it). Until that is understood
        // the vCPU filter is for hardware KVM only; PVM's other threads keep theirs.
        tracing::info!("PVM host: no seccomp filter on the vCPU threads (see seccomp.rs)");
        return Ok(());
    }
    let program = program(kind, policy.pvm, mismatch)?;
    seccompiler::apply_filter(&program).map_err(|source| SeccompError::Install { kind, source })?;
    if policy.violate == Some(kind) {
        // getppid is in no thread's list.
        tracing::warn!("{kind:?} thread: making a forbidden syscall (getppid) on request");
        let _ = std::os::unix::process::parent_id();
    }
    Ok(())
}

/// Installs `kind`'s filter or ends the monitor: for threads that have no one to report a
/// failure to (a thread without its filter must not run on).
pub fn install_or_exit(kind: ThreadKind) {
    if let Err(e) = install(kind) {
        tracing::error!("{e}");
        std::process::exit(crate::EXIT_ERROR);
    }
}

/// The BPF program for `kind`.
pub fn program(
    kind: ThreadKind,
    pvm: bool,
    mismatch: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    let build = |source| SeccompError::Build { kind, source };
    let filter = SeccompFilter::new(
        rules(kind, pvm).map_err(build)?,
        mismatch,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(build)?;
    BpfProgram::try_from(filter).map_err(build)
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// Allows each syscall whatever its arguments.
fn allow(rules: &mut Rules, syscalls: &[libc::c_long]) {
    for &s in syscalls {
        rules.insert(s, Vec::new());
    }
}

/// Allows `ioctl` with these request numbers only (matched on the low 32 bits, as the kernel
/// reads the request).
pub(crate) fn allow_ioctls(
    rules: &mut Rules,
    requests: &[u64],
) -> Result<(), seccompiler::BackendError> {
    let entry = rules.entry(libc::SYS_ioctl).or_default();
    for &r in requests {
        entry.push(SeccompRule::new(vec![SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            r,
        )?])?);
    }
    Ok(())
}

/// What every thread does whatever its kind: memory for the allocator, locks, signals (the
/// vCPU kick, an abort), time, logging to stderr, and ending.
const COMMON: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getrandom,
    libc::SYS_restart_syscall,
    libc::SYS_tgkill,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

fn rules(kind: ThreadKind, pvm: bool) -> Result<Rules, seccompiler::BackendError> {
    let mut r = Rules::new();
    allow(&mut r, COMMON);
    // fcntl only to read an fd's flags: std checks a closing fd is open (debug builds), tokio
    // reads a socket's flags when it adopts it.
    let fcntl = r.entry(libc::SYS_fcntl).or_default();
    for cmd in [libc::F_GETFD, libc::F_GETFL] {
        fcntl.push(SeccompRule::new(vec![SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            cmd as u64,
        )?])?);
    }
    match kind {
        ThreadKind::Vcpu => {
            // KVM_RUN and what handling its exits needs on any host.
            allow_ioctls(
                &mut r,
                &[
                    nr::KVM_RUN(),
                    nr::KVM_GET_REGS(),
                    nr::KVM_SET_REGS(),
                    nr::KVM_GET_SREGS(),
                    nr::KVM_SET_SREGS(),
                    // The driver's DRIVER_OK write (an MMIO exit) activates a virtio-net
                    // device, which tells its tap the offloads the driver accepted.
                    libc::TUNSETOFFLOAD,
                ],
            )?;
            // A paused vCPU saves its own state for a snapshot (snapshot::vcpu::VcpuState).
            allow_ioctls(
                &mut r,
                &[
                    nr::KVM_GET_MP_STATE(),
                    nr::KVM_GET_CPUID2(),
                    nr::KVM_GET_DEBUGREGS(),
                    nr::KVM_GET_LAPIC(),
                    nr::KVM_GET_TSC_KHZ(),
                ],
            )?;
            if pvm {
                crate::pvm::seccomp::allow_vcpu(&mut r)?;
            } else {
                // The rest of the snapshot's reads, which PVM's list already has.
                allow_ioctls(
                    &mut r,
                    &[
                        nr::KVM_GET_XSAVE(),
                        nr::KVM_GET_XCRS(),
                        nr::KVM_GET_MSRS(),
                        nr::KVM_GET_VCPU_EVENTS(),
                    ],
                )?;
            }
        }
        ThreadKind::Devices => {
            allow(
                &mut r,
                &[
                    libc::SYS_epoll_wait,
                    libc::SYS_epoll_pwait,
                    libc::SYS_epoll_ctl,
                    libc::SYS_readv,
                    libc::SYS_pread64,
                    libc::SYS_pwrite64,
                    libc::SYS_preadv,
                    libc::SYS_pwritev,
                    libc::SYS_preadv2,
                    libc::SYS_pwritev2,
                    libc::SYS_fsync,
                    libc::SYS_fdatasync,
                    libc::SYS_lseek,
                    // Rate limiters arm their refill timer when a bucket falls below full
                    // and disarm it when it is full again (the timerfd itself is created at
                    // build time; its expirations are read with `read`).
                    libc::SYS_timerfd_settime,
                    // The serial console socket takes its client (devices/legacy/
                    // console_socket.rs); the client is then read and written with read(2)
                    // and write(2), on this thread and the vCPUs'.
                    libc::SYS_accept4,
                ],
            );
            // A virtio-net device tells its tap the offloads the driver accepted; the
            // console socket makes its client non-blocking (std's set_nonblocking), so a
            // vCPU writing the guest's output never waits for it.
            allow_ioctls(&mut r, &[libc::TUNSETOFFLOAD, libc::FIONBIO])?;
        }
        ThreadKind::Api => {
            allow(&mut r, API_RUNTIME);
            allow(&mut r, FILE_CHECKS);
            // A jailed monitor checks the files its parent handed over through a duplicate
            // of their descriptor (jail::files), where an unjailed one opens them.
            r.entry(libc::SYS_fcntl)
                .or_default()
                .push(SeccompRule::new(vec![SeccompCondition::new(
                    1,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    libc::F_DUPFD_CLOEXEC as u64,
                )?])?);
            // Stacking the `started` filter later.
            allow(&mut r, &[libc::SYS_seccomp, libc::SYS_prctl]);
            // The `started` filter is stacked on this one: both must let a snapshot through.
            snapshot_writing(&mut r)?;
        }
        // After the start the API pauses, resumes, reads state and writes snapshots.
        ThreadKind::Started => {
            allow(&mut r, API_RUNTIME);
            snapshot_writing(&mut r)?;
            // A snapshot's two files are created for writing; nothing else is opened, so
            // this thread still reads no file once the guest runs.
            r.entry(libc::SYS_openat)
                .or_default()
                .push(SeccompRule::new(vec![SeccompCondition::new(
                    2,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    SNAPSHOT_OPEN_FLAGS,
                )?])?);
        }
        ThreadKind::Main => allow(&mut r, MAIN),
        ThreadKind::Helper => allow(&mut r, &[libc::SYS_rt_sigtimedwait]),
    }
    Ok(r)
}

/// How `PUT /snapshot/create` opens its files (std's `OpenOptions` with write, create and
/// truncate; std adds O_CLOEXEC).
const SNAPSHOT_OPEN_FLAGS: u64 =
    (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u64;

/// `PUT /snapshot/create` on the API thread: the VM's state (read-only KVM ioctls on the VM
/// fd; the vCPUs save their own on their threads), the memory file written at offsets and
/// sized (`pwrite64`, `ftruncate`), both files synced and the state file renamed into place.
fn snapshot_writing(r: &mut Rules) -> Result<(), seccompiler::BackendError> {
    allow(
        r,
        &[
            libc::SYS_pwrite64,
            libc::SYS_ftruncate,
            libc::SYS_fsync,
            libc::SYS_rename,
        ],
    );
    allow_ioctls(
        r,
        &[
            nr::KVM_GET_CLOCK(),
            nr::KVM_GET_IRQCHIP(),
            nr::KVM_GET_PIT2(),
        ],
    )
}

/// The REST server's event loop (tokio, current-thread runtime): sockets and epoll.
const API_RUNTIME: &[libc::c_long] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_readv,
    libc::SYS_unlink,
];

/// Checking a configuration before the start: that kernel, initrd and disk files exist and
/// can be opened, and that a tap exists (/sys/class/net). Nothing is created.
const FILE_CHECKS: &[libc::c_long] = &[
    libc::SYS_openat,
    libc::SYS_open,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_pread64,
    libc::SYS_readlink,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
];

/// The main thread after the start: it waits for the guest or a signal, stops the API server
/// and removes its socket.
const MAIN: &[libc::c_long] = &[libc::SYS_unlink, libc::SYS_rt_sigtimedwait];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_builds_for_both_hosts() {
        for kind in [
            ThreadKind::Vcpu,
            ThreadKind::Devices,
            ThreadKind::Api,
            ThreadKind::Main,
            ThreadKind::Helper,
            ThreadKind::Started,
        ] {
            for pvm in [false, true] {
                let p = program(kind, pvm, SeccompAction::KillProcess).unwrap();
                assert!(!p.is_empty(), "{kind:?}");
            }
        }
    }

    #[test]
    fn pvm_rights_are_only_in_the_pvm_vcpu_filter() {
        let hw = rules(ThreadKind::Vcpu, false).unwrap();
        let pvm = rules(ThreadKind::Vcpu, true).unwrap();
        let ioctls = |r: &Rules| r.get(&libc::SYS_ioctl).map_or(0, Vec::len);
        assert!(ioctls(&pvm) > ioctls(&hw));
        for kind in [ThreadKind::Devices, ThreadKind::Api, ThreadKind::Started] {
            assert_eq!(rules(kind, true).unwrap(), rules(kind, false).unwrap());
        }
    }

    #[test]
    fn no_filtered_thread_makes_threads_and_only_the_api_thread_opens_files() {
        let kinds = [
            ThreadKind::Vcpu,
            ThreadKind::Devices,
            ThreadKind::Api,
            ThreadKind::Main,
            ThreadKind::Helper,
            ThreadKind::Started,
        ];
        for kind in kinds {
            let r = rules(kind, true).unwrap();
            for s in [
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_fork,
                libc::SYS_execve,
            ] {
                assert!(!r.contains_key(&s), "{kind:?} allows syscall {s}");
            }
            // The started API thread opens only a snapshot's files, created for writing.
            let opens = r.contains_key(&libc::SYS_openat);
            let may = [ThreadKind::Api, ThreadKind::Started].contains(&kind);
            assert_eq!(opens, may, "{kind:?} and openat");
        }
    }
}
