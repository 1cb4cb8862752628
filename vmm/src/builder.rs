//! Turns a validated [`VmConfig`] into a running guest: memory, vCPUs, devices, kernel.
//! (Contract stub; the body lands with the core monitor.)

use crate::config::VmConfig;
use serde::Serialize;

/// How a guest ended; the monitor's exit status follows from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    Poweroff,
    Reboot,
    Error(String),
}

impl ExitReason {
    pub fn exit_code(&self) -> i32 {
        match self {
            ExitReason::Poweroff => crate::EXIT_POWEROFF,
            ExitReason::Reboot => crate::EXIT_REBOOT,
            ExitReason::Error(_) => crate::EXIT_ERROR,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0}")]
    Failed(String),
}

/// Counters the monitor reports at exit and through the API.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VmStats {
    pub exits: std::collections::BTreeMap<String, u64>,
    pub pvm: std::collections::BTreeMap<String, u64>,
}

/// A started guest. Dropping it does not stop the guest; `wait_exit` blocks until it ends.
pub struct RunningVm {
    _private: (),
}

impl RunningVm {
    pub fn pause(&self) -> Result<(), VmError> {
        Err(VmError::Failed("not implemented yet".into()))
    }
    pub fn resume(&self) -> Result<(), VmError> {
        Err(VmError::Failed("not implemented yet".into()))
    }
    pub fn send_ctrl_alt_del(&self) -> Result<(), VmError> {
        Err(VmError::Failed("not implemented yet".into()))
    }
    pub fn stats(&self) -> VmStats {
        VmStats::default()
    }
    /// A handle the process's main thread can block on.
    pub fn exit_waiter(&self) -> ExitWaiter {
        ExitWaiter { _private: () }
    }
}

/// Blocks until the guest ends.
#[derive(Clone)]
pub struct ExitWaiter {
    _private: (),
}

impl ExitWaiter {
    pub fn wait(&self) -> ExitReason {
        ExitReason::Error("not implemented yet".into())
    }
}

/// Validates the configuration's resources (files, taps, memory) and boots the guest.
pub fn start(config: &VmConfig) -> Result<RunningVm, StartError> {
    let _ = config;
    Err(StartError::Invalid("not implemented yet".into()))
}
