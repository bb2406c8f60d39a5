"""The Firecracker driver against tests/firecracker_double.py, which
validates every request against Firecracker's own API description.

Three layers: the double by itself (it must refuse what Firecracker
refuses, or it proves nothing); the driver through tests/tools/fcdrive
(exact request sequence, errors, the event fd, adoption, cleanup); and a
real bangerd running `--driver firecracker` with the double as its binary.

Roots are short folders in /tmp: Unix socket paths (fc.sock, vsock.sock
under run/vms/<id>/) must fit in 108 bytes, and pytest's tmp_path does not.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from bangertest import BANGER, BUILD, REPO, Daemon, UnixHTTPConnection, banger, spec, wait_for

DOUBLE = REPO / "tests" / "firecracker_double.py"
FCDRIVE = BUILD / "tests" / "tools" / "fcdrive"
ID = "0123456789abcdef"


@pytest.fixture
def root():
    d = Path(tempfile.mkdtemp(prefix="bgfc-", dir="/tmp"))
    yield d
    for pid in vmm_pids(d):   # never leave a double behind, whatever failed
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(d, ignore_errors=True)


def vmm_pids(root):
    """Processes whose command line names an API socket under root."""
    needle = f"--api-sock {root}/run/vms/"
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd:
            pids.append(int(p.name))
    return pids


def drive(root, *ops, env=None, bin=DOUBLE, **opts):
    """Run fcdrive; one parsed JSON line per op."""
    e = dict(os.environ, FC_DOUBLE_LOG=str(root / "requests.jsonl"))
    for k in ("FC_DOUBLE_FAIL", "FC_DOUBLE_FAULT", "FC_DOUBLE_EXIT_AFTER_START", "FC_DOUBLE_IGNORE_CTRLALTDEL"):
        e.pop(k, None)
    e.update(env or {})
    args = [str(FCDRIVE), "--root", str(root), "--bin", str(bin)]
    for k, v in opts.items():
        args += [f"--{k}", str(v)]
    r = subprocess.run(args + list(ops), capture_output=True, text=True, timeout=120, env=e)
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(ops), f"fcdrive: {r.stdout}\n{r.stderr}"
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in r.stderr, f"fcdrive {ops}: {r.stderr[-3000:]}"
    return lines


def ok(line):
    assert line["rc"] == 0, line
    return line


def requests(root, since=0):
    p = root / "requests.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines()][since:]


def leftovers(root, id=ID):
    """Every trace of VM id on the host."""
    found = [str(p) for p in (root / "state" / "vms" / id, root / "run" / "vms" / id) if p.exists()]
    return found + [f"pid {p}" for p in vmm_pids(root)]


@pytest.fixture
def catalog(root):
    ok(drive(root, "setup")[0])
    return root


# ---- the double itself ---------------------------------------------------

class Double:
    """A firecracker_double spoken to over raw HTTP."""

    def __init__(self, root, env=None):
        self.root = root
        self.sock = root / "api.sock"
        e = dict(os.environ, FC_DOUBLE_LOG=str(root / "requests.jsonl"))
        e.update(env or {})
        self.proc = subprocess.Popen([str(DOUBLE), "--api-sock", str(self.sock), "--id", "t1"], env=e,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: self.listening() or self.proc.poll() is not None, what="double socket")

    def listening(self):
        """Bound is not enough: connect until the double listens."""
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(self.sock))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def call(self, method, path, body=None):
        c = UnixHTTPConnection(self.sock)
        try:
            data = json.dumps(body) if isinstance(body, (dict, list)) else body
            c.request(method, path, body=data, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
        finally:
            c.close()

    def refuses(self, method, path, body=None, why=""):
        status, answer = self.call(method, path, body)
        assert status == 400, (status, answer)
        assert why in answer["fault_message"], answer
        return answer["fault_message"]

    def files(self):
        for name in ("vmlinux", "initrd", "root.img"):
            (self.root / name).write_bytes(b"x")
        (self.root / "fc.log").touch()

    def configured(self):
        self.files()
        r = self.root
        for path, body in (("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}),
                           ("/boot-source", {"kernel_image_path": str(r / "vmlinux")}),
                           ("/drives/root", {"drive_id": "root", "path_on_host": str(r / "root.img"),
                                             "is_root_device": True})):
            assert self.call("PUT", path, body)[0] == 204, path

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def double(root):
    d = Double(root)
    yield d
    d.close()


def test_double_rejects_an_unknown_field(double):
    why = double.refuses("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128, "cats": 2})
    assert "'cats' was unexpected" in why
    double.refuses("PUT", "/boot-source", {"kernel_image_path": "/x", "initrd": "/y"}, "'initrd' was unexpected")


def test_double_rejects_a_missing_required_field(double):
    double.refuses("PUT", "/machine-config", {"vcpu_count": 1}, "'mem_size_mib' is a required property")
    double.refuses("PUT", "/vsock", {"guest_cid": 3}, "'uds_path' is a required property")


def test_double_rejects_bad_enums_types_and_ranges(double):
    double.refuses("PUT", "/actions", {"action_type": "Reboot"}, "is not one of")
    double.refuses("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "1G"},
                   "is not one of")
    double.refuses("PUT", "/machine-config", {"vcpu_count": 33, "mem_size_mib": 128}, "maximum")
    double.refuses("PUT", "/machine-config", {"vcpu_count": "2", "mem_size_mib": 128}, "is not of type")
    double.refuses("PUT", "/vsock", {"guest_cid": 2, "uds_path": "/tmp/x"}, "minimum")


def test_double_accepts_a_lowercase_logger_level_like_firecracker(double):
    double.files()
    assert double.call("PUT", "/logger", {"log_path": str(double.root / "fc.log"), "level": "warning"})[0] == 204


def test_double_rejects_unknown_paths_and_methods(double):
    double.refuses("PUT", "/network-interface/eth0", {}, "Invalid request method and/or path")
    double.refuses("POST", "/actions", {"action_type": "InstanceStart"}, "Invalid request method and/or path")
    double.refuses("DELETE", "/drives/root", None, "Invalid request method and/or path")


def test_double_rejects_files_that_do_not_exist(double):
    missing = str(double.root / "missing.img")
    double.refuses("PUT", "/drives/root", {"drive_id": "root", "path_on_host": missing, "is_root_device": True},
                   "No such file or directory")
    double.refuses("PUT", "/boot-source", {"kernel_image_path": missing}, "kernel file cannot be opened")
    double.refuses("PUT", "/logger", {"log_path": missing}, "Logger initialization failure")


def test_double_checks_drive_ids_and_bodies(double):
    double.files()
    img = str(double.root / "root.img")
    double.refuses("PUT", "/drives/root", {"drive_id": "work", "path_on_host": img, "is_root_device": False},
                   "does not match the id from the body")
    double.refuses("PUT", "/drives/root", None, "Empty PUT request")
    double.refuses("PUT", "/drives/root", "{not json", "deserializing")


def test_double_enforces_boot_state_rules(double):
    double.files()
    double.refuses("PUT", "/actions", {"action_type": "InstanceStart"}, "without kernel configuration")
    double.refuses("PUT", "/actions", {"action_type": "SendCtrlAltDel"}, "before starting")
    double.configured()
    assert double.call("PUT", "/actions", {"action_type": "InstanceStart"})[0] == 204
    double.refuses("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 128}, "after starting")
    double.refuses("PUT", "/drives/root", {"drive_id": "root", "path_on_host": str(double.root / "root.img"),
                                           "is_root_device": True}, "after starting")
    double.refuses("PUT", "/actions", {"action_type": "InstanceStart"}, "after starting")
    status, info = double.call("GET", "/")
    assert status == 200 and info["state"] == "Running"
    assert double.call("PUT", "/actions", {"action_type": "SendCtrlAltDel"})[0] == 204
    assert double.proc.wait(5) == 0
    console = double.proc.stdout.read().decode()
    assert "Run /init as init process" in console and "reboot: Restarting system" in console


def test_double_needs_machine_config_before_start(double):
    double.files()
    assert double.call("PUT", "/boot-source", {"kernel_image_path": str(double.root / "vmlinux")})[0] == 204
    double.refuses("PUT", "/actions", {"action_type": "InstanceStart"}, "machine-config")


def test_double_records_every_request_with_its_answer(double):
    double.call("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128, "x": 1})
    double.call("GET", "/version")
    got = requests(double.root)
    assert [(r["method"], r["path"], r["status"]) for r in got] == [("PUT", "/machine-config", 400),
                                                                    ("GET", "/version", 200)]
    assert got[0]["body"] == {"vcpu_count": 1, "mem_size_mib": 128, "x": 1}


def test_double_command_line_is_firecrackers(root):
    r = subprocess.run([str(DOUBLE), "--api-sock", str(root / "s"), "--no-such-flag"], capture_output=True, text=True)
    assert r.returncode != 0 and "Found argument '--no-such-flag'" in r.stderr
    r = subprocess.run([str(DOUBLE), "--api-sock", str(root / "s"), "--id", "bad_id!"], capture_output=True,
                       text=True)
    assert r.returncode != 0 and "Invalid instance ID" in r.stderr
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(root / "taken.sock"))
    r = subprocess.run([str(DOUBLE), "--api-sock", str(root / "taken.sock")], capture_output=True, text=True,
                       timeout=10)
    s.close()
    assert r.returncode != 0 and "Check that it is not already used" in r.stderr


# ---- the driver through fcdrive --------------------------------------------

def test_start_sends_exactly_the_expected_requests(catalog):
    root = catalog
    prep, start = drive(root, "prepare", "start", vcpu=2, memory=384, name="web")
    ok(prep)
    ok(start)
    assert start["persisted"] == 1 and start["held_at_persist"], "pid must reach the store before exec"
    h = start["handles"]
    run, state = root / "run" / "vms" / ID, root / "state" / "vms" / ID
    kernel = root / "state" / "kernels" / "default"
    assert [(r["method"], r["path"], r["body"]) for r in requests(root)] == [
        ("PUT", "/logger", {"log_path": f"{run}/fc.log", "level": "Info"}),
        ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 384}),
        ("PUT", "/boot-source", {"kernel_image_path": f"{kernel}/vmlinux", "initrd_path": f"{kernel}/initrd.img",
                                 "boot_args": "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux "
                                              "i8042.dumbkbd root=/dev/vda rw banger.work=/dev/vdb "
                                              "banger.hostname=web banger.agent=vsock:1024"}),
        ("PUT", "/drives/root", {"drive_id": "root", "path_on_host": f"{state}/root.ext4",
                                 "is_root_device": True, "is_read_only": False}),
        ("PUT", "/drives/work", {"drive_id": "work", "path_on_host": f"{state}/work.ext4",
                                 "is_root_device": False, "is_read_only": False}),
        ("PUT", "/vsock", {"guest_cid": h["vsock_cid"], "uds_path": f"{run}/vsock.sock"}),
        ("PUT", "/actions", {"action_type": "InstanceStart"}),
    ]
    assert all(r["status"] == 204 for r in requests(root))
    assert 3 <= h["vsock_cid"] < 2**32 - 1
    assert vmm_pids(root) == [h["pid"]]
    cmd = Path(f"/proc/{h['pid']}/cmdline").read_bytes().split(b"\0")
    assert cmd[-5:-1] == [b"--api-sock", f"{run}/fc.sock".encode(), b"--id", f"banger-{ID}".encode()]
    wait_for(lambda: "banger.hostname=web" in (run / "console.log").read_text(), what="console")
    stop, probe = drive(root, "stop", "probe")
    ok(stop)
    assert probe["vm"] == "absent" and "pid" not in probe["handles"]
    assert requests(root)[-1]["body"] == {"action_type": "SendCtrlAltDel"}
    assert vmm_pids(root) == []
    ok(drive(root, "cleanup")[0])
    assert leftovers(root) == []


def test_fault_message_reaches_the_error_verbatim_and_nothing_runs(catalog):
    root = catalog
    fault = "The vCPU number is invalid! (a fault from Firecracker: keep it verbatim)"
    ok(drive(root, "prepare")[0])
    start, probe = drive(root, "start", "probe",
                         env={"FC_DOUBLE_FAIL": "PUT /machine-config", "FC_DOUBLE_FAULT": fault})
    assert start["rc"] != 0
    assert start["error"].endswith(f"PUT /machine-config: 400: {fault}"), start["error"]
    assert probe["vm"] == "absent" and "pid" not in probe["handles"]
    assert vmm_pids(root) == []
    assert [r["path"] for r in requests(root)] == ["/logger", "/machine-config"]
    # The next start is clean: the dead VMM's socket does not get in the way.
    start, probe = drive(root, "start", "probe")
    ok(start)
    assert probe["vm"] == "running"
    ok(drive(root, "cleanup")[0])
    assert leftovers(root) == []


def test_a_vmm_that_dies_after_start_is_seen_through_the_event_fd(catalog):
    root = catalog
    start, waited = drive(root, "prepare", "start", "wait-exit", env={"FC_DOUBLE_EXIT_AFTER_START": "1"},
                          timeout=5000, name="web")[1:]
    ok(start)
    assert waited["changed"] == ["web"]
    assert waited["vm"] == "exited-fail" and waited["exit_status"] == 1
    ok(drive(root, "cleanup")[0])
    assert leftovers(root) == []


def test_a_restarted_driver_adopts_the_running_vmm(catalog):
    root = catalog
    start = ok(drive(root, "prepare", "start", name="web")[1])
    pid = start["handles"]["pid"]
    # A new process, as bangerd after a restart: it finds the VMM by the
    # handles, verified by pid, start time and command line.
    probe = drive(root, "probe", name="web")[0]
    assert probe["vm"] == "running"
    # It watches the adopted VMM too: a death is an event.
    killer = subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -9 {pid}"])
    adopted, waited = drive(root, "probe", "wait-exit", timeout=5000, name="web")
    assert adopted["vm"] == "running"
    killer.wait()
    assert waited["changed"] == ["web"] and waited["vm"] == "exited-fail"
    assert waited["exit_status"] == -1, "an adopted VMM's status is unknown"
    ok(drive(root, "cleanup")[0])
    assert leftovers(root) == []


def test_adoption_refuses_a_process_whose_start_time_differs(catalog):
    root = catalog
    start = ok(drive(root, "prepare", "start")[1])
    hfile = root / "harness" / f"{ID}.json"
    h = json.loads(hfile.read_text())
    h["start_time"] += 1      # the pid now names "another" process
    hfile.write_text(json.dumps(h))
    probe = drive(root, "probe")[0]
    assert probe["vm"] == "exited-fail"
    assert vmm_pids(root) == [start["handles"]["pid"]], "a process not proven ours is never signalled by probe"
    # cleanup still finds it by its API socket on the command line.
    ok(drive(root, "cleanup")[0])
    assert leftovers(root) == []


def test_stop_falls_back_to_sigkill_when_the_guest_ignores_ctrl_alt_del(catalog):
    root = catalog
    env = {"FC_DOUBLE_IGNORE_CTRLALTDEL": "1"}
    ok(drive(root, "prepare", "start", env=env)[1])
    t0 = time.monotonic()
    stop, probe = drive(root, "stop", "probe", env=env, timeout=400)
    ok(stop)
    assert time.monotonic() - t0 >= 0.4
    assert probe["vm"] == "absent" and vmm_pids(root) == []
    ok(drive(root, "cleanup")[0])


def test_every_operation_is_idempotent(catalog):
    root = catalog
    for line in drive(root, "prepare", "prepare", "start", "start", "probe"):
        ok(line)
    assert [r["path"] for r in requests(root)].count("/actions") == 1
    assert len(vmm_pids(root)) == 1
    for line in drive(root, "stop", "stop", "kill", "cleanup", "cleanup", "probe"):
        ok(line)
    assert leftovers(root) == []


def test_kill_is_immediate(catalog):
    root = catalog
    ok(drive(root, "prepare", "start")[1])
    kill, probe = drive(root, "kill", "probe")
    ok(kill)
    assert probe["vm"] == "absent" and vmm_pids(root) == []
    assert requests(root)[-1]["path"] == "/actions" and requests(root)[-1]["body"]["action_type"] == "InstanceStart"
    ok(drive(root, "cleanup")[0])


def test_garbage_collection_finds_and_removes_unclaimed_objects(catalog):
    root = catalog
    other = "fedcba9876543210"
    ok(drive(root, "prepare", "start")[1])
    ok(drive(root, "prepare", id=other)[0])
    (root / "harness" / f"{ID}.json").unlink()    # the record is gone; the objects are not
    assert sorted(drive(root, "list")[0]["ids"]) == sorted([ID, other])
    ok(drive(root, "gc")[0])
    ok(drive(root, "gc", id=other)[0])
    assert drive(root, "list")[0]["ids"] == []
    assert leftovers(root) == [] and leftovers(root, other) == []


def test_prepare_errors_are_clear_and_leave_nothing(root):
    ok(drive(root, "setup-no-vmlinux")[0])
    prep = drive(root, "prepare")[0]
    assert prep["rc"] != 0 and "kernel 'default' has no vmlinux" in prep["error"]
    prep = drive(root, "prepare", image="nope")[0]
    assert "image 'nope' is not built" in prep["error"]
    prep = drive(root, "prepare", kernel="other")[0]
    assert "kernel 'other' is not imported" in prep["error"]
    assert leftovers(root) == []


def test_a_missing_binary_is_a_clear_error(root):
    line = drive(root, "probe", bin="/nonexistent/firecracker")[0]
    assert line["rc"] == -2 and "firecracker_bin '/nonexistent/firecracker'" in line["error"]


# ---- a real bangerd ----------------------------------------------------------

@pytest.fixture
def fc_daemon(catalog, monkeypatch):
    monkeypatch.setenv("FC_DOUBLE_LOG", str(catalog / "requests.jsonl"))
    (catalog / "config").mkdir(exist_ok=True)
    (catalog / "config" / "config.yaml").write_text(f"firecracker_bin: {DOUBLE}\n")
    made = []

    def make():
        # A real driver gets banger's bridge: in a namespace of the test's own.
        d = Daemon(catalog, driver="firecracker", resync=0.5, netns=True)
        made.append(d)
        return d.start()
    yield make
    for d in made:
        d.stop()
        d.check_log()


FC_SPEC = dict(image="tiny", kernel="default", vcpu=1, memory_mib=256, disk_size="64M")


def test_bangerd_runs_a_sandbox_on_firecracker_and_adopts_it_after_a_restart(fc_daemon, catalog):
    root = catalog
    d = fc_daemon()
    d.write_spec("web.yaml", spec("web", **FC_SPEC))
    sb = d.wait_converged("web")
    assert sb["status"]["phase"] == "Running" and sb["status"]["hypervisor"] == "firecracker"
    assert [r["path"] for r in requests(root)][-1] == "/actions"
    pids = vmm_pids(root)
    assert len(pids) == 1
    wait_for(lambda: "Run /init" in banger(root, "vm", "logs", "web").stdout, what="console through the API")
    # bangerd stops; the VM does not.  The next one adopts it.
    d.stop()
    assert vmm_pids(root) == pids
    n = len(requests(root))
    d = fc_daemon()
    time.sleep(1.5)   # a few resync passes
    assert d.sandbox("web")["status"]["phase"] == "Running"
    assert vmm_pids(root) == pids and len(requests(root)) == n, "adopted, not restarted"
    # Deleting the spec kills the VMM (its disks go next: no graceful
    # SendCtrlAltDel to wait for) and removes everything.
    (d.sandboxes / "web.yaml").unlink()
    d.wait_gone("web")
    assert all(r["body"] != {"action_type": "SendCtrlAltDel"} for r in requests(root)[n:])
    assert vmm_pids(root) == []
    assert list((root / "state" / "vms").iterdir()) == [] and list((root / "run" / "vms").iterdir()) == []


def test_bangerd_puts_the_fault_message_in_the_status(fc_daemon, catalog, monkeypatch):
    fault = "Invalid memory configuration: a fault bangerd must show verbatim"
    monkeypatch.setenv("FC_DOUBLE_FAIL", "PUT /boot-source")
    monkeypatch.setenv("FC_DOUBLE_FAULT", fault)
    d = fc_daemon()
    d.write_spec("web.yaml", spec("web", **FC_SPEC))
    sb = wait_for(lambda: fault in (d.sandbox("web") or {}).get("status", {}).get("message", "") and d.sandbox("web"),
                  what="fault in status")
    assert f"PUT /boot-source: 400: {fault}" in sb["status"]["message"]
    assert sb["status"]["phase"] == "Failed"
    d.stop()   # waits for a retry in flight, which fails the same way
    assert vmm_pids(catalog) == [], "a refused start leaves no VMM"


def test_bangerd_restarts_a_vmm_that_died(fc_daemon, catalog):
    d = fc_daemon()
    d.write_spec("web.yaml", spec("web", restart="on-failure", **FC_SPEC))
    d.wait_converged("web")
    [pid] = vmm_pids(catalog)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: d.sandbox("web")["status"]["restarts"] == 1 and d.phase("web") == "Running",
             timeout=20, what="restart after the VMM died")
    assert len(vmm_pids(catalog)) == 1 and vmm_pids(catalog) != [pid]


def test_bangerd_reaches_the_guest_agent_through_firecrackers_vsock_handshake(fc_daemon, catalog, monkeypatch):
    """The double answers `CONNECT 1024` on the vsock UDS and runs the real
    banger-agent on that connection: Ready, exec, stats and a graceful stop
    all travel the Firecracker path."""
    monkeypatch.setenv("FC_DOUBLE_AGENT", str(BUILD / "bin" / "banger-agent"))
    d = fc_daemon()
    d.write_spec("web.yaml", spec("web", **FC_SPEC))
    d.wait_converged("web")

    def ready():
        conds = {c["type"]: c for c in d.sandbox("web")["status"]["conditions"]}
        return conds["Ready"]["status"] == "True"
    wait_for(ready, timeout=20, what="Ready over vsock")
    boot = [r for r in requests(catalog) if r["path"] == "/boot-source"][-1]["body"]["boot_args"]
    assert "banger.agent=vsock:1024" in boot
    r = subprocess.run([str(BANGER), "--root", str(catalog), "vm", "exec", "web", "--", "sh", "-c",
                        "head -c 300000 /dev/zero; exit 3"], capture_output=True, timeout=60)
    assert r.returncode == 3 and r.stdout == b"\0" * 300000
    r = banger(catalog, "vm", "stats", "web", "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["kind"] == "SandboxStats"
    n = len(requests(catalog))
    d.write_spec("web.yaml", spec("web", state="stopped", **FC_SPEC))
    d.wait_phase("web", "Stopped", timeout=30)
    assert "guest powered off through its agent" in d.log.read_text()
    assert all(q["body"] != {"action_type": "SendCtrlAltDel"} for q in requests(catalog)[n:])
    assert vmm_pids(catalog) == []
