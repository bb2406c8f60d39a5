"""Helpers for end-to-end tests with real guests."""
import os
import signal
import time
from pathlib import Path


def guest_pids(root):
    """PIDs of VMM processes whose command line names this --root."""
    key = str(root).encode()
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if key in cmd and (b"qemu-system" in cmd or b"firecracker" in cmd):
            pids.append(int(p.name))
    return sorted(pids)


def kill_guests(root):
    for pid in guest_pids(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while guest_pids(root) and time.monotonic() < deadline:
        time.sleep(0.1)
