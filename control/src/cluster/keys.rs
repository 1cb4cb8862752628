//! The keyspace (docs/cluster.md, "The keyspace"): one function per key kind, so no other
//! module spells a key.

pub const PREFIX: &str = "/outpost/v1";

/// Every kind of key the site keeps in etcd, by its prefix under [`PREFIX`]: the cluster's own
/// and the doors'. docs/cluster.md's key table lists exactly these (the keys there marked
/// planned aside); a test below checks both that and that every key function here spells a
/// key under one of them.
pub const PREFIXES: &[&str] = &[
    "/cluster",
    "/boxes/",
    "/alive/",
    "/join-tokens/",
    "/names/",
    "/identity/projects/",
    "/identity/users/",
    "/identity/roles/",
    "/identity/assignments/",
    "/identity/tokens/",
    "/flavors/",
    "/keypairs/",
    "/server-groups/",
    "/aggregates/",
    "/images/",
    "/image-copies/",
    "/image-holders/",
    "/volumes/",
    "/snapshots/",
    "/volume-snapshots/",
    "/networks/",
    "/vni/",
    "/subnets/",
    "/ports/",
    "/ipam/",
    "/macs/",
    "/security-groups/",
    "/sg-rules/",
    "/sg-ports/",
    "/servers/",
    "/server-user-data/",
    "/server-tasks/",
    "/migrations/",
    "/placement/providers/",
    "/placement/usage/",
    "/placement/claims/",
    "/placement/groups/",
];

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

/// The controller's key, on the winning box's lease: one box acts for the site (evacuation).
pub fn controller() -> String {
    format!("{PREFIX}/controller")
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

pub fn usages() -> String {
    format!("{PREFIX}/placement/usage/")
}

/// What the claims on a box add up to; its revision is the box's generation.
pub fn usage(name: &str) -> String {
    format!("{}{name}", usages())
}

pub fn claims() -> String {
    format!("{PREFIX}/placement/claims/")
}

/// One consumer's claim (a server id, or `migration:<server id>`).
pub fn claim(consumer: &str) -> String {
    format!("{}{consumer}", claims())
}

pub fn group_placements() -> String {
    format!("{PREFIX}/placement/groups/")
}

/// A server group as placement sees it: rewritten by every claim of one of its members, so
/// its revision changes whenever a member is placed.
pub fn group_placement(group: &str) -> String {
    format!("{}{group}", group_placements())
}

/// What a `/names/<kind>/<name>` key makes unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Project,
    User,
    Role,
    Flavor,
}

impl NameKind {
    fn as_str(self) -> &'static str {
        match self {
            NameKind::Project => "project",
            NameKind::User => "user",
            NameKind::Role => "role",
            NameKind::Flavor => "flavor",
        }
    }
}

/// The keys of the doors kept in etcd (identity, flavors), under a root: [`PREFIX`] in a
/// cluster; tests give each store a root of its own so they share one etcd member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    root: String,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace::under(PREFIX)
    }
}

impl Keyspace {
    /// Keys under `root` (no trailing slash), e.g. `/outpost/v1`.
    pub fn under(root: &str) -> Keyspace {
        Keyspace {
            root: root.trim_end_matches('/').to_owned(),
        }
    }

    /// `/names/<kind>/<name>`: `{id}` of the one record holding the name, created in the same
    /// transaction as the record.
    pub fn name(&self, kind: NameKind, name: &str) -> String {
        format!("{}/names/{}/{name}", self.root, kind.as_str())
    }

    pub fn projects(&self) -> String {
        format!("{}/identity/projects/", self.root)
    }

    pub fn project(&self, id: &str) -> String {
        format!("{}{id}", self.projects())
    }

    pub fn users(&self) -> String {
        format!("{}/identity/users/", self.root)
    }

    /// A user with its argon2 password hash.
    pub fn user(&self, id: &str) -> String {
        format!("{}{id}", self.users())
    }

    pub fn roles(&self) -> String {
        format!("{}/identity/roles/", self.root)
    }

    pub fn role(&self, id: &str) -> String {
        format!("{}{id}", self.roles())
    }

    /// Every assignment on a project (ids are generated: no `/` in them).
    pub fn assignments_on(&self, project: &str) -> String {
        format!("{}/identity/assignments/{project}/", self.root)
    }

    /// Every role a user holds on a project.
    pub fn assignments_of(&self, project: &str, user: &str) -> String {
        format!("{}{user}/", self.assignments_on(project))
    }

    pub fn assignment(&self, project: &str, user: &str, role: &str) -> String {
        format!("{}{role}", self.assignments_of(project, user))
    }

    pub fn tokens(&self) -> String {
        format!("{}/identity/tokens/", self.root)
    }

    /// An issued token by the SHA-256 of its value, on a lease that ends after its expiry.
    pub fn token(&self, id_hash: &str) -> String {
        format!("{}{id_hash}", self.tokens())
    }

    pub fn flavors(&self) -> String {
        format!("{}/flavors/", self.root)
    }

    /// A flavor with its extra specs inline.
    pub fn flavor(&self, id: &str) -> String {
        format!("{}{id}", self.flavors())
    }

    /// Every key pair of one user (user ids are generated: no `/` in them).
    pub fn key_pairs_of(&self, user_id: &str) -> String {
        format!("{}/keypairs/{user_id}/", self.root)
    }

    /// A user's key pair, by its name (Nova's names have no `/`).
    pub fn key_pair(&self, user_id: &str, name: &str) -> String {
        format!("{}{name}", self.key_pairs_of(user_id))
    }
}

// The quotas' door (`quota::store`): one key per limit an admin set.
impl Keyspace {
    /// Every limit set for one project (project ids are generated: no `/` in them).
    pub fn quota_limits_of(&self, project_id: &str) -> String {
        format!("{}/quotas/{project_id}/", self.root)
    }

    /// One project's limit of one resource.
    pub fn quota_limit(&self, project_id: &str, resource: &str) -> String {
        format!("{}{resource}", self.quota_limits_of(project_id))
    }
}

// The servers' door (`compute::servers::store`): a server's Nova record, its user_data and the
// progress row of its operation under way, each under its own prefix so one range read lists
// one kind.
impl Keyspace {
    pub fn servers(&self) -> String {
        format!("{}/servers/", self.root)
    }

    /// A server's Nova record with its owner box and epoch.
    pub fn server(&self, id: &str) -> String {
        format!("{}{id}", self.servers())
    }

    pub fn server_tasks(&self) -> String {
        format!("{}/server-tasks/", self.root)
    }

    /// The step a server's multi-step operation has reached.
    pub fn server_task(&self, id: &str) -> String {
        format!("{}{id}", self.server_tasks())
    }

    /// Every server's user_data.
    pub fn servers_user_data(&self) -> String {
        format!("{}/server-user-data/", self.root)
    }

    /// A server's user_data (up to 64 KiB), apart from its record so records stay small.
    pub fn server_user_data(&self, id: &str) -> String {
        format!("{}{id}", self.servers_user_data())
    }

    pub fn server_groups(&self) -> String {
        format!("{}/server-groups/", self.root)
    }

    /// A server group with its members inline.
    pub fn server_group(&self, id: &str) -> String {
        format!("{}{id}", self.server_groups())
    }

    pub fn aggregates(&self) -> String {
        format!("{}/aggregates/", self.root)
    }

    /// A host aggregate (by uuid) with its hosts and metadata inline.
    pub fn aggregate(&self, uuid: &str) -> String {
        format!("{}{uuid}", self.aggregates())
    }

    pub fn migrations(&self) -> String {
        format!("{}/migrations/", self.root)
    }

    /// One migration record (os-migrations), by uuid.
    pub fn migration(&self, uuid: &str) -> String {
        format!("{}{uuid}", self.migrations())
    }
}

// Images and volumes (Glance's and Cinder's doors).
impl Keyspace {
    pub fn images(&self) -> String {
        format!("{}/images/", self.root)
    }

    /// An image record with its properties and tags.
    pub fn image(&self, id: &str) -> String {
        format!("{}{id}", self.images())
    }

    pub fn image_holders(&self) -> String {
        format!("{}/image-holders/", self.root)
    }

    /// Everyone holding one image: an image with a key here is not deleted.
    pub fn holders_of_image(&self, image: &str) -> String {
        format!("{}{image}/", self.image_holders())
    }

    /// One consumer's hold (`server` or `volume`) on an image. Consumer ids are generated
    /// uuids: no `/` in them, and the `:` splits at the kind's end.
    pub fn image_holder(&self, image: &str, kind: &str, consumer: &str) -> String {
        format!("{}{kind}:{consumer}", self.holders_of_image(image))
    }

    pub fn image_copies(&self) -> String {
        format!("{}/image-copies/", self.root)
    }

    /// Every box's copy of one image.
    pub fn copies_of_image(&self, image: &str) -> String {
        format!("{}{image}/", self.image_copies())
    }

    /// Box `holder`'s copy of an image's data.
    pub fn image_copy(&self, image: &str, holder: &str) -> String {
        format!("{}{holder}", self.copies_of_image(image))
    }

    pub fn volumes(&self) -> String {
        format!("{}/volumes/", self.root)
    }

    /// A volume record with its metadata and attachment inline.
    pub fn volume(&self, id: &str) -> String {
        format!("{}{id}", self.volumes())
    }

    pub fn snapshots(&self) -> String {
        format!("{}/snapshots/", self.root)
    }

    pub fn snapshot(&self, id: &str) -> String {
        format!("{}{id}", self.snapshots())
    }

    /// Every snapshot of one volume, as an index: written with each snapshot write, so its
    /// keys' revisions say whether any of the volume's snapshots changed.
    pub fn snapshots_of_volume(&self, volume: &str) -> String {
        format!("{}/volume-snapshots/{volume}/", self.root)
    }

    pub fn volume_snapshot(&self, volume: &str, snapshot: &str) -> String {
        format!("{}{snapshot}", self.snapshots_of_volume(volume))
    }
}

// Networks (Neutron's door, docs/cluster.md "The keyspace").
impl Keyspace {
    pub fn networks(&self) -> String {
        format!("{}/networks/", self.root)
    }

    /// A network with its VNI.
    pub fn network(&self, id: &str) -> String {
        format!("{}{id}", self.networks())
    }

    pub fn vnis(&self) -> String {
        format!("{}/vni/", self.root)
    }

    /// `{network}` holding a VXLAN id.
    pub fn vni(&self, vni: u32) -> String {
        format!("{}{vni}", self.vnis())
    }

    pub fn subnets(&self) -> String {
        format!("{}/subnets/", self.root)
    }

    pub fn subnet(&self, id: &str) -> String {
        format!("{}{id}", self.subnets())
    }

    pub fn ports(&self) -> String {
        format!("{}/ports/", self.root)
    }

    /// A port with its fixed IPs and security groups.
    pub fn port(&self, id: &str) -> String {
        format!("{}{id}", self.ports())
    }

    /// Every address taken on a network.
    pub fn addresses_on(&self, network: &str) -> String {
        format!("{}/ipam/{network}/", self.root)
    }

    /// `{port, subnet}` holding an address: created only if absent, so it is handed out once.
    pub fn address(&self, network: &str, ip: std::net::IpAddr) -> String {
        format!("{}{ip}", self.addresses_on(network))
    }

    /// `{port}` holding a MAC on a network, created only if absent.
    pub fn mac(&self, network: &str, mac: outpost_netdev::MacAddr) -> String {
        format!("{}/macs/{network}/{mac}", self.root)
    }

    pub fn security_groups(&self) -> String {
        format!("{}/security-groups/", self.root)
    }

    pub fn security_group(&self, id: &str) -> String {
        format!("{}{id}", self.security_groups())
    }

    /// `/names/default-sg/<project>`: `{id}` of the project's one default group.
    pub fn default_security_group(&self, project: &str) -> String {
        format!("{}/names/default-sg/{project}", self.root)
    }

    pub fn security_group_rules(&self) -> String {
        format!("{}/sg-rules/", self.root)
    }

    /// A rule with its group's id.
    pub fn security_group_rule(&self, id: &str) -> String {
        format!("{}{id}", self.security_group_rules())
    }

    /// The ports using a group (an index: a group in use is not deleted).
    pub fn group_members(&self, group: &str) -> String {
        format!("{}/sg-ports/{group}/", self.root)
    }

    pub fn group_member(&self, group: &str, port: &str) -> String {
        format!("{}{port}", self.group_members(group))
    }
}

/// The direct children of `prefix` among `kvs` (one range read), by name.
pub fn children<'a>(
    kvs: &'a [etcd_client::KeyValue],
    prefix: &str,
) -> std::collections::BTreeMap<String, &'a etcd_client::KeyValue> {
    kvs.iter()
        .filter_map(|kv| Some((child(kv.key_str().ok()?, prefix)?.to_owned(), kv)))
        .collect()
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

    /// The key prefixes docs/cluster.md's key table names (`/boxes/<box>` names `/boxes/`),
    /// and whether the row is only planned.
    fn documented_prefixes() -> Vec<(String, bool)> {
        let doc = include_str!("../../../docs/cluster.md");
        let table = doc
            .split("## The keyspace")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/cluster.md has a keyspace section");
        let mut out = Vec::new();
        for row in table.lines().filter(|l| l.starts_with("| `/")) {
            let mut cells = row.split('|').skip(1);
            let keys = cells.next().unwrap_or_default();
            let planned = cells.next().unwrap_or_default().contains("(planned)");
            for key in keys.split('`').skip(1).step_by(2) {
                let prefix = key.split('<').next().unwrap_or(key);
                out.push((prefix.to_owned(), planned));
            }
        }
        out
    }

    #[test]
    fn the_keyspace_table_and_the_prefixes_agree() {
        let documented = documented_prefixes();
        for prefix in PREFIXES {
            assert!(
                documented
                    .iter()
                    .any(|(p, planned)| p == prefix && !planned),
                "{prefix} is kept in etcd but not in docs/cluster.md's key table"
            );
        }
        for (prefix, planned) in &documented {
            assert!(
                *planned || PREFIXES.contains(&prefix.as_str()),
                "docs/cluster.md's key table has {prefix}, which no key here is under \
                 (mark the row planned, or add the keys)"
            );
        }
    }

    #[test]
    fn every_key_is_under_a_declared_prefix() {
        let k = Keyspace::default();
        let ip: std::net::IpAddr = "10.0.0.5".parse().unwrap();
        let mac: outpost_netdev::MacAddr = "fa:16:3e:00:00:01".parse().unwrap();
        let keys = [
            cluster(),
            box_record("b"),
            alive("b"),
            join_token("h"),
            provider("b"),
            usage("b"),
            claim("c"),
            group_placement("g"),
            k.name(NameKind::Flavor, "n"),
            k.project("p"),
            k.user("u"),
            k.role("r"),
            k.assignment("p", "u", "r"),
            k.token("t"),
            k.flavor("f"),
            k.key_pair("u", "n"),
            k.server("s"),
            k.server_task("s"),
            k.server_user_data("s"),
            k.server_group("g"),
            k.aggregate("a"),
            k.migration("m"),
            k.image("i"),
            k.image_holder("i", "server", "s"),
            k.image_copy("i", "b"),
            k.volume("v"),
            k.snapshot("s"),
            k.volume_snapshot("v", "s"),
            k.network("n"),
            k.vni(7),
            k.subnet("s"),
            k.port("p"),
            k.address("n", ip),
            k.mac("n", mac),
            k.security_group("g"),
            k.default_security_group("p"),
            k.security_group_rule("r"),
            k.group_member("g", "p"),
        ];
        for key in keys {
            let under = key.strip_prefix(PREFIX).unwrap_or(&key);
            assert!(
                PREFIXES.iter().any(|p| under.starts_with(p)),
                "{key} is under no prefix of PREFIXES"
            );
        }
    }

    #[test]
    fn door_keys_follow_the_keyspace_table() {
        let k = Keyspace::default();
        assert_eq!(
            k.name(NameKind::User, "alice"),
            "/outpost/v1/names/user/alice"
        );
        assert_eq!(k.project("p1"), "/outpost/v1/identity/projects/p1");
        assert_eq!(
            k.assignment("p", "u", "r"),
            "/outpost/v1/identity/assignments/p/u/r"
        );
        assert_eq!(k.flavor("1"), "/outpost/v1/flavors/1");
        assert_eq!(Keyspace::under("/t/9/").roles(), "/t/9/identity/roles/");
        assert_eq!(child(&k.user("u1"), &k.users()), Some("u1"));
        let ip: std::net::IpAddr = "fd00::5".parse().unwrap();
        assert_eq!(k.address("n1", ip), "/outpost/v1/ipam/n1/fd00::5");
        assert_eq!(
            child(&k.address("n1", ip), &k.addresses_on("n1")),
            Some("fd00::5")
        );
        let mac: outpost_netdev::MacAddr = "fa:16:3e:00:00:01".parse().unwrap();
        assert_eq!(k.mac("n1", mac), "/outpost/v1/macs/n1/fa:16:3e:00:00:01");
        assert_eq!(k.vni(1000), "/outpost/v1/vni/1000");
        assert_eq!(k.group_member("g", "p"), "/outpost/v1/sg-ports/g/p");
        assert_eq!(
            k.default_security_group("p1"),
            "/outpost/v1/names/default-sg/p1"
        );
    }

    #[test]
    fn server_keys_follow_the_keyspace_table() {
        let k = Keyspace::default();
        assert_eq!(k.server("s1"), "/outpost/v1/servers/s1");
        assert_eq!(k.server_user_data("s1"), "/outpost/v1/server-user-data/s1");
        assert_eq!(k.server_task("s1"), "/outpost/v1/server-tasks/s1");
        // One kind's prefix never covers another's keys.
        assert_eq!(child(&k.server_task("s1"), &k.servers()), None);
        assert_eq!(child(&k.server_user_data("s1"), &k.servers()), None);
        assert_eq!(child(&k.server("s1"), &k.servers()), Some("s1"));
    }

    #[test]
    fn image_and_volume_keys_follow_the_keyspace_table() {
        let k = Keyspace::default();
        assert_eq!(k.image("i1"), "/outpost/v1/images/i1");
        assert_eq!(
            k.image_copy("i1", "box2"),
            "/outpost/v1/image-copies/i1/box2"
        );
        assert_eq!(
            k.image_holder("i1", "server", "s1"),
            "/outpost/v1/image-holders/i1/server:s1"
        );
        assert_eq!(
            child(
                &k.image_holder("i1", "volume", "v1"),
                &k.holders_of_image("i1")
            ),
            Some("volume:v1")
        );
        assert_eq!(k.volume("v1"), "/outpost/v1/volumes/v1");
        assert_eq!(k.snapshot("s1"), "/outpost/v1/snapshots/s1");
        assert_eq!(
            k.volume_snapshot("v1", "s1"),
            "/outpost/v1/volume-snapshots/v1/s1"
        );
    }
}
