//! Change notices for the reconcilers (docs/cluster.md, "Watches"): a watch on one key prefix
//! that bumps a counter whenever anything under it changes. A reconciler waits on the
//! counter (or its repair timer) and then reads what it needs: notices coalesce, and a
//! notice missed while the watch was re-established costs nothing because the reconciler
//! reads the whole state anyway.

use std::time::Duration;

use etcd_client::WatchOptions;
use tokio::sync::watch;

use super::etcd::Etcd;

/// How long a broken watch waits before it is made again.
const RETRY: Duration = Duration::from_secs(1);

/// Watches `prefix` for as long as the returned receiver lives; its value counts the
/// changes seen (and one per re-established watch, since changes may have been missed).
pub fn changes(etcd: Etcd, prefix: String) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        while !tx.is_closed() {
            if let Err(e) = follow(&etcd, &prefix, &tx).await {
                tracing::debug!("cluster: the watch on {prefix} ended: {e}; making it again");
            }
            tx.send_modify(|n| *n += 1);
            tokio::time::sleep(RETRY).await;
        }
    });
    rx
}

async fn follow(
    etcd: &Etcd,
    prefix: &str,
    tx: &watch::Sender<u64>,
) -> Result<(), super::ClusterError> {
    let (i, mut client) = etcd.client().await?;
    let watched = client
        .watch(prefix, Some(WatchOptions::new().with_prefix()))
        .await;
    let mut stream = match watched {
        Ok(w) => w,
        Err(e) => {
            // The next attempt tries another member.
            etcd.failed(i).await;
            return Err(e.into());
        }
    };
    while let Some(resp) = stream.message().await? {
        if resp.canceled() {
            return Ok(());
        }
        if !resp.events().is_empty() {
            tx.send_modify(|n| *n += 1);
        }
        if tx.is_closed() {
            return Ok(());
        }
    }
    Ok(())
}
