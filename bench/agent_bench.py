#!/usr/bin/env python3
"""agent_bench: the guest agent's figures, with real QEMU guests (tiny image).

(a) How soon the agent says hello in a booting guest: for ROUNDS boots,
    the guest-side times the hellos carry (status.agent): from the
    initramfs /init starting to the agent's first hello (it is up, holding
    requests), to its hello from the root filesystem (Ready), and from the
    agent process starting to its first hello.  Guest clocks only, so host
    load does not skew them (TCG makes the guest itself slow, though).
(b) `banger vm exec NAME -- true` against `banger vm ssh NAME -- true`,
    N runs each on the same running guest, medians and their ratio.
Runs bangerd and the clients in a private network namespace (re-execs
itself under `unshare -n`).  Usage: agent_bench.py [ROUNDS] [N] (3, 10)."""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests" / "integration"))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "e2e"))
sys.path.insert(0, str(HERE.parents[1] / "tests"))


def ready(d, name):
    sb = d.sandbox(name)
    if not sb:
        return None
    conds = {c["type"]: c["status"] for c in sb["status"]["conditions"]}
    return sb if conds.get("Ready") == "True" else None


def timed(argv, env):
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    return time.monotonic() - t0, r


def api_exec(sock, name, argv):
    """exec through bangerd's API with a minimal client: the round trip
    without the banger binary's own start-up."""
    import socket
    import agentwire as aw
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    s.sendall(f"POST /v1/sandboxes/{name}/exec HTTP/1.1\r\nHost: banger\r\nConnection: Upgrade\r\n"
              "Upgrade: banger-exec/1\r\nContent-Length: 0\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    c = aw.Conn(s)
    c.buf = buf.split(b"\r\n\r\n", 1)[1]
    try:
        return c.exec(argv)[0]
    finally:
        s.close()


def main():
    if os.environ.get("AGENT_BENCH_NETNS") != "1":
        os.execvpe("unshare", ["unshare", "-n", sys.executable, str(HERE), *sys.argv[1:]],
                   dict(os.environ, AGENT_BENCH_NETNS="1"))
    from assets import imported_root
    from bangertest import BANGER, Daemon, spec, wait_for
    from e2e_util import kill_guests
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    tmp = Path(tempfile.mkdtemp(prefix="banger-agent-bench-"))
    root = imported_root(tmp / "root")
    d = Daemon(root, driver="qemu", resync=10)
    d.start()
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    try:
        init_ms, first_ms, start_ms, ready_s = [], [], [], []
        for i in range(rounds):
            name = f"a{i}"
            t0 = time.monotonic()
            d.write_spec(f"{name}.yaml", spec(name, image="tiny", vcpu=1, memory_mib=256, disk_size="1G"))
            sb = wait_for(lambda: ready(d, name), timeout=180, interval=0.01, what=f"{name} Ready")
            ready_s.append(time.monotonic() - t0)
            agent = sb["status"]["agent"]
            init_ms.append(agent["initToHelloUs"] / 1000)
            first_ms.append(agent["initToFirstHelloUs"] / 1000)
            start_ms.append(agent["startToFirstHelloUs"] / 1000)
            if i < rounds - 1:
                (d.sandboxes / f"{name}.yaml").unlink()
                d.wait_gone(name, timeout=60)
        name = f"a{rounds - 1}"
        print(f"agent hello, guest clock, median of {rounds} boots (TCG):")
        print(f"  /init start -> first hello {statistics.median(first_ms):7.1f} ms   (all: "
              f"{', '.join(f'{x:.0f}' for x in first_ms)}; agent up, requests held)")
        print(f"  /init start -> ready hello {statistics.median(init_ms):7.1f} ms   (all: "
              f"{', '.join(f'{x:.0f}' for x in init_ms)}; in the root filesystem)")
        print(f"  agent start -> first hello {statistics.median(start_ms):7.1f} ms   (all: "
              f"{', '.join(f'{x:.1f}' for x in start_ms)})")
        print(f"  spec written -> Ready     {statistics.median(ready_s):8.2f} s    (host clock)")

        exec_argv = [str(BANGER), "--root", str(root), "vm", "exec", name, "--", "true"]
        ssh_argv = [str(BANGER), "--root", str(root), "vm", "ssh", name, "--", "true"]
        for _ in range(2):   # warm up
            timed(exec_argv, env)
        ssh_ok = False
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            _, r = timed(ssh_argv, env)
            if r.returncode == 0:
                ssh_ok = True
                break
            time.sleep(1)
        ex, sh, api = [], [], []
        for _ in range(n):
            t0 = time.monotonic()
            assert api_exec(d.socket, name, ["true"]) == 0
            api.append(time.monotonic() - t0)
            t, r = timed(exec_argv, env)
            assert r.returncode == 0, r.stderr
            ex.append(t)
            if ssh_ok:
                t, r = timed(ssh_argv, env)
                if r.returncode == 0:
                    sh.append(t)
        print(f"`true` in the guest, median of {n}:")
        print(f"  banger vm exec            {statistics.median(ex) * 1000:8.1f} ms")
        print(f"  (API exec, no CLI)        {statistics.median(api) * 1000:8.1f} ms")
        t_start = statistics.median([timed([str(BANGER), "--version"], env)[0] for _ in range(n)])
        print(f"  (banger --version alone)  {t_start * 1000:8.1f} ms")
        if sh:
            print(f"  banger vm ssh             {statistics.median(sh) * 1000:8.1f} ms")
            print(f"  ssh / exec                {statistics.median(sh) / statistics.median(ex):8.1f} x")
        else:
            print(f"  banger vm ssh             unavailable ({r.stderr.decode(errors='replace').strip()[-200:]})")
    finally:
        d.stop()
        kill_guests(root)
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
