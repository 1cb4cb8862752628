//! Neutron's door in etcd (docs/cluster.md, "The keyspace", "Contested writes"): networks
//! (each with a VXLAN id held by `/vni/<vni>`), subnets, ports, security groups and rules,
//! one key each, and the keys that make what must be unique so: `/ipam/<network>/<ip>` and
//! `/macs/<network>/<mac>` for a port's addresses, `/names/default-sg/<project>` for a
//! project's default group, `/sg-ports/<group>/<port>` for the ports using a group.
//!
//! Each unit of work runs on a [`UnitOfWork`]: reads at one revision, writes buffered, one
//! transaction comparing what was read. Two boxes taking one address both create its
//! `/ipam/` key only if absent, so one of them loses, runs its closure again on fresh reads
//! and picks another address (or answers 409 for an address asked for by name). What
//! SQLite's foreign keys refuse, this store refuses by reading the record referred to, which
//! the commit then compares: a port's network, subnets and groups, a rule's groups.

mod records;

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::Serialize;

use self::records::{
    AddressRecord, GroupRecord, MacRecord, MemberRecord, NetworkRecord, PortRecord, RuleRecord,
    SubnetRecord, VniRecord,
};
use super::unit_of_work::{Outcome, UnitOfWork};
use super::{jitter, name_record, to_json, EtcdDoors, NameRecord, MAX_TRIES};
use crate::cluster::keys::{child, Keyspace};
use crate::network::store::{
    FixedIp, Network, NetworkStore, NetworkTx, Port, SecurityGroup, SecurityGroupRule, Subnet,
};
use crate::network::NetworkError;
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use outpost_netdev::MacAddr;

/// VXLAN ids are handed out from here up (docs/cluster.md, "Networks across boxes").
const FIRST_VNI: u32 = 1000;
/// VXLAN's 24-bit id space (RFC 7348 §5).
const LAST_VNI: u32 = (1 << 24) - 1;

/// [`NetworkStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdNetworks {
    doors: EtcdDoors,
}

impl EtcdNetworks {
    pub(super) fn new(doors: EtcdDoors) -> EtcdNetworks {
        EtcdNetworks { doors }
    }

    fn unit(&self) -> EtcdNetworkTx<'_> {
        EtcdNetworkTx {
            work: UnitOfWork::new(&self.doors),
            keys: &self.doors.kv.keys,
        }
    }
}

impl NetworkStore for EtcdNetworks {
    fn read_networks(
        &self,
        f: &mut dyn FnMut(&dyn NetworkTx) -> Result<(), NetworkError>,
    ) -> Result<(), NetworkError> {
        for _ in 0..MAX_TRIES {
            let tx = self.unit();
            match f(&tx) {
                Err(_) if tx.work.compacted() => continue,
                done => return done,
            }
        }
        Err(lost_races().into())
    }

    fn write_networks(
        &self,
        f: &mut dyn FnMut(&dyn NetworkTx) -> Result<(), NetworkError>,
    ) -> Result<(), NetworkError> {
        for _ in 0..MAX_TRIES {
            let tx = self.unit();
            match f(&tx) {
                Ok(()) => {}
                Err(_) if tx.work.compacted() => continue,
                Err(e) => return Err(e),
            }
            if tx.work.commit()? == Outcome::Committed {
                return Ok(());
            }
            self.doors.call(|_| async {
                jitter().await;
                Ok::<_, StorageError>(())
            })?;
        }
        Err(lost_races().into())
    }
}

/// A unit of work that lost its race [`MAX_TRIES`] times in a row.
fn lost_races() -> StorageError {
    StorageError::Backend(
        "Neutron's records kept changing while this change was being made (other boxes \
         changed them first each time); try again"
            .into(),
    )
}

/// What SQLite's constraints would refuse: a unit of work asked for something the records
/// rule out (Neutron's logic checks first, so this means a bug or a record changed by hand).
fn refused(what: String) -> StorageError {
    StorageError::Backend(what.into())
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(value).map_err(|e| StorageError::Corrupt(format!("{key}: {e}")))
}

/// Oldest first, as SQLite's `ORDER BY created_at, id`.
fn oldest_first<T>(items: &mut [T], key: impl Fn(&T) -> (i64, &str)) {
    items.sort_by(|a, b| key(a).cmp(&key(b)));
}

/// The view of one unit of work.
struct EtcdNetworkTx<'a> {
    work: UnitOfWork<'a>,
    keys: &'a Keyspace,
}

impl EtcdNetworkTx<'_> {
    fn record<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        self.work.get(key)?.map(|v| decode(key, &v)).transpose()
    }

    fn records<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, StorageError> {
        self.work
            .list(prefix)?
            .iter()
            .map(|(k, v)| decode(k, v))
            .collect()
    }

    fn put<T: Serialize>(&self, key: String, record: &T) -> Result<(), StorageError> {
        self.work.put(key, to_json(record))
    }

    /// Refuses a record whose key is taken (SQLite's PRIMARY KEY).
    fn absent(&self, key: &str) -> Result<(), StorageError> {
        match self.work.get(key)? {
            Some(_) => Err(refused(format!("{key} already exists"))),
            None => Ok(()),
        }
    }

    /// Refuses a reference to a record that does not exist (SQLite's foreign keys). Reading
    /// it makes the commit compare it, so it cannot go meanwhile either.
    fn exists(&self, key: &str) -> Result<(), StorageError> {
        match self.work.get(key)? {
            Some(_) => Ok(()),
            None => Err(refused(format!("{key} does not exist"))),
        }
    }

    /// Takes a port's MAC, addresses and group memberships on `network`: each key is
    /// created only if absent or already this port's, and its subnets and groups must exist.
    fn hold(
        &self,
        network: &str,
        port: &str,
        mac: MacAddr,
        ips: &[FixedIp],
        groups: &[String],
    ) -> Result<(), StorageError> {
        let key = self.keys.mac(network, mac);
        let wanted = MacRecord::new(port);
        match self.record::<MacRecord>(&key)? {
            Some(held) if held == wanted => {}
            Some(held) => {
                return Err(refused(format!("MAC {mac} is held by port {}", held.port)));
            }
            None => self.put(key, &wanted)?,
        }
        for ip in ips {
            self.exists(&self.keys.subnet(&ip.subnet_id))?;
            let key = self.keys.address(network, ip.ip_address);
            let wanted = AddressRecord::new(port, &ip.subnet_id);
            match self.record::<AddressRecord>(&key)? {
                Some(held) if held == wanted => {}
                Some(held) if held.port != port => {
                    return Err(refused(format!(
                        "address {} is held by port {}",
                        ip.ip_address, held.port
                    )));
                }
                _ => self.put(key, &wanted)?,
            }
        }
        for g in groups {
            self.exists(&self.keys.security_group(g))?;
            let key = self.keys.group_member(g, port);
            if self.work.get(&key)?.is_none() {
                self.put(key, &MemberRecord::new())?;
            }
        }
        Ok(())
    }

    /// Gives back what `old` held and `new` (the same port, changed) does not; all of it
    /// when `new` is None.
    fn release(&self, old: &PortRecord, new: Option<&Port>) -> Result<(), StorageError> {
        let net = &old.network_id;
        for ip in &old.fixed_ips {
            let kept =
                new.is_some_and(|p| p.fixed_ips.iter().any(|f| f.ip_address == ip.ip_address));
            let key = self.keys.address(net, ip.ip_address);
            let ours = self
                .record::<AddressRecord>(&key)?
                .is_some_and(|a| a.port == old.id);
            if !kept && ours {
                self.work.delete(key)?;
            }
        }
        if new.is_none_or(|p| p.mac_address != old.mac_address) {
            let key = self.keys.mac(net, old.mac_address);
            if self
                .record::<MacRecord>(&key)?
                .is_some_and(|m| m.port == old.id)
            {
                self.work.delete(key)?;
            }
        }
        for g in &old.security_groups {
            if !new.is_some_and(|p| p.security_groups.contains(g)) {
                self.work.delete(self.keys.group_member(g, &old.id))?;
            }
        }
        Ok(())
    }

    /// Marks group `id` changed (a rule added or removed), as Neutron counts revisions.
    fn bump_group(&self, id: &str) -> Result<(), StorageError> {
        let key = self.keys.security_group(id);
        if let Some(mut g) = self.record::<GroupRecord>(&key)? {
            g.revision_number += 1;
            self.put(key, &g)?;
        }
        Ok(())
    }
}

impl NetworkTx for EtcdNetworkTx<'_> {
    fn insert_network(&self, n: &Network) -> Result<(), StorageError> {
        let key = self.keys.network(&n.id);
        self.absent(&key)?;
        let prefix = self.keys.vnis();
        let taken: BTreeSet<u32> = self
            .work
            .list(&prefix)?
            .iter()
            .filter_map(|(k, _)| child(k, &prefix)?.parse().ok())
            .collect();
        let vni = (FIRST_VNI..=LAST_VNI)
            .find(|v| !taken.contains(v))
            .ok_or_else(|| refused("every VXLAN id is taken".into()))?;
        self.put(self.keys.vni(vni), &VniRecord::new(&n.id))?;
        self.put(key, &NetworkRecord::new(n, vni))
    }

    fn update_network(&self, n: &Network) -> Result<(), StorageError> {
        let key = self.keys.network(&n.id);
        let Some(mut r) = self.record::<NetworkRecord>(&key)? else {
            return Ok(());
        };
        r.name.clone_from(&n.name);
        r.description.clone_from(&n.description);
        r.admin_state_up = n.admin_state_up;
        r.shared = n.shared;
        r.mtu = n.mtu;
        r.port_security_enabled = n.port_security_enabled;
        r.updated_at = Timestamp::now().micros();
        r.revision_number += 1;
        self.put(key, &r)
    }

    fn get_network(&self, id: &str) -> Result<Option<Network>, StorageError> {
        Ok(self
            .record::<NetworkRecord>(&self.keys.network(id))?
            .map(NetworkRecord::into_network))
    }

    fn list_networks(&self) -> Result<Vec<Network>, StorageError> {
        let mut all: Vec<Network> = self
            .records::<NetworkRecord>(&self.keys.networks())?
            .into_iter()
            .map(NetworkRecord::into_network)
            .collect();
        oldest_first(&mut all, |n| (n.created_at.micros(), &n.id));
        Ok(all)
    }

    fn network_vnis(&self) -> Result<Vec<(String, u32)>, StorageError> {
        Ok(self
            .records::<NetworkRecord>(&self.keys.networks())?
            .into_iter()
            .map(|r| (r.id, r.vni))
            .collect())
    }

    fn delete_network(&self, id: &str) -> Result<(), StorageError> {
        let key = self.keys.network(id);
        let Some(r) = self.record::<NetworkRecord>(&key)? else {
            return Ok(());
        };
        if !self.list_subnets(Some(id))?.is_empty()
            || self.list_ports()?.iter().any(|p| p.network_id == id)
        {
            return Err(refused(format!("network {id} still has subnets or ports")));
        }
        self.work.delete(self.keys.vni(r.vni))?;
        self.work.delete(key)
    }

    fn insert_subnet(&self, s: &Subnet) -> Result<(), StorageError> {
        let key = self.keys.subnet(&s.id);
        self.absent(&key)?;
        self.exists(&self.keys.network(&s.network_id))?;
        self.put(key, &SubnetRecord::new(s))
    }

    fn update_subnet(&self, s: &Subnet) -> Result<(), StorageError> {
        let key = self.keys.subnet(&s.id);
        let Some(mut r) = self.record::<SubnetRecord>(&key)? else {
            return Ok(());
        };
        r.name.clone_from(&s.name);
        r.description.clone_from(&s.description);
        r.enable_dhcp = s.enable_dhcp;
        r.dns_nameservers.clone_from(&s.dns_nameservers);
        r.host_routes.clone_from(&s.host_routes);
        r.gateway_ip = s.gateway_ip;
        r.allocation_pools.clone_from(&s.allocation_pools);
        r.updated_at = Timestamp::now().micros();
        r.revision_number += 1;
        self.put(key, &r)
    }

    fn get_subnet(&self, id: &str) -> Result<Option<Subnet>, StorageError> {
        Ok(self
            .record::<SubnetRecord>(&self.keys.subnet(id))?
            .map(SubnetRecord::into_subnet))
    }

    fn list_subnets(&self, network_id: Option<&str>) -> Result<Vec<Subnet>, StorageError> {
        let mut all: Vec<Subnet> = self
            .records::<SubnetRecord>(&self.keys.subnets())?
            .into_iter()
            .filter(|s| network_id.is_none_or(|n| s.network_id == n))
            .map(SubnetRecord::into_subnet)
            .collect();
        oldest_first(&mut all, |s| (s.created_at.micros(), &s.id));
        Ok(all)
    }

    fn delete_subnet(&self, id: &str) -> Result<(), StorageError> {
        let key = self.keys.subnet(id);
        let Some(s) = self.record::<SubnetRecord>(&key)? else {
            return Ok(());
        };
        // Guarded, unlike allocated_ips: an address taken meanwhile must stop the delete.
        let prefix = self.keys.addresses_on(&s.network_id);
        for a in self.records::<AddressRecord>(&prefix)? {
            if a.subnet == id {
                return Err(refused(format!(
                    "subnet {id} still has an address of port {}",
                    a.port
                )));
            }
        }
        self.work.delete(key)
    }

    fn insert_port(&self, p: &Port) -> Result<(), StorageError> {
        let key = self.keys.port(&p.id);
        self.absent(&key)?;
        self.exists(&self.keys.network(&p.network_id))?;
        self.hold(
            &p.network_id,
            &p.id,
            p.mac_address,
            &p.fixed_ips,
            &p.security_groups,
        )?;
        self.put(key, &PortRecord::new(p))
    }

    fn update_port(&self, p: &Port) -> Result<(), StorageError> {
        let key = self.keys.port(&p.id);
        let Some(old) = self.record::<PortRecord>(&key)? else {
            return Ok(());
        };
        // Released first: an update may move an address from one subnet entry to another.
        self.release(&old, Some(p))?;
        self.hold(
            &old.network_id,
            &p.id,
            p.mac_address,
            &p.fixed_ips,
            &p.security_groups,
        )?;
        // As SQLite's UPDATE: the network, project and creation time stay.
        let r = PortRecord::new(&Port {
            network_id: old.network_id.clone(),
            project_id: old.project_id.clone(),
            created_at: Timestamp(old.created_at),
            updated_at: Timestamp::now(),
            revision_number: old.revision_number + 1,
            ..p.clone()
        });
        self.put(key, &r)
    }

    fn list_ports(&self) -> Result<Vec<Port>, StorageError> {
        let mut all: Vec<Port> = self
            .records::<PortRecord>(&self.keys.ports())?
            .into_iter()
            .map(PortRecord::into_port)
            .collect();
        oldest_first(&mut all, |p| (p.created_at.micros(), &p.id));
        Ok(all)
    }

    fn get_port(&self, id: &str) -> Result<Option<Port>, StorageError> {
        Ok(self
            .record::<PortRecord>(&self.keys.port(id))?
            .map(PortRecord::into_port))
    }

    fn delete_port(&self, id: &str) -> Result<(), StorageError> {
        let key = self.keys.port(id);
        let Some(old) = self.record::<PortRecord>(&key)? else {
            return Ok(());
        };
        self.release(&old, None)?;
        self.work.delete(key)
    }

    fn allocated_ips(&self, subnet_id: &str) -> Result<Vec<IpAddr>, StorageError> {
        let Some(s) = self.record::<SubnetRecord>(&self.keys.subnet(subnet_id))? else {
            return Ok(Vec::new());
        };
        // Peeked, not guarded: the caller picks a free address from this and takes it
        // through insert_port or update_port, which compare that address's key alone.
        let prefix = self.keys.addresses_on(&s.network_id);
        let mut out = Vec::new();
        for (key, value) in self.work.peek(&prefix)? {
            let a: AddressRecord = decode(&key, &value)?;
            if a.subnet != subnet_id {
                continue;
            }
            let ip = child(&key, &prefix)
                .and_then(|ip| ip.parse().ok())
                .ok_or_else(|| StorageError::Corrupt(format!("{key}: not an IP address")))?;
            out.push(ip);
        }
        Ok(out)
    }

    fn ip_holder(&self, network_id: &str, ip: IpAddr) -> Result<Option<String>, StorageError> {
        Ok(self
            .record::<AddressRecord>(&self.keys.address(network_id, ip))?
            .map(|a| a.port))
    }

    fn mac_in_use(&self, network_id: &str, mac: MacAddr) -> Result<bool, StorageError> {
        Ok(self.work.get(&self.keys.mac(network_id, mac))?.is_some())
    }

    fn ports_in_group(&self, id: &str) -> Result<i64, StorageError> {
        let n = self.work.list(&self.keys.group_members(id))?.len();
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }

    fn insert_group(&self, g: &SecurityGroup) -> Result<(), StorageError> {
        let key = self.keys.security_group(&g.id);
        self.absent(&key)?;
        if g.is_default {
            let name = self.keys.default_security_group(&g.project_id);
            self.absent(&name)?;
            self.work.put(name, name_record(&g.id))?;
        }
        self.put(key, &GroupRecord::new(g))
    }

    fn update_group(&self, g: &SecurityGroup) -> Result<(), StorageError> {
        let key = self.keys.security_group(&g.id);
        let Some(mut r) = self.record::<GroupRecord>(&key)? else {
            return Ok(());
        };
        r.name.clone_from(&g.name);
        r.description.clone_from(&g.description);
        r.updated_at = Timestamp::now().micros();
        r.revision_number += 1;
        self.put(key, &r)
    }

    fn get_group(&self, id: &str) -> Result<Option<SecurityGroup>, StorageError> {
        Ok(self
            .record::<GroupRecord>(&self.keys.security_group(id))?
            .map(GroupRecord::into_group))
    }

    fn default_group(&self, project_id: &str) -> Result<Option<SecurityGroup>, StorageError> {
        let name = self.keys.default_security_group(project_id);
        match self.record::<NameRecord>(&name)? {
            Some(n) => self.get_group(&n.id),
            None => Ok(None),
        }
    }

    fn list_groups(&self) -> Result<Vec<SecurityGroup>, StorageError> {
        let mut all: Vec<SecurityGroup> = self
            .records::<GroupRecord>(&self.keys.security_groups())?
            .into_iter()
            .map(GroupRecord::into_group)
            .collect();
        oldest_first(&mut all, |g| (g.created_at.micros(), &g.id));
        Ok(all)
    }

    fn delete_group(&self, id: &str) -> Result<(), StorageError> {
        let key = self.keys.security_group(id);
        let Some(g) = self.record::<GroupRecord>(&key)? else {
            return Ok(());
        };
        if self.ports_in_group(id)? > 0 {
            return Err(refused(format!("security group {id} is used by a port")));
        }
        // As SQLite's cascades: the group's rules, and other groups' rules naming it.
        for r in self.records::<RuleRecord>(&self.keys.security_group_rules())? {
            if r.security_group_id == id || r.remote_group_id.as_deref() == Some(id) {
                self.work.delete(self.keys.security_group_rule(&r.id))?;
            }
        }
        if g.is_default {
            let name = self.keys.default_security_group(&g.project_id);
            if self
                .record::<NameRecord>(&name)?
                .is_some_and(|n| n.id == id)
            {
                self.work.delete(name)?;
            }
        }
        self.work.delete(key)
    }

    fn insert_rule(&self, r: &SecurityGroupRule) -> Result<(), StorageError> {
        let key = self.keys.security_group_rule(&r.id);
        self.absent(&key)?;
        self.exists(&self.keys.security_group(&r.security_group_id))?;
        if let Some(remote) = &r.remote_group_id {
            self.exists(&self.keys.security_group(remote))?;
        }
        self.put(key, &RuleRecord::new(r))?;
        self.bump_group(&r.security_group_id)
    }

    fn get_rule(&self, id: &str) -> Result<Option<SecurityGroupRule>, StorageError> {
        Ok(self
            .record::<RuleRecord>(&self.keys.security_group_rule(id))?
            .map(RuleRecord::into_rule))
    }

    fn list_rules(&self, group_id: Option<&str>) -> Result<Vec<SecurityGroupRule>, StorageError> {
        let mut all: Vec<SecurityGroupRule> = self
            .records::<RuleRecord>(&self.keys.security_group_rules())?
            .into_iter()
            .filter(|r| group_id.is_none_or(|g| r.security_group_id == g))
            .map(RuleRecord::into_rule)
            .collect();
        oldest_first(&mut all, |r| (r.created_at.micros(), &r.id));
        Ok(all)
    }

    fn delete_rule(&self, r: &SecurityGroupRule) -> Result<(), StorageError> {
        self.work.delete(self.keys.security_group_rule(&r.id))?;
        self.bump_group(&r.security_group_id)
    }
}
