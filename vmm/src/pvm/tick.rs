//! Tick policy on PVM: the guest kernel's timer interrupt runs in emulated CPL0, so a stock
//! HZ=250 kernel spends about half of its boot in tick code. The policy trades guest timer
//! precision for emulated CPU by slowing the monitor's user-space PIT.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

/// Environment variable the monitor reads the policy from.
pub const TICK_ENV: &str = "OUTPOST_PVM_TICK";

/// Largest accepted divisor: beyond this a periodic tick at HZ=100 would be slower than 1 Hz.
pub const MAX_DIVISOR: u32 = 100;

/// How the monitor paces the PIT (i8254) on a PVM host.
///
/// The divisor is defined as: the PIT behaves as if its 1.193182 MHz input clock ran at
/// 1/`divisor` of that rate. Every period the guest programs lasts `divisor` times longer and
/// the counter it reads back counts `divisor` times slower. What that does to guest time:
///
/// - **Wall-clock and monotonic time stay right** as long as the guest's clocksource is the
///   TSC or kvm-clock (the default on KVM): timekeeping reads the clocksource, it does not
///   count ticks. A tickless kernel (NO_HZ, the default) also derives jiffies from the
///   clocksource, so jiffies stay right too.
/// - **Timers fire late**: while the PIT is the guest's clock-event device, sleeps and
///   timeouts expire up to one stretched period late (periodic mode: HZ=250 and divisor 4
///   give 16 ms granularity) or `divisor` times late (one-shot mode).
/// - **PIT-based calibration is wrong by the divisor**: a guest that calibrates its TSC or
///   delay loop against the PIT (it does not when kvm-clock or CPUID gives the TSC
///   frequency) would measure a CPU `divisor` times too fast. Give such a guest
///   `tsc_early_khz=` / `lpj=` on its command line.
/// - A kernel in periodic mode with the jiffies clocksource (`nohz=off highres=off
///   clocksource=jiffies`) sees its whole clock run `divisor` times slow.
/// - The in-kernel LAPIC timer, kvm-clock and the RTC are not affected: once the guest has
///   switched its tick to the LAPIC timer, only the PIT's remaining users see the divisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TickPolicy {
    /// Deliver the PIT exactly as programmed: exact guest timing, full tick cost.
    #[default]
    Exact,
    /// Run the PIT `divisor` times slower.
    Stretched { divisor: NonZeroU32 },
}

/// A tick policy string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PVM tick policy {value:?}: expected \"exact\", \"stretch:N\" or \"N\" with 1 <= N <= {MAX_DIVISOR}")]
pub struct TickPolicyError {
    pub value: String,
}

impl TickPolicy {
    /// The PIT input-clock divisor for the monitor's i8254 (1 for [`TickPolicy::Exact`]).
    pub fn pit_divisor(&self) -> u32 {
        match self {
            TickPolicy::Exact => 1,
            TickPolicy::Stretched { divisor } => divisor.get(),
        }
    }

    /// The policy from [`TICK_ENV`]; unset or empty means [`TickPolicy::Exact`].
    pub fn from_env() -> Result<Self, TickPolicyError> {
        match std::env::var(TICK_ENV) {
            Ok(v) => v.parse(),
            Err(_) => Ok(TickPolicy::Exact),
        }
    }
}

impl FromStr for TickPolicy {
    type Err = TickPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TickPolicyError {
            value: s.to_string(),
        };
        let v = s.trim().to_ascii_lowercase();
        if v.is_empty() || v == "exact" {
            return Ok(TickPolicy::Exact);
        }
        let n = v.strip_prefix("stretch:").unwrap_or(&v);
        let divisor: u32 = n.parse().map_err(|_| err())?;
        match divisor {
            1 => Ok(TickPolicy::Exact),
            2..=MAX_DIVISOR => {
                let divisor = NonZeroU32::new(divisor).ok_or_else(err)?;
                Ok(TickPolicy::Stretched { divisor })
            }
            _ => Err(err()),
        }
    }
}

impl fmt::Display for TickPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TickPolicy::Exact => f.write_str("exact"),
            TickPolicy::Stretched { divisor } => write!(f, "stretch:{divisor}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!("exact".parse(), Ok(TickPolicy::Exact));
        assert_eq!("".parse(), Ok(TickPolicy::Exact));
        assert_eq!("1".parse(), Ok(TickPolicy::Exact));
        let four: TickPolicy = "stretch:4".parse().unwrap();
        assert_eq!(four.pit_divisor(), 4);
        assert_eq!(" 8 ".parse::<TickPolicy>().unwrap().pit_divisor(), 8);
        assert_eq!(
            "STRETCH:2".parse::<TickPolicy>().unwrap().to_string(),
            "stretch:2"
        );
        assert_eq!(TickPolicy::Exact.pit_divisor(), 1);
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["0", "stretch:0", "-3", "fast", "stretch:", "101", "4.5"] {
            let e = bad.parse::<TickPolicy>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn display_round_trips() {
        for p in ["exact", "stretch:3", "stretch:100"] {
            let policy: TickPolicy = p.parse().unwrap();
            assert_eq!(policy.to_string(), p);
            assert_eq!(policy.to_string().parse::<TickPolicy>().unwrap(), policy);
        }
    }
}
