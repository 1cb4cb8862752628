//! The HTTP face of outpostd: one router for both listeners (the trusted unix socket and the
//! TCP address for OpenStack clients), devstack-style prefixes per service.
//!
//! A request goes: [`server`] reads it → [`handle`] finds its [`routes::Route`], checks the
//! caller ([`auth`]), the caller's right to the route ([`policy`]) and the microversion
//! ([`microversion`]) → the route's handler parses it, calls one domain function and renders
//! the result → [`fault`] turns any error into the calling service's error shape. Handlers are synchronous and run on tokio's blocking pool,
//! since SQLite and argon2 block.

mod auth;
pub mod body;
mod compute;
pub mod console;
pub mod fault;
mod forward;
mod identity;
mod image;
pub mod microversion;
mod network;
pub mod policy;
mod quotas;
pub mod request;
pub mod routes;
pub mod server;
mod versions;
mod volume;

pub use fault::Fault;
pub use request::{Call, RawRequest, Reply, ReplyBody};
pub use routes::{Router, ServiceKind};

use crate::compute::servers::Fleet;
use crate::context::RequestContext;
use crate::network::NetworkService;
use crate::store::Doors;
use outpost_image_store::{ImageStore, VolumeStore};
use std::sync::Arc;
use std::time::Duration;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The unix socket: its peer passed the socket's file permissions and is trusted as admin.
    Unix,
    /// The TCP listener: every request but discovery and login needs a token.
    Tcp,
}

/// Everything a request may need, shared by all requests.
pub struct ApiState {
    /// Every domain's door to its state.
    pub doors: Doors,
    /// Base of every URL the API hands out (links, catalog, version documents); no trailing
    /// slash.
    pub base_url: String,
    pub region: String,
    pub token_ttl: Duration,
    /// Who requests on the unix socket act as.
    pub socket_context: RequestContext,
    pub router: Router,
    /// Who may call which route: the default table with the deployment's overrides.
    pub policy: policy::Policy,
    /// The servers this daemon runs.
    pub fleet: Arc<Fleet>,
    /// Image data (Glance).
    pub images: Arc<ImageStore>,
    /// Volume, snapshot and server disk files (Cinder, Nova).
    pub volumes: Arc<VolumeStore>,
    /// Neutron networking: its state and the change notifier the host side watches.
    pub network: Arc<NetworkService>,
    /// The boxes this daemon answers for (itself, or its cluster's members).
    pub site: Arc<crate::cluster::site::Site>,
    /// How many verified copies of an image's data make it active, and this box's name
    /// among their holders.
    pub copy_rule: Arc<crate::image::CopyRule>,
    /// In a site: how this box fetches image data it lacks from the others.
    pub puller: Option<Arc<crate::image::pull::Puller>>,
    /// Limits on password logins (lockout, throttled addresses, concurrent checks).
    pub logins: crate::identity::logins::LoginGuard,
    /// In a site: moves a dead box's server for an admin's `evacuate`. None on a box alone,
    /// whose one box is never down while it answers.
    pub evacuator: Option<Arc<crate::cluster::evacuation::Evacuator>>,
}

impl ApiState {
    /// Keystone's door.
    pub fn identity(&self) -> &dyn crate::identity::store::IdentityStore {
        self.doors.identity.as_ref()
    }

    /// The flavors' door.
    pub fn flavors(&self) -> &dyn crate::compute::flavors::FlavorStore {
        self.doors.flavors.as_ref()
    }

    /// The key pairs' door.
    pub fn keypairs(&self) -> &dyn crate::compute::keypairs::KeyPairStore {
        self.doors.keypairs.as_ref()
    }

    /// Glance's door to the image records (the bytes are in `images`).
    pub fn image_records(&self) -> &dyn crate::image::ImageRecordStore {
        self.doors.images.as_ref()
    }

    /// Cinder's door to the volume records (the bytes are in `volumes`).
    pub fn volume_records(&self) -> &dyn crate::volume::VolumeRecordStore {
        self.doors.volumes.as_ref()
    }

    /// The database and stores, for work that outlives a request (volume copies).
    pub fn volume_stores(&self) -> crate::volume::Stores {
        self.fleet.stores()
    }
}

/// Handles one request from start to finish; never fails (errors become error replies).
pub fn handle(state: &ApiState, transport: Transport, raw: RawRequest) -> Reply {
    handle_streaming(state, transport, raw, None)
}

/// [`handle`] for a route that streams its body: `upload` is the unread body (and
/// `raw.body` empty).
pub fn handle_streaming(
    state: &ApiState,
    transport: Transport,
    raw: RawRequest,
    upload: Option<request::UploadBody>,
) -> Reply {
    let request_id = crate::random::uuid()
        .map(|u| format!("req-{u}"))
        .unwrap_or_else(|_| "req-unknown".to_owned());
    let (service, mut reply) = routes::dispatch(state, transport, raw, upload);
    reply
        .headers
        .push(("x-openstack-request-id".into(), request_id.clone()));
    if service == Some(ServiceKind::Compute) {
        reply
            .headers
            .push(("x-compute-request-id".into(), request_id));
    }
    reply
}
