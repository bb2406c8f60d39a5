"""banger (the CLI) without a daemon: help, usage errors, local validation
with --dry-run, and the one clear line when bangerd is not there.

Every test runs in its own --root under tmp_path, so nothing touches the
machine's own paths.  Binaries come from $BANGER_BUILD (default ./build).
"""
import json
import os
import pathlib
import re
import socket
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BANGER_BUILD", REPO / "build"))
BANGER = BUILD / "bin" / "banger"

COMMANDS = ["apply", "get", "delete", "diff", "events", "version"]

GOOD = """\
apiVersion: banger/v1
kind: Sandbox
metadata:
  name: web
  labels: {team: infra}
spec:
  image: debian-bookworm
  vcpu: 2
  memory_mib: 1024
"""

# spec.vcpu is on line 8, spec.memory_mib on line 9
BAD = """\
apiVersion: banger/v1
kind: Sandbox
metadata:
  name: bad
# a comment line
spec:
  image: debian-bookworm
  vcpu: 99
  memory_mib: 1
"""

SECOND = """\
apiVersion: banger/v1
kind: Sandbox
metadata:
  name: api
spec:
  state: stopped
"""


@pytest.fixture(scope="session", autouse=True)
def built():
    if not BANGER.exists():
        pytest.fail(f"{BANGER} not built (run make, or set BANGER_BUILD)")


def run(*args, root=None, env_root=None, stdin=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "BANGER_ROOT"}
    if env_root is not None:
        env["BANGER_ROOT"] = str(env_root)
    argv = [str(BANGER)]
    if root is not None:
        argv += ["--root", str(root)]
    argv += [str(a) for a in args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=30)


def snapshot(root):
    """Every path under root with its content, to show nothing changed."""
    out = {}
    for p in sorted(pathlib.Path(root).rglob("*")):
        out[str(p)] = p.read_bytes() if p.is_file() else None
    return out


def sandboxes(root):
    return pathlib.Path(root) / "config" / "sandboxes"


def socket_path(root):
    return pathlib.Path(root) / "run" / "bangerd.sock"


def assert_unreachable(r, root, code=1):
    assert r.returncode == code, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"banger: cannot reach bangerd at {socket_path(root)}: "), r.stderr
    assert lines[0].endswith("(is bangerd running?)"), r.stderr


# ---- help and usage -------------------------------------------------------

def test_help_lists_every_command():
    r = run("--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: banger")
    for c in COMMANDS:
        assert re.search(rf"^  {c}\s", r.stdout, re.M), c


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_command_has_help(cmd):
    r = run(cmd, "--help")
    assert r.returncode == 0, r
    assert r.stdout.startswith(f"usage: banger {cmd}")
    assert r.stderr == ""
    assert run("help", cmd).stdout == r.stdout


def test_no_command_is_a_usage_error():
    r = run()
    assert r.returncode == 2
    assert "usage: banger" in r.stderr
    assert r.stdout == ""


def test_unknown_command_is_a_usage_error():
    r = run("frobnicate")
    assert r.returncode == 2
    assert "unknown command 'frobnicate'" in r.stderr


@pytest.mark.parametrize("args", [
    ["apply"],
    ["apply", "-f"],
    ["apply", "-f", "x.yaml", "--timeout", "soon"],
    ["apply", "-f", "x.yaml", "--timeout", "0"],
    ["apply", "-f", "x.yaml", "extra"],
    ["apply", "--bogus"],
    ["get", "-o", "xml"],
    ["get", "a", "b"],
    ["get", "-l", "novalue"],
    ["get", "web", "-l", "team=infra"],
    ["delete"],
    ["delete", "web", "--timeout", "-3"],
    ["diff"],
    ["events", "--since", "yesterday"],
    ["events", "-o", "yaml"],
    ["version", "extra"],
])
def test_usage_errors_exit_2(tmp_path, args):
    r = run(*args, root=tmp_path)
    assert r.returncode == 2, r
    assert "usage: banger" in r.stderr
    assert r.stdout == ""
    assert not (tmp_path / "config").exists()


# ---- apply --dry-run: local validation -----------------------------------

def test_dry_run_of_a_good_spec_writes_nothing(tmp_path):
    spec = tmp_path / "web.yaml"
    spec.write_text(GOOD)
    root = tmp_path / "root"
    r = run("apply", "-f", spec, "--dry-run", root=root)
    assert r.returncode == 0, r
    assert r.stdout == "sandbox/web valid (dry run)\n"
    assert not root.exists()


def test_dry_run_reads_every_yaml_in_a_folder_and_multi_document_files(tmp_path):
    d = tmp_path / "specs"
    d.mkdir()
    (d / "web.yml").write_text(GOOD)
    (d / "more.yaml").write_text("---\n" + SECOND + "---\n" + GOOD.replace("name: web", "name: db"))
    (d / "notes.txt").write_text("not a spec")
    (d / "sub").mkdir()
    (d / "sub" / "x.yaml").write_text(BAD)   # not recursive
    r = run("apply", "-f", d, "--dry-run", root=tmp_path / "root")
    assert r.returncode == 0, r
    assert sorted(r.stdout.splitlines()) == [
        "sandbox/api valid (dry run)",
        "sandbox/db valid (dry run)",
        "sandbox/web valid (dry run)",
    ]


def test_dry_run_refuses_to_overwrite_a_file_of_another_sandbox(tmp_path):
    sandboxes(tmp_path).mkdir(parents=True)
    (sandboxes(tmp_path) / "web.yaml").write_text(SECOND)   # declares "api"
    before = snapshot(tmp_path)
    r = run("apply", "-f", "-", "--dry-run", root=tmp_path, stdin=GOOD)
    assert r.returncode == 1
    assert 'declares sandbox "api"' in r.stderr
    assert snapshot(tmp_path) == before


def test_dry_run_from_stdin(tmp_path):
    r = run("apply", "-f", "-", "--dry-run", root=tmp_path, stdin=GOOD)
    assert r.returncode == 0, r
    assert r.stdout == "sandbox/web valid (dry run)\n"


def test_invalid_spec_prints_every_error_with_position_and_writes_nothing(tmp_path):
    root = tmp_path / "root"
    sandboxes(root).mkdir(parents=True)
    (sandboxes(root) / "keep.yaml").write_text(SECOND)
    before = snapshot(root)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    good = tmp_path / "web.yaml"
    good.write_text(GOOD)
    for extra in (["--dry-run"], []):
        r = run("apply", "-f", good, "-f", bad, *extra, root=root)
        assert r.returncode == 1, r
        assert r.stdout == ""
        assert re.search(rf"^{re.escape(str(bad))}:8:\d+: spec\.vcpu: ", r.stderr, re.M), r.stderr
        assert re.search(rf"^{re.escape(str(bad))}:9:\d+: spec\.memory_mib: ", r.stderr, re.M), r.stderr
        assert "cannot reach bangerd" not in r.stderr
        assert snapshot(root) == before


def test_invalid_stdin_names_stdin(tmp_path):
    r = run("apply", "-f", "-", "--dry-run", root=tmp_path, stdin=BAD)
    assert r.returncode == 1
    assert re.search(r"^<stdin>:8:\d+: spec\.vcpu: ", r.stderr, re.M), r.stderr


def test_yaml_syntax_error_is_reported_with_position(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: web\nspec: {}\n")
    r = run("apply", "-f", f, "--dry-run", root=tmp_path / "root")
    assert r.returncode == 1
    assert re.search(rf"^{re.escape(str(f))}:\d+:\d+: ", r.stderr, re.M), r.stderr
    assert not (tmp_path / "root").exists()


def test_duplicate_names_across_the_input_are_an_error(tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(GOOD)
    b.write_text(GOOD.replace("vcpu: 2", "vcpu: 4"))
    r = run("apply", "-f", a, "-f", b, "--dry-run", root=tmp_path / "root")
    assert r.returncode == 1
    assert "metadata.name" in r.stderr and '"web"' in r.stderr
    assert str(a) in r.stderr and str(b) in r.stderr


def test_missing_input_file_is_an_error(tmp_path):
    r = run("apply", "-f", tmp_path / "nope.yaml", "--dry-run", root=tmp_path)
    assert r.returncode == 1
    assert "nope.yaml" in r.stderr


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("apply", "-f", tmp_path / "empty", "--dry-run", root=tmp_path / "root")
    assert r.returncode == 1
    assert "no *.yaml or *.yml files" in r.stderr


def test_diff_of_invalid_spec_is_trouble_not_difference(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    r = run("diff", "-f", bad, root=tmp_path / "root")
    assert r.returncode == 2
    assert re.search(r":8:\d+: spec\.vcpu: ", r.stderr), r.stderr


# ---- no daemon --------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["get"],
    ["get", "web"],
    ["get", "-o", "json"],
    ["delete", "web"],
    ["events"],
    ["events", "--follow"],
])
def test_dead_daemon_gives_one_clear_line(tmp_path, args):
    r = run(*args, root=tmp_path)
    assert_unreachable(r, tmp_path)
    assert r.stdout == ""


def test_apply_against_dead_daemon_writes_nothing(tmp_path):
    spec = tmp_path / "web.yaml"
    spec.write_text(GOOD)
    root = tmp_path / "root"
    r = run("apply", "-f", spec, root=root)
    assert_unreachable(r, root)
    assert not sandboxes(root).exists()


def test_delete_against_dead_daemon_leaves_the_folder_alone(tmp_path):
    sandboxes(tmp_path).mkdir(parents=True)
    (sandboxes(tmp_path) / "web.yaml").write_text(GOOD)
    before = snapshot(tmp_path)
    r = run("delete", "web", root=tmp_path)
    assert_unreachable(r, tmp_path)
    assert snapshot(tmp_path) == before


def test_diff_against_dead_daemon_is_trouble(tmp_path):
    spec = tmp_path / "web.yaml"
    spec.write_text(GOOD)
    root = tmp_path / "root"
    r = run("diff", "-f", spec, root=root)
    assert_unreachable(r, root, code=2)


def test_stale_socket_says_connection_refused(tmp_path):
    (tmp_path / "run").mkdir()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(socket_path(tmp_path)))   # bound, never listening
        r = run("get", root=tmp_path)
    finally:
        s.close()
    assert_unreachable(r, tmp_path)
    assert "Connection refused" in r.stderr


def test_version_works_without_daemon(tmp_path):
    r = run("version", root=tmp_path)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"client: \d+\.\d+\.\d+.*", lines[0])
    assert lines[1].startswith("daemon: not reachable (")
    assert str(socket_path(tmp_path)) in lines[1]


# ---- where the root comes from ---------------------------------------------

def test_banger_root_env_is_respected(tmp_path):
    r = run("get", env_root=tmp_path)
    assert_unreachable(r, tmp_path)


def test_root_flag_wins_over_env(tmp_path):
    flag = tmp_path / "flag"
    r = run("get", root=flag, env_root=tmp_path / "env")
    assert_unreachable(r, flag)


def test_relative_root_is_made_absolute(tmp_path):
    r = run("events", root="rel", cwd=tmp_path)
    assert_unreachable(r, tmp_path / "rel")


def test_banger_itself_loads_neither_libgit2_nor_libarchive():
    """Those two cost 6 ms at every start; only banger-full carries them."""
    needed = subprocess.run(["readelf", "-d", str(BANGER)], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"Shared library: \[([^\]]+)\]", needed)
    assert libs and not [x for x in libs if "git2" in x or "archive" in x or "curl" in x], libs
    full = subprocess.run(["readelf", "-d", str(BANGER.parent / "banger-full")], capture_output=True, text=True,
                          check=True).stdout
    assert "libgit2" in full and "libarchive" in full


@pytest.mark.parametrize("args", [["kernel", "list"], ["image", "list"], ["vm", "run", "--dry-run", "."]])
def test_without_banger_full_beside_it_the_heavy_commands_say_so(tmp_path, args):
    lonely = tmp_path / "bin" / "banger"
    lonely.parent.mkdir()
    lonely.write_bytes(BANGER.read_bytes())
    lonely.chmod(0o755)
    r = subprocess.run([str(lonely), "--root", str(tmp_path / "root"), *args], capture_output=True, text=True,
                       timeout=30, cwd=tmp_path)
    assert r.returncode == 1
    assert f"needs {tmp_path}/bin/banger-full" in r.stderr and "No such file or directory" in r.stderr
    assert r.stdout == ""
    assert not (tmp_path / "root" / "config").exists() or not any((tmp_path / "root" / "config").rglob("*.yaml"))


def test_heavy_commands_run_in_banger_full_with_the_command_line_unchanged(tmp_path):
    r = run("kernel", "list", "-o", "json", root=tmp_path / "root")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
