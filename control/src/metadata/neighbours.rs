//! The host's IPv4 neighbour table, as the kernel shows it in `/proc/net/arp`: which MAC an
//! address on a bridge resolved to. Read once per metadata request, after the TCP handshake
//! (which made the host resolve the guest's address to send its SYN-ACK).

use outpost_netdev::MacAddr;
use std::net::Ipv4Addr;

const ARP_TABLE: &str = "/proc/net/arp";
/// `ATF_COM` (include/uapi/linux/if_arp.h): the entry is resolved.
const ATF_COM: u32 = 0x2;

/// The resolved MAC of `ip` on `device` in `table` (the text of `/proc/net/arp`). Pure.
pub fn find(table: &str, device: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    table.lines().skip(1).find_map(|line| {
        // IP address, HW type, Flags, HW address, Mask, Device.
        let f: Vec<&str> = line.split_whitespace().collect();
        let [addr, _, flags, mac, _, dev] = f.as_slice() else {
            return None;
        };
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        (*dev == device && addr.parse() == Ok(ip) && flags & ATF_COM != 0)
            .then(|| mac.parse().ok())
            .flatten()
    })
}

/// The resolved MAC of `ip` on `device` now, if the kernel has one.
pub fn lookup(device: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    let table = std::fs::read_to_string(ARP_TABLE).ok()?;
    find(&table, device, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
10.0.0.5         0x1         0x2         fa:16:3e:00:00:01     *        opbn1
10.0.0.5         0x1         0x2         fa:16:3e:00:00:09     *        opbn2
10.0.0.6         0x1         0x0         00:00:00:00:00:00     *        opbn1
";

    #[test]
    fn the_entry_of_the_address_on_that_bridge_only_when_resolved() {
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(
            find(TABLE, "opbn1", ip("10.0.0.5")),
            Some("fa:16:3e:00:00:01".parse().unwrap())
        );
        // The same address on another network's bridge is another guest.
        assert_eq!(
            find(TABLE, "opbn2", ip("10.0.0.5")),
            Some("fa:16:3e:00:00:09".parse().unwrap())
        );
        assert_eq!(find(TABLE, "opbn1", ip("10.0.0.6")), None);
        assert_eq!(find(TABLE, "opbn3", ip("10.0.0.5")), None);
        assert_eq!(find("garbage\nmore garbage", "opbn1", ip("10.0.0.5")), None);
    }
}
