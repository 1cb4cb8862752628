//! The scheduler's settings, named after Nova's `[filter_scheduler]` options.

use serde::{Deserialize, Serialize};

use crate::filters::UnknownFilter;

/// Why a scheduler configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A filter name we don't have.
    #[error(transparent)]
    UnknownFilter(#[from] UnknownFilter),
    /// Multipliers must be finite numbers.
    #[error("{name} = {value} is not a finite number")]
    BadMultiplier {
        /// The option.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// Nova requires the soft server group multipliers to be at least 0: a negative one
    /// would turn soft affinity into soft anti-affinity.
    #[error("{name} = {value} must be 0 or more")]
    NegativeSoftMultiplier {
        /// The option.
        name: &'static str,
        /// Its value.
        value: f64,
    },
}

/// Which filters run after the resource and trait checks, and how the weighers count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Filters by Nova name, run in this order after `ResourceFilter` and `TraitsFilter`
    /// (which always run, standing in for Placement). Default: `ComputeFilter`,
    /// `ServerGroupAntiAffinityFilter`, `ServerGroupAffinityFilter`, as in Nova; add
    /// `AggregateInstanceExtraSpecsFilter` to honour aggregate extra specs.
    pub enabled_filters: Vec<String>,
    /// Free RAM weight; positive spreads, negative stacks. Nova default 1.0.
    pub ram_weight_multiplier: f64,
    /// Free VCPU weight. Nova default 1.0.
    pub cpu_weight_multiplier: f64,
    /// Free disk weight. Nova default 1.0.
    pub disk_weight_multiplier: f64,
    /// Soft-affinity weight, at least 0. Nova default 1.0.
    pub soft_affinity_weight_multiplier: f64,
    /// Soft-anti-affinity weight, at least 0. Nova default 1.0.
    pub soft_anti_affinity_weight_multiplier: f64,
    /// Whether a resize may stay on the server's host. Nova defaults to false; Outpost
    /// defaults to true because a single box has nowhere else to go.
    pub allow_resize_to_same_host: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled_filters: [
                "ComputeFilter",
                "ServerGroupAntiAffinityFilter",
                "ServerGroupAffinityFilter",
            ]
            .map(String::from)
            .to_vec(),
            ram_weight_multiplier: 1.0,
            cpu_weight_multiplier: 1.0,
            disk_weight_multiplier: 1.0,
            soft_affinity_weight_multiplier: 1.0,
            soft_anti_affinity_weight_multiplier: 1.0,
            allow_resize_to_same_host: true,
        }
    }
}

impl SchedulerConfig {
    /// Checks the multipliers (filter names are checked when the scheduler is built).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let all = [
            ("ram_weight_multiplier", self.ram_weight_multiplier),
            ("cpu_weight_multiplier", self.cpu_weight_multiplier),
            ("disk_weight_multiplier", self.disk_weight_multiplier),
            (
                "soft_affinity_weight_multiplier",
                self.soft_affinity_weight_multiplier,
            ),
            (
                "soft_anti_affinity_weight_multiplier",
                self.soft_anti_affinity_weight_multiplier,
            ),
        ];
        for (name, value) in all {
            if !value.is_finite() {
                return Err(ConfigError::BadMultiplier { name, value });
            }
        }
        for (name, value) in &all[3..] {
            if *value < 0.0 {
                return Err(ConfigError::NegativeSoftMultiplier {
                    name,
                    value: *value,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_nova_defaults_and_valid() {
        let config = SchedulerConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.ram_weight_multiplier, 1.0);
        assert_eq!(config.enabled_filters[0], "ComputeFilter");
    }

    #[test]
    fn bad_multipliers_are_refused_by_name() {
        let config = SchedulerConfig {
            cpu_weight_multiplier: f64::NAN,
            ..SchedulerConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::BadMultiplier {
                name: "cpu_weight_multiplier",
                ..
            })
        ));
        let config = SchedulerConfig {
            soft_affinity_weight_multiplier: -1.0,
            ..SchedulerConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::NegativeSoftMultiplier { .. })
        ));
        // Stacking by RAM is a negative multiplier and is fine.
        let stack = SchedulerConfig {
            ram_weight_multiplier: -1.0,
            ..SchedulerConfig::default()
        };
        assert_eq!(stack.validate(), Ok(()));
    }

    #[test]
    fn partial_json_fills_defaults_and_typos_are_refused() {
        let config: SchedulerConfig =
            serde_json::from_str(r#"{"ram_weight_multiplier": -1.0}"#).unwrap();
        assert_eq!(config.ram_weight_multiplier, -1.0);
        assert_eq!(config.cpu_weight_multiplier, 1.0);
        assert!(serde_json::from_str::<SchedulerConfig>(r#"{"ram_weight": 1}"#).is_err());
    }
}
