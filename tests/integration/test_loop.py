"""The control loop end to end with the fake driver: files in the watched
folder converge, edits apply, deletes clean up, bad input is contained."""
import os
import subprocess
import time

from bangertest import Daemon, spec, wait_for


def test_dropped_file_converges_to_running(daemon):
    daemon.write_spec("web.yaml", spec("web", vcpu=2))
    sb = daemon.wait_converged("web")
    assert sb["status"]["phase"] == "Running"
    assert sb["spec"]["vcpu"] == 2
    assert sb["metadata"]["files"] == [str(daemon.sandboxes / "web.yaml")]
    assert daemon.fake_vms() == [sb["metadata"]["id"]]
    assert daemon.fake_disks() == [sb["metadata"]["id"]]
    phases = [e["phase"] for e in daemon.events() if e.get("name") == "web" and e["type"] == "PhaseChanged"]
    assert phases[:4] == ["Pending", "Creating", "Starting", "Running"]


def test_stopped_spec_creates_without_starting(daemon):
    daemon.write_spec("db.yaml", spec("db", state="stopped"))
    sb = daemon.wait_converged("db")
    assert sb["status"]["phase"] == "Stopped"
    assert daemon.fake_vms() == []
    assert daemon.fake_disks() == [sb["metadata"]["id"]]


def test_edit_vcpu_restarts_with_new_spec_same_id(daemon):
    daemon.write_spec("web.yaml", spec("web", vcpu=1))
    first = daemon.wait_converged("web")
    daemon.write_spec("web.yaml", spec("web", vcpu=4))
    wait_for(lambda: (daemon.sandbox("web")["spec"]["vcpu"] == 4
                      and daemon.sandbox("web")["status"]["specHash"] == daemon.sandbox("web")["status"]["desiredHash"]
                      and daemon.phase("web") == "Running"), what="vcpu change applied")
    after = daemon.sandbox("web")
    assert after["metadata"]["id"] == first["metadata"]["id"]
    changed = [e for e in daemon.events() if e["type"] == "SpecChanged" and e["name"] == "web"]
    assert changed and "spec.vcpu" in changed[-1]["message"]
    phases = [e["phase"] for e in daemon.events() if e.get("name") == "web" and e["type"] == "PhaseChanged"]
    assert "Stopping" in phases and phases[-1] == "Running"


def test_state_stopped_then_running(daemon):
    daemon.write_spec("web.yaml", spec("web"))
    daemon.wait_converged("web")
    daemon.write_spec("web.yaml", spec("web", state="stopped"))
    wait_for(lambda: daemon.phase("web") == "Stopped" and not daemon.fake_vms(), what="stopped")
    daemon.write_spec("web.yaml", spec("web", state="running"))
    wait_for(lambda: daemon.phase("web") == "Running" and len(daemon.fake_vms()) == 1, what="running again")


def test_image_change_recreates_with_fresh_disk(daemon):
    daemon.write_spec("web.yaml", spec("web", image="alpha"))
    first = daemon.wait_converged("web")
    disk = daemon.root / "state" / "fake" / first["metadata"]["id"] / "disk"
    with open(disk, "r+b") as f:
        f.write(b"old data")
    daemon.write_spec("web.yaml", spec("web", image="beta"))
    wait_for(lambda: daemon.sandbox("web")["spec"]["image"] == "beta"
             and daemon.sandbox("web")["status"]["phase"] == "Running"
             and daemon.sandbox("web")["status"]["specHash"] == daemon.sandbox("web")["status"]["desiredHash"],
             what="recreated")
    with open(disk, "rb") as f:
        assert f.read(8) == bytes(8), "a fresh disk, not the old one"



def test_deleted_file_removes_sandbox_and_every_object(daemon):
    daemon.write_spec("web.yaml", spec("web"))
    daemon.wait_converged("web")
    os.unlink(daemon.sandboxes / "web.yaml")
    daemon.wait_gone("web")
    assert daemon.fake_vms() == [] and daemon.fake_disks() == []
    assert any(e["type"] == "Deleted" and e["name"] == "web" for e in daemon.events())


def test_multi_document_file(daemon):
    docs = spec("a") + "---\n" + spec("b", state="stopped") + "---\n" + spec("c", vcpu=2)
    daemon.write_spec("fleet.yaml", docs)
    for n in "abc":
        daemon.wait_converged(n)
    assert daemon.phase("b") == "Stopped"
    # Dropping one document deletes only that sandbox.
    daemon.write_spec("fleet.yaml", spec("a") + "---\n" + spec("c", vcpu=2))
    daemon.wait_gone("b")
    assert daemon.phase("a") == "Running" and daemon.phase("c") == "Running"


def test_bad_document_does_not_affect_its_neighbours(daemon):
    docs = spec("good") + "---\n" + spec("bad", vcpu=999)
    daemon.write_spec("mixed.yaml", docs)
    daemon.wait_converged("good")
    bad = wait_for(lambda: daemon.sandbox("bad"), what="bad reported")
    assert bad["status"]["phase"] == "Pending"
    assert "metadata" in bad and "id" not in bad["metadata"]
    assert any("spec.vcpu" in e for e in bad["status"]["errors"])
    cond = {c["type"]: c for c in bad["status"]["conditions"]}
    assert cond["SpecValid"]["status"] == "False"
    assert "mixed.yaml:" in cond["SpecValid"]["message"]


def test_invalid_edit_leaves_running_sandbox_untouched(daemon):
    daemon.write_spec("web.yaml", spec("web", vcpu=2))
    before = daemon.wait_converged("web")
    vm_file = daemon.root / "run" / "fake" / f"{before['metadata']['id']}.vm"
    mtime = vm_file.stat().st_mtime_ns
    n_events = len(daemon.events())
    for broken in (spec("web", vcpu="lots"),                        # wrong type
                   "apiVersion: banger/v1\nkind: Sandbox\nmetadata: [\n",  # YAML syntax error
                   spec("Web", vcpu=2),                              # name no longer valid
                   "\x00\xff garbage"):
        daemon.write_spec("web.yaml", broken)
        sb = wait_for(lambda: daemon.sandbox("web")["status"]["errors"] and daemon.sandbox("web"), what="error shown")
        assert sb["metadata"]["id"] == before["metadata"]["id"]
        assert sb["status"]["phase"] == "Running"
        assert sb["spec"]["vcpu"] == 2
        assert "web.yaml:" in sb["status"]["errors"][0]
        time.sleep(0.5)   # a couple of resync passes
        assert daemon.phase("web") == "Running"
        assert vm_file.stat().st_mtime_ns == mtime
    acts = [e for e in daemon.events()[n_events:] if e["type"] in ("PhaseChanged", "Deleted", "SpecChanged")]
    assert acts == []
    # Fixing the file clears the error without touching the VM.
    daemon.write_spec("web.yaml", spec("web", vcpu=2))
    wait_for(lambda: not daemon.sandbox("web")["status"]["errors"], what="error cleared")
    assert vm_file.stat().st_mtime_ns == mtime


def test_duplicate_names_reported_and_last_valid_spec_kept(daemon):
    daemon.write_spec("one.yaml", spec("web", vcpu=2))
    before = daemon.wait_converged("web")
    daemon.write_spec("two.yaml", spec("web", vcpu=3))
    sb = wait_for(lambda: len(daemon.sandbox("web")["metadata"]["files"]) == 2 and daemon.sandbox("web"),
                  what="duplicate seen")
    assert "claimed 2 times" in sb["status"]["errors"][0]
    assert "one.yaml" in sb["status"]["errors"][0] and "two.yaml" in sb["status"]["errors"][0]
    assert sb["spec"]["vcpu"] == 2 and sb["metadata"]["id"] == before["metadata"]["id"]
    assert any(e["type"] == "SpecDuplicate" and e["name"] == "web" for e in daemon.events())
    time.sleep(0.5)
    assert daemon.phase("web") == "Running" and daemon.sandbox("web")["spec"]["vcpu"] == 2
    # Removing the second claim resolves it; the first file still wants vcpu 2.
    os.unlink(daemon.sandboxes / "two.yaml")
    wait_for(lambda: not daemon.sandbox("web")["status"]["errors"], what="duplicate resolved")
    assert daemon.sandbox("web")["metadata"]["id"] == before["metadata"]["id"]


def test_rename_within_folder_is_one_change_not_a_delete(daemon):
    daemon.write_spec("a.yaml", spec("web"))
    before = daemon.wait_converged("web")
    n = len(daemon.events())
    os.rename(daemon.sandboxes / "a.yaml", daemon.sandboxes / "b.yaml")
    wait_for(lambda: daemon.sandbox("web")["metadata"]["files"] == [str(daemon.sandboxes / "b.yaml")], what="moved")
    time.sleep(0.5)
    assert daemon.sandbox("web")["metadata"]["id"] == before["metadata"]["id"]
    assert [e for e in daemon.events()[n:] if e["type"] in ("PhaseChanged", "Deleted")] == []


def test_editor_temp_and_non_yaml_files_are_ignored(daemon):
    for name in (".web.yaml.swp", "web.yaml~", "#web.yaml#", ".hidden.yaml", "notes.txt", "web.json"):
        (daemon.sandboxes / name).write_text(spec("ghost"))
    time.sleep(0.6)
    assert daemon.sandbox("ghost") is None
    assert daemon.get("/v1/sandboxes")[1]["items"] == []


def test_both_yaml_and_yml_suffixes(daemon):
    daemon.write_spec("a.yml", spec("a"))
    daemon.write_spec("b.yaml", spec("b"))
    daemon.wait_converged("a")
    daemon.wait_converged("b")


def test_vm_crash_restarts_and_counts(daemon):
    daemon.write_spec("web.yaml", spec("web"))
    sb = daemon.wait_converged("web")
    vm_file = daemon.root / "run" / "fake" / f"{sb['metadata']['id']}.vm"
    daemon.fake_vm_exit(sb["metadata"]["id"], 1)
    wait_for(lambda: daemon.sandbox("web")["status"]["restarts"] == 1 and daemon.phase("web") == "Running",
             what="restart")
    assert vm_file.read_text().startswith("running")
    assert any(e["type"] == "Restarted" for e in daemon.events())


def test_restart_never_leaves_crashed_vm_failed(daemon):
    daemon.write_spec("web.yaml", spec("web", restart="never"))
    sb = daemon.wait_converged("web")
    daemon.fake_vm_exit(sb["metadata"]["id"], 3)
    sb = daemon.wait_phase("web", "Failed")
    assert sb["status"]["lastExit"] == 3 and sb["status"]["restarts"] == 0
    time.sleep(0.5)
    assert daemon.phase("web") == "Failed"


def test_clean_guest_exit_stays_stopped_on_failure_policy(daemon):
    daemon.write_spec("web.yaml", spec("web"))
    sb = daemon.wait_converged("web")
    daemon.fake_vm_exit(sb["metadata"]["id"], 0)
    sb = daemon.wait_phase("web", "Stopped")
    assert sb["status"]["lastExit"] == 0 and sb["status"]["restarts"] == 0


def test_restart_always_restarts_clean_exit(daemon):
    daemon.write_spec("web.yaml", spec("web", restart="always"))
    sb = daemon.wait_converged("web")
    daemon.fake_vm_exit(sb["metadata"]["id"], 0)
    wait_for(lambda: daemon.sandbox("web")["status"]["restarts"] == 1 and daemon.phase("web") == "Running",
             what="restart")


def test_vm_that_keeps_dying_backs_off(make_daemon):
    d = make_daemon(faults="die:start").start()
    d.write_spec("web.yaml", spec("web"))
    wait_for(lambda: (d.sandbox("web") or {}).get("status", {}).get("restarts", 0) >= 2, what="two restarts")
    time.sleep(1.0)
    # Backoff doubles from 0.5 s: far fewer restarts than resync passes (every 0.2 s).
    assert d.sandbox("web")["status"]["restarts"] <= 5


def test_failed_action_is_retried_with_backoff(make_daemon):
    d = make_daemon(faults="fail:prepare.before*2").start()
    d.write_spec("web.yaml", spec("web"))
    d.wait_converged("web", timeout=20)
    failed = [e for e in d.events() if e["type"] == "ActionFailed"]
    assert len(failed) == 2 and "injected failure at prepare.before" in failed[0]["message"]


def test_sigterm_leaves_vms_running_and_restart_adopts_them(make_daemon):
    d = make_daemon().start()
    d.write_spec("web.yaml", spec("web"))
    before = d.wait_converged("web")
    assert d.stop() == 0
    assert d.fake_vms() == [before["metadata"]["id"]]
    d.start()
    after = d.wait_converged("web")
    assert after["metadata"]["id"] == before["metadata"]["id"]
    assert after["status"]["restarts"] == 0
    assert d.fake_vms() == [before["metadata"]["id"]]


def test_changes_while_daemon_is_down_are_picked_up(make_daemon):
    d = make_daemon().start()
    d.write_spec("a.yaml", spec("a"))
    d.wait_converged("a")
    d.stop()
    os.unlink(d.sandboxes / "a.yaml")
    d.write_spec("b.yaml", spec("b"))
    d.start()
    d.wait_gone("a")
    b = d.wait_converged("b")
    assert d.fake_vms() == [b["metadata"]["id"]]


def test_gc_removes_objects_no_record_claims(make_daemon):
    d = make_daemon()
    stray = "0123456789abcdef"
    (d.root / "state" / "fake" / stray).mkdir(parents=True)
    (d.root / "state" / "fake" / stray / "disk").write_text("")
    (d.root / "run" / "fake").mkdir(parents=True)
    (d.root / "run" / "fake" / f"{stray}.vm").write_text("running\n")
    (d.root / "run" / "fake" / "not-ours.txt").write_text("keep")
    d.start()
    # The event follows the removal: wait for it rather than race it.
    wait_for(lambda: any(e["type"] == "GarbageCollected" and e["id"] == stray for e in d.events()), what="gc event")
    assert d.fake_vms() == [] and d.fake_disks() == []
    assert (d.root / "run" / "fake" / "not-ours.txt").read_text() == "keep"


def test_second_daemon_on_same_root_is_refused(daemon):
    other = Daemon(daemon.root)
    other.start(wait=False)
    assert other.proc.wait(10) == 1
    assert "another bangerd" in other.log.read_text()
    assert daemon.ready()


def test_bad_config_is_a_clear_error_and_touches_nothing(tmp_path):
    d = Daemon(tmp_path / "root")
    (d.root / "config").mkdir(parents=True)
    (d.root / "config" / "config.yaml").write_text("vm_defaults:\n  vcpu: lots\n")
    d.start(wait=False)
    assert d.proc.wait(10) == 1
    log = d.log.read_text()
    assert "config.yaml:2:" in log and "vcpu" in log
    assert not (d.root / "run" / "bangerd.sock").exists()


def test_unknown_driver_and_missing_hypervisor(tmp_path):
    from bangertest import BANGERD
    env = dict(os.environ, PATH="/usr/bin:/bin")   # no firecracker here
    for drv, msg in (("firecracker", "firecracker"), ("vmware", "unknown driver")):
        r = subprocess.run([str(BANGERD), "--root", str(tmp_path / drv), "--foreground", "--driver", drv],
                           capture_output=True, text=True, timeout=10, env=env)
        assert r.returncode == 1 and msg in r.stderr, r.stderr
        assert not (tmp_path / drv / "run" / "bangerd.sock").exists()


def test_curl_works_on_the_socket(daemon):
    daemon.write_spec("web.yaml", spec("web"))
    daemon.wait_converged("web")
    out = subprocess.run(["curl", "-sS", "--unix-socket", str(daemon.socket), "http://banger/v1/sandboxes/web"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and '"phase": "Running"' in out.stdout.replace('":"', '": "')
    out = subprocess.run(["curl", "-sS", "--unix-socket", str(daemon.socket), "http://banger/v1/sandboxes/nope"],
                         capture_output=True, text=True, timeout=10)
    assert '"code": 404' in out.stdout.replace('":', '": ').replace(':  ', ': ')


def test_events_follow_streams_new_events(daemon):
    import json
    import socket as s
    last = daemon.events()[-1]["seq"] if daemon.events() else 0
    sock = s.socket(s.AF_UNIX, s.SOCK_STREAM)
    sock.connect(str(daemon.socket))
    sock.settimeout(10)
    sock.sendall(f"GET /v1/events?follow=1&since={last} HTTP/1.1\r\nHost: banger\r\n\r\n".encode())
    daemon.write_spec("web.yaml", spec("web"))
    buf = b""
    deadline = time.monotonic() + 10
    while b'"Running"' not in buf and time.monotonic() < deadline:
        buf += sock.recv(65536)
    sock.close()
    assert b'"Running"' in buf
    lines = [json.loads(x) for x in buf.replace(b"\r\n", b"\n").split(b"\n") if x.startswith(b"{") and x.endswith(b"}")]
    assert lines and all(e["seq"] > last for e in lines)


def test_hostile_files_are_reported_and_contained(daemon):
    """A FIFO, a folder, a huge file and random bytes in the sandboxes folder:
    each is an error on its own, the daemon keeps serving, others converge."""
    daemon.write_spec("good.yaml", spec("good"))
    os.mkfifo(daemon.sandboxes / "fifo.yaml")
    (daemon.sandboxes / "dir.yaml").mkdir()
    with open(daemon.sandboxes / ".huge.tmp", "wb") as f:
        f.write(b"a: " + b"x" * (2 << 20) + b"\n")
    os.rename(daemon.sandboxes / ".huge.tmp", daemon.sandboxes / "huge.yaml")
    daemon.write_spec("random.yaml", os.urandom(4096).decode("latin-1"))
    # The fifo is noticed when something writes it shut; touch the others.
    os.utime(daemon.sandboxes / "fifo.yaml")
    daemon.wait_converged("good")
    daemon.write_spec("later.yaml", spec("later"))
    daemon.wait_converged("later")
    invalid = [e["message"] for e in daemon.events() if e["type"] == "SpecInvalid"]
    assert any("huge.yaml" in m and "larger than" in m for m in invalid)
    assert any("random.yaml" in m for m in invalid)
    assert [i["metadata"]["name"] for i in daemon.get("/v1/sandboxes")[1]["items"]] == ["good", "later"]


def test_fifo_in_folder_does_not_hang_startup(make_daemon):
    d = make_daemon()
    d.sandboxes.mkdir(parents=True, exist_ok=True)
    os.mkfifo(d.sandboxes / "fifo.yaml")
    d.write_spec("web.yaml", spec("web"))
    d.start()
    d.wait_converged("web")
    assert any("fifo.yaml" in e["message"] and "not a regular file" in e["message"]
               for e in d.events() if e["type"] == "SpecInvalid")


def test_spec_file_not_owned_by_folder_owner_is_refused(daemon, tmp_path):
    """bangerd (root) must not read, and echo in errors, a file the folder's
    owner could not: a symlink to someone else's file is an error."""
    secret = tmp_path / "secret.yaml"
    secret.write_text(spec("stolen"))
    os.chown(secret, 12345, 12345)
    os.symlink(secret, daemon.sandboxes / "link.yaml")
    daemon.write_spec("web.yaml", spec("web"))
    daemon.wait_converged("web")
    assert daemon.sandbox("stolen") is None
    assert any("link.yaml" in e["message"] and "belongs to uid 12345" in e["message"]
               for e in daemon.events() if e["type"] == "SpecInvalid")
    # A symlink to a file of the folder's owner is fine.
    mine = tmp_path / "mine.yaml"
    mine.write_text(spec("mine"))
    os.symlink(mine, daemon.sandboxes / "mine.yaml")
    daemon.wait_converged("mine")


def test_logs_kill_and_doctor_endpoints(daemon):
    daemon.write_spec("web.yaml", spec("web", restart="always"))
    sb = daemon.wait_converged("web")
    import http.client
    from bangertest import UnixHTTPConnection
    c = UnixHTTPConnection(daemon.socket)
    c.request("GET", "/v1/sandboxes/web/logs")
    r = c.getresponse()
    assert r.status == 200 and b"fake: web started" in r.read()
    c.close()
    assert daemon.get("/v1/sandboxes/nope/logs")[0] == 404
    # kill is the one POST; GET on it is 405 naming POST.
    c = UnixHTTPConnection(daemon.socket)
    c.request("GET", "/v1/sandboxes/web/kill")
    r = c.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "POST"
    r.read()
    c.close()
    c = UnixHTTPConnection(daemon.socket)
    c.request("POST", "/v1/sandboxes/web/kill")
    r = c.getresponse()
    assert r.status == 200, r.read()
    r.read()
    c.close()
    # restart: always brings it back; the kill was real.
    wait_for(lambda: daemon.sandbox("web")["status"]["restarts"] == 1 and daemon.phase("web") == "Running",
             what="restarted after kill")
    c = UnixHTTPConnection(daemon.socket)
    c.request("POST", "/v1/sandboxes/nope/kill")
    r = c.getresponse()
    assert r.status == 404
    c.close()
    status, doc = daemon.get("/v1/doctor")
    assert status == 200
    assert [d["name"] for d in doc["drivers"]] == ["fake"]
    assert doc["vm_defaults"]["vcpu"]["from"] in ("host", "floor", "config")
