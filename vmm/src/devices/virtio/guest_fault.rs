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

/// Counts `n` occurrences at once; logs if they are the first.
pub(crate) fn note_many(counter: &mut u64, n: u64, device: &str, what: &dyn Display) {
    if n == 0 {
        return;
    }
    note(counter, device, what);
    *counter = counter.saturating_add(n - 1);
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
        note_many(&mut c, 0, "test", &"none");
        note_many(&mut c, 3, "test", &"three");
        assert_eq!(c, 5);
    }
}
