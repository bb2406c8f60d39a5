"""The guest agent with real QEMU guests (TCG here): Ready set by the
agent's hello, `vm exec` (exit codes, 1 MB of binary output, stdin, a
missing binary), `vm stats`, a graceful stop through the agent, and
spec.idle_timeout.  Each test has its own --root and network namespace."""
import hashlib
import json
import os
import subprocess
import time

from bangertest import BANGER, banger, spec, wait_for
from e2e_util import guest_pids

BOOT_TIMEOUT = 120


def tiny(name, **kw):
    return spec(name, image="tiny", vcpu=1, memory_mib=256, disk_size="1G", **kw)


def conditions(sb):
    return {c["type"]: c for c in sb["status"]["conditions"]}


def wait_ready(d, name, timeout=BOOT_TIMEOUT):
    def ok():
        sb = d.sandbox(name)
        return sb if sb and conditions(sb).get("Ready", {}).get("status") == "True" else None
    return wait_for(ok, timeout=timeout, interval=0.2, what=f"{name} Ready")


def vm_exec(d, name, *cmd, stdin=b"", timeout=60):
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    return subprocess.run([str(BANGER), "--root", str(d.root), "vm", "exec", name, "--", *cmd], input=stdin,
                          capture_output=True, timeout=timeout, env=env)


def test_ready_is_set_by_the_agents_hello(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    sb = d.wait_converged("web", timeout=BOOT_TIMEOUT)
    assert sb["status"]["phase"] == "Running"
    sb = wait_ready(d, "web")
    agent = sb["status"]["agent"]
    assert agent["protocol"] == 1
    assert agent["kernel"].endswith("-cloud-amd64")
    assert agent["hostname"] == "web"
    assert agent["bootTime"].endswith("Z")
    # started from the initramfs before the root was mounted, ready once in it
    assert agent["stage"] == "root"
    assert 0 < agent["initToFirstHelloUs"] < agent["initToHelloUs"]
    r = vm_exec(d, "web", "sh", "-c", "cat /etc/banger-release /proc/1/comm; ls /init 2>&1")
    assert r.stdout.split()[:2] == [b"tiny", b"init"]   # the agent runs in the image's root,
    assert b"No such file" in r.stdout                    # not in the initramfs


def test_exec_exit_codes_binary_output_and_stdin(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    wait_ready(d, "web")
    r = vm_exec(d, "web", "true")
    assert r.returncode == 0, r.stderr
    r = vm_exec(d, "web", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    r = vm_exec(d, "web", "sh", "-c", "kill -9 $$")
    assert r.returncode == 128 + 9
    # 1 MiB of random bytes through stdin and back, and 1 MiB generated in the guest
    data = os.urandom(1 << 20)
    r = vm_exec(d, "web", "cat", stdin=data)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == len(data) and r.stdout == data
    r = vm_exec(d, "web", "sh", "-c", "head -c 1048576 /dev/urandom | tee /tmp/blob | sha256sum >&2; cat /tmp/blob")
    assert r.returncode == 0
    assert len(r.stdout) == 1 << 20
    assert hashlib.sha256(r.stdout).hexdigest() == r.stderr.split()[0].decode()
    r = vm_exec(d, "web", "sh", "-c", "wc -c", stdin=b"x" * 100000)
    assert r.stdout.strip() == b"100000"


def test_exec_of_a_missing_binary_is_a_clear_error(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    wait_ready(d, "web")
    r = vm_exec(d, "web", "/no/such/program", "arg")
    assert r.returncode == 127
    assert b"/no/such/program" in r.stderr and b"No such file" in r.stderr
    r = banger(d.root, "vm", "exec", "nosuch", "--", "true")
    assert r.returncode == 1 and "not found" in r.stderr
    # the daemon is fine afterwards
    assert vm_exec(d, "web", "true").returncode == 0


def test_stats_are_plausible(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    wait_ready(d, "web")
    r = banger(d.root, "vm", "stats", "web", "-o", "json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["kind"] == "SandboxStats" and st["name"] == "web"
    assert st["cpu"]["count"] == 1
    assert 150 << 20 < st["memory"]["totalBytes"] <= 256 << 20
    assert 0 < st["memory"]["availableBytes"] < st["memory"]["totalBytes"]
    assert st["uptimeSeconds"] > 1
    assert st["disk"]["readBytes"] > 0
    assert 0 < st["disk"]["rootFreeBytes"] < st["disk"]["rootTotalBytes"] <= 1 << 30
    assert len(st["load"]) == 3
    # network counters move when the guest talks to the gateway
    vm_exec(d, "web", "sh", "-c", "ping -c 2 -W 1 $(ip route | awk '/default/ {print $3}') >/dev/null 2>&1")
    st2 = json.loads(banger(d.root, "vm", "stats", "web", "-o", "json").stdout)
    assert st2["network"]["txBytes"] > st["network"]["txBytes"]
    assert st2["uptimeSeconds"] > st["uptimeSeconds"]
    r = banger(d.root, "vm", "stats", "web")
    assert r.returncode == 0 and "memory" in r.stdout and "uptime" in r.stdout


def test_stop_is_graceful_through_the_agent(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    wait_ready(d, "web")
    t0 = time.monotonic()
    r = banger(d.root, "vm", "stop", "web", "--timeout", "60")
    assert r.returncode == 0, r.stderr
    took = time.monotonic() - t0
    assert guest_pids(d.root) == []
    log = d.log.read_text()
    assert "guest powered off through its agent" in log
    console = banger(d.root, "vm", "logs", "web").stdout
    assert "banger-agent: shutdown requested by the host" in console
    assert "banger-tiny: stopping" in console   # the image's own shutdown ran
    assert took < 30


def test_idle_timeout_stops_an_idle_guest(tmp_path, monkeypatch):
    from assets import imported_root
    from bangertest import Daemon
    from e2e_util import kill_guests
    monkeypatch.setenv("BANGER_AGENT_POLL_MS", "2000")
    root = imported_root(tmp_path / "root")
    d = Daemon(root, driver="qemu", netns=True, resync=0.5)
    d.start()
    try:
        d.write_spec("idler.yaml", tiny("idler", idle_timeout="10s"))
        wait_ready(d, "idler")
        assert d.sandbox("idler")["spec"]["idle_timeout"] == "10s"
        # busy: an exec running keeps it up past the timeout
        r = vm_exec(d, "idler", "sleep", "14")
        assert r.returncode == 0
        assert d.phase("idler") == "Running"
        sb = d.wait_phase("idler", "Stopped", timeout=60)
        assert "idle for 10s (spec.idle_timeout)" in sb["status"]["message"]
        assert guest_pids(d.root) == []
        time.sleep(2)   # a few resyncs: it stays down
        assert d.phase("idler") == "Stopped" and guest_pids(d.root) == []
        assert "guest powered off through its agent" in d.log.read_text()
        # `vm start` brings it back although the file already says running
        from bangertest import banger
        r = banger(d.root, "vm", "start", "idler", timeout=120)
        assert r.returncode == 0, r.stderr
        assert "sandbox/idler starting" in r.stdout
        wait_ready(d, "idler")
    finally:
        d.stop()
        d.check_log()
        kill_guests(root)


def test_agent_reconnects_after_bangerd_restarts(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    wait_ready(d, "web")
    [pid] = guest_pids(d.root)
    d.kill9()   # the serial port's host side goes away mid-connection
    d.start()
    t0 = time.monotonic()
    wait_ready(d, "web", timeout=30)
    assert time.monotonic() - t0 < 10
    assert guest_pids(d.root) == [pid]
    r = vm_exec(d, "web", "sh", "-c", "echo again")
    assert (r.returncode, r.stdout) == (0, b"again\n")
