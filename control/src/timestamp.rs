//! Points in time as the OpenStack APIs write them: microseconds since the Unix epoch,
//! rendered in ISO 8601 / RFC 3339 UTC (`2025-01-31T08:00:00.000000Z`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since 1970-01-01T00:00:00Z; what the database stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        // A clock before 1970 is a broken host; treat it as the epoch rather than fail requests.
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(micros)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        let add = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(add))
    }

    /// Keystone's form: `2025-01-31T08:00:00.000000Z`.
    pub fn to_rfc3339_micros(self) -> String {
        let (date, secs_of_day, micros) = self.split();
        format!("{date}T{}.{micros:06}Z", hms(secs_of_day))
    }

    /// Nova's and Glance's form: `2025-01-31T08:00:00Z`.
    pub fn to_rfc3339(self) -> String {
        let (date, secs_of_day, _) = self.split();
        format!("{date}T{}Z", hms(secs_of_day))
    }

    fn split(self) -> (String, i64, i64) {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        (
            format!("{y:04}-{m:02}-{d:02}"),
            secs.rem_euclid(86_400),
            micros,
        )
    }
}

fn hms(secs_of_day: i64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard Hinnant's
/// `civil_from_days` (eras of 400 years, March-based years so leap days fall at the end).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day in a year divisible by 400) 12:34:56.789012
        let t = Timestamp(951_827_696_789_012);
        assert_eq!(t.to_rfc3339_micros(), "2000-02-29T12:34:56.789012Z");
        // 2024-12-31T23:59:59Z, end of a leap year.
        assert_eq!(
            Timestamp(1_735_689_599_000_000).to_rfc3339(),
            "2024-12-31T23:59:59Z"
        );
        assert_eq!(
            Timestamp(-1).to_rfc3339_micros(),
            "1969-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn adding_a_duration_saturates() {
        let t = Timestamp(10).saturating_add(Duration::from_secs(2));
        assert_eq!(t, Timestamp(2_000_010));
        assert_eq!(
            Timestamp(i64::MAX - 1).saturating_add(Duration::from_secs(1)),
            Timestamp(i64::MAX)
        );
    }
}
