"""Crash injection around the network steps: bangerd (fake driver with
`--network`) is killed with SIGKILL at a network fault point during create
or delete, restarted without faults, and must converge with exactly one
tap and one set of nft elements per record, distinct addresses, and
nothing left behind after delete.

Taps and nft elements outlive bangerd, so every start of the daemon in one
test enters the same network namespace: one the test makes with
`ip netns add` (a unique name) and deletes at the end.  Nothing here
touches the machine's own namespace or ruleset."""
import json
import os
import subprocess
import uuid

import pytest

from bangertest import Daemon, spec, wait_for

CREATE_POINTS = ["net-claim.after", "net-setup.mid", "net-setup.after"]
DELETE_POINTS = ["net-teardown.mid", "cleanup.mid", "forget.before"]
# An image edit recreates the sandbox (cleanup tears the network down,
# prepare claims and sets it up again); a nat/ports-only edit restarts it
# (stop, then claim and setup again with the new spec, no teardown).
EDIT_CASES = [("image", p) for p in ["net-teardown.mid", "net-claim.after", "net-setup.mid", "net-setup.after"]] + \
             [("nat", p) for p in ["net-claim.after", "net-setup.mid", "net-setup.after"]]

FWD = "  ports:\n    - host: 8022\n      guest: 22\n"


def ns_run(ns, *cmd):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=30)


@pytest.fixture
def netns():
    name = f"bgtest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    daemons = []
    try:
        r = ns_run(name, "ip", "link", "set", "lo", "up")
        assert r.returncode == 0, r.stderr
        yield name, daemons
    finally:
        for d in daemons:
            d.kill9()
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def net_daemon(tmp_path, netns):
    name, daemons = netns

    def make(faults=""):
        d = Daemon(tmp_path / "root", faults=faults, extra=["--network"], netns_name=name)
        daemons.append(d)
        return d
    yield make
    for d in daemons:
        d.stop()
        d.check_log()


def taps(ns):
    out = ns_run(ns, "ip", "-o", "link", "show").stdout
    names = [ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()]
    return sorted(n for n in names if n.startswith("bg"))


def elements(ns):
    """{id: sorted [set names, one entry per element]} from the table."""
    r = ns_run(ns, "nft", "-j", "list", "table", "inet", "banger")
    assert r.returncode == 0, r.stderr
    owned = {}
    for obj in json.loads(r.stdout)["nftables"]:
        s = obj.get("set") or obj.get("map")
        if not s:
            continue
        for e in s.get("elem", []):
            key = e[0] if isinstance(e, list) else e   # a map element is [key, value]
            comment = key.get("elem", {}).get("comment", "") if isinstance(key, dict) else ""
            assert comment.startswith("banger:"), f"element without owner in {s['name']}: {e}"
            owned.setdefault(comment[len("banger:"):], []).append(s["name"])
    return {k: sorted(v) for k, v in owned.items()}


def expected_sets(nat, ports):
    return sorted(["guests"] + (["nat_guests"] if nat else []) + ["tcp_fwd"] * ports)


def assert_network_converged(d, ns, want):
    """want: {name: (nat, n_ports)}; every record has one tap, its own
    elements and an address no other record has."""
    sbs = {n: d.wait_converged(n) for n in want}
    ids = {n: sb["metadata"]["id"] for n, sb in sbs.items()}
    wait_for(lambda: taps(ns) == sorted(sbs[n]["status"]["tap"] for n in want), what="one tap per record")
    assert sorted(sb["metadata"]["id"] for sb in d.get("/v1/sandboxes")[1]["items"]) == sorted(ids.values())
    els = elements(ns)
    assert els == {ids[n]: expected_sets(*want[n]) for n in want}, els
    addrs = [sbs[n]["status"]["ip"] for n in want]
    assert len(set(addrs)) == len(addrs), addrs
    assert d.get("/v1/doctor")[1]["network"]["addresses_in_use"] == len(want)
    return sbs


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_kill9_in_network_setup_during_create_converges(net_daemon, netns, point):
    ns = netns[0]
    d = net_daemon().start()
    d.write_spec("db.yaml", spec("db"))
    d.wait_converged("db")
    d.stop()
    d = net_daemon(faults=f"crash:{point}").start()
    d.write_spec("web.yaml", spec("web", nat=True) + FWD)
    assert d.wait_exit() == -9
    d = net_daemon().start()
    sbs = assert_network_converged(d, ns, {"db": (False, 0), "web": (True, 1)})
    assert sbs["web"]["status"]["restarts"] == 0


@pytest.mark.parametrize("point", DELETE_POINTS)
def test_kill9_in_network_teardown_during_delete_leaves_nothing(net_daemon, netns, point):
    ns = netns[0]
    d = net_daemon().start()
    d.write_spec("db.yaml", spec("db"))
    d.write_spec("web.yaml", spec("web", nat=True) + FWD)
    assert_network_converged(d, ns, {"db": (False, 0), "web": (True, 1)})
    d.stop()
    d = net_daemon(faults=f"crash:{point}").start()
    os.unlink(d.sandboxes / "web.yaml")
    assert d.wait_exit() == -9
    d = net_daemon().start()
    d.wait_gone("web")
    assert_network_converged(d, ns, {"db": (False, 0)})
    # web's address is free again: the next sandbox may take it.
    d.write_spec("api.yaml", spec("api"))
    assert_network_converged(d, ns, {"db": (False, 0), "api": (False, 0)})


@pytest.mark.parametrize("edit,point", EDIT_CASES)
def test_kill9_in_network_steps_during_an_edit_converges(net_daemon, netns, edit, point):
    ns = netns[0]
    d = net_daemon().start()
    d.write_spec("web.yaml", spec("web", image="alpha", nat=False))
    ip = assert_network_converged(d, ns, {"web": (False, 0)})["web"]["status"]["ip"]
    d.stop()
    d = net_daemon(faults=f"crash:{point}").start()
    d.write_spec("web.yaml", spec("web", image="beta" if edit == "image" else "alpha", nat=True) + FWD)
    assert d.wait_exit() == -9
    d = net_daemon().start()
    wait_for(lambda: (d.sandbox("web") or {}).get("spec", {}).get("nat") is True, what="new spec applied")
    sb = assert_network_converged(d, ns, {"web": (True, 1)})["web"]
    assert sb["status"]["ip"] == ip, "the sandbox keeps its address"
