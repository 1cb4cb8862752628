//! Conntrack zone numbers, one per network, so that identical flows on networks with
//! overlapping addresses are tracked apart (what Neutron's agents do with one zone per
//! network).
//!
//! A zone is derived from the network id, not from its position in the spec: deleting or
//! adding a network must not renumber the others, or their established connections would
//! be looked up in a zone that does not hold them and be dropped as new. The number is
//! 1 + FNV-1a(id) mod 65535 (zone 0 stays the kernel's default zone: the host's own
//! traffic and the reply side of routed flows, see `firewall`). Two ids that hash to the
//! same zone are resolved by taking the next free number; a network keeps the zone it had
//! in the previous assignment (the same `HostNetwork`), and networks new to it are
//! resolved in id order, so the outcome does not depend on the order of the spec.

use crate::spec::HostNetworkSpec;
use std::collections::{BTreeMap, BTreeSet};

/// Network id → conntrack zone (1..=65535).
pub type Zones = BTreeMap<String, u16>;

/// The zone a network id hashes to, before collisions are resolved.
pub fn preferred(network_id: &str) -> u16 {
    // FNV-1a, 32 bits: tiny, stable across Rust versions and platforms (std's hasher is
    // not), which matters because the number must be the same after a daemon restart.
    let mut h: u32 = 0x811c_9dc5;
    for b in network_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // 1..=65535: the remainder is below 65535, so the sum fits.
    (1 + h % 65535) as u16
}

/// Zones for every network of `spec`. Networks present in `previous` keep their zone
/// (unless two of them claim the same one, which `assign` never produces); the others get
/// their preferred zone, or the next free one after it.
pub fn assign(spec: &HostNetworkSpec, previous: &Zones) -> Zones {
    let ids: BTreeSet<&str> = spec.networks.iter().map(|n| n.id.as_str()).collect();
    let mut out = Zones::new();
    let mut used = BTreeSet::new();
    for id in &ids {
        if let Some(&z) = previous.get(*id) {
            if z != 0 && used.insert(z) {
                out.insert((*id).to_owned(), z);
            }
        }
    }
    for id in ids {
        if out.contains_key(id) {
            continue;
        }
        let mut z = preferred(id);
        // At most 65535 networks can be numbered; beyond that (never on one box) the
        // loop would not end, so stop and share zone 0 instead.
        let mut tries = 0u32;
        while used.contains(&z) && tries < 65535 {
            z = if z == u16::MAX { 1 } else { z + 1 };
            tries += 1;
        }
        if used.contains(&z) {
            z = 0;
        }
        used.insert(z);
        out.insert(id.to_owned(), z);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetworkSpec;

    fn spec(ids: &[&str]) -> HostNetworkSpec {
        HostNetworkSpec {
            networks: ids
                .iter()
                .map(|id| NetworkSpec {
                    id: (*id).into(),
                    mtu: 1500,
                    subnets: vec![],
                    dhcp: None,
                    ports: vec![],
                    nat: false,
                    overlay: None,
                })
                .collect(),
            security_groups: vec![],
        }
    }

    /// Two ids with the same preferred zone, found by search (deterministic: FNV).
    fn colliding_pair() -> (String, String) {
        let mut seen = std::collections::HashMap::new();
        for i in 0u32.. {
            let id = format!("net{i}");
            if let Some(other) = seen.insert(preferred(&id), id.clone()) {
                return (other, id);
            }
        }
        unreachable!("the pigeonhole principle")
    }

    #[test]
    fn zones_are_nonzero_distinct_and_independent_of_order_and_neighbours() {
        let ab = assign(&spec(&["a", "b", "c"]), &Zones::new());
        let ba = assign(&spec(&["c", "b", "a"]), &Zones::new());
        assert_eq!(ab, ba);
        assert!(ab.values().all(|z| *z != 0));
        let distinct: BTreeSet<_> = ab.values().collect();
        assert_eq!(distinct.len(), 3);
        // Removing a network does not renumber the others.
        let without_b = assign(&spec(&["a", "c"]), &Zones::new());
        assert_eq!(without_b["a"], ab["a"]);
        assert_eq!(without_b["c"], ab["c"]);
        assert_eq!(ab["a"], preferred("a"));
    }

    #[test]
    fn collisions_take_the_next_zone_and_keep_what_was_assigned() {
        let (first, second) = colliding_pair();
        let z = preferred(&first);
        let both = assign(&spec(&[&first, &second]), &Zones::new());
        let (lo, hi) = if first < second {
            (&first, &second)
        } else {
            (&second, &first)
        };
        assert_eq!(both[lo], z, "the lower id keeps the preferred zone");
        assert_eq!(both[hi], if z == u16::MAX { 1 } else { z + 1 });
        // The higher id alone gets the preferred zone; when the lower one joins later, the
        // higher keeps it and the newcomer moves on.
        let alone = assign(&spec(&[hi]), &Zones::new());
        assert_eq!(alone[hi], z);
        let later = assign(&spec(&[&first, &second]), &alone);
        assert_eq!(later[hi], z);
        assert_ne!(later[lo], z);
        assert_ne!(later[lo], 0);
    }
}
