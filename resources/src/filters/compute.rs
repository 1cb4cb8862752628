//! ComputeFilter: only enabled hosts whose service is up take new servers.

use super::{HostFilter, Rejection};
use crate::host::{Host, HostState};
use crate::request::{ResourceRequest, SchedulingContext};

/// Rejects disabled hosts and hosts whose compute service is down.
#[derive(Debug, Clone, Copy, Default)]
pub struct ComputeFilter;

impl HostFilter for ComputeFilter {
    fn name(&self) -> &'static str {
        "ComputeFilter"
    }

    fn passes(
        &self,
        host: &Host,
        _request: &ResourceRequest,
        _ctx: &SchedulingContext,
    ) -> Result<(), Rejection> {
        if !host.enabled {
            return Err(Rejection::new(match &host.disabled_reason {
                Some(why) => format!("host is disabled ({why})"),
                None => "host is disabled".to_string(),
            }));
        }
        if host.state == HostState::Down {
            return Err(Rejection::new("host's compute service is down"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: &Host) -> Result<(), Rejection> {
        let request = ResourceRequest::default();
        ComputeFilter.passes(
            host,
            &request,
            &SchedulingContext::new(&"s".into(), &request),
        )
    }

    #[test]
    fn enabled_up_hosts_pass() {
        assert_eq!(check(&Host::new("a", "a")), Ok(()));
    }

    #[test]
    fn disabled_or_down_hosts_are_rejected_with_why() {
        let mut host = Host::new("a", "a");
        host.enabled = false;
        host.disabled_reason = Some("maintenance".into());
        assert_eq!(
            check(&host).unwrap_err().reason,
            "host is disabled (maintenance)"
        );
        host.enabled = true;
        host.state = HostState::Down;
        assert!(check(&host).unwrap_err().reason.contains("down"));
    }
}
