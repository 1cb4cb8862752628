//! The image replicator (docs/cluster.md, "Images across boxes"): every [`PASS_EVERY`] this
//! box reads the site's members (how many copies make an image active, which boxes are up to
//! pull from) and pulls, through the shared token bucket, a verified copy of every image
//! whose data it lacks, images still `saving` (waiting for their second copy) first. Files of
//! images deleted meanwhile are removed. Each pass reads everything again, so a pull that
//! failed (a box down, a transfer refused) is simply tried again on the next one.
//!
//! Runs as one task on the daemon's runtime; the pulls (blocking file and HTTP work) run on
//! its blocking pool, one pass at a time. It stops with the runtime.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::Membership;
use crate::client::Endpoint;
use crate::image::pull::{Peer, PullError, Puller};
use crate::image::ImageStatus;

/// How often the replicator looks.
pub const PASS_EVERY: Duration = Duration::from_secs(2);

/// Runs until the runtime stops. `api_port` is where every box serves the API on its
/// underlay address (the boxes of a site share their configuration's shape).
pub async fn run(membership: Membership, puller: Arc<Puller>, api_port: u16) {
    loop {
        match membership.boxes().await {
            Ok(boxes) => {
                puller.rule().set_boxes(boxes.len());
                let peers = boxes
                    .iter()
                    .filter(|b| b.is_up() && b.record.name != membership.name())
                    .filter_map(|b| {
                        let ip: IpAddr = b.record.underlay.parse().ok()?;
                        let addr = SocketAddr::new(ip, api_port);
                        let cert = b.record.api_cert_sha256.as_deref();
                        match Endpoint::of_box(addr, cert) {
                            Ok(api) => Some(Peer {
                                name: b.record.name.clone(),
                                api,
                            }),
                            Err(e) => {
                                tracing::warn!("image replicator: box {}: {e}", b.record.name);
                                None
                            }
                        }
                    })
                    .collect();
                puller.set_peers(peers);
                let p = puller.clone();
                match tokio::task::spawn_blocking(move || pass(&p)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("image replicator: {e}"),
                    Err(e) => tracing::error!("image replicator: a pass failed: {e}"),
                }
            }
            Err(e) => tracing::warn!("image replicator: cannot read the site's boxes: {e}"),
        }
        tokio::time::sleep(PASS_EVERY).await;
    }
}

/// One look at every image. A failed pull is logged and left to the next pass.
pub fn pass(puller: &Puller) -> Result<(), PullError> {
    let mut images = puller.records().images()?;
    images.retain(|i| {
        i.os_hash_value.is_some() && (i.status == ImageStatus::Saving || i.status.has_stored_data())
    });
    // Saving first: those wait for a copy to become usable at all.
    images.sort_by_key(|i| (i.status != ImageStatus::Saving, i.created_at));
    for image in &images {
        if let Err(e) = puller.ensure(&image.id, true) {
            tracing::warn!("image {}: no copy on this box yet: {e}", image.id);
        }
    }
    for id in puller.images().list_ids()? {
        if puller.records().image(&id)?.is_none() {
            puller.images().delete_image(&id)?;
            tracing::info!("image {id}: deleted; this box's copy is removed");
        }
    }
    Ok(())
}
