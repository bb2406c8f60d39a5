"""The banger CLI against a live bangerd (fake driver): apply, get, diff,
delete and events, as a user runs them."""
import json
import subprocess
import time

from bangertest import BANGER, banger, spec, wait_for


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_apply_writes_the_file_and_waits_until_running(daemon, tmp_path):
    f = write(tmp_path, "web.yaml", "# my sandbox\n" + spec("web", vcpu=2))
    r = banger(daemon.root, "apply", "-f", str(f))
    assert r.returncode == 0, r.stderr
    assert "sandbox/web created" in r.stdout
    assert daemon.phase("web") == "Running"
    assert (daemon.sandboxes / "web.yaml").read_text().startswith("# my sandbox")
    r = banger(daemon.root, "apply", "-f", str(f))
    assert r.returncode == 0 and "sandbox/web unchanged" in r.stdout


def test_apply_configured_and_stopped(daemon, tmp_path):
    banger(daemon.root, "apply", "-f", str(write(tmp_path, "w.yaml", spec("web"))))
    r = banger(daemon.root, "apply", "-f", str(write(tmp_path, "w.yaml", spec("web", state="stopped"))))
    assert r.returncode == 0, r.stderr
    assert "sandbox/web configured" in r.stdout
    assert daemon.phase("web") == "Stopped"


def test_apply_multi_document_from_stdin(daemon):
    r = banger(daemon.root, "apply", "-f", "-", input=spec("a") + "---\n" + spec("b"))
    assert r.returncode == 0, r.stderr
    assert daemon.phase("a") == "Running" and daemon.phase("b") == "Running"


def test_apply_invalid_spec_prints_position_and_touches_nothing(daemon, tmp_path):
    banger(daemon.root, "apply", "-f", str(write(tmp_path, "w.yaml", spec("web", vcpu=2))))
    before = (daemon.sandboxes / "web.yaml").read_text()
    bad = write(tmp_path, "bad.yaml", spec("web", vcpu=99, memory_mib="big"))
    r = banger(daemon.root, "apply", "-f", str(bad))
    assert r.returncode == 1
    assert f"{bad}:6:9: spec.vcpu:" in r.stderr and "spec.memory_mib" in r.stderr
    assert (daemon.sandboxes / "web.yaml").read_text() == before
    assert daemon.sandbox("web")["spec"]["vcpu"] == 2


def test_apply_refuses_recreate_without_flag(daemon, tmp_path):
    banger(daemon.root, "apply", "-f", str(write(tmp_path, "w.yaml", spec("web", image="alpha"))))
    r = banger(daemon.root, "apply", "-f", str(write(tmp_path, "w.yaml", spec("web", image="beta"))))
    assert r.returncode == 1 and "spec.image" in r.stderr and "--recreate" in r.stderr
    assert "alpha" in (daemon.sandboxes / "web.yaml").read_text()
    r = banger(daemon.root, "apply", "--recreate", "-f", str(tmp_path / "w.yaml"))
    assert r.returncode == 0, r.stderr
    assert daemon.sandbox("web")["spec"]["image"] == "beta"


def test_apply_reports_failure(make_daemon, tmp_path):
    d = make_daemon(faults="fail:prepare.before").start()
    r = banger(d.root, "apply", "--timeout", "10", "-f", str(write(tmp_path, "w.yaml", spec("web"))))
    assert r.returncode == 1
    assert "sandbox/web failed" in r.stderr and "injected failure" in r.stderr


def test_apply_no_wait_returns_at_once(daemon, tmp_path):
    r = banger(daemon.root, "apply", "--no-wait", "-f", str(write(tmp_path, "w.yaml", spec("web"))))
    assert r.returncode == 0
    daemon.wait_converged("web")


def test_get_table_json_yaml(daemon, tmp_path):
    banger(daemon.root, "apply", "-f", str(write(tmp_path, "w.yaml", spec("web", vcpu=2))))
    r = banger(daemon.root, "get")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "PHASE", "RESTARTS", "HYPERVISOR"]
    assert lines[1].split()[:4] == ["web", "Running", "0", "fake"]
    obj = json.loads(banger(daemon.root, "get", "web", "-o", "json").stdout)
    assert obj == daemon.sandbox("web") | {"status": obj["status"]}
    assert obj["kind"] == "Sandbox" and obj["spec"]["vcpu"] == 2
    y = banger(daemon.root, "get", "web", "-o", "yaml").stdout
    assert "kind: Sandbox" in y and "vcpu: 2" in y
    lst = json.loads(banger(daemon.root, "get", "-o", "json").stdout)
    assert lst["kind"] == "SandboxList" and [i["metadata"]["name"] for i in lst["items"]] == ["web"]


def test_get_missing_is_an_error(daemon):
    r = banger(daemon.root, "get", "nope")
    assert r.returncode == 1 and 'sandbox "nope" not found' in r.stderr


def test_get_label_selector(daemon):
    daemon.write_spec("a.yaml", spec("a").replace("  name: a\n", "  name: a\n  labels: {team: x}\n"))
    daemon.write_spec("b.yaml", spec("b"))
    daemon.wait_converged("a")
    daemon.wait_converged("b")
    r = banger(daemon.root, "get", "-l", "team=x")
    names = [l.split()[0] for l in r.stdout.splitlines()[1:]]
    assert names == ["a"]


def test_get_watch_prints_changes(daemon):
    p = subprocess.Popen([str(BANGER), "--root", str(daemon.root), "get", "-w"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        daemon.write_spec("web.yaml", spec("web"))
        daemon.wait_converged("web")
        time.sleep(0.5)
    finally:
        p.terminate()
        out = p.communicate(timeout=5)[0]
    assert "web" in out and "Running" in out


def test_diff_shows_fields_and_actions(daemon, tmp_path):
    banger(daemon.root, "apply", "-f", str(write(tmp_path, "w.yaml", spec("web", vcpu=2))))
    r = banger(daemon.root, "diff", "-f", str(tmp_path / "w.yaml"))
    assert r.returncode == 0 and "no changes" in r.stdout
    r = banger(daemon.root, "diff", "-f", str(write(tmp_path, "w2.yaml", spec("web", vcpu=4))))
    assert r.returncode == 1
    assert "spec.vcpu: 2 -> 4 (restart)" in r.stdout
    r = banger(daemon.root, "diff", "-f", str(write(tmp_path, "n.yaml", spec("new"))))
    assert r.returncode == 1 and "new" in r.stdout and "create" in r.stdout
    assert daemon.sandbox("web")["spec"]["vcpu"] == 2 and daemon.sandbox("new") is None


def test_delete_removes_file_and_waits(daemon, tmp_path):
    banger(daemon.root, "apply", "-f", str(write(tmp_path, "w.yaml", spec("web"))))
    r = banger(daemon.root, "delete", "web")
    assert r.returncode == 0, r.stderr
    assert "sandbox/web deleted" in r.stdout
    assert not (daemon.sandboxes / "web.yaml").exists()
    assert daemon.sandbox("web") is None and daemon.fake_vms() == []


def test_delete_one_document_of_a_multi_document_file(daemon):
    daemon.write_spec("fleet.yaml", spec("a") + "---\n" + spec("b"))
    daemon.wait_converged("a")
    daemon.wait_converged("b")
    r = banger(daemon.root, "delete", "a")
    assert r.returncode == 0, r.stderr
    text = (daemon.sandboxes / "fleet.yaml").read_text()
    assert "name: b" in text and "name: a" not in text
    assert daemon.phase("b") == "Running"


def test_delete_unknown_is_an_error(daemon):
    r = banger(daemon.root, "delete", "nope")
    assert r.returncode == 1 and "nope" in r.stderr


def test_events_lists_and_follows(daemon, tmp_path):
    banger(daemon.root, "apply", "-f", str(write(tmp_path, "w.yaml", spec("web"))))
    r = banger(daemon.root, "events")
    assert r.returncode == 0 and "PhaseChanged" in r.stdout and "web" in r.stdout
    r = banger(daemon.root, "events", "-o", "json")
    evs = [json.loads(l) for l in r.stdout.splitlines()]
    assert all("seq" in e for e in evs)
    p = subprocess.Popen([str(BANGER), "--root", str(daemon.root), "events", "-f", "--name", "late"],
                         stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        daemon.write_spec("late.yaml", spec("late"))
        daemon.wait_converged("late")
        time.sleep(0.3)
    finally:
        p.terminate()
        out = p.communicate(timeout=5)[0]
    assert "late" in out and "Running" in out and "web" not in out


def test_version_shows_daemon(daemon):
    r = banger(daemon.root, "version")
    assert r.returncode == 0 and "driver fake" in r.stdout
