//! A network namespace holding a tap for one guest, removed (with the tap) on drop.

use crate::sh;

pub struct TapNetns {
    pub netns: String,
    pub tap: String,
    pub host_ip: String,
    pub guest_ip: String,
}

impl TapNetns {
    /// `subnet` picks 172.30.<subnet>.0/24: host .1, guest .2.
    pub fn new(tag: &str, subnet: u8) -> TapNetns {
        let netns = format!("ost-{tag}-{}", std::process::id());
        let tap = format!("tap{subnet}");
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &netns])
            .status();
        sh(&format!("ip netns add {netns}"));
        let t = TapNetns {
            host_ip: format!("172.30.{subnet}.1"),
            guest_ip: format!("172.30.{subnet}.2"),
            netns,
            tap,
        };
        sh(&format!(
            "ip -n {ns} link set lo up && ip -n {ns} tuntap add dev {tap} mode tap vnet_hdr && \
             ip -n {ns} addr add {ip}/24 dev {tap} && ip -n {ns} link set {tap} up",
            ns = t.netns,
            tap = t.tap,
            ip = t.host_ip
        ));
        t
    }

    /// Runs `cmd` inside the namespace.
    pub fn exec(&self, cmd: &str) -> std::process::Output {
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.netns, "sh", "-c", cmd])
            .output()
            .expect("ip netns exec runs")
    }
}

impl Drop for TapNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}
