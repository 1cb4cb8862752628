//! A single etcd member on loopback, for the stores' tests and the site benchmark: Debian's
//! `etcd` with its data and log in a directory the caller owns (and removes).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A loopback port nobody listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a one-member etcd with its data and `etcd.log` in `dir`; returns the process and its
/// client URL. The caller kills it; the member may take a moment to answer.
pub fn spawn_etcd(dir: &Path) -> std::io::Result<(Child, String)> {
    let (client, peer) = (free_port()?, free_port()?);
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.join("etcd.log"))?;
    let child = Command::new("etcd")
        .arg("--name=loopback")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=loopback={peer_url}"))
        .arg("--logger=zap")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok((child, url))
}
