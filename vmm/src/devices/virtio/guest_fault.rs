//! Accounting for guest misbehaviour seen by a device: the first occurrence of each kind is
//! logged, every occurrence is counted. A guest can repeat a bad request millions of times a
//! second, so a log line per occurrence would let it fill the host's disk.

use std::fmt::Display;

/// Counts one occurrence in `counter` and logs it if it is the first of its kind.
pub(crate) fn note(counter: &mut u64, device: &str, what: &dyn Display) {
    if *counter == 0 {
        tracing::warn!(device, "{what} (further occurrences are only counted)");
    }
    *counter = counter.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_occurrence_and_saturates() {
        let mut c = 0;
        note(&mut c, "test", &"first");
        note(&mut c, "test", &"second");
        assert_eq!(c, 2);
        let mut full = u64::MAX;
        note(&mut full, "test", &"again");
        assert_eq!(full, u64::MAX);
    }
}
