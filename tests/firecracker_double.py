#!/usr/bin/python3
"""firecracker_double: a stand-in for the `firecracker` binary in tests.

Firecracker cannot run on banger's build machines (no binary, no usable
KVM), so the driver is exercised against this double.  It takes the same
command line (`--api-sock PATH --id ID`), serves HTTP/1.1 on that Unix
socket, and checks EVERY request against Firecracker's own API description
(tests/firecracker/firecracker-api.yaml, Swagger 2.0, converted here to
JSON Schema): the path and method must exist, the body must match the
operation's schema with every $ref resolved, objects refuse unknown fields
(Firecracker's serde `deny_unknown_fields`), required fields and enums are
enforced, path ids must match the body.  On top of the schema it keeps the
state rules that matter to a driver: pre-boot resources are refused after
InstanceStart, InstanceStart needs boot-source and machine-config (stricter
than Firecracker, which defaults the machine to 1 vCPU / 128 MiB), files
named by boot-source, drives, logger and metrics must exist (Firecracker
opens them at PUT time; the logger does not create its file), the vsock
UDS is bound at PUT /vsock and must not exist, and the API socket itself
must not exist at start.  Refusals are 400 {"fault_message": "..."}.

After InstanceStart it "runs": a few kernel lines on stdout (the serial
console), then it idles until SendCtrlAltDel (exits 0 shortly after),
SIGTERM or SIGKILL.

Environment:
  FC_API_SPEC               the API description (default: REPO/tests/firecracker/firecracker-api.yaml)
  FC_DOUBLE_LOG             append every request as a JSON line {id, method, path, body, status}
  FC_DOUBLE_FAIL            "PUT /machine-config" (comma-separated list): fail that request
  FC_DOUBLE_FAULT           the fault_message of those failures (default: "injected failure")
  FC_DOUBLE_EXIT_AFTER_START=1   exit 1 right after acknowledging InstanceStart
  FC_DOUBLE_IGNORE_CTRLALTDEL=1  a guest without i8042: SendCtrlAltDel is acknowledged, nothing happens
  FC_DOUBLE_AGENT           a banger-agent binary: once booted with `banger.agent=vsock:PORT` on the
                            kernel line, the vsock UDS answers Firecracker's host-initiated handshake
                            (`CONNECT PORT\n` -> `OK <host port>\n`; any other port is closed, as by a
                            guest with no listener) and hands the connection to that agent (`--fd`);
                            the agent's "power off" (exit 64) halts the VM
"""

import ctypes
import json
import os
import re
import socket
import subprocess
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

import jsonschema
import yaml

MAX_PAYLOAD = 51200
EXIT_ARG_PARSING = 153   # FcExitCode::ArgParsing
POST_BOOT = "The requested operation is not supported after starting the microVM."
PRE_BOOT = "The requested operation is not supported before starting the microVM."
DESERIALIZE = "An error occurred when deserializing the json body of a request: "

# Operations Firecracker accepts only after InstanceStart; every other
# PUT except /mmds and /actions is pre-boot only.
POST_BOOT_ONLY = {("PATCH", "/drives/{drive_id}"), ("PATCH", "/network-interfaces/{iface_id}"),
                  ("PATCH", "/pmem/{id}"), ("PATCH", "/vm"), ("PUT", "/snapshot/create"),
                  ("PATCH", "/balloon"), ("PATCH", "/balloon/statistics"), ("PATCH", "/hotplug/memory"),
                  ("PATCH", "/balloon/hinting/start"), ("PATCH", "/balloon/hinting/stop")}
ANYTIME = {("PUT", "/mmds"), ("PATCH", "/mmds"), ("PUT", "/actions")}


# ---- the API description -------------------------------------------------

class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML 1.2 booleans only: Swagger's `Off` (Logger.level) is a string."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def spec_path():
    if os.environ.get("FC_API_SPEC"):
        return os.environ["FC_API_SPEC"]
    repo = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    return os.path.join(repo, "tests", "firecracker", "firecracker-api.yaml")


def to_json_schema(node):
    """Swagger 2.0 schema -> draft-4 JSON Schema; objects are closed unless
    the description says otherwise (Firecracker denies unknown fields)."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in ("example", "readOnly", "discriminator", "xml", "externalDocs"):
            continue
        if k == "properties":
            out[k] = {name: to_json_schema(s) for name, s in v.items()}
        else:
            out[k] = to_json_schema(v)
    if (out.get("type") == "object" or "properties" in out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


class Operation:
    def __init__(self, method, template, op):
        self.method, self.template = method, template
        self.regex = re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")
        self.body = None
        self.body_required = False
        self.path_params = []
        for p in op.get("parameters", []):
            if p.get("in") == "body":
                self.body = p.get("schema", {})
                self.body_required = bool(p.get("required"))
            elif p.get("in") == "path":
                self.path_params.append(p["name"])


class Api:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            doc = yaml.load(f, Loader=_Loader)
        self.version = str(doc["info"]["version"])
        self.definitions = to_json_schema(doc.get("definitions", {}))
        self.ops = []
        for template, item in doc["paths"].items():
            for method, op in item.items():
                if method in ("get", "put", "patch", "post", "delete"):
                    self.ops.append(Operation(method.upper(), template, op))
        self.validators = {}

    def find(self, method, path):
        """(operation, path params) or (None, None)."""
        for op in self.ops:
            m = op.regex.match(path)
            if m and op.method == method:
                return op, m.groupdict()
        return None, None

    def validate(self, op, body):
        """None when body fits op's schema, else the reason."""
        v = self.validators.get(id(op))
        if v is None:
            schema = dict(to_json_schema(op.body))
            schema["definitions"] = self.definitions
            v = self.validators[id(op)] = jsonschema.Draft4Validator(schema)
        errors = sorted(v.iter_errors(body), key=lambda e: list(e.absolute_path))
        if not errors:
            return None
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path)
        return (where + ": " if where else "") + e.message


# ---- the microVM's state -----------------------------------------------

class Vm:
    def __init__(self, instance_id, version):
        self.lock = threading.Lock()
        self.id, self.version = instance_id, version
        self.started = False
        self.logger = self.metrics = None
        self.boot_source = self.machine = self.vsock = None
        self.vsock_listener = None
        self.drives = {}
        self.other = {}


class Refused(Exception):
    pass


def tap_exists(name):
    """Whether a link named name exists in this process's network namespace.
    /proc/self/net follows the namespace; /sys/class/net follows the one sysfs
    was mounted in, which under `unshare -n` alone is still the host's."""
    with open("/proc/self/net/dev") as f:
        return any(line.split(":", 1)[0].strip() == name for line in f.readlines()[2:])


def must_open(path, what, write=True):
    try:
        fd = os.open(path, (os.O_RDWR if write else os.O_RDONLY) | os.O_NONBLOCK | os.O_CLOEXEC)
        os.close(fd)
    except OSError as e:
        raise Refused(f"{what}: {e.strerror} (os error {e.errno}): {path}")


def apply(vm, op, params, body):
    """Firecracker's semantic checks and state changes for a valid request.
    Returns the JSON answer for a GET, None for 204; raises Refused."""
    key = (op.method, op.template)
    if op.method != "GET" and key not in ANYTIME:
        if vm.started and key not in POST_BOOT_ONLY:
            raise Refused(POST_BOOT)
        if not vm.started and key in POST_BOOT_ONLY:
            raise Refused(PRE_BOOT)
    for name, value in params.items():
        if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", value):
            raise Refused(f"Invalid ID: {value}. API Resource IDs can only contain alphanumeric characters and underscores.")
        if isinstance(body, dict) and name in body and body[name] != value:
            raise Refused(f"The id from the path [{value}] does not match the id from the body [{body[name]}]!")

    t = op.template
    if op.method == "GET":
        if t == "/":
            return {"app_name": "Firecracker", "id": vm.id, "vmm_version": vm.version,
                    "state": "Running" if vm.started else "Not started"}
        if t == "/version":
            return {"firecracker_version": vm.version}
        if t == "/machine-config":
            return vm.machine or {"vcpu_count": 1, "mem_size_mib": 128, "smt": False, "track_dirty_pages": False}
        if t == "/vm/config":
            return {"boot-source": vm.boot_source, "machine-config": vm.machine, "drives": list(vm.drives.values()),
                    "vsock": vm.vsock, "logger": vm.logger, "network-interfaces": []}
        raise Refused(f"firecracker_double: GET {t} is not emulated")
    if t == "/logger":
        if vm.logger is not None:
            raise Refused("Logger initialization failure: the logger was already initialized")
        must_open(body["log_path"], "Logger initialization failure")
        vm.logger = body
        with open(body["log_path"], "a", encoding="utf-8") as f:
            f.write(f"Running Firecracker v{vm.version}\n")
    elif t == "/metrics":
        must_open(body["metrics_path"], "Metrics initialization failure")
        vm.metrics = body
    elif t == "/machine-config":
        cfg = dict(body)
        if cfg.get("mem_size_mib", 1) <= 0:
            raise Refused("The memory size (MiB) is invalid.")
        if cfg.get("smt") and cfg["vcpu_count"] > 1 and cfg["vcpu_count"] % 2:
            raise Refused("The vCPU number is invalid! The vCPU number can only be 1 or an even number when SMT is enabled.")
        if cfg.get("huge_pages") == "2M" and cfg["mem_size_mib"] % 2:
            raise Refused("Memory size must be a multiple of the huge page size (2 MiB).")
        vm.machine = cfg
    elif t == "/boot-source":
        must_open(body["kernel_image_path"], "The kernel file cannot be opened", write=False)
        if "initrd_path" in body:
            must_open(body["initrd_path"], "The initrd file cannot be opened", write=False)
        vm.boot_source = body
    elif t == "/drives/{drive_id}":
        if ("path_on_host" in body) == ("socket" in body):
            raise Refused("Unable to create the block device: give exactly one of path_on_host and socket")
        if body.get("is_root_device") and any(d.get("is_root_device") for k, d in vm.drives.items()
                                               if k != body["drive_id"]):
            raise Refused("A root block device already exists!")
        if "path_on_host" in body:
            must_open(body["path_on_host"], "Unable to create the virtio block device: BackingFile",
                      write=not body.get("is_read_only", False))
        vm.drives[body["drive_id"]] = body
    elif t == "/network-interfaces/{iface_id}":
        # Firecracker opens the tap in its own network namespace.
        if not tap_exists(body["host_dev_name"]):
            raise Refused(f"Could not create the network device: Open tap device failed: {body['host_dev_name']}")
        vm.other[t + params["iface_id"]] = body
    elif t == "/vsock":
        if body["guest_cid"] > 0xFFFFFFFF:
            raise Refused(DESERIALIZE + "guest_cid: invalid value, expected u32")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(body["uds_path"])
            s.listen(8)
        except OSError as e:
            s.close()
            raise Refused(f"Cannot create backend for vsock device: UnixBind({e.strerror} (os error {e.errno}))")
        if vm.vsock_listener:
            vm.vsock_listener.close()
            os.unlink(vm.vsock["uds_path"])
        vm.vsock, vm.vsock_listener = body, s
    elif t == "/actions":
        return action(vm, body["action_type"])
    elif t in ("/snapshot/create", "/snapshot/load", "/vm"):
        raise Refused(f"firecracker_double: {op.method} {t} is not emulated")
    else:
        vm.other[t] = body
    return None


def action(vm, kind):
    if kind == "InstanceStart":
        if vm.started:
            raise Refused(POST_BOOT)
        if vm.boot_source is None:
            raise Refused("Cannot start microvm without kernel configuration.")
        if vm.machine is None:
            raise Refused("firecracker_double: InstanceStart before PUT /machine-config (banger always sizes the VM)")
        vm.started = True
        return "start"
    if not vm.started:
        raise Refused(PRE_BOOT)
    if kind == "SendCtrlAltDel":
        return None if os.environ.get("FC_DOUBLE_IGNORE_CTRLALTDEL") == "1" else "halt"
    if kind == "FlushMetrics" and vm.metrics is None:
        raise Refused("The metrics system is not initialized.")
    return None


# ---- the "guest" --------------------------------------------------------

def console(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def boot(vm):
    args = vm.boot_source.get("boot_args", "")
    console("[    0.000000] Linux version 6.1.0-double (firecracker_double) #1 SMP")
    console(f"[    0.000000] Command line: {args}")
    console(f"[    0.010000] smpboot: Allowing {vm.machine['vcpu_count']} CPUs")
    for i, d in enumerate(sorted(vm.drives.values(), key=lambda d: not d.get("is_root_device"))):
        console(f"[    0.020000] virtio_blk virtio{i}: [vd{chr(97 + i)}] {d['drive_id']}")
    console("[    0.030000] Run /init as init process")
    m = re.search(r"banger\.agent=vsock:(\d+)", args)
    if m and vm.vsock_listener and os.environ.get("FC_DOUBLE_AGENT"):
        serve_vsock(vm, int(m.group(1)), os.environ["FC_DOUBLE_AGENT"])


def serve_vsock(vm, port, agent):
    """The guest side of Firecracker's vsock UDS for the agent's port."""
    def pdeathsig():
        ctypes.CDLL(None).prctl(1, 9)   # PR_SET_PDEATHSIG, SIGKILL: the guest dies with its VMM

    def one(conn):
        conn.settimeout(2)
        line = b""
        try:
            while not line.endswith(b"\n") and len(line) < 64:
                chunk = conn.recv(1)
                if not chunk:
                    return conn.close()
                line += chunk
        except OSError:
            return conn.close()
        m = re.fullmatch(rb"CONNECT (\d+)\n", line)
        if not m or int(m.group(1)) != port:
            return conn.close()   # nothing listens there: Firecracker closes
        conn.settimeout(None)
        conn.sendall(b"OK 1073741824\n")
        p = subprocess.Popen([agent, "--fd", str(conn.fileno())], pass_fds=[conn.fileno()], preexec_fn=pdeathsig)
        conn.close()
        if p.wait() == 64:
            console("[    2.000000] reboot: Power down")
            halt_soon(0, 0.02)

    def run():
        while True:
            try:
                conn, _ = vm.vsock_listener.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()
    threading.Thread(target=run, daemon=True).start()


def halt_soon(status, delay):
    def run():
        time.sleep(delay)
        if status == 0:
            console("[    1.000000] reboot: Restarting system")
        os._exit(status)
    threading.Thread(target=run, daemon=True).start()


# ---- HTTP ---------------------------------------------------------------

def record(vm, method, path, body, status, t0):
    """One JSON line per request; ms is the double's own handling time."""
    log = os.environ.get("FC_DOUBLE_LOG")
    if not log:
        return
    ms = round((time.monotonic() - t0) * 1000, 3)
    line = json.dumps({"id": vm.id, "method": method, "path": path, "body": body, "status": status,
                       "ms": ms}) + "\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def injected(method, path):
    want = [w.strip() for w in os.environ.get("FC_DOUBLE_FAIL", "").split(",") if w.strip()]
    return f"{method} {path}" in want


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Firecracker API"
    sys_version = ""

    def log_message(self, *args):
        pass

    def address_string(self):
        return "unix"

    def reply(self, status, obj=None):
        data = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        try:
            self.end_headers()
            if data:
                self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True   # the client left; the VM goes on

    def handle_any(self):
        vm, api = self.server.vm, self.server.api
        method, path = self.command, self.path.split("?", 1)[0]
        body, status, after, t0 = None, 400, None, time.monotonic()
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.close_connection = True
                raise Refused("Unsupported transfer encoding: chunked")
            n = int(self.headers.get("Content-Length", "0") or 0)
            if n > MAX_PAYLOAD:
                self.close_connection = True
                raise Refused(f"Request payload with size {n} is larger than the limit of {MAX_PAYLOAD} allowed by server.")
            raw = self.rfile.read(n) if n else b""
            body = raw.decode("utf-8", "replace") if raw else None
            op, params = api.find(method, path)
            if op is None:
                raise Refused(f"Invalid request method and/or path: {method} {path}.")
            if raw:
                if op.body is None:
                    raise Refused(f"{method} {path} takes no body.")
                try:
                    body = json.loads(raw)
                except ValueError as e:
                    raise Refused(DESERIALIZE + str(e))
                checked = body
                if op.template == "/logger" and isinstance(body, dict) and isinstance(body.get("level"), str):
                    checked = dict(body, level=body["level"].capitalize())   # Firecracker: case-insensitive
                why = api.validate(op, checked)
                if why:
                    raise Refused(DESERIALIZE + why)
            elif op.body_required:
                raise Refused(f"Empty {method} request.")
            if injected(method, path):
                raise Refused(os.environ.get("FC_DOUBLE_FAULT", "injected failure"))
            with vm.lock:
                answer = apply(vm, op, params or {}, body)
            if answer in ("start", "halt"):
                after, answer = answer, None
            status = 200 if method == "GET" else 204
        except Refused as e:
            answer = {"fault_message": str(e)}
        # Recorded before the answer goes out: a client that kills the VMM
        # on a refusal must still find the request in the log.
        record(vm, method, path, body, status, t0)
        self.reply(status, answer)
        if after == "start":
            if os.environ.get("FC_DOUBLE_EXIT_AFTER_START") == "1":
                os._exit(1)
            boot(vm)
        elif after == "halt":
            halt_soon(0, 0.02)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = do_HEAD = do_OPTIONS = handle_any


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False

    def handle_error(self, request, client_address):
        sys.stderr.write(f"firecracker_double: api connection error: {sys.exc_info()[1]!r}\n")


# ---- command line -------------------------------------------------------

def parse_args(argv):
    opts = {"api-sock": "/run/firecracker.socket", "id": "anonymous-instance"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--api-sock", "--id"):
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                die(f"Arguments parsing error: The argument '{a}' requires a value, but none was supplied", EXIT_ARG_PARSING)
            opts[a[2:]] = argv[i + 1]
            i += 2
        elif a == "--version":
            print("Firecracker v" + Api(spec_path()).version)
            sys.exit(0)
        else:
            die(f"Arguments parsing error: Found argument '{a}' which wasn't expected, or isn't valid in this context.",
                EXIT_ARG_PARSING)
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", opts["id"]):
        die(f"Invalid instance ID: {opts['id']}", EXIT_ARG_PARSING)
    return opts


def die(msg, status=1):
    sys.stderr.write(msg + "\n")
    sys.exit(status)


def main():
    opts = parse_args(sys.argv[1:])
    api = Api(spec_path())
    sock = opts["api-sock"]
    if os.path.lexists(sock):
        die(f"Failed to open the API socket at: {sock}. Check that it is not already used.")
    server = Server(sock, Handler)
    server.vm, server.api = Vm(opts["id"], api.version), api
    server.serve_forever(poll_interval=3600)


if __name__ == "__main__":
    main()
