#!/usr/bin/env python3
"""vmrun_bench: `banger vm run --rm -- true` under TCG, broken into phases.

Each round runs the whole everyday path with BANGER_TIMING=1, which makes
the CLI print when each phase ended (ms since it started):
  spec-written   the spec file is in the folder (CLI: parse, workspace, config)
  running        bangerd reports Running (record, host key, disks, QEMU spawned)
  ssh-ready      the guest's sshd answered and banger logged in (guest boot)
  command-done   `true` ran over SSH and its status came back
  deleted        the spec is gone and bangerd tore everything down
Guest boot is running -> ssh-ready (the kernel, init and dropbear under TCG,
plus the one SSH handshake that succeeded) and QEMU's own start-up inside
`running` (exec to its QMP monitor answering, from bangerd's log line
"qemu vm started ... ms=N").  banger's own share is everything else.  Prints per-phase medians.  Runs under `unshare -n` (re-execs
itself), with a bangerd --driver qemu of its own.
Usage: vmrun_bench.py [ROUNDS] (5)."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests" / "integration"))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "e2e"))

PHASES = ["spec-written", "running", "ssh-ready", "command-done", "deleted"]


def main():
    if os.environ.get("VMRUN_BENCH_NETNS") != "1":
        os.execvpe("unshare", ["unshare", "-n", sys.executable, str(HERE), *sys.argv[1:]],
                   dict(os.environ, VMRUN_BENCH_NETNS="1"))
    from assets import imported_root
    from bangertest import BANGER, Daemon
    from e2e_util import kill_guests
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="banger-vmrun-"))
    root = imported_root(tmp / "root")
    d = Daemon(root, driver="qemu", resync=2)
    d.start()
    steps = {p: [] for p in PHASES}
    vmm = []
    try:
        for i in range(rounds):
            env = dict(os.environ, BANGER_TIMING="1")
            env.pop("BANGER_ROOT", None)
            r = subprocess.run([str(BANGER), "--root", str(root), "vm", "run", "--rm", "--name", f"bench{i}",
                                "--image", "tiny", "--vcpu", "1", "--memory", "256", "--", "true"],
                               capture_output=True, text=True, env=env, timeout=300)
            if r.returncode != 0:
                raise SystemExit(f"vm run failed ({r.returncode}): {r.stderr}")
            line = next(ln for ln in r.stderr.splitlines() if ln.startswith("timing: "))
            t = dict(kv.split("=") for kv in line[len("timing: "):].split())
            prev = 0
            for p in PHASES:
                steps[p].append(int(t[p]) - prev)
                prev = int(t[p])
            log = d.log.read_text()
            started = [ln for ln in log.splitlines() if f"qemu vm started name=bench{i} " in ln]
            vmm.append(int(started[-1].rsplit("ms=", 1)[1]))
            print(f"round {i}: qemu-start={vmm[-1]}ms " + " ".join(f"{p}=+{steps[p][-1]}ms" for p in PHASES), flush=True)
    finally:
        d.stop()
        kill_guests(root)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {p: statistics.median(v) for p, v in steps.items()}
    total = sum(med.values())
    boot = med["ssh-ready"] + statistics.median(vmm)
    print(f"vm run --rm -- true, {rounds} rounds, medians per phase (ms):")
    for p in PHASES:
        print(f"  {p:13s} +{med[p]:.0f}")
    print(f"  total         {total:.0f}")
    print(f"  (QEMU start-up inside running: {statistics.median(vmm):.0f})")
    print(f"guest boot (QEMU start-up + running -> ssh-ready): {boot:.0f} ms; banger's own share: "
          f"{total - boot:.0f} ms (goal <= 100 ms)")


if __name__ == "__main__":
    main()
