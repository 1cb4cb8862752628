//! `[cluster]` in outpostd's configuration: present on every box of a site, absent on a box
//! that stands alone.
//!
//! ```toml
//! [cluster]
//! etcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]
//! name = "box2"                 # this box, a DNS label that never changes
//! underlay = "10.0.0.2"         # this box's address on the boxes' own network
//! availability_zone = "nova"    # Nova's default zone
//! join_token = "..."            # needed once, to join an existing cluster
//! image_pull_mbps = 200         # background copies of images from other boxes, Mbit/s
//! watchdog = "/dev/watchdog"    # reset a hung box before its lease expires (optional)
//! ha_reserve = true             # refuse creates that would leave no room to evacuate a box
//! ```

use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub etcd: Option<Vec<String>>,
    pub name: Option<String>,
    pub underlay: Option<IpAddr>,
    pub availability_zone: Option<String>,
    pub join_token: Option<String>,
    pub image_pull_mbps: Option<u32>,
    pub watchdog: Option<PathBuf>,
    pub ha_reserve: Option<bool>,
}

/// The rate background image copies are pulled at unless configured.
pub const DEFAULT_IMAGE_PULL_MBPS: u32 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub etcd: Vec<String>,
    pub name: String,
    pub underlay: IpAddr,
    pub availability_zone: String,
    pub join_token: Option<String>,
    /// Megabits per second for background image pulls (on-demand pulls are not limited).
    pub image_pull_mbps: u32,
    /// The watchdog device the fence keeps fed (docs/cluster.md, "Fencing"): when outpostd
    /// hangs, it stops being fed and resets the box. Its timeout must be under the lease's
    /// TTL (softdog: `soft_margin=8`). None: no watchdog.
    pub watchdog: Option<PathBuf>,
    /// The failure reserve (docs/cluster.md, "Capacity for failure"): a create is refused
    /// (NoValidHost) when, with it, the other boxes could not take in the servers of any one
    /// box that fails. Off by default: it costs a box's worth of room.
    pub ha_reserve: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterConfigError {
    #[error("cluster.{0} is required when [cluster] is given")]
    Missing(&'static str),
    #[error("cluster.etcd {0:?} must be http:// or https:// URLs")]
    Endpoint(String),
    #[error(
        "cluster.name {0:?} must be a DNS label: 1 to 63 of a-z, 0-9 and '-', not at either end"
    )]
    Name(String),
    #[error("cluster.availability_zone must not be empty")]
    Zone,
    #[error("cluster.image_pull_mbps must be at least 1")]
    PullRate,
}

impl ClusterSection {
    /// `None` when the section is absent (one box, no etcd).
    pub fn resolve(&self) -> Result<Option<ClusterSettings>, ClusterConfigError> {
        let given = self.etcd.is_some() || self.name.is_some() || self.underlay.is_some();
        if !given {
            return Ok(None);
        }
        let etcd = self
            .etcd
            .clone()
            .filter(|e| !e.is_empty())
            .ok_or(ClusterConfigError::Missing("etcd"))?;
        if let Some(bad) = etcd
            .iter()
            .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(ClusterConfigError::Endpoint(bad.clone()));
        }
        let name = self
            .name
            .clone()
            .ok_or(ClusterConfigError::Missing("name"))?;
        if !is_dns_label(&name) {
            return Err(ClusterConfigError::Name(name));
        }
        let underlay = self
            .underlay
            .ok_or(ClusterConfigError::Missing("underlay"))?;
        let availability_zone = self
            .availability_zone
            .clone()
            .unwrap_or_else(|| "nova".to_owned());
        if availability_zone.trim().is_empty() {
            return Err(ClusterConfigError::Zone);
        }
        let image_pull_mbps = self.image_pull_mbps.unwrap_or(DEFAULT_IMAGE_PULL_MBPS);
        if image_pull_mbps == 0 {
            return Err(ClusterConfigError::PullRate);
        }
        Ok(Some(ClusterSettings {
            etcd,
            name,
            underlay,
            availability_zone,
            join_token: self.join_token.clone(),
            image_pull_mbps,
            watchdog: self.watchdog.clone(),
            ha_reserve: self.ha_reserve.unwrap_or(false),
        }))
    }
}

impl ClusterSettings {
    /// The etcd endpoints, this box's own member (on its underlay address) first: a box
    /// prefers the member that fails with it.
    pub fn endpoints_own_first(&self) -> Vec<String> {
        let own = format!("//{}:", self.underlay);
        let mut endpoints = self.etcd.clone();
        endpoints.sort_by_key(|e| !e.contains(&own));
        endpoints
    }
}

pub fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> ClusterSection {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn absent_means_one_box_and_every_field_is_checked() {
        assert_eq!(ClusterSection::default().resolve(), Ok(None));
        let ok = section(
            r#"etcd = ["http://10.0.0.1:2379"]
               name = "box1"
               underlay = "10.0.0.1""#,
        )
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(ok.availability_zone, "nova");
        assert_eq!(ok.underlay.to_string(), "10.0.0.1");
        assert_eq!(ok.image_pull_mbps, DEFAULT_IMAGE_PULL_MBPS);
        assert_eq!(ok.watchdog, None);
        assert!(!ok.ha_reserve, "the reserve is off unless asked for");
        let reserved = section(
            r#"etcd = ["http://10.0.0.1:2379"]
               name = "box1"
               underlay = "10.0.0.1"
               ha_reserve = true"#,
        )
        .resolve()
        .unwrap()
        .unwrap();
        assert!(reserved.ha_reserve);
        for (text, err) in [
            (
                r#"name = "box1"
                   underlay = "10.0.0.1""#,
                ClusterConfigError::Missing("etcd"),
            ),
            (
                r#"etcd = ["10.0.0.1:2379"]
                   name = "box1"
                   underlay = "10.0.0.1""#,
                ClusterConfigError::Endpoint("10.0.0.1:2379".into()),
            ),
            (
                r#"etcd = ["http://10.0.0.1:2379"]
                   name = "Box_1"
                   underlay = "10.0.0.1""#,
                ClusterConfigError::Name("Box_1".into()),
            ),
            (
                r#"etcd = ["http://10.0.0.1:2379"]
                   name = "box1""#,
                ClusterConfigError::Missing("underlay"),
            ),
        ] {
            assert_eq!(section(text).resolve(), Err(err), "{text}");
        }
    }
}
