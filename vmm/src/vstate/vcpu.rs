//! vCPU threads. Each `vcpu<N>` thread owns its `VcpuFd` and runs KVM_RUN until the guest
//! powers off or reboots, a fault stops it, or the VM is stopped; it dispatches port I/O
//! and MMIO exits to the buses and, on a PVM host, hands emulation and debug exits to
//! `crate::pvm`. Pause and stop are requested through [`VcpuControl`] plus a kick signal
//! that makes a running KVM_RUN return (`immediate_exit`). A paused vCPU has finished its
//! last exit inside KVM and saves its state on request, for a snapshot.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use kvm_bindings::{kvm_run, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;

use crate::devices::bus::Bus;
use crate::devices::legacy::{PowerEvent, PowerSignal};
use crate::pvm::PvmVcpu;
use crate::snapshot::vcpu::{settle, VcpuState, VcpuStateError};

/// The signal that kicks a vCPU out of KVM_RUN.
pub fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN()
}

thread_local! {
    // The vCPU thread's kvm_run mapping, for the kick signal handler.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(|c| c.get());
    if !run.is_null() {
        // SAFETY: `run` is this thread's own kvm_run mapping, set by the vCPU thread before
        // it first enters KVM_RUN and valid until the thread's VcpuFd is dropped, after it
        // cleared the pointer. A volatile byte store is async-signal-safe.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}

/// Installs the kick handler once per process.
pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Run,
    Pause,
    Stop,
}

/// A request to the paused vCPUs to save their state, answered by each as (index, state).
#[derive(Debug)]
struct SaveRequest {
    /// Tells requests apart, so a vCPU answers each once.
    id: u64,
    msr_indices: Arc<[u32]>,
    reply: mpsc::Sender<(u8, Result<VcpuState, VcpuStateError>)>,
}

#[derive(Debug)]
struct ControlState {
    run: RunState,
    /// vCPUs waiting in the paused state.
    paused: usize,
    save: Option<SaveRequest>,
    /// The id the next save request gets.
    next_save: u64,
}

/// Shared run state of all vCPUs.
#[derive(Debug)]
pub struct VcpuControl {
    state: Mutex<ControlState>,
    cv: Condvar,
}

impl Default for VcpuControl {
    fn default() -> Self {
        VcpuControl {
            state: Mutex::new(ControlState {
                run: RunState::Run,
                paused: 0,
                save: None,
                next_save: 0,
            }),
            cv: Condvar::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VcpuSaveError {
    #[error("the guest must be paused before its vCPUs' state is saved")]
    NotPaused,
    #[error("vCPU {0}: {1}")]
    Vcpu(u8, VcpuStateError),
    #[error(
        "only {answered} of {expected} vCPUs saved their state within {waited:?}: a vCPU \
         thread has ended or is stuck"
    )]
    NoAnswer {
        answered: usize,
        expected: usize,
        waited: std::time::Duration,
    },
}

/// Exit counts by kind, and where vCPU threads spent their time, for the log at exit, the
/// API and the benchmark.
#[derive(Debug, Default)]
pub struct ExitCounters {
    counts: [AtomicU64; EXIT_KINDS.len()],
    /// Nanoseconds inside KVM_RUN (guest code, and the host's emulator on PVM).
    in_kvm_run_ns: AtomicU64,
    /// Nanoseconds in the monitor's own code between KVM_RUNs (exit handling).
    in_monitor_ns: AtomicU64,
}

const EXIT_KINDS: [&str; 12] = [
    "io_in",
    "io_out",
    "mmio_read",
    "mmio_write",
    "hlt",
    "shutdown",
    "system_event",
    "internal_error",
    "debug",
    "intr",
    "eagain",
    "other",
];

impl ExitCounters {
    fn bump(&self, kind: &str) {
        if let Some(i) = EXIT_KINDS.iter().position(|k| *k == kind) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        EXIT_KINDS
            .iter()
            .zip(self.counts.iter())
            .map(|(k, c)| (k.to_string(), c.load(Ordering::Relaxed)))
            .filter(|(_, v)| *v > 0)
            .chain([
                (
                    "time_in_kvm_run_ms".to_string(),
                    self.in_kvm_run_ns.load(Ordering::Relaxed) / 1_000_000,
                ),
                (
                    "time_in_monitor_ms".to_string(),
                    self.in_monitor_ns.load(Ordering::Relaxed) / 1_000_000,
                ),
            ])
            .collect()
    }
}

/// Everything a vCPU thread needs besides its fd.
pub struct VcpuContext {
    pub index: u8,
    pub mem: GuestMemoryMmap,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub power: Arc<PowerSignal>,
    pub control: Arc<VcpuControl>,
    pub counters: Arc<ExitCounters>,
    pub pvm: Option<PvmVcpu>,
    /// Called once, just before the first KVM_RUN of vCPU 0 (start-up figures).
    pub on_first_run: Option<Box<dyn FnOnce() + Send>>,
    /// Where to record guest RIP samples taken when a kick interrupts KVM_RUN.
    pub profile: Option<Arc<GuestProfile>>,
}

/// A statistical profile of guest code: RIP samples counted per address. A sampler thread
/// kicks a vCPU at a fixed period; the vCPU records its RIP on the resulting exit. Enabled
/// with `OUTPOST_GUEST_PROFILE=<file>`; the benchmark symbolizes it to measure, for example,
/// the share of boot time spent in timer-tick code.
#[derive(Debug, Default)]
pub struct GuestProfile {
    samples: Mutex<std::collections::HashMap<u64, u64>>,
}

impl GuestProfile {
    fn record(&self, rip: u64) {
        *self
            .samples
            .lock()
            .expect("profile lock poisoned")
            .entry(rip)
            .or_default() += 1;
    }

    /// Writes `count rip` lines, most frequent first.
    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let samples = self.samples.lock().expect("profile lock poisoned");
        let mut v: Vec<_> = samples.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (rip, n) in v {
            writeln!(f, "{n} {rip:#x}")?;
        }
        f.flush()
    }
}

enum Next {
    Continue,
    Internal,
    Debug(kvm_bindings::kvm_debug_exit_arch),
    End(PowerEvent),
}

fn run_once(vcpu: &mut VcpuFd, ctx: &VcpuContext) -> Next {
    let c = &ctx.counters;
    match vcpu.run() {
        Ok(VcpuExit::IoIn(port, data)) => {
            c.bump("io_in");
            ctx.pio.read(u64::from(port), data);
            Next::Continue
        }
        Ok(VcpuExit::IoOut(port, data)) => {
            c.bump("io_out");
            ctx.pio.write(u64::from(port), data);
            Next::Continue
        }
        Ok(VcpuExit::MmioRead(addr, data)) => {
            c.bump("mmio_read");
            ctx.mmio.read(addr, data);
            Next::Continue
        }
        Ok(VcpuExit::MmioWrite(addr, data)) => {
            c.bump("mmio_write");
            ctx.mmio.write(addr, data);
            Next::Continue
        }
        Ok(VcpuExit::Hlt) => {
            c.bump("hlt");
            Next::Continue
        }
        // A triple fault: what Linux falls back to when other reboot methods fail.
        Ok(VcpuExit::Shutdown) => {
            c.bump("shutdown");
            Next::End(PowerEvent::Reboot)
        }
        Ok(VcpuExit::SystemEvent(kind, _)) => {
            c.bump("system_event");
            match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN => Next::End(PowerEvent::Poweroff),
                KVM_SYSTEM_EVENT_RESET => Next::End(PowerEvent::Reboot),
                other => Next::End(PowerEvent::Crash(format!(
                    "vCPU {}: unexpected system event {other}",
                    ctx.index
                ))),
            }
        }
        Ok(VcpuExit::InternalError) => {
            c.bump("internal_error");
            Next::Internal
        }
        Ok(VcpuExit::Debug(arch)) => {
            c.bump("debug");
            Next::Debug(arch)
        }
        Ok(VcpuExit::Intr) => {
            c.bump("intr");
            Next::Continue
        }
        Ok(VcpuExit::FailEntry(reason, cpu)) => Next::End(PowerEvent::Crash(format!(
            "vCPU {}: KVM entry failed, hardware reason {reason:#x} on cpu {cpu}",
            ctx.index
        ))),
        Ok(other) => {
            c.bump("other");
            Next::End(PowerEvent::Crash(format!(
                "vCPU {}: unhandled exit {other:?}",
                ctx.index
            )))
        }
        Err(e) if e.errno() == libc::EINTR => {
            vcpu.set_kvm_immediate_exit(0);
            if let (Some(p), Ok(regs)) = (&ctx.profile, vcpu.get_regs()) {
                p.record(regs.rip);
            }
            Next::Continue
        }
        // A secondary vCPU leaving wait-for-SIPI returns EAGAIN once on some hosts.
        Err(e) if e.errno() == libc::EAGAIN => {
            c.bump("eagain");
            Next::Continue
        }
        Err(e) => Next::End(PowerEvent::Crash(format!(
            "vCPU {}: KVM_RUN failed: {e}",
            ctx.index
        ))),
    }
}

/// Blocks while paused, answering save requests meanwhile; returns false when the vCPU must
/// stop.
fn wait_runnable(ctrl: &VcpuControl, vcpu: &mut VcpuFd, index: u8) -> bool {
    let mut st = ctrl.state.lock().expect("vcpu control lock poisoned");
    if st.run == RunState::Pause {
        // Finish the last exit's instruction inside KVM before counting as paused, so that
        // a saved state neither replays nor loses it. The lock is held for one KVM_RUN that
        // runs no guest code.
        if let Err(e) = settle(vcpu) {
            tracing::warn!("vCPU {index}: {e}");
        }
    }
    let mut answered = None;
    loop {
        match st.run {
            RunState::Run => return true,
            RunState::Stop => return false,
            RunState::Pause => {
                if let Some(req) = st.save.as_ref().filter(|r| answered != Some(r.id)) {
                    answered = Some(req.id);
                    let state = VcpuState::save(vcpu, &req.msr_indices);
                    // The requester may have given up (timed out): nobody to tell then.
                    let _ = req.reply.send((index, state));
                }
                st.paused += 1;
                ctrl.cv.notify_all();
                st = ctrl.cv.wait(st).expect("vcpu control lock poisoned");
                st.paused -= 1;
            }
        }
    }
}

fn vcpu_loop(mut vcpu: VcpuFd, mut ctx: VcpuContext) {
    crate::seccomp::install_or_exit(crate::seccomp::ThreadKind::Vcpu);
    KVM_RUN.with(|c| c.set(vcpu.get_kvm_run() as *mut kvm_run));
    if let Some(f) = ctx.on_first_run.take() {
        f();
    }
    let end = loop {
        if !wait_runnable(&ctx.control, &mut vcpu, ctx.index) {
            break None;
        }
        if let Some(p) = ctx.pvm.as_mut() {
            if let Err(e) = p.before_run(&vcpu, &ctx.mem) {
                break Some(PowerEvent::Crash(format!("vCPU {}: {e}", ctx.index)));
            }
        }
        let entered = Instant::now();
        let next = run_once(&mut vcpu, &ctx);
        let exited = Instant::now();
        ctx.counters
            .in_kvm_run_ns
            .fetch_add((exited - entered).as_nanos() as u64, Ordering::Relaxed);
        let handled = match (next, ctx.pvm.as_mut()) {
            (Next::Continue, _) => Ok(()),
            (Next::End(ev), _) => break Some(ev),
            (Next::Internal, Some(p)) => p.handle_internal_error(&mut vcpu, &ctx.mem),
            (Next::Debug(arch), Some(p)) => p.handle_debug(&mut vcpu, &ctx.mem, &arch),
            (Next::Internal, None) => {
                let run = vcpu.get_kvm_run();
                // SAFETY: KVM filled the `internal` member of the exit union for
                // KVM_EXIT_INTERNAL_ERROR, which is the exit we are handling.
                let (sub, n) = unsafe {
                    (
                        run.__bindgen_anon_1.internal.suberror,
                        run.__bindgen_anon_1.internal.ndata,
                    )
                };
                break Some(PowerEvent::Crash(format!(
                    "vCPU {}: KVM internal error, suberror {sub}, {n} data words",
                    ctx.index
                )));
            }
            (Next::Debug(arch), None) => {
                break Some(PowerEvent::Crash(format!(
                    "vCPU {}: unexpected debug exit at {:#x}",
                    ctx.index, arch.pc
                )))
            }
        };
        if let Err(e) = handled {
            break Some(PowerEvent::Crash(format!("vCPU {}: {e}", ctx.index)));
        }
        ctx.counters
            .in_monitor_ns
            .fetch_add(exited.elapsed().as_nanos() as u64, Ordering::Relaxed);
    };
    KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
    if let Some(ev) = end {
        ctx.power.request(ev);
    }
}

/// A started vCPU thread.
pub struct VcpuHandle {
    thread: JoinHandle<()>,
    /// Dropped with the handle: tells helper threads (the sampler) to stop kicking.
    alive: Arc<()>,
}

impl VcpuHandle {
    pub fn spawn(vcpu: VcpuFd, ctx: VcpuContext) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name(format!("vcpu{}", ctx.index))
            .spawn(move || vcpu_loop(vcpu, ctx))?;
        Ok(VcpuHandle {
            thread,
            alive: Arc::new(()),
        })
    }

    fn kick(&self) {
        kick_thread(self.thread.as_pthread_t());
    }

    /// Starts a thread (`name`) that kicks this vCPU out of KVM_RUN every `period` while the
    /// handle lives: the guest profile's sampler, and on PVM the periodic exit that lets a
    /// vCPU that never exits on its own re-arm its SYSCALL repair.
    pub fn start_kicker(&self, name: &str, period: std::time::Duration) -> std::io::Result<()> {
        let tid = self.thread.as_pthread_t();
        let alive = Arc::downgrade(&self.alive);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                crate::seccomp::install_or_exit(crate::seccomp::ThreadKind::Helper);
                while alive.upgrade().is_some() {
                    std::thread::sleep(period);
                    if alive.upgrade().is_none() {
                        break;
                    }
                    kick_thread(tid);
                }
            })
            .map(|_| ())
    }
}

fn kick_thread(tid: libc::pthread_t) {
    // SAFETY: `tid` belongs to a vCPU thread we spawned; callers only kick while its
    // handle lives (the thread is not joined before the handle is dropped). The signal's
    // handler only stores to that thread's own kvm_run.
    unsafe { libc::pthread_kill(tid, kick_signal()) };
}

impl VcpuHandle {}

impl VcpuControl {
    fn set(&self, s: RunState, vcpus: &[VcpuHandle]) {
        self.state.lock().expect("vcpu control lock poisoned").run = s;
        self.cv.notify_all();
        for v in vcpus {
            v.kick();
        }
    }

    /// Pauses all vCPUs and waits until each has left KVM_RUN.
    pub fn pause(&self, vcpus: &[VcpuHandle]) {
        self.set(RunState::Pause, vcpus);
        let mut st = self.state.lock().expect("vcpu control lock poisoned");
        while st.run == RunState::Pause
            && st.paused < vcpus.iter().filter(|v| !v.thread.is_finished()).count()
        {
            let (g, _) = self
                .cv
                .wait_timeout(st, std::time::Duration::from_millis(50))
                .expect("vcpu control lock poisoned");
            st = g;
            if st.paused < vcpus.len() {
                for v in vcpus {
                    v.kick();
                }
            }
        }
    }

    /// Has each paused vCPU save its state; returns them in vCPU order. Every vCPU thread
    /// must be alive: a snapshot of a guest that lost one would not run.
    pub fn save_states(
        &self,
        vcpus: &[VcpuHandle],
        msr_indices: &[u32],
    ) -> Result<Vec<VcpuState>, VcpuSaveError> {
        const WAIT: std::time::Duration = std::time::Duration::from_secs(5);
        let (reply, answers) = mpsc::channel();
        {
            let mut st = self.state.lock().expect("vcpu control lock poisoned");
            if st.run != RunState::Pause {
                return Err(VcpuSaveError::NotPaused);
            }
            st.next_save += 1;
            st.save = Some(SaveRequest {
                id: st.next_save,
                msr_indices: msr_indices.into(),
                reply,
            });
            self.cv.notify_all();
        }
        let mut states: Vec<Option<VcpuState>> = (0..vcpus.len()).map(|_| None).collect();
        let deadline = Instant::now() + WAIT;
        let mut answered = 0;
        while answered < vcpus.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((index, state)) = answers.recv_timeout(left) else {
                break;
            };
            let state = state.map_err(|e| VcpuSaveError::Vcpu(index, e))?;
            if let Some(slot @ None) = states.get_mut(usize::from(index)) {
                *slot = Some(state);
                answered += 1;
            }
        }
        // Drop the request's sender so no vCPU holds on to a channel nobody reads.
        self.state.lock().expect("vcpu control lock poisoned").save = None;
        states
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or(VcpuSaveError::NoAnswer {
                answered,
                expected: vcpus.len(),
                waited: WAIT,
            })
    }

    pub fn resume(&self, vcpus: &[VcpuHandle]) {
        self.set(RunState::Run, vcpus);
    }

    pub fn stop(&self, vcpus: &[VcpuHandle]) {
        self.set(RunState::Stop, vcpus);
    }
}
