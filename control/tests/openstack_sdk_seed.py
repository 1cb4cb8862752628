"""A seed-style openstacksdk script, as a deployment tool would write it, run by
control/tests/openstack_sdk.rs with the venv's python against a real outpostd.

Connects with a password, finds a flavor and an image by name, boots a server, waits for it,
checks that it is ACTIVE and that its console shows the guest's init marker, deletes it and
waits until it is gone. Prints one `step: ...` line per step done; exits non-zero (with the
error) on any failure.

Arguments: AUTH_URL PASSWORD FLAVOR IMAGE MARKER
"""

import sys
import time

import openstack


def step(what):
    print(f"step: {what}", flush=True)


def main():
    auth_url, password, flavor_name, image_name, marker = sys.argv[1:6]
    conn = openstack.connection.Connection(
        auth_url=auth_url,
        project_name="admin",
        username="admin",
        password=password,
        user_domain_name="Default",
        project_domain_name="Default",
        region_name="RegionOne",
    )
    conn.authorize()
    step("authorized")

    flavor = conn.compute.find_flavor(flavor_name, ignore_missing=False)
    image = conn.image.find_image(image_name, ignore_missing=False)
    step(f"found flavor {flavor.id} and image {image.id}")

    server = conn.compute.create_server(
        name="seeded",
        flavor_id=flavor.id,
        image_id=image.id,
        networks="none",
        metadata={"seeded-by": "openstacksdk"},
    )
    step(f"created server {server.id}")
    server = conn.compute.wait_for_server(server, status="ACTIVE", wait=300, interval=1)
    if server.status != "ACTIVE" or server.flavor.original_name != flavor_name:
        raise SystemExit(f"unexpected server: {server.status} {server.flavor}")
    if server.image.id != image.id or server.metadata.get("seeded-by") != "openstacksdk":
        raise SystemExit(f"unexpected server: {server.image} {server.metadata}")
    step(f"server {server.id} is ACTIVE")

    deadline = time.monotonic() + 300
    while True:
        console = conn.compute.get_server_console_output(server)["output"]
        if marker in console:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"no {marker} in the console:\n{console}")
        time.sleep(1)
    step(f"console shows {marker}")

    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=120, interval=1)
    if conn.compute.find_server(server.id) is not None:
        raise SystemExit(f"server {server.id} still listed after its deletion")
    step(f"server {server.id} is gone")


if __name__ == "__main__":
    main()
