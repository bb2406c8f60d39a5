"""Real guests on banger's bridge: addresses, SSH reachability, .vm DNS
names, port forwards, and nothing left behind on delete.

Every bangerd here runs under `unshare -n` (a namespace the test made), and
every packet the test sends to a guest is sent from inside that namespace
through `nsenter -t <bangerd pid> -n`: nothing touches this machine's own
network."""
import ipaddress
import json
import subprocess
import sys

from bangertest import Daemon, banger, spec, wait_for
from e2e_util import guest_pids

BOOT_TIMEOUT = 120
SUBNET = ipaddress.ip_network("172.16.0.0/24")
GATEWAY = "172.16.0.1"

# Run inside the daemon's namespace: one TCP banner read, or one DNS query.
PROBE = r'''
import json, socket, struct, sys
kind, host, port, arg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
out = {}
try:
    if kind == "banner":
        s = socket.create_connection((host, port), timeout=3)
        s.settimeout(3)
        out["banner"] = s.recv(64).decode(errors="replace")
        s.close()
    else:
        q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
        for label in arg.split("."):
            q += bytes([len(label)]) + label.encode()
        q += b"\0" + struct.pack(">HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(q, (host, port))
        r = s.recv(512)
        _, flags, _, an = struct.unpack(">HHHH", r[:8])
        out["rcode"] = flags & 0xF
        out["answers"] = an
        if an:
            out["a"] = socket.inet_ntoa(r[-4:])
except OSError as e:
    out["error"] = str(e)
print(json.dumps(out))
'''


def in_ns(d, *cmd):
    return subprocess.run(["nsenter", "-t", str(d.proc.pid), "-n", *cmd], capture_output=True, text=True,
                          timeout=30)


def lo_up(d):
    """`unshare -n` leaves lo down; a host always has it up, and traffic to
    the host's own addresses (the gateway) goes through it."""
    r = in_ns(d, "ip", "link", "set", "lo", "up")
    assert r.returncode == 0, r.stderr


def probe(d, kind, host, port, arg="-"):
    r = in_ns(d, sys.executable, "-c", PROBE, kind, host, str(port), arg)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def banner(d, host, port=22):
    return probe(d, "banner", host, port).get("banner", "")


def dns(d, name):
    return probe(d, "dns", GATEWAY, 53, name)


def links(d):
    return in_ns(d, "ip", "-o", "link").stdout


def ruleset(d):
    return in_ns(d, "nft", "list", "table", "inet", "banger").stdout


def tiny(name, **kw):
    return spec(name, image="tiny", vcpu=1, memory_mib=256, disk_size="1G", **kw)


def test_guests_get_addresses_ssh_dns_names_and_port_forwards(qemu_daemon):
    d = qemu_daemon
    lo_up(d)
    d.write_spec("web.yaml", tiny("web") + "  ports:\n    - host: 8022\n      guest: 22\n")
    d.write_spec("db.yaml", tiny("db", nat=True))
    web = d.wait_converged("web", timeout=BOOT_TIMEOUT)["status"]
    db = d.wait_converged("db", timeout=BOOT_TIMEOUT)["status"]
    assert web["ip"] != db["ip"]
    for st in (web, db):
        assert ipaddress.ip_address(st["ip"]) in SUBNET and st["ip"] != GATEWAY
        assert st["tap"] in links(d) and st["mac"].startswith("52:")
    # Both guests boot and answer SSH from the host side of the bridge.
    for st in (web, db):
        wait_for(lambda: banner(d, st["ip"]).startswith("SSH-2.0-dropbear"), timeout=BOOT_TIMEOUT, interval=1,
                 what=f"dropbear on {st['ip']}")
    # NAME.vm answers from the gateway.
    assert dns(d, "web.vm").get("a") == web["ip"]
    assert dns(d, "db.vm").get("a") == db["ip"]
    assert dns(d, "nope.vm").get("rcode") == 3
    # The forwarded host port reaches the guest's dropbear.
    assert banner(d, GATEWAY, 8022).startswith("SSH-2.0-dropbear")
    assert "8022" in ruleset(d)
    # Doctor sees the network.
    net = d.get("/v1/doctor")[1]["network"]
    assert net["bridge"] == "banger0" and net["subnet"] == "172.16.0.0/24"
    assert net["nft_table"] and net["dns_listening"] and net["addresses_in_use"] == 2


def test_delete_leaves_no_tap_rule_address_or_name(qemu_daemon):
    d = qemu_daemon
    lo_up(d)
    d.write_spec("web.yaml", tiny("web", nat=True) + "  ports:\n    - host: 8022\n      guest: 22\n")
    sb = d.wait_converged("web", timeout=BOOT_TIMEOUT)
    sid, st = sb["metadata"]["id"], sb["status"]
    assert st["tap"] in links(d) and f"banger:{sid}" in ruleset(d)
    assert dns(d, "web.vm").get("a") == st["ip"]
    r = banger(d.root, "delete", "web", "--timeout", "60")
    assert r.returncode == 0, r.stderr
    assert guest_pids(d.root) == []
    assert st["tap"] not in links(d)
    assert sid not in ruleset(d)
    assert dns(d, "web.vm").get("rcode") == 3
    assert d.get("/v1/doctor")[1]["network"]["addresses_in_use"] == 0
    # The address is free again: the next sandbox gets it.
    d.write_spec("api.yaml", tiny("api", state="stopped"))
    assert d.wait_converged("api", timeout=60)["status"]["ip"] == st["ip"]


def test_gc_removes_a_tap_and_rules_no_record_claims(qemu_daemon):
    d = qemu_daemon
    stray = "00000000deadbeef"
    tap = "bg00000000dead"
    r = in_ns(d, "sh", "-c", f"ip tuntap add {tap} mode tap && nft add element inet banger guests "
                             f"'{{ 172.16.0.200 comment \"banger:{stray}\" }}'")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: tap not in links(d) and stray not in ruleset(d), timeout=10, what="stray network removed")


def test_a_host_port_claimed_twice_fails_the_second_sandbox(qemu_daemon):
    d = qemu_daemon
    fwd = "  ports:\n    - host: 8022\n      guest: 22\n"
    d.write_spec("a.yaml", tiny("a", state="stopped") + fwd)
    d.wait_converged("a", timeout=60)
    d.write_spec("b.yaml", tiny("b", state="stopped") + fwd)
    sb = d.wait_phase("b", "Failed", timeout=60)
    assert "host port 8022 is already used by sandbox 'a'" in sb["status"]["message"]


def run_in_fresh_ns(root, config, setup=""):
    """bangerd --driver qemu in a namespace of our own, with `setup` run
    first; afterwards the namespace's links and ruleset are captured."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "config.yaml").write_text(config)
    after = root / "after.txt"
    wrapper = ["unshare", "-n", "sh", "-c",
               f'{setup} "$@"; rc=$?; {{ ip -o link; nft list ruleset; }} > {after} 2>&1; exit $rc', "sh"]
    d = Daemon(root, driver="qemu", prefix=wrapper)
    d.start(wait=False)
    rc = d.wait_exit()
    return rc, d.log.read_text(), after.read_text()


def test_bad_subnet_is_a_clear_error_and_creates_nothing(tmp_path):
    """Well-formed (the config reader takes it) but unusable: loopback."""
    from assets import imported_root
    root = imported_root(tmp_path / "root")
    rc, log, after = run_in_fresh_ns(root, "subnet: 127.0.0.0/24\n")
    assert rc == 1 and "subnet '127.0.0.0/24'" in log, log
    assert "banger0" not in after and "banger" not in after
    assert not (root / "run" / "bangerd.sock").exists()


def test_a_foreign_link_named_like_the_bridge_is_refused_untouched(tmp_path):
    from assets import imported_root
    root = imported_root(tmp_path / "root")
    rc, log, after = run_in_fresh_ns(root, "", setup="ip link add banger0 type bridge &&")
    assert rc == 1 and "banger0" in log, log
    assert "banger0" in after and "alias banger" not in after, after
    assert "table inet banger" not in after


def test_a_running_sandboxs_deleted_tap_is_made_again(qemu_daemon):
    d = qemu_daemon
    d.write_spec("web.yaml", tiny("web"))
    st = d.wait_converged("web", timeout=BOOT_TIMEOUT)["status"]
    r = in_ns(d, "ip", "link", "del", st["tap"])
    assert r.returncode == 0, r.stderr
    wait_for(lambda: st["tap"] in links(d), timeout=10, what="tap re-created by resync")
    assert "master banger0" in [ln for ln in links(d).splitlines() if st["tap"] in ln][0]
