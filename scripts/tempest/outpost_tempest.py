"""Prepares a Tempest workspace for an outpostd and reads Tempest's results; run by
scripts/tempest.sh with the Tempest venv's python.

    outpost_tempest.py setup URL ADMIN_PASSWORD WORKSPACE GUEST_ASSETS
        Provisions through outpostd's own API what an operator gives Tempest: two projects,
        an admin, a member and a reader of the first, a member of the second (Tempest's
        pre-provisioned accounts, WORKSPACE/etc/accounts.yaml), two flavors, two images of
        the guest's root disk and a shared network for servers; then writes WORKSPACE/etc/tempest.conf from what outpostd
        answers (catalog, microversions, network extensions) and what it does not serve.

    outpost_tempest.py summary SUBUNIT_FILE
        Prints passed/failed/skipped per service from a `tempest run --subunit` stream and
        exits 1 when a test failed.

Only the standard library and python-subunit (a Tempest dependency) are used.
"""

import collections
import json
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path

# What outpostd does not serve, switched off as a deployer switches it off (one place: the
# README's list of skips, control/README.md "Tempest", names the same options).
COMPUTE_FEATURES_OFF = [
    "change_password", "console_output_v2", "live_migration", "block_migration_for_live_migration",
    "block_migrate_cinder_iscsi", "cold_migration", "pause", "suspend", "shelve",
    "shelve_migrate", "snapshot", "rescue", "stable_rescue", "interface_attach",
    "vnc_console", "spice_console", "serial_console", "rdp_console", "config_drive",
    "metadata_service", "personality", "attach_encrypted_volume", "swap_volume",
    "volume_multiattach", "disk_config", "hostname_fqdn_sanitization", "cinder_volume_tags",
    "unified_limits", "instance_locking_extended", "volume_backed_live_migration",
    "can_migrate_between_any_hosts", "nova_cert", "preserve_ports",
]
IMAGE_FEATURES_OFF = [
    "import_image", "os_glance_reserved", "manage_locations", "image_conversion",
    "http_store_checksum", "image_caching_enabled",
]
VOLUME_FEATURES_OFF = [
    "backup", "clone", "manage_snapshot", "manage_volume", "extend_attached_volume",
    "extend_attached_encrypted_volume", "extend_volume_with_snapshot", "multi_backend",
    "volume_revert", "volume_image_dep_tests", "cluster_active_active",
]


class Api:
    """outpostd over HTTP with one token."""

    def __init__(self, url):
        self.url = url.rstrip("/")
        self.token = None

    def call(self, method, path, body=None, headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if self.token:
            req.add_header("X-Auth-Token", self.token)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                text = r.read()
                return r.status, r.headers, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            raise SystemExit(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}")

    def login(self, user, password, project):
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}
        _, headers, reply = self.call("POST", "/identity/v3/auth/tokens", body)
        self.token = headers["X-Subject-Token"]
        return reply["token"]


def provision(api, tag):
    """The projects, users and role grants of Tempest's pre-provisioned accounts."""
    roles = {r["name"]: r["id"] for r in api.call("GET", "/identity/v3/roles")[2]["roles"]}
    projects = {}
    for p in ("a", "b"):
        name = f"tempest-{tag}-{p}"
        projects[p] = (name, api.call("POST", "/identity/v3/projects",
                                      {"project": {"name": name, "domain_id": "default"}})[2]
                       ["project"]["id"])
    # The order matters: Tempest takes its alt credentials (another project, for sharing and
    # isolation tests) as the first free account without an asked-for role, so the second
    # project's member comes before the first project's reader.
    wanted = [("admin", "a", ["admin", "member", "reader"]), ("member", "a", ["member", "reader"]),
              ("alt", "b", ["member", "reader"]), ("reader", "a", ["reader"])]
    accounts = []
    for who, p, granted in wanted:
        name, password = f"tempest-{tag}-{who}", secrets.token_urlsafe(18)
        user = api.call("POST", "/identity/v3/users", {"user": {
            "name": name, "password": password, "domain_id": "default",
            "default_project_id": projects[p][1]}})[2]["user"]["id"]
        for role in granted:
            api.call("PUT", f"/identity/v3/projects/{projects[p][1]}/users/{user}/roles/{roles[role]}")
        # Tempest matches a persona by the first role listed (admin, member, reader).
        accounts.append({"username": name, "password": password, "project_name": projects[p][0],
                         "user_domain_name": "Default", "project_domain_name": "Default",
                         "roles": granted[:1]})
    return accounts


def upload_image(api, name, path):
    image = api.call("POST", "/image/v2/images", {
        "name": name, "disk_format": "raw", "container_format": "bare",
        "visibility": "public"})[2]["id"]
    api.call("PUT", f"/image/v2/images/{image}/file", raw=Path(path).read_bytes(),
             headers={"Content-Type": "application/octet-stream"})
    return image


def accounts_yaml(accounts):
    # YAML by hand: every value is a plain string without quotes or colons, so JSON's quoting
    # (valid YAML) is enough and no YAML library is needed.
    lines = []
    for a in accounts:
        lines.append(f"- username: {json.dumps(a['username'])}")
        for k in ("password", "project_name", "user_domain_name", "project_domain_name"):
            lines.append(f"  {k}: {json.dumps(a[k])}")
        lines.append(f"  roles: {json.dumps(a['roles'])}")
    return "\n".join(lines) + "\n"


def ini(sections):
    out = []
    for name, opts in sections.items():
        out.append(f"[{name}]")
        for k, v in opts.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, list):
                v = ",".join(v)
            out.append(f"{k} = {v}")
        out.append("")
    return "\n".join(out)


def setup(url, admin_password, workspace, assets):
    workspace, assets = Path(workspace), Path(assets)
    api = Api(url)
    token = api.login("admin", admin_password, "admin")
    tag = secrets.token_hex(3)
    accounts = provision(api, tag)

    rootfs = assets / "rootfs.ext4"
    disk_gib = -(-rootfs.stat().st_size // 2**30)
    flavors = []
    for name, ram, vcpus in ((f"tempest-{tag}-1", 256, 1), (f"tempest-{tag}-2", 512, 1)):
        flavors.append(api.call("POST", "/compute/v2.1/flavors", {"flavor": {
            "name": name, "ram": ram, "vcpus": vcpus, "disk": disk_gib}})[2]["flavor"]["id"])
    images = [upload_image(api, f"tempest-{tag}-{n}", rootfs) for n in ("image", "image-alt")]
    # The network servers are booted on (Tempest's fixed_network_name): shared, so every
    # account's servers get a port, an address and the default security group, as on a cloud
    # whose operator provides a network.
    net_name = f"tempest-{tag}-net"
    net = api.call("POST", "/network/v2.0/networks",
                   {"network": {"name": net_name, "shared": True}})[2]["network"]["id"]
    api.call("POST", "/network/v2.0/subnets", {"subnet": {
        "name": f"{net_name}-v4", "network_id": net, "ip_version": 4,
        "cidr": "10.254.0.0/24"}})

    # What outpostd says it serves, read rather than assumed.
    region = token["catalog"][0]["endpoints"][0]["region"] if token.get("catalog") else "RegionOne"
    compute = api.call("GET", "/compute/v2.1")[2]["version"]
    extensions = [e["alias"] for e in api.call("GET", "/network/v2.0/extensions")[2]["extensions"]]

    etc = workspace / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "accounts.yaml").write_text(accounts_yaml(accounts))
    conf = {
        "DEFAULT": {"log_dir": str(workspace / "logs"), "log_file": "tempest.log"},
        "auth": {"use_dynamic_credentials": False,
                 "test_accounts_file": str(etc / "accounts.yaml"),
                 "default_credentials_domain_name": "Default",
                 "admin_domain_name": "Default"},
        "identity": {"uri_v3": f"{url}/identity/v3", "auth_version": "v3", "region": region,
                     "admin_role": "admin", "default_domain_id": "default"},
        # Keystone features outpostd does not serve (control/README.md, "Tempest").
        "identity-feature-enabled": {"api_v3": True, "trust": False,
                                     "domain_specific_drivers": False,
                                     "security_compliance": False, "project_tags": False,
                                     "application_credentials": False, "access_rules": False,
                                     "external_idp": False},
        "compute": {"image_ref": images[0], "image_ref_alt": images[1],
                    "flavor_ref": flavors[0], "flavor_ref_alt": flavors[1],
                    "region": region, "min_microversion": compute["min_version"],
                    "max_microversion": compute["version"], "build_timeout": 300,
                    "build_interval": 1, "min_compute_nodes": 1,
                    "fixed_network_name": net_name},
        "compute-feature-enabled": {**{f: False for f in COMPUTE_FEATURES_OFF},
                                    "console_output": True, "resize": True},
        "image": {"region": region, "container_formats": ["bare", "ami", "aki", "ari"],
                  "disk_formats": ["raw", "qcow2", "ami", "aki", "ari", "iso"],
                  "build_timeout": 300},
        "image-feature-enabled": {"api_v2": True, **{f: False for f in IMAGE_FEATURES_OFF}},
        "network": {"region": region, "project_networks_reachable": False,
                    "shared_physical_network": False},
        "network-feature-enabled": {"api_extensions": extensions or ["None"],
                                    "ipv6": True, "floating_ips": False,
                                    "port_security": "port-security" in extensions},
        "volume": {"region": region, "min_microversion": "3.0", "max_microversion": "3.0",
                   "volume_size": 1, "build_timeout": 300, "build_interval": 1},
        "volume-feature-enabled": {"snapshot": True, "api_extensions": ["None"],
                                   **{f: False for f in VOLUME_FEATURES_OFF}},
        "service_available": {"nova": True, "glance": True, "cinder": True, "neutron": True,
                              "swift": False, "heat": False, "horizon": False,
                              "ceilometer": False, "aodh": False, "gnocchi": False,
                              "designate": False, "barbican": False, "ironic": False,
                              "manila": False, "octavia": False, "placement": False},
        # Guests here are not reachable over ssh from the test runner.
        "validation": {"run_validation": False},
    }
    (etc / "tempest.conf").write_text(ini(conf))
    print(f"provisioned projects tempest-{tag}-a/b, flavors {flavors}, images {images}")


def service_of(test_id):
    """tempest.api.<service>.… → the service's name. A class's setUp failure or skip is
    reported as `setUpClass (tempest.api.….Class)`."""
    if "(" in test_id:
        test_id = test_id[test_id.index("(") + 1:].rstrip(")")
    parts = test_id.split(".")
    return parts[2] if len(parts) > 3 and parts[:2] == ["tempest", "api"] else "other"


def summary(path):
    import subunit
    import testtools

    counts = collections.defaultdict(collections.Counter)
    failed = set()

    def record(test):
        status, test_id = test["status"], test["id"]
        if status in ("success", "xfail"):
            kind = "passed"
        elif status == "skip":
            kind = "skipped"
        elif status in ("fail", "uxsuccess"):
            kind = "failed"
            # A class's setUp failure is reported once per test of the class: count it once.
            if test_id in failed:
                return
            failed.add(test_id)
        else:
            return
        # Class-level setUp failures and skips are reported under the class's name.
        counts[service_of(test_id.split("[")[0])][kind] += 1

    with open(path, "rb") as stream:
        case = subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout")
        result = testtools.StreamToDict(record)
        result.startTestRun()
        case.run(result)
        result.stopTestRun()
    print(f"{'service':<10} {'passed':>7} {'failed':>7} {'skipped':>8}")
    total = collections.Counter()
    for service in sorted(counts):
        c = counts[service]
        total.update(c)
        print(f"{service:<10} {c['passed']:>7} {c['failed']:>7} {c['skipped']:>8}")
    print(f"{'all':<10} {total['passed']:>7} {total['failed']:>7} {total['skipped']:>8}")
    for test_id in sorted(failed):
        print(f"FAILED {test_id}")
    return 1 if failed else 0


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "setup":
        setup(*sys.argv[2:6])
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "summary":
        return summary(sys.argv[2])
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
