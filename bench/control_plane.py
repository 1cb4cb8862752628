#!/usr/bin/env python3
"""Control-plane benchmark for outpostd (not a test: it prints figures, it asserts nothing).

Boots the test guest through outpostd's Nova API (`POST /servers`, the default image, a
1 vCPU / 256 MiB flavor, no network) and the same guest with `outpost-vmm` alone (the very
configuration outpostd gave its monitor, read back from the monitor's `GET /vm/config`, on a
fresh copy of the root disk of the same size), and reports, as min/median/p99/max:

  outpostd, N servers one at a time, then M at once:
  - POST /servers -> the guest's init marker (OUTPOST-INIT-OK) in its console log
  - POST /servers -> the 202 answer
  - POST /servers -> the monitor's spawn (the microsecond timestamp outpostd writes to the
    server's vmm.log right before it starts the monitor): claim, image hold, disk clone
  - POST /servers -> launched_at (set once the monitor is configured over its API and has
    accepted InstanceStart): all of the control plane's work for the server
  outpost-vmm alone, K runs:
  - process start -> the init marker, and -> first KVM_RUN (from the monitor's log)

The boot-to-marker figures are dominated by the guest's emulated boot (20-40 s on a PVM
host) and are noisy; the difference of their medians is the control plane's cost only
roughly. POST -> launched_at measures that cost directly, on one clock (the host's).

Usage: bench/control_plane.py [--serial N] [--concurrent M] [--vmm-runs K]
Needs the guest assets (guest/build-assets.sh) and a release build:
  cargo build --release -p outpost-vmm -p outpost-control --bins
"""
import argparse, datetime, http.client, json, os, re, shutil, socket, statistics, subprocess, sys
import tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.environ.get("OUTPOST_ASSETS_DIR", "/var/cache/outpost/guest/current")
RELEASE = os.path.join(ROOT, "target/release")
VMM = os.environ.get("OUTPOST_VMM_BIN", os.path.join(RELEASE, "outpost-vmm"))
OUTPOSTD = os.environ.get("OUTPOSTD_BIN", os.path.join(RELEASE, "outpostd"))
MARKER = b"OUTPOST-INIT-OK"
PASSWORD = "bench-password"
BOOT_TIMEOUT = 600
RUN_MARKER = "--- outpostd: monitor started "


def utc_epoch(text):
    """`2026-11-25T13:13:50.391491` (Nova's usage time) or with a trailing Z, to epoch s."""
    dt = datetime.datetime.strptime(text.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


class Outpostd:
    """A release outpostd on a temporary state directory, talked to over TCP with a token."""

    def __init__(self, work):
        self.work = work
        self.state = os.path.join(work, "state")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        config = os.path.join(work, "outpostd.toml")
        with open(config, "w") as f:
            # Placement's default 4 vCPUs per core would refuse the concurrent run's 9th 1-vCPU
            # server on a 2-core host: this measures the control plane, not the scheduler.
            f.write(f'[compute]\nmonitor = "{VMM}"\nstop_timeout_secs = 10\ncpu_allocation_ratio = 16.0\n')
        env = dict(os.environ, OUTPOST_ADMIN_PASSWORD=PASSWORD, OUTPOST_LOG="info")
        self.log = open(os.path.join(work, "outpostd.log"), "w")
        self.proc = subprocess.Popen(
            [OUTPOSTD, "--state-dir", self.state, "--listen", f"127.0.0.1:{self.port}", "--config", config],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"outpostd did not come up; see {self.log.name}")
                time.sleep(0.05)
        status, headers, _ = self.request("POST", "/identity/v3/auth/tokens", {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}, token=False)
        assert status == 201, status
        self.token = headers["x-subject-token"]

    def request(self, method, path, body=None, token=True):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Content-Type": "application/json", "OpenStack-API-Version": "compute 2.75"}
        if token:
            headers["X-Auth-Token"] = self.token
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(data) if data else None

    def server_dir(self, sid):
        return os.path.join(self.state, "servers", sid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def wait_marker(d, sid, deadline):
    """Polls the server's console log every 10 ms until the marker shows; the epoch time it
    did. None when the server went to ERROR (asked every second) or the deadline passed."""
    path = os.path.join(d.server_dir(sid), "console.log")
    next_check = time.time() + 1
    while time.time() < deadline:
        try:
            with open(path, "rb") as f:
                if MARKER in f.read():
                    return time.time()
        except FileNotFoundError:
            pass
        if time.time() > next_check:
            next_check = time.time() + 1
            if d.request("GET", f"/compute/v2.1/servers/{sid}")[2]["server"]["status"] == "ERROR":
                return None
        time.sleep(0.01)
    return None


def boot_through_outpostd(d, name, start_barrier=None):
    if start_barrier:
        start_barrier.wait()
    t0 = time.time()
    status, _, body = d.request("POST", "/compute/v2.1/servers", {"server": {
        "name": name, "flavorRef": "bench", "imageRef": "outpost-guest", "networks": "none"}})
    t_answer = time.time()
    if status != 202:
        return {"error": f"POST /servers: {status} {body}"}
    sid = body["server"]["id"]
    marker = wait_marker(d, sid, t0 + BOOT_TIMEOUT)
    _, _, s = d.request("GET", f"/compute/v2.1/servers/{sid}")
    s = s["server"]
    spawn = None
    try:
        with open(os.path.join(d.server_dir(sid), "vmm.log")) as f:
            for line in f:
                if line.startswith(RUN_MARKER):
                    spawn = utc_epoch(line[len(RUN_MARKER):].strip())
                    break
    except FileNotFoundError:
        pass
    launched = s.get("OS-SRV-USG:launched_at")
    return {
        "id": sid, "status": s["status"],
        "answer_ms": (t_answer - t0) * 1000,
        "spawn_ms": (spawn - t0) * 1000 if spawn else None,
        "launched_ms": (utc_epoch(launched) - t0) * 1000 if launched else None,
        "marker_s": marker - t0 if marker else None,
    }


def delete_all(d, ids):
    for sid in ids:
        d.request("DELETE", f"/compute/v2.1/servers/{sid}")
    deadline = time.monotonic() + 300
    for sid in ids:
        while d.request("GET", f"/compute/v2.1/servers/{sid}")[0] != 404:
            if time.monotonic() > deadline:
                sys.exit(f"server {sid} was not deleted")
            time.sleep(0.2)


def monitor_config(d, sid):
    """The configuration outpostd gave the server's monitor, from the monitor's own API."""
    c = http.client.HTTPConnection("localhost")
    c.sock = socket.socket(socket.AF_UNIX)
    c.sock.connect(os.path.join(d.server_dir(sid), "api.sock"))
    c.request("GET", "/vm/config")
    config = json.loads(c.getresponse().read())
    # The disks go with the server: keep their sizes for the copies outpost-vmm boots.
    for drive in config.get("drives", []):
        drive["size"] = os.path.getsize(drive["path_on_host"])
    return config


def boot_vmm_alone(config, work, i):
    """One boot of the same guest by outpost-vmm alone, on a fresh copy of the root disk."""
    run = os.path.join(work, f"vmm-{i}")
    os.makedirs(run)
    cfg = json.loads(json.dumps(config))
    for drive in cfg.get("drives", []):
        size = drive.pop("size")
        copy = os.path.join(run, drive["drive_id"] + ".img")
        shutil.copy(os.path.join(ASSETS, "rootfs.ext4"), copy)
        os.truncate(copy, size)
        drive["path_on_host"] = copy
    # The console goes to a file, as outpostd has it, and is watched the same way.
    console = os.path.join(run, "console.log")
    for section in cfg.values():
        if isinstance(section, dict) and "serial_out_path" in section:
            section["serial_out_path"] = console
    cfg_path = os.path.join(run, "vm.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    err_path = os.path.join(run, "stderr")
    t0 = time.monotonic()
    with open(err_path, "w") as err:
        p = subprocess.Popen([VMM, "--no-api", "--log-level", "Info", "--config-file", cfg_path],
                             stdout=subprocess.DEVNULL, stderr=err)
        marker = None
        deadline = time.monotonic() + BOOT_TIMEOUT
        while marker is None and p.poll() is None and time.monotonic() < deadline:
            try:
                with open(console, "rb") as f:
                    if MARKER in f.read():
                        marker = time.monotonic() - t0
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        # The guest waits after its checks (outpost.end=wait, as outpostd boots it).
        p.kill()
        p.wait()
    log = open(err_path).read()
    m = re.search(r"first KVM_RUN since_start=Some\(([\d.]+)(ms|µs|s)\)", log)
    first_run = float(m.group(1)) * {"ms": 1, "µs": 1e-3, "s": 1000}[m.group(2)] if m else None
    shutil.rmtree(run, ignore_errors=True)
    r = {"marker_s": marker, "first_kvm_run_ms": first_run}
    if marker is None:
        r["stderr"] = log[-500:]
    return r


def percentile(v, p):
    """Nearest-rank percentile (with 20 samples, p99 is the maximum)."""
    v = sorted(v)
    k = max(0, min(len(v) - 1, -(-len(v) * p // 100) - 1))
    return v[int(k)]


def summary(name, values, unit, fmt="9.1f"):
    v = [x for x in values if x is not None]
    if not v:
        print(f"  {name:<34} n/a")
        return
    print(f"  {name:<34} min {min(v):{fmt}}  median {statistics.median(v):{fmt}}  p99 {percentile(v, 99):{fmt}}"
          f"  max {max(v):{fmt}} {unit}  (n={len(v)})", flush=True)


def report(title, rs):
    print(f"== {title}")
    bad = [r for r in rs if r.get("error") or r.get("marker_s") is None or r.get("status") != "ACTIVE"]
    for r in bad:
        print(f"  failed: {r}")
    rs = [r for r in rs if r not in bad]
    summary("POST /servers -> init marker", [r.get("marker_s") for r in rs], "s", "9.2f")
    summary("POST /servers -> 202 answer", [r.get("answer_ms") for r in rs], "ms")
    summary("POST /servers -> monitor spawn", [r.get("spawn_ms") for r in rs], "ms")
    summary("POST /servers -> launched_at", [r.get("launched_ms") for r in rs], "ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serial", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=10)
    ap.add_argument("--vmm-runs", type=int, default=20)
    a = ap.parse_args()
    for b in (VMM, OUTPOSTD):
        if not os.path.exists(b):
            sys.exit(f"{b} missing: cargo build --release -p outpost-vmm -p outpost-control --bins")
    work = tempfile.mkdtemp(prefix="outpost-bench-cp-")
    d = Outpostd(work)
    try:
        status, _, body = d.request("POST", "/compute/v2.1/flavors", {"flavor": {
            "name": "bench", "id": "bench", "vcpus": 1, "ram": 256, "disk": 1}})
        assert status == 200, (status, body)
        config = None
        serial = []
        for i in range(a.serial):
            r = boot_through_outpostd(d, f"serial-{i}")
            if config is None and r.get("id"):
                config = monitor_config(d, r["id"])
            print(f"  serial {i + 1}: {r}", flush=True)
            serial.append(r)
            delete_all(d, [r["id"]] if r.get("id") else [])
        if serial:
            report(f"outpostd, {a.serial} servers one at a time, 1 vCPU, 256 MiB", serial)

        if a.concurrent:
            barrier = threading.Barrier(a.concurrent)
            results = [None] * a.concurrent

            def one(i):
                results[i] = boot_through_outpostd(d, f"concurrent-{i}", barrier)
            threads = [threading.Thread(target=one, args=(i,)) for i in range(a.concurrent)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for i, r in enumerate(results):
                print(f"  concurrent {i + 1}: {r}", flush=True)
            delete_all(d, [r["id"] for r in results if r.get("id")])
            report(f"outpostd, {a.concurrent} servers at once, 1 vCPU, 256 MiB", results)

        if config and a.vmm_runs:
            print(f"== outpost-vmm alone, {a.vmm_runs} runs, outpostd's configuration:\n  "
                  f"{json.dumps({k: config[k] for k in ('boot-source', 'machine-config') if k in config})}")
            alone = []
            for i in range(a.vmm_runs):
                r = boot_vmm_alone(config, work, i)
                print(f"  run {i + 1}: {r}", flush=True)
                alone.append(r)
            summary("process start -> init marker", [r["marker_s"] for r in alone], "s", "9.2f")
            summary("process start -> first KVM_RUN", [r["first_kvm_run_ms"] for r in alone], "ms")
            if serial:
                ms = [r["marker_s"] for r in serial if r.get("marker_s")]
                mv = [r["marker_s"] for r in alone if r["marker_s"]]
                if ms and mv:
                    print(f"  median difference, outpostd (one at a time) - outpost-vmm alone: "
                          f"{(statistics.median(ms) - statistics.median(mv)) * 1000:.0f} ms "
                          f"(noise of the emulated boot included)")
    finally:
        d.stop()
        # Monitors outlive outpostd by design: any left by a failed run name the work dir.
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if work.encode() in f.read():
                        os.kill(int(pid), 9)
            except (OSError, ValueError):
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
