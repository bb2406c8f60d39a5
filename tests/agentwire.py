"""The agent framing (common/agent_proto.h) in Python, for tests: build and
parse frames, and a small blocking client that talks to banger-agent over
any connected socket (a socketpair with `banger-agent --fd N`, a QEMU
virtio-serial chardev socket, or a Firecracker vsock UDS after CONNECT)."""
import socket
import struct

MAX_BODY = 65536
MAX_DATA = 32768

T = dict(HELLO_REQ=1, HELLO=2, EXEC=3, STDIN=4, EOF=5, SIGNAL=6, WINDOW=7, STARTED=8, STDOUT=9, STDERR=10, RESIZE=18,
         EXIT=11, ERROR=12, STATS_REQ=13, STATS=14, WRITE=15, DONE=16, SHUTDOWN=17)
TNAME = {v: k for k, v in T.items()}
F = dict(ID=1, VERSION=2, AGENT=3, KERNEL=4, BOOT_MS=5, INIT_US=6, START_US=7, NOW_US=8, ARG=9, ENV=10, CWD=11,
         TTY=12, ROWS=13, COLS=14, WINDOW=15, DATA=16, N=17, PID=18, CODE=19, SIGNO=20, ERRNO=21, MSG=22, PATH=23,
         MODE=24, UID=25, GID=26, LAST=27, HOSTNAME=28, STAGE=29,
         S_UPTIME_MS=40, S_CPU_USER=41, S_CPU_SYSTEM=42, S_CPU_IDLE=43, S_CPUS=44, S_MEM_TOTAL=45, S_MEM_AVAIL=46,
         S_LOAD1=47, S_LOAD5=48, S_LOAD15=49, S_DISK_READ=50, S_DISK_WRITE=51, S_NET_RX=52, S_NET_TX=53,
         S_PROCS=54, S_ROOT_TOTAL=55, S_ROOT_FREE=56, S_EXECS=57, S_LAST_EXEC_MS=58)
FNAME = {v: k for k, v in F.items()}
INTS = {"ID", "VERSION", "BOOT_MS", "INIT_US", "START_US", "NOW_US", "TTY", "ROWS", "COLS", "WINDOW", "N", "PID",
        "CODE", "SIGNO", "ERRNO", "MODE", "UID", "GID", "LAST", "STAGE"}


def field(name, value):
    tag = F[name]
    if isinstance(value, int):
        b = struct.pack(">Q", value)
    elif isinstance(value, str):
        b = value.encode()
    else:
        b = bytes(value)
    return struct.pack(">BH", tag, len(b)) + b


def frame(typ, *fields):
    body = bytes([T[typ]]) + b"".join(field(k, v) for k, v in fields)
    return struct.pack(">I", len(body)) + body


def parse(body):
    """(type name, [(field name, value)]) of one body; ints decoded for int fields and S_*."""
    typ = TNAME.get(body[0], body[0])
    out, pos = [], 1
    while pos < len(body):
        tag, n = struct.unpack(">BH", body[pos:pos + 3])
        v = body[pos + 3:pos + 3 + n]
        assert len(v) == n, "field past the body"
        name = FNAME.get(tag, tag)
        if isinstance(name, str) and (name in INTS or name.startswith("S_")) and n == 8:
            v = struct.unpack(">Q", v)[0]
        out.append((name, v))
        pos += 3 + n
    return typ, out


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, typ, *fields):
        self.sock.sendall(frame(typ, *fields))

    def recv(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                assert 0 < n <= MAX_BODY, f"bad frame length {n}"
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    typ, fields = parse(body)
                    return typ, fields
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("agent connection closed")
            self.buf += chunk

    def recv_type(self, want):
        while True:
            typ, fields = self.recv()
            if typ == want:
                return dict(fields)

    def exec(self, argv, stdin=b"", id=1, env=(), window=1 << 20):
        """Run argv; returns (exit code or -signal, stdout, stderr) or raises on ERROR."""
        self.send("EXEC", ("ID", id), *[("ARG", a) for a in argv], *[("ENV", e) for e in env],
                  ("WINDOW", window))
        out, err = bytearray(), bytearray()
        credit = 0
        pending = bytes(stdin)
        eof_sent = False
        while True:
            typ, fields = self.recv()
            d = dict(fields)
            if d.get("ID") != id:
                continue
            if typ == "ERROR":
                raise OSError(d["ERRNO"], d["MSG"].decode())
            if typ == "WINDOW":
                credit += d["N"]
            elif typ == "STDOUT":
                out += d["DATA"]
                self.send("WINDOW", ("ID", id), ("N", len(d["DATA"])))
            elif typ == "STDERR":
                err += d["DATA"]
                self.send("WINDOW", ("ID", id), ("N", len(d["DATA"])))
            elif typ == "EXIT":
                return (d["CODE"] if "CODE" in d else -d["SIGNO"]), bytes(out), bytes(err)
            while pending and credit:
                n = min(len(pending), credit, MAX_DATA)
                self.send("STDIN", ("ID", id), ("DATA", pending[:n]))
                pending, credit = pending[n:], credit - n
            if not pending and not eof_sent and typ in ("STARTED", "WINDOW"):
                self.send("EOF", ("ID", id))
                eof_sent = True


def socketpair():
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
