"""`banger vm run` / `vm create` / `vm ssh` without guests: the workspace
list (--dry-run), flag checks, and every bad input refused with a clear
message before anything is written.  Real guests: tests/e2e/test_vmrun.py."""
import os
import subprocess

import pytest

from bangertest import Daemon, banger, spec

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env=dict(os.environ, HOME=str(repo.parent), **GIT_ENV))


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "My Project"
    (r / "src").mkdir(parents=True)
    (r / "README").write_text("hello\n")
    (r / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (r / ".gitignore").write_text("*.log\nbuild/\n")
    git(r, "init", "-q", "-b", "main")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "one")
    (r / "notes.txt").write_text("untracked\n")
    (r / "debug.log").write_text("ignored\n")
    (r / "build").mkdir()
    (r / "build" / "out.o").write_text("ignored\n")
    (r / "src" / "main.c").unlink()            # tracked, deleted on disk: not copied
    return r


def nothing_written(root):
    d = root / "config" / "sandboxes"
    return not d.exists() or not any(d.iterdir())


def test_dry_run_lists_exactly_the_tracked_files_and_creates_nothing(tmp_path, repo):
    root = tmp_path / "root"   # no daemon at all: a dry run never needs one
    r = banger(root, "vm", "run", "--dry-run", str(repo / "src"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [".gitignore", "README"]
    assert r.stderr.startswith("spec: ")
    assert "-> /root/My Project: 2 files" in r.stderr and "nothing created" in r.stderr
    assert nothing_written(root)


def test_dry_run_with_include_untracked_adds_untracked_never_ignored(tmp_path, repo):
    root = tmp_path / "root"
    r = banger(root, "vm", "run", "--dry-run", "--include-untracked", str(repo))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [".gitignore", "README", "notes.txt\t(untracked)"]
    assert nothing_written(root)


def test_spec_line_names_where_each_value_came_from(tmp_path):
    root = tmp_path / "root"
    (root / "config").mkdir(parents=True)
    (root / "config" / "config.yaml").write_text("default_image: tiny\nvm_defaults:\n  memory_mib: 768\n")
    r = banger(root, "vm", "run", "--dry-run", "--vcpu", "3", "--disk-size", "4G")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == \
        "spec: 3 vCPU (flag), 768 MiB RAM (config), 4G disk (flag), image tiny (config), kernel default"


@pytest.mark.parametrize("args, message", [
    (["--branch", "x"], "--branch and --from apply only to workspace mode"),
    (["--from", "HEAD"], "--branch and --from apply only to workspace mode"),
    (["--include-untracked"], "--include-untracked applies only to workspace mode"),
    (["--name", "Bad_Name"], "invalid sandbox name 'Bad_Name'"),
    (["--vcpu", "0"], "--vcpu wants 1..32"),
    (["--memory", "12"], "--memory wants MiB"),
    (["--disk-size", "lots"], "--disk-size wants a size"),
    (["a", "b"], "one PATH at most"),
    (["--"], "nothing after --"),
])
def test_bad_flags_are_usage_errors_and_write_nothing(tmp_path, args, message):
    root = tmp_path / "root"
    r = banger(root, "vm", "run", *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert nothing_written(root)


def test_vm_create_takes_no_command_or_rm(tmp_path):
    r = banger(tmp_path / "root", "vm", "create", "--rm")
    assert r.returncode == 2 and "vm create does not connect" in r.stderr


@pytest.mark.parametrize("make, message", [
    (lambda t: t / "missing", "no such file or directory"),
    (lambda t: (t / "plain").mkdir() or t / "plain", "not a git repository"),
])
def test_a_workspace_that_is_not_a_repository_is_refused_before_anything(tmp_path, make, message):
    root = tmp_path / "root"
    r = banger(root, "vm", "run", str(make(tmp_path)))
    assert r.returncode == 1
    assert message in r.stderr
    assert nothing_written(root)


def test_a_workspace_larger_than_the_disk_is_refused(tmp_path, repo):
    (repo / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    git(repo, "add", "big.bin")
    root = tmp_path / "root"
    r = banger(root, "vm", "run", "--disk-size", "2M", str(repo))
    assert r.returncode == 1
    assert "more than the 2M disk; use --disk-size" in r.stderr
    assert nothing_written(root)


def test_dead_daemon_is_a_clear_error_and_writes_nothing(tmp_path):
    root = tmp_path / "root"
    r = banger(root, "vm", "run", "--name", "x")
    assert r.returncode == 1
    assert "bangerd" in r.stderr and "bangerd.sock" in r.stderr
    assert nothing_written(root)


def test_an_existing_name_is_never_taken_over(daemon):
    text = spec("taken")
    daemon.write_spec("taken.yaml", text)
    daemon.wait_converged("taken")
    r = banger(daemon.root, "vm", "run", "--name", "taken", "--", "true")
    assert r.returncode == 1
    assert "sandbox/taken already exists" in r.stderr
    assert (daemon.sandboxes / "taken.yaml").read_text() == text


def test_a_sandbox_without_an_address_is_removed_again(daemon):
    # The fake driver gives no address: vm run cannot connect, says so and
    # removes what it created.
    r = banger(daemon.root, "vm", "run", "--name", "noaddr", "--", "true")
    assert r.returncode == 1
    assert "has no address" in r.stderr
    assert "removing sandbox/noaddr" in r.stderr
    assert daemon.get("/v1/sandboxes/noaddr")[0] == 404
    assert not any(daemon.sandboxes.iterdir())


def test_vm_ssh_refuses_missing_and_stopped_sandboxes(daemon):
    r = banger(daemon.root, "vm", "ssh", "ghost")
    assert r.returncode == 1 and 'sandbox "ghost" not found' in r.stderr
    daemon.write_spec("off.yaml", spec("off", state="stopped"))
    daemon.wait_converged("off")
    r = banger(daemon.root, "vm", "ssh", "off", "--", "true")
    assert r.returncode == 1
    assert "sandbox/off is Stopped, not Running: banger vm start first" in r.stderr


def test_interrupting_the_wait_for_running_removes_what_vm_run_created(make_daemon):
    """^C while bangerd is still creating (a start stalled 3 s): vm run
    stops waiting, removes its spec file and waits until the sandbox is
    gone, and exits 130, with or without --rm."""
    import signal
    from bangertest import BANGER, wait_for
    d = make_daemon(faults="stall:start.before").start()
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    p = subprocess.Popen([str(BANGER), "--root", str(d.root), "vm", "run", "--name", "intr", "--", "true"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: (d.sandboxes / "intr.yaml").exists(), what="the spec file")
        wait_for(lambda: d.phase("intr") == "Starting", what="the stalled start")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "interrupted" in err and "removing sandbox/intr" in err
    assert not (d.sandboxes / "intr.yaml").exists()
    assert d.get("/v1/sandboxes/intr")[0] == 404
