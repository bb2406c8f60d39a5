"""banger's libssh2 client (common/sshexec.c, driven by tests/tools/sshprobe)
against a real SSH server: dropbear on loopback, inside a network and mount
namespace the test makes (`unshare -mn`).  The mount namespace puts a
temporary folder over /root, so dropbear reads the test's authorized_keys
and nothing of this machine's /root is read or written.

It shows what `banger vm run -- CMD` relies on, quickly and without a guest:
exit status, stdin, stdout and stderr carried, 2 MB of binary output
intact, a signal reported as 128+N, and the host key pinned: a key that is
not the pinned one, or a guest with no pin, is refused before any login."""
import os
import shutil
import subprocess
import textwrap

import pytest

from bangertest import BUILD

SSHPROBE = BUILD / "tests" / "tools" / "sshprobe"
ID = "0123456789abcdef"
OTHER_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

pytestmark = pytest.mark.skipif(not shutil.which("dropbear"), reason="dropbear-bin not installed")


@pytest.fixture
def server(tmp_path):
    """Keys and files for one dropbear; `run(script)` runs a bash script in a
    fresh namespace where dropbear listens on 127.0.0.1:2222."""
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", tmp_path / "hk.db"], check=True, capture_output=True)
    pub = subprocess.run(["dropbearkey", "-y", "-f", tmp_path / "hk.db"], check=True, capture_output=True,
                         text=True).stdout
    host_key = next(ln for ln in pub.splitlines() if ln.startswith("ssh-ed25519")).split()[1]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "user"], check=True)
    fake_root = tmp_path / "fakeroot"
    (fake_root / ".ssh").mkdir(parents=True, mode=0o700)
    fake_root.chmod(0o700)
    shutil.copy(tmp_path / "user.pub", fake_root / ".ssh" / "authorized_keys")
    (fake_root / ".ssh" / "authorized_keys").chmod(0o600)
    (tmp_path / "kh").write_text(f"# mine\nweb.vm,127.0.0.1 ssh-ed25519 {host_key} banger:{ID}\n")

    def run(script, stdin=None):
        wrapped = textwrap.dedent(f"""\
            set -u
            ip link set lo up
            mount --bind {fake_root} /root
            dropbear -r {tmp_path}/hk.db -p 127.0.0.1:2222 -P {tmp_path}/db.pid -E </dev/null >/dev/null 2>>{tmp_path}/db.log
            trap 'kill $(cat {tmp_path}/db.pid)' EXIT
            for i in $(seq 50); do [ -s {tmp_path}/db.pid ] && break; sleep 0.05; done
            probe() {{ {SSHPROBE} "$1" 127.0.0.1 2222 "$2" {tmp_path}/user "${{@:3}}"; }}
            {textwrap.dedent(script)}
            """)
        return subprocess.run(["unshare", "-mn", "bash", "-c", wrapped], input=stdin, capture_output=True,
                              timeout=60)
    run.dir = tmp_path
    run.host_key = host_key
    return run


def test_exit_status_stdin_stdout_stderr_are_carried(server):
    r = server(f'probe web {server.dir}/kh "echo out; echo err >&2; cat; exit 7"', stdin=b"from-stdin\n")
    assert r.returncode == 7, r.stderr
    assert r.stdout == b"out\nfrom-stdin\n"
    assert r.stderr == b"err\n"


def test_two_megabytes_of_binary_output_are_intact(server):
    data = os.urandom(2 * 1024 * 1024)
    (server.dir / "big").write_bytes(data)
    r = server(f"probe web {server.dir}/kh cat < {server.dir}/big")
    assert r.returncode == 0, r.stderr
    assert r.stdout == data


def test_a_signal_is_reported_as_128_plus_n(server):
    r = server(f"probe web {server.dir}/kh 'kill -TERM $$'")
    assert r.returncode == 128 + 15, r.stderr


def test_a_host_key_other_than_the_pin_is_refused_as_possible_mitm(server):
    kh = server.dir / "kh"
    kh.write_text(kh.read_text().replace(server.host_key, OTHER_KEY))
    before = kh.read_bytes()
    r = server(f"probe web {kh} 'echo should-not-run'")
    assert r.returncode == 90
    assert b"possible MITM" in r.stderr
    assert b"should-not-run" not in r.stdout
    assert kh.read_bytes() == before   # nothing re-pinned: no trust on first use


def test_a_guest_without_a_pin_is_refused(server):
    r = server(f"probe other {server.dir}/kh true")
    assert r.returncode == 90
    assert b"no pinned host key for other.vm" in r.stderr


def test_a_hand_added_line_without_banger_mark_vouches_for_nothing(server):
    kh = server.dir / "kh"
    kh.write_text(f"web.vm,127.0.0.1 ssh-ed25519 {server.host_key}\n")
    r = server(f"probe web {kh} true")
    assert r.returncode == 90, r.stderr


def test_a_wrong_user_key_is_a_clear_login_error(server):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", server.dir / "stranger"], check=True)
    r = server(f"{SSHPROBE} web 127.0.0.1 2222 {server.dir}/kh {server.dir}/stranger true")
    assert r.returncode == 91
    assert b"login as root" in r.stderr
