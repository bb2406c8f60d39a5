#!/usr/bin/env python3
"""boot_bench: boot to init through banger vs the same QEMU command by hand.

For each round: write a spec and time until the guest's console shows the
kernel starting /init (banger's whole path: inotify, plan, disks, spawn,
boot).  Then run the very QEMU command line banger used (read from
/proc/PID/cmdline) by hand on the same disks and time exec -> /init.
Prints medians and their ratio.  Runs under `unshare -n` (re-execs itself).
Usage: boot_bench.py [ROUNDS] (5)."""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests" / "integration"))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "e2e"))

MARK = b"Run /init as init process"


def wait_mark(path, t0, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if MARK in Path(path).read_bytes():
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit(f"boot_bench: no '{MARK.decode()}' in {path} after {timeout}s")


def main():
    if os.environ.get("BOOT_BENCH_NETNS") != "1":
        os.execvpe("unshare", ["unshare", "-n", sys.executable, str(HERE), *sys.argv[1:]],
                   dict(os.environ, BOOT_BENCH_NETNS="1"))
    from assets import imported_root
    from bangertest import Daemon, spec
    from e2e_util import guest_pids, kill_guests
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = Path(tempfile.mkdtemp(prefix="banger-boot-"))
    banger_s, hand_s = [], []
    try:
        root = imported_root(tmp / "root")
        d = Daemon(root, driver="qemu", resync=10)
        d.start()
        for i in range(rounds):
            name = f"b{i}"
            t0 = time.monotonic()
            d.write_spec(f"{name}.yaml", spec(name, image="tiny", vcpu=1, memory_mib=256, disk_size="1G"))
            sb = None
            while not sb or "id" not in sb["metadata"]:
                sb = d.sandbox(name)
                time.sleep(0.002)
            console = root / "run" / "vms" / sb["metadata"]["id"] / "console.log"
            banger_s.append(wait_mark(console, t0))
            # The same command by hand: take banger's argv, stop banger's VM
            # (daemon down so it is not restarted), run the argv ourselves.
            [pid] = [p for p in guest_pids(root) if sb["metadata"]["id"].encode() in Path(f"/proc/{p}/cmdline").read_bytes()]
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            cwd = os.readlink(f"/proc/{pid}/cwd")
            d.kill9()
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            console.write_bytes(b"")
            t1 = time.monotonic()
            p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            hand_s.append(wait_mark(console, t1))
            p.kill()
            p.wait()
            d.start()
            os.unlink(d.sandboxes / f"{name}.yaml")
            d.wait_gone(name, timeout=60)
        d.stop()
        kill_guests(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    b, h = statistics.median(banger_s), statistics.median(hand_s)
    print(f"boot: spec written -> kernel runs /init, through banger: median {b * 1000:.0f} ms "
          f"({', '.join(f'{x * 1000:.0f}' for x in banger_s)})")
    print(f"boot: same QEMU command by hand -> /init: median {h * 1000:.0f} ms "
          f"({', '.join(f'{x * 1000:.0f}' for x in hand_s)})")
    print(f"boot: ratio banger/hand {b / h:.2f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
