//! The policy table: which callers may use each route, by oslo.policy-style rule name, with
//! OpenStack's defaults (`reader` reads its project, `member` writes it, `admin` does
//! everything, plus the admin-only routes Nova, Keystone, Glance and Cinder have), checked by
//! the dispatcher after the caller is known and before any handler runs.
//!
//! A rule here says which *role* a caller needs. Which *project* a resource belongs to stays
//! the domains' concern (each answers 404 for another project's resource, as OpenStack does).
//! Neutron's per-field port rules ([`PORT_FIELD_RULES`]) are here too; the port handlers
//! check them, since they need the port's network.
//!
//! A deployment overrides a rule from the `[policy]` section of the configuration, by name,
//! with the roles that may use it:
//!
//! ```toml
//! [policy]
//! "os_compute_api:servers:create" = ["admin"]   # only admins make servers here
//! "image:get_images" = ["member"]                # readers may not list images
//! ```
//!
//! The roles a token carries include the ones implied by its assigned ones (admin ⇒ member ⇒
//! reader), so `["member"]` admits admins too. An override replaces the default role check
//! only: a domain's own checks (flavor management, identity administration and `os-services`
//! stay admin-only in their domains) still apply after it.

use super::routes::{Route, ServiceKind, ROUTES};
use super::Fault;
use crate::context::RequestContext;
use crate::identity::{ROLE_ADMIN, ROLE_MEMBER, ROLE_READER};
use hyper::Method;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

/// Who a rule admits when no override says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admits {
    /// Anyone, before login: discovery documents and the login itself.
    Public,
    /// Any caller with a valid token, whatever its roles (Keystone's self-service: checking
    /// or revoking one's own token, reading oneself and one's project); the domain decides
    /// what the caller sees.
    Authenticated,
    /// A caller holding this role on its project.
    Role(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// oslo.policy's name for the rule (`os_compute_api:servers:create`), the key of an
    /// override in `[policy]`.
    pub name: &'static str,
    pub default: Admits,
}

/// One route's rule; `actions` refines a route whose body names what it does (Nova's and
/// Cinder's `/action`), by the body's one key.
pub struct RouteRule {
    pub method: Method,
    /// As in [`super::routes::ROUTES`].
    pub path: &'static str,
    pub rule: Rule,
    pub actions: &'static [(&'static str, Rule)],
}

const fn rule(name: &'static str, default: Admits) -> Rule {
    Rule { name, default }
}

const fn entry(
    method: Method,
    path: &'static str,
    name: &'static str,
    default: Admits,
) -> RouteRule {
    RouteRule {
        method,
        path,
        rule: rule(name, default),
        actions: &[],
    }
}

const PUBLIC: Admits = Admits::Public;
const ANY: Admits = Admits::Authenticated;
const READER: Admits = Admits::Role(ROLE_READER);
const MEMBER: Admits = Admits::Role(ROLE_MEMBER);
const ADMIN: Admits = Admits::Role(ROLE_ADMIN);

/// Nova's rules for the server actions outpostd serves.
const SERVER_ACTIONS: &[(&str, Rule)] = &[
    ("os-start", rule("os_compute_api:servers:start", MEMBER)),
    ("os-stop", rule("os_compute_api:servers:stop", MEMBER)),
    ("reboot", rule("os_compute_api:servers:reboot", MEMBER)),
    (
        "os-getConsoleOutput",
        rule("os_compute_api:os-console-output", MEMBER),
    ),
    (
        "os-getSerialConsole",
        rule("os_compute_api:os-remote-consoles", MEMBER),
    ),
    ("resize", rule("os_compute_api:servers:resize", MEMBER)),
    (
        "confirmResize",
        rule("os_compute_api:servers:confirm_resize", MEMBER),
    ),
    (
        "revertResize",
        rule("os_compute_api:servers:revert_resize", MEMBER),
    ),
    (
        "addSecurityGroup",
        rule("os_compute_api:os-security-groups:add", MEMBER),
    ),
    (
        "removeSecurityGroup",
        rule("os_compute_api:os-security-groups:remove", MEMBER),
    ),
    ("evacuate", rule("os_compute_api:os-evacuate", ADMIN)),
];

/// Nova's rules for the host aggregate actions: admin-only, as the aggregates are.
const AGGREGATE_ACTIONS: &[(&str, Rule)] = &[
    (
        "add_host",
        rule("os_compute_api:os-aggregates:add_host", ADMIN),
    ),
    (
        "remove_host",
        rule("os_compute_api:os-aggregates:remove_host", ADMIN),
    ),
    (
        "set_metadata",
        rule("os_compute_api:os-aggregates:set_metadata", ADMIN),
    ),
];

/// Cinder's rules for the volume actions outpostd serves.
const VOLUME_ACTIONS: &[(&str, Rule)] = &[("os-extend", rule("volume:extend", MEMBER))];

/// Every route's rule. `tests::every_route_has_exactly_one_rule` fails for a route missing
/// here; at run time such a route is refused to all but admins.
#[rustfmt::skip]
pub static POLICY: &[RouteRule] = &[
    // Discovery and login.
    entry(Method::GET, "/identity", "discovery", PUBLIC),
    entry(Method::GET, "/identity/v3", "discovery", PUBLIC),
    entry(Method::GET, "/compute", "discovery", PUBLIC),
    entry(Method::GET, "/compute/v2.1", "discovery", PUBLIC),
    entry(Method::GET, "/image", "discovery", PUBLIC),
    entry(Method::GET, "/image/versions", "discovery", PUBLIC),
    entry(Method::GET, "/volume", "discovery", PUBLIC),
    entry(Method::GET, "/volume/v3", "discovery", PUBLIC),
    entry(Method::GET, "/network", "discovery", PUBLIC),
    entry(Method::GET, "/network/v2.0", "discovery", PUBLIC),
    entry(Method::POST, "/identity/v3/auth/tokens", "identity:issue_token", PUBLIC),
    // Keystone: administration is admin-only; reading oneself and one's project is not.
    entry(Method::GET, "/identity/v3/auth/tokens", "identity:validate_token", ANY),
    entry(Method::HEAD, "/identity/v3/auth/tokens", "identity:check_token", ANY),
    entry(Method::DELETE, "/identity/v3/auth/tokens", "identity:revoke_token", ANY),
    entry(Method::GET, "/identity/v3/auth/catalog", "identity:get_auth_catalog", ANY),
    entry(Method::GET, "/identity/v3/domains/{domain_id}", "identity:get_domain", ANY),
    entry(Method::GET, "/identity/v3/projects", "identity:list_projects", ANY),
    entry(Method::POST, "/identity/v3/projects", "identity:create_project", ADMIN),
    entry(Method::GET, "/identity/v3/projects/{project_id}", "identity:get_project", ANY),
    entry(Method::GET, "/identity/v3/users", "identity:list_users", ANY),
    entry(Method::POST, "/identity/v3/users", "identity:create_user", ADMIN),
    entry(Method::GET, "/identity/v3/users/{user_id}", "identity:get_user", ANY),
    entry(Method::GET, "/identity/v3/users/{user_id}/projects", "identity:list_user_projects", ANY),
    entry(Method::GET, "/identity/v3/roles", "identity:list_roles", ADMIN),
    entry(Method::POST, "/identity/v3/roles", "identity:create_role", ADMIN),
    entry(Method::GET, "/identity/v3/roles/{role_id}", "identity:get_role", ADMIN),
    entry(Method::PUT, "/identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", "identity:create_grant", ADMIN),
    entry(Method::DELETE, "/identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", "identity:revoke_grant", ADMIN),
    // Nova flavors: anyone reads them, admins manage them.
    entry(Method::GET, "/compute/v2.1/flavors", "os_compute_api:os-flavors:index", READER),
    entry(Method::POST, "/compute/v2.1/flavors", "os_compute_api:os-flavor-manage:create", ADMIN),
    entry(Method::GET, "/compute/v2.1/flavors/detail", "os_compute_api:os-flavors:detail", READER),
    entry(Method::GET, "/compute/v2.1/flavors/{flavor_id}", "os_compute_api:os-flavors:show", READER),
    entry(Method::PUT, "/compute/v2.1/flavors/{flavor_id}", "os_compute_api:os-flavor-manage:update", ADMIN),
    entry(Method::DELETE, "/compute/v2.1/flavors/{flavor_id}", "os_compute_api:os-flavor-manage:delete", ADMIN),
    entry(Method::GET, "/compute/v2.1/flavors/{flavor_id}/os-extra_specs", "os_compute_api:os-flavor-extra-specs:index", READER),
    entry(Method::POST, "/compute/v2.1/flavors/{flavor_id}/os-extra_specs", "os_compute_api:os-flavor-extra-specs:create", ADMIN),
    entry(Method::GET, "/compute/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", "os_compute_api:os-flavor-extra-specs:show", READER),
    entry(Method::PUT, "/compute/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", "os_compute_api:os-flavor-extra-specs:update", ADMIN),
    entry(Method::DELETE, "/compute/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", "os_compute_api:os-flavor-extra-specs:delete", ADMIN),
    // Nova key pairs.
    // Nova's quotas: a reader reads its project's, an admin sets (crate::quota checks both).
    entry(Method::GET, "/compute/v2.1/os-quota-sets/{project_id}", "os_compute_api:os-quota-sets:show", READER),
    entry(Method::PUT, "/compute/v2.1/os-quota-sets/{project_id}", "os_compute_api:os-quota-sets:update", ADMIN),
    entry(Method::DELETE, "/compute/v2.1/os-quota-sets/{project_id}", "os_compute_api:os-quota-sets:delete", ADMIN),
    entry(Method::GET, "/compute/v2.1/os-quota-sets/{project_id}/detail", "os_compute_api:os-quota-sets:detail", READER),
    entry(Method::GET, "/compute/v2.1/os-quota-sets/{project_id}/defaults", "os_compute_api:os-quota-sets:defaults", READER),
    entry(Method::GET, "/compute/v2.1/limits", "os_compute_api:limits", READER),
    entry(Method::GET, "/compute/v2.1/os-keypairs", "os_compute_api:os-keypairs:index", READER),
    entry(Method::POST, "/compute/v2.1/os-keypairs", "os_compute_api:os-keypairs:create", MEMBER),
    entry(Method::GET, "/compute/v2.1/os-keypairs/{keypair_name}", "os_compute_api:os-keypairs:show", READER),
    entry(Method::DELETE, "/compute/v2.1/os-keypairs/{keypair_name}", "os_compute_api:os-keypairs:delete", MEMBER),
    // Nova services and hypervisors: the operator's view, admin-only.
    entry(Method::GET, "/compute/v2.1/os-services", "os_compute_api:os-services:list", ADMIN),
    entry(Method::PUT, "/compute/v2.1/os-services/{service_id}", "os_compute_api:os-services:update", ADMIN),
    entry(Method::GET, "/compute/v2.1/os-hypervisors", "os_compute_api:os-hypervisors:list", ADMIN),
    entry(Method::GET, "/compute/v2.1/os-hypervisors/detail", "os_compute_api:os-hypervisors:list-detail", ADMIN),
    entry(Method::GET, "/compute/v2.1/os-hypervisors/{hypervisor_id}", "os_compute_api:os-hypervisors:show", ADMIN),
    // Nova's migration records (admin-only).
    entry(Method::GET, "/compute/v2.1/os-migrations", "os_compute_api:os-migrations:index", ADMIN),
    // Nova host aggregates (admin-only) and availability zones (any caller lists them).
    entry(Method::GET, "/compute/v2.1/os-aggregates", "os_compute_api:os-aggregates:index", ADMIN),
    entry(Method::POST, "/compute/v2.1/os-aggregates", "os_compute_api:os-aggregates:create", ADMIN),
    entry(Method::GET, "/compute/v2.1/os-aggregates/{aggregate_id}", "os_compute_api:os-aggregates:show", ADMIN),
    entry(Method::PUT, "/compute/v2.1/os-aggregates/{aggregate_id}", "os_compute_api:os-aggregates:update", ADMIN),
    entry(Method::DELETE, "/compute/v2.1/os-aggregates/{aggregate_id}", "os_compute_api:os-aggregates:delete", ADMIN),
    RouteRule {
        method: Method::POST,
        path: "/compute/v2.1/os-aggregates/{aggregate_id}/action",
        // An action outpostd does not know: the handler answers 400, after this check.
        rule: rule("os_compute_api:os-aggregates:action", ADMIN),
        actions: AGGREGATE_ACTIONS,
    },
    entry(Method::GET, "/compute/v2.1/os-availability-zone", "os_compute_api:os-availability-zone:list", ANY),
    entry(Method::GET, "/compute/v2.1/os-availability-zone/detail", "os_compute_api:os-availability-zone:detail", ADMIN),
    // Nova server groups and servers.
    entry(Method::GET, "/compute/v2.1/os-server-groups", "os_compute_api:os-server-groups:index", READER),
    entry(Method::POST, "/compute/v2.1/os-server-groups", "os_compute_api:os-server-groups:create", MEMBER),
    entry(Method::GET, "/compute/v2.1/os-server-groups/{server_group_id}", "os_compute_api:os-server-groups:show", READER),
    entry(Method::DELETE, "/compute/v2.1/os-server-groups/{server_group_id}", "os_compute_api:os-server-groups:delete", MEMBER),
    entry(Method::GET, "/compute/v2.1/servers", "os_compute_api:servers:index", READER),
    entry(Method::POST, "/compute/v2.1/servers", "os_compute_api:servers:create", MEMBER),
    entry(Method::GET, "/compute/v2.1/servers/detail", "os_compute_api:servers:detail", READER),
    entry(Method::GET, "/compute/v2.1/servers/{server_id}", "os_compute_api:servers:show", READER),
    entry(Method::PUT, "/compute/v2.1/servers/{server_id}", "os_compute_api:servers:update", MEMBER),
    entry(Method::DELETE, "/compute/v2.1/servers/{server_id}", "os_compute_api:servers:delete", MEMBER),
    RouteRule {
        method: Method::POST,
        path: "/compute/v2.1/servers/{server_id}/action",
        // An action outpostd does not know: the handler answers 400, after this check.
        rule: rule("os_compute_api:servers:action", MEMBER),
        actions: SERVER_ACTIONS,
    },
    entry(Method::GET, "/compute/v2.1/servers/{server_id}/os-security-groups", "os_compute_api:os-security-groups:list", READER),
    entry(Method::GET, "/compute/v2.1/servers/{server_id}/ips", "os_compute_api:ips:index", READER),
    entry(Method::GET, "/compute/v2.1/servers/{server_id}/ips/{network_label}", "os_compute_api:ips:show", READER),
    entry(Method::POST, "/compute/v2.1/servers/{server_id}/remote-consoles", "os_compute_api:os-remote-consoles", MEMBER),
    entry(Method::GET, "/compute/v2.1/servers/{server_id}/os-volume_attachments", "os_compute_api:os-volumes-attachments:index", READER),
    entry(Method::POST, "/compute/v2.1/servers/{server_id}/os-volume_attachments", "os_compute_api:os-volumes-attachments:create", MEMBER),
    entry(Method::GET, "/compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", "os_compute_api:os-volumes-attachments:show", READER),
    entry(Method::DELETE, "/compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", "os_compute_api:os-volumes-attachments:delete", MEMBER),
    // Glance.
    entry(Method::GET, "/image/v2/images", "image:get_images", READER),
    entry(Method::POST, "/image/v2/images", "image:add_image", MEMBER),
    entry(Method::GET, "/image/v2/images/{image_id}", "image:get_image", READER),
    entry(Method::PATCH, "/image/v2/images/{image_id}", "image:modify_image", MEMBER),
    entry(Method::DELETE, "/image/v2/images/{image_id}", "image:delete_image", MEMBER),
    entry(Method::PUT, "/image/v2/images/{image_id}/file", "image:upload_image", MEMBER),
    entry(Method::GET, "/image/v2/images/{image_id}/file", "image:download_image", READER),
    entry(Method::POST, "/image/v2/images/{image_id}/actions/deactivate", "image:deactivate", MEMBER),
    entry(Method::POST, "/image/v2/images/{image_id}/actions/reactivate", "image:reactivate", MEMBER),
    entry(Method::PUT, "/image/v2/images/{image_id}/tags/{tag}", "image:modify_image", MEMBER),
    entry(Method::DELETE, "/image/v2/images/{image_id}/tags/{tag}", "image:modify_image", MEMBER),
    entry(Method::GET, "/image/v2/schemas/image", "image:get_schema", READER),
    entry(Method::GET, "/image/v2/images/{image_id}/members", "image:get_members", READER),
    entry(Method::POST, "/image/v2/images/{image_id}/members", "image:add_member", MEMBER),
    entry(Method::GET, "/image/v2/images/{image_id}/members/{member_id}", "image:get_member", READER),
    entry(Method::PUT, "/image/v2/images/{image_id}/members/{member_id}", "image:modify_member", MEMBER),
    entry(Method::DELETE, "/image/v2/images/{image_id}/members/{member_id}", "image:delete_member", MEMBER),
    entry(Method::GET, "/image/v2/schemas/images", "image:get_schema", READER),
    entry(Method::GET, "/image/v2/schemas/member", "image:get_schema", READER),
    entry(Method::GET, "/image/v2/schemas/members", "image:get_schema", READER),
    entry(Method::GET, "/image/v2/schemas/metadefs/{kind}", "image:get_metadef_schema", READER),
    entry(Method::GET, "/image/v2/info/import", "image:get_import_info", READER),
    // Cinder.
    entry(Method::GET, "/volume/v3/{project_id}/volumes", "volume:get_all", READER),
    entry(Method::POST, "/volume/v3/{project_id}/volumes", "volume:create", MEMBER),
    entry(Method::GET, "/volume/v3/{project_id}/volumes/detail", "volume:get_all", READER),
    entry(Method::GET, "/volume/v3/{project_id}/volumes/{volume_id}", "volume:get", READER),
    entry(Method::PUT, "/volume/v3/{project_id}/volumes/{volume_id}", "volume:update", MEMBER),
    entry(Method::DELETE, "/volume/v3/{project_id}/volumes/{volume_id}", "volume:delete", MEMBER),
    RouteRule {
        method: Method::POST,
        path: "/volume/v3/{project_id}/volumes/{volume_id}/action",
        rule: rule("volume_extension:volume_actions", MEMBER),
        actions: VOLUME_ACTIONS,
    },
    entry(Method::GET, "/volume/v3/{project_id}/volumes/{volume_id}/metadata", "volume:get_volume_metadata", READER),
    entry(Method::POST, "/volume/v3/{project_id}/volumes/{volume_id}/metadata", "volume:create_volume_metadata", MEMBER),
    entry(Method::PUT, "/volume/v3/{project_id}/volumes/{volume_id}/metadata", "volume:update_volume_metadata", MEMBER),
    entry(Method::GET, "/volume/v3/{project_id}/volumes/{volume_id}/metadata/{key}", "volume:get_volume_metadata", READER),
    entry(Method::PUT, "/volume/v3/{project_id}/volumes/{volume_id}/metadata/{key}", "volume:update_volume_metadata", MEMBER),
    entry(Method::DELETE, "/volume/v3/{project_id}/volumes/{volume_id}/metadata/{key}", "volume:delete_volume_metadata", MEMBER),
    entry(Method::GET, "/volume/v3/{project_id}/snapshots", "volume:get_all_snapshots", READER),
    entry(Method::POST, "/volume/v3/{project_id}/snapshots", "volume:create_snapshot", MEMBER),
    entry(Method::GET, "/volume/v3/{project_id}/snapshots/detail", "volume:get_all_snapshots", READER),
    entry(Method::GET, "/volume/v3/{project_id}/snapshots/{snapshot_id}", "volume:get_snapshot", READER),
    entry(Method::DELETE, "/volume/v3/{project_id}/snapshots/{snapshot_id}", "volume:delete_snapshot", MEMBER),
    entry(Method::GET, "/volume/v3/{project_id}/os-quota-sets/{target_project_id}", "volume_extension:quotas:show", READER),
    entry(Method::PUT, "/volume/v3/{project_id}/os-quota-sets/{target_project_id}", "volume_extension:quotas:update", ADMIN),
    entry(Method::DELETE, "/volume/v3/{project_id}/os-quota-sets/{target_project_id}", "volume_extension:quotas:delete", ADMIN),
    entry(Method::GET, "/volume/v3/{project_id}/os-quota-sets/{target_project_id}/defaults", "volume_extension:quotas:show", READER),
    entry(Method::GET, "/volume/v3/{project_id}/limits", "limits_extension:used_limits", READER),
    // Cinder checks no policy on these two: any caller of the project.
    entry(Method::GET, "/volume/v3/{project_id}/extensions", "volume:list_extensions", ANY),
    entry(Method::GET, "/volume/v3/{project_id}/os-availability-zone", "volume:list_availability_zones", ANY),
    entry(Method::GET, "/volume/v3/{project_id}/types", "volume_extension:type_get_all", READER),
    entry(Method::GET, "/volume/v3/{project_id}/types/default", "volume_extension:default_get", READER),
    entry(Method::GET, "/volume/v3/{project_id}/types/{type_id}", "volume_extension:type_get", READER),
    // Neutron (its owner-only port fields are checked by crate::network::ports).
    entry(Method::GET, "/network/v2.0/extensions", "get_extension", READER),
    entry(Method::GET, "/network/v2.0/extensions/{alias}", "get_extension", READER),
    entry(Method::GET, "/network/v2.0/quotas/{project_id}", "get_quota", READER),
    entry(Method::PUT, "/network/v2.0/quotas/{project_id}", "update_quota", ADMIN),
    entry(Method::DELETE, "/network/v2.0/quotas/{project_id}", "delete_quota", ADMIN),
    entry(Method::GET, "/network/v2.0/quotas/{project_id}/details", "get_quota", READER),
    entry(Method::GET, "/network/v2.0/quotas/{project_id}/details.json", "get_quota", READER),
    entry(Method::GET, "/network/v2.0/quotas/{project_id}/default", "get_quota", READER),
    entry(Method::GET, "/network/v2.0/networks", "get_network", READER),
    entry(Method::POST, "/network/v2.0/networks", "create_network", MEMBER),
    entry(Method::GET, "/network/v2.0/networks/{network_id}", "get_network", READER),
    entry(Method::PUT, "/network/v2.0/networks/{network_id}", "update_network", MEMBER),
    entry(Method::DELETE, "/network/v2.0/networks/{network_id}", "delete_network", MEMBER),
    entry(Method::GET, "/network/v2.0/subnets", "get_subnet", READER),
    entry(Method::POST, "/network/v2.0/subnets", "create_subnet", MEMBER),
    entry(Method::GET, "/network/v2.0/subnets/{subnet_id}", "get_subnet", READER),
    entry(Method::PUT, "/network/v2.0/subnets/{subnet_id}", "update_subnet", MEMBER),
    entry(Method::DELETE, "/network/v2.0/subnets/{subnet_id}", "delete_subnet", MEMBER),
    entry(Method::GET, "/network/v2.0/ports", "get_port", READER),
    entry(Method::POST, "/network/v2.0/ports", "create_port", MEMBER),
    entry(Method::GET, "/network/v2.0/ports/{port_id}", "get_port", READER),
    entry(Method::PUT, "/network/v2.0/ports/{port_id}", "update_port", MEMBER),
    entry(Method::DELETE, "/network/v2.0/ports/{port_id}", "delete_port", MEMBER),
    entry(Method::GET, "/network/v2.0/security-groups", "get_security_group", READER),
    entry(Method::POST, "/network/v2.0/security-groups", "create_security_group", MEMBER),
    entry(Method::GET, "/network/v2.0/security-groups/{security_group_id}", "get_security_group", READER),
    entry(Method::PUT, "/network/v2.0/security-groups/{security_group_id}", "update_security_group", MEMBER),
    entry(Method::DELETE, "/network/v2.0/security-groups/{security_group_id}", "delete_security_group", MEMBER),
    entry(Method::GET, "/network/v2.0/security-group-rules", "get_security_group_rule", READER),
    entry(Method::POST, "/network/v2.0/security-group-rules", "create_security_group_rule", MEMBER),
    entry(Method::GET, "/network/v2.0/security-group-rules/{rule_id}", "get_security_group_rule", READER),
    entry(Method::DELETE, "/network/v2.0/security-group-rules/{rule_id}", "delete_security_group_rule", MEMBER),
];

/// Who may set one of Neutron's restricted port fields, when no override says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAdmits {
    /// The owner of the port's network, and admins (Neutron's `admin_or_network_owner`).
    NetworkOwner,
    /// A caller holding this role.
    Role(&'static str),
}

/// One of Neutron's per-field port rules: `name` (`create_port:mac_address`) applies when a
/// request of `action` sets `field`.
pub struct FieldRule {
    pub name: &'static str,
    pub action: &'static str,
    pub field: &'static str,
    pub default: FieldAdmits,
}

const fn field(
    name: &'static str,
    action: &'static str,
    field: &'static str,
    default: FieldAdmits,
) -> FieldRule {
    FieldRule {
        name,
        action,
        field,
        default,
    }
}

const OWNER: FieldAdmits = FieldAdmits::NetworkOwner;
const ADMIN_ONLY: FieldAdmits = FieldAdmits::Role(ROLE_ADMIN);

/// Neutron's owner-only port fields: each changes what the port may send or where it is
/// plugged, so on a network shared with other projects only the network's owner or an admin
/// sets them (else a tenant spoofs addresses or answers DHCP on the shared segment); the
/// binding, and changing a MAC, are the admin's. The API checks them before the port's
/// handler runs; `crate::network::ports` names the fields a request sets.
#[rustfmt::skip]
pub static PORT_FIELD_RULES: &[FieldRule] = &[
    field("create_port:mac_address", "create_port", "mac_address", OWNER),
    field("create_port:fixed_ips:ip_address", "create_port", "fixed_ips:ip_address", OWNER),
    field("create_port:port_security_enabled", "create_port", "port_security_enabled", OWNER),
    field("create_port:allowed_address_pairs", "create_port", "allowed_address_pairs", OWNER),
    field("create_port:device_owner", "create_port", "device_owner", OWNER),
    field("create_port:binding:host_id", "create_port", "binding:host_id", ADMIN_ONLY),
    field("update_port:mac_address", "update_port", "mac_address", ADMIN_ONLY),
    field("update_port:fixed_ips:ip_address", "update_port", "fixed_ips:ip_address", OWNER),
    field("update_port:port_security_enabled", "update_port", "port_security_enabled", OWNER),
    field("update_port:allowed_address_pairs", "update_port", "allowed_address_pairs", OWNER),
    field("update_port:device_owner", "update_port", "device_owner", OWNER),
    field("update_port:binding:host_id", "update_port", "binding:host_id", ADMIN_ONLY),
];

/// The rule that stands for a route missing from [`POLICY`]: closed to all but admins.
const UNLISTED: Rule = rule("outpost:unlisted_route", ADMIN);

static UNLISTED_LOGGED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "policy: no rule is named {0:?}; the rules are listed in control/README.md, section \
         \"Policy\""
    )]
    UnknownRule(String),
    #[error("policy: rule {0:?} admits everyone before login and takes no roles")]
    PublicRule(String),
}

/// The policy outpostd enforces: [`POLICY`] with the deployment's overrides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    /// Rule name → the roles that may use it, replacing the rule's default.
    overrides: BTreeMap<String, Vec<String>>,
}

impl Policy {
    /// The table with `overrides` (the `[policy]` section); a name that is no rule, or a
    /// rule that admits everyone before login, is refused so that a typo never leaves a
    /// route on its default unnoticed.
    pub fn new(overrides: BTreeMap<String, Vec<String>>) -> Result<Policy, PolicyError> {
        let named: HashMap<&str, Admits> = all_rules().map(|r| (r.name, r.default)).collect();
        for name in overrides.keys() {
            let is_field = PORT_FIELD_RULES.iter().any(|f| f.name == name);
            match named.get(name.as_str()) {
                None if is_field => {}
                None => return Err(PolicyError::UnknownRule(name.clone())),
                Some(Admits::Public) => return Err(PolicyError::PublicRule(name.clone())),
                Some(_) => {}
            }
        }
        Ok(Policy { overrides })
    }

    /// Whether `ctx` (None: no caller, before login) may call `route` with request body
    /// `body`; the refusal is OpenStack's 403, in the words of the route's service.
    pub fn enforce(
        &self,
        route: &Route,
        ctx: Option<&RequestContext>,
        body: &[u8],
    ) -> Result<(), Fault> {
        let rule = rule_for(route, body);
        let allowed = match (self.overrides.get(rule.name), rule.default, ctx) {
            (_, Admits::Public, _) => true,
            (_, _, None) => false,
            (Some(roles), _, Some(ctx)) => roles.iter().any(|r| ctx.roles.contains(r)),
            (None, Admits::Authenticated, Some(_)) => true,
            (None, Admits::Role(role), Some(ctx)) => ctx.roles.iter().any(|r| r == role),
        };
        if allowed {
            return Ok(());
        }
        // Logged once: a caller repeating the request must not flood the log.
        if rule.name == UNLISTED.name && !UNLISTED_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "{} {} has no policy rule: only admins may call it (add it to api/policy.rs)",
                route.method,
                route.path
            );
        }
        Err(denied(route.service, rule.name))
    }
}

impl Policy {
    /// Whether `ctx` may set `fields` (as [`crate::network::ports::NewPort::restricted_fields`]
    /// names them) in a port request of `action` (`create_port`, `update_port`) on a network
    /// of project `network_project`; the refusal is Neutron's 403 for the first it may not.
    pub fn enforce_port_fields(
        &self,
        ctx: &RequestContext,
        action: &str,
        fields: &[&str],
        network_project: &str,
    ) -> Result<(), Fault> {
        for name in fields {
            let Some(rule) = PORT_FIELD_RULES
                .iter()
                .find(|f| f.action == action && f.field == *name)
            else {
                // A field the table does not restrict.
                continue;
            };
            let allowed = match (self.overrides.get(rule.name), rule.default) {
                (Some(roles), _) => roles.iter().any(|r| ctx.roles.contains(r)),
                (None, FieldAdmits::NetworkOwner) => {
                    ctx.is_admin() || ctx.project_id.as_deref() == Some(network_project)
                }
                (None, FieldAdmits::Role(role)) => ctx.roles.iter().any(|r| r == role),
            };
            if !allowed {
                let mut f = Fault::forbidden(format!(
                    "(rule:{action} and rule:{}) is disallowed by policy",
                    rule.name
                ));
                f.neutron_type = Some("PolicyNotAuthorized".into());
                return Err(f);
            }
        }
        Ok(())
    }
}

/// The rule of `route`: its action's when the body names one the table knows.
fn rule_for(route: &Route, body: &[u8]) -> Rule {
    let Some(entry) = POLICY
        .iter()
        .find(|e| e.method == route.method && e.path == route.path)
    else {
        return UNLISTED;
    };
    if entry.actions.is_empty() {
        return entry.rule;
    }
    // Nova's and Cinder's actions are `{"<action>": {...}}`; anything else is the handler's
    // 400 to give, under the route's own rule.
    let action = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .ok()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.keys().next().cloned());
    action
        .and_then(|a| entry.actions.iter().find(|(name, _)| *name == a))
        .map_or(entry.rule, |(_, r)| *r)
}

/// Every rule, actions' included (a name may recur: several routes share a rule).
pub fn all_rules() -> impl Iterator<Item = Rule> {
    POLICY
        .iter()
        .flat_map(|e| std::iter::once(e.rule).chain(e.actions.iter().map(|(_, r)| *r)))
}

/// The rule a request `method` `path` (a route's template) with `body` falls under; None
/// for a route missing from the table.
pub fn rule_of(method: &Method, path: &str, body: &[u8]) -> Option<Rule> {
    let route = ROUTES
        .iter()
        .find(|r| r.method == method && r.path == path)?;
    POLICY
        .iter()
        .any(|e| e.method == method && e.path == path)
        .then(|| rule_for(route, body))
}

/// Each service's words for a policy refusal.
fn denied(service: ServiceKind, rule: &str) -> Fault {
    let message = match service {
        ServiceKind::Identity => {
            format!("You are not authorized to perform the requested action: {rule}.")
        }
        ServiceKind::Compute | ServiceKind::Volume => {
            format!("Policy doesn't allow {rule} to be performed.")
        }
        ServiceKind::Image => format!("You are not authorized to complete {rule} action."),
        ServiceKind::Network => format!("({rule}) is disallowed by policy"),
    };
    let mut f = Fault::forbidden(message);
    if service == ServiceKind::Network {
        f.neutron_type = Some("PolicyNotAuthorized".into());
    }
    f
}

/// The routes the table names that the router does not serve (a rule left behind).
pub fn stale_rules() -> Vec<(Method, &'static str)> {
    POLICY
        .iter()
        .filter(|e| {
            !ROUTES
                .iter()
                .any(|r| r.method == e.method && r.path == e.path)
        })
        .map(|e| (e.method.clone(), e.path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::Access;

    fn ctx(roles: &[&str]) -> RequestContext {
        RequestContext {
            user_id: "u".into(),
            user_name: "user".into(),
            project_id: Some("p".into()),
            project_name: Some("p".into()),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn route(method: Method, path: &str) -> &'static Route {
        ROUTES
            .iter()
            .find(|r| r.method == method && r.path == path)
            .unwrap_or_else(|| panic!("{method} {path} is not routed"))
    }

    #[test]
    fn every_route_has_exactly_one_rule_and_public_routes_only_public_ones() {
        for r in ROUTES {
            let rules: Vec<_> = POLICY
                .iter()
                .filter(|e| e.method == r.method && e.path == r.path)
                .collect();
            assert_eq!(
                rules.len(),
                1,
                "{} {} needs exactly one rule in api/policy.rs POLICY",
                r.method,
                r.path
            );
            assert_eq!(
                rules[0].rule.default == Admits::Public,
                r.access == Access::Public,
                "{} {}: a public route has a public rule and no other does",
                r.method,
                r.path
            );
        }
        assert_eq!(stale_rules(), vec![], "rules for routes nobody serves");
    }

    #[test]
    fn port_fields_need_the_networks_owner_unless_an_override_says_otherwise() {
        use crate::network::ports::{AddressPairRequest, FixedIpRequest, NewPort};
        let every = NewPort {
            mac_address: Some("fa:16:3e:00:00:01".into()),
            fixed_ips: Some(vec![FixedIpRequest {
                subnet_id: None,
                ip_address: Some("10.0.0.5".into()),
            }]),
            port_security_enabled: Some(false),
            allowed_address_pairs: Some(vec![AddressPairRequest {
                ip_address: "10.0.0.6".into(),
                mac_address: None,
            }]),
            device_owner: Some("network:dhcp".into()),
            host_id: Some("box".into()),
            ..NewPort::default()
        };
        let fields = every.restricted_fields();
        // Every field a request can set has its rule, for both actions.
        for action in ["create_port", "update_port"] {
            for f in &fields {
                assert!(
                    PORT_FIELD_RULES.iter().any(|r| r.action == action
                        && r.field == *f
                        && r.name == format!("{action}:{f}")),
                    "{action}:{f} has no rule"
                );
            }
        }
        assert_eq!(fields.len(), 6);
        let p = Policy::default();
        let member = ctx(&["member", "reader"]);
        let admin = ctx(&["admin", "member", "reader"]);
        for f in &fields {
            let on_shared = p.enforce_port_fields(&member, "create_port", &[f], "admin-project");
            let refused = on_shared.unwrap_err();
            assert_eq!(refused.status, hyper::StatusCode::FORBIDDEN);
            assert_eq!(
                refused.message,
                format!("(rule:create_port and rule:create_port:{f}) is disallowed by policy")
            );
            assert!(p
                .enforce_port_fields(&admin, "create_port", &[f], "p")
                .is_ok());
        }
        // On its own network a member sets all but the binding.
        let own: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| *f != "binding:host_id")
            .collect();
        assert!(p
            .enforce_port_fields(&member, "create_port", &own, "p")
            .is_ok());
        assert!(p
            .enforce_port_fields(&member, "create_port", &["binding:host_id"], "p")
            .is_err());
        // Fields no rule restricts pass.
        assert!(p
            .enforce_port_fields(&member, "create_port", &["name"], "x")
            .is_ok());
        // An override replaces the rule: members anywhere, and then owners no longer suffice.
        let p = Policy::new(BTreeMap::from([
            (
                "create_port:mac_address".to_owned(),
                vec!["member".to_owned()],
            ),
            (
                "create_port:device_owner".to_owned(),
                vec!["admin".to_owned()],
            ),
        ]))
        .unwrap();
        assert!(p
            .enforce_port_fields(&member, "create_port", &["mac_address"], "admin-project")
            .is_ok());
        assert!(p
            .enforce_port_fields(&member, "create_port", &["device_owner"], "p")
            .is_err());
    }

    #[test]
    fn the_readme_lists_every_rule_with_its_default() {
        let readme = include_str!("../../README.md");
        for f in PORT_FIELD_RULES {
            let default = match f.default {
                FieldAdmits::NetworkOwner => "network owner",
                FieldAdmits::Role(role) => role,
            };
            let row = format!("| `{}` | {default} |", f.name);
            assert!(
                readme.contains(&row),
                "control/README.md lacks the row {row}"
            );
        }
        for r in all_rules() {
            let default = match r.default {
                Admits::Public => "anyone",
                Admits::Authenticated => "any token",
                Admits::Role(role) => role,
            };
            let row = format!("| `{}` | {default} |", r.name);
            assert!(
                readme.contains(&row),
                "control/README.md lacks the row {row}"
            );
        }
    }

    #[test]
    fn readers_read_members_write_admins_manage() {
        let p = Policy::default();
        let reader = ctx(&["reader"]);
        let member = ctx(&["member", "reader"]);
        let admin = ctx(&["admin", "member", "reader"]);
        let list = route(Method::GET, "/compute/v2.1/servers");
        let create = route(Method::POST, "/compute/v2.1/servers");
        let flavor = route(Method::POST, "/compute/v2.1/flavors");
        for (who, list_ok, create_ok, flavor_ok) in [
            (&reader, true, false, false),
            (&member, true, true, false),
            (&admin, true, true, true),
        ] {
            assert_eq!(p.enforce(list, Some(who), b"").is_ok(), list_ok, "{who:?}");
            assert_eq!(
                p.enforce(create, Some(who), b"{}").is_ok(),
                create_ok,
                "{who:?}"
            );
            assert_eq!(
                p.enforce(flavor, Some(who), b"{}").is_ok(),
                flavor_ok,
                "{who:?}"
            );
        }
        // Before login only public routes answer.
        assert!(p.enforce(list, None, b"").is_err());
        assert!(p.enforce(route(Method::GET, "/compute"), None, b"").is_ok());
        let refused = p.enforce(create, Some(&reader), b"{}").unwrap_err();
        assert_eq!(refused.status, hyper::StatusCode::FORBIDDEN);
        assert_eq!(
            refused.message,
            "Policy doesn't allow os_compute_api:servers:create to be performed."
        );
    }

    #[test]
    fn a_route_missing_from_the_table_is_the_admins_alone() {
        fn unreachable(_: &crate::api::Call<'_>) -> Result<crate::api::Reply, Fault> {
            Err(Fault::internal("a route with no rule ran for a non-admin"))
        }
        let unlisted = Route {
            method: Method::GET,
            path: "/compute/v2.1/os-unlisted/{project_id}",
            service: ServiceKind::Compute,
            access: Access::Caller,
            handler: unreachable,
            body: crate::api::routes::BodyKind::Buffered,
        };
        let p = Policy::default();
        let member = ctx(&["member", "reader"]);
        let refused = p.enforce(&unlisted, Some(&member), b"").unwrap_err();
        assert_eq!(refused.status, hyper::StatusCode::FORBIDDEN);
        assert!(
            refused.message.contains("outpost:unlisted_route"),
            "{refused}"
        );
        assert!(p
            .enforce(&unlisted, Some(&ctx(&["admin", "member", "reader"])), b"")
            .is_ok());
        assert_eq!(rule_of(&Method::GET, unlisted.path, b""), None);
    }

    #[test]
    fn an_action_is_checked_under_its_own_rule() {
        let action = route(Method::POST, "/compute/v2.1/servers/{server_id}/action");
        assert_eq!(
            rule_for(action, br#"{"os-stop": null}"#).name,
            "os_compute_api:servers:stop"
        );
        assert_eq!(
            rule_for(action, b"{}").name,
            "os_compute_api:servers:action"
        );
        assert_eq!(
            rule_for(action, b"not json").name,
            "os_compute_api:servers:action"
        );
        let p = Policy::new(BTreeMap::from([(
            "os_compute_api:servers:reboot".to_owned(),
            vec!["admin".to_owned()],
        )]))
        .unwrap();
        let member = ctx(&["member", "reader"]);
        assert!(p
            .enforce(action, Some(&member), br#"{"os-stop": null}"#)
            .is_ok());
        assert!(p
            .enforce(action, Some(&member), br#"{"reboot": {"type": "HARD"}}"#)
            .is_err());
    }

    #[test]
    fn overrides_replace_a_rules_roles_and_typos_are_refused() {
        let p = Policy::new(BTreeMap::from([
            ("image:get_images".to_owned(), vec!["member".to_owned()]),
            (
                "os_compute_api:os-services:list".to_owned(),
                vec!["reader".to_owned()],
            ),
        ]))
        .unwrap();
        let reader = ctx(&["reader"]);
        assert!(p
            .enforce(route(Method::GET, "/image/v2/images"), Some(&reader), b"")
            .is_err());
        assert!(p
            .enforce(
                route(Method::GET, "/compute/v2.1/os-services"),
                Some(&reader),
                b""
            )
            .is_ok());
        // Untouched rules keep their defaults.
        assert!(p
            .enforce(
                route(Method::GET, "/image/v2/images/{image_id}"),
                Some(&reader),
                b""
            )
            .is_ok());
        assert_eq!(
            Policy::new(BTreeMap::from([("image:get_imagez".to_owned(), vec![])])),
            Err(PolicyError::UnknownRule("image:get_imagez".into()))
        );
        assert_eq!(
            Policy::new(BTreeMap::from([("discovery".to_owned(), vec![])])),
            Err(PolicyError::PublicRule("discovery".into()))
        );
    }
}
