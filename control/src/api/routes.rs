//! The route table: every (method, path) outpostd serves, the service it belongs to (which
//! decides the error shape and microversions), whether it needs a token, and its handler.
//! `control/api/openapi.yaml` documents exactly these; `tests/openapi_contract.rs` checks it.
//!
//! Routing uses `matchit` (the radix-tree router under axum, well kept, no framework around
//! it): the table stays plain data that the contract test can read, and dispatch, auth and
//! error shapes stay in our hands rather than spread over tower layers.

use super::request::{parse_query, percent_decode, Call, RawRequest, Reply, UploadBody};
use super::{
    auth, compute, fault, identity, image, microversion, network, quotas, versions, volume,
};
use super::{ApiState, Fault, Transport};
use hyper::{Method, StatusCode};

pub type Handler = fn(&Call<'_>) -> Result<Reply, Fault>;

/// The OpenStack service a route belongs to, by its path prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Identity,
    Compute,
    Image,
    Volume,
    Network,
}

impl ServiceKind {
    const PREFIXES: [(&'static str, ServiceKind); 5] = [
        ("/identity", ServiceKind::Identity),
        ("/compute", ServiceKind::Compute),
        ("/image", ServiceKind::Image),
        ("/volume", ServiceKind::Volume),
        ("/network", ServiceKind::Network),
    ];

    pub fn of_path(path: &str) -> Option<ServiceKind> {
        Self::PREFIXES.iter().find_map(|&(prefix, kind)| {
            let rest = path.strip_prefix(prefix)?;
            (rest.is_empty() || rest.starts_with('/')).then_some(kind)
        })
    }

    /// The microversion range that applies to `path`: only under a service's versioned
    /// prefix, not on its unversioned discovery document.
    fn microversions(path: &str) -> Option<&'static microversion::Microversions> {
        let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
        if under("/compute/v2.1") {
            Some(&microversion::COMPUTE)
        } else if under("/volume/v3") {
            Some(&microversion::VOLUME)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Discovery documents and login.
    Public,
    /// Needs a caller: a token on TCP, or the unix socket.
    Caller,
}

/// How a route's request body reaches its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Read whole before the handler runs, up to `server::MAX_BODY_BYTES`.
    Buffered,
    /// Handed to the handler unread ([`Call::body_reader`]), any size: image uploads.
    Streamed,
}

pub struct Route {
    pub method: Method,
    /// matchit syntax, which is also OpenAPI's: `/compute/v2.1/flavors/{flavor_id}`.
    pub path: &'static str,
    pub service: ServiceKind,
    pub access: Access,
    pub handler: Handler,
    pub body: BodyKind,
}

const fn route(
    method: Method,
    path: &'static str,
    service: ServiceKind,
    access: Access,
    handler: Handler,
) -> Route {
    Route {
        method,
        path,
        service,
        access,
        handler,
        body: BodyKind::Buffered,
    }
}

/// A route whose body streams to its handler.
const fn upload(
    method: Method,
    path: &'static str,
    service: ServiceKind,
    handler: Handler,
) -> Route {
    Route {
        method,
        path,
        service,
        access: Access::Caller,
        handler,
        body: BodyKind::Streamed,
    }
}

use Access::{Caller, Public};
use ServiceKind::{Compute, Identity, Image, Network, Volume};

/// Everything served. Images, volumes and servers add their rows here.
#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    // Discovery: unversioned documents and each API's own version document.
    route(Method::GET, "/identity", Identity, Public, versions::identity_versions),
    route(Method::GET, "/identity/v3", Identity, Public, versions::identity_v3),
    route(Method::GET, "/compute", Compute, Public, versions::compute_versions),
    route(Method::GET, "/compute/v2.1", Compute, Public, versions::compute_v21),
    route(Method::GET, "/image", Image, Public, versions::image_versions),
    route(Method::GET, "/image/versions", Image, Public, versions::image_versions_list),
    route(Method::GET, "/volume", Volume, Public, versions::volume_versions),
    route(Method::GET, "/volume/v3", Volume, Public, versions::volume_v3),
    route(Method::GET, "/network", Network, Public, versions::network_versions),
    route(Method::GET, "/network/v2.0", Network, Public, versions::network_v2),
    // Keystone.
    route(Method::POST, "/identity/v3/auth/tokens", Identity, Public, identity::auth::issue),
    route(Method::GET, "/identity/v3/auth/tokens", Identity, Caller, identity::auth::validate),
    route(Method::HEAD, "/identity/v3/auth/tokens", Identity, Caller, identity::auth::check),
    route(Method::DELETE, "/identity/v3/auth/tokens", Identity, Caller, identity::auth::revoke),
    route(Method::GET, "/identity/v3/auth/catalog", Identity, Caller, identity::auth::catalog),
    route(Method::GET, "/identity/v3/domains/{domain_id}", Identity, Caller, identity::directory::show_domain),
    route(Method::GET, "/identity/v3/projects", Identity, Caller, identity::directory::list_projects),
    route(Method::POST, "/identity/v3/projects", Identity, Caller, identity::directory::create_project),
    route(Method::GET, "/identity/v3/projects/{project_id}", Identity, Caller, identity::directory::show_project),
    route(Method::GET, "/identity/v3/users", Identity, Caller, identity::directory::list_users),
    route(Method::POST, "/identity/v3/users", Identity, Caller, identity::directory::create_user),
    route(Method::GET, "/identity/v3/users/{user_id}", Identity, Caller, identity::directory::show_user),
    route(Method::GET, "/identity/v3/users/{user_id}/projects", Identity, Caller, identity::directory::list_user_projects),
    route(Method::GET, "/identity/v3/roles", Identity, Caller, identity::directory::list_roles),
    route(Method::POST, "/identity/v3/roles", Identity, Caller, identity::directory::create_role),
    route(Method::GET, "/identity/v3/roles/{role_id}", Identity, Caller, identity::directory::show_role),
    route(Method::PUT, "/identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", Identity, Caller, identity::directory::grant_role),
    route(Method::DELETE, "/identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", Identity, Caller, identity::directory::revoke_role),
    // Nova flavors.
    route(Method::GET, "/compute/v2.1/flavors", Compute, Caller, compute::flavors::list),
    route(Method::POST, "/compute/v2.1/flavors", Compute, Caller, compute::flavors::create),
    route(Method::GET, "/compute/v2.1/flavors/detail", Compute, Caller, compute::flavors::list_detail),
    route(Method::GET, "/compute/v2.1/flavors/{flavor_id}", Compute, Caller, compute::flavors::show),
    route(Method::PUT, "/compute/v2.1/flavors/{flavor_id}", Compute, Caller, compute::flavors::update),
    route(Method::DELETE, "/compute/v2.1/flavors/{flavor_id}", Compute, Caller, compute::flavors::delete),
    route(Method::GET, "/compute/v2.1/flavors/{flavor_id}/os-extra_specs", Compute, Caller, compute::extra_specs::list),
    route(Method::POST, "/compute/v2.1/flavors/{flavor_id}/os-extra_specs", Compute, Caller, compute::extra_specs::create),
    route(Method::GET, "/compute/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", Compute, Caller, compute::extra_specs::show),
    route(Method::PUT, "/compute/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", Compute, Caller, compute::extra_specs::update),
    route(Method::DELETE, "/compute/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", Compute, Caller, compute::extra_specs::delete),
    // Nova key pairs.
    route(Method::GET, "/compute/v2.1/os-keypairs", Compute, Caller, compute::keypairs::list),
    route(Method::POST, "/compute/v2.1/os-keypairs", Compute, Caller, compute::keypairs::create),
    route(Method::GET, "/compute/v2.1/os-keypairs/{keypair_name}", Compute, Caller, compute::keypairs::show),
    route(Method::DELETE, "/compute/v2.1/os-keypairs/{keypair_name}", Compute, Caller, compute::keypairs::delete),
    // Nova quotas and limits.
    route(Method::GET, "/compute/v2.1/os-quota-sets/{project_id}", Compute, Caller, quotas::nova_show),
    route(Method::PUT, "/compute/v2.1/os-quota-sets/{project_id}", Compute, Caller, quotas::nova_update),
    route(Method::DELETE, "/compute/v2.1/os-quota-sets/{project_id}", Compute, Caller, quotas::nova_delete),
    route(Method::GET, "/compute/v2.1/os-quota-sets/{project_id}/detail", Compute, Caller, quotas::nova_detail),
    route(Method::GET, "/compute/v2.1/os-quota-sets/{project_id}/defaults", Compute, Caller, quotas::nova_defaults),
    route(Method::GET, "/compute/v2.1/limits", Compute, Caller, quotas::nova_limits),
    // Nova servers.
    route(Method::GET, "/compute/v2.1/os-services", Compute, Caller, compute::services::list),
    route(Method::PUT, "/compute/v2.1/os-services/{service_id}", Compute, Caller, compute::services::update),
    route(Method::GET, "/compute/v2.1/os-hypervisors", Compute, Caller, compute::services::hypervisors),
    route(Method::GET, "/compute/v2.1/os-hypervisors/detail", Compute, Caller, compute::services::hypervisors_detail),
    route(Method::GET, "/compute/v2.1/os-hypervisors/{hypervisor_id}", Compute, Caller, compute::services::hypervisor),
    route(Method::GET, "/compute/v2.1/os-migrations", Compute, Caller, compute::migrations::list),
    route(Method::GET, "/compute/v2.1/os-aggregates", Compute, Caller, compute::aggregates::list),
    route(Method::POST, "/compute/v2.1/os-aggregates", Compute, Caller, compute::aggregates::create),
    route(Method::GET, "/compute/v2.1/os-aggregates/{aggregate_id}", Compute, Caller, compute::aggregates::show),
    route(Method::PUT, "/compute/v2.1/os-aggregates/{aggregate_id}", Compute, Caller, compute::aggregates::update),
    route(Method::DELETE, "/compute/v2.1/os-aggregates/{aggregate_id}", Compute, Caller, compute::aggregates::delete),
    route(Method::POST, "/compute/v2.1/os-aggregates/{aggregate_id}/action", Compute, Caller, compute::aggregates::action),
    route(Method::GET, "/compute/v2.1/os-availability-zone", Compute, Caller, compute::availability_zones::list),
    route(Method::GET, "/compute/v2.1/os-availability-zone/detail", Compute, Caller, compute::availability_zones::detail),
    route(Method::GET, "/compute/v2.1/os-server-groups", Compute, Caller, compute::server_groups::list),
    route(Method::POST, "/compute/v2.1/os-server-groups", Compute, Caller, compute::server_groups::create),
    route(Method::GET, "/compute/v2.1/os-server-groups/{server_group_id}", Compute, Caller, compute::server_groups::show),
    route(Method::DELETE, "/compute/v2.1/os-server-groups/{server_group_id}", Compute, Caller, compute::server_groups::delete),
    route(Method::GET, "/compute/v2.1/servers", Compute, Caller, compute::servers::list),
    route(Method::POST, "/compute/v2.1/servers", Compute, Caller, compute::servers::create),
    route(Method::GET, "/compute/v2.1/servers/detail", Compute, Caller, compute::servers::list_detail),
    route(Method::GET, "/compute/v2.1/servers/{server_id}", Compute, Caller, compute::servers::show),
    route(Method::PUT, "/compute/v2.1/servers/{server_id}", Compute, Caller, compute::servers::update),
    route(Method::DELETE, "/compute/v2.1/servers/{server_id}", Compute, Caller, compute::servers::delete),
    route(Method::POST, "/compute/v2.1/servers/{server_id}/action", Compute, Caller, compute::server_actions::action),
    route(Method::GET, "/compute/v2.1/servers/{server_id}/os-security-groups", Compute, Caller, compute::server_actions::security_groups),
    route(Method::GET, "/compute/v2.1/servers/{server_id}/ips", Compute, Caller, compute::server_ips::list),
    route(Method::GET, "/compute/v2.1/servers/{server_id}/ips/{network_label}", Compute, Caller, compute::server_ips::show),
    route(Method::POST, "/compute/v2.1/servers/{server_id}/remote-consoles", Compute, Caller, compute::remote_consoles::create),
    route(Method::GET, "/compute/v2.1/servers/{server_id}/os-volume_attachments", Compute, Caller, compute::volume_attachments::list),
    route(Method::POST, "/compute/v2.1/servers/{server_id}/os-volume_attachments", Compute, Caller, compute::volume_attachments::attach),
    route(Method::GET, "/compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", Compute, Caller, compute::volume_attachments::show),
    route(Method::DELETE, "/compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", Compute, Caller, compute::volume_attachments::detach),
    // Glance images.
    route(Method::GET, "/image/v2/images", Image, Caller, image::images::list),
    route(Method::POST, "/image/v2/images", Image, Caller, image::images::create),
    route(Method::GET, "/image/v2/images/{image_id}", Image, Caller, image::images::show),
    route(Method::PATCH, "/image/v2/images/{image_id}", Image, Caller, image::images::update),
    route(Method::DELETE, "/image/v2/images/{image_id}", Image, Caller, image::images::delete),
    upload(Method::PUT, "/image/v2/images/{image_id}/file", Image, image::data::upload),
    route(Method::GET, "/image/v2/images/{image_id}/file", Image, Caller, image::data::download),
    route(Method::POST, "/image/v2/images/{image_id}/actions/deactivate", Image, Caller, image::images::deactivate),
    route(Method::POST, "/image/v2/images/{image_id}/actions/reactivate", Image, Caller, image::images::reactivate),
    route(Method::PUT, "/image/v2/images/{image_id}/tags/{tag}", Image, Caller, image::images::add_tag),
    route(Method::DELETE, "/image/v2/images/{image_id}/tags/{tag}", Image, Caller, image::images::remove_tag),
    route(Method::GET, "/image/v2/schemas/image", Image, Caller, image::schemas::image),
    route(Method::GET, "/image/v2/images/{image_id}/members", Image, Caller, image::members::list),
    route(Method::POST, "/image/v2/images/{image_id}/members", Image, Caller, image::members::create),
    route(Method::GET, "/image/v2/images/{image_id}/members/{member_id}", Image, Caller, image::members::show),
    route(Method::PUT, "/image/v2/images/{image_id}/members/{member_id}", Image, Caller, image::members::update),
    route(Method::DELETE, "/image/v2/images/{image_id}/members/{member_id}", Image, Caller, image::members::delete),
    route(Method::GET, "/image/v2/schemas/images", Image, Caller, image::schemas::images),
    route(Method::GET, "/image/v2/schemas/member", Image, Caller, image::schemas::member),
    route(Method::GET, "/image/v2/schemas/members", Image, Caller, image::schemas::members),
    route(Method::GET, "/image/v2/schemas/metadefs/{kind}", Image, Caller, image::schemas::metadefs),
    route(Method::GET, "/image/v2/info/import", Image, Caller, image::info::import),
    // Cinder volumes, snapshots and types.
    route(Method::GET, "/volume/v3/{project_id}/volumes", Volume, Caller, volume::volumes::list),
    route(Method::POST, "/volume/v3/{project_id}/volumes", Volume, Caller, volume::volumes::create),
    route(Method::GET, "/volume/v3/{project_id}/volumes/detail", Volume, Caller, volume::volumes::list_detail),
    route(Method::GET, "/volume/v3/{project_id}/volumes/{volume_id}", Volume, Caller, volume::volumes::show),
    route(Method::PUT, "/volume/v3/{project_id}/volumes/{volume_id}", Volume, Caller, volume::volumes::update),
    route(Method::DELETE, "/volume/v3/{project_id}/volumes/{volume_id}", Volume, Caller, volume::volumes::delete),
    route(Method::POST, "/volume/v3/{project_id}/volumes/{volume_id}/action", Volume, Caller, volume::volumes::action),
    route(Method::GET, "/volume/v3/{project_id}/volumes/{volume_id}/metadata", Volume, Caller, volume::metadata::show),
    route(Method::POST, "/volume/v3/{project_id}/volumes/{volume_id}/metadata", Volume, Caller, volume::metadata::merge),
    route(Method::PUT, "/volume/v3/{project_id}/volumes/{volume_id}/metadata", Volume, Caller, volume::metadata::replace),
    route(Method::GET, "/volume/v3/{project_id}/volumes/{volume_id}/metadata/{key}", Volume, Caller, volume::metadata::show_key),
    route(Method::PUT, "/volume/v3/{project_id}/volumes/{volume_id}/metadata/{key}", Volume, Caller, volume::metadata::update_key),
    route(Method::DELETE, "/volume/v3/{project_id}/volumes/{volume_id}/metadata/{key}", Volume, Caller, volume::metadata::delete_key),
    route(Method::GET, "/volume/v3/{project_id}/snapshots", Volume, Caller, volume::snapshots::list),
    route(Method::POST, "/volume/v3/{project_id}/snapshots", Volume, Caller, volume::snapshots::create),
    route(Method::GET, "/volume/v3/{project_id}/snapshots/detail", Volume, Caller, volume::snapshots::list_detail),
    route(Method::GET, "/volume/v3/{project_id}/snapshots/{snapshot_id}", Volume, Caller, volume::snapshots::show),
    route(Method::DELETE, "/volume/v3/{project_id}/snapshots/{snapshot_id}", Volume, Caller, volume::snapshots::delete),
    route(Method::GET, "/volume/v3/{project_id}/extensions", Volume, Caller, volume::about::extensions),
    route(Method::GET, "/volume/v3/{project_id}/os-availability-zone", Volume, Caller, volume::about::availability_zones),
    route(Method::GET, "/volume/v3/{project_id}/types", Volume, Caller, volume::types::list),
    route(Method::GET, "/volume/v3/{project_id}/types/default", Volume, Caller, volume::types::default),
    route(Method::GET, "/volume/v3/{project_id}/types/{type_id}", Volume, Caller, volume::types::show),
    // Cinder quotas and limits.
    route(Method::GET, "/volume/v3/{project_id}/os-quota-sets/{target_project_id}", Volume, Caller, quotas::cinder_show),
    route(Method::PUT, "/volume/v3/{project_id}/os-quota-sets/{target_project_id}", Volume, Caller, quotas::cinder_update),
    route(Method::DELETE, "/volume/v3/{project_id}/os-quota-sets/{target_project_id}", Volume, Caller, quotas::cinder_delete),
    route(Method::GET, "/volume/v3/{project_id}/os-quota-sets/{target_project_id}/defaults", Volume, Caller, quotas::cinder_defaults),
    route(Method::GET, "/volume/v3/{project_id}/limits", Volume, Caller, quotas::cinder_limits),
    // Neutron quotas.
    route(Method::GET, "/network/v2.0/quotas/{project_id}", Network, Caller, quotas::neutron_show),
    route(Method::PUT, "/network/v2.0/quotas/{project_id}", Network, Caller, quotas::neutron_update),
    route(Method::DELETE, "/network/v2.0/quotas/{project_id}", Network, Caller, quotas::neutron_delete),
    route(Method::GET, "/network/v2.0/quotas/{project_id}/details", Network, Caller, quotas::neutron_details),
    route(Method::GET, "/network/v2.0/quotas/{project_id}/details.json", Network, Caller, quotas::neutron_details),
    route(Method::GET, "/network/v2.0/quotas/{project_id}/default", Network, Caller, quotas::neutron_default),
    // Neutron networks, subnets, ports, security groups and rules.
    route(Method::GET, "/network/v2.0/extensions", Network, Caller, network::list_extensions),
    route(Method::GET, "/network/v2.0/extensions/{alias}", Network, Caller, network::show_extension),
    route(Method::GET, "/network/v2.0/networks", Network, Caller, network::list_networks),
    route(Method::POST, "/network/v2.0/networks", Network, Caller, network::create_network),
    route(Method::GET, "/network/v2.0/networks/{network_id}", Network, Caller, network::show_network),
    route(Method::PUT, "/network/v2.0/networks/{network_id}", Network, Caller, network::update_network),
    route(Method::DELETE, "/network/v2.0/networks/{network_id}", Network, Caller, network::delete_network),
    route(Method::GET, "/network/v2.0/subnets", Network, Caller, network::list_subnets),
    route(Method::POST, "/network/v2.0/subnets", Network, Caller, network::create_subnet),
    route(Method::GET, "/network/v2.0/subnets/{subnet_id}", Network, Caller, network::show_subnet),
    route(Method::PUT, "/network/v2.0/subnets/{subnet_id}", Network, Caller, network::update_subnet),
    route(Method::DELETE, "/network/v2.0/subnets/{subnet_id}", Network, Caller, network::delete_subnet),
    route(Method::GET, "/network/v2.0/ports", Network, Caller, network::list_ports),
    route(Method::POST, "/network/v2.0/ports", Network, Caller, network::create_port),
    route(Method::GET, "/network/v2.0/ports/{port_id}", Network, Caller, network::show_port),
    route(Method::PUT, "/network/v2.0/ports/{port_id}", Network, Caller, network::update_port),
    route(Method::DELETE, "/network/v2.0/ports/{port_id}", Network, Caller, network::delete_port),
    route(Method::GET, "/network/v2.0/security-groups", Network, Caller, network::list_groups),
    route(Method::POST, "/network/v2.0/security-groups", Network, Caller, network::create_group),
    route(Method::GET, "/network/v2.0/security-groups/{security_group_id}", Network, Caller, network::show_group),
    route(Method::PUT, "/network/v2.0/security-groups/{security_group_id}", Network, Caller, network::update_group),
    route(Method::DELETE, "/network/v2.0/security-groups/{security_group_id}", Network, Caller, network::delete_group),
    route(Method::GET, "/network/v2.0/security-group-rules", Network, Caller, network::list_rules),
    route(Method::POST, "/network/v2.0/security-group-rules", Network, Caller, network::create_rule),
    route(Method::GET, "/network/v2.0/security-group-rules/{rule_id}", Network, Caller, network::show_rule),
    route(Method::DELETE, "/network/v2.0/security-group-rules/{rule_id}", Network, Caller, network::delete_rule),
];

/// The compiled table: each path once, with the routes (one per method) served there.
pub struct Router {
    paths: matchit::Router<Vec<&'static Route>>,
}

impl Router {
    pub fn new() -> Router {
        let mut grouped: Vec<(&'static str, Vec<&'static Route>)> = Vec::new();
        for r in ROUTES {
            match grouped.iter_mut().find(|(p, _)| *p == r.path) {
                Some((_, rs)) => rs.push(r),
                None => grouped.push((r.path, vec![r])),
            }
        }
        let mut paths = matchit::Router::new();
        for (path, routes) in grouped {
            // The table is a constant; routes::tests builds it, so this cannot fail at run time.
            paths
                .insert(path, routes)
                .expect("the route table has no conflicting paths");
        }
        Router { paths }
    }

    /// How the route for `method` on request target `target` takes its body (Buffered when
    /// nothing matches: the miss is answered after reading it, as before).
    /// Whether the route `method` `target` names needs a caller (a token on TCP); an unknown
    /// route needs none (its 404 or 405 comes without one, as Keystone's middleware lets it).
    pub fn needs_caller(&self, method: &Method, target: &str) -> bool {
        let (path, _) = split_target(target);
        self.resolve(method, path)
            .is_ok_and(|r| r.route.access == Access::Caller)
    }

    pub fn body_kind(&self, method: &Method, target: &str) -> BodyKind {
        let (path, _) = split_target(target);
        self.resolve(method, path)
            .map_or(BodyKind::Buffered, |r| r.route.body)
    }

    /// The route for `method` on `path` (without trailing slash, still percent-encoded) and
    /// its decoded parameters.
    pub fn resolve(&self, method: &Method, path: &str) -> Result<Resolved, RouteMiss> {
        let m = self.paths.at(path).map_err(|_| RouteMiss::UnknownPath)?;
        let route = m
            .value
            .iter()
            .find(|r| r.method == method)
            .ok_or(RouteMiss::MethodNotAllowed)?;
        let params = m
            .params
            .iter()
            .map(|(k, v)| Some((k.to_owned(), percent_decode(v, false)?)))
            .collect::<Option<Vec<_>>>()
            // A parameter that does not decode names nothing we could hold.
            .ok_or(RouteMiss::UnknownPath)?;
        Ok(Resolved { route, params })
    }
}

pub struct Resolved {
    pub route: &'static Route,
    /// Path parameters, percent-decoded.
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMiss {
    UnknownPath,
    /// The path exists, with other methods.
    MethodNotAllowed,
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

/// Glance's resources: its router matches paths exactly, so `/v2/images/` (an empty image id,
/// which Tempest's null-id tests send) names nothing there.
const EXACT_PATHS_UNDER: &str = "/image/v2/";

/// A request target's path (without trailing slash: `/compute/` and `/compute` are the same
/// resource, clients ask for both; except below [`EXACT_PATHS_UNDER`]) and query string.
fn split_target(target: &str) -> (&str, &str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path.starts_with(EXACT_PATHS_UNDER) {
        return (path, query);
    }
    let path = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    (path, query)
}

/// Routes and runs one request; returns the service it was addressed to and the reply.
pub(super) fn dispatch(
    state: &ApiState,
    transport: Transport,
    raw: RawRequest,
    upload: Option<UploadBody>,
) -> (Option<ServiceKind>, Reply) {
    let (path, query) = split_target(&raw.target);
    let service = ServiceKind::of_path(path);
    let versions = ServiceKind::microversions(path);
    let mut negotiated = None;
    let result = (|| {
        let Resolved { route, params } =
            state
                .router
                .resolve(&raw.method, path)
                .map_err(|miss| match miss {
                    RouteMiss::MethodNotAllowed => Fault::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "The method is not allowed for the requested URL.",
                    ),
                    RouteMiss::UnknownPath => Fault::not_found("The resource could not be found."),
                })?;
        let context = match route.access {
            Access::Public => None,
            Access::Caller => {
                let ctx = match raw.caller.clone() {
                    Some(ctx) => ctx,
                    None => auth::authenticate(state, transport, &raw.headers)?,
                };
                if route.service != ServiceKind::Identity {
                    auth::require_project(&ctx)?;
                }
                Some(ctx)
            }
        };
        state.policy.enforce(route, context.as_ref(), &raw.body)?;
        let version = versions.map(|v| v.negotiate(&raw.headers)).transpose()?;
        negotiated = version;
        let call = Call {
            state,
            method: &raw.method,
            headers: &raw.headers,
            body: &raw.body,
            params,
            query: parse_query(query)?,
            context,
            version,
            upload: std::cell::RefCell::new(upload),
            peer: raw.peer,
        };
        (route.handler)(&call)
    })();
    let mut reply = result.unwrap_or_else(|f| {
        if f.status.is_server_error() {
            tracing::warn!("{} {}: {f}", raw.method, path);
        } else {
            tracing::debug!("{} {}: {f}", raw.method, path);
        }
        fault_reply(state, service, &f)
    });
    if let (Some(v), Some(spec)) = (negotiated, versions) {
        reply.headers.extend(spec.reply_headers(v));
    }
    (service, reply)
}

/// A fault as the service renders it; a 401 says where to get a token.
pub(super) fn fault_reply(state: &ApiState, service: Option<ServiceKind>, f: &Fault) -> Reply {
    let mut r = fault::render(service, f);
    if f.status == StatusCode::UNAUTHORIZED {
        r.headers.push((
            "WWW-Authenticate".into(),
            format!("Keystone uri=\"{}/identity\"", state.base_url),
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_compiles_and_resolves() {
        let r = Router::new();
        let Resolved { route, params } = r
            .resolve(
                &Method::GET,
                "/compute/v2.1/flavors/m1.tiny/os-extra_specs/hw%3Acpu",
            )
            .unwrap();
        assert_eq!(
            route.path,
            "/compute/v2.1/flavors/{flavor_id}/os-extra_specs/{key}"
        );
        assert_eq!(params[1], ("key".into(), "hw:cpu".into()));
        // A static segment wins over a parameter.
        let Resolved { route, .. } = r
            .resolve(&Method::GET, "/compute/v2.1/flavors/detail")
            .unwrap();
        assert_eq!(route.path, "/compute/v2.1/flavors/detail");
        assert_eq!(
            r.resolve(&Method::PATCH, "/compute/v2.1/flavors").err(),
            Some(RouteMiss::MethodNotAllowed)
        );
        assert_eq!(
            r.resolve(&Method::GET, "/nowhere").err(),
            Some(RouteMiss::UnknownPath)
        );
    }

    #[test]
    fn every_route_declares_the_parameters_its_path_has_and_sits_under_its_service() {
        for r in ROUTES {
            assert_eq!(ServiceKind::of_path(r.path), Some(r.service), "{}", r.path);
            assert!(!r.path.ends_with('/'), "{}", r.path);
        }
        assert_eq!(ServiceKind::of_path("/computer"), None);
        assert!(ServiceKind::microversions("/compute/v2.1/flavors").is_some());
        assert!(ServiceKind::microversions("/compute").is_none());
        assert!(ServiceKind::microversions("/volume/v3/p1/volumes").is_some());
    }
}
