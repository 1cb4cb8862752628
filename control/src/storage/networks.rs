//! Neutron's state in SQLite, behind [`NetworkStore`]: networks, subnets, and ports with
//! their fixed IPs (IPAM's allocations, each address once under a UNIQUE constraint) and
//! security groups ([`super::security_groups`] has the groups and rules). Whole rows in,
//! whole rows out; the rules about them live in `crate::network`.

use super::{flag, StorageError};
use crate::network::store::{
    FixedIp, Network, NetworkStore, NetworkTx, Port, SecurityGroup, SecurityGroupRule, Subnet,
};
use crate::network::NetworkError;
use crate::timestamp::Timestamp;
use outpost_netdev::MacAddr;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {e}").into(),
    )
}

pub(super) fn parsed<T: std::str::FromStr>(what: &str, s: String) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, e))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: String) -> rusqlite::Result<T> {
    serde_json::from_str(&s).map_err(|e| corrupt(what, e))
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Plain data of strings and numbers always serialises.
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}

// ---- networks ----

const NETWORK_COLUMNS: &str = "id, project_id, name, description, admin_state_up, shared, mtu, \
     port_security_enabled, created_at, updated_at, revision_number";

fn network_row(r: &Row<'_>) -> rusqlite::Result<Network> {
    Ok(Network {
        id: r.get(0)?,
        project_id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        admin_state_up: flag(r.get(4)?),
        shared: flag(r.get(5)?),
        mtu: r.get(6)?,
        port_security_enabled: flag(r.get(7)?),
        created_at: Timestamp(r.get(8)?),
        updated_at: Timestamp(r.get(9)?),
        revision_number: r.get(10)?,
    })
}

pub(super) fn insert_network(c: &Connection, n: &Network) -> Result<(), StorageError> {
    c.execute(
        &format!(
            "INSERT INTO networks ({NETWORK_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"
        ),
        params![
            n.id,
            n.project_id,
            n.name,
            n.description,
            n.admin_state_up,
            n.shared,
            n.mtu,
            n.port_security_enabled,
            n.created_at.micros(),
            n.updated_at.micros(),
            n.revision_number
        ],
    )?;
    Ok(())
}

/// Writes every mutable field of `n` and bumps its revision.
pub(super) fn update_network(c: &Connection, n: &Network) -> Result<(), StorageError> {
    c.execute(
        "UPDATE networks SET name = ?2, description = ?3, admin_state_up = ?4, shared = ?5, \
         mtu = ?6, port_security_enabled = ?7, updated_at = ?8, \
         revision_number = revision_number + 1 WHERE id = ?1",
        params![
            n.id,
            n.name,
            n.description,
            n.admin_state_up,
            n.shared,
            n.mtu,
            n.port_security_enabled,
            Timestamp::now().micros()
        ],
    )?;
    Ok(())
}

pub(super) fn get_network(c: &Connection, id: &str) -> Result<Option<Network>, StorageError> {
    Ok(c.query_row(
        &format!("SELECT {NETWORK_COLUMNS} FROM networks WHERE id = ?1"),
        [id],
        network_row,
    )
    .optional()?)
}

pub(super) fn list_networks(c: &Connection) -> Result<Vec<Network>, StorageError> {
    let mut st = c.prepare(&format!(
        "SELECT {NETWORK_COLUMNS} FROM networks ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([], network_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn delete_network(c: &Connection, id: &str) -> Result<(), StorageError> {
    c.execute("DELETE FROM networks WHERE id = ?1", [id])?;
    Ok(())
}

// ---- subnets ----

const SUBNET_COLUMNS: &str = "id, network_id, project_id, name, description, ip_version, cidr, \
     gateway_ip, enable_dhcp, dns_nameservers, allocation_pools, host_routes, ipv6_address_mode, \
     ipv6_ra_mode, created_at, updated_at, revision_number";

fn subnet_row(r: &Row<'_>) -> rusqlite::Result<Subnet> {
    Ok(Subnet {
        id: r.get(0)?,
        network_id: r.get(1)?,
        project_id: r.get(2)?,
        name: r.get(3)?,
        description: r.get(4)?,
        ip_version: r.get(5)?,
        cidr: parsed("subnet cidr", r.get(6)?)?,
        gateway_ip: r
            .get::<_, Option<String>>(7)?
            .map(|g| parsed("gateway_ip", g))
            .transpose()?,
        enable_dhcp: flag(r.get(8)?),
        dns_nameservers: from_json("dns_nameservers", r.get(9)?)?,
        allocation_pools: from_json("allocation_pools", r.get(10)?)?,
        host_routes: from_json("host_routes", r.get(11)?)?,
        ipv6_address_mode: r.get(12)?,
        ipv6_ra_mode: r.get(13)?,
        created_at: Timestamp(r.get(14)?),
        updated_at: Timestamp(r.get(15)?),
        revision_number: r.get(16)?,
    })
}

pub(super) fn insert_subnet(c: &Connection, s: &Subnet) -> Result<(), StorageError> {
    c.execute(
        &format!(
            "INSERT INTO subnets ({SUBNET_COLUMNS}) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)"
        ),
        params![
            s.id,
            s.network_id,
            s.project_id,
            s.name,
            s.description,
            s.ip_version,
            s.cidr.to_string(),
            s.gateway_ip.map(|g| g.to_string()),
            s.enable_dhcp,
            to_json(&s.dns_nameservers),
            to_json(&s.allocation_pools),
            to_json(&s.host_routes),
            s.ipv6_address_mode,
            s.ipv6_ra_mode,
            s.created_at.micros(),
            s.updated_at.micros(),
            s.revision_number
        ],
    )?;
    Ok(())
}

/// Writes the mutable fields of `s` and bumps its revision.
pub(super) fn update_subnet(c: &Connection, s: &Subnet) -> Result<(), StorageError> {
    c.execute(
        "UPDATE subnets SET name = ?2, description = ?3, enable_dhcp = ?4, dns_nameservers = ?5, \
         host_routes = ?6, gateway_ip = ?7, allocation_pools = ?8, updated_at = ?9, \
         revision_number = revision_number + 1 WHERE id = ?1",
        params![
            s.id,
            s.name,
            s.description,
            s.enable_dhcp,
            to_json(&s.dns_nameservers),
            to_json(&s.host_routes),
            s.gateway_ip.map(|g| g.to_string()),
            to_json(&s.allocation_pools),
            Timestamp::now().micros()
        ],
    )?;
    Ok(())
}

pub(super) fn get_subnet(c: &Connection, id: &str) -> Result<Option<Subnet>, StorageError> {
    Ok(c.query_row(
        &format!("SELECT {SUBNET_COLUMNS} FROM subnets WHERE id = ?1"),
        [id],
        subnet_row,
    )
    .optional()?)
}

/// All subnets, or those of one network, oldest first.
pub(super) fn list_subnets(
    c: &Connection,
    network_id: Option<&str>,
) -> Result<Vec<Subnet>, StorageError> {
    let mut st = c.prepare(&format!(
        "SELECT {SUBNET_COLUMNS} FROM subnets WHERE ?1 IS NULL OR network_id = ?1 \
         ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([network_id], subnet_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn delete_subnet(c: &Connection, id: &str) -> Result<(), StorageError> {
    c.execute("DELETE FROM subnets WHERE id = ?1", [id])?;
    Ok(())
}

// ---- ports and their addresses ----

const PORT_COLUMNS: &str = "id, network_id, project_id, name, description, mac_address, \
     admin_state_up, device_id, device_owner, host_id, port_security_enabled, \
     allowed_address_pairs, auto_delete, created_at, updated_at, revision_number";

fn port_row(r: &Row<'_>) -> rusqlite::Result<Port> {
    Ok(Port {
        id: r.get(0)?,
        network_id: r.get(1)?,
        project_id: r.get(2)?,
        name: r.get(3)?,
        description: r.get(4)?,
        mac_address: parsed("mac_address", r.get(5)?)?,
        admin_state_up: flag(r.get(6)?),
        device_id: r.get(7)?,
        device_owner: r.get(8)?,
        host_id: r.get(9)?,
        port_security_enabled: flag(r.get(10)?),
        allowed_address_pairs: from_json("allowed_address_pairs", r.get(11)?)?,
        auto_delete: flag(r.get(12)?),
        fixed_ips: Vec::new(),
        security_groups: Vec::new(),
        created_at: Timestamp(r.get(13)?),
        updated_at: Timestamp(r.get(14)?),
        revision_number: r.get(15)?,
    })
}

/// Inserts the port with its fixed IPs and groups. A taken address or MAC fails on the
/// UNIQUE constraints (callers check first, for Neutron's errors).
pub(super) fn insert_port(c: &Connection, p: &Port) -> Result<(), StorageError> {
    c.execute(
        &format!(
            "INSERT INTO ports ({PORT_COLUMNS}) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"
        ),
        params![
            p.id,
            p.network_id,
            p.project_id,
            p.name,
            p.description,
            p.mac_address.to_string(),
            p.admin_state_up,
            p.device_id,
            p.device_owner,
            p.host_id,
            p.port_security_enabled,
            to_json(&p.allowed_address_pairs),
            p.auto_delete,
            p.created_at.micros(),
            p.updated_at.micros(),
            p.revision_number
        ],
    )?;
    set_port_ips(c, &p.id, &p.network_id, &p.fixed_ips)?;
    set_port_groups(c, &p.id, &p.security_groups)
}

/// Writes the port's scalar fields, fixed IPs and groups, and bumps its revision.
pub(super) fn update_port(c: &Connection, p: &Port) -> Result<(), StorageError> {
    c.execute(
        "UPDATE ports SET name = ?2, description = ?3, admin_state_up = ?4, device_id = ?5, \
         device_owner = ?6, host_id = ?7, port_security_enabled = ?8, \
         allowed_address_pairs = ?9, mac_address = ?10, updated_at = ?11, auto_delete = ?12, \
         revision_number = revision_number + 1 WHERE id = ?1",
        params![
            p.id,
            p.name,
            p.description,
            p.admin_state_up,
            p.device_id,
            p.device_owner,
            p.host_id,
            p.port_security_enabled,
            to_json(&p.allowed_address_pairs),
            p.mac_address.to_string(),
            Timestamp::now().micros(),
            p.auto_delete
        ],
    )?;
    set_port_ips(c, &p.id, &p.network_id, &p.fixed_ips)?;
    set_port_groups(c, &p.id, &p.security_groups)
}

/// Replaces the port's addresses: the ones it no longer has go back to the pool.
fn set_port_ips(
    c: &Connection,
    port_id: &str,
    network_id: &str,
    ips: &[FixedIp],
) -> Result<(), StorageError> {
    c.execute("DELETE FROM ip_allocations WHERE port_id = ?1", [port_id])?;
    for (i, ip) in ips.iter().enumerate() {
        c.execute(
            "INSERT INTO ip_allocations (port_id, subnet_id, network_id, ip_address, position) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                port_id,
                ip.subnet_id,
                network_id,
                ip.ip_address.to_string(),
                i
            ],
        )?;
    }
    Ok(())
}

fn set_port_groups(c: &Connection, port_id: &str, groups: &[String]) -> Result<(), StorageError> {
    c.execute(
        "DELETE FROM port_security_groups WHERE port_id = ?1",
        [port_id],
    )?;
    for (i, g) in groups.iter().enumerate() {
        c.execute(
            "INSERT INTO port_security_groups (port_id, security_group_id, position) \
             VALUES (?1, ?2, ?3)",
            params![port_id, g, i],
        )?;
    }
    Ok(())
}

/// Every port with its addresses and groups, oldest first.
pub(super) fn list_ports(c: &Connection) -> Result<Vec<Port>, StorageError> {
    let mut st = c.prepare(&format!(
        "SELECT {PORT_COLUMNS} FROM ports ORDER BY created_at, id"
    ))?;
    let mut ports: Vec<Port> = st.query_map([], port_row)?.collect::<Result<_, _>>()?;
    let index: HashMap<String, usize> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.clone(), i))
        .collect();
    let mut st = c.prepare(
        "SELECT port_id, subnet_id, ip_address FROM ip_allocations ORDER BY port_id, position",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let port_id: String = r.get(0)?;
        if let Some(&i) = index.get(&port_id) {
            ports[i].fixed_ips.push(FixedIp {
                subnet_id: r.get(1)?,
                ip_address: parsed("ip_address", r.get(2)?)?,
            });
        }
    }
    let mut st = c.prepare(
        "SELECT port_id, security_group_id FROM port_security_groups ORDER BY port_id, position",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let port_id: String = r.get(0)?;
        if let Some(&i) = index.get(&port_id) {
            ports[i].security_groups.push(r.get(1)?);
        }
    }
    Ok(ports)
}

pub(super) fn get_port(c: &Connection, id: &str) -> Result<Option<Port>, StorageError> {
    let Some(mut p) = c
        .query_row(
            &format!("SELECT {PORT_COLUMNS} FROM ports WHERE id = ?1"),
            [id],
            port_row,
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut st = c.prepare(
        "SELECT subnet_id, ip_address FROM ip_allocations WHERE port_id = ?1 ORDER BY position",
    )?;
    let mut rows = st.query([id])?;
    while let Some(r) = rows.next()? {
        p.fixed_ips.push(FixedIp {
            subnet_id: r.get(0)?,
            ip_address: parsed("ip_address", r.get(1)?)?,
        });
    }
    let mut st = c.prepare(
        "SELECT security_group_id FROM port_security_groups WHERE port_id = ?1 ORDER BY position",
    )?;
    p.security_groups = st
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Some(p))
}

pub(super) fn delete_port(c: &Connection, id: &str) -> Result<(), StorageError> {
    c.execute("DELETE FROM ports WHERE id = ?1", [id])?;
    Ok(())
}

/// The addresses taken in `subnet_id`.
pub(super) fn allocated_ips(c: &Connection, subnet_id: &str) -> Result<Vec<IpAddr>, StorageError> {
    let mut st = c.prepare("SELECT ip_address FROM ip_allocations WHERE subnet_id = ?1")?;
    let rows = st.query_map([subnet_id], |r| parsed("ip_address", r.get(0)?))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The port holding `ip` on `network_id`, if any.
pub(super) fn ip_holder(
    c: &Connection,
    network_id: &str,
    ip: IpAddr,
) -> Result<Option<String>, StorageError> {
    Ok(c.query_row(
        "SELECT port_id FROM ip_allocations WHERE network_id = ?1 AND ip_address = ?2",
        params![network_id, ip.to_string()],
        |r| r.get(0),
    )
    .optional()?)
}

pub(super) fn mac_in_use(
    c: &Connection,
    network_id: &str,
    mac: MacAddr,
) -> Result<bool, StorageError> {
    let n: i64 = c.query_row(
        "SELECT COUNT(*) FROM ports WHERE network_id = ?1 AND mac_address = ?2",
        params![network_id, mac.to_string()],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// How many ports use group `id`.
pub(super) fn ports_in_group(c: &Connection, id: &str) -> Result<i64, StorageError> {
    Ok(c.query_row(
        "SELECT COUNT(*) FROM port_security_groups WHERE security_group_id = ?1",
        [id],
        |r| r.get(0),
    )?)
}
/// The SQLite view of a unit of work: a connection inside [`super::Db::read`] or
/// [`super::Db::write`]'s transaction.
struct SqliteNetworkTx<'a>(&'a Connection);

impl NetworkTx for SqliteNetworkTx<'_> {
    fn insert_network(&self, n: &Network) -> Result<(), StorageError> {
        insert_network(self.0, n)
    }

    fn update_network(&self, n: &Network) -> Result<(), StorageError> {
        update_network(self.0, n)
    }

    fn get_network(&self, id: &str) -> Result<Option<Network>, StorageError> {
        get_network(self.0, id)
    }

    fn list_networks(&self) -> Result<Vec<Network>, StorageError> {
        list_networks(self.0)
    }

    fn delete_network(&self, id: &str) -> Result<(), StorageError> {
        delete_network(self.0, id)
    }

    fn insert_subnet(&self, s: &Subnet) -> Result<(), StorageError> {
        insert_subnet(self.0, s)
    }

    fn update_subnet(&self, s: &Subnet) -> Result<(), StorageError> {
        update_subnet(self.0, s)
    }

    fn get_subnet(&self, id: &str) -> Result<Option<Subnet>, StorageError> {
        get_subnet(self.0, id)
    }

    fn list_subnets(&self, network_id: Option<&str>) -> Result<Vec<Subnet>, StorageError> {
        list_subnets(self.0, network_id)
    }

    fn delete_subnet(&self, id: &str) -> Result<(), StorageError> {
        delete_subnet(self.0, id)
    }

    fn insert_port(&self, p: &Port) -> Result<(), StorageError> {
        insert_port(self.0, p)
    }

    fn update_port(&self, p: &Port) -> Result<(), StorageError> {
        update_port(self.0, p)
    }

    fn list_ports(&self) -> Result<Vec<Port>, StorageError> {
        list_ports(self.0)
    }

    fn get_port(&self, id: &str) -> Result<Option<Port>, StorageError> {
        get_port(self.0, id)
    }

    fn delete_port(&self, id: &str) -> Result<(), StorageError> {
        delete_port(self.0, id)
    }

    fn allocated_ips(&self, subnet_id: &str) -> Result<Vec<IpAddr>, StorageError> {
        allocated_ips(self.0, subnet_id)
    }

    fn ip_holder(&self, network_id: &str, ip: IpAddr) -> Result<Option<String>, StorageError> {
        ip_holder(self.0, network_id, ip)
    }

    fn mac_in_use(&self, network_id: &str, mac: MacAddr) -> Result<bool, StorageError> {
        mac_in_use(self.0, network_id, mac)
    }

    fn ports_in_group(&self, id: &str) -> Result<i64, StorageError> {
        ports_in_group(self.0, id)
    }

    fn insert_group(&self, g: &SecurityGroup) -> Result<(), StorageError> {
        super::security_groups::insert_group(self.0, g)
    }

    fn update_group(&self, g: &SecurityGroup) -> Result<(), StorageError> {
        super::security_groups::update_group(self.0, g)
    }

    fn get_group(&self, id: &str) -> Result<Option<SecurityGroup>, StorageError> {
        super::security_groups::get_group(self.0, id)
    }

    fn default_group(&self, project_id: &str) -> Result<Option<SecurityGroup>, StorageError> {
        super::security_groups::default_group(self.0, project_id)
    }

    fn list_groups(&self) -> Result<Vec<SecurityGroup>, StorageError> {
        super::security_groups::list_groups(self.0)
    }

    fn delete_group(&self, id: &str) -> Result<(), StorageError> {
        super::security_groups::delete_group(self.0, id)
    }

    fn insert_rule(&self, r: &SecurityGroupRule) -> Result<(), StorageError> {
        super::security_groups::insert_rule(self.0, r)
    }

    fn get_rule(&self, id: &str) -> Result<Option<SecurityGroupRule>, StorageError> {
        super::security_groups::get_rule(self.0, id)
    }

    fn list_rules(&self, group_id: Option<&str>) -> Result<Vec<SecurityGroupRule>, StorageError> {
        super::security_groups::list_rules(self.0, group_id)
    }

    fn delete_rule(&self, r: &SecurityGroupRule) -> Result<(), StorageError> {
        super::security_groups::delete_rule(self.0, r)
    }
}

/// The SQLite implementation of Neutron's door: a read, or one IMMEDIATE transaction.
impl NetworkStore for super::Db {
    fn read_networks(
        &self,
        f: &mut dyn FnMut(&dyn NetworkTx) -> Result<(), NetworkError>,
    ) -> Result<(), NetworkError> {
        self.read(|c| f(&SqliteNetworkTx(c)))
    }

    fn write_networks(
        &self,
        f: &mut dyn FnMut(&dyn NetworkTx) -> Result<(), NetworkError>,
    ) -> Result<(), NetworkError> {
        self.write(|tx| f(&SqliteNetworkTx(tx)))
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::Db;

    #[test]
    fn conforms_to_the_network_store_contract() {
        crate::network::store::conformance::run(|| Db::open_in_memory().unwrap());
    }
}
