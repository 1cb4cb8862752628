//! "No valid host was found": why each host was turned down, and a summary for the fault
//! message Nova clients show on a server in ERROR.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::host::HostId;

/// Why one host was not chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostRejection {
    /// The host.
    pub host_id: HostId,
    /// Its name, for messages.
    pub host_name: String,
    /// The filter (or step: `destination`, `ignore_hosts`, `claim`) that turned it down.
    pub stage: String,
    /// What did not fit, in words.
    pub reason: String,
}

impl fmt::Display for HostRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host {}: {} ({})",
            self.host_name, self.reason, self.stage
        )
    }
}

/// Which server of a multi-create failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchPosition {
    /// 1-based number of the server that found no host.
    pub server: usize,
    /// How many servers the request creates.
    pub of: usize,
}

/// No host can take the server. `Display` gives [`NoValidHost::summary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", self.summary())]
pub struct NoValidHost {
    /// One entry per host, in host id order.
    pub rejections: Vec<HostRejection>,
    /// Set when the request created several servers and a later one failed (the earlier
    /// ones' claims were released).
    pub batch: Option<BatchPosition>,
    /// The availability zone the request asked for, named in the summary: "no room in the
    /// zone I asked for" is the first thing a user needs to know.
    pub availability_zone: Option<String>,
}

/// Above this many hosts the summary counts rejections by stage instead of listing them.
const LISTED_HOSTS: usize = 3;

impl NoValidHost {
    /// How Nova's fault message starts; clients match on it.
    pub const FAULT_PREFIX: &'static str = "No valid host was found.";

    /// One paragraph for the server's fault message: Nova's wording, then the reasons
    /// (each host's for a few hosts, counts per filter for many). The control service
    /// truncates it to its fault column and puts [`NoValidHost::details`] in the
    /// fault's details.
    pub fn summary(&self) -> String {
        let mut text = match self.batch {
            Some(BatchPosition { server, of }) => {
                format!("No valid host was found for server {server} of {of}.")
            }
            None => Self::FAULT_PREFIX.to_string(),
        };
        if self.rejections.is_empty() {
            text.push_str(" There are no compute hosts.");
            return text;
        }
        text.push_str(" There are not enough hosts available");
        if let Some(zone) = &self.availability_zone {
            text.push_str(&format!(" in availability zone {zone}"));
        }
        text.push('.');
        if self.rejections.len() <= LISTED_HOSTS {
            for rejection in &self.rejections {
                text.push_str(&format!(" {rejection}."));
            }
        } else {
            let mut by_stage: BTreeMap<&str, usize> = BTreeMap::new();
            for rejection in &self.rejections {
                *by_stage.entry(&rejection.stage).or_default() += 1;
            }
            let counts: Vec<String> = by_stage
                .iter()
                .map(|(stage, n)| format!("{n} by {stage}"))
                .collect();
            text.push_str(&format!(
                " {} hosts rejected: {}.",
                self.rejections.len(),
                counts.join(", ")
            ));
        }
        text
    }

    /// One line per host.
    pub fn details(&self) -> Vec<String> {
        self.rejections.iter().map(ToString::to_string).collect()
    }

    /// Why `host_id` was turned down.
    pub fn rejection(&self, host_id: &HostId) -> Option<&HostRejection> {
        self.rejections.iter().find(|r| &r.host_id == host_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(host: &str, stage: &str, reason: &str) -> HostRejection {
        HostRejection {
            host_id: host.into(),
            host_name: host.into(),
            stage: stage.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn no_hosts_at_all() {
        let err = NoValidHost {
            rejections: vec![],
            batch: None,
            availability_zone: None,
        };
        assert_eq!(
            err.to_string(),
            "No valid host was found. There are no compute hosts."
        );
    }

    #[test]
    fn a_few_hosts_are_listed_with_their_reasons() {
        let err = NoValidHost {
            rejections: vec![
                rejection(
                    "box1",
                    "ResourceFilter",
                    "MEMORY_MB: needs 4096 MB RAM, 1024 free",
                ),
                rejection("box2", "ComputeFilter", "host is disabled"),
            ],
            batch: None,
            availability_zone: None,
        };
        assert_eq!(
            err.summary(),
            "No valid host was found. There are not enough hosts available. \
             host box1: MEMORY_MB: needs 4096 MB RAM, 1024 free (ResourceFilter). \
             host box2: host is disabled (ComputeFilter)."
        );
        assert_eq!(err.details().len(), 2);
        assert_eq!(
            err.rejection(&"box2".into()).unwrap().stage,
            "ComputeFilter"
        );
    }

    #[test]
    fn many_hosts_are_counted_per_stage() {
        let mut rejections: Vec<_> = (0..5)
            .map(|i| rejection(&format!("h{i}"), "ResourceFilter", "full"))
            .collect();
        rejections.push(rejection("h9", "ComputeFilter", "down"));
        let err = NoValidHost {
            rejections,
            batch: Some(BatchPosition { server: 2, of: 3 }),
            availability_zone: None,
        };
        assert_eq!(
            err.summary(),
            "No valid host was found for server 2 of 3. There are not enough hosts available. \
             6 hosts rejected: 1 by ComputeFilter, 5 by ResourceFilter."
        );
    }

    #[test]
    fn a_requested_zone_is_named() {
        let err = NoValidHost {
            rejections: vec![rejection("box3", "ResourceFilter", "full")],
            batch: None,
            availability_zone: Some("edge-2".into()),
        };
        assert_eq!(
            err.summary(),
            "No valid host was found. There are not enough hosts available in availability \
             zone edge-2. host box3: full (ResourceFilter)."
        );
    }
}
