#!/usr/bin/env python3
"""rss_bench: bangerd's memory with N sandboxes (fake driver).

Starts a real bangerd on a temporary root, drops N spec files, waits until
every sandbox is Running, and prints VmRSS / VmHWM of the daemon, and the
time a full list through the API takes.  Usage: rss_bench.py [N] (10000)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from bangertest import Daemon, spec  # noqa: E402


def status(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    root = Path(tempfile.mkdtemp(prefix="banger-rss-"))
    d = Daemon(root, resync=10)
    try:
        d.start()
        d.sandboxes.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (d.sandboxes / f".s{i}.tmp").write_text(spec(f"s{i}", vcpu=1))
            os.rename(d.sandboxes / f".s{i}.tmp", d.sandboxes / f"s{i}.yaml")
        t0 = time.monotonic()
        while d.phase(f"s{n - 1}") != "Running":
            time.sleep(0.2)
        while True:
            t = time.monotonic()
            items = d.get("/v1/sandboxes")[1]["items"]
            list_s = time.monotonic() - t
            if sum(1 for i in items if i["status"]["phase"] == "Running") == n:
                break
            time.sleep(0.5)
        conv = time.monotonic() - t0
        pid = d.proc.pid
        print(f"rss: bangerd with {n} sandboxes (fake driver): VmRSS {status(pid, 'VmRSS'):.1f} MiB, "
              f"VmHWM {status(pid, 'VmHWM'):.1f} MiB")
        print(f"rss: all {n} Running {conv:.1f} s after the last file was written; "
              f"GET /v1/sandboxes ({n} items) {list_s * 1000:.0f} ms")
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
