//! Who is asking: the server behind a metadata request, from what the host's kernel saw of
//! it (the bridge it arrived on, its source address, the MAC the host resolved that
//! address to), never from anything the request itself says. Pure: the caller reads the
//! records and the neighbour table; [`identify`] decides.
//!
//! Why these facts are the guest's own (docs/networking.md, "Metadata service"): the bridge
//! table of outpost-netdev's ruleset drops, at prerouting on every port with port security,
//! a frame whose Ethernet source is not its tap's port MAC
//! (`iifname . ether saddr != @port_mac drop`), an ARP whose sender MAC or IPv4 is not the
//! port's (`arp saddr ether != @port_mac`, `arp saddr ip != @port_v4`), and IPv4 from an
//! address the port does not hold (`iifname . ip saddr != @port_v4 drop`). So the host's
//! neighbour entry for an address on a bridge names the MAC of the port that answered ARP
//! for it, and the TCP handshake completes only with the tap behind that MAC. An allowed
//! address pair lets a second port send from the first's address, but with its own MAC:
//! the MAC check below refuses it.

use crate::compute::servers::Server;
use crate::network::store::Port;
use outpost_netdev::MacAddr;
use std::net::IpAddr;

/// Why a request gets no answer (a 404 to the guest; the reason is logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no port on network {network} holds {ip}")]
    NoPort { network: String, ip: IpAddr },
    #[error("port {port} holding {ip} is not a server's port on this box")]
    NotAServerPort { port: String, ip: IpAddr },
    #[error("the host has no resolved MAC for {ip} on network {network}")]
    NoNeighbour { network: String, ip: IpAddr },
    #[error("{ip} resolves to {seen}, not to the MAC {expected} of port {port}")]
    MacMismatch {
        port: String,
        ip: IpAddr,
        seen: MacAddr,
        expected: MacAddr,
    },
    #[error("server {server} of port {port} is not a server of its project on this box")]
    NotItsServer { server: String, port: String },
}

/// What the kernel told about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The network whose bridge the connection arrived on (the listener's own).
    pub network: String,
    /// The connection's source address.
    pub ip: IpAddr,
    /// The MAC the host's neighbour table holds for `ip` on that bridge.
    pub mac: Option<MacAddr>,
}

/// The port behind `seen`, given the port holding its address on its network (`holder`).
pub fn port<'a>(seen: &Seen, holder: Option<&'a Port>, host: &str) -> Result<&'a Port, Refused> {
    let Some(port) = holder else {
        return Err(Refused::NoPort {
            network: seen.network.clone(),
            ip: seen.ip,
        });
    };
    // A port anyone may name a server in (device_id is writable by its owner) but that no
    // server of this box plugged in has no tap here and sends nothing: only a compute port
    // bound to this box can be the sender.
    if !port.device_owner.starts_with("compute:")
        || port.device_id.is_empty()
        || port.host_id != host
        || port.network_id != seen.network
    {
        return Err(Refused::NotAServerPort {
            port: port.id.clone(),
            ip: seen.ip,
        });
    }
    match seen.mac {
        None => Err(Refused::NoNeighbour {
            network: seen.network.clone(),
            ip: seen.ip,
        }),
        Some(mac) if mac != port.mac_address => Err(Refused::MacMismatch {
            port: port.id.clone(),
            ip: seen.ip,
            seen: mac,
            expected: port.mac_address,
        }),
        Some(_) => Ok(port),
    }
}

/// The server `port` names, if it is really that server's: of the port's project and run by
/// this box.
pub fn server<'a>(
    port: &Port,
    server: Option<&'a Server>,
    host: &str,
) -> Result<&'a Server, Refused> {
    match server {
        Some(s)
            if s.id == port.device_id
                && s.project_id == port.project_id
                && s.host.as_deref() == Some(host) =>
        {
            Ok(s)
        }
        _ => Err(Refused::NotItsServer {
            server: port.device_id.clone(),
            port: port.id.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;

    fn port(id: &str, mac: &str) -> Port {
        Port {
            id: id.into(),
            network_id: "n1".into(),
            project_id: "p1".into(),
            name: String::new(),
            description: String::new(),
            mac_address: mac.parse().unwrap(),
            admin_state_up: true,
            device_id: "s1".into(),
            device_owner: "compute:nova".into(),
            host_id: "box1".into(),
            port_security_enabled: true,
            allowed_address_pairs: Vec::new(),
            auto_delete: true,
            fixed_ips: Vec::new(),
            security_groups: Vec::new(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            revision_number: 1,
        }
    }

    fn seen(mac: Option<&str>) -> Seen {
        Seen {
            network: "n1".into(),
            ip: "10.0.0.5".parse().unwrap(),
            mac: mac.map(|m| m.parse().unwrap()),
        }
    }

    const MAC: &str = "fa:16:3e:00:00:01";

    #[test]
    fn the_port_holding_the_address_with_its_own_mac_is_the_requester() {
        let p = port("p", MAC);
        assert_eq!(super::port(&seen(Some(MAC)), Some(&p), "box1"), Ok(&p));
    }

    #[test]
    fn another_mac_for_the_address_is_refused() {
        // A second port sending from the first's address (an allowed address pair, or a
        // port without port security) has its own MAC in the host's neighbour table.
        let p = port("p", MAC);
        let got = super::port(&seen(Some("fa:16:3e:00:00:02")), Some(&p), "box1");
        assert!(matches!(got, Err(Refused::MacMismatch { .. })), "{got:?}");
        let got = super::port(&seen(None), Some(&p), "box1");
        assert!(matches!(got, Err(Refused::NoNeighbour { .. })), "{got:?}");
    }

    #[test]
    fn no_port_or_a_port_no_server_here_plugged_in_is_refused() {
        let s = seen(Some(MAC));
        assert!(matches!(
            super::port(&s, None, "box1"),
            Err(Refused::NoPort { .. })
        ));
        let mut dhcp = port("d", MAC);
        dhcp.device_owner = "network:dhcp".into();
        let mut elsewhere = port("e", MAC);
        elsewhere.host_id = "box2".into();
        let mut unbound = port("u", MAC);
        unbound.device_id.clear();
        let mut other_net = port("o", MAC);
        other_net.network_id = "n2".into();
        for p in [dhcp, elsewhere, unbound, other_net] {
            let got = super::port(&s, Some(&p), "box1");
            assert!(
                matches!(got, Err(Refused::NotAServerPort { .. })),
                "{got:?}"
            );
        }
    }

    #[test]
    fn a_port_naming_a_server_of_another_project_or_box_gets_nothing() {
        let p = port("p", MAC);
        let mut s = crate::compute::servers::store::conformance::server("s1", "p1", 0);
        s.host = Some("box1".into());
        assert_eq!(server(&p, Some(&s), "box1").map(|s| &s.id), Ok(&s.id));
        let mut foreign = s.clone();
        foreign.project_id = "p2".into();
        let mut moved = s.clone();
        moved.host = Some("box2".into());
        for bad in [Some(&foreign), Some(&moved), None] {
            assert!(matches!(
                server(&p, bad, "box1"),
                Err(Refused::NotItsServer { .. })
            ));
        }
    }
}
