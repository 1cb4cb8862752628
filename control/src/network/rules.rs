//! Security group rules, pure: Neutron's checks on a requested rule (direction, ethertype,
//! protocol by name or number, port ranges or ICMP type/code, remote prefix or group), the
//! sameness test behind `SecurityGroupRuleExists`, and a stored rule as the host spec's
//! [`RuleSpec`].

use super::store::SecurityGroupRule;
use ipnet::IpNet;
use outpost_netdev::{Direction, EtherType, Protocol, Remote, RuleSpec};

/// IP protocol names Neutron accepts, with their numbers (IANA).
const PROTOCOLS: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("icmp", 1),
    ("icmpv6", 58),
    ("igmp", 2),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;
/// Protocols whose rules may name ports.
const PORT_PROTOCOLS: [u8; 5] = [TCP, UDP, 33, 132, 136];

/// A rule as the client asked for it (JSON numbers and strings already unpacked).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleRequest {
    pub direction: Option<String>,
    pub ethertype: Option<String>,
    pub protocol: Option<String>,
    pub port_range_min: Option<i64>,
    pub port_range_max: Option<i64>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
}

/// A rule that passed Neutron's checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRule {
    pub direction: String,
    pub ethertype: String,
    /// Lower-case name or decimal number, as given; None for any.
    pub protocol: Option<String>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<IpNet>,
    pub remote_group_id: Option<String>,
}

/// A refused rule: Neutron's error type and message (all are 400s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    pub kind: &'static str,
    pub message: String,
}

fn refuse(kind: &'static str, message: impl Into<String>) -> RuleError {
    RuleError {
        kind,
        message: message.into(),
    }
}

/// The IP protocol number of a stored or requested protocol; None for any.
pub fn protocol_number(p: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .find(|(n, _)| *n == p)
        .map(|(_, v)| *v)
        .or_else(|| p.parse().ok())
}

fn parse_protocol(p: &str) -> Result<Option<String>, RuleError> {
    let p = p.trim().to_ascii_lowercase();
    if p.is_empty() || p == "any" {
        return Ok(None);
    }
    if PROTOCOLS.iter().any(|(n, _)| *n == p) {
        return Ok(Some(p));
    }
    match p.parse::<u16>() {
        Ok(n) if n <= 255 => Ok(Some(n.to_string())),
        _ => Err(refuse(
            "SecurityGroupRuleInvalidProtocol",
            format!(
                "Security group rule protocol {p} not supported. Only protocol values \
                 [None, {}] and integer representations [0 to 255] are supported.",
                PROTOCOLS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Neutron's checks, in its order.
pub fn validate(r: &RuleRequest) -> Result<ValidRule, RuleError> {
    let direction = match r.direction.as_deref() {
        Some(d @ ("ingress" | "egress")) => d.to_owned(),
        Some(d) => {
            return Err(refuse(
                "InvalidInput",
                format!("Invalid input for direction. Reason: {d} is not in valid_values."),
            ))
        }
        None => {
            return Err(refuse(
                "InvalidInput",
                "Invalid input for operation: direction is required.",
            ))
        }
    };
    let ethertype = match r.ethertype.as_deref() {
        None => "IPv4".to_owned(),
        Some(e) if e.eq_ignore_ascii_case("ipv4") => "IPv4".to_owned(),
        Some(e) if e.eq_ignore_ascii_case("ipv6") => "IPv6".to_owned(),
        Some(e) => {
            return Err(refuse(
                "SecurityGroupRuleInvalidEtherType",
                format!(
                    "Security group rule for ethertype '{e}' not supported. Allowed values \
                     are ['IPv4', 'IPv6']."
                ),
            ))
        }
    };
    let protocol = r
        .protocol
        .as_deref()
        .map(parse_protocol)
        .transpose()?
        .flatten();
    let number = protocol.as_deref().and_then(protocol_number);
    if ethertype == "IPv4" && number == Some(ICMPV6) {
        return Err(refuse(
            "SecurityGroupEthertypeConflictWithProtocol",
            "Invalid ethertype IPv4 for protocol ipv6-icmp.",
        ));
    }
    let (min, max) = (r.port_range_min, r.port_range_max);
    if min.is_some() || max.is_some() {
        let Some(n) = number else {
            return Err(refuse(
                "SecurityGroupProtocolRequiredWithPorts",
                "Must also specify protocol if port range is given.",
            ));
        };
        if PORT_PROTOCOLS.contains(&n) {
            for v in [min, max].into_iter().flatten() {
                if !(1..=65535).contains(&v) {
                    return Err(refuse(
                        "SecurityGroupInvalidPortValue",
                        format!("Invalid value for port {v}."),
                    ));
                }
            }
            match (min, max) {
                (Some(a), Some(b)) if a <= b => {}
                _ => {
                    return Err(refuse(
                        "SecurityGroupInvalidPortRange",
                        "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                    ))
                }
            }
        } else if n == ICMP || n == ICMPV6 {
            for (v, field) in [(min, "type"), (max, "code")] {
                if let Some(v) = v.filter(|v| !(0..=255).contains(v)) {
                    return Err(refuse(
                        "SecurityGroupInvalidIcmpValue",
                        format!(
                            "Invalid value for ICMP {field} (port_range_min or \
                             port_range_max) {v}. It must be 0 to 255."
                        ),
                    ));
                }
            }
            if min.is_none() {
                return Err(refuse(
                    "SecurityGroupMissingIcmpType",
                    "ICMP code (port-range-max) is provided but ICMP type (port-range-min) \
                     is missing.",
                ));
            }
        } else {
            return Err(refuse(
                "SecurityGroupInvalidProtocolForPort",
                format!(
                    "Invalid protocol ({}) for port range, only supported for TCP, UDP, \
                     UDPLITE, SCTP, DCCP, ICMP and IPv6-ICMP protocols.",
                    protocol.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    if r.remote_ip_prefix.is_some() && r.remote_group_id.is_some() {
        return Err(refuse(
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
            "Only remote_ip_prefix or remote_group_id may be provided.",
        ));
    }
    let remote_ip_prefix = match r.remote_ip_prefix.as_deref() {
        None => None,
        Some(p) => {
            // Neutron takes a bare address as a host prefix.
            let net: IpNet = p
                .parse()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    refuse(
                        "InvalidInput",
                        format!("Invalid input for remote_ip_prefix. Reason: '{p}' is not a valid IP subnet."),
                    )
                })?;
            let v6 = net.addr().is_ipv6();
            if v6 != (ethertype == "IPv6") {
                return Err(refuse(
                    "SecurityGroupRuleParameterConflict",
                    format!("Conflicting value ethertype {ethertype} for CIDR {p}"),
                ));
            }
            Some(net)
        }
    };
    let conv = |v: Option<i64>| v.and_then(|v| u16::try_from(v).ok());
    Ok(ValidRule {
        direction,
        ethertype,
        protocol,
        port_range_min: conv(min),
        port_range_max: conv(max),
        remote_ip_prefix,
        remote_group_id: r.remote_group_id.clone(),
    })
}

/// An "anywhere" prefix means the same as none.
fn normal_prefix(p: Option<IpNet>) -> Option<IpNet> {
    p.map(|p| p.trunc()).filter(|p| p.prefix_len() != 0)
}

/// Whether `new` is the same rule as `old` (Neutron's SecurityGroupRuleExists): protocols
/// compare by number, prefixes by the network they name.
pub fn same_rule(new: &ValidRule, old: &SecurityGroupRule) -> bool {
    new.direction == old.direction
        && new.ethertype == old.ethertype
        && new.protocol.as_deref().and_then(protocol_number)
            == old.protocol.as_deref().and_then(protocol_number)
        && new.port_range_min == old.port_range_min
        && new.port_range_max == old.port_range_max
        && normal_prefix(new.remote_ip_prefix) == normal_prefix(old.remote_ip_prefix)
        && new.remote_group_id == old.remote_group_id
}

/// A stored rule as the host side wants it.
pub fn to_spec(r: &SecurityGroupRule) -> RuleSpec {
    let ethertype = if r.ethertype == "IPv6" {
        EtherType::IPv6
    } else {
        EtherType::IPv4
    };
    let protocol = r
        .protocol
        .as_deref()
        .and_then(protocol_number)
        .map(|n| match n {
            TCP => Protocol::Tcp,
            UDP => Protocol::Udp,
            // Neutron's "icmp" on an IPv6 rule means ICMPv6.
            ICMP if ethertype == EtherType::IPv6 => Protocol::Icmpv6,
            ICMP => Protocol::Icmp,
            ICMPV6 => Protocol::Icmpv6,
            n => Protocol::Number(n),
        });
    let remote = match (&r.remote_group_id, normal_prefix(r.remote_ip_prefix)) {
        (Some(g), _) => Remote::Group(g.clone()),
        (None, Some(p)) => Remote::Prefix(p),
        (None, None) => Remote::Any,
    };
    RuleSpec {
        id: r.id.clone(),
        direction: if r.direction == "egress" {
            Direction::Egress
        } else {
            Direction::Ingress
        },
        ethertype,
        protocol,
        port_range_min: r.port_range_min,
        port_range_max: r.port_range_max,
        remote,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(dir: &str, proto: Option<&str>, min: Option<i64>, max: Option<i64>) -> RuleRequest {
        RuleRequest {
            direction: Some(dir.into()),
            protocol: proto.map(Into::into),
            port_range_min: min,
            port_range_max: max,
            ..RuleRequest::default()
        }
    }

    fn kind(r: &RuleRequest) -> &'static str {
        validate(r).unwrap_err().kind
    }

    #[test]
    fn protocols_by_name_or_number() {
        let ok = validate(&req("ingress", Some("TCP"), Some(22), Some(22))).unwrap();
        assert_eq!(ok.protocol.as_deref(), Some("tcp"));
        assert_eq!(ok.ethertype, "IPv4");
        assert_eq!(
            validate(&req("egress", Some("132"), None, None))
                .unwrap()
                .protocol
                .as_deref(),
            Some("132")
        );
        assert_eq!(
            validate(&req("egress", Some("any"), None, None))
                .unwrap()
                .protocol,
            None
        );
        assert_eq!(
            kind(&req("egress", Some("256"), None, None)),
            "SecurityGroupRuleInvalidProtocol"
        );
        assert_eq!(
            kind(&req("egress", Some("bogus"), None, None)),
            "SecurityGroupRuleInvalidProtocol"
        );
        assert_eq!(kind(&req("sideways", None, None, None)), "InvalidInput");
    }

    #[test]
    fn port_ranges_and_icmp_fields() {
        assert_eq!(
            kind(&req("ingress", Some("tcp"), Some(90), Some(80))),
            "SecurityGroupInvalidPortRange"
        );
        assert_eq!(
            kind(&req("ingress", Some("tcp"), Some(80), None)),
            "SecurityGroupInvalidPortRange"
        );
        assert_eq!(
            kind(&req("ingress", Some("udp"), Some(0), Some(10))),
            "SecurityGroupInvalidPortValue"
        );
        assert_eq!(
            kind(&req("ingress", Some("tcp"), Some(1), Some(65536))),
            "SecurityGroupInvalidPortValue"
        );
        assert_eq!(
            kind(&req("ingress", None, Some(1), Some(2))),
            "SecurityGroupProtocolRequiredWithPorts"
        );
        assert_eq!(
            kind(&req("ingress", Some("gre"), Some(1), Some(2))),
            "SecurityGroupInvalidProtocolForPort"
        );
        assert!(validate(&req("ingress", Some("icmp"), Some(8), Some(0))).is_ok());
        assert!(validate(&req("ingress", Some("icmp"), Some(8), None)).is_ok());
        assert_eq!(
            kind(&req("ingress", Some("icmp"), None, Some(0))),
            "SecurityGroupMissingIcmpType"
        );
        assert_eq!(
            kind(&req("ingress", Some("icmp"), Some(256), None)),
            "SecurityGroupInvalidIcmpValue"
        );
        assert_eq!(
            kind(&req("ingress", Some("ipv6-icmp"), None, None)),
            "SecurityGroupEthertypeConflictWithProtocol"
        );
    }

    #[test]
    fn remotes() {
        let mut r = req("ingress", None, None, None);
        r.remote_ip_prefix = Some("fd00::/64".into());
        assert_eq!(kind(&r), "SecurityGroupRuleParameterConflict");
        r.ethertype = Some("IPv6".into());
        assert!(validate(&r).is_ok());
        r.remote_group_id = Some("g".into());
        assert_eq!(kind(&r), "SecurityGroupRemoteGroupAndRemoteIpPrefix");
        let mut bare = req("ingress", None, None, None);
        bare.remote_ip_prefix = Some("10.1.2.3".into());
        assert_eq!(
            validate(&bare).unwrap().remote_ip_prefix,
            Some("10.1.2.3/32".parse().unwrap())
        );
        bare.remote_ip_prefix = Some("nonsense".into());
        assert_eq!(kind(&bare), "InvalidInput");
    }

    fn stored(v: &ValidRule) -> SecurityGroupRule {
        SecurityGroupRule {
            id: "r".into(),
            security_group_id: "g".into(),
            project_id: "p".into(),
            direction: v.direction.clone(),
            ethertype: v.ethertype.clone(),
            protocol: v.protocol.clone(),
            port_range_min: v.port_range_min,
            port_range_max: v.port_range_max,
            remote_ip_prefix: v.remote_ip_prefix,
            remote_group_id: v.remote_group_id.clone(),
            description: String::new(),
            created_at: crate::timestamp::Timestamp(0),
            updated_at: crate::timestamp::Timestamp(0),
            revision_number: 0,
        }
    }

    #[test]
    fn sameness_and_spec() {
        let a = validate(&req("ingress", Some("tcp"), Some(22), Some(22))).unwrap();
        let b = validate(&req("ingress", Some("6"), Some(22), Some(22))).unwrap();
        assert!(same_rule(&b, &stored(&a)));
        let c = validate(&req("ingress", Some("tcp"), Some(22), Some(23))).unwrap();
        assert!(!same_rule(&c, &stored(&a)));
        let mut any = req("egress", None, None, None);
        let plain = validate(&any).unwrap();
        any.remote_ip_prefix = Some("0.0.0.0/0".into());
        assert!(same_rule(&validate(&any).unwrap(), &stored(&plain)));

        let spec = to_spec(&stored(&a));
        assert_eq!(spec.protocol, Some(Protocol::Tcp));
        assert_eq!(spec.direction, Direction::Ingress);
        assert_eq!(spec.remote, Remote::Any);
        let mut v6 = req("ingress", Some("icmp"), None, None);
        v6.ethertype = Some("IPv6".into());
        assert_eq!(
            to_spec(&stored(&validate(&v6).unwrap())).protocol,
            Some(Protocol::Icmpv6)
        );
    }
}
