"""Guest assets the integration and end-to-end tests share, made once and
cached: Debian's cloud kernel package (downloaded with apt-get), a catalog
with that kernel imported as `default` and the `tiny` image built (copied
into each test's --root), and a QEMU microvm launcher with the flags
shared/notes/platform.md found necessary under TCG.

The cache is $BANGER_TEST_CACHE (default REPO/build/test-cache).  The
catalog copy is keyed on the banger binary, so a changed import or recipe
is rebuilt, never served stale.  File locks make parallel test processes
share one download and one import.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from bangertest import BANGER, REPO

CACHE = Path(os.environ.get("BANGER_TEST_CACHE", REPO / "build" / "test-cache"))
KERNEL_META = "linux-image-cloud-amd64"
QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"


@contextlib.contextmanager
def _locked(name):
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _env():
    e = dict(os.environ, LC_ALL="C")
    e.pop("BANGER_ROOT", None)
    return e


def apt_kernel_package(meta=KERNEL_META):
    """The versioned package behind a kernel meta package."""
    out = subprocess.run(["apt-cache", "depends", meta], capture_output=True, text=True, check=True,
                         env=_env(), timeout=60).stdout
    for line in out.splitlines():
        line = line.strip().lstrip("|")
        if line.startswith("Depends: linux-image-"):
            return line.split()[1]
    raise AssertionError(f"apt-cache depends {meta} names no linux-image package:\n{out}")


def package_deb(package, pattern=None):
    """A .deb of package in the cache, downloaded once with apt-get."""
    pattern = pattern or f"{package}_*.deb"
    with _locked(f"deb-{package}"):
        found = sorted(CACHE.glob(pattern))
        if found:
            return found[-1]
        tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix=".download-"))
        try:
            r = subprocess.run(["apt-get", "download", "-q", package], cwd=tmp, capture_output=True, text=True,
                               env=_env(), timeout=600)
            debs = list(tmp.glob("*.deb"))
            assert r.returncode == 0 and debs, f"apt-get download {package}: {r.stderr}"
            dest = CACHE / debs[0].name
            os.rename(debs[0], dest)
            return dest
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def kernel_deb():
    """Debian's cloud kernel package (linux-image-*-cloud-amd64_*.deb), downloaded once."""
    found = sorted(CACHE.glob("linux-image-*-cloud-amd64_*.deb"))
    if found:
        return found[-1]
    return package_deb(apt_kernel_package(), "linux-image-*-cloud-amd64_*.deb")


def banger_run(root, *args, timeout=300):
    return subprocess.run([str(BANGER), "--root", str(root), *map(str, args)], capture_output=True, text=True,
                          env=_env(), timeout=timeout)


def _binary_key():
    """banger-full (which imports kernels and builds images) and the banger-agent its initramfs
    carries: a change to either makes a new catalog."""
    h = hashlib.sha256()
    for path in (BANGER.parent / "banger-full", BANGER.parent / "banger-agent"):
        if not path.exists():
            continue
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def catalog_root():
    """A --root with kernel `default` and image `tiny`, made once per banger binary."""
    root = CACHE / f"catalog-{_binary_key()}"
    done = root / ".complete"
    if done.exists():
        return root
    with _locked("catalog"):
        if done.exists():
            return root
        for old in CACHE.glob("catalog-*"):
            shutil.rmtree(old, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix=".catalog-"))
        try:
            for args in (("kernel", "import", "default", "--deb", kernel_deb()), ("image", "build", "tiny")):
                r = banger_run(tmp, *args)
                assert r.returncode == 0, f"banger {' '.join(map(str, args))}: {r.stderr}"
            (tmp / ".complete").write_text("")
            os.rename(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _copy_entry(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", "--sparse=always", str(src), str(dst)], check=True)


def imported_root(root, kernel=True, image=True):
    """Put kernel `default` and/or image `tiny` into --root root (copies of the cached ones); returns root."""
    root = Path(root)
    cache = catalog_root()
    if kernel:
        _copy_entry(cache / "state" / "kernels" / "default", root / "state" / "kernels" / "default")
    if image:
        _copy_entry(cache / "state" / "images" / "tiny", root / "state" / "images" / "tiny")
    return root


def kernel_dir(root, name="default"):
    return Path(root) / "state" / "kernels" / name


def image_rootfs(root, name="tiny"):
    return Path(root) / "state" / "images" / name / "rootfs.ext4"


# --- initramfs (gzip'd newc cpio) ----------------------------------------

def read_newc(path):
    """The entries of a gzip'd newc cpio: a list of (name, mode, rdev_major, rdev_minor, data)."""
    import gzip
    data = gzip.open(path).read()
    out, off = [], 0
    while True:
        h = data[off:off + 110]
        assert h[:6] == b"070701", f"bad newc header at {off}: {h[:6]!r}"
        f = [int(h[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off = (off + 110 + namesize + 3) & ~3
        body = data[off:off + size]
        off = (off + size + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, rmaj, rmin, body))


def modinfo(ko):
    """name= and depends= of an uncompressed module, from its .modinfo strings."""
    fields = {}
    for key in (b"name=", b"depends="):
        i = ko.find(b"\0" + key)
        if i >= 0:
            end = ko.index(b"\0", i + 1)
            fields[key[:-1].decode()] = ko[i + 1 + len(key):end].decode()
    deps = [d for d in fields.get("depends", "").split(",") if d]
    return fields.get("name"), deps


# --- QEMU -------------------------------------------------------------------

def tsc_khz():
    """The host's TSC rate in kHz, for tsc_early_khz= (platform.md: without it microvm hangs under TCG)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    raise AssertionError("no 'cpu MHz' in /proc/cpuinfo")


class Guest:
    """One QEMU microvm under TCG, no network (-nodefaults, no -netdev, and
    run under `unshare -n` anyway), serial console to a file, QMP on a socket."""

    def __init__(self, workdir, kdir, append="", disks=(), memory=256, nic=False):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "serial.log"
        self.qmp_path = self.dir / "qmp.sock"
        cmdline = (f"console=ttyS0 clocksource=jiffies tsc=unstable tsc_early_khz={tsc_khz()} panic=-1 "
                   f"{append}").strip()
        self.argv = ["unshare", "-n", QEMU, "-M", "microvm,pit=on,pic=on,rtc=on", "-accel", "tcg", "-cpu", "max",
                     "-m", str(memory), "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
                     "-no-reboot", "-serial", f"file:{self.log}",
                     "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                     "-kernel", str(Path(kdir) / "vmlinuz"), "-initrd", str(Path(kdir) / "initrd.img"),
                     "-append", cmdline]
        for i, d in enumerate(disks):
            path, snapshot = (d, False) if isinstance(d, (str, Path)) else d
            opts = f"file={path},format=raw,if=none,id=d{i}" + (",snapshot=on" if snapshot else "")
            self.argv += ["-drive", opts, "-device", f"virtio-blk-device,drive=d{i}"]
        if nic:   # a guest NIC with no peer: eth0 exists, nothing is created on the host
            self.argv += ["-device", "virtio-net-device,mac=52:54:00:12:34:56"]
        self.proc = None
        self.started = None

    def start(self):
        for stale in (self.log, self.qmp_path):
            stale.unlink(missing_ok=True)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=open(self.dir / "qemu.err", "wb"))
        return self

    def text(self):
        """The console so far, without colour escapes (systemd paints its status lines)."""
        raw = self.log.read_text(errors="replace") if self.log.exists() else ""
        return re.sub(r"\x1b\[[0-9;]*m", "", raw)

    def wait_for(self, needle, timeout=60):
        """Seconds from QEMU start until needle shows on the console."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {needle!r} on the console after {time.monotonic() - self.started:.1f}s "
                             f"(qemu {'exited ' + str(self.proc.returncode) if self.proc.poll() is not None else 'running'}):\n"
                             f"{self.text()[-3000:]}\n{(self.dir / 'qemu.err').read_text(errors='replace')}")

    def wait_exit(self, timeout=60):
        try:
            return self.proc.wait(max(0.0, self.started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"qemu still running after {timeout}s:\n{self.text()[-3000:]}")

    def qmp(self, command):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(str(self.qmp_path))
        f = s.makefile("rw")
        try:
            f.readline()
            for cmd in ("qmp_capabilities", command):
                f.write(json.dumps({"execute": cmd}) + "\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "return" in reply or "error" in reply:
                        break
            return reply
        finally:
            f.close()
            s.close()

    def powerdown(self, timeout=60, every=10):
        """Press the ACPI power button (QMP system_powerdown), again every `every`
        seconds: a press before the guest watches the button is lost.  Returns the
        seconds until QEMU exited."""
        t0 = time.monotonic()
        while True:
            self.qmp("system_powerdown")
            try:
                self.proc.wait(min(every, max(0.0, t0 + timeout - time.monotonic())))
                return time.monotonic() - t0
            except subprocess.TimeoutExpired:
                if time.monotonic() >= t0 + timeout:
                    raise AssertionError(f"qemu still running {timeout}s after system_powerdown:\n"
                                         f"{self.text()[-3000:]}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
