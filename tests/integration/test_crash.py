"""Crash injection: bangerd is killed with SIGKILL at every step of create
and delete (fake driver fault points), restarted without faults, and must
converge with no duplicate and no leaked object."""
import os

import pytest

from bangertest import spec, wait_for

CREATE_POINTS = [
    "create-record.after",
    "prepare.before", "prepare.mid", "prepare.after",
    "start.before", "start.mid", "start.after",
]
DELETE_POINTS = [
    "kill.before", "kill.after",   # deleting kills the VM: its disks go next
    "cleanup.before", "cleanup.mid", "cleanup.after",
    "forget.before",
]
CHANGE_POINTS = ["update-spec.after"]


def assert_exactly_one(d, name):
    sb = d.wait_converged(name)
    sid = sb["metadata"]["id"]
    assert d.fake_vms() == [sid], "one VM, owned by the record"
    assert d.fake_disks() == [sid], "one disk, owned by the record"
    items = d.get("/v1/sandboxes")[1]["items"]
    assert [i["metadata"]["name"] for i in items] == [name]
    return sb


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_kill9_during_create_converges_without_leaks(make_daemon, point):
    d = make_daemon(faults=f"crash:{point}").start()
    d.write_spec("web.yaml", spec("web"))
    assert d.wait_exit() == -9
    d.faults = ""
    d.start()
    sb = assert_exactly_one(d, "web")
    assert sb["status"]["restarts"] == 0


@pytest.mark.parametrize("point", DELETE_POINTS)
def test_kill9_during_delete_converges_without_leaks(make_daemon, point):
    d = make_daemon().start()
    d.write_spec("web.yaml", spec("web"))
    d.wait_converged("web")
    d.stop()
    d.faults = f"crash:{point}"
    d.start()
    os.unlink(d.sandboxes / "web.yaml")
    assert d.wait_exit() == -9
    d.faults = ""
    d.start()
    d.wait_gone("web")
    wait_for(lambda: d.fake_vms() == [] and d.fake_disks() == [], what="no objects left")


@pytest.mark.parametrize("point", CHANGE_POINTS + ["stop.after", "cleanup.mid"])
def test_kill9_during_recreate_converges(make_daemon, point):
    d = make_daemon().start()
    d.write_spec("web.yaml", spec("web", image="alpha"))
    d.wait_converged("web")
    d.stop()
    d.faults = f"crash:{point}"
    d.start()
    d.write_spec("web.yaml", spec("web", image="beta"))
    assert d.wait_exit() == -9
    d.faults = ""
    d.start()
    sb = assert_exactly_one(d, "web")
    assert sb["spec"]["image"] == "beta"


def test_kill9_with_many_sandboxes_in_flight(make_daemon):
    d = make_daemon(faults="crash:start.mid@s7").start()
    for i in range(12):
        d.write_spec(f"s{i}.yaml", spec(f"s{i}"))
    assert d.wait_exit() == -9
    d.faults = ""
    d.start()
    ids = []
    for i in range(12):
        ids.append(d.wait_converged(f"s{i}")["metadata"]["id"])
    assert sorted(ids) == d.fake_vms() == d.fake_disks()
