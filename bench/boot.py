#!/usr/bin/env python3
"""Boot benchmark for outpost-vmm (not a test: it prints figures, it asserts nothing).

For each kernel it boots the guest N times and reports, as min/median/max:
  - process start -> first console line, and -> the init marker (OUTPOST-INIT-OK)
  - process start -> first KVM_RUN (the monitor's own start-up cost, from its log)
  - the monitor's peak RSS
  - the share of vCPU time spent in the monitor's own code (the rest is KVM_RUN)
  - in-guest sequential read throughput of a 256 MiB disk (test kernel)
and per run the exits the monitor handled and the instructions it emulated, by kind.

Usage: bench/boot.py [--runs N] [--debian-runs N] [--kernel test|debian|both]
Needs the guest assets (guest/build-assets.sh) and a release build of outpost-vmm.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.environ.get("OUTPOST_ASSETS_DIR", "/var/cache/outpost/guest/current")
VMM = os.environ.get("OUTPOST_VMM_BIN", os.path.join(ROOT, "target/release/outpost-vmm"))
MARKER = b"OUTPOST-INIT-OK"

# Guest time around a direct-I/O read of the whole 256 MiB disk (busybox dd prints no rate).
CHECKS = """read -r t0 _ </proc/uptime
dd if=/dev/vdb of=/dev/null bs=1M iflag=direct 2>/dev/null
read -r t1 _ </proc/uptime
echo "DD-SECONDS=$t0 $t1"
"""


def rootfs_with_checks(work):
    root = os.path.join(work, "root")
    for d in ["bin", "sbin", "etc/outpost", "dev", "proc", "sys", "tmp", "run", "mnt"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy(os.path.join(ASSETS, "busybox"), os.path.join(root, "bin/busybox"))
    for p in ["sbin/init", "init"]:
        shutil.copy(os.path.join(ASSETS, "init"), os.path.join(root, p))
    with open(os.path.join(root, "etc/outpost/checks.sh"), "w") as f:
        f.write(CHECKS)
    for p in ["bin/busybox", "sbin/init", "init", "etc/outpost/checks.sh"]:
        os.chmod(os.path.join(root, p), 0o755)
    os.symlink("busybox", os.path.join(root, "bin/sh"))
    img = os.path.join(work, "rootfs.ext4")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", root, img, "48M"], check=True)
    return img


def config(kind, work):
    if kind == "test":
        data = os.path.join(work, "data.img")
        with open(data, "wb") as f:
            f.truncate(256 << 20)
        return {
            "boot-source": {"kernel_image_path": os.path.join(ASSETS, "test-vmlinux"),
                            "boot_args": "console=ttyS0 reboot=k panic=1 outpost.end=poweroff"},
            "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
            "drives": [
                {"drive_id": "rootfs", "path_on_host": rootfs_with_checks(work), "is_root_device": True},
                {"drive_id": "data", "path_on_host": data, "is_root_device": False, "is_read_only": True},
            ],
        }
    return {
        "boot-source": {"kernel_image_path": os.path.join(ASSETS, "debian-vmlinuz"),
                        "initrd_path": os.path.join(ASSETS, "debian-initrd.cpio"),
                        "boot_args": "console=ttyS0 reboot=k panic=1 outpost.end=poweroff"},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
    }


def one_run(kind):
    work = tempfile.mkdtemp(prefix="outpost-bench-")
    try:
        cfg_path = os.path.join(work, "vm.json")
        with open(cfg_path, "w") as f:
            json.dump(config(kind, work), f)
        err_path = os.path.join(work, "stderr")
        t0 = time.monotonic()
        with open(err_path, "w") as err:
            p = subprocess.Popen([VMM, "--no-api", "--log-level", "Info", "--config-file", cfg_path], stdout=subprocess.PIPE,
                                 stderr=err)
            first_line = marker = None
            out = b""
            while True:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                now = time.monotonic() - t0
                if first_line is None:
                    first_line = now
                out += chunk
                if marker is None and MARKER in out:
                    marker = now
            _, status, usage = os.wait4(p.pid, 0)
        log = open(err_path).read()
        m = re.search(r"first KVM_RUN since_start=Some\(([\d.]+)(ms|µs|s)\)", log)
        first_run = None
        if m:
            first_run = float(m.group(1)) * {"ms": 1e-3, "µs": 1e-6, "s": 1}[m.group(2)]
        exits = re.search(r"exits=(\{[^}]*\})", log)
        pvm = re.search(r"pvm=(\{[^}]*\})", log)
        dd = re.search(rb"DD-SECONDS=([\d.]+) ([\d.]+)", out)
        r = {
            "first_line_s": first_line, "marker_s": marker, "first_kvm_run_s": first_run,
            "peak_rss_mib": usage.ru_maxrss / 1024, "exit_status": os.waitstatus_to_exitcode(status),
            "exits": exits.group(1) if exits else None, "pvm": pvm.group(1) if pvm else None,
            "disk_read_mib_s": 256.0 / (float(dd.group(2)) - float(dd.group(1))) if dd else None,
        }
        nums = re.findall(r'"time_in_(kvm_run|monitor)_ms": (\d+)', r["exits"] or "")
        t = dict((k, int(v)) for k, v in nums)
        if t.get("kvm_run"):
            r["monitor_share_pct"] = 100.0 * t.get("monitor", 0) / (t["kvm_run"] + t.get("monitor", 0))
        return r
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary(name, values, unit):
    v = [x for x in values if x is not None]
    if not v:
        print(f"  {name:<28} n/a")
        return
    print(f"  {name:<28} min {min(v):9.3f}  median {statistics.median(v):9.3f}  max {max(v):9.3f} {unit}  (n={len(v)})")


def bench(kind, runs):
    print(f"== {kind} kernel, {runs} runs, 1 vCPU, 256 MiB")
    rs = []
    for i in range(runs):
        r = one_run(kind)
        rs.append(r)
        print(f"  run {i + 1}: status {r['exit_status']} first line {r['first_line_s']} s, marker {r['marker_s']} s, "
              f"rss {r['peak_rss_mib']:.1f} MiB, disk read {r['disk_read_mib_s']} MiB/s\n    exits {r['exits']}\n    pvm {r['pvm']}",
              flush=True)
    summary("first console line", [r["first_line_s"] for r in rs], "s")
    summary("init marker", [r["marker_s"] for r in rs], "s")
    summary("first KVM_RUN (start-up)", [r["first_kvm_run_s"] and r["first_kvm_run_s"] * 1000 for r in rs], "ms")
    summary("peak RSS", [r["peak_rss_mib"] for r in rs], "MiB")
    summary("monitor share of vCPU time", [r.get("monitor_share_pct") for r in rs], "%")
    summary("in-guest 256 MiB read", [r["disk_read_mib_s"] for r in rs], "MiB/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--debian-runs", type=int, default=3)
    ap.add_argument("--kernel", choices=["test", "debian", "both"], default="both")
    a = ap.parse_args()
    if not os.path.exists(VMM):
        sys.exit(f"{VMM} missing: cargo build --release -p outpost-vmm")
    if a.kernel in ("test", "both"):
        bench("test", a.runs)
    if a.kernel in ("debian", "both"):
        bench("debian", a.debian_runs)


if __name__ == "__main__":
    main()
