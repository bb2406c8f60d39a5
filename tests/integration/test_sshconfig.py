"""banger ssh-config: print mode, --install and --uninstall as exact
inverses on ~/.ssh/config (byte for byte, over several starting files),
and what ssh itself makes of the result (ssh -G, no connection).

Every test runs with --root under tmp_path, where the "home" is ROOT/home,
and with HOME pointing at a decoy folder that must stay untouched: the
machine's own ~/.ssh is never seen.  Binaries come from $BANGER_BUILD.
"""
import os
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BANGER_BUILD", REPO / "build"))
BANGER = BUILD / "bin" / "banger"

BEGIN = "# >>> banger >>>"
END = "# <<< banger <<<"


@pytest.fixture(scope="session", autouse=True)
def built():
    if not BANGER.exists():
        pytest.fail(f"{BANGER} not built (run make, or set BANGER_BUILD)")


@pytest.fixture
def env(tmp_path):
    decoy = tmp_path / "decoy-home"
    (decoy / ".ssh").mkdir(parents=True)
    (decoy / ".ssh" / "config").write_bytes(b"Host decoy\n")
    root = tmp_path / "root"
    e = dict(os.environ, HOME=str(decoy))
    e.pop("BANGER_ROOT", None)
    e.pop("XDG_CONFIG_HOME", None)
    e.pop("XDG_STATE_HOME", None)
    yield root, e
    assert (decoy / ".ssh" / "config").read_bytes() == b"Host decoy\n"
    assert sorted(p.name for p in decoy.rglob("*")) == [".ssh", "config"]


def run(root, env, *args, rc=0):
    p = subprocess.run([str(BANGER), "--root", str(root), "ssh-config", *args], env=env,
                       capture_output=True, timeout=30)
    assert p.returncode == rc, p.stderr.decode()
    return p


def user_config(root):
    return root / "home" / ".ssh" / "config"


def include_line(root):
    return f"Include {root}/config/ssh_config"


def test_print_mode_prints_the_include_line_and_leaves_ssh_config_alone(env):
    root, e = env
    p = run(root, e)
    assert p.stdout.decode() == include_line(root) + "\n"
    assert "--install" in p.stderr.decode()
    assert not (root / "home" / ".ssh").exists()
    text = (root / "config" / "ssh_config").read_text()
    assert "Host *.vm\n" in text
    assert f"    IdentityFile {root}/state/ssh/id_ed25519\n" in text
    assert f"    UserKnownHostsFile {root}/state/ssh/known_hosts\n" in text
    assert "    StrictHostKeyChecking yes\n" in text
    assert "    IdentitiesOnly yes\n" in text
    assert "    User root\n" in text


STARTS = {
    "empty": b"",
    "host-blocks": b"Host *\n    User someone\n    ServerAliveInterval 30\n\nHost gh\n    HostName github.com\n",
    "no-trailing-newline": b"Host a\n    User x",
    "crlf": b"Host a\r\n    User x\r\n",
    "comments-only": b"# nothing here\n\n",
}


@pytest.mark.parametrize("name", sorted(STARTS))
def test_install_then_uninstall_restores_the_file_byte_for_byte(env, name):
    root, e = env
    cfg = user_config(root)
    cfg.parent.mkdir(parents=True, mode=0o700)
    cfg.write_bytes(STARTS[name])
    os.chmod(cfg, 0o640)
    run(root, e, "--install")
    installed = cfg.read_bytes()
    assert installed.startswith(f"{BEGIN}\n{include_line(root)}\n{END}\n".encode())
    assert installed.endswith(STARTS[name])
    run(root, e, "--install")
    assert cfg.read_bytes() == installed, "install twice must equal install once"
    assert (os.stat(cfg).st_mode & 0o777) == 0o640
    run(root, e, "--uninstall")
    assert cfg.read_bytes() == STARTS[name]
    assert (os.stat(cfg).st_mode & 0o777) == 0o640
    p = run(root, e, "--uninstall")
    assert cfg.read_bytes() == STARTS[name]
    assert "nothing to do" in p.stderr.decode()


def test_missing_file_stays_missing_after_install_and_uninstall(env):
    root, e = env
    run(root, e, "--install")
    cfg = user_config(root)
    assert (os.stat(cfg).st_mode & 0o777) == 0o600
    assert (os.stat(cfg.parent).st_mode & 0o777) == 0o700
    run(root, e, "--uninstall")
    assert not cfg.exists()
    assert not cfg.parent.exists()


def test_existing_ssh_dir_is_kept_and_missing_file_stays_missing(env):
    root, e = env
    sshdir = root / "home" / ".ssh"
    sshdir.mkdir(parents=True, mode=0o700)
    (sshdir / "known_hosts").write_bytes(b"theirs\n")
    run(root, e, "--install")
    run(root, e, "--uninstall")
    assert sorted(p.name for p in sshdir.iterdir()) == ["known_hosts"]
    assert (sshdir / "known_hosts").read_bytes() == b"theirs\n"


def test_already_installed_file_is_unchanged_by_install(env):
    root, e = env
    cfg = user_config(root)
    cfg.parent.mkdir(parents=True, mode=0o700)
    start = f"{BEGIN}\n{include_line(root)}\n{END}\nHost a\n    User x".encode()
    cfg.write_bytes(start)
    run(root, e, "--install")
    assert cfg.read_bytes() == start
    run(root, e, "--uninstall")
    assert cfg.read_bytes() == b"Host a\n    User x"
    run(root, e, "--install")
    assert cfg.read_bytes() == start


def test_unterminated_block_is_refused_and_the_file_kept(env):
    root, e = env
    cfg = user_config(root)
    cfg.parent.mkdir(parents=True, mode=0o700)
    start = f"{BEGIN}\nInclude /x\nHost a\n".encode()
    cfg.write_bytes(start)
    p = run(root, e, "--install", rc=1)
    assert "fix the file by hand" in p.stderr.decode()
    run(root, e, "--uninstall", rc=1)
    assert cfg.read_bytes() == start


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client")
def test_ssh_applies_banger_settings_to_vm_hosts_only(env):
    root, e = env
    cfg = user_config(root)
    cfg.parent.mkdir(parents=True, mode=0o700)
    cfg.write_bytes(STARTS["host-blocks"])
    os.chmod(cfg, 0o600)
    run(root, e, "--install")

    def g(host):
        p = subprocess.run(["ssh", "-G", "-F", str(cfg), host], env=e, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        assert p.returncode == 0, p.stderr.decode()
        out = {}
        for line in p.stdout.decode().splitlines():
            k, _, v = line.partition(" ")
            out.setdefault(k, v)
        return out

    vm = g("web.vm")
    assert vm["user"] == "root"
    assert vm["identityfile"] == f"{root}/state/ssh/id_ed25519"
    assert vm["userknownhostsfile"] == f"{root}/state/ssh/known_hosts"
    assert vm["stricthostkeychecking"] == "true"
    assert vm["identitiesonly"] == "yes"
    other = g("example.com")
    assert other["user"] == "someone"
    assert other["stricthostkeychecking"] != "true"


def test_configured_key_path_home_relative_and_relative_refused(env):
    root, e = env
    (root / "config").mkdir(parents=True)
    (root / "config" / "config.yaml").write_text("ssh_key_path: ~/keys/work\n")
    run(root, e)
    text = (root / "config" / "ssh_config").read_text()
    assert f"    IdentityFile {root}/home/keys/work\n" in text
    (root / "config" / "config.yaml").write_text("ssh_key_path: keys/work\n")
    p = run(root, e, rc=1)
    assert "ssh_key_path" in p.stderr.decode()
    assert f"IdentityFile {root}/home/keys/work\n" in (root / "config" / "ssh_config").read_text()


def test_usage_errors(env):
    root, e = env
    run(root, e, "--install", "--uninstall", rc=2)
    run(root, e, "extra", rc=2)
    p = run(root, e, "--help")
    assert "--install" in p.stdout.decode()
