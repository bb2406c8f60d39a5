"""SSH keys with the fake driver: bangerd makes its user key at start-up,
makes each sandbox's host key and pins it in banger's known_hosts before the
driver prepares the sandbox, and unpins it on delete and in GC."""
import os
import subprocess

from bangertest import Daemon, spec, wait_for

STRAY = "0123456789abcdef"


def ssh_dir(d):
    return d.root / "state" / "ssh"


def pinned(d, sid):
    kh = ssh_dir(d) / "known_hosts"
    text = kh.read_text() if kh.exists() else ""
    return [ln for ln in text.splitlines() if ln.endswith(f"banger:{sid}")]


def test_user_key_is_made_once_and_kept(tmp_path):
    d = Daemon(tmp_path / "root").start()
    try:
        key = ssh_dir(d) / "id_ed25519"
        assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
        assert (ssh_dir(d) / "id_ed25519.pub").read_text().startswith("ssh-ed25519 ")
        assert (ssh_dir(d).stat().st_mode & 0o777) == 0o700
        before = key.read_bytes()
    finally:
        d.stop()
        d.check_log()
    d.start()
    try:
        assert key.read_bytes() == before
    finally:
        d.stop()
        d.check_log()


def test_configured_user_key_is_only_read(tmp_path):
    root = tmp_path / "root"
    (root / "config").mkdir(parents=True)
    mine = tmp_path / "keys" / "work"
    (root / "config" / "config.yaml").write_text(f"ssh_key_path: {mine}\n")
    d = Daemon(root).start()
    try:
        assert not mine.exists() and not mine.parent.exists()
        assert not (ssh_dir(d) / "id_ed25519").exists()
    finally:
        d.stop()
        d.check_log()


def test_host_key_is_pinned_at_prepare_and_unpinned_on_delete(daemon):
    daemon.write_spec("web.yaml", spec("web"))
    sid = daemon.wait_converged("web")["metadata"]["id"]
    hk = daemon.root / "state" / "vms" / sid / "ssh_host_ed25519_key"
    assert (hk.stat().st_mode & 0o777) == 0o600
    lines = pinned(daemon, sid)
    # The fake driver has no network: the name is the only pattern.
    assert len(lines) == 1 and lines[0].startswith("web.vm ssh-ed25519 "), lines
    kh = ssh_dir(daemon) / "known_hosts"
    assert (kh.stat().st_mode & 0o777) == 0o600
    pub = subprocess.run(["ssh-keygen", "-y", "-f", str(hk)], capture_output=True, text=True, check=True)
    assert pub.stdout.split()[:2] == lines[0].split()[1:3]
    with open(kh, "a") as f:
        f.write("# mine\nmine.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmine\n")
    os.unlink(daemon.sandboxes / "web.yaml")
    daemon.wait_gone("web")
    assert pinned(daemon, sid) == []
    assert "mine.example" in kh.read_text() and "# mine" in kh.read_text()
    assert not hk.exists() and not hk.parent.exists()


def test_gc_drops_lines_no_record_claims(daemon):
    daemon.write_spec("web.yaml", spec("web"))
    sid = daemon.wait_converged("web")["metadata"]["id"]
    kh = ssh_dir(daemon) / "known_hosts"
    with open(kh, "a") as f:
        f.write(f"gone.vm ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOgone banger:{STRAY}\n"
                "mine.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmine\n")
    # The event is emitted just after the file is rewritten: wait for it too.
    wait_for(lambda: any(e["type"] == "GarbageCollected" and e.get("id") == STRAY for e in daemon.events()),
             timeout=15, what="the GarbageCollected event of the stray known_hosts line")
    assert pinned(daemon, STRAY) == []
    assert len(pinned(daemon, sid)) == 1 and "mine.example" in kh.read_text()


def test_a_public_key_alone_is_kept_and_only_warned_about(tmp_path):
    root = tmp_path / "root"
    sd = root / "state" / "ssh"
    sd.mkdir(parents=True, mode=0o700)
    (sd / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmine mine\n")
    d = Daemon(root).start()
    try:
        assert not (sd / "id_ed25519").exists()
        assert (sd / "id_ed25519.pub").read_text() == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmine mine\n"
        assert "user key" in d.log.read_text()
    finally:
        d.stop()
        d.check_log()
