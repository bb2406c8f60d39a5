"""Helpers for banger's integration tests: build paths, a bangerd process
per test root, and a tiny HTTP client for the daemon's Unix socket."""
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("BANGER_BUILD", REPO / "build"))
BANGER = BUILD / "bin" / "banger"
BANGERD = BUILD / "bin" / "bangerd"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("banger", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(str(self.unix_path))
        self.sock = s


def wait_for(pred, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Daemon:
    """One bangerd with its own --root.  Stopping it never touches VMs."""

    def __init__(self, root: Path, faults: str = "", resync: float = 0.2, extra=(), driver="fake", netns=False,
                 prefix=None, netns_name=None):
        self.root = Path(root)
        self.faults = faults
        self.resync = resync
        self.extra = list(extra)
        self.driver = driver
        # Real guests run in a network namespace of the test's own, so
        # nothing they do can touch the machine's network.
        self.netns = netns
        self.prefix = prefix   # a full command prefix, e.g. a mount namespace wrapper
        # A named namespace (`ip netns add`, the test's own) that every
        # start of this daemon enters: taps and rules outlive a restart there.
        self.netns_name = netns_name
        self.proc = None
        self.log = self.root / "bangerd.log"

    @property
    def socket(self):
        return self.root / "run" / "bangerd.sock"

    @property
    def sandboxes(self):
        d = self.root / "config" / "sandboxes"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def start(self, wait=True):
        env = dict(os.environ)
        env.pop("BANGER_ROOT", None)
        if self.faults:
            env["BANGER_FAULTS"] = self.faults
        else:
            env.pop("BANGER_FAULTS", None)
        self.root.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")
        if self.prefix:
            prefix = self.prefix
        elif self.netns_name:
            prefix = ["ip", "netns", "exec", self.netns_name]
        else:
            prefix = ["unshare", "-n"] if self.netns else []
        self.proc = subprocess.Popen(
            [*prefix, str(BANGERD), "--root", str(self.root), "--foreground", "--driver", self.driver,
             "--resync", str(self.resync), "--log-level", "debug", *self.extra],
            stdout=logf, stderr=logf, env=env)
        logf.close()
        if wait:
            wait_for(self.ready, timeout=10, what="bangerd socket")
        return self

    def check_log(self):
        """Fail on anything the sanitizers reported from this daemon."""
        if self.log.exists():
            text = self.log.read_text(errors="replace")
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                assert marker not in text, f"bangerd: {marker}: {text[text.index(marker) - 200:][:3000]}"

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"bangerd exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        try:
            return self.get("/v1/version")[0] == 200
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait_exit(self, timeout=15):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"bangerd did not exit: {self.log.read_text()[-2000:]}")

    def get(self, path):
        c = UnixHTTPConnection(self.socket)
        try:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            ctype = r.getheader("Content-Type", "")
            if "ndjson" in ctype:
                return r.status, [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            return r.status, json.loads(body) if body else None
        finally:
            c.close()

    def sandbox(self, name):
        status, body = self.get(f"/v1/sandboxes/{name}")
        return body if status == 200 else None

    def phase(self, name):
        sb = self.sandbox(name)
        return sb["status"]["phase"] if sb else None

    def events(self, since=0):
        return self.get(f"/v1/events?since={since}")[1]

    def wait_phase(self, name, phase, timeout=15):
        return wait_for(lambda: self.phase(name) == phase and self.sandbox(name),
                        timeout=timeout, what=f"{name} to be {phase}")

    def wait_converged(self, name, timeout=15):
        def ok():
            sb = self.sandbox(name)
            if not sb:
                return None
            conds = {c["type"]: c["status"] for c in sb["status"]["conditions"]}
            return sb if conds.get("Converged") == "True" else None
        return wait_for(ok, timeout=timeout, what=f"{name} to converge")

    def wait_gone(self, name, timeout=15):
        return wait_for(lambda: self.sandbox(name) is None, timeout=timeout, what=f"{name} to be deleted")

    def fake_vms(self):
        d = self.root / "run" / "fake"
        return sorted(p.name[:-3] for p in d.glob("*.vm")) if d.exists() else []

    def fake_disks(self):
        d = self.root / "state" / "fake"
        return sorted(p.name for p in d.iterdir()) if d.exists() else []

    def fake_vm_exit(self, sid, status):
        """Make a fake VM die with status, in one step (write + rename), as
        a VMM's exit is one event; an in-place rewrite could be read half
        done."""
        d = self.root / "run" / "fake"
        tmp = d / f".{sid}.exit"
        tmp.write_text(f"exited {status}\n")
        os.rename(tmp, d / f"{sid}.vm")

    def write_spec(self, filename, text):
        """Write atomically, as editors and banger apply do."""
        tmp = self.sandboxes / f".{filename}.tmp"
        tmp.write_text(text)
        os.rename(tmp, self.sandboxes / filename)


def spec(name, **fields):
    lines = ["apiVersion: banger/v1", "kind: Sandbox", "metadata:", f"  name: {name}"]
    if fields:
        lines.append("spec:")
        for k, v in fields.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            lines.append(f"  {k}: {v}")
    return "\n".join(lines) + "\n"


def banger(root, *args, input=None, timeout=60, env=None):
    e = dict(os.environ)
    e.pop("BANGER_ROOT", None)
    if env:
        e.update(env)
    return subprocess.run([str(BANGER), "--root", str(root), *args], input=input, capture_output=True,
                          text=True, timeout=timeout, env=e)
