//! `outpost-vmm`: a virtual machine monitor for one guest per process on /dev/kvm.
//!
//! The binary (`main.rs`) only parses arguments; everything else lives here so it can be
//! tested without a process. Data flows API → [`controller`] → [`builder`] → [`vstate`].

pub mod acpi;
pub mod api;
pub mod arch;
pub mod boot;
pub mod builder;
pub mod config;
pub mod controller;
pub mod devices;
pub mod jail;
pub mod process;
pub mod pvm;
pub mod seccomp;
pub mod snapshot;
pub mod vstate;

/// Exit status of the monitor process when the guest powered off (or was never started).
pub const EXIT_POWEROFF: i32 = 0;
/// Exit status of the monitor process when the guest asked for a reboot.
pub const EXIT_REBOOT: i32 = 3;
/// Exit status when the monitor stopped on an error (bad config, guest fault it cannot handle).
pub const EXIT_ERROR: i32 = 1;

/// When the process started, for start-up figures (set by the binary).
pub static PROCESS_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
