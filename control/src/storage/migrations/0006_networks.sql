-- Neutron networks, subnets, ports (with their fixed IPs and security groups), security
-- groups and their rules. Lists that are only ever read and written whole (pools, name
-- servers, host routes, address pairs) are JSON text.
CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    admin_state_up INTEGER NOT NULL,
    shared INTEGER NOT NULL,
    mtu INTEGER NOT NULL,
    port_security_enabled INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    revision_number INTEGER NOT NULL
);

CREATE TABLE subnets (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks (id),
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    ip_version INTEGER NOT NULL,
    cidr TEXT NOT NULL,
    gateway_ip TEXT,
    enable_dhcp INTEGER NOT NULL,
    dns_nameservers TEXT NOT NULL,
    allocation_pools TEXT NOT NULL,
    host_routes TEXT NOT NULL,
    ipv6_address_mode TEXT,
    ipv6_ra_mode TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    revision_number INTEGER NOT NULL
);
CREATE INDEX subnets_by_network ON subnets (network_id);

CREATE TABLE ports (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks (id),
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    mac_address TEXT NOT NULL,
    admin_state_up INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    device_owner TEXT NOT NULL,
    host_id TEXT NOT NULL,
    port_security_enabled INTEGER NOT NULL,
    allowed_address_pairs TEXT NOT NULL,
    -- Made by the compute side for a server (not given to it by the user): deleted with the
    -- server rather than unbound, as Nova does.
    auto_delete INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    revision_number INTEGER NOT NULL,
    -- Neutron: a MAC address is unique on its network.
    UNIQUE (network_id, mac_address)
);
CREATE INDEX ports_by_device ON ports (device_id);

-- IPAM: one row per address handed out. The UNIQUE constraint is the last word on "each
-- address once", whatever the code above it does.
CREATE TABLE ip_allocations (
    port_id TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    subnet_id TEXT NOT NULL REFERENCES subnets (id),
    network_id TEXT NOT NULL REFERENCES networks (id),
    ip_address TEXT NOT NULL,
    -- Order of the port's fixed_ips, as requested.
    position INTEGER NOT NULL,
    UNIQUE (network_id, ip_address)
);
CREATE INDEX ip_allocations_by_subnet ON ip_allocations (subnet_id);
CREATE INDEX ip_allocations_by_port ON ip_allocations (port_id);

CREATE TABLE security_groups (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    -- The project's `default` group (one per project).
    is_default INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    revision_number INTEGER NOT NULL
);
CREATE UNIQUE INDEX one_default_group_per_project ON security_groups (project_id)
    WHERE is_default = 1;

CREATE TABLE security_group_rules (
    id TEXT PRIMARY KEY,
    security_group_id TEXT NOT NULL REFERENCES security_groups (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    ethertype TEXT NOT NULL,
    protocol TEXT,
    port_range_min INTEGER,
    port_range_max INTEGER,
    remote_ip_prefix TEXT,
    -- A rule naming another group goes with that group, as in Neutron.
    remote_group_id TEXT REFERENCES security_groups (id) ON DELETE CASCADE,
    description TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    revision_number INTEGER NOT NULL
);
CREATE INDEX rules_by_group ON security_group_rules (security_group_id);

CREATE TABLE port_security_groups (
    port_id TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    -- No cascade: a group in use cannot go (checked first for Neutron's 409).
    security_group_id TEXT NOT NULL REFERENCES security_groups (id),
    position INTEGER NOT NULL,
    PRIMARY KEY (port_id, security_group_id)
);
CREATE INDEX port_security_groups_by_group ON port_security_groups (security_group_id);
