"""Real guests on banger's bridge: addresses, SSH reachability, .vm DNS
names, port forwards, and nothing left behind on delete.

Every bangerd here runs under `unshare -n` (a namespace the test made), and
every packet the test sends to a guest is sent from inside that namespace
through `nsenter -t <bangerd pid> -n`: nothing touches this machine's own
network."""
import ipaddress
import json
import os
import subprocess
import sys
import uuid

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


# ---- guests' view: NAT to a fake internet, closed host ports, DNS ----

UPLINK_HOST, UPLINK_FAR = "198.51.100.1", "198.51.100.2"   # TEST-NET-2, only inside private namespaces


def ssh_daemon(tmp_path):
    """A QEMU bangerd (own namespace).  bangerd makes its user key,
    ROOT/state/ssh/id_ed25519, at start-up; each guest's work disk carries
    its public half as /root/.ssh/authorized_keys and the guest's own host
    key, pinned in ROOT/state/ssh/known_hosts before the guest boots."""
    from assets import imported_root
    root = imported_root(tmp_path / "root")
    d = Daemon(root, driver="qemu", netns=True, resync=0.5)
    d.key = root / "state" / "ssh" / "id_ed25519"
    d.known_hosts = root / "state" / "ssh" / "known_hosts"
    d.start()
    assert d.key.is_file() and (d.key.stat().st_mode & 0o777) == 0o600
    assert (root / "state" / "ssh" / "id_ed25519.pub").is_file()
    return d


def guest_ssh(d, ip, command, timeout=30, known_hosts=None):
    """ssh root@ip command from bangerd's namespace with banger's user key and
    strict host key checking against banger's known_hosts (no trust on first
    use: the guest's key was pinned before it booted)."""
    return subprocess.run(
        ["nsenter", "-t", str(d.proc.pid), "-n", "ssh", "-F", "/dev/null", "-i", str(d.key),
         "-o", f"UserKnownHostsFile={known_hosts or d.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"root@{ip}", command],
        capture_output=True, text=True, timeout=timeout)


def guest_sh(d, ip, command, timeout=30):
    """Run command in the guest over SSH from bangerd's namespace."""
    return guest_ssh(d, ip, command, timeout)


def wait_ssh(d, ip):
    wait_for(lambda: guest_sh(d, ip, "echo ok").stdout.strip() == "ok", timeout=BOOT_TIMEOUT, interval=2,
             what=f"ssh root@{ip}")


def http_get(d, url):
    """GET url from bangerd's namespace; the body, or "" on failure."""
    return in_ns(d, sys.executable, "-c",
                 f"import urllib.request as u\ntry: print(u.urlopen({url!r}, timeout=2).read().decode())\n"
                 f"except OSError: pass").stdout


def http_in_guest(host, port):
    """A shell command for the guest: GET / from host:port, body on stdout.
    busybox nc, not wget: the host's static busybox (which the tiny image
    carries) segfaults in wget (glibc's resolver in a static binary)."""
    return f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 8 nc -w 5 {host} {port}"


def stop_quietly(p):
    if p and p.poll() is None:
        p.kill()
        p.wait()


def test_nat_guest_reaches_a_fake_internet_and_a_non_nat_guest_does_not(tmp_path):
    d = ssh_daemon(tmp_path)
    far = f"bgtest-far-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    veth_host, veth_far = f"vh{uuid.uuid4().hex[:8]}", f"vf{uuid.uuid4().hex[:8]}"
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from the fake internet\n")
    server = None
    subprocess.run(["ip", "netns", "add", far], check=True)
    try:
        lo_up(d)
        # The uplink: a veth pair from bangerd's namespace to `far`, and a
        # default route through it so the masquerade has somewhere to go.
        for cmd in (["ip", "link", "add", veth_host, "type", "veth", "peer", "name", veth_far],
                    ["ip", "link", "set", veth_far, "netns", far],
                    ["ip", "addr", "add", f"{UPLINK_HOST}/24", "dev", veth_host],
                    ["ip", "link", "set", veth_host, "up"]):
            r = in_ns(d, *cmd)
            assert r.returncode == 0, (cmd, r.stderr)
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{UPLINK_FAR}/24", "dev", veth_far],
                    ["ip", "link", "set", veth_far, "up"]):
            r = subprocess.run(["ip", "netns", "exec", far, *cmd], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, (cmd, r.stderr)
        r = in_ns(d, "ip", "route", "add", "default", "via", UPLINK_FAR)
        assert r.returncode == 0, r.stderr
        # banger does not switch IPv4 forwarding on by itself (doctor reports
        # it); turn it on in bangerd's namespace only (per-namespace sysctl).
        if in_ns(d, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() != "1":
            r = in_ns(d, "sysctl", "-w", "net.ipv4.ip_forward=1")
            assert r.returncode == 0, r.stderr
        assert in_ns(d, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
        server = subprocess.Popen(["ip", "netns", "exec", far, sys.executable, "-m", "http.server", "8080",
                                   "--bind", UPLINK_FAR, "--directory", str(www)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: "hello" in http_get(d, f"http://{UPLINK_FAR}:8080/"), timeout=15, interval=0.5,
                 what="the fake internet's web server")

        d.write_spec("out.yaml", tiny("out", nat=True))
        d.write_spec("in.yaml", tiny("in", nat=False))
        out_ip = d.wait_converged("out", timeout=BOOT_TIMEOUT)["status"]["ip"]
        in_ip = d.wait_converged("in", timeout=BOOT_TIMEOUT)["status"]["ip"]
        wait_ssh(d, out_ip)
        wait_ssh(d, in_ip)
        fetch = http_in_guest(UPLINK_FAR, 8080)
        r = guest_sh(d, out_ip, fetch)
        assert r.returncode == 0 and "hello from the fake internet" in r.stdout, (r.stdout, r.stderr)
        r = guest_sh(d, in_ip, fetch)
        assert r.returncode != 0 and "hello" not in r.stdout, (r.stdout, r.stderr)
    finally:
        stop_quietly(server)
        d.stop()
        d.check_log()
        from e2e_util import kill_guests
        kill_guests(d.root)
        subprocess.run(["ip", "netns", "del", far], check=False)


def test_a_guest_reaches_dns_on_the_gateway_but_no_other_host_port(tmp_path):
    d = ssh_daemon(tmp_path)
    listener = None
    try:
        lo_up(d)
        d.write_spec("web.yaml", tiny("web", nat=True))
        ip = d.wait_converged("web", timeout=BOOT_TIMEOUT)["status"]["ip"]
        # A host service on the gateway address that banger does not serve.
        listener = subprocess.Popen(["nsenter", "-t", str(d.proc.pid), "-n", sys.executable, "-m", "http.server",
                                     "9999", "--bind", GATEWAY, "--directory", str(tmp_path)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # It is up: the host itself reaches it.
        wait_for(lambda: "Directory listing" in http_get(d, f"http://{GATEWAY}:9999/"), timeout=15, interval=0.5,
                 what="the host's listener on the gateway")
        wait_ssh(d, ip)
        r = guest_sh(d, ip, http_in_guest(GATEWAY, 9999))
        assert r.returncode != 0 and "Directory listing" not in r.stdout, (r.stdout, r.stderr)
        # DNS on the gateway is allowed, and the guest's resolv.conf names it.
        r = guest_sh(d, ip, f"nslookup web.vm {GATEWAY}")
        assert r.returncode == 0 and ip in r.stdout, (r.stdout, r.stderr)
        r = guest_sh(d, ip, "cat /etc/resolv.conf")
        assert f"nameserver {GATEWAY}" in r.stdout, r.stdout
    finally:
        stop_quietly(listener)
        d.stop()
        d.check_log()
        from e2e_util import kill_guests
        kill_guests(d.root)


# ---- host keys: pinned before first boot ----

def test_host_key_is_pinned_before_boot_and_unpinned_on_delete(tmp_path):
    d = ssh_daemon(tmp_path)
    try:
        lo_up(d)
        d.write_spec("web.yaml", tiny("web"))
        sb = d.wait_converged("web", timeout=BOOT_TIMEOUT)
        sid, ip = sb["metadata"]["id"], sb["status"]["ip"]
        lines = [ln for ln in d.known_hosts.read_text().splitlines() if ln.endswith(f"banger:{sid}")]
        assert len(lines) == 1 and lines[0].startswith(f"web.vm,{ip} ssh-ed25519 "), lines
        assert (d.known_hosts.stat().st_mode & 0o777) == 0o600
        wait_for(lambda: banner(d, ip).startswith("SSH-2.0-dropbear"), timeout=BOOT_TIMEOUT, interval=1,
                 what=f"dropbear on {ip}")
        # Strict checking from the very first connection: the key the guest
        # presents is the one pinned before it booted.
        r = guest_ssh(d, ip, "true")
        assert r.returncode == 0, r.stderr
        # Another key under the guest's names: ssh refuses the guest.
        other = tmp_path / "other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        kt, kb = (tmp_path / "other.pub").read_text().split()[:2]
        forged = tmp_path / "forged_known_hosts"
        forged.write_text(f"web.vm,{ip} {kt} {kb} banger:{sid}\n")
        r = guest_ssh(d, ip, "true", known_hosts=forged)
        assert r.returncode == 255 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr, r.stderr
        # The same in banger's own file, rewritten in place.
        text = d.known_hosts.read_text()
        d.known_hosts.write_text(text.replace(lines[0], f"web.vm,{ip} {kt} {kb} banger:{sid}"))
        r = guest_ssh(d, ip, "true")
        assert r.returncode == 255 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr, r.stderr
        # Deleting the sandbox removes its line (and only its line).
        with open(d.known_hosts, "a") as f:
            f.write("mine.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmine\n")
        r = banger(d.root, "delete", "web", "--timeout", "60")
        assert r.returncode == 0, r.stderr
        text = d.known_hosts.read_text()
        assert f"banger:{sid}" not in text and "mine.example" in text, text
    finally:
        d.stop()
        d.check_log()
        from e2e_util import kill_guests
        kill_guests(d.root)
