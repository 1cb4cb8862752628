//! The scheduler's settings, named after Nova's `[filter_scheduler]` options where Nova has
//! them (outpostd reads them from its `[compute.scheduler]` TOML section):
//!
//! ```toml
//! [compute.scheduler]
//! enabled_filters = ["ComputeFilter", "ServerGroupAntiAffinityFilter",
//!                    "ServerGroupAffinityFilter", "SameHostFilter", "DifferentHostFilter"]
//! ram_weight_multiplier = 1.0
//! node_score_weight_multiplier = 0.0   # > 0: prefer the box with the most free shares
//! spread = "round_robin"               # among equal weights; default: lowest host id
//! ```

use serde::{Deserialize, Serialize};

use super::tie_break::TieBreak;
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
    /// `ServerGroupAntiAffinityFilter`, `ServerGroupAffinityFilter` as in Nova, and
    /// `SameHostFilter`, `DifferentHostFilter`, which Nova leaves off: a user's
    /// `same_host`/`different_host` hint is then silently ignored, which we find worse
    /// than honouring it. Add `AggregateInstanceExtraSpecsFilter` to honour aggregate extra
    /// specs. A requested availability zone is honoured whatever this list says.
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
    /// Node score weight (`NodeScoreWeigher`: the mean free share of CPU, memory and disk;
    /// positive prefers the emptiest box, negative the fullest). Outpost's own; default
    /// 0, which leaves the weigher out.
    pub node_score_weight_multiplier: f64,
    /// How to choose among hosts of equal weight: `"pack"` (most used first), `"spread"`
    /// (least used first), `"round_robin"` (least recently chosen first) or `"random"`.
    /// Unset (the default): the lowest host id, so the same inputs give the same choice.
    /// It only breaks ties: to pack or spread by weight, use the multipliers' signs.
    pub spread: Option<TieBreak>,
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
                "SameHostFilter",
                "DifferentHostFilter",
            ]
            .map(String::from)
            .to_vec(),
            ram_weight_multiplier: 1.0,
            cpu_weight_multiplier: 1.0,
            disk_weight_multiplier: 1.0,
            soft_affinity_weight_multiplier: 1.0,
            soft_anti_affinity_weight_multiplier: 1.0,
            node_score_weight_multiplier: 0.0,
            spread: None,
            allow_resize_to_same_host: true,
        }
    }
}

impl SchedulerConfig {
    /// Checks the multipliers (filter names are checked when the scheduler is built).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let soft = [
            (
                "soft_affinity_weight_multiplier",
                self.soft_affinity_weight_multiplier,
            ),
            (
                "soft_anti_affinity_weight_multiplier",
                self.soft_anti_affinity_weight_multiplier,
            ),
        ];
        let signed = [
            ("ram_weight_multiplier", self.ram_weight_multiplier),
            ("cpu_weight_multiplier", self.cpu_weight_multiplier),
            ("disk_weight_multiplier", self.disk_weight_multiplier),
            (
                "node_score_weight_multiplier",
                self.node_score_weight_multiplier,
            ),
        ];
        for (name, value) in signed.into_iter().chain(soft) {
            if !value.is_finite() {
                return Err(ConfigError::BadMultiplier { name, value });
            }
        }
        for (name, value) in soft {
            if value < 0.0 {
                return Err(ConfigError::NegativeSoftMultiplier { name, value });
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

    #[test]
    fn node_score_and_spread_are_off_unless_set() {
        let config = SchedulerConfig::default();
        assert_eq!(config.node_score_weight_multiplier, 0.0);
        assert_eq!(config.spread, None);
        let bad = SchedulerConfig {
            node_score_weight_multiplier: f64::INFINITY,
            ..SchedulerConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::BadMultiplier {
                name: "node_score_weight_multiplier",
                ..
            })
        ));
    }

    #[test]
    fn toml_section_names_the_spread_modes() {
        for (name, mode) in [
            ("pack", TieBreak::Pack),
            ("spread", TieBreak::Spread),
            ("round_robin", TieBreak::RoundRobin),
            ("random", TieBreak::Random),
        ] {
            let text = format!("spread = \"{name}\"\nnode_score_weight_multiplier = 2.0\n");
            let config: SchedulerConfig = toml::from_str(&text).unwrap();
            assert_eq!(config.spread, Some(mode));
            assert_eq!(config.node_score_weight_multiplier, 2.0);
            // Everything else keeps its default.
            assert_eq!(
                config.enabled_filters,
                SchedulerConfig::default().enabled_filters
            );
        }
        let err = toml::from_str::<SchedulerConfig>("spread = \"roundrobin\"\n").unwrap_err();
        assert!(err.to_string().contains("round_robin"), "{err}");
    }
}
