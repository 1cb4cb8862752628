//! The keyspace (docs/cluster.md, "The keyspace"): one function per key kind, so no other
//! module spells a key.

pub const PREFIX: &str = "/outpost/v1";

/// The cluster's own record: its id, who bootstrapped it and when.
pub fn cluster() -> String {
    format!("{PREFIX}/cluster")
}

pub fn boxes() -> String {
    format!("{PREFIX}/boxes/")
}

/// A member's record: underlay address, availability zone, enabled or disabled.
pub fn box_record(name: &str) -> String {
    format!("{}{name}", boxes())
}

pub fn alive_prefix() -> String {
    format!("{PREFIX}/alive/")
}

/// A member's presence, on its lease.
pub fn alive(name: &str) -> String {
    format!("{}{name}", alive_prefix())
}

/// A join token, by the SHA-256 of its secret, on a lease of its validity.
pub fn join_token(secret_sha256: &str) -> String {
    format!("{PREFIX}/join-tokens/{secret_sha256}")
}

pub fn providers() -> String {
    format!("{PREFIX}/placement/providers/")
}

/// A box's resource provider: its inventory and what is claimed of it.
pub fn provider(name: &str) -> String {
    format!("{}{name}", providers())
}

/// The part of `key` after `prefix`, when it is a direct child.
pub fn child<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix).filter(|rest| !rest.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_versioned_and_children_parse_back() {
        assert_eq!(box_record("box1"), "/outpost/v1/boxes/box1");
        assert_eq!(alive("box2"), "/outpost/v1/alive/box2");
        assert_eq!(child(&box_record("box3"), &boxes()), Some("box3"));
        assert_eq!(child("/outpost/v1/boxes/a/b", &boxes()), None);
        assert_eq!(child("/outpost/v1/alive/a", &boxes()), None);
    }
}
