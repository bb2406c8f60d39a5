"""Real guests under QEMU (TCG here): boot, stop/start, VMM crash, daemon
crash and adoption, delete.  Each test has its own --root and network
namespace; the kernel and tiny image are shared (tests/integration/assets.py)."""
import os
import signal
import time

from bangertest import banger, spec, wait_for
from e2e_util import guest_pids

BOOT_TIMEOUT = 120


def tiny(name, **kw):
    return spec(name, image="tiny", vcpu=1, memory_mib=256, disk_size="1G", **kw)


def console(d, name):
    r = banger(d.root, "vm", "logs", name)
    return r.stdout if r.returncode == 0 else ""


def test_boots_to_running_with_kernel_on_console(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    sb = d.wait_converged("web", timeout=BOOT_TIMEOUT)
    assert sb["status"]["hypervisor"].startswith("qemu/")
    assert len(guest_pids(d.root)) == 1
    wait_for(lambda: "Linux version" in console(d, "web"), timeout=BOOT_TIMEOUT, what="kernel on the console")


def test_stop_then_start(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    d.wait_converged("web", timeout=BOOT_TIMEOUT)
    r = banger(d.root, "vm", "stop", "web", "--timeout", "60")
    assert r.returncode == 0, r.stderr
    assert guest_pids(d.root) == []
    r = banger(d.root, "vm", "start", "web", "--timeout", str(BOOT_TIMEOUT))
    assert r.returncode == 0, r.stderr
    assert len(guest_pids(d.root)) == 1


def test_killed_vmm_is_restarted(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    d.wait_converged("web", timeout=BOOT_TIMEOUT)
    [pid] = guest_pids(d.root)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: d.sandbox("web")["status"]["restarts"] == 1 and d.phase("web") == "Running",
             timeout=BOOT_TIMEOUT, what="restart after VMM kill")
    pids = guest_pids(d.root)
    assert len(pids) == 1 and pids != [pid]


def test_bangerd_kill9_adopts_the_running_vm(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    before = d.wait_converged("web", timeout=BOOT_TIMEOUT)
    [pid] = guest_pids(d.root)
    d.kill9()
    assert guest_pids(d.root) == [pid], "the VM outlives its daemon"
    d.start()
    after = d.wait_converged("web", timeout=60)
    time.sleep(2)   # a few resync passes
    assert guest_pids(d.root) == [pid], "adopted, not started again"
    assert after["metadata"]["id"] == before["metadata"]["id"]
    assert d.sandbox("web")["status"]["restarts"] == 0


def test_delete_leaves_no_process_or_file(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    sb = d.wait_converged("web", timeout=BOOT_TIMEOUT)
    sid = sb["metadata"]["id"]
    r = banger(d.root, "delete", "web", "--timeout", "60")
    assert r.returncode == 0, r.stderr
    assert guest_pids(d.root) == []
    leftovers = [str(p) for p in d.root.rglob("*") if sid in str(p)]
    assert leftovers == []


def test_missing_image_is_a_clear_error_and_leaves_nothing(qemu_daemon):
    d = qemu_daemon
    d.write_spec("bad.yaml", spec("bad", image="nope", disk_size="1G"))
    d.write_spec("good.yaml", tiny("good"))
    sb = d.wait_phase("bad", "Failed", timeout=60)
    assert "image 'nope'" in sb["status"]["message"]
    d.wait_converged("good", timeout=BOOT_TIMEOUT)
    sid = sb["metadata"]["id"]
    assert [p for p in d.root.rglob("*") if sid in p.name] == []


def test_missing_kernel_is_a_clear_error(qemu_daemon):
    d = qemu_daemon
    d.write_spec("bad.yaml", tiny("bad", kernel="nokernel"))
    sb = d.wait_phase("bad", "Failed", timeout=60)
    assert "kernel 'nokernel' is not imported" in sb["status"]["message"]
    assert guest_pids(d.root) == []


def test_hypervisor_that_exits_at_once(tmp_path):
    from assets import imported_root
    from bangertest import Daemon
    from e2e_util import kill_guests
    root = imported_root(tmp_path / "root")
    fake_qemu = tmp_path / "qemu-broken"
    fake_qemu.write_text("#!/bin/sh\necho 'qemu-broken: cannot start' >&2\nexit 1\n")
    fake_qemu.chmod(0o755)
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "config.yaml").write_text(f"qemu_bin: {fake_qemu}\n")
    d = Daemon(root, driver="qemu", netns=True, resync=0.5).start()
    try:
        d.write_spec("web.yaml", tiny("web"))
        sb = d.wait_phase("web", "Failed", timeout=60)
        assert "qemu-broken: cannot start" in sb["status"]["message"] or "exited" in sb["status"]["message"]
        assert guest_pids(root) == []
    finally:
        d.stop()
        kill_guests(root)


def test_gc_kills_a_vmm_no_record_claims(qemu_daemon):
    """A VMM whose record is gone (here: the store wiped while bangerd was
    down) is banger's by its command line, and GC removes it."""
    import shutil
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    d.wait_converged("web", timeout=BOOT_TIMEOUT)
    [pid] = guest_pids(d.root)
    d.kill9()
    os.unlink(d.sandboxes / "web.yaml")
    shutil.rmtree(d.root / "state" / "db")
    d.start()
    wait_for(lambda: guest_pids(d.root) == [], timeout=60, what="stray VMM killed")
    # The event is committed just after the kill: wait for it too.
    wait_for(lambda: any(e["type"] == "GarbageCollected" for e in d.events()), timeout=10, what="GC event")


def test_no_space_for_disks_is_a_clear_error(tmp_path):
    """The VMs' disk folder on a 4 MiB filesystem (a tmpfs in a mount
    namespace of the daemon's own): the sandbox fails with ENOSPC in its
    status, and no VMM is left running."""
    from assets import imported_root
    from bangertest import Daemon
    root = imported_root(tmp_path / "root")
    vms = root / "state" / "vms"
    vms.mkdir(parents=True, exist_ok=True)
    wrapper = ["unshare", "-m", "-n", "--propagation", "private", "sh", "-c",
               f'mount -t tmpfs -o size=4m tmpfs {vms} && exec "$@"', "sh"]
    d = Daemon(root, driver="qemu", resync=0.5, prefix=wrapper).start()
    try:
        d.write_spec("big.yaml", tiny("big"))
        sb = d.wait_phase("big", "Failed", timeout=60)
        msg = sb["status"]["message"]
        assert "no space left on device" in msg.lower(), msg
        assert guest_pids(root) == []
    finally:
        d.stop()
