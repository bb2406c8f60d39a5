"""banger kernel import / list / rm, and a boot of what import made.

The real package (Debian's cloud kernel) is downloaded once into the test
cache (assets.kernel_deb) and imported once per module; variants of it
(compressed modules, zstd data, missing modules, a fake kernel) are built
here as small .deb files from the pieces of that import.
"""
import gzip
import io
import json
import lzma
import os
import stat
import subprocess
import tarfile
import time

import pytest

from assets import (Guest, banger_run, image_rootfs, imported_root, kernel_deb, kernel_dir, modinfo, package_deb,
                    read_newc)
from bangertest import BANGER, Daemon, spec, wait_for

NEEDED = ["virtio_mmio", "virtio_pci", "virtio_blk", "virtio_net", "virtio_console",
          "vmw_vsock_virtio_transport", "button", "evdev"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """One import of the real package from --deb, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("kroot")
    deb = kernel_deb()
    t0 = time.monotonic()
    r = banger_run(root, "kernel", "import", "default", "--deb", deb)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    print(f"\nkernel import took {elapsed:.1f}s")
    return root, deb, r


def initrd_entries(root, name="default"):
    return {e[0]: e for e in read_newc(kernel_dir(root, name) / "initrd.img")}


def module_order(entries):
    return entries["lib/modules/banger.modules"][4].decode().split()


# --- crafted packages --------------------------------------------------------

def ar_member(name, data):
    head = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
    assert len(head) == 60
    return head + data + (b"\n" if len(data) % 2 else b"")


def tar_bytes(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        dirs = set()
        for path in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            ti = tarfile.TarInfo("./" + d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        for path, data in files.items():
            ti = tarfile.TarInfo("./" + path)
            ti.size, ti.mode = len(data), 0o644
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def make_deb(path, files, compression="none"):
    data = tar_bytes(files)
    if compression == "gz":
        data, member = gzip.compress(data, compresslevel=1), "data.tar.gz"
    elif compression == "zst":
        data = subprocess.run(["zstd", "-q", "-1", "-c"], input=data, capture_output=True, check=True).stdout
        member = "data.tar.zst"
    elif compression == "xz":
        data, member = lzma.compress(data, preset=0), "data.tar.xz"
    else:
        member = "data.tar"
    control = gzip.compress(tar_bytes({"control": b"Package: fake\nVersion: 1\nArchitecture: amd64\n"}))
    with open(path, "wb") as f:
        f.write(b"!<arch>\n" + ar_member("debian-binary", b"2.0\n") + ar_member("control.tar.gz", control)
                + ar_member(member, data))
    return path


def kernel_files(imported, drop=(), compress=None):
    """boot/vmlinuz-R, modules.builtin and the modules of the real import, as package files."""
    root, _, _ = imported
    release = json.loads((kernel_dir(root) / "kernel.json").read_text())["version"]
    files = {f"boot/vmlinuz-{release}": (kernel_dir(root) / "vmlinuz").read_bytes(),
             f"lib/modules/{release}/modules.builtin": b"kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n"}
    entries = initrd_entries(root)
    for i, name in enumerate(module_order(entries)):
        if name in drop:
            continue
        data = entries[f"lib/modules/{name}.ko"][4]
        how = (compress or {}).get(i % 4)
        base = f"lib/modules/{release}/kernel/drivers/x/{name}"
        if how == "xz":
            files[base + ".ko.xz"] = lzma.compress(data, check=lzma.CHECK_CRC32)
        elif how == "zst":
            files[base + ".ko.zst"] = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                                                     check=True).stdout
        elif how == "gz":
            files[base + ".ko.gz"] = gzip.compress(data)
        else:
            files[base + ".ko"] = data
    return release, files


def assert_failed_cleanly(root, name, r, *needles):
    assert r.returncode == 1, r
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("banger: "), r.stderr
    for n in needles:
        assert n in lines[-1], r.stderr
    assert not (root / "state" / "kernels" / name).exists()


# --- import ------------------------------------------------------------------

def test_import_from_deb_stores_vmlinuz_vmlinux_initrd_and_metadata(imported):
    root, deb, r = imported
    kd = kernel_dir(root)
    meta = json.loads((kd / "kernel.json").read_text())
    assert meta["name"] == "default"
    assert meta["version"].endswith("-cloud-amd64") and meta["version"] in deb.name
    assert meta["source"] == f"deb:{deb.resolve()}"
    assert meta["created"].endswith("Z")
    vmlinuz = (kd / "vmlinuz").read_bytes()
    assert vmlinuz[0x202:0x206] == b"HdrS"
    with open(kd / "vmlinux", "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF" and head[4] == 2 and head[18] == 62   # ELF64, x86-64
    assert (kd / "vmlinux").stat().st_size > len(vmlinuz)
    assert r.stdout.strip() == f"kernel/default imported ({meta['version']})"
    assert "writing vmlinux" in r.stderr   # progress goes to stderr


def test_initramfs_holds_init_busybox_and_modules_in_dependency_order(imported):
    root, _, _ = imported
    entries = initrd_entries(root)
    init = entries["init"]
    assert stat.S_ISREG(init[1]) and init[1] & 0o111
    assert init[4].startswith(b"#!/bin/busybox sh\n")
    for needle in (b"banger.probe=1", b"banger-probe-ok", b"switch_root", b"banger.work=", b"banger.ip=",
                   b"banger-init:", b"poweroff -f"):
        assert needle in init[4], needle
    assert entries["bin/busybox"][4][:4] == b"\x7fELF"
    console = entries["dev/console"]
    assert stat.S_ISCHR(console[1]) and console[2:4] == (5, 1)

    order = module_order(entries)
    assert set(NEEDED) <= set(order), order
    assert "ext4" not in order   # built into Debian's kernel
    seen = set()
    for name in order:
        ko = entries[f"lib/modules/{name}.ko"][4]
        modname, deps = modinfo(ko)
        assert modname == name
        missing = [d for d in deps if d not in seen]
        assert not missing, f"{name} loads before its dependencies {missing}: {order}"
        seen.add(name)
    # the platform notes' measured order for the virtio-mmio path
    for a, b in [("virtio_ring", "virtio"), ("virtio", "virtio_mmio"), ("failover", "net_failover"),
                 ("net_failover", "virtio_net"), ("vsock", "vmw_vsock_virtio_transport")]:
        assert order.index(a) < order.index(b)


def test_import_handles_compressed_modules_and_zstd_data(imported, tmp_path):
    _, files = kernel_files(imported, compress={0: "xz", 1: "zst", 2: "gz"})
    assert any(p.endswith(".ko.xz") for p in files) and any(p.endswith(".ko.zst") for p in files)
    deb = make_deb(tmp_path / "k.deb", files, "zst")
    root = tmp_path / "root"
    r = banger_run(root, "kernel", "import", "k2", "--deb", deb)
    assert r.returncode == 0, r.stderr
    ours, theirs = initrd_entries(root, "k2"), initrd_entries(imported[0])
    assert module_order(ours) == module_order(theirs)
    for name in module_order(ours):
        assert ours[f"lib/modules/{name}.ko"][4] == theirs[f"lib/modules/{name}.ko"][4]


def test_modules_streaming_past_before_they_are_needed_are_read_again(imported, tmp_path):
    _, files = kernel_files(imported)   # load order: every dependency before its user
    deb = make_deb(tmp_path / "rev.deb", files)
    root = tmp_path / "root"
    r = subprocess.run([str(BANGER), "--root", str(root), "kernel", "import", "k", "--deb", str(deb)],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, BANGER_IMPORT_KEEP_BUDGET="0"))
    assert r.returncode == 0, r.stderr
    assert "reading rev.deb again for" in r.stderr
    assert module_order(initrd_entries(root, "k")) == module_order(initrd_entries(imported[0]))


def test_import_again_is_refused_and_keeps_the_kernel(imported):
    root, deb, _ = imported
    before = (kernel_dir(root) / "kernel.json").read_text()
    r = banger_run(root, "kernel", "import", "default", "--deb", deb)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert (kernel_dir(root) / "kernel.json").read_text() == before


def test_corrupt_deb_fails_and_leaves_nothing(tmp_path):
    junk = tmp_path / "junk.deb"
    junk.write_bytes(os.urandom(4096))
    r = banger_run(tmp_path, "kernel", "import", "k", "--deb", junk)
    assert_failed_cleanly(tmp_path, "k", r, "junk.deb", "not a Debian package")

    cut = tmp_path / "cut.deb"
    with open(kernel_deb(), "rb") as f:
        cut.write_bytes(f.read(3 << 20))
    r = banger_run(tmp_path, "kernel", "import", "k", "--deb", cut)
    assert_failed_cleanly(tmp_path, "k", r, "cut.deb")


def test_deb_without_kernel_fails_and_leaves_nothing(tmp_path):
    deb = package_deb("hostname")
    r = banger_run(tmp_path, "kernel", "import", "k", "--deb", deb)
    assert_failed_cleanly(tmp_path, "k", r, "no boot/vmlinuz-", "not a kernel package")


def test_non_bzimage_kernel_is_refused(imported, tmp_path):
    release, files = kernel_files(imported)
    files[f"boot/vmlinuz-{release}"] = b"\x7fELF" + os.urandom(8192)
    deb = make_deb(tmp_path / "fake.deb", files, "gz")
    r = banger_run(tmp_path, "kernel", "import", "k", "--deb", deb)
    assert_failed_cleanly(tmp_path, "k", r, "not a bzImage")


@pytest.mark.parametrize("drop,needle", [
    ("virtio_blk", "kernel module 'virtio_blk' is neither in the package nor built in"),
    ("virtio_ring", "kernel module 'virtio_ring' (needed by"),
])
def test_missing_modules_are_refused(imported, tmp_path, drop, needle):
    _, files = kernel_files(imported, drop=(drop,))
    deb = make_deb(tmp_path / "nomod.deb", files)
    r = banger_run(tmp_path, "kernel", "import", "k", "--deb", deb)
    assert_failed_cleanly(tmp_path, "k", r, needle)


def test_import_from_apt_resolves_the_versioned_package(tmp_path):
    before = set(os.listdir("/var/tmp"))
    r = banger_run(tmp_path, "kernel", "import", "cloud", "--apt", timeout=600)
    assert r.returncode == 0, r.stderr
    meta = json.loads((kernel_dir(tmp_path, "cloud") / "kernel.json").read_text())
    assert meta["source"].startswith("apt:linux-image-") and "-cloud-amd64=" in meta["source"]
    assert "resolving linux-image-cloud-amd64" in r.stderr and "downloading linux-image-" in r.stderr
    assert not [n for n in set(os.listdir("/var/tmp")) - before if n.startswith("banger-apt-")]


def test_apt_package_without_kernel_fails_and_leaves_nothing(tmp_path):
    r = banger_run(tmp_path, "kernel", "import", "k", "--apt", "hostname", timeout=300)
    assert_failed_cleanly(tmp_path, "k", r, "not a kernel package")


@pytest.mark.parametrize("args,needle", [
    (["import", "k"], "give one of --deb FILE or --apt"),
    (["import", "k", "--deb", "x.deb", "--apt"], "give one of --deb FILE or --apt"),
    (["import", "--deb", "x.deb"], "give the kernel a NAME"),
    (["frobnicate"], "unknown subcommand"),
    ([], "give a subcommand"),
    (["list", "-o", "yaml"], "-o wants table or json"),
])
def test_usage_errors_exit_2(tmp_path, args, needle):
    r = banger_run(tmp_path, "kernel", *args)
    assert r.returncode == 2, r
    assert needle in r.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("name", ["Bad", "a/b", "..", "_x", "x" * 64, "a..b", ""])
def test_invalid_names_are_refused(tmp_path, name):
    r = banger_run(tmp_path, "kernel", "import", name, "--deb", "/nonexistent.deb")
    assert r.returncode == 1 and "invalid kernel name" in r.stderr, r
    assert not (tmp_path / "state" / "kernels").exists() or not any((tmp_path / "state" / "kernels").iterdir())


# --- list / rm ---------------------------------------------------------------

def test_list_shows_kernels_as_table_and_json(tmp_path):
    imported_root(tmp_path, image=False)
    r = banger_run(tmp_path, "kernel", "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "SOURCE", "AGE"]
    assert lines[1].startswith("default ") and "-cloud-amd64" in lines[1]
    r = banger_run(tmp_path, "kernel", "list", "-o", "json")
    items = json.loads(r.stdout)
    assert [k["name"] for k in items] == ["default"]
    assert banger_run(tmp_path / "empty", "kernel", "list", "-o", "json").stdout.strip() == "[]"


def test_rm_refuses_without_daemon_unless_forced(tmp_path):
    imported_root(tmp_path, image=False)
    r = banger_run(tmp_path, "kernel", "rm", "default")
    assert r.returncode == 1
    assert "cannot tell whether kernel 'default' is in use" in r.stderr and "--force" in r.stderr
    assert kernel_dir(tmp_path).exists()
    r = banger_run(tmp_path, "kernel", "rm", "--force", "default")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "kernel/default removed"
    assert not kernel_dir(tmp_path).exists()
    r = banger_run(tmp_path, "kernel", "rm", "--force", "default")
    assert r.returncode == 1 and "kernel 'default' not found" in r.stderr


def test_rm_refused_while_a_sandbox_uses_it(tmp_path):
    root = tmp_path / "root"
    imported_root(root, image=False)
    d = Daemon(root).start()
    try:
        d.write_spec("web.yaml", spec("web", kernel="default"))
        d.write_spec("api.yaml", spec("api", kernel="other"))
        wait_for(lambda: d.sandbox("web") and d.sandbox("api"), what="sandboxes listed")
        r = banger_run(root, "kernel", "rm", "default")
        assert r.returncode == 1
        assert "kernel 'default' is in use by sandbox web" in r.stderr, r.stderr
        assert kernel_dir(root).exists()
        (d.sandboxes / "web.yaml").unlink()
        d.wait_gone("web")
        r = banger_run(root, "kernel", "rm", "default")
        assert r.returncode == 0, r.stderr
        assert not kernel_dir(root).exists()
    finally:
        d.stop()
        d.check_log()


# --- boot ----------------------------------------------------------------------

def test_probe_boot_prints_ok_and_powers_off(tmp_path):
    root = imported_root(tmp_path / "root", image=False)
    g = Guest(tmp_path / "vm", kernel_dir(root), "banger.probe=1").start()
    try:
        t = g.wait_for("banger-probe-ok", timeout=60)
        assert g.wait_exit(timeout=60) == 0
        print(f"\nprobe: banger-probe-ok {t:.1f}s after QEMU start")
        assert "banger-init:" not in g.text()
    finally:
        g.kill()


def test_initramfs_sets_network_hostname_dns_and_runs_banger_init(tmp_path):
    """root and work disks, banger.ip/gw/dns/hostname, and banger.init=/root/check.sh
    (a script on the work disk, run as PID 1 after switch_root)."""
    root = imported_root(tmp_path / "root")
    work = tmp_path / "work"
    work.mkdir()
    (work / "check.sh").write_text(
        "#!/bin/sh\n"
        "echo \"check: pid=$$ host=$(hostname) etc=$(cat /etc/hostname)\"\n"
        "echo \"check: addr=$(ip -4 -o addr show dev eth0 | awk '{print $4}')\"\n"
        "echo \"check: $(ip route show default)\"\n"
        "echo \"check: resolv=$(tr '\\n' ';' < /etc/resolv.conf)\"\n"
        "echo \"check: release=$(cat /etc/banger-release)\"\n"
        "poweroff -f\n")
    (work / "check.sh").chmod(0o755)
    disk = tmp_path / "work.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(work), str(disk), "16M"], check=True, capture_output=True)
    append = ("root=/dev/vda banger.work=/dev/vdb banger.ip=172.16.0.5/24 banger.gw=172.16.0.1 "
              "banger.dns=172.16.0.1,9.9.9.9 banger.hostname=nettest banger.init=/root/check.sh")
    g = Guest(tmp_path / "vm", kernel_dir(root), append, disks=[(image_rootfs(root), True), (disk, True)],
              nic=True).start()
    try:
        assert g.wait_exit(timeout=60) == 0
        text = g.text()
        for line in ("check: pid=1 host=nettest etc=nettest", "check: addr=172.16.0.5/24",
                     "check: default via 172.16.0.1 dev eth0", "check: resolv=nameserver 172.16.0.1;nameserver 9.9.9.9;",
                     "check: release=tiny"):
            assert line in text, text[-2000:]
    finally:
        g.kill()


def test_initramfs_failure_prints_one_line_and_powers_off(tmp_path):
    root = imported_root(tmp_path / "root")
    g = Guest(tmp_path / "vm", kernel_dir(root), "root=/dev/vda banger.init=/nonexistent",
              disks=[(image_rootfs(root), True)]).start()
    try:
        g.wait_for("banger-init: no /nonexistent in the root filesystem", timeout=60)
        assert g.wait_exit(timeout=60) == 0
    finally:
        g.kill()
