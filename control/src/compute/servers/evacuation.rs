//! What the site may do with a server when its box dies (docs/cluster.md, "Evacuation"): its
//! evacuation policy, set by the flavor's extra spec or the server's metadata under
//! [`POLICY_KEY`] (the metadata wins, as a per-server choice should), and the file in the
//! server's runtime folder that tells this box's fence about it without etcd.

use super::monitor::ServerDir;
use super::store::Server;

/// The flavor extra spec and the server metadata key that choose the policy. Namespaced as
/// Nova's own scheduler hints are (`hw:`, `quota:`), so Nova's validators leave it alone.
pub const POLICY_KEY: &str = "outpost:evacuation";

/// The policy's file in a server's runtime folder: the fence reads it while etcd, which holds
/// the record, may be unreachable.
const POLICY_FILE: &str = "evacuation";

/// What evacuation does with a server whose box died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvacuationPolicy {
    /// Run it on another box: the root disk is made again from its image (Nova's evacuate
    /// without shared storage). Its box fences it before the site can move it.
    Rebuild,
    /// Wait for its box: nothing moves it, and its box's fence leaves it running.
    Stay,
}

impl EvacuationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            EvacuationPolicy::Rebuild => "rebuild",
            EvacuationPolicy::Stay => "stay",
        }
    }

    pub fn parse(value: &str) -> Option<EvacuationPolicy> {
        match value {
            "rebuild" => Some(EvacuationPolicy::Rebuild),
            "stay" => Some(EvacuationPolicy::Stay),
            _ => None,
        }
    }

    /// The policy of `s`: its metadata's, else its flavor's, else `rebuild` for a server
    /// booted from an image and `stay` for one whose root is a volume (its data lives on its
    /// box). A value that slipped past validation (a record from an older outpostd) counts
    /// as absent.
    pub fn of(s: &Server) -> EvacuationPolicy {
        let chosen = |specs: &std::collections::BTreeMap<String, String>| {
            specs
                .get(POLICY_KEY)
                .and_then(|v| EvacuationPolicy::parse(v))
        };
        chosen(&s.metadata)
            .or_else(|| chosen(&s.flavor.extra_specs))
            .unwrap_or(if s.boot.volume_backed() {
                EvacuationPolicy::Stay
            } else {
                EvacuationPolicy::Rebuild
            })
    }

    /// Records the policy in `dir` for the fence; unchanged files are not rewritten.
    pub fn record(self, dir: &ServerDir) -> std::io::Result<()> {
        let file = dir.path().join(POLICY_FILE);
        if std::fs::read_to_string(&file).is_ok_and(|t| t == self.as_str()) {
            return Ok(());
        }
        if !dir.path().is_dir() {
            // No folder: nothing runs that the fence could stop.
            return Ok(());
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, self.as_str()).and_then(|()| std::fs::rename(&tmp, &file))
    }

    /// The policy recorded in `dir`, if any.
    pub fn recorded(dir: &ServerDir) -> Option<EvacuationPolicy> {
        let text = std::fs::read_to_string(dir.path().join(POLICY_FILE)).ok()?;
        EvacuationPolicy::parse(text.trim())
    }
}

/// Why a value of [`POLICY_KEY`] is refused, for the API's 400; None when it is fine (or the
/// key is another one).
pub fn invalid_value(key: &str, value: &str) -> Option<String> {
    (key == POLICY_KEY && EvacuationPolicy::parse(value).is_none())
        .then(|| format!("{POLICY_KEY} must be \"rebuild\" or \"stay\", not {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_rebuild_or_stay_and_other_keys_are_not_judged() {
        assert_eq!(invalid_value(POLICY_KEY, "rebuild"), None);
        assert_eq!(invalid_value(POLICY_KEY, "stay"), None);
        assert!(invalid_value(POLICY_KEY, "auto").is_some_and(|m| m.contains("\"auto\"")));
        assert!(invalid_value(POLICY_KEY, "Rebuild").is_some());
        assert_eq!(invalid_value("hw:cpu_policy", "anything"), None);
    }

    #[test]
    fn the_recorded_policy_is_read_back_and_a_missing_folder_records_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ServerDir::new(tmp.path().join("s1"));
        EvacuationPolicy::Stay.record(&dir).unwrap();
        assert_eq!(EvacuationPolicy::recorded(&dir), None);
        dir.create().unwrap();
        EvacuationPolicy::Stay.record(&dir).unwrap();
        assert_eq!(
            EvacuationPolicy::recorded(&dir),
            Some(EvacuationPolicy::Stay)
        );
        EvacuationPolicy::Rebuild.record(&dir).unwrap();
        assert_eq!(
            EvacuationPolicy::recorded(&dir),
            Some(EvacuationPolicy::Rebuild)
        );
    }
}
