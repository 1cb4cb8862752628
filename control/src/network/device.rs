//! The calls the compute side makes for a server's networking: a port made for the server
//! on a network, a user's port bound to it, its ports released when it goes, and its
//! security groups replaced (Nova's addSecurityGroup / removeSecurityGroup).

use super::ports::{find_port, NewPort, PortOrigin, PortUpdate};
use super::store::{Network, Port, SecurityGroup, SecurityGroupRule, Subnet};
use super::{NetworkError, NetworkService, COMPUTE_OWNER};
use crate::context::RequestContext;

impl NetworkService {
    /// Makes a port on `network_id` for server `device_id` on host `host_id` (Nova's
    /// "allocate a port on this network"): addresses allocated, the project's default group
    /// unless `security_groups` names others. The port is deleted with the server
    /// ([`Self::release_device`]).
    pub fn create_device_port(
        &self,
        ctx: &RequestContext,
        network_id: &str,
        device_id: &str,
        host_id: &str,
        security_groups: Option<Vec<String>>,
    ) -> Result<Port, NetworkError> {
        self.create_device_port_with_ip(ctx, network_id, device_id, host_id, security_groups, None)
    }

    /// [`Self::create_device_port`] with the address Nova's `fixed_ip` asked for.
    pub fn create_device_port_with_ip(
        &self,
        ctx: &RequestContext,
        network_id: &str,
        device_id: &str,
        host_id: &str,
        security_groups: Option<Vec<String>>,
        fixed_ip: Option<std::net::IpAddr>,
    ) -> Result<Port, NetworkError> {
        let req = NewPort {
            network_id: network_id.to_owned(),
            fixed_ips: fixed_ip.map(|ip| {
                vec![super::ports::FixedIpRequest {
                    subnet_id: None,
                    ip_address: Some(ip.to_string()),
                }]
            }),
            device_id: Some(device_id.to_owned()),
            device_owner: Some(COMPUTE_OWNER.to_owned()),
            host_id: Some(host_id.to_owned()),
            security_groups,
            ..NewPort::default()
        };
        self.create_port_as(ctx, req, PortOrigin::Server)
    }

    /// Binds an existing port the user gave (Nova's `networks: [{port: id}]`) to server
    /// `device_id` on `host_id`. 409 PortInUse when another device holds it.
    pub fn bind_port(
        &self,
        ctx: &RequestContext,
        port_id: &str,
        device_id: &str,
        host_id: &str,
    ) -> Result<Port, NetworkError> {
        self.change(|tx| {
            let mut p = find_port(tx, ctx, port_id)?;
            // Seeing a port (as its network's owner) is not owning it: a server only ever
            // gets its own project's ports, as Nova's PortNotUsable has it.
            if ctx.project_id.as_deref() != Some(p.project_id.as_str()) {
                return Err(NetworkError::conflict(
                    "PortNotUsable",
                    format!("Port {port_id} belongs to another project and is not usable."),
                ));
            }
            if !p.device_id.is_empty() && p.device_id != device_id {
                return Err(NetworkError::conflict(
                    "PortInUse",
                    format!(
                        "Unable to complete operation on port {port_id} for network {}. Port \
                         already has an attached device {}.",
                        p.network_id, p.device_id
                    ),
                ));
            }
            p.device_id = device_id.to_owned();
            p.device_owner = COMPUTE_OWNER.to_owned();
            p.host_id = host_id.to_owned();
            tx.update_port(&p)?;
            Ok(tx.get_port(port_id)?.unwrap_or(p))
        })
    }

    /// The ports bound to server `device_id` of project `project_id`, oldest first. A port
    /// of another project that names the server is not the server's: `device_id` is a field
    /// anyone may write on their own port, and a server that took such a port would put
    /// another tenant's interface in its guest.
    pub fn device_ports(
        &self,
        device_id: &str,
        project_id: &str,
    ) -> Result<Vec<Port>, NetworkError> {
        self.read(|c| {
            Ok(c.list_ports()?
                .into_iter()
                .filter(|p| p.device_id == device_id && p.project_id == project_id)
                .collect())
        })
    }

    /// A server is gone: the ports made for it are deleted, the ones the user gave it are
    /// unbound (device, owner and host cleared) and keep their addresses, as with Nova.
    pub fn release_device(&self, device_id: &str) -> Result<(), NetworkError> {
        if device_id.is_empty() {
            return Ok(());
        }
        self.change(|tx| {
            for mut p in tx
                .list_ports()?
                .into_iter()
                .filter(|p| p.device_id == device_id)
            {
                if p.auto_delete {
                    tx.delete_port(&p.id)?;
                } else {
                    p.device_id.clear();
                    p.device_owner.clear();
                    p.host_id.clear();
                    tx.update_port(&p)?;
                }
            }
            Ok(())
        })
    }

    /// Replaces a port's security groups (Nova's addSecurityGroup / removeSecurityGroup
    /// compute the new list). Ids only; [`Self::find_security_group`] resolves names.
    pub fn set_port_security_groups(
        &self,
        ctx: &RequestContext,
        port_id: &str,
        groups: Vec<String>,
    ) -> Result<Port, NetworkError> {
        self.update_port(
            ctx,
            port_id,
            PortUpdate {
                security_groups: Some(groups),
                ..PortUpdate::default()
            },
        )
    }

    /// The network a server's port is on, whoever owns it (Nova names a server's addresses
    /// by network).
    pub fn device_network(&self, network_id: &str) -> Result<Option<Network>, NetworkError> {
        self.read(|c| Ok(c.get_network(network_id)?))
    }

    /// A security group of a server's port, whoever owns it (Nova's `security_groups` of a
    /// server).
    pub fn device_security_group(
        &self,
        group_id: &str,
    ) -> Result<Option<SecurityGroup>, NetworkError> {
        self.read(|c| Ok(c.get_group(group_id)?))
    }

    /// The rules of a server's security group (Nova's `os-security-groups` of a server).
    pub fn device_security_group_rules(
        &self,
        group_id: &str,
    ) -> Result<Vec<SecurityGroupRule>, NetworkError> {
        self.read(|c| Ok(c.list_rules(Some(group_id))?))
    }

    /// The port on `network_id` holding `ip`, whoever owns it: the metadata service's first
    /// step from a request's source to its server. An address is held by one port per
    /// network at most (the stores keep each address once).
    pub fn port_holding(
        &self,
        network_id: &str,
        ip: std::net::IpAddr,
    ) -> Result<Option<Port>, NetworkError> {
        self.read(|c| match c.ip_holder(network_id, ip)? {
            Some(id) => Ok(c.get_port(&id)?),
            None => Ok(None),
        })
    }

    /// A server's ports (as [`Self::device_ports`]) with each one's network MTU and subnets:
    /// what its guest is told in network_data.json.
    pub fn device_links(
        &self,
        device_id: &str,
        project_id: &str,
    ) -> Result<Vec<(Port, u32, Vec<Subnet>)>, NetworkError> {
        self.read(|c| {
            let mut links = Vec::new();
            for p in c.list_ports()? {
                if p.device_id != device_id || p.project_id != project_id {
                    continue;
                }
                let mtu = c.get_network(&p.network_id)?.map_or(1500, |n| n.mtu);
                let subnets = c.list_subnets(Some(&p.network_id))?;
                links.push((p, mtu, subnets));
            }
            Ok(links)
        })
    }
}
