//! A host's inventory from configuration values, the way Nova's compute service reports
//! its node to Placement.
//!
//! Defaults are Nova's current ones (since Stein, when the `initial_*_allocation_ratio`
//! options replaced the old 16.0 CPU / 1.5 RAM ratios):
//!
//! | option                    | default |
//! |---------------------------|---------|
//! | `cpu_allocation_ratio`    | 4.0     |
//! | `ram_allocation_ratio`    | 1.0     |
//! | `disk_allocation_ratio`   | 1.0     |
//! | `reserved_host_memory_mb` | 512     |
//! | `reserved_host_cpus`      | 0       |
//! | `reserved_host_disk_mb`   | 0       |
//!
//! Each inventory has `min_unit` 1, `max_unit` = total (no server bigger than the host)
//! and `step_size` 1. Reserved disk is configured in MB and reported in whole GB, rounded
//! up.

use serde::{Deserialize, Serialize};

use crate::class::ResourceClass;
use crate::host::{Host, HostId};
use crate::inventory::{Inventory, InventoryError};

/// What the operator configured for one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// CPUs the host offers to guests.
    pub vcpus: u64,
    /// RAM in MiB.
    pub ram_mb: u64,
    /// Local disk for guests in GiB (0: no DISK_GB inventory, as in Nova).
    pub disk_gb: u64,
    /// RAM kept for the host itself.
    #[serde(default = "default_reserved_host_memory_mb")]
    pub reserved_host_memory_mb: u64,
    /// CPUs kept for the host itself.
    #[serde(default)]
    pub reserved_host_cpus: u64,
    /// Disk kept for the host itself, in MiB.
    #[serde(default)]
    pub reserved_host_disk_mb: u64,
    /// VCPU overcommit.
    #[serde(default = "default_cpu_allocation_ratio")]
    pub cpu_allocation_ratio: f64,
    /// RAM overcommit.
    #[serde(default = "default_one")]
    pub ram_allocation_ratio: f64,
    /// Disk overcommit.
    #[serde(default = "default_one")]
    pub disk_allocation_ratio: f64,
}

/// Nova's `initial_cpu_allocation_ratio`.
pub const DEFAULT_CPU_ALLOCATION_RATIO: f64 = 4.0;
/// Nova's `initial_ram_allocation_ratio`.
pub const DEFAULT_RAM_ALLOCATION_RATIO: f64 = 1.0;
/// Nova's `initial_disk_allocation_ratio`.
pub const DEFAULT_DISK_ALLOCATION_RATIO: f64 = 1.0;
/// Nova's `reserved_host_memory_mb`.
pub const DEFAULT_RESERVED_HOST_MEMORY_MB: u64 = 512;

fn default_reserved_host_memory_mb() -> u64 {
    DEFAULT_RESERVED_HOST_MEMORY_MB
}

fn default_cpu_allocation_ratio() -> f64 {
    DEFAULT_CPU_ALLOCATION_RATIO
}

fn default_one() -> f64 {
    1.0
}

impl HostConfig {
    /// A host of this size with Nova's default reservations and ratios.
    pub fn new(vcpus: u64, ram_mb: u64, disk_gb: u64) -> Self {
        Self {
            vcpus,
            ram_mb,
            disk_gb,
            reserved_host_memory_mb: DEFAULT_RESERVED_HOST_MEMORY_MB,
            reserved_host_cpus: 0,
            reserved_host_disk_mb: 0,
            cpu_allocation_ratio: DEFAULT_CPU_ALLOCATION_RATIO,
            ram_allocation_ratio: DEFAULT_RAM_ALLOCATION_RATIO,
            disk_allocation_ratio: DEFAULT_DISK_ALLOCATION_RATIO,
        }
    }

    /// The inventories this configuration describes, checked.
    pub fn inventories(&self) -> Result<Vec<(ResourceClass, Inventory)>, InventoryError> {
        let record = |total: u64, reserved: u64, ratio: f64| {
            Inventory::new(total)
                .reserved(reserved)
                .allocation_ratio(ratio)
        };
        let mut inventories = vec![
            (
                ResourceClass::Vcpu,
                record(
                    self.vcpus,
                    self.reserved_host_cpus,
                    self.cpu_allocation_ratio,
                ),
            ),
            (
                ResourceClass::MemoryMb,
                record(
                    self.ram_mb,
                    self.reserved_host_memory_mb,
                    self.ram_allocation_ratio,
                ),
            ),
        ];
        if self.disk_gb > 0 {
            inventories.push((
                ResourceClass::DiskGb,
                record(
                    self.disk_gb,
                    self.reserved_host_disk_mb.div_ceil(1024),
                    self.disk_allocation_ratio,
                ),
            ));
        }
        for (class, inventory) in &inventories {
            inventory.validate(class)?;
        }
        Ok(inventories)
    }

    /// A new enabled, up host with these inventories.
    pub fn to_host(
        &self,
        id: impl Into<HostId>,
        name: impl Into<String>,
    ) -> Result<Host, InventoryError> {
        let mut host = Host::new(id, name);
        self.apply(&mut host)?;
        Ok(host)
    }

    /// Re-applies the configuration to an existing host (a config reload): inventories are
    /// replaced, claims kept. Checked first, so a bad configuration changes nothing.
    pub fn apply(&self, host: &mut Host) -> Result<(), InventoryError> {
        let inventories = self.inventories()?;
        let configured: Vec<&ResourceClass> = inventories.iter().map(|(c, _)| c).collect();
        if !configured.contains(&&ResourceClass::DiskGb) {
            // Refused while disk is in use; then nothing has been changed yet.
            host.remove_inventory(&ResourceClass::DiskGb)?;
        }
        for (class, inventory) in inventories {
            host.set_inventory(class, inventory)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::Resources;
    use crate::cluster::Cluster;

    #[test]
    fn defaults_follow_nova() {
        let host = HostConfig::new(4, 8192, 100).to_host("h1", "box1").unwrap();
        let vcpu = host.inventory(&ResourceClass::Vcpu).unwrap();
        assert_eq!(
            (vcpu.total, vcpu.reserved, vcpu.allocation_ratio),
            (4, 0, 4.0)
        );
        assert_eq!(vcpu.max_unit, 4);
        assert_eq!(host.capacity(&ResourceClass::Vcpu), 16);
        assert_eq!(host.capacity(&ResourceClass::MemoryMb), 8192 - 512);
        assert_eq!(host.capacity(&ResourceClass::DiskGb), 100);
    }

    #[test]
    fn reserved_disk_mb_rounds_up_to_whole_gb() {
        let config = HostConfig {
            reserved_host_disk_mb: 1025,
            ..HostConfig::new(1, 1024, 10)
        };
        let host = config.to_host("h", "h").unwrap();
        assert_eq!(host.inventory(&ResourceClass::DiskGb).unwrap().reserved, 2);
        assert_eq!(host.capacity(&ResourceClass::DiskGb), 8);
    }

    #[test]
    fn no_disk_means_no_disk_inventory() {
        let host = HostConfig::new(2, 2048, 0).to_host("h", "h").unwrap();
        assert!(host.inventory(&ResourceClass::DiskGb).is_none());
    }

    #[test]
    fn a_box_smaller_than_its_reservation_is_refused() {
        let err = HostConfig::new(1, 256, 1).to_host("h", "h").unwrap_err();
        assert_eq!(
            err.to_string(),
            "MEMORY_MB: reserved 512 is more than total 256"
        );
        let bad_ratio = HostConfig {
            cpu_allocation_ratio: 0.0,
            ..HostConfig::new(1, 1024, 1)
        };
        assert!(matches!(
            bad_ratio.to_host("h", "h"),
            Err(InventoryError::BadAllocationRatio { .. })
        ));
    }

    #[test]
    fn reload_keeps_claims_and_a_bad_reload_changes_nothing() {
        let mut cluster =
            Cluster::from_hosts([HostConfig::new(2, 4096, 10).to_host("h", "h").unwrap()]).unwrap();
        cluster
            .claim(&"h".into(), &"srv".into(), &Resources::compute(1, 1024, 5))
            .unwrap();
        let host = cluster.host_mut(&"h".into()).unwrap();
        HostConfig::new(8, 4096, 10).apply(host).unwrap();
        assert_eq!(host.capacity(&ResourceClass::Vcpu), 32);
        assert_eq!(host.usage().get(&ResourceClass::Vcpu), 1);
        let before = host.clone();
        // Dropping disk while a server uses it is refused before anything changes.
        assert!(HostConfig::new(16, 4096, 0).apply(host).is_err());
        assert_eq!(*host, before);
    }

    #[test]
    fn json_config_takes_nova_defaults() {
        let config: HostConfig =
            serde_json::from_str(r#"{"vcpus": 4, "ram_mb": 8192, "disk_gb": 50}"#).unwrap();
        assert_eq!(config, HostConfig::new(4, 8192, 50));
        assert!(serde_json::from_str::<HostConfig>(
            r#"{"vcpus":1,"ram_mb":1,"disk_gb":1,"cpu_ratio":2}"#
        )
        .is_err());
    }
}
