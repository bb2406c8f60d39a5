"""banger vm stop/start/kill/logs/delete and banger doctor against a live
bangerd (fake driver)."""
import json

from bangertest import banger, spec, wait_for


def test_vm_stop_and_start_edit_the_file_and_keep_comments(daemon):
    text = "# my web box\n" + spec("web", vcpu=2).replace("  vcpu: 2\n", "  vcpu: 2   # two is plenty\n")
    daemon.write_spec("web.yaml", text)
    daemon.wait_converged("web")
    r = banger(daemon.root, "vm", "stop", "web")
    assert r.returncode == 0, r.stderr
    assert daemon.phase("web") == "Stopped" and daemon.fake_vms() == []
    body = (daemon.sandboxes / "web.yaml").read_text()
    assert "# my web box" in body and "# two is plenty" in body and "state: stopped" in body
    r = banger(daemon.root, "vm", "start", "web")
    assert r.returncode == 0, r.stderr
    assert daemon.phase("web") == "Running"
    body = (daemon.sandboxes / "web.yaml").read_text()
    assert "state: running" in body and "# my web box" in body


def test_vm_stop_in_a_multi_document_file_touches_only_that_document(daemon):
    daemon.write_spec("fleet.yaml", spec("a") + "---\n" + spec("b", state="running"))
    daemon.wait_converged("a")
    daemon.wait_converged("b")
    r = banger(daemon.root, "vm", "stop", "b")
    assert r.returncode == 0, r.stderr
    assert daemon.phase("b") == "Stopped" and daemon.phase("a") == "Running"


def test_vm_stop_unknown_and_invalid(daemon):
    r = banger(daemon.root, "vm", "stop", "nope")
    assert r.returncode == 1 and "no spec file" in r.stderr
    r = banger(daemon.root, "vm", "stop", "Bad_Name")
    assert r.returncode == 2


def test_vm_kill_stops_now_and_stays_down(daemon):
    daemon.write_spec("web.yaml", spec("web", restart="always"))
    daemon.wait_converged("web")
    r = banger(daemon.root, "vm", "kill", "web")
    assert r.returncode == 0, r.stderr
    assert "killed" in r.stdout
    sb = daemon.wait_phase("web", "Stopped")
    assert sb["status"]["restarts"] == 0
    assert "state: stopped" in (daemon.sandboxes / "web.yaml").read_text()


def test_vm_start_brings_back_a_guest_that_powered_itself_off(daemon):
    text = spec("web")   # restart: on-failure, so a clean poweroff stays down
    daemon.write_spec("web.yaml", text)
    sid = daemon.wait_converged("web")["metadata"]["id"]
    daemon.fake_vm_exit(sid, 0)
    sb = daemon.wait_phase("web", "Stopped")
    assert "restart policy keeps it down" in sb["status"]["message"]
    # The file already says running: only the start request lifts the stay-down.
    r = banger(daemon.root, "vm", "start", "web")
    assert r.returncode == 0, r.stderr
    assert "sandbox/web starting" in r.stdout
    assert daemon.sandbox("web")["status"]["phase"] == "Running"
    assert (daemon.sandboxes / "web.yaml").read_text() == text
    assert any(e["type"] == "StartRequested" and e["name"] == "web" for e in daemon.events())
    # On a running sandbox it changes nothing.
    r = banger(daemon.root, "vm", "start", "web")
    assert r.returncode == 0 and "sandbox/web unchanged" in r.stdout
    status, body = daemon.get("/v1/sandboxes/ghost/start")
    assert status == 405   # POST only


def test_vm_logs_prints_the_console(daemon):
    daemon.write_spec("web.yaml", spec("web"))
    daemon.wait_converged("web")
    r = banger(daemon.root, "vm", "logs", "web")
    assert r.returncode == 0 and "fake: web started" in r.stdout
    r = banger(daemon.root, "vm", "logs", "nope")
    assert r.returncode == 1 and "nope" in r.stderr


def test_vm_delete(daemon):
    daemon.write_spec("web.yaml", spec("web"))
    daemon.wait_converged("web")
    r = banger(daemon.root, "vm", "delete", "web")
    assert r.returncode == 0, r.stderr
    assert daemon.sandbox("web") is None


def test_doctor_text_and_json(daemon):
    r = banger(daemon.root, "doctor")
    assert r.returncode == 0, r.stderr
    assert "hypervisors" in r.stdout and "vm_defaults" in r.stdout and "driver fake" in r.stdout
    j = json.loads(banger(daemon.root, "doctor", "-o", "json").stdout)
    assert j["daemon"]["drivers"][0]["name"] == "fake"
    assert j["daemon"]["vm_defaults"]["disk_size"]["value"] == "8G"
    assert "kvm" in j["host"]


def test_doctor_without_daemon(tmp_path):
    r = banger(tmp_path, "doctor")
    assert r.returncode == 0 and "not reachable" in r.stdout
