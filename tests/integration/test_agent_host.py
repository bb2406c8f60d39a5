"""bangerd's side of the guest agent, without guests: the fake driver gives
each sandbox an agent channel (BANGER_FAKE_AGENT=1) where these tests
listen, either serving the real banger-agent binary on the host (`--fd`)
or playing a hostile agent: one that never answers, sends oversized or
malformed frames, floods output, or hangs up in the middle of an exec.
bangerd must report each case clearly and stay unaffected."""
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bangertest import BANGER, BUILD, Daemon, banger, spec, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import agentwire as aw  # noqa: E402

AGENT = BUILD / "bin" / "banger-agent"


class FakeChannel:
    """A listening socket at a sandbox's agent.sock; each connection bangerd
    makes is handed to behaviour(conn) in a thread."""

    def __init__(self, path, behaviour):
        self.path = Path(path)
        self.behaviour = behaviour
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.stop = False
        self.connections = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            self.behaviour(c)
        except (OSError, EOFError):
            pass   # bangerd closed this connection: what several tests want
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def real_agent(c):
    """The real banger-agent on the host, speaking over this connection."""
    p = subprocess.Popen([str(AGENT), "--fd", str(c.fileno())], pass_fds=[c.fileno()])
    p.wait(120)


@pytest.fixture
def fake_daemon(tmp_path, monkeypatch):
    monkeypatch.setenv("BANGER_FAKE_AGENT", "1")
    monkeypatch.setenv("BANGER_AGENT_HELLO_MS", "1500")
    monkeypatch.setenv("BANGER_AGENT_START_MS", "2000")
    monkeypatch.setenv("BANGER_AGENT_POLL_MS", "300")
    d = Daemon(tmp_path / "root", resync=0.3)
    d.start()
    channels = []

    def channel(name, behaviour, **fields):
        d.write_spec(f"{name}.yaml", spec(name, **fields))
        sb = d.wait_converged(name)
        path = d.root / "run" / "vms" / sb["metadata"]["id"] / "agent.sock"
        wait_for(path.parent.exists, what="agent dir")
        ch = FakeChannel(path, behaviour)
        channels.append(ch)
        return ch

    d.channel = channel
    yield d
    for ch in channels:
        ch.close()
    d.stop()
    d.check_log()


def ready(d, name):
    conds = {c["type"]: c for c in d.sandbox(name)["status"]["conditions"]}
    return conds["Ready"]


def wait_ready(d, name, status="True", contains="", timeout=15):
    return wait_for(lambda: ready(d, name)["status"] == status and contains in ready(d, name)["message"]
                    and ready(d, name), timeout=timeout, what=f"Ready {status} {contains!r}")


def run_exec(d, name, *cmd, stdin=b""):
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    return subprocess.run([str(BANGER), "--root", str(d.root), "vm", "exec", name, "--", *cmd], input=stdin,
                          capture_output=True, timeout=60, env=env)


def hello_then(after):
    """Answer the hello request properly, then run after(conn)."""
    def behaviour(c):
        conn = aw.Conn(c)
        typ, _ = conn.recv()
        assert typ == "HELLO_REQ"
        conn.send("HELLO", ("VERSION", 1), ("AGENT", "fake"), ("KERNEL", "6.1-fake"), ("NOW_US", 1))
        after(conn)
    return behaviour


def test_real_agent_on_the_host_serves_exec_and_stats_through_the_api(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    sb = wait_ready(d, "web")
    assert sb["message"] == ""
    assert d.sandbox("web")["status"]["agent"]["protocol"] == 1
    r = run_exec(d, "web", "sh", "-c", "cat; echo done >&2; exit 5", stdin=b"\0\1binary\xff" * 50000)
    assert r.returncode == 5
    assert r.stdout == b"\0\1binary\xff" * 50000 and r.stderr == b"done\n"
    r = banger(d.root, "vm", "stats", "web", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["memory"]["totalBytes"] > 0


def test_exec_with_a_tty_runs_on_a_pseudo_terminal(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    wait_ready(d, "web")
    env = dict(os.environ, TERM="vt100")
    env.pop("BANGER_ROOT", None)
    r = subprocess.run([str(BANGER), "--root", str(d.root), "vm", "exec", "-t", "-e", "FOO=bar", "-w", "/tmp", "web",
                        "--", "sh", "-c", "tty; echo $TERM $FOO; pwd; echo err >&2; exit 3"],
                       capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 3
    lines = r.stdout.decode().replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/")
    assert lines[1:] == ["vt100 bar", "/tmp", "err"]   # stderr shares the terminal
    r = run_exec(d, "web", "tty")
    assert r.returncode == 1 and r.stdout == b"not a tty\n"


def test_agent_that_never_answers_is_not_ready_with_a_reason_and_stays_running(fake_daemon):
    d = fake_daemon
    silent = threading.Event()
    d.channel("web", lambda c: silent.wait(30))
    wait_ready(d, "web", "False", "waiting for the guest agent's hello")
    wait_ready(d, "web", "False", "no hello from the guest agent within 1 s")
    assert d.phase("web") == "Running"
    r = banger(d.root, "vm", "exec", "web", "--", "true")
    assert r.returncode == 1 and "not ready" in r.stderr
    r = banger(d.root, "vm", "stats", "web")
    assert r.returncode == 1 and "not ready" in r.stderr
    silent.set()


def test_oversized_frame_from_the_guest_closes_its_connection(fake_daemon):
    d = fake_daemon

    def oversized(conn):
        conn.sock.sendall(struct.pack(">I", 70000) + b"\x02" + b"x" * 1000)
        time.sleep(5)

    ch = d.channel("web", hello_then(oversized))
    wait_ready(d, "web", "False", "oversized frame (70000 bytes, at most 65536)")
    assert d.phase("web") == "Running"
    wait_for(lambda: ch.connections >= 2, what="a reconnect")   # and bangerd tries again
    assert d.get("/v1/version")[0] == 200


def test_malformed_frames_from_the_guest_are_refused(fake_daemon):
    d = fake_daemon

    def malformed(conn):
        # a field whose length runs past the end of its frame
        conn.sock.sendall(struct.pack(">I", 5) + bytes([2, 4, 0, 200, ord("x")]))
        time.sleep(5)

    d.channel("web", hello_then(malformed))
    wait_ready(d, "web", "False", "malformed frame")
    assert d.phase("web") == "Running"


def test_output_past_the_granted_window_is_refused(fake_daemon):
    d = fake_daemon

    def flood(conn):
        typ, fields = conn.recv()
        assert typ == "EXEC"
        sid = dict(fields)["ID"]
        conn.send("STARTED", ("ID", sid), ("PID", 42))
        chunk = b"y" * aw.MAX_DATA
        for _ in range(80):   # 2.5 MiB, far past the 1 MiB window
            conn.send("STDOUT", ("ID", sid), ("DATA", chunk))
        time.sleep(5)

    d.channel("web", hello_then(flood))
    wait_ready(d, "web")
    # Nobody reads the client's stdout until bangerd has seen the flood:
    # the client blocks on the full pipe and grants no more credit, so the
    # guest's 2.5 MiB must overrun the window (a client that keeps up would
    # rightly keep granting, and then there is no violation to see).
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    p = subprocess.Popen([str(BANGER), "--root", str(d.root), "vm", "exec", "web", "--", "yes"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        wait_ready(d, "web", "False", "more output than it was granted")
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 1
    assert b"more output than it was granted" in err
    assert 0 < len(out) < 80 * aw.MAX_DATA


def test_connection_closed_mid_stream_ends_exec_with_an_error(fake_daemon):
    d = fake_daemon

    def hangup(conn):
        typ, fields = conn.recv()
        assert typ == "EXEC"
        sid = dict(fields)["ID"]
        conn.send("STARTED", ("ID", sid), ("PID", 42))
        conn.send("STDOUT", ("ID", sid), ("DATA", b"partial output\n"))
        time.sleep(0.3)
        conn.sock.shutdown(socket.SHUT_RDWR)

    d.channel("web", hello_then(hangup))
    wait_ready(d, "web")
    r = run_exec(d, "web", "sleep", "100")
    assert r.returncode == 1
    assert r.stdout == b"partial output\n"
    assert b"agent connection closed" in r.stderr
    # bangerd is fine and reconnects
    assert d.get("/v1/version")[0] == 200


def test_client_going_away_kills_the_process_in_the_guest(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    wait_ready(d, "web")
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    marker = d.root / "marker"
    p = subprocess.Popen([str(BANGER), "--root", str(d.root), "vm", "exec", "web", "--", "sh", "-c",
                          f"echo $$ > {marker}; exec sleep 100"], env=env)
    wait_for(lambda: marker.exists() and marker.read_text().strip(), what="process started")
    pid = int(marker.read_text())
    p.kill()
    p.wait()
    wait_killed(pid)



def api_exec(d, name, *fields, window=65536):
    """An upgraded exec connection, the way `banger vm exec` opens one; sends EXEC with fields if given."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(str(d.socket))
    s.sendall(f"POST /v1/sandboxes/{name}/exec HTTP/1.1\r\nHost: b\r\nConnection: Upgrade\r\n"
              "Upgrade: banger-exec/1\r\nContent-Length: 0\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"HTTP/1.1 101"), buf
    c = aw.Conn(s)
    c.buf = buf.split(b"\r\n\r\n", 1)[1]
    if fields:
        try:
            c.send("EXEC", ("ID", 1), *fields, ("WINDOW", window))
        except BrokenPipeError:
            pass   # bangerd refused the session at once (too many): its ERROR waits to be read
    return c


def sh(script):
    return (("ARG", "sh"), ("ARG", "-c"), ("ARG", script))


def started_pid(marker):
    wait_for(lambda: marker.exists() and marker.read_text().strip(), what="process started")
    return int(marker.read_text())


def gone_or_zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().split()[2:3] == [b"Z"]
    except (FileNotFoundError, ProcessLookupError):
        return True   # reaped between two looks


def wait_killed(pid):
    wait_for(lambda: gone_or_zombie(pid), what=f"process {pid} to be killed")


def test_client_read_error_ends_the_session_and_kills_the_process(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    wait_ready(d, "web")
    marker = d.root / "marker"
    c = api_exec(d, "web", *sh(f"echo $$ > {marker}; echo unread; exec sleep 100"))
    pid = started_pid(marker)
    time.sleep(0.5)   # "unread" waits in our socket: closing now resets bangerd's side (ECONNRESET)
    c.sock.close()
    wait_killed(pid)
    assert d.get("/v1/version")[0] == 200


def test_client_protocol_error_kills_the_process_in_the_guest(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    wait_ready(d, "web")
    marker = d.root / "marker"
    c = api_exec(d, "web", *sh(f"echo $$ > {marker}; exec sleep 100"))
    pid = started_pid(marker)
    c.send("HELLO_REQ")   # not a frame a client may send
    err = c.recv_type("ERROR")
    assert b"unexpected frame type" in err["MSG"]
    wait_killed(pid)
    c.sock.close()


def test_guest_that_takes_an_exec_and_never_answers_times_out_and_is_told_to_kill_it(fake_daemon):
    d = fake_daemon
    got = []

    def mute(conn):
        while True:
            typ, fields = conn.recv()
            got.append((typ, dict(fields)))

    d.channel("web", hello_then(mute))
    wait_ready(d, "web")
    t0 = time.monotonic()
    r = run_exec(d, "web", "true")
    assert r.returncode == 1 and b"did not answer the exec request within 2 s" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 10
    sid = next(f["ID"] for t, f in got if t == "EXEC")
    wait_for(lambda: ("SIGNAL", {"ID": sid, "SIGNO": 9}) in got, what="SIGKILL for the session")


def test_exec_sessions_per_sandbox_are_capped(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    wait_ready(d, "web")
    conns = [api_exec(d, "web", *sh("exec sleep 100")) for _ in range(16)]
    for c in conns:
        c.recv_type("STARTED")
    c = api_exec(d, "web", *sh("true"))
    err = c.recv_type("ERROR")
    assert b"too many exec sessions in web (at most 16 at once)" in err["MSG"]
    conns.pop().sock.close()
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(run_exec(d, "web", "true")),
                 what="a free slot")
    assert r.returncode == 0
    for c in conns:
        c.sock.close()


def test_stopping_bangerd_does_not_wait_for_a_client_that_does_not_read(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    wait_ready(d, "web")
    c = api_exec(d, "web", *sh("yes"), window=1 << 20)   # and never read: 1 MiB does not fit in the socket
    time.sleep(1.5)
    t0 = time.monotonic()
    d.proc.send_signal(15)
    d.wait_exit(8)
    assert time.monotonic() - t0 < 6
    c.sock.close()


def test_a_guest_failing_the_same_way_is_logged_once_and_backs_off(fake_daemon):
    d = fake_daemon

    def malformed(conn):
        conn.sock.sendall(struct.pack(">I", 5) + bytes([2, 4, 0, 200, ord("x")]))
        time.sleep(5)

    ch = d.channel("web", hello_then(malformed))
    wait_ready(d, "web", "False", "malformed frame")
    time.sleep(4)
    log = d.log.read_text()
    assert log.count("guest agent sent a malformed frame") == 1, log
    assert log.count("agent ready name=web") <= 2
    assert ch.connections <= 6   # 200, 400, 800, 1600 ms ...: not every 200 ms


def test_a_hello_with_another_protocol_version_is_the_ready_reason(fake_daemon):
    d = fake_daemon

    def v2(c):
        conn = aw.Conn(c)
        conn.recv()
        conn.send("HELLO", ("VERSION", 2), ("AGENT", "future"), ("KERNEL", "9.9"))
        time.sleep(10)

    d.channel("web", v2)
    wait_ready(d, "web", "False", "the agent speaks protocol version 2; bangerd speaks 1")
    time.sleep(1.5)   # past BANGER_AGENT_HELLO_MS: still the real reason
    assert "protocol version 2" in ready(d, "web")["message"]


def test_sigint_before_the_command_started_ends_banger_at_once(fake_daemon):
    d = fake_daemon
    got = []

    def mute(conn):
        while True:
            typ, _ = conn.recv()
            got.append(typ)

    d.channel("web", hello_then(mute))
    wait_ready(d, "web")
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    p = subprocess.Popen([str(BANGER), "--root", str(d.root), "vm", "exec", "web", "--", "true"], env=env,
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: "EXEC" in got, what="the exec request")
    time.sleep(0.2)
    p.send_signal(2)
    assert p.wait(1.5) == 130


def test_second_sigint_ends_banger_when_the_command_ignores_the_first(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    wait_ready(d, "web")
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    p = subprocess.Popen([str(BANGER), "--root", str(d.root), "vm", "exec", "web", "--", "sh", "-c",
                          "trap 'echo got INT' INT; echo ready; while :; do sleep 0.05; done"],
                         env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(2)
    assert p.stdout.readline() == b"got INT\n"   # the first one is the command's
    p.send_signal(2)
    assert p.wait(5) == 130


def test_exec_with_stdin_closed_does_not_read_its_own_connection(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    wait_ready(d, "web")
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    r = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", str(BANGER), "--root", str(d.root), "vm", "exec", "web",
                        "--", "sh", "-c", "cat; echo end"], capture_output=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"end\n"


def test_exec_with_a_tty_and_piped_stdin_ends_at_the_end_of_input(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    wait_ready(d, "web")
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    r = subprocess.run([str(BANGER), "--root", str(d.root), "vm", "exec", "-t", "web", "--", "sh", "-c",
                        "cat; echo end"], input=b"one\ntwo", capture_output=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout.replace(b"\r", b"")   # the terminal echoes the input, then cat prints it
    assert out.endswith(b"end\n") and out.count(b"two") == 2, r.stdout


# ---- the agent's own checks (banger-agent --fd on a socketpair, no bangerd) ----

def agent_pair():
    a, b = aw.socketpair()
    p = subprocess.Popen([str(AGENT), "--fd", str(b.fileno())], pass_fds=[b.fileno()])
    b.close()
    a.settimeout(10)
    c = aw.Conn(a)
    typ, fields = c.recv()
    assert typ == "HELLO" and dict(fields)["VERSION"] == 1
    return p, c


def test_agent_writes_files_atomically_with_mode_and_owner(tmp_path):
    p, c = agent_pair()
    target = tmp_path / "out.bin"
    data = os.urandom(100000)
    chunks = [data[i:i + aw.MAX_DATA] for i in range(0, len(data), aw.MAX_DATA)]
    for i, chunk in enumerate(chunks):
        fields = [("ID", 7), ("DATA", chunk), ("LAST", int(i == len(chunks) - 1))]
        if i == 0:
            fields += [("PATH", str(target)), ("MODE", 0o640), ("UID", 1234), ("GID", 5678)]
        assert not target.exists()
        c.send("WRITE", *fields)
    assert c.recv_type("DONE")["ID"] == 7
    st = target.stat()
    assert target.read_bytes() == data
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    assert [x.name for x in tmp_path.iterdir()] == ["out.bin"]   # no temporary file left
    c.send("WRITE", ("ID", 8), ("PATH", "relative/path"), ("DATA", b"x"), ("LAST", 1))
    err = c.recv_type("ERROR")
    assert err["ID"] == 8 and b"absolute" in err["MSG"]
    c.send("WRITE", ("ID", 9), ("PATH", str(tmp_path / "no" / "dir")), ("DATA", b"x"), ("LAST", 1))
    assert b"No such file" in c.recv_type("ERROR")["MSG"]
    c.sock.close()
    assert p.wait(10) == 0


def test_agent_refuses_an_oversized_frame_by_closing_the_connection():
    p, c = agent_pair()
    c.sock.sendall(struct.pack(">I", 70000) + b"\x03")
    assert p.wait(10) == 0   # --fd mode: the connection is its life
    with pytest.raises((EOFError, ConnectionResetError)):
        c.recv()


def test_agent_refuses_a_malformed_frame_and_bad_requests():
    p, c = agent_pair()
    c.send("EXEC", ("ID", 3))   # no argv
    assert b"no command" in c.recv_type("ERROR")["MSG"]
    c.send("EXEC", ("ID", 4), ("ARG", "true"), ("ENV", "NOEQUALS"))
    assert b"NAME=VALUE" in c.recv_type("ERROR")["MSG"]
    c.send("EXEC", ("ID", 5), ("ARG", "true"), ("CWD", "relative"))
    assert b"absolute" in c.recv_type("ERROR")["MSG"]
    assert c.exec(["sh", "-c", "exit 4"], id=6)[0] == 4   # still serving
    c.sock.sendall(struct.pack(">I", 5) + bytes([3, 9, 0, 200, ord("x")]))   # field past its body
    assert p.wait(10) == 0



def test_agent_spawned_commands_get_a_clean_start_and_clear_errors(tmp_path):
    """Commands without a terminal are started with posix_spawn: each
    step the fork path did must still happen, and each failure must still
    say which step failed."""
    p, c = agent_pair()
    # SIGPIPE back to default (the agent ignores it): a writer into a closed pipe dies of it (141).
    code, out, err = c.exec(["sh", "-c", "(yes; echo $? >&2) | head -c1 >/dev/null"], id=1)
    assert code == 0 and err == b"141\n", err
    # its own session and process group; no signal blocked; the working directory asked for.
    # (the spawned process looks at itself: a shell blocks signals around its own forks)
    code, out, _ = c.exec(["cut", "-d", " ", "-f1,5,6", "/proc/self/stat"], id=2)
    pid, pgid, sid = out.split()
    assert code == 0 and pid == pgid == sid, out
    code, out, _ = c.exec(["grep", "SigBlk", "/proc/self/status"], id=9)
    assert out == b"SigBlk:\t0000000000000000\n", out
    code, out, _ = c.exec(["sh", "-c", "pwd; echo $A"], id=3, env=("A=1",))
    assert out.split(b"\n")[1] == b"1"
    c.send("EXEC", ("ID", 4), ("ARG", "pwd"), ("CWD", str(tmp_path)))
    frames = session_frames(c, 4)
    assert b"".join(f.get("DATA", b"") for t, f in frames if t == "STDOUT") == str(tmp_path).encode() + b"\n"
    c.send("EXEC", ("ID", 5), ("ARG", "pwd"), ("CWD", str(tmp_path / "nope")))
    msg = c.recv_type("ERROR")["MSG"]
    assert b"cd to the working directory of '" + str(tmp_path / "nope").encode() + b"'" in msg, msg
    c.send("EXEC", ("ID", 6), ("ARG", "/no/such/program"))
    msg = c.recv_type("ERROR")["MSG"]
    assert msg == b"exec '/no/such/program': No such file or directory", msg
    (tmp_path / "noexec").write_text("#!/bin/sh\n")
    c.send("EXEC", ("ID", 7), ("ARG", str(tmp_path / "noexec")))
    msg = c.recv_type("ERROR")["MSG"]
    assert b"Permission denied" in msg, msg
    assert c.exec(["true"], id=8)[0] == 0   # still serving, and no zombie was left to confuse it
    c.sock.close()
    assert p.wait(10) == 0


def session_frames(c, sid, until=("EXIT", "ERROR")):
    """Frames of session sid up to and including one of until: [(type, fields)]."""
    out = []
    while True:
        typ, fields = c.recv()
        f = dict(fields)
        if f.get("ID") != sid:
            continue
        out.append((typ, f))
        if typ in until:
            return out


def test_agent_reports_exit_only_after_output_waiting_for_credit_is_read():
    p, c = agent_pair()
    c.send("EXEC", ("ID", 1), ("ARG", "head"), ("ARG", "-c"), ("ARG", "50000"), ("ARG", "/dev/zero"),
           ("WINDOW", 1000))
    out = b""
    c.sock.settimeout(1.0)
    try:   # the process is long gone; its output waits for credit, and so does its EXIT
        while True:
            typ, fields = c.recv()
            f = dict(fields)
            assert typ != "EXIT", f"EXIT with {len(out)} of 50000 bytes read"
            if typ == "STDOUT":
                out += f["DATA"]
    except socket.timeout:
        pass
    assert len(out) == 1000
    c.sock.settimeout(10)
    while True:
        c.send("WINDOW", ("ID", 1), ("N", 7000))   # slowly: longer than the 200 ms grace each time
        time.sleep(0.3)
        frames = []
        c.sock.settimeout(0.2)
        try:
            while True:
                frames.append(c.recv())
        except socket.timeout:
            pass
        c.sock.settimeout(10)
        out += b"".join(dict(f)["DATA"] for t, f in frames if t == "STDOUT")
        if any(t == "EXIT" for t, _ in frames):
            break
    assert out == b"\0" * 50000
    assert [dict(f)["CODE"] for t, f in frames if t == "EXIT"] == [0]
    c.sock.close()
    assert p.wait(10) == 0


def test_agent_drops_a_host_that_stops_reading_and_kills_its_processes(tmp_path):
    p, c = agent_pair()
    marker = tmp_path / "pid"
    c.send("EXEC", ("ID", 1), ("ARG", "sh"), ("ARG", "-c"), ("ARG", f"echo $$ > {marker}; exec sleep 100"),
           ("WINDOW", 65536))
    assert c.recv_type("STARTED")["ID"] == 1
    wait_for(lambda: marker.exists() and marker.read_text().strip(), what="process started")
    pid = int(marker.read_text())
    # Ask for more answers than the agent queues (2 MiB) and read none.
    c.sock.settimeout(20)
    try:
        for _ in range(200):
            c.sock.sendall(aw.frame("HELLO_REQ") * 10000)
    except OSError:
        pass   # the agent hung up on us: what this test wants
    assert p.wait(10) == 0   # --fd mode: the connection is its life
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the process to be killed")


def test_agent_pty_master_does_not_leak_into_later_processes():
    p, c = agent_pair()
    c.send("EXEC", ("ID", 1), ("ARG", "sh"), ("ARG", "-c"), ("ARG", "read x"), ("TTY", 1), ("WINDOW", 65536))
    assert c.recv_type("STARTED")["ID"] == 1
    code, out, _ = c.exec(["ls", "-l", "/proc/self/fd/"], id=2)
    assert code == 0 and b"/proc/" in out
    assert b"ptmx" not in out and b"/dev/pts" not in out, out
    c.sock.close()
    assert p.wait(10) == 0


def test_agent_eof_on_a_tty_ends_the_commands_input():
    # A terminal has no end of input: EOF becomes its EOF character (twice
    # after a partial line), as if typed.
    p, c = agent_pair()
    for sid, data in ((1, b""), (2, b"one\ntwo\n"), (3, b"no newline")):
        c.send("EXEC", ("ID", sid), ("ARG", "sh"), ("ARG", "-c"), ("ARG", "stty -echo; cat; echo; echo done"),
               ("TTY", 1), ("WINDOW", 65536))
        assert c.recv_type("STARTED")["ID"] == sid
        time.sleep(0.3)   # stty -echo before the input arrives
        if data:
            c.send("STDIN", ("ID", sid), ("DATA", data))
        c.send("EOF", ("ID", sid))
        frames = session_frames(c, sid)
        out = b"".join(f["DATA"] for t, f in frames if t == "STDOUT")
        assert frames[-1] == ("EXIT", {"ID": sid, "CODE": 0}), frames
        assert out.replace(b"\r", b"") == data + b"\ndone\n"
    c.sock.close()
    assert p.wait(10) == 0

def test_sigint_to_banger_reaches_the_command_and_resize_reaches_its_terminal(fake_daemon):
    d = fake_daemon
    d.channel("web", real_agent)
    wait_ready(d, "web")
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    marker = d.root / "trapped"
    p = subprocess.Popen([str(BANGER), "--root", str(d.root), "vm", "exec", "web", "--", "sh", "-c",
                          f"trap 'echo got INT > {marker}; exit 9' INT; echo ready; while :; do sleep 0.05; done"],
                         env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(2)
    assert p.wait(20) == 9
    assert marker.read_text() == "got INT\n"
    # RESIZE through the relay to the agent's pty (a raw client: our stdout is no terminal)
    import socket as so
    s = so.socket(so.AF_UNIX)
    s.connect(str(d.socket))
    s.sendall(b"POST /v1/sandboxes/web/exec HTTP/1.1\r\nHost: b\r\nConnection: Upgrade\r\n"
              b"Upgrade: banger-exec/1\r\nContent-Length: 0\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    c = aw.Conn(s)
    c.buf = buf.split(b"\r\n\r\n", 1)[1]
    c.send("EXEC", ("ID", 1), ("ARG", "sh"), ("ARG", "-c"), ("ARG", "read x; stty size"), ("TTY", 1),
           ("ROWS", 10), ("COLS", 20), ("WINDOW", 65536))
    c.recv_type("STARTED")
    c.send("RESIZE", ("ID", 1), ("ROWS", 33), ("COLS", 77))
    c.send("STDIN", ("ID", 1), ("DATA", b"go\n"))
    out = b""
    while True:
        typ, fields = c.recv()
        f = dict(fields)
        if typ == "STDOUT":
            out += f["DATA"]
        if typ == "EXIT":
            break
    assert b"33 77" in out
    s.close()


def test_a_flood_of_bad_hellos_is_one_log_line_and_a_closed_connection(fake_daemon):
    d = fake_daemon

    def versions(c):
        conn = aw.Conn(c)
        conn.recv()
        for v in range(2, 2000):   # every one a different reason
            conn.send("HELLO", ("VERSION", v), ("AGENT", "x"), ("KERNEL", "k"))
        time.sleep(10)

    ch = d.channel("web", versions)
    wait_ready(d, "web", "False", "protocol version 2; bangerd speaks 1")
    time.sleep(1)
    assert d.phase("web") == "Running"
    assert d.log.read_text().count("speaks protocol version") <= 2
    assert ch.connections <= 4   # closed at the first, reconnected with a backoff


def test_a_bad_hello_after_a_good_one_makes_the_sandbox_not_ready(fake_daemon):
    d = fake_daemon

    def turn(conn):
        time.sleep(1)
        conn.send("HELLO", ("VERSION", 7), ("AGENT", "x"), ("KERNEL", "k"))
        time.sleep(10)

    d.channel("web", hello_then(turn))
    wait_ready(d, "web")
    wait_ready(d, "web", "False", "protocol version 7")


def exec_answered_by(d, answer, *cmd, stdin=b""):
    """vm exec against a guest whose agent takes the EXEC and runs answer(conn, id)."""
    def serve(conn):
        typ, fields = conn.recv()
        assert typ == "EXEC"
        answer(conn, dict(fields)["ID"])
        time.sleep(5)

    d.channel("web", hello_then(serve))
    wait_ready(d, "web")
    return run_exec(d, "web", *cmd, stdin=stdin)


def test_an_exit_without_a_valid_status_is_refused(fake_daemon):
    def bad_exit(conn, sid):
        conn.send("STARTED", ("ID", sid), ("PID", 1))
        conn.send("EXIT", ("ID", sid), ("CODE", 300))

    r = exec_answered_by(fake_daemon, bad_exit, "true")
    assert r.returncode == 1
    assert b"exit without a valid code or signal" in r.stderr


def test_a_guest_error_message_reaches_the_terminal_as_plain_text(fake_daemon):
    def hostile(conn, sid):
        conn.send("ERROR", ("ID", sid), ("ERRNO", 2), ("MSG", "no such \x1b]0;owned\x07file\x1b[2J"),
                  ("DATA", b"an extra field"))

    r = exec_answered_by(fake_daemon, hostile, "x")
    assert r.returncode == 127
    assert b"\x1b" not in r.stderr and b"\x07" not in r.stderr
    assert b"no such ?]0;owned?file?[2J" in r.stderr


def test_stdin_credit_past_the_cap_is_not_a_wrap(fake_daemon):
    """A guest granting 2**64-1 twice: bangerd caps the credit at 16 MiB and
    tells the client only what it added, so both keep one count: the client
    sends what it was granted and waits for more (a client told 2**64-1
    twice would send past what bangerd allows, and lose the session)."""
    got = []
    cap = 16 << 20

    def greedy(conn, sid):
        conn.send("STARTED", ("ID", sid), ("PID", 1))
        conn.send("WINDOW", ("ID", sid), ("N", (1 << 64) - 1))
        conn.send("WINDOW", ("ID", sid), ("N", (1 << 64) - 1))
        n = 0
        while n < cap:
            typ, fields = conn.recv()
            if typ == "STDIN":
                n += len(dict(fields)["DATA"])
        got.append(n)
        conn.send("EXIT", ("ID", sid), ("CODE", 0))

    r = exec_answered_by(fake_daemon, greedy, "cat", stdin=b"z" * (cap + (1 << 20)))
    assert r.returncode == 0, r.stderr
    # the second grant adds what stdin already used of the first
    assert len(got) == 1 and cap <= got[0] < cap + (1 << 20)


def test_idle_time_counts_from_the_first_sample_not_from_a_slow_boot(fake_daemon):
    """idle_timeout 10s and an agent whose hello takes 11 s: the boot is
    not idle time, so the first stats answer does not stop the guest; ten
    idle seconds after it, it does."""
    d = fake_daemon

    def slow_idle_agent(c):
        conn = aw.Conn(c)
        conn.recv()
        time.sleep(11)
        conn.send("HELLO", ("VERSION", 1), ("AGENT", "fake"), ("KERNEL", "6.1-fake"), ("NOW_US", 1))
        t0 = time.monotonic()
        while True:
            typ, fields = conn.recv()
            sid = dict(fields).get("ID", 0)
            if typ == "STATS_REQ":
                conn.send("STATS", ("ID", sid), ("S_UPTIME_MS", 11000 + int((time.monotonic() - t0) * 1000)),
                          ("S_CPU_USER", 5), ("S_CPU_SYSTEM", 5))
            elif typ == "SHUTDOWN":
                conn.send("DONE", ("ID", sid))

    d.channel("web", slow_idle_agent, idle_timeout="10s")
    wait_ready(d, "web", timeout=30)
    ready_at = time.monotonic()
    time.sleep(3)   # ten polls answered, all idle
    assert d.phase("web") == "Running"
    wait_for(lambda: d.phase("web") == "Stopped", timeout=30, what="the idle stop")
    assert time.monotonic() - ready_at >= 9
    assert "spec.idle_timeout" in d.sandbox("web")["status"]["message"]
