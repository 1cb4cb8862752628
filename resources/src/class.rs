//! Resource classes (what kind of thing is counted) and [`Resources`], an amount per class.
//!
//! Names follow OpenStack Placement: standard classes are upper-case (`VCPU`, `MEMORY_MB`,
//! `DISK_GB`) and operator-defined ones start with `CUSTOM_`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a resource class name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassError {
    /// Placement names are `[A-Z0-9_]+`; anything else is a typo or a foreign name.
    #[error(
        "resource class {name:?} is not a valid name (upper-case letters, digits and '_' only)"
    )]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// A well-formed name that is neither one we model nor a `CUSTOM_` class. Placement has
    /// more standard classes (PCPU, VGPU, ...); we refuse them rather than silently ignore
    /// a request we cannot honour.
    #[error(
        "resource class {name} is not modelled by Outpost (known: VCPU, MEMORY_MB, DISK_GB, CUSTOM_*)"
    )]
    Unsupported {
        /// The refused name.
        name: String,
    },
}

/// A kind of countable resource on a host.
///
/// The order (`Vcpu < MemoryMb < DiskGb < Custom`) is the order reasons and reports list
/// classes in, so output is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ResourceClass {
    /// Virtual CPUs (Placement `VCPU`), overcommitted by the CPU allocation ratio.
    Vcpu,
    /// Guest RAM in MiB (Placement `MEMORY_MB`).
    MemoryMb,
    /// Local disk in GiB (Placement `DISK_GB`): root + ephemeral + swap of a server.
    DiskGb,
    /// An operator-defined class; the name starts with `CUSTOM_`. Build it with
    /// [`ResourceClass::custom`] or by parsing so the name is checked.
    Custom(String),
}

/// Placement's rule for class and trait names: `^[A-Z0-9_]+$`.
pub(crate) fn is_placement_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

impl ResourceClass {
    /// Prefix Placement reserves for operator-defined classes (and traits).
    pub const CUSTOM_PREFIX: &'static str = "CUSTOM_";

    /// A custom class, checking the name (`CUSTOM_` followed by `[A-Z0-9_]+`).
    pub fn custom(name: &str) -> Result<Self, ClassError> {
        match name.parse::<ResourceClass>()? {
            class @ ResourceClass::Custom(_) => Ok(class),
            _ => Err(ClassError::Unsupported {
                name: name.to_string(),
            }),
        }
    }

    /// The Placement name (`VCPU`, `MEMORY_MB`, `DISK_GB`, `CUSTOM_...`).
    pub fn as_str(&self) -> &str {
        match self {
            ResourceClass::Vcpu => "VCPU",
            ResourceClass::MemoryMb => "MEMORY_MB",
            ResourceClass::DiskGb => "DISK_GB",
            ResourceClass::Custom(name) => name,
        }
    }

    /// An amount in words a user reads in a fault message ("4096 MB RAM", "2 VCPU").
    pub fn describe_amount(&self, amount: u64) -> String {
        match self {
            ResourceClass::Vcpu => format!("{amount} VCPU"),
            ResourceClass::MemoryMb => format!("{amount} MB RAM"),
            ResourceClass::DiskGb => format!("{amount} GB disk"),
            ResourceClass::Custom(name) => format!("{amount} {name}"),
        }
    }
}

impl fmt::Display for ResourceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceClass {
    type Err = ClassError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if !is_placement_name(name) {
            return Err(ClassError::InvalidName {
                name: name.to_string(),
            });
        }
        match name {
            "VCPU" => Ok(ResourceClass::Vcpu),
            "MEMORY_MB" => Ok(ResourceClass::MemoryMb),
            "DISK_GB" => Ok(ResourceClass::DiskGb),
            custom
                if custom.len() > Self::CUSTOM_PREFIX.len()
                    && custom.starts_with(Self::CUSTOM_PREFIX) =>
            {
                Ok(ResourceClass::Custom(custom.to_string()))
            }
            other => Err(ClassError::Unsupported {
                name: other.to_string(),
            }),
        }
    }
}

impl TryFrom<String> for ResourceClass {
    type Error = ClassError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

impl From<ResourceClass> for String {
    fn from(class: ResourceClass) -> String {
        match class {
            ResourceClass::Custom(name) => name,
            standard => standard.as_str().to_string(),
        }
    }
}

/// An amount per resource class. Zero amounts are never stored: Placement refuses zero
/// allocations, and "0" in a flavor override means "don't ask for this class at all".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Resources(BTreeMap<ResourceClass, u64>);

impl Resources {
    /// No resources.
    pub fn new() -> Self {
        Self::default()
    }

    /// The usual trio, for tests and config: VCPU, MEMORY_MB and DISK_GB.
    pub fn compute(vcpus: u64, memory_mb: u64, disk_gb: u64) -> Self {
        Self::new()
            .with(ResourceClass::Vcpu, vcpus)
            .with(ResourceClass::MemoryMb, memory_mb)
            .with(ResourceClass::DiskGb, disk_gb)
    }

    /// Builder form of [`Resources::set`].
    pub fn with(mut self, class: ResourceClass, amount: u64) -> Self {
        self.set(class, amount);
        self
    }

    /// Sets the amount of one class; zero removes the class.
    pub fn set(&mut self, class: ResourceClass, amount: u64) {
        if amount == 0 {
            self.0.remove(&class);
        } else {
            self.0.insert(class, amount);
        }
    }

    /// The amount of one class (zero when absent).
    pub fn get(&self, class: &ResourceClass) -> u64 {
        self.0.get(class).copied().unwrap_or(0)
    }

    /// Classes with a non-zero amount, in class order.
    pub fn iter(&self) -> impl Iterator<Item = (&ResourceClass, u64)> + '_ {
        self.0.iter().map(|(class, amount)| (class, *amount))
    }

    /// True when no class has a non-zero amount.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `other` class by class, saturating (usage can't wrap around).
    pub(crate) fn add(&mut self, other: &Resources) {
        for (class, amount) in other.iter() {
            let sum = self.get(class).saturating_add(amount);
            self.set(class.clone(), sum);
        }
    }

    /// Subtracts `other` class by class, saturating at zero.
    pub(crate) fn subtract(&mut self, other: &Resources) {
        for (class, amount) in other.iter() {
            let rest = self.get(class).saturating_sub(amount);
            self.set(class.clone(), rest);
        }
    }
}

impl FromIterator<(ResourceClass, u64)> for Resources {
    fn from_iter<I: IntoIterator<Item = (ResourceClass, u64)>>(iter: I) -> Self {
        let mut resources = Resources::new();
        for (class, amount) in iter {
            resources.set(class, amount);
        }
        resources
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_custom_names_parse() {
        assert_eq!("VCPU".parse(), Ok(ResourceClass::Vcpu));
        assert_eq!("MEMORY_MB".parse(), Ok(ResourceClass::MemoryMb));
        assert_eq!("DISK_GB".parse(), Ok(ResourceClass::DiskGb));
        assert_eq!(
            "CUSTOM_GPU_A".parse(),
            Ok(ResourceClass::Custom("CUSTOM_GPU_A".into()))
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_name() {
        assert!(matches!(
            "vcpu".parse::<ResourceClass>(),
            Err(ClassError::InvalidName { name }) if name == "vcpu"
        ));
        assert!(matches!(
            "".parse::<ResourceClass>(),
            Err(ClassError::InvalidName { .. })
        ));
        assert!(matches!(
            "PCPU".parse::<ResourceClass>(),
            Err(ClassError::Unsupported { name }) if name == "PCPU"
        ));
        // The bare prefix names nothing.
        assert!("CUSTOM_".parse::<ResourceClass>().is_err());
        assert!(ResourceClass::custom("VCPU").is_err());
        assert!(ResourceClass::custom("CUSTOM_FPGA").is_ok());
    }

    #[test]
    fn zero_amounts_are_not_stored() {
        let mut r = Resources::compute(2, 0, 10);
        assert_eq!(r.iter().count(), 2);
        assert_eq!(r.get(&ResourceClass::MemoryMb), 0);
        r.set(ResourceClass::Vcpu, 0);
        assert_eq!(
            r.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
            [ResourceClass::DiskGb]
        );
    }

    #[test]
    fn add_and_subtract_saturate() {
        let mut r = Resources::compute(u64::MAX - 1, 5, 0);
        r.add(&Resources::compute(5, 5, 1));
        assert_eq!(r, Resources::compute(u64::MAX, 10, 1));
        r.subtract(&Resources::compute(1, 20, 1));
        assert_eq!(r, Resources::compute(u64::MAX - 1, 0, 0));
    }

    #[test]
    fn json_uses_placement_names() {
        let r = Resources::compute(2, 512, 0).with(ResourceClass::custom("CUSTOM_X").unwrap(), 1);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"VCPU":2,"MEMORY_MB":512,"CUSTOM_X":1}"#);
        let back: Resources = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Resources>(r#"{"vcpu":1}"#).is_err());
    }
}
