//! A flavor's I/O quotas (Nova's `quota:disk_*` and `quota:vif_*` extra specs, as its libvirt
//! driver reads them) as the monitor's token buckets, in Firecracker's `rate_limiter` shape:
//! `bandwidth` and `ops` buckets of `size` tokens refilled every `refill_time` ms, with an
//! optional `one_time_burst`.
//!
//! - Disks (every drive of the server, as libvirt's `iotune` applies to every disk):
//!   `quota:disk_total_bytes_sec` and `quota:disk_total_iops_sec` are the drive's bandwidth
//!   and ops buckets. A drive has one bucket of each kind for reads and writes together, so
//!   `quota:disk_read_*` and `quota:disk_write_*` (Nova's per-direction limits) become one
//!   bucket at the smaller of the two given: never more than either allows. A `total` and a
//!   per-direction limit of the same kind are refused, as libvirt refuses them.
//! - Network interfaces: `quota:vif_inbound_*` is traffic into the guest (the monitor's
//!   `rx_rate_limiter`), `quota:vif_outbound_*` traffic out of it (`tx_rate_limiter`);
//!   `average` in KiB/s (libvirt's unit) is the bucket's rate, `burst` in KiB its one-time
//!   burst. `peak` is accepted and not acted on (a token bucket has one rate).
//!
//! Values are whole numbers; 0 means no limit. Quotas of other kinds (`quota:cpu_*`) belong
//! to the monitor's cgroup, not here.

use serde::Serialize;
use std::collections::BTreeMap;

/// One token bucket, as the monitor's API takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenBucket {
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_time_burst: Option<u64>,
    /// Milliseconds.
    pub refill_time: u64,
}

/// A device's limiter: bytes and operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RateLimiter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<TokenBucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<TokenBucket>,
}

impl RateLimiter {
    fn is_limit(&self) -> bool {
        self.bandwidth.is_some() || self.ops.is_some()
    }
}

/// The limiters a server's flavor asks for; `None` where it asks for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoLimits {
    /// Every drive's.
    pub drive: Option<RateLimiter>,
    /// Every interface's traffic into the guest.
    pub rx: Option<RateLimiter>,
    /// Every interface's traffic out of the guest.
    pub tx: Option<RateLimiter>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("flavor extra spec {key} must be a whole number of at least 0, not {value:?}")]
    NotANumber { key: String, value: String },
    #[error("flavor extra specs {total} and {per_direction} cannot both be set: a total limit and a per-direction limit of the same kind exclude each other")]
    TotalAndDirection {
        total: &'static str,
        per_direction: &'static str,
    },
}

const DISK: [&str; 6] = [
    "quota:disk_read_bytes_sec",
    "quota:disk_write_bytes_sec",
    "quota:disk_total_bytes_sec",
    "quota:disk_read_iops_sec",
    "quota:disk_write_iops_sec",
    "quota:disk_total_iops_sec",
];
const VIF: [&str; 6] = [
    "quota:vif_inbound_average",
    "quota:vif_inbound_burst",
    "quota:vif_inbound_peak",
    "quota:vif_outbound_average",
    "quota:vif_outbound_burst",
    "quota:vif_outbound_peak",
];

/// Whether `key` is one of the I/O quotas read here.
pub fn is_io_quota(key: &str) -> bool {
    DISK.contains(&key) || VIF.contains(&key)
}

/// Checks one extra spec as a flavor's owner sets it: an I/O quota must be a whole number.
pub fn check_spec(key: &str, value: &str) -> Result<(), LimitError> {
    if is_io_quota(key) {
        number(key, value)?;
    }
    Ok(())
}

fn number(key: &str, value: &str) -> Result<u64, LimitError> {
    value.trim().parse().map_err(|_| LimitError::NotANumber {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// The limiters `specs` ask for.
pub fn from_extra_specs(specs: &BTreeMap<String, String>) -> Result<IoLimits, LimitError> {
    let get = |key: &str| -> Result<Option<u64>, LimitError> {
        specs
            .get(key)
            .map(|v| number(key, v))
            .transpose()
            .map(|n| n.filter(|&n| n > 0))
    };
    // One bucket per kind: the total, else the smaller of the per-direction limits.
    let one = |total: &'static str,
               read: &'static str,
               write: &'static str|
     -> Result<Option<u64>, LimitError> {
        let (t, r, w) = (get(total)?, get(read)?, get(write)?);
        if t.is_some() {
            if let Some(per_direction) = [(r, read), (w, write)]
                .into_iter()
                .find_map(|(v, k)| v.map(|_| k))
            {
                return Err(LimitError::TotalAndDirection {
                    total,
                    per_direction,
                });
            }
            return Ok(t);
        }
        Ok([r, w].into_iter().flatten().min())
    };
    let per_second = |size: u64| TokenBucket {
        size,
        one_time_burst: None,
        refill_time: 1000,
    };
    let drive = RateLimiter {
        bandwidth: one(
            "quota:disk_total_bytes_sec",
            "quota:disk_read_bytes_sec",
            "quota:disk_write_bytes_sec",
        )?
        .map(per_second),
        ops: one(
            "quota:disk_total_iops_sec",
            "quota:disk_read_iops_sec",
            "quota:disk_write_iops_sec",
        )?
        .map(per_second),
    };
    let vif = |average: &str, burst: &str, peak: &str| -> Result<RateLimiter, LimitError> {
        get(peak)?;
        let burst = get(burst)?.map(|kib| kib.saturating_mul(1024));
        Ok(RateLimiter {
            bandwidth: get(average)?.map(|kib| TokenBucket {
                size: kib.saturating_mul(1024),
                one_time_burst: burst,
                refill_time: 1000,
            }),
            ops: None,
        })
    };
    let rx = vif(
        "quota:vif_inbound_average",
        "quota:vif_inbound_burst",
        "quota:vif_inbound_peak",
    )?;
    let tx = vif(
        "quota:vif_outbound_average",
        "quota:vif_outbound_burst",
        "quota:vif_outbound_peak",
    )?;
    let some = |l: RateLimiter| l.is_limit().then_some(l);
    Ok(IoLimits {
        drive: some(drive),
        rx: some(rx),
        tx: some(tx),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn bucket(size: u64, burst: Option<u64>) -> Option<TokenBucket> {
        Some(TokenBucket {
            size,
            one_time_burst: burst,
            refill_time: 1000,
        })
    }

    #[test]
    fn no_quota_means_no_limiter() {
        let none = from_extra_specs(&specs(&[("hw:cpu_policy", "dedicated")])).unwrap();
        assert_eq!(none, IoLimits::default());
        // 0 is libvirt's "unlimited".
        let zero = from_extra_specs(&specs(&[("quota:disk_total_bytes_sec", "0")])).unwrap();
        assert_eq!(zero, IoLimits::default());
    }

    #[test]
    fn disk_totals_are_the_drive_buckets() {
        let l = from_extra_specs(&specs(&[
            ("quota:disk_total_bytes_sec", "10485760"),
            ("quota:disk_total_iops_sec", "200"),
        ]))
        .unwrap();
        let d = l.drive.unwrap();
        assert_eq!(d.bandwidth, bucket(10_485_760, None));
        assert_eq!(d.ops, bucket(200, None));
        assert_eq!((l.rx, l.tx), (None, None));
    }

    #[test]
    fn per_direction_disk_limits_share_one_bucket_at_the_smaller() {
        let l = from_extra_specs(&specs(&[
            ("quota:disk_read_bytes_sec", "4000000"),
            ("quota:disk_write_bytes_sec", "1000000"),
            ("quota:disk_read_iops_sec", "50"),
        ]))
        .unwrap();
        let d = l.drive.unwrap();
        assert_eq!(d.bandwidth, bucket(1_000_000, None));
        assert_eq!(d.ops, bucket(50, None));
    }

    #[test]
    fn a_total_and_a_direction_of_one_kind_are_refused() {
        let e = from_extra_specs(&specs(&[
            ("quota:disk_total_iops_sec", "100"),
            ("quota:disk_write_iops_sec", "10"),
        ]))
        .unwrap_err();
        assert_eq!(
            e,
            LimitError::TotalAndDirection {
                total: "quota:disk_total_iops_sec",
                per_direction: "quota:disk_write_iops_sec"
            }
        );
        // Different kinds combine.
        from_extra_specs(&specs(&[
            ("quota:disk_total_iops_sec", "100"),
            ("quota:disk_write_bytes_sec", "10"),
        ]))
        .unwrap();
    }

    #[test]
    fn vif_quotas_are_kib_per_second_with_a_burst_inbound_to_rx() {
        let l = from_extra_specs(&specs(&[
            ("quota:vif_inbound_average", "1024"),
            ("quota:vif_inbound_burst", "64"),
            ("quota:vif_outbound_average", "512"),
            ("quota:vif_outbound_peak", "2048"),
        ]))
        .unwrap();
        assert_eq!(
            l.rx.unwrap().bandwidth,
            bucket(1024 * 1024, Some(64 * 1024))
        );
        assert_eq!(l.tx.unwrap().bandwidth, bucket(512 * 1024, None));
        assert_eq!(l.drive, None);
        // A burst alone limits nothing.
        let burst = from_extra_specs(&specs(&[("quota:vif_outbound_burst", "64")])).unwrap();
        assert_eq!(burst.tx, None);
    }

    #[test]
    fn values_must_be_whole_numbers() {
        for bad in ["-1", "1.5", "lots", ""] {
            assert!(matches!(
                check_spec("quota:vif_inbound_average", bad),
                Err(LimitError::NotANumber { .. })
            ));
            assert!(from_extra_specs(&specs(&[("quota:disk_read_iops_sec", bad)])).is_err());
        }
        check_spec("quota:disk_read_iops_sec", " 100").unwrap();
        // Not an I/O quota: not ours to judge.
        check_spec("quota:cpu_quota", "-1").unwrap();
        check_spec("hw:whatever", "anything").unwrap();
    }

    #[test]
    fn the_buckets_serialize_in_the_monitors_shape() {
        let l = from_extra_specs(&specs(&[
            ("quota:disk_total_bytes_sec", "1000"),
            ("quota:vif_inbound_average", "1"),
            ("quota:vif_inbound_burst", "2"),
        ]))
        .unwrap();
        assert_eq!(
            serde_json::to_value(l.drive.unwrap()).unwrap(),
            serde_json::json!({"bandwidth": {"size": 1000, "refill_time": 1000}})
        );
        assert_eq!(
            serde_json::to_value(l.rx.unwrap()).unwrap(),
            serde_json::json!({"bandwidth": {"size": 1024, "one_time_burst": 2048,
                                             "refill_time": 1000}})
        );
    }
}
