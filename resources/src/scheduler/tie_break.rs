//! Choosing among hosts of equal weight (`spread` in the scheduler config).
//!
//! Equal means within [`TIE_EPSILON`] × max(1, |best|) of the best total weight: totals are
//! sums of normalized weights times multipliers, so smaller differences are rounding, not
//! a preference. Only the hosts equal to the best are reordered; the rest keep weight
//! order, and every remaining tie goes to the lowest host id, so a mode never makes the
//! choice depend on the order hosts were loaded in.

use serde::{Deserialize, Serialize};

use crate::claim::ConsumerId;
use crate::host::Host;
use crate::weighers::WeighedHost;

/// Relative tolerance under which two total weights are equal.
pub const TIE_EPSILON: f64 = 1e-9;

/// How to choose among the hosts of equal best weight. Without one (the default) the
/// lowest host id wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// The most used host first (lowest [`Host::node_score`]): fill boxes one by one.
    Pack,
    /// The least used host first (highest node score).
    Spread,
    /// The host chosen least recently first (lowest [`Host::last_claimed`]).
    RoundRobin,
    /// Any one of them, drawn from the request's `tie_break_seed` and the server's id.
    Random,
}

/// Puts first, among the hosts of `ranked` (best first) whose weight equals the best, the
/// one `mode` prefers. `host` finds a candidate's host; `seed` and `consumer_id` are the
/// draw of [`TieBreak::Random`].
pub(super) fn break_tie<'h>(
    ranked: &mut [WeighedHost],
    mode: TieBreak,
    host: impl Fn(&WeighedHost) -> Option<&'h Host>,
    seed: u64,
    consumer_id: &ConsumerId,
) {
    let Some(best) = ranked.first().map(|h| h.weight) else {
        return;
    };
    let tolerance = TIE_EPSILON * best.abs().max(1.0);
    let equal = ranked
        .iter()
        .take_while(|h| best - h.weight <= tolerance)
        .count();
    // One host (or none, were a weight NaN) has nothing to break.
    if equal < 2 {
        return;
    }
    let equal = &mut ranked[..equal];
    let by_id = |a: &WeighedHost, b: &WeighedHost| a.host_id.cmp(&b.host_id);
    let score = |h: &WeighedHost| host(h).map_or(0.0, Host::node_score);
    let last = |h: &WeighedHost| host(h).map_or(0, |h| h.last_claimed);
    match mode {
        TieBreak::Pack => {
            equal.sort_by(|a, b| score(a).total_cmp(&score(b)).then_with(|| by_id(a, b)))
        }
        TieBreak::Spread => {
            equal.sort_by(|a, b| score(b).total_cmp(&score(a)).then_with(|| by_id(a, b)))
        }
        TieBreak::RoundRobin => {
            equal.sort_by(|a, b| last(a).cmp(&last(b)).then_with(|| by_id(a, b)))
        }
        TieBreak::Random => {
            equal.sort_by(by_id);
            let chosen = draw(seed, consumer_id, equal.len());
            // The drawn host first, the others after it in id order.
            equal[..=chosen].rotate_right(1);
        }
    }
}

/// An index below `n` (which is at least 1) from `seed` and the server's id: FNV-1a over
/// the id, then SplitMix64's finalizer. Hand-written rather than std's hasher, whose output
/// may change between Rust releases, so a given seed always draws the same host.
fn draw(seed: u64, consumer_id: &ConsumerId, n: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in consumer_id.0.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = hash ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let n = u64::try_from(n).unwrap_or(u64::MAX).max(1);
    usize::try_from(z % n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostId;

    fn weighed(id: &str, weight: f64) -> WeighedHost {
        WeighedHost {
            host_id: HostId::from(id),
            weight,
            parts: Vec::new(),
        }
    }

    fn order(ranked: &[WeighedHost]) -> Vec<&str> {
        ranked.iter().map(|h| h.host_id.0.as_str()).collect()
    }

    #[test]
    fn only_weights_within_epsilon_of_the_best_are_equal() {
        let mut last = [
            Host::new("a", "a"),
            Host::new("b", "b"),
            Host::new("c", "c"),
        ];
        last[0].last_claimed = 5;
        last[1].last_claimed = 9;
        last[2].last_claimed = 1;
        let find = |h: &WeighedHost| last.iter().find(|host| host.id() == &h.host_id);
        // b is equal to a up to rounding; c is really lower, so it stays last even though
        // round robin would prefer it.
        let mut ranked = vec![
            weighed("a", 2.0),
            weighed("b", 2.0 - 1e-12),
            weighed("c", 2.0 - 1e-6),
        ];
        break_tie(&mut ranked, TieBreak::RoundRobin, find, 0, &"s".into());
        assert_eq!(order(&ranked), ["a", "b", "c"]);
        // A large best widens the tolerance with it: rounding grows with the weights.
        let mut ranked = vec![weighed("b", 1e9), weighed("c", 1e9 - 1e-3)];
        break_tie(&mut ranked, TieBreak::RoundRobin, find, 0, &"s".into());
        assert_eq!(order(&ranked), ["c", "b"]);
        let mut empty: Vec<WeighedHost> = Vec::new();
        break_tie(&mut empty, TieBreak::Random, find, 0, &"s".into());
        assert!(empty.is_empty());
    }

    #[test]
    fn draws_cover_every_index_and_repeat_for_the_same_inputs() {
        let drawn: std::collections::BTreeSet<usize> =
            (0..64).map(|seed| draw(seed, &"srv".into(), 3)).collect();
        assert_eq!(drawn.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(draw(42, &"srv".into(), 3), draw(42, &"srv".into(), 3));
        assert_eq!(draw(42, &"srv".into(), 1), 0);
    }
}
