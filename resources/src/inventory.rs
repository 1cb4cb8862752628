//! One host's inventory of one resource class, with Placement's arithmetic, and the typed
//! reason an amount does not fit ([`Shortfall`]).
//!
//! Placement defines usable capacity as `(total - reserved) * allocation_ratio`; a single
//! allocation must also lie in `[min_unit, max_unit]` and be a multiple of `step_size`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::class::ResourceClass;

/// Why an inventory record was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InventoryError {
    /// More reserved for the host than exists; capacity would be negative.
    #[error("{class}: reserved {reserved} is more than total {total}")]
    ReservedExceedsTotal {
        /// Class of the inventory.
        class: ResourceClass,
        /// Total amount.
        total: u64,
        /// Amount reserved for the host itself.
        reserved: u64,
    },
    /// Ratios multiply capacity; zero, negative, NaN or infinite ones make no sense.
    #[error("{class}: allocation_ratio {ratio} must be a finite number above 0")]
    BadAllocationRatio {
        /// Class of the inventory.
        class: ResourceClass,
        /// The refused ratio.
        ratio: f64,
    },
    /// Placement requires `1 <= min_unit <= max_unit` and `step_size >= 1`.
    #[error("{class}: units must satisfy 1 <= min_unit ({min_unit}) <= max_unit ({max_unit}) and step_size ({step_size}) >= 1")]
    BadUnits {
        /// Class of the inventory.
        class: ResourceClass,
        /// Smallest single allocation.
        min_unit: u64,
        /// Largest single allocation.
        max_unit: u64,
        /// Allocations must be multiples of this.
        step_size: u64,
    },
    /// Placement refuses to drop an inventory that consumers still use.
    #[error("{class}: {used} still allocated, the inventory cannot be removed")]
    InUse {
        /// Class of the inventory.
        class: ResourceClass,
        /// Amount still allocated.
        used: u64,
    },
}

/// How much of one resource class a host offers (Placement's inventory record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Physical amount.
    pub total: u64,
    /// Kept back for the host itself (not overcommitted).
    pub reserved: u64,
    /// Smallest amount one consumer may take.
    pub min_unit: u64,
    /// Largest amount one consumer may take (e.g. no guest bigger than the host's cores).
    pub max_unit: u64,
    /// A consumer's amount must be a multiple of this.
    pub step_size: u64,
    /// Overcommit factor applied after subtracting `reserved`.
    pub allocation_ratio: f64,
}

impl Inventory {
    /// Placement's defaults for a new record: nothing reserved, units of 1 up to `total`,
    /// no overcommit.
    pub fn new(total: u64) -> Self {
        Self {
            total,
            reserved: 0,
            min_unit: 1,
            max_unit: total.max(1),
            step_size: 1,
            allocation_ratio: 1.0,
        }
    }

    /// Builder: amount kept for the host.
    pub fn reserved(mut self, reserved: u64) -> Self {
        self.reserved = reserved;
        self
    }

    /// Builder: overcommit factor.
    pub fn allocation_ratio(mut self, ratio: f64) -> Self {
        self.allocation_ratio = ratio;
        self
    }

    /// Builder: bounds and granularity of one allocation.
    pub fn units(mut self, min_unit: u64, max_unit: u64, step_size: u64) -> Self {
        self.min_unit = min_unit;
        self.max_unit = max_unit;
        self.step_size = step_size;
        self
    }

    /// Checks the record the way Placement does before accepting it.
    pub fn validate(&self, class: &ResourceClass) -> Result<(), InventoryError> {
        if self.reserved > self.total {
            return Err(InventoryError::ReservedExceedsTotal {
                class: class.clone(),
                total: self.total,
                reserved: self.reserved,
            });
        }
        if !(self.allocation_ratio.is_finite() && self.allocation_ratio > 0.0) {
            return Err(InventoryError::BadAllocationRatio {
                class: class.clone(),
                ratio: self.allocation_ratio,
            });
        }
        if self.min_unit == 0 || self.min_unit > self.max_unit || self.step_size == 0 {
            return Err(InventoryError::BadUnits {
                class: class.clone(),
                min_unit: self.min_unit,
                max_unit: self.max_unit,
                step_size: self.step_size,
            });
        }
        Ok(())
    }

    /// Usable capacity: `(total - reserved) * allocation_ratio`, rounded down. Rounding
    /// down loses nothing: amounts are integers, and an integer fits under `x` exactly when
    /// it fits under `floor(x)`.
    pub fn capacity(&self) -> u64 {
        let usable = self.total.saturating_sub(self.reserved) as f64;
        // `as` saturates on overflow and maps NaN to 0, so a bad ratio gives no capacity.
        (usable * self.allocation_ratio).floor() as u64
    }

    /// Checks that one more consumer taking `amount`, on top of `used`, is allowed.
    /// Capacity is checked before the unit rules: when both fail, "needs 4096, 1024 free
    /// of 2048" tells the user more than "above max_unit".
    pub fn check(&self, used: u64, amount: u64) -> Result<(), Shortfall> {
        let capacity = self.capacity();
        if used.saturating_add(amount) > capacity {
            return Err(Shortfall::InsufficientCapacity {
                free: capacity.saturating_sub(used),
                capacity,
                total: self.total,
                reserved: self.reserved,
                allocation_ratio: self.allocation_ratio,
            });
        }
        if amount < self.min_unit {
            return Err(Shortfall::BelowMinUnit {
                min_unit: self.min_unit,
            });
        }
        if amount > self.max_unit {
            return Err(Shortfall::AboveMaxUnit {
                max_unit: self.max_unit,
            });
        }
        if amount
            .checked_rem(self.step_size)
            .is_none_or(|rest| rest != 0)
        {
            return Err(Shortfall::NotAStep {
                step_size: self.step_size,
            });
        }
        Ok(())
    }
}

/// Why an amount of one class does not fit on a host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Shortfall {
    /// The host has no inventory of this class at all.
    NoInventory,
    /// The amount is smaller than one allocation may be.
    BelowMinUnit {
        /// Smallest allowed allocation.
        min_unit: u64,
    },
    /// The amount is larger than one allocation may be.
    AboveMaxUnit {
        /// Largest allowed allocation.
        max_unit: u64,
    },
    /// The amount is not a multiple of the step.
    NotAStep {
        /// Required granularity.
        step_size: u64,
    },
    /// Not enough left.
    InsufficientCapacity {
        /// Capacity minus what is already used.
        free: u64,
        /// `(total - reserved) * allocation_ratio`.
        capacity: u64,
        /// Physical amount.
        total: u64,
        /// Kept for the host.
        reserved: u64,
        /// Overcommit factor.
        allocation_ratio: f64,
    },
}

/// A [`Shortfall`] with the class and amount it concerns, written for a user:
/// `MEMORY_MB: needs 4096 MB RAM, 1024 free of 2048 capacity (total 2560, reserved 512, ratio 1.0)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassShortfall {
    /// The class that does not fit.
    pub class: ResourceClass,
    /// The amount asked for.
    pub amount: u64,
    /// Why it does not fit.
    pub shortfall: Shortfall,
}

impl fmt::Display for ClassShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let needs = self.class.describe_amount(self.amount);
        write!(f, "{}: needs {needs}, ", self.class)?;
        match &self.shortfall {
            Shortfall::NoInventory => write!(f, "host has no {} inventory", self.class),
            Shortfall::BelowMinUnit { min_unit } => {
                write!(f, "below the smallest allocation of {min_unit} (min_unit)")
            }
            Shortfall::AboveMaxUnit { max_unit } => {
                write!(f, "above the largest allocation of {max_unit} (max_unit)")
            }
            Shortfall::NotAStep { step_size } => {
                write!(f, "not a multiple of {step_size} (step_size)")
            }
            Shortfall::InsufficientCapacity {
                free,
                capacity,
                total,
                reserved,
                allocation_ratio,
            } => write!(
                f,
                "{free} free of {capacity} capacity (total {total}, reserved {reserved}, ratio {allocation_ratio:?})"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_total_minus_reserved_times_ratio() {
        assert_eq!(Inventory::new(8).allocation_ratio(4.0).capacity(), 32);
        assert_eq!(Inventory::new(2560).reserved(512).capacity(), 2048);
        assert_eq!(
            Inventory::new(10)
                .reserved(2)
                .allocation_ratio(1.5)
                .capacity(),
            12
        );
        // Fractional capacity rounds down: 3 * 1.5 = 4.5 -> 4.
        assert_eq!(Inventory::new(3).allocation_ratio(1.5).capacity(), 4);
        assert_eq!(Inventory::new(4).reserved(4).capacity(), 0);
    }

    #[test]
    fn fits_up_to_capacity_and_not_beyond() {
        let inv = Inventory::new(4).allocation_ratio(2.0).units(1, 8, 1);
        assert_eq!(inv.check(0, 8), Ok(()));
        assert_eq!(inv.check(6, 2), Ok(()));
        assert!(matches!(
            inv.check(7, 2),
            Err(Shortfall::InsufficientCapacity {
                free: 1,
                capacity: 8,
                ..
            })
        ));
        // Over-capacity usage (after an inventory shrink) reports zero free, not a wrap.
        assert!(matches!(
            inv.check(9, 1),
            Err(Shortfall::InsufficientCapacity { free: 0, .. })
        ));
    }

    #[test]
    fn unit_rules_apply_within_capacity() {
        let inv = Inventory::new(8192).units(256, 2048, 256);
        assert_eq!(inv.check(0, 512), Ok(()));
        assert_eq!(
            inv.check(0, 128),
            Err(Shortfall::BelowMinUnit { min_unit: 256 })
        );
        assert_eq!(
            inv.check(0, 4096),
            Err(Shortfall::AboveMaxUnit { max_unit: 2048 })
        );
        assert_eq!(
            inv.check(0, 300),
            Err(Shortfall::NotAStep { step_size: 256 })
        );
    }

    #[test]
    fn validation_matches_placement_rules() {
        let c = ResourceClass::Vcpu;
        assert_eq!(Inventory::new(4).validate(&c), Ok(()));
        assert!(matches!(
            Inventory::new(4).reserved(5).validate(&c),
            Err(InventoryError::ReservedExceedsTotal { .. })
        ));
        for ratio in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                Inventory::new(4).allocation_ratio(ratio).validate(&c),
                Err(InventoryError::BadAllocationRatio { .. })
            ));
        }
        for (min, max, step) in [(0, 4, 1), (5, 4, 1), (1, 4, 0)] {
            assert!(matches!(
                Inventory::new(4).units(min, max, step).validate(&c),
                Err(InventoryError::BadUnits { .. })
            ));
        }
        // A host with nothing of a class is valid (capacity 0).
        assert_eq!(Inventory::new(0).validate(&c), Ok(()));
    }

    #[test]
    fn shortfall_reads_like_a_fault_message() {
        let inv = Inventory::new(2560).reserved(512);
        let shortfall = inv.check(1024, 4096).unwrap_err();
        let text = ClassShortfall {
            class: ResourceClass::MemoryMb,
            amount: 4096,
            shortfall,
        }
        .to_string();
        assert_eq!(
            text,
            "MEMORY_MB: needs 4096 MB RAM, 1024 free of 2048 capacity (total 2560, reserved 512, ratio 1.0)"
        );
        let none = ClassShortfall {
            class: ResourceClass::DiskGb,
            amount: 20,
            shortfall: Shortfall::NoInventory,
        };
        assert_eq!(
            none.to_string(),
            "DISK_GB: needs 20 GB disk, host has no DISK_GB inventory"
        );
    }
}
