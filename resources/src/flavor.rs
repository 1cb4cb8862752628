//! From a Nova flavor to a [`ResourceRequest`], the way Nova builds its Placement query.
//!
//! - VCPU = `vcpus`, MEMORY_MB = `ram`, DISK_GB = `disk` (unless the server boots from a
//!   volume) + `OS-FLV-EXT-DATA:ephemeral` + `swap` rounded up to whole GB.
//! - `resources:CLASS=N` extra specs override those amounts or add custom classes;
//!   `N = 0` drops the class from the request.
//! - `trait:NAME=required|forbidden` extra specs become required/forbidden traits.
//! - `aggregate_instance_extra_specs:KEY=REQ` (and, as in Nova, unscoped `KEY=REQ`) are
//!   kept for `AggregateInstanceExtraSpecsFilter`.
//! - Other scoped specs (`hw:`, `quota:`, ...) are for the monitor or other services and
//!   are ignored here.
//!
//! Unlike Nova, which logs and skips malformed `resources:`/`trait:` specs, we refuse the
//! flavor: the user asked for something and should learn it was not understood.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::class::{is_placement_name, ClassError, ResourceClass, Resources};
use crate::request::ResourceRequest;

/// Why a flavor's extra specs cannot be turned into a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlavorError {
    /// `resources:NAME` names a class we can't place.
    #[error("extra spec {key}: {source}")]
    BadResourceClass {
        /// The extra spec key.
        key: String,
        /// What is wrong with the class name.
        source: ClassError,
    },
    /// `resources:CLASS=N` with N not a non-negative integer.
    #[error("extra spec {key}={value:?}: the amount must be a whole number of 0 or more")]
    BadAmount {
        /// The extra spec key.
        key: String,
        /// The refused value.
        value: String,
    },
    /// `trait:NAME=` with a value other than `required` or `forbidden`.
    #[error("extra spec {key}={value:?}: the value must be \"required\" or \"forbidden\"")]
    BadTraitValue {
        /// The extra spec key.
        key: String,
        /// The refused value.
        value: String,
    },
    /// `trait:NAME` with a name Placement would refuse.
    #[error("extra spec {key}: trait names are upper-case letters, digits and '_'")]
    BadTraitName {
        /// The extra spec key.
        key: String,
    },
    /// Granular request groups (`resources1:`, `trait_gpu:`, ...) spread a server over
    /// several resource providers; Outpost hosts are single providers.
    #[error("extra spec {key}: numbered or named request groups are not supported")]
    GranularGroup {
        /// The extra spec key.
        key: String,
    },
}

/// A Nova flavor's sizing fields and extra specs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flavor {
    /// Virtual CPUs.
    pub vcpus: u64,
    /// RAM in MiB.
    pub ram_mb: u64,
    /// Root disk in GiB (0: sized from the image, nothing claimed for it).
    pub disk_gb: u64,
    /// Ephemeral disk in GiB.
    pub ephemeral_gb: u64,
    /// Swap in MiB.
    pub swap_mb: u64,
    /// Extra specs (`hw:cpu_policy`, `resources:VCPU`, `trait:...`).
    pub extra_specs: BTreeMap<String, String>,
}

const TRAIT_REQUIRED: &str = "required";
const TRAIT_FORBIDDEN: &str = "forbidden";
const AGGREGATE_SCOPE: &str = "aggregate_instance_extra_specs";

impl Flavor {
    /// The DISK_GB a server of this flavor takes: root (unless it boots from a volume),
    /// ephemeral, and swap rounded up to whole GiB.
    pub fn disk_gb_claimed(&self, boot_from_volume: bool) -> u64 {
        let root = if boot_from_volume { 0 } else { self.disk_gb };
        root.saturating_add(self.ephemeral_gb)
            .saturating_add(self.swap_mb.div_ceil(1024))
    }

    /// The request for one server of this flavor.
    pub fn to_request(&self, boot_from_volume: bool) -> Result<ResourceRequest, FlavorError> {
        let mut request = ResourceRequest::new(Resources::compute(
            self.vcpus,
            self.ram_mb,
            self.disk_gb_claimed(boot_from_volume),
        ));
        for (key, value) in &self.extra_specs {
            let Some((scope, name)) = key.split_once(':') else {
                // `group_policy` only means something with granular groups.
                if key != "group_policy" {
                    request
                        .aggregate_extra_specs
                        .insert(key.clone(), value.clone());
                }
                continue;
            };
            match scope {
                "resources" => {
                    let class = name.parse::<ResourceClass>().map_err(|source| {
                        FlavorError::BadResourceClass {
                            key: key.clone(),
                            source,
                        }
                    })?;
                    let amount =
                        value
                            .trim()
                            .parse::<u64>()
                            .map_err(|_| FlavorError::BadAmount {
                                key: key.clone(),
                                value: value.clone(),
                            })?;
                    request.resources.set(class, amount);
                }
                "trait" => {
                    if !is_placement_name(name) {
                        return Err(FlavorError::BadTraitName { key: key.clone() });
                    }
                    let set = match value.trim() {
                        TRAIT_REQUIRED => &mut request.required_traits,
                        TRAIT_FORBIDDEN => &mut request.forbidden_traits,
                        _ => {
                            return Err(FlavorError::BadTraitValue {
                                key: key.clone(),
                                value: value.clone(),
                            })
                        }
                    };
                    set.insert(name.to_string());
                }
                AGGREGATE_SCOPE => {
                    request
                        .aggregate_extra_specs
                        .insert(name.to_string(), value.clone());
                }
                granular if is_granular(granular) => {
                    return Err(FlavorError::GranularGroup { key: key.clone() });
                }
                _ => {}
            }
        }
        Ok(request)
    }
}

/// `resources1`, `resources_gpu`, `trait2`, ... : Nova's suffixed request groups.
fn is_granular(scope: &str) -> bool {
    ["resources", "trait"].iter().any(|prefix| {
        scope.strip_prefix(prefix).is_some_and(|suffix| {
            !suffix.is_empty()
                && (suffix.starts_with('_') || suffix.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavor(specs: &[(&str, &str)]) -> Flavor {
        Flavor {
            vcpus: 2,
            ram_mb: 2048,
            disk_gb: 20,
            ephemeral_gb: 5,
            swap_mb: 1500,
            extra_specs: specs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    #[test]
    fn sizes_become_the_three_classes() {
        let request = flavor(&[]).to_request(false).unwrap();
        // 20 root + 5 ephemeral + ceil(1500 MB) = 2 GB swap.
        assert_eq!(request.resources, Resources::compute(2, 2048, 27));
        let bfv = flavor(&[]).to_request(true).unwrap();
        assert_eq!(bfv.resources.get(&ResourceClass::DiskGb), 7);
        let diskless = Flavor {
            vcpus: 1,
            ram_mb: 64,
            ..Flavor::default()
        };
        assert_eq!(
            diskless.to_request(false).unwrap().resources,
            Resources::compute(1, 64, 0)
        );
    }

    #[test]
    fn resources_overrides_replace_drop_and_add() {
        let request = flavor(&[
            ("resources:VCPU", "0"),
            ("resources:MEMORY_MB", "4096"),
            ("resources:CUSTOM_FPGA", "1"),
        ])
        .to_request(false)
        .unwrap();
        assert_eq!(request.resources.get(&ResourceClass::Vcpu), 0);
        assert_eq!(request.resources.get(&ResourceClass::MemoryMb), 4096);
        assert_eq!(
            request
                .resources
                .get(&ResourceClass::custom("CUSTOM_FPGA").unwrap()),
            1
        );
        assert_eq!(request.resources.get(&ResourceClass::DiskGb), 27);
    }

    #[test]
    fn trait_specs_become_required_and_forbidden() {
        let request = flavor(&[
            ("trait:HW_CPU_X86_AVX2", "required"),
            ("trait:CUSTOM_SLOW_DISK", "forbidden"),
            ("hw:cpu_policy", "shared"),
        ])
        .to_request(false)
        .unwrap();
        assert!(request.required_traits.contains("HW_CPU_X86_AVX2"));
        assert!(request.forbidden_traits.contains("CUSTOM_SLOW_DISK"));
        assert!(request.aggregate_extra_specs.is_empty());
    }

    #[test]
    fn aggregate_specs_are_kept_scoped_and_unscoped() {
        let request = flavor(&[
            ("aggregate_instance_extra_specs:ssd", "true"),
            ("tier", "<or> gold <or> silver"),
            ("group_policy", "isolate"),
            ("quota:cpu_shares", "1024"),
        ])
        .to_request(false)
        .unwrap();
        let keys: Vec<&str> = request
            .aggregate_extra_specs
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["ssd", "tier"]);
    }

    #[test]
    fn malformed_specs_are_refused_with_the_key() {
        type Expect = fn(&FlavorError) -> bool;
        let cases: [(&str, &str, Expect); 7] = [
            ("resources:PCPU", "2", |e| {
                matches!(e, FlavorError::BadResourceClass { .. })
            }),
            ("resources:vcpu", "2", |e| {
                matches!(e, FlavorError::BadResourceClass { .. })
            }),
            ("resources:VCPU", "-1", |e| {
                matches!(e, FlavorError::BadAmount { .. })
            }),
            ("resources:VCPU", "two", |e| {
                matches!(e, FlavorError::BadAmount { .. })
            }),
            ("trait:CUSTOM_X", "preferred", |e| {
                matches!(e, FlavorError::BadTraitValue { .. })
            }),
            ("trait:custom-x", "required", |e| {
                matches!(e, FlavorError::BadTraitName { .. })
            }),
            ("resources1:VCPU", "1", |e| {
                matches!(e, FlavorError::GranularGroup { .. })
            }),
        ];
        for (key, value, expected) in cases {
            let err = flavor(&[(key, value)]).to_request(false).unwrap_err();
            assert!(expected(&err), "{key}={value}: {err:?}");
            assert!(err.to_string().contains(key), "{err}");
        }
        assert!(is_granular("trait_gpu"));
        assert!(!is_granular("traits"));
    }
}
