//! A site of boxes driven as an operator drives it: the rig ([`crate::rig`]) formed, the stock
//! `openstack` client pointed at the boxes' TCP listeners, and guests whose init takes a DHCP
//! lease and pings its peers, printing each result on the console. Shared by the site's
//! end-to-end test (tests/tests/site_cli.rs) and the demo (scripts/cluster-demo.sh).

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::openstack::Openstack;
use crate::rig::{BoxNode, Rig, API_PORT};
use crate::rootfs::build_rootfs;
use crate::{eventually, eventually_or};

/// The first three octets of the guests' subnet; guest `k` (1-based) is `.{10 * k}`.
pub const SUBNET: &str = "172.31.9";

/// Guest `k`'s fixed address on the site's network.
pub fn guest_ip(k: usize) -> String {
    format!("{SUBNET}.{}", 10 * k)
}

/// The guests' init: a DHCP lease through busybox udhcpc (printed with what it carried), then
/// one ping to each of the other `guests` addresses per round, each result a console line
/// `XB-PING <peer> <round> ok|lost`.
fn checks(guests: usize) -> String {
    let peers: Vec<String> = (1..=guests).map(guest_ip).collect();
    format!(
        r#"cat >/tmp/lease.sh <<'LEASE'
#!/bin/sh
case $1 in
    bound|renew)
        ip -4 addr add "$ip/${{mask:-24}}" dev "$interface"
        [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
        echo "XB-LEASE ip=$ip router=$router mtu=$mtu"
        ;;
esac
exit 0
LEASE
chmod +x /tmp/lease.sh
ip link set eth0 up
udhcpc -i eth0 -n -q -O mtu -t 30 -T 3 -s /tmp/lease.sh
me=$(ip -4 -o addr show dev eth0)
n=0
while [ $n -lt 900 ]; do
    for peer in {peers}; do
        case "$me" in *" $peer/"*) continue ;; esac
        if ping -c 1 -W 1 $peer >/dev/null 2>&1; then
            echo "XB-PING $peer $n ok"
        else
            echo "XB-PING $peer $n lost"
        fi
    done
    sleep 1
    n=$((n + 1))
done
"#,
        peers = peers.join(" ")
    )
}

/// A formed site, its root disk for the guests, and an admin's client per box.
pub struct Site {
    pub rig: Rig,
    /// The guests' root disk (busybox and [`checks`]), to upload as an image.
    pub rootfs: PathBuf,
    /// The admin's `openstack` pointed at box `i + 1`.
    clients: Vec<Openstack>,
    _work: tempfile::TempDir,
}

impl Site {
    /// Forms a site of `boxes` boxes whose guests (up to `guests` of them) ping each other.
    pub fn form(boxes: usize, guests: usize) -> Site {
        let work = tempfile::tempdir().expect("a work directory");
        let rootfs = build_rootfs(work.path(), &checks(guests), 16);
        let rig = Rig::site(boxes);
        // The first box bootstrapped the site's admin with a password of its own making.
        let password = std::fs::read_to_string(rig.boxes[0].state_dir().join("admin-password"))
            .expect("box 1 wrote the admin's password")
            .trim()
            .to_owned();
        let clients = rig
            .boxes
            .iter()
            .map(|b| {
                // Each box's listener is on the underlay, so it speaks TLS with the
                // certificate the box made at its first start.
                let url = format!("https://{}:{API_PORT}/identity/v3", b.addr);
                Openstack::new(&url, "admin", &password, "admin").with_cacert(b.tls_cert())
            })
            .collect();
        Site {
            rig,
            rootfs,
            clients,
            _work: work,
        }
    }

    /// The admin's client pointed at box `i` (1-based).
    pub fn cli(&self, i: usize) -> &Openstack {
        &self.clients[i - 1]
    }

    pub fn box_node(&self, i: usize) -> &BoxNode {
        &self.rig.boxes[i - 1]
    }

    /// Uploads the guests' root disk through box `via` as image `name` and waits until the
    /// site calls it active (two boxes hold verified copies); returns its id.
    pub fn upload_image(&self, via: usize, name: &str) -> String {
        let cli = self.cli(via);
        let image = cli.json(&[
            "image",
            "create",
            "--file",
            &self.rootfs.display().to_string(),
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            name,
        ]);
        let id = image["id"].as_str().expect("an image id").to_owned();
        eventually(120, &format!("image {name} active"), || {
            (cli.json(&["image", "show", &id])["status"] == "active").then_some(())
        });
        id
    }

    /// Through box `via`: network `xnet` and its subnet `xsub` on [`SUBNET`], with DHCP.
    pub fn network(&self, via: usize) -> (Value, Value) {
        let cli = self.cli(via);
        let net = cli.json(&["network", "create", "xnet"]);
        let subnet = cli.json(&[
            "subnet",
            "create",
            "--network",
            "xnet",
            "--subnet-range",
            &format!("{SUBNET}.0/24"),
            "xsub",
        ]);
        (net, subnet)
    }

    /// Through box `via`: flavor `xb` (128 MiB, one vCPU, 1 GiB), which [`Site::guest`]
    /// boots its servers with.
    pub fn flavor(&self, via: usize) -> Value {
        self.cli(via).json(&[
            "flavor", "create", "--ram", "128", "--vcpus", "1", "--disk", "1", "xb",
        ])
    }

    /// Through box `via`: anti-affinity server group `name`; the group and the scheduler
    /// hint that puts a server in it.
    pub fn anti_affinity_group(&self, via: usize, name: &str) -> (Value, String) {
        let group = self.cli(via).json(&[
            "server",
            "group",
            "create",
            "--policy",
            "anti-affinity",
            name,
        ]);
        let hint = format!("group={}", group["id"].as_str().expect("a group id"));
        (group, hint)
    }

    /// Through box `via`: guest `k`'s port `p<k>` on `xnet` at [`guest_ip`]`(k)` in
    /// `security_group`, and server `g<k>` on it (flavor `xb`, `image`, scheduler `hint`s);
    /// returns the port and the server's id.
    pub fn guest(
        &self,
        via: usize,
        k: usize,
        security_group: &str,
        image: &str,
        hints: &[&str],
    ) -> (Value, String) {
        self.guest_with(via, k, security_group, image, hints, &[])
    }

    /// [`Site::guest`] with `create_args` added to `server create` (`--property k=v`,
    /// `--availability-zone nova:<box>`).
    pub fn guest_with(
        &self,
        via: usize,
        k: usize,
        security_group: &str,
        image: &str,
        hints: &[&str],
        create_args: &[&str],
    ) -> (Value, String) {
        let cli = self.cli(via);
        let port = cli.json(&[
            "port",
            "create",
            "--network",
            "xnet",
            "--fixed-ip",
            &format!("subnet=xsub,ip-address={}", guest_ip(k)),
            "--security-group",
            security_group,
            &format!("p{k}"),
        ]);
        let port_id = port["id"].as_str().expect("a port id").to_owned();
        let name = format!("g{k}");
        let mut args = vec![
            "server", "create", "--flavor", "xb", "--image", image, "--port", &port_id,
        ];
        for h in hints {
            args.extend(["--hint", h]);
        }
        args.extend(create_args);
        args.push(&name);
        let server = cli.json(&args);
        let id = server["id"].as_str().expect("a server id").to_owned();
        (port, id)
    }

    /// Server `id` as the compute API shows it to the admin, through box 2's unix socket.
    pub fn server(&self, id: &str) -> Value {
        let b = &self.rig.boxes[self.rig.boxes.len().min(2) - 1];
        let (code, body) = b.api("GET", &format!("/compute/v2.1/servers/{id}"), None, "2.53");
        assert_eq!(code, 200, "server {id}: {body}");
        body["server"].clone()
    }

    /// Waits until server `id` is ACTIVE and returns the box it runs on; an ERROR panics with
    /// every box's log.
    pub fn wait_active(&self, id: &str, secs: u64) -> String {
        eventually(secs, &format!("server {id} ACTIVE"), || {
            let s = self.server(id);
            if s["status"] == "ERROR" {
                for b in &self.rig.boxes {
                    eprintln!("---- {} ----\n{}", b.name, b.log("outpostd"));
                }
                panic!("server {id} went to ERROR: {s:#}");
            }
            (s["status"] == "ACTIVE")
                .then(|| s["OS-EXT-SRV-ATTR:host"].as_str().map(str::to_owned))
                .flatten()
        })
    }

    /// The guest's console, whatever box runs it (box 1 forwards to the owner).
    pub fn console(&self, id: &str) -> String {
        let (_, body) = self.rig.boxes[0].api(
            "POST",
            &format!("/compute/v2.1/servers/{id}/action"),
            Some(&json!({"os-getConsoleOutput": {"length": null}})),
            "2.53",
        );
        body["output"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits for the guest's lease line and returns it (`XB-LEASE ip=... router=... mtu=...`).
    pub fn wait_lease(&self, id: &str, secs: u64) -> String {
        let lease = |console: &str| {
            console
                .lines()
                .find_map(|l| l.trim().strip_prefix("XB-LEASE ").map(str::to_owned))
        };
        eventually_or(
            secs,
            &format!("{id} leased an address"),
            || lease(&self.console(id)),
            || {
                let console = self.console(id);
                let tail: Vec<&str> = console.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("; its console ends:\n{}", tail.join("\n"))
            },
        )
    }

    /// Waits until the guest's console shows `k` pings in a row to `peer`, numbered after
    /// round `after`, all answered (`ok`) or all lost; returns the last one's round.
    pub fn wait_pings(
        &self,
        id: &str,
        peer: &str,
        after: u64,
        ok: bool,
        k: usize,
        secs: u64,
    ) -> u64 {
        let what = format!(
            "{k} pings in a row from {id} to {peer} {}",
            if ok { "answered" } else { "lost" }
        );
        eventually(secs, &what, || {
            let seen: Vec<(u64, bool)> = pings(&self.console(id), peer)
                .into_iter()
                .filter(|(n, _)| *n > after)
                .collect();
            let run = seen.iter().rev().take_while(|(_, r)| *r == ok).count();
            (run >= k).then(|| seen.last().map_or(after, |(n, _)| *n))
        })
    }
}

/// The numbered ping results to `peer` on a console: (round, answered).
pub fn pings(console: &str, peer: &str) -> Vec<(u64, bool)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("XB-PING ")?;
            let mut words = rest.split(' ');
            if words.next()? != peer {
                return None;
            }
            let n = words.next()?.parse().ok()?;
            Some((n, words.next()? == "ok"))
        })
        .collect()
}

/// Our interfaces in box `b`'s namespace (bridges, taps, VXLAN devices).
pub fn interfaces(b: &BoxNode) -> Vec<String> {
    let out = b.exec(&["ip", "-o", "link", "show"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        .filter(|n| n.starts_with("opb") || n.starts_with("opt") || n.starts_with("opx"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_are_read_per_peer_and_round() {
        let console = "boot\nXB-PING 172.31.9.20 0 ok\nXB-PING 172.31.9.30 0 lost\n\
                       XB-PING 172.31.9.20 1 lost\nXB-PING 172.31.9.2";
        assert_eq!(pings(console, "172.31.9.20"), vec![(0, true), (1, false)]);
        assert_eq!(pings(console, "172.31.9.30"), vec![(0, false)]);
        assert!(pings(console, "172.31.9.10").is_empty());
    }
}
