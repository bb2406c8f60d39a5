"""banger image build / register / list / rm, and a boot of the tiny image.

Images are inspected without mounting them: e2fsck -n checks them and
debugfs's rdump copies their files out.  The debian-bookworm build takes
about a minute and runs only with BANGER_SLOW_TESTS=1.
"""
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from assets import Guest, banger_run, image_rootfs, imported_root, kernel_dir
from bangertest import Daemon, spec, wait_for

slow = pytest.mark.skipif(os.environ.get("BANGER_SLOW_TESTS") != "1", reason="slow: set BANGER_SLOW_TESTS=1")


def rdump(rootfs, dest):
    """Copy every file of the ext4 image out (as root, ownership kept), no mount."""
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["debugfs", "-R", f"rdump / {dest}", str(rootfs)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return dest


def fsck(rootfs):
    return subprocess.run(["e2fsck", "-fn", str(rootfs)], capture_output=True, text=True)


def mkext4(path, size="32M", files=None, tmp=None):
    src = Path(tmp or path.parent) / (path.name + ".d")
    src.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {"hello": "world\n"}).items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(path), size], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("iroot")
    t0 = time.monotonic()
    r = banger_run(root, "image", "build", "tiny")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    print(f"\ntiny build took {elapsed:.1f}s")
    tree = rdump(image_rootfs(root), tmp_path_factory.mktemp("tiny-tree") / "t")
    return root, r, tree


# --- build -----------------------------------------------------------------------

def test_build_tiny_makes_an_ext4_that_e2fsck_accepts(tiny):
    root, r, _ = tiny
    rootfs = image_rootfs(root)
    c = fsck(rootfs)
    assert c.returncode == 0, c.stdout + c.stderr
    meta = json.loads((rootfs.parent / "image.json").read_text())
    assert meta["name"] == "tiny" and meta["recipe"] == "tiny" and meta["size"] == 256 << 20
    assert meta["created"].endswith("Z")
    assert rootfs.stat().st_size == 256 << 20
    assert rootfs.stat().st_blocks * 512 < 64 << 20   # sparse: a few MB written
    assert r.stdout.strip() == "image/tiny built (tiny, 256M)"
    assert "making rootfs.ext4" in r.stderr
    assert not (rootfs.parent / "staging").exists()


def test_tiny_holds_init_dropbear_its_libraries_and_the_acpid_action(tiny):
    _, _, t = tiny
    assert os.readlink(t / "sbin/init") == "/bin/busybox"
    assert os.readlink(t / "sbin/acpid") == "/bin/busybox"
    assert (t / "bin/busybox").read_bytes()[:4] == b"\x7fELF"
    inittab = (t / "etc/inittab").read_text()
    assert "::sysinit:/etc/init.d/rcS" in inittab and "::shutdown:/etc/init.d/rcK" in inittab
    rcs = (t / "etc/init.d/rcS").read_text()
    for needle in ("mount -t devpts", "mkdir -p /root/.ssh", "acpid", "dropbearconvert openssh dropbear",
                   "/root/.banger/ssh_host_ed25519_key", "dropbear -s -p 22", "KEY=-R", "banger-tiny: ready"):
        assert needle in rcs, needle
    assert os.stat(t / "etc/init.d/rcS").st_mode & 0o111
    action = t / "etc/acpi/PWRF/00000080"
    assert os.stat(action).st_mode & 0o111 and "poweroff" in action.read_text()
    for b in ("usr/sbin/dropbear", "usr/bin/dropbearkey", "usr/bin/dropbearconvert"):
        assert os.stat(t / b).st_mode & 0o111, b
    assert (t / "lib64/ld-linux-x86-64.so.2").is_file()
    ldd = subprocess.run(["/lib64/ld-linux-x86-64.so.2", "--list", "/usr/sbin/dropbear"], capture_output=True,
                         text=True).stdout
    libs = [line.split("=>")[1].split("(")[0].strip() for line in ldd.splitlines() if "=> /" in line]
    assert libs and all((t / lib.lstrip("/")).is_file() for lib in libs), libs
    shadow = (t / "etc/shadow").read_text()
    assert shadow.startswith("root:*:")
    assert stat.S_IMODE(os.stat(t / "etc/shadow").st_mode) == 0o600
    assert (t / "etc/passwd").read_text().startswith("root:x:0:0:root:/root:/bin/sh\n")
    assert os.stat(t / "usr/sbin/dropbear").st_uid == 0


def test_tiny_dropbear_lets_root_in_with_its_key_only(tiny, tmp_path):
    """dropbear from the image, in a chroot of its files and a network namespace of our own (loopback only)."""
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("needs openssh-client")
    _, _, tree = tiny
    t = tmp_path / "t"
    shutil.copytree(tree, t, symlinks=True)
    for key in ("user", "other", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / key)], check=True)
    (t / "root/.ssh").mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "user.pub", t / "root/.ssh/authorized_keys")
    os.chmod(t / "root/.ssh/authorized_keys", 0o600)
    subprocess.run(["dropbearconvert", "openssh", "dropbear", str(tmp_path / "host"), str(t / "hostkey")],
                   check=True, capture_output=True)
    ssh = ("ssh -p 2222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes "
           "-o ConnectTimeout=5")
    script = f"""
ip link set lo up
chroot {t} /usr/sbin/dropbear -F -E -s -p 127.0.0.1:2222 -r /hostkey </dev/null >/dev/null 2>{tmp_path}/dropbear.log &
DB=$!
for i in $(seq 50); do {ssh} -i {tmp_path}/user root@127.0.0.1 true 2>/dev/null && break; sleep 0.1; done
{ssh} -i {tmp_path}/user root@127.0.0.1 'echo user=$(id -u) release=$(cat /etc/banger-release)'
{ssh} -i {tmp_path}/other root@127.0.0.1 true 2>/dev/null && echo OTHER-GOT-IN
kill $DB
wait
"""
    r = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert "user=0 release=tiny" in r.stdout, r.stdout + r.stderr + (tmp_path / "dropbear.log").read_text()
    assert "OTHER-GOT-IN" not in r.stdout


def test_build_with_name_and_size(tmp_path):
    r = banger_run(tmp_path, "image", "build", "tiny", "--name", "small", "--size", "64M")
    assert r.returncode == 0, r.stderr
    rootfs = image_rootfs(tmp_path, "small")
    assert rootfs.stat().st_size == 64 << 20 and fsck(rootfs).returncode == 0
    meta = json.loads((rootfs.parent / "image.json").read_text())
    assert meta["name"] == "small" and meta["recipe"] == "tiny" and meta["size"] == 64 << 20
    r = banger_run(tmp_path, "image", "build", "tiny", "--name", "small")
    assert r.returncode == 1 and "image 'small' already exists" in r.stderr
    assert fsck(rootfs).returncode == 0


@pytest.mark.parametrize("args,needle", [
    (["build", "nosuch"], "unknown recipe 'nosuch'"),
    (["build"], "give exactly one RECIPE"),
    (["build", "tiny", "--size", "lots"], "--size wants a size"),
    (["build", "tiny", "--size", "-1G"], "--size wants a size"),
    (["register", "x"], "give the filesystem with --rootfs FILE"),
    (["register", "--rootfs", "x.ext4"], "give exactly one NAME"),
    (["frobnicate"], "unknown subcommand"),
    (["list", "-o", "wide"], "-o wants table or json"),
])
def test_usage_errors_exit_2(tmp_path, args, needle):
    r = banger_run(tmp_path, "image", *args)
    assert r.returncode == 2, r
    assert needle in r.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("args,needle", [
    (["build", "tiny", "--name", "Tiny"], "invalid image name 'Tiny'"),
    (["build", "tiny", "--name", "a/b"], "invalid image name"),
    (["build", "tiny", "--size", "1M"], "between 16M and 2T"),
    (["register", "..", "--rootfs", "/etc/hostname"], "invalid image name"),
])
def test_bad_names_and_sizes_fail_and_leave_nothing(tmp_path, args, needle):
    r = banger_run(tmp_path, "image", *args)
    assert r.returncode == 1, r
    assert needle in r.stderr
    images = tmp_path / "state" / "images"
    assert not images.exists() or not any(images.iterdir())


# --- register ----------------------------------------------------------------------

def test_register_copies_a_good_ext4(tmp_path):
    src = mkext4(tmp_path / "mine.ext4", "32M", {"etc/hostname": "mine\n"})
    r = banger_run(tmp_path / "root", "image", "register", "mine", "--rootfs", src)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "image/mine registered"
    dst = image_rootfs(tmp_path / "root", "mine")
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_blocks <= src.stat().st_blocks + 8   # holes stay holes
    meta = json.loads((dst.parent / "image.json").read_text())
    assert meta["recipe"] is None and meta["source"] == str(src.resolve()) and meta["size"] == 32 << 20
    r = banger_run(tmp_path / "root", "image", "register", "mine", "--rootfs", src)
    assert r.returncode == 1 and "already exists" in r.stderr


def test_register_refuses_what_is_not_a_whole_ext4(tmp_path):
    root = tmp_path / "root"
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(1 << 20))
    r = banger_run(root, "image", "register", "x", "--rootfs", junk)
    assert r.returncode == 1 and "not an ext4 filesystem (no superblock magic 0xEF53" in r.stderr, r.stderr
    cut = mkext4(tmp_path / "cut.ext4", "32M")
    os.truncate(cut, 16 << 20)
    r = banger_run(root, "image", "register", "x", "--rootfs", cut)
    assert r.returncode == 1 and "truncated" in r.stderr, r.stderr
    r = banger_run(root, "image", "register", "x", "--rootfs", tmp_path / "missing.ext4")
    assert r.returncode == 1 and "missing.ext4" in r.stderr
    assert not (root / "state" / "images" / "x").exists()


# --- list / rm -------------------------------------------------------------------

def test_list_shows_images_as_table_and_json(tmp_path):
    root = imported_root(tmp_path / "root", kernel=False)
    src = mkext4(tmp_path / "mine.ext4", "32M")
    assert banger_run(root, "image", "register", "mine", "--rootfs", src).returncode == 0
    r = banger_run(root, "image", "list")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0] == ["NAME", "RECIPE", "SIZE", "AGE"]
    assert rows[1][:3] == ["mine", "(registered)", "32M"]
    assert rows[2][:3] == ["tiny", "tiny", "256M"]
    items = json.loads(banger_run(root, "image", "list", "-o", "json").stdout)
    assert [i["name"] for i in items] == ["mine", "tiny"]


def test_rm_refuses_without_daemon_unless_forced(tmp_path):
    root = imported_root(tmp_path / "root", kernel=False)
    r = banger_run(root, "image", "rm", "tiny")
    assert r.returncode == 1 and "cannot tell whether image 'tiny' is in use" in r.stderr
    assert image_rootfs(root).exists()
    r = banger_run(root, "image", "rm", "tiny", "--force")
    assert r.returncode == 0 and r.stdout.strip() == "image/tiny removed"
    assert not image_rootfs(root).parent.exists()
    r = banger_run(root, "image", "rm", "--force", "tiny")
    assert r.returncode == 1 and "image 'tiny' not found" in r.stderr


def test_rm_refused_while_a_sandbox_uses_it(tmp_path):
    root = imported_root(tmp_path / "root", kernel=False)
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "config.yaml").write_text("default_image: tiny\n")
    d = Daemon(root).start()
    try:
        d.write_spec("web.yaml", spec("web", image="tiny"))
        d.write_spec("api.yaml", spec("api"))   # no image: the config's default_image
        d.write_spec("db.yaml", spec("db", image="debian-bookworm"))
        wait_for(lambda: all(d.sandbox(n) for n in ("web", "api", "db")), what="sandboxes listed")
        r = banger_run(root, "image", "rm", "tiny")
        assert r.returncode == 1
        assert "image 'tiny' is in use by sandboxes api, web" in r.stderr, r.stderr
        for n in ("web", "api"):
            (d.sandboxes / f"{n}.yaml").unlink()
            d.wait_gone(n)
        r = banger_run(root, "image", "rm", "tiny")
        assert r.returncode == 0, r.stderr
    finally:
        d.stop()
        d.check_log()


# --- boot --------------------------------------------------------------------------

def test_tiny_boots_to_ready_and_powers_off_on_the_acpi_button(tmp_path):
    """The imported kernel and initramfs boot the tiny image (root on virtio-blk,
    snapshot), mount a work disk at /root, take its host key, start dropbear;
    QMP system_powerdown then ends the VM through acpid and a clean poweroff."""
    root = imported_root(tmp_path / "root")
    work = tmp_path / "work"
    (work / ".ssh").mkdir(parents=True)
    (work / ".banger").mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / ".banger/ssh_host_ed25519_key")],
                   check=True)
    shutil.copy(work / ".banger/ssh_host_ed25519_key.pub", work / ".ssh/authorized_keys")
    disk = tmp_path / "work.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(work), str(disk), "32M"], check=True, capture_output=True)

    g = Guest(tmp_path / "vm", kernel_dir(root), "root=/dev/vda banger.work=/dev/vdb banger.hostname=smoke",
              disks=[(image_rootfs(root), True), disk]).start()
    try:
        ready = g.wait_for("banger-tiny: ready", timeout=60)
        print(f"\ntiny: ready {ready:.1f}s after QEMU start")
        text = g.text()
        assert "banger-tiny: host key from /root/.banger/ssh_host_ed25519_key" in text
        assert "banger-init:" not in text and "dropbear did not start" not in text
        off = g.powerdown(timeout=60)
        assert g.proc.returncode == 0
        print(f"tiny: powered off {off:.1f}s after system_powerdown")
        assert "banger-tiny: power button" in g.text()
    finally:
        g.kill()
    assert fsck(disk).returncode == 0   # the work disk was unmounted cleanly


@slow
def test_build_debian_bookworm(tmp_path):
    t0 = time.monotonic()
    r = banger_run(tmp_path, "image", "build", "debian-bookworm", timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    print(f"\ndebian-bookworm build took {time.monotonic() - t0:.0f}s")
    rootfs = image_rootfs(tmp_path, "debian-bookworm")
    assert rootfs.stat().st_size == 2 << 30 and fsck(rootfs).returncode == 0
    t = tmp_path / "tree"
    t.mkdir()
    for path in ("etc/ssh/sshd_config.d/banger.conf", "etc/fstab", "etc/machine-id", "etc/banger-release"):
        out = subprocess.run(["debugfs", "-R", f"cat /{path}", str(rootfs)], capture_output=True, text=True)
        (t / path.replace("/", "_")).write_text(out.stdout)
    conf = (t / "etc_ssh_sshd_config.d_banger.conf").read_text()
    for line in ("PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                 "PubkeyAuthentication yes", "AuthorizedKeysFile /root/.ssh/authorized_keys",
                 "HostKey /root/.banger/ssh_host_ed25519_key"):
        assert line in conf
    assert "/dev/vda" not in (t / "etc_fstab").read_text()
    assert (t / "etc_machine-id").read_text() == ""
    ls = subprocess.run(["debugfs", "-R", "ls /etc/ssh", str(rootfs)], capture_output=True, text=True).stdout
    assert "ssh_host_" not in ls and "sshd_config" in ls
    for prog in ("/usr/lib/systemd/systemd", "/usr/sbin/sshd", "/usr/bin/busybox", "/usr/sbin/ip",
                 "/usr/lib/systemd/systemd-logind", "/usr/bin/dbus-daemon"):
        st = subprocess.run(["debugfs", "-R", f"stat {prog}", str(rootfs)], capture_output=True, text=True)
        assert "Inode:" in st.stdout, prog

    # it boots with banger's initramfs, sshd takes the work disk's host key, and
    # the ACPI power button (logind) powers it off
    work = tmp_path / "work"
    (work / ".banger").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / ".banger/ssh_host_ed25519_key")],
                   check=True)
    disk = tmp_path / "work.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(work), str(disk), "32M"], check=True, capture_output=True)
    root = imported_root(tmp_path, image=False)
    g = Guest(tmp_path / "vm", kernel_dir(root), "root=/dev/vda banger.work=/dev/vdb banger.hostname=deb",
              disks=[(rootfs, True), disk], memory=512).start()
    try:
        up = g.wait_for("Started ssh.service", timeout=120)
        login = g.wait_for("deb login:", timeout=120)
        print(f"debian-bookworm: sshd {up:.1f}s, login prompt {login:.1f}s after QEMU start")
        off = g.powerdown(timeout=90)
        assert g.proc.returncode == 0
        print(f"debian-bookworm: powered off {off:.1f}s after the first system_powerdown")
    finally:
        g.kill()
