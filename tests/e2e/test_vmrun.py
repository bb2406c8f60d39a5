"""`banger vm run` against real QEMU guests (the tiny image: busybox and
dropbear, under TCG).

bangerd runs under `unshare -n`; the CLI joins that namespace with
`nsenter -t <bangerd> -n`, so SSH to the guest never leaves it.  The guest's
host key is the one banger generated and pinned before first boot: every
connection here is checked against that pin, with no trust on first use."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

from bangertest import BANGER, wait_for
from e2e_util import guest_pids

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def cli(d, *args, input=None, timeout=300, env=None):
    """banger inside the daemon's network namespace."""
    e = dict(os.environ)
    e.pop("BANGER_ROOT", None)
    e.update(env or {})
    return subprocess.run(["nsenter", "-t", str(d.proc.pid), "-n", str(BANGER), "--root", str(d.root), *args],
                          input=input, capture_output=True, text=True, timeout=timeout, env=e)


@pytest.fixture
def d(qemu_daemon):
    r = subprocess.run(["nsenter", "-t", str(qemu_daemon.proc.pid), "-n", "ip", "link", "set", "lo", "up"])
    assert r.returncode == 0
    return qemu_daemon


def git(repo, *args):
    e = dict(os.environ, HOME=str(repo.parent), **GIT_ENV)
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=e)


@pytest.fixture
def repo(tmp_path):
    """A repository with tracked, untracked, ignored and executable files."""
    r = tmp_path / "proj"
    (r / "src").mkdir(parents=True)
    (r / "README").write_text("hello\n")
    (r / "src" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (r / "src" / "run.sh").chmod(0o755)
    (r / ".gitignore").write_text("*.log\nbuild/\n")
    (r / ".tool-versions").write_text("nodejs 20.0.0\n")   # asks for the best-effort mise install
    git(r, "init", "-q", "-b", "main")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "one")
    (r / "README").write_text("hello, edited on disk\n")   # tracked, modified: goes as it is on disk
    (r / "notes.txt").write_text("untracked\n")
    (r / "debug.log").write_text("ignored\n")
    (r / "build").mkdir()
    (r / "build" / "out.o").write_text("ignored\n")
    return r


def assert_nothing_left(d, name):
    assert d.get(f"/v1/sandboxes/{name}")[0] == 404
    assert not any(d.sandboxes.iterdir()), list(d.sandboxes.iterdir())
    assert guest_pids(d.root) == []
    kh = d.root / "state" / "ssh" / "known_hosts"
    assert "banger:" not in (kh.read_text() if kh.exists() else "")
    vms = d.root / "state" / "vms"
    assert not vms.exists() or not any(vms.iterdir())


def restart_in_same_netns(d):
    """bangerd reads config.yaml at start; restart it inside the same
    namespace (the first one holds it open through a sleeper)."""
    holder = subprocess.Popen(["nsenter", "-t", str(d.proc.pid), "-n", "sleep", "600"])
    d.stop()
    d.prefix = ["nsenter", "-t", str(holder.pid), "-n"]
    d.start()
    d.holder = holder


LIST = "find . -path ./.git -prune -o -type f -print | sort"


def test_command_mode_carries_exit_status_streams_and_stdin_and_rm_leaves_nothing(d):
    r = cli(d, "vm", "run", "--rm", "--name", "cmd", "--image", "tiny", "--",
            "sh", "-c", "echo out; echo err >&2; cat; exit 7", input="from stdin\n")
    assert r.returncode == 7, r.stderr
    assert r.stdout == "out\nfrom stdin\n"
    assert "err\n" in r.stderr
    assert r.stderr.startswith("spec: ")
    assert "vCPU (" in r.stderr and "image tiny (flag)" in r.stderr
    assert "sandbox/cmd deleted" in r.stderr
    assert_nothing_left(d, "cmd")


def test_workspace_holds_exactly_the_tracked_files_as_on_disk_and_a_real_repo(d, repo):
    r = cli(d, "vm", "run", "--rm", "--name", "ws", "--image", "tiny", str(repo), "--",
            "sh", "-c", f"pwd; {LIST}; cat README; ./src/run.sh; test -f .git/HEAD && cat .git/HEAD; "
                        "cat /root/.cache/banger/vm-run-tooling-proj.log")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "/root/proj"
    assert lines[1:5] == ["./.gitignore", "./.tool-versions", "./README", "./src/run.sh"]
    assert lines[5:8] == ["hello, edited on disk", "ran", "ref: refs/heads/main"]
    # tiny has no mise: the bootstrap is best effort, says so in its log and never fails the run.
    assert lines[8:] == ["mise is not installed in this image; skipped"]
    assert "tooling: mise install (log: /root/.cache/banger/vm-run-tooling-proj.log)" in r.stderr
    assert_nothing_left(d, "ws")


def test_include_untracked_adds_untracked_never_ignored_and_branch_is_checked_out(d, repo):
    r = cli(d, "vm", "run", "--rm", "--name", "wsu", "--image", "tiny", "--include-untracked",
            "--branch", "feature-x", str(repo), "--", "sh", "-c", f"{LIST}; cat .git/HEAD")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["./.gitignore", "./.tool-versions", "./README", "./notes.txt",
                                     "./src/run.sh", "ref: refs/heads/feature-x"]
    assert_nothing_left(d, "wsu")


def test_bare_interactive_shape_reads_the_session_from_stdin_and_keeps_the_sandbox(d):
    r = cli(d, "vm", "run", "--name", "bare", "--image", "tiny", input="echo in-guest $(hostname)\nexit 3\n")
    assert r.returncode == 3, r.stderr
    assert "in-guest bare" in r.stdout
    assert d.phase("bare") == "Running"   # no --rm: the sandbox stays
    # It is an ordinary spec file, as `apply` would have written it.
    text = (d.sandboxes / "bare.yaml").read_text()
    assert text.startswith("# written by `banger vm run` at ")
    assert "name: bare" in text and "image: tiny" in text
    # vm ssh reaches it with OpenSSH, banger's key and the pinned host key.
    r = cli(d, "vm", "ssh", "bare", "--", "echo", "via-openssh")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "via-openssh"
    r = cli(d, "vm", "delete", "bare")
    assert r.returncode == 0, r.stderr
    assert_nothing_left(d, "bare")


def test_a_replaced_guest_host_key_is_refused_as_possible_mitm(d):
    r = cli(d, "vm", "create", "--name", "mitm", "--image", "tiny")
    assert r.returncode == 0, r.stderr
    name, ip = r.stdout.split()
    kh = d.root / "state" / "ssh" / "known_hosts"
    # Pin a key the guest does not have: to banger, the guest now looks
    # like someone else answering at its address.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d.root / "other"], check=True)
    other = (d.root / "other.pub").read_text().split()[1]
    text = kh.read_text()
    pinned = next(ln for ln in text.splitlines() if ln.startswith("mitm.vm,"))
    kh.write_text(text.replace(pinned.split()[2], other))
    # Wait for sshd so the refusal is about the key, not a guest still booting.
    r = cli(d, "vm", "ssh", "mitm", "--", "true")
    for _ in range(60):
        if "Connection refused" not in r.stderr:
            break
        r = cli(d, "vm", "ssh", "mitm", "--", "true")
    assert r.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr or "Host key verification failed" in r.stderr
    assert kh.read_text().count(other) == 1   # OpenSSH did not re-pin
    cli(d, "vm", "delete", "mitm")


def test_ssh_wait_timeout_with_rm_keeps_the_sandbox_for_vm_logs(d):
    # An sshd that never answers: the test's own nftables table, in the
    # daemon's namespace, drops every packet to port 22.
    block = "table inet testblock {\n chain out {\n  type filter hook output priority 0;\n  tcp dport 22 drop\n }\n}\n"
    r = subprocess.run(["nsenter", "-t", str(d.proc.pid), "-n", "nft", "-f", "-"], input=block, text=True,
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    r = cli(d, "vm", "run", "--rm", "--name", "slow", "--image", "tiny", "--ssh-timeout", "3", "--", "true")
    assert r.returncode == 1
    assert "not ready after 3 s" in r.stderr
    assert "kept for inspection: banger vm logs slow" in r.stderr
    assert d.phase("slow") == "Running"
    logs = cli(d, "vm", "logs", "slow")
    assert logs.returncode == 0 and "Linux version" in logs.stdout
    assert cli(d, "vm", "delete", "slow").returncode == 0


def test_file_sync_from_config_lands_with_its_mode_and_an_escape_fails_cleanly(d, tmp_path):
    home = d.root / "home"
    (home / "dots").mkdir(parents=True)
    (home / ".gitconfig").write_text("[user]\n\tname = t\n")
    (home / "dots" / "a").write_text("A\n")
    (home / "dots" / "link").symlink_to("/etc/passwd")   # inside a synced folder: skipped
    (tmp_path / "secret").write_text("s\n")
    (home / "escape").symlink_to(tmp_path / "secret")    # top level, target outside home: refused
    cfg = d.root / "config" / "config.yaml"
    cfg.write_text("file_sync:\n"
                   "  - {host: ~/.gitconfig, guest: ~/.gitconfig, mode: \"0644\"}\n"
                   "  - {host: ~/dots, guest: ~/dots}\n")
    restart_in_same_netns(d)
    r = cli(d, "vm", "run", "--rm", "--name", "fs", "--image", "tiny", "--",
            "sh", "-c", "cat .gitconfig; stat -c '%a %U' .gitconfig dots/a; ls dots")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[user]", "\tname = t", "644 root", "600 root", "a"]
    assert_nothing_left(d, "fs")

    cfg.write_text("file_sync:\n  - {host: ~/escape, guest: ~/secret}\n")
    restart_in_same_netns(d)
    try:
        r = cli(d, "vm", "run", "--rm", "--name", "fs2", "--image", "tiny", "--", "true")
        assert r.returncode == 1
        assert "outside the home folder" in r.stderr
        assert "removing sandbox/fs2" in r.stderr
        assert_nothing_left(d, "fs2")
    finally:
        d.holder.kill()


def test_a_configured_ssh_key_path_is_the_key_guests_authorize(d):
    """config ssh_key_path (here "~/" in the --root's home): bangerd puts
    its public half in the guest and vm run logs in with it; banger makes
    no key of its own then."""
    keys = d.root / "home" / "keys"
    keys.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mine", "-f", str(keys / "id")], check=True)
    (d.root / "config" / "config.yaml").write_text("ssh_key_path: ~/keys/id\n")
    restart_in_same_netns(d)
    try:
        r = cli(d, "vm", "run", "--rm", "--name", "mykey", "--image", "tiny", "--",
                "cat", "/root/.ssh/authorized_keys")
        assert r.returncode == 0, r.stderr
        assert r.stdout == (keys / "id.pub").read_text()
        assert not (d.root / "state" / "ssh" / "id_ed25519").exists() or \
            "mine" not in (d.root / "state" / "ssh" / "id_ed25519.pub").read_text()
        assert_nothing_left(d, "mykey")
    finally:
        d.holder.kill()


def test_interrupting_a_command_with_rm_still_deletes_the_sandbox(d):
    e = dict(os.environ)
    e.pop("BANGER_ROOT", None)
    p = subprocess.Popen(["nsenter", "-t", str(d.proc.pid), "-n", str(BANGER), "--root", str(d.root), "vm", "run",
                          "--rm", "--name", "intr", "--image", "tiny", "--", "sh", "-c", "echo started; sleep 600"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    try:
        assert p.stdout.readline() == "started\n"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "interrupted" in err and "sandbox/intr deleted" in err
    assert_nothing_left(d, "intr")
